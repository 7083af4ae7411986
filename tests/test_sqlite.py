"""SQLiteQueue through the app: durability across restarts, progress, dead letters, replay."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import reactor
from reactor import (
    ConsumerNotFound,
    Event,
    EventFormatError,
    PayloadTooLargeError,
    QueueFileError,
    QueueFull,
    QueueInUseError,
    Reactor,
    ReactorNotRunning,
    Retry,
)
from reactor.queues.sqlite import (
    DEFAULT_CAPACITY,
    DEFAULT_MAX_EVENT_SIZE,
    SCHEMA_VERSION,
    SQLiteQueue,
)

pytestmark = pytest.mark.anyio

Seen = list[tuple[str, Any, int]]


def recorder(app: Reactor, seen: Seen, name: str, pattern: str = "job.*") -> None:
    """Subscribe a consumer *name* that records (name, data, attempt) of each delivery."""

    async def handler(event: Event) -> None:
        seen.append((name, event.data, reactor.current_delivery().attempt))

    app.subscribe(pattern, handler, name=name)


def rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchall()


async def test_events_are_delivered_to_every_consumer_and_removed_once_settled(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.db"
    app = Reactor(queue=SQLiteQueue(path))
    seen: Seen = []
    recorder(app, seen, "a")
    recorder(app, seen, "b")
    async with app:
        for n in range(5):
            await app.publish("job.run", n)
        async with anyio.create_task_group() as tg:
            for n in range(5, 50):
                tg.start_soon(app.publish, "job.run", n)
    assert sorted(data for name, data, _ in seen if name == "a") == list(range(50))
    assert sorted(data for name, data, _ in seen if name == "b") == list(range(50))
    assert {attempt for *_, attempt in seen} == {1}
    assert rows(path, "SELECT count(*) FROM reactor_events") == [(0,)]
    stats = app.stats()
    assert (stats.queue.put_count, stats.queue.get_count, stats.queue.depth) == (50, 50, 0)


async def test_an_unfinished_event_is_redelivered_after_a_restart_to_unfinished_consumers_only(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.db"
    app = Reactor(queue=SQLiteQueue(path), graceful_timeout=0)
    seen: Seen = []
    recorder(app, seen, "quick")
    started = anyio.Event()

    @app.subscribe("job.*", name="stuck")
    async def stuck(event: Event) -> None:
        started.set()
        await anyio.sleep_forever()

    async with app:
        await app.publish("job.run", "payload")
        with anyio.fail_after(5):
            await started.wait()
        await anyio.wait_all_tasks_blocked()
    # The graceful timeout cut "stuck" short: the event stays, "quick" is recorded done.
    assert seen == [("quick", "payload", 1)]
    assert rows(path, "SELECT count(*) FROM reactor_events") == [(1,)]
    assert rows(path, "SELECT consumer FROM reactor_progress") == [("quick",)]

    again = Reactor(queue=SQLiteQueue(path))
    seen_again: Seen = []
    recorder(again, seen_again, "quick")
    recorder(again, seen_again, "stuck")
    async with again:
        pass  # leaving drains the redelivery
    assert seen_again == [("stuck", "payload", 2)]
    assert rows(path, "SELECT count(*) FROM reactor_events") == [(0,)]
    assert rows(path, "SELECT count(*) FROM reactor_progress") == [(0,)]


async def test_a_queue_reopened_by_the_same_app_redelivers_with_the_attempt_raised(
    tmp_path: Path,
) -> None:
    queue = SQLiteQueue(tmp_path / "events.db")
    app = Reactor(queue=queue, graceful_timeout=0)
    attempts: list[int] = []
    release = anyio.Event()

    @app.subscribe("job.*")
    async def handler(event: Event) -> None:
        attempts.append(reactor.current_delivery().attempt)
        await release.wait()

    async with app:
        await app.publish("job.run")
        await anyio.wait_all_tasks_blocked()
    release.set()
    app.graceful_timeout = 30
    async with app:
        pass
    async with app:
        pass  # nothing left: the second run acked it
    assert attempts == [1, 2]


async def test_publish_nowait_and_notify_are_written_by_the_next_commit(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    app = Reactor(queue=SQLiteQueue(path))
    seen: list[Any] = []

    @app.on_notification("orders")
    async def on_order(event: Event) -> None:
        seen.append(event.data)

    @app.subscribe("job.*")
    async def job(event: Event) -> None:
        seen.append(event.data)

    async with app:
        app.publish_nowait("job.run", 1)
        app.notify("orders", 2)
    assert sorted(seen) == [1, 2]


async def test_publish_refuses_unserializable_data_naming_the_field(tmp_path: Path) -> None:
    app = Reactor(queue=SQLiteQueue(tmp_path / "events.db"))
    seen: list[Any] = []

    @app.subscribe("job.*")
    async def job(event: Event) -> None:
        seen.append(event.data)

    async with app:
        await app.publish("job.run", {"ok": 1})
        with pytest.raises(EventFormatError, match=r"data\['items'\]\[1\]: a set"):
            await app.publish("job.run", {"items": [1, {2}]})
        with pytest.raises(EventFormatError, match=r"data\['x'\]: nan"):
            app.publish_nowait("job.run", {"x": float("nan")})
        assert app.stats().queue.put_count == 1
        await app.publish("job.run", {"ok": 2})
    assert seen == [{"ok": 1}, {"ok": 2}]


async def test_the_payload_limit_is_enforced_at_publish(tmp_path: Path) -> None:
    limit = 2000
    app = Reactor(queue=SQLiteQueue(tmp_path / "events.db", max_event_size=limit))
    template = Event(type="job.run", source="/t", id="x", data="")
    overhead = len(template.to_json())
    async with app:
        for size in (limit - 1, limit):
            await app.publish(
                Event(type="job.run", source="/t", id="x", data="a" * (size - overhead))
            )
        with pytest.raises(PayloadTooLargeError, match=f"{limit + 1} bytes") as caught:
            await app.publish(
                Event(type="job.run", source="/t", id="x", data="a" * (limit + 1 - overhead))
            )
        assert (caught.value.size, caught.value.limit) == (limit + 1, limit)
        assert app.stats().queue.put_count == 2
    assert SQLiteQueue(tmp_path / "other.db").max_event_size == DEFAULT_MAX_EVENT_SIZE == 1 << 20


async def test_dead_letters_are_stored_listed_replayed_and_purged(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    queue = SQLiteQueue(path)
    app = Reactor(queue=queue)
    healed = False
    handled: list[Any] = []

    @app.subscribe("job.*", retry=Retry(attempts=2, backoff=reactor.Backoff(initial=0.0)))
    async def fragile(event: Event) -> None:
        if not healed and event.data % 2:
            raise ValueError(f"odd {event.data}")
        handled.append(event.data)

    @app.subscribe("job.*")
    async def steady(event: Event) -> None:
        pass

    before = datetime.now(UTC)
    async with app:
        for n in range(4):
            await app.publish("job.run", n)
    letters = [letter async for letter in _letters(queue, path)]
    assert [(letter.consumer, letter.event and letter.event.data) for letter in letters] == [
        ("fragile", 1),
        ("fragile", 3),
    ]
    first = letters[0]
    assert (first.error_type, first.error, first.attempts) == ("ValueError", "odd 1", 2)
    assert before <= first.first_failed_at <= first.last_failed_at <= first.dead_at
    assert rows(path, "SELECT count(*) FROM reactor_events") == [(0,)]

    healed = True
    async with app:
        assert await queue.replay_dead_letters([first.id]) == 1
        assert [letter.id for letter in await queue.dead_letters()] == [letters[1].id]
    assert handled == [0, 2, 1]  # only the replayed one, and only to its consumer
    async with app:
        assert await queue.dead_letters(consumer="steady") == []
        assert await queue.purge_dead_letters(consumer="fragile") == 1
        assert await queue.dead_letters() == []


async def _letters(queue: SQLiteQueue, path: Path) -> Any:
    async with SQLiteQueue(path) as reader:
        for letter in await reader.dead_letters():
            yield letter


async def test_redeliver_removes_the_stored_letter(tmp_path: Path) -> None:
    queue = SQLiteQueue(tmp_path / "events.db")
    app = Reactor(queue=queue)
    fail = True

    @app.subscribe("job.*")
    async def fragile(event: Event) -> None:
        if fail:
            raise RuntimeError("no")

    async with app:
        await app.publish_and_wait("job.run", 1)
        [letter] = app.dead_letters
        assert len(await queue.dead_letters()) == 1
        fail = False
        await app.redeliver(letter)
        receipt = await app.publish_and_wait("job.run", 2)
        assert receipt.ok
        assert await queue.dead_letters() == []


async def test_replay_republishes_retained_events_to_chosen_consumers(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    queue = SQLiteQueue(path, retention=timedelta(days=1))
    app = Reactor(queue=queue)
    seen: Seen = []
    recorder(app, seen, "a")
    recorder(app, seen, "b")
    start = datetime.now(UTC)
    async with app:
        for n in range(3):
            await app.publish("job.run", n)
    assert rows(path, "SELECT count(*) FROM reactor_events WHERE done_at IS NOT NULL") == [(3,)]
    seen.clear()
    async with app:
        assert await queue.replay(start - timedelta(seconds=1), consumers=["b"]) == 3
    assert seen == [("b", 0, 1), ("b", 1, 1), ("b", 2, 1)]
    seen.clear()
    async with app:
        assert await queue.replay(datetime.now(UTC) + timedelta(hours=1)) == 0
        assert await queue.replay(start - timedelta(seconds=1), until=start) == 0
        # The copies sent to "b" were not kept: each event is replayed once.
        assert await queue.replay(start - timedelta(seconds=1)) == 3
    assert sorted(seen) == sorted([(c, n, 1) for c in "ab" for n in range(3)])
    async with app:
        with pytest.raises(ValueError, match="aware"):
            await queue.replay(datetime(2026, 1, 1))
        with pytest.raises(ValueError, match="consumers"):
            await queue.replay(start, consumers=[])


async def test_without_retention_acked_events_are_gone_and_an_expired_retention_purges(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.db"
    app = Reactor(queue=SQLiteQueue(path))
    async with app:
        await app.publish("job.run")
        assert await app.queue.replay(datetime(2000, 1, 1, tzinfo=UTC)) == 0  # type: ignore[attr-defined]

    expiring = Reactor(queue=SQLiteQueue(path, retention=0))
    async with expiring:
        await expiring.publish("job.run")
    assert rows(path, "SELECT count(*) FROM reactor_events") == [(1,)]
    async with expiring:  # the start purges what the retention no longer keeps
        pass
    assert rows(path, "SELECT count(*) FROM reactor_events") == [(0,)]


async def test_backpressure_publish_waits_for_room_on_disk(tmp_path: Path) -> None:
    app = Reactor(queue=SQLiteQueue(tmp_path / "events.db", capacity=2), max_in_flight=1)
    release = anyio.Event()
    published: list[int] = []

    @app.subscribe("job.*", concurrency=1)
    async def slow(event: Event) -> None:
        await release.wait()

    async with app:
        await app.publish("job.run", 0)
        with anyio.fail_after(5):
            while app.stats().in_flight != 1:
                await anyio.wait_all_tasks_blocked()
        for n in (1, 2):
            await app.publish("job.run", n)
        with pytest.raises(QueueFull):
            app.publish_nowait("job.run", 3)
        async with anyio.create_task_group() as tg:

            async def publish() -> None:
                await app.publish("job.run", 3)
                published.append(3)

            tg.start_soon(publish)
            await anyio.wait_all_tasks_blocked()
            assert published == [] and app.stats().queue.waiting_publishers == 1
            release.set()
    assert published == [3] and app.stats().delivered == 4


async def test_a_file_has_one_owner(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    async with SQLiteQueue(path):
        with pytest.raises(QueueInUseError, match="already open"):
            await SQLiteQueue(path).open()
    async with SQLiteQueue(path):
        pass  # released at close


async def test_foreign_newer_and_damaged_files_fail_at_start_and_are_left_alone(
    tmp_path: Path,
) -> None:
    text = tmp_path / "notes.db"
    text.write_text("not a database at all, just some text that is long enough")
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY)")
    newer = tmp_path / "newer.db"
    async with SQLiteQueue(newer):
        pass
    with sqlite3.connect(newer) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    cases: list[tuple[Path, str]] = [
        (text, "not an SQLite database"),
        (other, "not a reactor queue"),
        (newer, "newer than"),
    ]
    for path, message in cases:
        content = path.read_bytes()
        app = Reactor(queue=SQLiteQueue(path))
        with pytest.raises(QueueFileError, match=message) as caught:
            async with app:
                pass
        assert str(path) in str(caught.value)
        assert path.read_bytes() == content
        assert not app.running
    with pytest.raises(QueueFileError, match="directory"):
        await SQLiteQueue(tmp_path).open()
    with pytest.raises(QueueFileError, match="does not exist"):
        await SQLiteQueue(tmp_path / "missing" / "events.db").open()


async def test_the_queue_is_not_usable_closed(tmp_path: Path) -> None:
    queue = SQLiteQueue(tmp_path / "events.db")
    with pytest.raises(ReactorNotRunning):
        await queue.put(Event(type="t", source="/s"))
    with pytest.raises(ReactorNotRunning):
        await queue.dead_letters()


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"synchronous": "off"}, ValueError, "synchronous"),
        ({"capacity": 0}, ValueError, "capacity"),
        ({"max_event_size": 1.5}, TypeError, "max_event_size"),  # the wrong type
        ({"retention": -1}, ValueError, "retention"),
        ({"retention": float("inf")}, ValueError, "retention"),
        ({"check": "thorough"}, ValueError, "check"),
        ({"busy_timeout": -1}, ValueError, "busy_timeout"),
        ({"busy_timeout": "5"}, TypeError, "busy_timeout"),
    ],
)
def test_options_are_validated(
    tmp_path: Path, options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        SQLiteQueue(tmp_path / "events.db", **options)


def test_defaults_and_urls(tmp_path: Path) -> None:
    queue = SQLiteQueue(tmp_path / "events.db")
    assert queue.capacity == DEFAULT_CAPACITY and queue.retention is None
    assert SQLiteQueue.from_url("sqlite:///events.db").path == Path("events.db")
    assert SQLiteQueue.from_url("sqlite:////var/lib/x.db").path == Path("/var/lib/x.db")
    assert SQLiteQueue.from_url("sqlite:///a%20b.db", retention=5).retention == 5.0
    bad: list[Callable[[], object]] = [
        lambda: SQLiteQueue.from_url("redis://localhost/0"),
        lambda: SQLiteQueue.from_url("sqlite://host/x.db"),
        lambda: SQLiteQueue.from_url("sqlite:///"),
    ]
    for build in bad:
        with pytest.raises(ValueError, match="sqlite"):
            build()


@pytest.mark.parametrize("total", [10, 3000, 7000])
async def test_a_backlog_beyond_the_read_ahead_is_delivered_once_each(
    tmp_path: Path, total: int
) -> None:
    # More events than the queue keeps decoded in memory: the rest wait on disk and are
    # read back behind the ones in memory while the first one is still in flight.
    path = tmp_path / "events.db"
    app = Reactor(queue=SQLiteQueue(path, retention=3600))
    seen: list[int] = []
    gate = anyio.Event()
    rest_done = anyio.Event()

    @app.subscribe("job.*")
    async def consume(event: Event) -> None:
        seen.append(event.data)
        if event.data == 0:
            await gate.wait()
        elif len(seen) == total:  # every event but the first one has been handled
            rest_done.set()

    async with app:
        for n in range(min(total, 5000)):
            app.publish_nowait("job.run", n)
        async with anyio.create_task_group() as tg:
            for n in range(5000, total):
                tg.start_soon(app.publish, "job.run", n)
        with anyio.fail_after(30):
            await rest_done.wait()
        gate.set()
    assert sorted(seen) == list(range(total))
    assert rows(path, "SELECT count(*) FROM reactor_events WHERE done_at IS NULL") == [(0,)]


class _Gadget:
    """Pickling this would create a marker file when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


