"""Steering an app's timers from code: ``app.schedules``, what :func:`schedules` returns.

A :class:`Schedule` is a handle on one timer source of the app: when it fires next, and
pause, resume, remove and run now. It acts on the source and, while the app runs, on
the app's scheduler (:mod:`._scheduler`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime

from reactor import ReactorNotRunning
from reactor.abc import App

from ._sources import TimerSource

__all__ = ["Schedule", "Schedules", "schedules"]


class Schedule:
    """One timer of an app: when it fires next, and pause, resume, remove, run now.

    A handle on the timer's source, got from ``app.schedules``; it stays valid across
    starts of the app. What it changes holds until changed again, also across starts:
    a timer paused before the app starts starts paused.

    :param app: the app the timer was added to
    :param timer: the timer's source
    """

    __slots__ = ("_app", "timer")

    def __init__(self, app: App, timer: TimerSource) -> None:
        self._app = app
        #: The timer's source (its counters are in ``app.stats().sources[timer.name]``).
        self.timer = timer

    @property
    def name(self) -> str:
        """The timer's name (its events' subject)."""
        return self.timer.timer_name

    @property
    def kind(self) -> str:
        """``"interval"``, ``"cron"`` or ``"at"``, as in its events' data."""
        return self.timer.kind

    @property
    def paused(self) -> bool:
        """Whether the timer is paused."""
        return self.timer._paused

    @property
    def removed(self) -> bool:
        """Whether the timer was removed."""
        return self.timer._removed

    @property
    def last_fire_time(self) -> datetime | None:
        """The due time of the latest run of the schedule that fired, or ``None``.

        With a durable queue, the time stored by an earlier run of the app, until a run
        fires (see :func:`~reactor.sources.timers.every`). Runs off the schedule
        (:meth:`run_now`) do not count.
        """
        return self.timer.last_fire_time

    @property
    def next_fire_time(self) -> datetime | None:
        """When the timer fires next (an aware datetime, its jitter included), or ``None``.

        ``None`` while the app is not running (an interval's grid starts with the app),
        and for a timer that is paused, removed, or has nothing left to fire (a one-shot
        that fired, an interval past its ``end``).
        """
        timer = self.timer
        scheduler = timer._scheduler
        if scheduler is None or scheduler.next_wake(timer) is None:
            return None
        return timer._next_fire(scheduler.app)

    def pause(self) -> None:
        """Fire no run until :meth:`resume`; runs in progress go on.

        Due times that pass while paused are skipped: they are not runs, nor missed ones
        (a one-shot timer whose time passed meanwhile fires when resumed, late).
        """
        timer = self.timer
        if timer._paused or timer._removed:
            return
        timer._paused = True
        if timer._scheduler is not None:
            timer._scheduler.pause(timer)

    def resume(self) -> None:
        """Fire again, from the next due time on (an interval keeps its grid)."""
        timer = self.timer
        if not timer._paused or timer._removed:
            return
        timer._paused = False
        if timer._scheduler is not None:
            timer._scheduler.resume(timer)

    def remove(self) -> None:
        """Stop the timer for good and cancel its handler's subscription.

        Runs in progress go on; the timer fires no more, in this run of the app or a
        later one, and ``app.schedules`` no longer lists it. Its source stays among
        ``app.sources`` (with its counters in ``app.stats().sources``).
        """
        timer = self.timer
        if timer._removed:
            return
        timer._removed = True
        if timer._scheduler is not None:
            timer._scheduler.remove(timer)
        if timer._subscription is not None:
            timer._subscription.cancel()

    def run_now(self) -> None:
        """Start a run now, off the schedule, which does not move (nor jitter it).

        The run is due now: its event's ``"scheduled"`` is now, and it goes through the
        timer's overlap policy like any run (with ``overlap="skip"``, it is skipped while
        a run is in progress). A paused timer runs too.

        :raises ~reactor.ReactorNotRunning: the app is not running, or the timer was
            removed
        """
        timer = self.timer
        scheduler = timer._scheduler
        if scheduler is None:
            why = "was removed" if timer._removed else "is not running: start the app first"
            raise ReactorNotRunning(f"timer {timer.timer_name!r} {why}")
        timer._run_now(scheduler.app)

    def __repr__(self) -> str:
        state = " removed" if self.removed else " paused" if self.paused else ""
        return f"<Schedule {self.name!r} {self.kind}{state} next={self.next_fire_time}>"


class Schedules(Mapping[str, Schedule]):
    """The timers of an app by name, in the order they were added: ``app.schedules``.

    A read-only mapping from each timer's name to its :class:`Schedule`, made from
    ``app.sources`` when it is created (removed timers left out)::

        for schedule in app.schedules.values():
            print(schedule.name, schedule.next_fire_time)
        app.schedules["nightly"].pause()

    :param app: the app
    """

    __slots__ = ("_app", "_timers")

    def __init__(self, app: App) -> None:
        self._app = app
        self._timers = {
            source.timer_name: source
            for source in app.sources
            if isinstance(source, TimerSource) and not source._removed
        }

    def __getitem__(self, name: str) -> Schedule:
        """Return the schedule of the timer named *name*.

        :raises KeyError: no timer has that name
        """
        try:
            return Schedule(self._app, self._timers[name])
        except KeyError:
            raise KeyError(f"no timer named {name!r} in this app") from None

    def __iter__(self) -> Iterator[str]:
        """Iterate over the timers' names, in the order they were added."""
        return iter(self._timers)

    def __len__(self) -> int:
        """Return the number of timers."""
        return len(self._timers)

    def __repr__(self) -> str:
        return f"<Schedules of {len(self)} timer(s)>"


def schedules(app: App) -> Schedules:
    """Return the timers of *app*, to list and steer: what ``app.schedules`` is.

    :param app: the app
    :return: a mapping of each timer's name to its :class:`Schedule`
    """
    return Schedules(app)
