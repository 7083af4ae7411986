"""Interval and one-shot timers, and what every timer shares: events, overlap, misfires."""

from __future__ import annotations

import inspect
import logging
import math
import pydoc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import anyio
import pytest

from reactor import Backoff, Event, Reactor, Retry
from reactor.abc import Source
from reactor.sources import timers
from reactor.sources.timers import (
    LATE_AFTER,
    MAX_BACKLOG,
    TIMER_TYPE,
    IntervalSource,
    IntervalTrigger,
    OneShotSource,
)
from reactor.testing import Capture, VirtualClock

pytestmark = pytest.mark.anyio

START = datetime(2026, 1, 1, tzinfo=UTC)


def at_offset(seconds: float) -> str:
    """The RFC 3339 string of START + *seconds*, as timer events carry it."""
    return (START + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def timer_stats(app: Reactor, name: str) -> dict[str, int]:
    stats = app.stats().sources[f"/reactor/timers/{name}"]
    return {key: value for key, value in stats.items() if isinstance(value, int)}


class Runs:
    """A handler that records when it ran and with what, then works for *work* seconds."""

    def __init__(self, clock: VirtualClock, work: float = 0.0) -> None:
        self.clock = clock
        self.work = work
        self.starts: list[float] = []
        self.data: list[dict[str, Any]] = []
        self.running = 0
        self.most_running = 0

    async def __call__(self, event: Event) -> None:
        self.starts.append(self.clock.monotonic())
        self.data.append(event.data)
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            if self.work:
                await self.clock.sleep(self.work)
        finally:
            self.running -= 1


# -- interval -------------------------------------------------------------------------------


async def test_an_interval_fires_on_its_grid_with_timer_events() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    seen: list[tuple[float, Event]] = []

    @timers.every(app, seconds=2)
    async def poll(event: Event) -> None:
        seen.append((clock.monotonic(), event))

    async with app:
        await clock.advance(7)
    assert [when for when, _ in seen] == [2, 4, 6]
    event = seen[0][1]
    assert (event.type, event.source, event.subject) == (TIMER_TYPE, "/reactor/timers/poll", "poll")
    assert TIMER_TYPE == "reactor.timer"
    assert event.time == START + timedelta(seconds=2)
    assert Event.from_json(event.to_json()) == event  # durable queues can store it
    assert [e.data for _, e in seen] == [
        {"kind": "interval", "scheduled": at_offset(k), "late": False, "missed": 0}
        for k in (2, 4, 6)
    ]
    assert timer_stats(app, "poll") == {
        "fired": 3,
        "late": 0,
        "missed": 0,
        "skipped": 0,
        "coalesced": 0,
    }


async def test_ten_thousand_ticks_do_not_drift() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    runs = Runs(clock)
    timers.every(app, seconds=0.1, name="fast")(runs)
    async with app:
        await clock.advance(1000.05)
    # Each due time is start + k * period: adding 0.1 ten thousand times instead would
    # end at 1000.0000000001588, and sleeping 0.1 after each run would also add the
    # time each run takes.
    assert runs.starts == [k * 0.1 for k in range(1, 10_001)]
    assert runs.data[-1]["scheduled"] == at_offset(1000)


async def test_a_slow_handler_does_not_shift_the_grid() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    runs = Runs(clock, work=0.7)
    timers.every(app, seconds=1, name="slow")(runs)
    async with app:
        await clock.advance(5.8)
    assert runs.starts == [1, 2, 3, 4, 5]


async def test_jitter_delays_each_run_within_its_bound_without_accumulating() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    runs = Runs(clock)
    timers.every(app, seconds=10, jitter=4, name="jittery")(runs)
    async with app:
        await clock.advance(199)
    assert len(runs.starts) == 19
    for k, (start, data) in enumerate(zip(runs.starts, runs.data, strict=True), start=1):
        assert 10 * k <= start < 10 * k + 4
        assert data["scheduled"] == at_offset(start) and not data["late"]


async def test_the_interval_trigger_is_pure() -> None:
    trigger = IntervalTrigger(0.1, 5.0)
    assert trigger.due(3) == 5.0 + 3 * 0.1
    assert trigger.latest(trigger.due(3), 3) == 3
    assert trigger.latest(trigger.due(7), 3) == 7  # exactly on a later due time
    assert trigger.latest(math.nextafter(trigger.due(7), 0), 3) == 6
    assert trigger.latest(5.0 + 1_000_000.05, 3) == 10_000_000
    with pytest.raises(ValueError, match="period"):
        IntervalTrigger(0, 0)


# -- overlap ----------------------------------------------------------------------------------


async def test_overlap_skip_skips_due_times_while_a_run_is_unsettled() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    runs = Runs(clock, work=2.5)
    timers.every(app, seconds=1, name="slow")(runs)  # overlap="skip" is the default
    depths = []
    async with app:
        for _ in range(126):
            await clock.advance(0.1)
            depths.append(app.stats().queue.depth)
    assert runs.starts == [1, 4, 7, 10]
    assert [d["scheduled"] for d in runs.data] == [at_offset(s) for s in (1, 4, 7, 10)]
    assert runs.most_running == 1
    assert timer_stats(app, "slow")["skipped"] == 8  # 2, 3, 5, 6, 8, 9, 11, 12
    assert max(depths) == 0  # never a backlog of ticks in the ingestion queue


async def test_overlap_queue_runs_one_at_a_time_and_folds_a_long_backlog() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock, graceful_timeout=0)
    runs = Runs(clock, work=10)
    timers.every(app, seconds=1, overlap="queue", name="queued")(runs)
    async with app:
        for _ in range(45):
            await clock.advance(1)
            assert app.stats().queue.depth <= 1
    assert runs.most_running == 1
    assert runs.starts == [1, 11, 21, 31, 41]
    scheduled = [d["scheduled"] for d in runs.data]
    assert scheduled == [at_offset(s) for s in (1, 2, 3, 4, 5)]  # in order, none lost
    assert [d["late"] for d in runs.data] == [False, True, True, True, True]
    stats = timer_stats(app, "queued")
    # 45 due times: 5 ran, MAX_BACKLOG wait, the rest were folded into the newest waiting.
    assert stats["fired"] == 5
    assert stats["coalesced"] == 45 - 5 - MAX_BACKLOG
    assert stats["skipped"] == 0


