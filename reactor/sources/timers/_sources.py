"""The sleeping sources: wait in the app's clock for each due time, publish, apply policies.

A source asks its trigger (:mod:`._triggers`, :mod:`._cron`) when it is due, sleeps on
``app.clock`` toward that time, and hands each due time to the misfire policy (a run
late after a stall), then to the overlap policy (a run due while earlier ones have not
settled). It sees the app only through :class:`reactor.abc.App`.
"""

from __future__ import annotations

import logging
import random
from abc import abstractmethod
from collections import deque
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import ClassVar, Final, Literal, TypedDict, Unpack, get_args

import anyio
from anyio.abc import TaskGroup, TaskStatus
from anyio.lowlevel import checkpoint

from reactor import Event, ReactorNotRunning, SystemClock, validators
from reactor.abc import App, Source

from .._naming import source_uri
from ._cron import CronTrigger
from ._triggers import AtTrigger, IntervalTrigger

__all__ = [
    "LATE_AFTER",
    "MAX_BACKLOG",
    "TIMER_TYPE",
    "WALL_CLOCK_CHECK",
    "CronSource",
    "IntervalSource",
    "Misfire",
    "OneShotSource",
    "Overlap",
    "Past",
    "TimerPolicies",
    "TimerSource",
    "checked_interval",
    "checked_past",
    "checked_policies",
    "timer_event",
]

# The one logger of the timers package.
logger = logging.getLogger("reactor.sources.timers")

#: The type of every timer event.
TIMER_TYPE: Final = "reactor.timer"
#: A run that starts more than this many seconds after its due time is marked late.
LATE_AFTER: Final = 1.0
#: The most runs of one timer waiting (``overlap="queue"``) or running at once
#: (``overlap="concurrent"``).
MAX_BACKLOG: Final = 16
#: The longest a cron or one-shot timer sleeps before reading the wall clock again, in
#: seconds: how soon a wall-clock step is noticed.
WALL_CLOCK_CHECK: Final = 60.0

#: How a timer treats a due time that comes while earlier runs have not settled.
Overlap = Literal["skip", "queue", "concurrent"]
#: How a timer treats a run that is late after a stall.
Misfire = Literal["coalesce", "skip"]
#: What a one-shot timer does with a time that has already passed.
Past = Literal["fire", "reject"]
_OVERLAPS: Final[tuple[Overlap, ...]] = get_args(Overlap)
_MISFIRES: Final[tuple[Misfire, ...]] = get_args(Misfire)
_PASTS: Final[tuple[Past, ...]] = get_args(Past)

# How early an interval timer on the system clock wakes before a due time (see there).
_EARLY = 0.002
# Missed cron times counted one by one after a stall; past this many the last one is
# found directly and "missed" reports this lower bound.
_MISSED_COUNT_LIMIT = 1000


class TimerPolicies(TypedDict, total=False):
    """The policies of a timer source, keywords of :class:`IntervalSource` and :class:`CronSource`.

    ``overlap`` (an :data:`Overlap`) and ``misfire`` (a :data:`Misfire`), with the
    meanings and defaults that :func:`~reactor.sources.timers.every` documents.
    """

    overlap: Overlap
    misfire: Misfire


def checked_policies(overlap: Overlap, misfire: Misfire) -> tuple[Overlap, Misfire]:
    """Return the *overlap* and *misfire* policies if they are valid ones.

    :raises TypeError: one is not a str
    :raises ValueError: one is not a policy
    """
    return (
        validators.one_of("overlap", overlap, _OVERLAPS),
        validators.one_of("misfire", misfire, _MISFIRES),
    )


def checked_interval(seconds: object, jitter: object) -> tuple[float, float]:
    """Return the period and the jitter of an interval timer as floats if they are valid.

    :raises TypeError: one is not a number
    :raises ValueError: *seconds* is not finite and ``> 0``, or *jitter* is not in
        ``[0, seconds)``
    """
    period = validators.seconds("seconds", seconds, positive=True)
    spread = validators.seconds("jitter", jitter)
    if spread >= period:
        raise ValueError(
            f"jitter must be a number of seconds >= 0 and below the period ({period}), "
            f"got {jitter!r}"
        )
    return period, spread


