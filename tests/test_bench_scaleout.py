"""The scale-out benchmark (``python -m benchmarks.scaleout``): exact counts, the report.

These tests check behaviour only (counts, errors, ratios, the report's shape); timing
figures belong to the benchmark itself, never to a test. The quick run needs the Redis
and NATS servers (``tests/services.py``); FastStream comes from
``benchmarks/requirements.txt`` and its rows are skipped when it is not installed.
"""

from __future__ import annotations

import cProfile
import importlib.util
import json
import pstats
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import services

from benchmarks import _profile, scaleout
from benchmarks.scaleout import Config, Spec, drain_runs, evaluate_targets, run_name, summarise

ROOT = Path(__file__).resolve().parents[1]
HAVE_FASTSTREAM = importlib.util.find_spec("faststream") is not None


def _worker(counts: list[int], sums: list[int], **fields: Any) -> dict[str, Any]:
    return {"counts": counts, "sums": sums, **fields}


def test_a_lost_or_duplicated_delivery_across_workers_is_an_error() -> None:
    events, total = 10, sum(range(10))
    # Two workers that split the events: every handler saw each once.
    split = [_worker([6] * 4, [15] * 4), _worker([4] * 4, [total - 15] * 4)]
    assert scaleout._check(split, events) == []
    # One event handled by both workers: counts add up to 11.
    twice = [_worker([6] * 4, [15] * 4), _worker([5] * 4, [total - 15 + 9] * 4)]
    assert scaleout._check(twice, events)[0].startswith("handler 0: 11 of 10 deliveries")
    # One delivery lost in one handler.
    lost = [_worker([10, 10, 9, 10], [total, total, total - 9, total])]
    assert scaleout._check(lost, events) == [
        f"handler 2: 9 of 10 deliveries (index sum {total - 9}, expected {total})"
    ]
    assert scaleout._check([{"error": "boom"}], events) == ["boom"]


def test_ratios_are_pair_by_pair_and_targets_say_pass_miss_or_not_available() -> None:
    def drain(rates: list[float], cpu: list[float]) -> list[dict[str, Any]]:
        return [
            {"events_per_s": r, "cpu_us_per_event": c, "events": 100}
            for r, c in zip(rates, cpu, strict=True)
        ]

    results = {
        "redis/drain": {
            "raw asyncio W1": drain([100.0, 200.0, 100.0], [10.0, 10.0, 10.0]),
            "raw-event asyncio W1": drain([80.0, 120.0, 80.0], [15.0, 15.0, 15.0]),
            "reactor asyncio W1": drain([80.0, 100.0, 60.0], [20.0, 20.0, 20.0]),
            "reactor asyncio W2": drain([160.0, 150.0, 120.0], [20.0, 20.0, 20.0]),
            "faststream": drain([10.0, 10.0, 10.0], [100.0, 100.0, 100.0]),
            "faststream-batch": drain([40.0, 40.0, 40.0], [50.0, 50.0, 50.0]),
        }
    }
    summary = summarise(results)
    ratios = summary["redis/drain"]["ratios"]
    # 0.8, 0.5, 0.6 pair by pair: median 0.6, not 80/100 (the medians' ratio).
    assert ratios["reactor asyncio W1 / raw asyncio W1"]["median"] == pytest.approx(0.6)
    assert ratios["reactor asyncio W1 / raw asyncio W1, by CPU per event"]["median"] == 0.5
    assert ratios["reactor asyncio W2 / reactor asyncio W1"]["median"] == pytest.approx(2.0)
    # 80/80, 100/120, 60/80: the same runs of reactor against the raw client + codec.
    assert ratios["reactor asyncio W1 / raw-event asyncio W1"]["median"] == pytest.approx(100 / 120)
    assert ratios["raw-event asyncio W1 / raw asyncio W1"]["median"] == pytest.approx(0.8)
    targets = evaluate_targets(summary, ["redis", "nats"], {"nats": {"reactor": "not available"}})
    by_name = {(t["broker"], t["target"]): t for t in targets}
    assert by_name[("redis", "reactor / raw client, 1 process >= 0.7x")]["status"] == "MISS"
    # Reported beside the issue's target, never instead of it.
    reference = by_name[("redis", "reference: reactor / raw client + codec, 1 process >= 0.7x")]
    assert (reference["status"], reference["binding"]) == ("PASS", False)
    issue_targets = [t["target"] for t in targets if t["broker"] == "redis" and t["binding"]]
    assert issue_targets == [
        "reactor / raw client, 1 process >= 0.7x",
        "reactor 2 processes / 1 >= 1.6x",
        "reactor / FastStream per-event >= 3x",
        "reactor / FastStream batch >= 3x",
    ]
    assert by_name[("redis", "reactor 2 processes / 1 >= 1.6x")]["status"] == "PASS"
    assert by_name[("redis", "reactor / FastStream per-event >= 3x")]["status"] == "PASS"
    assert by_name[("redis", "reactor / FastStream batch >= 3x")]["status"] == "MISS"
    assert not by_name[("redis", "reactor / raw client, 1 process, trio >= 0.7x")]["binding"]
    nats = [t for t in targets if t["broker"] == "nats"]
    assert {t["status"] for t in nats} == {"n/a"}
    assert {t["text"] for t in nats} == {"reactor not available"}


