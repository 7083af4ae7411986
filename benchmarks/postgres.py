"""PostgreSQL sources benchmark: notification and row-change latency, row-change throughput.

Run ``python -m benchmarks.postgres [--quick] [--json out.json] [--loops asyncio,trio]
[--dsn postgresql://...]``. It needs a PostgreSQL server (``--dsn``, else
``REACTOR_TEST_POSTGRES_DSN``, else ``postgresql://postgres@127.0.0.1:5432/test``) where it
may create tables (``bench_pg_<random>``, dropped afterwards) and install row-change
capture on them (the schema ``reactor``; removed with the last installed table).

Each run is a fresh interpreter running one app (the memory queue, its defaults) on one
loop, and a *producer*, another interpreter writing to the server over its own connection
at paced absolute deadlines (one machine, one clock: ``time.time()``), with
``synchronous_commit = off`` (a commit is visible, and its ``NOTIFY`` delivered, without
waiting for the disk: reactor is measured, not the server's fsync). What is measured:

* ``notify`` -- ``NOTIFY`` → handler start. The producer calls ``pg_notify()`` 1,000 times a
  second (autocommit, one notification per transaction), each payload JSON with the time
  taken just before the call; one ``on_pg_notify`` handler takes ``time.time()`` at its
  first line. Target: p99 < 10 ms.
* ``rows`` -- row change committed → handler start. The producer inserts 1,000 rows a
  second, one per autocommit transaction, and notes ``time.time()`` when each commit
  returned; one ``on_row_change`` handler notes its start per row. Target: p99 < 50 ms.
* ``sustained`` -- 5,000 rows a second (transactions of 10 rows) for the run's length, with
  four subscriptions to the row events (the ``on_row_change`` handler and three more
  ``app.subscribe()`` consumers of its events): the rate the app handled them at (from the
  first commit to the last handler start), and the latency as for ``rows``. Target: the
  app keeps up with 5,000 rows/s (handled ≥ 5,000/s, and nothing left behind).
* ``drain`` -- the ceiling: a backlog of rows (transactions of 100) is committed while no
  app runs, then the app starts and handles it with four subscriptions: rows per second
  from the app's start to the last of the 4 x N deliveries.

Every handler counts its deliveries; a run in which a subscription saw a change or a
notification other than exactly once is an error, never a speed. Percentiles are nearest
rank.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import anyio

from reactor import Event, Reactor

from . import _harness as h

WORKLOADS = ("notify", "rows", "sustained", "drain")
LOOPS = ("asyncio", "trio")
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"
#: Subscriptions in the sustained and drain workloads.
K = 4
NOTIFY_RATE = 1_000.0
ROW_RATE = 1_000.0
SUSTAINED_RATE = 5_000.0
SUSTAINED_BATCH = 10
DRAIN_BATCH = 100
SECONDS = 10.0
SECONDS_QUICK = 1.0
DRAIN_ROWS = 50_000
DRAIN_ROWS_QUICK = 5_000
#: Seconds the app may take past the producer's end before the run is an error.
SETTLE = 60.0
TARGETS = {"notify": 10.0, "rows": 50.0, "sustained": SUSTAINED_RATE}
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Spec:
    """One run: a workload on a loop."""

    workload: str
    loop: str
    dsn: str
    seconds: float
    drain_rows: int

    def to_json(self) -> str:
        """The spec as JSON, for the child's command line."""
        return json.dumps(asdict(self))


# -- the producer ------------------------------------------------------------------------------


def produce(spec: dict[str, Any]) -> dict[str, Any]:
    """Write at a paced rate until the run's length is over (a process of its own).

    :param spec: ``kind`` (``notify`` or ``rows``), ``dsn``, ``rate`` (notifications or rows
        per second), ``seconds``, and ``channel`` or ``table`` and ``batch`` (rows per
        transaction)
    :return: ``{"commits": [[first row id, rows, time the commit returned], ...]}`` for
        rows, ``{"sent": n}`` for notifications
    """
    import psycopg

    rate, seconds = spec["rate"], spec["seconds"]
    with psycopg.connect(spec["dsn"], autocommit=True) as conn:
        # What is measured is reactor, not the disk: a commit need not wait for its fsync
        # (it is visible, and NOTIFY delivered, all the same).
        conn.execute("SET synchronous_commit = off")
        start = time.time() + 0.2
        if spec["kind"] == "notify":
            total = round(rate * seconds)
            for n in range(total):
                delay = start + n / rate - time.time()
                if delay > 0:
                    time.sleep(delay)
                payload = json.dumps({"n": n, "t": time.time()})
                conn.execute("SELECT pg_notify(%s, %s)", (spec["channel"], payload))
            return {"sent": total}
        batch = spec["batch"]
        transactions = round(rate * seconds / batch)
        commits: list[list[float]] = []
        insert = f"INSERT INTO {spec['table']} (id, note) SELECT g, 'x' FROM generate_series(%s::bigint, %s::bigint) g"
        for k in range(transactions):
            delay = start + k * batch / rate - time.time()
            if delay > 0:
                time.sleep(delay)
            first = k * batch + 1
            conn.execute(insert, (first, first + batch - 1))
            commits.append([first, batch, time.time()])
        return {"commits": commits}


