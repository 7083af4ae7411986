"""Dispatch benchmark: reactor against hand-written baselines, same machine, same loop.

Run ``python -m benchmarks.dispatch [--quick] [--json out.json] [--loops asyncio,uvloop,trio]``.

Systems:

* ``direct`` -- ``for h in handlers: await h(event)`` inline in the producer, no queue (the floor);
* ``taskgroup`` -- a bounded queue (``asyncio.Queue(1024)``; on trio an anyio memory object
  stream of 1024) and one dispatcher task that opens a task group per event with one task
  per handler (what most people write by hand);
* ``reactor`` -- ``Reactor()`` with its defaults, one subscription per handler.

Workloads:

* ``w1`` -- K handlers that never suspend, deliveries/s until every delivery has finished;
* ``w2`` -- K handlers that ``await sleep(0)`` once, same measure;
* ``w3`` -- publish-to-handler-start latency at a steady rate (K = 4);
* ``memory`` -- peak RSS growth while a fast producer feeds a slow consumer;
* ``import`` -- ``import reactor`` time.

Every (workload, K, loop, system, repetition) runs in its own child process (this module with
the hidden ``--child`` argument, answering one JSON line on stdout), so heap, GC and caches do
not leak from one measurement into the next. Systems are alternated within each repetition and
ratios are computed pair by pair (same repetition) before taking the median.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import importlib.metadata
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from reactor import Event

Handler = Callable[["Event"], Coroutine[Any, Any, None]]
Publish = Callable[["Event"], Awaitable[object]]
Sleep = Callable[[float], Awaitable[None]]

SYSTEMS = ("direct", "taskgroup", "reactor")
MEMORY_SYSTEMS = ("taskgroup", "reactor")
LOOPS = ("asyncio", "uvloop", "trio")
WORKLOADS = ("w1", "w2", "w3", "memory", "import")
KS = (1, 4, 16)
W3_K = 4

EVENT_TYPE = "bench.event"
EVENT_SOURCE = "/bench"
# A fixed timestamp and explicit ids keep event construction cheap and identical for
# every system; the envelope is built before timing starts anyway.
EVENT_TIME = datetime(2026, 1, 1, tzinfo=UTC)

# Events per W1/W2 run, sized so the slowest system (taskgroup) needs ~1-2 s on a 2-core
# EPYC VM; --quick divides by 10. Trio's nurseries cost ~35 us each (anyio's wrapper ~70 us),
# so the trio baseline gets 5x fewer events.
THROUGHPUT_EVENTS = {
    "asyncio": {1: 100_000, 4: 50_000, 16: 15_000},
    "uvloop": {1: 100_000, 4: 50_000, 16: 15_000},
    "trio": {1: 20_000, 4: 10_000, 16: 3_000},
}
W3_RATE = 10_000.0
W3_DURATION = 2.0
W3_DURATION_QUICK = 0.5
# Events in the memory run. The binding loop (asyncio) gets the full million; uvloop and trio
# get a fifth, because the trio baseline alone would need almost three minutes for a million.
MEMORY_EVENTS = {"asyncio": 1_000_000, "uvloop": 200_000, "trio": 200_000}
# The slow consumer busy-waits this long per event: ~35x `await queue.put(event)` on asyncio
# and ~8x "build the event + await app.publish(event)" here. A strict 100x of the latter
# (~300 us) makes a million-event run take five minutes per system; once the queue is full,
# which happens in the first fraction of a second, the ratio no longer changes what is
# buffered (see README and --memory-consumer-us).
MEMORY_CONSUMER_US = 20.0
# A run that makes no progress for this long has lost deliveries; stop waiting.
STALL_SECONDS = 5.0
RSS_SAMPLE_INTERVAL = 0.010
IMPORT_RUNS = 5

# Targets from the issue; checked on asyncio, reported for the other loops.
TARGET_W1_K4 = 6.0
TARGET_W2_K4 = 1.5
TARGET_MEMORY_MB = 50.0
TARGET_IMPORT_MS = 150.0
TARGET_SUSTAIN = 0.95

# W1/W2 never wait, so a timed section with less CPU time than this share of its wall time
# was descheduled: flagged as noisy in the report.
NOISY_CPU_SHARE = 0.9

RESULT_MARK = "BENCH-RESULT "
ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- child side


@dataclass(frozen=True, kw_only=True)
class Spec:
    """One measurement: what a child process runs."""

    workload: str
    system: str
    loop: str
    k: int
    events: int
    rate: float = 0.0
    pacing: str = "sleep"
    consumer_us: float = 0.0
    timeout: float = 60.0

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


class Tally:
    """Per-handler delivery counts and index sums, and the end-of-run signal.

    Every handler adds the event's index to its own sum, so a run that loses or duplicates
    deliveries is caught even when counts happen to match.
    """

    def __init__(self, k: int, events: int) -> None:
        """Prepare counters for ``k`` handlers over ``events`` events.

        :param k: number of handlers.
        :param events: number of events each handler must see.
        """
        self.k = k
        self.events = events
        self.counts = [0] * k
        self.sums = [0] * k
        self.remaining = [k * events]
        self.latencies: list[list[float]] = [[] for _ in range(k)]
        self.start = self.end = 0.0
        self.cpu_start = self.cpu_end = 0.0
        self._done: anyio.Event | None = None

    def arm(self) -> None:
        """Create the completion event; call inside the running loop before publishing."""
        self._done = anyio.Event()

    def begin(self) -> float:
        """Record the start of the timed section.

        :return: the start time (``time.perf_counter()``).
        """
        self.cpu_start = time.process_time()
        self.start = time.perf_counter()
        return self.start

    def finish(self) -> None:
        """Record the time the last delivery finished and wake the waiter."""
        self.end = time.perf_counter()
        self.cpu_end = time.process_time()
        if self._done is not None:
            self._done.set()

    async def wait(self, limit: float) -> bool:
        """Wait until every delivery has finished, or give up on a stalled run.

        :param limit: seconds to wait at most.
        :return: ``True`` if every delivery finished; ``False`` after ``limit`` seconds, or
            after :data:`STALL_SECONDS` without a single delivery finishing.
        """
        done = self._done
        assert done is not None
        deadline = time.perf_counter() + limit
        seen, last_progress = -1, time.perf_counter()
        while not done.is_set():
            with anyio.move_on_after(0.25):
                await done.wait()
            now = time.perf_counter()
            if self.remaining[0] != seen:
                seen, last_progress = self.remaining[0], now
            if now >= deadline or now - last_progress >= STALL_SECONDS:
                break
        return done.is_set()

    @property
    def cpu_share(self) -> float:
        """CPU time of this process over wall time in the timed section.

        Close to 1 for a run that never waits; clearly below 1 means the process was
        descheduled (another process or the hypervisor took the CPU) and the run is noisy.
        """
        wall = self.end - self.start
        return (self.cpu_end - self.cpu_start) / wall if wall > 0 else 0.0

    @property
    def deliveries(self) -> int:
        """Deliveries finished so far (all handlers)."""
        return sum(self.counts)

    def problems(self) -> list[str]:
        """Describe every handler that did not see every event exactly once.

        :return: human-readable problems; empty when the run is correct.
        """
        expected_sum = self.events * (self.events - 1) // 2
        out = []
        for i, (count, total) in enumerate(zip(self.counts, self.sums, strict=True)):
            if count != self.events or total != expected_sum:
                out.append(
                    f"handler {i}: {count} deliveries of {self.events} (index sum {total}, expected {expected_sum})"
                )
        return out


def _throughput_handler(
    i: int, tally: Tally, sleep: Sleep | None
) -> Callable[[Event], Coroutine[Any, Any, None]]:
    counts, sums, remaining, finish = tally.counts, tally.sums, tally.remaining, tally.finish
    if sleep is None:

        async def w1(event: Event) -> None:
            counts[i] += 1
            sums[i] += event.data
            remaining[0] -= 1
            if not remaining[0]:
                finish()

        return w1

    async def w2(event: Event) -> None:
        await sleep(0)
        counts[i] += 1
        sums[i] += event.data
        remaining[0] -= 1
        if not remaining[0]:
            finish()

    return w2


def _latency_handler(i: int, tally: Tally) -> Callable[[Event], Coroutine[Any, Any, None]]:
    counts, sums, remaining, finish = tally.counts, tally.sums, tally.remaining, tally.finish
    record = tally.latencies[i].append
    clock = time.perf_counter

    async def w3(event: Event) -> None:
        # event.data is [publish perf_counter, index], stamped by the producer.
        record(clock() - event.data[0])
        counts[i] += 1
        sums[i] += int(event.data[1])
        remaining[0] -= 1
        if not remaining[0]:
            finish()

    return w3


def _busy_wait(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def _memory_handler(
    tally: Tally, consumer_s: float
) -> Callable[[Event], Coroutine[Any, Any, None]]:
    counts, sums, remaining, finish = tally.counts, tally.sums, tally.remaining, tally.finish

    async def slow(event: Event) -> None:
        # A busy-wait holds the loop for a fixed wall time whatever the system or loop, and
        # concurrent copies of this handler cannot overlap, so the consumer's rate is the
        # same for every system.
        _busy_wait(consumer_s)
        counts[0] += 1
        sums[0] += event.data
        remaining[0] -= 1
        if not remaining[0]:
            finish()

    return slow


def _native_sleep(loop: str) -> Sleep:
    """The loop's own sleep, used by handlers and producers of every system alike."""
    if loop == "trio":
        import trio

        return trio.sleep
    return asyncio.sleep