async def test_a_foreign_payload_in_the_file_is_dead_lettered_never_loaded(
    tmp_path: Path,
) -> None:
    import pickle
    import zlib

    path = tmp_path / "events.db"
    marker = tmp_path / "pwned"
    async with SQLiteQueue(path):
        pass
    gadget = pickle.dumps(_Gadget(marker))
    with sqlite3.connect(path) as conn:
        # A row written by someone else, with a checksum that matches its bytes.
        conn.execute(
            "INSERT INTO reactor_events (seq, body, only, published_at, crc) VALUES (1, ?, NULL, 0, ?)",
            (gadget, zlib.crc32(gadget)),
        )
    queue = SQLiteQueue(path, check="full")
    app = Reactor(queue=queue)
    seen: list[Event] = []

    @app.subscribe("*")
    async def everything(event: Event) -> None:
        seen.append(event)

    async with app:
        await app.publish("job.run", 1)
    assert [event.data for event in seen] == [1]
    assert not marker.exists()
    async with app:
        [letter] = await queue.dead_letters()
    assert letter.consumer is None and letter.event is None and letter.body == gadget
    assert letter.error_type == "reactor.EventFormatError"
    assert "journaled event #1 is damaged" in letter.error
    assert rows(path, "SELECT count(*) FROM reactor_events") == [(0,)]


