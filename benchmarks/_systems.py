"""The systems the benchmark compares: reactor, hand-written baselines and peer libraries.

Each :class:`System` opens an async context manager around K handlers and yields a
``publish(message)`` coroutine function. Inside the context, every published message must
reach every handler once (as the system's semantics promise); the workload waits for
that through its own counters, then leaves the context, which shuts the system down.

The handlers are the same coroutine functions for every system: ``async def h(event)``
taking a :class:`reactor.Event` (or, for a system that serialises messages, an object
with the same ``data``). A system that calls its subscribers with another signature
wraps each handler in the adapter its users would write.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Generator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any, Literal

import anyio
import attrs

if TYPE_CHECKING:
    from reactor import Event, Reactor

#: A benchmark handler: ``async def handler(event) -> None``.
Handler = Callable[[Any], Coroutine[Any, Any, None]]
#: What a system yields: ``await publish(message)`` hands one message to the system.
Publish = Callable[[Any], Awaitable[object]]
#: ``open(handlers, loop, retries)``: the system around *handlers* on *loop*. *retries* is
#: only used by systems with ``native_retry`` (the others get handlers that retry).
Opener = Callable[[Sequence[Handler], str, int], AbstractAsyncContextManager[Publish]]

EVENT_TYPE = "bench.event"
#: Room in the baselines' queues, as in most hand-written code.
BASELINE_QUEUE = 1024
#: The most handler tasks the eager baseline lets run at once (reactor's max_in_flight).
EAGER_IN_FLIGHT = 1000

Loop = Literal["asyncio", "uvloop", "trio"]
ALL_LOOPS: tuple[Loop, ...] = ("asyncio", "uvloop", "trio")
ASYNCIO_LOOPS: tuple[Loop, ...] = ("asyncio", "uvloop")


@attrs.frozen(kw_only=True)
class Semantics:
    """What a system promises about the handlers it calls, stated for the README and JSON.

    :ivar awaits: whether ``publish`` (or the system) awaits the handlers to completion,
        and how the caller learns that they finished.
    :ivar concurrency: how the K handlers of one message run relative to each other, and
        messages relative to each other.
    :ivar buffers: where messages wait when handlers are slower than the producer, and
        whether that buffer is bounded (backpressure) or grows.
    :ivar errors: what a handler's exception does to the other handlers and the producer.
    :ivar retries: how W6's retry is done: natively or by a hand-written wrapper.
    """

    awaits: str
    concurrency: str
    buffers: str
    errors: str
    retries: str = "hand-written wrapper: the handler is called again once if it raised"


@attrs.frozen(kw_only=True)
class System:
    """One system under test.

    :ivar name: the short name used in tables, JSON and ``--systems``.
    :ivar kind: ``"reactor"``, ``"baseline"`` or ``"peer"``.
    :ivar summary: one line: what the system is and how it is driven.
    :ivar loops: the loops it runs on.
    :ivar open: the opener; see :data:`Opener`.
    :ivar semantics: what it promises.
    :ivar distribution: the PyPI distribution whose version the report shows and whose
        absence skips the system (``None`` for code in this module).
    :ivar requires: modules that must import for the system to run.
    :ivar runner: ``"anyio"`` runs the child's main under :func:`anyio.run`;
        ``"native"`` runs it the way the system's users do (``asyncio.run``, or a uvloop
        runner), except on trio, where everything runs under anyio.
    :ivar native_retry: whether the system retries failed handlers itself (W6).
    :ivar prepare: turns a prebuilt :class:`reactor.Event` into the message this system
        publishes; applied before timing starts (``None``: the event itself).
    :ivar scale: multiplies the event counts of this system's runs: a system that is
        orders of magnitude slower gets fewer events, so that a run takes about as long.
    :ivar awaits_concurrently: whether it awaits its handlers and runs them concurrently:
        the peers reactor's targets compare against (a fire-and-forget emitter or a
        sequential loop does another job).
    :ivar cells: the ``(workload, K)`` cells the suite runs it in by default (``None``:
        every cell of every workload). A variant of reactor that measures one feature's
        cost runs where its target is, not in every cell. Every system of kind
        ``"reactor"`` yields ``app.publish``, which takes an :class:`reactor.Event` or a
        type with its data and ``source=`` (W1b and W2b call it the second way).
    """

    name: str
    kind: Literal["reactor", "baseline", "peer"]
    summary: str
    loops: tuple[Loop, ...]
    open: Opener
    semantics: Semantics
    distribution: str | None = None
    requires: tuple[str, ...] = ()
    runner: Literal["anyio", "native"] = "native"
    native_retry: bool = False
    prepare: Callable[[Event], Any] | None = None
    scale: float = 1.0
    awaits_concurrently: bool = False
    cells: tuple[tuple[str, int], ...] | None = None


# ------------------------------------------------------------------------- reactor


def _reactor_app(
    handlers: Sequence[Handler], retries: int, ordered_by: Callable[[Event], Any] | None = None
) -> Reactor:
    """``Reactor()`` with one subscription per handler, as every reactor system runs it."""
    from reactor import Backoff, Reactor, Retry

    retry = None
    if retries:
        # An immediate retry: the benchmark measures the mechanism, not a backoff wait.
        retry = Retry(attempts=retries + 1, backoff=Backoff(initial=0, maximum=0, jitter=False))
    app = Reactor()
    for i, handler in enumerate(handlers):
        app.subscribe(EVENT_TYPE, handler, name=f"h{i}", retry=retry, ordered_by=ordered_by)
    return app


@asynccontextmanager
async def _reactor(handlers: Sequence[Handler], loop: str, retries: int) -> AsyncIterator[Publish]:
    async with _reactor_app(handlers, retries) as app:
        yield app.publish


REACTOR = System(
    name="reactor",
    kind="reactor",
    summary="Reactor() with its defaults, one subscription per handler, await app.publish(event)",
    loops=ALL_LOOPS,
    open=_reactor,
    runner="anyio",
    native_retry=True,
    semantics=Semantics(
        awaits="yes: every delivery runs to completion; publish() returns once the event is queued",
        concurrency="per subscription up to 16 deliveries at once (concurrency=16), all "
        "subscriptions concurrently; a runner shared by every subscription runs handlers back to "
        "back, no task per event",
        buffers="bounded: MemoryQueue of 10,000 plus max_in_flight=1,000 routed; publish() "
        "waits when full",
        errors="isolated: a failure is retried, then dead-lettered and logged; siblings and "
        "the producer are unaffected",
        retries="native: Retry(attempts=2, backoff=0); a retry is logged at INFO (not enabled "
        "in the benchmark), a dead letter at ERROR",
    ),
)


@asynccontextmanager
async def _reactor_metrics(
    handlers: Sequence[Handler], loop: str, retries: int
) -> AsyncIterator[Publish]:
    from prometheus_client import CollectorRegistry, generate_latest

    from reactor.prometheus import ReactorCollector

    app = _reactor_app(handlers, retries)
    registry = CollectorRegistry()
    registry.register(ReactorCollector(app))
    async with app:
        yield app.publish
    # One scrape, after the clock stopped: what a scraper every few seconds costs is
    # not per event; this checks that the metrics were kept.
    assert b"reactor_deliveries_total" in generate_latest(registry)


REACTOR_METRICS = System(
    name="reactor-metrics",
    kind="reactor",
    summary="as reactor, with reactor.prometheus.ReactorCollector(app) registered (its "
    "defaults: every metric read from app.stats() at scrape time, no per-delivery work)",
    loops=ALL_LOOPS,
    open=_reactor_metrics,
    distribution="prometheus-client",
    requires=("prometheus_client",),
    runner="anyio",
    native_retry=True,
    semantics=REACTOR.semantics,
)


#: The reactor variants run in the goal-2 cells only (issue 15): W1 and W2 at K = 4, with
#: prebuilt events and with envelopes built by ``publish(type, data, source=...)``.
VARIANT_CELLS: tuple[tuple[str, int], ...] = (("w1", 4), ("w2", 4), ("w1b", 4), ("w2b", 4))
#: reactor-ordered's keys: event i has key ``i % ORDER_KEYS``.
ORDER_KEYS = 64
#: The event type reactor-receipt keeps one ``publish_and_wait()`` pending on.
HOLD_TYPE = "bench.hold"


def order_key(event: Event) -> int:
    """reactor-ordered's key function: the event's index modulo :data:`ORDER_KEYS`.

    :param event: a benchmark event (``data`` is its index, or W3's ``[time, index]``).
    :return: the key.
    """
    data = event.data
    return (data if data.__class__ is int else int(data[1])) % ORDER_KEYS


@asynccontextmanager
async def _reactor_ordered(
    handlers: Sequence[Handler], loop: str, retries: int
) -> AsyncIterator[Publish]:
    async with _reactor_app(handlers, retries, ordered_by=order_key) as app:
        yield app.publish


REACTOR_ORDERED = System(
    name="reactor-ordered",
    kind="reactor",
    summary=f"as reactor, each subscription with per-key ordering on: ordered_by=key, "
    f"{ORDER_KEYS} keys (event i has key i % {ORDER_KEYS}); W1 and W2 at K=4 only",
    loops=ALL_LOOPS,
    open=_reactor_ordered,
    runner="anyio",
    native_retry=True,
    cells=VARIANT_CELLS,
    semantics=attrs.evolve(
        REACTOR.semantics,
        concurrency=f"per subscription up to 16 deliveries at once, events of one key "
        f"({ORDER_KEYS} keys) one at a time in publish order; all subscriptions concurrently",
    ),
)


@asynccontextmanager
async def _reactor_receipt(
    handlers: Sequence[Handler], loop: str, retries: int
) -> AsyncIterator[Publish]:
    from reactor import Receipt

    app = _reactor_app(handlers, retries)
    started, release = anyio.Event(), anyio.Event()
    receipts: list[Receipt] = []

    async def hold(event: Event) -> None:
        started.set()
        await release.wait()

    async def await_receipt() -> None:
        receipts.append(await app.publish_and_wait(HOLD_TYPE))

    app.subscribe(HOLD_TYPE, hold, name="hold")
    async with app, anyio.create_task_group() as tg:
        tg.start_soon(await_receipt)
        # From here until the clock stops, one receipt is awaited: every delivery pays
        # for the receipts' bookkeeping.
        await started.wait()
        try:
            yield app.publish
        finally:
            release.set()
    if not (receipts and receipts[0].ok):
        raise RuntimeError(f"the held receipt did not settle: {receipts}")


REACTOR_RECEIPT = System(
    name="reactor-receipt",
    kind="reactor",
    summary="as reactor, while one app.publish_and_wait() is awaited throughout the run (its "
    "event held by another subscription's handler until the end): the receipts' cost on the "
    "path; W1 and W2 at K=4 only",
    loops=ALL_LOOPS,
    open=_reactor_receipt,
    runner="anyio",
    native_retry=True,
    cells=VARIANT_CELLS[:2],
    semantics=REACTOR.semantics,
)


# ----------------------------------------------------------------------- baselines


@asynccontextmanager
async def _direct(handlers: Sequence[Handler], loop: str, retries: int) -> AsyncIterator[Publish]:
    async def publish(event: Event) -> None:
        for handler in handlers:
            await handler(event)

    yield publish


DIRECT = System(
    name="direct",
    kind="baseline",
    summary="for h in handlers: await h(event), inline in the producer: no queue, no task "
    "(the floor)",
    loops=ALL_LOOPS,
    open=_direct,
    semantics=Semantics(
        awaits="yes, inline: publish returns when every handler has finished",
        concurrency="none: handlers one after the other, events one after the other",
        buffers="none: the producer runs the handlers itself",
        errors="not isolated: an exception reaches the producer and skips later handlers",
    ),
)


@asynccontextmanager
async def _taskgroup(
    handlers: Sequence[Handler], loop: str, retries: int
) -> AsyncIterator[Publish]:
    if loop == "trio":
        async with _taskgroup_anyio(handlers) as publish:
            yield publish
        return
    queue: asyncio.Queue[Event | None] = asyncio.Queue(BASELINE_QUEUE)

    async def dispatcher() -> None:
        while True:
            event = await queue.get()
            if event is None:
                return
            async with asyncio.TaskGroup() as tg:
                for handler in handlers:
                    tg.create_task(handler(event))

    task = asyncio.create_task(dispatcher())
    try:
        yield queue.put
    finally:
        await queue.put(None)
        await task


@asynccontextmanager
async def _taskgroup_anyio(handlers: Sequence[Handler]) -> AsyncIterator[Publish]:
    send, receive = anyio.create_memory_object_stream["Event"](BASELINE_QUEUE)

    async def dispatcher() -> None:
        async with receive:
            async for event in receive:
                async with anyio.create_task_group() as tg:
                    for handler in handlers:
                        tg.start_soon(handler, event)

    async with anyio.create_task_group() as outer:
        outer.start_soon(dispatcher)
        async with send:
            yield send.send


TASKGROUP = System(
    name="taskgroup",
    kind="baseline",
    summary="asyncio.Queue(1024) and one dispatcher task opening a TaskGroup per event, one "
    "task per handler (on trio: an anyio memory stream and task group)",
    loops=ALL_LOOPS,
    open=_taskgroup,
    semantics=Semantics(
        awaits="yes: the dispatcher waits for every handler of an event before the next",
        concurrency="the K handlers of one event concurrently, events one at a time",
        buffers="bounded: the queue holds 1,024; put() waits when it is full",
        errors="not isolated: an exception cancels the sibling tasks and ends the dispatcher",
    ),
)


class _Resume:
    """Continue a coroutine that already ran up to its first suspension, inside a task.

    ``first`` is what the coroutine yielded when it suspended (a future on asyncio, a trap
    on trio); the task's runner receives it as if the coroutine had yielded it itself.
    """

    __slots__ = ("coro", "first")

    def __init__(self, coro: Coroutine[Any, Any, None], first: Any) -> None:
        self.coro = coro
        self.first = first

    def __await__(self) -> Generator[Any, Any, None]:
        coro, value = self.coro, self.first
        while True:
            try:
                sent = yield value
            except BaseException as exc:  # thrown in by the runner: forward it
                try:
                    value = coro.throw(exc)
                except StopIteration:
                    return
            else:
                try:
                    value = coro.send(sent)
                except StopIteration:
                    return


def _step(handler: Handler, event: Event) -> tuple[Coroutine[Any, Any, None], Any] | None:
    """Run *handler* inline up to its first suspension; return it and what it yielded.

    ``None`` when it finished (or raised) without suspending: then it cost no task.
    """
    coro = handler(event)
    try:
        return coro, coro.send(None)
    except StopIteration:
        return None
    except Exception:
        return None  # a hand-written dispatcher logs here; the benchmark's handlers do not raise


async def _resume(coro: Coroutine[Any, Any, None], first: Any) -> None:
    try:
        await _Resume(coro, first)
    except Exception:
        pass  # as in _step


@asynccontextmanager
async def _eager(handlers: Sequence[Handler], loop: str, retries: int) -> AsyncIterator[Publish]:
    if loop == "trio":
        async with _eager_anyio(handlers) as publish:
            yield publish
        return
    queue: asyncio.Queue[Event | None] = asyncio.Queue(BASELINE_QUEUE)
    tasks: set[asyncio.Task[None]] = set()
    create_task = asyncio.get_running_loop().create_task

    async def dispatcher() -> None:
        while True:
            event = await queue.get()
            if event is None:
                return
            for handler in handlers:
                suspended = _step(handler, event)
                if suspended is not None:
                    task = create_task(_resume(*suspended))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                    if len(tasks) >= EAGER_IN_FLIGHT:
                        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)

    task = create_task(dispatcher())
    try:
        yield queue.put
    finally:
        await queue.put(None)
        await task
        if tasks:
            await asyncio.wait(tasks)


@asynccontextmanager
async def _eager_anyio(handlers: Sequence[Handler]) -> AsyncIterator[Publish]:
    send, receive = anyio.create_memory_object_stream["Event"](BASELINE_QUEUE)
    room = anyio.Semaphore(EAGER_IN_FLIGHT)

    async def resume(coro: Coroutine[Any, Any, None], first: Any) -> None:
        try:
            await _resume(coro, first)
        finally:
            room.release()

    async def dispatcher(tg: anyio.abc.TaskGroup) -> None:
        async with receive:
            async for event in receive:
                for handler in handlers:
                    suspended = _step(handler, event)
                    if suspended is not None:
                        await room.acquire()
                        tg.start_soon(resume, *suspended)

    async with anyio.create_task_group() as tg:
        tg.start_soon(dispatcher, tg)
        async with send:
            yield send.send


EAGER = System(
    name="eager",
    kind="baseline",
    summary="asyncio.Queue(1024) and one dispatcher task that runs each handler inline until "
    "it first suspends, and only then hands it to a task (at most 1,000 such tasks)",
    loops=ALL_LOOPS,
    open=_eager,
    semantics=Semantics(
        awaits="yes: every handler runs to completion, inline or in its task",
        concurrency="handlers that never suspend run one after the other inside the "
        "dispatcher; those that suspend continue concurrently in tasks, across events",
        buffers="bounded: the queue holds 1,024, and the dispatcher waits while 1,000 "
        "suspended handlers are running",
        errors="isolated: an exception ends only its own handler (caught by the dispatcher)",
    ),
)

#: Every system the suite knows, in report order; peers come from ``_peers``.
BASELINES: tuple[System, ...] = (DIRECT, TASKGROUP, EAGER)