def checked_past(past: Past) -> Past:
    """Return the one-shot policy *past* if it is a valid one.

    :raises TypeError: it is not a str
    :raises ValueError: it is not a policy
    """
    return validators.one_of("past", past, _PASTS)


def _rfc3339(moment: datetime) -> str:
    # As the CloudEvents JSON format writes times: UTC with a "Z".
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def timer_event(
    source: TimerSource,
    *,
    time: datetime,
    scheduled: datetime | None = None,
    late: bool = False,
    missed: int = 0,
) -> Event:
    """Build the event *source* publishes for one run: the one definition of a timer event.

    :param source: the timer
    :param time: the event's time (when the run starts)
    :param scheduled: when the run was due (default: *time*)
    :param late: whether the run started late (after a stall, or past :data:`LATE_AFTER`)
    :param missed: how many earlier due times this run stands for (folded by ``misfire``)
    :return: an event of type :data:`TIMER_TYPE` from ``source.uri``, subject the timer's name
    """
    return Event(
        type=TIMER_TYPE,
        source=source.uri,
        subject=source.timer_name,
        time=time,
        data={
            "kind": source.kind,
            "scheduled": _rfc3339(time if scheduled is None else scheduled),
            "late": late,
            "missed": missed,
        },
    )


class _Tick:
    """One run about to be published."""

    __slots__ = ("due", "missed", "scheduled")

    def __init__(self, scheduled: datetime, due: float, missed: int) -> None:
        self.scheduled = scheduled  # wall time it was due, UTC
        self.due = due  # monotonic time it was due, for lateness
        self.missed = missed  # earlier due times folded into it


