"""The HTTP ingress behind a real uvicorn server on 127.0.0.1, publishing into SQLiteQueue.

What a client sees over a socket when the durable queue refuses an event: never a 500,
never half a batch. uvicorn runs on asyncio only, so these tests do too; the client is
a few lines of HTTP/1.1 over an anyio socket.
"""

from __future__ import annotations

import json
import socket
import sqlite3
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from reactor import Event, Reactor
from reactor.queues.sqlite import SQLiteQueue
from reactor.testing import Capture

uvicorn = pytest.importorskip("uvicorn")

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio"])]

BATCH = {"content-type": "application/cloudevents-batch+json"}


@dataclass
class Answer:
    """An HTTP response as read from the socket."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        assert self.headers["content-type"] == "application/json"
        return json.loads(self.body)


@asynccontextmanager
async def serving(app: Reactor) -> AsyncIterator[int]:
    """Serve ``app.asgi`` with uvicorn on 127.0.0.1 while the app runs; yield the port."""
    # The socket listens before uvicorn starts: a client may connect at once and is
    # served as soon as the server runs, so no readiness polling is needed.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port: int = sock.getsockname()[1]
    config = uvicorn.Config(app.asgi, lifespan="off", log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    with sock:
        async with app, anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            try:
                yield port
            finally:
                server.should_exit = True


async def post(port: int, body: bytes, headers: Mapping[str, str]) -> Answer:
    """POST *body* to ``/`` and read the whole answer (the connection is closed after)."""
    head = [
        "POST / HTTP/1.1",
        f"host: 127.0.0.1:{port}",
        f"content-length: {len(body)}",
        "connection: close",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    request = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
    with anyio.fail_after(20):
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            await stream.send(request)
            chunks = []
            try:
                while True:
                    chunks.append(await stream.receive())
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                pass
    raw = b"".join(chunks)
    head_bytes, _, payload = raw.partition(b"\r\n\r\n")
    status_line, *lines = head_bytes.decode("latin-1").split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines)
    return Answer(int(status_line.split()[1]), {k.lower(): v for k, v in fields.items()}, payload)


def stored_rows(path: Path) -> int:
    """How many events the queue's file holds (acknowledged ones are kept: retention)."""
    with sqlite3.connect(path) as conn:
        (count,) = conn.execute("SELECT count(*) FROM reactor_events").fetchone()
    assert isinstance(count, int)
    return count


def durable_app(path: Path, **options: Any) -> tuple[Reactor, Capture]:
    app = Reactor(queue=SQLiteQueue(path, retention=3600, **options))
    capture = Capture()
    app.subscribe("*", capture, name="capture")
    return app, capture


async def test_a_batch_with_a_bad_third_event_stores_nothing(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    app, capture = durable_app(path, max_event_size=2000)
    good = [Event(type="good", source="/s", id=f"good{n}", data={"n": n}) for n in (1, 2)]
    bad = Event(type="bad", source="/s", id="bad", data="x" * 5000)  # over max_event_size
    async with serving(app) as port:
        answer = await post(port, Event.batch_to_json([*good, bad]), BATCH)
        assert answer.status == 413
        assert "limit of 2000 bytes" in answer.json["error"]
        assert "event 2 of the batch (id 'bad')" in answer.json["error"]
        # A marker published after: whatever the batch stored would be delivered first.
        marker = Event(type="marker", source="/s", id="marker")
        headers, body = marker.to_http()
        assert (await post(port, body, headers)).status == 202
        with anyio.fail_after(10):
            received = await capture.wait_for(1)
        assert [event.id for event in received] == ["marker"]
        stats = app.stats()
        assert stats.published == 1
        assert stats.queue.put_count == 1
        # The whole batch, resent once the client fixed it, goes in as one.
        fixed = Event.batch_to_json([*good, Event(type="bad", source="/s", id="fixed")])
        assert (await post(port, fixed, BATCH)).json == {"ids": ["good1", "good2", "fixed"]}
        with anyio.fail_after(10):
            received = await capture.wait_for(4)
    assert [event.id for event in received] == ["marker", "good1", "good2", "fixed"]
    assert stored_rows(path) == 4


async def test_a_binary_body_over_the_queues_event_size_is_413(tmp_path: Path) -> None:
    # 800,000 bytes fit the ingress's 1 MiB max_body but not SQLite's 1 MiB events once
    # base64-encoded in the stored JSON.
    path = tmp_path / "events.db"
    app, capture = durable_app(path)
    headers = {
        "ce-specversion": "1.0",
        "ce-id": "big",
        "ce-source": "/s",
        "ce-type": "big",
        "content-type": "application/octet-stream",
    }
    async with serving(app) as port:
        answer = await post(port, b"\x00" * 800_000, headers)
        assert answer.status == 413
        assert "limit" in answer.json["error"]
        assert "batch" not in answer.json["error"]  # one event, not a batch's
        assert app.stats().queue.put_count == 0
    assert stored_rows(path) == 0
    assert capture.events == []


@pytest.mark.parametrize(
    "body",
    [
        b'{"specversion":"1.0","id":"\\ud800","source":"/s","type":"t"}',
        b'{"specversion":"1.0","id":"1","source":"/s","type":"t","data":"\\udfff"}',
        b'{"specversion":"1.0","id":"1","source":"/s","type":"t","ext":"a\\ud800"}',
    ],
)
async def test_lone_surrogates_are_400(tmp_path: Path, body: bytes) -> None:
    path = tmp_path / "events.db"
    app, _ = durable_app(path)
    async with serving(app) as port:
        answer = await post(port, body, {"content-type": "application/cloudevents+json"})
        assert answer.status == 400
        assert "surrogate" in answer.json["error"]
        batch = b"[" + Event(type="t", source="/s").to_json() + b"," + body + b"]"
        answer = await post(port, batch, BATCH)
        assert answer.status == 400
        assert app.stats().queue.put_count == 0
    assert stored_rows(path) == 0


async def test_a_full_durable_queue_is_503_with_retry_after(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    app = Reactor(queue=SQLiteQueue(path, capacity=2), max_in_flight=1)
    gate = anyio.Event()

    async def held(event: Event) -> None:
        await gate.wait()

    app.subscribe("*", held, concurrency=1)
    batch = Event.batch_to_json([Event(type="t", source="/s") for _ in range(2)])
    async with serving(app) as port:
        assert (await post(port, batch, BATCH)).status == 202
        await anyio.wait_all_tasks_blocked()
        # One event is held by the handler; one waits in the queue: room for one more.
        refused = await post(port, batch, BATCH)
        assert refused.status == 503
        assert refused.headers["retry-after"] == "1"
        assert "full" in refused.json["error"]
        assert app.stats().queue.put_count == 2
        gate.set()
