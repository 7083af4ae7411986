"""The child side of the suite: one workload, one system, one loop, in this process.

Workloads (the same handlers and the same prebuilt events for every system):

* ``w1`` -- K handlers that never suspend; deliveries/s until every delivery finished.
  Run at K = 1..64 it is also W5, the fan-out sweep.
* ``w2`` -- the same with ``await sleep(0)`` at the start of every handler.
* ``w1b``, ``w2b`` -- W1 and W2 with the envelope built inside the timed loop, the way
  users publish: reactor by ``app.publish(type, data, source=...)``, every other system
  by ``Event(type=..., source=..., data=...)`` and its own publish.
* ``w3`` -- publish-to-handler-start latency at a steady rate (K = 4).
* ``w4`` -- a slow consumer: peak RSS growth and how long the producer ran ahead.
* ``w6`` -- K = 4 handlers of which 10% of deliveries fail once and are retried.
* ``subs`` -- reactor alone: K subscriptions, each to its own source, and events that
  each match one of them; events/s, and the time ``subscribe()`` took for the K.
* ``timers`` -- reactor alone, on the real clock: K interval timers of ``period``
  seconds whose runs are spread by ``jitter`` seconds of jitter; the time ``every()`` took for the K, the lateness of every run (handler start
  minus its ``"scheduled"`` time), the share of due runs that ran, the CPU share while
  nothing is due, and the time the app took to start and to stop.

Every handler counts its deliveries and adds up the index of each event it saw, so a run
that loses or duplicates a delivery is reported as an error, never as a speed.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime
from typing import Any

import anyio
import attrs

from reactor import Event

from ._harness import RssSampler, max_rss_mb, percentile, print_result, run_anyio, wait_for
from ._systems import EVENT_TYPE, Handler, System

Sleep = Callable[[float], Coroutine[Any, Any, None]]

EVENT_SOURCE = "/bench"
# A fixed timestamp and explicit ids keep building events cheap and the same for every
# system; they are built before timing starts anyway.
EVENT_TIME = datetime(2026, 1, 1, tzinfo=UTC)
#: A run in which no delivery finishes for this long has lost deliveries.
STALL_SECONDS = 5.0
RSS_SAMPLE_INTERVAL = 0.010
#: W6: delivery (event i, handler j) fails on its first attempt when (i + j) % this == 0.
FAIL_EVERY = 10
#: W1 and W2 with the envelope built in the timed loop (``publish(type, data, source=...)``).
BUILD_WORKLOADS = ("w1b", "w2b")
#: Points of the latency CDF kept in a W3 result (quantiles 0, 1/N, ..., 1).
CDF_POINTS = 200


@attrs.frozen(kw_only=True)
class Spec:
    """One measurement: what a child runs.

    :ivar workload: ``w1``, ``w2``, ``w1b``, ``w2b``, ``w3``, ``w4``, ``w6``, ``subs`` or
        ``timers``.
    :ivar system: the system's name.
    :ivar loop: ``asyncio``, ``uvloop`` or ``trio``.
    :ivar k: handlers per event (``subs``: subscriptions, one handler each; ``timers``:
        timers).
    :ivar events: events published (``timers``: periods measured).
    :ivar rate: W3's events per second.
    :ivar consumer_us: W4's busy-wait per event, in microseconds.
    :ivar timeout: seconds to wait for the deliveries before giving up.
    """

    workload: str
    system: str
    loop: str
    k: int
    events: int
    rate: float = 0.0
    consumer_us: float = 0.0
    timeout: float = 120.0
    #: ``timers``: freeze the heap (``gc.freeze()``) once the timers are registered, as
    #: the other workloads do once their events are built.
    gc_freeze: bool = True
    #: ``timers``: each timer's period, and the jitter that spreads a period's runs over
    #: its first seconds (nothing is due for the rest of the period).
    period: float = 6.0
    jitter: float = 4.0

    def to_dict(self) -> dict[str, Any]:
        """The spec as a JSON-ready dict.

        :return: the fields.
        """
        return attrs.asdict(self)


class _Planned(Exception):
    """The failure W6 plans for a delivery's first attempt."""


