"""RedisStreamsQueue against a real Redis: apps and groups, claims, keepalive, progress,
dead letters, poison events, dedupe, trimming, replay, statistics, outages and restarts.

The shared server (``tests/services.py``) serves every test that does not stop a server;
each test uses its own stream and deletes it. Tests that stop or restart a server start
their own ``redis-server`` on a free port.
"""

from __future__ import annotations

import gc
import logging
import shutil
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import coredis
import pytest
import services
from coredis.response.types import StreamPendingExt
from redis_helpers import delete_stream, unique_stream

import reactor
from reactor import (
    ConsumerNotFound,
    DeadLetterNotFound,
    Event,
    QueueUnavailableError,
    Reactor,
    RedeliveryLimitExceeded,
    Retry,
)
from reactor.abc import Received
from reactor.queues import from_url
from reactor.queues.redis import RedisStreamsQueue

pytestmark = pytest.mark.anyio

NO_RETRY = Retry(attempts=1, backoff=reactor.Backoff(initial=0.0))


@pytest.fixture
async def stream() -> AsyncIterator[str]:
    url = services.require("redis")
    name = unique_stream("redis")
    yield name
    await delete_stream(url, name)


def make(stream: str, group: str = "app", **options: Any) -> RedisStreamsQueue:
    return RedisStreamsQueue(services.url("redis"), stream=stream, group=group, **options)


def event(n: int, type: str = "job.run") -> Event:
    return Event(type=type, source="/test", data=n)


async def raw(url: str | None = None) -> coredis.Redis[bytes]:
    return coredis.Redis.from_url(url or services.url("redis"), decode_responses=False)


async def pending_of(stream: str, group: str = "app") -> int:
    async with await raw() as client:
        summary = await client.xpending(stream, group)
        return summary.pending  # type: ignore[union-attr]


async def wait_for(condition: Any, limit: float = 10.0) -> None:
    """Poll the broker's state until *condition()* (maybe async) is true."""
    with anyio.fail_after(limit):
        while True:
            result = condition()
            if hasattr(result, "__await__"):
                result = await result
            if result:
                return
            await anyio.sleep(0.05)


# -- construction ---------------------------------------------------------------------


def test_from_url_takes_the_options_as_parameters() -> None:
    queue = from_url(
        "redis://127.0.0.1:6379/0?stream=orders&group=billing&claim_after=12.5"
        "&max_redeliveries=none&dedupe_window=0&retention=3600&capacity=50&consumer=w1"
    )
    assert isinstance(queue, RedisStreamsQueue)
    assert (queue.stream, queue.group, queue.consumer, queue.capacity) == (
        "orders",
        "billing",
        "w1",
        50,
    )
    assert queue.max_redeliveries is None
    assert isinstance(from_url("rediss://h/0?group=g"), RedisStreamsQueue)


def test_from_url_refuses_unknown_parameters_and_bad_values() -> None:
    with pytest.raises(ValueError, match=r"unknown parameter 'grup'.*group, consumer"):
        RedisStreamsQueue.from_url("redis://h/0?grup=billing")
    with pytest.raises(ValueError, match="claim_after must be a number"):
        RedisStreamsQueue.from_url("redis://h/0?group=g&claim_after=soon")
    with pytest.raises(ValueError, match="given twice"):
        RedisStreamsQueue.from_url("redis://h/0?group=g&group=h")


def test_a_missing_group_says_what_it_is() -> None:
    with pytest.raises(ValueError, match="needs group=: the name of the app"):
        RedisStreamsQueue()
    with pytest.raises(ValueError, match=r"\?group=billing"):
        RedisStreamsQueue.from_url("redis://h/0?stream=orders")


def test_arguments_are_checked() -> None:
    with pytest.raises(TypeError, match="capacity"):
        RedisStreamsQueue(group="g", capacity=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="claim_after"):
        RedisStreamsQueue(group="g", claim_after=0)
    with pytest.raises(ValueError, match="redis://"):
        RedisStreamsQueue("http://h", group="g")
    assert RedisStreamsQueue(group="g", dedupe_window=None).group == "g"
    assert RedisStreamsQueue(group="g", retention=timedelta(hours=1)).group == "g"


