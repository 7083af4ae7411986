"""The journal: the queue file's connection and the statements of the hot path, run in
the queue's worker thread.

:class:`Journal`'s methods run one at a time, in the queue's worker thread
(``await worker.run(journal.commit, ...)``, see :mod:`._worker`). They read their
arguments and the journal's own state only (the connection, the checkpointer, the bytes
written since the last checkpoint, the time of the last purge), and return what the loop
side needs: the loop side applies the results to its own state (depth, counters,
read-ahead, the numbering of events) once the thread hop is over, so no state is shared
between the two but the arguments of a call, which the loop side does not change while
the call runs.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import threading
import zlib
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from time import time
from typing import Any, Concatenate, Final, NamedTuple, ParamSpec, TypeVar

from reactor import Event, EventFormatError, QueueFileError
from reactor.abc import Received

from ._errors import logger, storage_error, unavailable_cause
from ._lock import OwnerLock
from ._schema import Check, Synchronous, check_header, connect, prepare, public_name

__all__ = [
    "Delayed",
    "Journal",
    "Page",
    "Recovered",
    "Writes",
    "append",
    "crc_with",
    "promote_due",
    "rollback",
    "store_delayed",
]

#: Seconds between two purges of acknowledged events older than the retention.
PURGE_INTERVAL: Final = 60.0
#: Bytes written to the write-ahead log between two checkpoints of it (as counted by
#: :meth:`Journal.commit`).
CHECKPOINT_BYTES: Final = 4 << 20
#: Bytes written to the write-ahead log after which the writer brings it back to its
#: beginning (see :meth:`Journal._restart_log`): about the most the log file grows to.
RESTART_BYTES: Final = 16 << 20
#: Rows deleted per purge statement, so that a purge never holds the writer for long.
PURGE_CHUNK: Final = 10_000

_INSERT: Final = "INSERT INTO reactor_events (seq, body, only, published_at, crc) VALUES "
#: Rows per INSERT statement: one statement (one step of SQLite, one release of the GIL)
#: for many rows, instead of one per row as ``executemany`` does.
_INSERT_CHUNK: Final = 64
_SET_HANDED_OUT: Final = "UPDATE reactor_meta SET value = ? WHERE key = 'handed_out'"
#: The key of a timer's last fire time in ``reactor_meta`` is this prefix and its name;
#: the value is the time as POSIX seconds (REAL). A time never moves backward.
FIRED_PREFIX: Final = "fired:"
_STORE_FIRED: Final = (
    "INSERT INTO reactor_meta (key, value) VALUES (?, ?) ON CONFLICT (key) "
    "DO UPDATE SET value = excluded.value WHERE excluded.value > reactor_meta.value"
)
STORE_LETTER: Final = (
    "INSERT OR REPLACE INTO reactor_dead_letters (source, event_id, consumer, body, "
    "error_type, error, attempts, first_failed_at, last_failed_at, dead_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_STORE_KEY: Final = (
    "INSERT OR REPLACE INTO reactor_dedupe (source, event_id, seen_at) VALUES (?, ?, ?)"
)
_FORGET_KEYS: Final = "DELETE FROM reactor_dedupe WHERE seen_at < ?"
_DELETE_COPIES: Final = "DELETE FROM reactor_events WHERE seq BETWEEN ? AND ? AND only IS NOT NULL"
#: The error type of the dead letter of a journaled event that cannot be decoded.
_DAMAGED: Final = public_name(EventFormatError)

_P = ParamSpec("_P")
_T = TypeVar("_T")


class Writes:
    """What one transaction writes; built on the loop side, only read in the thread."""

    __slots__ = (
        "acks",
        "discards",
        "fires",
        "forget_keys",
        "inserts",
        "keys",
        "letters",
        "loose",
        "mark",
        "progress",
    )

    def __init__(self) -> None:
        #: The events to append: (received, body, consumer list as JSON, publish time).
        self.inserts: list[tuple[Received, bytes, str | None, float]] = []
        self.acks: list[Any] = []  # sequence numbers (the tokens of Received)
        self.progress: list[tuple[Any, str]] = []
        self.letters: list[tuple[Any, ...]] = []
        self.discards: list[tuple[str, str, str]] = []
        # Timers' last fire times, (key, time): of runs whose events this writes, and of
        # due times without a run (kept for the next commit when this one fails).
        self.fires: list[tuple[str, float]] = []
        self.loose: list[tuple[str, float]] = []
        self.mark = 0  # the hand-out mark to persist: the last seq get_batch() hands out
        #: The dedupe keys of inserted events: (source, id) -> the time it was accepted.
        self.keys: dict[tuple[str, str], float] = {}
        #: Delete the stored dedupe keys accepted before this time (0: none to delete).
        self.forget_keys = 0.0

    def __bool__(self) -> bool:
        return bool(
            self.inserts
            or self.acks
            or self.progress
            or self.letters
            or self.discards
            or self.mark
            or self.fires
            or self.loose
        )


class Page(NamedTuple):
    """A page of the backlog read from the file."""

    received: list[Received]
    cursor: int  # where the next page begins
    damaged: int  # events moved to the dead letters instead (no longer in the queue)


class Delayed(NamedTuple):
    """The delayed events waiting in the file: how many, and the earliest due time."""

    total: int
    next_due: float | None  # seconds since the epoch; None when there is none


class Recovered(NamedTuple):
    """What an earlier run left in the file, as found by :meth:`Journal.open`."""

    depth: int  # events not settled
    first: int | None  # the first of them
    last_seq: int  # the number of the last event in the file
    delayed: Delayed  # the delayed events waiting in the file
    fire_times: dict[str, float]  # the timers' last fire times by name, POSIX seconds


class Journal:
    """The connection to a queue file that this process owns (see the module's docstring
    for the threads): the transactions of the hot path, recovery at open, the marks
    written at close, and a runner for the admin's statements."""

    def __init__(
        self,
        path: Path,
        conn: sqlite3.Connection,
        owner_lock: OwnerLock,
        synchronous: Synchronous,
        busy_timeout: float,
        retention: float | None,
    ) -> None:
        self._path = path
        self._conn = conn
        self._owner_lock = owner_lock
        self._retention = retention
        self._unchecked = 0  # bytes written since the last checkpoint request
        self._unrestarted = 0  # bytes written since the log last began again
        self._page_size: int = conn.execute("PRAGMA page_size").fetchone()[0]
        self._last_purge = 0.0
        self._checkpointer = Checkpointer(path, synchronous, busy_timeout)

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        synchronous: Synchronous,
        check: Check,
        busy_timeout: float,
        retention: float | None,
        writer: str,
        consumers: Sequence[str] | None,
    ) -> tuple[Journal, Recovered]:
        """Own *path*, check it (or create it), and recover what an earlier run left.

        :param writer: who creates the file, if it does not exist
        :param consumers: consumer names to record in the file (:meth:`store_consumers`)
        :raises ~reactor.QueueInUseError: another process owns the file
        :raises ~reactor.QueueFileError: not a queue, a newer schema, damaged
        :raises ~reactor.QueueUnavailableError: it cannot be written now (a full disk)
        """
        check_header(path, missing_ok=True)
        if not path.parent.is_dir():
            raise QueueFileError(f"the directory of {path} does not exist")
        owner_lock = OwnerLock.take(path)
        try:
            conn = connect(path, busy_timeout)
        except BaseException:
            owner_lock.release()
            raise
        try:
            prepare(conn, path, synchronous, check, writer)
            recovered = _recover(conn, path, retention)
            store_consumers(conn, consumers)
            journal = cls(path, conn, owner_lock, synchronous, busy_timeout, retention)
        except BaseException as exc:
            conn.close()
            owner_lock.release()
            if isinstance(exc, sqlite3.Error | OSError) and unavailable_cause(path, exc):
                # A full disk is not a damaged file: say what it is (and that it may pass).
                raise storage_error(path, exc, opening=True) from exc
            if isinstance(exc, sqlite3.DatabaseError | UnicodeDecodeError):
                # A damaged schema can make even SQLite's error message undecodable.
                raise QueueFileError(f"{path} cannot be used as a reactor queue: {exc}") from exc
            raise
        return journal, recovered

    def close(self, consumers: Sequence[str] | None, given: int | None) -> None:
        """Write the last marks, checkpoint the log, close the file and give it up.

        :param consumers: consumer names to record (those of subscriptions added meanwhile)
        :param given: the hand-out mark to write back: the last event handed out, when
            events read ahead after it were counted as handed out but never were
        """
        self._checkpointer.stop()
        conn = self._conn
        try:
            store_consumers(conn, consumers)
            if given is not None:
                # Not counted as handed out at the next start.
                conn.execute(_SET_HANDED_OUT, (given,))
        except (sqlite3.Error, QueueFileError) as exc:
            logger.warning("%s: could not write its last marks: %s", self._path, exc)
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass  # another reader holds the WAL; SQLite checkpoints it later
        finally:
            conn.close()
            self._owner_lock.release()

    # -- the hot path -----------------------------------------------------------------

    def commit(
        self,
        writes: Writes,
        first: int,
        mark: int,
        progress_done: Sequence[Any],
        read: tuple[int, int, int] | None,
    ) -> Page | None:
        """Write *writes* and read a page of the backlog, in one transaction.

        :param first: the number of the first event of ``writes.inserts``
        :param mark: the hand-out mark to persist (``0``: leave it): persisted before
            the events can reach a handler, so a crash after it counts them as handed
            out (their attempt is raised at the next start), never the other way round
        :param progress_done: acknowledged events that have progress rows to delete
        :param read: ``(cursor, last, limit)``: read up to *limit* unsettled events of
            ``[cursor, last]``, or ``None``
        :return: the page read, or ``None``
        """
        conn = self._conn
        rollback(conn)  # what a failed ROLLBACK may have left open
        conn.execute("BEGIN IMMEDIATE")
        try:
            if writes:
                self._write(conn, writes, first, mark, progress_done)
            page = self._read(conn, *read) if read is not None else None
            conn.execute("COMMIT")
        except BaseException:
            rollback(conn)
            raise
        if writes:
            # What the commit added to the log, about: its events, and two pages for the
            # pages it changed besides (a commit of one small event writes two whole
            # pages: the last of the events' table and its parent, or the meta table's).
            written = 2 * self._page_size + sum(len(insert[1]) for insert in writes.inserts)
            self._unchecked += written
            self._unrestarted += written
            if self._unrestarted >= RESTART_BYTES:
                # The checkpointer is asked no more; once its last checkpoint is over,
                # the rest is copied here.
                if not self._checkpointer.busy:
                    self._restart_log()
            elif self._unchecked >= CHECKPOINT_BYTES:
                self._unchecked = 0
                self._checkpointer.request()
        return page

    def _restart_log(self) -> None:
        """Copy into the file what the checkpointer left of the log: the commits made
        while it ran, so that the next commit writes the log from its beginning again.

        A checkpoint copies the log up to where it was when the checkpoint began, and
        the writer goes on committing meanwhile: under a steady load, the checkpointer
        alone never copies the log to its end, and only a log copied to its end is
        written from its beginning again (else it grows for as long as the load lasts,
        and a growing file costs the file system more than one written over). Once every
        :data:`RESTART_BYTES`, the writer copies the rest itself, between two commits:
        little, the commits made during the checkpointer's last checkpoint.
        """
        self._unrestarted = self._unchecked = 0  # done, or tried again after as much
        try:
            self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:  # a full disk; the commit itself is stored
            logger.warning("%s: checkpoint failed, tried again later: %s", self._path, exc)

    def _write(
        self,
        conn: sqlite3.Connection,
        writes: Writes,
        first: int,
        mark: int,
        progress_done: Sequence[Any],
    ) -> None:
        if writes.inserts:
            append(conn, first, [insert[1:] for insert in writes.inserts])
        if writes.keys:
            conn.executemany(
                _STORE_KEY, [(source, id_, at) for (source, id_), at in writes.keys.items()]
            )
        if writes.forget_keys:
            conn.execute(_FORGET_KEYS, (writes.forget_keys,))
        if mark:
            conn.execute(_SET_HANDED_OUT, (mark,))
        if writes.fires or writes.loose:
            conn.executemany(_STORE_FIRED, writes.fires + writes.loose)
        if writes.letters:
            conn.executemany(STORE_LETTER, writes.letters)
        if writes.discards:
            conn.executemany(
                "DELETE FROM reactor_dead_letters "
                "WHERE source = ? AND event_id = ? AND consumer = ?",
                writes.discards,
            )
        if writes.progress:
            conn.executemany(
                "INSERT OR IGNORE INTO reactor_progress (seq, consumer) VALUES (?, ?)",
                writes.progress,
            )
        if writes.acks:
            now = time()
            if self._retention is None:
                for low, high in _runs(writes.acks):
                    conn.execute(
                        "DELETE FROM reactor_events WHERE seq BETWEEN ? AND ?", (low, high)
                    )
            else:
                # Only publications are kept: a replay or redelivery to chosen consumers
                # (a row with a consumer list) is a copy of an event kept already, or of
                # a dead letter's event, not an event of its own.
                for low, high in _runs(writes.acks):
                    conn.execute(_DELETE_COPIES, (low, high))
                conn.executemany(
                    "UPDATE reactor_events SET done_at = ? WHERE seq = ?",
                    [(now, seq) for seq in writes.acks],
                )
                if now - self._last_purge >= PURGE_INTERVAL:
                    self._last_purge = now
                    purge(conn, now, self._retention)
            if progress_done:
                conn.executemany(
                    "DELETE FROM reactor_progress WHERE seq = ?",
                    [(seq,) for seq in progress_done],
                )

    def _read(self, conn: sqlite3.Connection, cursor: int, upto: int, limit: int) -> Page:
        """Read the next page of the backlog; move damaged events to the dead letters.

        Not counted as handed out: get_batch() does that for the events it hands out, so
        that a crash counts only those, not the whole read-ahead.
        """
        rows = conn.execute(
            "SELECT seq, body, only, attempt, crc FROM reactor_events "
            "WHERE seq >= ? AND seq <= ? AND done_at IS NULL ORDER BY seq LIMIT ?",
            (cursor, upto, limit),
        ).fetchall()
        next_cursor = upto + 1 if len(rows) < limit else rows[-1][0] + 1
        if not rows:
            return Page([], next_cursor, 0)
        completed: dict[int, set[str]] = {}
        for seq, consumer in conn.execute(
            "SELECT seq, consumer FROM reactor_progress WHERE seq BETWEEN ? AND ?",
            (rows[0][0], rows[-1][0]),
        ):
            completed.setdefault(seq, set()).add(consumer)
        received: list[Received] = []
        damaged: list[tuple[int, bytes, str]] = []
        for seq, body, only, attempt, crc in rows:
            try:
                item = _decode_row(seq, body, only, attempt, crc, completed.get(seq))
            except (EventFormatError, ValueError, TypeError) as exc:
                damaged.append((seq, body, str(exc)))
            else:
                received.append(item)
        for seq, body, why in damaged:
            self._bury_damaged(conn, seq, body, why)
        return Page(received, next_cursor, len(damaged))

    def _bury_damaged(self, conn: sqlite3.Connection, seq: int, body: bytes, why: str) -> None:
        logger.error(
            "%s: journaled event #%d is damaged and cannot be delivered (%s); "
            "it was moved to the dead letters",
            self._path,
            seq,
            why,
        )
        now = datetime.now(UTC)
        conn.execute(
            STORE_LETTER,
            (
                None,
                None,
                None,
                body if isinstance(body, bytes) else str(body).encode(),
                _DAMAGED,
                f"journaled event #{seq} is damaged: {why}",
                0,
                now.isoformat(),
                now.isoformat(),
                now.timestamp(),
            ),
        )
        conn.execute("DELETE FROM reactor_events WHERE seq = ?", (seq,))
        conn.execute("DELETE FROM reactor_progress WHERE seq = ?", (seq,))

    def dedupe_keys(self, since: float) -> list[tuple[str, str, float]]:
        """Delete the dedupe keys accepted before *since*; return the others, oldest first.

        :param since: a time as the keys store it (a POSIX timestamp of the app's clock)
        """
        conn = self._conn
        rollback(conn)
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(_FORGET_KEYS, (since,))
            keys: list[tuple[str, str, float]] = conn.execute(
                "SELECT source, event_id, seen_at FROM reactor_dedupe ORDER BY seen_at"
            ).fetchall()
            conn.execute("COMMIT")
        except BaseException:
            rollback(conn)
            raise
        return keys

    # -- the admin's statements ---------------------------------------------------------

    def read(
        self,
        func: Callable[Concatenate[sqlite3.Connection, _P], _T],
        *args: _P.args,
        **kwargs: _P.kwargs,
    ) -> _T:
        """Run ``func(connection, *args, **kwargs)`` outside a transaction (to read)."""
        return func(self._conn, *args, **kwargs)

    def transact(
        self,
        func: Callable[Concatenate[sqlite3.Connection, _P], _T],
        *args: _P.args,
        **kwargs: _P.kwargs,
    ) -> _T:
        """Run ``func(connection, *args, **kwargs)`` in one write transaction: all of it
        is stored, or nothing when it raises."""
        conn = self._conn
        rollback(conn)  # what a failed ROLLBACK may have left open
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = func(conn, *args, **kwargs)
            conn.execute("COMMIT")
        except BaseException:
            rollback(conn)
            raise
        return result


