"""The object-storage benchmark (``python -m benchmarks.objects``): counts and the report.

Behaviour only (every record accounted for, the report's shape, errors reported as
errors); timing figures belong to the benchmark itself, never to a test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import objects

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(300)
def test_quick_smoke_run(tmp_path: Path) -> None:
    out = tmp_path / "objects.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.objects", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=280,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    document = json.loads(out.read_text())
    assert document["mode"] == "quick"
    assert set(document["sections"]) == {"decoder", "http", "polling", "polling-memory"}
    decoder = document["sections"]["decoder"]
    assert {row["case"] for row in decoder} == {
        "1 record/message",
        "10 records/message",
        "1 record, filtered",
    }
    for row in decoder:
        assert row["ok"]
        assert row["events"] + row["filtered"] == row["records"]
    filtered = next(row for row in decoder if row["case"] == "1 record, filtered")
    assert filtered["events"] == filtered["filtered"] == filtered["records"] // 2
    http = document["sections"]["http"]
    assert {row["case"] for row in http} == {
        f"{loop} {workload}" for loop in ("asyncio", "trio") for workload in objects.HTTP_REQUESTS
    }
    for row in http:
        assert row["ok"], row
        assert row["received"] == row["records"]
        assert row["statuses"].get("202") == row["requests"]
    polling = document["sections"]["polling"]
    assert [row["case"] for row in polling] == [
        f"{loop} {case}"
        for loop in ("asyncio", "trio")
        for case in ("baseline", "unchanged", "changed")
    ]
    for row in polling:
        assert row["ok"], row
        assert row["objects"] == objects.POLL_OBJECTS // 10
        assert row["handled"] == objects.POLL_CHANGES // 10  # one changed poll, all handled
    memory = document["sections"]["polling-memory"]
    assert [row["case"] for row in memory] == ["1000 objects", "100 objects"]
    assert all(row["peak_kib"] > 0 for row in memory)
    assert "decode_s3 alone" in proc.stdout
    assert "ERROR" not in proc.stdout


def test_a_run_that_loses_records_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    section = objects.Section("x", "title", lambda config: [], {"records_per_s": "records/s"})
    rows = [
        {"case": "good", "ok": True, "records_per_s": 10.0},
        {"case": "bad", "ok": False, "records_per_s": 10.0, "received": 1},
    ]
    assert objects.report(section, rows) is False
    out = capsys.readouterr().out
    assert "bad                    ERROR" in out
    assert objects.report(section, rows[:1]) is True


def test_an_unknown_section_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exit_:
        objects.main(["--sections", "decoder,nope"])
    assert exit_.value.code == 2
