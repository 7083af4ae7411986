"""SQLiteQueue's group commit under cancellation and failure, close() with settlements
pending, and acknowledgements of non-consecutive events.

The writer is held up for real: a second connection takes the file's write lock (as
the ``reactor`` CLI would), so the queue's commit waits in its thread until the test
lets it go.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import anyio
import pytest

from reactor import Event, QueueFileError, QueueUnavailableError
from reactor.abc import Received
from reactor.queues.sqlite import SQLiteQueue

pytestmark = pytest.mark.anyio


def event(n: int) -> Event:
    return Event(type="job.run", source="/test", data=n)


@contextmanager
def write_lock(path: Path) -> Iterator[None]:
    """Hold the file's write lock from another connection for the block."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield
        conn.execute("ROLLBACK")
    finally:
        conn.close()


async def stored(path: Path) -> list[tuple[object, int]]:
    """Reopen the file: the events it hands out (data, attempt), oldest first."""
    batch: list[Received] = []
    async with SQLiteQueue(path) as queue:
        # Events handed out before go out one at a time: take everything.
        while queue.statistics().depth:
            batch += await queue.get_batch(100)
    return [(item.event.data, item.attempt) for item in batch]


async def test_a_publisher_cancelled_while_its_commit_waits_stores_nothing(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    async with SQLiteQueue(path) as queue:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                with write_lock(path):
                    tg.start_soon(queue.put, event(1))  # its commit waits for the lock
                    await anyio.wait_all_tasks_blocked()
                    tg.start_soon(queue.put, event(2))  # leads the next commit
                    await anyio.wait_all_tasks_blocked()
                    async with anyio.create_task_group() as inner:
                        cancel = anyio.CancelScope()

                        async def cancelled_put() -> None:  # waits with event 2
                            with cancel:
                                await queue.put(event(3))

                        inner.start_soon(cancelled_put)
                        await anyio.wait_all_tasks_blocked()
                        assert queue.statistics().put_count == 3
                        cancel.cancel()
                    assert cancel.cancelled_caught
                    stats = queue.statistics()
                    assert (stats.put_count, stats.depth) == (2, 2)
        assert [item.event.data for item in await queue.get_batch(10)] == [1, 2]
    assert await stored(path) == [(1, 2), (2, 2)]  # handed out once: attempt raised


async def test_a_commit_leader_cancelled_while_others_wait_hands_over(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    done: list[int] = []
    async with SQLiteQueue(path) as queue:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:

                async def put(n: int) -> None:
                    await queue.put(event(n))
                    done.append(n)

                leader = anyio.CancelScope()

                async def leading_put() -> None:
                    with leader:
                        await put(2)

                with write_lock(path):
                    tg.start_soon(put, 1)  # writing, held by the lock
                    await anyio.wait_all_tasks_blocked()
                    tg.start_soon(leading_put)  # the first to wait: leads the next commit
                    await anyio.wait_all_tasks_blocked()
                    tg.start_soon(put, 3)  # waits for the leader's commit
                    await anyio.wait_all_tasks_blocked()
                    leader.cancel()
                    await anyio.wait_all_tasks_blocked()
        assert sorted(done) == [1, 3]
        assert queue.statistics().put_count == 2
    # Read ahead, never handed out: a clean close does not count them as handed out.
    assert await stored(path) == [(1, 1), (3, 1)]


async def test_a_failing_commit_raises_the_cause_and_restores_the_counters(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    async with SQLiteQueue(path, busy_timeout=0) as queue:
        await queue.put(event(1))
        with write_lock(path):
            queue.put_nowait(event(2))  # accepted: kept for the next commit
            with pytest.raises(QueueUnavailableError, match="write lock") as caught:
                await queue.put(event(3))
            assert str(path) in str(caught.value)
            stats = queue.statistics()
            assert (stats.put_count, stats.depth, stats.errors) == (2, 2, 1)
            assert stats.last_error == str(caught.value)
        await queue.put(event(4))
        stats = queue.statistics()
        assert (stats.put_count, stats.depth, stats.errors, stats.last_error) == (3, 3, 1, None)
        assert [item.event.data for item in await queue.get_batch(10)] == [1, 2, 4]
    assert await stored(path) == [(1, 2), (2, 2), (4, 2)]


async def test_close_writes_settlements_still_pending(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    queue = SQLiteQueue(path)
    await queue.open()
    for n in range(3):
        await queue.put(event(n))
    batch = await queue.get_batch(10)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            with write_lock(path):
                tg.start_soon(queue.put, event(3))  # writing, held by the lock
                await anyio.wait_all_tasks_blocked()
                with anyio.CancelScope() as scope:
                    scope.cancel()  # settle() gave up waiting: its acks stay pending
                    await queue.settle(batch[:2], [(batch[2], "audit")])
    await queue.close()
    # 0 and 1 acknowledged, 2 settled by "audit" only, 3 never handed out.
    items: list[Received] = []
    async with SQLiteQueue(path) as reopened:
        while reopened.statistics().depth:  # an event handed out before goes out alone
            items += await reopened.get_batch(10)
    assert [(i.event.data, i.attempt, i.completed) for i in items] == [
        (2, 2, frozenset({"audit"})),
        (3, 1, frozenset()),  # read ahead, never handed out: not counted
    ]


async def test_acks_of_non_consecutive_events_leave_only_the_held_one(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    async with SQLiteQueue(path) as queue:
        for n in range(8):
            await queue.put(event(n))
        batch: list[Received] = list(await queue.get_batch(10))
        held = {2, 5}
        await queue.settle([item for item in batch if item.event.data not in held], [])
    assert await stored(path) == [(2, 2), (5, 2)]


async def test_a_commit_failing_for_another_reason_is_a_queue_file_error(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    async with SQLiteQueue(path) as queue:
        await queue.put(event(1))
        # Another program writes into the journal: the queue's next number is taken.
        with closing(sqlite3.connect(path, isolation_level=None)) as conn:
            conn.execute(
                "INSERT INTO reactor_events (seq, body, published_at, crc) VALUES (2, x'00', 0, 0)"
            )
        with pytest.raises(QueueFileError, match="could not use") as caught:
            await queue.put(event(2))
        assert not isinstance(caught.value, QueueUnavailableError)
        assert isinstance(caught.value.__cause__, sqlite3.IntegrityError)
        stats = queue.statistics()
        assert (stats.put_count, stats.depth, stats.errors) == (1, 1, 1)
        assert stats.last_error == str(caught.value)