async def test_a_replay_to_a_consumer_that_is_not_subscribed_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    queue = SQLiteQueue(tmp_path / "events.db", retention=3600)
    app = Reactor(queue=queue)
    seen: Seen = []
    recorder(app, seen, "audit")

    async def ignore(event: Event) -> None:
        pass

    old = app.subscribe("job.*", ignore, name="old")
    start = datetime.now(UTC) - timedelta(seconds=1)
    async with app:
        event = await app.publish("job.run", 1)
    old.cancel()
    seen.clear()
    async with app:
        # A name the file never saw is refused (a typo) ...
        with pytest.raises(ConsumerNotFound, match=r"'adit'; the consumers it knows: audit, old"):
            await queue.replay(start, consumers=["adit"])
        # ... one that it saw, and that is no longer subscribed, reaches nobody, and says so.
        assert await queue.replay(start, consumers=["old"]) == 1
    assert seen == []
    [record] = [r for r in caplog.records if "no such consumer" in r.getMessage()]
    assert record.levelname == "WARNING" and event.id in record.getMessage()
    assert "old" in record.getMessage()


async def test_publish_is_a_cancellation_point(tmp_path: Path) -> None:
    # The commit itself runs shielded; a publishing loop must still see its cancellation.
    app = Reactor(queue=SQLiteQueue(tmp_path / "events.db"))
    published = 0
    async with app:
        with anyio.CancelScope() as scope:
            scope.cancel()
            for _ in range(100):
                await app.publish("job.run")
                published += 1
        assert scope.cancelled_caught
    assert published == 0
