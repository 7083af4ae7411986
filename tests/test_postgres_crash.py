"""kill -9 test of the row-change source: two processes of one app, killed at random.

Two processes of one app (``tests/postgres_crash_child.py``: one consumer group, each on a
durable SQLite queue of its own, asyncio and trio) handle the changes of a table while a
producer thread of the test writes to it: transactions of one to four inserts, updates
and deletes, one in ten rolled back. The test kills a random process with SIGKILL at
seeded random moments and starts it again with the same queue file (at one moment in
five it kills both), :data:`KILLS` times: 5 in a default run, ``REACTOR_PG_KILLS=50`` for
the full size (``REACTOR_PG_SEED`` picks another seed). Then it stops the producer, lets
the processes run until they have handled every change, stops them, and checks their
journals:

* **lost**: every change of every committed transaction was handled at least once (the
  reader stores its cursor only once the events are in its durable queue; a killed
  reader's successor reads on from the stored cursor; a killed process handles what its
  queue holds when it comes back);
* **unexpected**: nothing else was handled: no change of a rolled-back transaction, no
  change altered.

Duplicates are allowed (at least once) and counted in the summary line it prints.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest
import services
from postgres_crash_child import SOURCE

from reactor import Reactor
from reactor.sources.postgres import RowChangeSource, on_row_change
from reactor.testing import Capture

CHILD = Path(__file__).with_name("postgres_crash_child.py")
#: Processes killed: 5 by default, 50 for the full run (REACTOR_PG_KILLS=50).
KILLS = int(os.environ.get("REACTOR_PG_KILLS", "5"))
#: The seed of the kills and of the producer's transactions.
SEED = int(os.environ.get("REACTOR_PG_SEED", "1"))
#: Processes of the app under test.
WORKERS = 2
#: Seconds between two kills (a seeded random moment within).
KILL_EVERY = (0.2, 1.2)
#: The share of kill moments at which every process is killed at once.
WHOLE_APP = 0.2
#: Transactions per second the producer commits or rolls back.
RATE = 150.0
#: Seconds the processes get to handle every change once the kills stop.
SETTLE_TIMEOUT = 120.0

pytestmark = [
    pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX"),
    pytest.mark.timeout(240 + 6 * KILLS),
]

Change = tuple[str, int, int]


class Producer(threading.Thread):
    """Writes random transactions to the table until stopped; knows what was committed."""

    def __init__(self, dsn: str, table: str, seed: int) -> None:
        super().__init__(name="producer", daemon=True)
        self._dsn, self._table = dsn, table
        self._random = random.Random(seed)
        self._stopping = threading.Event()
        #: every change of a committed transaction: (op, row id, v)
        self.committed: set[Change] = set()
        #: every change of a rolled-back transaction
        self.rolled_back: set[Change] = set()
        self.transactions = 0
        self.error: BaseException | None = None

    def stop(self) -> None:
        self._stopping.set()
        self.join(timeout=30)
        assert not self.is_alive()
        if self.error is not None:
            raise self.error

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # reported by stop()
            self.error = exc

    def _run(self) -> None:
        rng, table = self._random, self._table
        rows: dict[int, int] = {}  # committed: id -> v
        next_id = next_v = 0
        start = time.monotonic()
        with psycopg.connect(self._dsn) as conn:
            while not self._stopping.is_set():
                state = dict(rows)
                changes: list[Change] = []
                for _ in range(rng.randint(1, 4)):
                    choice = rng.random()
                    next_v += 1
                    if choice < 0.5 or not state:
                        next_id += 1
                        conn.execute(f"INSERT INTO {table} VALUES (%s, %s)", (next_id, next_v))
                        state[next_id] = next_v
                        changes.append(("insert", next_id, next_v))
                    elif choice < 0.85:
                        target = rng.choice(list(state))
                        conn.execute(f"UPDATE {table} SET v = %s WHERE id = %s", (next_v, target))
                        state[target] = next_v
                        changes.append(("update", target, next_v))
                    else:
                        target = rng.choice(list(state))
                        conn.execute(f"DELETE FROM {table} WHERE id = %s", (target,))
                        changes.append(("delete", target, state.pop(target)))
                if rng.random() < 0.1:
                    conn.rollback()
                    self.rolled_back.update(changes)
                else:
                    conn.commit()
                    rows = state
                    self.committed.update(changes)
                self.transactions += 1
                delay = start + self.transactions / RATE - time.monotonic()
                if delay > 0:
                    self._stopping.wait(delay)


class Worker:
    """One process of the app under test, started again after each kill."""

    def __init__(self, scenario: dict[str, Any], log: Path) -> None:
        self.scenario = scenario
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(CHILD), json.dumps(self.scenario)],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        self.starts += 1

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


def handled(journal: Path) -> Counter[Change]:
    """The changes the journal says were handled, with how often."""
    seen: Counter[Change] = Counter()
    if not journal.exists():
        return seen
    for line in journal.read_text().splitlines():
        parts = line.split()
        if len(parts) == 5 and parts[0] == "E":  # a torn last line has fewer parts
            seen[(parts[1], int(parts[2]), int(parts[3]))] += 1
    return seen


def reactor_db(*arguments: str, check: bool) -> None:
    """Run ``reactor db ...`` as a user would."""
    command = [sys.executable, "-m", "reactor", "db", *arguments]
    subprocess.run(command, check=check, capture_output=True, timeout=60)


@pytest.fixture
def table(dsn: str) -> Iterator[str]:
    name = f"crash_{secrets.token_hex(5)}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, v int NOT NULL)")
        try:
            reactor_db("install", "--dsn", dsn, name, check=True)
            yield f"public.{name}"
        finally:
            reactor_db("uninstall", "--dsn", dsn, name, check=False)
            conn.execute(f"DROP TABLE IF EXISTS {name}")


@pytest.fixture
def dsn() -> str:
    return services.require("postgres")


def test_every_committed_change_is_handled_across_kills(
    dsn: str, table: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = random.Random(SEED)
    journal = tmp_path / "journal"
    log = tmp_path / "workers.log"
    workers = [
        Worker(
            {
                "dsn": dsn,
                "table": table,
                "journal": str(journal),
                "queue": str(tmp_path / f"queue{slot}.db"),
                "backend": ("asyncio", "trio")[slot % 2],
            },
            log,
        )
        for slot in range(WORKERS)
    ]
    for worker in workers:
        worker.start()
    producer = Producer(dsn, table, SEED)
    try:
        producer.start()
        kills = 0
        try:
            while kills < KILLS:
                time.sleep(rng.uniform(*KILL_EVERY))
                victims = workers if rng.random() < WHOLE_APP else [rng.choice(workers)]
                for worker in victims:
                    worker.kill()
                    kills += 1
                for worker in victims:
                    worker.start()
            time.sleep(KILL_EVERY[1])  # the last restarts see some traffic too
        finally:
            producer.stop()
        expected = producer.committed
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while not expected <= handled(journal).keys() and time.monotonic() < deadline:
            time.sleep(0.2)
        statuses = [worker.stop() for worker in workers]
    finally:
        for worker in workers:  # a failed test leaves no process behind
            if worker.process is not None and worker.process.poll() is None:
                worker.kill()
    seen = handled(journal)
    lost = expected - seen.keys()
    unexpected = seen.keys() - expected
    duplicates = sum(count - 1 for count in seen.values())
    with capsys.disabled():
        sys.stdout.write(
            f"\npostgres row changes, kill -9: {kills} kills, {producer.transactions} "
            f"transactions, {len(expected)} committed changes, {len(producer.rolled_back)} "
            f"rolled back, {duplicates} handled more than once\n"
        )
    assert statuses == [0] * WORKERS, log.read_text()[-3000:]
    assert not lost, f"{len(lost)} committed changes never handled, e.g. {sorted(lost)[:5]}"
    assert not unexpected, f"handled but never committed: {sorted(unexpected)[:5]}"
    assert len(expected) > 100


@pytest.mark.anyio
async def test_a_standby_takes_over_from_a_reader_killed_with_sigkill(
    dsn: str, table: str, tmp_path: Path
) -> None:
    scenario = {
        "dsn": dsn,
        "table": table,
        "journal": str(tmp_path / "journal"),
        "queue": str(tmp_path / "q.db"),
    }
    async with await anyio.open_process(
        [sys.executable, str(CHILD), json.dumps(scenario)], stderr=subprocess.DEVNULL
    ) as reader:
        try:
            assert reader.stdout is not None
            with anyio.fail_after(60):
                ready = await reader.stdout.receive()  # "R <pid>": it runs, as the reader
            assert ready.startswith(b"R ")
            # Another process of the same app (the same group): it stands by.
            standby = Reactor(source=SOURCE)
            capture = Capture()
            on_row_change(
                standby, table, dsn=dsn, name="rows", standby_interval=0.05, poll_interval=0.5
            )(capture)
            async with standby:
                (source,) = (s for s in standby.sources if isinstance(s, RowChangeSource))
                assert standby.stats().sources["/reactor/postgres/rows"]["reader"] == 0
                reader.kill()
                await reader.wait()
                with psycopg.connect(dsn, autocommit=True) as conn:
                    conn.execute(f"INSERT INTO {table} VALUES (1, 1)")
                with anyio.fail_after(30):
                    (event,) = await capture.wait_for(1)
                assert source.is_reader
                assert event.data["new"] == {"id": 1, "v": 1}
        finally:
            if reader.returncode is None:
                reader.kill()
