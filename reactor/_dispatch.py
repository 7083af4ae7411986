"""The hot path: routing events to subscription lanes, running handlers, settling.

Data flow::

    queue.get_batch() ──► Dispatcher._route() ──► Lane.inbox (one per subscription)
                               │ counts open deliveries        │ long-lived workers,
                               │ on the Received               │ at most `concurrency`
                               ▼                               ▼
                      in-flight bound              _deliver(): timeout, retry, dead letter
                                                               │
                                 _settle() ◄───────────────────┘
                                 last delivery of an event → ack, receipt, room for more

No task is created per event or per delivery: each lane keeps a small pool of worker
tasks that pull from its inbox. A worker that takes an item while more are waiting wakes
one more worker (or starts one, up to ``concurrency``) before running the handler, so
handlers that suspend run concurrently while handlers that never suspend are run
back-to-back by a single worker without any task switch.

Why one module of about 850 lines: this is the hot path, and its pieces (routing, the
lanes' workers, retries, settlement) share per-event state on the :class:`Received` and
call each other on every delivery; the fast path inlines them on purpose, so they stay
side by side where one reading shows the whole cost of an event.
"""

from __future__ import annotations

import logging
import math
import sys
from collections import deque
from collections.abc import Callable, Hashable
from contextvars import ContextVar
from datetime import datetime
from time import perf_counter
from typing import TYPE_CHECKING, Literal

import anyio
import attrs
from anyio.abc import TaskGroup, TaskStatus
from anyio.lowlevel import checkpoint

from ._clock import Clock
from ._event import Event
from ._exceptions import (
    DeliveryTimeout,
    HandlerCancelled,
    InternalTaskDied,
    RedeliveryLimitExceeded,
)
from ._outcomes import DeadLetter, DeadLetters, Outcome, describe_error
from ._policies import Backoff
from ._receipts import Receipts
from ._stats import LatencyHistogram, SubscriptionStats
from .abc import EventQueue, Received

if TYPE_CHECKING:
    from ._subscription import Subscription

__all__ = ["Delivery", "Dispatcher", "Lane", "current_delivery"]

logger = logging.getLogger("reactor.dispatch")

#: Events taken from the queue per batch.
BATCH_SIZE = 256
#: Deliveries a worker runs back-to-back before yielding to other tasks.
STREAK = 64
#: Routing-cache entries kept before the cache is emptied (distinct type/source pairs).
ROUTE_CACHE_LIMIT = 4096
#: Seconds between looks at the queue's depth while a drain waits for nothing else.
_DEPTH_POLL = 0.05

_Status = Literal["ok", "failed", "timed_out"]

OK_ONCE = Outcome(status="ok", attempts=1)

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
    """What one worker is running, read lazily by :func:`current_delivery`.

    Each worker task sets the context variable once to its own slot and then updates one
    attribute per delivery, instead of setting the variable per delivery.
    """

    __slots__ = ("lane", "received", "retries")

    def __init__(self, lane: Lane) -> None:
        self.lane = lane
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
    received = None if slot is None else slot.received
    if slot is None or received is None:
        raise RuntimeError("current_delivery() is only available while a handler runs")
    return Delivery(
        event=received.event,
        consumer=slot.lane.name,
        attempt=received.attempt,
        retries=slot.retries,
    )


