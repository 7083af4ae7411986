"""Prometheus metrics of an app (extra ``prometheus``: ``pip install 'reactor-events[prometheus]'``).

:class:`ReactorCollector` is a `prometheus-client
<https://prometheus.github.io/client_python/>`_ collector for the registry of your
choice; :func:`serve_metrics` also answers ``GET /metrics`` on the app's HTTP ingress::

    from prometheus_client import CollectorRegistry, generate_latest

    from reactor import Reactor
    from reactor.prometheus import ReactorCollector, serve_metrics

    app = Reactor()
    registry = CollectorRegistry()
    registry.register(ReactorCollector(app, durations=True))
    serve_metrics(app, registry)  # GET /metrics on app.asgi
    print(generate_latest(registry).decode())

Everything is read from ``app.stats()`` when the registry is collected (a scrape), so
the hot path pays nothing for it: the benchmarks measure reactor with the collector
within a few percent of reactor without (``reactor-metrics`` in ``python -m
benchmarks``, within noise). The one exception is opt-in: ``durations=True`` times each
delivery attempt (``reactor_delivery_duration_seconds``) with a middleware (``app.use``),
which costs a few tenths of a microsecond per attempt: against handlers that do nothing
(the benchmarks' W1, K = 4) reactor ran at about 70% of its speed without it; against
handlers that do real work (I/O, a database) it is noise.

=============================================  =========  ====================================
metric                                         type       what
=============================================  =========  ====================================
``reactor_events_published_total``             counter    events accepted by the app
``reactor_events_deduplicated_total``          counter    events dropped as duplicates by
                                                          the app's ``dedupe`` window
``reactor_deliveries_total``                   counter    settled deliveries, by ``consumer``
                                                          and ``outcome`` (``ok``,
                                                          ``dead_lettered``, ``skipped``: a
                                                          later event replaced it in a
                                                          ``debounce=`` window)
``reactor_delivery_failures_total``            counter    attempts that raised or timed out,
                                                          by ``consumer``
``reactor_delivery_timeouts_total``            counter    attempts cut by a timeout (also
                                                          failures), by ``consumer``
``reactor_delivery_retries_total``             counter    retries started, by ``consumer``
``reactor_deliveries_expired_total``           counter    deliveries not started before their
                                                          event expired (also dead-lettered),
                                                          by ``consumer``
``reactor_delivery_duration_seconds``          histogram  each attempt, middleware included,
                                                          by ``consumer`` (``durations=True``)
``reactor_consumer_pending``                   gauge      deliveries routed and not settled,
                                                          by ``consumer``
``reactor_consumer_running``                   gauge      deliveries running, by ``consumer``
``reactor_consumer_held``                      gauge      deliveries held by ``batch=``,
                                                          ``rate_limit=`` or ``debounce=``
``reactor_delivery_rate_limited_total``        counter    deliveries that waited for the
                                                          rate limit, by ``consumer``
``reactor_dispatch_latency_seconds``           histogram  publish to first handler start,
                                                          once per event (within 6.25%)
``reactor_in_flight_events``                   gauge      events taken from the queue and not
                                                          settled by every consumer
``reactor_dead_letters``                       gauge      dead letters kept in
                                                          ``app.dead_letters``
``reactor_queue_depth``                        gauge      events waiting in the queue
``reactor_queue_capacity``                     gauge      the most the queue holds
``reactor_queue_waiting_publishers``           gauge      ``publish()`` calls waiting for room
``reactor_queue_delayed``                      gauge      delayed events held until they are due
``reactor_queue_errors_total``                 counter    failed storage operations
``reactor_queue_lag``, ``reactor_queue_        gauge      a queue shared through a broker:
pending``                                                 unread, and read but unacknowledged
``reactor_queue_claimed_total``                counter    events taken over from another
                                                          process
``reactor_source_gaps_total``                  counter    gap events announced, by ``source``
``reactor_source_reconnects_total``            counter    reconnections, by ``source``
``reactor_source_statistic``                   unknown    every other count a source reports
                                                          (``Source.statistics()``), by
                                                          ``source`` and ``name``
=============================================  =========  ====================================

Counters of a consumer whose subscription is cancelled leave with it (Prometheus treats
the series as ended); the app-wide totals in ``app.stats()`` keep them.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from itertools import pairwise
from time import perf_counter
from typing import TYPE_CHECKING, Any

import reactor
from reactor import Event, Handler, LatencyStats, Reactor
from reactor.abc import import_extra

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import CollectorRegistry

__all__ = ["DEFAULT_BUCKETS", "ReactorCollector", "serve_metrics"]

#: The bucket bounds (seconds) of the histograms: 100 µs to 60 s.
DEFAULT_BUCKETS: tuple[float, ...] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)

#: Statistics of sources exported as metrics of their own, rather than as
#: ``reactor_source_statistic``.
_SOURCE_COUNTERS = {"gaps": "reactor_source_gaps", "reconnects": "reactor_source_reconnects"}


class _Cell:
    """One consumer's duration histogram: a count per bucket (and one above) and the sum."""

    __slots__ = ("counts", "total")

    def __init__(self, size: int) -> None:
        self.counts = [0] * size
        self.total = 0.0