def _recover(conn: sqlite3.Connection, path: Path, retention: float | None) -> Recovered:
    """Raise the attempt of the events an earlier run handed out, purge what the retention
    no longer keeps, and count what is left."""
    handed_out = conn.execute("SELECT value FROM reactor_meta WHERE key = 'handed_out'").fetchone()
    if handed_out is None or not isinstance(handed_out[0], int):
        raise QueueFileError(f"{path} lacks its hand-out mark; the file is damaged")
    conn.execute("BEGIN IMMEDIATE")
    try:
        if handed_out[0]:
            conn.execute(
                "UPDATE reactor_events SET attempt = attempt + 1 "
                "WHERE seq <= ? AND done_at IS NULL",
                (handed_out[0],),
            )
            conn.execute(_SET_HANDED_OUT, (0,))
        if retention is not None:
            purge(conn, time(), retention)
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise
    last_seq = conn.execute("SELECT max(seq) FROM reactor_events").fetchone()[0] or 0
    depth, first = conn.execute(
        "SELECT count(*), min(seq) FROM reactor_events WHERE done_at IS NULL"
    ).fetchone()
    fired = conn.execute(
        "SELECT key, value FROM reactor_meta WHERE key >= ? AND key < ?",
        (FIRED_PREFIX, FIRED_PREFIX[:-1] + chr(ord(FIRED_PREFIX[-1]) + 1)),
    ).fetchall()
    fire_times = {
        key[len(FIRED_PREFIX) :]: float(value)
        for key, value in fired
        if isinstance(value, int | float)
    }
    return Recovered(depth, first, last_seq, _delayed(conn), fire_times)


