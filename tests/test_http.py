"""The HTTP ingress, through real ASGI calls on asyncio and trio.

Requests are hand-built ASGI scopes with ``receive`` and ``send`` callables, so no HTTP
client or server is needed; one test mounts the ingress in Starlette when it is
installed. CloudEvents requests are also built by the official CloudEvents SDK, and
signatures are checked against the Standard Webhooks published test vector.
"""

from __future__ import annotations

import base64
import inspect
import itertools
import json
import logging
import pydoc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import anyio
import attrs
import pytest
from anyio.abc import TaskStatus
from anyio.lowlevel import checkpoint
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reactor import Event, Reactor
from reactor.abc import App, Source
from reactor.queues.memory import MemoryQueue
from reactor.sources.http import (
    DEFAULT_MAX_BODY,
    DEFAULT_TOLERANCE,
    SOURCE_PREFIX,
    HttpIngress,
    IngressSettings,
    Message,
    Once,
    Receive,
    Receiver,
    Reject,
    Reply,
    Request,
    Scope,
    Send,
    Webhook,
    WebhookOptions,
    asgi,
    on_webhook,
)
from reactor.testing import Capture, VirtualClock

pytestmark = pytest.mark.anyio

START = datetime(2030, 1, 1, tzinfo=UTC)

# The Standard Webhooks published test vector (spec repository and every reference library).
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

SECRET = "whsec_" + base64.b64encode(b"a test secret of 24 bytes").decode()

HeaderInput = Mapping[str, str] | Iterable[tuple[str, str]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


# -- helpers ---------------------------------------------------------------------------


@dataclass
class Response:
    """What the ingress sent back."""

    status: int
    headers: dict[str, str]
    json: Any

    @property
    def error(self) -> str:
        """The reason of an error answer (asserted present and non-empty)."""
        reason = self.json["error"]
        assert isinstance(reason, str) and reason
        return reason


def header_pairs(headers: HeaderInput) -> list[tuple[bytes, bytes]]:
    items = headers.items() if isinstance(headers, Mapping) else headers
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in items]


async def call(
    ingress: ASGIApp,
    body: bytes = b"",
    headers: HeaderInput = (),
    *,
    method: str = "POST",
    path: str = "/",
    root_path: str = "",
    chunks: Sequence[bytes] | None = None,
    raw_headers: Sequence[tuple[bytes, bytes]] = (),
) -> Response:
    """Make one HTTP request to the ingress; the body arrives in *chunks* when given."""
    parts = [body] if chunks is None else list(chunks)
    messages: list[Message] = [
        {"type": "http.request", "body": part, "more_body": index < len(parts) - 1}
        for index, part in enumerate(parts)
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        assert messages, "the app read past the end of the body"
        return messages.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": root_path,
        "headers": [*header_pairs(headers), *raw_headers],
        "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 8000),
    }
    with anyio.fail_after(5):
        await ingress(scope, receive, send)
    return response_of(sent)


async def post_event(
    asgi_app: ASGIApp, event: Event, *, path: str = "/", root_path: str = ""
) -> Response:
    """POST *event* in binary mode."""
    headers, body = event.to_http()
    return await call(asgi_app, body, headers, path=path, root_path=root_path)


def response_of(sent: list[Message]) -> Response:
    start, body = sent
    assert start["type"] == "http.response.start"
    assert body["type"] == "http.response.body"
    assert not body.get("more_body", False)
    headers = {name.decode(): value.decode() for name, value in start["headers"]}
    assert headers["content-type"] == "application/json"
    assert int(headers["content-length"]) == len(body["body"])
    return Response(start["status"], headers, json.loads(body["body"]))


def signed_headers(
    route: Webhook, msg_id: str, timestamp: int, body: bytes, **extra: str
) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": route.sign(msg_id, timestamp, body),
        **extra,
    }


def full_event(**changes: Any) -> Event:
    """An event with every attribute set (extensions as strings: binary mode keeps no types)."""
    fields: dict[str, Any] = {
        "type": "com.example.someevent",
        "source": "/mycontext",
        "id": "A234-1234-1234",
        "time": datetime(2018, 4, 5, 17, 31, tzinfo=UTC),
        "subject": "larger-context",
        "datacontenttype": "application/json",
        "dataschema": "https://example.com/schema.json",
        "data": {"appinfoA": "abc", "appinfoB": 123, "appinfoC": True},
        "extensions": {"comexampleextension1": "value", "other": "Zoë 100%"},
    }
    fields.update(changes)
    return Event(**fields)


@asynccontextmanager
async def running(app: Reactor) -> AsyncIterator[Capture]:
    """Run *app* with a consumer of every event; the capture holds what it received."""
    capture = Capture()
    app.subscribe("*", capture, name="capture")
    async with app:
        yield capture


class Gate:
    """A consumer that waits at a gate: keeps events in flight while a test looks."""

    def __init__(self) -> None:
        self.open = anyio.Event()
        self.seen: list[Event] = []

    async def __call__(self, event: Event) -> None:
        self.seen.append(event)
        await self.open.wait()


# -- CloudEvents -----------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["binary", "structured"])
@pytest.mark.parametrize(
    "event",
    [
        pytest.param(full_event(), id="json"),
        pytest.param(
            full_event(datacontenttype="text/plain; charset=utf-8", data="Zoë"), id="text"
        ),
        pytest.param(
            full_event(datacontenttype="application/octet-stream", data=b"\x00\xff"), id="bytes"
        ),
        pytest.param(Event(type="a", source="/s", id="1", time=None), id="minimal"),
    ],
)
async def test_a_cloudevent_is_published_with_every_attribute(event: Event, mode: Any) -> None:
    app = Reactor()
    ingress = asgi(app)
    headers, body = event.to_http(mode=mode)
    async with running(app) as capture:
        response = await call(ingress, body, headers)
        assert (response.status, response.json) == (202, {"ids": [event.id]})
        with anyio.fail_after(5):
            [received] = await capture.wait_for(1)
    assert received == event


async def test_a_batch_is_published_in_order() -> None:
    app = Reactor()
    ingress = asgi(app)
    events = [full_event(id=str(n), data={"n": n}) for n in range(5)]
    headers = {"content-type": "application/cloudevents-batch+json; charset=utf-8"}
    async with running(app) as capture:
        response = await call(ingress, Event.batch_to_json(events), headers)
        assert (response.status, response.json) == (202, {"ids": ["0", "1", "2", "3", "4"]})
        with anyio.fail_after(5):
            assert await capture.wait_for(5) == events
        empty = await call(ingress, b"[]", headers)
        assert (empty.status, empty.json) == (202, {"ids": []})


@pytest.fixture(scope="module")
def sdk() -> None:
    """Skip the test when the CloudEvents SDK is not installed."""
    pytest.importorskip("cloudevents", reason="the CloudEvents SDK is not installed")


SDK_ATTRIBUTES = {
    "type": "com.example.sdk",
    "source": "https://example.com/sdk path",
    "id": "sdk-1",
    "specversion": "1.0",
    "time": datetime(2026, 5, 6, 7, 8, 9, 123456, tzinfo=UTC),
    "subject": "über",
    "datacontenttype": "application/json",
    "dataschema": "https://example.com/schema",
    "ext": 'a "quoted" value, 100%',
    "other": "x",
}
SDK_DATA = {"list": [1, 2.5, None, "ü"], "nested": {"ok": True}}


def assert_matches_sdk(received: Event, attributes: Mapping[str, Any], data: Any) -> None:
    """The event the ingress published has the SDK event's attributes and data."""
    expected = dict(attributes)
    got: dict[str, Any] = {
        name: getattr(received, name)
        for name in expected
        if name not in received.extensions and getattr(received, name, None) is not None
    }
    got.update(received.extensions)
    assert got == expected
    assert received.data == data