async def test_overlap_queue_reports_folded_due_times_as_missed() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    runs: list[tuple[float, str, int]] = []

    @timers.every(app, seconds=1, overlap="queue")
    async def stuck_once(event: Event) -> None:
        runs.append((clock.monotonic(), event.data["scheduled"], event.data["missed"]))
        if len(runs) == 1:
            await clock.sleep(30)  # the first run takes 30 s, the others no time

    async with app:
        await clock.advance(32.5)
    # Due times 2-17 wait; 18-30 are folded, one by one, into the newest waiting run;
    # when the first run ends at 31 s the backlog runs back to back, then the grid resumes.
    expected = [(1.0, at_offset(1), 0)]
    expected += [(31.0, at_offset(k), 0) for k in range(2, 17)]
    expected += [(31.0, at_offset(30), 13), (31.0, at_offset(31), 0), (32.0, at_offset(32), 0)]
    assert runs == expected
    stats = timer_stats(app, "stuck_once")
    assert (stats["fired"], stats["coalesced"], stats["late"]) == (19, 13, 16)


async def test_overlap_concurrent_runs_every_due_time_up_to_a_limit() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock, graceful_timeout=0)
    runs = Runs(clock, work=2.5)
    timers.every(app, seconds=1, overlap="concurrent", name="parallel")(runs)
    async with app:
        await clock.advance(10.6)
    assert runs.starts == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    assert runs.most_running == 3
    assert timer_stats(app, "parallel")["skipped"] == 0

    clock = VirtualClock(start=START)
    app = Reactor(clock=clock, graceful_timeout=0)
    runs = Runs(clock, work=1000)
    timers.every(app, seconds=1, overlap="concurrent", name="parallel")(runs)
    async with app:
        await clock.advance(MAX_BACKLOG + 4.5)
    assert runs.most_running == MAX_BACKLOG
    assert timer_stats(app, "parallel")["skipped"] == 4


# -- misfires ---------------------------------------------------------------------------------


async def test_a_stall_gives_one_late_run_for_the_due_times_it_missed() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    runs = Runs(clock)
    timers.every(app, seconds=1, name="ticker")(runs)
    async with app:
        await clock.advance(2.5)
        await clock.stall(5.2)  # the loop was blocked from 2.5 s to 7.7 s
        assert runs.starts == [1, 2, 7.7]
        await clock.advance(1)
    assert runs.data[2] == {
        "kind": "interval",
        "scheduled": at_offset(7),
        "late": True,
        "missed": 4,
    }
    assert runs.starts == [1, 2, 7.7, 8]
    assert runs.data[3]["late"] is False
    stats = timer_stats(app, "ticker")
    assert (stats["fired"], stats["late"], stats["missed"]) == (4, 1, 4)


