"""Crash tests of SQLiteQueue: SIGKILL at random points, restart, account for every event.

**Kill tests** (one test id per seed, each kills at least once). A worker process
(``tests/sqlite_crash_child.py``, forked from a fork server so that a kill costs a fork,
not an interpreter start) runs an app on an SQLiteQueue with three consumers: ``fast``
(returns at once), ``slow`` (sleeps, some events long enough to still run when later
ones are committed) and ``flaky`` (behind a ``where`` filter, with a retry policy: fails
once on some events, always on others, which become dead letters). 8 or 64 publisher
tasks publish 300 events concurrently, so commits batch; one in eleven goes through
``publish_nowait()``. Seeds vary the backend, ``synchronous``, ``max_in_flight`` and the
queue's read-ahead (shrunk in two tests of three so that the backlog spills to the file
and is read back in pages). The test kills the worker a seeded random 2-200 ms after it
is ready; in some tests it also kills the recovery, or a second run that publishes new
events while it recovers; then a last run publishes nothing and drains the file. The
workers leave evidence (see the child's docstring): publishes tried (``T``) and
acknowledged (``A``), handler starts (``S``), returns (``F``) and raises (``X``) with
their attempt, and settlements once the queue reported them committed (``P`` progress of
one consumer, ``K`` ack of the event).

The oracle then checks, over all runs:

* **lost**: every event whose publish was acknowledged or that any handler saw was
  settled by every consumer it is meant for: a handler returned (``F``), or, for the
  deliveries the flaky consumer always fails, a dead letter is stored in the file;
* **unexpected**: handlers saw only events a publisher tried to publish, unaltered, and
  only those meant for them; the file holds exactly the expected dead letters, intact,
  with the right attempt count, and none for a damaged event;
* **duplicates**: within a run a consumer gets an event at most once (its retries
  numbered 0, 1, ...); every handler of an event in a run sees the same ``attempt``,
  which is 1 in the run that published it and, later, above the number of earlier runs
  in which a handler started it (so >= 2 after an interrupted start: an undercount is a
  bug, an overcount is allowed); a consumer whose settlement was reported committed
  (``P``) never gets the event again and an acknowledged event (``K``) is never handed
  out again. A handler that returned before a crash that came before its settlement was
  committed may run again: that is at-least-once, not a duplicate;
* **state**: after the last run the file holds no event and no progress row, and
  ``PRAGMA integrity_check`` says ``ok``.

**Publisher kill.** A worker publishes to a consumer that never returns (nothing is
acknowledged) and is killed right after its k-th ``await app.publish()`` returned; the
reopened file holds every acknowledged event, unaltered, once, with its attempt raised
if a handler had started it, in both synchronous modes.

**Bad files** (in process, both backends). Truncated copies of a queue file, a text
file, other applications' databases and a newer schema fail at ``async with app:`` with
a :class:`~reactor.QueueFileError` naming the file, and are left byte for byte as they
were. Bit-flipped copies either fail the same way or deliver every event intact, at
most once, except events reported as damaged in the dead letters (consumer ``None``):
never an altered event, never a silently missing one. A second owner, in this process
or another, gets :class:`~reactor.QueueInUseError`. Damage that SQLite's quick check
misses is caught too: a file cut inside its last page, a flipped byte in the schema's
text, and a flip that turns a pending event's done mark into "done".
"""

from __future__ import annotations

import json
import os
import random
import re
import select
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import anyio
import attrs
import pytest
from sqlite_crash_child import (
    FLAKY_ATTEMPTS,
    SOURCE,
    Mode,
    Scenario,
    Synchronous,
    consumers_for,
    dead_lettered,
    event_id,
    event_type,
    number,
    payload,
)

from reactor import Event, QueueFileError, QueueInUseError, Reactor
from reactor.queues.sqlite import SQLiteQueue, StoredDeadLetter

CHILD = Path(__file__).with_name("sqlite_crash_child.py")
#: Events published by each crash run.
EVENTS = 300
#: Kill tests: each kills a worker at least once (raise it to soak: REACTOR_CRASH_KILLS=1000).
KILLS = int(os.environ.get("REACTOR_CRASH_KILLS", "50"))
#: Seconds any single step may take before the test fails instead of hanging.
STEP_TIMEOUT = 60.0

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and fork are POSIX")