async def test_a_missing_extra_names_the_install_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "coredis", None)
    queue = RedisStreamsQueue(group="g")
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'reactor-events\[redis\]'"):
        await queue.open()


def test_importing_reactor_does_not_import_coredis() -> None:
    code = "import sys, reactor, reactor.queues; print('coredis' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- apps and groups --------------------------------------------------------------------


async def test_an_app_publishes_and_handles_through_the_stream(stream: str) -> None:
    app = Reactor(queue=make(stream))
    seen: list[int] = []

    @app.subscribe("job.*")
    async def handle(event: Event) -> None:
        seen.append(event.data)

    async with app:
        for n in range(5):
            await app.publish("job.run", n)
        receipt = await app.publish_and_wait("job.run", 5)
        assert receipt.ok
    assert sorted(seen) == [0, 1, 2, 3, 4, 5]
    assert await pending_of(stream) == 0
    stats = app.stats().queue
    assert (stats.put_count, stats.get_count, stats.depth) == (6, 6, 0)


async def test_every_app_sees_every_event_and_the_processes_of_one_app_split_them(
    stream: str,
) -> None:
    billing = Reactor(queue=make(stream, "billing"))
    shipping = [Reactor(queue=make(stream, "shipping")) for _ in range(2)]
    seen: dict[str, list[int]] = {"billing": [], "shipping-0": [], "shipping-1": []}

    @billing.subscribe("job.*")
    async def bill(event: Event) -> None:
        seen["billing"].append(event.data)

    for index, app in enumerate(shipping):

        @app.subscribe("job.*", name="ship")
        async def ship(event: Event, index: int = index) -> None:
            seen[f"shipping-{index}"].append(event.data)

    async with billing, shipping[0], shipping[1]:
        for n in range(40):
            await billing.publish("job.run", n)
        await wait_for(lambda: len(seen["shipping-0"]) + len(seen["shipping-1"]) == 40)
        await wait_for(lambda: len(seen["billing"]) == 40)
    assert sorted(seen["billing"]) == list(range(40))
    assert sorted(seen["shipping-0"] + seen["shipping-1"]) == list(range(40))  # each once


async def test_a_redelivery_to_one_app_does_not_reach_the_others(stream: str) -> None:
    apps = {name: Reactor(queue=make(stream, name)) for name in ("billing", "shipping")}
    calls: list[tuple[str, int]] = []
    for name, app in apps.items():

        @app.subscribe("job.*", name="work", retry=NO_RETRY)
        async def work(event: Event, name: str = name) -> None:
            calls.append((name, event.data))
            if name == "billing" and len(calls) < 3:
                raise RuntimeError("not yet")

    async with apps["billing"], apps["shipping"]:
        await apps["billing"].publish("job.run", 1)
        await wait_for(lambda: len(calls) == 2)
        billing_queue = apps["billing"].queue
        assert isinstance(billing_queue, RedisStreamsQueue)
        await wait_for(lambda: _letter_count(billing_queue, 1))
        assert await billing_queue.replay_dead_letters() == 1
        await wait_for(lambda: len(calls) == 3)
        await wait_for(lambda: _zero_pending(stream, "shipping"))
    assert sorted(calls) == [("billing", 1), ("billing", 1), ("shipping", 1)]


async def _letter_count(queue: RedisStreamsQueue, count: int) -> bool:
    return len(await queue.dead_letters()) == count


async def test_two_queues_of_one_group_split_the_events(stream: str) -> None:
    async with make(stream, consumer="a") as first, make(stream, consumer="b") as second:
        for n in range(20):
            await first.put(event(n))
        got: dict[str, list[int]] = {"a": [], "b": []}
        with anyio.fail_after(10):
            while len(got["a"]) + len(got["b"]) < 20:
                for name, queue in (("a", first), ("b", second)):
                    if len(got["a"]) + len(got["b"]) == 20:
                        break
                    batch = await queue.get_batch(3)
                    got[name] += [item.event.data for item in batch]
                    await queue.settle(batch, [])
        assert got["a"] and got["b"]
        assert sorted(got["a"] + got["b"]) == list(range(20))


