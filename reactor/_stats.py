"""Counters and latency histograms, and the frozen snapshots that ``app.stats()`` returns."""

from __future__ import annotations

from collections.abc import Mapping

import attrs

__all__ = ["LatencyStats", "QueueStatistics", "Stats", "SubscriptionStats"]

# Log-linear slots: 8 linear sub-slots per power of two keep every percentile within
# 6.25% of the true value, in a fixed list whatever the number of samples. A duration of
# ``us`` microseconds goes to slot ``us`` below 16, else ``(shift << 3) + (us >> shift)``
# with ``shift = us.bit_length() - 4`` (see ``LatencyHistogram.record``).
_SLOTS = 8 * 40  # up to 2**43 µs (about 100 days); longer durations share the last slot
LAST_SLOT = _SLOTS - 1


def _bucket_bounds(index: int) -> tuple[int, int]:
    if index < 16:
        return index, index
    shift = (index >> 3) - 1
    low = (index - (shift << 3)) << shift
    return low, low + (1 << shift) - 1


def _slot(index: int, count: int) -> tuple[float, float, int]:
    low, high = _bucket_bounds(index)
    return low / 1_000_000, high / 1_000_000, count


class LatencyHistogram:
    """A fixed-size histogram of durations in microseconds (bounded memory).

    Recording is a few integer operations and one list increment.
    """

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts = [0] * _SLOTS

    def record(self, seconds: float) -> None:
        """Add one duration of *seconds* (negative ones count as zero)."""
        # Called for every event: the slot is computed inline, without further calls.
        micros = int(seconds * 1_000_000)
        if micros < 16:
            slot = micros if micros > 0 else 0
        else:
            shift = micros.bit_length() - 4
            slot = (shift << 3) + (micros >> shift)
        self.counts[slot if slot < LAST_SLOT else LAST_SLOT] += 1

    def percentile(self, fraction: float) -> float:
        """Return the duration in seconds below which *fraction* of the samples fall.

        The value is the middle of its histogram slot: within 6.25% of the true value.

        :param fraction: between 0 and 1
        :return: seconds, or ``0.0`` without samples
        """
        counts = self.counts
        total = sum(counts)
        if not total:
            return 0.0
        rank = min(max(1, round(fraction * total)), total)
        seen = 0
        for index, n in enumerate(counts):
            seen += n
            if seen >= rank:
                low, high = _bucket_bounds(index)
                return (low + high) / 2 / 1_000_000
        raise AssertionError("unreachable: rank <= total")  # pragma: no cover

    def snapshot(self) -> LatencyStats:
        """Return the percentiles as a frozen :class:`LatencyStats`."""
        counts = self.counts
        top = max((index for index, n in enumerate(counts) if n), default=None)
        return LatencyStats(
            count=sum(counts),
            p50=self.percentile(0.50),
            p90=self.percentile(0.90),
            p99=self.percentile(0.99),
            max=0.0 if top is None else _bucket_bounds(top)[1] / 1_000_000,
            slots=tuple(_slot(index, n) for index, n in enumerate(counts) if n),
        )


@attrs.frozen(kw_only=True)
class LatencyStats:
    """Percentiles of publish → first handler start latency, in seconds (within 6.25%).

    :ivar count: how many events were measured (once each, when its first handler started)
    :ivar max: the upper bound of the slowest sample's histogram slot
    :ivar slots: the whole distribution, for exporters (the Prometheus collector builds
        its histogram from it): ``(low, high, count)`` for each histogram slot that holds
        samples, in increasing order, where *low* and *high* are the shortest and longest
        duration (in seconds, whole microseconds) that the slot counts
    """

    count: int
    p50: float
    p90: float
    p99: float
    max: float
    slots: tuple[tuple[float, float, int], ...] = ()


