"""Machinery shared by the benchmarks: child processes, statistics, RSS sampling, tables.

Every measurement runs in a fresh interpreter (``python -m MODULE --child SPEC``), which
prints one line starting with :data:`RESULT_MARK` followed by its JSON result; the parent
collects it with :func:`run_child`. Nothing here knows about a particular workload.
"""

from __future__ import annotations

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
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import anyio

T = TypeVar("T")

RESULT_MARK = "BENCH-RESULT "
#: A timed section that never waits but got less than this share of a CPU was descheduled.
NOISY_CPU_SHARE = 0.9


def print_result(result: Any) -> None:
    """Print a child's result line for :func:`run_child` to find.

    :param result: anything JSON can encode.
    """
    print(RESULT_MARK + json.dumps(result), flush=True)


def run_child(
    module: str, spec_json: str, timeout: float, *, cwd: Path | None = None
) -> dict[str, Any] | list[Any]:
    """Run ``python -m module --child spec_json`` in a fresh interpreter.

    :param module: the module whose ``--child`` mode runs the measurement.
    :param spec_json: the measurement, as JSON.
    :param timeout: seconds before the child is killed.
    :param cwd: the child's working directory (default: the current one).
    :return: the child's result; a dict with an ``error`` key if it failed.
    """
    cmd = [sys.executable, "-m", module, "--child", spec_json]
    try:
        proc = subprocess.run(
            cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return {"error": f"child timed out after {timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            result: dict[str, Any] | list[Any] = json.loads(line[len(RESULT_MARK) :])
            return result
    tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
    return {"error": f"child exited {proc.returncode} without a result: {tail}"}


async def wait_for(
    done: anyio.Event, progress: Callable[[], int], limit: float, stall: float
) -> bool:
    """Wait for *done*, giving up on a run that takes too long or stops making progress.

    :param done: set when every delivery has finished.
    :param progress: a counter that changes while work gets done.
    :param limit: seconds to wait at most.
    :param stall: give up after this many seconds in which *progress* did not change.
    :return: whether *done* was set.
    """
    deadline = time.perf_counter() + limit
    seen, last_progress = -1, time.perf_counter()
    while not done.is_set():
        with anyio.move_on_after(0.25):
            await done.wait()
        now = time.perf_counter()
        current = progress()
        if current != seen:
            seen, last_progress = current, now
        if now >= deadline or now - last_progress >= stall:
            break
    return done.is_set()


def run_anyio(loop: str, main: Callable[[], Any]) -> None:
    """Run *main* under :func:`anyio.run` on *loop*: ``asyncio``, ``uvloop`` or ``trio``.

    :param loop: the loop's name.
    :param main: the coroutine function to run.
    """
    backend = "trio" if loop == "trio" else "asyncio"
    options: dict[str, Any] = {"use_uvloop": True} if loop == "uvloop" else {}
    anyio.run(main, backend=backend, backend_options=options)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ascending, non-empty sequence.

    :param sorted_values: the values, sorted.
    :param q: the quantile, 0 to 1.
    :return: the value at that rank.
    """
    rank = max(1, min(len(sorted_values), int(-(-q * len(sorted_values) // 1))))
    return sorted_values[rank - 1]


def stats(values: Sequence[float]) -> dict[str, float] | None:
    """Median, min, max and count of some repetitions' values.

    :param values: one value per repetition.
    :return: the statistics, or ``None`` for no values.
    """
    if not values:
        return None
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def rotated(items: Sequence[T], n: int) -> list[T]:
    """The items, rotated left by *n*: repetition *n*'s running order.

    :param items: the systems (or counts), in their first repetition's order.
    :param n: the repetition.
    :return: the rotated list.
    """
    if not items:
        return []
    n %= len(items)
    return [*items[n:], *items[:n]]


def _rss_reader() -> Any:
    """Return a function giving the current RSS in bytes: /proc on Linux, else psutil."""
    page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
    statm = Path("/proc/self/statm")
    if statm.exists():

        def from_proc() -> int:
            return int(statm.read_text().split()[1]) * page

        return from_proc
    psutil = importlib.import_module("psutil")
    process = psutil.Process()
    return lambda: int(process.memory_info().rss)


class RssSampler:
    """Samples this process's RSS from a thread every *interval* seconds, keeping the peak."""

    def __init__(self, interval: float) -> None:
        """Prepare the sampler.

        :param interval: seconds between samples.
        """
        self.rss = _rss_reader()
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)
        self.baseline = 0
        self.peak = 0
        self.samples = 0

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


def max_rss_mb() -> float:
    """The process's peak RSS so far, in MiB (``ru_maxrss``)."""
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # KiB on Linux, bytes on macOS.
    return maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)


