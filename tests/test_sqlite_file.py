"""SQLiteQueue's file and threads: the worker thread's life."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from reactor import Event, QueueFileError
from reactor.queues.sqlite import SQLiteQueue

pytestmark = pytest.mark.anyio


def worker_threads(path: Path) -> list[threading.Thread]:
    return [
        thread
        for thread in threading.enumerate()
        if thread.name == f"reactor journal of {path.name}" and thread.is_alive()
    ]


def job(n: int) -> Event:
    return Event(type="job.run", source="/test", data={"n": n, "text": "x" * 1000})


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
