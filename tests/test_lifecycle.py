"""Lifecycle: start, sources, drain on exit, graceful timeout, publishing to a stopped app."""

from __future__ import annotations

import sys
import threading
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest
from anyio.abc import TaskStatus

from reactor import (
    Event,
    QueueFull,
    Reactor,
    ReactorNotRunning,
    SourceUnavailableError,
    Stats,
)
from reactor.abc import GAP_EVENT_TYPE, App, Source
from reactor.queues.memory import MemoryQueue
from reactor.testing import Capture, VirtualClock

pytestmark = [pytest.mark.anyio, pytest.mark.uvloop]

START = datetime(2030, 1, 1, tzinfo=UTC)


async def test_these_tests_run_on_asyncio_uvloop_and_trio(anyio_backend: Any) -> None:
    # The module is marked uvloop: its tests run on uvloop's event loop too.
    app = Reactor()
    async with app:
        receipt = await app.publish_and_wait("ping")
    assert receipt.ok
    if anyio_backend == ("asyncio", {"use_uvloop": True}):
        import asyncio

        assert type(asyncio.get_running_loop()).__module__.startswith("uvloop")
    elif anyio_backend == "trio":
        assert "trio" in sys.modules


class Burst(Source):
    """Publishes *count* events once ready, then waits to be cancelled."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.cancelled = False

    async def run(
        self, app: App, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        try:
            for n in range(self.count):
                await app.publish("burst", n, source="/burst")
            await anyio.sleep_forever()
        finally:
            self.cancelled = True


async def test_publishing_to_an_app_that_is_not_running_raises() -> None:
    app = Reactor()
    with pytest.raises(ReactorNotRunning, match="async with app"):
        await app.publish("x")
    with pytest.raises(ReactorNotRunning):
        app.publish_nowait("x")
    with pytest.raises(ReactorNotRunning):
        app.notify("chan")
    states = []
    async with app:
        states.append(app.running)
        await app.publish("x")
    states.append(app.running)
    assert states == [True, False]
    with pytest.raises(ReactorNotRunning):
        await app.publish_and_wait("x")


async def test_exit_drains_queued_and_in_flight_work() -> None:
    app = Reactor()
    gate = anyio.Event()
    finished: list[int] = []

    @app.subscribe("job", concurrency=2)
    async def job(event: Event) -> None:
        await gate.wait()
        finished.append(event.data)

    async with app:
        for n in range(10):
            await app.publish("job", n)
        await anyio.wait_all_tasks_blocked()
        assert app.stats().subscriptions["job"].running == 2
        gate.set()  # the block ends with 2 in flight and 8 queued
    assert sorted(finished) == list(range(10))
    stats = app.stats()
    assert (stats.in_flight, stats.queue.depth, stats.delivered) == (0, 0, 10)


async def test_graceful_timeout_cancels_what_is_left_unsettled() -> None:
    clock = VirtualClock()
    app = Reactor(clock=clock, graceful_timeout=10)
    cancelled = anyio.Event()

    @app.subscribe("job")
    async def stuck(event: Event) -> None:
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:

            async def run_app(*, task_status: TaskStatus[None]) -> None:
                async with app:
                    await app.publish("job")
                    task_status.started()

            await tg.start(run_app)
            await clock.advance(9.9)
            assert not cancelled.is_set()
            await clock.advance(0.1)
    assert cancelled.is_set()
    stats = app.stats()
    assert (stats.delivered, stats.failed, stats.dead_lettered) == (0, 0, 0)
    assert len(app.dead_letters) == 0  # cancellation is never an outcome


async def test_an_error_in_the_body_propagates_unwrapped_and_skips_the_drain() -> None:
    app = Reactor()
    started = anyio.Event()
    cancelled = anyio.Event()

    @app.subscribe("job")
    async def job(event: Event) -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()

    with pytest.raises(KeyError, match="mine"):
        async with app:
            await app.publish("job")
            await started.wait()
            raise KeyError("mine")
    assert cancelled.is_set()
    assert not app.running


async def test_sources_start_before_the_block_and_stop_before_the_drain() -> None:
    app = Reactor()
    capture = Capture()
    app.subscribe("burst", capture)
    source = Burst(5)
    app.add_source(source)
    async with app:
        with anyio.fail_after(5):
            await capture.wait_for(5)
        cancelled_while_running = source.cancelled
    assert source.cancelled and not cancelled_while_running
    late = Burst(2)
    async with app:  # an app can run again, and sources can be added while it runs
        app.add_source(late)
        with anyio.fail_after(5):
            await capture.wait_for(5 + 5 + 2)
    assert late.cancelled
    assert app.stats().delivered == 12


async def test_a_failing_source_stops_the_app(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(Source):
        async def run(
            self, app: App, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
        ) -> None:
            task_status.started()
            raise OSError("device gone")

    app = Reactor()
    app.add_source(Broken())
    with pytest.raises(BaseExceptionGroup) as caught:
        async with app:
            await anyio.sleep_forever()
    assert caught.group_contains(OSError, match="device gone")
    assert "source Broken failed" in caplog.text


async def test_a_receipt_awaited_when_the_app_stops_raises() -> None:
    app = Reactor(graceful_timeout=0)
    errors: list[BaseException] = []

    @app.subscribe("x")
    async def never_returns(event: Event) -> None:
        await anyio.sleep_forever()

    async with anyio.create_task_group() as tg:
        async with app:

            async def wait() -> None:
                try:
                    await app.publish_and_wait("x")
                except ReactorNotRunning as exc:
                    errors.append(exc)

            tg.start_soon(wait)  # outside the app: only the stop can end its wait
            await anyio.wait_all_tasks_blocked()
    assert len(errors) == 1 and "stopped before" in str(errors[0])


async def test_a_publish_waiting_for_room_when_the_app_stops_raises() -> None:
    app = Reactor(queue=MemoryQueue(capacity=1), max_in_flight=1, graceful_timeout=0)
    errors: list[BaseException] = []

    @app.subscribe("x")
    async def never_returns(event: Event) -> None:
        await anyio.sleep_forever()

    async with anyio.create_task_group() as tg:
        async with app:
            await app.publish("x", 1)  # in flight
            await anyio.wait_all_tasks_blocked()
            await app.publish("x", 2)  # fills the queue

            async def publish() -> None:
                try:
                    await app.publish("x", 3)
                except ReactorNotRunning as exc:
                    errors.append(exc)

            tg.start_soon(publish)  # outside the app: waits for room
            await anyio.wait_all_tasks_blocked()
            assert app.stats().queue.waiting_publishers == 1
    assert len(errors) == 1 and "waited for room" in str(errors[0])
    assert app.stats().queue.waiting_publishers == 0


async def test_an_app_runs_once_at_a_time() -> None:
    app = Reactor()
    async with app:
        with pytest.raises(RuntimeError, match="already running"):
            await app.__aenter__()
    async with app:
        pass


async def test_publish_forms() -> None:
    clock = VirtualClock(start=datetime(2030, 5, 1, tzinfo=UTC))
    app = Reactor(clock=clock, source="/my/app")
    capture = Capture()
    app.subscribe("*", capture)
    async with app:
        first = await app.publish("a.b", {"x": 1}, subject="s", extensions={"tenant": "t1"})
        given = Event(type="c.d", source="/elsewhere", data=2)
        second = await app.publish(given)
        third = app.publish_nowait("e.f", id="fixed-id")
        with pytest.raises(TypeError, match="not both"):
            await app.publish(given, source="/x")
        with pytest.raises(TypeError, match="Event or an event type"):
            await app.publish(42)  # type: ignore[arg-type]
        with anyio.fail_after(5):
            await capture.wait_for(3)
    assert second is given
    assert (first.source, first.time, first.subject) == ("/my/app", clock.now(), "s")
    assert first.extensions == {"tenant": "t1"}
    assert third.id == "fixed-id"
    assert [e.type for e in capture.events] == ["a.b", "c.d", "e.f"]


async def test_stats_snapshot() -> None:
    app = Reactor(queue=MemoryQueue(capacity=50))

    @app.subscribe("ok")
    async def ok(event: Event) -> None:
        pass

    @app.subscribe("bad")
    async def bad(event: Event) -> None:
        raise RuntimeError

    async with app:
        for _ in range(3):
            await app.publish_and_wait("ok")
        await app.publish_and_wait("bad")
        stats = app.stats()
    assert isinstance(stats, Stats)
    assert (stats.published, stats.delivered, stats.failed, stats.dead_lettered) == (4, 3, 1, 1)
    assert stats.queue.capacity == 50 and stats.queue_depth == 0
    assert stats.latency.count == 4
    assert 0 <= stats.latency.p50 <= stats.latency.p99 <= stats.latency.max < 5
    assert stats.subscriptions["ok"].delivered == 3
    with pytest.raises(AttributeError):
        stats.published = 0  # type: ignore[misc]


async def test_receipts_for_events_without_consumers_resolve_at_once() -> None:
    app = Reactor()
    async with app:
        receipt = await app.publish_and_wait("nobody.listens")
    assert receipt.outcomes == {} and receipt.ok


async def test_awaiting_the_same_event_twice_is_refused() -> None:
    app = Reactor()
    gate = anyio.Event()

    @app.subscribe("x")
    async def wait(event: Event) -> None:
        await gate.wait()

    event = Event(type="x", source="/t")
    async with app, anyio.create_task_group() as tg:
        tg.start_soon(app.publish_and_wait, event)
        await anyio.wait_all_tasks_blocked()
        with pytest.raises(ValueError, match="already being awaited"):
            await app.publish_and_wait(event)
        gate.set()


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"max_in_flight": 0}, ValueError),
        ({"graceful_timeout": -1}, ValueError),
        ({"timeout": 0}, ValueError),
        ({"source": ""}, ValueError),
        ({"queue": object()}, TypeError),
        ({"clock": object()}, TypeError),
        ({"retry": 3}, TypeError),
        ({"dead_letter_limit": 0}, ValueError),
    ],
)
def test_bad_app_options(kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        Reactor(**kwargs)  # type: ignore[arg-type]


async def test_notifications_in_process_and_from_threads() -> None:
    app = Reactor()
    orders, other = Capture(), Capture()
    app.on_notification("orders")(orders)
    app.on_notification("other", name="other")(other)
    async with app:
        event = app.notify("orders", {"id": 1})
        assert event.type == "reactor.notification" and event.subject == "orders"
        from_thread: list[Event] = []

        def worker() -> None:
            from_thread.append(app.notify("orders", {"id": 2}))

        thread = threading.Thread(target=worker)
        thread.start()
        await anyio.to_thread.run_sync(thread.join)
        with anyio.fail_after(5):
            await orders.wait_for(2)
    assert [e.data for e in orders.events] == [{"id": 1}, {"id": 2}]
    assert from_thread[0].id == orders.events[1].id
    assert other.events == []
    with pytest.raises(ValueError, match="channel"):
        app.notify("")


async def test_notify_reports_a_full_queue() -> None:
    app = Reactor(queue=MemoryQueue(capacity=1), max_in_flight=1)
    gate = anyio.Event()

    @app.on_notification("c")
    async def hold(event: Event) -> None:
        await gate.wait()

    async with app:
        app.notify("c")
        await anyio.wait_all_tasks_blocked()
        app.notify("c")
        with pytest.raises(QueueFull):
            app.notify("c")
        gate.set()


async def test_source_statistics_and_gap_events() -> None:
    class Flaky(Source):
        def __init__(self) -> None:
            self.reconnects = 0

        @property
        def name(self) -> str:
            return "flaky"

        def statistics(self) -> dict[str, int]:
            return {"reconnects": self.reconnects}

        async def run(
            self, app: App, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
        ) -> None:
            task_status.started()
            self.reconnects += 1
            await app.publish(self.gap_event(app, reason="reconnected", since=START, missed=3))
            await anyio.sleep_forever()

    clock = VirtualClock(start=datetime(2030, 1, 1, 0, 5, tzinfo=UTC))
    app = Reactor(clock=clock)
    gaps = Capture()
    app.subscribe(GAP_EVENT_TYPE, gaps)
    app.add_source(Flaky())
    app.add_source(Flaky())
    async with app:
        with anyio.fail_after(5):
            await gaps.wait_for(2)
        stats = app.stats()
    assert stats.sources == {"flaky": {"reconnects": 1}, "flaky#2": {"reconnects": 1}}
    gap = gaps.events[0]
    assert (gap.type, gap.subject, gap.source) == ("reactor.source.gap", "flaky", "/reactor")
    assert gap.data == {
        "source": "flaky",
        "reason": "reconnected",
        "since": "2030-01-01T00:00:00+00:00",
        "until": "2030-01-01T00:05:00+00:00",
        "missed": 3,
    }


class _Unreachable(Source):
    async def run(
        self, app: App, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        try:
            raise OSError("connection refused")
        except OSError as exc:
            raise SourceUnavailableError("cannot connect to the server") from exc


async def test_a_source_that_cannot_start_raises_its_own_error_from_the_block() -> None:
    app = Reactor()
    app.add_source(_Unreachable())
    with pytest.raises(SourceUnavailableError, match="cannot connect") as caught:
        async with app:
            pytest.fail("the app started")
    # Not wrapped in the app's own task groups' exception groups; its cause kept.
    assert isinstance(caught.value.__cause__, OSError)
    assert not app.running
