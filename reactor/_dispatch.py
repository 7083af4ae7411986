"""The hot path: routing events to subscription lanes, running handlers, settling.

Data flow::

    queue.get_batch() ──► Dispatcher._route() ──► Lane.inbox (one per subscription)
          Router: index + │ counts open deliveries        │ a lane with work and room
          bounded cache   │ on the Received               │ under `concurrency` waits
                          ▼                               ▼ in the ready line
                 in-flight bound               runners (shared by all lanes) take one
                                               delivery of the first ready lane each:
                                               _deliver(): timeout, retry, dead letter
                                                          │
                            _settle() ◄───────────────────┘
                            last delivery of an event → ack, receipt, room for more

A subscription with ``batch=``, ``rate_limit=`` or ``debounce=`` has gates
(:mod:`reactor._gates`) in front of its inbox: routing offers its events to them, and they
release them into the inbox when their rule allows, from the offer or from one alarm task
on the app's clock. A batch lane's inbox holds whole batches, each one handler call.

No task is created per event or per delivery, and none per subscription: a pool of
runner tasks, shared by every lane, serves the lanes in the ready line in turn. A
runner takes the first lane and runs its deliveries back to back (up to ``STREAK``), then
sends it to the back of the line. A runner that takes a delivery while more are ready
wakes one more runner (or starts one) before running the handler, so handlers that
suspend run concurrently (each lane up to its ``concurrency``), while handlers that never
suspend are run back-to-back by one runner without any task switch, however many
subscriptions the events go to: 10,000 subscriptions that get one event each cost no
more task switches than one that gets them all.

Why one module of about 850 lines: this is the hot path, and its pieces (routing to
lanes, the runners, retries, settlement) share per-event state on the :class:`Received` and
call each other on every delivery; the fast path inlines them on purpose, so they stay
side by side where one reading shows the whole cost of an event.
"""

from __future__ import annotations

import heapq
import logging
import math
import sys
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from contextvars import ContextVar
from datetime import datetime
from time import perf_counter
from typing import TYPE_CHECKING, Literal, cast

import anyio
import attrs
from anyio.abc import TaskGroup, TaskStatus
from anyio.lowlevel import checkpoint

from ._clock import Clock
from ._event import Event
from ._exceptions import (
    DataValidationError,
    DeliveryTimeout,
    EventExpired,
    HandlerCancelled,
    InternalTaskDied,
    RedeliveryLimitExceeded,
)
from ._outcomes import DeadLetter, DeadLetters, Outcome, describe_error
from ._policies import Backoff, BatchFailed
from ._receipts import Receipts
from ._routing import Router
from ._stats import LatencyHistogram, SubscriptionStats
from .abc import EventQueue, Received

if TYPE_CHECKING:
    from ._gates import Gate, Gates
    from ._subscription import Subscription

__all__ = ["Delivery", "Dispatcher", "Lane", "current_delivery"]

logger = logging.getLogger("reactor.dispatch")

#: Events taken from the queue per batch.
BATCH_SIZE = 256
#: Deliveries a runner runs back-to-back before yielding to other tasks. One runner
#: serves every subscription, so a streak spans what each subscription's own workers
#: used to run in 64 deliveries each; a shorter one costs throughput in loop iterations.
STREAK = 256
#: Seconds between looks at the queue's depth while a drain waits for nothing else.
_DEPTH_POLL = 0.05

_Status = Literal["ok", "failed", "timed_out", "skipped"]

OK_ONCE = Outcome(status="ok", attempts=1)

#: What an ordered lane's keys map a key that is not being delivered to (a sentinel).
_FREE: deque[Received] = deque()

#: The failure of an event of an ordered batch held back behind an earlier event of its key.
_HELD_BACK = Exception("held back behind an earlier event of its key")

#: The waits between attempts to store settlements that the queue failed to store.
SETTLE_BACKOFF = Backoff(initial=0.05, maximum=5.0, jitter=False)


def _cancelled_by_scope() -> bool:
    """Whether the calling task itself is being cancelled.

    True when a cancel scope around it has been cancelled (the app's shutdown, a
    delivery's timeout) or, on asyncio, when the task was cancelled directly (the event
    loop's runner does that to every task it shuts down). A cancellation exception that
    reaches reactor otherwise did not come from either: a handler awaited a future or
    task that someone else cancelled. Called on failure paths only.
    """
    if anyio.current_effective_deadline() == -math.inf:
        return True
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return False
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no asyncio loop in this thread: trio
        return False
    return task is not None and task.cancelling() > 0


def _event_class() -> Callable[[], anyio.Event]:
    """The running backend's :class:`anyio.Event` class, to create events without
    ``anyio.Event()`` looking the backend up each time (about 2 µs, where a runner that
    goes idle between events creates one per event)."""
    cls = type(anyio.Event())
    return cls if issubclass(cls, anyio.Event) else anyio.Event


def _batch_of(item: Received) -> list[Received]:
    """The batch that a batch lane's inbox item is (see ``reactor._gates.BatchGate``)."""
    return cast("list[Received]", item)


def _stray_cancellation(lane: Lane, cancellation: BaseException) -> HandlerCancelled:
    error = HandlerCancelled(lane.name)
    error.__cause__ = cancellation
    return error


@attrs.frozen(kw_only=True)
class Delivery:
    """The delivery a handler is running, as returned by :func:`current_delivery`.

    :ivar event: the event being handled
    :ivar consumer: the name of the subscription whose handler runs
    :ivar attempt: how many times the queue has handed this event out: 1 the first
        time; a durable queue hands an event out again after the process crashed or
        stopped before every consumer settled it, and then this is 2, 3, ...
    :ivar retries: how many times this consumer's handler already failed on this event
        since the queue handed it out (0 on the first call; raised by the
        subscription's :class:`~reactor.Retry` policy)
    """

    event: Event
    consumer: str
    attempt: int
    retries: int

    @property
    def redelivered(self) -> bool:
        """Whether the handler may have run on this event before (a retry or a redelivery)."""
        return self.attempt > 1 or self.retries > 0


