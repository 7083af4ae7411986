"""``reactor dead-letters`` and ``reactor run --queue`` against the real broker queues.

An app runs on the loopback Redis (or NATS) server with a consumer that fails some
orders; the commands, run in-process in a worker thread while that app still runs, list
the dead letters the broker keeps, replay one (the running app handles it at once) and
purge the rest. Each test uses a stream of its own and deletes it at the end.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest
import services

from reactor import Event, Reactor
from reactor._cli import main
from reactor.queues import from_url

ROOT = Path(__file__).resolve().parents[1]
BROKERS = ["redis", "nats"]


@pytest.fixture
def anyio_backend() -> str:
    """asyncio only: the commands run their own event loop, and nats-py is asyncio's."""
    return "asyncio"


async def delete_redis_stream(url: str, stream: str) -> None:
    """Delete *stream* and every key the queue keeps beside it (``<stream>:*``)."""
    import coredis

    async with coredis.Redis.from_url(url, decode_responses=False) as client:
        keys: list[str | bytes] = [stream]
        keys.extend([key async for key in client.scan_iter(match=f"{stream}:*", count=1000)])
        await client.delete(keys)


async def delete_nats_streams(url: str, stream: str) -> None:
    """Delete the JetStream streams and KV buckets whose names start with *stream*."""
    import nats

    client = await nats.connect(url)
    try:
        js = client.jetstream()
        for info in await js.streams_info():
            name = info.config.name or ""
            if stream in name:
                await js.delete_stream(name)
    finally:
        await client.close()


@pytest.fixture(params=BROKERS)
def queue_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of a queue on a stream of its own, on the broker's loopback server."""
    broker: str = request.param
    pytest.importorskip(f"reactor.queues.{broker}", reason=f"no {broker} queue in this tree")
    server = services.require(broker)
    # Short names: a JetStream stream name may not hold every character a Redis key may.
    stream = f"clitest{secrets.token_hex(5)}"
    yield f"{server}?stream={stream}&group=shop"
    if broker == "redis":
        anyio.run(delete_redis_stream, server, stream)
    else:
        anyio.run(delete_nats_streams, server, stream)


def command(*args: str) -> Callable[[], tuple[int, str, str]]:
    """``reactor ARGS...`` as a function for a worker thread; returns status, out, err."""

    def run() -> tuple[int, str, str]:
        import contextlib
        import io

        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
        return code, out.getvalue(), err.getvalue()

    return run


@pytest.mark.anyio
async def test_dead_letter_commands_while_the_app_runs(queue_url: str) -> None:
    app = Reactor()
    app.use_queue(from_url(queue_url))
    replayed = anyio.Event()
    seen: list[tuple[str, int]] = []

    @app.subscribe("order.*", name="billing")
    async def bill(event: Event) -> None:
        seen.append((event.id, event.data["n"]))
        if len(seen) > 3 and event.id == "o1":
            replayed.set()
        elif event.data["n"] % 2:
            raise ValueError(f"order {event.data['n']} is odd")

    with anyio.fail_after(60):
        async with app:
            for n in range(4):
                await app.publish_and_wait("order.created", {"n": n}, id=f"o{n}")

            # Another process's view: the commands open the queue themselves.
            code, out, err = await anyio.to_thread.run_sync(
                command("dead-letters", "list", "--queue", queue_url, "--json")
            )
            assert (code, err) == (0, "")
            letters: list[dict[str, Any]] = [json.loads(line) for line in out.splitlines()]
            assert [(letter["consumer"], letter["event"]["id"]) for letter in letters] == [
                ("billing", "o1"),
                ("billing", "o3"),
            ]
            assert letters[0]["error_type"] == "ValueError"
            assert letters[0]["error"] == "order 1 is odd"

            code, out, err = await anyio.to_thread.run_sync(
                command("dead-letters", "list", "--queue", queue_url)
            )
            assert code == 0, err
            assert str(letters[0]["id"]) in out

            code, out, err = await anyio.to_thread.run_sync(
                command(
                    "dead-letters", "replay", "--queue", queue_url, "--id", str(letters[0]["id"])
                )
            )
            assert (code, err) == (0, "")
            assert out.startswith("replayed 1 dead letter")
            await replayed.wait()  # the running app handled the replayed event

            for unknown in ("99-0", "123"):
                # Either an id of the queue's kind that names no letter (status 1), or
                # one of the other kind (a number for Redis, a string for NATS: 2).
                code, out, err = await anyio.to_thread.run_sync(
                    command("dead-letters", "purge", "--queue", queue_url, "--id", unknown)
                )
                assert code in (1, 2), err
                assert out == ""
                assert err.startswith("reactor: error: ")
                assert unknown in err

            code, out, err = await anyio.to_thread.run_sync(
                command("dead-letters", "purge", "--queue", queue_url, "--all")
            )
            assert (code, out, err) == (0, "purged 1 dead letter\n", "")
    assert seen.count(("o1", 1)) == 2


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_run_on_the_broker_queue_named_by_url(queue_url: str) -> None:
    # cliapp_queue's module builds the app on a memory queue of capacity 7; its handler
    # prints the queue it ran on. Stopped by SIGTERM once it handled its one event.
    broker = "RedisStreamsQueue" if queue_url.startswith("redis") else "NatsJetStreamQueue"
    env = {k: v for k, v in os.environ.items() if not k.startswith("REACTOR_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "reactor", "run", "--app-dir=tests/apps", "cliapp_queue:app"],
        cwd=ROOT,
        env={**env, "REACTOR_QUEUE": queue_url, "PYTHONUNBUFFERED": "1"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines: list[str] = []
    try:
        for line in process.stdout:
            lines.append(line)
            if line.startswith("handled "):
                process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(60)
        process.stdout.close()
    output = "".join(lines)
    assert code == 0, output
    assert f"handled job-1 on {broker} capacity=" in output
    assert "capacity=7" not in output