def _delayed(conn: sqlite3.Connection) -> Delayed:
    count, next_due = conn.execute("SELECT count(*), min(due_at) FROM reactor_delayed").fetchone()
    return Delayed(count, next_due)


def store_delayed(
    conn: sqlite3.Connection,
    first: int,
    rows: Sequence[tuple[bytes, str | None, float]],
    delayed: Sequence[tuple[float, bytes, str | None, float]],
    keys: Sequence[tuple[str, str, float]] = (),
) -> tuple[int, Delayed]:
    """Append events numbered from *first* on and store delayed events (due time, body,
    consumer list, publish time) and dedupe keys (source, id, time), in the caller's
    transaction.

    :return: how many events were appended, and the delayed events now in the file
    """
    if keys:
        conn.executemany(_STORE_KEY, keys)
    conn.executemany(
        "INSERT INTO reactor_delayed (due_at, body, only, published_at, crc) "
        "VALUES (?, ?, ?, ?, ?)",
        [(due, body, only, at, crc(body, only)) for due, body, only, at in delayed],
    )
    return append(conn, first, rows), _delayed(conn)


def promote_due(
    conn: sqlite3.Connection, first: int, now: float, limit: int
) -> tuple[int, Delayed]:
    """Move up to *limit* delayed events due at *now* (seconds since the epoch) to the end
    of the events, numbered from *first* on in the order of their due times, in the
    caller's transaction. Rows move as stored (their checksum too): a damaged one is
    found when it is read.

    :return: how many were moved, and the delayed events left in the file
    """
    rows = conn.execute(
        "SELECT id, body, only, published_at, crc FROM reactor_delayed "
        "WHERE due_at <= ? ORDER BY due_at, id LIMIT ?",
        (now, limit),
    ).fetchall()
    conn.executemany(
        "INSERT INTO reactor_events (seq, body, only, published_at, crc) VALUES (?, ?, ?, ?, ?)",
        [(seq, *row[1:]) for seq, row in enumerate(rows, first)],
    )
    conn.executemany("DELETE FROM reactor_delayed WHERE id = ?", [(row[0],) for row in rows])
    return len(rows), _delayed(conn)


