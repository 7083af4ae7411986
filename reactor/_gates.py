"""Gates: what holds a subscription's deliveries before its runners take them.

A subscription with ``batch=``, ``rate_limit=`` or ``debounce=`` has a gate. The
dispatcher offers each event routed to the subscription to its gate instead of the
lane's inbox; the gate releases it into the inbox (a batch as one item) when its rule
allows, from the offer itself or from an alarm that the dispatcher's one alarm task
fires on the app's clock. Nothing here runs per event for a subscription without a
gate: routing such a subscription never looks at this module.

Events held by a gate are in flight (they count against ``max_in_flight``, which bounds
them) and in the subscription's ``pending`` and ``held`` stats.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable
from functools import partial
from itertools import pairwise
from typing import TYPE_CHECKING, Any, Protocol

from ._policies import Batch, Debounce, RateLimit
from .abc import Received

if TYPE_CHECKING:
    from ._subscription import Subscription


class Lane(Protocol):
    """What a gate uses of the dispatcher's lane (``reactor._dispatch.Lane``)."""

    sub: Subscription
    rate_limited: int
    debounced: int


__all__ = ["BatchGate", "DebounceGate", "Gate", "Gates", "RateGate", "make_gates"]


class Gates(Protocol):
    """What a gate asks of the dispatcher (its lanes are the dispatcher's own, which
    satisfy :class:`Lane`: the methods take them as ``Any``)."""

    def monotonic(self) -> float:
        """The app clock's monotonic time."""
        ...

    def release(self, lane: Any, item: Received) -> None:
        """Put *item* (a delivery, or a batch of them) in *lane*'s inbox."""
        ...

    def arm(self, gate: Gate, when: float) -> None:
        """Call ``gate.alarm()`` once the app clock's monotonic time reaches *when*."""
        ...

    def skip(self, lane: Any, received: Received) -> None:
        """Settle *received* for *lane* without running its handler (``"skipped"``)."""
        ...

    def fail(self, lane: Any, received: Received, error: Exception) -> None:
        """Dead-letter and settle *received* for *lane* without running its handler."""
        ...


class Gate:
    """The base of the gates: the lane, the dispatcher, and the one alarm it has set."""

    __slots__ = ("alarm_at", "gates", "lane", "out")

    def __init__(self, lane: Lane, gates: Gates) -> None:
        self.lane = lane
        self.gates = gates
        #: Where released events go: the next gate's offer, or the lane's inbox.
        self.out: Callable[[Received], None] = partial(gates.release, lane)
        #: When the alarm this gate set goes off (``None``: none is set). An earlier one
        #: replaces a later one; the dispatcher ignores alarms that were replaced.
        self.alarm_at: float | None = None

    @property
    def held(self) -> int:
        """How many events the gate holds."""
        raise NotImplementedError

    def offer(self, received: Received) -> None:
        """Take *received*, routed to the lane."""
        raise NotImplementedError

    def alarm(self, now: float) -> None:
        """The alarm this gate set went off at *now*."""
        raise NotImplementedError

    def flush(self) -> None:
        """Release what the gate holds without waiting for its rule (the app drains).

        A rate limit keeps its rate: it releases nothing here.
        """

    def reset(self) -> None:
        """Forget what the gate held in a previous run of the app."""
        self.alarm_at = None

    def arm(self, when: float) -> None:
        """Set the alarm for *when*, unless one is set for earlier."""
        if self.alarm_at is None or when < self.alarm_at:
            self.alarm_at = when
            self.gates.arm(self, when)


class BatchGate(Gate):
    """Gathers events into batches of ``max_size``, or fewer after ``max_wait``."""

    __slots__ = ("max_size", "max_wait", "pending", "since")

    def __init__(self, lane: Lane, gates: Gates, batch: Batch) -> None:
        super().__init__(lane, gates)
        self.max_size = batch.max_size
        self.max_wait = batch.max_wait
        self.pending: list[Received] = []
        #: When the oldest pending event arrived.
        self.since = 0.0

    @property
    def held(self) -> int:
        return len(self.pending)

    def offer(self, received: Received) -> None:
        pending = self.pending
        pending.append(received)
        if len(pending) >= self.max_size:
            self._release()
        elif len(pending) == 1:
            self.since = now = self.gates.monotonic()
            self.arm(now + self.max_wait)

    def alarm(self, now: float) -> None:
        if not self.pending:
            return
        due = self.since + self.max_wait
        if now >= due:
            self._release()
        else:
            self.arm(due)

    def flush(self) -> None:
        if self.pending:
            self._release()

    def reset(self) -> None:
        super().reset()
        self.pending = []

    def _release(self) -> None:
        batch, self.pending = self.pending, []
        # The inbox of a batch lane holds batches: the runner hands each to the handler
        # as one call (Dispatcher._deliver_batch).
        self.out(_as_item(batch))