@asynccontextmanager
async def _direct(handlers: Sequence[Handler]) -> AsyncIterator[Publish]:
    async def publish(event: Event) -> None:
        for handler in handlers:
            await handler(event)

    yield publish


@asynccontextmanager
async def _taskgroup_asyncio(handlers: Sequence[Handler]) -> AsyncIterator[Publish]:
    queue: asyncio.Queue[Event | None] = asyncio.Queue(1024)

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
    send, receive = anyio.create_memory_object_stream["Event"](1024)

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


@asynccontextmanager
async def _reactor(handlers: Sequence[Handler]) -> AsyncIterator[Publish]:
    from reactor import Reactor

    app = Reactor()
    for i, handler in enumerate(handlers):
        app.subscribe(EVENT_TYPE, handler, name=f"h{i}")
    async with app:
        yield app.publish


def _system(
    system: str, loop: str, handlers: Sequence[Handler]
) -> AbstractAsyncContextManager[Publish]:
    if system == "reactor":
        return _reactor(handlers)
    if system == "taskgroup":
        return _taskgroup_anyio(handlers) if loop == "trio" else _taskgroup_asyncio(handlers)
    if system == "direct":
        return _direct(handlers)
    raise ValueError(f"unknown system {system!r}")


def _run(system: str, loop: str, main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``main`` on ``loop`` the way ``system`` would be run by its users."""
    if system == "reactor" or loop == "trio":
        # reactor always runs through anyio; on trio the baselines are anyio code too.
        backend = "trio" if loop == "trio" else "asyncio"
        options: dict[str, Any] = {"use_uvloop": True} if loop == "uvloop" else {}
        anyio.run(main, backend=backend, backend_options=options)
    elif loop == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main())
    else:
        asyncio.run(main())


def _event_factory() -> Callable[[int, Any], Event]:
    from reactor import Event

    def make(i: int, data: Any) -> Event:
        return Event(type=EVENT_TYPE, source=EVENT_SOURCE, id=str(i), time=EVENT_TIME, data=data)

    return make


def _freeze_heap() -> None:
    # The pre-built events would otherwise be re-traversed by every full collection, which
    # taxes the systems that allocate more for a reason unrelated to dispatch.
    gc.collect()
    gc.freeze()


def _child_throughput(spec: Spec) -> dict[str, Any]:
    sleep = _native_sleep(spec.loop)
    tally = Tally(spec.k, spec.events)
    handlers = [
        _throughput_handler(i, tally, sleep if spec.workload == "w2" else None)
        for i in range(spec.k)
    ]
    make = _event_factory()
    events = [make(i, i) for i in range(spec.events)]
    _freeze_heap()
    finished = False

    async def main() -> None:
        nonlocal finished
        tally.arm()
        async with _system(spec.system, spec.loop, handlers) as publish:
            await sleep(0)  # let the dispatcher reach its first wait
            tally.begin()
            if spec.system == "direct":
                for event in events:
                    for handler in handlers:
                        await handler(event)
            else:
                for event in events:
                    await publish(event)
            finished = await tally.wait(spec.timeout)

    _run(spec.system, spec.loop, main)
    problems = tally.problems()
    if not finished or problems:
        return {"error": _lost(tally, problems)}
    elapsed = tally.end - tally.start
    deliveries = spec.events * spec.k
    return {
        "elapsed": elapsed,
        "deliveries": deliveries,
        "deliveries_per_s": deliveries / elapsed,
        "cpu_share": tally.cpu_share,
    }


def _lost(tally: Tally, problems: list[str]) -> str:
    head = f"lost deliveries: {tally.deliveries} of {tally.events * tally.k} finished"
    return "; ".join([head, *problems[:4]])


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ascending sequence."""
    rank = max(1, min(len(sorted_values), int(-(-q * len(sorted_values) // 1))))
    return sorted_values[rank - 1]


def _child_latency(spec: Spec) -> dict[str, Any]:
    sleep = _native_sleep(spec.loop)
    tally = Tally(spec.k, spec.events)
    handlers = [_latency_handler(i, tally) for i in range(spec.k)]
    make = _event_factory()
    events = [make(i, [0.0, float(i)]) for i in range(spec.events)]
    _freeze_heap()
    period = 1.0 / spec.rate
    finished = False
    wakeups = 0

    async def main() -> None:
        nonlocal finished, wakeups
        tally.arm()
        clock = time.perf_counter
        spin = spec.pacing == "spin"
        async with _system(spec.system, spec.loop, handlers) as publish:
            await sleep(0)
            start = tally.begin()
            for i, event in enumerate(events):
                deadline = start + i * period
                if spin:
                    # Yield until the deadline: evenly spaced arrivals, but the producer
                    # spins the loop (and takes CPU) between them.
                    if deadline - clock() > 0.002:
                        await sleep(deadline - clock() - 0.001)
                    while clock() < deadline:
                        await sleep(0)
                else:
                    delay = deadline - clock()
                    if delay > 0:
                        # The loops' timers wake at millisecond granularity (epoll), so
                        # events whose deadlines passed meanwhile go out back to back.
                        wakeups += 1
                        await sleep(delay)
                event.data[0] = clock()
                if spec.system == "direct":
                    for handler in handlers:
                        await handler(event)
                else:
                    await publish(event)
            finished = await tally.wait(spec.timeout)

    _run(spec.system, spec.loop, main)
    problems = tally.problems()
    if not finished or problems:
        return {"error": _lost(tally, problems)}
    lat = sorted(x for per_handler in tally.latencies for x in per_handler)
    elapsed = tally.end - tally.start
    achieved = spec.events / elapsed
    return {
        "p50_us": _percentile(lat, 0.50) * 1e6,
        "p99_us": _percentile(lat, 0.99) * 1e6,
        "max_us": lat[-1] * 1e6,
        "published": spec.events,
        "handled": spec.events,
        "elapsed": elapsed,
        "target_rate": spec.rate,
        "achieved_rate": achieved,
        "sustains": achieved >= TARGET_SUSTAIN * spec.rate,
        "pacing": spec.pacing,
        "cpu_share": tally.cpu_share,
        "mean_burst": spec.events / wakeups if wakeups else 1.0,
    }


class RssSampler:
    """Samples this process's RSS from a thread every ``interval`` seconds, keeping the peak."""

    def __init__(self, interval: float) -> None:
        """Prepare the sampler.

        :param interval: seconds between samples.
        """
        import psutil

        self._process = psutil.Process()
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)
        self.baseline = 0
        self.peak = 0
        self.samples = 0

    def rss(self) -> int:
        """Return the current resident set size in bytes."""
        return int(self._process.memory_info().rss)

    def start(self) -> None:
        """Take the baseline and start sampling."""
        self.baseline = self.peak = self.rss()
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling and take a last sample."""
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())

    def _sample(self) -> None:
        while not self._stop.wait(self._interval):
            self.peak = max(self.peak, self.rss())
            self.samples += 1


def _child_memory(spec: Spec) -> dict[str, Any]:
    sleep = _native_sleep(spec.loop)
    tally = Tally(1, spec.events)
    handlers = [_memory_handler(tally, spec.consumer_us * 1e-6)]
    make = _event_factory()
    _freeze_heap()
    sampler = RssSampler(RSS_SAMPLE_INTERVAL)
    finished = False
    maxrss_before = 0

    async def main() -> None:
        nonlocal finished, maxrss_before
        tally.arm()
        async with _system(spec.system, spec.loop, handlers) as publish:
            await sleep(0)
            maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            sampler.start()
            tally.begin()
            # Events are built by the producer here (not beforehand): an unbounded buffer
            # then shows up as the full size of the events it holds.
            for i in range(spec.events):
                await publish(make(i, i))
            finished = await tally.wait(spec.timeout)
        sampler.stop()

    _run(spec.system, spec.loop, main)
    maxrss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    problems = tally.problems()
    if not finished or problems:
        return {"error": _lost(tally, problems)}
    mib = 1024 * 1024
    return {
        "peak_rss_growth_mb": (sampler.peak - sampler.baseline) / mib,
        "baseline_rss_mb": sampler.baseline / mib,
        "peak_rss_mb": sampler.peak / mib,
        # ru_maxrss is in KiB on Linux.
        "maxrss_growth_mb": (maxrss_after - maxrss_before) / 1024,
        "samples": sampler.samples,
        "elapsed": tally.end - tally.start,
        "consumer_us": spec.consumer_us,
        "cpu_share": tally.cpu_share,
    }


def child_main(spec_json: str) -> int:
    """Run one measurement and print its JSON result line.

    :param spec_json: a :class:`Spec` as JSON.
    :return: the process exit code.
    """
    spec = Spec.from_json(spec_json)
    try:
        if spec.workload in ("w1", "w2"):
            result = _child_throughput(spec)
        elif spec.workload == "w3":
            result = _child_latency(spec)
        elif spec.workload == "memory":
            result = _child_memory(spec)
        else:
            raise ValueError(f"unknown workload {spec.workload!r}")
    except Exception as exc:
        result = {"error": f"{type(exc).__name__}: {exc}"}
    print(RESULT_MARK + json.dumps(result), flush=True)
    return 0


# -------------------------------------------------------------------------- parent side


def run_child(spec: Spec, timeout: float) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter.

    :param spec: what to measure.
    :param timeout: seconds before the child is killed and the run reported as an error.
    :return: the child's result; has an ``error`` key if it failed.
    """
    cmd = [sys.executable, "-m", "benchmarks.dispatch", "--child", spec.to_json()]
    try:
        proc = subprocess.run(
            cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return {"error": f"child timed out after {timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            result: dict[str, Any] = json.loads(line[len(RESULT_MARK) :])
            return result
    tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
    return {"error": f"child exited {proc.returncode} without a result: {tail}"}


def measure_import(runs: int = IMPORT_RUNS) -> dict[str, Any]:
    """Measure ``import reactor`` two ways, median of ``runs`` each.

    ``-X importtime`` cumulative time of the top-level ``reactor`` module (the target), and
    the wall time of ``python -c "import reactor"`` minus ``python -c "pass"``.

    :param runs: repetitions of each measurement.
    :return: the medians and raw values, in milliseconds.
    """
    python = sys.executable

    def wall(code: str) -> float:
        t0 = time.perf_counter()
        subprocess.run([python, "-c", code], cwd=ROOT, check=True, capture_output=True)
        return time.perf_counter() - t0

    def importtime() -> float:
        proc = subprocess.run(
            [python, "-X", "importtime", "-c", "import reactor"],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        )
        for line in proc.stderr.splitlines():
            parts = [p.strip() for p in line.removeprefix("import time:").split("|")]
            if len(parts) == 3 and parts[2] == "reactor":
                return int(parts[1]) / 1000
        raise RuntimeError("no 'reactor' line in -X importtime output")

    wall("import reactor")  # warm the bytecode caches
    cumulative = [importtime() for _ in range(runs)]
    with_import, bare = [], []
    for _ in range(runs):
        with_import.append(wall("import reactor"))
        bare.append(wall("pass"))
    return {
        "importtime_ms": statistics.median(cumulative),
        "importtime_raw_ms": cumulative,
        "wall_delta_ms": (statistics.median(with_import) - statistics.median(bare)) * 1000,
        "wall_import_ms": [x * 1000 for x in with_import],
        "wall_pass_ms": [x * 1000 for x in bare],
    }


def environment(loops: Sequence[str]) -> dict[str, Any]:
    """Describe the machine and software the benchmark runs on.

    :param loops: the loops this run covers.
    :return: a JSON-ready description.
    """
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for dist in ("reactor", "anyio", "trio", "uvloop", "psutil", "attrs"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "versions": versions,
        "loops": list(loops),
        "load_average": list(os.getloadavg()),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


@dataclass(kw_only=True)
class Config:
    """Sizes and repetitions of one benchmark run."""

    quick: bool
    repeat: int
    loops: list[str]
    workloads: list[str]
    scale: float
    memory_events: int | None
    memory_consumer_us: float
    w3_duration: float
    w3_pacing: str

    def throughput_events(self, loop: str, k: int) -> int:
        """Events per W1/W2 run on ``loop`` for ``k`` handlers.

        :param loop: the event loop.
        :param k: handlers per event.
        :return: the event count.
        """
        n = THROUGHPUT_EVENTS[loop][k] / (10 if self.quick else 1) * self.scale
        return max(100, int(n))

    def memory_events_for(self, loop: str) -> int:
        """Events in the memory run on ``loop``.

        :param loop: the event loop.
        :return: the event count (``--memory-events`` if given).
        """
        if self.memory_events is not None:
            return self.memory_events
        return MEMORY_EVENTS[loop] // (10 if self.quick else 1)


def _rotated(items: Sequence[str], n: int) -> list[str]:
    n %= len(items)
    return [*items[n:], *items[:n]]


def _plan(cfg: Config) -> Iterator[tuple[str, str, int, int, str, Spec, float]]:
    """Yield (loop, workload, k, rep, system, spec, timeout) in execution order."""
    for loop in cfg.loops:
        for workload in ("w1", "w2"):
            if workload not in cfg.workloads:
                continue
            for k in KS:
                n = cfg.throughput_events(loop, k)
                for rep in range(cfg.repeat):
                    for system in _rotated(SYSTEMS, rep):
                        spec = Spec(
                            workload=workload, system=system, loop=loop, k=k, events=n, timeout=120
                        )
                        yield loop, workload, k, rep, system, spec, 180.0
        if "w3" in cfg.workloads:
            n = int(W3_RATE * cfg.w3_duration)
            for rep in range(cfg.repeat):
                for system in _rotated(SYSTEMS, rep):
                    spec = Spec(
                        pacing=cfg.w3_pacing,
                        workload="w3",
                        system=system,
                        loop=loop,
                        k=W3_K,
                        events=n,
                        rate=W3_RATE,
                        timeout=60,
                    )
                    yield loop, "w3", W3_K, rep, system, spec, 120.0
        if "memory" in cfg.workloads:
            n = cfg.memory_events_for(loop)
            budget = n * (cfg.memory_consumer_us + 60) * 1e-6 * 3 + 60
            # Peak RSS is not noisy like a rate: one repetition per system.
            for system in MEMORY_SYSTEMS:
                spec = Spec(
                    workload="memory",
                    system=system,
                    loop=loop,
                    k=1,
                    events=n,
                    consumer_us=cfg.memory_consumer_us,
                    timeout=budget,
                )
                yield loop, "memory", 1, 0, system, spec, budget + 30


def _available(loop: str) -> bool:
    module = {"asyncio": "asyncio", "uvloop": "uvloop", "trio": "trio"}[loop]
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def _stats(values: Sequence[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


Results = dict[tuple[str, str, int], dict[str, list[dict[str, Any]]]]


def summarise(results: Results) -> dict[str, Any]:
    """Reduce raw child results to medians, ranges and pairwise ratios.

    :param results: ``{(loop, workload, k): {system: [result per repetition]}}``.
    :return: ``{"loop/workload/K": {...}}`` summaries.
    """
    summary: dict[str, Any] = {}
    for (loop, workload, k), by_system in results.items():
        cell: dict[str, Any] = {
            "loop": loop,
            "workload": workload,
            "k": k,
            "systems": {},
            "ratios": {},
        }
        metric = {
            "w1": "deliveries_per_s",
            "w2": "deliveries_per_s",
            "memory": "peak_rss_growth_mb",
        }.get(workload)
        for system, runs in by_system.items():
            ok = [r for r in runs if "error" not in r]
            entry: dict[str, Any] = {
                "errors": [r["error"] for r in runs if "error" in r],
                "cpu_share_min": min((r["cpu_share"] for r in ok), default=None),
            }
            if workload == "w3":
                for key in ("p50_us", "p99_us", "max_us", "achieved_rate", "mean_burst"):
                    entry[key] = _stats([r[key] for r in ok])
                entry["sustains"] = (
                    bool(ok) and not entry["errors"] and all(r["sustains"] for r in ok)
                )
            elif workload == "memory":
                for key in ("peak_rss_growth_mb", "maxrss_growth_mb", "elapsed"):
                    entry[key] = _stats([r[key] for r in ok])
            elif metric is not None:
                entry[metric] = _stats([r[metric] for r in ok])
            cell["systems"][system] = entry
        if workload in ("w1", "w2", "w3"):
            key = "p99_us" if workload == "w3" else "deliveries_per_s"
            for base in ("taskgroup", "direct"):
                pairs = [
                    a[key] / b[key]
                    for a, b in zip(
                        by_system.get("reactor", []), by_system.get(base, []), strict=False
                    )
                    if "error" not in a and "error" not in b
                ]
                cell["ratios"][f"reactor/{base}"] = _stats(pairs)
        summary[f"{loop}/{workload}/K={k}"] = cell
    return summary


def _median(summary: dict[str, Any], key: str, system: str, metric: str) -> float | None:
    cell = summary.get(key)
    if cell is None:
        return None
    stats = cell["systems"].get(system, {}).get(metric)
    return None if stats is None else float(stats["median"])


def evaluate_targets(
    summary: dict[str, Any], imports: dict[str, Any] | None, loops: Sequence[str]
) -> list[dict[str, Any]]:
    """Check the issue's targets.

    :param summary: output of :func:`summarise`.
    :param imports: output of :func:`measure_import`, if measured.
    :param loops: loops measured; targets bind on asyncio, the others are informational.
    :return: one entry per target and loop with value, threshold and ``PASS``/``MISS``/``n/a``.
    """
    out: list[dict[str, Any]] = []

    def add(loop: str, name: str, value: float | None, text: str, ok: bool | None) -> None:
        status = "n/a" if ok is None else ("PASS" if ok else "MISS")
        binding = loop in ("asyncio", "-")
        out.append(
            {
                "loop": loop,
                "target": name,
                "value": value,
                "text": text,
                "status": status,
                "binding": binding,
            }
        )

    for loop in loops:
        for workload, goal in (("w1", TARGET_W1_K4), ("w2", TARGET_W2_K4)):
            cell = summary.get(f"{loop}/{workload}/K=4")
            ratio = None if cell is None else cell["ratios"].get("reactor/taskgroup")
            value = None if ratio is None else float(ratio["median"])
            add(
                loop,
                f"{workload.upper()} K=4 reactor/taskgroup >= {goal:g}x",
                value,
                "-" if value is None else f"{value:.2f}x",
                None if value is None else value >= goal,
            )
        key = f"{loop}/w3/K={W3_K}"
        r99 = _median(summary, key, "reactor", "p99_us")
        t99 = _median(summary, key, "taskgroup", "p99_us")
        cell = summary.get(key)
        sustains = (
            None if cell is None else bool(cell["systems"].get("reactor", {}).get("sustains"))
        )
        if r99 is None or t99 is None or sustains is None:
            add(loop, "W3 reactor p99 <= taskgroup p99, sustains 10k/s", None, "-", None)
        else:
            text = f"p99 {r99:.0f} vs {t99:.0f} us, sustains={'yes' if sustains else 'NO'}"
            add(
                loop,
                "W3 reactor p99 <= taskgroup p99, sustains 10k/s",
                r99,
                text,
                r99 <= t99 and sustains,
            )
        growth = _median(summary, f"{loop}/memory/K=1", "reactor", "peak_rss_growth_mb")
        add(
            loop,
            f"memory: reactor peak RSS growth < {TARGET_MEMORY_MB:g} MB",
            growth,
            "-" if growth is None else f"{growth:.1f} MB",
            None if growth is None else growth < TARGET_MEMORY_MB,
        )
    if imports is not None:
        ms = float(imports["importtime_ms"])
        add(
            "-",
            f"import reactor < {TARGET_IMPORT_MS:g} ms",
            ms,
            f"{ms:.1f} ms (-X importtime)",
            ms < TARGET_IMPORT_MS,
        )
    return out


# ------------------------------------------------------------------------------ report


def _fmt_rate(stats: dict[str, float] | None) -> str:
    if stats is None:
        return "ERROR"

    def one(v: float) -> str:
        return f"{v / 1e6:.2f}M" if v >= 1e6 else f"{v / 1e3:.0f}k"

    if stats["n"] == 1:
        return one(stats["median"])
    return f"{one(stats['median'])} ({one(stats['min'])}-{one(stats['max'])})"


def _fmt_num(stats: dict[str, float] | None, unit: str = "", digits: int = 0) -> str:
    if stats is None:
        return "ERROR"
    if stats["n"] == 1:
        return f"{stats['median']:.{digits}f}{unit}"
    return (
        f"{stats['median']:.{digits}f}{unit} ({stats['min']:.{digits}f}-{stats['max']:.{digits}f})"
    )


class Table:
    """A titled table rendered with rich if it is importable, else as aligned plain text."""

    def __init__(self, title: str, headers: Sequence[str]) -> None:
        """Start an empty table.

        :param title: printed above the table.
        :param headers: column names.
        """
        self.title = title
        self.headers = list(headers)
        self.rows: list[list[str]] = []

    def add(self, *cells: str) -> None:
        """Append a row.

        :param cells: one string per column.
        """
        self.rows.append(list(cells))

    def render(self) -> None:
        """Print the table to stdout."""
        try:
            rich_console = importlib.import_module("rich.console")
            rich_table = importlib.import_module("rich.table")
        except ImportError:
            self._render_plain()
            return
        table = rich_table.Table(title=self.title, title_justify="left")
        for i, header in enumerate(self.headers):
            table.add_column(header, justify="left" if i == 0 else "right")
        for row in self.rows:
            table.add_row(*row)
        rich_console.Console(width=160).print(table)

    def _render_plain(self) -> None:
        widths = [
            max(len(r[i]) for r in [self.headers, *self.rows]) for i in range(len(self.headers))
        ]

        def line(cells: Sequence[str]) -> str:
            parts = [
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            ]
            return "  ".join(parts).rstrip()

        print(f"\n{self.title}")
        print(line(self.headers))
        print("  ".join("-" * w for w in widths))
        for row in self.rows:
            print(line(row))


def report(
    env: dict[str, Any],
    cfg: Config,
    summary: dict[str, Any],
    imports: dict[str, Any] | None,
    targets: list[dict[str, Any]],
) -> None:
    """Print the environment header, one table per workload and loop, and the targets.

    :param env: output of :func:`environment`.
    :param cfg: the run's configuration.
    :param summary: output of :func:`summarise`.
    :param imports: output of :func:`measure_import`, if measured.
    :param targets: output of :func:`evaluate_targets`.
    """
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items())
    print(f"\nCPU: {env['cpu']} ({env['cores']} cores) | {env['python']} | {env['platform']}")
    load = ", ".join(f"{x:.2f}" for x in env["load_average"])
    after = ", ".join(f"{x:.2f}" for x in env.get("load_average_after", []))
    print(f"versions: {versions}")
    print(f"load average (1, 5, 15 min) before the run: {load}; after: {after}")
    print(
        f"mode: {'quick' if cfg.quick else 'full'}, repeat={cfg.repeat}, loops={','.join(cfg.loops)}; "
        "cells are median (min-max) over repetitions; ratios are per-repetition pairs, then median"
    )
    for loop in cfg.loops:
        for workload, label in (
            ("w1", "W1 handlers never suspend"),
            ("w2", "W2 handlers await sleep(0) once"),
        ):
            if workload not in cfg.workloads:
                continue
            table = Table(
                f"[{loop}] {label}: deliveries/s",
                [
                    "K",
                    "events",
                    "direct",
                    "taskgroup",
                    "reactor",
                    "reactor/taskgroup",
                    "reactor/direct",
                ],
            )
            for k in KS:
                cell = summary.get(f"{loop}/{workload}/K={k}")
                if cell is None:
                    continue
                s = cell["systems"]
                table.add(
                    str(k),
                    str(cfg.throughput_events(loop, k)),
                    *(_fmt_rate(s[name]["deliveries_per_s"]) for name in SYSTEMS),
                    _fmt_num(cell["ratios"]["reactor/taskgroup"], "x", 2),
                    _fmt_num(cell["ratios"]["reactor/direct"], "x", 2),
                )
            table.render()
        cell = summary.get(f"{loop}/w3/K={W3_K}")
        if cell is not None:
            table = Table(
                f"[{loop}] W3 publish->handler-start latency, K={W3_K}, {W3_RATE:,.0f} events/s for {cfg.w3_duration:g} s, pacing={cfg.w3_pacing}",
                [
                    "system",
                    "p50 us",
                    "p99 us",
                    "max us",
                    "achieved events/s",
                    "sustains",
                    "events/wake-up",
                ],
            )
            for name in SYSTEMS:
                s = cell["systems"][name]
                table.add(
                    name,
                    _fmt_num(s["p50_us"]),
                    _fmt_num(s["p99_us"]),
                    _fmt_num(s["max_us"]),
                    _fmt_num(s["achieved_rate"]),
                    "yes" if s["sustains"] else "NO",
                    _fmt_num(s["mean_burst"], "", 1),
                )
            table.render()
        cell = summary.get(f"{loop}/memory/K=1")
        if cell is not None:
            table = Table(
                f"[{loop}] memory: {cfg.memory_events_for(loop):,} events, consumer busy-waits {cfg.memory_consumer_us:g} us/event",
                [
                    "system",
                    "peak RSS growth MB (psutil, 10 ms)",
                    "ru_maxrss growth MB",
                    "elapsed s",
                ],
            )
            for name in MEMORY_SYSTEMS:
                s = cell["systems"][name]
                table.add(
                    name,
                    _fmt_num(s["peak_rss_growth_mb"], "", 1),
                    _fmt_num(s["maxrss_growth_mb"], "", 1),
                    _fmt_num(s["elapsed"], "", 1),
                )
            table.render()
    for cell in summary.values():
        for name, entry in cell["systems"].items():
            for error in entry["errors"]:
                print(f"ERROR {cell['loop']}/{cell['workload']}/K={cell['k']} {name}: {error}")
    starved = [
        f"{cell['loop']}/{cell['workload']}/K={cell['k']} {name} ({entry['cpu_share_min']:.2f})"
        for cell in summary.values()
        if cell["workload"] in ("w1", "w2")
        for name, entry in cell["systems"].items()
        if entry["cpu_share_min"] is not None and entry["cpu_share_min"] < NOISY_CPU_SHARE
    ]
    if starved:
        print(
            f"\nNOISY: these runs got less than {NOISY_CPU_SHARE:.0%} of a CPU while timed "
            f"(CPU time / wall time; another process or the hypervisor took it): {', '.join(starved)}"
        )
    if imports is not None:
        print(
            f"\nimport reactor: {imports['importtime_ms']:.1f} ms (-X importtime cumulative, median of {IMPORT_RUNS}); "
            f"{imports['wall_delta_ms']:.1f} ms wall (python -c 'import reactor' minus python -c 'pass')"
        )
    table = Table(
        "Targets (binding on asyncio; other loops reported)", ["loop", "target", "value", "result"]
    )
    for t in targets:
        table.add(
            t["loop"], t["target"], t["text"], t["status"] if t["binding"] else f"({t['status']})"
        )
    table.render()


# -------------------------------------------------------------------------------- main


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.dispatch", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--quick", action="store_true", help="10x fewer events, one repetition (under a minute)"
    )
    parser.add_argument(
        "--json", type=Path, metavar="PATH", help="write environment, raw runs and summary here"
    )
    parser.add_argument(
        "--loops", default=",".join(LOOPS), help="comma-separated subset of asyncio,uvloop,trio"
    )
    parser.add_argument(
        "--workloads",
        default=",".join(WORKLOADS),
        help="comma-separated subset of " + ",".join(WORKLOADS),
    )
    parser.add_argument(
        "--repeat", type=int, help="repetitions per measurement (default 3, --quick 1)"
    )
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the W1/W2 event counts")
    parser.add_argument(
        "--memory-events",
        type=int,
        help="events in the memory run on every loop (default 1,000,000 on asyncio and "
        "200,000 on uvloop and trio; a tenth with --quick)",
    )
    parser.add_argument(
        "--memory-consumer-us",
        type=float,
        default=MEMORY_CONSUMER_US,
        help="slow consumer's busy-wait per event, microseconds",
    )
    parser.add_argument(
        "--w3-pacing",
        choices=("sleep", "spin"),
        default="sleep",
        help="W3 producer: sleep until each deadline (default; the loop's timer granularity "
        "makes small bursts) or yield with sleep(0) until it (even spacing, busy loop)",
    )
    parser.add_argument(
        "--retry-noisy",
        type=int,
        default=2,
        metavar="N",
        help=f"re-run a W1/W2 measurement that got under {NOISY_CPU_SHARE * 100:.0f}%% of a CPU, up to N times (default 2)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name, allowed in (("loops", LOOPS), ("workloads", WORKLOADS)):
        chosen = [x.strip() for x in getattr(args, name).split(",") if x.strip()]
        unknown = sorted(set(chosen) - set(allowed))
        if unknown:
            parser.error(
                f"--{name}: unknown {', '.join(unknown)}; choose from {', '.join(allowed)}"
            )
        setattr(args, name, chosen)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark (or, with the hidden ``--child``, one measurement).

    :param argv: command-line arguments; ``sys.argv[1:]`` when ``None``.
    :return: the process exit code: 0, or 1 if any measurement failed.
    """
    args = _parse_args(argv)
    if args.child is not None:
        return child_main(args.child)
    loops = [loop for loop in args.loops if _available(loop)]
    for loop in sorted(set(args.loops) - set(loops)):
        print(f"skipping {loop}: not importable", file=sys.stderr)
    cfg = Config(
        quick=args.quick,
        repeat=args.repeat or (1 if args.quick else 3),
        loops=loops,
        workloads=args.workloads,
        scale=args.scale,
        memory_events=args.memory_events,
        memory_consumer_us=args.memory_consumer_us,
        w3_duration=W3_DURATION_QUICK if args.quick else W3_DURATION,
        w3_pacing=args.w3_pacing,
    )
    env = environment(loops)
    plan = list(_plan(cfg))
    results: Results = {}
    raw: list[dict[str, Any]] = []
    started = time.perf_counter()
    for n, (loop, workload, k, rep, system, spec, timeout) in enumerate(plan, 1):
        t0 = time.perf_counter()
        result = run_child(spec, timeout)
        attempts = 1
        # A W1/W2 run that was descheduled measures the machine, not the system: run it
        # again (up to --retry-noisy times) and keep the attempt that got the most CPU.
        while (
            workload in ("w1", "w2")
            and attempts <= args.retry_noisy
            and result.get("cpu_share", 1.0) < NOISY_CPU_SHARE
        ):
            print(f"  noisy ({_brief(result)}), again", file=sys.stderr, flush=True)
            again = run_child(spec, timeout)
            attempts += 1
            if "error" in again or again["cpu_share"] > result["cpu_share"]:
                result = again
        results.setdefault((loop, workload, k), {}).setdefault(system, []).append(result)
        raw.append(
            {
                "spec": asdict(spec),
                "rep": rep,
                "result": result,
                "attempts": attempts,
                "wall_s": time.perf_counter() - t0,
            }
        )
        print(
            f"[{n}/{len(plan)}] {loop} {workload} K={k} rep {rep + 1} {system}: {_brief(result)}",
            file=sys.stderr,
            flush=True,
        )
    imports = measure_import() if "import" in cfg.workloads else None
    env["load_average_after"] = list(os.getloadavg())
    summary = summarise(results)
    targets = evaluate_targets(summary, imports, loops)
    report(env, cfg, summary, imports, targets)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    if args.json is not None:
        document = {
            "environment": env,
            "config": asdict(cfg),
            "summary": summary,
            "targets": targets,
            "import": imports,
            "runs": raw,
        }
        args.json.write_text(json.dumps(document, indent=2))
    return 1 if any("error" in r["result"] for r in raw) else 0


def _brief(result: dict[str, Any]) -> str:
    if "error" in result:
        return "ERROR " + str(result["error"])
    if "deliveries_per_s" in result:
        return (
            f"{result['deliveries_per_s']:,.0f} deliveries/s in {result['elapsed']:.2f} s "
            f"(cpu share {result['cpu_share']:.2f})"
        )
    if "p99_us" in result:
        return f"p50 {result['p50_us']:.0f} us, p99 {result['p99_us']:.0f} us, {result['achieved_rate']:,.0f} events/s"
    if "peak_rss_growth_mb" in result:
        return f"peak RSS growth {result['peak_rss_growth_mb']:.1f} MB in {result['elapsed']:.1f} s"
    return json.dumps(result)


if __name__ == "__main__":
    sys.exit(main())
