"""The one sleeping loop of an app's timers: a heap of wake-up times, one task.

Every timer of an app joins its app's :class:`Scheduler` when its source runs. The
scheduler keeps each timer's next wake-up time (on ``app.clock``'s monotonic clock) in a
heap and sleeps until the earliest; when it wakes, it hands every timer that is due to
that timer (``Timer._wake``), which applies its policies, starts its run in the
scheduler's task group and answers its next wake-up time. Ten thousand timers are thus
one sleeping task and a heap, not ten thousand tasks each sleeping on its own: adding
one is a heap push, firing one costs a heap pop and its run's task, and stopping the app
cancels one task.

The scheduler runs in the task of the first timer source of the app to run (the
*driver*); the other timer sources join it and return at once. It lasts as long as that
task: when the app stops it is cancelled, its runs with it, and the next start builds a
new one. It sees the app only through :class:`reactor.abc.App`.
"""

from __future__ import annotations

import heapq
import itertools
from abc import abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVarTuple

import anyio
from anyio.abc import TaskGroup, TaskStatus
from anyio.lowlevel import checkpoint

from reactor import SystemClock
from reactor.abc import App

__all__ = ["Scheduler", "Timer"]

Ts = TypeVarTuple("Ts")
# A run handed to a runner: the coroutine function and its arguments.
_Job = tuple[Callable[..., Awaitable[object]], tuple[Any, ...]]

# How early the scheduler wakes before a due time on the system clock: asyncio rounds
# its timeouts up to whole milliseconds (sometimes twice), so a sleep to the due time
# would end 1-3 ms late; the scheduler wakes this much before it and yields to the loop
# until the due time.
_EARLY = 0.002
# The most time the scheduler spins toward due times in a second (a share of the loop):
# at 100 due times a second it spins for every one; with due times denser than that it
# spins for the first ones of each second, and sleeps to the others directly (on asyncio
# they start up to 1-2 ms late), instead of keeping the loop busy all the time.
_SPIN_BUDGET = 0.2
# The most runner tasks kept waiting for a run (a run handed to a waiting runner costs a
# wake-up; a new task costs several times that). More are started when runs overlap;
# those beyond this end when their run does.
_IDLE_RUNNERS = 64


class Timer(Protocol):
    """What the scheduler needs of a timer (:class:`~._sources.TimerSource` implements it)."""

    #: The scheduler the timer belongs to while its app runs, else ``None``.
    _scheduler: Scheduler | None
    #: Paused: the scheduler keeps the timer without waking it.
    _paused: bool

    @abstractmethod
    def _start(self, app: App) -> float | None:
        """Compute the first wake-up time on ``app.clock``'s monotonic clock.

        :param app: the running app
        :return: the time, or ``None`` when the timer has nothing to do
        """

    @abstractmethod
    def _wake(self, app: App, now: float) -> float | None:
        """Handle the wake-up time that has come: fire if due, then answer the next one.

        Never waits: a run is handed to :meth:`Scheduler.submit`.

        :param app: the running app
        :param now: the monotonic time
        :return: the next wake-up time (``> now``), or ``None`` when the timer is done
        """

    @abstractmethod
    def _resume(self, app: App) -> float | None:
        """Compute the next wake-up time when the timer is resumed.

        :param app: the running app
        :return: the time, or ``None`` when the timer has nothing to do
        """

    @abstractmethod
    def _stopped(self) -> None:
        """Forget the runs of this app run: the scheduler has stopped."""


