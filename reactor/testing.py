"""Helpers for testing apps built on reactor: virtual time, firing triggers, recording.

::

    clock = VirtualClock(start=datetime(2026, 1, 1, tzinfo=UTC))
    app = Reactor(clock=clock)
    async with app:
        ...
        await clock.advance(3600)   # everything due in that hour runs, in order

An app built at module level (``from myapp import app``) is tested as it is, without a
factory function: :func:`run` starts it for one test on a :class:`VirtualClock` and with a
:class:`Recorder` of every handler call, and gives the app its own clock back after::

    async with testing.run(app, clock=VirtualClock()) as recorder:
        receipt = await testing.fire(app, "nightly")      # the timer's event, now
        await testing.fire_file_change(app, "inbox", "a.csv")
        await testing.fire_webhook(app, "/github", {"ref": "main"})
    recorder.assert_ran("nightly", times=1)

The ``fire*`` functions publish exactly the event the real trigger would (built by the
trigger's own code) and wait until every consumer settled it. For the triggers that
listen to a server, build the event with the trigger's own helper and :func:`fire` it:
``await fire(app, redis.message("alerts", b"{}", name=on_alert))``,
``postgres.notification(...)``, ``mqtt.message(...)``, ``objects.bucket_event(...)``.

Installed with reactor, a pytest plugin (``reactor.pytest_plugin``) provides the
fixtures ``reactor_clock`` and ``reactor_run``. Everything here works on asyncio and
trio, with no monkeypatching, and imports no pytest.
"""

from __future__ import annotations

import heapq
import json
import os
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import ExitStack, asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal
from uuid import uuid4

import anyio
import attrs
from anyio.lowlevel import checkpoint

from . import validators
from ._event import Event
from ._outcomes import Outcome
from ._reactor import Reactor
from ._receipts import Receipt
from ._types import Handler

if TYPE_CHECKING:
    from ._dispatch import Lane
    from .sources.files import FileChangeSource
    from .sources.timers import TimerSource

__all__ = [
    "Call",
    "CallStatus",
    "Capture",
    "Recorder",
    "VirtualClock",
    "WebhookReply",
    "fire",
    "fire_file_change",
    "fire_notification",
    "fire_webhook",
    "record",
    "run",
    "virtual_clock",
]


async def _wait_all_tasks_blocked() -> None:
    """``anyio.wait_all_tasks_blocked()``, without its 0.1 s polling on asyncio.

    On asyncio, anyio checks whether every task is blocked and, when one is still
    runnable, sleeps 0.1 s of real time before checking again: every firing whose
    consequences take more than one turn of the loop (a timer publishing, the dispatcher
    routing, a handler running) would cost 0.1 s, and an hour of one-second ticks six
    minutes. Here the loop turns once between checks instead. The check is anyio's own
    (a task is blocked while it waits on a future that is not done). Trio's
    implementation is exact and fast, and is used as it is.
    """
    import asyncio  # only here: the rest of reactor is backend-agnostic

    try:
        this = asyncio.current_task()
    except RuntimeError:  # no asyncio loop in this thread: trio
        this = None
    if this is None:
        await anyio.wait_all_tasks_blocked()
        return
    while True:
        await checkpoint()
        for task in asyncio.all_tasks():
            waiter = getattr(task, "_fut_waiter", None)
            if task is not this and (waiter is None or waiter.done()):
                break
        else:
            return


class _Timer:
    __slots__ = ("callback", "cancelled", "deadline", "seq")

    def __init__(self, deadline: float, seq: int, callback: Callable[[], object]) -> None:
        self.deadline = deadline
        self.seq = seq
        self.callback = callback
        self.cancelled = False

    def __lt__(self, other: _Timer) -> bool:
        return (self.deadline, self.seq) < (other.deadline, other.seq)


