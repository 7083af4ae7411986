"""File-change benchmark: latency from a write to the start of its handler.

Run ``python -m benchmarks.files [--quick] [--json out.json] [--loops asyncio,trio]``.

For each loop and watcher mode (native OS notifications; polling), one app watches a fresh
temporary directory with ``on_file_change`` (default ``debounce=0.05``). The writer creates
one new file at a time: it takes ``time.perf_counter()``, writes the file, and waits for
the handler, whose first line takes ``perf_counter()`` again; the difference is one sample.
Writes are spaced by a random 30-90 ms (seeded), so that each write is its own batch and
lands at a different phase of the watcher's polling step. Reported: p50, p99 and max
(nearest rank). A second measure creates a burst of 2,000 files as fast as Python can and
reports how long writing them took and how long after the last write the last handler
started.

Target: native watcher, p99 < debounce + 50 ms, binding on asyncio; trio and
polling are reported (polling adds up to one poll interval, here 50 ms, so its line shows
p99 against debounce + poll interval + 50 ms).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import platform
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio

from reactor import Event, Reactor
from reactor.sources.files import FILE_CREATED, on_file_change

DEBOUNCE = 0.05
POLL_INTERVAL = 0.05
TARGET_MARGIN = 0.05
SAMPLES = 200
SAMPLES_QUICK = 40
BURST = 2000
GAP_RANGE = (0.030, 0.090)
WAIT = 10.0


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of sorted values.

    :param sorted_values: the samples, ascending
    :param q: the percentile, 0-100
    :return: the sample at that rank
    """
    rank = max(1, min(len(sorted_values), round(q / 100 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


async def _measure(mode: str, samples: int, seed: int) -> dict[str, Any]:
    """Measure write-to-handler latency and a burst on one watcher mode, in the running loop.

    :param mode: ``"native"`` or ``"polling"``
    :param samples: how many single writes to time
    :param seed: seeds the gaps between writes
    :return: the latencies (seconds) and the burst figures
    """
    started: dict[str, float] = {}
    arrived = anyio.Event()
    burst_done = anyio.Event()
    expected = [""]
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        app = Reactor()

        @on_file_change(
            app,
            root,
            debounce=DEBOUNCE,
            force_polling=mode == "polling",
            poll_interval=POLL_INTERVAL,
            name="bench",
        )
        async def handler(event: Event) -> None:
            now = time.perf_counter()
            if event.type == FILE_CREATED:
                path = event.data["path"]
                started.setdefault(path, now)
                if path == expected[0]:
                    arrived.set()
                elif path.startswith("burst/") and len(started) == samples + BURST:
                    burst_done.set()

        latencies: list[float] = []
        async with app:
            for i in range(samples):
                await anyio.sleep(rng.uniform(*GAP_RANGE))
                name = f"single-{i:05}.txt"
                expected[0] = name
                arrived = anyio.Event()
                t0 = time.perf_counter()
                (root / name).write_bytes(b"x")
                with anyio.fail_after(WAIT):
                    await arrived.wait()
                latencies.append(started[name] - t0)

            (root / "burst").mkdir()
            await anyio.sleep(0.3)  # let the directory's own report pass
            names = [f"burst/b-{i:05}.dat" for i in range(BURST)]
            expected[0] = ""
            t0 = time.perf_counter()
            for name in names:
                (root / name).write_bytes(b"x")
            written = time.perf_counter() - t0
            with anyio.fail_after(WAIT):
                await burst_done.wait()
            burst_total = max(started[name] for name in names) - t0
            stats = dict(app.stats().sources["bench"])
    latencies.sort()
    return {
        "samples": len(latencies),
        "p50_ms": _percentile(latencies, 50) * 1000,
        "p99_ms": _percentile(latencies, 99) * 1000,
        "max_ms": latencies[-1] * 1000,
        "burst_files": BURST,
        "burst_write_ms": written * 1000,
        "burst_all_handled_ms": burst_total * 1000,
        "burst_after_last_write_ms": (burst_total - written) * 1000,
        "source_stats": stats,
    }


def _versions() -> dict[str, str]:
    found = {}
    for name in ("reactor-events", "anyio", "watchfiles", "trio"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "missing"
    return found


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.files", description=__doc__)
    parser.add_argument("--quick", action="store_true", help=f"{SAMPLES_QUICK} samples per run")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the results here")
    parser.add_argument("--loops", default="asyncio,trio", help="loops to run on")
    parser.add_argument("--modes", default="native,polling", help="watcher modes")
    parser.add_argument("--seed", type=int, default=1, help="seeds the gaps between writes")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the table.

    :param argv: command-line arguments (default: ``sys.argv[1:]``)
    :return: 0, or 1 if a run failed
    """
    args = _parse_args(argv)
    samples = SAMPLES_QUICK if args.quick else SAMPLES
    loops = [loop for loop in args.loops.split(",") if loop]
    modes = [mode for mode in args.modes.split(",") if mode]
    print(
        f"CPython {platform.python_version()} | {platform.platform()} | "
        + ", ".join(f"{k} {v}" for k, v in _versions().items())
    )
    print(
        f"debounce {DEBOUNCE * 1000:.0f} ms, poll interval {POLL_INTERVAL * 1000:.0f} ms, "
        f"{samples} single writes per run, burst of {BURST} files\n"
    )
    header = (
        f"{'loop':8} {'mode':8} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} "
        f"{'burst write ms':>15} {'last handled after last write ms':>33}  target p99 < ms  result"
    )
    print(header)
    print("-" * len(header))
    results: list[dict[str, Any]] = []
    failed = False
    for loop in loops:
        if loop not in ("asyncio", "trio") or (loop == "trio" and not _importable("trio")):
            print(f"{loop:8} skipped: not available")
            continue
        for mode in modes:
            try:
                result = anyio.run(_measure, mode, samples, args.seed, backend=loop)
            except Exception as exc:  # report and go on with the other runs
                failed = True
                print(f"{loop:8} {mode:8} ERROR {exc!r}")
                continue
            target_ms = (
                DEBOUNCE + TARGET_MARGIN + (POLL_INTERVAL if mode == "polling" else 0)
            ) * 1000
            ok = result["p99_ms"] < target_ms
            binding = loop == "asyncio" and mode == "native"
            verdict = ("PASS" if ok else "MISS") if binding else f"({'PASS' if ok else 'MISS'})"
            result.update(loop=loop, mode=mode, target_p99_ms=target_ms, result=verdict)
            results.append(result)
            print(
                f"{loop:8} {mode:8} {result['p50_ms']:7.1f} {result['p99_ms']:7.1f} "
                f"{result['max_ms']:7.1f} {result['burst_write_ms']:15.0f} "
                f"{result['burst_after_last_write_ms']:33.0f}  {target_ms:15.0f}  {verdict}"
            )
    print("\nbinding: asyncio + native; parenthesised results are reported only")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "environment": {
                        "python": platform.python_version(),
                        "platform": platform.platform(),
                        "versions": _versions(),
                    },
                    "config": {
                        "debounce_s": DEBOUNCE,
                        "poll_interval_s": POLL_INTERVAL,
                        "samples": samples,
                        "burst": BURST,
                        "gap_range_s": GAP_RANGE,
                        "seed": args.seed,
                    },
                    "results": results,
                },
                indent=2,
            )
        )
    return 1 if failed else 0


def _importable(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
