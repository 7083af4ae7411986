"""The file's layout: its schema and version, the checks a file passes before it is used,
the migration of files written by earlier releases, and the names it stores for classes.

Schema versions:

1. the first layout.
2. the same tables; the ``error_type`` of dead letters is a public name
   (``reactor.DeliveryTimeout``, not ``reactor._exceptions.DeliveryTimeout``): opening a
   version 1 file renames its rows once (see :func:`migrate`).
3. adds ``reactor_dedupe``, the keys of an app's ``dedupe`` window (see
   :data:`DEDUPE_SCHEMA`), and ``reactor_delayed``, the delayed events not due yet (see
   :data:`DELAYED_SCHEMA`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

from reactor import QueueFileError

from .._names import first_private, public_name, resolve

__all__ = [
    "APPLICATION_ID",
    "SCHEMA_VERSION",
    "Check",
    "Synchronous",
    "check_header",
    "connect",
    "identify",
    "prepare",
    "public_name",
    "public_type_name",
]

#: The version of the file layout this release reads and writes.
SCHEMA_VERSION: Final = 3
#: ``PRAGMA application_id`` of reactor's queue files ("REAC").
APPLICATION_ID: Final = 0x52454143

Synchronous = Literal["full", "normal"]
Check = Literal["quick", "full", "none"]

_SQLITE_HEADER: Final = b"SQLite format 3\x00"

#: The page size of the files this release creates (a file keeps the one it was created
#: with). Every commit writes each page it changed to the log, a write of its own per
#: page; an event is about a kilobyte, and 4 KiB pages (SQLite's default) hold three of
#: them and leave a quarter of the page empty, 8 KiB pages seven: a commit of many events
#: writes fewer, fuller pages (a fifth less CPU time in the worker thread). Larger pages
#: save little more, and a commit of a single event writes at least two whole pages.
PAGE_SIZE: Final = 8192

#: The tables of schema version 3 for deduplication: the key of every event published
#: under an app's ``dedupe`` window, with the time (the app clock's wall time) it was
#: accepted; written in the transaction of the event's insert, pruned in bulk.
DEDUPE_SCHEMA: Final = (
    """CREATE TABLE reactor_dedupe (
        source TEXT NOT NULL,
        event_id TEXT NOT NULL,
        seen_at REAL NOT NULL,
        PRIMARY KEY (source, event_id)
    ) STRICT, WITHOUT ROWID""",
    "CREATE INDEX reactor_dedupe_seen ON reactor_dedupe (seen_at)",
)

#: Version 3: delayed events (``publish(..., delay=...)``) wait here, not in
#: ``reactor_events``, until they are due; then one transaction moves them to the end of
#: ``reactor_events`` (see ``promote_due``). Events are handed out in the order of their
#: numbers, and the read-ahead and the hand-out mark rely on it: an event delayed in
#: that table would be a hole in the order. `due_at` is wall time (seconds since the
#: epoch, on the app's clock), so a delay outlives the process; `crc` covers body and
#: only, as in ``reactor_events``, and moves with them.
DELAYED_SCHEMA: Final = (
    """CREATE TABLE reactor_delayed (
        id INTEGER PRIMARY KEY,
        due_at REAL NOT NULL,
        body BLOB NOT NULL,
        only TEXT,
        published_at REAL NOT NULL,
        crc INTEGER NOT NULL
    ) STRICT""",
    "CREATE INDEX reactor_delayed_due ON reactor_delayed (due_at, id)",
)


#: The tables of schema version 2 (and 1).
_SCHEMA_2: Final = (
    """CREATE TABLE reactor_meta (
        key TEXT PRIMARY KEY,
        value ANY
    ) STRICT, WITHOUT ROWID""",
    # One row per journaled event, in publish order. `crc` covers body and only, so a
    # damaged row is reported instead of being delivered altered. `attempt` counts the
    # hand-outs recorded at earlier starts; `done_at` is set when the retention keeps
    # acknowledged events (otherwise they are deleted).
    """CREATE TABLE reactor_events (
        seq INTEGER PRIMARY KEY,
        body BLOB NOT NULL,
        only TEXT,
        published_at REAL NOT NULL,
        attempt INTEGER NOT NULL DEFAULT 0,
        done_at REAL,
        crc INTEGER NOT NULL
    ) STRICT""",
    "CREATE INDEX reactor_events_done ON reactor_events (done_at) WHERE done_at IS NOT NULL",
    # Consumers that settled an event whose other consumers had not, yet.
    """CREATE TABLE reactor_progress (
        seq INTEGER NOT NULL,
        consumer TEXT NOT NULL,
        PRIMARY KEY (seq, consumer)
    ) STRICT, WITHOUT ROWID""",
    # A NULL consumer marks a journaled event that could not be decoded. `error_type` is
    # a public name (see public_name()).
    """CREATE TABLE reactor_dead_letters (
        id INTEGER PRIMARY KEY,
        source TEXT,
        event_id TEXT,
        consumer TEXT,
        body BLOB NOT NULL,
        error_type TEXT NOT NULL,
        error TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        first_failed_at TEXT NOT NULL,
        last_failed_at TEXT NOT NULL,
        dead_at REAL NOT NULL,
        UNIQUE (source, event_id, consumer)
    ) STRICT""",
)

#: Every table and index of this schema version.
SCHEMA: Final = (*_SCHEMA_2, *DEDUPE_SCHEMA, *DELAYED_SCHEMA)


def _schema_of(version: int) -> tuple[str, ...]:
    """The statements that create the tables of schema *version* (as it checks)."""
    return _SCHEMA_2 if version < 3 else SCHEMA


def connect(path: Path, busy_timeout: float) -> sqlite3.Connection:
    """Open a connection in autocommit mode (transactions are explicit), usable from any
    thread (it is opened in the queue's worker thread, and so is its checkpointer's)."""
    try:
        return sqlite3.connect(
            path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
        )
    except sqlite3.Error as exc:
        raise QueueFileError(f"cannot open {path}: {exc}") from exc


def prepare(
    conn: sqlite3.Connection, path: Path, synchronous: Synchronous, check: Check, writer: str
) -> None:
    """Check that the file is a queue of a schema this release reads and bring it to this
    one, or create the schema in a blank file.

    :param writer: who creates the file (stored in it, for whoever looks at it later)
    :raises QueueFileError: not a reactor queue, a newer schema, or damaged
    """
    if identify(conn, path):
        # Before anything is written: the page size of a file is fixed once it exists.
        conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
        _set_journal_mode(conn, path)
        conn.execute("BEGIN IMMEDIATE")
        for statement in SCHEMA:
            conn.execute(statement)
        conn.execute(
            "INSERT INTO reactor_meta (key, value) VALUES "
            "('handed_out', 0), ('created_at', ?), ('writer', ?)",
            (datetime.now(UTC).isoformat(), writer),
        )
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    else:
        _set_journal_mode(conn, path)
    conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
    # The write-ahead log is copied into the file by a thread of its own (see
    # Checkpointer), not inside the commits that publishers wait for.
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    if check != "none":
        pragma = "quick_check" if check == "quick" else "integrity_check"
        problems = [row[0] for row in conn.execute(f"PRAGMA {pragma}(5)")]
        if problems == ["ok"]:
            problems = _schema_problems(conn)
        if problems:
            raise QueueFileError(
                f"{path} is damaged ({pragma}: {'; '.join(problems)}); it was left "
                "as it is: move it aside and keep it for recovery"
            )
    migrate(conn)  # once the file passed its checks: a damaged one is left as it is


def migrate(conn: sqlite3.Connection) -> None:
    """Bring a file of an earlier schema version to this one, in one transaction.

    Version 1 to 2 renames the ``error_type`` of dead letters stored under a private
    module (``reactor._exceptions.DeliveryTimeout``) to the public name
    (``reactor.DeliveryTimeout``). Done once, here, rather than at every read: the file
    then holds what any reader (the ``sqlite3`` shell too) should see, and only
    :func:`~reactor.queues.sqlite.read_dead_letters`, which never writes, still meets
    unmigrated files (it renames the names it returns the same way).

    Version 2 to 3 adds tables (see :func:`_add_dedupe_keys` and
    :func:`_add_delayed_events`).
    """
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version >= SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        if version < 2:
            stored = [
                name
                for (name,) in conn.execute(
                    "SELECT DISTINCT error_type FROM reactor_dead_letters "
                    "WHERE error_type LIKE 'reactor.%'"
                )
            ]
            conn.executemany(
                "UPDATE reactor_dead_letters SET error_type = ? WHERE error_type = ?",
                [(public_type_name(name), name) for name in stored],
            )
        if version < 3:
            _add_dedupe_keys(conn)
            _add_delayed_events(conn)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            # The error being handled is the one to report, not a failed ROLLBACK's.
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise


def _add_dedupe_keys(conn: sqlite3.Connection) -> None:
    """Version 3: add the (empty) table of deduplication keys, as a new file has it."""
    for statement in DEDUPE_SCHEMA:
        conn.execute(statement)


def _add_delayed_events(conn: sqlite3.Connection) -> None:
    """Create the table of delayed events (schema version 3), in the caller's transaction."""
    for statement in DELAYED_SCHEMA:
        conn.execute(statement)