class VirtualClock:
    """A :class:`reactor.Clock` whose time moves only when a test calls :meth:`advance`.

    Sleepers and deadlines registered with it fire in deadline order (ties in the order
    they were registered); after each one, :meth:`advance` waits until every task is
    blocked again, so the consequences of one firing (a retry scheduled, a handler run)
    happen before the next firing, exactly as they would in real time. :meth:`jump`
    steps the wall clock alone, as a clock change does.

    :param start: the wall time at monotonic zero (aware; default 2026-01-01 00:00 UTC)
    """

    def __init__(self, start: datetime | None = None) -> None:
        if start is None:
            start = datetime(2026, 1, 1, tzinfo=UTC)
        else:
            validators.aware_datetime("start", start)
        self._start = start.astimezone(UTC)
        self._now = 0.0
        # Wall-clock steps made by jump(): they move now() but never monotonic time.
        self._wall_offset = timedelta()
        self._timers: list[_Timer] = []
        self._seq = 0
        # Held by whoever moves time (a test's advance(), or the app's drain), so that two
        # of them never wait for each other to block.
        self._mover: anyio.Lock | None = None

    def _lock(self) -> anyio.Lock:
        if self._mover is None:
            self._mover = anyio.Lock()
        return self._mover

    def now(self) -> datetime:
        """Return the virtual wall time (aware UTC)."""
        return self._start + self._wall_offset + timedelta(seconds=self._now)

    def monotonic(self) -> float:
        """Return the virtual monotonic time: seconds advanced since creation."""
        return self._now

    def _schedule(self, deadline: float, callback: Callable[[], object]) -> _Timer:
        self._seq += 1
        timer = _Timer(deadline, self._seq, callback)
        heapq.heappush(self._timers, timer)
        return timer

    async def sleep(self, seconds: float) -> None:
        """Wait until virtual time has advanced by *seconds*."""
        await self.sleep_until(self._now + seconds)

    async def sleep_until(self, deadline: float) -> None:
        """Wait until virtual monotonic time reaches *deadline*."""
        if deadline <= self._now:
            await checkpoint()
            return
        wakeup = anyio.Event()
        timer = self._schedule(deadline, wakeup.set)
        try:
            await wakeup.wait()
        finally:
            timer.cancelled = True

    @contextmanager
    def deadline_scope(self, deadline: float) -> Iterator[anyio.CancelScope]:
        """Return a context manager of a cancel scope cancelled at virtual *deadline*."""
        scope = anyio.CancelScope()
        if deadline <= self._now:
            scope.cancel()
            timer = None
        else:
            timer = self._schedule(deadline, scope.cancel)
        try:
            with scope:
                yield scope
        finally:
            if timer is not None:
                timer.cancelled = True

    @property
    def pending(self) -> int:
        """How many sleepers and deadlines are waiting for virtual time."""
        return sum(not timer.cancelled for timer in self._timers)

    def next_deadline(self) -> float | None:
        """Return the earliest pending deadline, or ``None``."""
        while self._timers and self._timers[0].cancelled:
            heapq.heappop(self._timers)
        return self._timers[0].deadline if self._timers else None

    async def advance(self, seconds: float) -> None:
        """Move virtual time forward by *seconds*, firing everything due on the way, in order.

        :raises ValueError: *seconds* is negative (virtual time only moves forward)
        """
        if validators.number("seconds", seconds) < 0:
            raise ValueError(
                f"virtual time only moves forward: seconds must be >= 0, got {seconds!r}"
            )
        async with self._lock():
            await self._advance_to(self._now + seconds)

    async def _advance_to(self, target: float) -> None:
        await _wait_all_tasks_blocked()
        while (deadline := self.next_deadline()) is not None and deadline <= target:
            timer = heapq.heappop(self._timers)
            self._now = max(self._now, timer.deadline)
            timer.callback()
            await _wait_all_tasks_blocked()
        self._now = target
        await _wait_all_tasks_blocked()

    async def stall(self, seconds: float) -> None:
        """Move time forward by *seconds* as if the event loop had been blocked meanwhile.

        Unlike :meth:`advance`, nothing runs on the way: monotonic and wall time move on
        together, then everything that came due fires at the new time, late, in
        deadline order (each firing's consequences happen before the next, as in
        :meth:`advance`). This is what a handler that blocks the loop, a suspended
        machine or a debugger pause looks like to code that waits.

        :param seconds: how long the loop was blocked
        :raises ValueError: *seconds* is negative (virtual time only moves forward)
        """
        if validators.number("seconds", seconds) < 0:
            raise ValueError(
                f"virtual time only moves forward: seconds must be >= 0, got {seconds!r}"
            )
        await _wait_all_tasks_blocked()
        self._now += seconds
        await self.advance(0)

    async def _run_freely(self, until: float) -> None:
        """Let virtual time flow by itself until *until*, until cancelled.

        The app runs this while it drains on leaving ``async with app:``, when no test
        can call :meth:`advance` any more: whenever every task is blocked, time jumps to
        the next sleeper or deadline, so a handler sleeping or backing off on this clock
        finishes as it would in real time. When only *until* (the drain's own deadline)
        is pending, what is left waits on real work (a thread, a socket): time then
        stands still and the app's real-time bound applies. When the next deadline is
        past *until*, time jumps to *until*, which ends the drain.
        """
        while True:
            async with self._lock():
                await _wait_all_tasks_blocked()
                deadline = self.next_deadline()
                if deadline is not None and (deadline < until or self.pending > 1):
                    await self._advance_to(max(self._now, min(deadline, until)))
                    continue
            await anyio.sleep(0.01)  # real work is under way: look again shortly

    def jump(self, seconds: float | timedelta) -> None:
        """Step the wall clock by *seconds* (negative: backward) without moving monotonic time.

        This is what an NTP step, a manual clock change or a resumed virtual machine does
        to :meth:`now`: sleepers and deadlines wait on monotonic time, so nothing fires;
        code that reads the wall clock when it next wakes sees the new time.

        :param seconds: how far to step, in seconds or as a :class:`~datetime.timedelta`
        :raises ValueError: *seconds* is not a finite number
        """
        if isinstance(seconds, timedelta):
            step = seconds
        else:
            step = timedelta(seconds=validators.number("seconds", seconds))
        self._wall_offset += step

    def __repr__(self) -> str:
        return f"VirtualClock(now={self.now().isoformat()}, pending={self.pending})"