async def test_misfire_skip_drops_late_runs() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    runs = Runs(clock)
    timers.every(app, seconds=1, misfire="skip", name="ticker")(runs)
    async with app:
        await clock.advance(2.5)
        await clock.stall(5.2)
        await clock.advance(1)
    assert runs.starts == [1, 2, 8]
    stats = timer_stats(app, "ticker")
    assert (stats["fired"], stats["late"], stats["missed"]) == (3, 0, 5)


async def test_a_run_delayed_past_the_grace_is_late_even_with_nothing_missed() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    runs = Runs(clock)
    timers.every(app, seconds=3600, name="hourly")(runs)
    async with app:
        await clock.advance(3599)
        await clock.stall(1 + LATE_AFTER + 1)
        await clock.advance(3600)
    assert runs.data[0] == {
        "kind": "interval",
        "scheduled": at_offset(3600),
        "late": True,
        "missed": 0,
    }
    assert runs.data[1]["late"] is False


async def test_wall_clock_jumps_do_not_move_an_interval() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    runs = Runs(clock)
    timers.every(app, seconds=1, name="ticker")(runs)
    async with app:
        await clock.advance(1.5)
        clock.jump(3600)
        await clock.advance(1)
        clock.jump(-7200)
        await clock.advance(1)
    assert runs.starts == [1, 2, 3]
    assert [d["scheduled"] for d in runs.data] == [at_offset(1), at_offset(3602), at_offset(-3597)]
    assert not any(d["late"] or d["missed"] for d in runs.data)


# -- one-shot ---------------------------------------------------------------------------------


async def test_at_fires_once_at_its_time_and_never_again() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    runs = Runs(clock)
    when = datetime(2026, 1, 1, 3, tzinfo=timezone(timedelta(hours=2)))  # 01:00 UTC
    timers.at(app, when, name="once")(runs)
    async with app:
        await clock.advance(3 * 3600)
    assert runs.starts == [3600]
    assert runs.data == [{"kind": "at", "scheduled": at_offset(3600), "late": False, "missed": 0}]
    async with app:  # a second run of the app does not fire it again
        await clock.advance(3600)
    assert len(runs.starts) == 1
    assert timer_stats(app, "once")["fired"] == 1


async def test_at_a_past_time_fires_at_once_marked_late() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    runs = Runs(clock)
    timers.at(app, START - timedelta(hours=1), name="overdue")(runs)
    async with app:
        await clock.advance(0)
        assert runs.starts == [0]
        await clock.advance(3600)
    assert runs.data == [{"kind": "at", "scheduled": at_offset(-3600), "late": True, "missed": 0}]


async def test_at_with_past_reject() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    runs = Runs(clock)
    with pytest.raises(ValueError, match="already passed"):
        timers.at(app, START, past="reject")
    timers.at(app, START + timedelta(hours=1), past="reject", name="stale")(runs)
    await clock.advance(7200)  # the app starts after the time has passed
    async with app:
        await clock.advance(3600)
    assert runs.starts == []
    assert timer_stats(app, "stale")["missed"] == 1


async def test_at_under_wall_clock_jumps() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    runs = Runs(clock)
    timers.at(app, START + timedelta(hours=1), name="once")(runs)
    async with app:
        await clock.advance(10)
        clock.jump(7200)  # the wall clock steps past the time: noticed within a minute
        await clock.advance(timers.WALL_CLOCK_CHECK)
        assert runs.starts == [timers.WALL_CLOCK_CHECK]
        clock.jump(-7200)  # and back: the time does not fire again
        await clock.advance(7200)
    assert len(runs.starts) == 1
    assert runs.data[0]["late"] is True and runs.data[0]["scheduled"] == at_offset(3600)


async def test_at_needs_an_aware_datetime() -> None:
    app = Reactor(clock=VirtualClock(start=START))
    with pytest.raises(ValueError, match="aware"):
        timers.at(app, datetime(2030, 1, 1))
    with pytest.raises(TypeError, match="datetime"):
        timers.at(app, "2030-01-01T00:00:00Z")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="past"):
        timers.at(app, START, past="later")  # type: ignore[arg-type]
    source = OneShotSource(START + timedelta(days=1), name="x")
    assert not source.fired and source.trigger.when == START + timedelta(days=1)


# -- registration and lifecycle ---------------------------------------------------------------


