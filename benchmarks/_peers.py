"""The peer libraries the benchmark compares reactor with, one :class:`System` each.

Every opener registers each of the K handlers as a listener of its own and yields a
``publish(message)`` that hands one message to the library, using the library's
documented API the way its users would. The libraries are imported inside the openers
(through :func:`importlib.import_module`, as most ship no type information), so this
module imports without any of them installed.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from ._systems import ASYNCIO_LOOPS, EVENT_TYPE, Handler, Publish, Semantics, System

if TYPE_CHECKING:
    from reactor import Event

# ---------------------------------------------------------------------------- pyee


@asynccontextmanager
async def _pyee(handlers: Sequence[Handler], loop: str, retries: int) -> AsyncIterator[Publish]:
    pyee_asyncio: Any = importlib.import_module("pyee.asyncio")
    emitter = pyee_asyncio.AsyncIOEventEmitter()
    for handler in handlers:
        emitter.on(EVENT_TYPE, handler)
    emit = emitter.emit

    async def publish(event: Event) -> None:
        emit(EVENT_TYPE, event)

    try:
        yield publish
    finally:
        emitter.remove_all_listeners()
        # Nothing is left when the workload has counted every delivery; after a failure
        # this keeps the exit from waiting on handlers that may never finish.
        emitter.cancel()


PYEE = System(
    name="pyee",
    kind="peer",
    summary="pyee AsyncIOEventEmitter, ee.on(type, handler) per handler; publish calls "
    "ee.emit(type, event), which starts one task per handler and returns",
    loops=ASYNCIO_LOOPS,
    open=_pyee,
    distribution="pyee",
    requires=("pyee",),
    semantics=Semantics(
        awaits="no: emit() is synchronous and fire-and-forget; the emitter keeps the tasks, "
        "and wait_for_complete() is the only way to learn they finished",
        concurrency="one asyncio task per handler per event (ensure_future), all running "
        "concurrently, across events too",
        buffers="unbounded: every emit adds K tasks at once; nothing slows the producer",
        errors="isolated: a handler's exception is re-emitted as an 'error' event; with no "
        "'error' listener (as here) that raises in the task's done callback, so asyncio's "
        "exception handler logs it; siblings and the producer are unaffected",
    ),
)


# ----------------------------------------------------------------------- aiopubsub


def _aiopubsub_listener(handler: Handler) -> Callable[[Any, Any], Coroutine[Any, Any, None]]:
    # A listener only has to return an awaitable (aiopubsub awaits what it returns), so a
    # plain function saves the coroutine an ``async def`` wrapper would add.
    def listener(key: Any, message: Any) -> Coroutine[Any, Any, None]:
        return handler(message)

    return listener


@asynccontextmanager
async def _aiopubsub(
    handlers: Sequence[Handler], loop: str, retries: int
) -> AsyncIterator[Publish]:
    aiopubsub: Any = importlib.import_module("aiopubsub")
    hub = aiopubsub.Hub()
    publisher = aiopubsub.Publisher(hub, prefix=aiopubsub.Key("bench"))
    subscriber = aiopubsub.Subscriber(hub, "bench")
    for handler in handlers:
        subscriber.add_async_listener(
            aiopubsub.Key("bench", EVENT_TYPE), _aiopubsub_listener(handler)
        )
    key = aiopubsub.Key(EVENT_TYPE)
    send = publisher.publish

    async def publish(event: Event) -> None:
        send(key, event)

    try:
        yield publish
    finally:
        await subscriber.remove_all_listeners()


AIOPUBSUB = System(
    name="aiopubsub",
    kind="peer",
    summary="aiopubsub Hub, Publisher and Subscriber, add_async_listener(key, listener) per "
    "handler; publish calls publisher.publish(key, event), which puts it on each "
    "listener's queue",
    loops=ASYNCIO_LOOPS,
    open=_aiopubsub,
    distribution="aiopubsub",
    requires=("aiopubsub",),
    semantics=Semantics(
        awaits="no: publish() is synchronous and only queues; each listener's loop awaits "
        "its callback, but nothing tells the producer",
        concurrency="per listener one event at a time, in order, each in a new task "
        "(a loop task runs ensure_future(consume-then-call) per event); the K listeners "
        "run concurrently with each other",
        buffers="unbounded: one asyncio.Queue() per listener; publish() never waits "
        "(the separate ThrottledPublisher polls queue sizes, not used here)",
        errors="not isolated over time: an exception ends that listener's loop (logged "
        "once): its later events pile up in its queue undelivered, and "
        "remove_all_listeners() re-raises the exception at shutdown; siblings and the "
        "producer are unaffected",
    ),
)


# ------------------------------------------------------------------------ eventkit


@asynccontextmanager
async def _eventkit(handlers: Sequence[Handler], loop: str, retries: int) -> AsyncIterator[Publish]:
    # eventkit schedules coroutine listeners on get_event_loop_policy().get_event_loop(),
    # not on the running loop, and also reads it at import; a runner with a loop factory
    # (the uvloop runner) never sets it, so the tasks would land on a loop that never
    # runs. Set before the import, as its users on uvloop have to.
    asyncio.set_event_loop(asyncio.get_running_loop())
    eventkit: Any = importlib.import_module("eventkit")
    event = eventkit.Event(EVENT_TYPE)
    for handler in handlers:
        event.connect(handler, keep_ref=True)
    emit = event.emit

    async def publish(message: Event) -> None:
        emit(message)

    try:
        yield publish
    finally:
        event.clear()
        # What asyncio.run leaves behind when it ends anyway.
        asyncio.set_event_loop(None)


EVENTKIT = System(
    name="eventkit",
    kind="peer",
    summary="eventkit Event, event.connect(handler) per handler; publish calls "
    "event.emit(event), which calls each handler and schedules the coroutine as a task "
    "(on the policy's current loop, so the running loop is made current first)",
    loops=ASYNCIO_LOOPS,
    open=_eventkit,
    distribution="eventkit",
    requires=("eventkit",),
    semantics=Semantics(
        awaits="no: emit() is synchronous and fire-and-forget; eventkit keeps no reference "
        "to the tasks and offers no way to wait for them",
        concurrency="one asyncio task per handler per event (ensure_future), all running "
        "concurrently, across events too",
        buffers="unbounded: every emit adds K tasks at once; nothing slows the producer",
        errors="isolated: emit() only catches what the call itself raises (the coroutine "
        "has not run yet), so a handler's exception stays in its task and asyncio logs "
        "'Task exception was never retrieved'; siblings and the producer are unaffected",
    ),
)


# ------------------------------------------------------------------------- blinker


def _blinker_receiver(handler: Handler) -> Callable[..., Coroutine[Any, Any, None]]:
    # send_async() checks iscoroutinefunction(receiver), so the adapter is an async def.
    async def receiver(sender: Any, event: Any) -> None:
        await handler(event)

    return receiver


@asynccontextmanager
async def _blinker(handlers: Sequence[Handler], loop: str, retries: int) -> AsyncIterator[Publish]:
    blinker: Any = importlib.import_module("blinker")
    signal = blinker.Signal(EVENT_TYPE)
    receivers = [_blinker_receiver(handler) for handler in handlers]
    for receiver in receivers:
        # The default weak=True would drop a receiver nobody else holds, such as these.
        signal.connect(receiver, weak=False)
    send_async = signal.send_async

    async def publish(event: Event) -> None:
        await send_async(None, event=event)

    try:
        yield publish
    finally:
        for receiver in receivers:
            signal.disconnect(receiver)


BLINKER = System(
    name="blinker",
    kind="peer",
    summary="blinker Signal, signal.connect(receiver, weak=False) per handler; publish "
    "awaits signal.send_async(None, event=event), which awaits each receiver in turn",
    loops=ASYNCIO_LOOPS,
    open=_blinker,
    distribution="blinker",
    requires=("blinker",),
    semantics=Semantics(
        awaits="yes, inline: send_async() returns when every receiver has finished",
        concurrency="none: receivers one after the other (in an unspecified order), "
        "events one after the other",
        buffers="none: the producer runs the receivers itself",
        errors="not isolated: an exception reaches the producer and skips the receivers "
        "not yet called",
    ),
)


# --------------------------------------------------------------------------- bubus

#: At most this many events dispatched to bubus and not yet awaited. bubus refuses a
#: dispatch past 50 queued events (QueueFull) or 100 pending ones (RuntimeError) and has
#: no call that waits for room; awaiting a batch of events at a time keeps below both,
#: and costs fewer wake-ups than awaiting each event.
BUBUS_WINDOW = 32
#: bubus keeps this many events in its history (default 50; with 0 or None it keeps them
#: all). Its log messages are f-strings built even when the level drops them, and each
#: shows the bus, whose str() scans the history three times, several times per event:
#: at 50, bubus runs about five times slower than here. 1 is the least that stays bounded.
BUBUS_HISTORY = 1


@functools.cache
def _bubus_event_class() -> Any:
    bubus: Any = importlib.import_module("bubus")
    pydantic: Any = importlib.import_module("pydantic")
    # A user writes ``class BenchEvent(BaseEvent): payload: Any``; create_model builds
    # the same model class. The field holds the reactor Event itself, so a handler sees
    # the very object the producer timestamps, and Any validates nothing.
    return pydantic.create_model("BenchEvent", __base__=bubus.BaseEvent, payload=(Any, ...))


def _bubus_prepare(event: Event) -> Any:
    """Wrap *event* in the pydantic event bubus dispatches."""
    return _bubus_event_class()(payload=event)


def _bubus_handler(handler: Handler, name: str) -> Callable[[Any], Coroutine[Any, Any, None]]:
    async def on_event(message: Any) -> None:
        await handler(message.payload)

    # bubus warns when two handlers of one event type share a name.
    on_event.__name__ = on_event.__qualname__ = name
    return on_event


@asynccontextmanager
async def _bubus(handlers: Sequence[Handler], loop: str, retries: int) -> AsyncIterator[Publish]:
    bubus: Any = importlib.import_module("bubus")
    event_class = _bubus_event_class()
    bus = bubus.EventBus(parallel_handlers=True, max_history_size=BUBUS_HISTORY)
    for i, handler in enumerate(handlers):
        bus.on(event_class, _bubus_handler(handler, f"h{i}"))
    dispatch = bus.dispatch
    window: list[Any] = []

    async def publish(message: Any) -> None:
        window.append(dispatch(message))
        if len(window) >= BUBUS_WINDOW:
            # Awaiting a dispatched event waits until all its handlers have finished.
            for pending in window:
                await pending
            window.clear()

    try:
        yield publish
    finally:
        await bus.stop(clear=True)


BUBUS = System(
    name="bubus",
    kind="peer",
    summary="bubus EventBus(parallel_handlers=True), bus.on(BenchEvent, handler) per "
    "handler; publish calls bus.dispatch(BenchEvent(payload=event)) and, every "
    f"{BUBUS_WINDOW} events, awaits them",
    loops=ASYNCIO_LOOPS,
    open=_bubus,
    prepare=_bubus_prepare,
    # About 3,400 deliveries/s at K = 4 on a 2-core VM where reactor does 500,000.
    scale=0.02,
    awaits_concurrently=True,
    distribution="bubus",
    requires=("bubus", "pydantic"),
    semantics=Semantics(
        awaits=f"yes: awaiting a dispatched event waits for all its handlers; publish "
        f"awaits its last {BUBUS_WINDOW} events every {BUBUS_WINDOW} dispatches",
        concurrency="events one at a time (one run-loop task per bus, under a lock shared "
        "by all buses); with parallel_handlers=True (the default False runs them one after "
        "the other) the K handlers of an event run concurrently, each delivery in three "
        "tasks: the parallel runner, the handler under wait_for(event_timeout=300 s), and a "
        "15 s watchdog",
        buffers=f"bounded by refusal: the queue holds 50 and dispatch() raises QueueFull "
        f"past it (RuntimeError past 100 pending); publish keeps at most {BUBUS_WINDOW} "
        f"outstanding by awaiting them; the history keeps {BUBUS_HISTORY} event "
        f"(max_history_size)",
        errors="isolated: a handler's exception is recorded on the event's result and "
        "logged at ERROR with its traceback; siblings and the producer are unaffected",
    ),
)


# ---------------------------------------------------------------------- faststream

#: The Redis channel all K FastStream subscribers listen on.
FASTSTREAM_CHANNEL = "bench-event"


class _Decoded:
    """What a FastStream handler hands the benchmark handler: the decoded body as ``data``."""

    __slots__ = ("data",)

    def __init__(self, data: Any) -> None:
        self.data = data


def _faststream_handler(handler: Handler, name: str) -> Callable[[Any], Coroutine[Any, Any, None]]:
    # FastStream validates the decoded body against the annotation; the body is an int or
    # a list of floats depending on the workload, so Any, which accepts it unchanged.
    async def on_message(body: Any) -> None:
        await handler(_Decoded(body))

    on_message.__name__ = on_message.__qualname__ = name
    return on_message


@asynccontextmanager
async def _faststream(
    handlers: Sequence[Handler], loop: str, retries: int
) -> AsyncIterator[Publish]:
    redis: Any = importlib.import_module("faststream.redis")
    broker = redis.RedisBroker()
    for i, handler in enumerate(handlers):
        # One subscriber per handler: the test broker hands a message to every subscriber
        # of its channel (two handlers on one subscriber would be alternatives instead).
        broker.subscriber(FASTSTREAM_CHANNEL)(_faststream_handler(handler, f"h{i}"))
    async with redis.TestRedisBroker(broker) as test_broker:
        send = test_broker.publish

        async def publish(event: Event) -> None:
            # The body is serialised here, so a timestamp written into data just before
            # publish travels with it.
            await send(event.data, FASTSTREAM_CHANNEL)

        yield publish


FASTSTREAM = System(
    name="faststream",
    kind="peer",
    summary="FastStream RedisBroker under TestRedisBroker (in memory, no Redis), one "
    "broker.subscriber(channel) per handler; publish awaits broker.publish(data, channel)",
    loops=ASYNCIO_LOOPS,
    open=_faststream,
    # About 1,700 deliveries/s at K = 4 on a 2-core VM where reactor does 500,000.
    scale=0.01,
    distribution="faststream",
    requires=("faststream", "redis"),
    semantics=Semantics(
        awaits="yes, inline: the test broker's publish() runs every subscriber and returns "
        "when all have finished",
        concurrency="none: subscribers one after the other, events one after the other",
        buffers="none: the producer runs the subscribers itself (the body is JSON-encoded "
        "once per publish, parsed and decoded per subscriber); but the test broker records "
        "every delivery for its assertions, about 7 KB each, kept until it exits",
        errors="not isolated: under the test broker an exception propagates out of "
        "publish() to the producer and skips the subscribers not yet called (a real "
        "broker logs it and carries on)",
    ),
)

#: The peer libraries, in report order.
PEERS: tuple[System, ...] = (PYEE, AIOPUBSUB, EVENTKIT, BLINKER, BUBUS, FASTSTREAM)