def _as_item(batch: list[Received]) -> Received:
    # A batch travels through the lane's inbox and the runner as one item; only
    # Dispatcher._deliver_batch (through _batch_of()) looks inside it.
    return batch  # type: ignore[return-value]


#: A token, less a rounding error.
_WHOLE = 1.0 - 1e-9


class RateGate(Gate):
    """A token bucket: releases events at ``per_second``, up to ``burst`` at once."""

    __slots__ = ("burst", "pending", "per_second", "stamp", "tokens")

    def __init__(self, lane: Lane, gates: Gates, limit: RateLimit) -> None:
        super().__init__(lane, gates)
        self.per_second = limit.per_second
        self.burst = limit.burst
        self.pending: deque[Received] = deque()
        self.tokens = float(self.burst)
        self.stamp: float | None = None

    @property
    def held(self) -> int:
        return len(self.pending)

    def _take(self, now: float) -> bool:
        if self.stamp is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.per_second)
        self.stamp = now
        # (Within a rounding error of a whole token: the alarm set for the moment the
        # bucket holds one must find it, or it would be set again for the same moment.)
        if self.tokens >= _WHOLE:
            self.tokens = max(0.0, self.tokens - 1.0)
            return True
        return False

    def offer(self, received: Received) -> None:
        if not self.pending and self._take(self.gates.monotonic()):
            self.out(received)
            return
        self.pending.append(received)
        self.lane.rate_limited += 1
        self._arm_next()

    def alarm(self, now: float) -> None:
        pending = self.pending
        while pending and self._take(now):
            self.out(pending.popleft())
        if pending:
            self._arm_next()

    def _arm_next(self) -> None:
        # When the bucket next holds a whole token (stamp is set: _take() ran).
        # At least a microsecond on: a wait shorter than the clock's resolution would set
        # the alarm again and again for the same moment.
        assert self.stamp is not None
        self.arm(self.stamp + max(1e-6, (1.0 - self.tokens) / self.per_second))

    def reset(self) -> None:
        super().reset()
        self.pending.clear()
        self.tokens = float(self.burst)
        self.stamp = None


def _source_and_subject(event: object) -> Hashable:
    return (event.source, event.subject)  # type: ignore[attr-defined]


class DebounceGate(Gate):
    """Holds the last event of each key until ``window`` passes without another."""

    __slots__ = ("held_by_key", "key", "window")

    def __init__(self, lane: Lane, gates: Gates, debounce: Debounce) -> None:
        super().__init__(lane, gates)
        self.window = debounce.window
        self.key: Callable[..., Hashable] = debounce.key or _source_and_subject
        #: Each key's held event and when its window ends. The window is the same for
        #: every key and a new event moves its key to the end: the order is due order.
        self.held_by_key: dict[Hashable, tuple[Received, float]] = {}

    @property
    def held(self) -> int:
        return len(self.held_by_key)

    def offer(self, received: Received) -> None:
        try:
            key = self.key(received.event)
            hash(key)  # (a dict's pop() only hashes the key when the dict is not empty)
            earlier = self.held_by_key.pop(key, None)
        except Exception as exc:  # the key function raised, or returned something unhashable
            self.gates.fail(self.lane, received, exc)
            return
        if earlier is not None:
            self.lane.debounced += 1
            self.gates.skip(self.lane, earlier[0])
        due = self.gates.monotonic() + self.window
        self.held_by_key[key] = (received, due)
        self.arm(due)

    def alarm(self, now: float) -> None:
        held = self.held_by_key
        while held:
            key = next(iter(held))
            received, due = held[key]
            if due > now:
                self.arm(due)
                return
            del held[key]
            self.out(received)

    def flush(self) -> None:
        held, self.held_by_key = self.held_by_key, {}
        for received, _ in held.values():
            self.out(received)

    def reset(self) -> None:
        super().reset()
        self.held_by_key = {}


def make_gates(lane: Lane, gates: Gates) -> tuple[Gate, ...]:
    """The gates of *lane*'s subscription, first first: a debounce, then a rate limit,
    then a batch, each releasing into the next; none for a subscription without them."""
    sub = lane.sub
    chain: list[Gate] = []
    if sub.debounce is not None:
        chain.append(DebounceGate(lane, gates, sub.debounce))
    if sub.rate_limit is not None:
        chain.append(RateGate(lane, gates, sub.rate_limit))
    if sub.batch is not None:
        chain.append(BatchGate(lane, gates, sub.batch))
    for gate, after in pairwise(chain):
        gate.out = after.offer
    return tuple(chain)