class Capture:
    """A consumer that records the events it receives, for assertions.

    ::

        capture = Capture()
        app.subscribe("order.*", capture)
        ...
        await capture.wait_for(3)
        assert [e.data for e in capture.events] == [...]

    :ivar events: the events received, in the order the handler was called
    """

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._changed: anyio.Event | None = None

    async def __call__(self, event: Event) -> None:
        """Record *event* (the subscription handler)."""
        self.events.append(event)
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def wait_for(self, count: int) -> list[Event]:
        """Wait until at least *count* events were received; return them.

        Combine with ``anyio.fail_after`` to bound the wait.
        """
        while len(self.events) < count:
            if self._changed is None:
                self._changed = anyio.Event()
            await self._changed.wait()
        return self.events[:count]


# -- giving an app virtual time ----------------------------------------------------------


@contextmanager
def virtual_clock(app: Reactor, clock: VirtualClock | None = None) -> Iterator[VirtualClock]:
    """Run *app* on a virtual clock inside the block; give it its own clock back after.

    For an app built at module level, with the system clock, that a test wants in
    virtual time without a factory function::

        with virtual_clock(app) as clock:
            async with app:
                await clock.advance(86400)   # a day of timers, retries and timeouts

    Swap the clock while the app is stopped: enter this block before ``async with app:``
    and leave the app before leaving this block. A virtual clock is a timeline of its
    own, so what the app's timers remember of earlier runs (a cron timer's last run,
    which no restart fires again; whether a one-shot timer fired) is set back when the
    block ends: each test starts from the app as it was.

    :param app: the app (not running)
    :param clock: the clock to use (default: a new :class:`VirtualClock`)
    :return: a context manager giving the clock in use
    :raises TypeError: *clock* is not a :class:`VirtualClock`
    :raises RuntimeError: the app is running, when entering or when leaving
    """
    if clock is None:
        clock = VirtualClock()
    elif not isinstance(clock, VirtualClock):
        raise TypeError(f"clock must be a reactor.testing.VirtualClock, got {clock!r}")
    from .sources.timers import TimerSource

    previous = app.clock
    app._use_clock(clock)
    remembered = [
        (source, dict(vars(source))) for source in app.sources if isinstance(source, TimerSource)
    ]
    try:
        yield clock
    finally:
        app._use_clock(previous)
        for source, state in remembered:
            vars(source).update(state)


