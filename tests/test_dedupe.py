"""Deduplication: ``Reactor(dedupe=...)`` drops a producer's retry of an event it accepted
within the window, on every publish path, in memory or in the SQLite queue's file."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from test_http import call, post_event
from test_sqlite_names import write_v1_file

from reactor import DuplicateEvent, Event, QueueFull, Reactor
from reactor.abc import EventQueue
from reactor.queues.memory import MemoryQueue
from reactor.queues.sqlite import SCHEMA_VERSION, SQLiteQueue
from reactor.testing import VirtualClock

pytestmark = pytest.mark.anyio

START = datetime(2026, 1, 1, tzinfo=UTC)


def order(number: int, source: str = "/shop") -> Event:
    return Event(
        type="order.created", source=source, id=f"order-{number}", time=START, data={"n": number}
    )


class Handled:
    """A handler that records the ids it handled."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    async def __call__(self, event: Event) -> None:
        self.ids.append(event.id)


def memory() -> EventQueue:
    return MemoryQueue()


@pytest.fixture(params=["memory", "sqlite"])
def make_queue(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], EventQueue]:
    """A factory of the app's queue: the memory queue (keys in the app's memory) or the
    SQLite queue (keys in the file), each new one on the same file."""
    if request.param == "memory":
        return memory
    return lambda: SQLiteQueue(tmp_path / "events.db", synchronous="normal")


def test_dedupe_is_checked() -> None:
    with pytest.raises(ValueError, match="dedupe must be a finite number of seconds > 0"):
        Reactor(dedupe=0)
    with pytest.raises(ValueError, match="dedupe"):
        Reactor(dedupe=timedelta(seconds=-1))
    with pytest.raises(TypeError, match="dedupe"):
        Reactor(dedupe="1h")  # type: ignore[arg-type]


async def test_a_retry_within_the_window_is_dropped_and_counted(
    make_queue: Callable[[], EventQueue],
) -> None:
    clock = VirtualClock(start=START)
    app = Reactor(queue=make_queue(), clock=clock, dedupe=timedelta(minutes=10))
    handled = Handled()
    app.subscribe("order.*", handled)
    async with app:
        assert await app.publish(order(1)) == order(1)
        await clock.advance(599)
        await app.publish(order(1))  # the producer's retry: dropped
        app.publish_nowait(order(2))
        app.publish_nowait(order(2))
        await app.publish(order(1, source="/other"))  # another source: another event
        receipt = await app.publish_and_wait(order(3))
        again = await app.publish_and_wait(order(3))
    assert handled.ids == ["order-1", "order-2", "order-1", "order-3"]
    assert receipt.ok and not receipt.duplicate and set(receipt.outcomes) == {"Handled"}
    assert again.duplicate and again.event == order(3) and not again.outcomes
    stats = app.stats()
    assert stats.deduplicated == 3
    assert stats.published == 4


async def test_after_the_window_the_same_event_is_published_again(
    make_queue: Callable[[], EventQueue],
) -> None:
    clock = VirtualClock(start=START)
    app = Reactor(queue=make_queue(), clock=clock, dedupe=60)
    handled = Handled()
    app.subscribe("order.*", handled)
    async with app:
        await app.publish(order(1))
        await clock.advance(60)
        await app.publish(order(1))
        await clock.advance(59)
        await app.publish(order(1))  # within the window of the second one
    assert handled.ids == ["order-1", "order-1"]
    assert app.stats().deduplicated == 1


async def test_publish_many_drops_duplicates_and_queues_the_rest(
    make_queue: Callable[[], EventQueue],
) -> None:
    app = Reactor(queue=make_queue(), clock=VirtualClock(start=START), dedupe=60)
    handled = Handled()
    app.subscribe("order.*", handled)
    async with app:
        await app.publish(order(1))
        # order-1 was accepted before; the second order-2 repeats one of this batch.
        await app.publish_many([order(1), order(2), order(3), order(2)])
        await app.publish_many([order(1), order(3)])  # nothing new
    assert handled.ids == ["order-1", "order-2", "order-3"]
    assert app.stats().deduplicated == 4
    assert app.stats().published == 3


async def test_a_refused_publish_leaves_no_key_behind() -> None:
    """A publish that failed stored nothing: its retry is published, not dropped."""
    app = Reactor(queue=MemoryQueue(capacity=1), clock=VirtualClock(start=START), dedupe=60)
    handled = Handled()
    app.subscribe("order.*", handled)
    async with app:
        # Fill the queue (the dispatcher does not run meanwhile); the last one is refused.
        filled = 100
        with pytest.raises(QueueFull):
            while True:
                app.publish_nowait(order(filled))
                filled += 1
        with pytest.raises(QueueFull):
            await app.publish_many([order(1), order(2)])
        await app.publish(order(filled))  # waits for room
        await app.publish_many([order(1)])
        await app.publish(order(2))
    expected = [f"order-{n}" for n in range(100, filled + 1)] + ["order-1", "order-2"]
    assert handled.ids == expected
    assert app.stats().deduplicated == 0