# -- claims, keepalive, progress --------------------------------------------------------


async def test_a_dead_consumers_events_are_claimed_after_claim_after(stream: str) -> None:
    dead = make(stream, consumer="dead")
    await dead.open()
    for n in range(3):
        await dead.put(event(n))
    taken = await dead.get_batch(10)
    await dead.settle([], [(taken[1], "audit")])
    await dead.close()  # without acknowledging: as if the process had died
    async with make(stream, consumer="survivor", claim_after=0.2) as survivor:
        # A queue that is only open (a dead-letter command) takes no event...
        async with await raw() as client:
            end = anyio.current_time() + 1.0
            while anyio.current_time() < end:
                entries = await client.xpending(stream, "app", "-", "+", 10)
                assert {e.consumer for e in entries} == {b"dead"}  # type: ignore[union-attr]
                await anyio.sleep(0.05)
        # ... until it is asked for events.
        with anyio.fail_after(10):
            claimed = await survivor.get_batch(10)
        assert [(r.event.data, r.attempt, r.completed) for r in claimed] == [
            (0, 2, frozenset()),
            (1, 2, frozenset({"audit"})),  # reruns only the unfinished consumers
            (2, 2, frozenset()),
        ]
        assert survivor.statistics().claimed == 3
        await survivor.settle(claimed, [])
        assert await pending_of(stream) == 0
    async with await raw() as client:  # the progress record went with the ack
        assert await client.exists([f"{stream}:progress:app"]) == 0


async def test_a_claimed_event_reruns_only_the_unfinished_consumers_in_an_app(stream: str) -> None:
    dead = make(stream, consumer="dead")
    await dead.open()
    await dead.put(event(7))
    [taken] = await dead.get_batch(10)
    await dead.settle([], [(taken, "audit")])
    await dead.close()
    app = Reactor(queue=make(stream, consumer="survivor", claim_after=0.2))
    calls: list[tuple[str, int]] = []

    for name in ("audit", "mail"):

        @app.subscribe("job.*", name=name)
        async def record(event: Event, name: str = name) -> None:
            calls.append((name, reactor.current_delivery().attempt))

    async with app:
        await wait_for(lambda: calls)
    assert calls == [("mail", 2)]


async def test_a_slow_handler_keeps_its_claim(stream: str) -> None:
    claim_after = 0.3
    slow_app = Reactor(queue=make(stream, consumer="slow", claim_after=claim_after))
    started = anyio.Event()
    release = anyio.Event()
    runs: list[str] = []

    @slow_app.subscribe("job.*", name="work", timeout=None)
    async def slow(event: Event) -> None:
        runs.append("slow")
        started.set()
        await release.wait()

    other = Reactor(queue=make(stream, consumer="other", claim_after=claim_after))

    @other.subscribe("job.*", name="work")
    async def fast(event: Event) -> None:
        runs.append("other")

    async with slow_app, other:
        await slow_app.publish("job.run", 1)
        with anyio.fail_after(10):
            await started.wait()
        # Several claim periods pass: the entry stays the slow process's, kept fresh.
        async with await raw() as client:
            end = anyio.current_time() + 5 * claim_after
            while anyio.current_time() < end:
                entries = await client.xpending(stream, "app", "-", "+", 10)
                entry = entries[0]
                assert len(entries) == 1 and isinstance(entry, StreamPendingExt)
                assert entry.consumer == b"slow"
                assert entry.idle < claim_after * 1000
                await anyio.sleep(0.05)
        release.set()
    assert runs == ["slow"]
    assert other.stats().queue.claimed == 0


# -- dead letters and poison events -----------------------------------------------------