class Tally:
    """Per-handler delivery counts and index sums, and the end-of-run signal."""

    def __init__(self, k: int, events: int) -> None:
        """Prepare counters for *k* handlers over *events* events.

        :param k: number of handlers.
        :param events: number of events each handler must see.
        """
        self.k = k
        self.events = events
        self.counts = [0] * k
        self.sums = [0] * k
        self.failures = [0] * k
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
        :return: whether every delivery finished; ``False`` after *limit* seconds, or
            after :data:`STALL_SECONDS` in which no delivery finished.
        """
        assert self._done is not None
        return await wait_for(self._done, lambda: self.remaining[0], limit, STALL_SECONDS)

    @property
    def cpu_share(self) -> float:
        """CPU time of this process over wall time in the timed section."""
        wall = self.end - self.start
        return (self.cpu_end - self.cpu_start) / wall if wall > 0 else 0.0

    def problems(self, expected_failures: Sequence[int] | None = None) -> list[str]:
        """Describe every handler that did not see every event exactly once.

        :param expected_failures: W6's planned failures per handler, if any.
        :return: human-readable problems; empty when the run is correct.
        """
        expected_sum = self.events * (self.events - 1) // 2
        out = []
        for i, (count, total) in enumerate(zip(self.counts, self.sums, strict=True)):
            if count != self.events or total != expected_sum:
                out.append(
                    f"handler {i}: {count} deliveries of {self.events} "
                    f"(index sum {total}, expected {expected_sum})"
                )
            if expected_failures is not None and self.failures[i] != expected_failures[i]:
                out.append(
                    f"handler {i}: {self.failures[i]} failed attempts, "
                    f"expected {expected_failures[i]}"
                )
        return out

    def error(self, problems: list[str]) -> str:
        """The error text of a run that lost or duplicated deliveries.

        :param problems: output of :meth:`problems`.
        :return: the text.
        """
        head = f"lost deliveries: {sum(self.counts)} of {self.events * self.k} finished"
        return "; ".join([head, *problems[:4]])


# -------------------------------------------------------------------------- handlers


def _throughput_handler(i: int, tally: Tally, sleep: Sleep | None) -> Handler:
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


def _latency_handler(i: int, tally: Tally) -> Handler:
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


def _slow_handler(tally: Tally, consumer_s: float) -> Handler:
    counts, sums, remaining, finish = tally.counts, tally.sums, tally.remaining, tally.finish

    async def w4(event: Event) -> None:
        # A busy-wait holds the loop for the same wall time whatever the system or loop,
        # and concurrent copies of the handler cannot overlap: the consumer's rate is the
        # same for every system.
        _busy_wait(consumer_s)
        counts[0] += 1
        sums[0] += event.data
        remaining[0] -= 1
        if not remaining[0]:
            finish()

    return w4


def _failing_handler(i: int, tally: Tally, failed: bytearray) -> Handler:
    counts, sums, remaining, finish = tally.counts, tally.sums, tally.remaining, tally.finish
    failures = tally.failures

    async def w6(event: Event) -> None:
        index = event.data
        if not (index + i) % FAIL_EVERY and not failed[index]:
            failed[index] = 1
            failures[i] += 1
            raise _Planned(index)
        counts[i] += 1
        sums[i] += index
        remaining[0] -= 1
        if not remaining[0]:
            finish()

    return w6


def expected_failures(k: int, events: int) -> list[int]:
    """W6's planned failures per handler: one per event with ``(index + j) % 10 == 0``.

    :param k: handlers.
    :param events: events.
    :return: the count for each handler.
    """
    return [sum(1 for index in range(events) if not (index + j) % FAIL_EVERY) for j in range(k)]


def retrying(handler: Handler, retries: int) -> Handler:
    """The retry a user of a system without one writes: call again if it raised.

    :param handler: the handler.
    :param retries: how many times to call again at most.
    :return: the wrapped handler.
    """

    async def retry(event: Any) -> None:
        for _ in range(retries):
            try:
                await handler(event)
            except Exception:
                continue
            return
        await handler(event)

    return retry


# ---------------------------------------------------------------------------- running


def native_sleep(loop: str) -> Sleep:
    """The loop's own sleep, used by every system's handlers and producers alike.

    :param loop: the loop's name.
    :return: ``trio.sleep`` on trio, ``asyncio.sleep`` otherwise.
    """
    if loop == "trio":
        import trio

        return trio.sleep
    return asyncio.sleep


def run_main(system: System, loop: str, main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run *main* on *loop* the way *system*'s users run it.

    :param system: the system under test.
    :param loop: the loop's name.
    :param main: the coroutine function to run.
    """
    if system.runner == "anyio" or loop == "trio":
        run_anyio(loop, main)
    elif loop == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main())
    else:
        asyncio.run(main())


