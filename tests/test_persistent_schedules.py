"""Persistent schedules: a durable queue keeps each timer's last fire time, so the runs
missed while the app was stopped go to the misfire policy when it starts again.

Most tests use :class:`KeptFireTimes`, a memory queue that keeps fire times in a dict
shared by the apps of a test, as a durable queue keeps them in its file: each "process"
is a new app on a new virtual clock that starts later. The last tests restart an app on
the same SQLite file, Redis stream and group, or NATS stream and group.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import nats_tools
import pytest
import services
from redis_helpers import delete_stream, unique_stream

from reactor import Event, Reactor
from reactor.abc import EventQueue
from reactor.queues.memory import MemoryQueue
from reactor.queues.sqlite import SQLiteQueue
from reactor.sources import timers
from reactor.testing import Capture, VirtualClock

pytestmark = pytest.mark.anyio

START = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return START + timedelta(seconds=seconds)


def rfc3339(seconds: float) -> str:
    return at(seconds).isoformat().replace("+00:00", "Z")


class KeptFireTimes(MemoryQueue):
    """A memory queue that keeps timers' fire times, in *kept*, as a durable queue does."""

    stores_fire_times = True

    def __init__(self, kept: dict[str, datetime]) -> None:
        super().__init__()
        self.kept = kept
        self.recorded: list[tuple[str, datetime, bool]] = []

    def fire_times(self) -> Mapping[str, datetime]:
        return self.kept

    def record_fire_time(self, timer: str, when: datetime, event: Event | None) -> None:
        self.recorded.append((timer, when, event is not None))
        if timer not in self.kept or when > self.kept[timer]:
            self.kept[timer] = when


class Runs:
    """A timer handler that notes when it ran (monotonic) and its events' data."""

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.starts: list[float] = []
        self.data: list[dict[str, object]] = []

    async def __call__(self, event: Event) -> None:
        self.starts.append(self.clock.monotonic())
        self.data.append(event.data)


def counts(app: Reactor, name: str) -> dict[str, object]:
    return dict(app.stats().sources[f"/reactor/timers/{name}"])


def late_run(scheduled: float, missed: int, kind: str = "interval") -> dict[str, object]:
    return {"kind": kind, "scheduled": rfc3339(scheduled), "late": True, "missed": missed}


async def first_run(kept: dict[str, datetime], **options: object) -> None:
    """An app's first run: a timer every 60 s named "report", for 150 s (fires 60, 120)."""
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock, queue=KeptFireTimes(kept))
    runs = Runs(clock)
    timers.every(app, 60, name="report", **options)(runs)  # type: ignore[arg-type]
    async with app:
        await clock.advance(150)
    assert runs.starts == [60, 120]
    assert kept == {"report": at(120)}


async def test_missed_runs_coalesce_into_one_late_run_at_start() -> None:
    kept: dict[str, datetime] = {}
    await first_run(kept)
    # The app is down from 150 s to 630 s: the due times 180, 240, ..., 600 passed.
    clock = VirtualClock(start=at(630))
    app = Reactor(clock=clock, queue=KeptFireTimes(kept))
    runs = Runs(clock)
    timers.every(app, 60, name="report")(runs)
    async with app:
        await clock.advance(0)
        assert runs.data == [late_run(600, 7)]  # one run, for the latest, now
        assert counts(app, "report") == {
            "fired": 1,
            "late": 1,
            "missed": 7,
            "skipped": 0,
            "coalesced": 0,
        }
        assert app.schedules["report"].last_fire_time == at(600)
        # The schedule goes on from the stored time: 660 s is 30 s after the start.
        assert app.schedules["report"].next_fire_time == at(660)
        await clock.advance(40)
    assert runs.starts == [0, 30]
    assert runs.data[1]["late"] is False
    assert kept == {"report": at(660)}


async def test_skip_runs_none_of_the_missed_runs_and_counts_them() -> None:
    kept: dict[str, datetime] = {}
    await first_run(kept, misfire="skip")
    clock = VirtualClock(start=at(630))
    queue = KeptFireTimes(kept)
    app = Reactor(clock=clock, queue=queue)
    runs = Runs(clock)
    timers.every(app, 60, name="report", misfire="skip")(runs)
    async with app:
        await clock.advance(40)
        assert counts(app, "report")["missed"] == 8
    assert runs.data == [
        {"kind": "interval", "scheduled": rfc3339(660), "late": False, "missed": 0}
    ]
    # The dropped due time is stored too, without an event: a restart does not miss it.
    assert queue.recorded == [("report", at(600), False), ("report", at(660), True)]


