"""``EventQueue.put_many`` and ``Reactor.publish_many``: a batch is stored all or nothing.

Run against every queue implementation, like the contract suite.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection, Sequence
from pathlib import Path

import anyio
import pytest

from reactor import (
    Event,
    PayloadTooLargeError,
    QueueFull,
    QueueStatistics,
    Reactor,
    ReactorNotRunning,
)
from reactor.abc import EventQueue, Received
from reactor.queues.memory import MemoryQueue
from reactor.queues.sqlite import SQLiteQueue
from reactor.testing import Capture

pytestmark = pytest.mark.anyio

QueueFactory = Callable[..., EventQueue]

FACTORIES: dict[str, Callable[[int, Path], EventQueue]] = {
    "memory": lambda capacity, _: MemoryQueue(capacity),
    "sqlite": lambda capacity, directory: SQLiteQueue(
        directory / "queue.db", capacity=capacity, max_event_size=1000
    ),
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


def event(n: int, data: object = None) -> Event:
    return Event(type="test.item", source="/put-many", id=str(n), data=n if data is None else data)


async def test_a_batch_is_stored_in_order(make_queue: QueueFactory) -> None:
    queue = make_queue(5)
    await queue.open()
    await queue.put(event(0))
    await queue.put_many([event(1), event(2)])
    await queue.put_many([])
    batch = await queue.get_batch(10)
    assert [r.event.id for r in batch] == ["0", "1", "2"]
    assert queue.statistics().put_count == 3


async def test_a_batch_that_fills_the_room_exactly_is_taken_one_more_is_not(
    make_queue: QueueFactory,
) -> None:
    queue = make_queue(4)
    await queue.open()
    await queue.put(event(0))
    with pytest.raises(QueueFull):
        await queue.put_many([event(n) for n in range(1, 5)])  # 4 events, room for 3
    assert queue.statistics().depth == 1
    await queue.put_many([event(n) for n in range(1, 4)])  # exactly the room left
    assert queue.statistics().depth == 4
    with pytest.raises(QueueFull):
        await queue.put_many([event(9)])
    batch = await queue.get_batch(10)
    assert [r.event.id for r in batch] == ["0", "1", "2", "3"]


async def test_an_event_the_queue_refuses_refuses_the_whole_batch(tmp_path: Path) -> None:
    # Only SQLiteQueue limits the size of an event.
    queue = SQLiteQueue(tmp_path / "queue.db", max_event_size=1000)
    await queue.open()
    try:
        with pytest.raises(PayloadTooLargeError):
            await queue.put_many([event(1), event(2), event(3, data="x" * 2000)])
        assert queue.statistics().depth == 0
        await queue.put(event(4))
        assert [r.event.id for r in await queue.get_batch(10)] == ["4"]
    finally:
        await queue.close()


async def test_a_publisher_cancelled_before_the_commit_stores_nothing(
    make_queue: QueueFactory,
) -> None:
    queue = make_queue(10)
    await queue.open()
    with anyio.CancelScope() as scope:
        scope.cancel()
        await queue.put_many([event(1), event(2)])
    # A queue that stores without I/O is done before any checkpoint; one with I/O
    # stores nothing when cancelled before its commit began.
    expected = ["1", "2"] if queue.stores_immediately else []
    assert queue.statistics().depth == len(expected)
    await queue.put(event(3))
    assert [r.event.id for r in await queue.get_batch(10)] == [*expected, "3"]


class IOQueue(EventQueue):
    """A third-party queue that stores with I/O and does not implement put_many()."""

    @property
    def capacity(self) -> int:
        return 10

    def __init__(self) -> None:
        self.stored: list[Event] = []

    async def put(self, event: Event, *, only: Collection[str] | None = None) -> None:
        self.stored.append(event)

    def put_nowait(self, event: Event, *, only: Collection[str] | None = None) -> None:
        raise NotImplementedError

    async def get_batch(self, limit: int) -> Sequence[Received]:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    def statistics(self) -> QueueStatistics:
        return QueueStatistics(depth=0, capacity=10, put_count=0, get_count=0, waiting_publishers=0)


async def test_the_default_put_many_refuses_batches_on_queues_that_store_with_io() -> None:
    queue = IOQueue()
    with pytest.raises(NotImplementedError, match="put_many"):
        await queue.put_many([event(1), event(2)])
    assert queue.stored == []
    # One event is all or nothing by itself: it is stored with put().
    await queue.put_many([event(3)])
    assert [stored.id for stored in queue.stored] == ["3"]


async def test_publish_many_counts_every_event_and_checks_its_input(tmp_path: Path) -> None:
    app = Reactor(queue=SQLiteQueue(tmp_path / "q.db"))
    capture = Capture()
    app.subscribe("*", capture)
    with pytest.raises(ReactorNotRunning):
        await app.publish_many([event(0)])
    async with app:
        await app.publish_many([event(1), event(2)])
        with pytest.raises(TypeError, match="Event"):
            await app.publish_many([event(3), "test.item"])  # type: ignore[list-item]
        with anyio.fail_after(10):
            received = await capture.wait_for(2)
        assert app.stats().published == 2
    assert [e.id for e in received] == ["1", "2"]