# -- the fork server ----------------------------------------------------------------------


class ForkServer:
    """Drives ``sqlite_crash_child.py serve``: starts workers, waits for their messages."""

    def __init__(self, log: Path) -> None:
        self._log = log.open("wb")
        self._proc = subprocess.Popen(
            [sys.executable, str(CHILD), "serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
        )
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._stdin: IO[bytes] = self._proc.stdin
        self._stdout: IO[bytes] = self._proc.stdout
        self._buffer = b""
        self._backlog: list[list[str]] = []

    def close(self) -> None:
        """Stop the server (closing its stdin ends its loop)."""
        self._stdin.close()
        try:
            self._proc.wait(timeout=STEP_TIMEOUT)
        except subprocess.TimeoutExpired:  # pragma: no cover - only if the server hangs
            self._proc.kill()
            self._proc.wait()
        self._stdout.close()
        self._log.close()

    def start(self, scenario: Scenario) -> int:
        """Fork a worker for *scenario*; return its pid."""
        self._stdin.write(json.dumps(attrs.asdict(scenario)).encode() + b"\n")
        self._stdin.flush()
        return int(self.wait({"pid"}, None)[1])

    def wait(self, kinds: set[str], pid: int | None, timeout: float = STEP_TIMEOUT) -> list[str]:
        """Return the first message of one of *kinds* (from *pid*, if given)."""
        deadline = time.monotonic() + timeout
        while True:
            for message in self._backlog:
                if message[0] in kinds and (pid is None or message[1] == str(pid)):
                    self._backlog.remove(message)
                    return message
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {kinds} message from worker {pid} in {timeout} s")
            self._read(remaining)

    def exited(self, pid: int) -> bool:
        """Whether the worker's exit was reported already (without waiting)."""
        self._read(0)
        return any(message[:2] == ["exit", str(pid)] for message in self._backlog)

    def forget(self, pid: int) -> None:
        """Drop the messages of an ended worker that nobody waited for."""
        self._backlog = [message for message in self._backlog if message[1] != str(pid)]

    def _read(self, timeout: float) -> None:
        fd = self._stdout.fileno()
        readable, _, _ = select.select([fd], [], [], timeout)
        if not readable:
            return
        chunk = os.read(fd, 65536)
        if not chunk:
            raise RuntimeError("the fork server exited; see its log")
        *lines, self._buffer = (self._buffer + chunk).split(b"\n")
        self._backlog.extend(line.decode().split() for line in lines if line)


@pytest.fixture(scope="module")
def fork_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForkServer]:
    server = ForkServer(tmp_path_factory.mktemp("fork-server") / "stderr.log")
    try:
        yield server
    finally:
        server.close()


def _log_of(scenario: Scenario) -> str:
    try:
        return Path(scenario.log).read_text(errors="replace")[-4000:]
    except FileNotFoundError:
        return "(no log)"