async def test_a_restart_within_a_period_keeps_the_grid_and_misses_nothing() -> None:
    kept: dict[str, datetime] = {}
    await first_run(kept)
    clock = VirtualClock(start=at(170))
    app = Reactor(clock=clock, queue=KeptFireTimes(kept))
    runs = Runs(clock)
    timers.every(app, 60, name="report")(runs)
    async with app:
        assert app.schedules["report"].next_fire_time == at(180)  # not 170 + 60
        await clock.advance(80)
    assert runs.starts == [10, 70]
    assert counts(app, "report")["missed"] == 0


@pytest.mark.parametrize(
    ("restart", "ran"),
    [(610, True), (630, True), (631, False)],
    ids=["within", "at the limit", "too late"],
)
async def test_grace_decides_how_late_the_coalesced_run_may_be(restart: float, ran: bool) -> None:
    kept: dict[str, datetime] = {}
    await first_run(kept)
    clock = VirtualClock(start=at(restart))
    app = Reactor(clock=clock, queue=KeptFireTimes(kept))
    runs = Runs(clock)
    timers.every(app, 60, name="report", grace=timedelta(seconds=30))(runs)
    async with app:
        await clock.advance(0)
    assert runs.data == ([late_run(600, 7)] if ran else [])
    stats = counts(app, "report")
    assert (stats["fired"], stats["missed"]) == ((1, 7) if ran else (0, 8))
    assert kept == {"report": at(600)}  # dropped or run: dealt with


async def test_grace_also_bounds_the_catch_up_after_a_stall() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    runs = Runs(clock)
    timers.every(app, 10, name="poll", grace=2.0)(runs)
    async with app:
        await clock.advance(15)
        await clock.stall(7)  # the loop is blocked from 15 s to 22 s: the run of 20 s is 2 s late
        await clock.stall(14)  # ... from 22 s to 36 s: 30 s is 6 s late, dropped
        await clock.advance(5)
    assert runs.starts == [10, 22, 40]
    assert counts(app, "poll")["missed"] == 1


async def test_a_cron_timer_coalesces_the_times_missed_while_stopped() -> None:
    kept: dict[str, datetime] = {}
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock, queue=KeptFireTimes(kept))
    runs = Runs(clock)
    timers.cron(app, "*/5 * * * *", name="sweep")(runs)
    async with app:
        await clock.advance(700)
    assert runs.starts == [300, 600] and kept == {"sweep": at(600)}
    # Down from 700 s to 2000 s: 900, 1200, 1500 and 1800 s passed.
    clock = VirtualClock(start=at(2000))
    app = Reactor(clock=clock, queue=KeptFireTimes(kept))
    runs = Runs(clock)
    timers.cron(app, "*/5 * * * *", name="sweep")(runs)
    async with app:
        await clock.advance(0)
        assert runs.data == [late_run(1800, 3, "cron")]
        assert counts(app, "sweep")["missed"] == 3
        await clock.advance(100)
    assert runs.starts == [0, 100]
    assert kept == {"sweep": at(2100)}


async def test_a_cron_timer_with_skip_waits_for_its_next_time() -> None:
    kept = {"sweep": at(600)}
    clock = VirtualClock(start=at(2000))
    app = Reactor(clock=clock, queue=KeptFireTimes(kept))
    runs = Runs(clock)
    timers.cron(app, "*/5 * * * *", name="sweep", misfire="skip")(runs)
    async with app:
        await clock.advance(100)
        assert counts(app, "sweep")["missed"] == 4
    assert runs.starts == [100]


async def test_an_interval_with_a_start_keeps_its_grid_and_stops_at_its_end() -> None:
    kept = {"report": at(130)}  # on the grid of start=10 s, every 60 s
    clock = VirtualClock(start=at(500))
    app = Reactor(clock=clock, queue=KeptFireTimes(kept))
    runs = Runs(clock)
    timers.every(app, 60, name="report", start=at(10), end=at(440))(runs)
    async with app:
        await clock.advance(0)
        # 190, 250, 310, 370 and 430 s passed; 490 s is after the end: not a run.
        assert runs.data == [late_run(430, 4)]
        assert app.schedules["report"].next_fire_time is None  # past its end: done
        await clock.advance(600)
    assert len(runs.starts) == 1
    assert counts(app, "report")["missed"] == 4