# -- recording what ran ------------------------------------------------------------------

#: How one call of a handler ended: it returned, raised, was cut by its subscription's
#: timeout, or was cancelled (the app stopped while it ran).
CallStatus = Literal["ok", "failed", "timed_out", "cancelled"]


@attrs.frozen(kw_only=True)
class Call:
    """One call of a consumer's handler, as a :class:`Recorder` saw it.

    :ivar consumer: the consumer's name (the subscription's)
    :ivar event: the event the handler was called with
    :ivar attempt: which attempt at the event this was: 1, then 2, 3... for retries
    :ivar status: ``"ok"``, ``"failed"``, ``"timed_out"`` or ``"cancelled"``
    :ivar error: the exception the handler raised (``"failed"``), else ``None``
    """

    consumer: str
    event: Event
    attempt: int
    status: CallStatus
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        """Whether the handler returned."""
        return self.status == "ok"


_ANY: Any = object()


class Recorder:
    """Every call of an app's handlers, for assertions: which consumers ran, with which
    events, and how each call ended (made by :func:`record` or :func:`run`).

    ::

        recorder.assert_ran("email", times=1)
        recorder.assert_ran_with("email", type="order.created", data={"id": 1})
        recorder.assert_not_ran("refund")
        assert recorder.outcomes("email") == ["ok"]

    Consumers are named as subscriptions are (``name=``, default the handler's qualified
    name); every method also takes the handler function itself. A name that no
    subscription of the app has, and that no recorded call has, raises
    :class:`LookupError` (a typo would otherwise pass :meth:`assert_not_ran`).

    :ivar calls: every call, in the order they ended
    """

    def __init__(self, app: Reactor) -> None:
        self._app = app
        self.calls: list[Call] = []
        self._changed: anyio.Event | None = None

    def _name(self, consumer: str | Handler) -> str:
        name = _consumer_name(self._app, consumer)
        subscribed = [sub.name for sub in self._app.subscriptions]
        if name not in subscribed and all(call.consumer != name for call in self.calls):
            # A typo would otherwise pass assert_not_ran() and find no calls, silently.
            raise LookupError(
                f"no consumer named {name!r} is subscribed to the app, and none by that name "
                f"ran; its consumers: {', '.join(subscribed) or 'none'}"
            )
        return name

    def _add(self, call: Call) -> None:
        self.calls.append(call)
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def calls_to(self, consumer: str | Handler) -> list[Call]:
        """Return the calls of *consumer*'s handler, in the order they ended.

        :param consumer: the consumer's name, or its handler
        :return: the calls, attempts included
        """
        name = self._name(consumer)
        return [call for call in self.calls if call.consumer == name]

    def events(self, consumer: str | Handler) -> list[Event]:
        """Return the events *consumer*'s handler was called with, each once (retries
        aside), in the order of their first call's end.

        :param consumer: the consumer's name, or its handler
        :return: the events
        """
        seen: dict[tuple[str, str], Event] = {}
        for call in self.calls_to(consumer):
            seen.setdefault((call.event.source, call.event.id), call.event)
        return list(seen.values())

    def outcomes(self, consumer: str | Handler) -> list[CallStatus]:
        """Return the status of each call of *consumer*'s handler, in order.

        :param consumer: the consumer's name, or its handler
        :return: ``"ok"``, ``"failed"``, ``"timed_out"`` or ``"cancelled"`` per call
        """
        return [call.status for call in self.calls_to(consumer)]

    @property
    def consumers(self) -> list[str]:
        """The consumers whose handlers ran, in the order of their first call's end."""
        return list(dict.fromkeys(call.consumer for call in self.calls))

    def clear(self) -> None:
        """Forget the calls recorded so far."""
        self.calls.clear()

    def _describe(self) -> str:
        if not self.calls:
            return "no handler ran"
        return "calls: " + ", ".join(
            f"{call.consumer}({call.event.type}, attempt {call.attempt}: {call.status})"
            for call in self.calls
        )

    def assert_ran(
        self, consumer: str | Handler, *, times: int | None = None, status: CallStatus | None = None
    ) -> list[Call]:
        """Assert that *consumer*'s handler was called (exactly *times* times, if given).

        :param consumer: the consumer's name, or its handler
        :param times: how many calls (attempts included) there must have been
        :param status: how every one of them must have ended
        :return: the calls
        :raises AssertionError: it was not (the message lists every call)
        """
        calls = self.calls_to(consumer)
        name = self._name(consumer)
        if not calls:
            raise AssertionError(f"{name} did not run; {self._describe()}")
        if times is not None and len(calls) != times:
            raise AssertionError(
                f"{name} ran {len(calls)} time(s), expected {times}; {self._describe()}"
            )
        if status is not None and any(call.status != status for call in calls):
            raise AssertionError(
                f"{name} did not end {status!r} every time: "
                f"{[call.status for call in calls]}; {self._describe()}"
            )
        return calls

    def assert_not_ran(self, consumer: str | Handler) -> None:
        """Assert that *consumer*'s handler was never called.

        :param consumer: the consumer's name, or its handler
        :raises AssertionError: it was (the message lists every call)
        """
        if self.calls_to(consumer):
            raise AssertionError(f"{self._name(consumer)} ran; {self._describe()}")

    def assert_ran_with(
        self,
        consumer: str | Handler,
        *,
        type: str = _ANY,
        data: Any = _ANY,
        subject: str | None = _ANY,
        source: str = _ANY,
    ) -> Call:
        """Assert that *consumer*'s handler was called with an event of these attributes.

        Attributes not given may be anything.

        :param consumer: the consumer's name, or its handler
        :param type: the event's type
        :param data: the event's data (compared with ``==``)
        :param subject: the event's subject
        :param source: the event's source
        :return: the first matching call
        :raises AssertionError: no call matched (the message lists every call)
        """
        wanted = {
            name: value
            for name, value in (
                ("type", type),
                ("data", data),
                ("subject", subject),
                ("source", source),
            )
            if value is not _ANY
        }
        for call in self.calls_to(consumer):
            if all(getattr(call.event, name) == value for name, value in wanted.items()):
                return call
        seen = [
            {name: getattr(call.event, name) for name in wanted} for call in self.calls_to(consumer)
        ]
        raise AssertionError(
            f"{self._name(consumer)} was not called with {wanted}; its events: {seen}"
        )

    async def wait_for(self, consumer: str | Handler, count: int = 1) -> list[Call]:
        """Wait until *consumer*'s handler has been called *count* times; return the calls.

        Combine with ``anyio.fail_after`` to bound the wait.

        :param consumer: the consumer's name, or its handler
        :param count: how many calls to wait for
        :return: the first *count* calls
        """
        while len(calls := self.calls_to(consumer)) < count:
            if self._changed is None:
                self._changed = anyio.Event()
            await self._changed.wait()
        return calls[:count]

    def _wrap(self, lane: Lane) -> Handler:
        handler = lane.handler
        name = lane.name
        timeout = lane.timeout
        app = self._app

        async def recorded(event: Event) -> None:
            from ._dispatch import current_delivery

            attempt = current_delivery().retries + 1
            clock = app.clock
            started = clock.monotonic()
            try:
                await handler(event)
            except Exception as exc:
                self._add(
                    Call(consumer=name, event=event, attempt=attempt, status="failed", error=exc)
                )
                raise
            except anyio.get_cancelled_exc_class():
                cut = timeout is not None and clock.monotonic() - started >= timeout
                status: CallStatus = "timed_out" if cut else "cancelled"
                self._add(Call(consumer=name, event=event, attempt=attempt, status=status))
                raise
            self._add(Call(consumer=name, event=event, attempt=attempt, status="ok"))

        recorded.__qualname__ = getattr(handler, "__qualname__", name)
        return recorded


