"""NatsJetStreamQueue against a real NATS server with JetStream, on asyncio and trio.

Every test uses a stream of its own on the shared server (deleted at the end); the
outage tests run a nats-server of their own on a free port, which they stop and start.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import nats_tools
import pytest
import services

from reactor import (
    ConsumerNotFound,
    DeadLetterNotFound,
    Event,
    PayloadTooLargeError,
    QueueUnavailableError,
    Reactor,
)
from reactor.abc import Received
from reactor.queues import from_url
from reactor.queues.nats import NatsJetStreamQueue

pytestmark = pytest.mark.anyio

CHILD = Path(__file__).with_name("nats_claim_child.py")
#: Seconds a test waits for what the broker does (generous: the machine is shared).
WAIT = 20.0


@pytest.fixture
def url() -> str:
    return services.require("nats")


@pytest.fixture
async def stream(url: str) -> AsyncIterator[str]:
    name = nats_tools.unique_stream()
    yield name
    await nats_tools.delete_streams(url, name)


class Seen:
    """Events handled, by consumer; wait for a count."""

    def __init__(self) -> None:
        self.items: list[tuple[str, object]] = []
        self._changed = anyio.Event()

    def add(self, consumer: str, data: object) -> None:
        self.items.append((consumer, data))
        self._changed.set()
        self._changed = anyio.Event()

    def of(self, consumer: str) -> list[object]:
        return [data for name, data in self.items if name == consumer]

    async def wait_for(self, count: int, consumer: str | None = None) -> None:
        with anyio.fail_after(WAIT):
            while len(self.items if consumer is None else self.of(consumer)) < count:
                await self._changed.wait()


async def poll(check: object) -> None:
    """Wait until ``check()`` (sync or async) is true: for state kept in the broker."""
    with anyio.fail_after(WAIT):
        while True:
            result = check()  # type: ignore[operator]
            if hasattr(result, "__await__"):
                result = await result
            if result:
                return
            await anyio.sleep(0.05)


# -- an app on the queue ----------------------------------------------------------------


async def test_an_app_publishes_and_handles_through_the_stream(url: str, stream: str) -> None:
    queue = NatsJetStreamQueue(url, stream=stream, group="shop")
    app = Reactor(queue=queue)
    seen = Seen()

    @app.subscribe("order.*")
    async def handle(event: Event) -> None:
        seen.add("handle", event.data)

    async with app:
        for n in range(20):
            await app.publish("order.created", n)
        await seen.wait_for(20)
    assert sorted(seen.of("handle")) == list(range(20))  # type: ignore[type-var]
    stats = app.stats().queue
    assert (stats.put_count, stats.get_count, stats.depth) == (20, 20, 0)


async def test_every_group_sees_every_event(url: str, stream: str) -> None:
    seen = Seen()
    apps = []
    for group in ("billing", "shipping"):
        app = Reactor(queue=NatsJetStreamQueue(url, stream=stream, group=group))

        async def handle(event: Event, group: str = group) -> None:
            seen.add(group, event.data)

        app.subscribe("order.*", handle)
        apps.append(app)
    async with apps[0], apps[1]:
        for n in range(10):
            await apps[0].publish("order.created", n)
        await seen.wait_for(10, "billing")
        await seen.wait_for(10, "shipping")
    assert sorted(seen.of("billing")) == sorted(seen.of("shipping")) == list(range(10))  # type: ignore[type-var]


async def test_the_processes_of_a_group_split_its_events(url: str, stream: str) -> None:
    seen = Seen()
    apps = []
    for process in ("one", "two"):
        app = Reactor(
            queue=NatsJetStreamQueue(url, stream=stream, group="billing", consumer=process)
        )

        async def handle(event: Event, process: str = process) -> None:
            seen.add(process, event.data)

        app.subscribe("order.*", handle, name="bill")
        apps.append(app)
    async with apps[0], apps[1]:
        for n in range(200):
            await apps[n % 2].publish("order.created", n)
        await seen.wait_for(200)
    handled = [data for _, data in seen.items]
    assert sorted(handled) == list(range(200))  # type: ignore[type-var]  # each once


# -- claims, keepalive, per-consumer completion ------------------------------------------


async def test_a_dead_process_events_are_claimed_with_their_progress(url: str, stream: str) -> None:
    async with NatsJetStreamQueue(url, stream=stream, group="billing", claim_after=1.0) as producer:
        # The group exists before the events are published (interest retention).
        ids = []
        for n in range(3):
            event = Event(type="order.created", source="/shop", data=n)
            await producer.put(event)
            ids.append(event.id)
    command = [sys.executable, str(CHILD), url, stream, "billing", "1.0", "3", "audit"]
    async with await anyio.open_process(command) as child:
        try:
            assert child.stdout is not None
            with anyio.fail_after(30):
                line = b""
                async for chunk in child.stdout:
                    line += chunk
                    if b"\n" in line:
                        break
            assert line.split() == [b"taken", *[i.encode() for i in ids]]
        finally:
            # Dies without settling: no hand-back, no keepalive. (Killed whatever
            # happened: leaving the block waits for the child, which never ends.)
            with contextlib.suppress(ProcessLookupError):
                child.kill()
            await child.wait()
    survivor = NatsJetStreamQueue(url, stream=stream, group="billing", claim_after=1.0)
    await survivor.open()
    try:
        taken: list[Received] = []
        with anyio.fail_after(15):  # after claim_after, the server delivers them again
            while len(taken) < 3:
                taken += await survivor.get_batch(10)
        assert [item.event.id for item in taken] == ids
        assert [item.attempt for item in taken] == [2, 2, 2]
        # Only the consumers that had not settled them run again.
        assert [item.completed for item in taken] == [frozenset({"audit"})] * 3
        assert survivor.statistics().claimed == 3
        assert await nats_tools.stream_messages(url, f"KV_{stream}_progress") == 3
        await survivor.settle(taken, [])
        # The progress records go with the acks.
        assert await nats_tools.stream_messages(url, f"KV_{stream}_progress") == 0
    finally:
        await survivor.close()


async def test_a_slow_handler_keeps_its_claim_and_runs_once(url: str, stream: str) -> None:
    calls: list[str] = []
    finished = anyio.Event()
    apps = []
    for process in ("one", "two"):
        queue = NatsJetStreamQueue(
            url, stream=stream, group="billing", consumer=process, claim_after=0.6
        )
        app = Reactor(queue=queue)

        async def slow(event: Event, process: str = process) -> None:
            calls.append(process)
            await anyio.sleep(2.0)  # more than three times claim_after
            finished.set()

        app.subscribe("job", slow, timeout=None)
        apps.append(app)
    async with apps[0], apps[1]:
        await apps[0].publish("job", 1)
        with anyio.fail_after(15):
            await finished.wait()
    assert len(calls) == 1
    assert sum(app.stats().queue.claimed for app in apps) == 0


async def test_events_accepted_by_put_nowait_are_stored_by_close(url: str, stream: str) -> None:
    queue = NatsJetStreamQueue(url, stream=stream, group="g")
    await queue.open()
    for n in range(3):
        queue.put_nowait(Event(type="item", source="/s", data=n))
    assert queue.statistics().depth == 3
    await queue.close()
    again = NatsJetStreamQueue(url, stream=stream, group="g")
    await again.open()
    try:
        taken: list[Received] = []
        with anyio.fail_after(WAIT):
            while len(taken) < 3:
                taken += await again.get_batch(10)
        assert sorted(item.event.data for item in taken) == [0, 1, 2]
        await again.settle(taken, [])
    finally:
        await again.close()


async def test_an_event_over_the_server_max_payload_is_refused_as_too_large(
    url: str, stream: str
) -> None:
    async with NatsJetStreamQueue(url, stream=stream, group="g", max_event_size=4 << 20) as queue:
        with pytest.raises(PayloadTooLargeError):
            await queue.put(Event(type="big", source="/s", data="x" * (2 << 20)))
        await queue.put(Event(type="small", source="/s", data=1))  # the queue goes on


# -- dead letters, poison events ------------------------------------------------------------


async def test_dead_letters_are_stored_in_the_broker_replayed_and_purged(
    url: str, stream: str
) -> None:
    queue = NatsJetStreamQueue(url, stream=stream, group="billing")
    app = Reactor(queue=queue)
    failing = True
    seen = Seen()

    @app.subscribe("order.*", name="mail", retry=None)
    async def mail(event: Event) -> None:
        if failing:
            raise ValueError("no mail server")
        seen.add("mail", event.data)

    @app.subscribe("order.*", name="audit")
    async def audit(event: Event) -> None:
        seen.add("audit", event.data)

    # Another process (the CLI) sees the letters while the app runs.
    admin = NatsJetStreamQueue(url, stream=stream, group="billing")
    async with app, admin:
        await app.publish("order.created", 7)
        await poll(lambda: admin.dead_letters())
        [letter] = await admin.dead_letters()
        assert letter.consumer == "mail" and letter.event is not None
        assert letter.event.data == 7
        assert (letter.error_type, letter.error, letter.attempts) == (
            "ValueError",
            "no mail server",
            1,
        )
        assert isinstance(letter.id, int)
        assert letter.dead_at >= letter.last_failed_at - timedelta(seconds=5)
        assert await admin.dead_letters(consumer="audit") == []
        with pytest.raises(DeadLetterNotFound):
            await admin.replay_dead_letters([letter.id + 1000])
        with pytest.raises(ConsumerNotFound):
            await admin.replay_dead_letters(consumer="nobody")
        failing = False
        assert await admin.replay_dead_letters() == 1
        await seen.wait_for(1, "mail")
        assert seen.of("audit") == [7]  # the replay went to mail only
        assert await admin.dead_letters() == []
        failing = True
        await app.publish("order.created", 8)
        await poll(lambda: admin.dead_letters())
        assert await admin.purge_dead_letters(consumer="mail") == 1
        assert await admin.dead_letters() == []


async def test_a_poison_event_is_dead_lettered_past_max_redeliveries(url: str, stream: str) -> None:
    # Two runs take the event and stop without settling it (as if the event killed them).
    async with NatsJetStreamQueue(url, stream=stream, group="billing") as producer:
        await producer.put(Event(type="poison", source="/shop", data=1))
    for attempt in (1, 2):
        queue = NatsJetStreamQueue(url, stream=stream, group="billing", max_redeliveries=1)
        await queue.open()
        with anyio.fail_after(10):
            [item] = await queue.get_batch(10)
        assert item.attempt == attempt
        await queue.close()
    app = Reactor(queue=NatsJetStreamQueue(url, stream=stream, group="billing", max_redeliveries=1))
    calls = []

    @app.subscribe("poison", name="crash")
    async def crash(event: Event) -> None:
        calls.append(event)

    admin = NatsJetStreamQueue(url, stream=stream, group="billing")
    async with app, admin:
        await poll(lambda: admin.dead_letters())
        [letter] = await admin.dead_letters()
    assert calls == []
    assert letter.error_type == "reactor.RedeliveryLimitExceeded"
    assert letter.consumer == "crash"


async def test_a_damaged_entry_is_dead_lettered_with_its_body_and_acked(
    url: str, stream: str
) -> None:
    app = Reactor(queue=NatsJetStreamQueue(url, stream=stream, group="g"))
    seen = Seen()

    @app.subscribe("*")
    async def handle(event: Event) -> None:
        seen.add("h", event.data)

    admin = NatsJetStreamQueue(url, stream=stream, group="g")
    async with app, admin:
        await nats_tools.publish_raw(url, f"{stream}.events", b"\xffnot json")
        await app.publish("item", 1)
        await seen.wait_for(1)  # the app goes on
        await poll(lambda: admin.dead_letters())
        [letter] = await admin.dead_letters()
        await poll(lambda: app.stats().queue.pending == 0)
    assert (letter.event, letter.consumer, letter.body) == (None, None, b"\xffnot json")
    assert letter.error_type == "reactor.EventFormatError"
    with pytest.raises(DeadLetterNotFound):  # a damaged event cannot be replayed
        async with admin:
            await admin.replay_dead_letters([letter.id])


# -- dedupe, retention, replay ---------------------------------------------------------------


@pytest.mark.parametrize("window", [120.0, None])
async def test_a_second_publish_of_an_event_is_dropped_within_the_dedupe_window(
    url: str, stream: str, window: float | None
) -> None:
    app = Reactor(queue=NatsJetStreamQueue(url, stream=stream, group="g", dedupe_window=window))
    seen = Seen()

    @app.subscribe("*")
    async def handle(event: Event) -> None:
        seen.add(event.type, event.data)

    async with app:
        event = Event(type="order", source="/shop", data=1)
        await app.publish(event)
        await app.publish(event)  # a producer's retry
        await app.publish("marker", 0)
        await seen.wait_for(1, "marker")
    assert seen.of("order") == ([1] if window else [1, 1])


async def test_the_apps_dedupe_window_sets_the_streams_and_is_counted(
    url: str, stream: str
) -> None:
    """Reactor(dedupe=...) on JetStream: Nats-Msg-Id and the stream's duplicate window,
    for every process and across a restart; the PubAck's duplicate flag is counted."""
    seen = Seen()

    def app_on_the_stream(window: timedelta = timedelta(minutes=5)) -> Reactor:
        # dedupe_window=None: the queue alone would not deduplicate; the app's window rules.
        queue = NatsJetStreamQueue(url, stream=stream, group="g", dedupe_window=None)
        app = Reactor(queue=queue, dedupe=window)

        @app.subscribe("*")
        async def handle(event: Event) -> None:
            seen.add(event.type, event.id)

        return app

    first, second = (Event(type="order", source="/shop", id=f"order-{n}") for n in (1, 2))
    app = app_on_the_stream()
    async with app:
        await app.publish(first)
        await app.publish(first)  # a producer's retry
        await app.publish_many([first])
        receipt = await app.publish_and_wait(first)
        assert receipt.duplicate and not receipt.outcomes
        await app.publish_and_wait(second)
    assert seen.of("order") == ["order-1", "order-2"]
    assert app.stats().deduplicated == 3
    restarted = app_on_the_stream()
    async with restarted:
        await restarted.publish(second)  # a retry after the restart
        await restarted.publish("marker", 0)
        await seen.wait_for(1, "marker")
    assert seen.of("order") == ["order-1", "order-2"]
    assert restarted.stats().deduplicated == 1
    # The stream keeps 5 minutes: an app that asks for more is told how to widen it.
    wider = app_on_the_stream(timedelta(hours=1))
    with pytest.raises(QueueUnavailableError, match="shorter than the app's dedupe window"):
        async with wider:
            pass