def identify(conn: sqlite3.Connection, path: Path) -> bool:
    """Check that *conn*'s database is a reactor queue of a schema this release reads.

    :return: ``True`` for a blank database (no table yet), where a queue may be created
    :raises QueueFileError: another application's database, or a newer or invalid schema
    """
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if app_id == 0 and version == 0:
        if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            raise QueueFileError(
                f"{path} is an SQLite database but not a reactor queue; "
                "point the queue at a new file"
            )
        return True
    if app_id != APPLICATION_ID:
        raise QueueFileError(
            f"{path} is an SQLite database of another application "
            f"(application_id {app_id:#x}), not a reactor queue"
        )
    if version > SCHEMA_VERSION:
        raise QueueFileError(
            f"{path} has queue schema version {version}, newer than the {SCHEMA_VERSION} "
            "this reactor supports; upgrade reactor to open it"
        )
    if version < 1:
        raise QueueFileError(f"{path} has an invalid queue schema version {version}")
    return False


def check_header(path: Path, *, missing_ok: bool) -> bool:
    """Refuse what is plainly not an SQLite database before SQLite sees it.

    :return: whether the file exists with content (``False``: missing or empty)
    :raises QueueFileError: not a file, unreadable, or not an SQLite database (or, unless
        *missing_ok*, missing or empty)
    """
    if path.is_dir():
        raise QueueFileError(f"{path} is a directory, not a queue file")
    try:
        with path.open("rb") as file:
            first = file.read(100)
            size = os.fstat(file.fileno()).st_size
    except FileNotFoundError:
        first = b""
        if not missing_ok:
            raise QueueFileError(f"{path}: no such file") from None
    except OSError as exc:
        raise QueueFileError(f"cannot read {path}: {exc}") from None
    if not first:
        if not missing_ok:
            raise QueueFileError(f"{path} is empty, not a reactor queue")
        return False
    if first[: len(_SQLITE_HEADER)] != _SQLITE_HEADER:
        raise QueueFileError(
            f"{path} is not an SQLite database (its header is damaged or it is another "
            "kind of file); it was left as it is"
        )
    # The file is made of whole pages; anything else was cut short (SQLite would read
    # the missing tail of the last page as zeros, and quick_check may not notice).
    page_size = int.from_bytes(first[16:18], "big") if len(first) >= 18 else 0
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512 or page_size & (page_size - 1) or size % page_size:
        raise QueueFileError(
            f"{path} is truncated or damaged: its size of {size} bytes is not a whole "
            f"number of {page_size}-byte pages; it was left as it is"
        )
    return True