@pytest.mark.usefixtures("sdk")
@pytest.mark.parametrize("mode", ["binary", "structured"])
async def test_requests_built_by_the_cloudevents_sdk(mode: str) -> None:
    from cloudevents.core.bindings.http import to_binary_event, to_structured_event
    from cloudevents.core.v1.event import CloudEvent

    sdk_event = CloudEvent(dict(SDK_ATTRIBUTES), SDK_DATA)
    message = (to_binary_event if mode == "binary" else to_structured_event)(sdk_event)
    app = Reactor()
    ingress = asgi(app)
    async with running(app) as capture:
        response = await call(ingress, message.body, message.headers)
        assert (response.status, response.json) == (202, {"ids": ["sdk-1"]})
        with anyio.fail_after(5):
            [received] = await capture.wait_for(1)
    assert_matches_sdk(received, sdk_event.get_attributes(), sdk_event.get_data())


@pytest.mark.usefixtures("sdk")
@pytest.mark.parametrize("mode", ["binary", "structured"])
async def test_requests_built_by_the_legacy_cloudevents_sdk(mode: str) -> None:
    # cloudevents.v1 (the 1.x API) does not percent-encode headers: stay within ASCII.
    from cloudevents.v1.conversion import to_binary, to_structured
    from cloudevents.v1.http import CloudEvent

    attributes = {
        "type": "com.example.legacy",
        "source": "/legacy",
        "id": "legacy-1",
        "specversion": "1.0",
        "time": "2026-05-06T07:08:09Z",
        "subject": "thing",
        "dataschema": "https://example.com/schema",
        "ext": "value",
    }
    legacy = CloudEvent(attributes, {"a": [1, 2]})
    headers, body = (to_binary if mode == "binary" else to_structured)(legacy)
    app = Reactor()
    ingress = asgi(app)
    async with running(app) as capture:
        response = await call(ingress, body, headers)
        assert (response.status, response.json) == (202, {"ids": ["legacy-1"]})
        with anyio.fail_after(5):
            [received] = await capture.wait_for(1)
    expected = {**attributes, "time": datetime(2026, 5, 6, 7, 8, 9, tzinfo=UTC)}
    # The legacy SDK may stamp a content type of its own: whatever it sent is kept.
    sent_type = (
        json.loads(body).get("datacontenttype")
        if mode == "structured"
        else {name.lower(): value for name, value in headers.items()}.get("content-type")
    )
    if sent_type is not None:
        expected["datacontenttype"] = sent_type
    # Binary mode without a Content-Type infers no content type: the body is octets.
    data = {"a": [1, 2]} if sent_type is not None or mode == "structured" else body
    assert_matches_sdk(received, expected, data)


@pytest.mark.usefixtures("sdk")
async def test_a_batch_of_sdk_events() -> None:
    from cloudevents.core.formats.json import JSONFormat
    from cloudevents.core.v1.event import CloudEvent

    sdk_events = [CloudEvent({**SDK_ATTRIBUTES, "id": f"sdk-{n}"}, {"n": n}) for n in range(3)]
    body = b"[" + b",".join(JSONFormat().write(e) for e in sdk_events) + b"]"
    app = Reactor()
    ingress = asgi(app)
    async with running(app) as capture:
        response = await call(ingress, body, {"content-type": "application/cloudevents-batch+json"})
        assert (response.status, response.json) == (202, {"ids": ["sdk-0", "sdk-1", "sdk-2"]})
        with anyio.fail_after(5):
            received = await capture.wait_for(3)
    for got, sdk_event in zip(received, sdk_events, strict=True):
        assert_matches_sdk(got, sdk_event.get_attributes(), sdk_event.get_data())


# -- routing and errors ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "root_path", "expected"),
    [
        ("/", "", "cloudevents"),
        ("", "", "cloudevents"),
        ("/hook", "", "webhook"),
        ("/hook/", "", "webhook"),
        # Starlette's Mount and current ASGI servers: full path, prefix in root_path.
        ("/api/events", "/api/events", "cloudevents"),
        ("/api/events/", "/api/events", "cloudevents"),
        ("/api/events/hook", "/api/events", "webhook"),
        # Servers that strip the prefix themselves.
        ("/hook", "/api/events", "webhook"),
        # A prefix that is not a whole path segment is not stripped.
        ("/apihook", "/api", "missing"),
        ("/other", "", "missing"),
    ],
)
async def test_routing_strips_the_mount_prefix(path: str, root_path: str, expected: str) -> None:
    app = Reactor()
    ingress = asgi(app)
    ingress.webhook("/hook", type="hooked")
    event = Event(type="a", source="/s", id="1")
    async with running(app):
        as_cloudevent = await post_event(ingress, event, path=path, root_path=root_path)
        as_webhook = await call(ingress, b"{}", path=path, root_path=root_path)
    outcome = {
        (202, 415): "cloudevents",  # the JSON body is not a CloudEvent
        (400, 202): "webhook",  # the binary event's empty body is not JSON
        (404, 404): "missing",
    }[as_cloudevent.status, as_webhook.status]
    assert outcome == expected


@pytest.mark.parametrize("path", ["/", "/hook"])
@pytest.mark.parametrize("method", ["GET", "PUT", "HEAD", "OPTIONS", "DELETE"])
async def test_only_post_is_allowed(method: str, path: str) -> None:
    app = Reactor()
    ingress = asgi(app)
    ingress.webhook("/hook", type="hooked")
    async with running(app):
        response = await call(ingress, method=method, path=path)
    assert response.status == 405
    assert response.headers["allow"] == "POST"
    assert "POST" in response.error


async def test_unknown_paths_are_404() -> None:
    app = Reactor()
    async with running(app):
        response = await call(asgi(app), b"{}", path="/nowhere")
    assert response.status == 404
    assert "/nowhere" in response.error


async def test_a_declared_body_over_the_limit_is_refused_before_reading() -> None:
    app = Reactor()
    ingress = asgi(app)
    assert ingress.max_body == DEFAULT_MAX_BODY == 2**20
    ingress.max_body = 100
    async with running(app) as capture:
        # Two messages are queued; the assertion in receive() fails if any is read.
        response = await call(
            ingress,
            raw_headers=[(b"content-length", b"101")],
            chunks=[b"x" * 60, b"x" * 41],
        )
        assert response.status == 413
        assert "100 bytes" in response.error
    assert capture.events == []


async def test_a_streamed_body_over_the_limit_stops_being_read() -> None:
    app = Reactor()
    ingress = asgi(app)
    ingress.max_body = 100
    chunks = [b"x" * 40, b"x" * 40, b"x" * 40, b"never read"]
    consumed: list[bytes] = []

    async def receive() -> Message:
        consumed.append(chunks[len(consumed)])
        return {"type": "http.request", "body": consumed[-1], "more_body": True}

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/", "headers": []}
    async with running(app):
        with anyio.fail_after(5):
            await ingress(scope, receive, send)
    assert response_of(sent).status == 413
    assert len(consumed) == 3


async def test_the_default_limit_is_one_mebibyte() -> None:
    app = Reactor()
    ingress = asgi(app)
    headers = {
        "ce-specversion": "1.0",
        "ce-id": "1",
        "ce-source": "/s",
        "ce-type": "big",
        "content-type": "application/octet-stream",
    }
    async with running(app) as capture:
        fits = await call(ingress, b"\x00" * 2**20, headers, chunks=[b"\x00" * 2**19] * 2)
        assert fits.status == 202
        too_big = await call(ingress, chunks=[b"\x00" * 2**19] * 2 + [b"\x00"], headers=headers)
        assert too_big.status == 413
        with anyio.fail_after(5):
            [event] = await capture.wait_for(1)
    assert event.data == b"\x00" * 2**20