# -- the app -----------------------------------------------------------------------------------


class Tally:
    """Counts each subscription's deliveries by key and notes when each key first started."""

    def __init__(self, subscriptions: int) -> None:
        self.counts: list[dict[int, int]] = [{} for _ in range(subscriptions)]
        self.started: dict[int, float] = {}
        self.deliveries = 0
        self.done = anyio.Event()
        self.expect = -1

    def note(self, subscription: int, key: int, now: float) -> None:
        """Record a delivery of *key* to *subscription* that started at *now*."""
        counts = self.counts[subscription]
        counts[key] = counts.get(key, 0) + 1
        if subscription == 0 and key not in self.started:
            self.started[key] = now
        self.deliveries += 1
        if self.deliveries == self.expect:
            self.done.set()

    def problems(self, keys: int) -> list[str]:
        """What differs from every subscription seeing keys ``1..keys`` exactly once."""
        found = []
        for index, counts in enumerate(self.counts):
            wrong = sum(1 for n in range(1, keys + 1) if counts.get(n) != 1) + sum(
                1 for n in counts if not 1 <= n <= keys
            )
            if wrong:
                found.append(f"subscription {index}: {wrong} of {keys} keys not seen exactly once")
        return found


async def _producer(spec: dict[str, Any]) -> dict[str, Any]:
    result = await anyio.run_process(
        [sys.executable, "-m", "benchmarks.postgres", "--producer", json.dumps(spec)],
        cwd=ROOT,
        check=True,
    )
    for line in reversed(result.stdout.decode().splitlines()):
        if line.startswith(h.RESULT_MARK):
            produced: dict[str, Any] = json.loads(line[len(h.RESULT_MARK) :])
            return produced
    raise RuntimeError("the producer printed no result")


def _latency(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": h.percentile(ordered, 0.50) * 1000,
        "p90_ms": h.percentile(ordered, 0.90) * 1000,
        "p99_ms": h.percentile(ordered, 0.99) * 1000,
        "max_ms": ordered[-1] * 1000,
    }


async def _wait(tally: Tally, limit: float) -> None:
    if not await h.wait_for(tally.done, lambda: tally.deliveries, limit, stall=limit):
        raise RuntimeError(f"{tally.deliveries} of {tally.expect} deliveries after {limit:.0f} s")


async def measure_notify(spec: Spec) -> dict[str, Any]:
    """NOTIFY -> handler start, one handler, at :data:`NOTIFY_RATE`."""
    channel = f"bench_pg_{secrets.token_hex(5)}"
    tally = Tally(1)
    lateness: list[float] = []
    app = Reactor()

    @app.on_pg_notify(channel, dsn=spec.dsn, name="bench")
    async def handle(event: Event) -> None:
        now = time.time()
        lateness.append(now - event.data["t"])
        tally.note(0, event.data["n"] + 1, now)

    total = round(NOTIFY_RATE * spec.seconds)
    tally.expect = total
    async with app:
        produced = await _producer(
            {
                "kind": "notify",
                "dsn": spec.dsn,
                "rate": NOTIFY_RATE,
                "seconds": spec.seconds,
                "channel": channel,
            }
        )
        await _wait(tally, SETTLE)
        stats = dict(app.stats().sources["/reactor/postgres/bench"])
    assert produced["sent"] == total
    return {
        "notifications": total,
        "rate": NOTIFY_RATE,
        **_latency(lateness),
        "problems": tally.problems(total),
        "source": stats,
    }


