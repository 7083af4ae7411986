"""The bucket poller's memory between polls: the last listing, in a SQLite file.

One file may hold the state of several pollers (one row of ``pollers`` each, keyed by the
source's name); each poller keeps one row of ``objects`` per object of its last listing:
key, ETag, size and last-modified time. Nothing else is stored: no object data, no event.

**Merging in key order.** S3 lists keys in ascending order of their UTF-8 bytes, and
SQLite's ``BINARY`` collation orders text the same way, so a poll walks the listing and
the stored rows side by side, like a merge of two sorted files: a key listed and not stored
was created, a key stored and not listed was removed, a key in both whose ETag, size or
last-modified time differ was modified. The stored rows are read ahead in pages of their
own (``key > last ORDER BY key LIMIT n``), so a poll holds one listing page, one page of
stored rows and one chunk of changes at a time, whatever the size of the bucket.

**Advancing after publishing.** The poller publishes a chunk of changes, then calls
:meth:`State.apply` to store it (one transaction). A crash in between leaves the old rows,
so the next poll finds the same changes again: at-least-once. Rows never get ahead of
what was published.

All methods block (SQLite): the poller calls them on a worker thread, one at a time.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections import deque
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Final, Literal, TypeAlias

import attrs

from ._client import Listed

__all__ = [
    "Change",
    "ChangeKind",
    "ForeignStateFile",
    "Found",
    "ListingOrderError",
    "Merge",
    "State",
]

logger = logging.getLogger("reactor.sources.objects")

ChangeKind: TypeAlias = Literal["created", "modified", "removed"]

# The layout this module writes; a file with another is set aside as unreadable.
_SCHEMA_VERSION: Final = 1
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS pollers (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    -- what was listed: a stored listing of another bucket, prefix or store is no baseline
    target TEXT NOT NULL,
    -- 1 once a whole listing is stored; 0 while the first one is being stored
    complete INTEGER NOT NULL,
    -- the end of the last complete poll, RFC 3339
    polled_at TEXT
);
CREATE TABLE IF NOT EXISTS objects (
    poller INTEGER NOT NULL,
    key TEXT NOT NULL,
    etag TEXT NOT NULL,
    size INTEGER NOT NULL,
    last_modified TEXT NOT NULL,
    PRIMARY KEY (poller, key)
) WITHOUT ROWID;
"""


class ForeignStateFile(RuntimeError):
    """The state file is another program's database, or a later version's."""


class ListingOrderError(RuntimeError):
    """The store listed keys out of order, which S3's ``ListObjectsV2`` never does."""


@attrs.frozen
class Change:
    """One object that changed since the last poll.

    For ``removed``, *listed* is the object as it was last seen.
    """

    kind: ChangeKind
    listed: Listed


@attrs.frozen
class Found:
    """What :meth:`State.open` found for the poller.

    :ivar usable: a complete listing of the same target is stored
    :ivar reason: why not, when not (for the gap event and the log)
    :ivar polled_at: when the last complete poll ended, if known
    """

    usable: bool
    reason: str | None = None
    polled_at: datetime | None = None