async def test_a_redelivered_dead_letter_is_not_taken_for_a_duplicate(
    url: str, stream: str
) -> None:
    app = Reactor(queue=NatsJetStreamQueue(url, stream=stream, group="g"))
    handled: list[str] = []
    fail = True

    @app.subscribe("order")
    async def fragile(event: Event) -> None:
        handled.append(event.id)
        if fail:
            raise RuntimeError("not yet")

    async with app:
        await app.publish_and_wait(Event(type="order", source="/shop", id="order-1"))
        [letter] = app.dead_letters
        fail = False
        await app.redeliver(letter)  # within the dedupe window of the publication
        await app.publish_and_wait("marker")
    assert handled == ["order-1", "order-1"]


async def test_without_retention_acknowledged_events_are_deleted(url: str, stream: str) -> None:
    app = Reactor(queue=NatsJetStreamQueue(url, stream=stream, group="g"))
    seen = Seen()

    @app.subscribe("*")
    async def handle(event: Event) -> None:
        seen.add("h", event.data)

    async with app:
        for n in range(5):
            await app.publish("item", n)
        await seen.wait_for(5)
        await poll(lambda: _empty(url, stream))
    assert await nats_tools.stream_messages(url, stream) == 0


async def _empty(url: str, stream: str) -> bool:
    return await nats_tools.stream_messages(url, stream) == 0