@pytest.mark.parametrize(
    ("headers", "body", "status", "reason"),
    [
        ({"content-type": "application/json"}, b"{}", 415, "not a CloudEvent"),
        ({}, b"", 415, "not a CloudEvent"),
        ({"content-type": "application/cloudevents+avro"}, b"x", 415, "unsupported"),
        ({"content-type": "application/cloudevents+json"}, b"{", 400, "invalid JSON"),
        ({"content-type": "application/cloudevents+json"}, b"[]", 400, "JSON object"),
        (
            {"content-type": "application/cloudevents+json"},
            b'{"specversion": "1.0", "source": "/s", "type": "t"}',
            400,
            "'id'",
        ),
        (
            {"content-type": "application/cloudevents-batch+json"},
            b'[{"specversion": "1.0", "id": "1", "source": "/s", "type": "t"}, {}]',
            400,
            "element 1",
        ),
        ({"content-type": "application/cloudevents-batch+json"}, b"{}", 400, "JSON array"),
        ({"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s"}, b"", 400, "ce-type"),
        (
            {"ce-specversion": "0.3", "ce-id": "1", "ce-source": "/s", "ce-type": "t"},
            b"",
            400,
            "specversion",
        ),
        (
            {
                "ce-specversion": "1.0",
                "ce-id": "1",
                "ce-source": "/s",
                "ce-type": "t",
                "content-type": "application/json",
            },
            b"{nope",
            400,
            "invalid JSON",
        ),
        (
            {
                "ce-specversion": "1.0",
                "ce-id": "1",
                "ce-source": "/s",
                "ce-type": "t",
                "ce-time": "yesterday",
            },
            b"",
            400,
            "time",
        ),
        ({"content-length": "12x"}, b"", 400, "Content-Length"),
    ],
)
async def test_malformed_cloudevents_get_a_reason(
    headers: dict[str, str], body: bytes, status: int, reason: str
) -> None:
    app = Reactor()
    async with running(app) as capture:
        response = await call(asgi(app), body, headers)
    assert response.status == status
    assert reason in response.error
    assert capture.events == []


async def test_a_batch_is_all_or_nothing_when_the_queue_is_short_of_room() -> None:
    app = Reactor(queue=MemoryQueue(capacity=3), max_in_flight=1)
    ingress = asgi(app)
    gate = Gate()
    app.subscribe("*", gate, concurrency=1)
    batch = {"content-type": "application/cloudevents-batch+json"}
    async with app:
        first = await call(ingress, Event.batch_to_json([Event(type="a", source="/s")]), batch)
        assert first.status == 202
        await anyio.wait_all_tasks_blocked()  # the dispatcher took it: the gate holds it
        two = Event.batch_to_json([Event(type="a", source="/s") for _ in range(2)])
        assert (await call(ingress, two, batch)).status == 202  # the queue: 2 of 3
        refused = await call(ingress, two, batch)
        assert refused.status == 503
        assert refused.headers["retry-after"] == "1"
        assert "full" in refused.error
        never = Event.batch_to_json([Event(type="a", source="/s") for _ in range(4)])
        too_big = await call(ingress, never, batch)
        assert too_big.status == 413
        assert "split" in too_big.error
        assert app.stats().queue.depth == 2
        gate.open.set()
    assert len(gate.seen) == 3


async def test_a_full_queue_is_503_with_retry_after() -> None:
    app = Reactor(queue=MemoryQueue(capacity=1), max_in_flight=1)
    ingress = asgi(app)
    ingress.retry_after = 7
    gate = Gate()
    app.subscribe("*", gate, concurrency=1)
    headers, body = Event(type="a", source="/s").to_http()
    async with app:
        assert (await call(ingress, body, headers)).status == 202
        await anyio.wait_all_tasks_blocked()
        assert (await call(ingress, body, headers)).status == 202  # in the queue
        full = await call(ingress, body, headers)
        assert (full.status, full.headers["retry-after"]) == (503, "7")
        gate.open.set()
    assert app.stats().sources["http"]["unavailable"] == 1


async def test_an_app_that_is_not_running_answers_503() -> None:
    app = Reactor()
    ingress = asgi(app)
    headers, body = Event(type="a", source="/s").to_http()
    before = await call(ingress, body, headers)
    async with app:
        pass
    after = await call(ingress, body, headers)
    for response in before, after:
        assert response.status == 503
        assert "not running" in response.error
        assert response.headers["retry-after"] == "1"


async def test_requests_are_refused_once_the_app_begins_to_stop() -> None:
    app = Reactor()
    ingress = asgi(app)
    gate = Gate()
    app.subscribe("*", gate)
    headers, body = Event(type="a", source="/s").to_http()
    inside = anyio.Event()

    async def run_app() -> None:
        async with app:
            assert (await call(ingress, body, headers)).status == 202
            inside.set()
        # leaving the block: sources stop, then the drain waits at the gate

    async with anyio.create_task_group() as tg:
        tg.start_soon(run_app)
        await inside.wait()
        await anyio.wait_all_tasks_blocked()
        assert app.running  # draining
        response = await call(ingress, body, headers)
        assert response.status == 503
        gate.open.set()
    assert len(gate.seen) == 1


async def test_nothing_answered_202_is_lost() -> None:
    # The consumer holds 2 events, the queue 8 more: the rest is refused until release.
    app = Reactor(queue=MemoryQueue(capacity=8), max_in_flight=2)
    ingress = asgi(app)
    delivered: list[str] = []
    release = anyio.Event()

    @app.subscribe("*", concurrency=2)
    async def slow(event: Event) -> None:
        await release.wait()
        delivered.append(event.id)

    accepted: list[str] = []
    statuses: list[int] = []

    async def client(n: int) -> None:
        await checkpoint()  # interleave with the dispatcher and each other
        if n % 3 == 0:
            events = [Event(type="a", source="/s", id=f"{n}-{k}") for k in range(3)]
            response = await call(
                ingress,
                Event.batch_to_json(events),
                {"content-type": "application/cloudevents-batch+json"},
            )
        else:
            response = await post_event(ingress, Event(type="a", source="/s", id=str(n)))
        statuses.append(response.status)
        if response.status == 202:
            accepted.extend(response.json["ids"])

    async with app:
        async with anyio.create_task_group() as tg:
            for n in range(60):
                tg.start_soon(client, n)
        release.set()
    assert set(statuses) == {202, 503}
    assert sorted(delivered) == sorted(accepted)
    assert app.stats().sources["http"]["accepted"] == len(accepted)


