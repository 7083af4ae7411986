"""The Reactor: wiring, lifecycle, and the publish / subscribe API.

Why one module of about 800 lines: it is one class, the facade, and most of its length is
the documentation of the public methods users call. The jobs it could hand out are
already elsewhere: routing and delivery in ``_dispatch``, receipts in ``_receipts``, the
consumer options in ``_types``, the triggers in the plugins (bound by ``_Shortcut``).
"""

from __future__ import annotations

import enum
import importlib
import logging
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from contextlib import AsyncExitStack
from datetime import datetime, timedelta
from functools import partial
from types import MappingProxyType, MethodType, TracebackType
from typing import (
    TYPE_CHECKING,
    Any,
    Concatenate,
    Generic,
    Literal,
    ParamSpec,
    TypeVar,
    Unpack,
    overload,
)

import anyio
import attrs
from anyio.abc import TaskGroup, TaskStatus
from anyio.lowlevel import EventLoopToken, current_token

from . import validators
from ._adapters import OutputsHandler, ThreadedHandler, ThreadLimit, TypedHandler
from ._clock import Clock, SystemClock
from ._dispatch import Dispatcher
from ._event import DELIVER_AT_EXTENSION, EXPIRES_AT_EXTENSION, Event
from ._exceptions import ConsumerNotFound, DuplicateEvent, QueueFull, ReactorNotRunning
from ._health import DEFAULT_STUCK_AFTER, Health
from ._outcomes import DEFAULT_DEAD_LETTER_LIMIT, DeadLetter, DeadLetters
from ._policies import NO_RETRY, Batch, Retry
from ._receipts import Receipt
from ._stats import Stats
from ._subscription import (
    DEFAULT_CONCURRENCY,
    Subscription,
    compile_glob,
    is_coroutine_callable,
)
from ._types import (
    UNSET,
    ConsumerOptions,
    EventAttributes,
    Handler,
    Middleware,
    Predicate,
    PublishOptions,
)
from .abc import App, EventQueue, Source

if TYPE_CHECKING:
    from ._dedupe import Deduplicator
    from .sources import files, http, mqtt, objects, postgres, redis, timers
    from .sources.http import HttpIngress

__all__ = ["NOTIFICATION_TYPE", "Reactor"]

logger = logging.getLogger("reactor")

#: The worker threads that ``run_in_thread=True`` handlers use at once, unless the app says
#: otherwise (as many as anyio's own default limiter).
DEFAULT_MAX_THREADS = 40

#: The type of the events that ``app.notify(channel, data)`` publishes; the channel is the subject.
NOTIFICATION_TYPE = "reactor.notification"

#: The keywords of PublishOptions that are not CloudEvents attributes.
_DELIVERY_OPTIONS = frozenset({"delay", "deliver_at", "expires"})

H = TypeVar("H", bound=Handler)
#: A plain ``def`` handler (``run_in_thread=True``).
S = TypeVar("S", bound=Callable[[Event], object])
#: The class of a typed handler's data (``data=``).
D = TypeVar("D")
#: A batch handler.
BH = TypeVar("BH", bound=Callable[[list[Event]], object])
M = TypeVar("M", bound=Middleware)
P = ParamSpec("P")
R = TypeVar("R")

_get_ident = threading.get_ident


class _Shortcut(Generic[P, R]):
    """A method of :class:`Reactor` that is a plugin's function with the app bound to it.

    ``app.every(5)`` is ``reactor.sources.timers.every(app, 5)``: the plugin function is
    the one definition of the trigger's signature and documentation. The plugin module is
    imported on first use, so that ``import reactor`` imports no trigger's dependencies
    (cronsim, watchfiles). Type checkers see the function itself.
    """

    def __init__(self, module: str, function: str) -> None:
        self._module = f"{__package__}.sources.{module}"
        self._function = function
        self.__doc__ = f"``{self._module}.{function}`` with the app bound as its first argument."

    @overload
    def __get__(self, app: None, owner: type[Reactor]) -> Callable[Concatenate[App, P], R]: ...
    @overload
    def __get__(self, app: Reactor, owner: type[Reactor]) -> Callable[P, R]: ...
    def __get__(self, app: Reactor | None, owner: type[Reactor]) -> Any:
        function = getattr(importlib.import_module(self._module), self._function)
        # On the class, the function itself (``Reactor.every(app, 5)``, help(Reactor)).
        return function if app is None else MethodType(function, app)


if TYPE_CHECKING:

    def _bind(function: Callable[Concatenate[App, P], R]) -> _Shortcut[P, R]:
        """How type checkers see a shortcut: the plugin function, less its app argument."""


def _sole_failure(error: BaseException) -> BaseException:
    """The one exception inside *error*'s nested exception groups, cancellations aside;
    *error* itself when it is no group or holds several."""
    if not isinstance(error, BaseExceptionGroup):
        return error
    cancelled = anyio.get_cancelled_exc_class()
    found: list[BaseException] = []
    pending: list[BaseException] = [error]
    while pending:
        current = pending.pop()
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        elif not isinstance(current, cancelled):
            found.append(current)
    return found[0] if len(found) == 1 else error


def _compose(handler: Handler, middleware: Sequence[Middleware]) -> Handler:
    """Return *handler* wrapped in *middleware*, the first one outermost.

    Without middleware the handler itself: the dispatcher then calls it with nothing in
    between. Each layer is a :func:`functools.partial` binding the next one as
    ``call_next``: one extra call per layer and attempt, no closure per delivery. The
    innermost ``call_next`` is a partial of the handler too (a C call, nearly free), so
    that every ``call_next`` is an object of this subscription's own, which middleware
    may key per-consumer state on (see ``Reactor.use``).
    """
    if not middleware:
        return handler
    handler = partial(handler)
    for layer in reversed(middleware):
        handler = partial(layer, handler)
    return handler


def _duration(what: str, value: object) -> timedelta:
    """A delivery option's duration (a timedelta or seconds, ``>= 0``), checked."""
    if isinstance(value, timedelta) and value >= timedelta(0):
        return value  # (exact: not through float seconds)
    return timedelta(seconds=validators.duration(what, value))


class _State(enum.Enum):
    IDLE = "idle"
    STARTING = "starting"
    RUNNING = "running"
    DRAINING = "draining"


class _SubjectIs:
    """The filter of ``on_notification(channel)`` (a class, so that it has a useful repr)."""

    __slots__ = ("_match", "channel")

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self._match = compile_glob(channel, "channel")

    def __call__(self, event: Event) -> bool:
        subject = event.subject
        return subject is not None and self._match(subject)

    def __repr__(self) -> str:
        return f"subject matches {self.channel!r}"


