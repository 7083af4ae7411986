"""Registration: :func:`every`, :func:`cron` and :func:`at`, which ``app.every`` & co. are.

Each function is the one definition of its trigger's options, their defaults and their
documentation: the :class:`~reactor.Reactor` shortcuts are these functions with the app
bound, and the source classes refer here for what their arguments mean.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, tzinfo
from typing import TypedDict, TypeVar, Unpack

from reactor import UNSET, Handler, Retry, Unset, validators
from reactor.abc import App, default_name, run_with_subscription

from ._cron import CronTrigger
from ._sources import (
    TIMER_TYPE,
    CronSource,
    IntervalSource,
    Misfire,
    OneShotSource,
    Overlap,
    Past,
    TimerSource,
    checked_grace,
    checked_interval,
    checked_past,
    checked_policies,
    checked_span,
)
from ._triggers import AtTrigger

__all__ = ["TimerConsumerOptions", "at", "cron", "every"]

H = TypeVar("H", bound=Handler)


class TimerConsumerOptions(TypedDict, total=False):
    """The consumer options a timer decorator takes: ``name``, ``timeout``, ``retry`` and
    ``outputs``.

    They mean what :class:`~reactor.ConsumerOptions` says, and ``name`` (default: the
    handler's qualified name) is the timer's name too: its events' subject and the end
    of their source, ``"/reactor/timers/<name>"``. A timer takes no ``concurrency``
    (its ``overlap`` policy decides how many runs go at once) and no ``ordered_by``.
    """

    name: str | None
    timeout: float | Unset | None
    retry: Retry | Unset | None
    outputs: bool


def _register(
    app: App,
    options: TimerConsumerOptions,
    make: Callable[[str], TimerSource],
) -> Callable[[H], H]:
    """Return the decorator that makes the source of a handler and subscribes it to it."""

    def decorate(handler: H) -> H:
        name = options.get("name")
        source = make(default_name(handler) if name is None else name)
        source._subscription = run_with_subscription(
            app,
            source,
            TIMER_TYPE,
            handler,
            events_from=source.uri,
            name=source.timer_name,
            concurrency=source.concurrency,
            timeout=options.get("timeout", UNSET),
            retry=options.get("retry", UNSET),
            outputs=options.get("outputs", False),
        )
        return handler

    return decorate


def every(
    app: App,
    /,
    seconds: float,
    *,
    jitter: float = 0.0,
    start: datetime | None = None,
    end: datetime | None = None,
    run_immediately: bool = False,
    overlap: Overlap = "skip",
    misfire: Misfire = "coalesce",
    grace: float | timedelta | None = None,
    **options: Unpack[TimerConsumerOptions],
) -> Callable[[H], H]:
    """Decorate a handler to run every *seconds*: an interval timer.

    Runs are due at ``origin + k * seconds`` on the app's monotonic clock (``k = 1, 2,
    ...``: the first one period after the origin; ``k = 0`` too with *run_immediately*),
    so they never drift. The origin is when the app starts, or *start*: a wall-clock
    time, placed on the monotonic clock when the app starts (later wall-clock steps do
    not move the grid). Due times before the app started are not runs (nor missed ones):
    the grid goes on from there, unless a durable queue kept the timer's last fire time
    (see *Persistent schedules* below). The handler
    receives events of type ``"reactor.timer"`` from the source
    ``"/reactor/timers/<name>"``, with data ``{"kind": "interval", "scheduled": <RFC 3339
    due time>, "late": <bool>, "missed": <int>}``.

    :param app: the app
    :param seconds: the period, in seconds (``> 0``)
    :param jitter: delay each run by a random ``[0, jitter)`` seconds (``< seconds``)
    :param start: the origin of the grid, an aware datetime (default: when the app starts)
    :param end: no run is due after this aware datetime (default: none); the timer then
        stops
    :param run_immediately: run at the origin too, not only one period after it; with a
        *start* that has passed when the app starts, run at once when it starts (not
        when a stored fire time continues the schedule: see below)
    :param overlap: when a run is due while the previous one has not settled: ``"skip"``
        it (default), ``"queue"`` it (runs one at a time, at most 16 waiting), or run
        them ``"concurrent"``-ly (at most 16 at once); skipped runs are counted in
        ``app.stats().sources``
    :param misfire: when due times passed without a run (a blocked loop, a sleeping
        machine, or the app stopped, with a durable queue: see below): ``"coalesce"``
        them into one late run, for the latest of them (default), or ``"skip"`` late runs
    :param grace: the latest a run may start after its due time, in seconds or as a
        timedelta (default ``None``: no limit); a run later than that is dropped and
        counted as missed, whatever *misfire* says

    **Persistent schedules.** With a queue that keeps fire times (``stores_fire_times``:
    the SQLite, Redis and NATS queues), each run's due time is stored with its event,
    under the timer's name. When the app starts again, the grid goes on from the
    stored time (or from *start*), and the due times that passed while it was stopped
    are missed runs, handed to *misfire* and *grace* at once: one late run for the
    latest of them (``"late": true``, ``"missed"`` counting the others), or none.
    :param options: the consumer's ``name`` (the timer's name too; default: the
        handler's qualified name), ``timeout`` and ``retry``
        (:class:`TimerConsumerOptions`)
    :return: a decorator that subscribes the handler and returns it unchanged
    :raises TypeError: an option of the wrong type, or an unknown option
    :raises ValueError: a bad option (a naive *start* or *end*, an *end* not after
        *start*), or the name is taken (when decorating)
    """
    validators.keywords("every", options, TimerConsumerOptions)
    checked_interval(seconds, jitter)
    checked_span(start, end)
    validators.boolean("run_immediately", run_immediately)
    checked_policies(overlap, misfire)
    checked_grace(grace)
    return _register(
        app,
        options,
        lambda name: IntervalSource(
            seconds,
            name=name,
            jitter=jitter,
            start=start,
            end=end,
            run_immediately=run_immediately,
            overlap=overlap,
            misfire=misfire,
            grace=grace,
        ),
    )


def cron(
    app: App,
    /,
    expression: str,
    *,
    tz: str | tzinfo = "UTC",
    overlap: Overlap = "skip",
    misfire: Misfire = "coalesce",
    grace: float | timedelta | None = None,
    **options: Unpack[TimerConsumerOptions],
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
    :param overlap: ``"skip"`` (default), ``"queue"`` or ``"concurrent"``, as for
        :func:`every`
    :param misfire: ``"coalesce"`` (default) or ``"skip"``, as for :func:`every`
    :param grace: the latest a run may start after its due time, as for :func:`every`;
        with a durable queue, cron times missed while the app was stopped are handled
        as :func:`every` says
    :param options: the consumer's ``name``, ``timeout`` and ``retry``, as for
        :func:`every`
    :return: a decorator that subscribes the handler and returns it unchanged
    :raises TypeError: an option of the wrong type, or an unknown option
    :raises ValueError: the expression is invalid or never fires, the time zone is
        unknown, a bad option, or the name is taken (when decorating)
    """
    validators.keywords("cron", options, TimerConsumerOptions)
    trigger = CronTrigger(expression, tz, reference=app.clock.now())
    checked_policies(overlap, misfire)
    checked_grace(grace)
    return _register(
        app,
        options,
        lambda name: CronSource(trigger, name=name, overlap=overlap, misfire=misfire, grace=grace),
    )


