"""Subscriptions: which events a consumer wants, and how it wants them delivered."""

from __future__ import annotations

import fnmatch
import inspect
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any, cast

from . import validators
from ._policies import Batch, Debounce, RateLimit, Retry
from ._types import Handler, KeyFunction, Predicate

__all__ = ["DEFAULT_CONCURRENCY", "Subscription", "compile_glob", "default_name", "is_glob"]

#: The most deliveries of one subscription running at once, unless it says otherwise.
DEFAULT_CONCURRENCY = 16

_GLOB_CHARS = frozenset("*?[")


def is_glob(pattern: str) -> bool:
    """Whether *pattern* has a glob character (``*``, ``?``, ``[``): if not, it matches
    itself only."""
    return not _GLOB_CHARS.isdisjoint(pattern)


def compile_glob(pattern: str, what: str) -> Callable[[str], bool]:
    """Return a fast matcher for a case-sensitive glob (``*``, ``?``, ``[...]``).

    :param pattern: the glob; ``"*"`` matches everything
    :param what: what the pattern is for, for the error message
    :raises TypeError: *pattern* is not a string
    :raises ValueError: *pattern* is empty
    """
    if not isinstance(pattern, str):
        raise TypeError(f"{what} pattern must be a str, got {type(pattern).__name__}")
    if not pattern:
        raise ValueError(f"{what} pattern must not be empty; use '*' to match everything")
    if pattern == "*":
        return lambda value: True
    if not is_glob(pattern):
        return pattern.__eq__
    regex = re.compile(fnmatch.translate(pattern))
    match = regex.match
    return lambda value: match(value) is not None


def is_coroutine_callable(handler: object) -> bool:
    """Whether calling *handler* returns a coroutine (async def, partial or async ``__call__``)."""
    if inspect.iscoroutinefunction(handler):
        return True
    call = getattr(handler, "__call__", None)  # noqa: B004 - we want the bound method itself
    return call is not None and inspect.iscoroutinefunction(call)


def default_name(handler: object) -> str:
    """The consumer name of a handler that was not given one.

    Its qualified name (``Class.method`` for a method), without the ``outer.<locals>.``
    prefix of a function defined inside another; a callable object's class name.
    """
    target = getattr(handler, "func", handler)  # look through functools.partial
    name = getattr(target, "__qualname__", None) or type(target).__qualname__
    return str(name).rpartition("<locals>.")[2]