class _Durations:
    """The per-consumer histograms of attempt durations, and the middleware that fills them."""

    __slots__ = ("bounds", "cells", "middleware")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = bounds = tuple(bounds)
        self.cells: dict[str, _Cell] = {}
        cells = self.cells
        size = len(bounds) + 1
        current_delivery = reactor.current_delivery
        # Each subscription's chain has a call_next of its own (see Reactor.use): its cell
        # is found by identity, without building a Delivery per attempt.
        by_chain: dict[Handler, _Cell] = {}

        # A plain coroutine function (not a method): the cheapest call per attempt.
        async def time_attempt(call_next: Handler, event: Event) -> None:
            started = perf_counter()
            try:
                await call_next(event)
            finally:
                elapsed = perf_counter() - started
                cell = by_chain.get(call_next)
                if cell is None:
                    consumer = current_delivery().consumer
                    cell = cells.get(consumer)
                    if cell is None:
                        cell = cells[consumer] = _Cell(size)
                    by_chain[call_next] = cell
                # Bucket i counts durations in (bounds[i-1], bounds[i]]: "le" is inclusive.
                cell.counts[bisect_left(bounds, elapsed)] += 1
                cell.total += elapsed

        self.middleware = time_attempt


def _cumulative(counts: Sequence[int], bounds: Sequence[float]) -> list[tuple[str, float]]:
    buckets: list[tuple[str, float]] = []
    seen = 0
    for bound, n in zip((*bounds, math.inf), counts, strict=True):
        seen += n
        buckets.append(("+Inf" if bound == math.inf else repr(float(bound)), float(seen)))
    return buckets


def _latency_buckets(
    latency: LatencyStats, bounds: Sequence[float]
) -> tuple[list[tuple[str, float]], float]:
    """Prometheus buckets and an estimated sum from the dispatcher's histogram slots.

    A slot counts towards a bucket when every duration it holds is within the bucket's
    bound (a slot of whole microseconds ``low..high`` holds durations below ``high`` plus
    one microsecond); the sum takes each sample at the middle of its slot.
    """
    counts = [0] * (len(bounds) + 1)
    total = 0.0
    for low, high, n in latency.slots:
        top = high + 1e-6
        counts[bisect_left(bounds, top - 1e-9)] += n
        total += n * (low + top) / 2
    return _cumulative(counts, bounds), total


