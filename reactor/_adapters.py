"""Handler adapters: typed data (``data=``) and plain ``def`` handlers (``run_in_thread=True``).

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
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
import anyio.to_thread

from ._convert import data_converter
from ._event import Event

__all__ = ["ThreadLimit", "ThreadedHandler", "TypedHandler"]


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