class Reactor:
    """An event-driven app: subscriptions, trigger sources, an ingestion queue, a dispatcher.

    Every event published (by the app, a source, or ``notify()``) goes through the bounded
    ingestion queue to the dispatcher, which hands it to **every** subscription whose
    pattern and filters match, running consumers concurrently, each isolated from the
    others' failures.

    :param queue: the ingestion queue (default: a :class:`~reactor.queues.memory.MemoryQueue`
        holding up to 10,000 events); :meth:`use_queue` replaces it before a start
    :param clock: the source of time for every wait (default: the system clock; pass a
        :class:`reactor.testing.VirtualClock` in tests)
    :param source: the CloudEvents ``source`` of events published by type name
    :param max_in_flight: the most events taken from the queue whose deliveries are not
        all settled; bounds memory whatever the consumers do (it also bounds each
        subscription's inbox)
    :param graceful_timeout: seconds that leaving ``async with app:`` waits for queued and
        in-flight deliveries before cancelling them
    :param retry: the retry policy of subscriptions that name none (default: one attempt)
    :param timeout: the per-attempt timeout of subscriptions that name none (default: none)
    :param dead_letter_limit: the most dead letters kept in :attr:`dead_letters`
    :param max_threads: the most worker threads that the app's ``run_in_thread=True``
        handlers use at once (one bound for the whole app; see :meth:`subscribe`)
    :param dedupe: a window (a :class:`~datetime.timedelta` or seconds) during which an
        event whose ``source`` and ``id`` the app accepted already is dropped instead of
        published again: a producer's retry is not handled twice. The keys are kept by a
        queue that can store them with its events (the SQLite queue: they survive a
        restart), else in the app's memory. Duplicates are counted in
        ``stats().deduplicated``; see :meth:`publish` for what each call returns for one.
        ``None`` (default): no deduplication, and no cost.
    """

    def __init__(
        self,
        *,
        queue: EventQueue | None = None,
        clock: Clock | None = None,
        source: str = "/reactor",
        max_in_flight: int = 1000,
        graceful_timeout: float = 30.0,
        retry: Retry | None = None,
        timeout: float | None = None,
        dead_letter_limit: int = DEFAULT_DEAD_LETTER_LIMIT,
        max_threads: int = DEFAULT_MAX_THREADS,
        dedupe: timedelta | float | None = None,
    ) -> None:
        if queue is None:
            from .queues.memory import MemoryQueue

            queue = MemoryQueue()
        elif not isinstance(queue, EventQueue):
            raise TypeError(f"queue must be a reactor.abc.EventQueue, got {queue!r}")
        if clock is None:
            clock = SystemClock()
        elif not isinstance(clock, Clock):
            raise TypeError(f"clock must implement reactor.Clock, got {clock!r}")
        validators.name("source", source)
        validators.integer("max_in_flight", max_in_flight, minimum=1)
        validators.integer("max_threads", max_threads, minimum=1)
        if retry is not None and not isinstance(retry, Retry):
            raise TypeError(f"retry must be a reactor.Retry, got {retry!r}")
        if timeout is not None:
            validators.seconds("timeout", timeout, positive=True)
        if dedupe is not None:
            dedupe = validators.duration("dedupe", dedupe, positive=True)
        self._queue = queue
        self._clock = clock
        self._source = source
        self.graceful_timeout = validators.seconds("graceful_timeout", graceful_timeout)
        self._retry = NO_RETRY if retry is None else retry
        self._timeout = timeout
        self._dead_letters = DeadLetters(dead_letter_limit)
        self._threads = ThreadLimit(max_threads)
        self._dispatcher = Dispatcher(
            queue=queue,
            clock=clock,
            dead_letters=self._dead_letters,
            max_in_flight=max_in_flight,
            on_failure=self._refuse_events,
        )
        self._sources: list[Source] = []
        self._middleware: tuple[Middleware, ...] = ()
        self._publish_hooks: tuple[Callable[[Event], Event], ...] = ()
        # None without dedupe=: every publish path tests it once, and does nothing more.
        self._dedupe: Deduplicator | None = None
        if dedupe is not None:
            from ._dedupe import Deduplicator  # (only here: most apps do not dedupe)

            self._dedupe = Deduplicator(dedupe)
        self._state = _State.IDLE
        # The state test on every publish, kept as a plain bool (an enum lookup is slower).
        self._accepting = False
        self._published = 0
        self._stack: AsyncExitStack | None = None
        self._tg: TaskGroup | None = None
        self._sources_tg: TaskGroup | None = None
        self._sources_stopped: anyio.Event | None = None
        self._stop_scope: anyio.CancelScope | None = None
        self._token: EventLoopToken | None = None
        self._thread: int | None = None
        self._forced = False
        self._sources_started = False
        # What health() saw last: the dispatcher's progress count, and since when the
        # queue has held events without that count changing (None: not held).
        self._progress_seen = -1
        self._stalled_since: float | None = None

    # -- properties -----------------------------------------------------------------

    @property
    def clock(self) -> Clock:
        """The clock every timer, retry and timeout of this app waits on."""
        return self._clock

    @property
    def source(self) -> str:
        """The CloudEvents ``source`` of events published by type name."""
        return self._source

    @property
    def sources(self) -> tuple[Source, ...]:
        """The sources added with :meth:`add_source`, in order."""
        return tuple(self._sources)

    @property
    def queue(self) -> EventQueue:
        """The ingestion queue."""
        return self._queue

    def use_queue(self, queue: EventQueue) -> None:
        """Replace the ingestion queue, while the app is not running.

        The app takes its events from *queue* from its next start on, as if it had been
        built with ``Reactor(queue=queue)``: what the app reads from its queue (whether it
        acknowledges events, keeps dead letters in it, and its ``max_redeliveries``) comes
        from *queue*. ``reactor run APP --queue URL`` calls it, so that the queue of an
        app is chosen where it is deployed, without changing the module that builds it::

            app = Reactor()  # a memory queue while developing
            app.use_queue(SQLiteQueue("events.db"))  # what --queue sqlite:///events.db does

        The previous queue is left as it is: events still waiting in it are not moved, and
        it is not closed (the app closes its queue when it stops, so it is closed already).

        :param queue: the new queue, not opened (the app opens it when it starts)
        :raises TypeError: *queue* is not a :class:`reactor.abc.EventQueue`
        :raises RuntimeError: the app is running (or starting, or draining)
        """
        if not isinstance(queue, EventQueue):
            raise TypeError(f"queue must be a reactor.abc.EventQueue, got {queue!r}")
        if self._state is not _State.IDLE:
            raise RuntimeError(
                "the queue of a running app cannot be replaced; call use_queue() before "
                "the app starts (before 'async with app:' or app.run())"
            )
        self._dispatcher.use_queue(queue)
        self._queue = queue

    def _use_clock(self, clock: Clock) -> None:
        """Replace the clock while the app is not running (``reactor.testing.virtual_clock``).

        :raises TypeError: *clock* is not a :class:`~reactor.Clock`
        :raises RuntimeError: the app is running (or starting, or draining)
        """
        if not isinstance(clock, Clock):
            raise TypeError(f"clock must implement reactor.Clock, got {clock!r}")
        if self._state is not _State.IDLE:
            raise RuntimeError(
                "the clock of a running app cannot be replaced; swap it before the app "
                "starts (before 'async with app:')"
            )
        self._clock = clock
        self._dispatcher._clock = clock

    @property
    def dead_letters(self) -> DeadLetters:
        """Deliveries that were given up, oldest first (see :class:`~reactor.DeadLetter`)."""
        return self._dead_letters

    @property
    def running(self) -> bool:
        """Whether the app accepts events (inside ``async with app:``, draining included)."""
        return self._state in (_State.RUNNING, _State.DRAINING)

    @property
    def subscriptions(self) -> tuple[Subscription, ...]:
        """The active subscriptions, in the order they were made."""
        return tuple(lane.sub for lane in self._dispatcher.lanes)

    # -- subscribing ----------------------------------------------------------------

    @overload
    def subscribe(
        self,
        pattern: str,
        handler: None = None,
        *,
        source: str | None = None,
        where: Predicate | None = None,
        data: None = None,
        run_in_thread: Literal[False] = False,
        **options: Unpack[ConsumerOptions],
    ) -> Callable[[H], H]: ...

    @overload
    def subscribe(
        self,
        pattern: str,
        handler: None = None,
        *,
        source: str | None = None,
        where: Predicate | None = None,
        data: None = None,
        run_in_thread: Literal[True],
        **options: Unpack[ConsumerOptions],
    ) -> Callable[[S], S]: ...

    @overload
    def subscribe(
        self,
        pattern: str,
        handler: None = None,
        *,
        source: str | None = None,
        where: Predicate | None = None,
        data: type[D],
        run_in_thread: Literal[False] = False,
        **options: Unpack[ConsumerOptions],
    ) -> Callable[
        [Callable[[D], Coroutine[Any, Any, R]]], Callable[[D], Coroutine[Any, Any, R]]
    ]: ...

    @overload
    def subscribe(
        self,
        pattern: str,
        handler: None = None,
        *,
        source: str | None = None,
        where: Predicate | None = None,
        data: type[D],
        run_in_thread: Literal[True],
        **options: Unpack[ConsumerOptions],
    ) -> Callable[[Callable[[D], R]], Callable[[D], R]]: ...

    @overload
    def subscribe(
        self,
        pattern: str,
        handler: Handler,
        *,
        source: str | None = None,
        where: Predicate | None = None,
        data: None = None,
        run_in_thread: Literal[False] = False,
        **options: Unpack[ConsumerOptions],
    ) -> Subscription: ...

    @overload
    def subscribe(
        self,
        pattern: str,
        handler: Callable[[Event], object],
        *,
        source: str | None = None,
        where: Predicate | None = None,
        data: None = None,
        run_in_thread: Literal[True],
        **options: Unpack[ConsumerOptions],
    ) -> Subscription: ...

    @overload
    def subscribe(
        self,
        pattern: str,
        handler: Callable[[D], Coroutine[Any, Any, object]],
        *,
        source: str | None = None,
        where: Predicate | None = None,
        data: type[D],
        run_in_thread: Literal[False] = False,
        **options: Unpack[ConsumerOptions],
    ) -> Subscription: ...

    @overload
    def subscribe(
        self,
        pattern: str,
        handler: Callable[[D], object],
        *,
        source: str | None = None,
        where: Predicate | None = None,
        data: type[D],
        run_in_thread: Literal[True],
        **options: Unpack[ConsumerOptions],
    ) -> Subscription: ...

    @overload
    def subscribe(
        self,
        pattern: str,
        handler: None = None,
        *,
        source: str | None = None,
        where: Predicate | None = None,
        run_in_thread: bool = False,
        batch: Batch,
        **options: Unpack[ConsumerOptions],
    ) -> Callable[[BH], BH]: ...

    @overload
    def subscribe(
        self,
        pattern: str,
        handler: Callable[[list[Event]], object],
        *,
        source: str | None = None,
        where: Predicate | None = None,
        run_in_thread: bool = False,
        batch: Batch,
        **options: Unpack[ConsumerOptions],
    ) -> Subscription: ...

    def subscribe(
        self,
        pattern: str,
        handler: Callable[[Any], object] | None = None,
        *,
        source: str | None = None,
        where: Predicate | None = None,
        data: type | None = None,
        run_in_thread: bool = False,
        batch: Batch | None = None,
        **options: Unpack[ConsumerOptions],
    ) -> Subscription | Callable[[Any], Any]:
        """Subscribe a coroutine *handler* to events whose type matches *pattern*.

        As a decorator (no *handler*) it returns the handler unchanged; called with a
        handler it returns the :class:`Subscription`, whose ``cancel()`` undoes it. Safe
        while the app runs: events routed after this call reach the new consumer.

        :param pattern: a case-sensitive glob on the event type (``"order.*"``; ``"*"``
            for every event)
        :param handler: ``async def handler(event) -> None``; with *data*, ``async def
            handler(order: Order) -> None``; with *run_in_thread*, a plain ``def``
        :param source: a glob on the event source (default: any source)
        :param where: an extra filter ``where(event) -> bool``, evaluated when the event is
            routed; if it raises, that is this consumer's failure (dead-lettered)
        :param data: a class (an attrs class, a dataclass, a ``msgspec.Struct``, a pydantic
            model): the handler receives the event's data converted to it instead of the
            event (which ``reactor.current_delivery().event`` still gives). Data that
            does not fit is dead-lettered at once with a :class:`~reactor.DataValidationError`,
            without calling the handler and without retries.
        :param run_in_thread: run a plain ``def`` handler in a worker thread, at most the
            app's ``max_threads`` at once; timeouts, retries and dead letters apply as
            to any handler, and a thread cut by the timeout (or the app's shutdown) is
            abandoned: it runs to its end, and its result or error is ignored
        :param batch: gather events into batches (:class:`~reactor.Batch`): the handler
            receives a ``list[Event]`` per call, and may fail some of them only by
            raising :class:`~reactor.BatchFailed`; middleware (``app.use``) does not wrap
            batch handlers, whose calls are not per event
        :param options: the consumer's ``name``, ``concurrency``, ``ordered_by``,
            ``timeout``, ``retry``, ``outputs``, ``rate_limit`` and ``debounce``
            (:class:`~reactor.ConsumerOptions`)
        :raises TypeError: *handler* is not a coroutine function (or, with
            *run_in_thread*, is one), *data* is not a supported class, or an unknown option
        :raises ValueError: a bad option, or the name is taken
        """
        validators.keywords("subscribe", options, ConsumerOptions)
        if handler is None:

            def decorate(func: Callable[[Any], object]) -> Callable[[Any], object]:
                self._subscribe(pattern, func, source, where, options, data, run_in_thread, batch)
                return func

            return decorate
        return self._subscribe(pattern, handler, source, where, options, data, run_in_thread, batch)

    def _subscribe(
        self,
        pattern: str,
        handler: Callable[[Any], object],
        source: str | None,
        where: Predicate | None,
        options: ConsumerOptions,
        data: type | None = None,
        run_in_thread: bool = False,
        batch: Batch | None = None,
    ) -> Subscription:
        timeout = options.get("timeout", UNSET)
        retry = options.get("retry", UNSET)
        sub = Subscription(
            pattern=pattern,
            handler=handler,
            name=options.get("name"),
            source=source,
            where=where,
            concurrency=options.get("concurrency", DEFAULT_CONCURRENCY),
            ordered_by=options.get("ordered_by"),
            timeout=self._timeout if timeout is UNSET else timeout,
            retry=self._retry if retry is UNSET else (NO_RETRY if retry is None else retry),
            data=data,
            run_in_thread=run_in_thread,
            outputs=options.get("outputs", False),
            batch=batch,
            rate_limit=options.get("rate_limit"),
            debounce=options.get("debounce"),
        )
        # The adapters are built before the subscription is added: a bad data= class
        # fails here, and subscribes nothing.
        call: Any = handler
        if run_in_thread:
            call = ThreadedHandler(handler, self._threads)
        if data is not None:
            call = TypedHandler(data, call, handler)
        if sub.outputs:
            call = OutputsHandler(call, handler, self.publish, self.publish_many)
        sub._call = call
        lane = self._dispatcher.add(sub)
        if self._middleware and not lane.batch:
            lane.handler = _compose(call, self._middleware)
        sub._on_cancel = partial(self._dispatcher.remove, lane)
        if self._state is not _State.IDLE:
            self._queue.note_consumers((sub.name,))
        return sub

    def use(self, middleware: M) -> M:
        """Wrap every delivery attempt of every subscription in *middleware*.

        A middleware is a coroutine function ``async def middleware(call_next, event)``
        (:data:`~reactor.Middleware`) that runs around each attempt, where ``await
        call_next(event)`` runs the rest of the chain and then the handler::

            @app.use
            async def timed(call_next: Handler, event: Event) -> None:
                started = time.perf_counter()
                try:
                    await call_next(event)
                finally:
                    delivery = reactor.current_delivery()  # consumer, attempt, retries
                    log.info("%s took %.3f s", delivery.consumer, time.perf_counter() - started)

        It sees what the handler would: :func:`~reactor.current_delivery` tells the consumer
        and which attempt this is (every retry runs the chain again), the subscription's
        timeout cuts it as it cuts the handler, and what it raises is the attempt's failure
        (retried and dead-lettered by the subscription's policy, like the handler's own).
        It may pass another event to ``call_next`` (to enrich it), or return without
        calling it (the delivery then succeeds without the handler: raise to refuse one).
        It must not call ``call_next`` more than once.

        ``call_next`` is one object for every attempt of a subscription, and another for
        each other subscription (even of the same handler), until the chain is replaced by
        the next ``use()``: a middleware that keeps state per consumer may key it on
        ``call_next`` and call :func:`~reactor.current_delivery` only the first time.

        The first middleware used is the outermost: it runs first and sees everything
        the later ones do. Without any, the dispatcher calls the handlers themselves: an
        app that uses none pays nothing for the feature.

        Why a wrapper coroutine rather than an async context manager: a wrapper sees the
        event, can change it or skip the handler, and knows the outcome from a plain
        ``try``; it costs one call per attempt, where a context manager costs two (enter
        and exit) and can neither skip nor replace the body.

        Safe at any time: the chain of every active subscription is replaced at once, and
        subscriptions made later get it too. An attempt already running finishes under
        the chain it started with, as do the remaining deliveries of a cancelled
        subscription.

        :param middleware: ``async def middleware(call_next, event)``
        :return: *middleware*, so that ``@app.use`` decorates it
        :raises TypeError: *middleware* is not a coroutine function
        """
        if not is_coroutine_callable(middleware):
            raise TypeError(
                f"middleware {middleware!r} is not a coroutine function: define it as "
                "`async def middleware(call_next, event)`"
            )
        self._middleware = (*self._middleware, middleware)
        for lane in self._dispatcher.lanes:
            if not lane.batch:  # (a batch handler's calls are not per event)
                lane.handler = _compose(lane.sub._call, self._middleware)
        return middleware

    def on_publish(self, hook: Callable[[Event], Event]) -> Callable[[Event], Event]:
        """Pass every event the app publishes through *hook* before it is queued.

        ``hook(event)`` returns the event to queue: the same one, or a copy with more
        (extensions such as a trace context: :func:`reactor.opentelemetry.instrument`
        uses it so that events carry the span they were published in). It runs in
        ``publish()``, ``publish_nowait()``, ``publish_and_wait()``, ``publish_many()`` and
        ``notify()``, for the app's code and its sources alike, on the event loop's thread;
        what it raises reaches the publisher. :meth:`redeliver` does not run it: a dead
        letter goes out again as it was. Hooks run in the order given; without any,
        publishing pays nothing for the feature.

        :param hook: ``hook(event) -> Event``, quick and synchronous
        :return: *hook*, so that ``@app.on_publish`` decorates it
        :raises TypeError: *hook* is not callable
        """
        if not callable(hook):
            raise TypeError(f"hook must be a callable taking and returning an Event, got {hook!r}")
        self._publish_hooks = (*self._publish_hooks, hook)
        return hook

    @property
    def middleware(self) -> tuple[Middleware, ...]:
        """The middleware given to :meth:`use`, outermost first."""
        return self._middleware

    def on_notification(self, channel: str, **options: Unpack[ConsumerOptions]) -> Callable[[H], H]:
        """Decorate a handler for the in-process notification *channel*.

        The handler receives the events that ``app.notify(channel, data)`` publishes: type
        ``"reactor.notification"``, subject *channel*, the data as given.

        :param channel: the channel name, or a case-sensitive glob on channel names
            (``"orders.*"`` receives ``notify("orders.created", ...)``; ``"*"`` every
            channel), as event type patterns are
        :param options: the consumer's options, as for :meth:`subscribe`
        """
        validators.name("channel", channel)
        return self.subscribe(NOTIFICATION_TYPE, where=_SubjectIs(channel), **options)

    # -- built-in triggers: the plugin functions with the app bound (reactor.sources) --

    if TYPE_CHECKING:
        every = _bind(timers.every)
        cron = _bind(timers.cron)
        at = _bind(timers.at)
        on_file_change = _bind(files.on_file_change)
        on_webhook = _bind(http.on_webhook)
        on_redis_message = _bind(redis.on_redis_message)
        on_mqtt = _bind(mqtt.on_mqtt)
        on_bucket_event = _bind(objects.on_bucket_event)
        on_pg_notify = _bind(postgres.on_pg_notify)
        on_row_change = _bind(postgres.on_row_change)
        on_bucket_change = _bind(objects.on_bucket_change)
    else:
        every = _Shortcut("timers", "every")
        cron = _Shortcut("timers", "cron")
        at = _Shortcut("timers", "at")
        on_file_change = _Shortcut("files", "on_file_change")
        on_webhook = _Shortcut("http", "on_webhook")
        on_redis_message = _Shortcut("redis", "on_redis_message")
        on_mqtt = _Shortcut("mqtt", "on_mqtt")
        on_bucket_event = _Shortcut("objects", "on_bucket_event")
        on_pg_notify = _Shortcut("postgres", "on_pg_notify")
        on_row_change = _Shortcut("postgres", "on_row_change")
        on_bucket_change = _Shortcut("objects", "on_bucket_change")

    @property
    def asgi(self) -> HttpIngress:
        """The app's HTTP ingress: an ASGI application that publishes what is POST-ed to it.

        CloudEvents (binary, structured or batch) and webhooks (see :meth:`on_webhook`);
        details in :mod:`reactor.sources.http`. Mount it in any ASGI server or framework
        and start the app from the host's lifespan.
        """
        from .sources import http

        return http.asgi(self)

    @property
    def schedules(self) -> timers.Schedules:
        """The app's timers by name, to list and steer from code.

        A mapping of each timer's name to its :class:`~reactor.sources.timers.Schedule`:
        its next fire time, and ``pause()``, ``resume()``, ``remove()`` and
        ``run_now()``; details in :mod:`reactor.sources.timers`.
        """
        from .sources import timers

        return timers.schedules(self)

    def add_source(self, source: Source) -> None:
        """Run *source* while the app runs (started now if the app is already running).

        :raises TypeError: *source* is not a :class:`reactor.abc.Source`
        """
        if not isinstance(source, Source):
            raise TypeError(f"source must be a reactor.abc.Source, got {source!r}")
        self._sources.append(source)
        if self._sources_tg is not None:
            self._sources_tg.start_soon(
                self._run_source, source, name=f"reactor source {source.name}"
            )

    # -- publishing -----------------------------------------------------------------

    def _check_publishing(self) -> None:
        """Raise unless the app accepts events from the calling thread.

        Publishing tests the same condition inline first: a call per publish costs.
        """
        if not self._accepting:
            raise ReactorNotRunning(
                "the app is not running: publish inside `async with app:` or from a "
                "handler or source while `app.run()` runs"
            )
        if _get_ident() != self._thread:
            raise RuntimeError(
                "publish(), publish_nowait(), publish_and_wait() and publish_many() must be "
                "called from the app's event loop thread; from another thread use "
                "app.publish_from_thread(...) (waits for room) or app.notify(channel, data)"
            )

    def _event(self, event: Event | str, data: Any, attributes: PublishOptions) -> Event:
        """Check that the app runs and return the event to publish."""
        if not self._accepting or _get_ident() != self._thread:
            self._check_publishing()
        if isinstance(event, Event):
            if attributes and not _DELIVERY_OPTIONS.isdisjoint(attributes):
                return self._timed_event(event, data, attributes)
            if data is not None or (
                attributes and any(value is not None for value in attributes.values())
            ):
                raise TypeError("pass either an Event or a type with its attributes, not both")
            return self._hooked(event) if self._publish_hooks else event
        if not isinstance(event, str):
            raise TypeError(f"publish() takes an Event or an event type str, got {event!r}")
        if not attributes or (len(attributes) == 1 and "source" in attributes):
            # The common call, publish(type, data) or with a source: no dict to build.
            source = attributes.get("source") if attributes else None
            common = Event(
                type=event,
                source=self._source if source is None else source,
                time=self._clock.now(),
                data=data,
            )
            return self._hooked(common) if self._publish_hooks else common
        if not _DELIVERY_OPTIONS.isdisjoint(attributes):
            return self._timed_event(event, data, attributes)
        validators.keywords("publish", attributes, EventAttributes)
        fields: dict[str, Any] = {
            name: value for name, value in attributes.items() if value is not None
        }
        fields.setdefault("source", self._source)
        if "time" not in fields:
            fields["time"] = self._clock.now()
        built = Event(type=event, data=data, **fields)
        return self._hooked(built) if self._publish_hooks else built

    def _timed_event(self, event: Event | str, data: Any, attributes: PublishOptions) -> Event:
        """The event to publish with the delivery options of *attributes* (``delay``,
        ``deliver_at``, ``expires``) as its ``deliverat`` and ``expiresat`` extensions."""
        rest = attributes.copy()
        delay = rest.pop("delay", None)
        deliver_at = rest.pop("deliver_at", None)
        expires = rest.pop("expires", None)
        built = self._event(event, data, rest)
        now = self._clock.now()
        times: dict[str, datetime] = {}
        if delay is not None:
            if deliver_at is not None:
                raise TypeError("pass either delay or deliver_at, not both")
            times[DELIVER_AT_EXTENSION] = now + _duration("delay", delay)
        elif deliver_at is not None:
            times[DELIVER_AT_EXTENSION] = validators.aware_datetime("deliver_at", deliver_at)
        if expires is not None:
            if isinstance(expires, datetime):
                expires_at = validators.aware_datetime("expires", expires)
            else:
                expires_at = now + _duration("expires", expires)
            due = times.get(DELIVER_AT_EXTENSION, now)
            if expires_at <= due:
                raise ValueError(
                    f"expires ({expires_at.isoformat()}) must be later than the time the event "
                    f"is delivered ({due.isoformat()}), or it could never be handled"
                )
            times[EXPIRES_AT_EXTENSION] = expires_at
        if not times:
            return built
        if DELIVER_AT_EXTENSION in times and not self._queue.supports_delay:
            raise NotImplementedError(
                f"the app's queue, {type(self._queue).__name__}, does not hold delayed events "
                "(delay= and deliver_at=); use one that does (MemoryQueue, SQLiteQueue, "
                "RedisStreamsQueue, NatsJetStreamQueue)"
            )
        return attrs.evolve(built, extensions={**built.extensions, **times})

    def _hooked(self, event: Event) -> Event:
        for hook in self._publish_hooks:
            event = hook(event)
            if not isinstance(event, Event):
                raise TypeError(f"the publish hook {hook!r} returned {event!r}, not an Event")
        return event

    async def publish(
        self, event: Event | str, data: Any = None, **attributes: Unpack[PublishOptions]
    ) -> Event:
        """Publish an event, waiting while the ingestion queue is full.

        Pass an :class:`Event`, or its type with the data and any other attributes
        (:class:`~reactor.EventAttributes`: ``source`` defaults to the app's, ``time`` to
        the clock's now, ``id`` to a new UUID). Does not yield to the event loop while
        the queue has room.

        The delivery options (:class:`~reactor.PublishOptions`) go with an :class:`Event`
        as well as with a type: ``delay=`` (a timedelta or seconds) or ``deliver_at=``
        (an aware datetime) keep the event in the queue until that time of the app's
        clock, and ``expires=`` (a timedelta from now, or an aware datetime) has it
        dead-lettered with :class:`~reactor.EventExpired`, not handled, when a delivery
        has not started by then::

            await app.publish("invoice.remind", {"id": 7}, delay=timedelta(days=3))
            await app.publish(quote, expires=timedelta(seconds=30))

        A delayed event counts against the queue's capacity while it waits, but not in
        its depth: leaving ``async with app:`` does not wait for it. The memory queue
        keeps it for the app's next start in this process; a durable queue keeps it in
        its storage, and delivers it when it is due after a restart.

        With the app's ``dedupe`` window, an event whose ``source`` and ``id`` the app
        accepted within the window is a duplicate: it is not queued (so not handled),
        ``stats().deduplicated`` counts it, and this returns as for any event. The same
        holds for :meth:`publish_nowait`, and for the events of :meth:`publish_many`;
        :meth:`publish_and_wait` returns a receipt whose ``duplicate`` is ``True``.

        :return: the event as queued (a duplicate: as it would have been)
        :raises ReactorNotRunning: the app is not running
        :raises ~reactor.InvalidEventError: an attribute is invalid
        :raises TypeError: both ``delay`` and ``deliver_at``, or an option of the wrong type
        :raises ValueError: a negative ``delay``, a naive datetime, or an ``expires`` not
            later than the delivery
        :raises NotImplementedError: ``delay`` or ``deliver_at`` on a queue that does not
            hold delayed events (:attr:`EventQueue.supports_delay
            <reactor.abc.EventQueue.supports_delay>`)
        """
        if (
            event.__class__ is Event
            and data is None
            and not attributes
            and self._accepting
            and not self._publish_hooks
            and _get_ident() == self._thread
        ):
            built = event  # _event()'s checks, inline on the path of every prebuilt event
        else:
            built = self._event(event, data, attributes)
        if self._dedupe is not None:
            await self._put_once(built)
            return built
        queue = self._queue
        if queue.stores_immediately:
            try:
                queue.put_nowait(built)
            except QueueFull:
                await queue.put(built)
        else:
            await queue.put(built)
        self._published += 1
        return built

    def publish_nowait(
        self, event: Event | str, data: Any = None, **attributes: Unpack[PublishOptions]
    ) -> Event:
        """Publish an event if the ingestion queue has room, without waiting.

        Takes the same arguments as :meth:`publish`.

        :return: the event as queued
        :raises ~reactor.QueueFull: the queue is full
        :raises ReactorNotRunning: the app is not running
        """
        built = self._event(event, data, attributes)
        if self._dedupe is not None:
            self._put_once_nowait(built)
            return built
        self._queue.put_nowait(built)
        self._published += 1
        return built

    async def _put_once(self, event: Event) -> bool:
        """Queue *event* unless it is a duplicate (``dedupe=``); return whether queued."""
        dedupe = self._dedupe
        assert dedupe is not None
        if not dedupe.claim(event):
            return False
        queue = self._queue
        try:
            if queue.stores_immediately:
                try:
                    queue.put_nowait(event)
                except QueueFull:
                    await queue.put(event)
            else:
                await queue.put(event)
        except DuplicateEvent:
            return False  # the queue's: counted and logged by the queue
        except BaseException:
            dedupe.release(event)
            raise
        self._published += 1
        return True

    def _put_once_nowait(self, event: Event) -> None:
        """:meth:`_put_once` without waiting."""
        dedupe = self._dedupe
        assert dedupe is not None
        if not dedupe.claim(event):
            return
        try:
            self._queue.put_nowait(event)
        except DuplicateEvent:
            return  # the queue's: counted and logged by the queue
        except BaseException:
            dedupe.release(event)
            raise
        self._published += 1

    async def publish_many(self, events: Sequence[Event]) -> None:
        """Publish a batch of events all or nothing: every one is queued, or none is.

        For a sender that will retry the whole batch (the HTTP ingress's batched mode):
        a refused batch leaves nothing behind to be delivered twice. Unlike
        :meth:`publish`, it does not wait for room: a queue short of room for the whole
        batch refuses it.

        With the app's ``dedupe`` window, the batch's duplicates (of events accepted
        within the window, or of an event before them in the batch) are dropped and
        counted, and the rest is queued all or nothing.

        It takes no delivery options: an event to deliver later or to expire carries its
        times itself (``Event(..., extensions={"deliverat": ..., "expiresat": ...})``, see
        :attr:`Event.deliver_at <reactor.Event.deliver_at>`).

        :param events: the events, queued in this order
        :raises ReactorNotRunning: the app is not running
        :raises NotImplementedError: a delayed event, on a queue that does not hold them
        :raises ~reactor.QueueFull: the queue has no room for every event right now
        :raises TypeError: an item is not an :class:`Event`
        :raises ~reactor.PayloadTooLargeError: an event is over the queue's size limit
        :raises ~reactor.EventFormatError: the queue cannot encode an event
        :raises ~reactor.QueueUnavailableError: the queue cannot store events right now
        """
        self._check_publishing()
        delays = self._queue.supports_delay
        for event in events:
            if not isinstance(event, Event):
                raise TypeError(f"publish_many() takes Event objects, got {event!r}")
            if not delays and event.extensions and event.deliver_at is not None:
                raise NotImplementedError(
                    f"the app's queue, {type(self._queue).__name__}, does not hold delayed "
                    f"events; event {event.id!r} has a deliverat extension"
                )
        if self._publish_hooks:
            events = [self._hooked(event) for event in events]
        if self._dedupe is not None:
            await self._put_many_once(events)
            return
        await self._queue.put_many(events)
        self._published += len(events)

    async def _put_many_once(self, events: Sequence[Event]) -> None:
        """Queue the events of a batch that are not duplicates, all or nothing."""
        dedupe = self._dedupe
        assert dedupe is not None
        fresh, duplicates = dedupe.claim_many(events)
        try:
            dropped = await self._queue.put_many(fresh) if fresh else None
        except BaseException:
            dedupe.release_many(fresh)
            raise
        for duplicate in duplicates:  # the memory store's (the queue counts its own)
            dedupe.drop(duplicate)
        self._published += len(fresh) - len(dropped or ())

    async def publish_and_wait(
        self, event: Event | str, data: Any = None, **attributes: Unpack[PublishOptions]
    ) -> Receipt:
        """Publish an event and wait until every consumer it was routed to has settled.

        Takes the same arguments as :meth:`publish`. Settled means the handler succeeded,
        or failed every attempt and was dead-lettered. Do not await it from a handler of
        a subscription with ``concurrency=1`` for an event routed back to that same
        subscription: it would wait for itself.

        :return: a :class:`~reactor.Receipt` with each consumer's :class:`~reactor.Outcome`
            (for a duplicate under the app's ``dedupe`` window, at once: a receipt whose
            ``duplicate`` is ``True``, without outcomes)
        :raises ValueError: an event with the same source and id is already awaited
        :raises ReactorNotRunning: the app is not running, or stopped before the event
            was settled (its deliveries were cancelled by the shutdown)
        """
        built = self._event(event, data, attributes)
        return await self._dispatcher.receipts.wait(built, self._put_counted)

    async def _put_counted(self, event: Event) -> bool:
        if self._dedupe is not None:
            return await self._put_once(event)
        await self._queue.put(event)
        self._published += 1
        return True

    def publish_from_thread(
        self, event: Event | str, data: Any = None, **attributes: Unpack[PublishOptions]
    ) -> Event:
        """Publish an event from a thread other than the app's event loop thread.

        Takes the same arguments as :meth:`publish`, runs it in the app's event loop and
        blocks the calling thread until the event is queued (waiting while the queue is
        full, as :meth:`publish` does).

        :return: the event as queued
        :raises RuntimeError: called from the event loop's own thread (``await
            app.publish(...)`` there)
        :raises ReactorNotRunning: the app is not running
        """
        token = self._token
        if token is None or self._thread is None:
            raise ReactorNotRunning("the app is not running: publish_from_thread() needs it")
        if threading.get_ident() == self._thread:
            raise RuntimeError(
                "publish_from_thread() blocks the calling thread; in the event loop's thread "
                "use `await app.publish(...)` instead"
            )
        return anyio.from_thread.run(partial(self.publish, event, data, **attributes), token=token)

    def notify(self, channel: str, data: Any = None) -> Event:
        """Publish *data* on the in-process notification *channel*, without waiting.

        Safe to call from any thread: from outside the event loop's thread it hands the
        event to the loop and returns once it is queued. Handlers decorated with
        :meth:`on_notification` for *channel* receive it.

        :return: the event as queued (type ``"reactor.notification"``, subject *channel*)
        :raises ~reactor.QueueFull: the queue is full
        :raises ReactorNotRunning: the app is not running
        """
        if not isinstance(channel, str) or not channel:
            raise ValueError(f"channel must be a non-empty str, got {channel!r}")
        token = self._token
        if token is not None and threading.get_ident() != self._thread:
            return anyio.from_thread.run_sync(self._notify, channel, data, token=token)
        return self._notify(channel, data)

    def _notify(self, channel: str, data: Any) -> Event:
        return self.publish_nowait(NOTIFICATION_TYPE, data, subject=channel)

    async def redeliver(self, letter: DeadLetter) -> None:
        """Deliver a dead letter's event again, to its consumer only, and remove the letter.

        :raises ConsumerNotFound: no active subscription has the letter's consumer name
        :raises ReactorNotRunning: the app is not running
        """
        if self._dispatcher.lane(letter.consumer) is None:
            raise ConsumerNotFound(
                f"no active subscription is named {letter.consumer!r}; subscribe it first"
            )
        if not self._accepting or _get_ident() != self._thread:
            self._check_publishing()
        if self._queue.stores_dead_letters:
            self._queue.discard_dead_letter(letter)
        await self._queue.put(letter.event, only=(letter.consumer,))
        self._published += 1
        try:
            self._dead_letters.remove(letter)
        except LookupError:
            pass  # redelivered a letter the sink had already dropped or given away

    # -- lifecycle ------------------------------------------------------------------

    async def __aenter__(self) -> Reactor:
        if self._state is not _State.IDLE:
            raise RuntimeError("this app is already running; an app runs once at a time")
        self._state = _State.STARTING
        self._forced = False
        stack = AsyncExitStack()
        await stack.__aenter__()
        try:
            self._queue.note_consumers([lane.name for lane in self._dispatcher.lanes])
            self._threads.start()
            self._queue.use_clock(self._clock)
            if self._dedupe is not None:
                self._dedupe.start(self._queue, self._clock)
            await self._queue.open()
            stack.push_async_callback(self._queue.close)
            self._tg = await stack.enter_async_context(anyio.create_task_group())
            self._token = current_token()
            self._thread = threading.get_ident()
            await self._tg.start(self._dispatcher.run, name="reactor dispatcher")
            self._state = _State.RUNNING
            self._accepting = True
            self._sources_stopped = anyio.Event()
            await self._tg.start(self._run_sources, name="reactor sources")
        except BaseException as exc:
            self._state = _State.IDLE
            self._accepting = False
            if self._tg is not None:
                self._tg.cancel_scope.cancel()
            self._tg = None
            failure: BaseException = exc
            try:
                await stack.__aexit__(type(exc), exc, exc.__traceback__)
            except BaseExceptionGroup as group:
                failure = group
            sole = _sole_failure(failure)
            if sole is exc:
                raise
            # A source (or the queue) that failed to start reaches the caller as it was
            # raised, not inside the groups of the app's own task groups.
            raise sole.with_traceback(sole.__traceback__) from sole.__cause__
        self._stack = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._stack is not None and self._tg is not None
        stack, self._stack = self._stack, None
        # The body's own exception must reach the caller as raised, not wrapped in an
        # ExceptionGroup by the task group it happened to run inside: the task group is
        # only told about cancellation.
        tell_task_group = exc is None or isinstance(exc, anyio.get_cancelled_exc_class())
        try:
            self._state = _State.DRAINING
            if self._sources_tg is not None:
                self._sources_tg.cancel_scope.cancel()
            if exc_type is None:
                await self._stop_gracefully()
            else:
                self._forced = True
        finally:
            self._tg.cancel_scope.cancel()
            self._tg = None
            self._token = self._thread = None
            try:
                if tell_task_group:
                    suppress = await stack.__aexit__(exc_type, exc, tb)
                else:
                    await stack.__aexit__(None, None, None)
                    suppress = False
            except BaseExceptionGroup:
                fatal, self._dispatcher.fatal = self._dispatcher.fatal, None
                if fatal is None:
                    raise
                # A handler raised KeyboardInterrupt or SystemExit: the app has unwound in
                # order; now the process stops as the handler asked.
                raise fatal from None
            finally:
                self._state = _State.IDLE
                self._accepting = False
                self._dispatcher.receipts.abandon()
        return suppress

    async def _stop_gracefully(self) -> None:
        """Wait for the sources to stop, then for queued and in-flight deliveries.

        The drain is bounded by ``graceful_timeout``; :meth:`_force_stop` (a second
        signal) cuts both waits short at any point.
        """
        dispatcher = self._dispatcher
        with anyio.CancelScope() as stop_scope:
            self._stop_scope = stop_scope
            if self._forced:
                stop_scope.cancel()
            assert self._sources_stopped is not None
            await self._sources_stopped.wait()
            # Batches being filled and debounce windows end now: the drain waits for
            # what they hold to be handled, not for their timers.
            dispatcher.flush_gates()
            clock = self._clock
            deadline = clock.monotonic() + self.graceful_timeout
            with (
                clock.deadline_scope(deadline) as drain_scope,
                anyio.move_on_after(self.graceful_timeout) as real_scope,
            ):
                from .testing import VirtualClock

                if isinstance(clock, VirtualClock):
                    # Nobody advances a virtual clock once the app is being left: the
                    # drain lets it run by itself, and real time bounds the drain too.
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(clock._run_freely, deadline)
                        await dispatcher.wait_idle()
                        tg.cancel_scope.cancel()
                else:
                    await dispatcher.wait_idle()
        self._stop_scope = None
        cut = drain_scope.cancelled_caught or real_scope.cancelled_caught
        if not (stop_scope.cancelled_caught or cut):
            return
        why = "stop forced" if self._forced else f"not drained within {self.graceful_timeout} s"
        logger.warning(
            "shutdown %s: cancelling %d in-flight and %d queued event(s); "
            "they are not acknowledged",
            why,
            dispatcher.in_flight,
            self._queue.statistics().depth,
        )

    def _refuse_events(self) -> None:
        # An internal task died: the app is about to fail; publish nothing more into it.
        self._accepting = False

    def _force_stop(self) -> None:
        self._forced = True
        if self._stop_scope is not None:
            self._stop_scope.cancel()

    async def _run_sources(self, *, task_status: TaskStatus[None]) -> None:
        try:
            async with anyio.create_task_group() as tg:
                self._sources_tg = tg
                for source in self._sources:
                    await tg.start(self._run_source, source, name=f"reactor source {source.name}")
                self._sources_started = True
                task_status.started()
                await anyio.sleep_forever()
        finally:
            self._sources_started = False
            self._sources_tg = None
            assert self._sources_stopped is not None
            self._sources_stopped.set()

    async def _run_source(
        self, source: Source, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        try:
            await source.run(self, task_status=task_status)
        except Exception:
            logger.exception(
                "source %s failed; stopping the app", source.name, extra={"source": source.name}
            )
            raise

    def run(
        self,
        *,
        backend: str = "asyncio",
        use_uvloop: bool = False,
        graceful_timeout: float | None = None,
    ) -> int:
        """Run the app until SIGINT or SIGTERM, then drain and return: the blocking entry point.

        The first signal stops the sources and drains queued and in-flight deliveries
        within ``graceful_timeout``, then cancels what is left (logged); a second signal
        cancels at once. Cancelled deliveries are not acknowledged, so a durable queue
        hands them out again.

        :param backend: ``"asyncio"`` or ``"trio"``
        :param use_uvloop: run asyncio on uvloop
        :param graceful_timeout: overrides the app's ``graceful_timeout``
        :return: 0 after a graceful stop (drained, or cut at ``graceful_timeout``),
            1 when a second signal forced the stop
        """
        if graceful_timeout is not None:
            self.graceful_timeout = validators.seconds("graceful_timeout", graceful_timeout)
        options = {"use_uvloop": True} if use_uvloop else {}
        return anyio.run(self._serve, backend=backend, backend_options=options)

    async def _serve(self) -> int:
        import signal  # here: only app.run() handles signals

        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with anyio.create_task_group() as tg:
                stop = anyio.Event()
                tg.start_soon(self._watch_signals, signals, stop)
                async with self:
                    logger.info("reactor running; press Ctrl-C to stop")
                    await stop.wait()
                tg.cancel_scope.cancel()
        if self._forced:
            return 1
        logger.info("reactor stopped")
        return 0

    async def _watch_signals(self, signals: AsyncIterator[int], stop: anyio.Event) -> None:
        import signal

        async for signum in signals:
            name = signal.Signals(signum).name
            if not stop.is_set():
                logger.info(
                    "received %s: stopping sources and draining (up to %s s); "
                    "send it again to stop at once",
                    name,
                    self.graceful_timeout,
                )
                stop.set()
            else:
                logger.warning("received %s again: cancelling in-flight deliveries", name)
                self._force_stop()

    # -- introspection --------------------------------------------------------------

    def stats(self) -> Stats:
        """Return a frozen snapshot of the app's counters, queue and latencies."""
        dispatcher = self._dispatcher
        lanes = dispatcher.lanes
        totals = dispatcher.totals()
        queue = self._queue.statistics()
        return Stats(
            published=self._published,
            deduplicated=queue.deduplicated + (0 if self._dedupe is None else self._dedupe.dropped),
            delivered=totals["delivered"],
            failed=totals["failed"],
            timed_out=totals["timed_out"],
            retried=totals["retried"],
            dead_lettered=totals["dead_lettered"],
            queue=queue,
            in_flight=dispatcher.in_flight,
            latency=dispatcher.latency.snapshot(),
            subscriptions=MappingProxyType({lane.name: lane.stats() for lane in lanes}),
            sources=MappingProxyType(self._source_statistics()),
            expired=totals["expired"],
        )

    def health(self, *, stuck_after: float = DEFAULT_STUCK_AFTER) -> Health:
        """Return whether the app is ready for work, and why not: for readiness probes.

        For an app served by its own HTTP server, the answer of a readiness endpoint
        (the app's ingress answers ``/healthz`` and ``/readyz`` itself)::

            @api.get("/readyz")
            async def readyz(response: Response) -> dict[str, Any]:
                health = app.health()
                response.status_code = 200 if health.ready else 503
                return health.to_dict()

        Readiness, and what counts as a stuck queue, are defined at :class:`~reactor.Health`.
        Liveness needs no call: a process that answers at all is alive.

        :param stuck_after: seconds the queue may hold events without progress before it
            counts as stuck
        :raises ValueError: *stuck_after* is negative or not finite
        :return: a frozen snapshot
        """
        validators.seconds("stuck_after", stuck_after)
        dispatcher = self._dispatcher
        depth = self._queue.statistics().depth
        totals = dispatcher.totals()
        progress = sum(dispatcher.latency.counts) + sum(totals.values())
        now = self._clock.monotonic()
        if depth <= 0:
            self._stalled_since = None
        elif progress != self._progress_seen or self._stalled_since is None:
            self._stalled_since = now  # the last moment progress was seen
        self._progress_seen = progress
        stalled = 0.0 if self._stalled_since is None else now - self._stalled_since
        state = self._state.value
        started = self._sources_started and self._state is _State.RUNNING
        problems: list[str] = []
        if self._state is not _State.RUNNING:
            problems.append(f"the app is {state}, not running")
        elif not started:
            problems.append("not every source has started")
        if depth > 0 and stalled >= stuck_after:
            problems.append(
                f"the queue has held {depth} event(s) for {stalled:.0f} s without progress"
            )
        failures = dispatcher.settle_failures
        if failures:
            problems.append(f"the queue failed to store settlements {failures} time(s) in a row")
        return Health(
            ready=not problems,
            state=state,
            sources_started=started,
            queue_depth=depth,
            in_flight=dispatcher.in_flight,
            stalled_for=stalled,
            settle_failures=failures,
            problems=tuple(problems),
        )

    def _source_statistics(self) -> dict[str, Mapping[str, int | str | None]]:
        found: dict[str, Mapping[str, int | str | None]] = {}
        for source in self._sources:
            name, n = source.name, 1
            while name in found:  # two sources of one name: number the later ones
                n += 1
                name = f"{source.name}#{n}"
            found[name] = MappingProxyType(dict(source.statistics()))
        return found

    def __repr__(self) -> str:
        return f"<Reactor {self._state.value}, {len(self._dispatcher.lanes)} subscription(s)>"