def _make_event(i: int, data: Any) -> Event:
    return Event(type=EVENT_TYPE, source=EVENT_SOURCE, id=str(i), time=EVENT_TIME, data=data)


def _freeze_heap() -> None:
    # The prebuilt events would otherwise be traversed by every full collection, which
    # taxes the systems that allocate more for a reason unrelated to dispatch.
    gc.collect()
    gc.freeze()


class _Run:
    """Shared plumbing of one measurement: system, handlers, prebuilt messages, timing."""

    def __init__(self, spec: Spec, system: System, handlers: list[Handler]) -> None:
        self.spec = spec
        self.system = system
        retries = 0
        if spec.workload == "w6":
            retries = 1
            if not system.native_retry:
                handlers = [retrying(h, retries) for h in handlers]
        self.handlers = handlers
        self.retries = retries
        self.finished = False

    async def produce(self, messages: Sequence[Any], tally: Tally) -> None:
        """Publish every message as fast as the system accepts them, then wait."""
        spec = self.spec
        async with self.system.open(self.handlers, spec.loop, self.retries) as publish:
            await native_sleep(spec.loop)(0)  # let the system reach its first wait
            tally.begin()
            if spec.workload in BUILD_WORKLOADS:
                await self._build_and_publish(publish)
            elif self.system.name == "direct":
                handlers = self.handlers
                for message in messages:
                    for handler in handlers:
                        await handler(message)
            else:
                for message in messages:
                    await publish(message)
            self.finished = await tally.wait(spec.timeout)

    async def _build_and_publish(self, publish: Any) -> None:
        """W1b/W2b's timed loop: each event's envelope is built as it is published.

        reactor builds it itself, from the call its users make; every other system gets
        the ``Event`` its users would build (with a fresh id and time, like reactor's).
        """
        n, kind = self.spec.events, self.system.kind
        if kind == "peer":
            raise ValueError("the peers do not run the envelope-building workloads")
        if kind == "reactor":
            for i in range(n):
                await publish(EVENT_TYPE, i, source=EVENT_SOURCE)
        elif self.system.name == "direct":
            handlers = self.handlers
            for i in range(n):
                event = Event(type=EVENT_TYPE, source=EVENT_SOURCE, data=i)
                for handler in handlers:
                    await handler(event)
        else:
            for i in range(n):
                await publish(Event(type=EVENT_TYPE, source=EVENT_SOURCE, data=i))


def _prepared(system: System, events: list[Event]) -> list[Any]:
    prepare = system.prepare
    return events if prepare is None else [prepare(event) for event in events]


def _throughput(spec: Spec, system: System) -> dict[str, Any]:
    if spec.workload in BUILD_WORKLOADS and system.kind == "peer":
        # Refused before the peer's library is imported (it need not be installed).
        raise ValueError("the peers do not run the envelope-building workloads")
    tally = Tally(spec.k, spec.events)
    if spec.workload == "w6":
        failed = bytearray(spec.events)
        handlers = [_failing_handler(i, tally, failed) for i in range(spec.k)]
    else:
        sleep = native_sleep(spec.loop) if spec.workload in ("w2", "w2b") else None
        handlers = [_throughput_handler(i, tally, sleep) for i in range(spec.k)]
    run = _Run(spec, system, handlers)
    messages: list[Any] = []
    if spec.workload not in BUILD_WORKLOADS:
        messages = _prepared(system, [_make_event(i, i) for i in range(spec.events)])
    _freeze_heap()

    async def main() -> None:
        tally.arm()
        await run.produce(messages, tally)

    run_main(system, spec.loop, main)
    planned = expected_failures(spec.k, spec.events) if spec.workload == "w6" else None
    problems = tally.problems(planned)
    if not run.finished or problems:
        return {"error": tally.error(problems)}
    elapsed = tally.end - tally.start
    deliveries = spec.events * spec.k
    return {
        "elapsed": elapsed,
        "deliveries": deliveries,
        "deliveries_per_s": deliveries / elapsed,
        "cpu_share": tally.cpu_share,
        "failed_attempts": sum(tally.failures),
    }


