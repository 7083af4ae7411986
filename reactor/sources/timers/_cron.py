"""Timers: interval, cron and one-shot trigger sources, all in the app's clock.

::

    from reactor.sources import timers

    @timers.every(app, seconds=5)                       # app.every(seconds=5)
    async def poll(event: Event) -> None: ...

    @timers.cron(app, "30 2 * * *", tz="Europe/Berlin")  # app.cron(...)
    async def nightly(event: Event) -> None: ...

    @timers.at(app, datetime(2030, 1, 1, tzinfo=UTC))   # app.at(...)
    async def once(event: Event) -> None: ...

Every timer publishes events of type :data:`TIMER_TYPE` (``"reactor.timer"``) from the
source ``"/reactor/timers/<name>"`` (the name percent-encoded), with the timer's name as
the subject and this data::

    {"kind": "interval" | "cron" | "at",
     "scheduled": "2030-01-01T00:00:00Z",       # RFC 3339, UTC: when this run was due
     "late": false,                              # published after a stall (see below)
     "missed": 0}                                # earlier due times folded into this run

The decorated handler is subscribed to its own timer's events only; other consumers may
subscribe to ``"reactor.timer"`` too (a ``source=`` glob picks one timer).

**Clocks.** Intervals run on the monotonic clock, at ``start + k * period`` (no drift
however many ticks). On the system clock an interval timer wakes 2 ms before each due
time and yields to the loop until it, because asyncio rounds its timeouts up to whole
milliseconds (runs would start 1-3 ms late); that costs about a millisecond of CPU per
run, 10% of a core at 100 runs a second. Cron and one-shot times are wall-clock times: the source reads
``app.clock.now()``, sleeps on the monotonic clock toward the next fire time, at most
:data:`WALL_CLOCK_CHECK` seconds at a time, and reads the wall clock again when it
wakes. A wall clock stepped forward over fire times gives at most one catch-up run; one
stepped backward never repeats a time that already fired.

**Misfires.** After a stall (the loop was blocked, the machine slept, the wall clock
jumped), a timer never fires more than once to catch up. With ``misfire="coalesce"`` (the
default) the missed due times become one run for the latest of them, with ``"late":
true`` and ``"missed"`` counting the others; with ``misfire="skip"`` a late run is dropped
and the timer waits for its next due time. A run is late when a later due time has also
passed, or when it starts more than :data:`LATE_AFTER` seconds after its due time.

**Overlap.** When a handler is slower than its timer:

* ``"skip"`` (default): a due time that comes while the previous run has not settled
  (its deliveries succeeded or were dead-lettered, retries included) is skipped;
* ``"queue"``: runs wait their turn, one at a time; at most :data:`MAX_BACKLOG` wait,
  and a further due time is folded into the newest waiting run (its ``"missed"`` grows);
* ``"concurrent"``: runs overlap, at most :data:`MAX_BACKLOG` at once; beyond that a due
  time is skipped.

A timer thus never floods the ingestion queue: at most one event per timer waits in it
(``"concurrent"``: :data:`MAX_BACKLOG`), and a full queue counts as a run that has not
settled. ``app.stats().sources["/reactor/timers/<name>"]`` counts ``fired`` (runs
published), ``late``, ``missed`` (due times folded into a late run or dropped),
``skipped`` and ``coalesced`` (due times folded into a waiting run by ``"queue"``).

**Cron.** Standard 5-field expressions (minute, hour, day of month, month, day of week;
names such as ``MON`` and ``JAN``; ``L``, ``LW``, ``n#k`` and ``nL`` as extensions) and
the aliases ``@yearly``, ``@annually``, ``@monthly``, ``@weekly``, ``@daily``,
``@midnight`` and ``@hourly``, parsed by `cronsim <https://pypi.org/project/cronsim/>`_.
Day of month and day of week combine as in Debian cron: if either field starts with
``*`` both must match, otherwise either may.

Times are local wall-clock times in an IANA time zone. When the zone's UTC offset
changes (daylight saving time, or a zone changing its standard time), the wall clock
skips a stretch of local times or repeats one; the rules below hold for a change of any
size at any minute (``Australia/Lord_Howe`` moves 30 minutes, ``Pacific/Chatham`` changes
at 02:45, ``America/Havana`` at midnight) and are Debian cron's, with one addition
at midnight:

* a job at a fixed time (neither the minute nor the hour field starts with ``*``) runs
  once for each matching local time, at the first instant the clock reads that time or
  later: a repeated time runs at its first pass only (``30 1 * * *`` in
  ``America/New_York`` on 2026-11-01 runs at 01:30 EDT, not again at 01:30 EST), and
  the skipped times of one change run once, at the first instant after the gap
  (``30 2 * * *`` on 2026-03-08 runs at 03:00 EDT);
* a job whose minute or hour field starts with ``*`` follows real time: it runs at every
  instant whose local time matches, so at both passes of a repeated time (``0 * * * *``
  runs at both 01:00s on 2026-11-01) and not at a skipped one (``30 * * * *`` skips
  02:30 on 2026-03-08); the addition: the day fields follow the calendar, so a
  matching day whose 00:00 was skipped still begins, and a run due at 00:00 runs at
  the first instant after the gap (``0 */2 * * *`` in ``America/Havana`` on 2026-03-08
  runs at 01:00 CDT, 02:00, 04:00, ...).

Runs due at the same instant are one run: nothing is dropped or run twice.

Expressions are checked when registered: longer than :data:`MAX_EXPRESSION_LENGTH`
characters, malformed, out of range, or unable to fire within 50 years (``0 0 30 2 *``)
raise :class:`ValueError` naming the problem.
"""