def run_worker(server: ForkServer, scenario: Scenario, *, kill_after: float | None) -> int:
    """Run a worker until it is ready, then kill it after *kill_after* seconds (or let
    it end); return its exit status (minus the signal that ended it)."""
    pid = server.start(scenario)
    ready = server.wait({"ready", "exit"}, pid)
    assert ready[0] == "ready", f"worker failed to start:\n{_log_of(scenario)}"
    if kill_after is not None:
        time.sleep(kill_after)  # the random kill point is the point of the test
        if not server.exited(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass  # a recover run that drained and ended just now
    code = int(server.wait({"exit"}, pid)[2])
    server.forget(pid)
    assert code in (0, -signal.SIGKILL), f"worker exited with {code}:\n{_log_of(scenario)}"
    return code


def _execute(path: Path, *statements: str) -> None:
    """Run *statements* in one transaction on the SQLite file *path*, then close it."""
    conn = sqlite3.connect(path)
    try:
        with conn:
            for statement in statements:
                conn.execute(statement)
    finally:
        conn.close()


def integrity(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [row[0] for row in conn.execute("PRAGMA integrity_check")]


def count_rows(path: Path, table: str) -> int:
    with sqlite3.connect(path) as conn:
        count: int = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    return count


async def _stored_letters(path: Path) -> list[StoredDeadLetter]:
    async with SQLiteQueue(path) as queue:
        return await queue.dead_letters()


# -- the accounting of a crash test ---------------------------------------------------------


@attrs.define
class Run:
    """The evidence one worker run left in its journal."""

    starts: dict[tuple[str, int], list[tuple[int, int]]] = attrs.Factory(lambda: defaultdict(list))
    finishes: dict[tuple[str, int], list[tuple[int, int]]] = attrs.Factory(
        lambda: defaultdict(list)
    )
    progress: set[tuple[str, int]] = attrs.Factory(set)
    acks: set[int] = attrs.Factory(set)
    bad: list[str] = attrs.Factory(list)

    @property
    def started(self) -> set[int]:
        return {n for _, n in self.starts}


def _lines(path: Path) -> list[str]:
    """The complete lines of an evidence file (a kill never leaves a partial one, but a
    partial last line would only be ignored: less evidence, never a false alarm)."""
    if not path.exists():
        return []
    text = path.read_text()
    return text.split("\n")[:-1]


def read_run(path: Path) -> Run:
    run = Run()
    for line in _lines(path):
        kind, *fields = line.split(" ", 5)
        if kind == "BAD":
            run.bad.append(line)
        elif kind in ("S", "F", "X"):
            consumer, n, attempt, retries = (
                fields[0],
                int(fields[1]),
                int(fields[2]),
                int(fields[3]),
            )
            if kind == "S":
                run.starts[consumer, n].append((attempt, retries))
            elif kind == "F":
                run.finishes[consumer, n].append((attempt, retries))
        elif kind == "P":
            run.progress.add((fields[0], int(fields[1])))
        elif kind == "K":
            run.acks.add(int(fields[0]))
        else:
            run.bad.append(f"unknown journal line {line!r}")
    return run


@attrs.frozen
class Accounting:
    """What the oracle found (``problems`` must be empty) and what it saw."""

    problems: list[str]
    acked: int
    published: int
    #: Deliveries started again after a crash although the handler had returned before
    #: it (its settlement was not committed yet): allowed, at least once.
    redone_after_return: int


def account(
    runs: list[Run], acked_file: Path, letters: list[StoredDeadLetter], origin: dict[int, int]
) -> Accounting:
    """Check the evidence of *runs* (in order) against the file's dead letters.

    :param origin: for each event a run may publish, the index of that run
    """
    problems: list[str] = []
    tried: set[int] = set()
    acked: list[int] = []
    for line in _lines(acked_file):
        kind, text = line.split()
        (tried.add if kind == "T" else acked.append)(int(text))
    if len(acked) != len(set(acked)) or not set(acked) <= tried <= set(origin):
        problems.append("a publish was acknowledged twice, or without being tried")
    for index, run in enumerate(runs):
        problems.extend(f"run {index}: {line}" for line in run.bad)

    seen = {n for run in runs for _, n in run.starts}
    published = set(acked) | seen

    # unexpected: handlers saw only events that were tried, and only those meant for them
    for index, run in enumerate(runs):
        for consumer, n in run.starts:
            if n not in tried:
                problems.append(f"run {index}: {consumer} got event {n}, never published")
            elif consumer not in consumers_for(n):
                problems.append(f"run {index}: {consumer} got event {n}, not meant for it")

    # dead letters: exactly the expected ones, intact, never a damaged event
    letter_keys: Counter[tuple[str, int]] = Counter()
    for letter in letters:
        if letter.consumer is None or letter.event is None:
            problems.append(f"an event was dead-lettered as damaged: {letter!r}")
            continue
        n = number(letter.event.id)
        letter_keys[letter.consumer, n] += 1
        if (letter.event.type, letter.event.source, letter.event.data) != (
            event_type(n),
            SOURCE,
            payload(n),
        ):
            problems.append(f"the dead letter of event {n} holds an altered event: {letter!r}")
        if letter.attempts != FLAKY_ATTEMPTS or not letter.error_type.endswith("FlakyError"):
            problems.append(f"the dead letter of event {n} has wrong attempts/error: {letter!r}")
    expected_letters = {
        (consumer, n)
        for n in published
        for consumer in consumers_for(n)
        if dead_lettered(consumer, n)
    }
    if set(letter_keys) != expected_letters or any(c > 1 for c in letter_keys.values()):
        problems.append(
            f"dead letters {sorted(letter_keys.elements())} != expected {sorted(expected_letters)}"
        )

    # lost: every acknowledged or delivered event settled by each of its consumers
    for n in sorted(published):
        for consumer in sorted(consumers_for(n)):
            finished = any((consumer, n) in run.finishes for run in runs)
            if dead_lettered(consumer, n):
                if finished:
                    problems.append(f"{consumer} finished event {n}, which always fails")
            elif not finished:
                what = "acknowledged" if n in acked else "delivered"
                problems.append(f"lost: {consumer} never finished {what} event {n}")

    # duplicates, settlements and attempts
    redone_after_return = 0
    for index, run in enumerate(runs):
        earlier = runs[:index]
        attempts: dict[int, set[int]] = defaultdict(set)
        for (consumer, n), starts in run.starts.items():
            attempts[n].update(attempt for attempt, _ in starts)
            # one delivery per run: attempts of the retry policy numbered 0, 1, ...
            if sorted(retries for _, retries in starts) != list(range(len(starts))):
                problems.append(f"run {index}: {consumer} got event {n} as {starts}")
            if any(n in before.acks for before in earlier):
                problems.append(f"run {index}: {consumer} got event {n}, acknowledged before")
            if any((consumer, n) in before.progress for before in earlier):
                problems.append(f"run {index}: {consumer} got event {n} it had settled before")
            if any((consumer, n) in before.finishes for before in earlier):
                redone_after_return += 1
        for n, values in attempts.items():
            handed_out_before = sum(n in before.started for before in earlier)
            if len(values) != 1:
                problems.append(f"run {index}: event {n} handed out with attempts {values}")
            elif index == origin.get(n) and values != {1}:
                problems.append(f"run {index}: event {n} published and handed out {values}")
            elif min(values) < 1 + handed_out_before:
                problems.append(
                    f"run {index}: event {n} has attempt {min(values)}, but handlers started it "
                    f"in {handed_out_before} earlier run(s)"
                )
    return Accounting(problems, len(acked), len(published), redone_after_return)


@pytest.mark.parametrize("seed", range(KILLS))
def test_kill_9_while_handlers_run_loses_and_invents_nothing(
    fork_server: ForkServer, tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    db = tmp_path / "events.db"
    acked = tmp_path / "acked"

    def scenario(mode: Mode, index: int, **options: Any) -> Scenario:
        return Scenario(
            mode=mode,
            db=str(db),
            journal=str(tmp_path / f"journal-{index}.log"),
            log=str(tmp_path / f"worker-{index}.log"),
            backend=("asyncio", "trio")[seed % 2],
            synchronous="normal" if seed % 4 == 3 else "full",
            # Two tests in three spill the backlog to the file and read it back in pages.
            read_ahead=(0, 16, 4)[seed % 3],
            max_in_flight=rng.choice([24, 1000]),
            publishers=rng.choice([8, 64]),
            **options,
        )

    killed = [scenario("crash", 0, acked=str(acked), events=EVENTS)]
    delays = [rng.uniform(0.002, 0.2)]
    if seed % 5 == 2:  # kill the recovery too
        killed.append(scenario("recover", 1))
        delays.append(rng.uniform(0.0, 0.05))
    elif seed % 5 == 4:  # kill a second run that publishes new events while it recovers
        killed.append(scenario("crash", 1, acked=str(acked), events=EVENTS, first=EVENTS))
        delays.append(rng.uniform(0.002, 0.2))
    for worker, delay in zip(killed, delays, strict=True):
        code = run_worker(fork_server, worker, kill_after=delay)
        assert code == -signal.SIGKILL or worker.mode == "recover"  # crash runs never end

    final = scenario("recover", len(killed))
    pid = fork_server.start(final)
    assert fork_server.wait({"ready", "exit"}, pid)[0] == "ready", _log_of(final)
    drained = fork_server.wait({"drained", "exit"}, pid)
    assert drained[0] == "drained" and drained[2:] == ["0", "0"], _log_of(final)
    assert fork_server.wait({"exit"}, pid)[2] == "0", _log_of(final)

    assert integrity(db) == ["ok"]
    assert count_rows(db, "reactor_events") == 0
    assert count_rows(db, "reactor_progress") == 0
    letters = anyio.run(_stored_letters, db)
    runs = [read_run(Path(worker.journal)) for worker in [*killed, final]]
    origin = {
        n: index
        for index, worker in enumerate(killed)
        if worker.mode == "crash"
        for n in range(worker.first, worker.first + worker.events)
    }
    result = account(runs, acked, letters, origin)
    assert not result.problems, "\n".join(result.problems[:50])
    assert result.acked <= result.published


# -- kill -9 right after publish() returned -------------------------------------------------


async def _read_back(path: Path) -> list[tuple[Event, int]]:
    """Every event the file holds, with its attempt, read through the queue itself."""
    found: list[tuple[Event, int]] = []
    with anyio.fail_after(STEP_TIMEOUT):
        async with SQLiteQueue(path) as queue:
            held = queue.statistics().depth
            while len(found) < held:
                batch = await queue.get_batch(1000)
                found.extend((item.event, item.attempt) for item in batch)
    return found


@pytest.mark.parametrize("synchronous", ["full", "normal"])
@pytest.mark.parametrize("seed", range(3))
def test_kill_9_right_after_publish_returned_keeps_every_acknowledged_event(
    fork_server: ForkServer, tmp_path: Path, seed: int, synchronous: Synchronous
) -> None:
    rng = random.Random(f"publish-{seed}-{synchronous}")
    db = tmp_path / "events.db"
    worker = Scenario(
        mode="publish",
        db=str(db),
        journal=str(tmp_path / "journal.log"),
        acked=str(tmp_path / "acked"),
        log=str(tmp_path / "worker.log"),
        events=100_000,  # far more than get published before the kill
        synchronous=synchronous,
        backend=("asyncio", "trio")[seed % 2],
        report_acked=rng.randint(1, 300),
    )
    pid = fork_server.start(worker)
    assert fork_server.wait({"ready", "exit"}, pid)[0] == "ready", _log_of(worker)
    assert fork_server.wait({"acked", "exit"}, pid)[0] == "acked", _log_of(worker)
    os.kill(pid, signal.SIGKILL)
    assert fork_server.wait({"exit"}, pid)[2] == str(-signal.SIGKILL)

    tried: set[int] = set()
    acked: set[int] = set()
    for line in _lines(tmp_path / "acked"):
        kind, text = line.split()
        (tried if kind == "T" else acked).add(int(text))
    started = {int(line.split()[2]) for line in _lines(tmp_path / "journal.log")}
    assert len(acked) >= worker.report_acked

    found = anyio.run(_read_back, db)
    ids = [number(event.id) for event, _ in found]
    assert len(ids) == len(set(ids)), "an event is in the file twice"
    assert acked <= set(ids), f"lost acknowledged events: {sorted(acked - set(ids))}"
    assert set(ids) <= tried, f"unexpected events: {sorted(set(ids) - tried)}"
    for event, attempt in found:
        n = number(event.id)
        assert (event.type, event.source, event.data) == (event_type(n), SOURCE, payload(n))
        # An event a handler had started is handed out again with the attempt raised.
        assert attempt >= (2 if n in started else 1)
    assert integrity(db) == ["ok"]


# -- one owner per file, across processes ---------------------------------------------------


@pytest.mark.anyio
async def test_a_queue_file_owned_by_another_process_is_refused_until_it_dies(
    fork_server: ForkServer, tmp_path: Path
) -> None:
    db = tmp_path / "events.db"
    holder = Scenario(
        mode="hold", db=str(db), journal=str(tmp_path / "j"), log=str(tmp_path / "holder.log")
    )
    pid = await anyio.to_thread.run_sync(fork_server.start, holder)
    ready = await anyio.to_thread.run_sync(fork_server.wait, {"ready", "exit"}, pid)
    assert ready[0] == "ready", _log_of(holder)
    app = Reactor(queue=SQLiteQueue(db))
    with pytest.raises(QueueInUseError, match="in use by another process") as caught:
        async with app:
            pass
    assert str(db) in str(caught.value) and str(pid) in str(caught.value)
    assert not app.running
    os.kill(pid, signal.SIGKILL)
    await anyio.to_thread.run_sync(fork_server.wait, {"exit"}, pid)
    async with app:  # the OS released the lock of the dead owner
        # ... and now this process owns it: another process is refused.
        other = Scenario(
            mode="hold", db=str(db), journal=str(tmp_path / "j"), log=str(tmp_path / "other.log")
        )
        pid = await anyio.to_thread.run_sync(fork_server.start, other)
        refused = await anyio.to_thread.run_sync(fork_server.wait, {"in-use", "ready"}, pid)
        assert refused[0] == "in-use", _log_of(other)
        assert f"pid {os.getpid()}" in " ".join(refused)  # who holds it
        exit_message = await anyio.to_thread.run_sync(fork_server.wait, {"exit"}, pid)
        assert exit_message[2] == "3"
        with pytest.raises(QueueInUseError, match="already open"):
            await SQLiteQueue(db).open()
    assert integrity(db) == ["ok"]


# -- damaged and foreign files ----------------------------------------------------------------

FILE_EVENTS = 60
FILE_TIME = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
ORIGINALS = {
    event_id(n): Event(
        type=event_type(n), source=SOURCE, id=event_id(n), data=payload(n), time=FILE_TIME
    )
    for n in range(FILE_EVENTS)
}


async def _queue_file(path: Path, events: int = FILE_EVENTS) -> bytes:
    """Write a queue file holding *events* of :data:`ORIGINALS`, closed cleanly (all in
    the main file, nothing in a WAL); return its bytes."""
    async with SQLiteQueue(path) as queue, anyio.create_task_group() as tg:
        for n in range(events):
            tg.start_soon(queue.put, ORIGINALS[event_id(n)])
    wal = anyio.Path(f"{path}-wal")
    assert not await wal.exists() or (await wal.stat()).st_size == 0
    return await anyio.Path(path).read_bytes()


def _copy(directory: Path, content: bytes) -> Path:
    """Write *content* as ``events.db`` in a new *directory*."""
    directory.mkdir()
    path = directory / "events.db"
    path.write_bytes(content)
    return path


def _flip(content: bytes, offset: int, bit: int) -> bytes:
    damaged = bytearray(content)
    damaged[offset] ^= 1 << bit
    return bytes(damaged)


def _page_size(content: bytes) -> int:
    return int.from_bytes(content[16:18], "big")


def _schema_records(content: bytes) -> range:
    """The bytes of the first page that hold the schema's records (``sqlite_master``)."""
    # The b-tree header of page 1 follows the 100-byte file header; its bytes 5-6 give
    # where the cell content (the records, written from the page's end down) begins.
    return range(int.from_bytes(content[105:107], "big"), _page_size(content))


async def _fails_at_start(path: Path, message: str | None = None) -> None:
    """``async with app:`` raises QueueFileError naming the file, which is unchanged."""
    content = await anyio.Path(path).read_bytes()
    app = Reactor(queue=SQLiteQueue(path))
    delivered: list[Event] = []

    @app.subscribe("*")
    async def record(event: Event) -> None:
        delivered.append(event)  # pragma: no cover - must not happen

    with anyio.fail_after(STEP_TIMEOUT), pytest.raises(QueueFileError, match=message) as caught:
        async with app:
            pass
    assert str(path) in str(caught.value)
    assert await anyio.Path(path).read_bytes() == content, "a refused file was changed"
    assert delivered == [] and not app.running


async def _honest_outcome(path: Path) -> str:
    """Open a damaged copy as an app and drain it; check that the outcome is honest.

    Either the start fails with QueueFileError naming the file (left unchanged), or
    every original event is delivered intact, at most once, or reported as a damaged
    event in the dead letters (consumer ``None``); nothing else is delivered.

    :return: ``"refused"``, ``"intact"`` or ``"reported"``
    """
    content = await anyio.Path(path).read_bytes()
    delivered: list[Event] = []
    app = Reactor(queue=SQLiteQueue(path))

    @app.subscribe("*")
    async def record(event: Event) -> None:
        delivered.append(event)

    try:
        with anyio.fail_after(STEP_TIMEOUT):
            async with app:
                pass
    except QueueFileError as exc:
        assert str(path) in str(exc)
        assert await anyio.Path(path).read_bytes() == content, "a refused file was changed"
        return "refused"
    letters = await _stored_letters(path)
    assert all(letter.consumer is None for letter in letters), f"unexpected: {letters}"
    assert all(letter.error_type == "reactor.EventFormatError" for letter in letters)
    ids = [event.id for event in delivered]
    assert len(ids) == len(set(ids)), "an event was delivered twice"
    for event in delivered:
        original = ORIGINALS.get(event.id)
        assert original is not None, f"an unknown event was delivered: {event!r}"
        assert event.to_json() == original.to_json(), f"an event was delivered altered: {event!r}"
    missing = set(ORIGINALS) - set(ids)
    assert len(missing) <= len(letters), (
        f"event(s) {sorted(missing)} silently missing; damaged events reported: {letters}"
    )
    return "reported" if letters else "intact"


def _read_plainly(path: Path, sql: str) -> Counter[tuple[Any, ...]] | None:
    """The rows of *sql* as SQLite itself reads them from *path* (left unchanged), or
    ``None`` when it cannot read them."""
    uri = f"{path.resolve().as_uri()}?mode=ro&immutable=1"
    try:
        conn = sqlite3.connect(uri, uri=True)
    except sqlite3.Error:
        return None
    try:
        return Counter(conn.execute(sql))
    except (sqlite3.Error, UnicodeDecodeError):  # a damaged text can be undecodable
        return None
    finally:
        conn.close()


#: What an event is made of in the file, as its checksum covers it (its number, attempt
#: count and publish time are not the event) and whether it is pending.
EVENT_ROWS = "SELECT body, only, crc, done_at IS NULL FROM reactor_events"
#: The schema as SQLite reads it.
SCHEMA_ROWS = "SELECT type, name, tbl_name, rootpage, sql FROM sqlite_master"


@pytest.mark.anyio
async def test_a_truncated_file_fails_at_start_and_is_left_alone(tmp_path: Path) -> None:
    content = await _queue_file(tmp_path / "events.db")
    page = _page_size(content)
    rng = random.Random("truncate")
    offsets = {
        1,
        15,
        50,
        100,
        *range(page, len(content), page),  # every cut at a page boundary
        *(rng.randrange(1, len(content) - page) for _ in range(12)),
    }  # cuts inside the last page: test_a_file_cut_in_its_last_page_fails_at_start
    for offset in sorted(offsets):
        await _fails_at_start(_copy(tmp_path / f"cut-{offset}", content[:offset]))


@pytest.mark.anyio
async def test_a_file_cut_in_its_last_page_fails_at_start(tmp_path: Path) -> None:
    content = await _queue_file(tmp_path / "events.db")
    for cut in (1, 100):
        await _fails_at_start(_copy(tmp_path / f"cut-{cut}", content[:-cut]))


@pytest.mark.anyio
async def test_foreign_and_newer_files_fail_at_start_and_are_left_alone(tmp_path: Path) -> None:
    text = _copy(tmp_path / "text", b"user,amount\nada,12\n" * 50)
    await _fails_at_start(text, "not an SQLite database")

    other = tmp_path / "other" / "events.db"
    other.parent.mkdir()
    _execute(
        other,
        "CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)",
        "INSERT INTO invoices (total) VALUES (12.5)",
    )
    await _fails_at_start(other, "not a reactor queue")

    tagged = tmp_path / "tagged" / "events.db"
    tagged.parent.mkdir()
    _execute(tagged, "PRAGMA application_id = 1234", "PRAGMA user_version = 1")
    await _fails_at_start(tagged, "another application")

    newer = tmp_path / "newer" / "events.db"
    newer.parent.mkdir()
    await _queue_file(newer, 5)
    _execute(newer, "PRAGMA user_version = 99")
    await _fails_at_start(newer, "newer than")


@pytest.mark.anyio
async def test_a_flip_in_the_identity_of_the_file_fails_at_start(tmp_path: Path) -> None:
    content = await _queue_file(tmp_path / "events.db", 5)
    # The magic string, the user_version (the schema) and the application_id.
    for offset in (*range(16), *range(60, 64), *range(68, 72)):
        for bit in range(8):
            damaged = _flip(content, offset, bit)
            await _fails_at_start(_copy(tmp_path / f"flip-{offset}-{bit}", damaged))


@pytest.mark.anyio
@pytest.mark.parametrize("seed", range(4))
async def test_bit_flips_are_refused_or_reported_never_delivered_altered(
    tmp_path: Path, seed: int
) -> None:
    """Flips in the file header, the first page's b-tree header and the data pages.

    Not every flip can be refused: many header fields (change counter, schema cookie,
    cache size, reserved bytes) and unused space do not matter, and a flip in an event
    row passes SQLite's check but not the row's checksum. Flips in the schema's records
    are in test_bit_flips_in_the_schema_are_refused.
    """
    content = await _queue_file(tmp_path / "events.db")
    events = _read_plainly(tmp_path / "events.db", EVENT_ROWS)
    assert events is not None and len(events) == FILE_EVENTS
    schema = _schema_records(content)
    rng = random.Random(f"flip-{seed}")
    altered = 0
    for index in range(30):
        damaged = content
        for _ in range(rng.choice([1, 1, 1, 2, 8])):
            if index % 3:
                offset = rng.randrange(_page_size(content), len(content))
            else:
                offset = rng.randrange(schema.start)  # the first page, up to the schema
            damaged = _flip(damaged, offset, rng.randrange(8))
        path = _copy(tmp_path / f"flip-{index}", damaged)
        intact = _read_plainly(path, EVENT_ROWS) == events
        outcome = await _honest_outcome(path)
        if not intact:  # the flips changed an event (or SQLite cannot read them all)
            altered += 1
            assert outcome != "intact", f"flip {index}: altered events passed as intact"
    assert altered, "no flip reached an event: the test checks nothing"


@pytest.mark.anyio
async def test_bit_flips_in_the_schema_are_refused(tmp_path: Path) -> None:
    content = await _queue_file(tmp_path / "events.db")
    schema = _read_plainly(tmp_path / "events.db", SCHEMA_ROWS)
    assert schema is not None
    rng = random.Random("schema")
    refused = 0
    for index, offset in enumerate(rng.sample(_schema_records(content), 40)):
        damaged = _flip(content, offset, rng.randrange(8))
        path = _copy(tmp_path / f"flip-{index}", damaged)
        changed = _read_plainly(path, SCHEMA_ROWS) != schema
        outcome = await _honest_outcome(path)
        # A flip in the unused bytes between the records changes nothing to refuse.
        assert outcome == ("refused" if changed else "intact"), f"flip {index} at {offset}"
        refused += changed
    assert refused >= 30


@pytest.mark.anyio
async def test_a_non_utf8_byte_in_the_schema_fails_at_start(tmp_path: Path) -> None:
    content = await _queue_file(tmp_path / "events.db", 5)
    offset = content.index(b"CREATE TABLE reactor_meta") + 3
    await _fails_at_start(_copy(tmp_path / "damaged", _flip(content, offset, 7)))  # A -> 0xC1


@pytest.mark.anyio
async def test_a_damaged_column_name_fails_at_start(tmp_path: Path) -> None:
    content = await _queue_file(tmp_path / "events.db", 5)
    offset = content.index(b"crc INTEGER NOT NULL") + 1
    await _fails_at_start(_copy(tmp_path / "damaged", _flip(content, offset, 4)))  # crc -> cbc


@pytest.mark.anyio
async def test_a_flip_that_marks_a_pending_event_done_is_not_silent(tmp_path: Path) -> None:
    content = await _queue_file(tmp_path / "events.db")
    # The record header of an event row: ... only NULL (serial type 0), published_at
    # REAL (7), attempt 0 (8), done_at NULL (0), crc an integer (4, 5 or 6).
    found = re.search(rb"\x00\x07\x08\x00[\x04\x05\x06]", content)
    assert found is not None
    damaged = _flip(content, found.start() + 3, 3)  # done_at: NULL -> the integer 0
    await _honest_outcome(_copy(tmp_path / "damaged", damaged))


def test_the_worker_script_runs_standalone(tmp_path: Path) -> None:
    """The child also runs one scenario in the foreground (to debug a seed by hand)."""
    scenario = Scenario(
        mode="recover",
        db=str(tmp_path / "events.db"),
        journal=str(tmp_path / "journal.log"),
        log=str(tmp_path / "worker.log"),
    )
    done = subprocess.run(
        [sys.executable, str(CHILD), "run", json.dumps(attrs.asdict(scenario))],
        capture_output=True,
        timeout=STEP_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, _log_of(scenario)
    ready, drained = (line.split() for line in done.stdout.decode().splitlines())
    assert ready[0] == "ready" and drained[0] == "drained" and drained[2:] == ["0", "0"]
    assert integrity(tmp_path / "events.db") == ["ok"]