def test_a_broker_without_its_reactor_queue_runs_without_reactor_rows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def refused(spec: Spec) -> None:
        raise ConnectionRefusedError("Connection refused")

    monkeypatch.setitem(scaleout.QUEUES, "redis", ("reactor.queues.no_such_queue", "Queue"))
    monkeypatch.setattr(scaleout, "_ping", refused)
    probe = scaleout._child_probe(Spec(role="probe", broker="redis", url="redis://127.0.0.1:1/0"))
    assert probe["reactor"].startswith("not available (ModuleNotFoundError")
    assert probe["broker"].startswith("no server at redis://127.0.0.1:1/0")
    cfg = Config(
        quick=True,
        repeat=1,
        brokers=["redis"],
        loops=["asyncio", "trio"],
        workloads=["drain"],
        urls=dict(scaleout.URLS),
    )
    names = [run_name(run) for run in drain_runs(cfg, "redis", {"reactor": probe["reactor"]})]
    # raw-event needs reactor's codec only, not its queue.
    assert names == [
        "raw asyncio W1",
        "raw-event asyncio W1",
        "faststream",
        "faststream-batch",
        "raw asyncio W2",
        "raw trio W1",
        "raw-event trio W1",
    ]


def _named_a() -> list[int]:
    return sorted(_helper(200))


def _named_b() -> list[int]:
    return _helper(100)


def _helper(n: int) -> list[int]:
    return [i * i for i in range(n)][::-1]


def test_the_breakdown_gives_each_functions_own_time_to_one_component(tmp_path: Path) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(50):
        _named_a()
        _named_b()
    profiler.disable()
    path = tmp_path / "run.prof"
    profiler.dump_stats(path)
    names = {"_named_a": "a", "_named_b": "b"}
    seconds = _profile.attribute(path, lambda function: names.get(function[2]))
    stats = pstats.Stats(str(path))
    assert set(seconds) <= {"a", "b", "other"}
    assert sum(seconds.values()) == pytest.approx(stats.total_tt)  # type: ignore[attr-defined]
    own = {function[2]: entry[2] for function, entry in stats.stats.items()}  # type: ignore[attr-defined]
    # sorted() is called by _named_a only: its time is a's; _helper's is shared with b.
    sorted_time = next(t for name, t in own.items() if "sorted" in name)
    assert seconds["a"] >= own["_named_a"] + sorted_time
    assert seconds["b"] >= own["_named_b"]