def cpu_model() -> str:
    """The CPU's model name, as the OS reports it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def versions(distributions: Iterable[str]) -> dict[str, str]:
    """The installed version of each distribution, or ``"not installed"``.

    :param distributions: PyPI distribution names.
    :return: name to version.
    """
    out = {}
    for dist in distributions:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def environment(distributions: Iterable[str], **extra: Any) -> dict[str, Any]:
    """Describe the machine and software a benchmark runs on.

    :param distributions: the distributions whose versions matter.
    :param extra: more fields for the description (loops, file system, ...).
    :return: a JSON-ready description.
    """
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "versions": versions(distributions),
        "load_average": list(os.getloadavg()),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        **extra,
    }


def environment_lines(env: dict[str, Any]) -> list[str]:
    """The header lines a report prints about its machine and software.

    :param env: output of :func:`environment`, with ``load_average_after`` if known.
    :return: the CPU, versions and load average lines.
    """
    load = ", ".join(f"{x:.2f}" for x in env["load_average"])
    after = ", ".join(f"{x:.2f}" for x in env.get("load_average_after", []))
    return [
        f"\nCPU: {env['cpu']} ({env['cores']} cores) | {env['python']} | {env['platform']}",
        "versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()),
        f"load average (1, 5, 15 min) before the run: {load}; after: {after}",
    ]


def fmt_rate(value: dict[str, float] | None) -> str:
    """Format a rate's statistics as ``812k (790k-830k)``.

    :param value: output of :func:`stats`, or ``None`` (shown as ``ERROR``).
    :return: the cell text.
    """
    if value is None:
        return "ERROR"

    def one(v: float) -> str:
        if v >= 1e6:
            return f"{v / 1e6:.2f}M"
        return f"{v / 1e3:.0f}k" if v >= 1e4 else f"{v / 1e3:.1f}k"

    if value["n"] == 1:
        return one(value["median"])
    return f"{one(value['median'])} ({one(value['min'])}-{one(value['max'])})"


def fmt_num(value: dict[str, float] | None, unit: str = "", digits: int = 0) -> str:
    """Format statistics as ``1.23x (1.10-1.30)``.

    :param value: output of :func:`stats`, or ``None`` (shown as ``ERROR``).
    :param unit: appended to the median.
    :param digits: decimal places.
    :return: the cell text.
    """
    if value is None:
        return "ERROR"
    if value["n"] == 1:
        return f"{value['median']:.{digits}f}{unit}"
    return (
        f"{value['median']:.{digits}f}{unit} ({value['min']:.{digits}f}-{value['max']:.{digits}f})"
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

    def render(self, *, plain: bool = False) -> None:
        """Print the table to stdout.

        :param plain: print plain text even if rich is installed.
        """
        try:
            if plain:
                raise ImportError
            rich_console = importlib.import_module("rich.console")
            rich_table = importlib.import_module("rich.table")
        except ImportError:
            print(self.plain())
            return
        table = rich_table.Table()
        for i, header in enumerate(self.headers):
            table.add_column(header, justify="left" if i == 0 else "right")
        for row in self.rows:
            table.add_row(*row)
        console = rich_console.Console(width=max(160, _terminal_width()))
        title = importlib.import_module("rich.text").Text("\n" + self.title, style="bold")
        console.print(title)
        console.print(table)

    def plain(self) -> str:
        """The table as aligned plain text, title first.

        :return: the text.
        """
        widths = [
            max(len(r[i]) for r in [self.headers, *self.rows]) for i in range(len(self.headers))
        ]

        def line(cells: Sequence[str]) -> str:
            parts = [
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            ]
            return "  ".join(parts).rstrip()

        rows = [line(row) for row in self.rows]
        return "\n".join(
            [f"\n{self.title}", line(self.headers), "  ".join("-" * w for w in widths), *rows]
        )


def _terminal_width() -> int:
    try:
        return os.get_terminal_size().columns
    except OSError:
        return 0


def eta(elapsed: float, done: int, total: int) -> float | None:
    """The seconds a run still needs, from the pace of the steps done so far.

    :param elapsed: seconds since the run began.
    :param done: steps done.
    :param total: steps in the run.
    :return: the estimate, or ``None`` before the first step is done.
    """
    if done <= 0:
        return None
    return elapsed / done * max(0, total - done)


def fmt_duration(seconds: float | None) -> str:
    """``"1h02m"``, ``"4m05s"`` or ``"42s"``; ``"?"`` for an unknown duration.

    :param seconds: the duration.
    :return: the text.
    """
    if seconds is None:
        return "?"
    s = round(seconds)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


class Progress:
    """The progress of a run of many steps, on stderr.

    On a terminal, with rich installed and without *plain*, one bar that tells the steps
    done, the time elapsed, the time left (ETA) and the last step's result; elsewhere (a
    pipe, a CI log, ``--plain``, no rich) one plain line per step, with the same ETA.
    Notes (errors, retries) are printed as lines in both.

    Use it as a context manager::

        with Progress(len(runs), "W1-W6", plain=args.plain) as progress:
            for run in runs:
                progress.step(f"{run}: {result}")
    """

    def __init__(self, total: int, title: str, *, plain: bool = False) -> None:
        """Prepare a display of *total* steps.

        :param total: how many steps the run has.
        :param title: what is running, in front of the bar.
        :param plain: plain lines even on a terminal with rich installed.
        """
        self.total = total
        self.title = title
        self.done = 0
        self._started = time.perf_counter()
        self._bar: Any = None
        self._task: Any = None
        if plain or not sys.stderr.isatty():
            return
        try:
            progress = importlib.import_module("rich.progress")
            console = importlib.import_module("rich.console").Console(stderr=True)
        except ImportError:
            return
        self._bar = progress.Progress(
            progress.TextColumn("[bold]{task.description}"),
            progress.BarColumn(),
            progress.MofNCompleteColumn(),
            progress.TimeElapsedColumn(),
            progress.TextColumn("ETA"),
            progress.TimeRemainingColumn(),
            progress.TextColumn("{task.fields[last]}"),
            console=console,
        )

    def __enter__(self) -> Progress:
        self._started = time.perf_counter()
        if self._bar is not None:
            self._bar.start()
            self._task = self._bar.add_task(self.title, total=self.total, last="")
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def step(self, text: str, *, note: bool = False) -> None:
        """Count one step done.

        :param text: what the step was and what it gave.
        :param note: print *text* as a line on a terminal too (an error, say).
        """
        self.done += 1
        if self._bar is None:
            left = eta(time.perf_counter() - self._started, self.done, self.total)
            print(
                f"[{self.done}/{self.total}, ETA {fmt_duration(left)}] {text}",
                file=sys.stderr,
                flush=True,
            )
            return
        if note:
            self._bar.console.print(text, markup=False, highlight=False)
        self._bar.update(self._task, advance=1, last=text[:80])

    def note(self, text: str) -> None:
        """Print a line that is not a step (a retry, a warning) without breaking the bar.

        :param text: the line.
        """
        if self._bar is None:
            print(text, file=sys.stderr, flush=True)
        else:
            self._bar.console.print(text, markup=False, highlight=False)