async def test_a_client_that_disconnects_mid_body_gets_nothing_published() -> None:
    app = Reactor()
    ingress = asgi(app)
    messages: list[Message] = [
        {"type": "http.request", "body": b'{"specversion": ', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return messages.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "headers": [(b"content-type", b"application/cloudevents+json")],
    }
    async with running(app) as capture:
        await ingress(scope, receive, send)
    assert sent == []
    assert capture.events == []


# -- webhooks --------------------------------------------------------------------------


async def test_a_json_webhook_becomes_an_event_of_the_route() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    ingress = asgi(app)
    route = ingress.webhook("/github/", type="com.github.push")
    assert route == Webhook(path="/github", type="com.github.push", source="/reactor/http/github")
    assert ingress.routes == {"/github": route}
    async with running(app) as capture:
        with_id = await call(
            ingress,
            b'{"ref": "main", "commits": [1, 2]}',
            {"content-type": "application/json; charset=utf-8", "webhook-id": "delivery-1"},
            path="/github",
        )
        assert (with_id.status, with_id.json) == (202, {"ids": ["delivery-1"]})
        without_id = await call(ingress, b"[true, null]", path="/github")
        assert without_id.status == 202
        with anyio.fail_after(5):
            first, second = await capture.wait_for(2)
    assert first == Event(
        type="com.github.push",
        source=SOURCE_PREFIX + "/github",
        id="delivery-1",
        time=START,
        data={"ref": "main", "commits": [1, 2]},
    )
    assert (second.id, second.data, second.time) == (without_id.json["ids"][0], [True, None], START)


@pytest.mark.parametrize(
    ("headers", "body", "status", "reason"),
    [
        ({}, b"", 400, "empty"),
        ({}, b"{", 400, "invalid JSON"),
        ({}, b"NaN", 400, "invalid JSON"),
        ({}, b'{"a": Infinity}', 400, "invalid JSON"),
        ({}, b"\xff\xfe", 400, "UTF-8"),
        ({}, b"[" * 100_000, 400, "JSON"),
        ({"content-type": "application/x-www-form-urlencoded"}, b"a=1", 415, "JSON"),
        ({"content-type": "text/plain"}, b"{}", 415, "JSON"),
    ],
)
async def test_malformed_webhooks_get_a_reason(
    headers: dict[str, str], body: bytes, status: int, reason: str
) -> None:
    app = Reactor()
    ingress = asgi(app)
    ingress.webhook("/hook", type="hooked")
    async with running(app) as capture:
        response = await call(ingress, body, headers, path="/hook")
    assert response.status == status
    assert reason in response.error
    assert capture.events == []


async def test_the_standard_webhooks_test_vector() -> None:
    clock = VirtualClock(start=datetime.fromtimestamp(VECTOR_TIMESTAMP, UTC))
    app = Reactor(clock=clock)
    ingress = asgi(app)
    route = ingress.webhook("/vector", type="vector.test", secret=VECTOR_SECRET)
    assert route.sign(VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY) == VECTOR_SIGNATURE
    headers = {
        "webhook-id": VECTOR_ID,
        "webhook-timestamp": str(VECTOR_TIMESTAMP),
        "webhook-signature": VECTOR_SIGNATURE,
    }
    async with running(app) as capture:
        response = await call(ingress, VECTOR_BODY, headers, path="/vector")
        assert (response.status, response.json) == (202, {"ids": [VECTOR_ID]})
        with anyio.fail_after(5):
            [event] = await capture.wait_for(1)
    assert (event.type, event.source, event.id) == (
        "vector.test",
        "/reactor/http/vector",
        VECTOR_ID,
    )
    assert event.data == {"test": 2432232314}


def test_secrets_are_read_like_the_reference_libraries() -> None:
    app = Reactor()
    ingress = asgi(app)
    raw = base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    secrets: list[str | bytes] = [
        VECTOR_SECRET,
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        raw,
        "whsec_" + base64.b64encode(raw).decode().rstrip("="),
    ]
    for n, secret in enumerate(secrets):
        route = ingress.webhook(f"/v{n}", type="t", secret=secret)
        assert route.secret == raw
        assert route.signed
        assert route.sign(VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY) == VECTOR_SIGNATURE
        assert raw.hex() not in repr(route) and "MfKQ" not in repr(route)
    with pytest.raises(ValueError, match="whsec_"):
        ingress.webhook("/bad", type="t", secret="whsec_not base64!")
    with pytest.raises(ValueError, match="empty"):
        ingress.webhook("/bad", type="t", secret=b"")
    with pytest.raises(TypeError, match="secret"):
        ingress.webhook("/bad", type="t", secret=42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no secret"):
        ingress.webhook("/plain", type="t").sign("id", 1, b"")


NOW = int(START.timestamp())


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"webhook-signature": None}, "needs the webhook-id"),
        ({"webhook-id": None}, "needs the webhook-id"),
        ({"webhook-timestamp": None}, "needs the webhook-id"),
        ({"webhook-timestamp": "soon"}, "integer"),
        ({"webhook-timestamp": f"{NOW}.5"}, "integer"),
        ({"webhook-timestamp": str(NOW - 301)}, "too old"),
        ({"webhook-timestamp": str(NOW + 301)}, "future"),
        ({"webhook-signature": "v1,AAAA"}, "no webhook-signature matches"),
        ({"webhook-signature": "v1,not base64!"}, "no webhook-signature matches"),
        ({"webhook-signature": "v1a,c2lnbmF0dXJl"}, "no webhook-signature matches"),
        ({"webhook-signature": "garbage"}, "no webhook-signature matches"),
        ({"webhook-id": "another-id"}, "no webhook-signature matches"),
        ({"body": b'{"amount": 1000}'}, "no webhook-signature matches"),
        (
            {"secret": "whsec_" + base64.b64encode(b"another secret").decode()},
            "no webhook-signature",
        ),
    ],
)
async def test_bad_signatures_are_401(change: dict[str, Any], reason: str) -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    ingress = asgi(app)
    route = ingress.webhook("/signed", type="signed", secret=SECRET)
    body = b'{"amount": 10}'
    change = dict(change)  # the parameter is shared by both backends' runs
    signer = attrs.evolve(route, secret=base64.b64decode(change.pop("secret", SECRET)[6:] + "=="))
    headers: dict[str, str | None] = {**signed_headers(signer, "msg-1", NOW, body)}
    body = change.pop("body", body)
    headers.update(change)
    async with running(app) as capture:
        response = await call(
            ingress,
            body,
            {name: value for name, value in headers.items() if value is not None},
            path="/signed",
        )
    assert response.status == 401
    assert reason in response.error
    assert capture.events == []


async def test_one_matching_signature_among_several_is_enough() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    ingress = asgi(app)
    route = ingress.webhook("/signed", type="signed", secret=SECRET, tolerance=60)
    body = b'{"rotated": true}'
    valid = route.sign("msg-1", NOW - 60, body)
    signatures = f"v1a,c2lnbmF0dXJl v1,AAAA bogus  {valid} v2,zzz"
    async with running(app) as capture:
        response = await call(
            ingress,
            body,
            {
                "webhook-id": "msg-1",
                "webhook-timestamp": str(NOW - 60),
                "webhook-signature": signatures,
            },
            path="/signed",
        )
        assert response.status == 202
        with anyio.fail_after(5):
            [event] = await capture.wait_for(1)
    assert event.data == {"rotated": True}


async def test_a_replayed_webhook_id_is_not_published_again() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    ingress = asgi(app)
    route = ingress.webhook("/signed", type="signed", secret=SECRET)
    other = ingress.webhook("/other", type="other", secret=SECRET)
    body = b'{"n": 1}'
    headers = signed_headers(route, "msg-1", NOW, body)
    async with running(app) as capture:
        assert (await call(ingress, body, headers, path="/signed")).status == 202
        replay = await call(ingress, body, headers, path="/signed")
        assert (replay.status, replay.json) == (200, {"ids": ["msg-1"], "duplicate": True})
        # The sender's retry: same id, a new timestamp and signature, within the window.
        await clock.advance(200)
        retry = signed_headers(route, "msg-1", NOW + 200, body)
        assert (await call(ingress, body, retry, path="/signed")).status == 200
        # The same id on another route is another event.
        assert (await call(ingress, body, headers, path="/other")).status == 202
        with anyio.fail_after(5):
            await capture.wait_for(2)
        # The first request itself is now refused by its timestamp, ...
        await clock.advance(101)
        assert (await call(ingress, body, headers, path="/signed")).status == 401
        # ... and a tolerance after acceptance the id is forgotten.
        later = signed_headers(route, "msg-1", NOW + 301, body)
        assert (await call(ingress, body, later, path="/signed")).status == 202
        with anyio.fail_after(5):
            await capture.wait_for(3)
    assert [(e.source, e.id) for e in capture.events] == [
        (route.source, "msg-1"),
        (other.source, "msg-1"),
        (route.source, "msg-1"),
    ]
    assert app.stats().sources["http"]["duplicates"] == 2