def _latency(spec: Spec, system: System) -> dict[str, Any]:
    sleep = native_sleep(spec.loop)
    tally = Tally(spec.k, spec.events)
    run = _Run(spec, system, [_latency_handler(i, tally) for i in range(spec.k)])
    events = [_make_event(i, [0.0, float(i)]) for i in range(spec.events)]
    messages = _prepared(system, events)
    _freeze_heap()
    period = 1.0 / spec.rate
    wakeups = 0

    async def main() -> None:
        nonlocal wakeups
        tally.arm()
        clock = time.perf_counter
        direct = system.name == "direct"
        handlers = run.handlers
        async with system.open(handlers, spec.loop, 0) as publish:
            await sleep(0)
            start = tally.begin()
            for i, message in enumerate(messages):
                delay = start + i * period - clock()
                if delay > 0:
                    # The loops' timers wake at millisecond granularity (epoll), so events
                    # whose deadlines passed meanwhile go out back to back.
                    wakeups += 1
                    await sleep(delay)
                events[i].data[0] = clock()
                if direct:
                    for handler in handlers:
                        await handler(message)
                else:
                    await publish(message)
            run.finished = await tally.wait(spec.timeout)

    run_main(system, spec.loop, main)
    problems = tally.problems()
    if not run.finished or problems:
        return {"error": tally.error(problems)}
    lat = sorted(x for per_handler in tally.latencies for x in per_handler)
    elapsed = tally.end - tally.start
    achieved = spec.events / elapsed
    last = len(lat) - 1
    return {
        "p50_us": percentile(lat, 0.50) * 1e6,
        "p90_us": percentile(lat, 0.90) * 1e6,
        "p99_us": percentile(lat, 0.99) * 1e6,
        "max_us": lat[-1] * 1e6,
        "cdf_us": [lat[round(last * n / CDF_POINTS)] * 1e6 for n in range(CDF_POINTS + 1)],
        "elapsed": elapsed,
        "target_rate": spec.rate,
        "achieved_rate": achieved,
        "sustains": achieved >= 0.95 * spec.rate,
        "cpu_share": tally.cpu_share,
        "mean_burst": spec.events / wakeups if wakeups else 1.0,
    }


def _slow_consumer(spec: Spec, system: System) -> dict[str, Any]:
    tally = Tally(1, spec.events)
    run = _Run(spec, system, [_slow_handler(tally, spec.consumer_us * 1e-6)])
    prepare = system.prepare or (lambda event: event)
    _freeze_heap()
    sampler = RssSampler(RSS_SAMPLE_INTERVAL)
    produced_at = 0.0
    maxrss_before = 0.0

    async def main() -> None:
        nonlocal produced_at, maxrss_before
        tally.arm()
        async with system.open(run.handlers, spec.loop, 0) as publish:
            await native_sleep(spec.loop)(0)
            maxrss_before = max_rss_mb()
            sampler.start()
            start = tally.begin()
            # Events are built by the producer here, not beforehand: a buffer that grows
            # shows the full size of the events it holds.
            for i in range(spec.events):
                await publish(prepare(_make_event(i, i)))
            produced_at = time.perf_counter() - start
            run.finished = await tally.wait(spec.timeout)
        sampler.stop()

    run_main(system, spec.loop, main)
    problems = tally.problems()
    if not run.finished or problems:
        return {"error": tally.error(problems)}
    mib = 1024 * 1024
    elapsed = tally.end - tally.start
    return {
        "peak_rss_growth_mb": (sampler.peak - sampler.baseline) / mib,
        "baseline_rss_mb": sampler.baseline / mib,
        "maxrss_growth_mb": max_rss_mb() - maxrss_before,
        "elapsed": elapsed,
        "produced_s": produced_at,
        # How far the producer got ahead: 1.0 means it was held back to the consumer's
        # pace (backpressure); near 0 means it finished long before the consumer did.
        "producer_share": produced_at / elapsed if elapsed else 0.0,
        "consumer_us": spec.consumer_us,
        "cpu_share": tally.cpu_share,
    }


def subscription_source(j: int) -> str:
    """The source that subscription *j* of the ``subs`` workload filters on.

    :param j: the subscription's index.
    :return: the source.
    """
    return f"{EVENT_SOURCE}/{j}"


