"""The pub/sub benchmark (``python -m benchmarks.pubsub``): counts, errors, the report.

These tests check behaviour only (every message handled once, the report's shape); the
timing figures belong to the benchmark itself, never to a test. The quick run needs the
shared Mosquitto and Redis (``tests/services.py``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import services

from benchmarks import pubsub

ROOT = Path(__file__).resolve().parents[1]


def test_a_lost_or_repeated_message_shows_in_the_counts() -> None:
    samples = pubsub._Samples(3)
    for seq in (0, 1, 1):
        samples.record({"seq": seq, "t": 0})
    assert not samples.done.is_set()
    samples.record({"seq": 2, "t": 0})
    assert samples.done.is_set()
    summary = samples.summary("throughput", {"per_s": None})
    assert (summary["handled"], summary["duplicates"]) == (3, 1)
    assert pubsub._percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    assert pubsub._percentile([1.0, 2.0, 3.0, 4.0], 99) == 4.0


def test_quick_run_against_both_brokers(tmp_path: Path) -> None:
    """``--quick --json``: every run handles every message once; the report has each row."""
    urls = {"mqtt": services.require("mqtt"), "redis": services.require("redis")}
    out = tmp_path / "pubsub.json"
    result = subprocess.run(
        [
            *(sys.executable, "-m", "benchmarks.pubsub", "--quick"),
            *("--json", str(out), "--mqtt", urls["mqtt"], "--redis", urls["redis"]),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(out.read_text())
    rows = {(r["broker"], r["system"], r["loop"]): r for r in report["results"]}
    assert set(rows) == {
        ("mqtt", "reactor", "asyncio"),
        ("mqtt", "raw", "thread"),
        ("redis", "reactor", "asyncio"),
        ("redis", "raw", "asyncio"),
    }
    for row in rows.values():
        assert row["result"] == "ok"
        for run in (row["latency"], row["throughput"]):
            assert run["handled"] == run["messages"] and run["duplicates"] == 0
        assert row["latency"]["p50_ms"] <= row["latency"]["p99_ms"] <= row["latency"]["max_ms"]
    source = rows[("mqtt", "reactor", "asyncio")]["throughput"]["source"]
    assert (source["received"], source["published"]) == (pubsub.BACKLOG, pubsub.BACKLOG)
    assert "reference (the NOTIFY target)" in result.stdout


def test_nothing_to_run_is_an_empty_report(tmp_path: Path) -> None:
    out = tmp_path / "empty.json"
    assert pubsub.main(["--systems", "", "--quick", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["results"] == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--brokers", "kafka"], "unknown broker 'kafka'"),
        (["--systems", "faststream"], "unknown system 'faststream'"),
        (["--loops", "curio"], "unknown loop 'curio'"),
    ],
)
def test_unknown_names_are_usage_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        pubsub.main(argv)
    assert caught.value.code == 2
    assert message in capsys.readouterr().err
