"""The cron trigger: parsing a cron expression, and its fire times across UTC offset changes.

cronsim parses the fields; the search for fire times is ours: it applies Debian cron's
rules for the wall-clock times that an offset change skips or repeats (documented in
:mod:`reactor.sources.timers`), finding the zone's offset changes instead of walking
minute by minute. Pure, like the other triggers: no clock, no sleeping, no app.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from reactor import InvalidScheduleError

from ._triggers import as_utc

__all__ = ["MAX_EXPRESSION_LENGTH", "CronTrigger"]

#: The longest cron expression accepted, in characters.
MAX_EXPRESSION_LENGTH: Final = 256

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


class CronTrigger:
    """The fire times of a cron expression in a time zone.

    The expression is checked when the trigger is made: it must have 5 fields (or be an
    alias such as ``@hourly``), every field must parse, and it must fire at least once
    in the 50 years after *reference*.

    :param expression: the cron expression (see :mod:`reactor.sources.timers`)
    :param tz: an IANA time zone name (``"Europe/Berlin"``) or a :class:`~datetime.tzinfo`
    :param reference: where the check that it can fire starts (default: now)
    :raises ~reactor.InvalidScheduleError: the expression is invalid or never fires (a
        :class:`ValueError`)
    :raises ValueError: the time zone is unknown, or *reference* is naive
    :raises TypeError: *expression* is not a str, *tz* not a str or a tzinfo, or
        *reference* not a datetime
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
        # Debian cron's line between the two kinds of job (see reactor.sources.timers).
        self._real_time = minute.startswith("*") or hour.startswith("*")
        # A zone whose offset never changes needs no search for changes.
        self._fixed_offset = (
            self._zone.utcoffset(None) if isinstance(self._zone, timezone) else None
        )
        #: The expression as given.
        self.expression = expression
        #: The time zone as given.
        self.tz = tz
        start = datetime.now(UTC) if reference is None else as_utc("reference", reference)
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
        :raises TypeError: *moment* is not a datetime
        :raises ValueError: *moment* is naive
        """
        return _search(self._after, as_utc("moment", moment))

    def last_at_or_before(self, moment: datetime) -> datetime | None:
        """Return the latest fire time at or before *moment*, or ``None`` if none came.

        :param moment: an aware datetime
        :return: an aware UTC datetime, or ``None`` when no time matches within 50 years
        :raises TypeError: *moment* is not a datetime
        :raises ValueError: *moment* is naive
        """
        return _search(self._last_at_or_before, as_utc("moment", moment))

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
        """The first fire time after *moment* (aware UTC): the rules of the package docs.

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


def _search(search: Callable[[datetime], datetime | None], moment: datetime) -> datetime | None:
    """``search(moment)``, or ``None`` when the search runs past the years a datetime holds."""
    try:
        return search(moment)
    except OverflowError:
        return None


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