def _routed_handler(j: int, k: int, tally: Tally, misrouted: list[int]) -> Handler:
    counts, sums, remaining, finish = tally.counts, tally.sums, tally.remaining, tally.finish

    async def subs(event: Event) -> None:
        index = event.data
        if index % k != j:
            misrouted[0] += 1
        counts[j] += 1
        sums[j] += index
        remaining[0] -= 1
        if not remaining[0]:
            finish()

    return subs


def _many_subscriptions(spec: Spec, system: System) -> dict[str, Any]:
    """K subscriptions to one type, each filtering on its own source; event i comes from
    subscription (i mod K)'s source, so it matches that subscription only.

    Measured: the time the K ``subscribe()`` calls took (the handlers are made before),
    and events/s from the first publish until the last delivery finished. Checked: every
    subscription saw exactly its events, once each.
    """
    if system.name != "reactor":
        raise ValueError("the subs workload measures reactor's routing only")
    from reactor import Reactor

    k, n = spec.k, spec.events
    tally = Tally(k, n)
    tally.remaining[0] = n
    misrouted = [0]
    handlers = [_routed_handler(j, k, tally, misrouted) for j in range(k)]
    app = Reactor()
    started = time.perf_counter()
    for j, handler in enumerate(handlers):
        app.subscribe(EVENT_TYPE, handler, source=subscription_source(j), name=f"h{j}")
    register_s = time.perf_counter() - started
    events = [
        Event(
            type=EVENT_TYPE, source=subscription_source(i % k), id=str(i), time=EVENT_TIME, data=i
        )
        for i in range(n)
    ]
    _freeze_heap()
    finished = False

    async def main() -> None:
        nonlocal finished
        tally.arm()
        publish = app.publish
        async with app:
            await native_sleep(spec.loop)(0)
            tally.begin()
            for event in events:
                await publish(event)
            finished = await tally.wait(spec.timeout)

    run_main(system, spec.loop, main)
    problems = []
    for j in range(k):
        # Subscription j gets events j, j + k, j + 2k, ...: c of them, whose indexes add
        # up to c*j + k*c*(c-1)/2.
        c = len(range(j, n, k))
        expected_sum = c * j + k * c * (c - 1) // 2
        if tally.counts[j] != c or tally.sums[j] != expected_sum:
            problems.append(
                f"subscription {j}: {tally.counts[j]} deliveries of {c} "
                f"(index sum {tally.sums[j]}, expected {expected_sum})"
            )
    if misrouted[0]:
        problems.insert(0, f"{misrouted[0]} deliveries to a subscription of another source")
    if not finished or problems:
        head = f"lost deliveries: {sum(tally.counts)} of {n} finished"
        return {"error": "; ".join([head, *problems[:4]])}
    elapsed = tally.end - tally.start
    return {
        "elapsed": elapsed,
        "subscriptions": k,
        "deliveries": n,
        "events_per_s": n / elapsed,
        "register_s": register_s,
        "cpu_share": tally.cpu_share,
    }


# The share of the idle stretch of a period (after its runs, before the next period's)
# kept clear of the runs on either side when the idle CPU is measured.
_IDLE_MARGIN = 0.1
# The shortest idle stretch whose CPU share is reported (an app slow to start leaves less).
_IDLE_SHORTEST = 0.05


