"""Durable-queue benchmark: reactor on ``SQLiteQueue`` against raw ``sqlite3`` in one thread.

Run ``python -m benchmarks.sqlite [--quick] [--json out.json] [--levels full,normal]``;
``--workloads breakdown`` for where the CPU time of an event goes, ``--profile DIR`` for
cProfile statistics of the reactor runs.

What is measured (K = 4 trivial consumers, ~1 KB CloudEvents JSON per event):

* ``throughput`` -- events/s from the first publish until every event has been handled by
  all K consumers and deleted from the file, at ``synchronous=full`` and ``normal``:

  - ``baseline`` -- plain ``sqlite3`` in one thread, WAL, same ``synchronous``: build and
    JSON-encode B events (a CloudEvents envelope with a fresh id and time, as
    ``app.publish(type, data)`` builds), insert them in one transaction, claim them
    (``SELECT ... ORDER BY seq LIMIT B``), JSON-decode each and call K plain functions,
    delete the batch in one transaction (B = 256);
  - ``per-event`` -- the same, but every insert is its own transaction (one commit per
    published event; the claim/delete side stays batched): the figure group commit beats;
  - ``reactor`` -- ``Reactor(queue=SQLiteQueue(file, synchronous=level))``, K ``async def``
    consumers, P = 256 publisher tasks each awaiting ``app.publish(type, data)`` in a loop
    (the shape of an HTTP front-end; group commit needs concurrent publishers). The clock
    stops when the queue has committed the acknowledgement of the last event (an
    ``ack()`` override counts them). A monitor task sleeping 1 ms in a loop records how
    late each wake-up is (the loop lag) during the timed section. Run on asyncio (the
    binding figure), uvloop and trio.

* ``paced`` -- loop lag and ``publish()`` latency at a steady 2,000 events/s (64
  publishers on absolute deadlines), well under saturation: the loop is mostly idle, so
  a late wake-up here is the loop being held (GIL, a blocking call), not queued work.
* ``tmpfs`` -- ``baseline`` and ``reactor`` (asyncio) with the file in ``/dev/shm``, where
  fsync costs nothing: the CPU ceiling of each, and a control for the loop lag (a lag
  that stays on tmpfs does not come from the disk).
* ``memory`` -- a file holding a backlog of 1,000,000 events (written with ``sqlite3`` in
  the queue's own row format and checksum, after ``SQLiteQueue`` created the schema),
  then fresh processes on it:

  - ``backlog`` -- ``open()`` time with the file evicted from the page cache
    (``posix_fadvise(DONTNEED)``, this file only) and again warm (``open()`` runs ``PRAGMA
    quick_check`` and counts the rows), then an app with K consumers draining the
    backlog; peak RSS (sampled every 10 ms) during the first 100,000 events handled and
    during the next 100,000. Flat: the second window's peak is not above the first's;
  - ``empty`` -- the reference: the same app on an empty file, with 64 publishers
    publishing all along (nothing to drain otherwise);
  - ``contention`` -- the backlog file again, consumers draining it while 64 publishers
    publish for 10 s: how fast each side goes when both want the file.

* ``breakdown`` (only when asked for) -- CPU time per event of the ``reactor`` run (asyncio),
  split by taking parts away, each variant in fresh processes, the lowest of the
  repetitions (the one the machine's other load disturbed least): the full run; the same
  with the journal's statements skipped (``Journal.commit`` returns at once), which leaves
  out the SQL; with the JSON encoding skipped too (``put()`` stores a constant body of the
  same size); and the same app on the in-memory queue. The differences are the SQL (the
  worker thread), the JSON encoding, the queue's own work on the loop (thread hops, the
  writer role, publishers waiting for their commit, settlement) and the rest of reactor
  (building the event, routing, the four handlers). The worker thread's CPU time is also
  measured directly, around each commit.

``--profile DIR`` runs every ``reactor`` child under cProfile, the event loop's thread and
the journal's calls in the worker thread apart, and writes ``<run>.loop.prof`` and
``<run>.journal.prof`` into DIR (read them with ``python -m pstats``); profiled runs are
slower, and their figures are not comparable with the others'.

Method, as in ``python -m benchmarks`` (the shared code is ``benchmarks._harness``): every
measurement runs in a fresh interpreter (``python -m benchmarks.sqlite --child '<json
spec>'``, one JSON line back) with a fresh
temporary file; within a repetition the systems alternate and the order rotates from one
repetition to the next; cells show the median (min-max) over repetitions, and ratios are
taken pair by pair within a repetition, then the median. Every consumer counts its events
and adds up their indexes, so a run that loses or duplicates a delivery is reported as an
error, never as a speed.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import anyio

from reactor import Event, Reactor
from reactor.abc import Received
from reactor.queues.memory import MemoryQueue
from reactor.queues.sqlite import SQLiteQueue

from . import _harness as h

K = 4
LEVELS = ("full", "normal")
LOOPS = ("asyncio", "uvloop", "trio")
WORKLOADS = ("throughput", "paced", "tmpfs", "memory")
#: Workloads run only when asked for with ``--workloads``.
OPTIONAL_WORKLOADS = ("breakdown",)
#: The variants of the breakdown (see the module's docstring): the reactor run as it is,
#: without the SQL, without the SQL and the JSON encoding, and on the in-memory queue.
ABLATIONS = ("full", "no-sql", "no-sql-no-json", "memory")

EVENT_TYPE = "bench.event"
EVENT_SOURCE = "/bench"
EVENT_TIME = datetime(2026, 1, 1, tzinfo=UTC)

# Events per throughput run (--quick: a tenth) and per one-commit-per-event run, which is
# 5-20x slower (an fsync per event at "full").
EVENTS = 100_000
PER_EVENT_EVENTS = {"full": 10_000, "normal": 40_000}
BATCH = 256
PUBLISHERS = 256
PACED_RATE = 2_000.0
PACED_SECONDS = 5.0
PACED_SECONDS_QUICK = 2.0
PACED_PUBLISHERS = 64
LAG_INTERVAL = 0.001
BACKLOG = 1_000_000
MEMORY_WINDOW = 100_000
MEMORY_PUBLISHERS = 64
CONTENTION_SECONDS = 10.0
FILL_CHUNK = 10_000
FILL_INSERT = (
    "INSERT INTO reactor_events (seq, body, only, published_at, crc) VALUES (?, ?, ?, ?, ?)"
)
RSS_SAMPLE_INTERVAL = 0.010
# A run whose consumers make no progress for this long has lost deliveries.
STALL_SECONDS = 15.0
TMPFS = Path("/dev/shm")

# A timed section during which other processes used more than this many cores' worth of
# CPU (the kernel's own I/O threads use a few hundredths) is noisy: it is run again.
NOISY_OTHERS = 0.25

TARGET_RATIO = 0.8
TARGET_LAG_MS = 5.0
TARGET_FLAT_MB = 10.0

# The child's module, run as ``python -m`` from the repository root.
CHILD_MODULE = "benchmarks.sqlite"
ROOT = Path(__file__).resolve().parent.parent
DISTRIBUTIONS = ("reactor-events", "anyio", "trio", "uvloop", "psutil")
MIB = 1024 * 1024

# The data of every event: ~1 KB once wrapped in its CloudEvents envelope. The nested
# parts are shared objects (JSON encodes them every time all the same); "index" varies
# and is what the consumers add up.
_NOTE = (
    "Deliver to the side entrance after 6 pm; the parcel contains glassware, keep it "
    "upright and do not stack anything on top of it. Call the number on file on arrival. "
) * 2
_CUSTOMER = {
    "id": "cust-000042",
    "name": "Ada Lovelace",
    "email": "ada@example.com",
    "tier": "gold",
    "address": {"street": "12 St James's Square", "city": "London", "postcode": "SW1Y 4JH"},
}
_ITEMS = [
    {"sku": f"SKU-{k:05d}", "title": f"Item number {k}", "qty": k + 1, "price": 9.99 + k}
    for k in range(5)
]


def make_data(index: int) -> dict[str, Any]:
    """The ``data`` of event number *index* (JSON-ready).

    :param index: the event's number, added up by the consumers.
    :return: a fresh dict.
    """
    return {
        "index": index,
        "order": f"ord-{index:010d}",
        "currency": "EUR",
        "total": 149.85,
        "customer": _CUSTOMER,
        "items": _ITEMS,
        "note": _NOTE,
    }


_VARIANT = dict(zip("0123456789abcdef", "89ab89ab89ab89ab", strict=True))


def _new_id() -> str:
    # A random UUID4 string, made the way reactor makes event ids (same cost).
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


def _envelope(index: int) -> dict[str, Any]:
    """A CloudEvents envelope as ``Event.to_dict()`` has it, with a fresh id and time."""
    return {
        "specversion": "1.0",
        "id": _new_id(),
        "source": EVENT_SOURCE,
        "type": EVENT_TYPE,
        "time": datetime.now(UTC).isoformat()[:-6] + "Z",
        "data": make_data(index),
    }


# --------------------------------------------------------------------------- child side


@dataclass(frozen=True, kw_only=True)
class Spec:
    """One measurement: what a child process runs."""

    kind: str  # baseline, per-event, reactor, paced, fill, memory, contention
    level: str = "full"
    loop: str = "asyncio"
    events: int = 0
    batch: int = BATCH
    publishers: int = PUBLISHERS
    rate: float = 0.0
    directory: str = ""
    path: str = ""
    backlog: int = 0
    window: int = 0
    seconds: float = 0.0
    timeout: float = 300.0
    ablate: str = ""  # one of ABLATIONS (breakdown runs): what a reactor run leaves out
    profile: str = ""  # a reactor run writes <profile>.loop.prof and <profile>.journal.prof

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
    """Per-consumer counts and index sums of the events with an index below ``limit``."""

    def __init__(self, k: int, limit: int) -> None:
        """Prepare counters.

        :param k: number of consumers.
        :param limit: only events with a lower index are counted; each consumer must see
            each of them exactly once.
        """
        self.k = k
        self.limit = limit
        self.counts = [0] * k
        self.sums = [0] * k
        self.others = 0  # deliveries of events at or above the limit
        self.done: anyio.Event | None = None  # set once every consumer saw every counted event

    def progress(self) -> int:
        """Events every consumer has seen (the slowest consumer's count)."""
        return min(self.counts)

    def problems(self) -> list[str]:
        """Describe every consumer that did not see every counted event exactly once.

        :return: human-readable problems; empty when the run is correct.
        """
        expected = self.limit * (self.limit - 1) // 2
        return [
            f"consumer {i}: {count} of {self.limit} events (index sum {total}, expected {expected})"
            for i, (count, total) in enumerate(zip(self.counts, self.sums, strict=True))
            if count != self.limit or total != expected
        ]


def _plain_handler(i: int, tally: Tally) -> Callable[[dict[str, Any]], None]:
    counts, sums = tally.counts, tally.sums

    def handle(event: dict[str, Any]) -> None:
        counts[i] += 1
        sums[i] += event["data"]["index"]

    return handle


def _async_handler(i: int, tally: Tally) -> Callable[[Event], Any]:
    counts, sums, limit = tally.counts, tally.sums, tally.limit

    async def handle(event: Event) -> None:
        index = event.data["index"]
        if index < limit:
            counts[i] += 1
            sums[i] += index
            if counts[i] == limit and tally.done is not None and tally.progress() >= limit:
                tally.done.set()
        else:
            tally.others += 1

    return handle


def _distribution(values: Sequence[float], prefix: str) -> dict[str, float]:
    """p50, p99 and max of *values* (seconds) in milliseconds, keys prefixed; 0 if none."""
    ordered = sorted(values) or [0.0]
    return {
        f"{prefix}_p50_ms": h.percentile(ordered, 0.50) * 1e3,
        f"{prefix}_p99_ms": h.percentile(ordered, 0.99) * 1e3,
        f"{prefix}_max_ms": ordered[-1] * 1e3,
    }


class LagMonitor:
    """A task that sleeps :data:`LAG_INTERVAL` in a loop and records how late it wakes."""

    def __init__(self) -> None:
        """Prepare an idle monitor."""
        self.samples: list[float] = []
        self.recording = False

    async def run(self) -> None:
        """Sleep and record until cancelled; samples count only while :attr:`recording`."""
        clock = time.perf_counter
        interval = LAG_INTERVAL
        record = self.samples.append
        while True:
            t0 = clock()
            await anyio.sleep(interval)
            if self.recording:
                record(max(0.0, clock() - t0 - interval))

    def summary(self) -> dict[str, float]:
        """Loop-lag figures in milliseconds, and how many wake-ups were over the target."""
        out = _distribution(self.samples, "lag")
        out["lag_over_target"] = sum(1 for x in self.samples if x * 1e3 > TARGET_LAG_MS)
        out["lag_samples"] = len(self.samples)
        return out


def _machine_busy() -> float:
    """Seconds of CPU time all cores have spent busy since boot (``/proc/stat``), or NaN."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = stat.readline().split()[1:9]
    except OSError:
        return float("nan")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields)
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class Others:
    """CPU used by everything but this process (other processes, kernel threads) meanwhile.

    Started at the beginning of a timed section; :meth:`share` is that CPU time over the
    wall time, in cores. A share well above the kernel's own I/O work means another
    process competed with the measurement: the run is noisy and is repeated.
    """

    def __init__(self) -> None:
        """Take the starting counters."""
        self.busy = _machine_busy()
        self.cpu = time.process_time()
        self.wall = time.perf_counter()

    def share(self) -> float:
        """Cores' worth of CPU used by others since construction (NaN without /proc)."""
        wall = time.perf_counter() - self.wall
        others = (_machine_busy() - self.busy) - (time.process_time() - self.cpu)
        return max(0.0, others / wall) if wall > 0 else 0.0


def _synchronous(level: str) -> Literal["full", "normal"]:
    if level not in ("full", "normal"):
        raise ValueError(f"unknown synchronous level {level!r}")
    return "full" if level == "full" else "normal"


def _connect_baseline(path: Path, level: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {level.upper()}")
    conn.execute(
        "CREATE TABLE events (seq INTEGER PRIMARY KEY, body BLOB NOT NULL, "
        "published_at REAL NOT NULL)"
    )
    return conn


def _child_baseline(spec: Spec) -> dict[str, Any]:
    path = Path(spec.directory) / "baseline.db"
    conn = _connect_baseline(path, spec.level)
    tally = Tally(K, spec.events)
    handlers = [_plain_handler(i, tally) for i in range(K)]
    encode = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode
    decode = json.loads
    per_event = spec.kind == "per-event"
    batch, total = spec.batch, spec.events
    execute = conn.execute
    body_size = len(encode(_envelope(0)).encode())
    others = Others()
    cpu0, t0 = time.process_time(), time.perf_counter()
    done = 0
    while done < total:
        upto = min(total, done + batch)
        now = time.time()
        rows = [(encode(_envelope(i)).encode(), now) for i in range(done, upto)]
        if per_event:
            for row in rows:
                execute("BEGIN IMMEDIATE")
                execute("INSERT INTO events (body, published_at) VALUES (?, ?)", row)
                execute("COMMIT")
        else:
            execute("BEGIN IMMEDIATE")
            conn.executemany("INSERT INTO events (body, published_at) VALUES (?, ?)", rows)
            execute("COMMIT")
        done = upto
        claimed = execute("SELECT seq, body FROM events ORDER BY seq LIMIT ?", (batch,)).fetchall()
        for _, body in claimed:
            event = decode(body)
            for handle in handlers:
                handle(event)
        execute("BEGIN IMMEDIATE")
        execute("DELETE FROM events WHERE seq BETWEEN ? AND ?", (claimed[0][0], claimed[-1][0]))
        execute("COMMIT")
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    others_share = others.share()
    left = execute("SELECT count(*) FROM events").fetchone()[0]
    conn.close()
    problems = tally.problems()
    if left:
        problems.append(f"{left} events left in the table")
    if problems:
        return {"error": "lost deliveries: " + "; ".join(problems[:4])}
    return {
        "events": total,
        "elapsed": elapsed,
        "events_per_s": total / elapsed,
        "cpu_share": cpu / elapsed,
        "cpu_us": cpu / total * 1e6,
        "others_share": others_share,
        "body_bytes": body_size,
    }


class CountingQueue(SQLiteQueue):
    """``SQLiteQueue`` that counts committed acknowledgements (the end of an event).

    The dispatcher reports settlements through ``settle()`` (acknowledgements and
    progress in one commit); ``ack()`` is counted too, for a dispatcher that calls it.
    """

    def __init__(self, path: str | os.PathLike[str], *, expected: int, **options: Any) -> None:
        """Open nothing yet; see :class:`SQLiteQueue`.

        :param path: the database file.
        :param expected: acknowledgements after which :attr:`done` is set.
        :param options: keyword arguments of :class:`SQLiteQueue`.
        """
        super().__init__(path, **options)
        self.expected = expected
        self.acked = 0
        self.acked_at = 0.0
        self.done: anyio.Event | None = None
        self._settling = False

    def _count(self, n: int) -> None:
        self.acked += n
        if self.acked >= self.expected and not self.acked_at:
            self.acked_at = time.perf_counter()
            if self.done is not None:
                self.done.set()

    async def settle(
        self, done: Sequence[Received], progress: Sequence[tuple[Received, str]]
    ) -> None:
        """Settle as the base class does (returns once committed), then count."""
        self._settling = True
        try:
            await super().settle(done, progress)
        finally:
            self._settling = False
        self._count(len(done))

    async def ack(self, received: Sequence[Received]) -> None:
        """Acknowledge as the base class does (returns once committed), then count."""
        await super().ack(received)
        if not self._settling:
            self._count(len(received))


class JournalMeter:
    """The journal's side of a reactor run: the worker thread's CPU time in commits, and
    how many there were; with ``--profile``, a cProfile of them; for the breakdown,
    parts of the durable path left out.

    It wraps private methods of the queue (``Journal.commit``, ``SQLiteQueue._encode``) for
    the time of a run: the benchmark's business, never the library's.
    """

    def __init__(self, spec: Spec) -> None:
        """Prepare to instrument a run of *spec* (see :meth:`install`).

        :param spec: the run; its ``ablate`` and ``profile`` say what to do.
        """
        self.spec = spec
        self.cpu = 0.0
        self.commits = 0
        self.profiler: Any = None

    @contextlib.contextmanager
    def install(self) -> Iterator[None]:
        """Wrap the queue's commit (and encoding) while the block runs."""
        from reactor.queues.sqlite import _journal, _queue

        commit = _journal.Journal.commit
        encode = _queue.SQLiteQueue._encode
        skip_sql = self.spec.ablate in ("no-sql", "no-sql-no-json")
        if self.spec.profile:
            import cProfile

            self.profiler = cProfile.Profile()
        profiler = self.profiler

        def measured(journal: Any, *args: Any) -> Any:
            cpu0 = time.thread_time()
            if profiler is not None:
                profiler.enable()
            try:
                return None if skip_sql else commit(journal, *args)
            finally:
                if profiler is not None:
                    profiler.disable()
                self.cpu += time.thread_time() - cpu0
                self.commits += 1

        setattr(_journal.Journal, "commit", measured)  # noqa: B010 - a private method
        if self.spec.ablate == "no-sql-no-json":
            size = len(Event(type=EVENT_TYPE, source=EVENT_SOURCE, data=make_data(0)).to_json())
            body = b" " * size
            setattr(_queue.SQLiteQueue, "_encode", lambda queue, event: body)  # noqa: B010
        try:
            yield
        finally:
            setattr(_journal.Journal, "commit", commit)  # noqa: B010
            setattr(_queue.SQLiteQueue, "_encode", encode)  # noqa: B010


async def _wait_done(done: anyio.Event, progress: Callable[[], int], limit: float) -> bool:
    """Wait for *done*; give up after *limit* s, or after STALL_SECONDS without progress."""
    return await h.wait_for(done, progress, limit, STALL_SECONDS)


def _child_reactor(spec: Spec) -> dict[str, Any]:
    """Saturated (``reactor``) or paced (``paced``) publishing into an app on a fresh file."""
    paced = spec.kind == "paced"
    path = Path(spec.directory) / "queue.db"
    total = spec.events
    tally = Tally(K, total)
    handlers = [_async_handler(i, tally) for i in range(K)]
    monitor = LagMonitor()
    publish_times: list[float] = []
    out: dict[str, Any] = {}
    meter = JournalMeter(spec)
    in_memory = spec.ablate == "memory"

    async def main() -> None:
        queue = CountingQueue(path, expected=total, synchronous=_synchronous(spec.level))
        done = queue.done = anyio.Event()
        if in_memory:
            # The end is the last handler call: there is nothing to acknowledge.
            done = tally.done = anyio.Event()
        app = Reactor(queue=MemoryQueue() if in_memory else queue, source=EVENT_SOURCE)
        for i, handler in enumerate(handlers):
            app.subscribe(EVENT_TYPE, handler, name=f"h{i}")
        clock = time.perf_counter
        period = 1.0 / spec.rate if paced else 0.0
        stride = spec.publishers

        async def publisher(first: int, start: float) -> None:
            record = publish_times.append
            publish = app.publish
            for i in range(first, total, stride):
                if paced:
                    delay = start + i * period - clock()
                    if delay > 0:
                        await anyio.sleep(delay)
                t = clock()
                await publish(EVENT_TYPE, make_data(i))
                record(clock() - t)

        t_open = clock()
        async with app:
            out["open_s"] = clock() - t_open
            async with anyio.create_task_group() as tg:
                tg.start_soon(monitor.run)
                await anyio.sleep(0.05)  # the monitor and the dispatcher are waiting
                cpu0 = time.process_time()
                others = Others()
                monitor.recording = True
                start = clock()
                async with anyio.create_task_group() as publishers:
                    for first in range(stride):
                        publishers.start_soon(publisher, first, start)
                out["published_s"] = clock() - start
                out["finished"] = await _wait_done(
                    done, lambda: queue.acked + tally.progress(), spec.timeout
                )
                monitor.recording = False
                out["elapsed"] = (queue.acked_at or clock()) - start
                out["cpu_share"] = (time.process_time() - cpu0) / out["elapsed"]
                out["others_share"] = others.share()
                tg.cancel_scope.cancel()
            t_close = clock()
        out["close_s"] = clock() - t_close
        out["acked"] = total if in_memory else queue.acked

    loop_profiler: Any = None
    with contextlib.ExitStack() as stack:
        if spec.ablate or spec.profile:
            stack.enter_context(meter.install())
        if spec.profile:
            import cProfile

            loop_profiler = cProfile.Profile()
            loop_profiler.enable()
            stack.callback(loop_profiler.disable)
        h.run_anyio(spec.loop, main)
    if spec.profile:
        loop_profiler.dump_stats(f"{spec.profile}.loop.prof")
        meter.profiler.dump_stats(f"{spec.profile}.journal.prof")
    problems = tally.problems()
    if not out.get("finished") or problems or tally.others:
        head = f"lost deliveries: {out.get('acked', 0)} of {total} acked"
        return {"error": "; ".join([head, *problems[:4]])}
    result = {
        "events": total,
        "elapsed": out["elapsed"],
        "events_per_s": total / out["elapsed"],
        "cpu_share": out["cpu_share"],
        "cpu_us": out["cpu_share"] * out["elapsed"] / total * 1e6,
        "others_share": out["others_share"],
        "open_s": out["open_s"],
        "close_s": out["close_s"],
        **monitor.summary(),
        **_distribution(publish_times, "publish"),
    }
    if meter.commits:
        # Over the whole run (the few commits of opening and closing included).
        result["journal_cpu_us"] = meter.cpu / total * 1e6
        result["commits"] = meter.commits
    if paced:
        result["target_rate"] = spec.rate
    return result


def _child_fill(spec: Spec) -> dict[str, Any]:
    """Create a queue file with ``spec.backlog`` undelivered events in the queue's format."""
    path = Path(spec.path)
    t0 = time.perf_counter()

    async def create() -> None:
        async with SQLiteQueue(path, check="none"):
            pass

    anyio.run(create)
    conn = sqlite3.connect(path, isolation_level=None)
    # The fill is set-up, not measured: no fsync per transaction.
    conn.execute("PRAGMA synchronous = OFF")
    seq = 0
    now = time.time()
    while seq < spec.backlog:
        rows = []
        for index in range(seq, min(spec.backlog, seq + FILL_CHUNK)):
            body = Event(
                type=EVENT_TYPE,
                source=EVENT_SOURCE,
                id=f"backlog-{index}",
                time=EVENT_TIME,
                data=make_data(index),
            ).to_json()
            # The queue's row format (schema version 1) and checksum (the CRC-32 of the
            # body, for a row meant for every consumer): the rows publish() writes. A row
            # written wrong here would be read back as damaged, never delivered.
            rows.append((index + 1, body, None, now, zlib.crc32(body)))
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(FILL_INSERT, rows)
        conn.execute("COMMIT")
        seq += len(rows)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return {
        "events": spec.backlog,
        "elapsed": time.perf_counter() - t0,
        "file_mb": path.stat().st_size / MIB,
    }


def _evict(path: Path) -> bool:
    """Drop *path*'s pages from the OS page cache (this file only); False if unsupported."""
    fadvise = getattr(os, "posix_fadvise", None)
    if fadvise is None:
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # dirty pages cannot be dropped
        fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return True


class WindowedRss(h.RssSampler):
    """The harness's sampler (every :data:`RSS_SAMPLE_INTERVAL`), with a peak per window.

    Window *n* holds the samples taken while the consumers had handled between ``n *
    window`` and ``(n + 1) * window`` events; later samples count in the last window.
    """

    def __init__(self, progress: Callable[[], int], window: int, windows: int) -> None:
        """Prepare the sampler.

        :param progress: events every consumer has handled so far.
        :param window: events per window.
        :param windows: number of windows.
        """
        super().__init__(RSS_SAMPLE_INTERVAL)
        self._progress = progress
        self._window = window
        self.peaks = [0] * windows

    def _sample(self) -> None:
        last = len(self.peaks) - 1
        while True:
            slot = min(last, self._progress() // self._window)
            self.peaks[slot] = max(self.peaks[slot], self.rss())
            self.samples += 1
            if self._stop.wait(self._interval):
                return


def _child_memory(spec: Spec) -> dict[str, Any]:
    """Open a queue file (with or without a backlog) and deliver 2 windows of events.

    With ``spec.publishers`` > 0, that many tasks publish new events all along.
    """
    path = Path(spec.path)
    backlog, window = spec.backlog, spec.window
    # Backlog events have indexes 0..backlog-1 and are delivered first, oldest first; new
    # events get indexes from `backlog` on. Each consumer must see each of the indexes
    # below 2 windows exactly once (with a backlog, these are all backlog events).
    first_new = backlog
    tally = Tally(K, 2 * window)
    handlers = [_async_handler(i, tally) for i in range(K)]
    sampler = WindowedRss(tally.progress, window, 2)
    out: dict[str, Any] = {"rss_start_mb": sampler.rss() / MIB}

    async def main() -> None:
        clock = time.perf_counter
        queue = SQLiteQueue(path, synchronous=_synchronous(spec.level))
        if backlog:
            out["evicted"] = _evict(path)
            t = clock()
            await queue.open()
            out["open_cold_s"] = clock() - t
            await queue.close()
        t = clock()
        await queue.open()  # the app's own open() then finds it open
        out["open_warm_s"] = clock() - t
        out["depth_at_open"] = queue.statistics().depth
        out["rss_open_mb"] = sampler.rss() / MIB
        app = Reactor(queue=queue, source=EVENT_SOURCE)
        for i, handler in enumerate(handlers):
            app.subscribe(EVENT_TYPE, handler, name=f"h{i}")
        done = tally.done = anyio.Event()
        stride = spec.publishers

        async def publisher(first: int) -> None:
            i = first_new + first
            # Checked, not left to the cancellation: a publish() that takes the queue's
            # writer role runs its commit shielded and is no cancellation point, so a
            # lone publisher looping on it never sees the cancellation.
            while not done.is_set():
                await app.publish(EVENT_TYPE, make_data(i))
                i += stride

        # Leaving by cancellation: a graceful stop would drain the whole backlog.
        with anyio.CancelScope() as scope:
            async with app:
                sampler.start()
                start = clock()
                async with anyio.create_task_group() as tg:
                    for first in range(stride):
                        tg.start_soon(publisher, first)
                    out["finished"] = await _wait_done(done, tally.progress, spec.timeout)
                    out["elapsed"] = clock() - start
                    out["depth_at_end"] = queue.statistics().depth
                    sampler.stop()
                    scope.cancel()

    h.run_anyio(spec.loop, main)
    problems = tally.problems()
    if not out.get("finished") or problems:
        return {"error": "; ".join([f"stalled at {tally.progress()} events", *problems[:4]])}
    first, second = (peak / MIB for peak in sampler.peaks)
    return {
        "backlog": backlog,
        "window": window,
        "open_cold_s": out.get("open_cold_s"),
        "open_warm_s": out["open_warm_s"],
        "evicted": out.get("evicted", False),
        "depth_at_open": out["depth_at_open"],
        "depth_at_end": out["depth_at_end"],
        "rss_start_mb": out["rss_start_mb"],
        "rss_open_mb": out["rss_open_mb"],
        "peak_first_mb": first,
        "peak_second_mb": second,
        "growth_mb": second - first,
        "maxrss_mb": h.max_rss_mb(),
        "samples": sampler.samples,
        "elapsed": out["elapsed"],
        "events_per_s": 2 * window / out["elapsed"],
        "publishers": spec.publishers,
    }


def _child_contention(spec: Spec) -> dict[str, Any]:
    """Consumers draining a backlog while publishers publish: both rates, for a while."""
    path = Path(spec.path)
    tally = Tally(K, spec.backlog)
    handlers = [_async_handler(i, tally) for i in range(K)]
    out: dict[str, Any] = {}
    published = [0]

    async def main() -> None:
        queue = SQLiteQueue(path, synchronous=_synchronous(spec.level), check="none")
        app = Reactor(queue=queue, source=EVENT_SOURCE)
        for i, handler in enumerate(handlers):
            app.subscribe(EVENT_TYPE, handler, name=f"h{i}")
        stop = False

        async def publisher(first: int) -> None:
            i = spec.backlog + first
            while not stop:  # checked: see _child_memory
                await app.publish(EVENT_TYPE, make_data(i))
                published[0] += 1
                i += spec.publishers

        with anyio.CancelScope() as scope:
            async with app:
                out["depth_at_start"] = queue.statistics().depth
                async with anyio.create_task_group() as tg:
                    for first in range(spec.publishers):
                        tg.start_soon(publisher, first)
                    delivered0 = sum(tally.counts) + tally.others
                    await anyio.sleep(spec.seconds)
                    out["delivered"] = (sum(tally.counts) + tally.others - delivered0) / K
                    out["published"] = published[0]
                    out["depth_at_end"] = queue.statistics().depth
                    stop = True
                    scope.cancel()

    h.run_anyio(spec.loop, main)
    return {
        "seconds": spec.seconds,
        "publishers": spec.publishers,
        "delivered_per_s": out["delivered"] / spec.seconds,
        "published_per_s": out["published"] / spec.seconds,
        "depth_at_start": out["depth_at_start"],
        "depth_at_end": out["depth_at_end"],
    }


def child_main(spec_json: str) -> int:
    """Run one measurement and print its JSON result line.

    :param spec_json: a :class:`Spec` as JSON.
    :return: the process exit code.
    """
    spec = Spec.from_json(spec_json)
    try:
        if spec.kind in ("baseline", "per-event"):
            result = _child_baseline(spec)
        elif spec.kind in ("reactor", "paced"):
            result = _child_reactor(spec)
        elif spec.kind == "fill":
            result = _child_fill(spec)
        elif spec.kind == "memory":
            result = _child_memory(spec)
        elif spec.kind == "contention":
            result = _child_contention(spec)
        else:
            raise ValueError(f"unknown kind {spec.kind!r}")
    except Exception as exc:
        result = {"error": f"{type(exc).__name__}: {exc}"}
    h.print_result(result)
    return 0


# -------------------------------------------------------------------------- parent side


def run_child(spec: Spec, timeout: float) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter, in a fresh temporary directory.

    :param spec: what to measure; its ``directory`` is the parent of the temporary one.
    :param timeout: seconds before the child is killed and the run reported as an error.
    :return: the child's result; has an ``error`` key if it failed.
    """
    scratch = Path(tempfile.mkdtemp(prefix="reactor-bench-", dir=spec.directory or None))
    spec_json = replace(spec, directory=str(scratch)).to_json()
    try:
        # From the repository root, where ``-m benchmarks.sqlite`` resolves.
        result = h.run_child(CHILD_MODULE, spec_json, timeout, cwd=ROOT)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if not isinstance(result, dict):
        return {"error": f"child returned a {type(result).__name__}, not an object"}
    return result


def _commit_id() -> str:
    """The repository's HEAD, marked when reactor/ has uncommitted changes."""
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


def environment(directory: str) -> dict[str, Any]:
    """Describe the machine, the software and the file system the benchmark runs on.

    :param directory: where the temporary files go.
    :return: a JSON-ready description.
    """
    env = h.environment(
        DISTRIBUTIONS,
        commit=_commit_id(),
        directory=directory,
        filesystem=_filesystem(directory),
    )
    env["versions"]["sqlite"] = sqlite3.sqlite_version
    return env


def _filesystem(directory: str) -> str:
    """The type and device of the file system holding *directory* (from /proc/mounts)."""
    best, kind = "", "unknown"
    target = os.path.realpath(directory)
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            device, mount, fstype, *_ = line.split()
            if (target == mount or target.startswith(mount.rstrip("/") + "/")) and len(
                mount
            ) >= len(best):
                best, kind = mount, f"{fstype} on {device} (mounted at {mount})"
    return kind


@dataclass(kw_only=True)
class Config:
    """Sizes and repetitions of one benchmark run."""

    quick: bool
    repeat: int
    levels: list[str]
    loops: list[str]
    workloads: list[str]
    events: int
    batch: int
    publishers: int
    backlog: int
    window: int
    directory: str
    tmpfs: bool = field(default=False)
    profile: str = ""  # a directory for the cProfile statistics of reactor runs

    def per_event_events(self, level: str) -> int:
        """Events in a one-commit-per-event baseline run at *level*.

        :param level: the synchronous level.
        :return: the event count.
        """
        n = PER_EVENT_EVENTS[level] // (10 if self.quick else 1)
        return max(self.batch, min(self.events, n))

    def paced_seconds(self) -> float:
        """Duration of a paced run."""
        return PACED_SECONDS_QUICK if self.quick else PACED_SECONDS


Plan = Iterator[tuple[str, str, str, int, Spec, float]]


def _plan(cfg: Config) -> Plan:
    """Yield (workload, level, system, rep, spec, timeout) in execution order."""
    # name -> (kind, loop); the names are what rotates from one repetition to the next.
    systems: dict[str, tuple[str, str]] = {}
    if "throughput" in cfg.workloads:
        systems["baseline"] = ("baseline", "-")
        systems["reactor asyncio"] = ("reactor", "asyncio")
        systems["per-event"] = ("per-event", "-")
        systems |= {f"reactor {loop}": ("reactor", loop) for loop in cfg.loops if loop != "asyncio"}
    if "paced" in cfg.workloads:
        systems["paced"] = ("paced", "asyncio")
    pair = {"baseline": ("baseline", "-"), "reactor asyncio": ("reactor", "asyncio")}
    for rep in range(cfg.repeat):
        for level in cfg.levels:
            for name in h.rotated(list(systems), rep):
                kind, loop = systems[name]
                yield _spec(
                    cfg, "throughput" if kind != "paced" else "paced", level, kind, loop, rep
                )
        if "breakdown" in cfg.workloads:
            for level in cfg.levels:
                for name in h.rotated(list(ABLATIONS), rep):
                    workload, level_, _, rep_, spec, timeout = _spec(
                        cfg, "breakdown", level, "reactor", "asyncio", rep
                    )
                    profile = f"{spec.profile}-{name}" if spec.profile else ""
                    spec = replace(spec, ablate=name, profile=profile)
                    yield workload, level_, name, rep_, spec, timeout
        if cfg.tmpfs:
            for name in h.rotated(list(pair), rep):
                kind, loop = pair[name]
                workload, level, system, rep_, spec, timeout = _spec(
                    cfg, "tmpfs", "full", kind, loop, rep
                )
                yield workload, level, system, rep_, replace(spec, directory=str(TMPFS)), timeout


def _spec(
    cfg: Config, workload: str, level: str, kind: str, loop: str, rep: int
) -> tuple[str, str, str, int, Spec, float]:
    system = kind if loop == "-" else f"{kind} {loop}"
    if kind == "paced":
        events = int(PACED_RATE * cfg.paced_seconds())
        spec = Spec(
            kind="paced",
            level=level,
            loop=loop,
            events=events,
            publishers=PACED_PUBLISHERS,
            rate=PACED_RATE,
            directory=cfg.directory,
            timeout=120,
        )
        return workload, level, "reactor asyncio", rep, spec, 180.0
    events = cfg.per_event_events(level) if kind == "per-event" else cfg.events
    profile = ""
    if cfg.profile and kind == "reactor":
        profile = str(Path(cfg.profile) / f"{workload}-{level}-{loop}-rep{rep + 1}")
    spec = Spec(
        kind=kind,
        level=level,
        loop="asyncio" if loop == "-" else loop,
        events=events,
        batch=cfg.batch,
        publishers=cfg.publishers,
        directory=cfg.directory,
        timeout=600,
        profile=profile,
    )
    return workload, level, system, rep, spec, 900.0


Results = dict[tuple[str, str], dict[str, list[dict[str, Any]]]]

METRICS = (
    "events_per_s",
    "cpu_share",
    "cpu_us",
    "journal_cpu_us",
    "commits",
    "others_share",
    "lag_p50_ms",
    "lag_p99_ms",
    "lag_max_ms",
    "lag_over_target",
    "publish_p50_ms",
    "publish_p99_ms",
    "publish_max_ms",
    "open_s",
    "close_s",
    "body_bytes",
)


def summarise(results: Results) -> dict[str, Any]:
    """Reduce raw child results to medians, ranges and pairwise ratios to the baseline.

    :param results: ``{(workload, level): {system: [result per repetition]}}``.
    :return: ``{"workload/level": {...}}`` summaries.
    """
    summary: dict[str, Any] = {}
    for (workload, level), by_system in results.items():
        cell: dict[str, Any] = {"workload": workload, "level": level, "systems": {}}
        base = by_system.get("baseline", [])
        for system, runs in by_system.items():
            ok = [r for r in runs if "error" not in r]
            entry: dict[str, Any] = {"errors": [r["error"] for r in runs if "error" in r]}
            for metric in METRICS:
                entry[metric] = h.stats([r[metric] for r in ok if r.get(metric) is not None])
            pairs = [
                a["events_per_s"] / b["events_per_s"]
                for a, b in zip(runs, base, strict=False)
                if "error" not in a and "error" not in b
            ]
            entry["ratio"] = h.stats(pairs) if system != "baseline" else None
            # The same pairs by CPU time per event, which the machine's other load moves
            # less than the rates (it takes the CPU away, it rarely makes work costlier).
            by_cpu = [
                b["cpu_us"] / a["cpu_us"]
                for a, b in zip(runs, base, strict=False)
                if "error" not in a and "error" not in b and a.get("cpu_us") and b.get("cpu_us")
            ]
            entry["cpu_ratio"] = h.stats(by_cpu) if system != "baseline" else None
            cell["systems"][system] = entry
        summary[f"{workload}/{level}"] = cell
    return summary


def evaluate_targets(
    summary: dict[str, Any], memory: dict[str, dict[str, Any]] | None
) -> list[dict[str, Any]]:
    """Check the targets (each entry names its own).

    :param summary: output of :func:`summarise`.
    :param memory: the memory runs (``backlog`` and ``empty``), if measured.
    :return: one entry per target with value, text and ``PASS``/``MISS``/``n/a``.
    """
    out: list[dict[str, Any]] = []

    def add(name: str, value: float | None, text: str, ok: bool | None) -> None:
        status = "n/a" if ok is None else ("PASS" if ok else "MISS")
        out.append({"target": name, "value": value, "text": text, "status": status})

    for level in LEVELS:
        cell = summary.get(f"throughput/{level}")
        if cell is None:
            continue
        entry = cell["systems"].get("reactor asyncio", {})
        ratio = entry.get("ratio")
        value = None if ratio is None else float(ratio["median"])
        add(
            f"{level}: reactor/baseline events/s >= {TARGET_RATIO:g}x",
            value,
            "-" if value is None else f"{value:.2f}x",
            None if value is None else value >= TARGET_RATIO,
        )
        lag = entry.get("lag_max_ms")
        worst = None if lag is None else float(lag["max"])
        add(
            f"{level}: loop lag max < {TARGET_LAG_MS:g} ms (saturated run, every repetition)",
            worst,
            "-" if worst is None else f"{worst:.1f} ms",
            None if worst is None else worst < TARGET_LAG_MS,
        )
    for level in LEVELS:
        cell = summary.get(f"paced/{level}")
        if cell is None:
            continue
        lag = cell["systems"].get("reactor asyncio", {}).get("lag_max_ms")
        worst = None if lag is None else float(lag["max"])
        add(
            f"{level}: loop lag max < {TARGET_LAG_MS:g} ms at {PACED_RATE:,.0f} events/s",
            worst,
            "-" if worst is None else f"{worst:.1f} ms",
            None if worst is None else worst < TARGET_LAG_MS,
        )
    if memory is not None:
        run = memory.get("backlog", {})
        growth = run.get("growth_mb")
        add(
            f"memory flat with the backlog: 2nd-window peak - 1st-window peak < {TARGET_FLAT_MB:g} MB",
            growth,
            "-" if growth is None else f"{growth:+.1f} MB",
            None if growth is None else growth < TARGET_FLAT_MB,
        )
    return out


# ------------------------------------------------------------------------------ report


def _fmt_num(value: dict[str, float] | None, unit: str = "", digits: int = 0) -> str:
    """:func:`h.fmt_num`, but ``-`` where a system lacks the metric (baseline: no loop lag)."""
    return "-" if value is None else h.fmt_num(value, unit, digits)


def _system_order(system: str) -> tuple[int, str]:
    order = ["baseline", "per-event", "reactor asyncio", "reactor uvloop", "reactor trio"]
    return (order.index(system) if system in order else len(order), system)


def _label(system: str, cfg: Config, level: str) -> str:
    if system == "baseline":
        return f"baseline sqlite3, batches of {cfg.batch}"
    if system == "per-event":
        return f"sqlite3, 1 commit per event ({cfg.per_event_events(level):,} events)"
    return system


def breakdown(cell: dict[str, Any], events: int) -> dict[str, float] | None:
    """Split the CPU time per event of a ``breakdown`` cell by part.

    :param cell: the summary of one level's breakdown runs.
    :param events: events per run.
    :return: microseconds per event by part (the lowest of the repetitions of each
        variant), or ``None`` when a variant is missing.
    """
    lowest: dict[str, float] = {}
    for name in ABLATIONS:
        cpu = cell["systems"].get(name, {}).get("cpu_us")
        if cpu is None:
            return None
        lowest[name] = float(cpu["min"])
    full = cell["systems"]["full"]
    journal, commits = full.get("journal_cpu_us"), full.get("commits")
    return {
        "sql": lowest["full"] - lowest["no-sql"],
        "worker_thread": float("nan") if journal is None else float(journal["min"]),
        "json": lowest["no-sql"] - lowest["no-sql-no-json"],
        "queue_loop": lowest["no-sql-no-json"] - lowest["memory"],
        "core": lowest["memory"],
        "total": lowest["full"],
        "commits_per_1000": float("nan")
        if commits is None
        else float(commits["median"]) / events * 1000,
    }


def _report_breakdown(cfg: Config, summary: dict[str, Any], *, plain: bool) -> None:
    cells = {
        summary[key]["level"]: breakdown(summary[key], cfg.events)
        for key in summary
        if summary[key]["workload"] == "breakdown"
    }
    if not cells:
        return
    levels = list(cells)
    table = h.Table(
        f"where the CPU time of an event goes (reactor asyncio, {cfg.events:,} events, "
        f"lowest of {cfg.repeat} per variant), us per event",
        ["part", *levels],
    )
    rows = (
        ("the SQL (full - no-sql): the worker thread, and the loop's share of it", "sql", 1),
        (
            "  of which the worker thread's CPU time, measured around each commit",
            "worker_thread",
            1,
        ),
        ("JSON encoding: no-sql - no-sql-no-json", "json", 1),
        (
            "the queue on the loop (thread hops, writer role, waiting publishers, "
            "settlement): no-sql-no-json - memory",
            "queue_loop",
            1,
        ),
        ("reactor on the in-memory queue (event, routing, 4 handlers)", "core", 1),
        ("total (reactor on SQLiteQueue)", "total", 1),
        ("commits per 1,000 events", "commits_per_1000", 1),
    )
    for label, key, digits in rows:
        values = []
        for level in levels:
            parts = cells[level]
            values.append("-" if parts is None else f"{parts[key]:.{digits}f}")
        table.add(label, *values)
    table.render(plain=plain)


def report(
    env: dict[str, Any],
    cfg: Config,
    summary: dict[str, Any],
    memory: dict[str, dict[str, Any]] | None,
    targets: list[dict[str, Any]],
    *,
    plain: bool = False,
) -> None:
    """Print the environment header, the tables and the targets.

    :param env: output of :func:`environment`.
    :param cfg: the run's configuration.
    :param summary: output of :func:`summarise`.
    :param memory: the memory runs, if measured.
    :param targets: output of :func:`evaluate_targets`.
    :param plain: plain-text tables even if rich is installed.
    """
    for line in h.environment_lines(env):
        print(line)
    print(f"reactor commit {env['commit']}")
    if env.get("commit_after", env["commit"]) != env["commit"]:
        print(f"WARNING: reactor changed during the run, now at {env['commit_after']}")
    print(f"files in {env['directory']}: {env['filesystem']}")
    print(
        f"mode: {'quick' if cfg.quick else 'full'}, repeat={cfg.repeat}, K={K} consumers, "
        f"{cfg.events:,} events per run, {cfg.publishers} publishers; cells are median "
        "(min-max) over repetitions; ratios are per-repetition pairs, then median"
    )
    headers = [
        "sync",
        "system",
        "events/s",
        "vs baseline",
        "CPU us/event",
        "by CPU",
        "loop lag max ms",
        "lag p99 ms",
        "publish p50 ms",
        "publish p99 ms",
        "CPU/wall",
        "others cores",
    ]
    for workload, title in (
        ("throughput", "publish -> handled by 4 consumers -> acked (deleted), events/s"),
        ("tmpfs", f"same on tmpfs ({TMPFS}: fsync is free), synchronous=full"),
    ):
        cells = [summary[key] for key in summary if summary[key]["workload"] == workload]
        if not cells:
            continue
        table = h.Table(title, headers)
        for cell in cells:
            level = cell["level"]
            for system in sorted(cell["systems"], key=_system_order):
                s = cell["systems"][system]
                table.add(
                    level,
                    _label(system, cfg, level),
                    h.fmt_rate(s["events_per_s"]),
                    "1.00x" if system == "baseline" else _fmt_num(s["ratio"], "x", 2),
                    _fmt_num(s["cpu_us"], "", 1),
                    "1.00x" if system == "baseline" else _fmt_num(s["cpu_ratio"], "x", 2),
                    _fmt_num(s["lag_max_ms"], "", 1),
                    _fmt_num(s["lag_p99_ms"], "", 1),
                    _fmt_num(s["publish_p50_ms"], "", 1),
                    _fmt_num(s["publish_p99_ms"], "", 1),
                    _fmt_num(s["cpu_share"], "", 2),
                    _fmt_num(s["others_share"], "", 2),
                )
        table.render(plain=plain)
    _report_breakdown(cfg, summary, plain=plain)
    paced = [summary[key] for key in summary if summary[key]["workload"] == "paced"]
    if paced:
        table = h.Table(
            f"paced: {PACED_RATE:,.0f} events/s for {cfg.paced_seconds():g} s, "
            f"{PACED_PUBLISHERS} publishers, reactor on asyncio",
            [
                "sync",
                "achieved events/s",
                "loop lag p50 ms",
                "lag p99 ms",
                "lag max ms",
                f"wake-ups > {TARGET_LAG_MS:g} ms",
                "publish p50 ms",
                "publish p99 ms",
                "publish max ms",
            ],
        )
        for cell in paced:
            s = cell["systems"]["reactor asyncio"]
            table.add(
                cell["level"],
                h.fmt_rate(s["events_per_s"]),
                _fmt_num(s["lag_p50_ms"], "", 2),
                _fmt_num(s["lag_p99_ms"], "", 1),
                _fmt_num(s["lag_max_ms"], "", 1),
                _fmt_num(s["lag_over_target"]),
                _fmt_num(s["publish_p50_ms"], "", 1),
                _fmt_num(s["publish_p99_ms"], "", 1),
                _fmt_num(s["publish_max_ms"], "", 1),
            )
        table.render(plain=plain)
    if memory is not None:
        fill = memory.get("fill", {})
        if "error" in fill:
            print(f"\nERROR memory fill: {fill['error']}")
        elif fill:
            print(
                f"\nbacklog file: {fill['events']:,} events, {fill['file_mb']:.0f} MB, "
                f"written in {fill['elapsed']:.1f} s"
            )
        table = h.Table(
            f"memory: K={K} consumers; peak RSS during the first {cfg.window:,} events "
            f"handled and during the next {cfg.window:,}",
            [
                "file",
                "publishers",
                "open() cold s",
                "open() warm s",
                "RSS after open MB",
                "peak 1st window MB",
                "peak 2nd window MB",
                "growth MB",
                "handled events/s",
                "depth at end",
            ],
        )
        for name in ("backlog", "empty"):
            run = memory.get(name)
            if run is None:
                continue
            if "error" in run:
                table.add(name, "ERROR " + str(run["error"]), *[""] * 8)
                continue
            cold = run.get("open_cold_s")
            table.add(
                f"{run['backlog']:,} events" if name == "backlog" else "empty",
                str(run["publishers"]),
                "-" if cold is None else f"{cold:.2f}",
                f"{run['open_warm_s']:.2f}",
                f"{run['rss_open_mb']:.1f}",
                f"{run['peak_first_mb']:.1f}",
                f"{run['peak_second_mb']:.1f}",
                f"{run['growth_mb']:+.1f}",
                f"{run['events_per_s']:,.0f}",
                f"{run['depth_at_end']:,}",
            )
        table.render(plain=plain)
        backlog, empty = memory.get("backlog", {}), memory.get("empty", {})
        if "peak_second_mb" in backlog and "peak_second_mb" in empty:
            print(
                "peak RSS, backlog file vs empty file: "
                f"{backlog['peak_second_mb'] - empty['peak_second_mb']:+.1f} MB"
            )
        contention = memory.get("contention")
        if contention is not None and "error" in contention:
            print(f"ERROR memory contention: {contention['error']}")
        elif contention is not None:
            print(
                f"backlog drained while {contention['publishers']} publishers publish, "
                f"{contention['seconds']:g} s: {contention['delivered_per_s']:,.0f} events/s "
                f"handled, {contention['published_per_s']:,.0f} events/s published "
                f"(depth {contention['depth_at_start']:,} -> {contention['depth_at_end']:,})"
            )
    noisy = [
        f"{cell['workload']}/{cell['level']} {name} ({entry['others_share']['max']:.2f})"
        for cell in summary.values()
        for name, entry in cell["systems"].items()
        if entry["others_share"] is not None and entry["others_share"]["max"] > NOISY_OTHERS
    ]
    if noisy:
        print(
            f"\nNOISY: other processes used more than {NOISY_OTHERS:g} cores during these "
            f"runs even after retries (worst run in parentheses): {', '.join(noisy)}"
        )
    for cell in summary.values():
        for name, entry in cell["systems"].items():
            for error in entry["errors"]:
                print(f"ERROR {cell['workload']}/{cell['level']} {name}: {error}")
    table = h.Table("Targets", ["result", "target", "value"])
    for t in targets:
        table.add(t["status"], t["target"], t["text"])
    table.render(plain=plain)


# -------------------------------------------------------------------------------- main


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.sqlite", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="10x fewer events and a 10x smaller backlog, one repetition",
    )
    parser.add_argument(
        "--json", type=Path, metavar="PATH", help="write environment, raw runs and summary here"
    )
    parser.add_argument(
        "--levels", default=",".join(LEVELS), help="comma-separated subset of full,normal"
    )
    parser.add_argument(
        "--loops",
        default=",".join(LOOPS),
        help="loops for reactor's throughput rows (asyncio always runs; it is the binding one)",
    )
    parser.add_argument(
        "--workloads",
        default=",".join(WORKLOADS),
        help="comma-separated subset of "
        + ",".join(WORKLOADS + OPTIONAL_WORKLOADS)
        + f" (default {','.join(WORKLOADS)})",
    )
    parser.add_argument(
        "--repeat", type=int, help="repetitions per measurement (default 3, --quick 1)"
    )
    parser.add_argument(
        "--events", type=int, help=f"events per throughput run (default {EVENTS:,})"
    )
    parser.add_argument(
        "--batch", type=int, default=BATCH, help=f"baseline batch size (default {BATCH})"
    )
    parser.add_argument(
        "--publishers",
        type=int,
        default=PUBLISHERS,
        help=f"concurrent publisher tasks in reactor's throughput runs (default {PUBLISHERS})",
    )
    parser.add_argument(
        "--backlog", type=int, help=f"events on disk in the memory run (default {BACKLOG:,})"
    )
    parser.add_argument(
        "--dir",
        default=tempfile.gettempdir(),
        help="directory for the temporary queue files (default: the system's temp dir); "
        "what is measured is this file system's fsync",
    )
    parser.add_argument(
        "--retry-noisy",
        type=int,
        default=2,
        metavar="N",
        help=f"re-run a measurement during which other processes used more than "
        f"{NOISY_OTHERS:g} cores, up to N times (default 2)",
    )
    parser.add_argument(
        "--plain", action="store_true", help="plain-text tables even if rich is installed"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="run every reactor throughput and breakdown run under cProfile and write "
        "<run>.loop.prof (the event loop's thread) and <run>.journal.prof (the journal's "
        "commits, in the worker thread) into DIR",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name, allowed in (
        ("levels", LEVELS),
        ("loops", LOOPS),
        ("workloads", WORKLOADS + OPTIONAL_WORKLOADS),
    ):
        chosen = [x.strip() for x in getattr(args, name).split(",") if x.strip()]
        unknown = sorted(set(chosen) - set(allowed))
        if unknown:
            parser.error(
                f"--{name}: unknown {', '.join(unknown)}; choose from {', '.join(allowed)}"
            )
        setattr(args, name, chosen)
    return args


def _available(loop: str) -> bool:
    try:
        importlib.import_module(loop)
    except ImportError:
        return False
    return True


def _noisy(result: dict[str, Any]) -> bool:
    return "error" not in result and float(result.get("others_share", 0.0)) > NOISY_OTHERS


def _brief(result: dict[str, Any]) -> str:
    if "error" in result:
        return "ERROR " + str(result["error"])
    parts = []
    if "events_per_s" in result:
        parts.append(f"{result['events_per_s']:,.0f} events/s in {result['elapsed']:.2f} s")
    if "lag_max_ms" in result:
        parts.append(f"lag max {result['lag_max_ms']:.1f} ms, p99 {result['lag_p99_ms']:.1f} ms")
    if "others_share" in result:
        parts.append(f"others {result['others_share']:.2f} cores")
    if "growth_mb" in result:
        parts.append(
            f"RSS {result['peak_first_mb']:.1f} -> {result['peak_second_mb']:.1f} MB, "
            f"open {result['open_warm_s']:.2f} s"
        )
    if "file_mb" in result:
        parts.append(f"{result['events']:,} events, {result['file_mb']:.0f} MB")
    return "; ".join(parts) or json.dumps(result)


def _run_memory(cfg: Config) -> dict[str, dict[str, Any]]:
    """Fill a backlog file; measure an app draining it, an app on an empty file, and
    consumers draining the backlog while publishers publish."""
    scratch = Path(tempfile.mkdtemp(prefix="reactor-bench-memory-", dir=cfg.directory))
    out: dict[str, dict[str, Any]] = {}

    def run(name: str, spec: Spec, timeout: float) -> None:
        out[name] = run_child(spec, timeout)
        print(f"[memory] {name}: {_brief(out[name])}", file=sys.stderr, flush=True)

    try:
        backlog_path = scratch / "backlog.db"
        budget = cfg.backlog * 100e-6 + 120
        base = Spec(kind="memory", level="full", window=cfg.window, directory=str(scratch))
        run(
            "fill",
            Spec(kind="fill", path=str(backlog_path), backlog=cfg.backlog, directory=str(scratch)),
            budget,
        )
        if "error" not in out["fill"]:
            spec = replace(
                base, path=str(backlog_path), backlog=cfg.backlog, publishers=0, timeout=budget
            )
            run("backlog", spec, budget + 60)
            spec = replace(
                base,
                kind="contention",
                path=str(backlog_path),
                backlog=cfg.backlog,
                publishers=MEMORY_PUBLISHERS,
                seconds=CONTENTION_SECONDS,
            )
            run("contention", spec, budget + 60)
        spec = replace(
            base,
            path=str(scratch / "empty.db"),
            backlog=0,
            publishers=MEMORY_PUBLISHERS,
            timeout=budget,
        )
        run("empty", spec, budget + 60)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark (or, with the hidden ``--child``, one measurement).

    :param argv: command-line arguments; ``sys.argv[1:]`` when ``None``.
    :return: the process exit code: 0, or 1 if any measurement failed.
    """
    args = _parse_args(argv)
    if args.child is not None:
        return child_main(args.child)
    loops = [loop for loop in args.loops if loop == "asyncio" or _available(loop)]
    for loop in sorted(set(args.loops) - set(loops)):
        print(f"skipping {loop}: not importable", file=sys.stderr)
    scale = 10 if args.quick else 1
    cfg = Config(
        quick=args.quick,
        repeat=args.repeat or (1 if args.quick else 3),
        levels=args.levels,
        loops=loops,
        workloads=args.workloads,
        events=args.events or EVENTS // scale,
        batch=args.batch,
        publishers=args.publishers,
        backlog=args.backlog or BACKLOG // scale,
        window=MEMORY_WINDOW // scale,
        directory=args.dir,
        tmpfs="tmpfs" in args.workloads and TMPFS.is_dir(),
        profile="" if args.profile is None else str(args.profile.resolve()),
    )
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    if cfg.backlog < 2 * cfg.window:
        cfg.window = max(1, cfg.backlog // 2)
    env = environment(cfg.directory)
    results: Results = {}
    raw: list[dict[str, Any]] = []
    started = time.perf_counter()
    plan = list(_plan(cfg))
    with h.Progress(len(plan), "sqlite", plain=args.plain) as progress:
        for workload, level, system, rep, spec, timeout in plan:
            t0 = time.perf_counter()
            result = run_child(spec, timeout)
            attempts = 1
            # A run during which another process took CPU measures the machine, not the
            # system: run it again (up to --retry-noisy times), keep the quietest attempt.
            while attempts <= args.retry_noisy and _noisy(result):
                again = run_child(spec, timeout)
                attempts += 1
                progress.note(f"  noisy ({_brief(result)}); again: {_brief(again)}")
                if "error" in again or again["others_share"] < result["others_share"]:
                    result = again
            results.setdefault((workload, level), {}).setdefault(system, []).append(result)
            raw.append(
                {
                    "spec": asdict(spec),
                    "rep": rep,
                    "result": result,
                    "attempts": attempts,
                    "wall_s": time.perf_counter() - t0,
                }
            )
            progress.step(
                f"{workload} {level} rep {rep + 1} {system}: {_brief(result)}",
                note="error" in result,
            )
    memory = _run_memory(cfg) if "memory" in cfg.workloads else None
    env["load_average_after"] = list(os.getloadavg())
    env["commit_after"] = _commit_id()
    summary = summarise(results)
    targets = evaluate_targets(summary, memory)
    report(env, cfg, summary, memory, targets, plain=args.plain)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    if args.json is not None:
        document = {
            "environment": env,
            "config": asdict(cfg),
            "summary": summary,
            "memory": memory,
            "targets": targets,
            "runs": raw,
        }
        args.json.write_text(json.dumps(document, indent=2))
    failed = any("error" in r["result"] for r in raw) or any(
        "error" in run for run in (memory or {}).values()
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