from __future__ import annotations

import logging
import math
import random
from abc import abstractmethod
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from typing import TYPE_CHECKING, ClassVar, Final, Literal, TypeVar, get_args
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import anyio
from anyio.abc import TaskGroup, TaskStatus
from anyio.lowlevel import checkpoint
from cronsim import CronSim, CronSimError

from .. import (
    UNSET,
    Event,
    Handler,
    InvalidScheduleError,
    ReactorNotRunning,
    Retry,
    SystemClock,
    Unset,
)
from ..abc import App, Source, default_name

if TYPE_CHECKING:
    pass

__all__ = [
    "LATE_AFTER",
    "MAX_BACKLOG",
    "MAX_EXPRESSION_LENGTH",
    "TIMER_TYPE",
    "WALL_CLOCK_CHECK",
    "AtTrigger",
    "CronSource",
    "CronTrigger",
    "IntervalSource",
    "IntervalTrigger",
    "Misfire",
    "OneShotSource",
    "Overlap",
    "Past",
    "TimerSource",
    "at",
    "cron",
    "every",
]

logger = logging.getLogger("reactor.timers")

H = TypeVar("H", bound=Handler)

#: The type of every timer event.
TIMER_TYPE: Final = "reactor.timer"
#: A run that starts more than this many seconds after its due time is marked late.
LATE_AFTER: Final = 1.0
#: The most runs of one timer waiting (``overlap="queue"``) or running at once
#: (``overlap="concurrent"``).
MAX_BACKLOG: Final = 16
#: The longest cron expression accepted, in characters.
MAX_EXPRESSION_LENGTH: Final = 256
#: The longest a cron or one-shot timer sleeps before reading the wall clock again, in
#: seconds: how soon a wall-clock step is noticed.
WALL_CLOCK_CHECK: Final = 60.0

#: How a timer treats a due time that comes while earlier runs have not settled.
Overlap = Literal["skip", "queue", "concurrent"]
#: How a timer treats a run that is late after a stall.
Misfire = Literal["coalesce", "skip"]
#: What a one-shot timer does with a time that has already passed.
Past = Literal["fire", "reject"]

_SOURCE_PREFIX = "/reactor/timers/"
# How early an interval timer on the system clock wakes before a due time (see there).
_EARLY = 0.002
# Missed cron times counted one by one after a stall; past this many the last one is
# found directly and "missed" reports this lower bound.
_MISSED_COUNT_LIMIT = 1000
_MINUTE = timedelta(minutes=1)
_DAY = timedelta(days=1)
# The smallest step of time: a fire time is strictly after the moment searched from.
_TICK = timedelta(microseconds=1)
# How far before a moment a cron search starts, to know the wall clock's readings up to
# it: no offset change in the tz database moves the clock back by more than a day.
_LOOK_BACK = timedelta(days=3)
# The first window last_at_or_before() looks back over, and the widest: the 50 years
# within which next_after() finds a time if there is one.
_SEARCH_START = timedelta(hours=1)
_SEARCH_LIMIT = timedelta(days=366 * 51)