async def test_the_replay_cache_is_bounded() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    ingress = asgi(app)
    ingress.replay_cache = 2
    route = ingress.webhook("/signed", type="signed", secret=SECRET)
    body = b"{}"
    async with running(app):
        for msg_id in ("a", "b", "c"):
            response = await call(
                ingress, body, signed_headers(route, msg_id, NOW, body), path="/signed"
            )
            assert response.status == 202
        # "a" was forgotten to make room for "c"; "b" and "c" are remembered.
        statuses = [
            (
                await call(ingress, body, signed_headers(route, msg_id, NOW, body), path="/signed")
            ).status
            for msg_id in ("b", "c", "a")
        ]
    assert statuses == [200, 200, 202]


async def test_an_id_refused_for_lack_of_room_can_be_sent_again() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock, queue=MemoryQueue(capacity=1), max_in_flight=1)
    ingress = asgi(app)
    route = ingress.webhook("/signed", type="signed", secret=SECRET)
    gate = Gate()
    app.subscribe("*", gate, concurrency=1)
    body = b"{}"
    async with app:
        for msg_id in ("held", "queued"):
            headers = signed_headers(route, msg_id, NOW, body)
            assert (await call(ingress, body, headers, path="/signed")).status == 202
            await anyio.wait_all_tasks_blocked()
        headers = signed_headers(route, "refused", NOW, body)
        assert (await call(ingress, body, headers, path="/signed")).status == 503
        gate.open.set()
        await anyio.wait_all_tasks_blocked()
        assert (await call(ingress, body, headers, path="/signed")).status == 202
    assert [event.id for event in gate.seen] == ["held", "queued", "refused"]


async def test_on_webhook_subscribes_to_its_route_only() -> None:
    app = Reactor()
    got: list[Event] = []

    @on_webhook(app, "/orders", type="shop.order", name="orders")
    async def orders(event: Event) -> None:
        got.append(event)

    # A second handler on the same route; a route with other settings is refused.
    also = Capture()
    on_webhook(app, "/orders", type="shop.order", name="also")(also)
    with pytest.raises(ValueError, match="already routed"):
        on_webhook(app, "/orders", type="shop.other")
    ingress = asgi(app)
    assert [sub.name for sub in app.subscriptions] == ["orders", "also"]
    same_type = Event(type="shop.order", source="/elsewhere", id="ce-1")
    async with app:
        assert (await call(ingress, b'{"id": 7}', path="/orders")).status == 202
        assert (await post_event(ingress, same_type)).status == 202
        with anyio.fail_after(5):
            await also.wait_for(1)
        await anyio.wait_all_tasks_blocked()
    assert [event.data for event in got] == [{"id": 7}]
    assert [event.data for event in also.events] == [{"id": 7}]


async def test_the_reactor_methods() -> None:
    app = Reactor()
    ingress = app.asgi
    assert ingress is asgi(app) is app.asgi
    got = Capture()
    app.on_webhook("/hook", type="hooked", name="got")(got)
    async with app:
        assert (await call(ingress, b"1", path="/hook")).status == 202
        with anyio.fail_after(5):
            await got.wait_for(1)


# -- configuration, lifespan, other scopes -----------------------------------------------


def test_asgi_gives_one_ingress_per_app_and_adds_it_as_a_source() -> None:
    app = Reactor()
    ingress = asgi(app)
    assert asgi(app) is ingress
    assert app.sources == (ingress,)
    assert asgi(Reactor()) is not ingress
    assert ingress.name == "http"
    assert ingress.app is app
    assert "HttpIngress" in repr(ingress)


@pytest.mark.parametrize(
    ("setting", "value", "error"),
    [
        ("max_body", 0, ValueError),
        ("max_body", 1.5, TypeError),
        ("max_body", True, TypeError),
        ("retry_after", -1, ValueError),
        ("replay_cache", 0, ValueError),
    ],
)
def test_settings_are_checked(setting: str, value: object, error: type[Exception]) -> None:
    ingress = asgi(Reactor())
    with pytest.raises(error, match=setting):
        setattr(ingress, setting, value)


@pytest.mark.parametrize(
    ("path", "options", "error"),
    [
        ("/", {}, "root path"),
        ("", {}, "root path"),
        ("github", {}, "path must look like"),
        ("/a b", {}, "path must look like"),
        ("/hooks/*", {}, "path must look like"),
        ("/x?y=1", {}, "path must look like"),
        ("/ok", {"type": ""}, "type"),
        ("/ok", {"tolerance": 0}, "tolerance"),
        ("/ok", {"tolerance": float("inf")}, "tolerance"),
    ],
)
def test_webhook_routes_are_checked(path: str, options: dict[str, Any], error: str) -> None:
    ingress = asgi(Reactor())
    with pytest.raises(ValueError, match=error):
        ingress.webhook(path, **{"type": "t", **options})


def test_a_constructor_mistake_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="Reactor"):
        HttpIngress(object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="path"):
        asgi(Reactor()).webhook(b"/x", type="t")  # type: ignore[arg-type]


class Lifespan:
    """Drives an ASGI application's lifespan protocol like a server does."""

    def __init__(self, asgi_app: Any) -> None:
        self.asgi_app = asgi_app
        self.to_app, self.from_server = anyio.create_memory_object_stream[dict[str, Any]](1)
        self.to_server, self.from_app = anyio.create_memory_object_stream[dict[str, Any]](1)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        with self.to_app, self.from_server, self.to_server, self.from_app:
            await self.asgi_app(scope, self.from_server.receive, self.to_server.send)

    async def tell(self, what: str) -> dict[str, Any]:
        await self.to_app.send({"type": f"lifespan.{what}"})
        with anyio.fail_after(5):
            return await self.from_app.receive()


async def test_standalone_lifespan_runs_the_app() -> None:
    app = Reactor()
    ingress = asgi(app)
    capture = Capture()
    app.subscribe("*", capture)
    server = Lifespan(ingress)
    headers, body = Event(type="a", source="/s").to_http()
    async with anyio.create_task_group() as tg:
        await tg.start(server.run)
        assert await server.tell("startup") == {"type": "lifespan.startup.complete"}
        assert app.running
        assert (await call(ingress, body, headers)).status == 202
        assert await server.tell("shutdown") == {"type": "lifespan.shutdown.complete"}
    assert not app.running
    assert len(capture.events) == 1  # drained before shutdown completed


async def test_lifespan_leaves_an_app_that_runs_already_alone() -> None:
    app = Reactor()
    ingress = asgi(app)
    server = Lifespan(ingress)
    async with app, anyio.create_task_group() as tg:
        await tg.start(server.run)
        assert await server.tell("startup") == {"type": "lifespan.startup.complete"}
        assert await server.tell("shutdown") == {"type": "lifespan.shutdown.complete"}
        assert app.running