def _many_timers(spec: Spec, system: System) -> dict[str, Any]:
    """K interval timers on one app, each with its own handler, for ``spec.events`` periods.

    Each period's runs are due over its first ``spec.jitter`` seconds (jitter), then
    nothing is due until the next period. Measured: the time the K ``every()`` calls took,
    the app's start and stop, the lateness of each run (the handler's start minus the
    run's ``"scheduled"`` time, both wall-clock), the share of the due runs that ran, and
    the process's CPU share over the periods' runs, and over the idle stretch after the
    last period's runs (the app stops at its end).
    """
    if system.name != "reactor":
        raise ValueError("the timers workload measures reactor's timers only")
    from reactor import Reactor

    k, periods, period, jitter = spec.k, spec.events, spec.period, spec.jitter
    margin = (period - jitter) * _IDLE_MARGIN
    starts: list[float] = []
    scheduled: list[str] = []
    wall = time.time

    async def handler(event: Event) -> None:
        starts.append(wall())
        scheduled.append(event.data["scheduled"])

    app = Reactor()
    started = time.perf_counter()
    for j in range(k):
        app.every(period, jitter=jitter, name=f"t{j}")(handler)
    register_s = time.perf_counter() - started
    if spec.gc_freeze:
        _freeze_heap()
    figures: dict[str, float] = {}

    async def main() -> None:
        clock = anyio.current_time
        # The loop's clock places the sleeps (uvloop's counts whole milliseconds);
        # perf_counter times the start and the stop.
        entered, started = clock(), time.perf_counter()
        async with app:
            began = clock()
            figures["start_s"] = time.perf_counter() - started
            # Timer j's grid starts when the app starts it, between `entered` and
            # `began`; the runs of period m are due from entered + m * period to
            # began + m * period + jitter, and nothing is due from there to the next.
            cpu, at = time.process_time(), clock()
            await anyio.sleep_until(began + periods * period + jitter + margin)
            figures["busy_cpu_share"] = (time.process_time() - cpu) / (clock() - at)
            cpu, at = time.process_time(), clock()
            await anyio.sleep_until(entered + (periods + 1) * period - margin)
            figures["idle_s"] = clock() - at
            if figures["idle_s"] >= _IDLE_SHORTEST:
                figures["idle_cpu_share"] = (time.process_time() - cpu) / figures["idle_s"]
            stopping = time.perf_counter()
        figures["stop_s"] = time.perf_counter() - stopping

    run_main(system, spec.loop, main)
    if not starts:
        return {"error": "no timer ran"}
    if "idle_cpu_share" not in figures:
        return {"error": f"no idle stretch: the app took {figures['start_s']:.2f} s to start"}
    late_ms = sorted(
        (start - datetime.fromisoformat(due).timestamp()) * 1000
        for start, due in zip(starts, scheduled, strict=True)
    )
    due_runs = k * periods
    stats = app.stats().sources
    missed = sum(int(stats[f"/reactor/timers/t{j}"]["missed"] or 0) for j in range(k))
    return {
        "timers": k,
        "period_s": period,
        "jitter_s": jitter,
        "periods": periods,
        "gc_freeze": spec.gc_freeze,
        "register_s": register_s,
        "start_s": figures["start_s"],
        "stop_s": figures["stop_s"],
        "due_runs": due_runs,
        "runs": len(late_ms),
        "fired_share": len(late_ms) / due_runs,
        "missed": missed,
        "p50_ms": percentile(late_ms, 0.50),
        "p99_ms": percentile(late_ms, 0.99),
        "max_ms": late_ms[-1],
        "idle_cpu_share": figures["idle_cpu_share"],
        "idle_s": figures["idle_s"],
        "busy_cpu_share": figures["busy_cpu_share"],
        # For the noisy-run check of the suite: the busy stretch's CPU share.
        "cpu_share": figures["busy_cpu_share"],
    }


def measure(spec: Spec, system: System) -> dict[str, Any]:
    """Run one measurement in this process.

    :param spec: what to measure.
    :param system: the system named by ``spec.system``.
    :return: the result; has an ``error`` key if the run failed or lost deliveries.
    """
    # reactor logs each retry at WARNING: the records are made (their cost is reactor's),
    # then dropped, instead of flooding stderr through logging's last-resort handler.
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.NullHandler())
    try:
        if spec.workload in ("w1", "w2", "w6", *BUILD_WORKLOADS):
            return _throughput(spec, system)
        if spec.workload == "w3":
            return _latency(spec, system)
        if spec.workload == "w4":
            return _slow_consumer(spec, system)
        if spec.workload == "subs":
            return _many_subscriptions(spec, system)
        if spec.workload == "timers":
            return _many_timers(spec, system)
        raise ValueError(f"unknown workload {spec.workload!r}")
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


def child_main(specs_json: str, systems: dict[str, System]) -> int:
    """Run a list of measurements one after the other and print their results.

    :param specs_json: a JSON list of :class:`Spec` dicts.
    :param systems: the known systems by name.
    :return: the exit status.
    """
    import json

    results = []
    for fields in json.loads(specs_json):
        spec = Spec(**fields)
        results.append(measure(spec, systems[spec.system]))
        gc.unfreeze()
        gc.collect()
    print_result(results)
    return 0