_ALIASES: Final = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_FIELDS: Final = ("minute", "hour", "day-of-month", "month", "day-of-week")
_FIELD_VALUES: Final = {
    "minute": "0-59",
    "hour": "0-23",
    "day-of-month": "1-31, L or LW",
    "month": "1-12 or JAN-DEC",
    "day-of-week": "0-7 (0 and 7 are Sunday) or SUN-SAT, also n#k and nL",
}
_SYNTAX = "'*', a value, a list 'a,b', a range 'a-b', a step '*/n' or 'a-b/n'"


def _choice(what: str, value: object, allowed: object) -> None:
    options: tuple[str, ...] = get_args(allowed)
    if value not in options:
        raise ValueError(f"{what} must be one of {', '.join(map(repr, options))}, got {value!r}")


def _positive_seconds(what: str, value: object) -> float:
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{what} must be a finite number of seconds > 0, got {value!r}")
    return float(value)


def _jitter(value: object, period: float) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value < period:
        raise ValueError(
            f"jitter must be a number of seconds >= 0 and below the period ({period}), "
            f"got {value!r}"
        )
    return float(value)


def _utc(moment: datetime, what: str) -> datetime:
    if not isinstance(moment, datetime):
        raise TypeError(f"{what} must be a datetime, got {moment!r}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(
            f"{what} must be an aware datetime (e.g. datetime(..., tzinfo=UTC) or "
            f"tzinfo=ZoneInfo('Europe/Berlin')), got the naive {moment!r}"
        )
    return moment.astimezone(UTC)


def _rfc3339(moment: datetime) -> str:
    # As the CloudEvents JSON format writes times: UTC with a "Z".
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _zone(tz: str | tzinfo) -> tzinfo:
    if isinstance(tz, tzinfo):
        return tz
    if not isinstance(tz, str):
        raise TypeError(f"tz must be an IANA time zone name or a tzinfo, got {tz!r}")
    if tz == "UTC":
        return UTC
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ValueError(
            f"unknown time zone {tz[:100]!r}: use an IANA name such as 'Europe/Berlin' "
            "or 'America/New_York'"
        ) from exc


# -- pure triggers: when to fire, with no clock and no sleeping ----------------------------


class IntervalTrigger:
    """The due times ``start + k * period`` (``k = 1, 2, ...``) on a monotonic clock.

    Each due time is computed from *start*, not from the previous one, so rounding never
    accumulates into drift.

    :param period: seconds between due times (``> 0``)
    :param start: the monotonic time of index 0
    """

    __slots__ = ("period", "start")

    def __init__(self, period: float, start: float) -> None:
        self.period = _positive_seconds("period", period)
        self.start = float(start)

    def due(self, index: int) -> float:
        """Return the monotonic due time of tick *index*.

        :param index: the tick, counting from 1
        """
        return self.start + index * self.period

    def latest(self, now: float, index: int) -> int:
        """Return the highest tick at or after *index* whose due time is ``<= now``.

        :param now: the monotonic time
        :param index: the tick that is due (returned when no later one is)
        """
        if now < self.due(index + 1):
            return index
        latest = max(index, math.floor((now - self.start) / self.period))
        # The float division may land one off either way; settle on exact comparisons.
        while self.due(latest + 1) <= now:
            latest += 1
        while latest > index and self.due(latest) > now:
            latest -= 1
        return latest

    def __repr__(self) -> str:
        return f"IntervalTrigger(period={self.period}, start={self.start})"