class TimerSource(Source):
    """What every timer shares: its events, the overlap and misfire policies, counters.

    Subclasses implement :meth:`_schedule`, which sleeps on ``app.clock`` and calls
    :meth:`_due` for each due time.

    :param name: the timer's name (its events' subject; part of its source URI)
    :param overlap: see :data:`Overlap` and :func:`~reactor.sources.timers.every`
    :param misfire: see :data:`Misfire` and :func:`~reactor.sources.timers.every`
    """

    #: The ``"kind"`` in this timer's event data.
    kind: ClassVar[str]

    def __init__(
        self, name: str, *, overlap: Overlap = "skip", misfire: Misfire = "coalesce"
    ) -> None:
        #: The timer's name.
        self.timer_name = validators.name("name", name)
        #: The CloudEvents source of this timer's events.
        self.uri = source_uri("timers", name)
        self.overlap, self.misfire = checked_policies(overlap, misfire)
        self._counts = dict.fromkeys(("fired", "late", "missed", "skipped", "coalesced"), 0)
        self._tg: TaskGroup | None = None
        self._running = 0
        self._backlog: deque[_Tick] = deque()

    @property
    def name(self) -> str:
        """The source URI, ``"/reactor/timers/<name>"``: the key of its stats."""
        return self.uri

    @property
    def concurrency(self) -> int:
        """The subscription concurrency that suits the overlap policy."""
        return MAX_BACKLOG if self.overlap == "concurrent" else 1

    def statistics(self) -> Mapping[str, int]:
        """Return the counters ``fired``, ``late``, ``missed``, ``skipped`` and ``coalesced``."""
        return dict(self._counts)

    async def run(
        self, app: App, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Fire into *app* until cancelled (a one-shot timer returns after its run).

        :param app: the running app
        :param task_status: started once the first due time is computed
        """
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                await self._schedule(app, task_status)
        finally:
            self._tg = None
            self._running = 0
            self._backlog.clear()

    @abstractmethod
    async def _schedule(self, app: App, task_status: TaskStatus[None]) -> None:
        """Sleep toward each due time and call :meth:`_due`; ``started()`` when ready."""

    def _due(self, app: App, tick: _Tick, *, late: bool) -> None:
        """Apply the misfire, then the overlap policy to a due time; never waits."""
        if late and self.misfire == "skip":
            self._counts["missed"] += tick.missed + 1
            logger.warning(
                "timer %s: run due at %s is late (%d earlier due time(s) missed); "
                "skipped by misfire='skip'",
                self.timer_name,
                tick.scheduled.isoformat(),
                tick.missed,
            )
            return
        if tick.missed:
            self._counts["missed"] += tick.missed
            logger.warning(
                "timer %s: %d due time(s) missed (the loop was blocked or the clock "
                "jumped); running once, late, for %s",
                self.timer_name,
                tick.missed,
                tick.scheduled.isoformat(),
            )
        assert self._tg is not None
        if self.overlap == "queue":
            if len(self._backlog) >= MAX_BACKLOG:
                folded = self._backlog.pop()
                tick.missed += folded.missed + 1
                self._counts["coalesced"] += 1
            self._backlog.append(tick)
            if not self._running:
                self._running = 1
                self._tg.start_soon(self._drain, app, name=f"timer {self.timer_name}")
            return
        limit = 1 if self.overlap == "skip" else MAX_BACKLOG
        if self._running >= limit:
            self._counts["skipped"] += 1
            return
        self._running += 1
        self._tg.start_soon(self._run_once, app, tick, name=f"timer {self.timer_name}")

    async def _drain(self, app: App) -> None:
        try:
            while self._backlog:
                await self._publish(app, self._backlog.popleft())
        finally:
            self._running = 0

    async def _run_once(self, app: App, tick: _Tick) -> None:
        try:
            await self._publish(app, tick)
        finally:
            self._running -= 1

    async def _publish(self, app: App, tick: _Tick) -> None:
        """Publish one run and wait until every delivery of it has settled."""
        clock = app.clock
        late = tick.missed > 0 or clock.monotonic() - tick.due > LATE_AFTER
        self._counts["fired"] += 1
        self._counts["late"] += late
        event = timer_event(
            self, time=clock.now(), scheduled=tick.scheduled, late=late, missed=tick.missed
        )
        try:
            await app.publish_and_wait(event)
        except ReactorNotRunning:
            pass  # the app is stopping: its drain settles whatever was queued


class IntervalSource(TimerSource):
    """The source of :func:`~reactor.sources.timers.every`: fires every *seconds*.

    Runs are due at ``start + k * seconds`` on the monotonic clock, the first one period
    after the app starts. The arguments are :func:`~reactor.sources.timers.every`'s,
    with the timer's *name* required.
    """

    kind = "interval"

    def __init__(
        self, seconds: float, *, name: str, jitter: float = 0.0, **policies: Unpack[TimerPolicies]
    ) -> None:
        super().__init__(name, **policies)
        self.seconds, self.jitter = checked_interval(seconds, jitter)

    async def _schedule(self, app: App, task_status: TaskStatus[None]) -> None:
        clock = app.clock
        trigger = IntervalTrigger(self.seconds, clock.monotonic())
        jitter = self.jitter
        # The system clock's sleeps end up to 2 ms late (asyncio rounds timeouts up to
        # whole milliseconds, sometimes twice): wake a little early and yield to the
        # loop until the due time. Other clocks (virtual time) are exact.
        early = _EARLY if isinstance(clock, SystemClock) else 0.0
        index = 1
        task_status.started()
        while True:
            target = trigger.due(index)
            if jitter:
                target += random.uniform(0.0, jitter)
            if early:
                await clock.sleep_until(target - early)
                while clock.monotonic() < target:
                    await checkpoint()
            else:
                await clock.sleep_until(target)
            now = clock.monotonic()
            latest = trigger.latest(now, index)
            fire_at = target if latest == index else trigger.due(latest)
            lateness = now - fire_at
            tick = _Tick(clock.now() - timedelta(seconds=lateness), fire_at, latest - index)
            self._due(app, tick, late=latest > index or lateness > LATE_AFTER)
            index = latest + 1

    def __repr__(self) -> str:
        return f"<IntervalSource {self.timer_name!r} every {self.seconds} s>"


class _WallClockSource(TimerSource):
    """A timer whose due times are wall-clock times (cron, one-shot)."""

    def __init__(self, name: str, **policies: Unpack[TimerPolicies]) -> None:
        super().__init__(name, **policies)
        # The latest time that fired, kept across runs of the app so that a restart
        # never fires it again.
        self._last: datetime | None = None

    @abstractmethod
    def _first(self, now: datetime) -> datetime | None:
        """The first due time when the app starts at *now* (``None``: nothing to do)."""

    @abstractmethod
    def _next_after(self, moment: datetime) -> datetime | None:
        """The due time after *moment*."""

    def _catch_up(self, due: datetime, now: datetime) -> tuple[datetime, int]:
        """The latest due time ``<= now`` from *due* on, and how many came before it."""
        return due, 0

    async def _schedule(self, app: App, task_status: TaskStatus[None]) -> None:
        clock = app.clock
        due = self._first(clock.now())
        task_status.started()
        while due is not None:
            now = clock.now()
            if now < due:
                # Sleep on the monotonic clock, briefly enough to notice a wall-clock step.
                await clock.sleep(min((due - now).total_seconds(), WALL_CLOCK_CHECK))
                continue
            latest, missed = self._catch_up(due, now)
            self._last = latest
            lateness = (now - latest).total_seconds()
            tick = _Tick(latest, clock.monotonic() - lateness, missed)
            self._due(app, tick, late=missed > 0 or lateness > LATE_AFTER)
            due = self._next_after(now)


class CronSource(_WallClockSource):
    """The source of :func:`~reactor.sources.timers.cron`: fires at a cron expression's times.

    *trigger* holds the expression and the time zone; the other arguments are
    :func:`~reactor.sources.timers.cron`'s, with the timer's *name* required.

    :param trigger: the expression in its time zone
    :raises TypeError: *trigger* is not a :class:`CronTrigger`
    """

    kind = "cron"

    def __init__(
        self, trigger: CronTrigger, *, name: str, **policies: Unpack[TimerPolicies]
    ) -> None:
        if not isinstance(trigger, CronTrigger):
            raise TypeError(f"trigger must be a CronTrigger, got {trigger!r}")
        super().__init__(name, **policies)
        self.trigger = trigger

    def _first(self, now: datetime) -> datetime | None:
        return self.trigger.next_after(now if self._last is None else max(now, self._last))

    def _next_after(self, moment: datetime) -> datetime | None:
        return self.trigger.next_after(moment)

    def _catch_up(self, due: datetime, now: datetime) -> tuple[datetime, int]:
        latest, missed = due, 0
        while missed < _MISSED_COUNT_LIMIT:
            following = self.trigger.next_after(latest)
            if following is None or following > now:
                return latest, missed
            latest, missed = following, missed + 1
        # A long stall over a frequent schedule: jump to the last time instead of
        # walking every one; "missed" stays the lower bound counted so far.
        last = self.trigger.last_at_or_before(now)
        return (last if last is not None and last > latest else latest), missed

    def __repr__(self) -> str:
        return (
            f"<CronSource {self.timer_name!r} {self.trigger.expression!r} tz={self.trigger.tz!r}>"
        )


class OneShotSource(_WallClockSource):
    """The source of :func:`~reactor.sources.timers.at`: fires once, at a wall-clock time.

    It fires at most once in the life of the source, whatever the number of times the
    app is started. The arguments are :func:`~reactor.sources.timers.at`'s, with the
    timer's *name* required; a time that passes before the app starts is handled by
    *past* as there (``"reject"`` drops it, logged and counted as missed).
    """

    kind = "at"

    def __init__(self, when: datetime, *, name: str, past: Past = "fire") -> None:
        super().__init__(name)
        self.past = checked_past(past)
        self.trigger = AtTrigger(when)
        self._done = False

    @property
    def fired(self) -> bool:
        """Whether the time has fired (or been dropped as past)."""
        return self._done

    def _first(self, now: datetime) -> datetime | None:
        when = self.trigger.when
        if self._done:
            return None
        if when <= now and self.past == "reject":
            self._done = True
            self._counts["missed"] += 1
            logger.warning(
                "one-shot timer %s: %s had passed when the app started; dropped (past='reject')",
                self.timer_name,
                when.isoformat(),
            )
            return None
        return when

    def _next_after(self, moment: datetime) -> datetime | None:
        self._done = True
        return None

    def __repr__(self) -> str:
        return f"<OneShotSource {self.timer_name!r} at {self.trigger.when.isoformat()}>"
