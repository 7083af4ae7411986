"""Scale-out benchmark: reactor on Redis Streams and NATS JetStream, across processes.

Run ``python -m benchmarks.scaleout [--quick] [--json out.json] [--brokers redis,nats]``.

Every event is ~1 KB of CloudEvents JSON (the envelope ``Event.to_json()`` writes, 1,058
bytes), handled by K = 4 trivial subscriptions (each counts the event and adds up its
index). What is measured, per broker (Redis at ``--redis``, NATS JetStream at ``--nats``):

* ``drain`` -- a backlog of N events is published first (not timed), then W worker
  processes of one consumer group are started, told to go at the same instant, and
  drain it, until the last acknowledgement (the last ``XACK`` returned, the last
  handler finished before its buffered ``+ACK``, or reactor's last ``settle()``
  returned).
  The rate is taken from the first delivery in any worker to the last acknowledgement:
  interpreter start, connecting and the first read are the same for every system and
  are not the drain; the table shows them apart ("start-up", from the go to the first
  delivery, and the rate from the go).
  The systems:

  - ``raw`` -- the client by hand. Redis: coredis, ``XREADGROUP COUNT 256`` and the
    ``XACK`` of the previous batch pipelined in one round trip, each entry's JSON
    decoded with ``json.loads`` and the K ``async def`` handlers awaited in turn. NATS:
    nats-py, JetStream ``pull_subscribe`` ``fetch(256)``, the same decode and handlers,
    ``msg.ack()`` per message (buffered, flushed with the next request);
  - ``raw-event`` -- the same raw loop with reactor's codec as its decode step:
    ``Event.from_json`` (strict JSON, then the ``Event`` built and validated) and handlers
    that take the ``Event``, as reactor's subscriptions do. Not the issue's baseline: the
    ratio ``reactor / raw-event`` is reported beside the issue's ``reactor / raw`` (never
    instead of it) and says what reactor costs beyond decoding the events it must hand
    to its handlers;
  - ``reactor`` -- ``Reactor(queue=RedisStreamsQueue(...)|NatsJetStreamQueue(...))``
    with its defaults, K subscriptions; the backlog is published through the same queue
    class opened as a tool (``async with``: it takes none of the group's events),
    ``put_many()`` or concurrent ``put()`` calls, so it is in the queue's own format;
  - ``faststream`` / ``faststream-batch`` -- FastStream with its natural consumer-group
    subscriber: Redis ``@broker.subscriber(stream=StreamSub(name, group=, consumer=,
    max_records=256[, batch=True]))``; NATS ``@broker.subscriber(subject, stream=,
    durable=, pull_sub=PullSub(batch_size=256[, batch=True]))``; one subscriber whose
    handler awaits the K handlers (K subscribers would need K groups and K reads of
    every entry: the conservative choice for FastStream), the body annotated ``Any``
    (no validation), its per-message access log turned down to DEBUG (not printed).
    The backlog is published with FastStream's own ``broker.publish``, so it carries
    FastStream's envelope, and is a whole number of batches (its batch pull waits up to
    its timeout, 1 s here, for a last batch to fill).

  W = 1 for every system (``reactor/raw`` and ``reactor/faststream`` are taken pair by
  pair within a repetition), and W = 2 for ``raw`` and ``reactor``: the scale-out ratio
  is reactor's W = 2 rate over its W = 1 rate. A drain is the fairest shape for a
  queue: publishers do not compete with the consumers for the CPU, and what is timed is
  only the consuming side.
* ``latency`` -- a producer process publishes at a paced 5,000 events/s (each event
  carries ``time.time()`` taken just before its publish, 16 publisher tasks on
  absolute deadlines) while one worker process measures ``time.time() - sent`` at the
  start of every delivery (one machine, one clock). ``raw`` (XADD per event /
  ``js.publish`` per event; blocking ``XREADGROUP`` / ``fetch``) and ``reactor`` (the
  producer calls ``put()`` of the queue opened with ``async with``; the worker is a
  Reactor app).

``--profile DIR`` runs every drain worker under cProfile and writes its statistics there;
``--systems`` and ``--loops`` narrow the run. ``--breakdown`` explains the gap between
the systems with numbers from the same run: after the measured runs, one more
1-process asyncio drain of ``raw``, ``raw-event`` and ``reactor`` per broker runs under
cProfile (not counted in the rates), and every function's own time goes to one
component -- JSON parse, Event build and validation, the broker client, reactor's queue,
dispatch, settlement, handlers, event loop, imports -- by the file it comes from;
builtins and helpers count for their callers (``benchmarks/_profile.py``). The table
gives each component's share of the profile times the system's CPU µs per event in the
measured runs (the profiler slows Python calls most, so its own µs are shown apart), and
leaves out the time spent waiting in ``epoll`` for the broker. Every drain worker also
times the garbage collector (``gc.callbacks``), which cProfile does not see.

Every worker counts its deliveries per handler and adds up their indexes; the parent
adds the workers up and checks that every handler saw every event exactly once, so a run
that loses or duplicates an event is an error, never a speed. Every run uses a stream of
its own (``bench-scaleout-<random>``) and deletes it, and what the queue keeps beside it,
afterwards. reactor's queues are optional: a broker whose queue class cannot be imported
reports its reactor rows as "not available" and the targets as ``n/a``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import json
import logging
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio

import reactor
from reactor import Event, Reactor
from reactor.abc import EventQueue, Received

from . import _harness as h
from . import _profile
from .sqlite import make_data

K = 4
BROKERS = ("redis", "nats")
URLS = {"redis": "redis://127.0.0.1:6379/0", "nats": "nats://127.0.0.1:4222"}
#: The client modules of each broker's raw and reactor systems.
CLIENTS = {
    "redis": ("coredis", "coredis.exceptions", "coredis.patterns.pipeline", "coredis.retry"),
    "nats": ("nats", "nats.errors", "nats.js.api", "nats.js.errors"),
}
QUEUES = {
    "redis": ("reactor.queues.redis", "RedisStreamsQueue"),
    "nats": ("reactor.queues.nats", "NatsJetStreamQueue"),
}
LOOPS = ("asyncio", "trio")
SYSTEMS = ("raw", "raw-event", "reactor", "faststream", "faststream-batch")
WORKLOADS = ("drain", "latency")

EVENT_TYPE = "bench.event"
EVENT_SOURCE = "/bench"
EVENT_TIME = datetime(2026, 1, 1, tzinfo=UTC)
GROUP = "bench"
BATCH = 256
#: Seconds a JetStream pull request waits for messages (raw client and FastStream). A
#: request that expires on the client while the server is still delivering leaves those
#: messages to be redelivered after the consumer's ack_wait (30 s).
FETCH_TIMEOUT = 1.0

#: Backlog per drain run: the client-level systems, and FastStream, which is 5-20x slower.
EVENTS = {"redis": 100_000, "nats": 50_000}
FASTSTREAM_EVENTS = {"redis": 20_000, "nats": 20_000}
QUICK_EVENTS = 2_000
LATENCY_RATE = 5_000.0
LATENCY_SECONDS = 10.0
LATENCY_SECONDS_QUICK = 1.0
LATENCY_PUBLISHERS = 16
#: A worker that has handled events and then sees none for this long has drained its share.
IDLE_SECONDS = 1.0
IDLE_SECONDS_QUICK = 0.5

TARGET_RAW = 0.7
TARGET_SCALE = 1.6
TARGET_FASTSTREAM = 3.0

CHILD_MODULE = "benchmarks.scaleout"
ROOT = Path(__file__).resolve().parent.parent
DISTRIBUTIONS = ("reactor-events", "anyio", "trio", "coredis", "nats-py", "faststream", "redis")
INSTALL = "python3 -m pip install -r benchmarks/requirements.txt"


# --------------------------------------------------------------------------- child side


@dataclass(frozen=True, kw_only=True)
class Spec:
    """One child process's part of a measurement."""

    role: str  # fill, worker, producer, cleanup, probe
    broker: str
    system: str = "raw"
    loop: str = "asyncio"
    url: str = ""
    stream: str = ""
    events: int = 0
    index: int = 0
    workers: int = 1
    rate: float = 0.0
    idle: float = IDLE_SECONDS
    latency: bool = False
    timeout: float = 300.0
    profile: str = ""  # a worker writes its cProfile statistics to this file

    def to_json(self) -> str:
        """Serialise for the child's command line.

        :return: the spec as a JSON string.
        """
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Spec:
        """Parse a spec written by :meth:`to_json`.

        :param text: the JSON string.
        :return: the spec.
        """
        return cls(**json.loads(text))

    @property
    def subject(self) -> str:
        """The NATS subject the raw and FastStream systems publish on."""
        return f"{self.stream}.events"

    @property
    def consumer(self) -> str:
        """This worker's consumer name within the group."""
        return f"w{self.index}-{os.getpid()}"


