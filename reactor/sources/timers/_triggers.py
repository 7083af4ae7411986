"""Pure triggers: when a timer is due, computed with no clock, no sleeping and no app.

The sources in :mod:`._sources` ask a trigger for due times and do the waiting; a
trigger can thus be tested, or used to plan, with plain numbers and datetimes. The cron
trigger, the largest, has its own module, :mod:`._cron`.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from reactor import validators

__all__ = ["AtTrigger", "IntervalTrigger", "as_utc"]


def as_utc(what: str, moment: object) -> datetime:
    """Return the aware datetime *moment* in UTC.

    :param what: the argument's name, for the message
    :param moment: the value to check
    :raises TypeError: *moment* is not a datetime
    :raises ValueError: *moment* is naive
    """
    return validators.aware_datetime(what, moment).astimezone(UTC)


class IntervalTrigger:
    """The due times ``start + k * period`` (``k = 1, 2, ...``) on a monotonic clock.

    Each due time is computed from *start*, not from the previous one, so rounding never
    accumulates into drift.

    :param period: seconds between due times (``> 0``)
    :param start: the monotonic time of index 0
    :raises TypeError: *period* is not a number
    :raises ValueError: *period* is not finite and ``> 0``
    """

    __slots__ = ("period", "start")

    def __init__(self, period: float, start: float) -> None:
        self.period = validators.seconds("period", period, positive=True)
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


class AtTrigger:
    """One wall-clock time.

    :param when: the time (aware)
    :raises TypeError: *when* is not a datetime
    :raises ValueError: *when* is naive
    """

    __slots__ = ("when",)

    def __init__(self, when: datetime) -> None:
        #: The time, in UTC.
        self.when = as_utc("when", when)

    def next_after(self, moment: datetime) -> datetime | None:
        """Return the time if it is strictly after *moment*, else ``None``.

        :param moment: an aware datetime
        """
        return self.when if self.when > as_utc("moment", moment) else None

    def __repr__(self) -> str:
        return f"AtTrigger({self.when.isoformat()})"
