"""Poison events on a durable queue, with real processes: an event whose handler ends
the process is handed out at most ``1 + max_redeliveries`` times, then dead-lettered
with the reason; a handler error that cannot even be described is dead-lettered and
listed like any other.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from reactor import Event, Reactor, RedeliveryLimitExceeded
from reactor.abc import EventQueue
from reactor.queues.sqlite import DEFAULT_MAX_REDELIVERIES, SQLiteQueue, read_dead_letters

CHILD = Path(__file__).with_name("sqlite_poison_child.py")

#: What a run of the child ends with, by mode (a negative status: killed by that signal).
CRASH_STATUS = {
    "exit": 7,
    "kill": -signal.SIGKILL,
    "system-exit": 7,
    "keyboard-interrupt": None,  # the interpreter's own status for it (130 or -SIGINT)
}


def run_child(path: Path, mode: str, runs: Path, limit: int, *, publish: bool) -> int:
    args = [str(path), mode, str(runs), str(limit), *(["publish"] if publish else [])]
    child = subprocess.run(
        [sys.executable, str(CHILD), *args], capture_output=True, text=True, timeout=60
    )
    if child.returncode == 0:
        assert "Traceback" not in child.stderr, child.stderr
    return child.returncode


def handled(runs: Path) -> list[str]:
    return runs.read_text().splitlines() if runs.exists() else []


@pytest.mark.skipif(sys.platform == "win32", reason="the modes kill with POSIX signals")
@pytest.mark.parametrize("mode", list(CRASH_STATUS))
@pytest.mark.parametrize("limit", [0, 2])
def test_an_event_that_kills_the_process_is_dead_lettered_after_max_redeliveries(
    tmp_path: Path, mode: str, limit: int
) -> None:
    path, runs = tmp_path / "events.db", tmp_path / "runs"
    statuses = [run_child(path, mode, runs, limit, publish=True)]
    # Restarted like a service manager would, until a run survives (bounded: a
    # regression must fail, not loop).
    while statuses[-1] != 0 and len(statuses) < limit + 5:
        statuses.append(run_child(path, mode, runs, limit, publish=False))
    # The handler ran once per hand-out, the first one included, each counted although
    # the process died in the handler; then the event was dead-lettered unrun.
    assert handled(runs) == [f"p1 {attempt}" for attempt in range(1, limit + 2)]
    assert statuses[-1] == 0
    assert len(statuses) == limit + 2
    expected = CRASH_STATUS[mode]
    for status in statuses[:-1]:
        assert status == expected if expected is not None else status in (130, -signal.SIGINT)
    [letter] = read_dead_letters(path)
    assert letter.event is not None and letter.event.id == "p1"
    assert letter.consumer == "poison"
    assert letter.error_type == "reactor.RedeliveryLimitExceeded"
    assert f"max_redeliveries={limit}" in letter.error
    # Settled: another start hands nothing out.
    assert run_child(path, mode, runs, limit, publish=False) == 0
    assert len(handled(runs)) == limit + 1


def test_max_redeliveries_is_validated_and_exposed(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    assert DEFAULT_MAX_REDELIVERIES == 5
    assert SQLiteQueue(path).max_redeliveries == DEFAULT_MAX_REDELIVERIES
    assert SQLiteQueue(path, max_redeliveries=0).max_redeliveries == 0
    assert SQLiteQueue(path, max_redeliveries=None).max_redeliveries is None
    queue: EventQueue = SQLiteQueue(path, max_redeliveries=3)
    assert queue.max_redeliveries == 3
    for bad in (-1, 1.5, True, "5"):
        with pytest.raises(ValueError, match="max_redeliveries must be an int >= 0 or None"):
            SQLiteQueue(path, max_redeliveries=bad)  # type: ignore[arg-type]


class Unprintable(Exception):
    """An error whose text cannot be had: its ``__str__`` raises."""

    def __str__(self) -> str:
        raise RuntimeError("no text for you")


def test_an_error_that_cannot_be_described_is_dead_lettered_and_listed(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    app = Reactor(queue=SQLiteQueue(path))

    @app.subscribe("order.*", name="picky")
    async def picky(event: Event) -> None:
        raise Unprintable("order refused")

    async def run() -> None:
        async with app:
            receipt = await app.publish_and_wait("order.created", {"n": 1}, id="o1")
            assert receipt.outcomes["picky"].status == "failed"
            # The app keeps running and delivering.
            receipt = await app.publish_and_wait("order.created", {"n": 2}, id="o2")
            assert receipt.outcomes["picky"].status == "failed"

    anyio.run(run)
    letters = read_dead_letters(path)
    assert [letter.event.id for letter in letters if letter.event] == ["o1", "o2"]
    assert letters[0].error_type.endswith("Unprintable")
    assert letters[0].error == "Unprintable('order refused')"  # its repr() instead

    env = {**os.environ, "REACTOR_QUEUE": f"sqlite:///{path}"}
    for extra in ([], ["--json"]):
        listing = subprocess.run(
            [sys.executable, "-m", "reactor", "dead-letters", "list", *extra],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        assert (listing.returncode, listing.stderr) == (0, "")
        assert "Unprintable('order refused')" in listing.stdout
    assert [json.loads(line)["event"]["id"] for line in listing.stdout.splitlines()] == [
        "o1",
        "o2",
    ]


def test_the_error_of_the_limit_says_why() -> None:
    error = RedeliveryLimitExceeded(3, 2)
    assert "max_redeliveries=2" in str(error)