@contextmanager
def record(app: Reactor) -> Iterator[Recorder]:
    """Record every call of *app*'s handlers inside the block.

    The subscriptions made before the block are recorded (decorated handlers, at
    import time, are); the block may be entered while the app runs or not.

    :param app: the app
    :return: a context manager giving the :class:`Recorder`
    """
    recorder = Recorder(app)
    wrapped: list[tuple[Lane, Handler, Handler]] = []
    for lane in app._dispatcher.lanes:
        original = lane.handler
        lane.handler = recorder._wrap(lane)
        wrapped.append((lane, original, lane.handler))
    try:
        yield recorder
    finally:
        for lane, original, wrapper in wrapped:
            if lane.handler is wrapper:
                lane.handler = original


@asynccontextmanager
async def run(app: Reactor, *, clock: VirtualClock | None = None) -> AsyncIterator[Recorder]:
    """Run *app* for a test, recording its handlers' calls; on *clock* if given.

    ``async with run(app, clock=clock) as recorder:`` is :func:`virtual_clock` (when a
    clock is given), :func:`record` and ``async with app:`` in one. Enter it in the
    test itself: the app's task group must be left by the task that entered it (see the
    ``reactor_run`` fixture of the pytest plugin).

    :param app: the app (not running)
    :param clock: the virtual clock to run it on (default: the app's own clock)
    :return: an async context manager giving the :class:`Recorder`
    """
    with ExitStack() as stack:
        if clock is not None:
            stack.enter_context(virtual_clock(app, clock))
        recorder = stack.enter_context(record(app))
        async with app:
            yield recorder


