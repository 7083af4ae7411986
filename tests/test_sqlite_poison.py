"""Poison events on a durable queue, with real processes: an event whose handler ends
the process is handed out at most ``1 + max_redeliveries`` times, then dead-lettered
with the reason; a handler error that cannot even be described is dead-lettered and
listed like any other.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import anyio
import pytest

from reactor import Event, Reactor
from reactor.abc import EventQueue
from reactor.queues.sqlite import DEFAULT_MAX_REDELIVERIES, SQLiteQueue, read_dead_letters

CHILD = Path(__file__).with_name("sqlite_poison_child.py")

#: What a run of the child ends with, by mode (a negative status: killed by that
#: signal; ``None``: any failure, the app stops with an error it did not handle).
CRASH_STATUS = {
    "exit": 7,
    "kill": -signal.SIGKILL,
    "system-exit": None,
    "keyboard-interrupt": None,
}


#: Innocent events published after the poison event, and in flight when it kills.
INNOCENT = 5


def run_child(path: Path, mode: str, runs: Path, limit: int, *, publish: bool) -> int:
    args = [str(path), mode, str(runs), str(limit)]
    if publish:
        args += ["publish", str(INNOCENT)]
    child = subprocess.run(
        [sys.executable, str(CHILD), *args], capture_output=True, text=True, timeout=60
    )
    if child.returncode == 0:
        assert "Traceback" not in child.stderr, child.stderr
    return child.returncode


def handled(runs: Path, event_id: str = "p1") -> list[int]:
    """The attempts with which the handler was called for *event_id*, in order."""
    lines = runs.read_text().splitlines() if runs.exists() else []
    return [int(line.split()[1]) for line in lines if line.split()[0] == event_id]


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
    assert handled(runs) == list(range(1, limit + 2))
    assert statuses[-1] == 0
    assert len(statuses) == limit + 2
    expected = CRASH_STATUS[mode]
    for status in statuses[:-1]:
        assert status != 0
        assert expected is None or status == expected
    letters = read_dead_letters(path)
    innocent = [f"e{n}" for n in range(1, INNOCENT + 1)]
    if mode in ("exit", "kill"):
        # The innocent events were in flight when the first run died: handed out once
        # more, and no more, since the poison event went out alone after it.
        for id_ in innocent:
            assert handled(runs, id_) == ([1] if limit == 0 else [1, 2])
        if limit == 0:  # no redelivery at all: they were given up with it
            assert [letter.event.id for letter in letters[1:] if letter.event] == innocent
            letters = letters[:1]
    else:
        # The app stopped on the error: the other handlers finished first.
        for id_ in innocent:
            assert handled(runs, id_) == [1]
    [letter] = letters
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
    with pytest.raises(ValueError, match=r"max_redeliveries \(or None\) must be an int >= 0"):
        SQLiteQueue(path, max_redeliveries=-1)
    for wrong_type in (1.5, True, "5"):
        with pytest.raises(TypeError, match=r"max_redeliveries \(or None\) must be an int"):
            SQLiteQueue(path, max_redeliveries=wrong_type)  # type: ignore[arg-type]


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


@pytest.mark.anyio
async def test_only_events_handed_out_count_and_redeliveries_go_out_alone(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    events = [Event(type="order.created", source="/shop", id=f"e{n}") for n in range(1, 11)]
    async with SQLiteQueue(path) as queue:
        for event in events:
            await queue.put(event)
        assert [item.event.id for item in await queue.get_batch(3)] == ["e1", "e2", "e3"]
    # A run cut short with three events handed out and none settled; the other seven
    # were read ahead, never handed out, and do not count.
    async with SQLiteQueue(path) as queue:
        with anyio.fail_after(10):  # a regression hands them out at once, then waits
            batches = [await queue.get_batch(100) for _ in range(4)]
    assert [[(item.event.id, item.attempt) for item in batch] for batch in batches] == [
        # Handed out before: each alone (it may be what ended the last run) ...
        [("e1", 2)],
        [("e2", 2)],
        [("e3", 2)],
        # ... the others together, at their first hand-out.
        [(event.id, 1) for event in events[3:]],
    ]
    # All ten were handed out by that run, none settled: each goes out alone again.
    async with SQLiteQueue(path) as queue:
        with anyio.fail_after(10):
            batches = [await queue.get_batch(100) for _ in range(10)]
    assert [[(item.event.id, item.attempt) for item in batch] for batch in batches] == [
        [(event.id, 3 if n < 3 else 2)] for n, event in enumerate(events)
    ]


@pytest.mark.anyio
async def test_nothing_is_handed_out_before_its_hand_out_is_stored(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    events = [Event(type="order.created", source="/shop", id=f"e{n}") for n in range(1, 4)]
    async with SQLiteQueue(path) as queue:
        for event in events:
            await queue.put(event)
    async with SQLiteQueue(path, busy_timeout=0) as queue:
        # Reads the backlog into memory (a commit of its own).
        await queue.put(Event(type="order.created", source="/shop", id="e4"))
        handed: list[list[str]] = []
        with closing(sqlite3.connect(path, isolation_level=None)) as other:
            other.execute("BEGIN IMMEDIATE")  # another writer holds the file
            async with anyio.create_task_group() as tg:

                async def take() -> None:
                    handed.append([item.event.id for item in await queue.get_batch(10)])

                tg.start_soon(take)
                with anyio.fail_after(10):
                    while not queue.statistics().errors:  # counting the hand-out failed
                        await anyio.wait_all_tasks_blocked()
                assert handed == []  # so nothing was handed out
                other.execute("ROLLBACK")
        assert handed == [["e1", "e2", "e3", "e4"]]
    # Counted: reopened, they are redeliveries (and go out alone).
    async with SQLiteQueue(path) as queue:
        batches = []
        with anyio.fail_after(10):
            while queue.statistics().depth:
                batches.append(
                    [(item.event.id, item.attempt) for item in await queue.get_batch(10)]
                )
    assert batches == [[(f"e{n}", 2)] for n in range(1, 5)]
