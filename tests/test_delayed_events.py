"""Delayed and expiring events: ``publish(..., delay=, deliver_at=, expires=)``, in virtual time."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import closing
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import anyio
import nats_tools
import pytest
import services
from redis_helpers import delete_stream, unique_stream

from reactor import Event, EventExpired, InvalidEventError, Reactor, ReactorNotRunning
from reactor.abc import EventQueue
from reactor.queues.memory import MemoryQueue
from reactor.queues.nats import NatsJetStreamQueue
from reactor.queues.redis import RedisStreamsQueue
from reactor.queues.sqlite import SCHEMA_VERSION, SQLiteQueue
from reactor.testing import VirtualClock

pytestmark = pytest.mark.anyio

START = datetime(2026, 1, 1, tzinfo=UTC)

QueueFactory = Callable[[], EventQueue]


async def _factory(kind: str, tmp_path: Path) -> AsyncIterator[QueueFactory]:
    if kind == "memory":
        yield MemoryQueue
    elif kind == "sqlite":
        yield lambda: SQLiteQueue(tmp_path / "events.db", synchronous="normal")
    elif kind == "redis":
        url = services.require("redis")
        stream = unique_stream("delayed")
        yield lambda: RedisStreamsQueue(url, stream=stream, group="app")
        await delete_stream(url, stream)
    else:
        url = services.require("nats")
        stream = nats_tools.unique_stream("delayed")
        yield lambda: NatsJetStreamQueue(url, stream=stream, group="app")
        await nats_tools.delete_streams(url, stream)


@pytest.fixture(params=["memory", "sqlite", "redis", "nats"])
async def make_queue(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[QueueFactory]:
    """A factory of the app's queue; the queues of one test share a file or a stream."""
    async for factory in _factory(request.param, tmp_path):
        yield factory


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def make_ordering_queue(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[QueueFactory]:
    """A factory of the queues that keep due events in the order of their times however
    they fall due (JetStream keeps it for events that fall due together only)."""
    async for factory in _factory(request.param, tmp_path):
        yield factory


@pytest.fixture(params=["sqlite", "redis", "nats"])
async def make_durable_queue(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[QueueFactory]:
    """A factory of durable queues; the queues of one test share a file or a stream."""
    async for factory in _factory(request.param, tmp_path):
        yield factory


class Handled:
    """A handler that records when (in virtual seconds) it saw which event.

    The SQLite queue promotes due events in its worker thread, which the virtual clock
    does not wait for: tests wait for the handler (:meth:`wait_for`) before looking.
    """

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.seen: list[tuple[float, object]] = []
        self._changed = anyio.Event()

    async def __call__(self, event: Event) -> None:
        self.seen.append((self.clock.monotonic(), event.data))
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_for(self, count: int) -> None:
        """Wait (at most 5 real seconds) until *count* events were handled."""
        with anyio.fail_after(5):
            while len(self.seen) < count:
                await self._changed.wait()


def app_with(queue: EventQueue) -> tuple[Reactor, VirtualClock, Handled]:
    clock = VirtualClock(start=START)
    app = Reactor(queue=queue, clock=clock)
    handled = Handled(clock)
    app.subscribe("job", handled, name="jobs")
    return app, clock, handled


async def test_delay_holds_the_event_until_it_is_due(make_queue: QueueFactory) -> None:
    app, clock, handled = app_with(make_queue())
    async with app:
        event = await app.publish("job", 1, delay=timedelta(seconds=30))
        await app.publish("job", 2)
        await handled.wait_for(1)
        await clock.advance(29)
        assert handled.seen == [(0, 2)]
        assert app.stats().queue.delayed == 1
        assert app.stats().queue.depth == 0
        await clock.advance(1)
        await handled.wait_for(2)
        assert handled.seen == [(0, 2), (30, 1)]
        assert app.stats().queue.delayed == 0
    assert event.deliver_at == START + timedelta(seconds=30)
    assert event.extensions["deliverat"] == START + timedelta(seconds=30)


async def test_delay_in_seconds_and_deliver_at_in_any_time_zone(make_queue: QueueFactory) -> None:
    app, clock, handled = app_with(make_queue())
    elsewhere = timezone(timedelta(hours=-5))
    async with app:
        await app.publish("job", "seconds", delay=2.5)
        await app.publish(
            "job", "at", deliver_at=(START + timedelta(seconds=10)).astimezone(elsewhere)
        )
        await app.publish("job", "past", deliver_at=START - timedelta(days=1))
        await handled.wait_for(1)
        await clock.advance(2.5)
        await handled.wait_for(2)
        await clock.advance(7.5)
        await handled.wait_for(3)
    assert handled.seen == [(0, "past"), (2.5, "seconds"), (10, "at")]


async def test_due_events_come_in_the_order_of_their_times_then_of_publishing(
    make_ordering_queue: QueueFactory,
) -> None:
    app, clock, handled = app_with(make_ordering_queue())
    async with app:
        for data, seconds in [("c", 30), ("a", 10), ("b", 20), ("a2", 10)]:
            await app.publish("job", data, delay=seconds)
        for seen in (2, 3, 4):
            await clock.advance(10)
            await handled.wait_for(seen)
    assert handled.seen == [(10, "a"), (10, "a2"), (20, "b"), (30, "c")]


async def test_a_prebuilt_event_is_delayed_and_keeps_its_attributes(
    make_queue: QueueFactory,
) -> None:
    app, clock, handled = app_with(make_queue())
    received: list[Event] = []

    async def keep(event: Event) -> None:
        received.append(event)
        await handled(event)

    app.subscribe("other", keep, name="keep")
    event = Event(type="other", source="/test", id="e1", data="x")
    async with app:
        queued = await app.publish(event, delay=5)
        await clock.advance(5)
        await handled.wait_for(1)
    assert [(e.id, e.source, e.data) for e in received] == [("e1", "/test", "x")]
    assert received[0] == queued
    assert queued.deliver_at == START + timedelta(seconds=5)


async def test_publish_and_wait_waits_for_the_delayed_delivery(make_queue: QueueFactory) -> None:
    app, clock, handled = app_with(make_queue())
    receipts = []

    async def publish() -> None:
        at = START + timedelta(seconds=8)
        receipts.append(await app.publish_and_wait("job", "waited", deliver_at=at))

    async with app, anyio.create_task_group() as tg:
        tg.start_soon(publish)
        await clock.advance(8)
        await handled.wait_for(1)
    assert [receipt.ok for receipt in receipts] == [True]
    assert handled.seen == [(8, "waited")]


async def test_publish_nowait_delays_on_the_memory_queue() -> None:
    app, clock, handled = app_with(MemoryQueue())
    async with app:
        app.publish_nowait("job", "nowait", delay=5)
        await clock.advance(5)
    assert handled.seen == [(5, "nowait")]


async def test_publish_nowait_cannot_delay_on_the_sqlite_queue(tmp_path: Path) -> None:
    app, _, handled = app_with(SQLiteQueue(tmp_path / "events.db"))
    async with app:
        with pytest.raises(NotImplementedError, match=r"await app\.publish\(\.\.\., delay"):
            app.publish_nowait("job", delay=5)
        app.publish_nowait("job", "past", deliver_at=START)  # due: nothing to hold
        await handled.wait_for(1)


async def test_leaving_the_app_does_not_wait_for_delayed_events(make_queue: QueueFactory) -> None:
    app, _, handled = app_with(make_queue())
    with anyio.fail_after(5):  # real seconds: the drain must not wait a virtual hour
        async with app:
            await app.publish("job", 1, delay=timedelta(hours=1))
    assert handled.seen == []
    assert app.stats().queue.delayed == 1  # kept for the next start


async def test_a_delayed_event_survives_a_restart(make_durable_queue: QueueFactory) -> None:
    app, clock, handled = app_with(make_durable_queue())
    async with app:
        await app.publish("job", "later", delay=timedelta(minutes=10))
        await app.publish("job", "expiring", delay=60, expires=timedelta(minutes=5))
        await clock.advance(30)
    assert handled.seen == []

    # A new process: a new app, a new queue object on the same file or stream, and a
    # clock two minutes later than the first one's start.
    app, clock, handled = app_with(make_durable_queue())
    await clock.advance(120)  # 2 minutes since the start of this clock
    async with app:
        await handled.wait_for(1)
        assert handled.seen == [(120, "expiring")]  # due at 60: delivered at the start
        await clock.advance(7 * 60)
        assert app.stats().queue.delayed == 1
        await clock.advance(60)
        await handled.wait_for(2)
        assert handled.seen == [(120, "expiring"), (600, "later")]
        assert app.stats().queue.delayed == 0


async def test_an_event_that_expires_before_it_starts_is_dead_lettered(
    make_queue: QueueFactory,
) -> None:
    app, clock, handled = app_with(make_queue())
    started = anyio.Event()
    release = anyio.Event()

    async def slow(event: Event) -> None:
        started.set()
        await release.wait()

    app.subscribe("block", slow, name="slow", concurrency=1)
    app.subscribe("job", slow, name="slow_jobs", concurrency=1)
    async with app:
        # slow_jobs is busy with the first event; the second waits behind it and expires.
        await app.publish("job", "first")
        await started.wait()
        await app.publish("job", "second", expires=timedelta(seconds=10))
        await handled.wait_for(2)  # "jobs" handles it in time
        await clock.advance(11)
        release.set()
        await clock.advance(1)
        stats = app.stats()
    letters = [(letter.consumer, letter.event.data) for letter in app.dead_letters]
    assert letters == [("slow_jobs", "second")]
    letter = next(iter(app.dead_letters))
    assert isinstance(letter.error, EventExpired)
    assert letter.error.expires_at == START + timedelta(seconds=10)
    assert letter.attempts == 0
    # "jobs" handled it before it expired; slow_jobs never started it.
    assert [data for _, data in handled.seen] == ["first", "second"]
    assert stats.subscriptions["slow_jobs"].expired == 1
    assert stats.subscriptions["slow_jobs"].dead_lettered == 1
    assert stats.subscriptions["jobs"].expired == 0
    assert stats.expired == 1


async def test_an_event_expired_when_it_is_routed_is_handled_by_nobody(
    make_queue: QueueFactory,
) -> None:
    app, clock, handled = app_with(make_queue())
    async with app:
        # Due after it expired: its delivery can never start in time.
        event = Event(
            type="job",
            source="/test",
            data="stale",
            extensions={
                "deliverat": START + timedelta(seconds=20),
                "expiresat": START + timedelta(seconds=10),
            },
        )
        async with anyio.create_task_group() as tg:
            tg.start_soon(clock.advance, 30)
            stale = await app.publish_and_wait(event)
        fresh = await app.publish_and_wait("job", "fresh", expires=timedelta(seconds=1))
    assert handled.seen == [(30, "fresh")]
    assert [letter.event.data for letter in app.dead_letters] == ["stale"]
    assert not stale.ok
    assert isinstance(stale.outcomes["jobs"].error, EventExpired)
    assert fresh.ok
    assert app.stats().expired == 1


async def test_a_handler_that_started_before_the_expiry_runs_to_its_end(
    make_queue: QueueFactory,
) -> None:
    clock = VirtualClock(start=START)
    app = Reactor(queue=make_queue(), clock=clock)
    done: list[float] = []
    started = anyio.Event()

    async def long(event: Event) -> None:
        started.set()
        await clock.sleep(60)
        done.append(clock.monotonic())

    app.subscribe("job", long, name="long")
    receipts = []

    async def publish() -> None:
        receipts.append(await app.publish_and_wait("job", expires=timedelta(seconds=10)))

    async with app:
        async with anyio.create_task_group() as tg:
            tg.start_soon(publish)
            await started.wait()
            await clock.advance(120)
    assert done == [60]
    assert [receipt.ok for receipt in receipts] == [True]
    assert list(app.dead_letters) == []


async def test_expiry_is_carried_in_the_event() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    async with app:
        event = await app.publish("job", expires=timedelta(minutes=1))
        at = await app.publish("job", expires=START + timedelta(hours=1))
    assert event.expires_at == START + timedelta(minutes=1)
    assert at.expires_at == START + timedelta(hours=1)
    again = Event.from_json(event.to_json())
    assert again.expires_at == event.expires_at
    assert again == event


async def test_the_time_extensions_must_hold_times() -> None:
    with pytest.raises(InvalidEventError, match="deliverat"):
        Event(type="t", source="/s", extensions={"deliverat": "tomorrow"})
    with pytest.raises(InvalidEventError, match="expiresat"):
        Event(type="t", source="/s", extensions={"expiresat": 5})
    parsed = Event(type="t", source="/s", extensions={"deliverat": "2026-01-01T00:00:05Z"})
    assert parsed.deliver_at == START + timedelta(seconds=5)


async def test_bad_delivery_options_are_refused_with_clear_errors() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    async with app:
        with pytest.raises(TypeError, match="delay or deliver_at, not both"):
            await app.publish("job", delay=1, deliver_at=START)
        with pytest.raises(ValueError, match="delay must be a finite number of seconds >= 0"):
            await app.publish("job", delay=-1)
        with pytest.raises(ValueError, match="delay must be a finite number of seconds >= 0"):
            await app.publish("job", delay=timedelta(seconds=-1))
        with pytest.raises(TypeError, match="delay must be a timedelta or a finite number"):
            await app.publish("job", delay="soon")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="deliver_at must be an aware datetime"):
            await app.publish("job", deliver_at=datetime(2026, 1, 2))
        with pytest.raises(ValueError, match="expires must be an aware datetime"):
            await app.publish("job", expires=datetime(2026, 1, 2))
        with pytest.raises(ValueError, match="must be later than the time the event is"):
            await app.publish("job", delay=60, expires=timedelta(seconds=30))
        with pytest.raises(TypeError, match="unexpected keyword argument 'dealy'"):
            await app.publish("job", dealy=5)  # type: ignore[call-arg]
        assert app.stats().published == 0


class NoDelays(MemoryQueue):
    """A third-party queue that does not hold delayed events."""

    supports_delay = False


async def test_a_queue_without_delays_refuses_them_by_name() -> None:
    app = Reactor(queue=NoDelays(), clock=VirtualClock(start=START))
    async with app:
        with pytest.raises(NotImplementedError, match="NoDelays, does not hold delayed"):
            await app.publish("job", delay=5)
        delayed = Event(type="job", source="/s", extensions={"deliverat": START})
        with pytest.raises(NotImplementedError, match="NoDelays"):
            await app.publish_many([delayed])
        # An expiry needs nothing of the queue.
        await app.publish("job", expires=timedelta(seconds=5))


async def test_delayed_events_count_against_the_memory_queue_capacity() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(queue=MemoryQueue(capacity=2), clock=clock)
    app.subscribe("job", Handled(clock), name="jobs")
    async with app:
        app.publish_nowait("job", delay=10)
        app.publish_nowait("job", delay=10)
        stats = app.stats().queue
        assert (stats.depth, stats.delayed) == (0, 2)
        from reactor import QueueFull

        with pytest.raises(QueueFull):
            app.publish_nowait("job")
        await clock.advance(10)
        app.publish_nowait("job")  # room again once they were handed out


async def test_publishing_needs_a_running_app_with_options_too() -> None:
    app = Reactor(clock=VirtualClock(start=START))
    with pytest.raises(ReactorNotRunning):
        await app.publish("job", delay=5)


async def test_a_file_of_schema_version_2_is_migrated_and_then_delays(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    async with SQLiteQueue(path):
        pass
    with closing(sqlite3.connect(path)) as conn:  # what release 2 created
        conn.execute("DROP TABLE reactor_delayed")
        conn.execute("DROP TABLE reactor_dedupe")
        conn.execute("PRAGMA user_version = 2")
        conn.commit()
    app, clock, handled = app_with(SQLiteQueue(path, check="full"))
    async with app:
        await app.publish("job", "later", delay=10)
        await clock.advance(10)
        await handled.wait_for(1)
    assert handled.seen == [(10, "later")]
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3


async def test_the_jetstream_queue_delivers_a_delayed_event_once_to_each_group() -> None:
    url = services.require("nats")
    stream = nats_tools.unique_stream("delayed")
    clock = VirtualClock(start=START)
    producer = Reactor(queue=NatsJetStreamQueue(url, stream=stream, group="producer"), clock=clock)
    billing, mail = Handled(clock), Handled(clock)
    apps = []
    # Two processes of billing (one handler records both), one of mail; each process
    # runs a mover, and so does the producer's.
    for group, handled in (("billing", billing), ("billing", billing), ("mail", mail)):
        app = Reactor(queue=NatsJetStreamQueue(url, stream=stream, group=group), clock=clock)
        app.subscribe("job", handled, name="jobs")
        apps.append(app)
    try:
        async with producer, apps[0], apps[1], apps[2]:
            await producer.publish("job", "later", delay=timedelta(minutes=5))
            await clock.advance(299)
            assert billing.seen == mail.seen == []
            await clock.advance(1)
            await billing.wait_for(1)
            await mail.wait_for(1)
            assert await nats_tools.stream_messages(url, f"{stream}_delayed") == 0
        assert billing.seen == mail.seen == [(300, "later")]
    finally:
        await nats_tools.delete_streams(url, stream)


async def test_jetstream_moves_events_that_fall_due_together_in_the_order_of_their_times() -> None:
    url = services.require("nats")
    stream = nats_tools.unique_stream("delayed")
    app, clock, handled = app_with(NatsJetStreamQueue(url, stream=stream, group="app"))
    try:
        async with app:
            for data, seconds in [("c", 30), ("a", 10), ("b", 20), ("a2", 10), ("d", 90)]:
                await app.publish("job", data, delay=seconds)
        # All fall due while no process runs; the next start moves them in due order.
        await clock.advance(60)
        app, clock, handled = app_with(NatsJetStreamQueue(url, stream=stream, group="app"))
        await clock.advance(60)
        async with app:
            await handled.wait_for(4)
            assert app.stats().queue.delayed == 1
        assert [data for _, data in handled.seen] == ["a", "a2", "b", "c"]
    finally:
        await nats_tools.delete_streams(url, stream)


async def test_publish_many_takes_events_that_carry_their_delay(make_queue: QueueFactory) -> None:
    app, clock, handled = app_with(make_queue())
    due = START + timedelta(seconds=10)
    events = [
        Event(type="job", source="/s", data="later", extensions={"deliverat": due}),
        Event(type="job", source="/s", data="now"),
    ]
    # JetStream stores a batch of one event at most.
    batches = [events[:1], events[1:]] if isinstance(app.queue, NatsJetStreamQueue) else [events]
    async with app:
        for batch in batches:
            await app.publish_many(batch)
        await handled.wait_for(1)
        assert app.stats().queue.delayed == 1
        await clock.advance(10)
        await handled.wait_for(2)
    assert handled.seen == [(0, "now"), (10, "later")]


async def test_a_delayed_event_is_deduplicated_as_any_other(
    make_durable_queue: QueueFactory,
) -> None:
    clock = VirtualClock(start=START)
    app = Reactor(queue=make_durable_queue(), clock=clock, dedupe=timedelta(hours=1))
    handled = Handled(clock)
    app.subscribe("job", handled, name="jobs")
    event = Event(type="job", source="/s", id="once", data="x")
    async with app:
        await app.publish(event, delay=10)
        await app.publish(event, delay=10)  # a producer's retry
        assert app.stats().deduplicated == 1
        assert app.stats().queue.delayed == 1
        await clock.advance(10)
        await handled.wait_for(1)
    assert handled.seen == [(10, "x")]
