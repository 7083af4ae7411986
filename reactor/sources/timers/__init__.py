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
however many ticks). Cron and one-shot times are wall-clock times: the timer reads
``app.clock.now()``, waits on the monotonic clock toward the next fire time, at most
:data:`WALL_CLOCK_CHECK` seconds at a time, and reads the wall clock again when it
wakes. A wall clock stepped forward over fire times gives at most one catch-up run; one
stepped backward never repeats a time that already fired.

**Many timers.** All the timers of an app share one scheduler: one task sleeping toward
the earliest due time over a heap of them, so ten thousand timers cost a heap and one
sleeping task, not ten thousand tasks, and the app stops at once however many there
are. Each run is a task of its own while it is published and its deliveries settle
(that is how the overlap policies below see it). On the system clock the scheduler
wakes 2 ms before a due time and yields to the loop until it, because asyncio rounds
its timeouts up to whole milliseconds (runs would start 1-3 ms late); that costs up to
2 ms of CPU per distinct due time, none while nothing is due, and at most a fifth of
the loop's time: past 0.2 s of it in a second, due times are slept to directly (1-2 ms
late on asyncio) until the next second.

**Misfires.** After a stall (the loop was blocked, the machine slept, the wall clock
jumped), a timer never fires more than once to catch up. With ``misfire="coalesce"`` (the
default) the missed due times become one run for the latest of them, with ``"late":
true`` and ``"missed"`` counting the others; with ``misfire="skip"`` a late run is dropped
and the timer waits for its next due time. A run is late when a later due time has also
passed, or when it starts more than :data:`LATE_AFTER` seconds after its due time.
With ``grace=`` (seconds or a timedelta; default ``None``, no limit), a run that would
start more than that after its due time is dropped and counted as missed, whatever the
misfire policy: a coalesced run too, judged by the latest due time it stands for.

**Persistent schedules.** With a queue that keeps fire times
(:class:`~reactor.queues.sqlite.SQLiteQueue`,
:class:`~reactor.queues.redis.RedisStreamsQueue`,
:class:`~reactor.queues.nats.NatsJetStreamQueue`; the hook is
:meth:`reactor.abc.EventQueue.record_fire_time`), each run's due time is stored under
the timer's name, in the transaction that stores the run's event (or right after it, on
the brokers): a crash never loses a run, and repeats at most one. Due times dropped by
the misfire policy, ``grace`` or the overlap policy are stored too (with the next
write). When the app starts again, each named timer with a stored time treats the due
times between that time and now as missed, and hands them at once to its misfire policy,
as after a stall: ``"coalesce"`` makes one late run for the latest of them (``"late":
true``, ``"missed"`` counting the others) unless it is more than ``grace`` late,
``"skip"`` none; either way they are counted as ``missed``. An interval timer's grid
goes on from the stored time (or from its ``start``), so a restart within a period
misses nothing and keeps the rhythm; a cron timer resumes after the stored time; a
one-shot timer that fired does not fire again. A renamed timer is a new schedule; with
the memory queue (nothing stored) every start begins afresh.

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

**Steering.** ``app.schedules`` (:func:`schedules`) maps each timer's name to its
:class:`Schedule`: ``next_fire_time``, ``last_fire_time``, ``pause()`` (due times
skipped until ``resume()``), ``remove()`` (for good, with its handler's subscription)
and ``run_now()`` (a run due now, through the overlap policy; the schedule does not
move)::

    for name, schedule in app.schedules.items():
        print(name, schedule.kind, schedule.next_fire_time)
    app.schedules["nightly"].pause()

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

from reactor.abc import export_from

from ._cron import MAX_EXPRESSION_LENGTH as MAX_EXPRESSION_LENGTH
from ._cron import CronTrigger as CronTrigger
from ._register import TimerConsumerOptions as TimerConsumerOptions
from ._register import at as at
from ._register import cron as cron
from ._register import every as every
from ._schedules import Schedule as Schedule
from ._schedules import Schedules as Schedules
from ._schedules import schedules as schedules
from ._sources import LATE_AFTER as LATE_AFTER
from ._sources import MAX_BACKLOG as MAX_BACKLOG
from ._sources import TIMER_TYPE as TIMER_TYPE
from ._sources import WALL_CLOCK_CHECK as WALL_CLOCK_CHECK
from ._sources import CronSource as CronSource
from ._sources import IntervalSource as IntervalSource
from ._sources import Misfire as Misfire
from ._sources import OneShotSource as OneShotSource
from ._sources import Overlap as Overlap
from ._sources import Past as Past
from ._sources import TimerPolicies as TimerPolicies
from ._sources import TimerSource as TimerSource
from ._sources import timer_event as timer_event
from ._triggers import AtTrigger as AtTrigger
from ._triggers import IntervalTrigger as IntervalTrigger

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
    "Schedule",
    "Schedules",
    "TimerConsumerOptions",
    "TimerPolicies",
    "TimerSource",
    "at",
    "cron",
    "every",
    "schedules",
    "timer_event",
]

export_from(__name__, globals())
