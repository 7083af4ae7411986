"""Terminal tables and PNG plots of a suite run."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import _harness as h

LABELS = {
    "w1": "W1 handlers never suspend",
    "w2": "W2 handlers await sleep(0) once",
    "w1b": "W1b handlers never suspend, envelope built by each publish",
    "w2b": "W2b handlers await sleep(0) once, envelope built by each publish",
    "w6": "W6 10% of deliveries fail once and are retried",
}


def _names(summary: dict[str, Any], loop: str, order: Sequence[str]) -> list[str]:
    seen = {name for cell in summary.values() if cell["loop"] == loop for name in cell["systems"]}
    return [name for name in order if name in seen]


def _cells(summary: dict[str, Any], loop: str, workload: str) -> list[dict[str, Any]]:
    return sorted(
        (c for c in summary.values() if c["loop"] == loop and c["workload"] == workload),
        key=lambda c: int(c["k"]),
    )


def report(document: dict[str, Any], order: Sequence[str], *, plain: bool = False) -> list[str]:
    """Print the environment header, the tables of every loop and workload, the targets.

    :param document: the run's JSON document (environment, config, summary, targets).
    :param order: system names in report order.
    :param plain: plain text even if rich is installed.
    :return: the problems found (errors and noisy runs), also printed.
    """
    env, cfg, summary = document["environment"], document["config"], document["summary"]
    say = print
    for line in h.environment_lines(env):
        say(line)
    say(
        f"mode: {'quick' if cfg['quick'] else 'full'}, repeat={cfg['repeat']}, "
        f"loops={','.join(cfg['loops'])}; cells are median (min-max) over repetitions; "
        "ratios are taken within each repetition, then their median"
    )
    for name, reason in {**document["skipped_loops"], **document["skipped_systems"]}.items():
        say(f"skipped {name}: {reason}")
    for loop in cfg["loops"]:
        names = _names(summary, loop, order)
        for workload in ("w1", "w2", "w1b", "w2b", "w6"):
            cells = _cells(summary, loop, workload)
            if not cells:
                continue
            ks = [str(c["k"]) for c in cells]
            rates = h.Table(
                f"[{loop}] {LABELS[workload]}: deliveries/s by K",
                ["system", *(f"K={k}" for k in ks)],
            )
            ratios = h.Table(
                f"[{loop}] {LABELS[workload]}: x taskgroup (pair by pair)",
                ["system", *(f"K={k}" for k in ks)],
            )
            for name in names:
                row = [c["systems"].get(name) for c in cells]
                if all(r is None for r in row):
                    continue
                rates.add(
                    name,
                    *("-" if r is None else h.fmt_rate(r["deliveries_per_s"]) for r in row),
                )
                ratios.add(
                    name,
                    *(
                        "-"
                        if name not in c["systems"]
                        else "1x"
                        if name == "taskgroup"
                        else h.fmt_num(c["ratios"].get(f"{name}/taskgroup"), "x", 2)
                        for c in cells
                    ),
                )
            rates.render(plain=plain)
            ratios.render(plain=plain)
        for cell in _cells(summary, loop, "w3"):
            table = h.Table(
                f"[{loop}] W3 publish -> handler start latency, K={cell['k']}, "
                f"{document['w3']['rate']:,.0f} events/s for {document['w3']['seconds']:g} s",
                [
                    "system",
                    "events",
                    "p50 us",
                    "p99 us",
                    "max us",
                    "events/s",
                    "sustains",
                    "p99 / reactor's",
                ],
            )
            for name in names:
                s = cell["systems"].get(name)
                if s is None:
                    continue
                vs = cell["ratios"].get(f"reactor/{name}")
                table.add(
                    name,
                    f"{s['events']:,}",
                    h.fmt_num(s["p50_us"]),
                    h.fmt_num(s["p99_us"]),
                    h.fmt_num(s["max_us"]),
                    h.fmt_num(s["achieved_rate"]),
                    "yes" if s["sustains"] else "NO",
                    "-" if name == "reactor" else h.fmt_num(vs, "x", 2),
                )
            table.render(plain=plain)
        for cell in _cells(summary, loop, "w4"):
            table = h.Table(
                f"[{loop}] W4 slow consumer (busy-waits {document['w4']['consumer_us']:g} us "
                "per event), producer as fast as the system lets it",
                ["system", "events", "peak RSS growth MB", "producer done at", "elapsed s"],
            )
            for name in names:
                s = cell["systems"].get(name)
                if s is None:
                    continue
                share = s["producer_share"]
                table.add(
                    name,
                    f"{s['events']:,}",
                    h.fmt_num(s["peak_rss_growth_mb"], "", 1),
                    "ERROR" if share is None else f"{share['median']:.0%} of the run",
                    h.fmt_num(s["elapsed"], "", 1),
                )
            table.render(plain=plain)
        _subs_table(document, loop, plain)
        _timers_table(document, loop, plain)
    problems = []
    for key, cell in summary.items():
        for name, entry in cell["systems"].items():
            problems += [f"ERROR {key} {name}: {error}" for error in entry["errors"]]
    noisy = [
        f"{key} {name} ({entry['cpu_share_min']:.2f})"
        for key, cell in summary.items()
        if cell["workload"] in ("w1", "w2", "w1b", "w2b", "w6", "subs")
        for name, entry in cell["systems"].items()
        if entry["cpu_share_min"] is not None and entry["cpu_share_min"] < h.NOISY_CPU_SHARE
    ]
    for line in problems:
        say(line)
    if noisy:
        say(
            f"\nNOISY: these runs got less than {h.NOISY_CPU_SHARE:.0%} of a CPU while timed "
            f"(CPU time / wall time): {', '.join(noisy)}"
        )
    if document.get("import"):
        _import_table(document["import"], plain)
    if document["targets"]:
        table = h.Table(
            "Targets (binding on asyncio; other loops in parentheses)",
            ["loop", "target", "value", "result"],
        )
        for t in document["targets"]:
            status = t["status"] if t["binding"] else f"({t['status']})"
            table.add(t["loop"], t["target"], t["text"], status)
        table.render(plain=plain)
    return problems


def _subs_table(document: dict[str, Any], loop: str, plain: bool) -> None:
    cells = _cells(document["summary"], loop, "subs")
    if not cells:
        return
    table = h.Table(
        f"[{loop}] subs: reactor with K subscriptions, each to its own source; every event "
        "matches one",
        ["subscriptions", "events", "events/s", "registered in s", "events/s x the fewest"],
    )
    paired = document.get("subs", {}).get(loop, {})
    for cell in cells:
        s = cell["systems"].get("reactor")
        if s is None:
            continue
        ratio = "1x" if cell["k"] == paired.get("few") else h.fmt_num(paired.get("ratio"), "x", 2)
        table.add(
            f"{cell['k']:,}",
            f"{s['events']:,}",
            h.fmt_rate(s["events_per_s"]),
            h.fmt_num(s["register_s"], "", 3),
            ratio,
        )
    table.render(plain=plain)


def _timers_table(document: dict[str, Any], loop: str, plain: bool) -> None:
    for cell in _cells(document["summary"], loop, "timers"):
        s = cell["systems"].get("reactor")
        if s is None:
            continue
        table = h.Table(
            f"[{loop}] timers: reactor with {cell['k']:,} interval timers on the real clock, "
            f"{s['events']} period(s); lateness = handler start - scheduled",
            ["measure", "median (min-max)"],
        )
        for label, metric, unit, digits, scale in (
            ("registered in", "register_s", " s", 3, 1),
            ("app started in", "start_s", " s", 3, 1),
            ("due runs fired", "fired_share", "%", 1, 100),
            ("lateness p50", "p50_ms", " ms", 2, 1),
            ("lateness p99", "p99_ms", " ms", 2, 1),
            ("lateness max", "max_ms", " ms", 2, 1),
            ("CPU while runs are due", "busy_cpu_share", "%", 1, 100),
            ("CPU while nothing is due", "idle_cpu_share", "%", 2, 100),
            ("app stopped in", "stop_s", " s", 3, 1),
        ):
            value = s[metric]
            if value is not None and scale != 1:
                value = {k: v * scale if k != "n" else v for k, v in value.items()}
            table.add(label, h.fmt_num(value, unit, digits))
        table.render(plain=plain)


def _import_table(imports: dict[str, Any], plain: bool) -> None:
    table = h.Table(
        f"import time, fresh interpreters, median (min-max) of {imports['runs']}, bytecode cached",
        ["statement", "ms", "x the baseline (pair by pair)"],
    )
    ratios = {"baseline": "1x", "reactor": imports["ratio"], "app": imports["app_ratio"]}
    for name, statement in imports["statements"].items():
        ratio = ratios[name]
        table.add(
            statement,
            h.fmt_num(imports["ms"][name], "", 1),
            ratio if isinstance(ratio, str) else h.fmt_num(ratio, "x", 2),
        )
    table.render(plain=plain)


def plot(document: dict[str, Any], order: Sequence[str], directory: Path) -> list[Path]:
    """Write PNG plots: deliveries/s against K, and the W3 latency CDF, per loop.

    :param document: the run's JSON document.
    :param order: system names in plot order.
    :param directory: where to write (created if missing).
    :raises ImportError: matplotlib is not installed.
    :return: the files written.
    """
    matplotlib = importlib.import_module("matplotlib")
    matplotlib.use("Agg")
    plt = importlib.import_module("matplotlib.pyplot")
    directory.mkdir(parents=True, exist_ok=True)
    summary = document["summary"]
    written = []
    for loop in document["config"]["loops"]:
        names = _names(summary, loop, order)
        cells = _cells(summary, loop, "w1")
        if len(cells) > 1:
            fig, ax = plt.subplots(figsize=(8, 5))
            for name in names:
                points = [
                    (c["k"], c["systems"][name]["deliveries_per_s"]["median"])
                    for c in cells
                    if c["systems"].get(name, {}).get("deliveries_per_s") is not None
                ]
                if points:
                    style = (
                        "-o"
                        if name == "reactor"
                        else ("--s" if name in ("direct", "taskgroup", "eager") else ":^")
                    )
                    ax.plot(
                        *zip(*points, strict=True),
                        style,
                        label=name,
                        linewidth=2.5 if name == "reactor" else 1.2,
                    )
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("K (handlers per event)")
            ax.set_ylabel("deliveries/s (median)")
            ax.set_title(f"W1/W5 fan-out sweep, handlers never suspend ({loop})")
            written.append(_save(plt, fig, ax, directory / f"w5-throughput-{loop}.png"))
        for cell in _cells(summary, loop, "w3"):
            fig, ax = plt.subplots(figsize=(8, 5))
            for name in names:
                cdf = cell["systems"].get(name, {}).get("cdf_us")
                if cdf:
                    ys = [n / (len(cdf) - 1) for n in range(len(cdf))]
                    ax.plot(cdf, ys, label=name, linewidth=2.5 if name == "reactor" else 1.2)
            ax.set_xscale("log")
            ax.set_xlabel("publish -> handler start (us)")
            ax.set_ylabel("fraction of deliveries")
            ax.set_title(
                f"W3 latency CDF, K={cell['k']}, {document['w3']['rate']:,.0f} events/s ({loop})"
            )
            written.append(_save(plt, fig, ax, directory / f"w3-latency-cdf-{loop}.png"))
    return written


def _save(plt: Any, fig: Any, ax: Any, path: Path) -> Path:
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small", ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
