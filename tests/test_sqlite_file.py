"""SQLiteQueue's file and threads: the page size of new files, the write-ahead log kept
bounded under a steady load, and the worker thread's life."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import anyio
import pytest

from reactor import Event, QueueFileError, Reactor
from reactor.queues.sqlite import SQLiteQueue
from reactor.queues.sqlite import _journal as sqlite_journal
from reactor.queues.sqlite import _schema as sqlite_schema

pytestmark = pytest.mark.anyio


def page_size(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        size: int = conn.execute("PRAGMA page_size").fetchone()[0]
    finally:
        conn.close()
    return size


def worker_threads(path: Path) -> list[threading.Thread]:
    return [
        thread
        for thread in threading.enumerate()
        if thread.name == f"reactor journal of {path.name}" and thread.is_alive()
    ]


def job(n: int) -> Event:
    return Event(type="job.run", source="/test", data={"n": n, "text": "x" * 1000})


async def test_a_new_file_has_large_pages_and_an_older_file_keeps_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    new = tmp_path / "new.db"
    async with SQLiteQueue(new) as queue:
        await queue.put(job(1))
    assert page_size(new) == sqlite_schema.PAGE_SIZE == 8192

    # A file created with SQLite's default pages, as earlier releases created them.
    old = tmp_path / "old.db"
    with monkeypatch.context() as patch:
        patch.setattr(sqlite_schema, "PAGE_SIZE", 4096)
        async with SQLiteQueue(old) as queue:
            await queue.put(job(1))
    seen: list[int] = []
    app = Reactor(queue=SQLiteQueue(old))

    @app.subscribe("job.run")
    async def record(event: Event) -> None:
        seen.append(event.data["n"])

    async with app:  # leaving it drains the queue
        await app.publish(job(2))
    assert seen == [1, 2]
    assert page_size(old) == 4096


async def test_the_log_is_written_again_from_its_beginning_under_a_steady_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checkpointer copies the log into the file while commits go on; a log that is
    never copied to its very end is never begun again, and grows for as long as the load
    lasts. Each time SQLite begins it again, it numbers it anew in its header (the
    checkpoint sequence number, bytes 12 to 15)."""
    # Small thresholds, so that a short run goes through many checkpoints.
    monkeypatch.setattr(sqlite_journal, "CHECKPOINT_BYTES", 1 << 20)
    monkeypatch.setattr(sqlite_journal, "RESTART_BYTES", 2 << 20)
    path = tmp_path / "events.db"
    log = tmp_path / "events.db-wal"
    app = Reactor(queue=SQLiteQueue(path, synchronous="normal"))
    handled = 0

    @app.subscribe("job.run")
    async def count(event: Event) -> None:
        nonlocal handled
        handled += 1

    numbers: set[int] = set()
    published = 0
    with anyio.fail_after(60):
        async with app:

            async def publish() -> None:
                nonlocal published
                # Back to back, so that commits follow one another without a pause,
                # until the log has been begun again three times.
                while len(numbers) < 4:
                    await app.publish(job(published))
                    published += 1
                    with log.open("rb") as file:
                        numbers.add(int.from_bytes(file.read(16)[12:16], "big"))

            async with anyio.create_task_group() as tg:
                for _ in range(32):
                    tg.start_soon(publish)
    assert handled == published


async def test_statements_run_in_a_thread_of_the_queue_that_close_stops(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    queue = SQLiteQueue(path)
    assert worker_threads(path) == []
    async with queue:
        assert len(worker_threads(path)) == 1
        await queue.put(job(1))
        assert queue.statistics().depth == 1
    assert worker_threads(path) == []
    async with queue:  # opened again: a new thread
        assert len(worker_threads(path)) == 1
        assert queue.statistics().depth == 1
    assert worker_threads(path) == []

    text = tmp_path / "text.db"
    text.write_bytes(b"user,amount\nada,12\n" * 50)
    with pytest.raises(QueueFileError, match="not an SQLite database"):
        await SQLiteQueue(text).open()
    assert worker_threads(text) == []  # a file that cannot be opened leaves none behind