def make_event(stream: str, index: int, sent: float | None = None) -> Event:
    """Event number *index* of a run: ~1 KB of CloudEvents JSON once encoded.

    :param stream: the run's stream (the event ids are unique per run).
    :param index: the event's number, added up by the handlers.
    :param sent: the publish time (``time.time()``) for the latency runs.
    :return: the event.
    """
    data = make_data(index)
    if sent is not None:
        data["sent"] = sent
    return Event(
        type=EVENT_TYPE, source=EVENT_SOURCE, id=f"{stream}-{index}", time=EVENT_TIME, data=data
    )


class Tally:
    """Per-handler counts and index sums, the activity clock and the latency samples."""

    def __init__(self, expect: int, *, latency: bool = False) -> None:
        """Prepare counters.

        :param expect: events of the run (all workers together).
        :param latency: record ``time.time() - data["sent"]`` at every delivery's start.
        """
        self.expect = expect
        self.counts = [0] * K
        self.sums = [0] * K
        self.handled = 0  # events the last handler has seen
        self.last_at = 0.0  # time.time() of the last delivery
        self.first_at = 0.0
        self.latencies: list[float] | None = [] if latency else None

    def dict_handlers(self) -> list[Callable[[dict[str, Any]], Coroutine[Any, Any, None]]]:
        """K ``async def`` handlers of a decoded CloudEvents dict (raw and FastStream)."""
        return [self._handler(i, lambda event: event["data"]) for i in range(K)]

    def event_handlers(self) -> list[Callable[[Event], Coroutine[Any, Any, None]]]:
        """K ``async def`` handlers of a :class:`reactor.Event` (reactor)."""
        return [self._handler(i, lambda event: event.data) for i in range(K)]

    def _handler(
        self, i: int, data_of: Callable[[Any], Any]
    ) -> Callable[[Any], Coroutine[Any, Any, None]]:
        counts, sums, latencies, last = self.counts, self.sums, self.latencies, i == K - 1
        clock = time.time

        async def handle(event: Any) -> None:
            data = data_of(event)
            if latencies is not None:
                latencies.append(clock() - data["sent"])
            counts[i] += 1
            sums[i] += data["index"]
            if last:
                self.handled += 1
                self.last_at = clock()
                if not self.first_at:
                    self.first_at = self.last_at

        return handle

    def result(self) -> dict[str, Any]:
        """The worker's counts for the parent to add up, and its latency figures."""
        out: dict[str, Any] = {
            "counts": self.counts,
            "sums": self.sums,
            "handled": self.handled,
            "first_at": self.first_at,
            "handled_at": self.last_at,
        }
        if self.latencies is not None:
            ordered = sorted(self.latencies) or [0.0]
            out.update(
                deliveries=len(self.latencies),
                p50_ms=h.percentile(ordered, 0.50) * 1e3,
                p99_ms=h.percentile(ordered, 0.99) * 1e3,
                max_ms=ordered[-1] * 1e3,
                p90_ms=h.percentile(ordered, 0.90) * 1e3,
                over_100ms=sum(1 for x in ordered if x > 0.1) / len(ordered),
            )
        return out


class Stopper:
    """When a worker is done: every event of the run seen, or idle after its share.

    ``settled`` says whether the worker's acknowledgements have caught up with what it
    handled (reactor settles after the handlers); the idle rule waits for it too.
    """

    def __init__(self, tally: Tally, spec: Spec, settled: Callable[[], bool]) -> None:
        """Watch *tally*.

        :param tally: the worker's counters.
        :param spec: the worker's spec (events of the run, idle time, timeout).
        :param settled: whether the acknowledgements caught up.
        """
        self.tally = tally
        self.spec = spec
        self.settled = settled
        self.deadline = time.time() + spec.timeout

    def done(self) -> bool:
        """Whether the worker should stop now."""
        tally = self.tally
        now = time.time()
        if now > self.deadline:
            return True
        if not self.settled():
            return False
        if tally.handled >= tally.expect:
            return True
        return tally.handled > 0 and now - tally.last_at > self.spec.idle

    async def wait(self) -> None:
        """Return once :meth:`done`."""
        # Polled: the counters move in handlers and settlements of other tasks.
        while not self.done():  # noqa: ASYNC110
            await anyio.sleep(0.02)


def _import(module: str) -> Any:
    return importlib.import_module(module)


def _queue_class(broker: str) -> type[EventQueue]:
    """The broker's reactor queue class (ImportError/AttributeError when not built)."""
    module, name = QUEUES[broker]
    cls: type[EventQueue] = getattr(importlib.import_module(module), name)
    return cls


def _counting(cls: type[EventQueue]) -> type[EventQueue]:
    """A subclass of the queue class that counts acknowledgements and times the last."""

    class Counting(cls):  # type: ignore[misc,valid-type]
        acked = 0
        acked_at = 0.0
        _in_settle = False

        async def settle(
            self, done: Sequence[Received], progress: Sequence[tuple[Received, str]]
        ) -> None:
            self._in_settle = True
            try:
                await super().settle(done, progress)
            finally:
                self._in_settle = False
            if done:
                self.acked += len(done)
                self.acked_at = time.time()

        async def ack(self, received: Sequence[Received]) -> None:
            await super().ack(received)
            if received and not self._in_settle:
                self.acked += len(received)
                self.acked_at = time.time()

    Counting.__name__ = f"Counting{cls.__name__}"
    return Counting


def _new_queue(spec: Spec, cls: type[EventQueue] | None = None, **options: Any) -> Any:
    cls = cls or _queue_class(spec.broker)
    return cls(spec.url, stream=spec.stream, group=GROUP, consumer=spec.consumer, **options)  # type: ignore[call-arg]


# ..................................................................... fill (not timed)


async def _fill_redis_raw(spec: Spec, *, faststream_group: bool = False) -> None:
    coredis = _import("coredis")
    client = coredis.Redis.from_url(spec.url)
    async with client:
        await client.xgroup_create(spec.stream, GROUP, "0", mkstream=True)
        if faststream_group:
            return
        for first in range(0, spec.events, 1000):
            async with client.pipeline(transaction=False) as pipe:
                for i in range(first, min(spec.events, first + 1000)):
                    pipe.xadd(spec.stream, {"event": make_event(spec.stream, i).to_json()})


async def _nats_stream(spec: Spec, *, consumer: bool) -> None:
    nats = _import("nats")
    api = _import("nats.js.api")
    nc = await nats.connect(spec.url)
    try:
        js = nc.jetstream()
        await js.add_stream(name=spec.stream, subjects=[f"{spec.stream}.>"])
        if consumer:
            config = api.ConsumerConfig(
                durable_name=GROUP, ack_policy=api.AckPolicy.EXPLICIT, max_ack_pending=20_000
            )
            await js.add_consumer(spec.stream, config)
        if spec.system.startswith("raw"):
            for first in range(0, spec.events, 1000):
                futures = [
                    await js.publish_async(spec.subject, make_event(spec.stream, i).to_json())
                    for i in range(first, min(spec.events, first + 1000))
                ]
                await _gather(futures)
    finally:
        await nc.drain()


async def _gather(items: Sequence[Awaitable[Any]]) -> None:
    import asyncio

    await asyncio.gather(*items)


async def _fill_reactor(spec: Spec) -> None:
    # Room for the whole backlog: capacity bounds the group's backlog, as far as the queue
    # knows it (lag as last measured plus what it published since, which can count an
    # event twice: with exactly the backlog's size, NatsJetStreamQueue's put() waited for
    # good at 45,500 of 50,000 events, with nobody reading).
    queue = _new_queue(spec, capacity=4 * spec.events + BATCH)
    # Opened as a tool (``async with``), not as an app's queue: it creates the stream and
    # the group before the backlog is written, and takes none of the group's events.
    async with queue:
        events = [make_event(spec.stream, i) for i in range(spec.events)]
        batches = True
        for first in range(0, spec.events, 500):
            chunk = events[first : first + 500]
            if batches:
                try:
                    await queue.put_many(chunk)
                    continue
                except NotImplementedError:
                    batches = False  # concurrent put() calls instead, which it batches
            async with anyio.create_task_group() as tg:
                for event in chunk:
                    tg.start_soon(queue.put, event)