class Subscription:
    """One consumer's subscription, returned by ``app.subscribe(pattern, handler)``.

    Its attributes are read-only; :meth:`cancel` stops routing new events to it.
    Deliveries already routed to it still run to their end (they settle as usual).
    """

    __slots__ = (
        "_call",
        "_matches_source",
        "_matches_type",
        "_on_cancel",
        "batch",
        "concurrency",
        "data",
        "debounce",
        "handler",
        "name",
        "ordered_by",
        "outputs",
        "pattern",
        "rate_limit",
        "retry",
        "run_in_thread",
        "source",
        "timeout",
        "where",
    )

    def __init__(
        self,
        *,
        pattern: str,
        handler: Callable[[Any], object],
        name: str | None,
        source: str | None,
        where: Predicate | None,
        concurrency: int,
        ordered_by: KeyFunction | None,
        timeout: float | None,
        retry: Retry,
        data: type | None = None,
        run_in_thread: bool = False,
        outputs: bool = False,
        batch: Batch | None = None,
        rate_limit: RateLimit | float | None = None,
        debounce: Debounce | float | timedelta | None = None,
    ) -> None:
        validators.boolean("run_in_thread", run_in_thread)
        validators.boolean("outputs", outputs)
        if run_in_thread:
            if not callable(handler):
                raise TypeError(f"handler must be callable, got {handler!r}")
            if is_coroutine_callable(handler):
                raise TypeError(
                    f"handler {handler!r} is a coroutine function: run_in_thread=True is "
                    "for plain `def` handlers; leave it out to await the handler"
                )
        elif not is_coroutine_callable(handler):
            raise TypeError(
                f"handler {handler!r} is not a coroutine function: define it with "
                "`async def` (reactor awaits every handler), or pass run_in_thread=True "
                "to run a plain `def` handler in a worker thread"
            )
        if data is not None and not isinstance(data, type):
            raise TypeError(f"data must be a class, got {data!r}")
        self._matches_type = compile_glob(pattern, "event type")
        self._matches_source = None if source is None else compile_glob(source, "source")
        if name is None:
            name = default_name(handler)
        validators.name("name", name)
        if where is not None and not callable(where):
            raise TypeError(f"where must be a callable taking the event, got {where!r}")
        if ordered_by is not None and not callable(ordered_by):
            raise TypeError(f"ordered_by must be a callable taking the event, got {ordered_by!r}")
        validators.integer("concurrency", concurrency, minimum=1)
        if timeout is not None:
            validators.seconds("timeout", timeout, positive=True)
        if not isinstance(retry, Retry):
            raise TypeError(f"retry must be a reactor.Retry, got {retry!r}")
        if batch is not None:
            if not isinstance(batch, Batch):
                raise TypeError(f"batch must be a reactor.Batch, got {batch!r}")
            if data is not None or outputs:
                raise TypeError(
                    "a batch handler receives list[Event]: data= and outputs= are for "
                    "handlers of one event; convert or publish in the handler"
                )
        if rate_limit is not None and not isinstance(rate_limit, RateLimit):
            if not isinstance(rate_limit, int | float) or isinstance(rate_limit, bool):
                raise TypeError(
                    "rate_limit must be a number of deliveries per second or a "
                    f"reactor.RateLimit, got {rate_limit!r}"
                )
            rate_limit = RateLimit(rate_limit)
        if debounce is not None and not isinstance(debounce, Debounce):
            debounce = Debounce(validators.duration("debounce", debounce, positive=True))
        #: The glob on the event type.
        self.pattern = pattern
        #: The handler as given: a coroutine function, or with ``run_in_thread`` a plain
        #: function (typed as the coroutine function that the dispatcher calls: the app
        #: hands the dispatcher the adapters of ``_call`` in its place).
        self.handler: Handler = cast(Handler, handler)
        #: The consumer name: unique within the app, the key of outcomes and dead letters.
        self.name = name
        #: The glob on the event source, or ``None`` for any source.
        self.source = source
        #: The extra filter evaluated per event, or ``None``.
        self.where = where
        #: The most deliveries of this subscription running at once.
        self.concurrency = concurrency
        #: The ordering key function, or ``None`` for no ordering.
        self.ordered_by = ordered_by
        #: Seconds each attempt may take, or ``None`` for no limit.
        self.timeout = timeout
        #: The retry policy.
        self.retry = retry
        #: The class the event's data is converted to for the handler, or ``None``: the
        #: handler receives the event.
        self.data = data
        #: Whether the handler is a plain function run in a worker thread.
        self.run_in_thread = run_in_thread
        #: Whether the events the handler returns are published (``outputs=True``).
        self.outputs = outputs
        #: How events are gathered for a batch handler, or ``None``: one event per call.
        self.batch = batch
        #: The token bucket on the deliveries' start, or ``None``.
        self.rate_limit = rate_limit
        #: The debounce of bursts per key, or ``None``.
        self.debounce = debounce
        #: What the dispatcher calls, inside the middleware: the handler, or the adapters
        #: that convert the data, run it in a thread and publish its outputs (set by the
        #: app).
        self._call = self.handler
        #: Set by the app that routes to this subscription: stops the routing.
        self._on_cancel: Callable[[], None] | None = None

    def matches(self, type: str, source: str) -> bool:
        """Whether an event of this *type* from this *source* is routed here (before ``where``)."""
        if not self._matches_type(type):
            return False
        return self._matches_source is None or self._matches_source(source)

    @property
    def active(self) -> bool:
        """Whether new events are still routed to this subscription."""
        return self._on_cancel is not None

    def cancel(self) -> None:
        """Stop routing new events here; deliveries already routed still run. Idempotent."""
        on_cancel, self._on_cancel = self._on_cancel, None
        if on_cancel is not None:
            on_cancel()

    def __repr__(self) -> str:
        state = "active" if self.active else "cancelled"
        return f"<Subscription {self.name!r} to {self.pattern!r} ({state})>"