# -- firing triggers ---------------------------------------------------------------------


def _consumer_name(app: Reactor, trigger: str | Handler) -> str:
    if isinstance(trigger, str):
        return trigger
    if not callable(trigger):
        raise TypeError(f"name a trigger by its name or its handler, got {trigger!r}")
    for sub in app.subscriptions:
        if sub.handler is trigger:
            return sub.name
    from .abc import default_name

    return default_name(trigger)


def _timer(app: Reactor, trigger: str | Handler) -> TimerSource:
    from .sources.timers import TimerSource

    name = _consumer_name(app, trigger)
    timers = [source for source in app.sources if isinstance(source, TimerSource)]
    for source in timers:
        if source.timer_name == name:
            return source
    raise LookupError(
        f"the app has no timer named {name!r}; its timers: "
        f"{sorted(source.timer_name for source in timers)} (fire a file source with "
        "fire_file_change(), a webhook with fire_webhook(), a notification with "
        "fire_notification(), another trigger with fire(app, event) and the event its "
        "module builds, such as redis.message(...))"
    )


async def fire(app: Reactor, trigger: Event | str | Handler, /) -> Receipt:
    """Fire a timer now, or publish an event a trigger's helper built; wait until settled.

    * ``fire(app, "nightly")`` (or ``fire(app, nightly)``, the decorated handler):
      publishes the event the timer of that name publishes when it is due, now on the
      app's clock (``{"kind": ..., "scheduled": now, "late": false, "missed": 0}``),
      whenever its schedule says;
    * ``fire(app, event)``: publishes *event*, as built by a trigger's helper such as
      ``redis.message(...)``, ``mqtt.message(...)``, ``postgres.notification(...)``,
      ``postgres.row_change(...)`` or ``objects.bucket_event(...)``.

    :param app: the running app
    :param trigger: a timer's name or handler, or an event
    :return: the :class:`~reactor.Receipt`: each consumer's outcome
    :raises LookupError: the app has no timer of that name
    :raises ~reactor.ReactorNotRunning: the app is not running
    """
    if isinstance(trigger, Event):
        event = trigger
    else:
        from .sources.timers import timer_event

        event = timer_event(_timer(app, trigger), time=app.clock.now())
    return await app.publish_and_wait(event)