async def test_an_app_restarted_in_the_same_process_misses_the_runs_meanwhile() -> None:
    kept: dict[str, datetime] = {}
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock, queue=KeptFireTimes(kept))
    interval, cron = Runs(clock), Runs(clock)
    timers.every(app, 60, name="interval")(interval)
    timers.cron(app, "* * * * *", name="cron")(cron)
    async with app:
        await clock.advance(90)
    await clock.advance(200)  # stopped from 90 s to 290 s: 120, 180 and 240 s passed
    async with app:
        await clock.advance(0)
        assert interval.data[1:] == [late_run(240, 2)]
        assert cron.data[1:] == [late_run(240, 2, "cron")]
        await clock.advance(20)
    assert interval.starts == cron.starts == [60, 290, 300]


async def test_a_due_time_skipped_by_the_overlap_policy_is_stored_without_an_event() -> None:
    kept: dict[str, datetime] = {}
    clock = VirtualClock(start=START)
    queue = KeptFireTimes(kept)
    app = Reactor(clock=clock, queue=queue)

    @timers.every(app, 60, name="slow")
    async def slow(event: Event) -> None:
        await clock.sleep(90)  # still running when 120 s comes

    async with app:
        await clock.advance(150)
        assert counts(app, "slow")["skipped"] == 1
    assert queue.recorded == [("slow", at(60), True), ("slow", at(120), False)]
    assert kept == {"slow": at(120)}  # a restart does not count 120 s as missed


async def test_a_one_shot_timer_that_fired_does_not_fire_again_after_a_restart() -> None:
    kept: dict[str, datetime] = {}
    for restart in (0, 500):
        clock = VirtualClock(start=at(restart))
        app = Reactor(clock=clock, queue=KeptFireTimes(kept))
        runs = Runs(clock)
        timers.at(app, at(100), name="once")(runs)
        async with app:
            await clock.advance(200)
        assert len(runs.starts) == (1 if restart == 0 else 0)
    assert kept == {"once": at(100)}


async def test_without_a_durable_queue_nothing_is_stored_or_missed() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    runs = Runs(clock)
    timers.every(app, 60, name="report")(runs)
    assert not app.queue.stores_fire_times and app.queue.fire_times() == {}
    async with app:
        await clock.advance(150)
    await clock.advance(1000)
    async with app:  # the grid starts again with the app, as before persistence
        await clock.advance(70)
    assert runs.starts == [60, 120, 1210]
    assert counts(app, "report")["missed"] == 0


async def test_a_renamed_timer_is_a_new_schedule() -> None:
    kept: dict[str, datetime] = {}
    await first_run(kept)
    clock = VirtualClock(start=at(630))
    app = Reactor(clock=clock, queue=KeptFireTimes(kept))
    runs = Runs(clock)
    timers.every(app, 60, name="weekly-report")(runs)
    async with app:
        await clock.advance(70)
    assert runs.starts == [60]
    assert counts(app, "weekly-report")["missed"] == 0


async def test_a_run_now_is_not_a_fire_time_of_the_schedule() -> None:
    kept: dict[str, datetime] = {}
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock, queue=KeptFireTimes(kept))
    runs = Runs(clock)
    timers.every(app, 60, name="report")(runs)
    async with app:
        await clock.advance(10)
        app.schedules["report"].run_now()
        await clock.advance(0)
    assert runs.starts == [10]
    assert kept == {} and app.schedules["report"].last_fire_time is None


@pytest.mark.parametrize(
    ("grace", "error", "message"),
    [
        (-1, ValueError, r"grace must be a finite number of seconds >= 0, got -1"),
        (float("nan"), ValueError, r"grace must be a finite number of seconds >= 0"),
        ("30", TypeError, r"grace must be a finite number of seconds >= 0, got '30'"),
        (timedelta(seconds=-1), ValueError, r"grace must be a finite number of seconds >= 0"),
    ],
)
async def test_a_bad_grace_is_refused_when_the_timer_is_declared(
    grace: object, error: type[Exception], message: str
) -> None:
    app = Reactor(clock=VirtualClock(start=START))
    with pytest.raises(error, match=message):
        timers.every(app, 60, grace=grace)  # type: ignore[arg-type]
    with pytest.raises(error, match=message):
        app.cron("* * * * *", grace=grace)  # type: ignore[arg-type]
    with pytest.raises(error, match=message):
        timers.CronSource(timers.CronTrigger("* * * * *"), name="x", grace=grace)  # type: ignore[arg-type]
    assert app.sources == ()


