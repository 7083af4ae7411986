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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from reactor import ConsumerNotFound, DeadLetterNotFound, Event, Reactor
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


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # the subject is the file
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


# -- the same rules through the Python API ------------------------------------------------


def rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


async def test_the_api_replays_publications_only_each_once(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    start = datetime.now(UTC) - timedelta(seconds=1)
    assert await run_shop(path, publish=4, failing=frozenset({"e2"})) == once_each(
        ("audit", "charge"), ORDERS
    )
    received: list[Delivery] = []
    app = shop(path, received)
    queue = app.queue
    assert isinstance(queue, SQLiteQueue)
    async with app:
        assert await queue.replay_dead_letters() == 1
    # The copy of e2 sent to charge, once settled, is not kept: four events.
    assert received == [("charge", "e2")]
    assert rows(path, "SELECT count(*) FROM reactor_events") == [(4,)]
    received.clear()
    async with app:
        assert await queue.replay(start, consumers=["audit"]) == 4
        assert await queue.replay(start, consumers=["charge", "audit"]) == 4
    audit = once_each(("audit",), ORDERS)
    assert Counter(received) == audit + audit + once_each(("charge",), ORDERS)
    assert rows(path, "SELECT count(*) FROM reactor_events") == [(4,)]
    received.clear()
    async with app:
        assert await queue.replay(start) == 4
        # Taken back into the queue, the events are no longer kept as done: asked again
        # before they are delivered, the replay has nothing more to send.
        assert await queue.replay(start) == 0
    assert Counter(received) == once_each(("audit", "charge"), ORDERS)
    assert rows(path, "SELECT count(*) FROM reactor_events WHERE done_at IS NOT NULL") == [(4,)]


async def test_a_replay_to_every_consumer_keeps_the_publication_order(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    await run_shop(path, publish=4)
    received: list[Delivery] = []
    app = shop(path, received)
    queue = app.queue
    assert isinstance(queue, SQLiteQueue)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    conn = sqlite3.connect(path)
    with conn:
        conn.executemany(
            "UPDATE reactor_events SET published_at = ? WHERE seq = ?",
            [((base + timedelta(hours=seq)).timestamp(), seq) for seq in range(1, 5)],
        )
    conn.close()
    # e2 and e3 first: they move to the end of the journal ...
    async with app:
        assert await queue.replay(base + timedelta(hours=3)) == 2
    assert [id_ for consumer, id_ in received if consumer == "audit"] == ["e2", "e3"]
    received.clear()
    # ... and a replay of all four still goes in the order they were published.
    async with app:
        assert await queue.replay(base) == 4
    assert [id_ for consumer, id_ in received if consumer == "audit"] == ORDERS


async def test_unknown_consumers_and_ids_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    start = datetime.now(UTC) - timedelta(seconds=1)
    await run_shop(path, publish=4, failing=frozenset({"e1", "e3"}))
    async with SQLiteQueue(path) as queue:  # a tool's view: no app, the file's record
        with pytest.raises(
            ConsumerNotFound, match="'nobody'; the consumers it knows: audit, charge"
        ):
            await queue.replay(start, consumers=["audit", "nobody"])
        with pytest.raises(ConsumerNotFound, match="'nobody'"):
            await queue.replay_dead_letters(consumer="nobody")
        with pytest.raises(ConsumerNotFound, match="'nobody'"):
            await queue.purge_dead_letters(consumer="nobody")
        with pytest.raises(DeadLetterNotFound, match="has the id 99") as caught:
            await queue.replay_dead_letters([1, 99])
        assert caught.value.ids == [99]
        assert isinstance(caught.value, LookupError)
        with pytest.raises(DeadLetterNotFound, match="has the ids 7, 99"):
            await queue.purge_dead_letters([99, 2, 7])
        # Ids given by an iterator are checked as well as a list's.
        with pytest.raises(DeadLetterNotFound, match="has the id 99"):
            await queue.replay_dead_letters(iter([1, 99]))
        with pytest.raises(DeadLetterNotFound, match="has the id 99"):
            await queue.purge_dead_letters(n for n in (2, 99))
        # Nothing was changed by the refusals.
        assert [letter.id for letter in await queue.dead_letters()] == [1, 2]
        assert queue.statistics().depth == 0
        # A known consumer without letters, and an empty selection, are not errors.
        assert await queue.replay_dead_letters(consumer="audit") == 0
        assert await queue.purge_dead_letters([]) == 0
        assert await queue.replay(start, consumers=["audit"]) == 4


async def test_the_file_knows_the_consumers_of_every_app_that_ran_on_it(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    start = datetime.now(UTC) - timedelta(seconds=1)
    app = Reactor(queue=SQLiteQueue(path, retention=3600))

    async def handle(event: Event) -> None:
        pass

    # One consumer that never fails: no dead letter or progress names it.
    app.subscribe("order.*", handle, name="solo")
    async with app:
        await app.publish_and_wait("order.created", id="e0")
        # A subscription added while the app runs is recorded when it stops.
        app.subscribe("order.*", handle, name="late")
    async with SQLiteQueue(path) as queue:
        assert await queue.replay(start, consumers=["solo"]) == 1
        assert await queue.replay(start, consumers=["late"]) == 1
        with pytest.raises(ConsumerNotFound, match="the consumers it knows: late, solo"):
            await queue.replay(start, consumers=["sol"])