def purge(conn: sqlite3.Connection, now: float, retention: float) -> None:
    """Delete (some of) the acknowledged events older than *retention* seconds."""
    conn.execute(
        "DELETE FROM reactor_events WHERE seq IN (SELECT seq FROM reactor_events "
        "WHERE done_at IS NOT NULL AND done_at < ? LIMIT ?)",
        (now - retention, PURGE_CHUNK),
    )


def rollback(conn: sqlite3.Connection) -> None:
    """Roll back the open transaction, if any, without masking the error being handled.

    SQLite ends a transaction by itself after some errors (a full disk), and a ROLLBACK
    can itself fail; the error that caused it is the one to report, and the next BEGIN
    tries again.
    """
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            logger.debug("rollback failed: %s", exc)


def store_consumers(conn: sqlite3.Connection, names: Sequence[str] | None) -> None:
    """Record consumer names (those already recorded are kept), in autocommit."""
    if names is None:
        return
    merged = sorted(set(names) | stored_consumers(conn))
    conn.execute(
        "INSERT OR REPLACE INTO reactor_meta (key, value) VALUES ('consumers', ?)",
        (json.dumps(merged),),
    )


def stored_consumers(conn: sqlite3.Connection) -> set[str]:
    """The consumer names recorded in the file."""
    row = conn.execute("SELECT value FROM reactor_meta WHERE key = 'consumers'").fetchone()
    if row is None:
        return set()  # a file of an earlier release, or no app has run on it yet
    try:
        names = json.loads(row[0])
    except (TypeError, ValueError):
        names = None
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise QueueFileError("the list of consumer names is damaged")
    return set(names)