async def test_registration_checks_its_options_at_once() -> None:
    app = Reactor(clock=VirtualClock(start=START))
    for seconds in (0, -1, math.inf, math.nan):
        with pytest.raises(ValueError, match="seconds"):
            timers.every(app, seconds)
    for wrong_type in (True, "5"):
        with pytest.raises(TypeError, match="seconds"):
            timers.every(app, wrong_type)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="jitter"):
        timers.every(app, 1, jitter=1)
    with pytest.raises(ValueError, match="jitter"):
        timers.every(app, 1, jitter=-0.1)
    with pytest.raises(ValueError, match="overlap must be one of 'skip', 'queue', 'concurrent'"):
        timers.every(app, 1, overlap="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="misfire must be one of 'coalesce', 'skip'"):
        timers.every(app, 1, misfire="never")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="name"):
        IntervalSource(1, name="")
    assert app.sources == () and app.subscriptions == ()


async def test_the_name_is_the_handlers_and_unique_like_a_consumer_name() -> None:
    app = Reactor(clock=VirtualClock(start=START))

    @timers.every(app, seconds=1)
    async def report(event: Event) -> None: ...

    with pytest.raises(ValueError, match="report"):
        timers.every(app, seconds=2, name="report")(report)

    def not_async(event: Event) -> None: ...

    with pytest.raises(TypeError, match="async def"):
        timers.every(app, seconds=2)(not_async)  # type: ignore[type-var]
    # A failed registration leaves neither a subscription nor a source behind.
    assert [s.name for s in app.subscriptions] == ["report"]
    assert [s.name for s in app.sources] == ["/reactor/timers/report"]
    assert app.subscriptions[0].source == "/reactor/timers/report"


async def test_other_consumers_can_subscribe_to_timer_events() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    everything, one = Capture(), Capture()
    app.subscribe(TIMER_TYPE, everything, name="everything")
    app.subscribe(TIMER_TYPE, one, source="/reactor/timers/a%20b%2A?", name="one")
    runs = Runs(clock)
    timers.every(app, seconds=1, name="a b*c")(runs)
    timers.every(app, seconds=1, name="a b*d")(Runs(clock))
    async with app:
        await clock.advance(1)
    assert sorted(e.source for e in everything.events) == [
        "/reactor/timers/a%20b%2Ac",
        "/reactor/timers/a%20b%2Ad",
    ]
    assert len(one.events) == 2
    assert [e.subject for e in everything.events if e.source.endswith("c")] == ["a b*c"]
    assert runs.starts == [1]  # a timer's handler gets its own timer's events only


async def test_timeout_and_retry_apply_to_runs() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    attempts: list[float] = []

    @timers.every(
        app,
        seconds=10,
        timeout=2,
        retry=Retry(attempts=3, backoff=Backoff(initial=1, maximum=1, jitter=False)),
    )
    async def flaky(event: Event) -> None:
        attempts.append(clock.monotonic())
        if len(attempts) == 1:
            await clock.sleep(5)  # cut by the timeout
        elif len(attempts) == 2:
            raise ConnectionError("second try fails")

    async with app:
        await clock.advance(15)
    assert attempts == [10, 13, 14]
    sub = app.stats().subscriptions["flaky"]
    assert (sub.delivered, sub.failed, sub.timed_out, sub.retried) == (1, 2, 1, 2)
    assert not list(app.dead_letters)


async def test_a_timer_added_while_the_app_runs_starts_and_stops_with_it() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    runs = Runs(clock)
    async with app:
        await clock.advance(5)
        timers.every(app, seconds=1, name="late")(runs)
        await clock.advance(2)
    assert runs.starts == [6, 7]
    await clock.advance(10)
    assert runs.starts == [6, 7]
    assert clock.pending == 0  # nothing is left sleeping


async def test_cancelling_the_subscription_leaves_the_timer_harmless() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    runs = Runs(clock)
    timers.every(app, seconds=1, name="ticker")(runs)
    async with app:
        await clock.advance(1)
        app.subscriptions[0].cancel()
        await clock.advance(3)
    assert runs.starts == [1]
    assert timer_stats(app, "ticker")["fired"] == 4  # published, with no consumer left


async def test_the_reactor_methods() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    seen: list[str] = []

    @app.every(seconds=60)
    async def interval(event: Event) -> None:
        seen.append(event.data["kind"])

    @app.cron("*/2 * * * *", tz="Europe/Berlin")
    async def schedule(event: Event) -> None:
        seen.append(event.data["kind"])

    @app.at(START + timedelta(minutes=3))
    async def once(event: Event) -> None:
        seen.append(event.data["kind"])

    async with app:
        with anyio.fail_after(5):
            await clock.advance(240)
    assert sorted(seen) == sorted(["interval"] * 4 + ["cron"] * 2 + ["at"])


# -- the plugin API -------------------------------------------------------------------------

