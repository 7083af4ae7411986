"""The timer sources: when each timer wakes, its events, and its policies.

A source asks its trigger (:mod:`._triggers`, :mod:`._cron`) when it is due and tells
the app's scheduler (:mod:`._scheduler`, the one loop that sleeps for every timer of an
app) when to wake it; woken, it hands each due time to the misfire policy (a run late
after a stall), then to the overlap policy (a run due while earlier ones have not
settled), and starts the run. It sees the app only through :class:`reactor.abc.App`.
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
from anyio.abc import TaskStatus

from reactor import Event, ReactorNotRunning, Subscription, validators
from reactor.abc import App, EventQueue, Source

from .._naming import source_uri
from ._cron import CronTrigger
from ._scheduler import Scheduler, join
from ._triggers import AtTrigger, IntervalTrigger, as_utc

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
    "checked_grace",
    "checked_interval",
    "checked_past",
    "checked_policies",
    "checked_span",
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

# Tolerance when placing a stored fire time on an interval's grid (float rounding).
_GRID_SLACK = 1e-6
# Missed cron times counted one by one after a stall; past this many the last one is
# found directly and "missed" reports this lower bound.
_MISSED_COUNT_LIMIT = 1000


class TimerPolicies(TypedDict, total=False):
    """The policies of a timer source, keywords of :class:`IntervalSource` and :class:`CronSource`.

    ``overlap`` (an :data:`Overlap`), ``misfire`` (a :data:`Misfire`) and ``grace`` (seconds
    or a timedelta, or ``None``), with the meanings and defaults that
    :func:`~reactor.sources.timers.every` documents.
    """

    overlap: Overlap
    misfire: Misfire
    grace: float | timedelta | None


def checked_policies(overlap: Overlap, misfire: Misfire) -> tuple[Overlap, Misfire]:
    """Return the *overlap* and *misfire* policies if they are valid ones.

    :raises TypeError: one is not a str
    :raises ValueError: one is not a policy
    """
    return (
        validators.one_of("overlap", overlap, _OVERLAPS),
        validators.one_of("misfire", misfire, _MISFIRES),
    )


def checked_grace(grace: object) -> float | None:
    """Return the grace time *grace* in seconds (``None``: no limit) if it is valid.

    :raises TypeError: it is neither ``None``, a number nor a timedelta
    :raises ValueError: it is negative, NaN or infinite
    """
    if grace is None:
        return None
    if isinstance(grace, timedelta):
        grace = grace.total_seconds()
    return validators.seconds("grace", grace)


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


def checked_span(start: object, end: object) -> tuple[datetime | None, datetime | None]:
    """Return an interval timer's *start* and *end* in UTC if they are valid.

    :raises TypeError: one is neither ``None`` nor a datetime
    :raises ValueError: one is naive, or *end* is not after *start*
    """
    first = None if start is None else as_utc("start", start)
    last = None if end is None else as_utc("end", end)
    if first is not None and last is not None and last <= first:
        raise ValueError(
            f"end must be after start, got start={first.isoformat()} and end={last.isoformat()}"
        )
    return first, last


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

    __slots__ = ("due", "mark", "missed", "scheduled")

    def __init__(self, scheduled: datetime, due: float, missed: int, mark: datetime | None) -> None:
        self.scheduled = scheduled  # wall time it was due, UTC
        self.due = due  # monotonic time it was due, for lateness
        self.missed = missed  # earlier due times folded into it
        # The schedule's due time it stands for (an interval's without its jitter): the
        # timer's fire time once it fires; None for a run off the schedule (run_now).
        self.mark = mark


class TimerSource(Source):
    """What every timer shares: its events, the overlap and misfire policies, counters.

    Subclasses implement :meth:`_start` and :meth:`_wake`, which the app's scheduler
    (:mod:`._scheduler`) calls: they compute when the timer must be woken next on
    ``app.clock``'s monotonic clock, and call :meth:`_due` for each due time.

    :param name: the timer's name (its events' subject; part of its source URI)
    :param overlap: see :data:`Overlap` and :func:`~reactor.sources.timers.every`
    :param misfire: see :data:`Misfire` and :func:`~reactor.sources.timers.every`
    :param grace: see :func:`~reactor.sources.timers.every`
    """

    #: The ``"kind"`` in this timer's event data.
    kind: ClassVar[str]

    def __init__(
        self,
        name: str,
        *,
        overlap: Overlap = "skip",
        misfire: Misfire = "coalesce",
        grace: float | timedelta | None = None,
    ) -> None:
        #: The timer's name.
        self.timer_name = validators.name("name", name)
        #: The CloudEvents source of this timer's events.
        self.uri = source_uri("timers", name)
        self.overlap, self.misfire = checked_policies(overlap, misfire)
        #: The latest a run may start after its due time, in seconds (``None``: no limit).
        self.grace = checked_grace(grace)
        #: The due time of the latest run of the schedule that fired (or that an earlier
        #: run of the app stored in a durable queue), or ``None``.
        self.last_fire_time: datetime | None = None
        # The durable queue that keeps the fire times while the app runs, if any.
        self._store: EventQueue | None = None
        self._counts = dict.fromkeys(("fired", "late", "missed", "skipped", "coalesced"), 0)
        self._running = 0
        self._backlog: deque[_Tick] = deque()
        # The scheduler that wakes this timer while its app runs.
        self._scheduler: Scheduler | None = None
        # Steered through app.schedules: paused (no runs until resumed), removed (no runs
        # ever again), and the subscription of the decorated handler, if any.
        self._paused = False
        self._removed = False
        self._subscription: Subscription | None = None

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
        """Fire into *app* while it runs.

        Every timer of an app is woken by one scheduler, which runs in the task of the
        first timer to start (this method then returns only when cancelled); the run()
        of every other timer adds it to that scheduler and returns at once.

        :param app: the running app
        :param task_status: started once the first due time is computed
        :raises RuntimeError: this timer already runs (in this app or another)
        """
        if self._removed:
            task_status.started()
            return
        await join(app, self, task_status)

    @abstractmethod
    def _start(self, app: App) -> float | None:
        """Compute the first wake-up time on the app's monotonic clock (``None``: none)."""

    @abstractmethod
    def _wake(self, app: App, now: float) -> float | None:
        """Handle a wake-up at monotonic *now*: call :meth:`_due` if due; the next wake-up."""

    @abstractmethod
    def _resume(self, app: App) -> float | None:
        """Compute the next wake-up time when resumed: the due times of the pause skipped."""

    @abstractmethod
    def _next_fire(self, app: App) -> datetime | None:
        """When the next run fires (wall clock), while the timer is scheduled."""

    def _run_now(self, app: App) -> None:
        """Start a run due now, through the overlap policy; the schedule does not move."""
        clock = app.clock
        self._due(app, _Tick(clock.now(), clock.monotonic(), 0, None), late=False)

    def _stopped(self) -> None:
        self._running = 0
        self._backlog.clear()
        self._store = None

    def _stored_fire_time(self, app: App) -> datetime | None:
        """Return the last fire time *app*'s queue keeps for this timer, if it keeps them.

        Called when the app starts; the queue is then the timer's store until it stops.
        """
        queue = app.queue
        if not queue.stores_fire_times:
            self._store = None
            return None
        self._store = queue
        stored = queue.fire_times().get(self.timer_name)
        if stored is not None and (self.last_fire_time is None or stored > self.last_fire_time):
            self.last_fire_time = stored
        return stored

    def _due(self, app: App, tick: _Tick, *, late: bool) -> None:
        """Apply the misfire, then the overlap policy to a due time; never waits."""
        grace = self.grace
        if (late and self.misfire == "skip") or (
            grace is not None and app.clock.monotonic() - tick.due > grace
        ):
            self._counts["missed"] += tick.missed + 1
            logger.warning(
                "timer %s: run due at %s is late (%d earlier due time(s) missed); skipped by %s",
                self.timer_name,
                tick.scheduled.isoformat(),
                tick.missed,
                "misfire='skip'" if late and self.misfire == "skip" else f"grace={grace} s",
                extra={"source": self.name},
            )
            self._passed(tick)
            return
        if tick.missed:
            self._counts["missed"] += tick.missed
            logger.warning(
                "timer %s: %d due time(s) missed (the app was stopped, the loop blocked or "
                "the clock jumped); running once, late, for %s",
                self.timer_name,
                tick.missed,
                tick.scheduled.isoformat(),
                extra={"source": self.name},
            )
        scheduler = self._scheduler
        assert scheduler is not None
        if self.overlap == "queue":
            if len(self._backlog) >= MAX_BACKLOG:
                folded = self._backlog.pop()
                tick.missed += folded.missed + 1
                self._counts["coalesced"] += 1
            self._backlog.append(tick)
            if not self._running:
                self._running = 1
                scheduler.submit(self._drain, app)
            return
        limit = 1 if self.overlap == "skip" else MAX_BACKLOG
        if self._running >= limit:
            self._counts["skipped"] += 1
            self._passed(tick)
            return
        self._running += 1
        scheduler.submit(self._run_once, app, tick)

    def _passed(self, tick: _Tick) -> None:
        """Note a due time dealt with without a run (dropped or skipped): a durable queue
        keeps it, so that a restart does not count it as missed."""
        store = self._store
        if store is not None and tick.mark is not None:
            store.record_fire_time(self.timer_name, tick.mark, None)

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
        mark = tick.mark
        if mark is not None:
            if self.last_fire_time is None or mark > self.last_fire_time:
                self.last_fire_time = mark
            store = self._store
            if store is not None:
                # Stored with the event (see EventQueue.record_fire_time): a run is never
                # lost to a crash, and at most one is repeated.
                store.record_fire_time(self.timer_name, mark, event)
        try:
            await app.publish_and_wait(event)
        except ReactorNotRunning:
            pass  # the app is stopping: its drain settles whatever was queued