@attrs.frozen(kw_only=True)
class QueueStatistics:
    """A snapshot of an ingestion queue.

    :ivar depth: events accepted and not yet handed to the dispatcher
    :ivar capacity: the most events the queue holds before ``publish()`` waits
    :ivar put_count: events accepted since the queue was created
    :ivar get_count: events handed to the dispatcher since the queue was created
    :ivar waiting_publishers: ``publish()`` calls waiting for room right now
    :ivar errors: storage operations (stores of published events, settlements) that
        failed since the queue was created, e.g. on a full disk; the app retries its
        settlements, and publishers get :class:`~reactor.QueueUnavailableError`
    :ivar last_error: a description of the latest such failure while it lasts, ``None``
        once an operation succeeded again (the queue is healthy)
    :ivar lag: a queue shared through a broker: events in the stream that the app's
        consumer group has not read yet, in all its processes, as last measured (``None``
        for a queue that is not shared)
    :ivar pending: a queue shared through a broker: events the app's group has read and
        not acknowledged yet, in all its processes, as last measured (``None`` otherwise)
    :ivar claimed: a queue shared through a broker: events this process took over from
        another process of the app that had not settled them in time (0 otherwise)
    :ivar delayed: delayed events held until they are due (``publish(..., delay=...)``):
        counted against *capacity*, not in *depth*
    :ivar deduplicated: published events the queue dropped as duplicates of events it
        stored within a dedupe window (see ``EventQueue.deduplicate``), since it was
        created (0 for a queue that does not deduplicate)
    """

    depth: int
    capacity: int
    put_count: int
    get_count: int
    waiting_publishers: int
    errors: int = 0
    last_error: str | None = None
    lag: int | None = None
    pending: int | None = None
    claimed: int = 0
    delayed: int = 0
    deduplicated: int = 0


@attrs.frozen(kw_only=True)
class SubscriptionStats:
    """Counters of one subscription (one consumer).

    :ivar delivered: deliveries that ended with the handler returning
    :ivar failed: attempts that raised or timed out (each retry counts again)
    :ivar timed_out: attempts cut by the subscription's timeout (also in *failed*)
    :ivar retried: retries started after a failed attempt
    :ivar dead_lettered: deliveries given up and sent to the dead-letter sink
    :ivar pending: deliveries routed to this consumer and not yet settled
    :ivar running: deliveries in progress right now (a handler running, or waiting to be
        retried; for a batch handler, the events of the batches in progress)
    :ivar held: deliveries held before the handler (also in *pending*): a batch filling
        up (``batch=``), over the rate limit (``rate_limit=``), or waiting for the end
        of a burst (``debounce=``)
    :ivar rate_limited: deliveries that had to wait for the rate limit
    :ivar debounced: deliveries settled without the handler because a later event of
        the same key replaced them (``debounce=``)
    :ivar expired: deliveries not started before their event expired, dead-lettered with
        :class:`~reactor.EventExpired` (also in *dead_lettered*)
    """

    name: str
    pattern: str
    delivered: int
    failed: int
    timed_out: int
    retried: int
    dead_lettered: int
    pending: int
    running: int
    held: int = 0
    rate_limited: int = 0
    debounced: int = 0
    expired: int = 0


@attrs.frozen(kw_only=True)
class Stats:
    """A frozen snapshot of an app's counters, returned by ``app.stats()``.

    Totals include subscriptions that were cancelled since the app was created.

    :ivar published: events accepted by ``publish()``, ``publish_nowait()`` and ``notify()``
    :ivar deduplicated: events not published because a dedupe window had accepted one of
        the same ``(source, id)`` already: the app's ``dedupe`` window, kept in memory or
        by the queue, and a broker queue's own ``dedupe_window``
    :ivar delivered: deliveries that ended with the handler returning
    :ivar failed: handler attempts that raised or timed out
    :ivar timed_out: handler attempts cut by a timeout (also counted in *failed*)
    :ivar retried: retries started
    :ivar dead_lettered: deliveries given up and sent to the dead-letter sink
    :ivar queue: the ingestion queue's own statistics
    :ivar in_flight: events taken from the queue whose deliveries are not all settled
    :ivar latency: publish → handler-start latency, measured once per event when its
        first handler starts (a lagging consumer shows in its ``pending`` count instead)
    :ivar subscriptions: per-consumer counters of the active subscriptions
    :ivar sources: each source's own counters (and texts such as its last error), by
        source name (``name#2`` for a second source of the same name)
    :ivar expired: deliveries not started before their event expired (also counted in
        *dead_lettered*)
    """

    published: int
    delivered: int
    failed: int
    timed_out: int
    retried: int
    dead_lettered: int
    queue: QueueStatistics
    in_flight: int
    latency: LatencyStats
    subscriptions: Mapping[str, SubscriptionStats]
    sources: Mapping[str, Mapping[str, int | str | None]]
    expired: int = 0
    deduplicated: int = 0

    @property
    def queue_depth(self) -> int:
        """Events waiting in the ingestion queue (``queue.depth``)."""
        return self.queue.depth