class CronTrigger:
    """The fire times of a cron expression in a time zone.

    The expression is checked when the trigger is made: it must have 5 fields (or be an
    alias such as ``@hourly``), every field must parse, and it must fire at least once
    in the 50 years after *reference*.

    :param expression: the cron expression (see the module documentation)
    :param tz: an IANA time zone name (``"Europe/Berlin"``) or a :class:`~datetime.tzinfo`
    :param reference: where the check that it can fire starts (default: now)
    :raises ~reactor.InvalidScheduleError: the expression is invalid or never fires (a
        :class:`ValueError`)
    :raises ValueError: the time zone is invalid
    :raises TypeError: *expression* is not a str
    """

    __slots__ = ("_fixed_offset", "_real_time", "_times", "_zone", "expression", "tz")

    def __init__(
        self, expression: str, tz: str | tzinfo = "UTC", *, reference: datetime | None = None
    ) -> None:
        if not isinstance(expression, str):
            raise TypeError(f"a cron expression must be a str, got {type(expression).__name__}")
        self._zone = _zone(tz)
        text = _check_expression(expression)
        self._times = _WallTimes(text)
        minute, hour = text.split()[:2]
        # Debian cron's line between the two kinds of job (see the module documentation).
        self._real_time = minute.startswith("*") or hour.startswith("*")
        # A zone whose offset never changes needs no search for changes.
        self._fixed_offset = (
            self._zone.utcoffset(None) if isinstance(self._zone, timezone) else None
        )
        #: The expression as given.
        self.expression = expression
        #: The time zone as given.
        self.tz = tz
        start = datetime.now(UTC) if reference is None else _utc(reference, "reference")
        if self.next_after(start) is None:
            raise InvalidScheduleError(
                f"the cron expression {expression!r} never fires (no time matches in the "
                f"50 years after {start.date().isoformat()}): its day-of-month, month and "
                "day-of-week fields exclude each other"
            )

    def next_after(self, moment: datetime) -> datetime | None:
        """Return the first fire time strictly after *moment*, or ``None`` if none comes.

        :param moment: an aware datetime
        :return: an aware UTC datetime, or ``None`` when no time matches within 50 years
            (or before the end of the year 9999)
        :raises ValueError: *moment* is naive
        """
        moment = _utc(moment, "moment")
        try:
            return self._after(moment)
        except OverflowError:  # the search ran past the years a datetime can hold
            return None

    def last_at_or_before(self, moment: datetime) -> datetime | None:
        """Return the latest fire time at or before *moment*, or ``None`` if none came.

        :param moment: an aware datetime
        :return: an aware UTC datetime, or ``None`` when no time matches within 50 years
        :raises ValueError: *moment* is naive
        """
        moment = _utc(moment, "moment")
        try:
            return self._last_at_or_before(moment)
        except OverflowError:  # the search ran past the years a datetime can hold
            return None

    def _last_at_or_before(self, moment: datetime) -> datetime | None:
        # Built on _after() so that the two never disagree: find a window that holds a
        # fire time, then halve the stretch in which the last one can lie.
        span = _SEARCH_START
        while True:
            last = self._after(moment - span)
            if last is not None and last <= moment:
                break
            if span > _SEARCH_LIMIT:
                return None
            span *= 8
        high = moment
        while True:
            following = self._after(last)
            if following is None or following > high:
                return last
            middle = following + (high - following) / 2
            probe = self._after(middle)
            if probe is None or probe > high:
                last, high = following, middle
            else:
                last = probe

    def _offset(self, moment: datetime) -> timedelta:
        offset = moment.astimezone(self._zone).utcoffset()
        assert offset is not None  # _zone() accepts only zones that give one
        return offset

    def _after(self, moment: datetime) -> datetime | None:
        """The first fire time after *moment* (aware UTC): the rule of the module docs.

        Time is cut into pieces at the zone's offset changes; within a piece the wall
        clock reads ``instant + offset``. A fixed-time job fires at the first instant at
        which the clock reads each matching time or later: in a repeated stretch only
        times past the latest reading so far count, and times a change skips fire at
        the change. A real-time job fires at every instant whose reading matches, and
        at a change that skips a matching midnight.
        """
        times = self._times
        fixed = self._fixed_offset
        if fixed is not None:
            wall = times.first_at_or_after(_wall(moment, fixed) + _TICK)
            return None if wall is None else _instant(wall, fixed)
        # Start far enough back to know the latest reading before *moment*: a repeated
        # stretch lasts at most a day.
        piece = moment.replace(microsecond=0) - _LOOK_BACK
        offset = self._offset(piece)
        latest = _wall(piece, offset)  # the highest reading so far
        while True:
            lower = max(_wall(moment, offset) + _TICK, _wall(piece, offset))
            if not self._real_time:
                lower = max(lower, latest)
            wall = times.first_at_or_after(lower)
            if wall is None:
                return None
            fire = _instant(wall, offset)
            change = self._change(piece, fire)
            if change is None:
                return fire
            new = self._offset(change)
            latest = max(latest, _wall(change, offset))
            after = _wall(change, new)
            if after > latest and change > moment and self._fires_in_gap(latest, after):
                return change
            piece, offset = change, new

    def _fires_in_gap(self, start: datetime, end: datetime) -> bool:
        """Whether wall times in [start, end), which a change skipped, fire at the change."""
        times = self._times
        if not self._real_time:
            wall = times.first_at_or_after(start)
            return wall is not None and wall < end
        # A real-time job keeps only the skipped midnights: every day begins.
        midnight = datetime.combine(start.date(), time())
        if midnight < start:
            midnight += _DAY
        while midnight < end:
            if times.matches(midnight):
                return True
            midnight += _DAY
        return False

    def _change(self, start: datetime, end: datetime) -> datetime | None:
        """The first instant in (start, end] whose offset differs from *start*'s.

        The offset is sampled once a day and a change is then narrowed down to the
        second (offsets change at whole seconds). No zone in the tz database changes
        its offset twice within six days, so a day holds at most one change.
        """
        offset = self._offset(start)
        low = start
        while low < end:
            high = min(low + _DAY, end)
            if self._offset(high) != offset:
                first, last = math.floor(low.timestamp()), math.ceil(high.timestamp())
                while last - first > 1:
                    middle = (first + last) // 2
                    if self._offset(datetime.fromtimestamp(middle, UTC)) == offset:
                        first = middle
                    else:
                        last = middle
                return datetime.fromtimestamp(last, UTC)
            low = high
        return None

    def __repr__(self) -> str:
        return f"CronTrigger({self.expression!r}, tz={self.tz!r})"