def at(
    app: App,
    /,
    when: datetime,
    *,
    past: Past = "fire",
    **options: Unpack[TimerConsumerOptions],
) -> Callable[[H], H]:
    """Decorate a handler to run once, at the wall-clock time *when*.

    The handler receives one event of type ``"reactor.timer"`` from the source
    ``"/reactor/timers/<name>"``, with data ``{"kind": "at", "scheduled": <RFC 3339>,
    "late": <bool>, "missed": 0}``. It runs at most once however often the app is
    started, and, with a durable queue (see :func:`every`), however often the app's
    process is restarted: its fire time is stored.

    :param app: the app
    :param when: an aware datetime (naive ones are rejected: their meaning depends on the
        machine's time zone)
    :param past: what to do with a time that has passed: ``"fire"`` (default) runs it once,
        at once, marked late; ``"reject"`` raises :class:`ValueError` here if it has
        passed already, and drops it (logged, counted as missed) if it passes before the
        app starts
    :param options: the consumer's ``name``, ``timeout`` and ``retry``, as for
        :func:`every`
    :return: a decorator that subscribes the handler and returns it unchanged
    :raises TypeError: *when* is not a datetime, an option of the wrong type, or an
        unknown option
    :raises ValueError: *when* is naive, or past with ``past="reject"``, a bad option, or
        the name is taken (when decorating)
    """
    validators.keywords("at", options, TimerConsumerOptions)
    trigger = AtTrigger(when)
    if checked_past(past) == "reject" and trigger.when <= app.clock.now():
        raise ValueError(
            f"{trigger.when.isoformat()} has already passed (now is "
            f"{app.clock.now().isoformat()}); pass past='fire' to run it at once instead"
        )
    return _register(app, options, lambda name: OneShotSource(trigger.when, name=name, past=past))