class Broken(Source):
    """A source that fails as it starts."""

    async def run(
        self, app: App, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        raise RuntimeError("no database")


async def test_lifespan_reports_an_app_that_cannot_start(caplog: pytest.LogCaptureFixture) -> None:
    app = Reactor()
    app.add_source(Broken())
    ingress = asgi(app)
    server = Lifespan(ingress)
    with caplog.at_level(logging.ERROR, logger="reactor"):
        async with anyio.create_task_group() as tg:
            await tg.start(server.run)
            answer = await server.tell("startup")
    assert answer["type"] == "lifespan.startup.failed"
    assert "no database" in answer["message"]
    assert not app.running


async def test_websocket_connections_are_closed_and_unknown_scopes_refused() -> None:
    ingress = asgi(Reactor())
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "websocket.connect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await ingress({"type": "websocket", "path": "/"}, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1008}]
    with pytest.raises(ValueError, match="scope type"):
        await ingress({"type": "carrier-pigeon"}, receive, send)


async def test_statistics_count_requests_by_outcome() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    ingress = asgi(app)
    route = ingress.webhook("/signed", type="signed", secret=SECRET)
    headers, body = Event(type="a", source="/s").to_http()
    signed = signed_headers(route, "m", NOW, b"{}")
    await call(ingress, body, headers)  # 503: not running
    async with running(app):
        await call(ingress, body, headers)  # 202
        await call(ingress, b"{}", signed, path="/signed")  # 202
        await call(ingress, b"{}", signed, path="/signed")  # 200, duplicate
        await call(ingress, b"", path="/nowhere")  # 404
        await call(ingress, b"{", {"content-type": "application/cloudevents+json"})  # 400
        await post_event(ingress, Event(type="reactor.timer", source="/x"))  # 403
        await call(ingress, b"{}", {**signed, "webhook-signature": "v1,AAAA"}, path="/signed")
        stats = app.stats().sources["http"]
    assert stats == {
        "requests": 8,
        "accepted": 2,
        "rejected": 4,
        "unauthorized": 1,
        "forbidden": 1,
        "unavailable": 1,
        "duplicates": 1,
    }


# -- Starlette -------------------------------------------------------------------------


async def test_mounted_in_starlette_with_the_app_started_by_its_lifespan() -> None:
    pytest.importorskip(
        "starlette", reason="starlette is not installed (pip install starlette to run this test)"
    )
    from starlette.applications import Starlette
    from starlette.routing import Mount

    app = Reactor()
    capture = Capture()
    app.subscribe("*", capture)
    ingress = asgi(app)
    ingress.webhook("/github", type="com.github.push")

    @asynccontextmanager
    async def lifespan(host: Starlette) -> AsyncIterator[None]:
        async with app:
            yield

    host = Starlette(routes=[Mount("/api/events", app=ingress)], lifespan=lifespan)
    server = Lifespan(host)
    event = full_event()
    async with anyio.create_task_group() as tg:
        await tg.start(server.run)
        assert await server.tell("startup") == {"type": "lifespan.startup.complete"}
        root = await post_event(host, event, path="/api/events/")
        hook = await call(host, b'{"ref": "main"}', path="/api/events/github")
        missing = await call(host, b"{}", path="/api/events/gitlab")
        assert (root.status, root.json) == (202, {"ids": [event.id]})
        assert hook.status == 202
        assert (missing.status, missing.error) == (404, "no route at '/gitlab'")
        assert await server.tell("shutdown") == {"type": "lifespan.shutdown.complete"}
    assert [e.type for e in capture.events] == [event.type, "com.github.push"]
    assert capture.events[0] == event
    assert capture.events[1].source == "/reactor/http/github"


@pytest.mark.parametrize("prefix", ["/events", "/events/"])
async def test_mounted_with_mount_takes_the_prefix_with_and_without_its_slash(prefix: str) -> None:
    pytest.importorskip("starlette")
    from starlette.applications import Starlette
    from starlette.routing import Mount

    app = Reactor()
    capture = Capture()
    app.subscribe("*", capture)
    ingress = asgi(app)
    ingress.webhook("/github", type="com.github.push")
    # Starlette's Mount alone answers the bare prefix with a redirect (the reason for mount()).
    plain = Starlette(routes=[Mount("/events", app=ingress)])
    host = Starlette()
    ingress.mount(host, prefix)
    nested = Starlette(routes=[Mount("/api", app=host)])
    async with app:
        sent: list[Message] = []

        async def receive() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Message) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/events", "root_path": "",
                 "headers": [(b"host", b"h")], "query_string": b"", "scheme": "http",
                 "server": ("h", 80)}  # fmt: skip
        await plain(scope, receive, send)
        assert sent[0]["status"] == 307
        answers = [
            await post_event(host, full_event(), path="/events"),
            await post_event(host, full_event(), path="/events/"),
            await post_event(nested, full_event(), path="/api/events"),
            await post_event(nested, full_event(), path="/api/events/"),
            await call(host, b"{}", path="/events/github"),
            await call(nested, b"{}", path="/api/events/github/"),
        ]
        missing = await call(host, b"{}", path="/events/gitlab")
        wrong = await call(host, b"{}", method="GET", path="/events")
    assert [answer.status for answer in answers] == [202] * 6
    assert (missing.status, missing.error) == (404, "no route at '/gitlab'")
    assert wrong.status == 405
    assert len(capture.events) == 6


def test_mount_refuses_the_root_and_what_is_not_a_host() -> None:
    pytest.importorskip("starlette")
    from starlette.applications import Starlette

    ingress = asgi(Reactor())
    with pytest.raises(ValueError, match="below the root"):
        ingress.mount(Starlette(), "/")
    with pytest.raises(TypeError, match="Starlette or FastAPI"):
        ingress.mount(object(), "/events")


# -- probes ----------------------------------------------------------------------------


async def test_healthz_answers_while_the_process_lives_and_readyz_while_the_app_is_ready() -> None:
    app = Reactor()
    ingress = asgi(app)
    alive = await call(ingress, method="GET", path="/healthz")
    not_ready = await call(ingress, method="GET", path="/readyz")
    async with app:
        ready = await call(ingress, method="GET", path="/readyz", root_path="")
        mounted = await call(ingress, method="GET", path="/ev/readyz", root_path="/ev")
        post = await call(ingress, b"", path="/readyz")
    assert (alive.status, alive.json) == (200, {"status": "alive"})
    assert (not_ready.status, not_ready.json["ready"]) == (503, False)
    assert not_ready.json["problems"] == ["the app is idle, not running"]
    assert (ready.status, ready.json) == (200, app_health_fields(ready.json))
    assert ready.json["ready"] is True and ready.json["state"] == "running"
    assert mounted.status == 200
    assert (post.status, post.headers["allow"]) == (405, "GET, HEAD")


def app_health_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """The fields of a ready Health, as /readyz writes them."""
    assert set(fields) == {
        "ready",
        "state",
        "sources_started",
        "queue_depth",
        "in_flight",
        "stalled_for",
        "settle_failures",
        "problems",
    }
    return fields


async def test_a_webhook_route_at_a_probe_path_wins() -> None:
    app = Reactor()
    ingress = asgi(app)
    ingress.webhook("/healthz", type="com.example.health")
    async with app:
        answer = await call(ingress, b"{}", path="/healthz")
    assert answer.status == 202


# -- junk ------------------------------------------------------------------------------

CONTENT_TYPES = st.sampled_from(
    [
        None,
        "application/json",
        "application/cloudevents+json",
        "application/cloudevents+json; charset=utf-8",
        "application/cloudevents-batch+json",
        "application/cloudevents+xml",
        "text/plain",
        "application/octet-stream",
        "multipart/form-data; boundary=x",
        ";;",
        "",
    ]
)
HEADER_VALUES = st.one_of(
    st.sampled_from(
        ["1.0", "0.3", "", "1", "/s", "t", "2026-01-01T00:00:00Z", "%zz", '"x', "v1,AAAA"]
    ),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=20),
)
HEADER_NAMES = st.sampled_from(
    [
        "ce-specversion",
        "ce-id",
        "ce-source",
        "ce-type",
        "ce-time",
        "ce-datacontenttype",
        "ce-Ext",
        "ce-ext",
        "ce-",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "content-length",
        "content-type",
    ]
)
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=10,
)
BODIES = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=100).map(str.encode),
    JSONISH.map(lambda value: json.dumps(value).encode()),
    st.builds(
        lambda members, cut: json.dumps(members).encode()[:cut],
        st.dictionaries(
            st.sampled_from(
                ["specversion", "id", "source", "type", "time", "data", "data_base64", "x"]
            ),
            JSONISH,
        ),
        st.integers(0, 300),
    ),
)