class State:
    """One poller's stored listing in a SQLite file (``":memory:"``: kept for this run only).

    :param path: the file
    :param name: the poller's name (its row)
    :param target: what it lists (bucket, prefix and store), to notice a change of target
    """

    def __init__(self, path: str, *, name: str, target: str) -> None:
        self._path = path
        self._name = name
        self._target = target
        self._db: sqlite3.Connection | None = None
        self._id = 0
        #: objects in the stored listing
        self.objects = 0

    @property
    def path(self) -> str:
        """The file."""
        return self._path

    def open(self) -> Found:
        """Open the file (creating it), and say whether it holds a listing to poll against.

        A file that SQLite cannot read (not a database, or damaged) is renamed
        ``<path>.unreadable-<time>`` and a new one is made.

        :raises sqlite3.Error: the file cannot be created or written (permissions, disk)
        :raises ForeignStateFile: the file is a database of something else (another
            program's, a queue's) or of a later version: it is left alone
        """
        try:
            return self._open()
        except sqlite3.OperationalError:
            self.close()
            raise  # locked, read-only, no room: not the content's fault
        except ForeignStateFile:
            self.close()
            raise
        except sqlite3.DatabaseError as exc:
            self.close()
            if self._path == ":memory:":
                raise
            aside = f"{self._path}.unreadable-{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}"
            os.replace(self._path, aside)
            for suffix in ("-wal", "-shm"):
                if os.path.exists(self._path + suffix):
                    os.replace(self._path + suffix, aside + suffix)
            logger.warning(
                "bucket poller %s: the state file %s is unreadable (%s); set it aside as %s "
                "and starting a new one",
                self._name,
                self._path,
                exc,
                aside,
                extra={"source": self._name},
            )
            self._open()
            return Found(False, f"state unreadable: {exc}")

    def _open(self) -> Found:
        db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        self._db = db
        db.execute("PRAGMA busy_timeout = 5000")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        if version not in (0, _SCHEMA_VERSION) or (version == 0 and tables):
            raise ForeignStateFile(
                f"{self._path} is not a bucket poller's state file of this version (it holds "
                f"{', '.join(sorted(tables)) or 'no table'}, user_version {version}); it was "
                "left alone: give state= a file of its own"
            )
        if self._path != ":memory:":
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")  # WAL: durable up to the last checkpoint
        if version == 0:
            db.executescript(_SCHEMA)  # idempotent: CREATE ... IF NOT EXISTS
            db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
        row = db.execute(
            "SELECT id, target, complete, polled_at FROM pollers WHERE name = ?", (self._name,)
        ).fetchone()
        if row is None:
            with _transaction(db):
                cursor = db.execute(
                    "INSERT INTO pollers (name, target, complete) VALUES (?, ?, 0)",
                    (self._name, self._target),
                )
            assert cursor.lastrowid is not None
            self._id = cursor.lastrowid
            return Found(False, "no stored state (a first start, or the state file was lost)")
        self._id, target, complete, polled_text = row
        polled_at = datetime.fromisoformat(polled_text) if polled_text else None
        if target != self._target:
            return Found(False, f"the stored state is of {target}", polled_at)
        if not complete:
            return Found(False, "the stored state is incomplete (the first poll was cut)")
        self.objects = db.execute(
            "SELECT count(*) FROM objects WHERE poller = ?", (self._id,)
        ).fetchone()[0]
        return Found(True, None, polled_at)

    def reset(self) -> None:
        """Forget the stored listing: the next poll is a baseline (stored, not announced)."""
        db = self._connection()
        with _transaction(db):
            db.execute("DELETE FROM objects WHERE poller = ?", (self._id,))
            db.execute(
                "UPDATE pollers SET target = ?, complete = 0, polled_at = NULL WHERE id = ?",
                (self._target, self._id),
            )
        self.objects = 0

    def merge(self, read_ahead: int) -> Merge:
        """Start a poll: a merge of the coming listing with the stored rows.

        :param read_ahead: how many stored rows to read at a time
        """
        return Merge(self, read_ahead)

    def rows_after(self, key: str | None, limit: int) -> list[Listed]:
        """The stored objects after *key* (from the first for ``None``), in key order."""
        db = self._connection()
        if key is None:
            rows = db.execute(
                "SELECT key, etag, size, last_modified FROM objects WHERE poller = ? "
                "ORDER BY key LIMIT ?",
                (self._id, limit),
            )
        else:
            rows = db.execute(
                "SELECT key, etag, size, last_modified FROM objects WHERE poller = ? AND key > ? "
                "ORDER BY key LIMIT ?",
                (self._id, key, limit),
            )
        return [Listed(key=k, etag=e, size=s, last_modified=m) for k, e, s, m in rows]

    def apply(self, changes: Sequence[Change]) -> None:
        """Store *changes* (once published), in one transaction."""
        db = self._connection()
        poller = self._id
        upserts = [
            (poller, c.listed.key, c.listed.etag, c.listed.size, c.listed.last_modified)
            for c in changes
            if c.kind != "removed"
        ]
        removals = [(poller, c.listed.key) for c in changes if c.kind == "removed"]
        with _transaction(db):
            db.executemany(
                "INSERT INTO objects (poller, key, etag, size, last_modified) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (poller, key) DO UPDATE SET "
                "etag = excluded.etag, size = excluded.size, last_modified = excluded.last_modified",
                upserts,
            )
            db.executemany("DELETE FROM objects WHERE poller = ? AND key = ?", removals)
        self.objects += sum(c.kind == "created" for c in changes) - len(removals)

    def finish(self, polled_at: datetime) -> None:
        """Mark the stored listing complete, as of *polled_at*."""
        db = self._connection()
        with _transaction(db):
            db.execute(
                "UPDATE pollers SET complete = 1, polled_at = ? WHERE id = ?",
                (polled_at.isoformat(), self._id),
            )

    def close(self) -> None:
        """Close the file (idempotent)."""
        db, self._db = self._db, None
        if db is not None:
            db.close()

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("the state file is not open")
        return self._db


class _transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error) on an autocommit connection."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self._db.execute("COMMIT")
        elif self._db.in_transaction:
            self._db.execute("ROLLBACK")


class Merge:
    """One poll's walk of the listing and the stored rows side by side (see the module doc).

    Feed it the listing's pages in order with :meth:`page`, then take :meth:`rest`; each
    yields the changes found, lazily, so the caller can take them a chunk at a time and
    store each chunk (:meth:`State.apply`) before reading on. Stored rows are read ahead of
    the walk only, so storing the changes already taken does not disturb it.
    """

    def __init__(self, state: State, read_ahead: int) -> None:
        self._state = state
        self._read_ahead = read_ahead
        self._stored: deque[Listed] = deque()
        self._read_up_to: str | None = None  # the last stored key read
        self._exhausted = False
        self._last_listed: str | None = None

    @property
    def held(self) -> int:
        """Stored rows read ahead and not yet walked past (the merge's memory)."""
        return len(self._stored)

    def _head(self) -> Listed | None:
        if not self._stored and not self._exhausted:
            rows = self._state.rows_after(self._read_up_to, self._read_ahead)
            if len(rows) < self._read_ahead:
                self._exhausted = True
            if rows:
                self._read_up_to = rows[-1].key
                self._stored.extend(rows)
        return self._stored[0] if self._stored else None

    def page(self, objects: Sequence[Listed]) -> Iterator[Change]:
        """Yield the changes up to the last key of *objects*, a page of the listing.

        :param objects: the page's objects that the poller keeps, in the listing's order
        :raises ListingOrderError: a key not after the one before
        """
        for listed in objects:
            key = listed.key
            if self._last_listed is not None and key <= self._last_listed:
                raise ListingOrderError(
                    f"the store listed {key!r} after {self._last_listed!r}: S3 lists keys in "
                    "ascending order, and the poller relies on it"
                )
            self._last_listed = key
            head = self._head()
            while head is not None and head.key < key:
                self._stored.popleft()
                yield Change("removed", head)
                head = self._head()
            if head is not None and head.key == key:
                self._stored.popleft()
                if head != listed:
                    yield Change("modified", listed)
            else:
                yield Change("created", listed)

    def rest(self) -> Iterator[Change]:
        """Yield the stored objects after the listing's last key: all removed."""
        while (head := self._head()) is not None:
            self._stored.popleft()
            yield Change("removed", head)