class Scheduler:
    """The heap of an app's timers and the loop that sleeps toward the earliest.

    :param app: the app whose timers it runs
    """

    def __init__(self, app: App) -> None:
        self.app = app
        # (wake-up time, order of insertion, generation, timer): a timer rescheduled or
        # removed leaves its old item behind, recognised by its stale generation.
        self._heap: list[tuple[float, int, int, Timer]] = []
        self._order = itertools.count()
        self._generation: dict[Timer, int] = {}
        self._next: dict[Timer, float] = {}
        self._tg: TaskGroup | None = None
        # The sleep in progress, cancelled when a timer due earlier joins.
        self._sleep: anyio.CancelScope | None = None
        self._sleep_until = 0.0
        # The runners waiting for a run: each is woken by its event once submit() has put
        # a run in its list.
        self._idle: list[tuple[anyio.Event, list[_Job]]] = []

    def __len__(self) -> int:
        return len(self._generation)

    def next_wake(self, timer: Timer) -> float | None:
        """Return *timer*'s next wake-up time, or ``None`` when it has none.

        :param timer: a timer of this scheduler
        """
        return self._next.get(timer)

    def add(self, timer: Timer) -> None:
        """Start *timer* and keep it until it is done or removed.

        :param timer: a timer of no running scheduler
        :raises RuntimeError: the timer already runs
        """
        if timer._scheduler is not None:
            raise RuntimeError(f"{timer!r} is already running in an app")
        assert self._tg is not None
        timer._scheduler = self
        self._generation[timer] = 0
        wake = timer._start(self.app)
        self._push(timer, None if timer._paused else wake)

    def pause(self, timer: Timer) -> None:
        """Stop waking *timer* until :meth:`resume`; its runs in progress go on.

        :param timer: a paused timer of this scheduler
        """
        self.reschedule(timer, None)

    def resume(self, timer: Timer) -> None:
        """Wake *timer* again, from its next due time on.

        :param timer: a timer of this scheduler, no longer paused
        """
        self.reschedule(timer, timer._resume(self.app))

    def submit(self, job: Callable[[*Ts], Awaitable[object]], *args: *Ts) -> None:
        """Run ``await job(*args)`` in a runner task of the scheduler's task group.

        :param job: a timer's run
        :param args: its arguments
        """
        if self._idle:
            wakeup, slot = self._idle.pop()
            slot.append((job, args))
            wakeup.set()
        else:
            assert self._tg is not None
            self._tg.start_soon(self._runner, job, args, name="reactor timer runs")

    async def _runner(self, job: Callable[..., Awaitable[object]], args: tuple[Any, ...]) -> None:
        idle = self._idle
        while True:
            await job(*args)
            if len(idle) >= _IDLE_RUNNERS:
                return
            wakeup, slot = anyio.Event(), list[_Job]()
            idle.append((wakeup, slot))
            await wakeup.wait()
            ((job, args),) = slot

    def remove(self, timer: Timer) -> None:
        """Stop waking *timer*; its runs in progress go on.

        :param timer: a timer of this scheduler
        """
        if self._generation.pop(timer, None) is not None:
            self._next.pop(timer, None)
            timer._scheduler = None

    def reschedule(self, timer: Timer, wake: float | None) -> None:
        """Replace *timer*'s next wake-up time.

        :param timer: a timer of this scheduler
        :param wake: the new time, or ``None`` for none
        """
        if timer in self._generation:
            self._push(timer, wake)

    def _push(self, timer: Timer, wake: float | None) -> None:
        generation = self._generation[timer] = self._generation[timer] + 1
        if wake is None:
            self._next.pop(timer, None)
            return
        self._next[timer] = wake
        heapq.heappush(self._heap, (wake, next(self._order), generation, timer))
        if self._sleep is not None and wake < self._sleep_until:
            self._sleep.cancel()  # the loop goes back to sleep toward the new head

    def _head(self) -> float | None:
        heap, generation = self._heap, self._generation
        while heap:
            item = heap[0]
            if generation.get(item[3]) == item[2]:
                return item[0]
            heapq.heappop(heap)
        return None

    async def run(self, first: Timer, task_status: TaskStatus[None]) -> None:
        """Add *first*, report started, and wake the timers until cancelled.

        :param first: the driver's own timer
        :param task_status: started once *first* is scheduled
        """
        app = self.app
        clock = app.clock
        early = _EARLY if isinstance(clock, SystemClock) else 0.0
        # The second that began at spin_from, and the time spent spinning in it.
        spin_from = spun = 0.0
        heap, generation = self._heap, self._generation
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                _schedulers[id(app)] = self
                self.add(first)
                task_status.started()
                while True:
                    head = self._head()
                    now = clock.monotonic()
                    if head is not None and head <= now:
                        while heap and heap[0][0] <= now:
                            _, _, stamp, timer = heapq.heappop(heap)
                            if generation.get(timer) == stamp:
                                self._push(timer, timer._wake(app, now))
                        continue
                    wake = None if head is None else head - early
                    if head is not None and head - now <= early:
                        # A due time within the sleep's error: spin, within the budget.
                        if now - spin_from >= 1.0:
                            spin_from, spun = now, 0.0
                        if spun < _SPIN_BUDGET:
                            await checkpoint()
                            spun += clock.monotonic() - now
                            continue
                        wake = head
                    with anyio.CancelScope() as scope:
                        self._sleep = scope
                        if head is None:
                            self._sleep_until = float("inf")
                            await anyio.sleep_forever()
                        else:
                            self._sleep_until = head
                            await clock.sleep_until(head if wake is None else wake)
                    self._sleep = None
        finally:
            if _schedulers.get(id(app)) is self:
                del _schedulers[id(app)]
            self._sleep = self._tg = None
            self._idle.clear()
            for timer in self._generation:
                timer._scheduler = None
                timer._stopped()
            self._generation.clear()
            self._next.clear()
            heap.clear()


# The running schedulers, by id(app): each is here from the start of its driver's task
# group to the end of it (the scheduler holds the app, so the id stays the app's).
_schedulers: dict[int, Scheduler] = {}


async def join(app: App, timer: Timer, task_status: TaskStatus[None]) -> None:
    """Run *timer* in *app*'s scheduler: the body of every timer source's ``run()``.

    The first timer of a running app drives the scheduler, in this task, until cancelled;
    the others are added to it and return at once.

    :param app: the running app
    :param timer: the timer
    :param task_status: started once the timer is scheduled
    """
    scheduler = scheduler_of(app)
    if scheduler is not None:
        scheduler.add(timer)
        task_status.started()
        return
    await Scheduler(app).run(timer, task_status)


def scheduler_of(app: App) -> Scheduler | None:
    """Return the running scheduler of *app*, or ``None``.

    :param app: an app
    """
    scheduler = _schedulers.get(id(app))
    return scheduler if scheduler is not None and scheduler.app is app else None