@st.composite
def junk_requests(draw: st.DrawFn) -> dict[str, Any]:
    body = draw(BODIES)
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=3)))
    chunks = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    path = draw(st.sampled_from(["/", "/hook", "/signed"]))
    headers: list[tuple[str, str]] = []
    # Often start from a request that gets past the first checks, so that the junk
    # reaches the decoders: a binary-mode event's headers, a valid signature.
    if draw(st.booleans()):
        headers += [
            ("ce-specversion", "1.0"),
            ("ce-id", "1"),
            ("ce-source", "/s"),
            ("ce-type", "t"),
        ]
    if path == "/signed" and draw(st.booleans()):
        signer = Webhook(
            path=path, type="t", source="/s", secret=base64.b64decode(SECRET[6:] + "==")
        )
        headers += signed_headers(signer, "junk", NOW, body).items()
    headers += draw(st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=6))
    content_type = draw(CONTENT_TYPES)
    if content_type is not None:
        headers.append(("content-type", content_type))
    return {
        "path": path,
        "method": draw(st.sampled_from(["POST", "POST", "POST", "GET"])),
        "chunks": chunks,
        "headers": headers,
    }


@settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(request=junk_requests())
async def test_junk_gets_a_clear_answer_and_never_breaks_the_app(request: dict[str, Any]) -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    ingress = asgi(app)
    ingress.max_body = 150
    ingress.webhook("/hook", type="hooked")
    ingress.webhook("/signed", type="signed", secret=SECRET)
    async with running(app) as capture:
        response = await call(
            ingress,
            method=request["method"],
            path=request["path"],
            chunks=request["chunks"],
            raw_headers=[(n.encode("latin-1"), v.encode("latin-1")) for n, v in request["headers"]],
        )
        if response.status == 202:
            published = response.json["ids"]
        else:
            assert response.status in {400, 401, 405, 413, 415}
            assert len(response.error) < 500
            published = []
        # Whatever came before, the app still takes a good event.
        ok = await post_event(ingress, Event(type="ok", source="/s", id="ok"))
        assert ok.status == 202
        with anyio.fail_after(5):
            received = await capture.wait_for(len(published) + 1)
    assert [event.id for event in received] == [*published, "ok"]


# -- exact limits, and every queue refusal answered without a 500 (issue 10) -------------

BINARY_HEADERS = {
    "ce-specversion": "1.0",
    "ce-id": "1",
    "ce-source": "/s",
    "ce-type": "limit",
    "content-type": "application/octet-stream",
}


@pytest.mark.parametrize("declared", [False, True], ids=["no-length", "content-length"])
@pytest.mark.parametrize(
    "split",
    [None, [50], [100], [1, 98]],
    ids=["one-message", "halves", "then-empty", "three-parts"],
)
async def test_a_body_of_exactly_max_body_is_read_one_byte_more_is_413(
    declared: bool, split: list[int] | None
) -> None:
    app = Reactor()
    ingress = asgi(app)
    ingress.max_body = 100

    def request(size: int) -> dict[str, Any]:
        body = bytes(range(size))
        options: dict[str, Any] = {"body": body, "headers": BINARY_HEADERS}
        if split is not None:
            cuts = [0, *split, size]
            options["chunks"] = [body[a:b] for a, b in itertools.pairwise(cuts)]
        if declared:
            options["raw_headers"] = [(b"content-length", b"%d" % size)]
        return options

    async with running(app) as capture:
        exact = await call(ingress, **request(100))
        assert (exact.status, exact.json) == (202, {"ids": ["1"]})
        over = await call(ingress, **request(101))
        assert over.status == 413
        assert "100 bytes" in over.error
        with anyio.fail_after(5):
            [event] = await capture.wait_for(1)
    assert event.data == bytes(range(100))


@pytest.fixture(params=["memory", "sqlite"])
def queue_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


def small_queue(kind: str, capacity: int, tmp_path: Any) -> Any:
    from reactor.queues.sqlite import SQLiteQueue

    if kind == "memory":
        return MemoryQueue(capacity=capacity)
    return SQLiteQueue(tmp_path / "events.db", capacity=capacity)


async def test_a_batch_that_exactly_fills_the_room_left_is_taken_one_more_is_not(
    queue_kind: str, tmp_path: Any
) -> None:
    app = Reactor(queue=small_queue(queue_kind, 4, tmp_path), max_in_flight=1)
    ingress = asgi(app)
    gate = Gate()
    app.subscribe("*", gate, concurrency=1)
    batch = {"content-type": "application/cloudevents-batch+json"}

    def events(*ids: str) -> bytes:
        return Event.batch_to_json([Event(type="a", source="/s", id=i) for i in ids])

    async with app:
        assert (await call(ingress, events("held"), batch)).status == 202
        with anyio.fail_after(5):
            while not gate.seen:  # the dispatcher took it: the gate holds it
                await anyio.wait_all_tasks_blocked()
        assert (await call(ingress, events("1"), batch)).status == 202  # room left: 3
        over = await call(ingress, events("w", "x", "y", "z"), batch)  # one more than room
        assert over.status == 503
        assert over.headers["retry-after"] == "1"
        exact = await call(ingress, events("2", "3", "4"), batch)  # exactly the room left
        assert (exact.status, exact.json) == (202, {"ids": ["2", "3", "4"]})
        full = await call(ingress, events("5"), batch)
        assert full.status == 503
        assert app.stats().queue.depth == 4
        gate.open.set()
        with anyio.fail_after(5):
            while len(gate.seen) < 5:
                await anyio.wait_all_tasks_blocked()
    assert [event.id for event in gate.seen] == ["held", "1", "2", "3", "4"]
    assert app.stats().published == 5


class FlakyQueue(MemoryQueue):
    """A queue that, while ``down``, cannot store anything (a full disk, a lost broker)."""

    down = False

    def put_nowait(self, event: Event, *, only: Any = None) -> None:
        from reactor import QueueUnavailableError

        if self.down:
            raise QueueUnavailableError("the disk is full")
        super().put_nowait(event, only=only)


@pytest.mark.parametrize("size", [1, 3])
async def test_a_queue_that_cannot_store_now_is_503_with_retry_after(
    size: int, caplog: pytest.LogCaptureFixture
) -> None:
    queue = FlakyQueue()
    app = Reactor(queue=queue)
    ingress = asgi(app)
    ingress.retry_after = 9
    body = Event.batch_to_json([Event(type="a", source="/s", id=str(n)) for n in range(size)])
    batch = {"content-type": "application/cloudevents-batch+json"}
    async with running(app) as capture:
        queue.down = True
        refused = await call(ingress, body, batch)
        assert (refused.status, refused.headers["retry-after"]) == (503, "9")
        # The cause is logged; the client is told no more than that it may retry (a
        # queue's error can name server paths).
        assert refused.error == "the ingestion queue cannot store events right now; retry later"
        assert "the disk is full" in caplog.text
        queue.down = False
        assert (await call(ingress, body, batch)).status == 202
        with anyio.fail_after(5):
            received = await capture.wait_for(size)
    assert [event.id for event in received] == [str(n) for n in range(size)]
    assert app.stats().sources["http"]["unavailable"] == 1


@pytest.mark.parametrize(
    "body", [b'{"name": "a\\ud800"}', b'{"\\udc80": 1}', b"[1e400]", b'{"n": -1e999}']
)
async def test_webhook_json_no_queue_could_store_is_400_on_every_queue(body: bytes) -> None:
    # The memory queue keeps Python objects; SQLite encodes them and would refuse these.
    app = Reactor()
    ingress = asgi(app)
    ingress.webhook("/hook", type="com.example.hook")
    async with running(app) as capture:
        answer = await call(ingress, body, {"content-type": "application/json"}, path="/hook")
        assert answer.status == 400
        assert "JSON" in answer.error
        await anyio.wait_all_tasks_blocked()
    assert capture.events == []


# -- the plugin API: one definition per option, any App, one rule for errors -------------


