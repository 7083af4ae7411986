"""The EventQueue contract, run against every implementation, and backpressure through the app.

Besides reactor's queues, the suite runs against :class:`JournalQueue`, a small durable
queue written as a third party would, that relies on the default
:meth:`EventQueue.settle <reactor.abc.EventQueue.settle>` (it implements only ``ack`` and
``record_progress``).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from pathlib import Path
from typing import Protocol

import anyio
import attrs
import nats_tools
import pytest
import services
from redis_helpers import delete_stream, unique_stream

from reactor import Event, QueueFull, QueueStatistics, Reactor
from reactor.abc import EventQueue, Received
from reactor.queues.memory import DEFAULT_CAPACITY, MemoryQueue
from reactor.queues.sqlite import SQLiteQueue

pytestmark = pytest.mark.anyio


@attrs.define
class Entry:
    """One event kept by a :class:`JournalQueue`."""

    event: Event
    only: frozenset[str] | None
    attempt: int = 1
    handed_out: bool = False
    completed: set[str] = attrs.Factory(set)


class JournalQueue(EventQueue):
    """A durable queue whose storage (the *journal*) outlives the queue object: a new
    queue on the same journal is the queue after a restart. It keeps no dead letters and
    does not override :meth:`settle`."""

    needs_ack = True

    def __init__(self, capacity: int, journal: dict[str, Entry]) -> None:
        self._inner = MemoryQueue(capacity)
        self._journal = journal  # event id -> entry, in publish order

    @property
    def capacity(self) -> int:
        return self._inner.capacity

    async def open(self) -> None:
        await self._inner.open()
        for entry in self._journal.values():  # what the last run left
            if entry.handed_out:
                entry.attempt += 1
                entry.handed_out = False
            self._inner.put_nowait(entry.event, only=entry.only)

    async def close(self) -> None:
        await self._inner.close()

    async def put(self, event: Event, *, only: Collection[str] | None = None) -> None:
        await self._inner.put(event, only=only)
        self._journal[event.id] = Entry(event, None if only is None else frozenset(only))

    def put_nowait(self, event: Event, *, only: Collection[str] | None = None) -> None:
        self._inner.put_nowait(event, only=only)
        self._journal[event.id] = Entry(event, None if only is None else frozenset(only))

    async def get_batch(self, limit: int) -> Sequence[Received]:
        batch: list[Received] = []
        for item in await self._inner.get_batch(limit):
            entry = self._journal[item.event.id]
            entry.handed_out = True
            batch.append(
                Received(
                    item.event,
                    item.event.id,
                    attempt=entry.attempt,
                    completed=frozenset(entry.completed),
                    only=entry.only,
                )
            )
        return batch

    async def ack(self, received: Sequence[Received]) -> None:
        for item in received:
            del self._journal[item.event.id]

    async def record_progress(self, progress: Sequence[tuple[Received, str]]) -> None:
        for item, consumer in progress:
            self._journal[item.event.id].completed.add(consumer)

    def statistics(self) -> QueueStatistics:
        return self._inner.statistics()


_JOURNALS: dict[Path, dict[str, Entry]] = {}
#: The Redis stream of each test directory (a queue built again on it restarts it).
_STREAMS: dict[Path, str] = {}


def redis_queue(capacity: int, directory: Path) -> EventQueue:
    from reactor.queues.redis import RedisStreamsQueue

    url = services.require("redis")
    stream = _STREAMS.setdefault(directory.parent, unique_stream("contract"))
    # One stream, group and consumer name per test: a queue built again is the same
    # process restarted, which takes its own pending events back.
    return RedisStreamsQueue(url, stream=stream, group="app", consumer="worker", capacity=capacity)


#: What a factory left to clean up after the test (a broker's streams, keys).
_CLEANUPS: list[Callable[[], Awaitable[None]]] = []


def _nats_queue(capacity: int, directory: Path) -> EventQueue:
    """A NATS JetStream queue on a stream of its own per test (the directory names it)."""
    from reactor.queues.nats import NatsJetStreamQueue

    url = services.require("nats")
    stream = "contract_" + hashlib.sha1(str(directory).encode()).hexdigest()[:16]
    if not any(getattr(cleanup, "stream", None) == stream for cleanup in _CLEANUPS):

        async def cleanup() -> None:
            await nats_tools.delete_streams(url, stream)

        cleanup.stream = stream  # type: ignore[attr-defined]
        _CLEANUPS.append(cleanup)
    return NatsJetStreamQueue(url, stream=stream, group="contract", capacity=capacity)


#: Every queue implementation, built from a capacity and a directory for its files (a
#: queue built again on the same directory is the same queue after a restart).
FACTORIES: dict[str, Callable[[int, Path], EventQueue]] = {
    "memory": lambda capacity, _: MemoryQueue(capacity),
    "sqlite": lambda capacity, directory: SQLiteQueue(directory / "queue.db", capacity=capacity),
    "settle-default": lambda capacity, directory: JournalQueue(
        capacity, _JOURNALS.setdefault(directory, {})
    ),
    "redis": redis_queue,
    "nats": _nats_queue,
}


class QueueFactory(Protocol):
    def __call__(self, capacity: int, *, restart: EventQueue | None = None) -> EventQueue:
        """Build a queue; with *restart*, a new one on the closed *restart*'s storage."""
        ...


