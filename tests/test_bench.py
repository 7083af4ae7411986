"""The benchmark suite (``python -m benchmarks``): correct counts, honest errors, the CLI.

These tests check behaviour only (counts, errors, ratios, output files); timing figures
belong to the suite itself, never to a test. The peer libraries, rich and matplotlib
come from ``benchmarks/requirements.txt``, not from the ``dev`` extra: what needs one
is skipped, saying which, when it is not installed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from benchmarks import _workloads
from benchmarks._harness import Progress, Table, eta, fmt_duration, percentile, rotated, stats
from benchmarks._suite import (
    IMPORTS,
    INSTALL_PEERS,
    SUBS_COUNTS,
    SYSTEMS,
    TIMERS,
    Config,
    available_systems,
    evaluate_targets,
    main,
    measure_import,
    plan,
    runs_in,
    summarise,
    summarise_subs,
)
from benchmarks._systems import ALL_LOOPS, Handler, Publish, Semantics, System
from benchmarks._workloads import Spec, expected_failures, measure
from reactor._cli import main as reactor_main

BASELINES_AND_REACTOR = ("direct", "taskgroup", "eager", "reactor", "reactor-metrics")
#: W1 and W2 with the envelope built in the timed loop.
BUILD = ("w1b", "w2b")
PEERS = tuple(name for name, system in SYSTEMS.items() if system.kind == "peer")
#: The repository's root, where ``python -m benchmarks`` runs.
ROOT = Path(__file__).resolve().parents[1]
#: The peers that are not installed here, with the reason the suite gives.
_, MISSING_PEERS = available_systems(PEERS)
HAVE_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


def _spec(workload: str, system: str, loop: str = "asyncio", **fields: Any) -> Spec:
    defaults: dict[str, Any] = {"k": 4, "events": 300}
    if workload == "w3":
        defaults.update(events=200, rate=20_000.0)
    if workload == "w4":
        defaults.update(k=1, events=300, consumer_us=5.0)
    defaults.update(fields)
    return Spec(workload=workload, system=system, loop=loop, timeout=30, **defaults)


# ------------------------------------------------------------------ every system is exact


@pytest.mark.parametrize("loop", ALL_LOOPS)
@pytest.mark.parametrize("system", BASELINES_AND_REACTOR)
@pytest.mark.parametrize("workload", ["w1", "w2", "w3", "w4", "w6"])
def test_baselines_and_reactor_deliver_every_event_to_every_handler(
    workload: str, system: str, loop: str
) -> None:
    result = measure(_spec(workload, system, loop), SYSTEMS[system])
    assert "error" not in result, result
    if workload in ("w1", "w2", "w6"):
        assert result["deliveries"] == 300 * 4
    if workload == "w6":
        assert result["failed_attempts"] == sum(expected_failures(4, 300)) == 120


#: The reactor variants of issue 15's goal 2 and the cells the suite runs them in.
VARIANT_CELLS = {
    "reactor-ordered": {"w1", "w2", "w1b", "w2b"},
    "reactor-receipt": {"w1", "w2"},
}


@pytest.mark.parametrize("loop", ALL_LOOPS)
@pytest.mark.parametrize(
    ("system", "workload"),
    [(name, workload) for name, cells in VARIANT_CELLS.items() for workload in sorted(cells)]
    + [(name, w) for name in ("direct", "taskgroup", "eager", "reactor") for w in ("w1b", "w2b")],
)
def test_the_variants_and_the_envelope_building_workloads_deliver_every_event(
    system: str, workload: str, loop: str
) -> None:
    result = measure(_spec(workload, system, loop), SYSTEMS[system])
    assert "error" not in result, result
    assert result["deliveries"] == 300 * 4


def test_reactor_ordered_holds_an_event_while_an_earlier_one_of_its_key_runs() -> None:
    import anyio

    from benchmarks._systems import ORDER_KEYS
    from reactor import Event

    first, same_key, other_key = 0, ORDER_KEYS, 1  # keys 0, 0 and 1
    started = {i: anyio.Event() for i in (first, same_key, other_key)}
    release = anyio.Event()

    async def handler(event: Event) -> None:
        started[event.data].set()
        if event.data == first:
            await release.wait()

    async def main_() -> None:
        async with SYSTEMS["reactor-ordered"].open([handler], "asyncio", 0) as publish:
            for i in (first, same_key, other_key):
                await publish(Event(type="bench.event", source="/bench", data=i))
            with anyio.fail_after(10):
                await started[other_key].wait()
                await anyio.wait_all_tasks_blocked()
                # Without the ordering it would have started: 16 may run at once.
                assert not started[same_key].is_set()
                release.set()
                await started[same_key].wait()

    anyio.run(main_)


def test_the_peers_do_not_run_the_envelope_building_workloads() -> None:
    peer = SYSTEMS[PEERS[0]]
    assert not runs_in(peer, "w1b", 4) and not runs_in(peer, "w2b", 4)
    assert measure(_spec("w1b", peer.name), peer) == {
        "error": "ValueError: the peers do not run the envelope-building workloads"
    }


@pytest.mark.parametrize("loop", ALL_LOOPS)
def test_the_subs_workload_routes_each_event_to_the_one_subscription_of_its_source(
    loop: str,
) -> None:
    result = measure(
        Spec(workload="subs", system="reactor", loop=loop, k=50, events=333, timeout=30),
        SYSTEMS["reactor"],
    )
    assert "error" not in result, result
    assert (result["subscriptions"], result["deliveries"]) == (50, 333)
    assert result["register_s"] > 0 and result["events_per_s"] > 0


def test_the_subs_workload_is_reactors_only() -> None:
    result = measure(
        Spec(workload="subs", system="taskgroup", loop="asyncio", k=5, events=10),
        SYSTEMS["taskgroup"],
    )
    assert result == {"error": "ValueError: the subs workload measures reactor's routing only"}


@pytest.mark.parametrize("loop", ALL_LOOPS)
def test_the_timers_workload_runs_every_due_run_of_every_timer(loop: str) -> None:
    spec = Spec(
        workload="timers",
        system="reactor",
        loop=loop,
        k=200,
        events=2,
        period=0.8,
        jitter=0.3,
        gc_freeze=False,
    )
    result = measure(spec, SYSTEMS["reactor"])
    assert "error" not in result, result
    assert (result["timers"], result["due_runs"], result["runs"]) == (200, 400, 400)
    assert result["fired_share"] == 1.0 and result["missed"] == 0
    assert result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]
    assert result["idle_s"] > 0 and 0 <= result["idle_cpu_share"]
    assert min(result["register_s"], result["start_s"], result["stop_s"]) >= 0


def test_the_timers_workload_is_reactors_only() -> None:
    result = measure(
        Spec(workload="timers", system="taskgroup", loop="asyncio", k=5, events=1),
        SYSTEMS["taskgroup"],
    )
    assert result == {"error": "ValueError: the timers workload measures reactor's timers only"}


def _timers_record(rep: int, **figures: float) -> dict[str, Any]:
    spec = Spec(workload="timers", system="reactor", loop="asyncio", k=TIMERS, events=2)
    result = {
        "register_s": 0.3,
        "start_s": 0.2,
        "stop_s": 0.01,
        "p50_ms": 0.2,
        "p99_ms": 5.0,
        "max_ms": 9.0,
        "fired_share": 1.0,
        "idle_cpu_share": 0.001,
        "busy_cpu_share": 0.3,
        "cpu_share": 0.3,
        **figures,
    }
    return {"spec": spec.to_dict(), "rep": rep, "result": result, "attempts": 1}


def test_the_timers_plan_and_targets() -> None:
    runs = list(plan(_cfg(workloads=("timers",), repeat=3)))
    assert [(run.rep, run.specs[0].workload, run.specs[0].k) for run in runs] == [
        (rep, "timers", TIMERS) for rep in range(3)
    ]
    records = [
        _timers_record(0, p99_ms=4.0),
        _timers_record(1, p99_ms=12.0, stop_s=1.5),
        _timers_record(2, p99_ms=11.0, fired_share=0.99, stop_s=2.0),
    ]
    targets = {t["target"]: t for t in evaluate_targets(summarise(records), ["asyncio"])}
    count = f"timers: {TIMERS:,} interval timers"
    expected = {
        f"{count} registered in < 1 s": ("PASS", "0.30 s"),
        f"{count}: every due run fired": ("PASS", "100.00%"),
        f"{count}: p99 lateness < 10 ms": ("MISS", "11.00 ms"),
        f"{count}: CPU while nothing is due < 1%": ("PASS", "0.10%"),
        f"{count}: app stopped in < 1 s": ("MISS", "1.50 s"),
    }
    assert {name: (targets[name]["status"], targets[name]["text"]) for name in expected} == expected


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@pytest.mark.parametrize("system", PEERS)
@pytest.mark.parametrize("workload", ["w1", "w2", "w3", "w4", "w6"])
def test_peers_deliver_every_event_to_every_handler(workload: str, system: str, loop: str) -> None:
    if system in MISSING_PEERS:
        pytest.skip(f"peer {system}: {MISSING_PEERS[system]}")
    result = measure(_spec(workload, system, loop, k=3), SYSTEMS[system])
    assert "error" not in result, result


# --------------------------------------------------- a system that loses work is an error


def _lossy(every: int, *, duplicate: bool = False) -> System:
    @asynccontextmanager
    async def open_(handlers: Sequence[Handler], loop: str, retries: int) -> AsyncIterator[Publish]:
        seen = 0

        async def publish(event: Any) -> None:
            nonlocal seen
            seen += 1
            if seen % every == 0:
                if not duplicate:
                    return  # dropped: the handlers never see it
                for handler in handlers:
                    await handler(event)
            for handler in handlers:
                await handler(event)

        yield publish

    return _system("lossy", open_)


def _system(name: str, opener: Any) -> System:
    semantics = Semantics(awaits="-", concurrency="-", buffers="-", errors="-")
    return System(
        name=name, kind="peer", summary="-", loops=ALL_LOOPS, open=opener, semantics=semantics
    )


@pytest.mark.parametrize("duplicate", [False, True], ids=["drops", "duplicates"])
@pytest.mark.parametrize("workload", ["w1", "w3", "w6"])
def test_a_system_that_drops_or_duplicates_deliveries_is_an_error_not_a_speed(
    workload: str, duplicate: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_workloads, "STALL_SECONDS", 0.3)
    result = measure(_spec(workload, "lossy"), _lossy(50, duplicate=duplicate))
    assert set(result) == {"error"}
    assert result["error"].startswith("lost deliveries")


def test_a_failing_system_is_reported_with_its_exception() -> None:
    @asynccontextmanager
    async def broken(
        handlers: Sequence[Handler], loop: str, retries: int
    ) -> AsyncIterator[Publish]:
        if loop:
            raise RuntimeError("cannot start")
        yield publish_nothing

    async def publish_nothing(event: Any) -> None:
        pass

    result = measure(_spec("w1", "broken"), _system("broken", broken))
    assert result == {"error": "RuntimeError: cannot start"}


def test_the_eager_baseline_isolates_a_raising_handler_and_finishes_suspended_ones() -> None:
    import anyio
    import anyio.lowlevel

    eager = SYSTEMS["eager"]
    seen: list[str] = []

    async def raises(event: Any) -> None:
        raise ValueError(event)

    async def suspends(event: Any) -> None:
        await anyio.lowlevel.checkpoint()
        seen.append(f"suspends {event}")

    async def inline(event: Any) -> None:
        seen.append(f"inline {event}")

    async def main_() -> None:
        async with eager.open([raises, suspends, inline], "asyncio", 0) as publish:
            for event in ("a", "b"):
                await publish(event)

    anyio.run(main_)
    assert sorted(seen) == ["inline a", "inline b", "suspends a", "suspends b"]


# ------------------------------------------------------------------ planning and summaries


def _cfg(**fields: Any) -> Config:
    values: dict[str, Any] = {
        "quick": False,
        "repeat": 3,
        "loops": ("asyncio",),
        "systems": ("taskgroup", "eager", "reactor"),
        "workloads": ("w1",),
        "scale": 1.0,
        "retry_noisy": 0,
    }
    values.update(fields)
    return Config(**values)


def test_full_plan_alternates_systems_with_a_rotating_order_one_measurement_per_child() -> None:
    runs = list(plan(_cfg()))
    assert all(len(run.specs) == 1 for run in runs)
    k1 = [(run.rep, run.specs[0].system) for run in runs if run.specs[0].k == 1]
    assert k1 == [
        (0, "taskgroup"),
        (0, "eager"),
        (0, "reactor"),
        (1, "eager"),
        (1, "reactor"),
        (1, "taskgroup"),
        (2, "reactor"),
        (2, "taskgroup"),
        (2, "eager"),
    ]


def test_quick_plan_runs_one_child_per_system_and_w4_alone() -> None:
    runs = list(plan(_cfg(quick=True, repeat=1, workloads=("w1", "w2", "w3", "w4", "w6"))))
    w4 = [run for run in runs if run.specs[0].workload == "w4"]
    rest = [run for run in runs if run.specs[0].workload != "w4"]
    assert [len(run.specs) for run in w4] == [1, 1, 1]
    assert sorted(run.specs[0].system for run in rest) == ["eager", "reactor", "taskgroup"]
    assert all(len({spec.system for spec in run.specs}) == 1 for run in rest)


def test_the_variants_run_in_the_goal_cells_and_w1b_w2b_leave_out_the_peers() -> None:
    systems: tuple[str, ...] = ("taskgroup", "eager", "reactor", "reactor-metrics")
    systems += ("reactor-ordered", "reactor-receipt", "bubus")
    workloads = ("w1", "w2", "w3", "w4", "w1b", "w2b")
    cfg = _cfg(repeat=1, systems=systems, workloads=workloads)
    cells: dict[str, set[tuple[str, int]]] = {}
    for run in plan(cfg):
        for spec in run.specs:
            cells.setdefault(spec.system, set()).add((spec.workload, spec.k))
    assert cells["reactor-ordered"] == {("w1", 4), ("w2", 4), ("w1b", 4), ("w2b", 4)}
    assert cells["reactor-receipt"] == {("w1", 4), ("w2", 4)}
    for name in ("taskgroup", "eager", "reactor"):
        assert {("w1b", 4), ("w2b", 4), ("w3", 4), ("w4", 1), ("w1", 16)} <= cells[name]
    for name in ("reactor-metrics", "bubus"):
        assert ("w1", 4) in cells[name] and ("w3", 4) in cells[name]
        assert not {("w1b", 4), ("w2b", 4)} & cells[name]


def test_w5_widens_w1_to_the_fan_out_sweep_and_slow_systems_get_fewer_events() -> None:
    cfg = _cfg(workloads=("w5",), repeat=1)
    ks = sorted({run.specs[0].k for run in plan(cfg)})
    assert ks == [1, 2, 4, 8, 16, 32, 64]
    slow = [s for s in SYSTEMS.values() if s.scale < 1]
    for system in slow:
        assert cfg.events("asyncio", 4, system) < cfg.events("asyncio", 4, SYSTEMS["reactor"])


def _record(system: str, rep: int, rate: float, workload: str = "w1") -> dict[str, Any]:
    spec = Spec(workload=workload, system=system, loop="asyncio", k=4, events=100)
    result: dict[str, Any] = {"deliveries_per_s": rate, "cpu_share": 1.0, "elapsed": 1.0}
    return {"spec": spec.to_dict(), "rep": rep, "result": result, "attempts": 1}


def _w3_record(system: str, rep: int, p50: float, p99: float) -> dict[str, Any]:
    spec = Spec(workload="w3", system=system, loop="asyncio", k=4, events=100, rate=1.0)
    result: dict[str, Any] = {
        "p50_us": p50,
        "p90_us": p99,
        "p99_us": p99,
        "max_us": p99,
        "achieved_rate": 1.0,
        "mean_burst": 1.0,
        "sustains": True,
        "cpu_share": 1.0,
        "cdf_us": [p50, p99],
    }
    return {"spec": spec.to_dict(), "rep": rep, "result": result, "attempts": 1}


def test_issue_15_goals_are_rows_of_their_own_paired_by_repetition() -> None:
    records = []
    for rep, (eager_p50, reactor_p50) in enumerate(((40.0, 100.0), (50.0, 50.0), (40.0, 60.0))):
        records += [_w3_record("eager", rep, eager_p50, 200.0)]
        records += [_w3_record("reactor", rep, reactor_p50, 100.0 * (rep + 1))]
        records += [_w3_record("taskgroup", rep, 500.0, 900.0)]
    for workload, rates in (
        ("w1", {"taskgroup": 100.0, "eager": 1000.0, "reactor": 1100.0, "reactor-ordered": 500.0}),
        ("w2", {"taskgroup": 100.0, "eager": 100.0, "reactor": 290.0, "reactor-ordered": 310.0}),
        ("w1b", {"taskgroup": 50.0, "eager": 500.0, "reactor": 400.0, "reactor-ordered": 350.0}),
    ):
        records += [_record(name, 0, rate, workload) for name, rate in rates.items()]
    targets = {t["target"]: t for t in evaluate_targets(summarise(records), ["asyncio"])}
    goals = {name: (t["text"], t["status"]) for name, t in targets.items() if "goal" in name}
    # p99 reactor/eager per repetition: 0.5, 1.0, 1.5; p50: 2.5, 1.0, 1.5 (medians 1.0, 1.5).
    assert goals == {
        "goal 1: W3 K=4 reactor p99 <= 1x eager's (reactor/eager)": ("1.00x", "PASS"),
        "goal 1: W3 K=4 reactor p50 <= 2x eager's (reactor/eager)": ("1.50x", "PASS"),
        "goal 2: W1 K=4 reactor/taskgroup >= 10x (prebuilt)": ("11.00x", "PASS"),
        "goal 2: W1 K=4 reactor/eager >= 0.6x (prebuilt)": ("1.10x", "PASS"),
        "goal 2: W2 K=4 reactor/taskgroup >= 3x (prebuilt)": ("2.90x", "MISS"),
        "goal 2: W1b K=4 reactor/taskgroup >= 10x (envelope built by publish())": ("8.00x", "MISS"),
        "goal 2: W1b K=4 reactor/eager >= 0.6x (envelope built by publish())": ("0.80x", "PASS"),
        "goal 2: W1 K=4 reactor-ordered/taskgroup >= 10x (prebuilt)": ("5.00x", "MISS"),
        "goal 2: W1 K=4 reactor-ordered/eager >= 0.6x (prebuilt)": ("0.50x", "MISS"),
        "goal 2: W2 K=4 reactor-ordered/taskgroup >= 3x (prebuilt)": ("3.10x", "PASS"),
        "goal 2: W1b K=4 reactor-ordered/taskgroup >= 10x (envelope built by publish())": (
            "7.00x",
            "MISS",
        ),
        "goal 2: W1b K=4 reactor-ordered/eager >= 0.6x (envelope built by publish())": (
            "0.70x",
            "PASS",
        ),
    }
    # The older, looser targets stay.
    assert targets["W1 K=4 reactor/taskgroup >= 6x"]["status"] == "PASS"


def test_ratios_are_taken_pair_by_pair_then_reduced_to_their_median() -> None:
    # Per repetition reactor/taskgroup is 10, 2 and 3: median 3. The ratio of the medians
    # (300 / 100) would also be 3 here, so the min-max range tells the two apart.
    records = [
        _record("taskgroup", 0, 10.0),
        _record("reactor", 0, 100.0),
        _record("taskgroup", 1, 100.0),
        _record("reactor", 1, 200.0),
        _record("taskgroup", 2, 100.0),
        _record("reactor", 2, 300.0),
    ]
    cell = summarise(records)["asyncio/w1/K=4"]
    assert cell["ratios"]["reactor/taskgroup"] == {"median": 3.0, "min": 2.0, "max": 10.0, "n": 3}
    assert cell["systems"]["reactor"]["deliveries_per_s"]["median"] == 200.0


def test_a_failed_run_drops_out_of_the_ratios_and_is_listed() -> None:
    records = [_record("taskgroup", 0, 10.0), _record("reactor", 0, 100.0)]
    records.append({**_record("reactor", 1, 0.0), "result": {"error": "lost deliveries: 3"}})
    records.append(_record("taskgroup", 1, 10.0))
    cell = summarise(records)["asyncio/w1/K=4"]
    assert cell["ratios"]["reactor/taskgroup"]["n"] == 1
    assert cell["systems"]["reactor"]["errors"] == ["lost deliveries: 3"]


def _subs_record(count: int, rep: int, rate: float, register_s: float) -> dict[str, Any]:
    spec = Spec(workload="subs", system="reactor", loop="asyncio", k=count, events=100)
    result = {"events_per_s": rate, "register_s": register_s, "cpu_share": 1.0}
    return {"spec": spec.to_dict(), "rep": rep, "result": result, "attempts": 1}


def test_the_subs_plan_alternates_the_counts_and_pairs_them_by_repetition() -> None:
    runs = list(plan(_cfg(workloads=("subs",), repeat=2)))
    assert [(run.rep, run.specs[0].k) for run in runs] == [
        (0, SUBS_COUNTS[0]),
        (0, SUBS_COUNTS[1]),
        (1, SUBS_COUNTS[1]),
        (1, SUBS_COUNTS[0]),
    ]
    assert all(run.specs[0].system == "reactor" for run in runs)
    few, many = SUBS_COUNTS
    # Per repetition many/few is 0.5 and 0.8; a failed run drops its repetition.
    records = [
        _subs_record(few, 0, 100.0, 0.0),
        _subs_record(many, 0, 50.0, 0.4),
        _subs_record(few, 1, 100.0, 0.0),
        _subs_record(many, 1, 80.0, 0.6),
        _subs_record(few, 2, 100.0, 0.0),
        {**_subs_record(many, 2, 0.0, 0.0), "result": {"error": "lost deliveries: 1"}},
    ]
    subs = summarise_subs(records)["asyncio"]
    assert subs["ratio"] == {"median": 0.65, "min": 0.5, "max": 0.8, "n": 2}
    assert subs["register_s"] == {"median": 0.5, "min": 0.4, "max": 0.6, "n": 2}
    imports = {"ratio": {"median": 1.4, "min": 1.2, "max": 1.5, "n": 3}}
    targets = {
        t["target"]: t
        for t in evaluate_targets(
            summarise(records), ["asyncio"], subs={"asyncio": subs}, imports=imports
        )
    }
    ratio = targets[f"subs: {many:,} subscriptions >= 0.5x the events/s of {few}"]
    assert (ratio["status"], ratio["text"], ratio["binding"]) == ("PASS", "0.65x", True)
    register = targets[f"subs: {many:,} subscriptions registered in < 1 s"]
    assert (register["status"], register["text"]) == ("PASS", "0.50 s")
    imported = targets["import reactor <= 1.3x import anyio, attrs"]
    assert (imported["status"], imported["text"], imported["binding"]) == ("MISS", "1.40x", True)


def test_import_times_are_paired_by_repetition() -> None:
    result = measure_import(runs=2)
    assert result["statements"] == IMPORTS
    assert {name: len(values) for name, values in result["raw_ms"].items()} == dict.fromkeys(
        IMPORTS, 2
    )
    assert result["ratio"]["n"] == result["app_ratio"]["n"] == 2
    assert all(value > 0 for values in result["raw_ms"].values() for value in values)


def test_targets_bind_on_asyncio_and_say_pass_or_miss() -> None:
    records = [
        _record("taskgroup", 0, 100.0),
        _record("eager", 0, 1000.0),
        _record("reactor", 0, 700.0),
        _record("reactor-metrics", 0, 650.0),
    ]
    targets = {t["target"]: t for t in evaluate_targets(summarise(records), ["asyncio"])}
    metrics = targets["W1 K=4 Prometheus metrics cost < 5% (reactor/reactor-metrics < 1.05x)"]
    assert (metrics["status"], metrics["text"]) == ("MISS", "1.08x")
    w1 = targets["W1 K=4 reactor/taskgroup >= 6x"]
    assert (w1["status"], w1["text"], w1["binding"]) == ("PASS", "7.00x", True)
    assert targets["W1 K=4 reactor within 2x of eager (reactor/eager >= 0.5x)"]["status"] == "PASS"
    assert targets["W2 K=4 reactor/taskgroup >= 1.5x"]["status"] == "n/a"


def test_harness_statistics_and_plain_tables() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.99) == 4.0
    assert stats([]) is None
    assert rotated(["a", "b", "c"], 4) == ["b", "c", "a"]
    table = Table("title", ["system", "rate"])
    table.add("reactor", "1.00M")
    assert table.plain().splitlines()[2:] == ["system    rate", "-------  -----", "reactor  1.00M"]


def test_tables_render_with_rich_when_it_is_installed(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("rich", reason=f"rich is not installed ({INSTALL_PEERS})")
    table = Table("[asyncio] title", ["system", "rate"])
    table.add("reactor", "1.00M")
    table.render()
    out = capsys.readouterr().out
    # The title is printed as text: "[asyncio]" is not taken for rich markup.
    assert "[asyncio] title" in out
    assert "┃ system" in out
    assert "│ reactor │ 1.00M │" in out


# ----------------------------------------------------------------------------- the CLI


def test_bench_list_names_every_system_and_its_semantics(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    for name in SYSTEMS:
        assert f"\n{name} (" in f"\n{out}"
    assert out.count("buffers:") == len(SYSTEMS)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--loops", "tokio"], "--loops: unknown tokio"),
        (["--systems", "reactor"], "the taskgroup baseline must be among --systems"),
        (["--repeat", "0"], "--repeat must be at least 1"),
        (["--workloads", "w9"], "--workloads: unknown w9"),
    ],
)
def test_bench_usage_errors_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_the_suite_runs_as_python_m_benchmarks_from_the_repository() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--list"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    for name in SYSTEMS:
        assert f"\n{name} (" in f"\n{proc.stdout}"
    for name, reason in MISSING_PEERS.items():
        assert f"{name} (peer, skipped: {reason};" in proc.stdout


def test_the_reactor_command_has_no_bench(capsys: pytest.CaptureFixture[str]) -> None:
    # The benchmarks are not installed with reactor: `reactor bench` is a usage error.
    assert reactor_main(["bench", "--list"]) == 2
    assert "invalid choice: 'bench'" in capsys.readouterr().err
    assert reactor_main(["--help"]) == 0
    assert "bench" not in capsys.readouterr().out


@pytest.mark.skipif(sys.platform == "win32", reason="SIGPIPE is Unix's")
def test_list_to_a_pipe_nobody_reads_ends_quietly() -> None:
    # The reader is gone before the suite writes anything: its first write fails.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks", "--list"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            cwd=ROOT,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert (proc.returncode, proc.stderr.decode()) == (141, "")


@pytest.mark.timeout(300)
def test_quick_smoke_run(tmp_path: Path) -> None:
    """``python -m benchmarks --quick --json``: every system runs and every count is right.

    Every installed one, that is: a peer that is not installed is skipped with its reason.
    The subs and timers workloads (reactor alone) and the import timing run too.
    """
    out, plots = tmp_path / "bench.json", tmp_path / "plots"
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "benchmarks", "--quick", "--plain"),
            *("--json", str(out), "--plots", str(plots)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=280,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    document = json.loads(out.read_text())
    ran = set(document["systems"]) | set(document["skipped_systems"])
    assert ran == set(SYSTEMS)
    assert document["skipped_systems"] == MISSING_PEERS
    assert document["environment"]["loops"] == ["asyncio"]
    assert {"cpu", "python", "versions"} <= set(document["environment"])
    seen = set()
    for record in document["runs"]:
        spec, result = record["spec"], record["result"]
        assert "error" not in result, record
        seen.add((spec["system"], spec["workload"]))
        if spec["workload"] in ("w1", "w2", "w6", *BUILD):
            assert result["deliveries"] == spec["events"] * spec["k"]
        if spec["workload"] == "w6":
            assert result["failed_attempts"] == sum(expected_failures(spec["k"], spec["events"]))
    ran_systems = set(SYSTEMS) - set(MISSING_PEERS) - set(VARIANT_CELLS)
    expected = {(s, w) for s in ran_systems for w in ("w1", "w2", "w3", "w4", "w6")}
    # The second way (envelopes built in the timed loop): the baselines and reactor.
    expected |= {(s, w) for s in ran_systems - set(PEERS) - {"reactor-metrics"} for w in BUILD}
    expected |= {(s, w) for s, cells in VARIANT_CELLS.items() for w in cells}
    assert seen == expected | {("reactor", "subs"), ("reactor", "timers")}
    assert document["subs"]["asyncio"]["ratio"]["n"] == 1
    assert document["import"]["ratio"]["n"] == document["import"]["runs"]
    for target in document["targets"]:
        # A target against a peer that is not installed was not measured.
        unmeasured = any(f" ahead of {peer} (" in target["target"] for peer in MISSING_PEERS)
        assert target["status"] in ({"n/a"} if unmeasured else {"PASS", "MISS"}), target
    if HAVE_MATPLOTLIB:
        assert sorted(p.name for p in plots.iterdir()) == [
            "w3-latency-cdf-asyncio.png",
            "w5-throughput-asyncio.png",
        ]
    else:
        assert f"no plots: matplotlib is not installed ({INSTALL_PEERS})" in proc.stdout
    assert "Targets" in proc.stdout
    # Not a terminal (and --plain): the progress is a line per measurement, with an ETA.
    steps = re.findall(r"^\[(\d+)/(\d+), ETA (\S+)\] asyncio ", proc.stderr, flags=re.M)
    assert [int(done) for done, _, _ in steps] == list(range(1, len(document["runs"]) + 1))
    assert steps[-1][1:] == (str(len(document["runs"])), "0s")


def test_progress_estimates_the_time_left() -> None:
    assert eta(10.0, 0, 4) is None
    assert eta(10.0, 1, 4) == 30.0
    assert eta(10.0, 4, 4) == 0.0
    assert [fmt_duration(s) for s in (None, 42.4, 245, 3720)] == ["?", "42s", "4m05s", "1h02m"]


def test_progress_is_a_line_per_step_without_a_terminal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with Progress(2, "runs") as progress:
        progress.step("first: ok")
        progress.note("  noisy; again")
        progress.step("second: ERROR lost 1", note=True)
    lines = capsys.readouterr().err.splitlines()
    assert [re.sub(r"ETA [^]]+", "ETA t", line) for line in lines] == [
        "[1/2, ETA t] first: ok",
        "  noisy; again",
        "[2/2, ETA t] second: ERROR lost 1",
    ]
    assert lines[-1].startswith("[2/2, ETA 0s]")


def test_progress_is_a_bar_with_an_eta_on_a_terminal(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("rich", reason=f"rich is not installed ({INSTALL_PEERS})")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    monkeypatch.delenv("TERM", raising=False)
    monkeypatch.delenv("NO_COLOR", raising=False)
    with Progress(4, "runs") as progress:
        for n in range(3):
            progress.step(f"step {n}: ok")
        progress.step("step 3: ERROR lost 1", note=True)
    err = capsys.readouterr().err
    assert "ETA" in err and "4/4" in err
    # A step is not a line of its own; an error is.
    assert "step 0: ok\n" not in err
    assert "step 3: ERROR lost 1\n" in err