# -- on the SQLite and Redis queues -------------------------------------------------------

# Real I/O (a thread's commits, a server): a bound only a broken queue reaches.
WAIT = 20.0

#: Makes a new queue on the same storage each call: a process of the app.
Storage = Callable[[], EventQueue]


@pytest.fixture(params=["sqlite", "redis", "nats"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    if request.param == "sqlite":
        yield lambda: SQLiteQueue(tmp_path / "events.db")
    elif request.param == "redis":
        from reactor.queues.redis import RedisStreamsQueue

        url = services.require("redis")
        stream = unique_stream("schedules")
        yield lambda: RedisStreamsQueue(url, stream=stream, group="app")
        await delete_stream(url, stream)
    else:
        from reactor.queues.nats import NatsJetStreamQueue

        url = services.require("nats")
        name = nats_tools.unique_stream("schedules")
        yield lambda: NatsJetStreamQueue(url, stream=name, group="app")
        await nats_tools.delete_streams(url, name)


async def stored(storage: Storage) -> Mapping[str, datetime]:
    """The fire times the storage keeps."""
    async with storage() as queue:
        return dict(queue.fire_times())


def declare(app: Reactor, kind: str, handler: Capture, **options: object) -> None:
    if kind == "interval":
        timers.every(app, 60, name="report", **options)(handler)  # type: ignore[arg-type]
    else:
        timers.cron(app, "* * * * *", name="report", **options)(handler)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["interval", "cron"])
@pytest.mark.parametrize("misfire", ["coalesce", "skip"])
async def test_a_restart_on_the_same_storage_handles_the_runs_missed_meanwhile(
    storage: Storage, kind: str, misfire: str
) -> None:
    # The first process: one run, at 60 s, then it stops at 90 s.
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock, queue=storage())
    capture = Capture()
    declare(app, kind, capture, misfire=misfire)
    async with app:
        await clock.advance(60)
        with anyio.fail_after(WAIT):
            await capture.wait_for(1)
        await clock.advance(30)
    assert await stored(storage) == {"report": at(60)}
    # The second process starts at 10 min 30 s: 120, 180, ..., 600 s passed meanwhile.
    clock = VirtualClock(start=at(630))
    app = Reactor(clock=clock, queue=storage())
    capture = Capture()
    declare(app, kind, capture, misfire=misfire)
    async with app:
        await anyio.wait_all_tasks_blocked()
        if misfire == "coalesce":
            with anyio.fail_after(WAIT):
                (event,) = await capture.wait_for(1)
            assert event.data == late_run(600, 8, kind)
        stats = counts(app, "report")
        assert (stats["fired"], stats["missed"]) == ((1, 8) if misfire == "coalesce" else (0, 9))
        # The latest run that fired; the due times dropped are stored too.
        last = at(600) if misfire == "coalesce" else at(60)
        assert app.schedules["report"].last_fire_time == last
        assert app.schedules["report"].next_fire_time == at(660)
    assert len(capture.events) == (1 if misfire == "coalesce" else 0)
    assert await stored(storage) == {"report": at(600)}


async def test_the_fire_time_is_in_the_file_once_the_event_of_the_run_is(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock, queue=SQLiteQueue(path))
    capture = Capture()
    in_file: list[object] = []

    async def handler(event: Event) -> None:
        # The run's event was committed, hence its fire time (one transaction): another
        # connection reads it while the app runs.
        with closing(sqlite3.connect(path)) as conn:
            row = conn.execute("SELECT value FROM reactor_meta WHERE key = 'fired:report'")
            in_file.append(row.fetchone())
        await capture(event)

    timers.every(app, 60, name="report")(handler)
    async with app:
        await clock.advance(60)
        with anyio.fail_after(WAIT):
            await capture.wait_for(1)
    assert in_file == [(at(60).timestamp(),)]