async def test_dead_letters_are_stored_listed_replayed_and_purged(stream: str) -> None:
    queue = make(stream)
    app = Reactor(queue=queue)
    healed = False
    handled: list[int] = []

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
            await app.publish_and_wait("job.run", n)
    # Visible from another queue object (another process), while no app runs.
    async with make(stream, consumer="admin") as admin:
        letters = await admin.dead_letters()
        assert [(le.consumer, le.event and le.event.data) for le in letters] == [
            ("fragile", 1),
            ("fragile", 3),
        ]
        first = letters[0]
        assert isinstance(first.id, str)
        assert (first.error_type, first.error, first.attempts) == ("ValueError", "odd 1", 2)
        assert before <= first.first_failed_at <= first.last_failed_at
        assert first.last_failed_at - first.dead_at < timedelta(seconds=1)
        assert first.body == first.event.to_json()  # type: ignore[union-attr]
        with pytest.raises(DeadLetterNotFound):
            await admin.replay_dead_letters(["1-1"])
        with pytest.raises(ConsumerNotFound, match="fragil'"):
            await admin.purge_dead_letters(consumer="fragil")
        with pytest.raises(TypeError):
            await admin.purge_dead_letters([1])
    healed = True
    async with app:
        async with make(stream, consumer="admin") as admin:
            assert await admin.replay_dead_letters([first.id]) == 1
            assert [le.id for le in await admin.dead_letters()] == [letters[1].id]
        await wait_for(lambda: 1 in handled)
    assert handled == [0, 2, 1]  # only the replayed one, and only to its consumer
    async with make(stream, consumer="admin") as admin:
        assert await admin.dead_letters(consumer="steady") == []
        assert await admin.purge_dead_letters(consumer="fragile") == 1
        assert await admin.dead_letters() == []


async def test_redeliver_removes_the_stored_letter(stream: str) -> None:
    queue = make(stream)
    app = Reactor(queue=queue)
    fail = True

    @app.subscribe("job.*", retry=NO_RETRY)
    async def fragile(event: Event) -> None:
        if fail:
            raise RuntimeError("no")

    async with app:
        await app.publish_and_wait("job.run", 1)
        [letter] = app.dead_letters
        assert len(await queue.dead_letters()) == 1
        fail = False
        await app.redeliver(letter)
        assert (await app.publish_and_wait("job.run", 2)).ok
        assert await queue.dead_letters() == []


async def test_a_damaged_entry_is_dead_lettered_and_acknowledged(stream: str) -> None:
    async with make(stream) as queue:
        async with await raw() as client:
            await client.xadd(stream, {"e": b"{not json"})
        await queue.put(event(1))
        with anyio.fail_after(10):
            [received] = await queue.get_batch(10)
        assert received.event.data == 1
        await queue.settle([received], [])
        await wait_for(lambda: _zero_pending(stream))
        [letter] = await queue.dead_letters()
        assert (letter.event, letter.consumer, letter.body) == (None, None, b"{not json")
        with pytest.raises(DeadLetterNotFound, match="damaged"):
            await queue.replay_dead_letters([letter.id])
        assert await queue.purge_dead_letters([letter.id]) == 1


async def _zero_pending(stream: str, group: str = "app") -> bool:
    return await pending_of(stream, group) == 0


async def test_a_poison_event_is_dead_lettered_past_max_redeliveries(stream: str) -> None:
    # A process that dies with the event each time: here, one that never settles it.
    for _ in range(3):
        async with make(stream, consumer="w", max_redeliveries=1) as queue:
            if queue.statistics().depth == 0:
                await queue.put(event(1))
            with anyio.fail_after(10):
                [received] = await queue.get_batch(10)
    assert received.attempt == 3  # the server's delivery count, raised before handing out
    app = Reactor(queue=make(stream, consumer="w", max_redeliveries=1))
    calls: list[int] = []

    @app.subscribe("job.*", name="work")
    async def work(event: Event) -> None:
        calls.append(event.data)

    async with app:
        await wait_for(_zero_pending_fn(stream))
    assert calls == []
    [letter] = await _letters(stream)
    assert letter.error_type == "reactor.RedeliveryLimitExceeded"
    assert letter.consumer == "work"
    assert RedeliveryLimitExceeded.__name__ in letter.error_type


def _zero_pending_fn(stream: str) -> Any:
    return lambda: _zero_pending(stream)