def _set_journal_mode(conn: sqlite3.Connection, path: Path) -> None:
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise QueueFileError(f"{path} cannot use write-ahead logging (journal mode {mode!r})")


_MASTER_COLUMNS: Final = "type, name, tbl_name, sql"


@functools.cache
def _expected_master(version: int) -> Counter[tuple[Any, ...]]:
    """The rows of ``sqlite_master`` (but their page numbers) that schema *version* has."""
    conn = sqlite3.connect(":memory:")
    try:
        for statement in _schema_of(version):
            conn.execute(statement)
        return Counter(conn.execute(f"SELECT {_MASTER_COLUMNS} FROM sqlite_master"))
    finally:
        conn.close()


def _schema_problems(conn: sqlite3.Connection) -> list[str]:
    """Find damage that SQLite's quick check cannot see; return it described, or ``[]``.

    * The schema must be exactly the one this release created, each object's type,
      name and table as well as its SQL: a flipped byte in a column's name would
      otherwise fail later, in the middle of a run.
    * Every event marked done must be in the index of done events and the other way
      round: a flipped type byte can turn "not done" into "done" without breaking the
      record, and the event would then be skipped without a word.
    """
    problems: list[str] = []
    found = Counter(conn.execute(f"SELECT {_MASTER_COLUMNS} FROM sqlite_master"))
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if found != _expected_master(version):
        problems.append("the queue's tables are not the ones its schema version defines")
        return problems
    in_table = conn.execute(
        "SELECT count(*) FROM reactor_events NOT INDEXED WHERE done_at IS NOT NULL"
    ).fetchone()[0]
    in_index = conn.execute(
        "SELECT count(*) FROM reactor_events INDEXED BY reactor_events_done "
        "WHERE done_at IS NOT NULL"
    ).fetchone()[0]
    if in_table != in_index:
        problems.append(
            f"{in_table} event(s) are marked done but the index of done events holds {in_index}"
        )
    return problems


# -- names of classes, as stored ---------------------------------------------------------


@functools.cache
def public_type_name(stored: str) -> str:
    """The public name for a name stored by an earlier release: ``reactor.DeliveryTimeout``
    for ``reactor._exceptions.DeliveryTimeout``; any other name as it is (the application's
    classes, and names no public package of reactor exports).

    Only packages already imported are looked into: nothing is imported because a file
    names it.
    """
    parts = stored.split(".")
    private = first_private(parts)
    if private is None:
        return stored
    # The class's qualified name begins after the module's private part somewhere.
    for start in range(private + 1, len(parts)):
        name = ".".join(parts[start:])
        for end in range(private, 0, -1):
            found = resolve(".".join(parts[:end]), name)
            if isinstance(found, type):
                return public_name(found)
    return stored