class ReactorCollector:
    """A prometheus-client collector of one app's metrics (the table in :mod:`reactor.prometheus`).

    Register it with the registry you expose (``registry.register(collector)``, or
    ``prometheus_client.REGISTRY``). Needs the ``prometheus`` extra.

    :param app: the app to report on
    :param durations: time each delivery attempt (``reactor_delivery_duration_seconds``)
        with a middleware installed now with ``app.use()`` (middleware used later runs
        inside it, and is timed too); the only metric that costs something per
        delivery (a few tenths of a microsecond), so it is off by default
    :param buckets: the bucket bounds of both histograms, in seconds, increasing
    :raises ModuleNotFoundError: prometheus-client is not installed
    :raises ValueError: *buckets* is empty or not increasing
    """

    def __init__(
        self,
        app: Reactor,
        *,
        durations: bool = False,
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> None:
        self._core = import_extra("prometheus_client.core", extra="prometheus")
        bounds = tuple(float(bound) for bound in buckets)
        if not bounds or any(b <= a for a, b in pairwise(bounds)):
            raise ValueError(f"buckets must be increasing bounds in seconds, got {buckets!r}")
        if bounds[-1] == math.inf:
            bounds = bounds[:-1]  # the +Inf bucket is always there
        self._app = app
        self._bounds = bounds
        self._durations: _Durations | None = None
        if durations:
            self._durations = _Durations(bounds)
            app.use(self._durations.middleware)

    def describe(self) -> list[Metric]:
        """Describe nothing, so that registering does not collect (prometheus-client's
        protocol: a collector without ``describe`` is collected at registration)."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Yield the app's metrics as they are now (called by the registry at each scrape)."""
        core: Any = self._core
        stats = self._app.stats()
        counter: Callable[..., Any] = core.CounterMetricFamily
        gauge: Callable[..., Any] = core.GaugeMetricFamily

        yield counter(
            "reactor_events_published", "Events accepted by the app.", value=stats.published
        )
        yield counter(
            "reactor_events_deduplicated",
            "Events dropped as duplicates by the app's dedupe window.",
            value=stats.deduplicated,
        )
        deliveries = counter(
            "reactor_deliveries",
            "Deliveries settled, by consumer and outcome (ok, dead_lettered, skipped).",
            labels=["consumer", "outcome"],
        )
        failures = counter(
            "reactor_delivery_failures",
            "Delivery attempts that raised or timed out, by consumer.",
            labels=["consumer"],
        )
        timeouts = counter(
            "reactor_delivery_timeouts",
            "Delivery attempts cut by the consumer's timeout, by consumer.",
            labels=["consumer"],
        )
        retries = counter(
            "reactor_delivery_retries", "Retries started, by consumer.", labels=["consumer"]
        )
        expired = counter(
            "reactor_deliveries_expired",
            "Deliveries not started before their event expired (dead-lettered), by consumer.",
            labels=["consumer"],
        )
        pending = gauge(
            "reactor_consumer_pending",
            "Deliveries routed to the consumer and not settled yet.",
            labels=["consumer"],
        )
        running = gauge(
            "reactor_consumer_running", "Deliveries running right now.", labels=["consumer"]
        )
        held = gauge(
            "reactor_consumer_held",
            "Deliveries held by batch=, rate_limit= or debounce= before the handler.",
            labels=["consumer"],
        )
        limited = counter(
            "reactor_delivery_rate_limited",
            "Deliveries that waited for the consumer's rate limit.",
            labels=["consumer"],
        )
        for name, sub in stats.subscriptions.items():
            deliveries.add_metric([name, "ok"], sub.delivered)
            deliveries.add_metric([name, "dead_lettered"], sub.dead_lettered)
            deliveries.add_metric([name, "skipped"], sub.debounced)
            held.add_metric([name], sub.held)
            limited.add_metric([name], sub.rate_limited)
            failures.add_metric([name], sub.failed)
            timeouts.add_metric([name], sub.timed_out)
            retries.add_metric([name], sub.retried)
            expired.add_metric([name], sub.expired)
            pending.add_metric([name], sub.pending)
            running.add_metric([name], sub.running)
        yield from (
            deliveries,
            failures,
            timeouts,
            retries,
            expired,
            pending,
            running,
            held,
            limited,
        )

        if self._durations is not None:
            durations = core.HistogramMetricFamily(
                "reactor_delivery_duration_seconds",
                "Duration of each delivery attempt (middleware included), by consumer.",
                labels=["consumer"],
            )
            for name, cell in list(self._durations.cells.items()):
                durations.add_metric(
                    [name], _cumulative(cell.counts, self._bounds), sum_value=cell.total
                )
            yield durations

        buckets, total = _latency_buckets(stats.latency, self._bounds)
        latency = core.HistogramMetricFamily(
            "reactor_dispatch_latency_seconds",
            "From publish to the first handler start, once per event (within 6.25%).",
        )
        latency.add_metric([], buckets, sum_value=total)
        yield latency

        yield gauge(
            "reactor_in_flight_events",
            "Events taken from the queue whose deliveries are not all settled.",
            value=stats.in_flight,
        )
        yield gauge(
            "reactor_dead_letters",
            "Dead letters kept in app.dead_letters.",
            value=len(self._app.dead_letters),
        )
        queue = stats.queue
        yield gauge("reactor_queue_depth", "Events waiting in the queue.", value=queue.depth)
        yield gauge(
            "reactor_queue_capacity", "The most events the queue holds.", value=queue.capacity
        )
        yield gauge(
            "reactor_queue_waiting_publishers",
            "publish() calls waiting for room in the queue.",
            value=queue.waiting_publishers,
        )
        yield gauge(
            "reactor_queue_delayed",
            "Delayed events held in the queue until they are due.",
            value=queue.delayed,
        )
        yield counter(
            "reactor_queue_errors",
            "Storage operations of the queue that failed.",
            value=queue.errors,
        )
        if queue.lag is not None:
            yield gauge(
                "reactor_queue_lag",
                "Events in the shared stream that the app's group has not read yet.",
                value=queue.lag,
            )
        if queue.pending is not None:
            yield gauge(
                "reactor_queue_pending",
                "Events the app's group has read and not acknowledged yet.",
                value=queue.pending,
            )
        yield counter(
            "reactor_queue_claimed",
            "Events taken over from another process of the app.",
            value=queue.claimed,
        )

        sources = {
            key: counter(metric, f"Source {key}, by source.", labels=["source"])
            for key, metric in _SOURCE_COUNTERS.items()
        }
        other = core.UnknownMetricFamily(
            "reactor_source_statistic",
            "The other counts each source reports (Source.statistics()), by source and name.",
            labels=["source", "name"],
        )
        for source, values in stats.sources.items():
            for key, value in values.items():
                if not isinstance(value, int) or isinstance(value, bool):
                    continue  # a text, such as the last error
                if key in sources:
                    sources[key].add_metric([source], value)
                else:
                    other.add_metric([source, key], value)
        yield from sources.values()
        yield other


def serve_metrics(
    app: Reactor, registry: CollectorRegistry | None = None, *, path: str = "/metrics"
) -> None:
    """Answer ``GET`` requests at *path* on the app's HTTP ingress (``app.asgi``) with
    the metrics of *registry*, in the text format the scraper asks for (Prometheus or
    OpenMetrics).

    The page needs no authentication (as is usual for ``/metrics``): serve the ingress
    only where scrapers, not strangers, reach it, or route the path away in your proxy.

    :param app: the app whose ingress serves the page
    :param registry: the registry to expose (default: ``prometheus_client.REGISTRY``);
        register a :class:`ReactorCollector` with it
    :param path: where (default: ``/metrics``)
    :raises ModuleNotFoundError: prometheus-client is not installed
    :raises ValueError: *path* is routed already on the ingress
    """
    exposition: Any = import_extra("prometheus_client.exposition", extra="prometheus")
    if registry is None:
        registry = import_extra("prometheus_client", extra="prometheus").REGISTRY

    def render(accept: str | None) -> tuple[bytes, str]:
        encoder, content_type = exposition.choose_encoder(accept or "")
        return encoder(registry), content_type

    app.asgi.page(path, render)