async def _letters(stream: str) -> list[reactor.StoredDeadLetter]:
    async with make(stream, consumer="admin") as admin:
        return await admin.dead_letters()


# -- dedupe, trimming, replay, statistics ------------------------------------------------


async def test_the_dedupe_window_drops_a_second_publish_of_the_same_event(stream: str) -> None:
    async with make(stream) as queue:
        first = event(1)
        await queue.put(first)
        await queue.put(first)  # a producer's retry
        await queue.put_many([first, event(2)])
        assert queue.duplicates == 2
        with anyio.fail_after(10):
            got = await queue.get_batch(10)
        assert [r.event.data for r in got] == [1, 2]
    other = unique_stream("nodedupe")
    try:
        async with make(other, dedupe_window=0) as queue:
            await queue.put(first)
            await queue.put(first)
            with anyio.fail_after(10):
                got = [*await queue.get_batch(10)]
                while len(got) < 2:
                    got += await queue.get_batch(10)
            assert queue.duplicates == 0
    finally:
        await delete_stream(services.url("redis"), other)


async def test_the_apps_dedupe_window_replaces_the_queues_and_is_counted(stream: str) -> None:
    """Reactor(dedupe=...) on the Redis queue: the server keeps the keys (SET NX PX with
    the append), for every process and across a restart; the app counts what it drops."""
    handled: list[str] = []

    def app_on_the_stream() -> Reactor:
        # dedupe_window=0: the queue alone would not deduplicate; the app's window rules.
        app = Reactor(queue=make(stream, dedupe_window=0), dedupe=timedelta(minutes=5))

        @app.subscribe("job.run")
        async def work(event: Event) -> None:
            handled.append(event.id)

        return app

    first, second, third = (Event(type="job.run", source="/test", id=f"job-{n}") for n in (1, 2, 3))
    app = app_on_the_stream()
    async with app:
        await app.publish(first)
        await app.publish(first)
        await app.publish_many([first, second, second])
        receipt = await app.publish_and_wait(second)
        assert receipt.duplicate and not receipt.outcomes
        app.publish_nowait(first)  # dropped when its batch is sent
        await app.publish(third)
    assert sorted(handled) == ["job-1", "job-2", "job-3"]
    assert app.stats().deduplicated == 5
    assert app.stats().queue.deduplicated == 5
    restarted = app_on_the_stream()
    async with restarted:
        await restarted.publish(first)  # a producer's retry after the restart
        with pytest.raises(reactor.DuplicateEvent):
            await restarted.queue.put(second)
    assert sorted(handled) == ["job-1", "job-2", "job-3"]
    assert restarted.stats().deduplicated == 2


async def test_a_redelivered_dead_letter_is_not_taken_for_a_duplicate(stream: str) -> None:
    app = Reactor(queue=make(stream))
    handled: list[str] = []
    fail = True

    @app.subscribe("job.*", retry=NO_RETRY)
    async def fragile(event: Event) -> None:
        handled.append(event.id)
        if fail:
            raise RuntimeError("not yet")

    async with app:
        await app.publish_and_wait(Event(type="job.run", source="/test", id="job-1"))
        [letter] = app.dead_letters
        fail = False
        await app.redeliver(letter)  # within the dedupe window of the publication
        await app.publish_and_wait("job.run", 2)
    assert handled[:2] == ["job-1", "job-1"]


async def test_acknowledged_entries_are_trimmed_once_every_group_is_past_them(
    stream: str,
) -> None:
    async with make(stream, "fast") as fast, make(stream, "slow") as slow:
        for n in range(5):
            await fast.put(event(n))
        with anyio.fail_after(10):
            await fast.settle(await fast.get_batch(10), [])
        async with await raw() as client:
            # The slow group has not read them: they stay.
            await wait_for(lambda: _zero_pending(stream, "fast"))
            assert await client.xlen(stream) == 5
            with anyio.fail_after(10):
                batch = await slow.get_batch(2)
            await slow.settle(batch, [])

            async def trimmed_to(length: int) -> bool:
                return await client.xlen(stream) == length

            await wait_for(lambda: trimmed_to(3))
            with anyio.fail_after(10):
                await slow.settle(await slow.get_batch(10), [])
            await wait_for(lambda: trimmed_to(0))