class _Slot:
    """What one runner is running, read lazily by :func:`current_delivery`.

    Each runner task sets the context variable once to its own slot and then updates
    its attributes per delivery, instead of setting the variable per delivery.
    """

    __slots__ = ("lane", "received", "retries")

    def __init__(self) -> None:
        self.lane: Lane | None = None
        self.received: Received | None = None
        self.retries = 0


_slot: ContextVar[_Slot] = ContextVar("reactor.delivery")


def current_delivery() -> Delivery:
    """Return the delivery that the calling handler is running.

    Call it from a handler (or from code the handler awaits, or a task the handler
    starts and waits for) to learn the attempt number of a redelivered event::

        @app.subscribe("payment.captured")
        async def book(event: Event) -> None:
            if reactor.current_delivery().redelivered:
                ...  # this handler may have run on this event before: check first

    :raises RuntimeError: called outside a handler
    """
    slot = _slot.get(None)
    if slot is None or slot.received is None or slot.lane is None:
        raise RuntimeError("current_delivery() is only available while a handler runs")
    return Delivery(
        event=slot.received.event,
        consumer=slot.lane.name,
        attempt=slot.received.attempt,
        retries=slot.retries,
    )


class Lane:
    """The runtime side of a subscription: its inbox, its place in the ready line and
    its counters."""

    __slots__ = (
        "batch",
        "batched",
        "closed",
        "concurrency",
        "dead_lettered",
        "debounced",
        "delivered",
        "expired",
        "failed",
        "fast",
        "gate",
        "gates",
        "handler",
        "inbox",
        "inline",
        "key_fn",
        "keys",
        "name",
        "rate_limited",
        "ready",
        "retried",
        "retry",
        "room",
        "sub",
        "timed_out",
        "timeout",
        "where",
    )

    def __init__(self, sub: Subscription, gates: Gates) -> None:
        self.sub = sub
        self.name = sub.name
        # The handler with the subscription's adapters (typed data, worker threads); the
        # app composes its middleware around it.
        self.handler = sub._call
        self.where = sub.where
        #: Whether the handler takes batches: the inbox then holds lists of deliveries.
        self.batch = sub.batch is not None
        #: The ordering key of deliveries one by one (a batch lane orders its batches
        #: itself, by ``sub.ordered_by``: the runner tests this before the batch flag).
        self.key_fn = None if self.batch else sub.ordered_by
        self.timeout = sub.timeout
        self.retry = sub.retry
        # Batches of an ordered subscription run one at a time, so that the events of
        # one key are handled in order across batches too.
        ordered_batches = self.batch and sub.ordered_by is not None
        self.concurrency = 1 if ordered_batches else sub.concurrency
        #: No timeout, no ordering and no batches: the worker runs the handler inline.
        self.inline = self.timeout is None and self.key_fn is None and not self.batch
        #: The runner takes the inline path (it does not while the dispatcher checks
        #: expiries: Dispatcher._note_expiring()).
        self.fast = self.inline
        self.rate_limited = self.debounced = self.batched = 0
        #: The gates that hold deliveries before the inbox (batch=, rate_limit=,
        #: debounce=), first first, and the first, which routing offers events to.
        self.gates: tuple[Gate, ...] = ()
        if sub.batch is not None or sub.rate_limit is not None or sub.debounce is not None:
            from ._gates import make_gates  # (only here: most apps have no gates)

            self.gates = make_gates(self, gates)
        self.gate = self.gates[0] if self.gates else None
        self.inbox: deque[Received] = deque()
        #: The keys being delivered (``ordered_by``), each with the deliveries that wait
        #: behind it (``None`` until one does).
        self.keys: dict[Hashable, deque[Received] | None] = {}
        #: How many more deliveries may run at once: ``concurrency`` less those running
        #: (each with its attempts and the waits between them; with ``ordered_by``, each
        #: runner's chain of deliveries of one key counts once).
        self.room = self.concurrency
        #: Whether the lane is in the dispatcher's ready line (once at most).
        self.ready = False
        self.closed = False
        self.delivered = self.failed = self.timed_out = self.retried = self.dead_lettered = 0
        self.expired = 0

    def reset(self) -> None:
        """Forget queued and running deliveries of a previous run of the app."""
        self.inbox.clear()
        self.keys.clear()
        for gate in self.gates:
            gate.reset()
        self.room = self.concurrency
        self.ready = False

    @property
    def running(self) -> int:
        """Deliveries being run (batches, for a batch handler)."""
        return self.concurrency - self.room

    @property
    def held(self) -> int:
        """Events held by the gates (a batch filling, a rate limit, a debounce window)."""
        return sum(gate.held for gate in self.gates) if self.gates else 0

    @property
    def busy(self) -> bool:
        """Whether the lane has anything queued, held or running."""
        return bool(self.running or self.inbox or self.held)

    def stats(self) -> SubscriptionStats:
        """Return this lane's counters."""
        parked = sum(len(waiting) for waiting in self.keys.values() if waiting)
        running = self.running
        if self.batch:
            queued = sum(len(_batch_of(item)) for item in self.inbox)
            running = self.batched
        else:
            queued = len(self.inbox)
        held = self.held
        return SubscriptionStats(
            name=self.name,
            pattern=self.sub.pattern,
            delivered=self.delivered,
            failed=self.failed,
            timed_out=self.timed_out,
            retried=self.retried,
            dead_lettered=self.dead_lettered,
            pending=queued + parked + running + held,
            running=running,
            held=held,
            rate_limited=self.rate_limited,
            debounced=self.debounced,
            expired=self.expired,
        )