# The members of reactor.abc.App: all that a plugin may use of the app.
APP_MEMBERS = frozenset(
    {
        "clock",
        "source",
        "running",
        "queue",
        "sources",
        "publish",
        "publish_nowait",
        "publish_many",
        "publish_and_wait",
        "subscribe",
        "add_source",
        "stats",
    }
)


class OnlyTheApp:
    """An :class:`~reactor.abc.App` that is not a Reactor: the protocol's members, forwarded.

    Sources it is given are kept in :attr:`added`, for the test to run with this app.
    """

    def __init__(self, app: Reactor) -> None:
        self._app = app
        self.added: list[Source] = []

    def __getattr__(self, name: str) -> Any:
        if name not in APP_MEMBERS:
            raise AttributeError(f"{name!r} is not a member of reactor.abc.App")
        return getattr(self._app, name)

    def add_source(self, source: Source) -> None:
        self.added.append(source)


async def test_timers_need_only_the_app_protocol() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    narrow = OnlyTheApp(app)
    runs = Runs(clock)
    timers.every(narrow, seconds=2, name="interval")(runs)
    timers.cron(narrow, "* * * * *", name="cron")(runs)
    timers.at(narrow, START + timedelta(seconds=30), name="at")(runs)
    assert app.sources == () and len(narrow.added) == 3
    assert [s.name for s in app.subscriptions] == ["interval", "cron", "at"]
    async with app, anyio.create_task_group() as tg:
        for source in narrow.added:
            await tg.start(source.run, narrow)
        await clock.advance(60)
        tg.cancel_scope.cancel()
    kinds = [data["kind"] for data in runs.data]
    assert (kinds.count("interval"), kinds.count("cron"), kinds.count("at")) == (30, 1, 1)


async def test_an_unknown_option_is_a_type_error_naming_the_function() -> None:
    app = Reactor(clock=VirtualClock(start=START))
    # A timer's overlap policy decides its concurrency; its runs need no ordering.
    with pytest.raises(
        TypeError, match=r"^every\(\) got an unexpected keyword argument 'concurrency'$"
    ):
        timers.every(app, 1, concurrency=4)  # type: ignore[call-arg]
    with pytest.raises(
        TypeError, match=r"^cron\(\) got an unexpected keyword argument 'ordered_by'$"
    ):
        app.cron("* * * * *", ordered_by=None)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"^at\(\) got an unexpected keyword argument 'tz'$"):
        app.at(START, tz="UTC")  # type: ignore[call-arg]
    assert app.sources == () and app.subscriptions == ()


async def test_the_reactor_methods_are_the_functions_with_their_signature_and_doc() -> None:
    app = Reactor(clock=VirtualClock(start=START))
    shortcuts: list[tuple[Callable[..., object], Callable[..., object]]] = [
        (app.every, timers.every),
        (app.cron, timers.cron),
        (app.at, timers.at),
    ]
    for shortcut, function in shortcuts:
        assert shortcut.__doc__ == function.__doc__
        assert ":param options:" in pydoc.render_doc(shortcut)
        parameters = list(inspect.signature(function).parameters.values())
        assert list(inspect.signature(shortcut).parameters.values()) == parameters[1:]
    every = inspect.signature(app.every).parameters
    assert list(every) == [
        "seconds",
        "jitter",
        "start",
        "end",
        "run_immediately",
        "overlap",
        "misfire",
        "grace",
        "options",
    ]
    assert (every["overlap"].default, every["misfire"].default) == ("skip", "coalesce")
    assert every["grace"].default is None
    assert list(inspect.signature(app.cron).parameters)[:2] == ["expression", "tz"]
    assert list(inspect.signature(app.at).parameters) == ["when", "past", "options"]


async def test_timers_log_as_reactor_sources_timers(caplog: pytest.LogCaptureFixture) -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    timers.at(app, START + timedelta(hours=1), past="reject", name="stale")(Runs(clock))
    await clock.advance(7200)  # the time passes before the app starts: dropped, logged
    with caplog.at_level(logging.WARNING, logger="reactor.sources.timers"):
        async with app:
            await clock.advance(1)
    assert [(r.name, r.levelno) for r in caplog.records if "stale" in r.getMessage()] == [
        ("reactor.sources.timers", logging.WARNING)
    ]


async def test_the_public_names_are_sorted_and_documented() -> None:
    assert timers.__all__ == sorted(timers.__all__, key=lambda name: (not name.isupper(), name))
    for name in timers.__all__:
        member = getattr(timers, name)
        if inspect.isclass(member) or inspect.isfunction(member):
            assert inspect.getdoc(member), f"{name} has no docstring"
