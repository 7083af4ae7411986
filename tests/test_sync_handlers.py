"""subscribe(..., run_in_thread=True): plain ``def`` handlers run in worker threads."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import anyio
import anyio.to_thread
import attrs
import pytest

import reactor
from reactor import Backoff, DeliveryTimeout, Event, Reactor, Receipt, Retry
from reactor.abc import DeadLetterStore
from reactor.queues.sqlite import SQLiteQueue
from reactor.testing import VirtualClock

pytestmark = pytest.mark.anyio

START = datetime(2026, 1, 1, tzinfo=UTC)
NO_WAIT = Backoff(initial=0.0, maximum=0.0, jitter=False)
#: Real seconds a regression may hang before it fails (not a timing threshold).
PATIENCE = 10


@pytest.fixture(params=["memory", "sqlite"])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Reactor:
    retry = Retry(attempts=2, backoff=NO_WAIT)
    if request.param == "sqlite":
        return Reactor(queue=SQLiteQueue(tmp_path / "events.db"), retry=retry)
    return Reactor(retry=retry)


async def wait_in_thread(flag: threading.Event) -> None:
    """Wait for *flag*, set by a worker thread, without blocking the event loop."""
    await anyio.to_thread.run_sync(flag.wait, abandon_on_cancel=True)


@attrs.frozen
class Job:
    n: int


async def test_a_plain_def_handler_runs_in_a_worker_thread(app: Reactor) -> None:
    loop_thread = threading.get_ident()
    seen: list[tuple[str, object, bool, str]] = []

    @app.subscribe("job", run_in_thread=True)
    def plain(event: Event) -> None:
        delivery = reactor.current_delivery()  # the context is the handler's, in the thread
        seen.append(("plain", event.data, threading.get_ident() != loop_thread, delivery.consumer))

    @app.subscribe("job", data=Job, run_in_thread=True)
    def typed(job: Job) -> None:
        seen.append(("typed", job, threading.get_ident() != loop_thread, "typed"))

    async with app:
        receipt = await app.publish_and_wait("job", {"n": 1})
    assert receipt.ok
    assert sorted(seen, key=str) == [
        ("plain", {"n": 1}, True, "plain"),
        ("typed", Job(n=1), True, "typed"),
    ]


async def test_a_failing_plain_handler_is_retried_then_dead_lettered(app: Reactor) -> None:
    calls: list[int] = []

    @app.subscribe("job", name="broken", run_in_thread=True)
    def broken(event: Event) -> None:
        calls.append(reactor.current_delivery().retries)
        raise ValueError(f"cannot do job {event.data}")

    async with app:
        receipt = await app.publish_and_wait("job", 3)
        queue = app.queue
        stored = await queue.dead_letters() if isinstance(queue, DeadLetterStore) else []
    assert calls == [0, 1]
    outcome = receipt.outcomes["broken"]
    assert (outcome.status, outcome.attempts, str(outcome.error)) == (
        "failed",
        2,
        "cannot do job 3",
    )
    [letter] = app.dead_letters
    assert (letter.consumer, letter.attempts, letter.error) == ("broken", 2, outcome.error)
    if app.queue.stores_dead_letters:
        [row] = stored
        assert (row.error_type, row.error, row.attempts) == ("ValueError", "cannot do job 3", 2)


async def test_a_plain_handler_that_times_out_is_abandoned_and_retried() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    first_started = threading.Event()
    release_first = threading.Event()
    first_ended = threading.Event()
    results: list[str] = []

    @app.subscribe(
        "job",
        name="slow",
        timeout=5.0,
        retry=Retry(attempts=2, backoff=NO_WAIT),
        run_in_thread=True,
    )
    def slow(event: Event) -> str:
        if reactor.current_delivery().retries == 0:
            first_started.set()
            try:
                release_first.wait()
                raise RuntimeError("the abandoned attempt's failure, ignored")
            finally:
                first_ended.set()
        results.append("second attempt")
        return "done"

    receipts: list[Receipt] = []
    with anyio.fail_after(PATIENCE):
        async with app, anyio.create_task_group() as tg:

            async def publish() -> None:
                receipts.append(await app.publish_and_wait("job"))

            tg.start_soon(publish)
            await wait_in_thread(first_started)
            await clock.advance(5.0)  # the first attempt's timeout: its thread is abandoned
            await anyio.wait_all_tasks_blocked()
            await clock.advance(0.0)  # (the retry's backoff is no wait)
            while not receipts:
                await anyio.wait_all_tasks_blocked()
                await clock.advance(0.0)
            # The retry has succeeded while the first thread still runs.
            assert not first_ended.is_set()
            release_first.set()
            await wait_in_thread(first_ended)
    [receipt] = receipts
    outcome = receipt.outcomes["slow"]
    assert (outcome.status, outcome.attempts) == ("ok", 2)
    assert results == ["second attempt"]
    assert list(app.dead_letters) == []
    stats = app.stats().subscriptions["slow"]
    assert (stats.timed_out, stats.retried, stats.delivered, stats.dead_lettered) == (1, 1, 1, 0)


async def test_a_plain_handler_that_keeps_timing_out_is_dead_lettered() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    started = threading.Event()
    release = threading.Event()

    @app.subscribe("job", name="stuck", timeout=5.0, run_in_thread=True)
    def stuck(event: Event) -> None:
        started.set()
        release.wait()

    receipts: list[Receipt] = []
    with anyio.fail_after(PATIENCE):
        async with app, anyio.create_task_group() as tg:

            async def publish() -> None:
                receipts.append(await app.publish_and_wait("job"))

            tg.start_soon(publish)
            await wait_in_thread(started)
            await clock.advance(5.0)
            while not receipts:
                await anyio.wait_all_tasks_blocked()
            release.set()
    [receipt] = receipts
    outcome = receipt.outcomes["stuck"]
    assert outcome.status == "timed_out"
    assert isinstance(outcome.error, DeliveryTimeout)
    [letter] = app.dead_letters
    assert isinstance(letter.error, DeliveryTimeout)


async def test_the_app_bounds_the_threads_its_handlers_use_at_once() -> None:
    app = Reactor(max_threads=2)
    lock = threading.Lock()
    running = 0
    most = 0
    two_running = threading.Event()
    gate = threading.Event()

    def work(event: Event) -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
            if running == 2:
                two_running.set()
        gate.wait()
        with lock:
            running -= 1

    # Two subscriptions, each free to run 5 deliveries at once: the app's bound holds
    # over both.
    app.subscribe("job", work, name="a", concurrency=5, run_in_thread=True)
    app.subscribe("job", work, name="b", concurrency=5, run_in_thread=True)
    with anyio.fail_after(PATIENCE):
        async with app:
            for n in range(5):
                await app.publish("job", n)
            # The app's limiter is its own: a thread of anyio's default one still runs.
            await wait_in_thread(two_running)
            await anyio.wait_all_tasks_blocked()
            assert running == 2
            gate.set()
    assert most == 2
    stats = app.stats()
    assert (stats.delivered, stats.failed) == (10, 0)


def test_a_plain_def_handler_needs_run_in_thread() -> None:
    app = Reactor()

    def plain(event: Event) -> None: ...

    async def coroutine(event: Event) -> None: ...

    with pytest.raises(TypeError, match=r"define it with `async def`.*or pass run_in_thread=True"):
        app.subscribe("job", plain)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="run_in_thread=True is for plain `def` handlers"):
        app.subscribe("job", coroutine, run_in_thread=True)
    with pytest.raises(TypeError, match="run_in_thread must be a bool"):
        app.subscribe("job", plain, run_in_thread=1)  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="max_threads"):
        Reactor(max_threads=0)
    assert app.subscriptions == ()
    sub = app.subscribe("job", plain, run_in_thread=True)
    assert (cast(object, sub.handler), sub.run_in_thread, sub.data) == (plain, True, None)