async def _with_table(spec: Spec, work: Any) -> dict[str, Any]:
    """Run ``work(table)`` on a new installed table, removed afterwards."""
    import psycopg

    from reactor.sources import postgres

    name = f"bench_pg_{secrets.token_hex(5)}"
    with psycopg.connect(spec.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {name} (id bigint PRIMARY KEY, note text)")
    try:
        await postgres.install(name, dsn=spec.dsn)
        result: dict[str, Any] = await work(f"public.{name}")
        return result
    finally:
        with anyio.CancelScope(shield=True):
            await postgres.uninstall(name, dsn=spec.dsn)
            with psycopg.connect(spec.dsn, autocommit=True) as conn:
                conn.execute(f"DROP TABLE IF EXISTS {name}")


def _subscribe(app: Reactor, table: str, tally: Tally, dsn: str, subscriptions: int) -> None:
    @app.on_row_change(table, dsn=dsn, name="bench", ordered_by=None)
    async def first(event: Event) -> None:
        tally.note(0, event.data["key"]["id"], time.time())

    def other(index: int) -> Any:
        async def handle(event: Event) -> None:
            tally.note(index, event.data["key"]["id"], 0.0)

        return handle

    for index in range(1, subscriptions):
        app.subscribe(
            "reactor.postgres.row.*",
            other(index),
            source="/reactor/postgres/bench",
            name=f"sub{index}",
        )


async def measure_rows(
    spec: Spec, *, rate: float, batch: int, subscriptions: int
) -> dict[str, Any]:
    """Row change committed -> handler start at *rate*, with *subscriptions* consumers."""

    async def work(table: str) -> dict[str, Any]:
        rows = round(rate * spec.seconds / batch) * batch
        tally = Tally(subscriptions)
        tally.expect = rows * subscriptions
        app = Reactor()
        _subscribe(app, table, tally, spec.dsn, subscriptions)
        async with app:
            produced = await _producer(
                {
                    "kind": "rows",
                    "dsn": spec.dsn,
                    "rate": rate,
                    "seconds": spec.seconds,
                    "table": table,
                    "batch": batch,
                }
            )
            await _wait(tally, SETTLE)
            stats = dict(app.stats().sources["/reactor/postgres/bench"])
        commits = produced["commits"]
        committed = {first + i: at for first, count, at in commits for i in range(int(count))}
        lateness = [tally.started[key] - at for key, at in committed.items()]
        first_commit = min(at for _, _, at in commits)
        last_start = max(tally.started.values())
        return {
            "rows": rows,
            "rate": rate,
            "batch": batch,
            "subscriptions": subscriptions,
            "produced_per_s": rows / (max(at for _, _, at in commits) - first_commit or 1e-9),
            "handled_per_s": rows / (last_start - first_commit),
            **_latency(lateness),
            "problems": tally.problems(rows),
            "source": stats,
        }

    return await _with_table(spec, work)


async def measure_drain(spec: Spec) -> dict[str, Any]:
    """A backlog committed while no app ran, handled by K subscriptions."""
    import psycopg

    async def work(table: str) -> dict[str, Any]:
        rows = spec.drain_rows
        with psycopg.connect(spec.dsn, autocommit=True) as conn:
            conn.execute("SET synchronous_commit = off")
            for first in range(1, rows + 1, DRAIN_BATCH):
                conn.execute(
                    f"INSERT INTO {table} (id, note) SELECT g, 'x' FROM generate_series(%s::bigint, %s::bigint) g",
                    (first, min(first + DRAIN_BATCH - 1, rows)),
                )
        tally = Tally(K)
        tally.expect = rows * K
        app = Reactor()
        _subscribe(app, table, tally, spec.dsn, K)
        start = time.perf_counter()
        async with app:
            await _wait(tally, SETTLE)
            elapsed = time.perf_counter() - start
            stats = dict(app.stats().sources["/reactor/postgres/bench"])
        return {
            "rows": rows,
            "subscriptions": K,
            "seconds": elapsed,
            "handled_per_s": rows / elapsed,
            "problems": tally.problems(rows),
            "source": stats,
        }

    return await _with_table(spec, work)


def run_spec(spec: Spec) -> dict[str, Any]:
    """Run one measurement in this process (the child)."""
    results: dict[str, Any] = {}

    async def main() -> None:
        if spec.workload == "notify":
            results.update(await measure_notify(spec))
        elif spec.workload == "rows":
            results.update(await measure_rows(spec, rate=ROW_RATE, batch=1, subscriptions=1))
        elif spec.workload == "sustained":
            results.update(
                await measure_rows(
                    spec, rate=SUSTAINED_RATE, batch=SUSTAINED_BATCH, subscriptions=K
                )
            )
        else:
            results.update(await measure_drain(spec))

    h.run_anyio(spec.loop, main)
    return results


# -- the report --------------------------------------------------------------------------------


def verdict(workload: str, result: dict[str, Any]) -> str:
    """PASS or MISS against the workload's target."""
    if result.get("error") or result.get("problems"):
        return "ERROR"
    if workload in ("notify", "rows"):
        return "PASS" if result["p99_ms"] < TARGETS[workload] else "MISS"
    if workload == "sustained":
        return "PASS" if result["handled_per_s"] >= TARGETS[workload] * 0.98 else "MISS"
    return "PASS" if result["handled_per_s"] >= SUSTAINED_RATE else "MISS"


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.postgres", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1 s runs, asyncio only")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the results here")
    parser.add_argument("--loops", help="loops to run on (default: asyncio,trio)")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="workloads to run")
    parser.add_argument("--dsn", help="the server (default: $REACTOR_TEST_POSTGRES_DSN)")
    parser.add_argument("--plain", action="store_true", help="plain-text tables")
    parser.add_argument("--child", metavar="SPEC", help=argparse.SUPPRESS)
    parser.add_argument("--producer", metavar="SPEC", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its tables.

    :param argv: command-line arguments (default: ``sys.argv[1:]``)
    :return: 0, 1 if a run failed or lost or duplicated a delivery, 2 for a usage error
    """
    args = _parse_args(argv)
    if args.producer:
        h.print_result(produce(json.loads(args.producer)))
        return 0
    if args.child:
        h.print_result(run_spec(Spec(**json.loads(args.child))))
        return 0
    dsn = args.dsn or os.environ.get("REACTOR_TEST_POSTGRES_DSN") or DEFAULT_DSN
    loops = (args.loops or ("asyncio" if args.quick else ",".join(LOOPS))).split(",")
    workloads = [w for w in args.workloads.split(",") if w]
    for name, allowed in (("loop", LOOPS), ("workload", WORKLOADS)):
        for value in loops if name == "loop" else workloads:
            if value not in allowed:
                sys.stderr.write(f"unknown {name} {value}: choose from {', '.join(allowed)}\n")
                return 2
    seconds = SECONDS_QUICK if args.quick else SECONDS
    drain_rows = DRAIN_ROWS_QUICK if args.quick else DRAIN_ROWS
    env = h.environment(["reactor-events", "anyio", "psycopg", "trio"])
    for line in h.environment_lines(env):
        print(line)
    print(f"{seconds:.0f} s per paced run, a drain of {drain_rows:,} rows")
    results: dict[str, dict[str, Any]] = {}
    failed = False
    latency = h.Table(
        "Latency: write -> handler start, ms",
        ["workload", "loop", "rate/s", "p50", "p90", "p99", "max", "target p99", "result"],
    )
    throughput = h.Table(
        f"Row changes handled per second, {K} subscriptions",
        ["workload", "loop", "rows", "produced/s", "handled/s", "p99 ms", "target", "result"],
    )
    for workload in workloads:
        for loop in loops:
            spec = Spec(workload, loop, dsn, seconds, drain_rows)
            result = h.run_child(
                "benchmarks.postgres", spec.to_json(), SETTLE * 3 + seconds, cwd=ROOT
            )
            assert isinstance(result, dict)
            outcome = verdict(workload, result)
            result["result"] = outcome
            results[f"{workload}/{loop}"] = result
            failed = failed or outcome == "ERROR"
            if outcome == "ERROR":
                reason = result.get("error") or "; ".join(result.get("problems", []))
                print(f"{workload} on {loop}: ERROR {reason}")
                continue
            if workload in ("notify", "rows"):
                latency.add(
                    workload,
                    loop,
                    f"{result['rate']:,.0f}",
                    f"{result['p50_ms']:.2f}",
                    f"{result['p90_ms']:.2f}",
                    f"{result['p99_ms']:.2f}",
                    f"{result['max_ms']:.1f}",
                    f"< {TARGETS[workload]:.0f}",
                    outcome,
                )
            else:
                throughput.add(
                    workload,
                    loop,
                    f"{result['rows']:,}",
                    f"{result['produced_per_s']:,.0f}" if "produced_per_s" in result else "-",
                    f"{result['handled_per_s']:,.0f}",
                    f"{result['p99_ms']:.1f}" if "p99_ms" in result else "-",
                    f">= {SUSTAINED_RATE:,.0f}/s",
                    outcome,
                )
    for table in (latency, throughput):
        if table.rows:
            table.render(plain=args.plain)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "environment": env,
                    "config": {
                        "quick": args.quick,
                        "loops": loops,
                        "workloads": workloads,
                        "seconds": seconds,
                        "drain_rows": drain_rows,
                        "subscriptions": K,
                    },
                    "results": results,
                },
                indent=2,
            )
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
