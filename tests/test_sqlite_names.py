"""Names on disk: the queue file stores the public names of reactor's classes
(``reactor.DeliveryTimeout``), and files of schema version 1, which may hold private ones
(``reactor._exceptions.DeliveryTimeout``), are read and migrated to public names.

The version 1 file is built here with plain ``sqlite3``, row by row, as that release
wrote it, so the test does not depend on today's code to make an old file.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest

from reactor import (
    DeliveryTimeout,
    Event,
    Reactor,
    RedeliveryLimitExceeded,
    Retry,
    StoredDeadLetter,
)
from reactor.queues.sqlite import SCHEMA_VERSION, SQLiteQueue, read_dead_letters

pytestmark = pytest.mark.anyio

#: The layout of schema version 1, as that release created it.
V1_SCHEMA = (
    "CREATE TABLE reactor_meta (\n        key TEXT PRIMARY KEY,\n        value ANY\n    )"
    " STRICT, WITHOUT ROWID",
    "CREATE TABLE reactor_events (\n        seq INTEGER PRIMARY KEY,\n        body BLOB NOT"
    " NULL,\n        only TEXT,\n        published_at REAL NOT NULL,\n        attempt INTEGER"
    " NOT NULL DEFAULT 0,\n        done_at REAL,\n        crc INTEGER NOT NULL\n    ) STRICT",
    "CREATE INDEX reactor_events_done ON reactor_events (done_at) WHERE done_at IS NOT NULL",
    "CREATE TABLE reactor_progress (\n        seq INTEGER NOT NULL,\n        consumer TEXT NOT"
    " NULL,\n        PRIMARY KEY (seq, consumer)\n    ) STRICT, WITHOUT ROWID",
    "CREATE TABLE reactor_dead_letters (\n        id INTEGER PRIMARY KEY,\n        source"
    " TEXT,\n        event_id TEXT,\n        consumer TEXT,\n        body BLOB NOT NULL,\n"
    "        error_type TEXT NOT NULL,\n        error TEXT NOT NULL,\n        attempts INTEGER"
    " NOT NULL,\n        first_failed_at TEXT NOT NULL,\n        last_failed_at TEXT NOT"
    " NULL,\n        dead_at REAL NOT NULL,\n        UNIQUE (source, event_id, consumer)\n"
    "    ) STRICT",
)

#: The letters of the old file: (consumer, event id, error type as stored then).
OLD_LETTERS = [
    ("audit", "e1", "reactor._exceptions.DeliveryTimeout"),
    ("mail", "e2", "reactor._exceptions.RedeliveryLimitExceeded"),
    ("audit", "e3", "ValueError"),
    ("mail", "e4", "shop._errors.CardDeclined"),  # the application's: left as it is
    ("audit", "e5", "reactor._exceptions.NoSuchClass"),  # no public name: left as it is
]
#: The same, as they read now.
PUBLIC_TYPES = [
    "reactor.DeliveryTimeout",
    "reactor.RedeliveryLimitExceeded",
    "ValueError",
    "shop._errors.CardDeclined",
    "reactor._exceptions.NoSuchClass",
    "reactor.EventFormatError",  # the damaged event's letter, public already
]


def write_v1_file(path: Path) -> None:
    """A queue file as schema version 1 left it: five letters and a damaged one."""
    now = datetime.now(UTC)
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("BEGIN")
        for statement in V1_SCHEMA:
            conn.execute(statement)
        conn.execute(
            "INSERT INTO reactor_meta (key, value) VALUES ('handed_out', 0), "
            "('created_at', ?), ('writer', 'reactor 0.1.0.dev0'), ('consumers', ?)",
            (now.isoformat(), json.dumps(["audit", "mail"])),
        )
        rows: list[tuple[object, ...]] = [
            (
                "/shop",
                event_id,
                consumer,
                Event(type="order.created", source="/shop", id=event_id, data={}).to_json(),
                error_type,
                f"{event_id} failed",
                2,
            )
            for consumer, event_id, error_type in OLD_LETTERS
        ]
        rows.append(
            (
                None,
                None,
                None,
                b"{not json",
                "reactor.EventFormatError",
                "journaled event #9 is damaged",
                0,
            )
        )
        conn.executemany(
            "INSERT INTO reactor_dead_letters (source, event_id, consumer, body, error_type, "
            "error, attempts, first_failed_at, last_failed_at, dead_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(*row, now.isoformat(), now.isoformat(), now.timestamp()) for row in rows],
        )
        conn.execute("PRAGMA application_id = 1380270403")  # "REAC"
        conn.execute("PRAGMA user_version = 1")
        conn.execute("COMMIT")


def stored_types(path: Path) -> tuple[int, list[str]]:
    """The file's schema version and its letters' error types, as stored."""
    with closing(sqlite3.connect(path)) as conn:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        types = [
            row[0]
            for row in conn.execute("SELECT error_type FROM reactor_dead_letters ORDER BY id")
        ]
    return version, types


@pytest.fixture
def old_file(tmp_path: Path) -> Path:
    path = tmp_path / "events.db"
    write_v1_file(path)
    return path


def test_the_schema_version_is_3() -> None:
    assert SCHEMA_VERSION == 3


def test_reading_an_old_file_gives_public_names_and_leaves_it_alone(old_file: Path) -> None:
    before = stored_types(old_file)
    letters = read_dead_letters(old_file)
    assert [letter.error_type for letter in letters] == PUBLIC_TYPES
    assert stored_types(old_file) == before  # read-only: not migrated
    assert before[0] == 1


def test_the_command_line_lists_an_old_file_with_public_names(old_file: Path) -> None:
    def run(*args: str) -> str:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "reactor",
                "dead-letters",
                "list",
                "--queue",
                f"sqlite:///{old_file}",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    listed = [json.loads(line) for line in run("--json").splitlines()]
    assert [letter["error_type"] for letter in listed] == PUBLIC_TYPES
    table = run()
    assert "reactor.DeliveryTimeout: e1 failed" in table
    assert "_exceptions" not in table.replace("reactor._exceptions.NoSuchClass", "")


async def test_opening_an_old_file_migrates_it(old_file: Path) -> None:
    async with SQLiteQueue(old_file) as queue:
        letters = await queue.dead_letters()
    assert [letter.error_type for letter in letters] == PUBLIC_TYPES
    assert stored_types(old_file) == (SCHEMA_VERSION, PUBLIC_TYPES)
    # Once: a second opening finds nothing to do and changes nothing.
    async with SQLiteQueue(old_file) as queue:
        assert [letter.error_type for letter in await queue.dead_letters()] == PUBLIC_TYPES
    assert stored_types(old_file) == (SCHEMA_VERSION, PUBLIC_TYPES)


async def test_old_letters_can_be_replayed(old_file: Path) -> None:
    received: list[tuple[str, str]] = []
    queue = SQLiteQueue(old_file)
    app = Reactor(queue=queue)

    def consumer(name: str) -> None:
        async def handle(event: Event) -> None:
            received.append((name, event.id))

        app.subscribe("order.*", handle, name=name)

    consumer("audit")
    consumer("mail")
    async with app:  # leaving it delivers what was replayed
        assert await queue.replay_dead_letters([1, 2]) == 2
        assert [letter.error_type for letter in await queue.dead_letters()] == PUBLIC_TYPES[2:]
        assert await queue.replay_dead_letters(consumer="audit") == 2
    assert sorted(received) == [("audit", "e1"), ("audit", "e3"), ("audit", "e5"), ("mail", "e2")]
    assert [letter.error_type for letter in read_dead_letters(old_file)] == [
        "shop._errors.CardDeclined",
        "reactor.EventFormatError",
    ]


async def test_new_letters_store_public_names(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    app = Reactor(queue=SQLiteQueue(path))

    async def slow(event: Event) -> None:
        await anyio.sleep_forever()

    app.subscribe("order.*", slow, name="slow", timeout=0.01, retry=Retry(attempts=1))
    async with app:
        await app.publish_and_wait("order.created", {}, id="e1")
    letters = read_dead_letters(path)
    assert [letter.error_type for letter in letters] == ["reactor.DeliveryTimeout"]
    assert DeliveryTimeout.__module__ == RedeliveryLimitExceeded.__module__ == "reactor"


def test_public_names_report_the_package() -> None:
    import reactor.queues.sqlite as package

    for name in package.__all__:
        value = getattr(package, name)
        if value is StoredDeadLetter:
            continue  # the core's type, shared by every durable queue, kept here by name
        if hasattr(value, "__module__"):
            assert value.__module__ == "reactor.queues.sqlite", name