@pytest.fixture(params=sorted(FACTORIES))
async def make_queue(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[QueueFactory]:
    opened: list[EventQueue] = []
    directories: dict[int, Path] = {}

    def make(capacity: int, *, restart: EventQueue | None = None) -> EventQueue:
        if restart is None:
            directory = tmp_path / str(len(opened))
            directory.mkdir()
        else:
            directory = directories[id(restart)]
        queue = FACTORIES[request.param](capacity, directory)
        directories[id(queue)] = directory
        opened.append(queue)
        return queue

    yield make
    for queue in opened:
        await queue.close()
    _JOURNALS.clear()
    stream = _STREAMS.pop(tmp_path, None)
    if stream is not None:
        await delete_stream(services.url("redis"), stream)
    while _CLEANUPS:
        await _CLEANUPS.pop()()


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


async def _durable(make_queue: QueueFactory) -> EventQueue:
    queue = make_queue(10)
    if not queue.needs_ack:
        pytest.skip("the memory queue is not durable: it is never told of settlements")
    await queue.open()
    return queue


async def _restart(
    make_queue: QueueFactory, queue: EventQueue
) -> tuple[EventQueue, list[Received]]:
    """Close *queue*, open it again; return it and everything it hands out."""
    await queue.close()
    queue = make_queue(10, restart=queue)
    await queue.open()
    items: list[Received] = []
    # A durable queue may hand out in several batches what an earlier run handed out.
    while queue.statistics().depth:
        items += await queue.get_batch(10)
    return queue, items


def _state(items: Sequence[Received]) -> list[tuple[object, int, frozenset[str]]]:
    return [(item.event.data, item.attempt, item.completed) for item in items]


async def test_settled_events_and_consumers_are_not_handed_out_again(
    make_queue: QueueFactory,
) -> None:
    queue = await _durable(make_queue)
    for n in range(6):
        await queue.put(event(n))
    batch = await queue.get_batch(10)
    assert _state(batch) == [(n, 1, frozenset()) for n in range(6)]
    # Non-consecutive events done; progress of consumers on the others.
    await queue.settle(
        [batch[0], batch[1], batch[3]],
        [(batch[2], "audit"), (batch[4], "audit"), (batch[4], "mail")],
    )
    assert _state((await _restart(make_queue, queue))[1]) == [
        (2, 2, frozenset({"audit"})),
        (4, 2, frozenset({"audit", "mail"})),
        (5, 2, frozenset()),
    ]


async def test_ack_and_record_progress_store_what_settle_stores(make_queue: QueueFactory) -> None:
    queue = await _durable(make_queue)
    for n in range(3):
        await queue.put(event(n))
    batch = await queue.get_batch(10)
    await queue.record_progress([(batch[1], "audit")])
    await queue.ack([batch[0], batch[2]])
    assert _state((await _restart(make_queue, queue))[1]) == [(1, 2, frozenset({"audit"}))]


async def test_unsettled_events_are_handed_out_again_with_their_attempt_raised(
    make_queue: QueueFactory,
) -> None:
    queue = await _durable(make_queue)
    await queue.put(event(0))
    queue.put_nowait(event(1), only=["audit"])
    batch = [*await queue.get_batch(10)]
    while len(batch) < 2:  # a durable queue may hand out the put_nowait() event later
        batch += await queue.get_batch(10)
    ids = [item.event.id for item in batch]
    queue, redelivered = await _restart(make_queue, queue)
    assert [item.event.id for item in redelivered] == ids
    assert [item.only for item in redelivered] == [None, frozenset({"audit"})]
    assert _state(redelivered) == [(0, 2, frozenset()), (1, 2, frozenset())]
    # Still not settled: the next restart hands them out again, one attempt more.
    queue, again = await _restart(make_queue, queue)
    assert [item.event.id for item in again] == ids
    assert [item.attempt for item in again] == [3, 3]
    await queue.settle(again, [])
    assert (await _restart(make_queue, queue))[1] == []


def test_memory_queue_capacity_is_validated() -> None:
    assert MemoryQueue().capacity == DEFAULT_CAPACITY == 10_000
    for bad in (0, -1):
        with pytest.raises(ValueError, match="capacity"):
            MemoryQueue(bad)
    for wrong_type in (1.5, True):
        with pytest.raises(TypeError, match="capacity"):
            MemoryQueue(wrong_type)  # type: ignore[arg-type]


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


async def test_async_with_opens_the_queue_for_a_producer(make_queue: QueueFactory) -> None:
    queue = make_queue(10)
    async with queue as opened:
        assert opened is queue
        await queue.put(event(1))
        assert [r.event.data for r in await queue.get_batch(10)] == [1]


async def test_an_apps_dedupe_window_outlives_a_restart_where_the_queue_keeps_the_keys(
    make_queue: QueueFactory,
) -> None:
    """Reactor(dedupe=...) on every queue: a retry within the window is never handled twice
    while the app runs; after a restart too when the queue keeps the keys (its
    ``deduplicate()`` accepts them), else the window starts again with the new process."""
    handled: list[object] = []

    def app_on(queue: EventQueue) -> Reactor:
        app = Reactor(queue=queue, dedupe=60)

        @app.subscribe("test.*")
        async def handle(event: Event) -> None:
            handled.append(event.data)

        return app

    retried = Event(type="test.item", source="/contract", id="retried", data="retried")
    queue = make_queue(100)
    app = app_on(queue)
    async with app:
        await app.publish(retried)
        await app.publish(retried)
        assert (await app.publish_and_wait(retried)).duplicate
    assert handled == ["retried"]
    assert app.stats().deduplicated == 2
    keeps = type(queue).deduplicate is not EventQueue.deduplicate
    restarted = app_on(make_queue(100, restart=queue))
    async with restarted:
        await restarted.publish(retried)
        await restarted.publish_and_wait(event(1))
    assert sorted(map(str, handled)) == (["1", "retried"] if keeps else ["1", "retried", "retried"])
    assert restarted.stats().deduplicated == (1 if keeps else 0)