async def test_retention_keeps_acknowledged_events_for_replay_by_time_window(
    stream: str,
) -> None:
    queue = make(stream, retention=3600)
    app = Reactor(queue=queue)
    seen: list[tuple[str, int]] = []
    for name in ("a", "b"):

        @app.subscribe("job.*", name=name)
        async def record(event: Event, name: str = name) -> None:
            seen.append((name, event.data))

    before = datetime.now(UTC)
    async with app:
        for n in range(3):
            await app.publish_and_wait("job.run", n)
        # Entry ids (publish times) have a millisecond's precision: *middle* is in a
        # millisecond of its own, between the events before it and the one after it.
        middle = await _next_millisecond()
        await _next_millisecond()
        await app.publish_and_wait("job.run", 3)
        await wait_for(lambda: _zero_pending(stream))  # every ack stored
        seen.clear()
        with pytest.raises(ConsumerNotFound):
            await queue.replay(before, consumers=["c"])
        with pytest.raises(ValueError, match=r"naive|aware"):
            await queue.replay(datetime.now())
        assert await queue.replay(before, until=middle, consumers=["b"]) == 3
        await wait_for(lambda: len(seen) == 3)
        assert seen == [("b", 0), ("b", 1), ("b", 2)]
        seen.clear()
        assert await queue.replay(middle) == 1  # to every consumer
        await wait_for(lambda: len(seen) == 2)
        assert sorted(seen) == [("a", 3), ("b", 3)]
        # Replays are not publications: a second replay of the window replays the same.
        seen.clear()
        assert await queue.replay(middle) == 1
        await wait_for(lambda: len(seen) == 2)


async def _next_millisecond() -> datetime:
    """Wait for the clock to enter a new millisecond; return the time then."""
    start = datetime.now(UTC)
    while (now := datetime.now(UTC)) < start.replace(
        microsecond=start.microsecond // 1000 * 1000
    ) + timedelta(milliseconds=1):
        await anyio.lowlevel.checkpoint()
    return now


async def test_statistics_show_the_groups_lag_pending_and_claims(stream: str) -> None:
    async with make(stream, consumer="a") as reader, make(stream, consumer="b") as writer:
        for n in range(6):
            await writer.put(event(n))
        assert writer.statistics().depth == 6  # published, not read by the group yet
        with anyio.fail_after(10):
            batch = await reader.get_batch(2)
        await wait_for(lambda: reader.statistics().lag == 4 and reader.statistics().pending == 2)
        await wait_for(lambda: writer.statistics().depth == 4)  # learnt from the group
        assert reader.statistics().depth == 0
        assert reader.statistics().claimed == 0
        await reader.settle(batch, [])
        await wait_for(lambda: reader.statistics().pending == 0)


async def test_put_waits_while_the_groups_backlog_is_at_capacity(stream: str) -> None:
    async with make(stream, capacity=3) as queue:
        for n in range(3):
            await queue.put(event(n))
        stored = anyio.Event()

        async def put() -> None:
            await queue.put(event(3))
            stored.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(put)
            await anyio.wait_all_tasks_blocked()
            assert queue.statistics().waiting_publishers == 1
            with anyio.fail_after(10):
                await queue.get_batch(1)
                await stored.wait()
        assert queue.statistics().depth == 3


# -- connection loss and server restarts --------------------------------------------------


async def test_cut_connections_are_reconnected_and_nothing_is_lost(
    stream: str, caplog: pytest.LogCaptureFixture
) -> None:
    group = f"cut-{stream.rsplit(':', 1)[1]}"
    app = Reactor(queue=make(stream, group))
    seen: set[int] = set()

    @app.subscribe("job.*")
    async def handle(event: Event) -> None:
        seen.add(event.data)

    async with app, await raw() as admin:
        for n in range(50):
            await app.publish("job.run", n)
            if n in (10, 30):
                await _kill_clients(admin, f"reactor:{group}:")
        await wait_for(lambda: len(seen) == 50)
    assert seen == set(range(50))
    assert await pending_of(stream, group) == 0


