"""The broker queues as users run them: the README's commands, and a publishing app.

Each test runs against the loopback Redis and NATS servers (``tests/services.py``), on a
stream of its own that it deletes at the end.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import nats_tools
import pytest
import redis_helpers
import services

from reactor import Event, Reactor
from reactor.queues import from_url

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    """asyncio: the NATS client runs there natively (trio is covered by each queue's tests)."""
    return "asyncio"


@pytest.fixture(params=["redis", "nats"])
async def queue_url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """The URL of a queue of group ``billing`` on a stream of its own."""
    broker: str = request.param
    server = services.require(broker)
    stream = f"apptest{secrets.token_hex(5)}"
    separator = "&" if "?" in server else "?"
    yield f"{server}{separator}stream={stream}&group=billing"
    if broker == "redis":
        await redis_helpers.delete_stream(server, stream)
    else:
        await nats_tools.delete_streams(server, stream)


async def test_an_app_without_subscriptions_takes_none_of_its_groups_events(
    queue_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    handled: list[int] = []
    all_handled = anyio.Event()
    worker = Reactor(queue=from_url(queue_url + "&consumer=worker"))

    @worker.subscribe("order.placed")
    async def bill(event: Event) -> None:
        handled.append(event.data)
        if len(handled) == 50:
            all_handled.set()

    # Its stop waits until the group has read what it published, and no longer.
    publisher = Reactor(queue=from_url(queue_url + "&consumer=publisher"), graceful_timeout=10)
    async with worker, publisher:
        for number in range(50):
            await publisher.publish("order.placed", number, source="/shop")
        with anyio.fail_after(30):
            await all_handled.wait()
    assert sorted(handled) == list(range(50))
    assert "not drained" not in caplog.text


def _start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:  # the child has its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "reactor", "run", "examples.orders:app"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def test_the_readmes_commands_share_the_orders_between_two_workers(
    queue_url: str, tmp_path: Path
) -> None:
    env = {**os.environ, "REACTOR_QUEUE": queue_url, "PYTHONUNBUFFERED": "1"}
    logs = [tmp_path / "worker1.log", tmp_path / "worker2.log"]
    workers = [_start_worker(env, log) for log in logs]
    try:
        with anyio.fail_after(30):  # both workers are up (they log that the app runs)
            while not all(b"running" in log.read_bytes() for log in logs):
                for worker in workers:
                    assert worker.poll() is None, b"".join(log.read_bytes() for log in logs)
                await anyio.sleep(0.05)
        producer = await anyio.run_process(
            [sys.executable, "examples/orders.py", "200"], cwd=ROOT, env=env, check=False
        )
        assert producer.returncode == 0, producer.stderr.decode()
        with anyio.fail_after(30):
            while True:
                lines = [
                    line
                    for log in logs
                    for line in log.read_text().splitlines()
                    if line.startswith("worker ")
                ]
                if len(lines) >= 400:
                    break
                await anyio.sleep(0.05)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGINT)
        statuses = [worker.wait(timeout=30) for worker in workers]
    assert statuses == [0, 0]
    billed = Counter(line.split()[-1] for line in lines if "billed" in line)
    confirmed = Counter(line.split()[-1] for line in lines if "confirmed" in line)
    assert billed == confirmed == Counter(str(number) for number in range(200))
    # Each order went to one worker, which ran both subscriptions.
    by_worker = {line.split()[-1]: line.split()[1] for line in lines if "billed" in line}
    for line in lines:
        if "confirmed" in line:
            assert line.split()[1] == by_worker[line.split()[-1]]


async def test_batches_debounce_and_rate_limits_on_a_broker(queue_url: str) -> None:
    from reactor import Batch, BatchFailed, RateLimit, Retry

    batches: list[list[int]] = []
    debounced: list[int] = []
    limited: list[int] = []
    app = Reactor(queue=from_url(queue_url), graceful_timeout=10)

    @app.subscribe("m", batch=Batch(max_size=4, max_wait=0.05), retry=Retry(attempts=1))
    async def batch(events: list[Event]) -> None:
        batches.append(sorted(event.data for event in events))
        failed = [event for event in events if event.data == 3]
        if failed:
            raise BatchFailed(failed)

    @app.subscribe("m", debounce=0.05)
    async def last(event: Event) -> None:
        debounced.append(event.data)

    @app.subscribe("m", rate_limit=RateLimit(200, burst=2))
    async def limit(event: Event) -> None:
        limited.append(event.data)

    async with app:
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for number in range(8):
                    tg.start_soon(app.publish_and_wait, "m", number)
        stats = app.stats()
    assert sorted(number for numbers in batches for number in numbers) == list(range(8))
    assert len(debounced) == 1  # one key: the app's source, and no subject
    assert sorted(limited) == list(range(8))
    assert [letter.event.data for letter in app.dead_letters] == [3]
    assert stats.subscriptions["last"].debounced == 7
    assert stats.subscriptions["limit"].rate_limited >= 6
    assert stats.in_flight == 0  # every event settled, the skipped ones too