class Dispatcher:
    """Routes events from the queue to every matching lane and settles them."""

    def __init__(
        self,
        *,
        queue: EventQueue,
        clock: Clock,
        dead_letters: DeadLetters,
        max_in_flight: int,
        on_failure: Callable[[], object] = lambda: None,
    ) -> None:
        self._queue = queue
        self._on_failure = on_failure
        self._cancelled: type[BaseException] = BaseException
        self._attempt_limit = sys.maxsize
        self._clock = clock
        self._dead_letters = dead_letters
        self._max_in_flight = max_in_flight
        # A dispatcher held at the in-flight bound takes events again once this many have
        # been settled, not at the first: it then takes them in batches, not one by one as
        # each event is settled (a loop turn each), when the handlers keep up with nothing.
        self._room_quantum = max(1, min(BATCH_SIZE, max_in_flight // 8))
        self._needs_ack = queue.needs_ack
        self._stores_dead_letters = queue.stores_dead_letters
        # The active subscriptions' lanes by consumer name, in subscription order.
        self._lanes: dict[str, Lane] = {}
        self._router: Router[Lane] = Router()
        # The router's cache, read directly on the hot path.
        self._routes = self._router.cache
        # Lanes with queued deliveries and room under their concurrency, in the order
        # they became ready; runners serve the first and send it to the back. A lane is
        # in it at most once (Lane.ready); one that a runner finds with nothing to take
        # leaves it then.
        self._ready: deque[Lane] = deque()
        self._idle_runners: list[anyio.Event] = []
        self._new_event: Callable[[], anyio.Event] = anyio.Event
        # Whether the queue routes events through _route_now() (EventQueue.connect), and
        # the room that the dispatcher's own get_batch() call, waiting, may still take.
        self._direct = False
        self._reserved = 0
        # Runners that will look at the ready line before they run a handler: woken (or
        # started) and not yet running, or yielding between two deliveries. While there
        # is one, a newly ready lane needs no other runner.
        self._helpers = 0
        self._tg: TaskGroup | None = None
        self.in_flight = 0
        self._room: anyio.Event | None = None
        self._idle: anyio.Event | None = None
        self.receipts = Receipts()
        # The awaited events themselves (a dict that lives as long as the dispatcher): the
        # hot path tests it without a lookup through `receipts`.
        self._awaited = self.receipts.waiting
        self._acks: list[Received] = []
        self._progress: list[tuple[Received, str]] = []
        self._settle_wakeup: anyio.Event | None = None
        self._acking = False
        # How many of the acks are in the settle() call under way: out of `_acks`, still
        # unacked, so they count against the in-flight bound too while settlements fail.
        self._storing = 0
        #: Consecutive failed settle() calls; while not zero, unacked events count
        #: against the in-flight bound, so a queue that cannot store acks holds intake.
        self.settle_failures = 0
        #: A KeyboardInterrupt or SystemExit that ended one of the dispatcher's tasks:
        #: the app raises it once it has unwound.
        self.fatal: BaseException | None = None
        self.latency = LatencyHistogram()
        self._record_latency = self.latency.record
        # Counters of lanes whose subscription was cancelled, so that totals never shrink.
        self._retired = dict.fromkeys(
            (
                "delivered",
                "failed",
                "timed_out",
                "retried",
                "dead_lettered",
                "debounced",
                "expired",
            ),
            0,
        )
        # Whether an event with an expiry was routed in this run: from then on, every
        # delivery checks its event's expiry when it starts, outside the runners' inline
        # path (before, none pays for it: see _note_expiring()).
        self._expiring = False
        # The gates' alarms: (when, order, gate), on the app clock's monotonic time, and
        # what wakes the one alarm task when an earlier alarm is set.
        self._alarms: list[tuple[float, int, Gate]] = []
        self._alarm_count = 0
        self._alarm_wakeup: anyio.Event | None = None
        self._alarm_task = False
        self._retiring: dict[Lane, None] = {}

    def use_queue(self, queue: EventQueue) -> None:
        """Take events from *queue* from the next run on (the app is not running).

        What the dispatcher learnt from the previous queue goes with it: the settlements
        it failed to store (their tokens mean nothing to another queue, which hands the
        unacknowledged events out again if it is the same durable store).
        """
        assert self._tg is None, "the queue of a running dispatcher cannot change"
        self._queue = queue
        self._needs_ack = queue.needs_ack
        self._stores_dead_letters = queue.stores_dead_letters
        self._acks.clear()
        self._progress.clear()
        self.settle_failures = 0

    # -- subscriptions --------------------------------------------------------------

    @property
    def lanes(self) -> tuple[Lane, ...]:
        """The lanes of the active subscriptions, in subscription order."""
        return tuple(self._lanes.values())

    def lane(self, name: str) -> Lane | None:
        """The lane of the active subscription named *name*, or ``None``."""
        return self._lanes.get(name)

    def add(self, sub: Subscription) -> Lane:
        """Start routing to *sub*.

        :raises ValueError: another active subscription has the same name
        """
        if sub.name in self._lanes:
            raise ValueError(
                f"a consumer named {sub.name!r} is already subscribed; "
                "consumer names identify outcomes and dead letters, so pass a unique name="
            )
        lane = Lane(sub, self)
        if self._expiring:
            lane.fast = False
        self._lanes[sub.name] = lane
        self._router.add(sub, lane)
        return lane

    def remove(self, lane: Lane) -> None:
        """Stop routing to *lane*; its queued deliveries still run."""
        del self._lanes[lane.name]
        self._router.remove(lane)
        lane.closed = True
        self._retiring[lane] = None
        self._retire_when_done(lane)

    def _retire_when_done(self, lane: Lane) -> None:
        # A cancelled lane counts towards the totals until its last delivery is done; then
        # its final counters are folded into the totals and the lane is forgotten.
        if lane.busy or lane not in self._retiring:
            return
        del self._retiring[lane]
        retired = self._retired
        for name in retired:
            retired[name] += getattr(lane, name)

    def totals(self) -> dict[str, int]:
        """Return the counters summed over every subscription the app ever had."""
        totals = dict(self._retired)
        for lane in (*self._lanes.values(), *self._retiring):
            for name in totals:
                totals[name] += getattr(lane, name)
        return totals

    # -- the dispatch loop ----------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Dispatch until cancelled; report readiness through *task_status*."""
        for lane in self._lanes.values():
            lane.reset()
        for lane in list(self._retiring):
            # What a cancelled lane had queued when the previous run stopped is gone.
            lane.reset()
            self._retire_when_done(lane)
        self._ready.clear()
        self._idle_runners.clear()
        self._alarms.clear()
        self._alarm_task = False
        self._helpers = 0
        self.in_flight = 0
        self._expiring = False
        for lane in (*self._lanes.values(), *self._retiring):
            lane.fast = lane.inline
        self._cancelled = anyio.get_cancelled_exc_class()
        self._new_event = _event_class()
        self.fatal = None
        limit = self._queue.max_redeliveries
        self._attempt_limit = sys.maxsize if limit is None else 1 + limit
        queue = self._queue
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                if self._needs_ack:
                    tg.start_soon(
                        self._guarded, "settlement", self._settle_batches, name="reactor settlement"
                    )
                self._direct = queue.connect(self._route_now)
                task_status.started()
                try:
                    await self._dispatch_loop()
                except BaseException as exc:
                    self._died("dispatcher", exc)
                    raise
        finally:
            queue.connect(None)
            self._direct = False
            self._tg = None

    def _died(self, task: str, exc: BaseException) -> None:
        """Handle one of the dispatcher's own tasks ending with *exc*, which the caller
        re-raises unless this raises something else.

        The app's own cancellation passes through. Anything else stops the app: it is
        told first (so that it accepts no more events), then an error naming the task
        propagates through the app's task group and out of ``async with app:``.
        """
        stray = isinstance(exc, self._cancelled)
        if stray and _cancelled_by_scope():
            return
        self._on_failure()
        if isinstance(exc, Exception):
            logger.critical("reactor's %s task died; the app stops", task, exc_info=exc)
            return
        if stray:
            # A stray cancellation would end the task quietly (asyncio) or pass for the
            # app's own cancellation: turn it into an error that says what happened.
            logger.critical("reactor's %s task died; the app stops", task, exc_info=exc)
            why = f"a cancellation that reactor did not cause: {describe_error(exc)!r}"
        else:
            # KeyboardInterrupt or SystemExit (a handler called sys.exit()): the process
            # is to stop. Raised as they are, asyncio would tear the event loop down under
            # every task; an error unwinds the app in order (settlements are flushed), and
            # the app raises the original once it is out.
            logger.warning("%r was raised in reactor's %s task; the app stops", exc, task)
            self.fatal = exc
            why = repr(exc)
        raise InternalTaskDied(f"reactor's {task} task ended with {why}") from exc

    async def _dispatch_loop(self) -> None:
        queue = self._queue
        route = self._route
        while True:
            # Take no more than may be in flight, so that whatever the dispatcher has not
            # routed yet stays visible (and countable) in the queue.
            room = self._max_in_flight - self.in_flight
            if self.settle_failures:
                room -= len(self._acks) + self._storing
            if room < self._room_quantum:
                wakeup = self._room = self._new_event()
                await wakeup.wait()
                continue
            limit = min(room, BATCH_SIZE)
            if self._direct and not queue.statistics().depth:
                # get_batch() will wait, and meanwhile the queue routes events directly
                # (_route_now): they may take no more than the room that this call
                # leaves, or the events it returns would overrun the in-flight bound. It
                # asks for half of the room, so that the other half is theirs.
                limit = self._reserved = min(BATCH_SIZE, max(1, room // 2))
            try:
                batch = await queue.get_batch(limit)
            finally:
                self._reserved = 0
            for received in batch:
                route(received)
            await checkpoint()

    def _route_now(self, received: Received) -> bool:
        """The queue's direct route (:meth:`EventQueue.connect`): route *received* now,
        from the publisher's task, unless the in-flight bound is reached."""
        if self.in_flight + self._reserved >= self._max_in_flight or self.settle_failures:
            return False
        self._route(received)
        return True

    def _route(self, received: Received) -> None:
        event = received.event
        key = (event.type, event.source)
        found = self._routes.get(key)
        lanes, filtered = self._router.lookup(key) if found is None else found
        only = received.only
        if filtered or only is not None or received.completed:
            completed = received.completed
            lanes = tuple(
                lane
                for lane in lanes
                if (only is None or lane.name in only)
                and lane.name not in completed
                and (lane.where is None or self._accepts(lane, received))
            )
            if only is not None and not any(name in self._lanes for name in only):
                logger.warning(
                    "event %s was sent to %s only, and no such consumer is subscribed; "
                    "nobody handles it",
                    event.id,
                    ", ".join(sorted(only)),
                    extra={"event_id": event.id},
                )
        received._open = len(lanes)
        self.in_flight += 1
        if not lanes:
            self._event_done(received)
            return
        if received.attempt > self._attempt_limit:
            self._give_up(received, lanes)
            return
        if event.extensions and self._expired_at_route(received, lanes):
            return
        ready = self._ready
        if filtered:
            # (A route to a gated lane is always filtered: see Router.add.)
            for lane in lanes:
                gate = lane.gate
                if gate is not None:
                    gate.offer(received)
                    continue
                lane.inbox.append(received)
                if not lane.ready and lane.room:
                    lane.ready = True
                    ready.append(lane)
        else:
            for lane in lanes:
                lane.inbox.append(received)
                if not lane.ready and lane.room:
                    lane.ready = True
                    ready.append(lane)
        if ready and not self._helpers:
            self._kick()

    # -- gates (batch=, rate_limit=, debounce=): what _gates.Gates asks of the dispatcher

    def monotonic(self) -> float:
        """The app clock's monotonic time."""
        return self._clock.monotonic()

    def release(self, lane: Lane, item: Received) -> None:
        """Put *item*, released by one of *lane*'s gates, in its inbox."""
        lane.inbox.append(item)
        if not lane.ready and lane.room:
            lane.ready = True
            self._ready.append(lane)
        if self._ready and not self._helpers:
            self._kick()

    def arm(self, gate: Gate, when: float) -> None:
        """Call ``gate.alarm()`` once the app clock reaches *when* (the one alarm task)."""
        self._alarm_count += 1
        heapq.heappush(self._alarms, (when, self._alarm_count, gate))
        if self._alarms[0][2] is gate and self._alarm_wakeup is not None:
            self._alarm_wakeup.set()
        if not self._alarm_task and self._tg is not None:
            self._alarm_task = True
            self._tg.start_soon(self._guarded, "gates", self._ring_alarms, name="reactor gates")

    def skip(self, lane: Lane, received: Received) -> None:
        """Settle *received* for *lane* without its handler (a debounced event)."""
        self._settle(lane, received, "skipped", 0, None)

    def fail(self, lane: Lane, received: Received, error: Exception) -> None:
        """Dead-letter *received* for *lane* without running its handler."""
        self._dead_letter(lane, received.event, error, attempts=0, first_failed=None)
        self._settle(lane, received, "failed", 0, error)

    def flush_gates(self) -> None:
        """Release what every gate holds, but for the rate limits (the app drains)."""
        for lane in (*self._lanes.values(), *self._retiring):
            for gate in lane.gates:
                gate.flush()

    async def _ring_alarms(self) -> None:
        try:
            await self._ring_alarms_forever()
        finally:
            self._alarm_task = False

    async def _ring_alarms_forever(self) -> None:
        clock = self._clock
        alarms = self._alarms
        while True:
            now = clock.monotonic()
            while alarms and alarms[0][0] <= now:
                when, _, gate = heapq.heappop(alarms)
                if gate.alarm_at == when:  # (not replaced by an earlier one)
                    gate.alarm_at = None
                    gate.alarm(now)
            wakeup = self._alarm_wakeup = self._new_event()
            try:
                if alarms:
                    with clock.deadline_scope(alarms[0][0]):
                        await wakeup.wait()
                else:
                    await wakeup.wait()
            finally:
                self._alarm_wakeup = None

    def _give_up(self, received: Received, lanes: tuple[Lane, ...]) -> None:
        """Dead-letter a poison event for *lanes* without running their handlers."""
        limit = self._queue.max_redeliveries
        assert limit is not None
        error = RedeliveryLimitExceeded(received.attempt, limit)
        for lane in lanes:
            self._dead_letter(lane, received.event, error, attempts=0, first_failed=None)
            self._settle(lane, received, "failed", 0, error)

    def _expired_at_route(self, received: Received, lanes: tuple[Lane, ...]) -> bool:
        """Note an event with an expiry; dead-letter it for *lanes* if it has expired."""
        expires_at = received.event.expires_at
        if expires_at is None:
            return False
        if not self._expiring:
            self._note_expiring()
        if self._clock.now() < expires_at:
            return False
        for lane in lanes:
            self._drop_expired(lane, received, expires_at)
        return True

    def _note_expiring(self) -> None:
        """Check the expiry of every delivery as it starts, from now on in this run.

        The check is in :meth:`_deliver` and :meth:`_deliver_batch`: the lanes whose
        deliveries the runners inline leave that path, which then stays free of it.
        """
        self._expiring = True
        for lane in (*self._lanes.values(), *self._retiring):
            lane.fast = False

    def _expire(self, lane: Lane, received: Received) -> bool:
        """Dead-letter and settle *lane*'s delivery of *received* if its event has
        expired, before the delivery starts; return whether it had."""
        expires_at = received.event.expires_at
        if expires_at is None or self._clock.now() < expires_at:
            return False
        self._drop_expired(lane, received, expires_at)
        return True

    def _drop_expired(self, lane: Lane, received: Received, expires_at: datetime) -> None:
        error = EventExpired(expires_at)
        lane.expired += 1
        self._dead_letter(lane, received.event, error, attempts=0, first_failed=None)
        self._settle(lane, received, "failed", 0, error)

    def _accepts(self, lane: Lane, received: Received) -> bool:
        assert lane.where is not None
        try:
            return bool(lane.where(received.event))
        except Exception as exc:
            # The filter is the consumer's code: its failure is that consumer's failed
            # delivery, settled at once (no attempt was made).
            self._dead_letter(lane, received.event, exc, attempts=0, first_failed=None)
            if self._awaited:
                self.receipts.note(
                    received.event, lane.name, Outcome(status="failed", attempts=0, error=exc)
                )
            return False

    def _started(self, received: Received) -> None:
        # Latency is measured once per event, at its first handler start: a slow consumer
        # shows in its subscription's `pending` count, not in the dispatch latency.
        received._started = True
        self._record_latency(perf_counter() - received.enqueued_at)

    def _kick(self) -> None:
        """Get one more runner onto the ready line: wake an idle one, or start one."""
        if self._idle_runners:
            self._helpers += 1
            self._idle_runners.pop().set()
        elif self._tg is not None:
            self._helpers += 1
            self._tg.start_soon(self._runner, name="reactor consumers")

    async def _runner(self) -> None:
        ready = self._ready
        idle = self._idle_runners
        needs_ack = self._needs_ack
        cancelled = self._cancelled
        receipts = self.receipts
        awaited = self._awaited
        record_latency = self._record_latency
        new_event = self._new_event
        slot = _Slot()
        _slot.set(slot)
        self._helpers -= 1
        streak = 0
        error: Exception | None
        try:
            while True:
                if not ready:
                    streak = 0
                    wake = new_event()
                    idle.append(wake)
                    try:
                        await wake.wait()
                    except BaseException:
                        if wake in idle:
                            idle.remove(wake)
                        else:
                            self._helpers -= 1
                        raise
                    self._helpers -= 1
                    continue
                lane = ready[0]
                inbox = lane.inbox
                if not inbox or not lane.room:
                    # Nothing to take from it now: it rejoins the line when a delivery is
                    # routed to it, or when one of its running deliveries ends.
                    ready.popleft()
                    lane.ready = False
                    continue
                # The lane's turn: one delivery, and one more for every 16 it has queued
                # (up to the end of the streak). It goes to the back of the line when the
                # turn starts, if it has more and room for them: the deliveries of a burst
                # run in the order they were routed, event by event across the lanes,
                # while a deep backlog is still served in runs that cost one rotation each
                # 16 deliveries; and a runner woken while this one waits in a handler takes
                # the next lane's deliveries.
                ready.popleft()
                if len(inbox) > 1 and lane.room > 1:
                    ready.append(lane)  # (lane.ready stays True)
                else:
                    lane.ready = False
                turn = len(inbox) >> 4
                if turn >= STREAK - streak:
                    turn = STREAK - 1 - streak
                slot.lane = lane
                while True:
                    received = slot.received = inbox.popleft()
                    lane.room -= 1
                    if not self._helpers and ready:
                        # This handler may suspend: another runner takes what else is ready.
                        self._kick()
                    if lane.fast:
                        # _deliver(), _started() and _settle() inlined: no coroutine and no
                        # call per delivery on the common path.
                        if not received._started:
                            received._started = True
                            record_latency(perf_counter() - received.enqueued_at)
                        try:
                            await lane.handler(received.event)
                        except Exception as exc:
                            error = exc
                        except cancelled as exc:
                            if _cancelled_by_scope():
                                raise
                            error = _stray_cancellation(lane, exc)
                        else:
                            error = None
                            lane.delivered += 1
                            if awaited:
                                receipts.note(received.event, lane.name, OK_ONCE)
                            received._open -= 1
                            if not received._open:
                                self._event_done(received)
                            elif needs_ack:
                                self._progress.append((received, lane.name))
                                self._wake_settler()
                        if error is not None:
                            # Recovered outside the except clause, so that a later attempt's
                            # error is not chained to this one as raised while handling it.
                            attempts = await self._recover(lane, received, error)
                            error = None
                            if attempts:
                                self._settle(lane, received, "ok", attempts, None)
                    elif lane.key_fn is not None:
                        await self._deliver_in_order(lane, received)
                    elif lane.batch:
                        await self._deliver_batch(lane, _batch_of(received), slot)
                    else:
                        await self._deliver(lane, received)
                    # (slot.lane stays: current_delivery() looks at slot.received first.)
                    slot.received = None
                    lane.room += 1
                    streak += 1
                    if turn and inbox and lane.room:
                        turn -= 1
                        continue
                    break
                # The turn is over: the lane rejoins the line if it has more.
                if inbox:
                    if not lane.ready and lane.room:
                        lane.ready = True
                        ready.append(lane)
                elif lane.closed:
                    self._retire_when_done(lane)
                if streak >= STREAK:
                    streak = 0
                    self._helpers += 1
                    try:
                        await checkpoint()
                    finally:
                        self._helpers -= 1
        except BaseException as exc:
            task = "consumer"
            if slot.received is not None and slot.lane is not None:
                task = f"consumer {slot.lane.name}"
            self._died(task, exc)
            raise
        finally:
            if slot.received is not None and slot.lane is not None:
                # Cut during a delivery (the app stops): it no longer runs.
                slot.lane.room += 1
            slot.received = slot.lane = None

    async def _deliver_in_order(self, lane: Lane, received: Received) -> None:
        """Run a delivery of an ordered lane, then those of its key that wait behind it.

        A delivery of a key that is being delivered waits in the key's line, which is
        only created then: a key delivered alone costs a dict entry. Without a timeout,
        the attempt is made here, as the runners' inline path makes it (no coroutine of
        its own), until an expiry is to be checked.
        """
        assert lane.key_fn is not None
        keys = lane.keys
        try:
            key = lane.key_fn(received.event)
            waiting = keys.get(key, _FREE)
        except Exception as exc:  # the key function raised, or returned something unhashable
            self._dead_letter(lane, received.event, exc, attempts=0, first_failed=None)
            self._settle(lane, received, "failed", 0, exc)
            return
        if waiting is not _FREE:
            # Another worker is on this key: it runs this delivery after the ones before it.
            if waiting is None:
                waiting = keys[key] = deque()
            waiting.append(received)
            return
        keys[key] = None
        slot = _slot.get()
        cancelled = self._cancelled
        error: Exception | None
        try:
            while True:
                if lane.timeout is not None or self._expiring:
                    await self._deliver(lane, received)
                else:
                    if not received._started:
                        self._started(received)
                    try:
                        await lane.handler(received.event)
                    except Exception as exc:
                        error = exc
                    except cancelled as exc:
                        if _cancelled_by_scope():
                            raise
                        error = _stray_cancellation(lane, exc)
                    else:
                        error = None
                        self._settle(lane, received, "ok", 1, None)
                    if error is not None:
                        # (Outside the except clause: see the runners' inline path.)
                        attempts = await self._recover(lane, received, error)
                        error = None
                        if attempts:
                            self._settle(lane, received, "ok", attempts, None)
                waiting = keys[key]
                if not waiting:
                    return
                received = slot.received = waiting.popleft()
        finally:
            del keys[key]

    async def _deliver_batch(self, lane: Lane, batch: list[Received], slot: _Slot) -> None:
        """Run one batch to its end: each event succeeds, or is retried then dead-lettered.

        The handler gets the events as one list. It succeeds for all of them by returning,
        fails some with :class:`BatchFailed` and all with any other exception (or a
        timeout). The failed ones are tried again together, after the backoff of the
        retry policy, each counting its own attempts; an event that exhausts them is
        dead-lettered. With ``ordered_by``, an event whose key's earlier event failed in
        the same call has not been handled in order: it is tried again after that one
        without counting an attempt, and succeeds only once that one has settled.
        """
        if self._expiring:
            batch = [received for received in batch if not self._expire(lane, received)]
            if not batch:
                return
        slot.received = batch[0]  # (current_delivery() in a batch handler: the first event)
        for received in batch:
            if not received._started:
                self._started(received)
        lane.batched += len(batch)
        try:
            await self._run_batch(lane, batch, slot)
        finally:
            lane.batched -= len(batch)
            slot.retries = 0

    async def _run_batch(self, lane: Lane, batch: list[Received], slot: _Slot) -> None:
        clock = self._clock
        retry = lane.retry
        tries = dict.fromkeys(batch, 0)
        pending = batch
        first_failed: datetime | None = None
        while True:
            events = [received.event for received in pending]
            error = await self._timed_attempt(lane, cast(Event, events))
            failures = self._batch_failures(lane, pending, error)
            retrying: list[Received] = []
            most = 0
            for received in pending:
                failure = failures.get(received)
                if failure is None:
                    self._settle(lane, received, "ok", tries[received] + 1, None)
                    continue
                if failure is _HELD_BACK:
                    retrying.append(received)  # (no attempt of its own was spent)
                    continue
                tries[received] += 1
                attempt = tries[received]
                if first_failed is None:
                    first_failed = clock.now()
                lane.failed += 1
                timed_out = isinstance(failure, DeliveryTimeout)
                if timed_out:
                    lane.timed_out += 1
                if attempt >= retry.attempts or not (timed_out or isinstance(failure, retry.on)):
                    self._dead_letter(lane, received.event, failure, attempt, first_failed)
                    status: _Status = "timed_out" if timed_out else "failed"
                    self._settle(lane, received, status, attempt, failure)
                    continue
                retrying.append(received)
                most = max(most, attempt)
            if not retrying:
                return
            delay = retry.backoff.delay(most) if most else 0.0
            logger.info(
                "consumer %s failed on %d event(s) of a batch of %d; retrying them in %.3g s",
                lane.name,
                len(retrying),
                len(pending),
                delay,
                extra={"consumer": lane.name},
            )
            lane.retried += len(retrying)
            await clock.sleep(delay)
            slot.retries = most
            pending = retrying

    def _batch_failures(
        self, lane: Lane, pending: list[Received], error: Exception | None
    ) -> dict[Received, Exception]:
        """Which events of a batch call failed, and why (:data:`_HELD_BACK`: held back
        behind an earlier event of the same key)."""
        if error is None:
            return {}
        if not isinstance(error, BatchFailed):
            failures = dict.fromkeys(pending, error)
        else:
            failures = {}
            by_id: dict[object, Received] = {}
            for received in pending:
                by_id[id(received.event)] = received
                by_id.setdefault(received.event.id, received)
            for item, cause in error.failures.items():
                found = by_id.get(item if isinstance(item, str) else id(item))
                if found is None:
                    unknown = ValueError(
                        f"the batch handler's BatchFailed names {item!r}, which is not an "
                        "event of this batch: the whole batch failed"
                    )
                    unknown.__cause__ = error
                    return dict.fromkeys(pending, unknown)
                failures[found] = (
                    error if cause is None or not isinstance(cause, Exception) else cause
                )
        key_fn = lane.sub.ordered_by
        if key_fn is not None:
            failed_keys: set[object] = set()
            for received in pending:
                try:
                    key = key_fn(received.event)
                    if key in failed_keys:
                        failures.setdefault(received, _HELD_BACK)
                    elif received in failures:
                        failed_keys.add(key)
                except Exception as exc:  # the key function raised, or an unhashable key
                    failures[received] = exc
        return failures

    async def _deliver(self, lane: Lane, received: Received) -> None:
        """Run one delivery to its end: success, or retries then the dead-letter sink."""
        if self._expiring and self._expire(lane, received):
            return
        if not received._started:
            self._started(received)
        event = received.event
        error = await (
            self._attempt(lane, event)
            if lane.timeout is None  # (one coroutine less than through _timed_attempt)
            else self._timed_attempt(lane, event)
        )
        attempts = 1 if error is None else await self._recover(lane, received, error)
        if attempts:
            self._settle(lane, received, "ok", attempts, None)

    async def _attempt(self, lane: Lane, event: Event) -> Exception | None:
        """Call the handler once; return its failure, ``None`` when it returned.

        Cancellation by a scope of reactor's (shutdown, the timeout around this call)
        propagates; a stray one is the attempt's failure (:class:`HandlerCancelled`).
        """
        try:
            await lane.handler(event)
        except Exception as exc:
            return exc
        except self._cancelled as exc:
            if _cancelled_by_scope():
                raise
            return _stray_cancellation(lane, exc)
        return None

    async def _timed_attempt(self, lane: Lane, event: Event) -> Exception | None:
        """:meth:`_attempt` under the lane's timeout, if it has one (then a cut attempt
        fails with :class:`DeliveryTimeout`). Failures are recovered outside the scope:
        its deadline is this attempt's only."""
        if lane.timeout is None:
            return await self._attempt(lane, event)
        clock = self._clock
        error: Exception | None = None
        with clock.deadline_scope(clock.monotonic() + lane.timeout) as scope:
            error = await self._attempt(lane, event)
        if scope.cancelled_caught:
            return DeliveryTimeout(lane.name, lane.timeout)
        return error

    async def _recover(self, lane: Lane, received: Received, error: Exception) -> int:
        """Retry after the first attempt failed with *error*.

        :return: the attempt that succeeded, or 0 when the delivery was dead-lettered
            (and settled as failed)
        """
        slot = _slot.get()
        try:
            return await self._retry(lane, received, error, slot)
        finally:
            slot.retries = 0

    async def _retry(self, lane: Lane, received: Received, error: Exception, slot: _Slot) -> int:
        event = received.event
        clock = self._clock
        retry = lane.retry
        first_failed = clock.now()
        attempt = 1
        while True:
            lane.failed += 1
            timed_out = isinstance(error, DeliveryTimeout)
            if timed_out:
                lane.timed_out += 1
            if (
                attempt >= retry.attempts
                or not (timed_out or isinstance(error, retry.on))
                or isinstance(error, DataValidationError)  # the same on every attempt
            ):
                self._dead_letter(lane, event, error, attempt, first_failed)
                self._settle(lane, received, "timed_out" if timed_out else "failed", attempt, error)
                return 0
            delay = retry.backoff.delay(attempt)
            # A retry is the policy working, not yet a problem: INFO. The attempt that
            # gives up is logged at ERROR with its traceback (_dead_letter).
            logger.info(
                "consumer %s failed on event %s (attempt %d of %d: %s: %s); retrying in %.3g s",
                lane.name,
                event.id,
                attempt,
                retry.attempts,
                type(error).__qualname__,
                describe_error(error),  # the handler's exception: its str() may raise
                delay,
                extra={"event_id": event.id, "consumer": lane.name, "attempt": attempt},
            )
            lane.retried += 1
            await clock.sleep(delay)
            slot.retries = attempt
            attempt += 1
            failure = await self._timed_attempt(lane, event)
            if failure is None:
                return attempt
            error = failure

    def _dead_letter(
        self,
        lane: Lane,
        event: Event,
        error: Exception,
        attempts: int,
        first_failed: datetime | None,
    ) -> None:
        now = self._clock.now()
        lane.dead_lettered += 1
        letter = DeadLetter(
            event=event,
            consumer=lane.name,
            error=error,
            attempts=attempts,
            first_failed_at=now if first_failed is None else first_failed,
            last_failed_at=now,
        )
        self._dead_letters.add(letter)
        if self._stores_dead_letters:
            # Before the delivery settles, so the letter is stored no later than the ack.
            self._queue.record_dead_letter(letter)
        logger.error(
            "consumer %s gave up on event %s after %d attempt(s); dead-lettered",
            lane.name,
            event.id,
            attempts,
            exc_info=error,
            extra={"event_id": event.id, "consumer": lane.name, "attempt": attempts},
        )

    # -- settlement -----------------------------------------------------------------

    def _settle(
        self,
        lane: Lane,
        received: Received,
        status: _Status,
        attempts: int,
        error: BaseException | None,
    ) -> None:
        if status == "ok":
            lane.delivered += 1
        if self._awaited:
            self.receipts.note(
                received.event, lane.name, Outcome(status=status, attempts=attempts, error=error)
            )
        received._open -= 1
        if not received._open:
            self._event_done(received)
        elif self._needs_ack:
            self._progress.append((received, lane.name))
            self._wake_settler()

    def _event_done(self, received: Received) -> None:
        self.in_flight -= 1
        if self._room is not None and self.in_flight <= self._max_in_flight - self._room_quantum:
            self._room.set()
            self._room = None
        if self._needs_ack:
            self._acks.append(received)
            self._wake_settler()
        if self._awaited:
            self.receipts.done(received.event)
        if self._idle is not None and self.idle:
            self._idle.set()
            self._idle = None

    @property
    def idle(self) -> bool:
        """Whether nothing is queued, in flight or waiting to be acked."""
        return (
            not self.in_flight
            and not self._acks
            and not self._progress
            and not self._acking
            and not self._queue.statistics().depth
        )

    async def wait_idle(self) -> None:
        """Wait until :attr:`idle`: every accepted event is settled (and acked)."""
        while not self.idle:
            idle = self._idle = anyio.Event()
            if self.in_flight or self._acks or self._progress or self._acking:
                await idle.wait()  # a settlement here wakes it
            else:
                # Only the queue's depth is left. A queue shared through a broker lowers
                # it when its group reads this process's events elsewhere, which no
                # settlement here announces: look again now and then.
                with anyio.move_on_after(_DEPTH_POLL):
                    await idle.wait()

    def _wake_settler(self) -> None:
        if self._settle_wakeup is not None:
            self._settle_wakeup.set()
            self._settle_wakeup = None

    async def _guarded(self, task: str, loop: Callable[[], Awaitable[None]]) -> None:
        """Run one of the dispatcher's own loops; its end stops the app (:meth:`_died`)."""
        try:
            await loop()
        except BaseException as exc:
            self._died(task, exc)
            raise

    async def _settle_batches(self) -> None:
        """Report settlements to a queue that needs them, in batches.

        A batch the queue fails to store is kept and offered again, with newer
        settlements, after a capped backoff: a full disk or a broker outage slows the
        app down (intake is held once unacked events reach ``max_in_flight``) but never
        stops it, and nothing is acknowledged that was not stored.
        """
        while True:
            if not self._acks and not self._progress:
                wakeup = self._settle_wakeup = anyio.Event()
                await wakeup.wait()
            progress, self._progress = self._progress, []
            acks, self._acks = self._acks, []
            if progress:
                # Consumers that settled an event that has since been settled by all are
                # covered by its ack: most progress never needs storing.
                progress = [pair for pair in progress if pair[0]._open]
            self._acking = True
            self._storing = len(acks)
            try:
                await self._queue.settle(acks, progress)
            except Exception as exc:
                self._acks[:0] = acks
                self._storing = 0
                self._progress[:0] = progress
                self.settle_failures += 1
                delay = SETTLE_BACKOFF.delay(self.settle_failures)
                logger.error(
                    "the queue could not store the settlement of %d event(s) (failure %d in "
                    "a row: %s); retrying in %.3g s",
                    len(acks) + len(progress),
                    self.settle_failures,
                    describe_error(exc),
                    delay,
                    exc_info=exc if self.settle_failures == 1 else None,
                )
                await self._clock.sleep(delay)
                continue
            finally:
                self._acking = False
                self._storing = 0
            if self.settle_failures:
                logger.warning(
                    "the queue stores settlements again, after %d failed attempt(s)",
                    self.settle_failures,
                )
                self.settle_failures = 0
                if self._room is not None:
                    self._room.set()
                    self._room = None
            if self._idle is not None and self.idle:
                self._idle.set()
                self._idle = None