async def test_retention_keeps_events_for_replay_by_time_window(url: str, stream: str) -> None:
    queue = NatsJetStreamQueue(url, stream=stream, group="g", retention=3600)
    app = Reactor(queue=queue)
    seen = Seen()

    @app.subscribe("item", name="copy")
    async def copy(event: Event) -> None:
        seen.add("copy", event.data)

    @app.subscribe("item", name="count")
    async def count(event: Event) -> None:
        seen.add("count", event.data)

    async with app:
        before = datetime.now(UTC) - timedelta(seconds=1)
        for n in range(3):
            await app.publish("item", n)
        await seen.wait_for(3, "count")
        await poll(lambda: (app.stats().queue.pending or 0) == 0 and app.stats().in_flight == 0)
        assert await nats_tools.stream_messages(url, stream) == 3  # kept though acked
        with pytest.raises(ConsumerNotFound):
            await queue.replay(before, consumers=["nobody"])
        with pytest.raises(ValueError, match="aware"):
            await queue.replay(datetime.now())
        assert await queue.replay(before, consumers=["copy"]) == 3
        await seen.wait_for(6, "copy")
        assert await queue.replay(datetime.now(UTC) + timedelta(hours=1)) == 0
    assert sorted(seen.of("copy")) == [0, 0, 1, 1, 2, 2]  # type: ignore[type-var]
    assert sorted(seen.of("count")) == [0, 1, 2]  # type: ignore[type-var]