async def _fill_faststream(spec: Spec) -> None:
    bodies = [json.loads(make_event(spec.stream, i).to_json()) for i in range(spec.events)]
    if spec.broker == "redis":
        await _fill_redis_raw(spec, faststream_group=True)  # the group reads from the start
        broker = _import("faststream.redis").RedisBroker(spec.url, log_level=logging.DEBUG)
        async with broker:
            # A few publishes at a time: the client's connection pool is bounded.
            for first in range(0, spec.events, 32):
                await _gather(
                    [broker.publish(b, stream=spec.stream) for b in bodies[first : first + 32]]
                )
    else:
        await _nats_stream(spec, consumer=False)
        broker = _import("faststream.nats").NatsBroker(spec.url, log_level=logging.DEBUG)
        async with broker:
            for first in range(0, spec.events, 500):
                await _gather(
                    [
                        broker.publish(b, spec.subject, stream=spec.stream)
                        for b in bodies[first : first + 500]
                    ]
                )


def _child_fill(spec: Spec) -> dict[str, Any]:
    t0 = time.perf_counter()
    if spec.system == "reactor":
        h.run_anyio("asyncio", lambda: _fill_reactor(spec))
    elif spec.system.startswith("faststream"):
        anyio.run(_fill_faststream, spec)
    elif spec.broker == "redis":
        anyio.run(_fill_redis_raw, spec)
    else:
        anyio.run(lambda: _nats_stream(spec, consumer=True))
    return {"events": spec.events, "elapsed": time.perf_counter() - t0}


# ............................................................................. workers


def _raw_codec(spec: Spec, tally: Tally) -> tuple[Callable[[Any], Any], list[Any]]:
    """The raw workers' decode step and the K handlers of what it returns.

    ``raw``: ``json.loads`` into a dict, handlers of the dict (the issue's baseline).
    ``raw-event``: reactor's codec, ``Event.from_json`` (strict JSON, then the
    :class:`reactor.Event` built and validated), handlers of the ``Event`` as reactor's
    subscriptions take it: the same client loop, doing the decoding reactor must do.
    """
    if spec.system == "raw-event":
        return Event.from_json, tally.event_handlers()
    return json.loads, tally.dict_handlers()


async def _worker_redis_raw(spec: Spec, tally: Tally) -> dict[str, Any]:
    coredis = _import("coredis")
    loads, handlers = _raw_codec(spec, tally)
    stream, consumer = spec.stream, spec.consumer
    stop = Stopper(tally, spec, lambda: True)
    acked_at = 0.0
    client = coredis.Redis.from_url(spec.url)
    async with client:
        ids: list[Any] = []
        while True:
            if ids:
                # The acknowledgement of the batch just handled and the next read: one
                # round trip.
                async with client.pipeline(transaction=False) as pipe:
                    pipe.xack(stream, GROUP, ids)
                    request = pipe.xreadgroup(GROUP, consumer, {stream: ">"}, count=BATCH)
                response = await request
                acked_at = time.time()
                ids = []
            else:
                response = await client.xreadgroup(
                    GROUP, consumer, {stream: ">"}, count=BATCH, block=50
                )
            entries = next(iter(response.values())) if response else ()
            if not entries:
                if stop.done():
                    break
                continue
            for entry in entries:
                event = loads(entry.field_values[b"event"])
                for handle in handlers:
                    await handle(event)
                ids.append(entry.identifier)
            if tally.handled >= tally.expect:
                await client.xack(stream, GROUP, ids)
                acked_at = time.time()
                break
    return {"acked_at": acked_at}


async def _worker_nats_raw(spec: Spec, tally: Tally) -> dict[str, Any]:
    nats = _import("nats")
    errors = _import("nats.errors")
    loads, handlers = _raw_codec(spec, tally)
    stop = Stopper(tally, spec, lambda: True)
    nc = await nats.connect(spec.url)
    try:
        js = nc.jetstream()
        psub = await js.pull_subscribe_bind(GROUP, spec.stream)
        while not stop.done():
            try:
                messages = await psub.fetch(BATCH, timeout=FETCH_TIMEOUT)
            except (errors.TimeoutError, TimeoutError):
                continue
            for message in messages:
                event = loads(message.data)
                for handle in handlers:
                    await handle(event)
                await message.ack()
        # The acknowledgements are buffered and go out with the next fetch request, right
        # after the handlers: the run ends when the last handler finished.
    finally:
        await nc.drain()
    return {"acked_at": 0.0}


async def _worker_reactor(spec: Spec, tally: Tally) -> dict[str, Any]:
    queue = _new_queue(spec, _counting(_queue_class(spec.broker)))
    app = Reactor(queue=queue, source=EVENT_SOURCE)
    for i, handler in enumerate(tally.event_handlers()):
        app.subscribe(EVENT_TYPE, handler, name=f"h{i}")
    stop = Stopper(tally, spec, lambda: queue.acked >= tally.handled)
    async with app:
        await stop.wait()
        stats = app.stats()
    return {"acked_at": queue.acked_at, "acked": queue.acked, "stats": repr(stats)[:2000]}


async def _worker_faststream(spec: Spec, tally: Tally) -> dict[str, Any]:
    handlers = tally.dict_handlers()
    batch = spec.system == "faststream-batch"

    async def on_message(body: Any) -> None:
        for handle in handlers:
            await handle(body)

    async def on_batch(bodies: list[Any]) -> None:
        for body in bodies:
            for handle in handlers:
                await handle(body)

    if spec.broker == "redis":
        module = _import("faststream.redis")
        broker = module.RedisBroker(spec.url, log_level=logging.DEBUG)
        sub = module.StreamSub(
            spec.stream,
            group=GROUP,
            consumer=spec.consumer,
            batch=batch,
            max_records=BATCH,
            polling_interval=50,
        )
        broker.subscriber(stream=sub)(on_batch if batch else on_message)
    else:
        module = _import("faststream.nats")
        broker = module.NatsBroker(spec.url, log_level=logging.DEBUG)
        broker.subscriber(
            spec.subject,
            stream=module.JStream(spec.stream, declare=False),
            durable=GROUP,
            pull_sub=module.PullSub(batch_size=BATCH, timeout=FETCH_TIMEOUT, batch=batch),
        )(on_batch if batch else on_message)
    stop = Stopper(tally, spec, lambda: True)
    async with broker:
        await broker.start()
        await stop.wait()
    return {"acked_at": 0.0}


WORKERS: dict[tuple[str, str], Callable[[Spec, Tally], Awaitable[dict[str, Any]]]] = {
    ("redis", "raw"): _worker_redis_raw,
    ("nats", "raw"): _worker_nats_raw,
    ("redis", "raw-event"): _worker_redis_raw,
    ("nats", "raw-event"): _worker_nats_raw,
    ("redis", "reactor"): _worker_reactor,
    ("nats", "reactor"): _worker_reactor,
    ("redis", "faststream"): _worker_faststream,
    ("nats", "faststream"): _worker_faststream,
    ("redis", "faststream-batch"): _worker_faststream,
    ("nats", "faststream-batch"): _worker_faststream,
}


def _child_worker(spec: Spec) -> dict[str, Any]:
    """Get ready, say so, wait for the parent's go (its time.time()), then consume."""
    run = WORKERS[(spec.broker, spec.system)]
    if spec.system.startswith("faststream"):
        _import(f"faststream.{spec.broker}")
    else:
        # Before READY, for raw and reactor alike: imports are start-up, not the drain's
        # CPU time per event (reactor's queues import their client when they open).
        for module in CLIENTS[spec.broker]:
            _import(module)
        if spec.system == "reactor":
            _queue_class(spec.broker)  # fail before READY when the queue is not there
    tally = Tally(spec.events, latency=spec.latency)
    out: dict[str, Any] = {}

    async def main() -> None:
        if spec.latency:
            # The stream is empty: start consuming, then say ready (the producer starts).
            async with anyio.create_task_group() as tg:
                tg.start_soon(_run_into, run, spec, tally, out)
                await anyio.sleep(0.5)
                _ready()
        else:
            await _run_into(run, spec, tally, out)

    if not spec.latency:
        _ready()
        line = sys.stdin.readline().split()
        if not line or line[0] != "GO":
            return {"error": "no go from the parent"}
        out["go_at"] = float(line[1])
    profiler = None
    if spec.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    collections = _GarbageCollections()
    cpu0 = time.process_time()
    with collections:
        if spec.system.startswith("faststream") or (
            spec.broker == "nats" and spec.system.startswith("raw")
        ):
            anyio.run(main)
        else:
            h.run_anyio(spec.loop, main)
    out["cpu_s"] = time.process_time() - cpu0
    out["gc_s"] = collections.seconds
    out["gc_counts"] = collections.counts
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(spec.profile)
    return {**out, **tally.result()}


