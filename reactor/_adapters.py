"""Handler adapters: typed data (``data=``), plain ``def`` handlers (``run_in_thread=True``)
and the events a handler returns (``outputs=True``).

Both are built once, when a handler is subscribed, and are the innermost links of the
chain that the dispatcher calls (inside every middleware, see ``Reactor.use``): the
dispatcher still calls one coroutine function taking the event, so its timeout, retries
and dead letters apply to them as to any handler, and a subscription without these
options pays nothing.

Why the typed handler receives the converted object itself, not the event with its data
replaced: a type checker then sees ``async def handle(order: Order)`` checked against
``data=Order`` (an ``Event`` whose ``data`` is ``Any`` could not say what it holds), and
the handler is plain domain code that tests call with an ``Order``. The event is still at
hand: ``reactor.current_delivery().event``, and middleware sees the event as always.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from typing import Any

import anyio
import anyio.to_thread
import attrs

from ._convert import data_converter
from ._event import Event

__all__ = [
    "CAUSATION_ID",
    "CORRELATION_ID",
    "OutputsHandler",
    "ThreadLimit",
    "ThreadedHandler",
    "TypedHandler",
    "caused_by",
]

#: The extension attribute of an output naming the event that caused it (its ``id``).
CAUSATION_ID = "causationid"
#: The extension attribute naming the first event of a chain of outputs: the cause's own
#: ``correlationid`` if it has one, else the cause's ``id``.
CORRELATION_ID = "correlationid"


class ThreadLimit:
    """An app's bound on the worker threads its ``run_in_thread`` handlers use at once.

    One limiter per app, not per subscription: a subscription's ``concurrency`` already
    bounds its own deliveries, and what sync handlers compete for (threads, the
    connections of a blocking driver, the GIL) is the process's, so one bound holds
    whatever number of sync subscriptions an app has. It is a limiter of the app's own,
    not anyio's default one, so that the app's handlers and other code's
    ``to_thread.run_sync`` calls (file I/O, the SQLite queue) never starve each other.
    """

    __slots__ = ("_limiter", "total")

    def __init__(self, total: int) -> None:
        self.total = total
        self._limiter: anyio.CapacityLimiter | None = None

    def start(self) -> None:
        """Create the limiter for a run of the app (of the backend running it)."""
        self._limiter = anyio.CapacityLimiter(self.total)

    @property
    def limiter(self) -> anyio.CapacityLimiter:
        """The limiter of the current run."""
        if self._limiter is None:  # a handler called outside a run of the app (a test)
            self.start()
        assert self._limiter is not None
        return self._limiter


class ThreadedHandler:
    """Runs a plain ``def`` handler in a worker thread, under the app's thread limit.

    On cancellation (the subscription's timeout, the app's shutdown) the await ends at
    once and the thread is abandoned: it runs to its end, and what it returns or raises
    is ignored (a thread cannot be stopped). It then no longer counts against the limit.
    """

    __slots__ = ("_func", "_threads")

    def __init__(self, func: Callable[[Any], object], threads: ThreadLimit) -> None:
        self._func = func
        self._threads = threads

    async def __call__(self, argument: Any) -> object:
        """Run the handler on *argument* in a worker thread and return its result."""
        return await anyio.to_thread.run_sync(
            self._func, argument, abandon_on_cancel=True, limiter=self._threads.limiter
        )

    def __repr__(self) -> str:
        return f"<run_in_thread {self._func!r}>"


class TypedHandler:
    """Converts the event's data to the subscription's ``data=`` class, then calls the
    handler with the object; data that does not fit raises
    :class:`~reactor.DataValidationError` before the handler is called."""

    __slots__ = ("_convert", "_handler")

    def __init__(
        self,
        data: type,
        handler: Callable[[Any], Coroutine[Any, Any, object]],
        written: Callable[..., object],
    ) -> None:
        """:param data: the class to convert to
        :param handler: what is called with the object
        :param written: the handler as the user wrote it (*handler* may be an adapter)
        """
        # String annotations (``from __future__ import annotations``) name classes of the
        # handler's module, which is not always the class's module in sys.modules.
        namespace = getattr(inspect.unwrap(written), "__globals__", None)
        self._convert: Callable[[object], object] = data_converter(data, namespace)
        self._handler = handler

    async def __call__(self, event: Event) -> object:
        """Call the handler with the event's data converted."""
        return await self._handler(self._convert(event.data))

    def __repr__(self) -> str:
        return f"<typed {self._handler!r}>"


def caused_by(output: Event, cause: Event) -> Event:
    """Return *output* with the extensions linking it to *cause*, unless it has them.

    ``causationid`` is the cause's ``id``; ``correlationid`` is the cause's own
    ``correlationid`` if it has one (so a chain A -> B -> C keeps A's), else its ``id``.
    A value the handler set already is kept.
    """
    extensions = output.extensions
    if CAUSATION_ID in extensions and CORRELATION_ID in extensions:
        return output
    links = {
        CAUSATION_ID: cause.id,
        CORRELATION_ID: cause.extensions.get(CORRELATION_ID, cause.id),
    }
    return attrs.evolve(output, extensions={**links, **extensions})


class OutputsHandler:
    """Publishes the events a handler returns (``outputs=True``), linked to their cause.

    The handler returns ``None`` (nothing to publish), an :class:`~reactor.Event`, or an
    iterable of them. They are published inside the attempt, after the handler returned
    and before the delivery settles: a failure to publish them is the attempt's failure
    (retried and dead-lettered as any), and so is a return value of another kind (a
    :class:`TypeError`). One event is published with ``publish()``, which waits for room;
    several with ``publish_many()``, all or nothing.
    """

    __slots__ = ("_handler", "_publish", "_publish_many", "_written")

    def __init__(
        self,
        handler: Callable[[Event], Awaitable[object]],
        written: Callable[..., object],
        publish: Callable[[Event], Awaitable[object]],
        publish_many: Callable[[Sequence[Event]], Awaitable[None]],
    ) -> None:
        """:param handler: what is called with the event
        :param written: the handler as the user wrote it (for the error message)
        :param publish: the app's ``publish``
        :param publish_many: the app's ``publish_many``
        """
        self._handler = handler
        self._written = written
        self._publish = publish
        self._publish_many = publish_many

    async def __call__(self, event: Event) -> None:
        """Call the handler with *event*, then publish what it returned."""
        result = await self._handler(event)
        if result is None:
            return
        if isinstance(result, Event):
            await self._publish(caused_by(result, event))
            return
        outputs = self._outputs(result)
        if len(outputs) == 1:
            await self._publish(caused_by(outputs[0], event))
        elif outputs:
            await self._publish_many([caused_by(output, event) for output in outputs])

    def _outputs(self, result: object) -> list[Event]:
        """The events of an iterable *result*, all checked before any is published."""
        if not isinstance(result, Iterable) or isinstance(result, str | bytes | bytearray):
            raise self._refuse(repr(result))
        outputs = list(result)
        for output in outputs:
            if not isinstance(output, Event):
                raise self._refuse(f"an iterable holding {output!r}")
        return outputs

    def _refuse(self, what: str) -> TypeError:
        return TypeError(
            f"handler {self._written!r} returned {what}: a handler subscribed with "
            "outputs=True returns None, a reactor.Event or an iterable of Events"
        )

    def __repr__(self) -> str:
        return f"<outputs {self._handler!r}>"