async def test_a_queue_that_only_publishes_waits_for_room_in_the_group(
    url: str, stream: str
) -> None:
    async with NatsJetStreamQueue(url, stream=stream, group="g", capacity=2) as producer:
        await producer.put(Event(type="item", source="/s", data=0))
        await producer.put(Event(type="item", source="/s", data=1))
        stored = anyio.Event()
        async with anyio.create_task_group() as tg:

            async def publish() -> None:
                await producer.put(Event(type="item", source="/s", data=2))
                stored.set()

            tg.start_soon(publish)
            await anyio.wait_all_tasks_blocked()
            assert not stored.is_set()  # the group's backlog is at capacity
            # Another process of the group reads the backlog: room again.
            worker = NatsJetStreamQueue(url, stream=stream, group="g")
            await worker.open()
            try:
                taken: list[Received] = []
                with anyio.fail_after(WAIT):
                    while len(taken) < 2:
                        taken += await worker.get_batch(10)
                    await worker.settle(taken, [])
                    await stored.wait()
            finally:
                await worker.close()


async def test_a_queue_that_only_publishes_fills_its_capacity_exactly_once_counted(
    url: str, stream: str
) -> None:
    """The group's backlog counts each event once: a queue of capacity C that only
    publishes, many publishes at a time (a refresh of the group's lag may fall while
    PubAcks of events it counted are on their way), stores exactly C events without
    waiting; the (C+1)th waits until a reader takes some."""
    capacity, at_once = 3_000, 250
    async with NatsJetStreamQueue(url, stream=stream, group="g", capacity=capacity) as producer:
        waiting = 0
        # The last event alone: a refresh during the others may have counted some of
        # them before their PubAck came.
        starts = [*range(0, capacity - 1, at_once), capacity - 1, capacity]
        for first, end in itertools.pairwise(starts):
            async with anyio.create_task_group() as tg:
                for n in range(first, end):
                    tg.start_soon(producer.put, Event(type="item", source="/s", data=n))
                await anyio.wait_all_tasks_blocked()
                waiting = max(waiting, producer.statistics().waiting_publishers)
        assert waiting == 0, "a publisher waited for room below capacity"
        assert producer.statistics().depth == capacity
        # The group's lag is measured (the broker's state, polled): still no room.
        await poll(lambda: producer.statistics().lag == capacity)
        stored = anyio.Event()
        async with anyio.create_task_group() as tg:

            async def publish() -> None:
                await producer.put(Event(type="item", source="/s", data=capacity))
                stored.set()

            tg.start_soon(publish)
            await poll(lambda: producer.statistics().waiting_publishers == 1)
            assert not stored.is_set()  # the group's backlog is at capacity
            async with NatsJetStreamQueue(url, stream=stream, group="g") as reader:
                with anyio.fail_after(WAIT):
                    taken = await reader.get_batch(10)
                    await reader.settle(taken, [])
                    await stored.wait()
        assert producer.statistics().waiting_publishers == 0