class Lane:
    """The runtime side of a subscription: its inbox, its workers and its counters."""

    __slots__ = (
        "closed",
        "concurrency",
        "dead_lettered",
        "delivered",
        "failed",
        "fast",
        "handler",
        "idle",
        "inbox",
        "key_fn",
        "keys",
        "name",
        "retried",
        "retry",
        "sub",
        "timed_out",
        "timeout",
        "waking",
        "where",
        "workers",
    )

    def __init__(self, sub: Subscription) -> None:
        self.sub = sub
        self.name = sub.name
        self.handler = sub.handler
        self.where = sub.where
        self.key_fn = sub.ordered_by
        self.timeout = sub.timeout
        self.retry = sub.retry
        self.concurrency = sub.concurrency
        #: No timeout and no ordering: the worker runs the handler inline.
        self.fast = self.timeout is None and self.key_fn is None
        self.inbox: deque[Received] = deque()
        self.keys: dict[Hashable, deque[Received]] = {}
        self.idle: list[anyio.Event] = []
        self.workers = 0
        self.waking = 0
        self.closed = False
        self.delivered = self.failed = self.timed_out = self.retried = self.dead_lettered = 0

    def reset(self) -> None:
        """Forget workers and queued deliveries of a previous run of the app."""
        self.inbox.clear()
        self.keys.clear()
        self.idle.clear()
        self.workers = self.waking = 0

    def stats(self) -> SubscriptionStats:
        """Return this lane's counters."""
        parked = sum(len(waiting) for waiting in self.keys.values())
        # A worker is idle, being woken, or busy with exactly one delivery (its attempts
        # and the waits between them), so the running count needs no per-delivery update.
        running = max(self.workers - len(self.idle) - self.waking, 0)
        return SubscriptionStats(
            name=self.name,
            pattern=self.sub.pattern,
            delivered=self.delivered,
            failed=self.failed,
            timed_out=self.timed_out,
            retried=self.retried,
            dead_lettered=self.dead_lettered,
            pending=len(self.inbox) + parked + running,
            running=running,
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
        self._needs_ack = queue.needs_ack
        self._stores_dead_letters = queue.stores_dead_letters
        self._lanes: list[Lane] = []
        self._routes: dict[tuple[str, str], tuple[tuple[Lane, ...], bool]] = {}
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
            ("delivered", "failed", "timed_out", "retried", "dead_lettered"), 0
        )
        self._retiring: list[Lane] = []

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
        """The lanes of the active subscriptions."""
        return tuple(self._lanes)

    def add(self, sub: Subscription) -> Lane:
        """Start routing to *sub*.

        :raises ValueError: another active subscription has the same name
        """
        if any(lane.name == sub.name for lane in self._lanes):
            raise ValueError(
                f"a consumer named {sub.name!r} is already subscribed; "
                "consumer names identify outcomes and dead letters, so pass a unique name="
            )
        lane = Lane(sub)
        self._lanes.append(lane)
        self._routes.clear()
        return lane

    def remove(self, lane: Lane) -> None:
        """Stop routing to *lane*; its queued deliveries still run, then its workers exit."""
        self._lanes.remove(lane)
        self._routes.clear()
        lane.closed = True
        for wake in lane.idle:
            lane.waking += 1
            wake.set()
        lane.idle.clear()
        self._retiring.append(lane)
        self._retire_when_done(lane)

    def _retire_when_done(self, lane: Lane) -> None:
        # A cancelled lane counts towards the totals until its last worker is gone; then
        # its final counters are folded into the totals and the lane is forgotten.
        if lane.workers or lane not in self._retiring:
            return
        self._retiring.remove(lane)
        retired = self._retired
        for name in retired:
            retired[name] += getattr(lane, name)

    def totals(self) -> dict[str, int]:
        """Return the counters summed over every subscription the app ever had."""
        totals = dict(self._retired)
        for lane in (*self._lanes, *self._retiring):
            for name in totals:
                totals[name] += getattr(lane, name)
        return totals

    # -- the dispatch loop ----------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Dispatch until cancelled; report readiness through *task_status*."""
        for lane in self._lanes:
            lane.reset()
        self.in_flight = 0
        self._cancelled = anyio.get_cancelled_exc_class()
        self.fatal = None
        limit = self._queue.max_redeliveries
        self._attempt_limit = sys.maxsize if limit is None else 1 + limit
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                if self._needs_ack:
                    tg.start_soon(self._settle_loop, name="reactor settlement")
                task_status.started()
                try:
                    await self._dispatch_loop()
                except BaseException as exc:
                    self._died("dispatcher", exc)
                    raise
        finally:
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
            if room <= 0:
                wakeup = self._room = anyio.Event()
                await wakeup.wait()
                continue
            for received in await queue.get_batch(min(room, BATCH_SIZE)):
                route(received)
            await checkpoint()

    def _lookup(self, event: Event) -> tuple[tuple[Lane, ...], bool]:
        """Compute and cache the lanes whose patterns match the event's type and source."""
        lanes = tuple(lane for lane in self._lanes if lane.sub.matches(event.type, event.source))
        found = (lanes, any(lane.where is not None for lane in lanes))
        if len(self._routes) >= ROUTE_CACHE_LIMIT:
            self._routes.clear()
        self._routes[event.type, event.source] = found
        return found

    def _route(self, received: Received) -> None:
        event = received.event
        found = self._routes.get((event.type, event.source))
        lanes, filtered = self._lookup(event) if found is None else found
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
            if only is not None and not any(lane.name in only for lane in self._lanes):
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
        for lane in lanes:
            lane.inbox.append(received)
            if not lane.waking:
                self._kick(lane)

    def _give_up(self, received: Received, lanes: tuple[Lane, ...]) -> None:
        """Dead-letter a poison event for *lanes* without running their handlers."""
        limit = self._queue.max_redeliveries
        assert limit is not None
        error = RedeliveryLimitExceeded(received.attempt, limit)
        for lane in lanes:
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

    def _kick(self, lane: Lane) -> None:
        """Get one more worker onto *lane*'s inbox, if one is free or may be started."""
        if lane.idle:
            lane.waking += 1
            lane.idle.pop().set()
        elif lane.workers < lane.concurrency and self._tg is not None:
            lane.workers += 1
            lane.waking += 1
            self._tg.start_soon(self._worker, lane, name=f"reactor consumer {lane.name}")

    async def _worker(self, lane: Lane) -> None:
        inbox = lane.inbox
        handler = lane.handler
        fast = lane.fast
        ordered = lane.key_fn is not None
        needs_ack = self._needs_ack
        cancelled = self._cancelled
        receipts = self.receipts
        awaited = self._awaited
        slot = _Slot(lane)
        _slot.set(slot)
        lane.waking -= 1
        streak = 0
        error: Exception | None
        try:
            while True:
                if not inbox:
                    if lane.closed:
                        return
                    streak = 0
                    wake = anyio.Event()
                    lane.idle.append(wake)
                    try:
                        await wake.wait()
                    except BaseException:
                        if wake in lane.idle:
                            lane.idle.remove(wake)
                        else:
                            lane.waking -= 1
                        raise
                    lane.waking -= 1
                    continue
                received = slot.received = inbox.popleft()
                if inbox and not lane.waking:
                    self._kick(lane)
                if fast:
                    # _deliver() and _settle() inlined: no coroutine and no call per delivery
                    # on the common path.
                    if not received._started:
                        self._started(received)
                    try:
                        await handler(received.event)
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
                elif ordered:
                    await self._deliver_in_order(lane, received)
                else:
                    await self._deliver(lane, received)
                slot.received = None
                streak += 1
                if streak >= STREAK:
                    streak = 0
                    await checkpoint()
        except BaseException as exc:
            self._died(f"consumer {lane.name}", exc)
            raise
        finally:
            slot.received = None
            lane.workers -= 1
            if lane.closed:
                self._retire_when_done(lane)

    async def _deliver_in_order(self, lane: Lane, received: Received) -> None:
        assert lane.key_fn is not None
        try:
            key = lane.key_fn(received.event)
            waiting = lane.keys.get(key)
        except Exception as exc:  # the key function raised, or returned something unhashable
            self._dead_letter(lane, received.event, exc, attempts=0, first_failed=None)
            self._settle(lane, received, "failed", 0, exc)
            return
        if waiting is not None:
            # Another worker is on this key: it runs this delivery after the ones before it.
            waiting.append(received)
            return
        waiting = lane.keys[key] = deque()
        slot = _slot.get()
        try:
            while True:
                await self._deliver(lane, received)
                if not waiting:
                    return
                received = slot.received = waiting.popleft()
        finally:
            del lane.keys[key]

    async def _deliver(self, lane: Lane, received: Received) -> None:
        """Run one delivery to its end: success, or retries then the dead-letter sink."""
        if not received._started:
            self._started(received)
        error = await self._timed_attempt(lane, received.event)
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
            if attempt >= retry.attempts or not (timed_out or isinstance(error, retry.on)):
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
        if self._room is not None and self.in_flight < self._max_in_flight:
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

    async def _settle_loop(self) -> None:
        try:
            await self._settle_batches()
        except BaseException as exc:
            self._died("settlement", exc)
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