class _GarbageCollections:
    """The time the garbage collector runs while the block runs (``gc.callbacks``).

    cProfile does not see it: a collection's time counts for whatever function allocated
    the object that started it. A worker that keeps many events alive at once (a batch)
    makes the collector run more often and longer than one that drops each event as soon
    as it is handled.
    """

    def __init__(self) -> None:
        self.seconds = 0.0
        self.counts = [0, 0, 0]  # collections per generation
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        # CPU time, as the workers' CPU per event (a few hundred collections a run: the
        # clock's cost does not matter).
        if phase == "start":
            self._started = time.process_time()
        else:
            self.seconds += time.process_time() - self._started
            self.counts[info["generation"]] += 1

    def __enter__(self) -> None:
        gc.callbacks.append(self._callback)

    def __exit__(self, *exc_info: object) -> None:
        gc.callbacks.remove(self._callback)


async def _run_into(
    run: Callable[[Spec, Tally], Awaitable[dict[str, Any]]],
    spec: Spec,
    tally: Tally,
    out: dict[str, Any],
) -> None:
    out.update(await run(spec, tally))


def _ready() -> None:
    print("READY", flush=True)


# ............................................................................ producer


async def _producer(spec: Spec) -> dict[str, Any]:
    total, period, stride = spec.events, 1.0 / spec.rate, LATENCY_PUBLISHERS
    clock = time.time
    publish: Callable[[int], Awaitable[Any]]
    async with contextlib.AsyncExitStack() as stack:
        if spec.system == "reactor":
            # A producer: the queue opened as a tool (``async with``) takes none of the
            # group's events; an app's queue would also read them.
            queue = await stack.enter_async_context(_new_queue(spec))

            def publish(i: int) -> Awaitable[Any]:
                return queue.put(make_event(spec.stream, i, clock()))  # type: ignore[no-any-return]

        elif spec.broker == "redis":
            client = _import("coredis").Redis.from_url(spec.url)
            await stack.enter_async_context(client)

            def publish(i: int) -> Awaitable[Any]:
                body = make_event(spec.stream, i, clock()).to_json()
                return client.xadd(spec.stream, {"event": body})  # type: ignore[no-any-return]

        else:
            nc = await _import("nats").connect(spec.url)
            stack.push_async_callback(nc.drain)
            js = nc.jetstream()

            def publish(i: int) -> Awaitable[Any]:
                body = make_event(spec.stream, i, clock()).to_json()
                return js.publish(spec.subject, body)  # type: ignore[no-any-return]

        start = time.perf_counter() + 0.05

        async def publisher(first: int) -> None:
            for i in range(first, total, stride):
                delay = start + i * period - time.perf_counter()
                if delay > 0:
                    await anyio.sleep(delay)
                await publish(i)

        async with anyio.create_task_group() as tg:
            for first in range(stride):
                tg.start_soon(publisher, first)
        elapsed = time.perf_counter() - start
    return {"published": total, "elapsed": elapsed, "achieved_rate": total / elapsed}


def _child_producer(spec: Spec) -> dict[str, Any]:
    out: dict[str, Any] = {}

    async def main() -> None:
        out.update(await _producer(spec))

    anyio.run(main)
    return out


# ............................................................................. cleanup


async def _cleanup(spec: Spec) -> dict[str, Any]:
    """Delete the run's stream and everything named after it (the queue's own keys)."""
    removed: list[str] = []
    if spec.broker == "redis":
        client = _import("coredis").Redis.from_url(spec.url, decode_responses=True)
        async with client:
            keys = [key async for key in client.scan_iter(match=f"*{spec.stream}*")]
            if keys:
                await client.delete(keys)
            removed = sorted(keys)
    else:
        nc = await _import("nats").connect(spec.url)
        try:
            js = nc.jetstream()
            for info in await js.streams_info():
                name = info.config.name
                if spec.stream in name or spec.stream.replace("-", "_") in name:
                    await js.delete_stream(name)
                    removed.append(name)
        finally:
            await nc.drain()
    return {"removed": removed}


def _child_cleanup(spec: Spec) -> dict[str, Any]:
    out: dict[str, Any] = {}

    async def main() -> None:
        out.update(await _cleanup(spec))

    anyio.run(main)
    return out


def _child_probe(spec: Spec) -> dict[str, Any]:
    """What is usable: the broker answers, reactor's queue class imports, FastStream."""
    out: dict[str, Any] = {}
    try:
        _queue_class(spec.broker)
        out["reactor"] = None
    except (ImportError, AttributeError) as exc:
        out["reactor"] = f"not available ({type(exc).__name__}: {exc})"
    try:
        _import(f"faststream.{spec.broker}")
        out["faststream"] = None
    except ImportError as exc:
        out["faststream"] = f"not installed ({exc}; {INSTALL})"

    async def ping() -> None:
        with anyio.fail_after(5):
            await _ping(spec)

    try:
        anyio.run(ping)
        out["broker"] = None
    except Exception as exc:
        out["broker"] = f"no server at {spec.url} ({type(exc).__name__}: {exc})"
    return out


async def _ping(spec: Spec) -> None:
    if spec.broker == "redis":
        client = _import("coredis").Redis.from_url(spec.url)
        async with client:
            await client.ping()
    else:
        nc = await _import("nats").connect(spec.url, connect_timeout=2, max_reconnect_attempts=0)
        await nc.jetstream().account_info()
        await nc.drain()


CHILDREN = {
    "fill": _child_fill,
    "worker": _child_worker,
    "producer": _child_producer,
    "cleanup": _child_cleanup,
    "probe": _child_probe,
}


