"""The EventQueue contract, run against every implementation, and backpressure through the app."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import pytest

from reactor import Event, QueueFull, Reactor
from reactor.abc import EventQueue, Received
from reactor.queues.memory import DEFAULT_CAPACITY, MemoryQueue
from reactor.queues.sqlite import SQLiteQueue

pytestmark = pytest.mark.anyio

QueueFactory = Callable[[int], EventQueue]

#: Every queue implementation, built from a capacity and a directory for its files.
FACTORIES: dict[str, Callable[[int, Path], EventQueue]] = {
    "memory": lambda capacity, _: MemoryQueue(capacity),
    "sqlite": lambda capacity, directory: SQLiteQueue(directory / "queue.db", capacity=capacity),
}


@pytest.fixture(params=sorted(FACTORIES))
async def make_queue(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[QueueFactory]:
    opened: list[EventQueue] = []

    def make(capacity: int) -> EventQueue:
        directory = tmp_path / str(len(opened))
        directory.mkdir()
        queue = FACTORIES[request.param](capacity, directory)
        opened.append(queue)
        return queue

    yield make
    for queue in opened:
        await queue.close()


def event(n: int) -> Event:
    return Event(type="test.item", source="/contract", data=n)


async def test_fifo_batches(make_queue: QueueFactory) -> None:
    queue = make_queue(10)
    await queue.open()
    for n in range(5):
        await queue.put(event(n))
    first = await queue.get_batch(3)
    rest = await queue.get_batch(10)
    assert [r.event.data for r in first] == [0, 1, 2]
    assert [r.event.data for r in rest] == [3, 4]
    assert all(r.attempt == 1 and r.completed == frozenset() and r.only is None for r in first)
    stats = queue.statistics()
    assert (stats.depth, stats.capacity, stats.put_count, stats.get_count) == (0, 10, 5, 5)


async def test_get_batch_waits_for_an_event(make_queue: QueueFactory) -> None:
    queue = make_queue(10)
    await queue.open()
    got: list[Received] = []
    async with anyio.create_task_group() as tg:

        async def get() -> None:
            got.extend(await queue.get_batch(10))

        tg.start_soon(get)
        await anyio.wait_all_tasks_blocked()
        assert got == []
        queue.put_nowait(event(1))
    assert [r.event.data for r in got] == [1]


async def test_full_queue_blocks_put_and_put_nowait_raises(make_queue: QueueFactory) -> None:
    queue = make_queue(2)
    await queue.open()
    await queue.put(event(0))
    queue.put_nowait(event(1))
    with pytest.raises(QueueFull, match="full"):
        queue.put_nowait(event(2))
    done: list[int] = []
    stored = {2: anyio.Event(), 3: anyio.Event()}
    async with anyio.create_task_group() as tg:
        for n in (2, 3):

            async def put(n: int = n) -> None:
                await queue.put(event(n))
                done.append(n)
                stored[n].set()

            tg.start_soon(put)
            await anyio.wait_all_tasks_blocked()
        assert done == []
        assert queue.statistics().waiting_publishers == 2
        with pytest.raises(QueueFull):
            queue.put_nowait(event(9))  # waiting publishers go first
        assert [r.event.data for r in await queue.get_batch(1)] == [0]
        with anyio.fail_after(5):  # a durable queue returns once the event is written
            await stored[2].wait()
        await anyio.wait_all_tasks_blocked()
        assert done == [2]
        assert [r.event.data for r in await queue.get_batch(5)] == [1, 2]
    assert done == [2, 3]
    assert [r.event.data for r in await queue.get_batch(5)] == [3]


async def test_a_cancelled_waiting_put_stores_nothing(make_queue: QueueFactory) -> None:
    queue = make_queue(1)
    await queue.open()
    await queue.put(event(0))
    async with anyio.create_task_group() as tg:
        tg.start_soon(queue.put, event(1))
        await anyio.wait_all_tasks_blocked()
        assert queue.statistics().waiting_publishers == 1
        tg.cancel_scope.cancel()
    assert queue.statistics().waiting_publishers == 0
    await queue.get_batch(5)
    queue.put_nowait(event(2))
    assert [r.event.data for r in await queue.get_batch(5)] == [2]


async def test_only_is_carried_to_the_dispatcher(make_queue: QueueFactory) -> None:
    queue = make_queue(5)
    await queue.open()
    await queue.put(event(1), only=["a", "b"])
    [received] = await queue.get_batch(5)
    assert received.only == frozenset({"a", "b"})


def test_memory_queue_capacity_is_validated() -> None:
    assert MemoryQueue().capacity == DEFAULT_CAPACITY == 10_000
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="capacity"):
            MemoryQueue(bad)  # type: ignore[arg-type]


async def test_app_backpressure_publish_waits_and_publish_nowait_raises() -> None:
    app = Reactor(queue=MemoryQueue(capacity=3), max_in_flight=1)
    release = anyio.Event()

    @app.subscribe("job", concurrency=1)
    async def slow(event: Event) -> None:
        await release.wait()

    published: list[int] = []
    async with app:
        await app.publish("job", 0)
        await anyio.wait_all_tasks_blocked()  # job 0 is in flight
        for n in (1, 2, 3):
            app.publish_nowait("job", n)
        with pytest.raises(QueueFull):
            app.publish_nowait("job", 4)
        async with anyio.create_task_group() as tg:

            async def publish() -> None:
                await app.publish("job", 4)
                published.append(4)

            tg.start_soon(publish)
            await anyio.wait_all_tasks_blocked()
            assert published == []
            stats = app.stats()
            assert stats.queue.depth == 3 and stats.queue.waiting_publishers == 1
            assert stats.in_flight == 1
            release.set()
        assert published == [4]
    assert app.stats().delivered == 5
