"""Replays of a durable queue: ``reactor replay`` and ``reactor dead-letters replay`` run
as real commands (child processes) between runs of a real app on the same file, and the
same rules through the Python API (``queue.replay()``, ``queue.replay_dead_letters()``).

The rules: a replay or a redelivery is not a new publication (it is not kept by the
retention as an event of its own, and a later replay never replays it); ``--consumer``
limits a replay to the events that consumer was meant to receive; a consumer name the
file has never seen, or a dead-letter id that matches nothing, is refused.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from reactor import Event, Reactor
from reactor.queues.sqlite import SQLiteQueue

pytestmark = pytest.mark.anyio

Delivery = tuple[str, str]  # (consumer, event id)


def shop(path: Path, received: list[Delivery], *, failing: frozenset[str] = frozenset()) -> Reactor:
    """An app with consumers "audit" and "charge" on an SQLiteQueue that keeps events.

    :param failing: event ids that "charge" fails (no retry: dead-lettered at once)
    """
    app = Reactor(queue=SQLiteQueue(path, retention=3600))

    def consumer(name: str) -> Callable[[Event], Coroutine[Any, Any, None]]:
        async def handle(event: Event) -> None:
            received.append((name, event.id))
            if name == "charge" and event.id in failing:
                raise RuntimeError(f"card declined for {event.id}")

        return handle

    for name in ("audit", "charge"):
        app.subscribe("order.*", consumer(name), name=name)
    return app


async def run_shop(
    path: Path, *, publish: int = 0, failing: frozenset[str] = frozenset()
) -> Counter[Delivery]:
    """Run the app once on *path* (publishing orders e0.. first) until it is idle."""
    received: list[Delivery] = []
    async with shop(path, received, failing=failing) as app:
        for n in range(publish):
            await app.publish_and_wait("order.created", {"n": n}, id=f"e{n}")
    return Counter(received)


def reactor_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m reactor ARGS...`` as a child process on ``events.db`` in *cwd*."""
    return subprocess.run(
        [sys.executable, "-m", "reactor", *args, "--queue", "sqlite:///events.db"],
        cwd=cwd,
        env={k: v for k, v in os.environ.items() if k != "REACTOR_QUEUE"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def journal_rows(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        count: int = conn.execute("SELECT count(*) FROM reactor_events").fetchone()[0]
        return count
    finally:
        conn.close()


def once_each(consumers: tuple[str, ...], ids: list[str]) -> Counter[Delivery]:
    return Counter((consumer, id_) for consumer in consumers for id_ in ids)


ORDERS = [f"e{n}" for n in range(4)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the file is the subject here, not the event loop


async def test_replays_are_not_new_publications(tmp_path: Path) -> None:
    """The reported scenario, end to end: a dead-letter replay, then replays of a window
    to one consumer and to all, by the command line between runs of the app."""
    path = tmp_path / "events.db"
    # Four orders; "charge" declines e2: one dead letter.
    first = await run_shop(path, publish=4, failing=frozenset({"e2"}))
    assert first == once_each(("audit", "charge"), ORDERS)
    listed = reactor_cli(tmp_path, "dead-letters", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert len(listed.stdout.splitlines()) == 1

    replayed = reactor_cli(tmp_path, "dead-letters", "replay", "--all")
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout.startswith("replayed 1 dead letter:")
    assert await run_shop(path) == Counter({("charge", "e2"): 1})

    # To audit: each of the four orders once; the copy of e2 that went to charge only
    # is not an event of its own.
    replayed = reactor_cli(tmp_path, "replay", "--since", "1h", "--consumer", "audit")
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout.startswith("replayed 4 events published since ")
    assert await run_shop(path) == once_each(("audit",), ORDERS)

    # To every consumer, twice over: still the four orders, each once per replay.
    for _ in range(2):
        replayed = reactor_cli(tmp_path, "replay", "--since", "1h")
        assert replayed.returncode == 0, replayed.stderr
        assert replayed.stdout.startswith("replayed 4 events published since ")
        assert await run_shop(path) == once_each(("audit", "charge"), ORDERS)
    # One kept row per order: replays and redeliveries add none.
    assert journal_rows(path) == 4

    # An unknown consumer, and ids that match nothing, are refused: nothing changes.
    for args, message in [
        (("replay", "--since", "1h", "--consumer", "nobody"), "'nobody'"),
        (("dead-letters", "replay", "--consumer", "nobody"), "'nobody'"),
        (("dead-letters", "purge", "--consumer", "nobody"), "'nobody'"),
        (("dead-letters", "replay", "--id", "99"), "99"),
        (("dead-letters", "purge", "--id", "99"), "99"),
    ]:
        refused = reactor_cli(tmp_path, *args)
        assert refused.returncode == 1, args
        assert refused.stdout == ""
        assert refused.stderr.startswith("reactor: error: ")
        assert message in refused.stderr
        assert "Traceback" not in refused.stderr
    assert await run_shop(path) == Counter()
    assert journal_rows(path) == 4
