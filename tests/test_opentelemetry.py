"""reactor.opentelemetry: process spans and the trace carried in events, read from the real SDK."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

import reactor
from reactor import Backoff, Event, Reactor, Retry
from reactor.abc import EventQueue
from reactor.queues.memory import MemoryQueue
from reactor.queues.sqlite import SQLiteQueue

pytest.importorskip("opentelemetry.sdk")
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import (
    TraceContextTextMapPropagator,
)

from reactor.opentelemetry import extract, inject, instrument

pytestmark = pytest.mark.anyio

NO_WAIT = Backoff(initial=0.0, maximum=0.0, jitter=False)


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    yield exporter
    exporter.shutdown()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider
    provider.shutdown()


def process_spans(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.name.startswith("process ")]


@pytest.fixture(params=["memory", "sqlite"])
def queue(request: pytest.FixtureRequest, tmp_path: Path) -> EventQueue:
    if request.param == "memory":
        return MemoryQueue()
    return SQLiteQueue(tmp_path / "events.db")


async def test_a_process_span_is_the_child_of_the_publishers_span(
    queue: EventQueue, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    app = Reactor(queue=queue)
    instrument(app, tracer_provider=provider)
    seen: list[Event] = []

    @app.subscribe("order.created", name="book")
    async def book(event: Event) -> None:
        seen.append(event)

    tracer = provider.get_tracer("shop")
    async with app:
        with tracer.start_as_current_span("checkout") as checkout:
            await app.publish_and_wait("order.created", {"id": 1}, subject="order-1")
    context = checkout.get_span_context()
    [event] = seen
    # The event as the handler got it (read back from the queue) carries the context.
    assert event.extensions["traceparent"] == (
        f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
    )

    [span] = process_spans(exporter)
    assert span.name == "process order.created"
    assert span.kind is SpanKind.CONSUMER
    assert span.context is not None and span.context.trace_id == context.trace_id
    assert span.parent is not None and span.parent.span_id == context.span_id
    assert [link.context.span_id for link in span.links] == [context.span_id]
    assert span.status.status_code is StatusCode.UNSET
    attributes = dict(span.attributes or {})
    assert attributes == {
        "messaging.system": "reactor",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": "order.created",
        "messaging.consumer.group.name": "book",
        "messaging.message.id": event.id,
        "cloudevents.event_id": event.id,
        "cloudevents.event_source": "/reactor",
        "cloudevents.event_type": "order.created",
        "cloudevents.event_spec_version": "1.0",
        "cloudevents.event_subject": "order-1",
        "reactor.delivery.attempt": 1,
        "reactor.delivery.retries": 0,
    }


async def test_the_handler_runs_inside_its_span_and_what_it_publishes_continues_the_trace(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    from opentelemetry import trace

    app = Reactor()
    instrument(app, tracer_provider=provider)
    inside: list[int] = []
    done = anyio.Event()

    @app.subscribe("order.created")
    async def book(event: Event) -> None:
        inside.append(trace.get_current_span().get_span_context().span_id)
        await app.publish("order.booked", event.data)

    @app.subscribe("order.booked")
    async def notify(event: Event) -> None:
        done.set()

    with anyio.fail_after(10):
        async with app:
            with provider.get_tracer("shop").start_as_current_span("checkout") as checkout:
                await app.publish("order.created", 1)
            await done.wait()
    spans = {span.name: span for span in process_spans(exporter)}
    created, booked = spans["process order.created"], spans["process order.booked"]
    assert created.context is not None and booked.context is not None
    assert inside == [created.context.span_id]
    trace_id = checkout.get_span_context().trace_id
    assert created.context.trace_id == booked.context.trace_id == trace_id
    assert booked.parent is not None and booked.parent.span_id == created.context.span_id


async def test_each_attempt_is_a_span_and_failures_are_recorded(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    app = Reactor()
    instrument(app, tracer_provider=provider)

    @app.subscribe("job", name="flaky", retry=Retry(attempts=3, backoff=NO_WAIT))
    async def flaky(event: Event) -> None:
        if reactor.current_delivery().retries < 2:
            raise ValueError("not yet")

    async with app:
        receipt = await app.publish_and_wait("job")
    assert receipt.ok
    spans = sorted(
        process_spans(exporter),
        key=lambda span: str((span.attributes or {})["reactor.delivery.retries"]),
    )
    assert [(span.attributes or {})["reactor.delivery.retries"] for span in spans] == [0, 1, 2]
    assert [span.status.status_code for span in spans] == [
        StatusCode.ERROR,
        StatusCode.ERROR,
        StatusCode.UNSET,
    ]
    assert spans[0].status.description == "ValueError: not yet"
    [exception] = [e for e in spans[0].events if e.name == "exception"]
    assert (exception.attributes or {})["exception.type"] == "ValueError"
    # Published outside any span: every attempt is the root of a trace of its own.
    assert all(span.parent is None and not span.links for span in spans)


async def test_outside_a_span_the_event_is_published_unchanged(provider: TracerProvider) -> None:
    app = Reactor()
    instrument(app, tracer_provider=provider)
    async with app:
        event = await app.publish("job")
    assert "traceparent" not in event.extensions
    assert inject(event) is event


async def test_an_event_that_carries_a_context_keeps_it(provider: TracerProvider) -> None:
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    event = Event(type="job", source="/client", extensions={"traceparent": traceparent})
    with provider.get_tracer("test").start_as_current_span("elsewhere"):
        assert inject(event) is event
    carried = extract(event)
    from opentelemetry import trace

    context = trace.get_current_span(carried).get_span_context()
    assert (context.trace_id, context.span_id) == (
        0x0AF7651916CD43DD8448EB211C80319C,
        0xB7AD6B7169203331,
    )


async def test_the_trace_crosses_the_http_ingress_in_binary_mode(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    app = Reactor()
    instrument(app, tracer_provider=provider)
    done = anyio.Event()

    @app.subscribe("com.example.order")
    async def handle(event: Event) -> None:
        done.set()

    # A client in another process: its span's context in the ce-traceparent header.
    client = provider.get_tracer("client")
    with client.start_as_current_span("send order") as sending:
        carrier: dict[str, str] = {}
        TraceContextTextMapPropagator().inject(carrier)
        outgoing = Event(
            type="com.example.order",
            source="/client",
            data={"id": 1},
            extensions={"traceparent": carrier["traceparent"]},
        )
        headers, body = outgoing.to_http()
    assert "ce-traceparent" in headers

    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "root_path": "",
        "query_string": b"",
        "headers": [(name.encode(), value.encode()) for name, value in headers.items()],
    }
    with anyio.fail_after(10):
        async with app:
            await app.asgi(scope, receive, send)  # type: ignore[arg-type]
            await done.wait()
    assert sent[0]["status"] == 202
    [span] = process_spans(exporter)
    context = sending.get_span_context()
    assert span.context is not None and span.context.trace_id == context.trace_id
    assert span.parent is not None and span.parent.span_id == context.span_id


async def test_the_trace_survives_a_restart_on_the_durable_queue(
    tmp_path: Path, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    # The first run stops before its consumer settles the event; the next run (as a new
    # process would) reads it back from the file, still naming the publisher's span.
    path = tmp_path / "events.db"
    first = Reactor(queue=SQLiteQueue(path), graceful_timeout=0)
    instrument(first, tracer_provider=provider)
    started = anyio.Event()

    @first.subscribe("job", name="worker")
    async def stuck(event: Event) -> None:
        started.set()
        await anyio.sleep_forever()

    with anyio.fail_after(10):
        async with first:
            with provider.get_tracer("shop").start_as_current_span("checkout") as checkout:
                await first.publish("job")
            await started.wait()
    exporter.clear()

    second = Reactor(queue=SQLiteQueue(path))
    instrument(second, tracer_provider=provider)
    done = anyio.Event()

    @second.subscribe("job", name="worker")
    async def worker(event: Event) -> None:
        done.set()

    with anyio.fail_after(10):
        async with second:
            await done.wait()
    [span] = process_spans(exporter)
    assert (span.attributes or {})["reactor.delivery.attempt"] == 2
    context = checkout.get_span_context()
    assert span.parent is not None and span.parent.span_id == context.span_id
    assert span.context is not None and span.context.trace_id == context.trace_id


async def test_an_attempt_cut_by_its_timeout_ends_its_span_with_an_error(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    from datetime import UTC, datetime

    from reactor.testing import VirtualClock

    clock = VirtualClock(start=datetime(2026, 1, 1, tzinfo=UTC))
    app = Reactor(clock=clock)
    instrument(app, tracer_provider=provider)

    @app.subscribe("job", name="hang", timeout=1.0)
    async def hang(event: Event) -> None:
        await anyio.sleep_forever()

    with anyio.fail_after(10):
        async with app, anyio.create_task_group() as tg:
            tg.start_soon(app.publish_and_wait, "job")
            await clock.advance(1.0)
    [span] = process_spans(exporter)
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description is not None
    assert span.status.description.startswith("cancelled")
    assert span.end_time is not None


async def test_a_missing_extra_names_the_install_command() -> None:
    from source_tools import run_without

    output = await run_without(
        "opentelemetry",
        "from reactor.opentelemetry import instrument",
        "try:",
        "    instrument(app)",
        "except ModuleNotFoundError as exc:",
        "    print(exc)",
    )
    assert output == (
        "opentelemetry.trace is not installed; install it with: pip install 'reactor-events[otel]'\n"
    )