def _describe(exc: BaseException) -> str:
    """``Type: message``; an exception group by its first leaf exception."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"


def child_main(spec_json: str) -> int:
    """Run one child's part and print its JSON result line.

    :param spec_json: a :class:`Spec` as JSON.
    :return: the process exit code.
    """
    logging.getLogger().addHandler(logging.NullHandler())
    spec = Spec.from_json(spec_json)
    try:
        result = CHILDREN[spec.role](spec)
    except Exception as exc:
        result = {"error": _describe(exc)}
    h.print_result(result)
    return 0


# -------------------------------------------------------------------------- parent side


def _command(spec: Spec) -> list[str]:
    return [sys.executable, "-m", CHILD_MODULE, "--child", spec.to_json()]


def run_child(spec: Spec, timeout: float) -> dict[str, Any]:
    """Run one child to completion (fill, producer, cleanup, probe).

    :param spec: what it does.
    :param timeout: seconds before it is killed and reported as an error.
    :return: its result; has an ``error`` key if it failed.
    """
    result = h.run_child(CHILD_MODULE, spec.to_json(), timeout, cwd=ROOT)
    if not isinstance(result, dict):
        return {"error": f"child returned a {type(result).__name__}, not an object"}
    return result


class Workers:
    """Worker processes started together: wait until each is ready, go, collect."""

    def __init__(self, specs: Sequence[Spec], timeout: float) -> None:
        """Start one process per spec.

        :param specs: the workers' specs.
        :param timeout: seconds before every worker is killed.
        """
        self.logs = [_TempLog() for _ in specs]
        self.procs = [
            subprocess.Popen(
                _command(spec),
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log.file,
                text=True,
            )
            for spec, log in zip(specs, self.logs, strict=True)
        ]
        self.watchdog = threading.Timer(timeout, self.kill)
        self.watchdog.daemon = True
        self.watchdog.start()
        self.killed = False

    def kill(self) -> None:
        """Kill every worker still running (the watchdog's action)."""
        self.killed = True
        for proc in self.procs:
            with contextlib.suppress(OSError):
                proc.kill()

    def ready(self) -> str | None:
        """Wait for every worker's READY line.

        :return: ``None``, or what went wrong.
        """
        for n, proc in enumerate(self.procs):
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if line.strip() != "READY":
                return f"worker {n} did not get ready: {line.strip()[:300] or self._tail(n)}"
        return None

    def go(self) -> float:
        """Tell every worker to start now; return that instant (``time.time()``)."""
        now = time.time()
        for proc in self.procs:
            assert proc.stdin is not None
            with contextlib.suppress(OSError):
                proc.stdin.write(f"GO {now!r}\n")
                proc.stdin.flush()
        return now

    def results(self) -> list[dict[str, Any]]:
        """Wait for every worker and return their results (with ``error`` when failed)."""
        out = []
        for n, proc in enumerate(self.procs):
            stdout, _ = proc.communicate()
            result: dict[str, Any] | None = None
            for line in reversed(stdout.splitlines()):
                if line.startswith(h.RESULT_MARK):
                    result = json.loads(line[len(h.RESULT_MARK) :])
                    break
            if result is None:
                why = "killed after the timeout" if self.killed else f"exited {proc.returncode}"
                result = {"error": f"worker {n} {why} without a result: {self._tail(n)}"}
            out.append(result)
        self.watchdog.cancel()
        for log in self.logs:
            log.close()
        return out

    def _tail(self, n: int) -> str:
        return " | ".join(self.logs[n].text().strip().splitlines()[-3:])


class _TempLog:
    """A worker's stderr, in a temporary file (a pipe nobody reads could fill up)."""

    def __init__(self) -> None:
        import tempfile

        self.file = tempfile.TemporaryFile("w+")

    def text(self) -> str:
        self.file.flush()
        self.file.seek(0)
        return self.file.read()

    def close(self) -> None:
        self.file.close()


def _stream_name() -> str:
    return f"bench-scaleout-{secrets.token_hex(5)}"


def _check(results: Sequence[dict[str, Any]], events: int) -> list[str]:
    """Every handler saw every event once, all workers together: the problems otherwise."""
    problems = [r["error"] for r in results if "error" in r]
    if problems:
        return problems
    expected = events * (events - 1) // 2
    for i in range(K):
        count = sum(r["counts"][i] for r in results)
        total = sum(r["sums"][i] for r in results)
        if count != events or total != expected:
            problems.append(
                f"handler {i}: {count} of {events} deliveries (index sum {total}, "
                f"expected {expected})"
            )
    return problems


def measure_drain(cfg: Config, broker: str, system: str, loop: str, workers: int) -> dict[str, Any]:
    """Fill a fresh stream with a backlog, drain it with *workers* processes, clean up.

    :return: events/s and the details, or ``error``.
    """
    events = cfg.events_for(broker, system)
    base = Spec(
        role="fill",
        broker=broker,
        system=system,
        loop=loop,
        url=cfg.urls[broker],
        stream=_stream_name(),
        events=events,
        workers=workers,
        idle=cfg.idle,
        timeout=cfg.timeout,
    )
    specs = [
        replace(base, role="worker", index=n, profile=_profile_path(cfg, base, n))
        for n in range(workers)
    ]
    try:
        fill = run_child(base, cfg.timeout)
        if "error" in fill:
            return {"error": f"fill: {fill['error']}"}
        team = Workers(specs, cfg.timeout + 60)
        problem = team.ready()
        go_at = team.go() if problem is None else 0.0
        if problem is not None:
            team.kill()
        results = team.results()
        if problem is not None:
            return {"error": problem}
    finally:
        cleanup = run_child(replace(base, role="cleanup"), 60)
    problems = _check(results, events)
    if problems:
        return {"error": "lost deliveries: " + "; ".join(problems[:4])}
    done_at = max(max(r["acked_at"], r["handled_at"]) for r in results)
    first_at = min(r["first_at"] for r in results if r["first_at"])
    # Timed from the first delivery (start-up, connection and the first read are not the
    # drain rate; they are reported apart) to the last acknowledgement.
    elapsed = done_at - first_at
    return {
        "events": events,
        "workers": workers,
        "elapsed": elapsed,
        "events_per_s": events / elapsed,
        "events_per_s_from_go": events / (done_at - go_at),
        "first_event_s": first_at - go_at,
        "per_worker": [r["handled"] for r in results],
        "cpu_share": [r["cpu_s"] / (done_at - go_at) for r in results],
        "cpu_us_per_event": sum(r["cpu_s"] for r in results) / events * 1e6,
        "gc_us_per_event": sum(r["gc_s"] for r in results) / events * 1e6,
        "gc_collections": [sum(c) for c in zip(*(r["gc_counts"] for r in results), strict=True)],
        "fill_s": fill["elapsed"],
        "cleanup": cleanup.get("removed", cleanup.get("error")),
        "stats": [r.get("stats") for r in results if r.get("stats")],
        "profiles": [spec.profile for spec in specs if spec.profile],
    }


def _profile_path(cfg: Config, spec: Spec, n: int) -> str:
    if not cfg.profile:
        return ""
    directory = Path(cfg.profile)
    directory.mkdir(parents=True, exist_ok=True)
    name = f"{spec.broker}-{spec.system}-{spec.loop}-W{spec.workers}-{n}-{spec.stream[-10:]}.prof"
    return str((directory / name).resolve())


def measure_latency(cfg: Config, broker: str, system: str) -> dict[str, Any]:
    """One worker process; a producer process publishes at :data:`LATENCY_RATE` meanwhile.

    :return: the latency figures and the producer's achieved rate, or ``error``.
    """
    events = int(LATENCY_RATE * cfg.latency_seconds)
    base = Spec(
        role="fill",
        broker=broker,
        system=system,
        url=cfg.urls[broker],
        stream=_stream_name(),
        events=0,
        rate=LATENCY_RATE,
        idle=cfg.latency_seconds + 30,
        latency=True,
        timeout=cfg.latency_seconds + 60,
    )
    try:
        fill = run_child(base, cfg.timeout)  # creates the stream and the group, no events
        if "error" in fill:
            return {"error": f"set-up: {fill['error']}"}
        team = Workers([replace(base, role="worker", events=events)], cfg.latency_seconds + 120)
        problem = team.ready()
        producer = (
            run_child(replace(base, role="producer", events=events), cfg.latency_seconds + 90)
            if problem is None
            else {"error": problem}
        )
        if "error" in producer:
            team.kill()
        results = team.results()
    finally:
        run_child(replace(base, role="cleanup"), 60)
    if "error" in producer:
        return {"error": f"producer: {producer['error']}"}
    problems = _check(results, events)
    if problems:
        return {"error": "lost deliveries: " + "; ".join(problems[:4])}
    (worker,) = results
    return {
        "events": events,
        "deliveries": worker["deliveries"],
        "achieved_rate": producer["achieved_rate"],
        "p50_ms": worker["p50_ms"],
        "p99_ms": worker["p99_ms"],
        "max_ms": worker["max_ms"],
        "p90_ms": worker["p90_ms"],
        "over_100ms": worker["over_100ms"],
    }


# ------------------------------------------------------------------------------- plan


@dataclass(kw_only=True)
class Config:
    """Sizes, repetitions and what runs."""

    quick: bool
    repeat: int
    brokers: list[str]
    loops: list[str]
    workloads: list[str]
    urls: dict[str, str]
    scale: float = 1.0
    idle: float = IDLE_SECONDS
    latency_seconds: float = LATENCY_SECONDS
    timeout: float = 600.0
    profile: str = ""
    systems: list[str] = field(default_factory=lambda: list(SYSTEMS))
    breakdown: bool = False

    def events_for(self, broker: str, system: str) -> int:
        """The backlog of one drain run.

        :param broker: ``redis`` or ``nats``.
        :param system: the system's name.
        :return: the event count.
        """
        faststream = system.startswith("faststream")
        table = FASTSTREAM_EVENTS if faststream else EVENTS
        events = max(BATCH, int((QUICK_EVENTS if self.quick else table[broker]) * self.scale))
        # FastStream's batch pull waits up to its timeout for a last batch to fill: a
        # backlog of whole batches keeps that wait out of the drain.
        return events - events % BATCH if faststream else events


#: (system, loop, workers) drain runs of a broker; the name is "system loop Wn".
Run = tuple[str, str, int]


def drain_runs(cfg: Config, broker: str, available: dict[str, str | None]) -> list[Run]:
    """The drain runs of *broker*, in their first repetition's order.

    :param cfg: the configuration.
    :param broker: the broker.
    :param available: system -> ``None`` or why it cannot run.
    :return: the runs.
    """
    # raw-event needs only reactor's codec, which every reactor has.
    runs: list[Run] = [("raw", "asyncio", 1), ("raw-event", "asyncio", 1)]
    if available.get("reactor") is None:
        runs.append(("reactor", "asyncio", 1))
    if available.get("faststream") is None:
        runs += [("faststream", "asyncio", 1), ("faststream-batch", "asyncio", 1)]
    runs.append(("raw", "asyncio", 2))
    if available.get("reactor") is None:
        runs.append(("reactor", "asyncio", 2))
    if broker == "redis" and "trio" in cfg.loops:
        runs += [("raw", "trio", 1), ("raw-event", "trio", 1)]
        if available.get("reactor") is None:
            runs.append(("reactor", "trio", 1))
    return [run for run in runs if run[0] in cfg.systems]


def run_name(run: Run) -> str:
    """``reactor asyncio W2``: how a drain run is named in tables and JSON."""
    system, loop, workers = run
    if system.startswith("faststream"):
        return system
    return f"{system} {loop} W{workers}"


# ------------------------------------------------------------------------- summarise

#: (numerator, denominator) run names whose per-repetition ratio is reported.
RATIOS = (
    ("reactor asyncio W1", "raw asyncio W1"),
    ("reactor asyncio W1", "raw-event asyncio W1"),
    ("raw-event asyncio W1", "raw asyncio W1"),
    ("reactor trio W1", "raw trio W1"),
    ("reactor trio W1", "raw-event trio W1"),
    ("reactor asyncio W2", "reactor asyncio W1"),
    ("raw asyncio W2", "raw asyncio W1"),
    ("reactor asyncio W1", "faststream"),
    ("reactor asyncio W1", "faststream-batch"),
)


def summarise(results: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    """Reduce the runs to medians and pairwise ratios.

    :param results: ``{"broker/workload": {name: [result per repetition]}}``.
    :return: ``{"broker/workload": {"runs": {name: stats}, "ratios": {...}}}``.
    """
    summary: dict[str, Any] = {}
    for key, by_name in results.items():
        runs: dict[str, Any] = {}
        for name, reps in by_name.items():
            ok = [r for r in reps if "error" not in r]
            entry: dict[str, Any] = {"errors": [r["error"] for r in reps if "error" in r]}
            for metric in (
                "events_per_s",
                "events_per_s_from_go",
                "first_event_s",
                "cpu_us_per_event",
                "gc_us_per_event",
                "p50_ms",
                "p90_ms",
                "p99_ms",
                "max_ms",
                "over_100ms",
                "achieved_rate",
            ):
                entry[metric] = h.stats([r[metric] for r in ok if metric in r])
            runs[name] = entry
        ratios: dict[str, Any] = {}
        for top, bottom in RATIOS:
            if top in by_name and bottom in by_name:
                pairs = [
                    a["events_per_s"] / b["events_per_s"]
                    for a, b in zip(by_name[top], by_name[bottom], strict=False)
                    if "error" not in a and "error" not in b
                ]
                ratios[f"{top} / {bottom}"] = h.stats(pairs)
                # The same pair by CPU time per event (the bottom's cost over the top's):
                # what the machine's other load does not move.
                cpu = [
                    b["cpu_us_per_event"] / a["cpu_us_per_event"]
                    for a, b in zip(by_name[top], by_name[bottom], strict=False)
                    if "cpu_us_per_event" in a and "cpu_us_per_event" in b
                ]
                ratios[f"{top} / {bottom}, by CPU per event"] = h.stats(cpu)
        summary[key] = {"runs": runs, "ratios": ratios}
    return summary


def evaluate_targets(
    summary: dict[str, Any], brokers: Sequence[str], unavailable: dict[str, dict[str, str | None]]
) -> list[dict[str, Any]]:
    """Check the issue's targets, per broker.

    :param summary: output of :func:`summarise`.
    :param brokers: the brokers of the run.
    :param unavailable: per broker, system -> why it could not run (or ``None``).
    :return: one entry per target: broker, target, value, text, binding and status.
    """
    out: list[dict[str, Any]] = []
    targets = (
        (
            "reactor asyncio W1 / raw asyncio W1",
            TARGET_RAW,
            "reactor / raw client, 1 process",
            True,
        ),
        # Not the target, reported beside it: the same client loop decoding with
        # reactor's codec into the Event that reactor's handlers take (see the README).
        (
            "reactor asyncio W1 / raw-event asyncio W1",
            TARGET_RAW,
            "reference: reactor / raw client + codec, 1 process",
            False,
        ),
        (
            "reactor trio W1 / raw trio W1",
            TARGET_RAW,
            "reactor / raw client, 1 process, trio",
            False,
        ),
        (
            "reactor trio W1 / raw-event trio W1",
            TARGET_RAW,
            "reference: reactor / raw client + codec, 1 process, trio",
            False,
        ),
        ("reactor asyncio W2 / reactor asyncio W1", TARGET_SCALE, "reactor 2 processes / 1", True),
        (
            "reactor asyncio W1 / faststream",
            TARGET_FASTSTREAM,
            "reactor / FastStream per-event",
            True,
        ),
        (
            "reactor asyncio W1 / faststream-batch",
            TARGET_FASTSTREAM,
            "reactor / FastStream batch",
            True,
        ),
    )
    for broker in brokers:
        cell = summary.get(f"{broker}/drain", {"ratios": {}})
        for key, threshold, label, binding in targets:
            if "trio" in key and broker != "redis":
                continue
            ratio = cell["ratios"].get(key)
            value = None if ratio is None else float(ratio["median"])
            why = unavailable.get(broker, {}).get("reactor")
            text = "-" if value is None else f"{value:.2f}x"
            if value is None and why:
                text = "reactor not available"
            out.append(
                {
                    "broker": broker,
                    "target": f"{label} >= {threshold:g}x",
                    "value": value,
                    "text": text,
                    "binding": binding,
                    "status": "n/a"
                    if value is None
                    else ("PASS" if value >= threshold else "MISS"),
                }
            )
    return out


# ------------------------------------------------------------------------- breakdown

#: The rows of the breakdown table: component -> label.
COMPONENTS = {
    "json": "JSON parse (raw: json.loads; codec: strict load_json)",
    "event": "Event build + validation",
    "client": "broker client (read, reply parsing, acks)",
    "queue": "reactor's queue: reading (get_batch)",
    "dispatch": "dispatch (raw: its loop; reactor: lanes)",
    "settle": "settlement (reactor: dispatcher + queue)",
    "handlers": f"handlers ({K} per event)",
    "loop": "event loop, anyio, sockets",
    "harness": "benchmark's own counters",
    "imports": "imports (once per process)",
    "other": "other",
}
#: The systems whose 1-process asyncio drain ``--breakdown`` profiles.
BREAKDOWN_SYSTEMS = ("raw", "raw-event", "reactor")
_SETTLING = {
    "_dispatch.py": frozenset(
        {"_settle", "_event_done", "_settle_loop", "_settle_batches", "_wake_settler"}
    ),
    "queue": frozenset({"settle", "_settle", "ack", "record_progress", "_remember_letter"}),
}
#: Select calls: the worker waits there for the broker (wall time, not CPU).
_WAITING = ("'poll' of 'select.", "'select' of 'select.", "select.select", "'control' of 'select.")
_THIRD_PARTY = {
    "client": ("coredis", "nats", "hiredis", "redis"),
    "loop": ("anyio", "trio", "sniffio", "outcome"),
}


def _component(function: tuple[str, int, str]) -> str | None:
    """The breakdown component of a profiled function; ``None``: it counts for its callers.

    By the file it comes from: the standard library's json, reactor's modules, the
    benchmark's own code, the broker clients, asyncio and anyio. Builtins and other
    helpers (``isinstance``, ``typing.cast``, ``re``) count for their callers.
    """
    filename, _, name = function
    if filename == "~":
        return "wait" if any(w in name for w in _WAITING) else None
    if filename.startswith("<frozen importlib") or name == "<module>":
        return "imports"
    if filename.startswith("<attrs generated") and "reactor._event." in filename:
        return "event"
    reactor_dir = os.path.dirname(reactor.__file__) + os.sep
    stdlib = os.path.dirname(os.path.dirname(json.__file__)) + os.sep
    if filename.startswith(reactor_dir):
        module = filename[len(reactor_dir) :].replace(os.sep, "/")
        if module == "_json.py":
            return "json"
        if module in ("_event.py", "_binding.py"):
            return "event"
        if module.startswith("queues/"):
            return "settle" if name in _SETTLING["queue"] else "queue"
        if module == "_dispatch.py":
            return "settle" if name in _SETTLING["_dispatch.py"] else "dispatch"
        if module in ("abc.py", "_stats.py", "_clock.py"):
            return None  # Received(), counters: for whoever calls them
        return "dispatch"
    if filename == __file__:
        if name == "handle":
            return "handlers"
        if name in ("settle", "ack"):  # the counting queue's wrappers
            return "settle"
        if name.startswith("_worker_"):
            return "dispatch"
        return None if name == "<lambda>" else "harness"
    if filename.startswith(stdlib):
        module = filename[len(stdlib) :].replace(os.sep, "/")
        if module.startswith("json/"):
            return "json"
        if module.startswith(("asyncio/", "selectors.py", "socket.py", "ssl.py")):
            return "loop"
        if module.startswith("importlib/"):
            return "imports"
        return None
    parts = filename.split(os.sep)
    for component, packages in _THIRD_PARTY.items():
        if any(package in parts for package in packages):
            return component
    return None


def measure_breakdown(cfg: Config, broker: str, systems: Sequence[str]) -> dict[str, Any]:
    """One more 1-process asyncio drain per system under cProfile, as µs per component.

    These runs are not counted in the rates. The statistics go to ``cfg.profile`` when
    set, else to a temporary directory.

    :param cfg: the configuration.
    :param broker: the broker.
    :param systems: the systems to profile.
    :return: system -> {events, us_per_event: {component: µs}, waiting_us_per_event,
        profiled_cpu_us_per_event}, or {error}.
    """
    out: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        directory = cfg.profile or stack.enter_context(
            tempfile.TemporaryDirectory(prefix="scaleout-breakdown-")
        )
        profiled = replace(cfg, profile=directory)
        for system in systems:
            result = measure_drain(profiled, broker, system, "asyncio", 1)
            _progress(None, broker, "breakdown", f"{system} asyncio W1 (cProfile)", 0, result)
            if "error" in result:
                out[system] = {"error": result["error"]}
                continue
            events = result["events"]
            seconds = _profile.attribute(result["profiles"][0], _component)
            waiting = seconds.pop("wait", 0.0)
            out[system] = {
                "events": events,
                "us_per_event": {
                    c: seconds[c] / events * 1e6 for c in COMPONENTS if seconds.get(c)
                },
                "waiting_us_per_event": waiting / events * 1e6,
                "profiled_cpu_us_per_event": result["cpu_us_per_event"],
            }
    return out


def _breakdown_table(broker: str, document: dict[str, Any]) -> h.Table | None:
    """The breakdown of *broker*: µs per event and component, per system, and the gap."""
    measured = document.get("breakdown", {}).get(broker)
    if not measured:
        return None
    runs = document["summary"].get(f"{broker}/drain", {}).get("runs", {})
    systems = [s for s in BREAKDOWN_SYSTEMS if s in measured and "error" not in measured[s]]
    scaled: dict[str, dict[str, float]] = {}
    cpu: dict[str, float | None] = {}
    collecting: dict[str, float | None] = {}
    for system in systems:
        parts = measured[system]["us_per_event"]
        run = runs.get(f"{system} asyncio W1", {})
        timed, collected = run.get("cpu_us_per_event"), run.get("gc_us_per_event")
        cpu[system] = None if timed is None else float(timed["median"])
        collecting[system] = None if collected is None else float(collected["median"])
        # The profiler slows every call down, Python calls most: its shares are kept and
        # scaled to the CPU time per event of the timed (unprofiled) runs.
        factor = 1.0 if cpu[system] is None else cpu[system] / sum(parts.values())
        scaled[system] = {c: us * factor for c, us in parts.items()}
    gap = "raw" in scaled and "reactor" in scaled
    table = h.Table(
        f"[{broker}] where the CPU goes, µs per event (cProfile of one more 1-process drain "
        "per system: its shares, scaled to the timed runs' CPU per event)",
        ["component", *(LABELS[s] for s in systems), *(["reactor - raw"] if gap else [])],
    )

    def cell(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    for component, label in COMPONENTS.items():
        values = [scaled[s].get(component) for s in systems]
        if not any(values):
            continue
        diff = scaled["reactor"].get(component, 0.0) - scaled["raw"].get(component, 0.0)
        table.add(label, *map(cell, values), *([f"{diff:+.1f}"] if gap else []))
    totals = [sum(scaled[s].values()) for s in systems]
    table.add(
        "total: CPU per event of the timed runs",
        *(cell(cpu[s]) for s in systems),
        *([f"{totals[-1] - totals[0]:+.1f}"] if gap else []),
    )
    table.add(
        "under cProfile: own time (its CPU) per event",
        *(
            f"{sum(measured[s]['us_per_event'].values()):.1f} "
            f"({measured[s]['profiled_cpu_us_per_event']:.1f})"
            for s in systems
        ),
        *([""] if gap else []),
    )
    table.add(
        "of which garbage collection (measured runs; inside the rows above)",
        *(cell(collecting[s]) for s in systems),
        *([f"{(collecting['reactor'] or 0.0) - (collecting['raw'] or 0.0):+.1f}"] if gap else []),
    )
    table.add(
        "waiting for the broker (wall, left out)",
        *(cell(measured[s]["waiting_us_per_event"]) for s in systems),
        *([""] if gap else []),
    )
    return table


# ------------------------------------------------------------------------------ report

LABELS = {
    "raw": "raw client",
    "raw-event": "raw client + codec",
    "reactor": "reactor",
    "faststream": "FastStream per-event",
    "faststream-batch": "FastStream batch",
}


def _cpu(reps: Sequence[dict[str, Any]]) -> str:
    """Each worker process's CPU time over the wall time from go to the end (median)."""
    shares = [r["cpu_share"] for r in reps if "cpu_share" in r]
    if not shares:
        return "-"
    return " + ".join(f"{h.percentile(sorted(col), 0.5):.2f}" for col in zip(*shares, strict=True))


def report(document: dict[str, Any], *, plain: bool = False) -> None:
    """Print the environment, the drain and latency tables and the targets.

    :param document: the run's JSON document.
    :param plain: plain-text tables even if rich is installed.
    """
    env, cfg, summary = document["environment"], document["config"], document["summary"]
    for line in h.environment_lines(env):
        print(line)
    print(f"reactor commit {env['commit']}")
    print(
        f"mode: {'quick' if cfg['quick'] else 'full'}, repeat={cfg['repeat']}, K={K} "
        "subscriptions, ~1 KB CloudEvents JSON; drain of a pre-filled backlog, timed from "
        "the first delivery to the last acknowledgement (start-up apart); cells are median (min-max) "
        "over repetitions; ratios are per-repetition pairs, then median"
    )
    for broker in cfg["brokers"]:
        for name, why in document["unavailable"].get(broker, {}).items():
            if why:
                print(f"{broker}: {name} {why}")
        cell = summary.get(f"{broker}/drain")
        if cell is not None:
            table = h.Table(
                f"[{broker}] drain of a backlog, events/s (each handled by {K} subscriptions, "
                "then acknowledged)",
                [
                    "system",
                    "processes",
                    "loop",
                    "events",
                    "events/s",
                    "start-up ms",
                    "events/s from go",
                    "CPU/wall",
                    "CPU us/event",
                    "note",
                ],
            )
            for name, entry in cell["runs"].items():
                system, loop, workers = document["runs_by_name"][broker][name]
                reps = document["results"][f"{broker}/drain"][name]
                events = next((r["events"] for r in reps if "events" in r), 0)
                note = "; ".join(entry["errors"])[:120]
                table.add(
                    LABELS.get(system, system),
                    str(workers),
                    loop,
                    f"{events:,}",
                    h.fmt_rate(entry["events_per_s"]),
                    "-"
                    if entry["first_event_s"] is None
                    else f"{entry['first_event_s']['median'] * 1e3:.0f}",
                    h.fmt_rate(entry["events_per_s_from_go"]),
                    _cpu(reps),
                    "-"
                    if entry["cpu_us_per_event"] is None
                    else f"{entry['cpu_us_per_event']['median']:.0f}",
                    note,
                )
            if document["unavailable"].get(broker, {}).get("reactor"):
                table.add("reactor", "1, 2", "asyncio", "-", "not available", "", "", "", "", "")
            table.render(plain=plain)
            ratios = h.Table(f"[{broker}] ratios (pair by pair)", ["ratio", "value"])
            for key, value in cell["ratios"].items():
                ratios.add(key, h.fmt_num(value, "x", 2))
            ratios.render(plain=plain)
        breakdown = _breakdown_table(broker, document)
        if breakdown is not None:
            breakdown.render(plain=plain)
        cell = summary.get(f"{broker}/latency")
        if cell is not None:
            table = h.Table(
                f"[{broker}] publish -> handler start, producer process paced at "
                f"{LATENCY_RATE:,.0f} events/s for {cfg['latency_seconds']:g} s, one worker process",
                [
                    "system",
                    "achieved events/s",
                    "p50 ms",
                    "p90 ms",
                    "p99 ms",
                    "max ms",
                    "over 100 ms",
                    "note",
                ],
            )
            for name, entry in cell["runs"].items():
                table.add(
                    LABELS.get(name, name),
                    h.fmt_num(entry["achieved_rate"]),
                    h.fmt_num(entry["p50_ms"], "", 2),
                    h.fmt_num(entry["p90_ms"], "", 2),
                    h.fmt_num(entry["p99_ms"], "", 2),
                    h.fmt_num(entry["max_ms"], "", 1),
                    "-" if entry["over_100ms"] is None else f"{entry['over_100ms']['median']:.1%}",
                    "; ".join(entry["errors"])[:120],
                )
            if document["unavailable"].get(broker, {}).get("reactor"):
                table.add("reactor", "-", "not available", "", "", "", "", "")
            table.render(plain=plain)
    for problem in document["problems"]:
        print(problem)
    table = h.Table(
        "Targets (asyncio binding; others in parentheses)", ["broker", "target", "value", "result"]
    )
    for t in document["targets"]:
        status = t["status"] if t["binding"] else f"({t['status']})"
        table.add(t["broker"], t["target"], t["text"], status)
    table.render(plain=plain)


# -------------------------------------------------------------------------------- main


def _commit_id() -> str:
    commit = "unknown"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "reactor"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
        commit = (head or "unknown") + (" (reactor/ modified)" if dirty else "")
    return commit


def _csv(value: str, allowed: Sequence[str], what: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in items if v not in allowed]
    if unknown or not items:
        raise argparse.ArgumentTypeError(
            f"unknown {what} {', '.join(unknown) or '(none)'}: choose from {', '.join(allowed)}"
        )
    return items


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.scaleout", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_EVENTS:,} events per drain, 1 s of latency, 1 repetition",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the whole run here")
    parser.add_argument(
        "--brokers",
        type=lambda v: _csv(v, BROKERS, "broker"),
        default=list(BROKERS),
        help="comma-separated subset of redis,nats",
    )
    parser.add_argument(
        "--loops",
        type=lambda v: _csv(v, LOOPS, "loop"),
        help="asyncio always; trio adds reactor and raw on trio (Redis); default asyncio,trio "
        "(--quick: asyncio)",
    )
    parser.add_argument(
        "--workloads",
        type=lambda v: _csv(v, WORKLOADS, "workload"),
        default=list(WORKLOADS),
        help="comma-separated subset of drain,latency",
    )
    parser.add_argument("--repeat", type=int, help="repetitions (default 3, --quick 1)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the backlogs")
    parser.add_argument(
        "--redis", default=os.environ.get("REACTOR_TEST_REDIS_URL") or URLS["redis"]
    )
    parser.add_argument("--nats", default=os.environ.get("REACTOR_TEST_NATS_URL") or URLS["nats"])
    parser.add_argument("--plain", action="store_true", help="plain-text tables")
    parser.add_argument(
        "--profile",
        metavar="DIR",
        default="",
        help="run every drain worker under cProfile and write its statistics into DIR",
    )
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="after the measured runs, one more 1-process drain of raw, raw-event and "
        "reactor per broker under cProfile: a table of CPU µs per event and component",
    )
    parser.add_argument(
        "--systems",
        type=lambda v: _csv(v, SYSTEMS, "system"),
        default=list(SYSTEMS),
        help="comma-separated subset of " + ",".join(SYSTEMS),
    )
    parser.add_argument("--child", metavar="SPEC", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark (or, with the hidden ``--child``, one child's part).

    :param argv: command-line arguments; ``sys.argv[1:]`` when ``None``.
    :return: 0; 1 if a run failed or a broker did not answer; 2 for a usage error.
    """
    args = _parse_args(argv)
    if args.child is not None:
        return child_main(args.child)
    loops = args.loops or (["asyncio"] if args.quick else list(LOOPS))
    cfg = Config(
        quick=args.quick,
        repeat=args.repeat or (1 if args.quick else 3),
        brokers=args.brokers,
        loops=["asyncio", *(loop for loop in loops if loop != "asyncio")],
        workloads=args.workloads,
        urls={"redis": args.redis, "nats": args.nats},
        scale=args.scale,
        idle=IDLE_SECONDS_QUICK if args.quick else IDLE_SECONDS,
        latency_seconds=LATENCY_SECONDS_QUICK if args.quick else LATENCY_SECONDS,
        timeout=120.0 if args.quick else 600.0,
        profile=args.profile,
        systems=args.systems,
        breakdown=args.breakdown,
    )
    env = h.environment(DISTRIBUTIONS, commit=_commit_id(), urls=cfg.urls)
    started = time.perf_counter()
    unavailable: dict[str, dict[str, str | None]] = {}
    problems: list[str] = []
    for broker in cfg.brokers:
        probe = run_child(Spec(role="probe", broker=broker, url=cfg.urls[broker]), 60)
        if "error" in probe:
            probe = {"broker": probe["error"], "reactor": probe["error"], "faststream": None}
        unavailable[broker] = {
            "reactor": probe.get("reactor"),
            "faststream": probe.get("faststream"),
        }
        if probe.get("broker"):
            problems.append(f"ERROR {broker}: {probe['broker']}")
    brokers = [b for b in cfg.brokers if not any(p.startswith(f"ERROR {b}:") for p in problems)]
    plans = {b: drain_runs(cfg, b, unavailable[b]) for b in brokers}
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    raw: list[dict[str, Any]] = []

    def latency_systems(broker: str) -> list[str]:
        systems = ["raw"] + (["reactor"] if unavailable[broker]["reactor"] is None else [])
        return [system for system in systems if system in cfg.systems]

    steps = cfg.repeat * sum(
        ("drain" in cfg.workloads) * len(plans[broker])
        + ("latency" in cfg.workloads) * len(latency_systems(broker))
        for broker in brokers
    )
    with h.Progress(steps, "scaleout", plain=args.plain) as bar:
        for rep in range(cfg.repeat):
            for broker in brokers:
                if "drain" in cfg.workloads:
                    by_name = {run_name(r): r for r in plans[broker]}
                    for name in h.rotated(list(by_name), rep):
                        system, loop, workers = by_name[name]
                        t0 = time.perf_counter()
                        result = measure_drain(cfg, broker, system, loop, workers)
                        results.setdefault(f"{broker}/drain", {}).setdefault(name, []).append(
                            result
                        )
                        raw.append(
                            {
                                "broker": broker,
                                "workload": "drain",
                                "name": name,
                                "rep": rep,
                                "result": result,
                                "wall_s": time.perf_counter() - t0,
                            }
                        )
                        _progress(bar, broker, "drain", name, rep, result)
                if "latency" in cfg.workloads:
                    for system in h.rotated(latency_systems(broker), rep):
                        result = measure_latency(cfg, broker, system)
                        results.setdefault(f"{broker}/latency", {}).setdefault(system, []).append(
                            result
                        )
                        raw.append(
                            {
                                "broker": broker,
                                "workload": "latency",
                                "name": system,
                                "rep": rep,
                                "result": result,
                            }
                        )
                        _progress(bar, broker, "latency", system, rep, result)
    breakdown: dict[str, Any] = {}
    if cfg.breakdown:
        for broker in brokers:
            systems = [
                system
                for system in BREAKDOWN_SYSTEMS
                if system in cfg.systems
                and (system != "reactor" or unavailable[broker]["reactor"] is None)
            ]
            breakdown[broker] = measure_breakdown(cfg, broker, systems)
            problems += [
                f"ERROR {broker}/breakdown {system}: {entry['error']}"
                for system, entry in breakdown[broker].items()
                if "error" in entry
            ]
    env["load_average_after"] = list(os.getloadavg())
    summary = summarise(results)
    for key, by_run in results.items():
        for name, reps in by_run.items():
            problems += [f"ERROR {key} {name}: {r['error']}" for r in reps if "error" in r]
    document = {
        "environment": env,
        "config": asdict(cfg),
        "unavailable": unavailable,
        "runs_by_name": {b: {run_name(r): list(r) for r in plans[b]} for b in brokers},
        "results": results,
        "summary": summary,
        "targets": evaluate_targets(summary, cfg.brokers, unavailable),
        "problems": problems,
        "runs": raw,
        "breakdown": breakdown,
    }
    report(document, plain=args.plain)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    if args.json is not None:
        args.json.write_text(json.dumps(document, indent=2))
    return 1 if problems else 0


def _progress(
    bar: h.Progress | None, broker: str, workload: str, name: str, rep: int, result: dict[str, Any]
) -> None:
    if "error" in result:
        brief = f"ERROR {result['error'][:200]}"
    elif "events_per_s" in result:
        brief = f"{result['events_per_s']:,.0f} events/s ({result['events']:,} events)"
    else:
        brief = f"p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms"
    if bar is None:
        print(f"[{broker} {workload} rep {rep + 1}] {name}: {brief}", file=sys.stderr, flush=True)
    else:
        bar.step(f"{broker} {workload} rep {rep + 1} {name}: {brief}", note="error" in result)


if __name__ == "__main__":
    sys.exit(main())
