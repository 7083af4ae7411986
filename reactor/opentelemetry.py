"""OpenTelemetry tracing of an app (extra ``otel``: ``pip install 'reactor-events[otel]'``).

:func:`instrument` makes a ``process`` span (kind ``CONSUMER``) around every delivery
attempt, and carries the trace from where an event is published to where it is handled
in the event itself, as the `CloudEvents Distributed Tracing extension
<https://github.com/cloudevents/spec/blob/main/cloudevents/extensions/distributed-tracing.md>`_
says: the ``traceparent`` and ``tracestate`` extension attributes, in the W3C Trace
Context format::

    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    from reactor import Event, Reactor
    from reactor.opentelemetry import instrument

    provider = TracerProvider()  # with your exporter's span processor
    app = Reactor()
    instrument(app, tracer_provider=provider)

    @app.subscribe("order.created")
    async def book(event: Event) -> None:
        ...  # runs inside the span "process order.created"

    async def checkout() -> None:
        with provider.get_tracer("shop").start_as_current_span("checkout"):
            await app.publish("order.created", {"id": 1})  # carries checkout's context

Because the context travels in the event, the trace crosses everything an event does:
the durable queues (an event read back from SQLite, Redis or NATS, in this process or
another, still names its parent), the HTTP ingress (a client that sends a CloudEvent in
binary mode puts the context in the ``ce-traceparent`` and ``ce-tracestate`` headers; in
structured mode it is a member of the JSON), and handlers that publish further events
(their events carry the ``process`` span they were published in).

* **At publish**, :func:`inject` (an ``app.on_publish`` hook) adds the context of the
  span active in the publisher to an event that carries none; an event that already
  carries one (sent so by a client) keeps it, as the extension's specification asks.
  Outside any span, the event is queued as it is. Behind OpenTelemetry's ASGI
  instrumentation, an event posted to the ingress without a context of its own carries
  the request's server span, which is current while the ingress publishes.
* **At delivery**, :class:`TracingMiddleware` (an ``app.use`` middleware) starts the
  span ``process <event type>`` as a child of the event's context, with a link to it,
  or as the root of a new trace when the event carries none. Each attempt is a span of
  its own (a retry is another span, ``reactor.delivery.retries`` says which); an
  attempt that raises records the exception and ends with status ``ERROR``, as does one
  cut by a timeout or by the app's shutdown.

Attributes of the ``process`` spans: ``messaging.system`` (``"reactor"``),
``messaging.operation.type`` and ``messaging.operation.name`` (``"process"``),
``messaging.destination.name`` (the event type), ``messaging.consumer.group.name`` (the
consumer), ``messaging.message.id``, the ``cloudevents.event_*`` attributes
(``id``, ``source``, ``type``, ``spec_version``, ``subject``), ``reactor.delivery.attempt``
and ``reactor.delivery.retries`` (see :class:`reactor.Delivery`).

Only ``opentelemetry-api`` is needed; install the SDK and an exporter in the application,
as usual. Without the middleware or the hook, reactor makes no OpenTelemetry call.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

import attrs

import reactor
from reactor import Event, Handler, Reactor
from reactor.abc import import_extra

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import TracerProvider

__all__ = ["TracingMiddleware", "extract", "inject", "instrument"]

_TRACE_EXTENSIONS = ("traceparent", "tracestate")


@cache
def _modules() -> tuple[Any, Any, Any]:
    """``opentelemetry.trace``, the W3C Trace Context propagator and the ``Context`` class,
    imported on first use (the extension's format is W3C Trace Context whatever the
    application's global propagator is)."""
    trace = import_extra("opentelemetry.trace", extra="otel")
    propagation = import_extra("opentelemetry.trace.propagation.tracecontext", extra="otel")
    context = import_extra("opentelemetry.context", extra="otel")
    return trace, propagation.TraceContextTextMapPropagator(), context.Context


def inject(event: Event, context: Context | None = None) -> Event:
    """Return *event* carrying the trace context of *context*'s span (default: the current
    one) in its ``traceparent`` and ``tracestate`` extensions.

    The event is returned unchanged when it already has a ``traceparent`` (its producer
    set it) or when there is no valid span to carry. ``app.on_publish(inject)`` applies it
    to every event published (:func:`instrument` does).

    :param event: the event about to be published
    :param context: the OpenTelemetry context whose span to carry (default: the current)
    :return: the event, or a copy with the extensions
    :raises ModuleNotFoundError: opentelemetry-api is not installed
    """
    if "traceparent" in event.extensions:
        return event
    trace, propagator, _ = _modules()
    if not trace.get_current_span(context).get_span_context().is_valid:
        return event
    carrier: dict[str, str] = {}
    propagator.inject(carrier, context)
    added = {name: carrier[name] for name in _TRACE_EXTENSIONS if carrier.get(name)}
    if not added:
        return event
    return attrs.evolve(event, extensions={**event.extensions, **added})


def extract(event: Event) -> Context:
    """Return the OpenTelemetry context that *event*'s ``traceparent`` and ``tracestate``
    extensions carry (an empty context when they carry none, or nothing valid).

    :param event: a received event
    :raises ModuleNotFoundError: opentelemetry-api is not installed
    """
    _, propagator, empty = _modules()
    carrier = {
        name: value
        for name in _TRACE_EXTENSIONS
        if isinstance(value := event.extensions.get(name), str)
    }
    context: Context = propagator.extract(carrier, context=empty())
    return context


class TracingMiddleware:
    """A middleware (``app.use``) that runs every delivery attempt in a ``process`` span.

    See :mod:`reactor.opentelemetry` for the spans it makes; :func:`instrument` installs
    it together with the publish hook.

    :param tracer_provider: the provider of the tracer (default: the global one)
    :raises ModuleNotFoundError: opentelemetry-api is not installed
    """

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        trace, _, _ = _modules()
        self._trace = trace
        self._tracer = trace.get_tracer(
            "reactor", reactor.__version__, tracer_provider=tracer_provider
        )
        status = import_extra("opentelemetry.trace.status", extra="otel")
        self._status = status.Status
        self._error = status.StatusCode.ERROR
        self._consumer = trace.SpanKind.CONSUMER
        self._link = trace.Link

    async def __call__(self, call_next: Handler, event: Event) -> None:
        """Run the rest of the chain and the handler inside the attempt's span.

        :param call_next: the rest of the chain
        :param event: the event delivered
        :raises Exception: what the handler (or later middleware) raised, after recording it
        """
        delivery = reactor.current_delivery()
        parent = extract(event)
        parent_span = self._trace.get_current_span(parent).get_span_context()
        attributes: dict[str, str | int] = {
            "messaging.system": "reactor",
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.destination.name": event.type,
            "messaging.consumer.group.name": delivery.consumer,
            "messaging.message.id": event.id,
            "cloudevents.event_id": event.id,
            "cloudevents.event_source": event.source,
            "cloudevents.event_type": event.type,
            "cloudevents.event_spec_version": event.specversion,
            "reactor.delivery.attempt": delivery.attempt,
            "reactor.delivery.retries": delivery.retries,
        }
        if event.subject is not None:
            attributes["cloudevents.event_subject"] = event.subject
        with self._tracer.start_as_current_span(
            f"process {event.type}",
            # The event's context, or an empty one: never the context the dispatcher's
            # task happened to inherit when the app started.
            context=parent,
            kind=self._consumer,
            links=[self._link(parent_span)] if parent_span.is_valid else [],
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                await call_next(event)
            except Exception as exc:
                span.record_exception(exc)
                span.set_status(self._status(self._error, f"{type(exc).__qualname__}: {exc}"))
                raise
            except BaseException as exc:
                # Cancelled: by the subscription's timeout, or by the app's shutdown.
                span.set_status(self._status(self._error, f"cancelled ({type(exc).__name__})"))
                raise


def instrument(app: Reactor, *, tracer_provider: TracerProvider | None = None) -> None:
    """Trace *app*: a ``process`` span per delivery attempt, and the context of the
    publisher's span carried in each event published (see :mod:`reactor.opentelemetry`).

    Installs :class:`TracingMiddleware` with ``app.use()`` (middleware used before runs
    outside the span, middleware used after inside it) and :func:`inject` with
    ``app.on_publish()``.

    :param app: the app to trace
    :param tracer_provider: the provider of the tracer (default: the global one)
    :raises ModuleNotFoundError: opentelemetry-api is not installed
    """
    app.use(TracingMiddleware(tracer_provider))
    app.on_publish(inject)