def _wall(moment: datetime, offset: timedelta) -> datetime:
    """The naive local reading of the instant *moment* at *offset*."""
    return (moment + offset).replace(tzinfo=None)


def _instant(wall: datetime, offset: timedelta) -> datetime:
    """The aware UTC instant at which a clock at *offset* reads the naive *wall*."""
    return (wall - offset).replace(tzinfo=UTC)


class _WallTimes:
    """The local wall-clock minutes a cron expression matches, with no time zone."""

    __slots__ = ("_hours", "_match_day", "_minutes", "_months", "_sorted_hours", "_sorted_minutes")

    def __init__(self, text: str) -> None:
        # cronsim's parse of the fields; the search below is ours.
        fields = CronSim(text, datetime(2000, 1, 1))
        self._minutes = frozenset(fields.minutes)
        self._hours = frozenset(fields.hours)
        self._months = frozenset(fields.months)
        self._sorted_minutes = sorted(self._minutes)
        self._sorted_hours = sorted(self._hours)
        self._match_day = fields.match_day

    def matches(self, wall: datetime) -> bool:
        """Whether the naive *wall* (a whole minute) matches."""
        return (
            wall.minute in self._minutes
            and wall.hour in self._hours
            and wall.month in self._months
            and self._match_day(wall.date())
        )

    def first_at_or_after(self, lower: datetime) -> datetime | None:
        """The first matching whole minute at or after the naive *lower*, within 50 years."""
        if lower.second or lower.microsecond:
            lower = lower.replace(second=0, microsecond=0) + _MINUTE
        day, hour, minute = lower.date(), lower.hour, lower.minute
        hours, minutes = self._sorted_hours, self._sorted_minutes
        try:
            end = day.replace(year=day.year + 50)
        except ValueError:  # the 29th of February, or past the year 9999
            end = date(min(day.year + 50, date.max.year), 12, 31)
        while day <= end:
            if day.month not in self._months:
                if day.month == 12:
                    if day.year == date.max.year:
                        return None
                    day = date(day.year + 1, 1, 1)
                else:
                    day = date(day.year, day.month + 1, 1)
                hour = minute = 0
                continue
            if self._match_day(day):
                for index in range(bisect_left(hours, hour), len(hours)):
                    at = hours[index]
                    found = bisect_left(minutes, minute if at == hour else 0)
                    if found < len(minutes):
                        return datetime.combine(day, time(at, minutes[found]))
            if day == date.max:
                return None
            day += _DAY
            hour = minute = 0
        return None