# -- statistics -------------------------------------------------------------------------------


async def test_statistics_show_the_group_lag_and_pending(url: str, stream: str) -> None:
    async with NatsJetStreamQueue(url, stream=stream, group="g") as queue:
        for n in range(5):
            await queue.put(Event(type="item", source="/s", data=n))
        assert queue.statistics().depth == 5  # published, not read by the group yet
        await poll(lambda: queue.statistics().lag == 5)
        taken: list[Received] = []
        with anyio.fail_after(10):
            while len(taken) < 5:
                taken += await queue.get_batch(5)
        await poll(lambda: queue.statistics().pending == 5 and queue.statistics().lag == 0)
        assert queue.statistics().depth == 0
        await queue.settle(taken, [])
        await poll(lambda: queue.statistics().pending == 0)
        assert queue.statistics().claimed == 0


# -- connection loss and server restarts, on a server of the test's own -------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class OwnServer:
    """A nats-server with JetStream that the test may stop and start (same port, same store)."""

    def __init__(self, directory: Path) -> None:
        self.port = _free_port()
        self.directory = directory
        self.url = f"nats://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("nats-server")
        if binary is None:
            pytest.skip("nats-server is not installed")
        self.process = subprocess.Popen(
            [binary, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.directory)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def kill(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
            self.process = None


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[OwnServer]:
    server = OwnServer(tmp_path / "jetstream")
    server.start()
    try:
        yield server
    finally:
        server.kill()


async def test_publishes_wait_through_a_server_restart_and_nothing_is_lost(
    own_server: OwnServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="reactor.queues.nats")
    # A message the restarted server hands to a pull request that the reconnection lost
    # comes back after claim_after (the server's ack_wait): short here, so that this
    # recovery path (seen about once in ten runs under load) fits the test's wait.
    queue = NatsJetStreamQueue(own_server.url, stream="outage", group="g", claim_after=2)
    app = Reactor(queue=queue)
    seen = Seen()

    @app.subscribe("item")
    async def handle(event: Event) -> None:
        seen.add("h", event.data)

    async with app:
        for n in range(10):
            await app.publish("item", n)
        await seen.wait_for(10)
        own_server.kill()
        published = anyio.Event()
        async with anyio.create_task_group() as tg:

            async def publish_more() -> None:
                for n in range(10, 20):
                    await app.publish("item", n)
                published.set()

            tg.start_soon(publish_more)
            await poll(lambda: app.stats().queue.last_error is not None)
            assert not published.is_set()  # waiting for the server
            await anyio.to_thread.run_sync(own_server.start)
        await seen.wait_for(20)
        assert app.stats().queue.last_error is None
    assert sorted(set(seen.of("h"))) == list(range(20))  # type: ignore[type-var]
    warnings = [
        r
        for r in caplog.records
        if r.name == "reactor.queues.nats" and r.levelno >= logging.WARNING
    ]
    assert len(warnings) == 1 and "lost the connection" in warnings[0].getMessage()
    assert any("reconnected" in r.getMessage() for r in caplog.records)


async def test_a_publish_fails_after_publish_timeout_while_the_server_is_down(
    own_server: OwnServer,
) -> None:
    queue = NatsJetStreamQueue(own_server.url, stream="down", group="g", publish_timeout=0.5)
    async with queue:
        await queue.put(Event(type="item", source="/s", data=0))
        own_server.kill()
        with anyio.fail_after(10), pytest.raises(QueueUnavailableError, match="publish_timeout"):
            await queue.put(Event(type="item", source="/s", data=1))
        stats = queue.statistics()
        assert stats.errors >= 1 and stats.last_error is not None


# -- construction ---------------------------------------------------------------------------


def test_from_url_takes_every_option_as_a_query_parameter() -> None:
    queue = from_url(
        "nats://127.0.0.1:4222?stream=orders&group=billing&consumer=p1&capacity=50"
        "&claim_after=5&max_redeliveries=none&dedupe_window=0&retention=60"
        "&max_event_size=1000&batch_size=64&publish_timeout=2"
    )
    assert isinstance(queue, NatsJetStreamQueue)
    assert (queue.stream, queue.group, queue.consumer, queue.capacity) == (
        "orders",
        "billing",
        "p1",
        50,
    )
    assert queue.max_redeliveries is None
    assert isinstance(from_url("tls://nats.example:4222?group=g"), NatsJetStreamQueue)


def test_bad_urls_and_options_are_refused_with_what_to_do() -> None:
    with pytest.raises(ValueError, match="needs group="):
        from_url("nats://127.0.0.1:4222?stream=orders")
    with pytest.raises(ValueError, match=r"unknown parameter 'claim'.*claim_after"):
        from_url("nats://127.0.0.1:4222?group=g&claim=5")
    with pytest.raises(ValueError, match="capacity must be an integer"):
        from_url("nats://127.0.0.1:4222?group=g&capacity=many")
    with pytest.raises(ValueError, match="letters, digits"):
        NatsJetStreamQueue(group="a.b")
    with pytest.raises(TypeError, match="capacity"):
        NatsJetStreamQueue(group="g", capacity=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="claim_after"):
        NatsJetStreamQueue(group="g", claim_after=0)


async def test_a_missing_nats_extra_names_the_install_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in [name for name in sys.modules if name == "nats" or name.startswith("nats.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "nats", None)
    queue = NatsJetStreamQueue(group="g")
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'reactor-events\[nats\]'"):
        await queue.open()


def test_import_reactor_does_not_import_nats() -> None:
    code = (
        "import sys, reactor, reactor.queues, reactor.queues.nats; "
        "assert 'nats' not in sys.modules, sorted(m for m in sys.modules if 'nats' in m)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


async def test_opening_on_a_server_that_never_answers_fails_after_publish_timeout() -> None:
    queue = NatsJetStreamQueue(f"nats://127.0.0.1:{_free_port()}", group="g", publish_timeout=0.5)
    with anyio.fail_after(20), pytest.raises(QueueUnavailableError, match="cannot be reached"):
        await queue.open()
    await queue.close()