async def _kill_clients(admin: coredis.Redis[bytes], prefix: str) -> None:
    """Cut the connections whose client name begins with *prefix* (the test's own)."""
    for client in await admin.client_list():
        if str(client.get("name", "")).startswith(prefix):
            await admin.client_kill(identifier=int(client["id"]))


async def test_events_of_a_reply_lost_with_its_connection_are_taken_back(stream: str) -> None:
    group = f"lost-{stream.rsplit(':', 1)[1]}"
    async with make(stream, group, consumer="w") as queue, await raw() as admin:
        await queue.put(event(0))
        with anyio.fail_after(10):
            await queue.settle(await queue.get_batch(10), [])
        await queue.put(event(1))
        # The server hands event 1 to the consumer "w" in a reply the queue never sees.
        await admin.xreadgroup(group, "w", {stream: ">"}, count=1)
        got: list[Received] = []
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:

                async def get() -> None:
                    got.extend(await queue.get_batch(10))

                tg.start_soon(get)
                await anyio.wait_all_tasks_blocked()  # reading, in the server
                await _kill_clients(admin, f"reactor:{group}:")
        assert [(r.event.data, r.attempt) for r in got] == [(1, 1)]
        await queue.settle(got, [])
        assert await pending_of(stream, group) == 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class OwnRedis:
    """A redis-server of the test's own, with an append-only file, that it may stop."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
        )
        for _ in range(200):
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.1):
                    return
            except OSError:
                import time

                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = OwnRedis(tmp_path)
    server.start()
    yield server
    server.stop()
    # coredis 6.9 leaves the anyio memory streams of a connection attempt that failed
    # unclosed (a ResourceWarning when collected): collect them here, where the tests
    # that stop their server ignore that warning.
    gc.collect()


#: The warning of coredis's leak above, ignored by the tests that stop their server.
CONNECT_LEAK = pytest.mark.filterwarnings("ignore:Unclosed <MemoryObject:ResourceWarning")


def _outage_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "reactor.queues.redis"
        and r.levelno == logging.WARNING
        and "does not answer" in r.getMessage()
    ]


@CONNECT_LEAK
async def test_publishes_fail_after_publish_timeout_while_the_server_is_down(
    own_redis: OwnRedis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "reactor.queues.redis")
    queue = RedisStreamsQueue(own_redis.url, group="app", publish_timeout=0.3)
    async with queue:
        await queue.put(event(0))
        own_redis.stop()
        with anyio.fail_after(10), pytest.raises(QueueUnavailableError, match="did not answer"):
            await queue.put(event(1))
        stats = queue.statistics()
        assert stats.errors >= 1 and stats.last_error is not None
        own_redis.start()
        with anyio.fail_after(10):
            await queue.put(event(2))
            got = [r.event.data for r in await queue.get_batch(10)]
        assert got == [0, 2]
        assert queue.statistics().last_error is None
    assert len(_outage_warnings(caplog)) == 1
    assert any("answers again" in r.getMessage() for r in caplog.records)
    gc.collect()  # see own_redis()


@CONNECT_LEAK
async def test_a_server_restart_mid_stream_loses_nothing_acknowledged(
    own_redis: OwnRedis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "reactor.queues.redis")
    app = Reactor(queue=RedisStreamsQueue(own_redis.url, group="app", publish_timeout=30))
    seen: set[int] = set()

    @app.subscribe("job.*")
    async def handle(event: Event) -> None:
        seen.add(event.data)

    async with app:
        for n in range(20):
            await app.publish("job.run", n)
        await wait_for(lambda: len(seen) == 20)
        own_redis.stop()
        async with anyio.create_task_group() as tg:
            # Publishes during the outage wait for the server, then succeed.
            for n in range(20, 30):
                tg.start_soon(app.publish, "job.run", n)
            await anyio.wait_all_tasks_blocked()
            own_redis.start()
        await wait_for(lambda: len(seen) == 30, limit=30)
    assert seen == set(range(30))
    assert len(_outage_warnings(caplog)) == 1
