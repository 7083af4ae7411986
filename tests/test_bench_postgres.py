"""The PostgreSQL sources benchmark (``python -m benchmarks.postgres``): counts and shape.

These tests check behaviour only (every delivery counted exactly once, the report's
shape); timing figures belong to the benchmark itself, never to a test. The quick run
needs the PostgreSQL server (``tests/services.py``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
import services

from benchmarks import postgres
from benchmarks.postgres import Tally, verdict

ROOT = Path(__file__).resolve().parents[1]


def test_a_lost_or_duplicated_delivery_is_an_error() -> None:
    async def main() -> None:
        tally = Tally(2)
        for key in (1, 2, 3):
            tally.note(0, key, 1.0)
        for key in (1, 2, 2, 4):
            tally.note(1, key, 0.0)
        assert tally.problems(3) == ["subscription 1: 3 of 3 keys not seen exactly once"]

    anyio.run(main)
    assert verdict("rows", {"problems": ["lost"], "p99_ms": 1.0}) == "ERROR"
    assert verdict("rows", {"problems": [], "p99_ms": 49.0}) == "PASS"
    assert verdict("notify", {"problems": [], "p99_ms": 11.0}) == "MISS"
    assert verdict("sustained", {"problems": [], "handled_per_s": 5_000.0}) == "PASS"
    assert verdict("drain", {"error": "child timed out"}) == "ERROR"


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert postgres.main(["--workloads", "bulk"]) == 2
    assert "unknown workload bulk: choose from notify, rows, sustained, drain" in (
        capsys.readouterr().err
    )


@pytest.mark.timeout(300)
def test_quick_run_against_the_server(tmp_path: Path) -> None:
    """``--quick --json``: every run counts every delivery; the report names each target."""
    dsn = services.require("postgres")
    out = tmp_path / "postgres.json"
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "benchmarks.postgres", "--quick", "--plain"),
            *("--json", str(out), "--dsn", dsn),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=280,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    document = json.loads(out.read_text())
    assert document["config"]["loops"] == ["asyncio"]
    results = document["results"]
    assert set(results) == {f"{w}/asyncio" for w in postgres.WORKLOADS}
    for name, result in results.items():
        assert result["problems"] == [], name
        assert result["result"] in ("PASS", "MISS"), name
    assert results["notify/asyncio"]["notifications"] == 1_000
    assert results["rows/asyncio"]["rows"] == 1_000
    assert results["sustained/asyncio"]["rows"] == 5_000
    assert results["drain/asyncio"]["rows"] == postgres.DRAIN_ROWS_QUICK
    for name in ("notify/asyncio", "rows/asyncio", "sustained/asyncio"):
        result = results[name]
        assert result["p50_ms"] <= result["p99_ms"] <= result["max_ms"], name
    assert results["drain/asyncio"]["source"]["published"] == postgres.DRAIN_ROWS_QUICK
    assert "Latency: write -> handler start" in proc.stdout
    assert "Row changes handled per second" in proc.stdout