async def test_duplicates_are_logged_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    app = Reactor(clock=VirtualClock(start=START), dedupe=60)
    async with app:
        with caplog.at_level(logging.DEBUG, logger="reactor"):
            await app.publish(order(1))
            await app.publish(order(1))
    messages = [record.getMessage() for record in caplog.records if record.levelno == logging.DEBUG]
    assert any("'order-1' from '/shop'" in message and "dropped" in message for message in messages)


async def test_without_dedupe_every_copy_is_handled() -> None:
    app = Reactor(clock=VirtualClock(start=START))
    handled = Handled()
    app.subscribe("order.*", handled)
    async with app:
        await app.publish(order(1))
        await app.publish(order(1))
        await app.publish_many([order(1)])
    assert handled.ids == ["order-1"] * 3
    assert app.stats().deduplicated == 0


async def test_the_memory_store_forgets_when_the_app_restarts() -> None:
    """Without a queue that keeps the keys, the window lasts as long as the process."""
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock, dedupe=60)
    handled = Handled()
    app.subscribe("order.*", handled)
    async with app:
        await app.publish(order(1))
    async with app:  # the same app object: it still knows the key
        await app.publish(order(1))
    fresh = Reactor(clock=clock, dedupe=60)
    fresh.subscribe("order.*", handled)
    async with fresh:
        await fresh.publish(order(1))
    assert handled.ids == ["order-1", "order-1"]


async def test_the_sqlite_window_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    clock = VirtualClock(start=START)
    first = Reactor(queue=SQLiteQueue(path), clock=clock, dedupe=timedelta(minutes=5))
    handled = Handled()
    first.subscribe("order.*", handled)
    async with first:
        await first.publish(order(1))
        await first.publish_many([order(2), order(3)])
    # A new process: a new app on the same file, its clock a minute later.
    clock = VirtualClock(start=START + timedelta(minutes=1))
    second = Reactor(queue=SQLiteQueue(path), clock=clock, dedupe=timedelta(minutes=5))
    second.subscribe("order.*", handled)
    async with second:
        await second.publish(order(1))  # the producer's retry
        second.publish_nowait(order(2))
        receipt = await second.publish_and_wait(order(3))
        await clock.advance(4 * 60)  # the first events' window ends
        await second.publish(order(1))
    assert handled.ids == ["order-1", "order-2", "order-3", "order-1"]
    assert receipt.duplicate
    assert second.stats().deduplicated == 3


async def test_the_sqlite_queue_prunes_old_keys_from_its_file(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    clock = VirtualClock(start=START)
    app = Reactor(queue=SQLiteQueue(path), clock=clock, dedupe=60)
    async with app:
        await app.publish_many([order(n) for n in range(100)])
        await clock.advance(61)
        await app.publish(order(100))  # its commit deletes the keys that left the window
    with closing(sqlite3.connect(path)) as conn:
        keys = conn.execute("SELECT event_id FROM reactor_dedupe").fetchall()
    assert keys == [("order-100",)]


async def test_the_sqlite_queue_refuses_a_duplicate_itself(tmp_path: Path) -> None:
    """The queue's side of the contract (EventQueue.deduplicate), without an app."""
    clock = VirtualClock(start=START)
    queue = SQLiteQueue(tmp_path / "events.db")
    queue.use_clock(clock)
    assert queue.deduplicate(60)
    async with queue:
        await queue.put(order(1))
        with pytest.raises(DuplicateEvent) as caught:
            await queue.put(order(1))
        assert (caught.value.source, caught.value.id) == ("/shop", "order-1")
        with pytest.raises(DuplicateEvent):
            queue.put_nowait(order(1))
        dropped = await queue.put_many([order(1), order(2), order(2)])
        assert dropped == [order(1), order(2)]
        await queue.put(order(1), only=["audit"])  # a redelivery: never a duplicate
        assert queue.statistics().put_count == 3


async def test_the_memory_queue_leaves_dedupe_to_the_app() -> None:
    assert not MemoryQueue().deduplicate(60)


async def test_the_http_ingress_answers_a_retry_as_accepted() -> None:
    app = Reactor(clock=VirtualClock(start=START), dedupe=60)
    handled = Handled()
    app.subscribe("order.*", handled)
    async with app:
        first = await post_event(app.asgi, order(1))
        retry = await post_event(app.asgi, order(1))
        batch = await call(
            app.asgi,
            json.dumps([json.loads(order(n).to_json()) for n in (1, 2)]).encode(),
            {"content-type": "application/cloudevents-batch+json"},
        )
    assert (first.status, retry.status, batch.status) == (202, 202, 202)
    assert handled.ids == ["order-1", "order-2"]
    assert app.stats().deduplicated == 2


async def test_a_file_of_an_earlier_schema_gets_the_keys_table(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    write_v1_file(path)
    handled = Handled()
    for _ in range(2):  # migrated at the first start; checked as version 3 at the second
        app = Reactor(queue=SQLiteQueue(path), clock=VirtualClock(start=START), dedupe=60)
        app.subscribe("order.*", handled)
        async with app:
            await app.publish(order(1))
    assert handled.ids == ["order-1"]
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