def test_unknown_keywords_are_type_errors_naming_the_function() -> None:
    app = Reactor()
    unexpected = "got an unexpected keyword argument 'priority'"
    with pytest.raises(TypeError, match=rf"^on_webhook\(\) {unexpected}"):
        on_webhook(app, "/x", type="t", priority=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=rf"^on_webhook\(\) {unexpected}"):
        app.on_webhook("/x", type="t", priority=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=rf"^asgi\(\) {unexpected}"):
        asgi(app, priority=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=rf"^HttpIngress\(\) {unexpected}"):
        HttpIngress(app, priority=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=rf"^webhook\(\) {unexpected}"):
        asgi(app).webhook("/x", type="t", priority=1)  # type: ignore[call-arg]
    assert asgi(app).routes == {}  # nothing was routed by the refused calls


@pytest.mark.parametrize(
    ("options", "setting"),
    [
        ({"type": 5}, "type"),
        ({"type": "t", "tolerance": "300"}, "tolerance"),
        ({"type": "t", "scheme": 1}, "scheme"),
    ],
)
def test_a_route_option_of_the_wrong_type_is_a_type_error(
    options: dict[str, Any], setting: str
) -> None:
    with pytest.raises(TypeError, match=setting):
        asgi(Reactor()).webhook("/ok", **options)


def test_a_setting_of_the_wrong_type_is_a_type_error() -> None:
    app = Reactor()
    with pytest.raises(TypeError, match="token"):
        asgi(app, token=5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="tolerance"):
        asgi(app, tolerance="300")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="retry_after"):
        asgi(app, retry_after=1.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="allow_reserved must be a bool"):
        asgi(app, allow_reserved=1)  # type: ignore[arg-type]
    assert asgi(app).token is None


def test_the_shortcut_is_the_plugin_function_with_its_signature_and_doc() -> None:
    app = Reactor()
    signature = inspect.signature(app.on_webhook)
    assert list(signature.parameters) == [
        "path",
        "type",
        "secret",
        "tolerance",
        "scheme",
        "options",
    ]
    assert signature.parameters["tolerance"].default == DEFAULT_TOLERANCE
    assert signature.parameters["scheme"].default == "standard"
    assert app.on_webhook.__doc__ == on_webhook.__doc__
    assert "X-Hub-Signature-256" in pydoc.render_doc(app.on_webhook)


class ForwardingApp:
    """A ``reactor.abc.App`` that is not a Reactor: it forwards to one, keeping its own
    sources (so the Reactor never runs them) and starting nothing itself."""

    def __init__(self, app: Reactor) -> None:
        self.inner = app
        self.added: list[Source] = []

    @property
    def sources(self) -> tuple[Source, ...]:
        return tuple(self.added)

    def add_source(self, source: Source) -> None:
        self.added.append(source)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_the_ingress_works_with_any_app() -> None:
    inner = Reactor()
    app = cast(App, ForwardingApp(inner))
    ingress = asgi(app)
    assert asgi(app) is ingress
    assert ingress.app is app
    assert app.sources == (ingress,)
    assert inner.sources == ()
    on_webhook(app, "/hook", type="com.example.hook", name="hook")(Capture())
    async with running(inner) as capture:
        event = Event(type="com.example.a", source="/s")
        assert (await post_event(ingress, event)).status == 202
        assert (await call(ingress, b"{}", path="/hook")).status == 202
        with anyio.fail_after(5):
            received = await capture.wait_for(2)
    assert [e.type for e in received] == ["com.example.a", "com.example.hook"]


async def test_lifespan_refuses_to_start_an_app_that_is_no_context_manager() -> None:
    server = Lifespan(asgi(cast(App, ForwardingApp(Reactor()))))
    async with anyio.create_task_group() as tg:
        await tg.start(server.run)
        answer = await server.tell("startup")
    assert answer["type"] == "lifespan.startup.failed"
    assert "cannot start" in answer["message"]


async def test_the_package_logs_as_reactor_sources_http(caplog: pytest.LogCaptureFixture) -> None:
    app = Reactor()
    app.add_source(Broken())
    server = Lifespan(asgi(app))
    with caplog.at_level(logging.ERROR, logger="reactor"):
        async with anyio.create_task_group() as tg:
            await tg.start(server.run)
            await server.tell("startup")
    assert "reactor.sources.http" in {record.name for record in caplog.records}


def test_exported_names_report_the_package_as_their_module() -> None:
    for exported in (HttpIngress, Webhook, IngressSettings, WebhookOptions, asgi, on_webhook):
        assert exported.__module__ == "reactor.sources.http", exported


# -- receivers --------------------------------------------------------------------------


class LinesReceiver(Receiver):
    """A receiver of plain text: one event per line, the first line a delivery id."""

    def __init__(self) -> None:
        self.checked: list[Mapping[str, str]] = []

    def check(self, headers: Mapping[str, str]) -> None:
        self.checked.append(headers)
        if headers.get("x-key") != "k":
            raise Reject(401, "bad key")

    async def receive(self, request: Request) -> Reply:
        if request.media_type != "text/plain":
            raise Reject(415, "text only")
        delivery, *lines = request.body.decode().splitlines()
        events = [Event(type="com.example.line", source="/lines", data=line) for line in lines]
        once = Once(delivery, NOW, 60.0) if delivery else None
        if not await request.publish(events, once=once):
            return Reply(200, {"duplicate": True})
        return Reply.accepted(events, lines=len(lines))


async def test_a_receiver_decodes_its_own_requests() -> None:
    app = Reactor(clock=VirtualClock(start=START))
    ingress = asgi(app)
    receiver = LinesReceiver()
    ingress.receiver("/lines/", receiver, types=["com.example.line"])
    ingress.receiver("/lines", receiver)  # again: nothing changes
    assert ingress.receivers == {"/lines": receiver}
    text = {"x-key": "k", "content-type": "text/plain; charset=utf-8"}
    async with running(app) as capture:
        response = await call(ingress, b"d1\na\nb", text, path="/lines")
        with anyio.fail_after(5):
            events = await capture.wait_for(2)
        again = await call(ingress, b"d1\na\nb", text, path="/lines")
        unsigned = await call(ingress, b"\nc", {**text, "x-key": "no"}, path="/lines")
        json_body = await call(ingress, b"\nc", {"x-key": "k"}, path="/lines")
        get = await call(ingress, b"", text, path="/lines", method="GET")
        forged = await post_event(ingress, Event(type="com.example.line", source="/lines"))
        stats = app.stats().sources["http"]
    assert (response.status, response.json) == (202, {"ids": [e.id for e in events], "lines": 2})
    assert [e.data for e in events] == ["a", "b"]
    assert receiver.checked[0]["content-type"] == "text/plain; charset=utf-8"
    assert (again.status, again.json) == (200, {"duplicate": True})
    assert (unsigned.status, unsigned.json) == (401, {"error": "bad key"})
    assert (json_body.status, json_body.json) == (415, {"error": "text only"})
    assert get.status == 405
    assert forged.status == 403
    assert "reserved for a receiver" in forged.error
    assert stats["accepted"] == 2
    assert stats["duplicates"] == 1
    assert stats["unauthorized"] == 1
    assert "1 receiver(s)" in repr(ingress)


def test_receivers_are_checked() -> None:
    ingress = asgi(Reactor())
    ingress.webhook("/hook", type="x")
    with pytest.raises(TypeError, match=r"must be a reactor\.sources\.http\.Receiver"):
        ingress.receiver("/r", object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="routed already"):
        ingress.receiver("/hook", LinesReceiver())
    with pytest.raises(TypeError, match="list of globs"):
        ingress.receiver("/r", LinesReceiver(), types="x")
    ingress.receiver("/r", LinesReceiver())
    with pytest.raises(ValueError, match="routed already"):
        ingress.receiver("/r", LinesReceiver())
    with pytest.raises(ValueError, match="path must look like"):
        ingress.receiver("/r*", LinesReceiver())
