"""Embedding reactor in a plain asyncio application, tested the way its users test theirs.

These tests use pytest-asyncio in strict mode, not anyio's plugin: the host code is
plain asyncio (tasks, ``asyncio.Queue``, ``asyncio.Event``, ``run_in_executor``) and
reactor runs inside it. Nothing sleeps: the tests wait for receipts, captures and
events, each bounded by ``asyncio.timeout``, and time passes on a virtual clock.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import pytest_asyncio

from reactor import NOTIFICATION_TYPE, Event, Reactor, Receipt
from reactor.testing import Capture, VirtualClock

#: Seconds any single wait may take before the test fails instead of hanging.
PATIENCE = 5


@asynccontextmanager
async def serving(app: Reactor) -> AsyncIterator[Reactor]:
    """Run *app* in an asyncio task of its own for the duration of the block.

    ``async with app:`` enters an anyio task group, which must be left by the task that
    entered it, and pytest-asyncio runs a fixture's setup and teardown in different
    tasks (pytest-dev/pytest-asyncio#1191): so one task enters and leaves the app, and
    the fixture only starts and stops that task.
    """
    started = asyncio.Event()
    stop = asyncio.Event()

    async def serve() -> None:
        async with app:
            started.set()
            await stop.wait()

    task = asyncio.create_task(serve(), name="reactor app")
    startup = asyncio.create_task(started.wait())
    await asyncio.wait({task, startup}, return_when=asyncio.FIRST_COMPLETED)
    if not started.is_set():
        startup.cancel()
        await task  # raises whatever stopped the app from starting
        raise RuntimeError("the app stopped before it started")
    try:
        yield app
    finally:
        stop.set()
        async with asyncio.timeout(PATIENCE):
            await task  # leaving `async with app:` drains the app


@pytest_asyncio.fixture
async def app() -> AsyncIterator[Reactor]:
    """A running app, stopped (and drained) after the test."""
    async with serving(Reactor(source="/shop")) as running:
        yield running


@pytest.mark.asyncio
async def test_asyncio_tasks_publish_into_the_app(app: Reactor) -> None:
    billed: list[int] = []

    async def bill(event: Event) -> None:
        billed.append(event.data["total"])

    app.subscribe("order.created", bill, name="bill")
    audit = Capture()
    app.subscribe("order.*", audit, name="audit")

    # The host's own pipeline: a producer task feeding an asyncio.Queue, and a task
    # forwarding what it takes from the queue into reactor.
    orders: asyncio.Queue[dict[str, int] | None] = asyncio.Queue(maxsize=2)

    async def produce() -> None:
        for n in range(5):
            await orders.put({"id": n, "total": 10 * n})
        await orders.put(None)

    async def forward() -> list[Receipt]:
        receipts = []
        while (order := await orders.get()) is not None:
            receipts.append(await app.publish_and_wait("order.created", order))
        return receipts

    async with asyncio.timeout(PATIENCE):
        producer = asyncio.create_task(produce())
        receipts = await asyncio.create_task(forward())
        await producer
        # A plain publish() from another task: the capture shows when it was handled.
        await asyncio.create_task(app.publish("order.cancelled", {"id": 4}))
        audited = await audit.wait_for(6)

    assert billed == [0, 10, 20, 30, 40]
    assert [sorted(receipt.outcomes) for receipt in receipts] == [["audit", "bill"]] * 5
    assert all(receipt.ok for receipt in receipts)
    assert [receipt.event.data["id"] for receipt in receipts] == [0, 1, 2, 3, 4]
    assert [event.type for event in audited] == ["order.created"] * 5 + ["order.cancelled"]
    assert {event.source for event in audited} == {"/shop"}


@pytest.mark.asyncio
async def test_handlers_await_asyncio_primitives_of_the_host(app: Reactor) -> None:
    # Owned by the host application, not by reactor.
    doors_open = asyncio.Event()
    waiting = asyncio.Event()
    outbox: asyncio.Queue[str] = asyncio.Queue()

    async def ship(event: Event) -> None:
        waiting.set()
        await doors_open.wait()
        await outbox.put(event.data["parcel"])

    app.subscribe("parcel.ready", ship, name="ship")

    async with asyncio.timeout(PATIENCE):
        pending = asyncio.create_task(app.publish_and_wait("parcel.ready", {"parcel": "p1"}))
        await waiting.wait()
        # The handler is suspended on the host's event; nothing was shipped yet.
        assert not pending.done()
        assert outbox.empty()
        assert app.stats().subscriptions["ship"].running == 1
        doors_open.set()
        receipt = await pending
        shipped = await outbox.get()

    assert shipped == "p1"
    assert receipt.ok
    assert receipt.outcomes["ship"].attempts == 1


@pytest.mark.asyncio
async def test_notify_from_a_thread_of_the_default_executor(app: Reactor) -> None:
    loop_thread = threading.get_ident()
    handler_threads: set[int] = set()
    jobs = Capture()

    @app.on_notification("jobs", name="jobs")
    async def on_job(event: Event) -> None:
        handler_threads.add(threading.get_ident())
        await jobs(event)

    others = Capture()
    app.on_notification("other", name="other")(others)

    loop = asyncio.get_running_loop()
    async with asyncio.timeout(PATIENCE):
        # Blocking code run in the executor notifies the app from its worker threads.
        published = await asyncio.gather(
            *(loop.run_in_executor(None, app.notify, "jobs", n) for n in range(5))
        )
        received = await jobs.wait_for(5)

    assert [event.data for event in published] == [0, 1, 2, 3, 4]
    assert {(event.type, event.subject) for event in published} == {(NOTIFICATION_TYPE, "jobs")}
    assert sorted(event.data for event in received) == [0, 1, 2, 3, 4]
    assert {event.id for event in received} == {event.id for event in published}
    # Handlers run on the event loop's thread, whichever thread notified.
    assert handler_threads == {loop_thread}
    assert others.events == []
    assert app.stats().published == 5


@pytest.mark.asyncio
async def test_leaving_the_app_drains_deliveries_in_flight() -> None:
    clock = VirtualClock()
    app = Reactor(clock=clock, graceful_timeout=30)
    started = asyncio.Event()
    finished: list[int] = []

    async def slow(event: Event) -> None:
        started.set()
        await clock.sleep(10)  # work that takes ten (virtual) seconds
        finished.append(event.data)

    # One at a time: job 2 is still queued for this consumer when the block ends.
    app.subscribe("job", slow, name="slow", concurrency=1)
    leaving = asyncio.Event()

    async def pass_time() -> None:
        await leaving.wait()
        # advance() first waits until every task is blocked, that is until the app is
        # draining with job 1 in flight; then 20 virtual seconds finish both jobs, within
        # the 30 s graceful timeout.
        await clock.advance(20)

    async with asyncio.timeout(PATIENCE):
        host = asyncio.create_task(pass_time())
        async with app:
            await app.publish("job", 1)
            await app.publish("job", 2)
            await started.wait()
            leaving.set()
            assert finished == []
        await host

    assert finished == [1, 2]
    assert not app.running
    stats = app.stats()
    assert (stats.delivered, stats.in_flight, stats.queue_depth) == (2, 0, 0)
    assert len(app.dead_letters) == 0