async def fire_notification(app: Reactor, channel: str, data: Any = None) -> Receipt:
    """Publish what ``app.notify(channel, data)`` publishes, and wait until settled.

    :param app: the running app
    :param channel: the notification channel
    :param data: the notification's data
    :return: the :class:`~reactor.Receipt`: each consumer's outcome
    :raises ValueError: *channel* is empty
    :raises ~reactor.ReactorNotRunning: the app is not running
    """
    from ._reactor import NOTIFICATION_TYPE

    validators.name("channel", channel)
    return await app.publish_and_wait(NOTIFICATION_TYPE, data, subject=channel)


async def fire_file_change(
    app: Reactor,
    trigger: str | Handler,
    path: str,
    change: Literal["created", "modified", "deleted"] = "created",
) -> Receipt:
    """Publish the event a file source publishes when one file changes; wait until settled.

    The source is the one named *trigger* (``on_file_change``'s ``name=``, default the
    handler's name; a handler may be given instead). As the source does, the event
    carries the file's size and modification time when the file exists under the
    source's root (write the file first for a realistic ``created`` event).

    :param app: the running app
    :param trigger: the file source's name, or the handler it was made for
    :param path: the file's path relative to the watched directory (``/`` separators)
    :param change: ``"created"`` (default), ``"modified"`` or ``"deleted"``
    :return: the :class:`~reactor.Receipt`: each consumer's outcome
    :raises LookupError: the app has no file source of that name
    :raises ~reactor.ReactorNotRunning: the app is not running
    """
    source = _file_source(app, trigger)
    size = mtime_ns = None
    if change != "deleted":
        try:
            stat = os.stat(os.path.join(source.root, *path.split("/")))
        except OSError:
            pass
        else:
            size, mtime_ns = stat.st_size, stat.st_mtime_ns
    event = source.change_event(path, change, time=app.clock.now(), size=size, mtime_ns=mtime_ns)
    return await app.publish_and_wait(event)


def _file_source(app: Reactor, trigger: str | Handler) -> FileChangeSource:
    from .sources.files import FileChangeSource

    name = _consumer_name(app, trigger)
    sources = [source for source in app.sources if isinstance(source, FileChangeSource)]
    for source in sources:
        if source.name == name:
            return source
    raise LookupError(
        f"the app has no file source named {name!r}; its file sources: "
        f"{sorted(source.name for source in sources)}"
    )


@attrs.frozen(kw_only=True)
class WebhookReply:
    """What :func:`fire_webhook` got: the ingress's answer, and what the consumers did.

    :ivar status: the HTTP status (202 when the event was published)
    :ivar body: the answer's JSON body
    :ivar outcomes: each consumer's outcome, by name (empty unless the event was published)
    """

    status: int
    body: Any
    outcomes: Mapping[str, Outcome]

    @property
    def ok(self) -> bool:
        """Whether the event was published and every consumer succeeded."""
        return self.status == 202 and all(outcome.ok for outcome in self.outcomes.values())