class IntervalSource(TimerSource):
    """The source of :func:`~reactor.sources.timers.every`: fires every *seconds*.

    Runs are due at ``origin + k * seconds`` on the monotonic clock, where the origin is
    *start* (a wall-clock time, placed on the monotonic clock when the app starts) or
    else the app's start; ``k`` counts from 1, or from 0 with *run_immediately*; due
    times after *end* are not runs. The arguments are
    :func:`~reactor.sources.timers.every`'s, with the timer's *name* required.
    """

    kind = "interval"

    def __init__(
        self,
        seconds: float,
        *,
        name: str,
        jitter: float = 0.0,
        start: datetime | None = None,
        end: datetime | None = None,
        run_immediately: bool = False,
        **policies: Unpack[TimerPolicies],
    ) -> None:
        super().__init__(name, **policies)
        self.seconds, self.jitter = checked_interval(seconds, jitter)
        # The wall-clock origin of the grid and the last time a run may be due at, in
        # UTC; None: the app's start, and no end.
        self.start, self.end = checked_span(start, end)
        self.run_immediately = validators.boolean("run_immediately", run_immediately)
        # Set by _start() each time the app starts: the grid, the due time to come (its
        # index), the last index (end) if any, whether a run at once comes first, and
        # when the next run fires (its due time plus its jitter).
        self._trigger = IntervalTrigger(self.seconds, 0.0)
        self._index = 1
        self._last_index: int | None = None
        self._at_once = False
        self._fire_at = 0.0

    def _start(self, app: App) -> float | None:
        clock = app.clock
        now, wall = clock.monotonic(), clock.now()
        last = self._stored_fire_time(app)
        if last is not None and (last > wall or (self.start is not None and last < self.start)):
            last = None  # from a clock set back, or before the start: a grid afresh
        # The grid's origin: start, else the fire time stored by an earlier run (the
        # schedule goes on), else now.
        origin_wall = self.start if self.start is not None else last
        origin = now if origin_wall is None else now + (origin_wall - wall).total_seconds()
        trigger = self._trigger = IntervalTrigger(self.seconds, origin)
        if last is not None:
            # The due time after the one stored (index 0 when it is the origin).
            fired = 0
            if self.start is not None:
                fired = trigger.latest(now + (last - wall).total_seconds() + _GRID_SLACK, 0)
            index = fired + 1
        else:
            index = 0 if self.run_immediately else 1
            if trigger.due(index) < now:
                # A start in the past: the grid goes on from now; earlier due times were
                # never runs of this app, not missed ones.
                index = trigger.latest(now, index)
                if trigger.due(index) < now:
                    index += 1
        self._index = index
        self._last_index = None
        if self.end is not None:
            end = now + (self.end - wall).total_seconds()
            if end < now and last is None:
                self._last_index = -1
                return None
            final = trigger.latest(end, 0)
            self._last_index = final if trigger.due(final) <= end else -1
        if last is not None:
            self._at_once = False
            if trigger.due(index) <= now and self._target() is not None:
                # Due times passed while the app was stopped: the first wake-up, at once,
                # hands them to the misfire policy as one late run (or none).
                self._fire_at = trigger.due(index)
                return now
            return self._target()
        # run_immediately with a start that has passed: a run now, off the grid.
        self._at_once = self.run_immediately and origin < now < trigger.due(index)
        if self._at_once:
            self._fire_at = now
            return now
        return self._target()

    def _resume(self, app: App) -> float | None:
        now, trigger = app.clock.monotonic(), self._trigger
        index = trigger.latest(now, self._index)
        self._index = index + 1 if trigger.due(index) < now else index
        self._at_once = False
        return self._target()

    def _next_fire(self, app: App) -> datetime | None:
        clock = app.clock
        return clock.now() + timedelta(seconds=self._fire_at - clock.monotonic())

    def _target(self) -> float | None:
        """The wake-up time of the due time :attr:`_index`: the due time plus its jitter."""
        if self._last_index is not None and self._index > self._last_index:
            return None
        target = self._trigger.due(self._index)
        if self.jitter:
            target += random.uniform(0.0, self.jitter)
        self._fire_at = target
        return target

    def _wake(self, app: App, now: float) -> float | None:
        if self._at_once:
            self._at_once = False
            lateness = now - self._fire_at
            tick = _Tick(app.clock.now() - timedelta(seconds=lateness), self._fire_at, 0, None)
            self._due(app, tick, late=lateness > LATE_AFTER)
            return self._target()
        trigger, index = self._trigger, self._index
        latest = trigger.latest(now, index)
        if self._last_index is not None:
            latest = min(latest, self._last_index)
        fire_at = self._fire_at if latest == index else trigger.due(latest)
        lateness = now - fire_at
        wall = app.clock.now()
        mark = wall - timedelta(seconds=now - trigger.due(latest))
        tick = _Tick(wall - timedelta(seconds=lateness), fire_at, latest - index, mark)
        self._due(app, tick, late=latest > index or lateness > LATE_AFTER)
        self._index = latest + 1
        return self._target()

    def __repr__(self) -> str:
        return f"<IntervalSource {self.timer_name!r} every {self.seconds} s>"