def _check_expression(expression: str) -> str:
    """Return the 5-field form of a cron expression, or raise an InvalidScheduleError saying why not."""
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise InvalidScheduleError(
            f"the cron expression is {len(expression)} characters long; at most "
            f"{MAX_EXPRESSION_LENGTH} are accepted"
        )
    shown = repr(expression)
    text = expression.strip()
    if not text:
        raise InvalidScheduleError(
            "the cron expression is empty: give 5 fields (minute hour day-of-month month "
            "day-of-week), e.g. '*/5 * * * *', or an alias such as '@hourly'"
        )
    if not (text.isascii() and all(c.isprintable() or c in " \t" for c in text)):
        raise InvalidScheduleError(
            f"the cron expression {shown} contains characters other than printable "
            "ASCII; use digits, names such as MON or JAN, and * , - / # L W"
        )
    if text.startswith("@"):
        try:
            return _ALIASES[text.lower()]
        except KeyError:
            raise InvalidScheduleError(
                f"unknown cron alias {shown}: use one of {', '.join(_ALIASES)}"
            ) from None
    fields = text.split()
    if len(fields) != 5:
        raise InvalidScheduleError(
            f"the cron expression {shown} has {len(fields)} field(s); expected 5: minute "
            "hour day-of-month month day-of-week (e.g. '*/5 * * * *')"
        )
    try:
        CronSim(text, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        message = str(exc)
        if message == "Bad day-of-month" and _parses(" ".join([*fields[:3], "*", fields[4]])):
            # cronsim rejects a day that no listed month has (30 in February) in the
            # same words as an out-of-range day: say which it is.
            raise InvalidScheduleError(
                f"the cron expression {shown} never fires: no month in {fields[3]!r} has "
                f"a day {fields[2]!r}"
            ) from None
        for field, value in zip(_FIELDS, fields, strict=True):
            if message == f"Bad {field}":
                raise InvalidScheduleError(
                    f"invalid cron expression {shown}: bad {field} field {value!r} "
                    f"(values {_FIELD_VALUES[field]}; each field is {_SYNTAX}; "
                    "steps must be > 0 and ranges must not run backwards)"
                ) from None
        raise InvalidScheduleError(f"invalid cron expression {shown}: {message}") from None
    except Exception as exc:
        # Junk can trip cronsim's internals (an assertion, an oversized number) instead
        # of its own error; to the caller it is the same mistake.
        raise InvalidScheduleError(
            f"invalid cron expression {shown}: each of the 5 fields is {_SYNTAX}"
        ) from exc
    return text


def _parses(text: str) -> bool:
    try:
        CronSim(text, datetime(2000, 1, 1, tzinfo=UTC))
    except Exception:
        return False
    return True


class AtTrigger:
    """One wall-clock time.

    :param when: the time (aware)
    :raises ValueError: *when* is naive
    """

    __slots__ = ("when",)

    def __init__(self, when: datetime) -> None:
        #: The time, in UTC.
        self.when = _utc(when, "when")

    def next_after(self, moment: datetime) -> datetime | None:
        """Return the time if it is strictly after *moment*, else ``None``.

        :param moment: an aware datetime
        """
        return self.when if self.when > _utc(moment, "moment") else None

    def __repr__(self) -> str:
        return f"AtTrigger({self.when.isoformat()})"


# -- sources: the sleeping loops and the overlap policy ------------------------------------


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
    :param overlap: see :data:`Overlap`
    :param misfire: see :data:`Misfire`
    """

    #: The ``"kind"`` in this timer's event data.
    kind: ClassVar[str]

    def __init__(
        self, name: str, *, overlap: Overlap = "skip", misfire: Misfire = "coalesce"
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty str, got {name!r}")
        _choice("overlap", overlap, Overlap)
        _choice("misfire", misfire, Misfire)
        #: The timer's name.
        self.timer_name = name
        #: The CloudEvents source of this timer's events.
        self.uri = _SOURCE_PREFIX + quote(name, safe="")
        self.overlap: Overlap = overlap
        self.misfire: Misfire = misfire
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
        event = Event(
            type=TIMER_TYPE,
            source=self.uri,
            subject=self.timer_name,
            time=clock.now(),
            data={
                "kind": self.kind,
                "scheduled": _rfc3339(tick.scheduled),
                "late": late,
                "missed": tick.missed,
            },
        )
        try:
            await app.publish_and_wait(event)
        except ReactorNotRunning:
            pass  # the app is stopping: its drain settles whatever was queued


class IntervalSource(TimerSource):
    """Fires every *seconds* on the monotonic clock, at ``start + k * seconds``.

    The first run is due one period after the app starts.

    :param seconds: the period (``> 0``)
    :param name: the timer's name
    :param jitter: each run is delayed by a random ``[0, jitter)`` seconds
        (``0 <= jitter < seconds``); the jitter never accumulates
    :param overlap: see :data:`Overlap`
    :param misfire: see :data:`Misfire`
    """

    kind = "interval"

    def __init__(
        self,
        seconds: float,
        *,
        name: str,
        jitter: float = 0.0,
        overlap: Overlap = "skip",
        misfire: Misfire = "coalesce",
    ) -> None:
        super().__init__(name, overlap=overlap, misfire=misfire)
        self.seconds = _positive_seconds("seconds", seconds)
        self.jitter = _jitter(jitter, self.seconds)

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

    def __init__(self, name: str, *, overlap: Overlap, misfire: Misfire) -> None:
        super().__init__(name, overlap=overlap, misfire=misfire)
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
    """Fires at the times of a cron expression in a time zone.

    :param trigger: the expression and time zone (a :class:`CronTrigger`)
    :param name: the timer's name
    :param overlap: see :data:`Overlap`
    :param misfire: see :data:`Misfire`
    """

    kind = "cron"

    def __init__(
        self,
        trigger: CronTrigger,
        *,
        name: str,
        overlap: Overlap = "skip",
        misfire: Misfire = "coalesce",
    ) -> None:
        if not isinstance(trigger, CronTrigger):
            raise TypeError(f"trigger must be a CronTrigger, got {trigger!r}")
        super().__init__(name, overlap=overlap, misfire=misfire)
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
    """Fires once, at a wall-clock time; a time already past fires at once or is dropped.

    A one-shot timer fires at most once in the life of the source, whatever the number
    of times the app is started.

    :param when: the time (aware)
    :param name: the timer's name
    :param past: ``"fire"``: a time already past when the app starts fires at once (late);
        ``"reject"``: it is dropped, logged and counted as missed
    """

    kind = "at"

    def __init__(self, when: datetime, *, name: str, past: Past = "fire") -> None:
        super().__init__(name, overlap="skip", misfire="coalesce")
        _choice("past", past, Past)
        self.trigger = AtTrigger(when)
        self.past: Past = past
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


# -- registration: what app.every / app.cron / app.at call ---------------------------------


def _register(
    app: App,
    /,
    make: Callable[[str], TimerSource],
    name: str | None,
    timeout: float | Unset | None,
    retry: Retry | Unset | None,
) -> Callable[[H], H]:
    def decorate(handler: H) -> H:
        source = make(default_name(handler) if name is None else name)
        # Subscribe first: it checks the handler and that the name is free, and a
        # failure must leave no orphan source behind.
        app.subscribe(
            TIMER_TYPE,
            handler,
            source=source.uri,
            name=source.timer_name,
            concurrency=source.concurrency,
            timeout=timeout,
            retry=retry,
        )
        app.add_source(source)
        return handler

    return decorate


def every(
    app: App,
    /,
    seconds: float,
    *,
    name: str | None = None,
    jitter: float = 0.0,
    overlap: Overlap = "skip",
    misfire: Misfire = "coalesce",
    timeout: float | Unset | None = UNSET,
    retry: Retry | Unset | None = UNSET,
) -> Callable[[H], H]:
    """Decorate a handler to run every *seconds*: an interval timer.

    Runs are due at ``start + k * seconds`` on the app's monotonic clock (``k = 1, 2,
    ...``; the first one period after the app starts), so they never drift. The handler
    receives events of type ``"reactor.timer"`` from the source
    ``"/reactor/timers/<name>"``, with data ``{"kind": "interval", "scheduled": <RFC 3339
    due time>, "late": <bool>, "missed": <int>}``.

    :param app: the app
    :param seconds: the period, in seconds (``> 0``)
    :param name: the timer's and the consumer's name, unique in the app (default: the
        handler's qualified name)
    :param jitter: delay each run by a random ``[0, jitter)`` seconds (``< seconds``)
    :param overlap: when a run is due while the previous one has not settled: ``"skip"``
        it (default), ``"queue"`` it (runs one at a time, at most 16 waiting), or run
        them ``"concurrent"``-ly (at most 16 at once); skipped runs are counted in
        ``app.stats().sources``
    :param misfire: after a stall in which due times passed (a blocked loop, a sleeping
        machine): ``"coalesce"`` them into one late run (default), or ``"skip"`` late runs
    :param timeout: seconds each run may take (``None``: no limit; default: the app's)
    :param retry: the retry policy of a failed run (``None``: one attempt; default: the app's)
    :return: a decorator that subscribes the handler and returns it unchanged
    :raises ValueError: a bad option, or the name is taken (when decorating)
    """
    _jitter(jitter, _positive_seconds("seconds", seconds))
    _choice("overlap", overlap, Overlap)
    _choice("misfire", misfire, Misfire)
    return _register(
        app,
        lambda timer: IntervalSource(
            seconds, name=timer, jitter=jitter, overlap=overlap, misfire=misfire
        ),
        name,
        timeout,
        retry,
    )


def cron(
    app: App,
    /,
    expression: str,
    *,
    tz: str | tzinfo = "UTC",
    name: str | None = None,
    overlap: Overlap = "skip",
    misfire: Misfire = "coalesce",
    timeout: float | Unset | None = UNSET,
    retry: Retry | Unset | None = UNSET,
) -> Callable[[H], H]:
    """Decorate a handler to run on a cron schedule, in a time zone.

    *expression* has 5 fields, ``minute hour day-of-month month day-of-week``
    (``"*/5 * * * *"``, ``"30 2 * * MON-FRI"``), or is one of the aliases ``@yearly``,
    ``@annually``, ``@monthly``, ``@weekly``, ``@daily``, ``@midnight``, ``@hourly``.
    Times are wall-clock times in *tz*, offset changes (daylight saving) handled as
    Debian cron does, for changes of any size at any minute: a job at a fixed time runs
    once for each matching time (a skipped time at the first instant after the gap, a
    repeated time at its first pass); a job with ``*`` in its minute or hour field
    follows real time (both passes of a repeated time, none of a skipped one, but a
    skipped 00:00 runs at the first instant after the gap). A wall-clock step forward gives
    at most one catch-up run; a step backward never repeats a run. The handler receives
    events of type ``"reactor.timer"`` from the source ``"/reactor/timers/<name>"``, with
    data ``{"kind": "cron", "scheduled": <RFC 3339 due time, UTC>, "late": <bool>,
    "missed": <int>}``.

    :param app: the app
    :param expression: the cron expression (at most 256 characters)
    :param tz: an IANA time zone name such as ``"Europe/Berlin"``, or a tzinfo
    :param name: the timer's and the consumer's name, unique in the app (default: the
        handler's qualified name)
    :param overlap: ``"skip"`` (default), ``"queue"`` or ``"concurrent"``, as for
        :func:`every`
    :param misfire: ``"coalesce"`` (default) or ``"skip"``, as for :func:`every`
    :param timeout: seconds each run may take (``None``: no limit; default: the app's)
    :param retry: the retry policy of a failed run (``None``: one attempt; default: the app's)
    :return: a decorator that subscribes the handler and returns it unchanged
    :raises ValueError: the expression is invalid or never fires, the time zone is
        unknown, a bad option, or the name is taken (when decorating)
    """
    trigger = CronTrigger(expression, tz, reference=app.clock.now())
    _choice("overlap", overlap, Overlap)
    _choice("misfire", misfire, Misfire)
    return _register(
        app,
        lambda timer: CronSource(trigger, name=timer, overlap=overlap, misfire=misfire),
        name,
        timeout,
        retry,
    )


def at(
    app: App,
    /,
    when: datetime,
    *,
    name: str | None = None,
    past: Past = "fire",
    timeout: float | Unset | None = UNSET,
    retry: Retry | Unset | None = UNSET,
) -> Callable[[H], H]:
    """Decorate a handler to run once, at the wall-clock time *when*.

    The handler receives one event of type ``"reactor.timer"`` from the source
    ``"/reactor/timers/<name>"``, with data ``{"kind": "at", "scheduled": <RFC 3339>,
    "late": <bool>, "missed": 0}``. It runs at most once however often the app is
    started.

    :param app: the app
    :param when: an aware datetime (naive ones are rejected: their meaning depends on the
        machine's time zone)
    :param name: the timer's and the consumer's name, unique in the app (default: the
        handler's qualified name)
    :param past: what to do with a time that has passed: ``"fire"`` (default) runs it once,
        at once, marked late; ``"reject"`` raises :class:`ValueError` here if it has
        passed already, and drops it (logged, counted as missed) if it passes before the
        app starts
    :param timeout: seconds the run may take (``None``: no limit; default: the app's)
    :param retry: the retry policy of a failed run (``None``: one attempt; default: the app's)
    :return: a decorator that subscribes the handler and returns it unchanged
    :raises ValueError: *when* is naive, or past with ``past="reject"``, a bad option, or
        the name is taken (when decorating)
    :raises TypeError: *when* is not a datetime
    """
    trigger = AtTrigger(when)
    _choice("past", past, Past)
    if past == "reject" and trigger.when <= app.clock.now():
        raise ValueError(
            f"{trigger.when.isoformat()} has already passed (now is "
            f"{app.clock.now().isoformat()}); pass past='fire' to run it at once instead"
        )
    return _register(
        app,
        lambda timer: OneShotSource(trigger.when, name=timer, past=past),
        name,
        timeout,
        retry,
    )
