"""Helpers for testing apps built on reactor: virtual time and event capture.

::

    clock = VirtualClock(start=datetime(2026, 1, 1, tzinfo=UTC))
    app = Reactor(clock=clock)
    async with app:
        ...
        await clock.advance(3600)   # everything due in that hour runs, in order

Both helpers work on asyncio and trio, with no monkeypatching.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import anyio
from anyio.lowlevel import checkpoint

from . import validators
from ._event import Event

__all__ = ["Capture", "VirtualClock"]


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