class _WallClockSource(TimerSource):
    """A timer whose due times are wall-clock times (cron, one-shot)."""

    def __init__(self, name: str, **policies: Unpack[TimerPolicies]) -> None:
        super().__init__(name, **policies)
        # The latest time that fired, kept across runs of the app so that a restart
        # never fires it again.
        self._last: datetime | None = None
        # The due time to come, while the app runs.
        self._pending: datetime | None = None

    @abstractmethod
    def _first(self, now: datetime) -> datetime | None:
        """The first due time when the app starts at *now* (``None``: nothing to do)."""

    @abstractmethod
    def _next_after(self, moment: datetime) -> datetime | None:
        """The due time after *moment*."""

    def _catch_up(self, due: datetime, now: datetime) -> tuple[datetime, int]:
        """The latest due time ``<= now`` from *due* on, and how many came before it."""
        return due, 0

    def _after_stored(self, stored: datetime, now: datetime) -> datetime | None:
        """The first due time when the app starts at *now* and an earlier run of it
        stored *stored* as the last fire time (a time ``<= now``: missed runs)."""
        return self._first(now)

    def _start(self, app: App) -> float | None:
        clock = app.clock
        now = clock.now()
        stored = self._stored_fire_time(app)
        if stored is None:
            self._pending = self._first(now)
        else:
            if self._last is None or stored > self._last:
                self._last = stored
            self._pending = self._after_stored(self._last, now)
        return self._wake_for(clock.monotonic(), now)

    def _resume(self, app: App) -> float | None:
        clock = app.clock
        self._pending = self._first(clock.now())
        return self._wake_for(clock.monotonic(), clock.now())

    def _next_fire(self, app: App) -> datetime | None:
        return self._pending

    def _wake_for(self, now: float, wall: datetime) -> float | None:
        """When to look at the wall clock next: at the due time, or sooner to notice a step."""
        if self._pending is None:
            return None
        # Sleep on the monotonic clock, briefly enough to notice a wall-clock step.
        return now + max(0.0, min((self._pending - wall).total_seconds(), WALL_CLOCK_CHECK))

    def _wake(self, app: App, now: float) -> float | None:
        due = self._pending
        if due is None:
            return None
        wall = app.clock.now()
        if wall >= due:
            latest, missed = self._catch_up(due, wall)
            self._last = latest
            lateness = (wall - latest).total_seconds()
            tick = _Tick(latest, now - lateness, missed, latest)
            self._due(app, tick, late=missed > 0 or lateness > LATE_AFTER)
            self._pending = self._next_after(wall)
        return self._wake_for(now, wall)


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

    def _after_stored(self, stored: datetime, now: datetime) -> datetime | None:
        # The first time after the one stored: one that has passed is a missed run, which
        # the first wake-up, at once, hands to the misfire policy.
        return self.trigger.next_after(stored)

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
                "one-shot timer %s: %s had passed when it started (or resumed); dropped "
                "(past='reject')",
                self.timer_name,
                when.isoformat(),
                extra={"source": self.name},
            )
            return None
        return when

    def _next_after(self, moment: datetime) -> datetime | None:
        self._done = True
        return None

    def _after_stored(self, stored: datetime, now: datetime) -> datetime | None:
        if stored >= self.trigger.when:
            self._done = True  # it fired in an earlier run of the app
            return None
        return self._first(now)

    def __repr__(self) -> str:
        return f"<OneShotSource {self.timer_name!r} at {self.trigger.when.isoformat()}>"