def test_breakdown_components_by_where_the_code_comes_from() -> None:
    from reactor import Event
    from reactor.abc import load_json
    from reactor.queues.redis import RedisStreamsQueue

    def where(function: Any) -> str:
        return str(function.__code__.co_filename)

    component = scaleout._component
    assert component((where(load_json), 1, "load_json")) == "json"
    assert component((where(json.loads), 1, "loads")) == "json"
    assert component((where(Event.to_dict), 1, "to_dict")) == "event"
    assert component((where(Event.__init__), 1, "__init__")) == "event"  # attrs-generated
    assert component((where(RedisStreamsQueue.get_batch), 1, "get_batch")) == "queue"
    assert component((where(RedisStreamsQueue.settle), 1, "settle")) == "settle"
    assert component((scaleout.__file__, 1, "handle")) == "handlers"
    assert component((scaleout.__file__, 1, "_worker_redis_raw")) == "dispatch"
    coredis = importlib.util.find_spec("coredis")
    assert coredis is not None and coredis.origin is not None
    assert component((coredis.origin, 1, "<genexpr>")) == "client"
    assert component(("~", 0, "<method 'poll' of 'select.epoll' objects>")) == "wait"
    assert component(("~", 0, "<built-in method builtins.isinstance>")) is None  # its callers'


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        scaleout.main(["--brokers", "kafka"])
    assert exit_info.value.code == 2
    assert "unknown broker kafka: choose from redis, nats" in capsys.readouterr().err


@pytest.mark.timeout(400)
def test_quick_run_against_both_servers(tmp_path: Path) -> None:
    """``--quick --breakdown --json``: every run counts every delivery; the report names
    each target and breaks the CPU time per event down."""
    urls = {broker: services.require(broker) for broker in scaleout.BROKERS}
    out = tmp_path / "scaleout.json"
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "benchmarks.scaleout", "--quick", "--plain", "--breakdown"),
            *("--json", str(out), "--redis", urls["redis"], "--nats", urls["nats"]),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=380,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    document = json.loads(out.read_text())
    assert document["problems"] == []
    assert document["config"]["loops"] == ["asyncio"]
    for broker in scaleout.BROKERS:
        unavailable = document["unavailable"][broker]
        expected = {"raw asyncio W1", "raw-event asyncio W1", "raw asyncio W2"}
        if unavailable["reactor"] is None:
            expected |= {"reactor asyncio W1", "reactor asyncio W2"}
        if HAVE_FASTSTREAM:
            expected |= {"faststream", "faststream-batch"}
        drains = document["results"][f"{broker}/drain"]
        assert set(drains) == expected
        cfg = Config(**document["config"])
        for name, (result,) in drains.items():
            system = name.split()[0]
            assert result["events"] == cfg.events_for(broker, system), name
            assert sum(result["per_worker"]) == result["events"], name
            assert len(result["per_worker"]) == (2 if name.endswith("W2") else 1)
            assert result["events_per_s"] > 0
            assert result["gc_us_per_event"] >= 0
            assert len(result["gc_collections"]) == 3  # per generation
        latency = document["results"][f"{broker}/latency"]
        assert set(latency) == {"raw"} | ({"reactor"} if unavailable["reactor"] is None else set())
        for (result,) in latency.values():
            assert result["deliveries"] == result["events"] * scaleout.K
            assert 0 <= result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]
        assert f"[{broker}] drain of a backlog" in proc.stdout
        assert f"[{broker}] publish -> handler start" in proc.stdout
        breakdown = document["breakdown"][broker]
        profiled = {"raw", "raw-event"} | ({"reactor"} if unavailable["reactor"] is None else set())
        assert set(breakdown) == profiled
        for system, entry in breakdown.items():
            assert entry["events"] == cfg.events_for(broker, system), system
            assert set(entry["us_per_event"]) <= set(scaleout.COMPONENTS), system
            assert {"json", "client", "handlers"} <= set(entry["us_per_event"]), system
        # Only the systems that build reactor's Event spend time building it.
        assert "event" not in breakdown["raw"]["us_per_event"]
        assert "event" in breakdown["raw-event"]["us_per_event"]
        assert f"[{broker}] where the CPU goes" in proc.stdout
        for target in (t for t in document["targets"] if t["broker"] == broker):
            ran = unavailable["reactor"] is None and (
                HAVE_FASTSTREAM or "FastStream" not in target["target"]
            )
            if "trio" in target["target"]:
                ran = False  # --quick runs asyncio only
            assert target["status"] in ({"PASS", "MISS"} if ran else {"n/a"}), target
            assert target["target"] in proc.stdout
    assert "Targets" in proc.stdout