# -- the rows of events ---------------------------------------------------------------


@functools.cache
def _insert_sql(rows: int) -> str:
    return _INSERT + ", ".join(["(?, ?, ?, ?, ?)"] * rows)


def append(
    conn: sqlite3.Connection, first: int, rows: Iterable[tuple[bytes, str | None, float]]
) -> int:
    """Append events (body, consumer list, publish time), numbered from *first* on, in
    the caller's transaction.

    :return: how many were appended
    """
    seq = first
    values: list[Any] = []
    crc32 = zlib.crc32  # crc() inlined for the common row (no consumer list)
    for body, only, published_at in rows:
        values += (seq, body, only, published_at, crc32(body) if only is None else crc(body, only))
        seq += 1
    step = 5 * _INSERT_CHUNK
    for start in range(0, len(values), step):
        chunk = values[start : start + step]
        conn.execute(_insert_sql(len(chunk) // 5), chunk)
    return seq - first


def crc(body: bytes, only: str | None) -> int:
    """The checksum of an event's row: its body and consumer list."""
    return crc_with(zlib.crc32(body), only)


def crc_with(checksum: int, only: str | None) -> int:
    """Extend the checksum of a body to cover a consumer list."""
    return checksum if only is None else zlib.crc32(only.encode(), checksum)


def _decode_row(
    seq: int,
    body: object,
    only: object,
    attempt: object,
    checksum: object,
    completed: set[str] | None,
) -> Received:
    if not isinstance(body, bytes):
        raise EventFormatError(f"the body is {type(body).__name__}, not bytes")
    if only is not None and not isinstance(only, str):
        raise EventFormatError("the consumer list is not text")
    if crc(body, only) != checksum:
        raise EventFormatError("its checksum does not match its contents")
    if not isinstance(attempt, int) or attempt < 0:
        raise EventFormatError(f"its attempt count {attempt!r} is invalid")
    event = Event.from_json(body)
    consumers = None
    if only is not None:
        names = json.loads(only)
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            raise EventFormatError("the consumer list is not a list of names")
        consumers = frozenset(names)
    return Received(
        event,
        seq,
        attempt=attempt + 1,
        completed=frozenset(completed) if completed else frozenset(),
        only=consumers,
    )


def _runs(seqs: list[int]) -> Iterable[tuple[int, int]]:
    """Group sequence numbers into (first, last) runs of consecutive numbers."""
    ordered = sorted(seqs)
    first = last = ordered[0]
    for seq in ordered[1:]:
        if seq == last + 1:
            last = seq
        elif seq != last:
            yield first, last
            first = last = seq
    yield first, last


class Checkpointer:
    """Copies the write-ahead log into the database file, in a thread beside the writer.

    SQLite lets a second connection checkpoint while the first keeps committing (PASSIVE
    mode never blocks the writer), so the copying and its fsync overlap the commits
    instead of stalling one of them every thousand pages. Started when the journal
    opens, stopped and joined when it closes; a failed checkpoint is logged and tried
    again next time.
    """

    def __init__(self, path: Path, synchronous: str, busy_timeout: float) -> None:
        self._conn = sqlite3.connect(
            path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
        )
        try:
            self._conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
        except BaseException:
            self._conn.close()
            raise
        self._path = path
        self._wake = threading.Event()
        self._stopping = False
        #: Whether a checkpoint was asked for and is not over (a plain flag: the GIL
        #: keeps each read and write of it whole).
        self.busy = False
        self._thread = threading.Thread(
            target=self._run, name=f"reactor checkpoint of {path.name}", daemon=True
        )
        self._thread.start()

    def request(self) -> None:
        """Ask for a checkpoint (requests made while one runs are merged)."""
        self.busy = True
        self._wake.set()

    def stop(self) -> None:
        """Stop the thread after any checkpoint in progress and close its connection."""
        self._stopping = True
        self._wake.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._stopping:
                    return
                try:
                    self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except Exception as exc:  # a full disk: the log is copied when it has room
                    logger.warning("%s: checkpoint failed, tried again later: %s", self._path, exc)
                if not self._wake.is_set():  # else asked again meanwhile: runs again
                    self.busy = False
        finally:
            self._conn.close()