class _Refused(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


async def fire_webhook(
    app: Reactor,
    path: str,
    data: Any,
    *,
    delivery_id: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> WebhookReply:
    """POST *data* as JSON to the webhook route at *path*, signed as its sender signs it.

    The request goes through the app's real HTTP ingress (in process, no server), signed
    with the route's secret by its scheme (Standard Webhooks, GitHub or Stripe) at the
    app clock's time, so the handler gets exactly the event a real delivery makes. When
    the ingress publishes it (202), this waits until every consumer settled it.

    :param app: the running app
    :param path: the route's path (``"/github"``)
    :param data: the JSON body
    :param delivery_id: the sender's delivery id, the event's ``id`` (default: a new
        one; for Stripe, the body's ``"id"``)
    :param headers: more request headers (``{"X-GitHub-Event": "push"}``)
    :return: the :class:`WebhookReply`
    :raises LookupError: no webhook route at *path*
    :raises ValueError: a Stripe body without an ``"id"``
    :raises ~reactor.ReactorNotRunning: the app is not running
    """
    from ._exceptions import ReactorNotRunning
    from .sources.http import asgi

    ingress = asgi(app)
    route = ingress.routes.get(path.rstrip("/") or "/")
    if route is None:
        raise LookupError(f"no webhook route at {path!r}; the routes: {sorted(ingress.routes)}")
    if not app.running:
        raise ReactorNotRunning("the app is not running: fire_webhook() needs it")
    body = json.dumps(data).encode()
    if route.scheme == "stripe":
        stripe_id = data.get("id") if isinstance(data, dict) else None
        if not isinstance(stripe_id, str) or not stripe_id:
            raise ValueError('a Stripe event has an "id": put one in data')
        msg_id = stripe_id
    else:
        msg_id = uuid4().hex if delivery_id is None else validators.name("delivery_id", delivery_id)
    timestamp = int(app.clock.now().timestamp())
    sent = {"content-type": "application/json"}
    if route.scheme == "github":
        sent["x-github-delivery"] = msg_id
    elif route.scheme == "standard":
        sent["webhook-id"] = msg_id
        sent["webhook-timestamp"] = str(timestamp)
    if route.secret is not None:
        signature = route.sign(msg_id, timestamp, body)
        header = {"github": "x-hub-signature-256", "stripe": "stripe-signature"}
        sent[header.get(route.scheme, "webhook-signature")] = signature
    for name, value in (headers or {}).items():
        sent[name.lower()] = value

    async def post(_: Event) -> bool:
        # The app's dedupe= drops a copy of an event it accepted already: then there is
        # nothing to wait for (the receipt says duplicate, with no outcomes).
        dropped = app.stats().deduplicated
        status, answer = await _post(ingress, route.path, sent, body)
        if status != 202:
            raise _Refused(status, answer)
        reply["body"] = answer
        return app.stats().deduplicated == dropped

    reply: dict[str, Any] = {}
    key = Event(type=route.type, source=route.source, id=msg_id)
    try:
        receipt = await app._dispatcher.receipts.wait(key, post)
    except _Refused as refused:
        return WebhookReply(status=refused.status, body=refused.body, outcomes=MappingProxyType({}))
    return WebhookReply(status=202, body=reply["body"], outcomes=receipt.outcomes)


async def _post(
    ingress: Callable[..., Any], path: str, headers: Mapping[str, str], body: bytes
) -> tuple[int, Any]:
    """POST *body* to the ASGI application *ingress*; return the status and JSON answer."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"content-length", str(len(body)).encode()),
            *((name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    requests = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[Mapping[str, Any]] = []

    async def receive() -> Mapping[str, Any]:
        if requests:
            return requests.pop()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def send(message: Mapping[str, Any]) -> None:
        sent.append(message)

    await ingress(scope, receive, send)
    status = next(message["status"] for message in sent if message["type"] == "http.response.start")
    content = b"".join(
        message.get("body", b"") for message in sent if message["type"] == "http.response.body"
    )
    return status, json.loads(content) if content else None
