"""A durable ingestion queue in one SQLite file: at-least-once, with dead letters and replay.

Data flow::

    put() ──► encode (CloudEvents JSON, size limit) ──► open _Work ──┐
    ack() / record_progress() / record_dead_letter() ───────────────┤ group commit:
                                                                    ▼ one thread hop and
                        writer role (one at a time, taken by whoever waits first)  one
                                                                    │ transaction per batch
    get_batch() ◄── read-ahead (decoded events, bounded) ◄──────────┤ fresh events stay
                ◄── backlog pages read from the file ◄──────────────┘ in memory, the rest
                                                                      spills to the file

Every statement runs in an anyio worker thread, one at a time; there is no background
task, so the queue works the same on asyncio and trio and needs no task group: whoever
needs a write (a publisher, the settlement loop, the dispatcher) and finds none running
takes the writer role and commits everything pending at that moment, so commits batch
themselves under load (group commit) and cost one thread hop per batch, not per event.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import itertools
import json
import logging
import os
import sqlite3
import sys
import threading
import zlib
from collections import Counter, deque
from collections.abc import Collection, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from time import time
from typing import IO, Any, Final, Literal
from urllib.parse import unquote, urlsplit

import anyio
import anyio.lowlevel
import attrs

import reactor
from reactor import (
    ConsumerNotFound,
    DeadLetter,
    DeadLetterNotFound,
    Event,
    EventFormatError,
    PayloadTooLargeError,
    QueueFileError,
    QueueFull,
    QueueInUseError,
    QueueStatistics,
    QueueUnavailableError,
    ReactorNotRunning,
)
from reactor.abc import EventQueue, Received

from ._waiting import WaitingPublishers

__all__ = [
    "DEFAULT_CAPACITY",
    "DEFAULT_MAX_EVENT_SIZE",
    "DEFAULT_MAX_REDELIVERIES",
    "SCHEMA_VERSION",
    "SQLiteQueue",
    "StoredDeadLetter",
    "read_dead_letters",
]

logger = logging.getLogger("reactor.queues.sqlite")

#: How many events may wait in a :class:`SQLiteQueue` (on disk) before ``publish()`` waits.
DEFAULT_CAPACITY: Final = 1_000_000
#: The largest encoded event (CloudEvents JSON) accepted by default: 1 MiB.
DEFAULT_MAX_EVENT_SIZE: Final = 1 << 20
#: How many times :class:`SQLiteQueue` hands an unsettled event out again by default
#: before it is dead-lettered instead of handled (see ``max_redeliveries``).
DEFAULT_MAX_REDELIVERIES: Final = 5
#: The version of the file layout this release reads and writes.
SCHEMA_VERSION: Final = 1
#: ``PRAGMA application_id`` of reactor's queue files ("REAC").
APPLICATION_ID: Final = 0x52454143

#: Decoded events kept in memory ahead of the dispatcher; the rest wait on disk only.
READ_AHEAD: Final = 2048
#: Events read from the file per thread hop when the backlog is on disk.
READ_PAGE: Final = 512
#: Events accepted by ``put_nowait()`` and not yet written, before it raises QueueFull.
WRITE_AHEAD: Final = 10_000
#: Seconds between two purges of acknowledged events older than the retention.
PURGE_INTERVAL: Final = 60.0
#: Bytes of events written between two checkpoints of the write-ahead log.
CHECKPOINT_BYTES: Final = 4 << 20
#: Seconds that close() waits for pending writes before giving them up.
CLOSE_TIMEOUT: Final = 30.0
#: Rows deleted per purge statement, so that a purge never holds the writer for long.
PURGE_CHUNK: Final = 10_000
#: Seconds between two tries to read the backlog while the file cannot be written (the
#: first pause; it doubles up to the second).
RETRY_DELAY: Final = (0.05, 2.0)
#: Free bytes below which a failed write is reported as a full disk.
FULL_DISK_BYTES: Final = 1 << 20

#: SQLite's primary result codes that mean "cannot write right now", not a damaged file:
#: full disk (FULL, and IOERR for the files SQLite creates beside the database), another
#: connection's lock (BUSY, LOCKED), a file or directory that cannot be written.
_UNAVAILABLE_CODES: Final = frozenset(
    {
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_CANTOPEN,
    }
)

_SQLITE_HEADER: Final = b"SQLite format 3\x00"

_SCHEMA: Final = (
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
    # A NULL consumer marks a journaled event that could not be decoded.
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

_INSERT: Final = "INSERT INTO reactor_events (seq, body, only, published_at, crc) VALUES "
#: Rows per INSERT statement: one statement (one step of SQLite, one release of the GIL)
#: for many rows, instead of one per row as ``executemany`` does.
_INSERT_CHUNK: Final = 64
_SET_HANDED_OUT: Final = "UPDATE reactor_meta SET value = ? WHERE key = 'handed_out'"
_STORE_LETTER: Final = (
    "INSERT OR REPLACE INTO reactor_dead_letters (source, event_id, consumer, body, "
    "error_type, error, attempts, first_failed_at, last_failed_at, dead_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_DELETE_COPIES: Final = "DELETE FROM reactor_events WHERE seq BETWEEN ? AND ? AND only IS NOT NULL"
_LETTER_COLUMNS: Final = (
    "id, consumer, body, error_type, error, attempts, first_failed_at, last_failed_at, dead_at"
)

Synchronous = Literal["full", "normal"]
Check = Literal["quick", "full", "none"]


@attrs.frozen(kw_only=True)
class StoredDeadLetter:
    """A dead letter as kept in a :class:`SQLiteQueue`'s file.

    :ivar id: the letter's number in the file (for replaying or purging it)
    :ivar event: the event, or ``None`` when the journaled event was damaged and could
        not be decoded (then :attr:`body` holds its bytes and :attr:`consumer` is ``None``)
    :ivar consumer: the consumer that gave up on the event
    :ivar error_type: the qualified class name of the last attempt's exception
    :ivar error: the text of that exception (its ``str()``, or its ``repr()`` when that is
        empty or raises)
    :ivar attempts: how many times the handler was called
    :ivar first_failed_at: wall time of the first failed attempt (aware UTC)
    :ivar last_failed_at: wall time of the last failed attempt (aware UTC)
    :ivar dead_at: when the letter was stored (aware UTC)
    :ivar body: the event as stored (CloudEvents JSON)
    """

    id: int
    event: Event | None
    consumer: str | None
    error_type: str
    error: str
    attempts: int
    first_failed_at: datetime
    last_failed_at: datetime
    dead_at: datetime
    body: bytes = attrs.field(repr=False)


class _Work:
    """Everything waiting for the next commit; whoever commits takes it all."""

    __slots__ = (
        "acks",
        "discards",
        "done",
        "error",
        "finished",
        "inserts",
        "kept",
        "letters",
        "mark",
        "progress",
    )

    def __init__(self) -> None:
        self.inserts: list[tuple[Received, bytes, str | None, float]] = []
        # The inserts of put_nowait(), whose publishers do not wait: when the commit
        # fails, they wait for the next one; the others are their publishers' error.
        self.kept: list[tuple[Received, bytes, str | None, float]] = []
        self.acks: list[Any] = []  # sequence numbers (the tokens of Received)
        self.progress: list[tuple[Any, str]] = []
        self.letters: list[tuple[Any, ...]] = []
        self.discards: list[tuple[str, str, str]] = []
        self.mark = 0  # the hand-out mark to persist: the last seq get_batch() hands out
        self.finished = False
        self.error: BaseException | None = None
        self.done = anyio.Event()

    def __bool__(self) -> bool:
        return bool(
            self.inserts or self.acks or self.progress or self.letters or self.discards or self.mark
        )


class SQLiteQueue(EventQueue):
    """A durable ingestion queue: events survive a crash and are delivered at least once.

    ``Reactor(queue=SQLiteQueue("events.db"))`` journals every published event in one
    SQLite file (WAL mode) before ``publish()`` returns, and removes it only once every
    consumer's delivery of it has settled: succeeded, or failed every attempt and been
    stored as a dead letter in the same file. After a crash or a cut-short stop, the
    next start hands the unfinished events out again, to the consumers that had not
    settled them only, with ``reactor.current_delivery().attempt`` raised.

    Writes are batched: concurrent publishers, acknowledgements and dead letters share
    one transaction and one fsync (group commit), run in a worker thread so the event
    loop never waits on the disk. One process at a time owns the file (a second one gets
    :class:`~reactor.QueueInUseError`); the dead-letter listing reads it while the owner
    runs.

    ``publish_nowait()`` (and ``app.notify()``) accept an event without waiting: it is
    written with the next commit, a few milliseconds later, and is lost if the process
    dies before that. ``await app.publish()`` returns only after the commit.

    When the file cannot be written (a full disk, most often), ``publish()`` raises
    :class:`~reactor.QueueUnavailableError` saying why, and stores nothing; events
    accepted by ``publish_nowait()`` and dead letters wait in memory for the next commit
    that succeeds; the app retries its settlements until they are stored, and keeps
    running. The queue recovers by itself once the disk has room again. Failures are
    logged (once, when they begin, and again when they end) and counted in
    ``app.stats().queue``: ``errors``, and ``last_error`` while it lasts. Opening a file on
    a full disk raises :class:`~reactor.QueueUnavailableError` too, never a damaged-file
    error. A clean close removes the ``<name>-lock`` file beside the database.

    :param path: the database file; created (with its schema) when missing or empty
    :param synchronous: ``"full"`` (default) makes every commit survive a power loss;
        ``"normal"`` survives a crash of the process but may lose the last commits on a
        power loss or OS crash, for several times the throughput
    :param capacity: the most events waiting on disk before ``publish()`` waits
        (default 1,000,000); memory stays bounded whatever the backlog
    :param max_event_size: the largest encoded event accepted, in bytes (default 1 MiB)
    :param retention: keep acknowledged events this long (seconds or a timedelta) for
        :meth:`replay`; ``None`` (default) deletes them at acknowledgement
    :param check: how the file is checked when opened: ``"quick"`` (default, ``PRAGMA
        quick_check``, reads every page), ``"full"`` (``PRAGMA integrity_check``, also
        checks indexes) or ``"none"``
    :param busy_timeout: seconds to wait for another connection's lock (the CLI's)
    :param max_redeliveries: how many times an event may be handed out again after a
        run that did not settle it (a crash, a kill, a cut-short stop) before it is
        dead-lettered, with :class:`~reactor.RedeliveryLimitExceeded`, for the consumers
        that had not settled it, instead of being handled again: the bound on a poison
        event that kills the process every time (default 5, so an event is handled at
        most 6 times, as with Amazon SQS's ``maxReceiveCount``; ``None``: no bound). A
        hand-out is counted in the file before any handler can run; events handed out
        together with the poison event and still unsettled when the process died count
        too, so leave some room above 0.
    """

    needs_ack = True
    stores_immediately = False
    stores_dead_letters = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Synchronous = "full",
        capacity: int = DEFAULT_CAPACITY,
        max_event_size: int = DEFAULT_MAX_EVENT_SIZE,
        retention: float | timedelta | None = None,
        check: Check = "quick",
        busy_timeout: float = 5.0,
        max_redeliveries: int | None = DEFAULT_MAX_REDELIVERIES,
    ) -> None:
        if not isinstance(path, str | os.PathLike) or not os.fspath(path):
            raise TypeError(f"path must be a file path, got {path!r}")
        if synchronous not in ("full", "normal"):
            raise ValueError(f"synchronous must be 'full' or 'normal', got {synchronous!r}")
        _check_positive_int("capacity", capacity)
        _check_positive_int("max_event_size", max_event_size)
        if isinstance(retention, timedelta):
            retention = retention.total_seconds()
        if retention is not None and (
            not isinstance(retention, int | float) or isinstance(retention, bool) or retention < 0
        ):
            raise ValueError(
                f"retention must be seconds >= 0, a timedelta or None, got {retention!r}"
            )
        if check not in ("quick", "full", "none"):
            raise ValueError(f"check must be 'quick', 'full' or 'none', got {check!r}")
        if (
            not isinstance(busy_timeout, int | float)
            or isinstance(busy_timeout, bool)
            or busy_timeout < 0
        ):
            raise ValueError(f"busy_timeout must be seconds >= 0, got {busy_timeout!r}")
        if max_redeliveries is not None and (
            not isinstance(max_redeliveries, int)
            or isinstance(max_redeliveries, bool)
            or max_redeliveries < 0
        ):
            raise ValueError(
                f"max_redeliveries must be an int >= 0 or None, got {max_redeliveries!r}"
            )
        self.max_redeliveries = max_redeliveries
        self._path = Path(path)
        self._synchronous = synchronous
        self._capacity = capacity
        self._max_event_size = max_event_size
        self._retention: float | None = None if retention is None else float(retention)
        self._check = check
        self._busy_timeout = float(busy_timeout)
        self._conn: sqlite3.Connection | None = None
        self._owner_lock: _OwnerLock | None = None
        self._checkpointer: _Checkpointer | None = None
        self._unchecked = 0  # bytes written since the last checkpoint request
        self._limiter: anyio.CapacityLimiter | None = None
        # The writer role: set while one thread hop runs; its event fires when it ends.
        self._busy: anyio.Event | None = None
        self._writing: _Work | None = None  # the work being committed right now
        self._leader: _Work | None = None  # the work whose first waiter commits it next
        self._read_error: QueueFileError | None = None
        self._work = _Work()
        # Decoded events ready for get_batch(), all older than the disk-only range.
        self._ready: deque[Received] = deque()
        self._redeliveries = 0  # how many of them an earlier run handed out already
        # Events with seq in [_cursor, _on_disk_until] wait in the file only.
        self._cursor = 1
        self._on_disk_until = 0
        self._last_seq = 0
        self._handed_out = 0  # the persisted hand-out watermark
        self._given = 0  # the last seq that get_batch() handed out
        self._with_progress: set[Any] = set()
        # Consumer names the app told of (note_consumers), and whether the file has them.
        self._consumers: set[str] = set()
        self._consumers_stored = True
        self._depth = 0
        self._getter: anyio.Event | None = None
        self._waiting = WaitingPublishers()
        self._putters = self._waiting.tickets
        self._closed = True
        self._put_count = 0
        self._get_count = 0
        self._last_purge = 0.0
        self._errors = 0  # failed storage operations
        self._last_error: str | None = None  # set while the file cannot be written
        self._retry_delay = RETRY_DELAY[0]

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SQLiteQueue:
        """Build a queue from a URL: ``sqlite:///events.db`` (relative to the current
        directory) or ``sqlite:////var/lib/app/events.db`` (absolute).

        :param url: the URL
        :param options: keyword arguments of :class:`SQLiteQueue`
        :raises ValueError: not a ``sqlite://`` URL with a path
        """
        parts = urlsplit(url)
        if (
            parts.scheme != "sqlite"
            or parts.netloc
            or not parts.path.startswith("/")
            or parts.query
            or parts.fragment
        ):
            raise ValueError(
                f"expected a URL like sqlite:///events.db or sqlite:////abs/path.db, got {url!r}"
            )
        path = unquote(parts.path[1:])
        if not path:
            raise ValueError(f"the URL {url!r} names no file")
        return cls(path, **options)

    # -- properties -----------------------------------------------------------------

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    @property
    def capacity(self) -> int:
        """The most events that may wait in the queue."""
        return self._capacity

    @property
    def max_event_size(self) -> int:
        """The largest encoded event accepted, in bytes."""
        return self._max_event_size

    @property
    def retention(self) -> float | None:
        """Seconds acknowledged events are kept for :meth:`replay` (``None``: not kept)."""
        return self._retention

    # -- lifecycle ------------------------------------------------------------------

    async def open(self) -> None:
        """Open (or create) the file, check it, and recover what an earlier run left.

        :raises ~reactor.QueueInUseError: another process owns the file
        :raises ~reactor.QueueFileError: the file is not a reactor queue, has a newer
            schema, or is damaged; it is left untouched
        """
        if self._conn is None:
            self._limiter = anyio.CapacityLimiter(1)
            await anyio.to_thread.run_sync(self._open_sync, limiter=self._limiter)
        self._closed = self._waiting.closed = False

    async def close(self) -> None:
        """Write what is pending (acknowledgements, dead letters), then close the file.

        Publishers waiting for room raise :class:`~reactor.ReactorNotRunning`.
        """
        self._closed = True
        self._waiting.close()
        if self._conn is None:
            return
        # Shielded, so a cancelled app still stores the settlements it has; bounded,
        # although a statement already running in the thread always runs to its end.
        with anyio.move_on_after(CLOSE_TIMEOUT, shield=True) as flush:
            while True:
                if self._busy is not None:
                    await self._busy.wait()
                elif self._work:
                    await self._hop()
                    if self._last_error is not None:
                        break  # the file cannot be written now; closing cannot wait for it
                else:
                    break
        if flush.cancelled_caught or self._work:
            logger.error(
                "%s: pending writes were given up at close (%s); %d event(s) accepted by "
                "publish_nowait() are lost, and the events whose acknowledgements were not "
                "written will be delivered again",
                self._path,
                self._last_error or f"not written within {CLOSE_TIMEOUT} s",
                len(self._work.inserts),
            )
            self._work = _Work()
        with anyio.CancelScope(shield=True):
            while self._busy is not None:
                await self._busy.wait()
            assert self._limiter is not None
            await anyio.to_thread.run_sync(self._close_sync, limiter=self._limiter)
        self._ready.clear()
        self._redeliveries = 0
        self._depth = 0

    async def __aenter__(self) -> SQLiteQueue:
        """Open the queue for use without an app (tools, scripts): ``async with queue:``."""
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- publishing -----------------------------------------------------------------

    def _encode(self, event: Event) -> bytes:
        body = event.to_json()
        if len(body) > self._max_event_size:
            raise PayloadTooLargeError(len(body), self._max_event_size)
        return body

    def _check_running(self) -> None:
        if self._conn is None or self._closed:
            raise ReactorNotRunning(f"the queue {self._path} is not open")

    def put_nowait(self, event: Event, *, only: Collection[str] | None = None) -> None:
        """Accept *event* without waiting; it is written with the next commit.

        Unlike :meth:`put`, this returns before the event is on disk: it is lost if the
        process dies within the few milliseconds before that commit.

        :raises ~reactor.QueueFull: the queue is at capacity, publishers are waiting for
            room, or too many accepted events are still waiting to be written
        :raises ~reactor.EventFormatError: the event cannot be encoded as JSON
        :raises ~reactor.PayloadTooLargeError: the encoded event is over the limit
        """
        self._check_running()
        body = self._encode(event)
        if self._depth >= self._capacity or self._putters or len(self._work.inserts) >= WRITE_AHEAD:
            raise QueueFull(
                f"the durable queue is full ({self._capacity} events, or {WRITE_AHEAD} "
                "waiting to be written); use `await app.publish(...)` to wait for room"
            )
        self._work.kept.append(self._accept(event, body, only))
        self._wake_getter()  # the dispatcher commits it when no publisher does

    def _accept(
        self, event: Event, body: bytes, only: Collection[str] | None
    ) -> tuple[Received, bytes, str | None, float]:
        row: tuple[Received, bytes, str | None, float]
        if only is None:
            row = (Received(event), body, None, time())
        else:
            consumers = frozenset(only)
            row = (Received(event, only=consumers), body, json.dumps(sorted(consumers)), time())
        self._work.inserts.append(row)
        self._depth += 1
        self._put_count += 1
        return row

    async def put(self, event: Event, *, only: Collection[str] | None = None) -> None:
        """Store *event* and return once it is committed; wait while the queue is full.

        A publisher cancelled before its batch began to be written stores nothing; one
        cancelled while it is written stores the event (it will be delivered) unless the
        write fails.

        :raises ~reactor.ReactorNotRunning: the queue is closed, or closed while waiting
        :raises ~reactor.EventFormatError: the event cannot be encoded as JSON
        :raises ~reactor.PayloadTooLargeError: the encoded event is over the limit
        :raises ~reactor.QueueUnavailableError: the file cannot be written right now (a
            full disk, a read-only file, another connection's lock); nothing was stored,
            and publishing again later can succeed
        :raises ~reactor.QueueFileError: the file could not be written for another reason
        """
        # The commit below runs shielded: without this, a publishing loop in a cancelled
        # scope would never see its cancellation.
        await anyio.lowlevel.checkpoint_if_cancelled()
        self._check_running()
        body = self._encode(event)
        if self._depth >= self._capacity or self._putters:
            await self._waiting.wait(self._room)
        row = self._accept(event, body, only)
        work = self._work
        try:
            await self._commit(work)
        except BaseException:
            if not work.finished and self._writing is not work:
                # Not written yet: take the event back, the publish did not happen.
                work.inserts.remove(row)
                self._depth -= 1
                self._put_count -= 1
            raise

    async def put_many(self, events: Sequence[Event]) -> None:
        """Store all of *events* in one transaction, or none; do not wait for room.

        :raises ~reactor.QueueFull: less room than events, or publishers waiting for room
        :raises ~reactor.ReactorNotRunning: the queue is closed
        :raises ~reactor.EventFormatError: an event cannot be encoded as JSON
        :raises ~reactor.PayloadTooLargeError: an encoded event is over the limit
        :raises ~reactor.QueueUnavailableError: the file cannot be written right now (a
            full disk; nothing stored)
        :raises ~reactor.QueueFileError: the file could not be written for another reason
            (nothing stored)
        """
        await anyio.lowlevel.checkpoint_if_cancelled()
        self._check_running()
        # Every event is encoded before any is accepted: a bad one refuses the batch.
        bodies = []
        for index, event in enumerate(events):
            try:
                bodies.append(self._encode(event))
            except (EventFormatError, PayloadTooLargeError) as exc:
                if len(events) > 1:
                    exc.add_note(f"event {index} of the batch (id {event.id!r})")
                raise
        if not bodies:
            return
        if self._depth + len(bodies) > self._capacity or self._putters:
            raise QueueFull(
                f"the durable queue has room for {max(self._capacity - self._depth, 0)} "
                f"events, not the {len(bodies)} of this batch; retry later"
            )
        # One work item holds every row, so they are committed in one transaction.
        rows = [self._accept(event, body, None) for event, body in zip(events, bodies, strict=True)]
        work = self._work
        try:
            await self._commit(work)
        except BaseException:
            if not work.finished and self._writing is not work:
                for row in rows:
                    work.inserts.remove(row)
                self._depth -= len(rows)
                self._put_count -= len(rows)
            raise

    def _room(self) -> int:
        return self._capacity - self._depth

    # -- the writer role ------------------------------------------------------------

    async def _commit(self, work: _Work) -> None:
        """Return once *work* is committed, taking the writer role when it is free.

        While a commit runs, the first task to wait for the next one is its leader and
        the others wait for their batch to finish, so a finished commit wakes only the
        tasks it concerns and one leader.
        """
        while not work.finished:
            if self._busy is None:
                await self._hop()
            elif work is self._writing or self._leader is not None:
                await work.done.wait()
            else:
                self._leader = work
                try:
                    await self._busy.wait()
                except BaseException:
                    self._leader = None
                    if not work.finished:  # let a follower lead instead
                        done, work.done = work.done, anyio.Event()
                        done.set()
                    raise
                self._leader = None
        if work.error is not None:
            raise work.error

    async def _hop(self) -> None:
        """Commit everything pending now and, when the dispatcher will soon need it, read
        the next page of the backlog, in one transaction in the worker thread."""
        assert self._busy is None and self._limiter is not None
        busy = self._busy = anyio.Event()
        # Hold the writer role for one turn of the loop first: the publishers that the last
        # commit woke join this batch instead of the next one (else batches alternate
        # between one event and all the others).
        await anyio.lowlevel.cancel_shielded_checkpoint()
        ready = self._ready
        backlog = self._cursor <= self._on_disk_until
        read = min(READ_PAGE, READ_AHEAD - len(ready)) if backlog and len(ready) < READ_PAGE else 0
        work = self._work
        if not work and not read:
            self._busy = None
            busy.set()
            return
        self._work = _Work()
        self._writing = work
        inserts = work.inserts
        # Fresh events stay in memory for the dispatcher while nothing older waits on
        # disk and the read-ahead has room; the rest spill (they are read back later).
        keep = 0 if backlog else min(len(inserts), READ_AHEAD - len(ready))
        with_progress = self._with_progress
        progress_done = [seq for seq in work.acks if seq in with_progress] if with_progress else []
        try:
            with anyio.CancelScope(shield=True):
                page = await anyio.to_thread.run_sync(
                    self._hop_sync,
                    work,
                    keep,
                    progress_done,
                    (self._cursor, self._on_disk_until, read),
                    limiter=self._limiter,
                )
        except Exception as exc:
            # Nothing of the transaction is stored, and nothing of the queue's state moved
            # (_hop_sync restores the sequence). The publishers waiting for this commit
            # get the error, their events not stored; events accepted by put_nowait(),
            # dead letters and discards wait for the next commit; the settlements are
            # the dispatcher's to send again (see EventQueue.settle).
            error = work.error = self._failed(exc)
            if read and not isinstance(error, QueueUnavailableError):
                self._read_error = error
            later = work.kept
            dropped = len(inserts) - len(later)
            self._depth -= dropped
            self._put_count -= dropped
            pending = self._work
            pending.inserts[:0] = later
            pending.kept[:0] = later
            pending.letters[:0] = work.letters
            pending.discards[:0] = work.discards
            if later:
                self._wake_getter()  # the dispatcher writes them when nobody else does
        else:
            self._succeeded()
            if page is not None:
                received, self._cursor, damaged = page
                self._depth -= damaged
                with_progress.update([item.token for item in received if item.completed])
                ready.extend(received)
                self._redeliveries += sum(item.attempt > 1 for item in received)
            with_progress.difference_update(progress_done)
            with_progress.update(seq for seq, _ in work.progress)
            if inserts:
                for index in range(keep):
                    ready.append(inserts[index][0])
                if keep < len(inserts):
                    first = self._last_seq - len(inserts) + 1
                    self._spill(first + keep, self._last_seq)
            if ready:
                self._wake_getter()
        finally:
            work.finished = True
            self._writing = None
            self._busy = None
            busy.set()
            work.done.set()

    def _failed(self, exc: Exception) -> QueueFileError | QueueUnavailableError:
        """Count and log a failed write; return the error to raise for it."""
        error = _storage_error(self._path, exc)
        self._errors += 1
        if self._last_error is None:
            logger.error("%s", error, exc_info=exc)
        else:  # the same condition again: said once, when it began
            logger.debug("%s", error)
        self._last_error = str(error)
        return error

    def _succeeded(self) -> None:
        """Note a successful write: the file can be written again."""
        if self._last_error is not None:
            logger.warning("%s can be written again; the queue has recovered", self._path)
            self._last_error = None
            self._retry_delay = RETRY_DELAY[0]

    # -- handing events to the dispatcher -------------------------------------------

    async def get_batch(self, limit: int) -> Sequence[Received]:
        """Wait for at least one committed event; return up to *limit*, oldest first.

        While the file cannot be written (handing an event out is written first), this
        keeps trying, with pauses growing up to two seconds.

        :raises ~reactor.QueueFileError: the backlog could not be read from the file
        """
        ready = self._ready
        while True:
            if ready:
                count = min(limit, len(ready))
                if self._redeliveries:
                    count = self._alone(count)
                last = _seq(ready[count - 1])
                if last > self._handed_out:
                    # Events of the backlog: count them as handed out, durably, before
                    # any handler can run (a poison event that kills the process must
                    # still count towards max_redeliveries). This joins the next commit.
                    work = self._work
                    work.mark = max(work.mark, last)
                    try:
                        await self._commit(work)
                    except QueueUnavailableError:
                        await self._pause()  # nothing is handed out uncounted
                    continue
                if self._redeliveries and ready[0].attempt > 1:
                    self._redeliveries -= 1
                batch = [ready.popleft() for _ in range(count)]
                self._given = last
                self._depth -= count
                self._get_count += count
                if self._putters:
                    self._waiting.wake(self._capacity - self._depth)
                return batch
            if self._read_error is not None:
                error, self._read_error = self._read_error, None
                raise error
            if self._cursor <= self._on_disk_until or self._work.inserts:
                # A backlog to read, or events from put_nowait() that nobody commits:
                # the next commit, whoever runs it, does it.
                if self._busy is None:
                    await self._hop()
                    if self._last_error is not None:
                        # Reading the backlog is a write transaction (it may move damaged
                        # events to the dead letters), so a file that cannot be written
                        # cannot be read either: try again after a pause.
                        await self._pause()
                else:
                    await self._busy.wait()
            else:
                getter = self._getter = anyio.Event()
                await getter.wait()

    async def _pause(self) -> None:
        """Wait before trying the file again, longer each time while it cannot be written
        (in real time: it is the disk that is waited for)."""
        delay = self._retry_delay
        self._retry_delay = min(delay * 2, RETRY_DELAY[1])
        await anyio.sleep(delay)

    def _alone(self, count: int) -> int:
        """Shorten a batch of *count* events so that an event handed out by an earlier
        run goes out alone.

        Such an event may be the one that ended that run (a poison event): counted and
        handed out on its own, it does not take the events behind it towards their
        ``max_redeliveries`` if it ends this run too.
        """
        for index, item in enumerate(itertools.islice(self._ready, count)):
            if item.attempt > 1:
                return index or 1
        return count

    # -- settlement -----------------------------------------------------------------

    async def settle(
        self, done: Sequence[Received], progress: Sequence[tuple[Received, str]]
    ) -> None:
        """Store acknowledgements and progress in one commit (shared with publishers)."""
        work = self._work
        if progress:
            work.progress.extend([(item.token, consumer) for item, consumer in progress])
        if done:
            work.acks.extend([item.token for item in done])
        if work:
            await self._commit(work)

    async def ack(self, received: Sequence[Received]) -> None:
        """Mark events whose every delivery settled as done (deleted, or kept for replay)."""
        await self.settle(received, ())

    async def record_progress(self, progress: Sequence[tuple[Received, str]]) -> None:
        """Record consumers that settled events whose other consumers have not yet."""
        await self.settle((), progress)

    def record_dead_letter(self, letter: DeadLetter) -> None:
        """Keep *letter* in the file; it is written with the event's settlement."""
        self._work.letters.append(
            (
                letter.event.source,
                letter.event.id,
                letter.consumer,
                letter.event.to_json(),
                _qualified_name(type(letter.error)),
                letter.error_message,  # never raises, whatever the handler raised
                letter.attempts,
                letter.first_failed_at.isoformat(),
                letter.last_failed_at.isoformat(),
                time(),
            )
        )

    def discard_dead_letter(self, letter: DeadLetter) -> None:
        """Remove *letter* from the file; written with the redelivered event's put."""
        self._work.discards.append((letter.event.source, letter.event.id, letter.consumer))

    # -- dead letters, replay ---------------------------------------------------------

    async def dead_letters(
        self, *, consumer: str | None = None, limit: int | None = None
    ) -> list[StoredDeadLetter]:
        """Return the dead letters stored in the file, oldest first.

        :param consumer: only this consumer's letters
        :param limit: at most this many
        """
        self._check_running()
        if limit is not None:
            _check_positive_int("limit", limit)
        if self._work:  # read what was recorded so far, letters not yet written included
            await self._commit(self._work)
        sql, params = _letters_query(consumer, limit)
        rows = await self._run(self._query_sync, sql, params)
        return [_stored_letter(row) for row in rows]

    async def replay_dead_letters(
        self, ids: Iterable[int] | None = None, *, consumer: str | None = None
    ) -> int:
        """Publish stored dead letters' events again, each to its consumer only, and
        remove the letters, in one transaction.

        Such a redelivery is not a new publication: once settled it is not kept by the
        retention, and :meth:`replay` never replays it (it replays the original event).
        Letters of damaged events (no consumer) cannot be replayed and stay.

        :param ids: the letters to replay (default: all, or all of *consumer*); every id
            must name a letter that can be replayed
        :param consumer: only this consumer's letters
        :return: how many events were published again
        :raises ~reactor.DeadLetterNotFound: an id names no letter, or the letter of a
            damaged event; nothing was replayed
        :raises ~reactor.ConsumerNotFound: *consumer* was never seen in this file
        """
        self._check_running()
        where, params = _letter_filter(ids, consumer)
        return await self._run_on_journal(
            self._replay_letters_sync, where, params, _id_set(ids), consumer
        )

    async def purge_dead_letters(
        self, ids: Iterable[int] | None = None, *, consumer: str | None = None
    ) -> int:
        """Delete stored dead letters.

        :param ids: the letters to delete (default: all, or all of *consumer*); every id
            must name a letter
        :param consumer: only this consumer's letters
        :return: how many letters were deleted
        :raises ~reactor.DeadLetterNotFound: an id names no letter; nothing was deleted
        :raises ~reactor.ConsumerNotFound: *consumer* was never seen in this file
        """
        self._check_running()
        where, params = _letter_filter(ids, consumer, include_damaged=True)
        count: int = await self._run(
            self._purge_letters_sync, where, params, _id_set(ids), consumer
        )
        return count

    async def replay(
        self,
        since: datetime,
        *,
        until: datetime | None = None,
        consumers: Collection[str] | None = None,
    ) -> int:
        """Publish again the events published in ``[since, until)`` that were
        acknowledged and are still kept by the retention, in the order they were
        published, with their ids.

        Only publications are replayed, each once: never a replay or a redelivery (of a
        dead letter, or by an earlier replay to chosen consumers), which is not kept as
        an event of its own. A replay to every consumer takes the event back into the
        queue, where it is kept again once settled; a replay to chosen *consumers*
        sends them a copy, which is not kept.

        Each event goes to the consumers it was meant for: every subscription whose
        pattern and filter match it when it is delivered, or only those of
        *consumers* among them. Events not yet acknowledged are left alone (they are
        still to be delivered).

        :param since: replay events published at or after this time (aware)
        :param until: ... and before this time (default: no end)
        :param consumers: the consumers to deliver them to (default: every match);
            each must be a consumer that this file has seen
        :return: how many events were published again
        :raises ValueError: a naive time, or an empty *consumers*
        :raises ~reactor.ConsumerNotFound: a name in *consumers* was never seen in this
            file (a consumer that has run on it, or the app's subscriptions when it
            opened the queue); nothing was replayed
        """
        self._check_running()
        start = _timestamp("since", since)
        end = None if until is None else _timestamp("until", until)
        names = None
        if consumers is not None:
            if isinstance(consumers, str) or not consumers:
                raise ValueError("consumers must be a non-empty collection of names, or None")
            names = sorted(set(consumers))
        return await self._run_on_journal(self._replay_sync, start, end, names)

    def note_consumers(self, names: Collection[str]) -> None:
        """Remember the app's consumer names, recorded in the file (see :meth:`replay`)."""
        new = set(names) - self._consumers
        if new:
            self._consumers.update(new)
            self._consumers_stored = False

    async def _run(self, func: Any, *args: Any) -> Any:
        """Run *func* in the worker thread, holding the writer role."""
        while self._busy is not None:
            await self._busy.wait()
        assert self._limiter is not None
        busy = self._busy = anyio.Event()
        try:
            with anyio.CancelScope(shield=True):
                result = await anyio.to_thread.run_sync(func, *args, limiter=self._limiter)
        except sqlite3.Error as exc:
            raise self._failed(exc) from exc
        else:
            return result
        finally:
            self._busy = None
            busy.set()

    def _wake_getter(self) -> None:
        """Wake the dispatcher if it waits in :meth:`get_batch`."""
        if self._getter is not None:
            self._getter.set()
            self._getter = None

    def _spill(self, first: int, last: int) -> None:
        """Note that the events *first* to *last*, just written, wait on disk only.

        They are newer than everything in the read-ahead; when no older event waits on
        disk, reading resumes at *first* (everything before it was handed out already).
        """
        if self._cursor > self._on_disk_until:
            self._cursor = first
        self._on_disk_until = last

    async def _run_on_journal(self, func: Any, *args: Any) -> int:
        """Run *func*, which appends events to the journal and returns how many."""
        count: int = await self._run(func, *args)
        if count:
            self._spill(self._last_seq - count + 1, self._last_seq)
            self._depth += count
            self._put_count += count
            self._wake_getter()
        return count

    # -- statistics -----------------------------------------------------------------

    def statistics(self) -> QueueStatistics:
        """Return a snapshot of the queue's depth, capacity and counters."""
        return QueueStatistics(
            depth=self._depth,
            capacity=self._capacity,
            put_count=self._put_count,
            get_count=self._get_count,
            waiting_publishers=len(self._putters),
            errors=self._errors,
            last_error=self._last_error,
        )

    def __repr__(self) -> str:
        return f"SQLiteQueue({str(self._path)!r}, synchronous={self._synchronous!r})"

    # -- in the worker thread ---------------------------------------------------------

    def _open_sync(self) -> None:
        path = self._path
        _check_header(path, missing_ok=True)
        if not path.parent.is_dir():
            raise QueueFileError(f"the directory of {path} does not exist")
        owner_lock = _OwnerLock.take(path)
        try:
            conn = _connect(path, self._busy_timeout)
        except BaseException:
            owner_lock.release()
            raise
        try:
            self._prepare(conn)
            self._recover(conn)
            self._store_consumers_sync(conn)
        except BaseException as exc:
            conn.close()
            owner_lock.release()
            if isinstance(exc, sqlite3.Error | OSError) and _unavailable_cause(path, exc):
                # A full disk is not a damaged file: say what it is (and that it may pass).
                raise _storage_error(path, exc, opening=True) from exc
            if isinstance(exc, sqlite3.DatabaseError | UnicodeDecodeError):
                # A damaged schema can make even SQLite's error message undecodable.
                raise QueueFileError(f"{path} cannot be used as a reactor queue: {exc}") from exc
            raise
        self._conn = conn
        self._owner_lock = owner_lock
        self._unchecked = 0
        self._checkpointer = _Checkpointer(path, self._synchronous, self._busy_timeout)

    def _prepare(self, conn: sqlite3.Connection) -> None:
        """Check that the file is a queue of this schema, or create the schema."""
        path = self._path
        if _identify(conn, path):
            _set_journal_mode(conn, path)
            conn.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO reactor_meta (key, value) VALUES "
                "('handed_out', 0), ('created_at', ?), ('writer', ?)",
                (datetime.now(UTC).isoformat(), f"reactor {_version()}"),
            )
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        else:
            _set_journal_mode(conn, path)
        conn.execute(f"PRAGMA synchronous = {self._synchronous.upper()}")
        # The write-ahead log is copied into the file by a thread of its own (see
        # _Checkpointer), not inside the commits that publishers wait for.
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        if self._check != "none":
            pragma = "quick_check" if self._check == "quick" else "integrity_check"
            problems = [row[0] for row in conn.execute(f"PRAGMA {pragma}(5)")]
            if problems == ["ok"]:
                problems = _schema_problems(conn)
            if problems:
                raise QueueFileError(
                    f"{path} is damaged ({pragma}: {'; '.join(problems)}); it was left "
                    "as it is: move it aside and keep it for recovery"
                )

    def _recover(self, conn: sqlite3.Connection) -> None:
        """Count what an earlier run left and raise the attempt of what it handed out."""
        handed_out = conn.execute(
            "SELECT value FROM reactor_meta WHERE key = 'handed_out'"
        ).fetchone()
        if handed_out is None or not isinstance(handed_out[0], int):
            raise QueueFileError(f"{self._path} lacks its hand-out mark; the file is damaged")
        conn.execute("BEGIN IMMEDIATE")
        try:
            if handed_out[0]:
                conn.execute(
                    "UPDATE reactor_events SET attempt = attempt + 1 "
                    "WHERE seq <= ? AND done_at IS NULL",
                    (handed_out[0],),
                )
                conn.execute(_SET_HANDED_OUT, (0,))
            if self._retention is not None:
                self._purge_sync(conn, time())
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise
        self._handed_out = self._given = 0
        self._last_seq = conn.execute("SELECT max(seq) FROM reactor_events").fetchone()[0] or 0
        self._depth = conn.execute(
            "SELECT count(*) FROM reactor_events WHERE done_at IS NULL"
        ).fetchone()[0]
        first = conn.execute(
            "SELECT min(seq) FROM reactor_events WHERE done_at IS NULL"
        ).fetchone()[0]
        # Everything left is on disk only: read it back from its first event on.
        self._on_disk_until = self._last_seq
        self._cursor = self._last_seq + 1 if first is None else first
        self._ready.clear()
        self._redeliveries = 0
        self._with_progress.clear()
        self._work = _Work()
        if self._depth:
            logger.info(
                "%s: %d event(s) left by an earlier run will be delivered again",
                self._path,
                self._depth,
            )

    def _close_sync(self) -> None:
        checkpointer, self._checkpointer = self._checkpointer, None
        if checkpointer is not None:
            checkpointer.stop()
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                self._store_consumers_sync(conn)  # those of subscriptions added meanwhile
                if self._handed_out > self._given:
                    # Fresh events that were read ahead but never handed out: not
                    # counted as handed out at the next start.
                    conn.execute(_SET_HANDED_OUT, (self._given,))
            except (sqlite3.Error, QueueFileError) as exc:
                logger.warning("%s: could not write its last marks: %s", self._path, exc)
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                pass  # another reader holds the WAL; SQLite checkpoints it later
            finally:
                conn.close()
        owner_lock, self._owner_lock = self._owner_lock, None
        if owner_lock is not None:
            owner_lock.release()

    def _hop_sync(
        self,
        work: _Work,
        keep: int,
        progress_done: list[Any],
        read: tuple[int, int, int],
    ) -> tuple[list[Received], int, int] | None:
        """Write *work* and read a page of the backlog (when ``read[2]``), in one transaction.

        :return: the page read (events, the next cursor, how many were damaged), or None
        """
        conn = self._conn
        assert conn is not None
        last_seq = self._last_seq
        _rollback(conn)  # what a failed ROLLBACK may have left open
        conn.execute("BEGIN IMMEDIATE")
        try:
            if work:
                self._write_rows(conn, work, keep, progress_done)
            page = self._read_rows(conn, *read) if read[2] else None
            conn.execute("COMMIT")
        except BaseException:
            self._last_seq = last_seq
            _rollback(conn)
            raise
        if work.inserts:
            self._unchecked += sum(len(insert[1]) for insert in work.inserts)
            if self._unchecked >= CHECKPOINT_BYTES and self._checkpointer is not None:
                self._unchecked = 0
                self._checkpointer.request()
        # The marks written in the transaction, now that it is committed.
        if keep:
            self._handed_out = max(self._handed_out, last_seq + keep)
        self._handed_out = max(self._handed_out, work.mark)
        return page

    def _write_rows(
        self, conn: sqlite3.Connection, work: _Work, keep: int, progress_done: list[Any]
    ) -> None:
        # The last event handed out from memory: fresh events kept for the dispatcher
        # count as handed out from now on (there is no commit between their read-ahead
        # and get_batch()); events of the backlog count once get_batch() hands them out.
        mark = max(self._last_seq + keep if keep else 0, work.mark)
        if work.inserts:
            first = self._append_sync(conn, [insert[1:] for insert in work.inserts])
            for seq, insert in enumerate(work.inserts, first):
                insert[0].token = seq
        if mark > self._handed_out:
            # Persisted before the events can reach a handler: a crash after it counts
            # them as handed out (their attempt is raised at the next start), never the
            # other way round.
            conn.execute(_SET_HANDED_OUT, (mark,))
        if work.letters:
            conn.executemany(_STORE_LETTER, work.letters)
        if work.discards:
            conn.executemany(
                "DELETE FROM reactor_dead_letters "
                "WHERE source = ? AND event_id = ? AND consumer = ?",
                work.discards,
            )
        if work.progress:
            conn.executemany(
                "INSERT OR IGNORE INTO reactor_progress (seq, consumer) VALUES (?, ?)",
                work.progress,
            )
        if work.acks:
            now = time()
            if self._retention is None:
                for first, last in _runs(work.acks):
                    conn.execute(
                        "DELETE FROM reactor_events WHERE seq BETWEEN ? AND ?", (first, last)
                    )
            else:
                # Only publications are kept: a replay or redelivery to chosen consumers
                # (a row with a consumer list) is a copy of an event kept already, or of
                # a dead letter's event, not an event of its own.
                for first, last in _runs(work.acks):
                    conn.execute(_DELETE_COPIES, (first, last))
                conn.executemany(
                    "UPDATE reactor_events SET done_at = ? WHERE seq = ?",
                    [(now, seq_) for seq_ in work.acks],
                )
                if now - self._last_purge >= PURGE_INTERVAL:
                    self._purge_sync(conn, now)
            if progress_done:
                conn.executemany(
                    "DELETE FROM reactor_progress WHERE seq = ?",
                    [(seq_,) for seq_ in progress_done],
                )

    def _purge_sync(self, conn: sqlite3.Connection, now: float) -> None:
        assert self._retention is not None
        self._last_purge = now
        conn.execute(
            "DELETE FROM reactor_events WHERE seq IN (SELECT seq FROM reactor_events "
            "WHERE done_at IS NOT NULL AND done_at < ? LIMIT ?)",
            (now - self._retention, PURGE_CHUNK),
        )

    def _read_rows(
        self, conn: sqlite3.Connection, cursor: int, upto: int, limit: int
    ) -> tuple[list[Received], int, int]:
        """Read the next page of the backlog; move damaged events to the dead letters.

        :return: the events, the next cursor, how many were damaged
        """
        rows = conn.execute(
            "SELECT seq, body, only, attempt, crc FROM reactor_events "
            "WHERE seq >= ? AND seq <= ? AND done_at IS NULL ORDER BY seq LIMIT ?",
            (cursor, upto, limit),
        ).fetchall()
        if len(rows) < limit:
            next_cursor = upto + 1
        else:
            next_cursor = rows[-1][0] + 1
        if not rows:
            return [], next_cursor, 0
        first, last = rows[0][0], rows[-1][0]
        completed: dict[int, set[str]] = {}
        for seq, consumer in conn.execute(
            "SELECT seq, consumer FROM reactor_progress WHERE seq BETWEEN ? AND ?",
            (first, last),
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
        # Not counted as handed out yet: get_batch() does that for the events it hands
        # out, so that a crash counts only those, not the whole read-ahead.
        return received, next_cursor, len(damaged)

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
            _STORE_LETTER,
            (
                None,
                None,
                None,
                body if isinstance(body, bytes) else str(body).encode(),
                "reactor.EventFormatError",
                f"journaled event #{seq} is damaged: {why}",
                0,
                now.isoformat(),
                now.isoformat(),
                now.timestamp(),
            ),
        )
        conn.execute("DELETE FROM reactor_events WHERE seq = ?", (seq,))
        conn.execute("DELETE FROM reactor_progress WHERE seq = ?", (seq,))

    def _query_sync(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        conn = self._conn
        if conn is None:
            raise ReactorNotRunning(f"the queue {self._path} is not open")
        return conn.execute(sql, params).fetchall()

    def _append_sync(
        self, conn: sqlite3.Connection, rows: Iterable[tuple[bytes, str | None, float]]
    ) -> int:
        """Append events (body, consumers, publish time) to the journal, numbered after
        the last one, inside the caller's transaction (which restores the count if it
        rolls back).

        :return: the number of the first event appended
        """
        first = seq = self._last_seq + 1
        values: list[Any] = []
        for body, only, published_at in rows:
            values += (seq, body, only, published_at, _crc(body, only))
            seq += 1
        _insert(conn, values)
        self._last_seq = seq - 1
        return first

    def _in_transaction(self, func: Any, *args: Any) -> int:
        conn = self._conn
        if conn is None:
            raise ReactorNotRunning(f"the queue {self._path} is not open")
        last_seq = self._last_seq
        _rollback(conn)  # what a failed ROLLBACK may have left open
        conn.execute("BEGIN IMMEDIATE")
        try:
            count: int = func(conn, *args)
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            self._last_seq = last_seq
            raise
        return count

    def _replay_letters_sync(
        self, where: str, params: list[Any], ids: set[int] | None, consumer: str | None
    ) -> int:
        def replay(conn: sqlite3.Connection) -> int:
            if consumer is not None:
                self._check_consumers_sync(conn, [consumer])
            rows = conn.execute(
                f"SELECT id, body, consumer FROM reactor_dead_letters WHERE {where} "
                "AND consumer IS NOT NULL ORDER BY id",
                params,
            ).fetchall()
            if ids is not None:
                _check_ids(ids, {row[0] for row in rows}, replayable=True)
            now = time()
            self._append_sync(
                conn, ((body, json.dumps([consumer]), now) for _, body, consumer in rows)
            )
            conn.executemany(
                "DELETE FROM reactor_dead_letters WHERE id = ?", [(row[0],) for row in rows]
            )
            return len(rows)

        return self._in_transaction(replay)

    def _purge_letters_sync(
        self, where: str, params: list[Any], ids: set[int] | None, consumer: str | None
    ) -> int:
        def purge(conn: sqlite3.Connection) -> int:
            if consumer is not None:
                self._check_consumers_sync(conn, [consumer])
            if ids is not None:
                found = conn.execute(
                    f"SELECT id FROM reactor_dead_letters WHERE {where}", params
                ).fetchall()
                _check_ids(ids, {row[0] for row in found}, replayable=False)
            return conn.execute(f"DELETE FROM reactor_dead_letters WHERE {where}", params).rowcount

        return self._in_transaction(purge)

    def _replay_sync(self, start: float, end: float | None, names: list[str] | None) -> int:
        def replay(conn: sqlite3.Connection) -> int:
            only = None
            if names is not None:
                self._check_consumers_sync(conn, names)
                only = json.dumps(names)
            # Kept publications only: a row with a consumer list is a redelivery (kept
            # by files of earlier releases only).
            where = "seq <= ? AND done_at IS NOT NULL AND only IS NULL AND published_at >= ?"
            params: list[Any] = [self._last_seq, start]
            if end is not None:
                where += " AND published_at < ?"
                params.append(end)
            # In publication order, numbered after the last event. The checksum of a
            # publication covers its body only, so a copy for chosen consumers extends
            # the stored one: damage to the original still shows in the copy.
            conn.create_function("reactor_crc_with", 2, _crc_with, deterministic=True)
            count: int = conn.execute(
                "INSERT INTO reactor_events (seq, body, only, published_at, crc) "
                "SELECT ? + row_number() OVER (ORDER BY published_at, seq), body, ?, "
                f"published_at, reactor_crc_with(crc, ?) FROM reactor_events WHERE {where}",
                [self._last_seq, only, only, *params],
            ).rowcount
            if only is None:
                # Replayed to every consumer: the event itself goes back into the queue,
                # not a copy of it (kept again once settled, as one event).
                conn.execute(f"DELETE FROM reactor_events WHERE {where}", params)
            self._last_seq += count
            return count

        return self._in_transaction(replay)

    def _check_consumers_sync(self, conn: sqlite3.Connection, names: Iterable[str]) -> None:
        """Raise :class:`~reactor.ConsumerNotFound` for a name this file never saw."""
        known = self._known_consumers_sync(conn)
        unknown = sorted(set(names) - known)
        if unknown:
            listed = ", ".join(sorted(known)) if known else "none yet"
            raise ConsumerNotFound(
                f"{self._path} has never seen a consumer named "
                f"{', '.join(map(repr, unknown))}; the consumers it knows: {listed}"
            )

    def _known_consumers_sync(self, conn: sqlite3.Connection) -> set[str]:
        known = set(self._consumers)
        known.update(_stored_consumers(conn))
        known.update(
            name
            for (name,) in conn.execute(
                "SELECT DISTINCT consumer FROM reactor_dead_letters WHERE consumer IS NOT NULL"
            )
        )
        known.update(
            name for (name,) in conn.execute("SELECT DISTINCT consumer FROM reactor_progress")
        )
        return known

    def _store_consumers_sync(self, conn: sqlite3.Connection) -> None:
        """Record the consumer names noted since the last time, in autocommit."""
        if self._consumers_stored:
            return
        names = sorted(self._consumers | _stored_consumers(conn))
        conn.execute(
            "INSERT OR REPLACE INTO reactor_meta (key, value) VALUES ('consumers', ?)",
            (json.dumps(names),),
        )
        self._consumers_stored = True


# -- helpers --------------------------------------------------------------------------


@functools.cache
def _insert_sql(rows: int) -> str:
    return _INSERT + ", ".join(["(?, ?, ?, ?, ?)"] * rows)


def _insert(conn: sqlite3.Connection, values: list[Any]) -> None:
    """Insert event rows given as one flat list of their five columns."""
    step = 5 * _INSERT_CHUNK
    for start in range(0, len(values), step):
        chunk = values[start : start + step]
        conn.execute(_insert_sql(len(chunk) // 5), chunk)


def _rollback(conn: sqlite3.Connection) -> None:
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


def _check_positive_int(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")


def _timestamp(name: str, value: object) -> float:
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime (with a time zone), got {value!r}")
    return value.timestamp()


def _seq(received: Received) -> int:
    seq = received.token
    assert isinstance(seq, int)
    return seq


def _crc(body: bytes, only: str | None) -> int:
    return _crc_with(zlib.crc32(body), only)


def _crc_with(crc: int, only: str | None) -> int:
    """Extend the checksum of a body to cover a consumer list."""
    return crc if only is None else zlib.crc32(only.encode(), crc)


def _id_set(ids: Iterable[int] | None) -> set[int] | None:
    return None if ids is None else set(ids)


def _check_ids(wanted: set[int], found: set[int], *, replayable: bool) -> None:
    """Raise :class:`~reactor.DeadLetterNotFound` when some of *wanted* were not found."""
    missing = sorted(wanted - found)
    if missing:
        what = "dead letter that can be replayed" if replayable else "dead letter"
        why = " (no such id, or the letter of a damaged event, which can only be purged)"
        raise DeadLetterNotFound(
            f"no {what} has the id{'s' if len(missing) > 1 else ''} {', '.join(map(str, missing))}"
            f"{why if replayable else ''}; nothing was changed",
            missing,
        )


def _stored_consumers(conn: sqlite3.Connection) -> set[str]:
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


def _decode_row(
    seq: int,
    body: object,
    only: object,
    attempt: object,
    crc: object,
    completed: set[str] | None,
) -> Received:
    if not isinstance(body, bytes):
        raise EventFormatError(f"the body is {type(body).__name__}, not bytes")
    if only is not None and not isinstance(only, str):
        raise EventFormatError("the consumer list is not text")
    if _crc(body, only) != crc:
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


def _letter_filter(
    ids: Iterable[int] | None, consumer: str | None, *, include_damaged: bool = False
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if ids is not None:
        numbers = list(ids)
        if not all(isinstance(n, int) and not isinstance(n, bool) for n in numbers):
            raise TypeError(f"ids must be ints, got {numbers!r}")
        if not numbers:
            return "0", []
        clauses.append(f"id IN ({', '.join('?' * len(numbers))})")
        params.extend(numbers)
    if consumer is not None:
        clauses.append("consumer = ?")
        params.append(consumer)
    if not clauses:
        return ("1" if include_damaged else "consumer IS NOT NULL"), params
    return " AND ".join(clauses), params


def _stored_letter(row: tuple[Any, ...]) -> StoredDeadLetter:
    id_, consumer, body, error_type, error, attempts, first, last, dead_at = row
    event: Event | None
    try:
        event = Event.from_json(body) if consumer is not None else None
    except EventFormatError:
        event = None
    return StoredDeadLetter(
        id=id_,
        event=event,
        consumer=consumer,
        error_type=error_type,
        error=error,
        attempts=attempts,
        first_failed_at=datetime.fromisoformat(first),
        last_failed_at=datetime.fromisoformat(last),
        dead_at=datetime.fromtimestamp(dead_at, UTC),
        body=bytes(body),
    )


def _qualified_name(cls: type) -> str:
    module = cls.__module__
    if module == "builtins":
        return cls.__qualname__
    if module.startswith("reactor._"):
        if getattr(reactor, cls.__qualname__, None) is cls:
            return f"reactor.{cls.__qualname__}"  # the public name, not the private module
    return f"{module}.{cls.__qualname__}"


def _version() -> str:
    from reactor import __version__

    return __version__


def _storage_error(
    path: Path, exc: BaseException, *, opening: bool = False
) -> QueueFileError | QueueUnavailableError:
    """Describe a failure to use *path*: what cannot be written right now (a full disk,
    a read-only file, another connection's lock) is :class:`~reactor.QueueUnavailableError`,
    anything else :class:`~reactor.QueueFileError`, either way with the real cause."""
    error: QueueFileError | QueueUnavailableError
    why = _unavailable_cause(path, exc)
    if why is None:
        error = QueueFileError(f"could not use {path}: {exc}")
    elif opening:
        error = QueueUnavailableError(
            f"cannot open {path} right now: {why} ({exc}); the file was left as it is "
            "and can be opened once this is resolved"
        )
    else:
        error = QueueUnavailableError(
            f"cannot write {path} right now: {why} ({exc}); nothing of this write was "
            "stored, and the queue tries again"
        )
    error.__cause__ = exc
    return error


def _unavailable_cause(path: Path, exc: BaseException) -> str | None:
    """Say why *exc* means the file cannot be written right now, or return ``None``."""
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        if not isinstance(code, int) or code & 0xFF not in _UNAVAILABLE_CODES:
            return None
        code &= 0xFF
    elif isinstance(exc, OSError):
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return "the disk is full"
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            code = sqlite3.SQLITE_READONLY
        elif exc.errno == errno.EIO:
            code = sqlite3.SQLITE_IOERR
        else:
            return None
    else:
        return None
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return "another connection holds its write lock"
    # SQLite reports a full disk as FULL when the log cannot grow, but as an I/O error
    # when the files beside the database cannot be created or sized: ask the disk.
    try:
        stat = os.statvfs(path.parent)
    except (OSError, AttributeError):  # AttributeError: no statvfs on Windows
        free = None
    else:
        free = stat.f_bavail * stat.f_frsize
    if code == sqlite3.SQLITE_FULL or (free is not None and free < FULL_DISK_BYTES):
        return "the disk is full" if free is None else f"the disk is full ({free} bytes free)"
    if code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN):
        return "the file or its directory cannot be written"
    return "the disk reported an I/O error"


def _check_header(path: Path, *, missing_ok: bool) -> bool:
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


_MASTER_COLUMNS: Final = "type, name, tbl_name, sql"


@functools.cache
def _expected_master() -> Counter[tuple[Any, ...]]:
    """The rows of ``sqlite_master`` (but their page numbers) that the schema creates."""
    conn = sqlite3.connect(":memory:")
    try:
        for statement in _SCHEMA:
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
    if found != _expected_master():
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


def _identify(conn: sqlite3.Connection, path: Path) -> bool:
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


def _connect(path: Path, busy_timeout: float) -> sqlite3.Connection:
    try:
        return sqlite3.connect(
            path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
        )
    except sqlite3.Error as exc:
        raise QueueFileError(f"cannot open {path}: {exc}") from exc


def read_dead_letters(
    path: str | os.PathLike[str], *, consumer: str | None = None, limit: int | None = None
) -> list[StoredDeadLetter]:
    """Read the dead letters of a queue file without owning it, oldest first.

    Works while an app runs on the file (its owner lock is not taken) and never creates
    or changes the file. It blocks: from async code, run it in a worker thread
    (``await anyio.to_thread.run_sync(...)``). ``reactor dead-letters list`` uses it.

    :param path: the queue file
    :param consumer: only this consumer's letters
    :param limit: at most this many
    :raises ~reactor.QueueFileError: the file is missing, not a reactor queue of a schema
        this release reads, or cannot be read
    :raises ~reactor.QueueUnavailableError: it cannot be read right now (a full disk)
    """
    path = Path(path)
    if limit is not None:
        _check_positive_int("limit", limit)
    _check_header(path, missing_ok=False)
    try:
        conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, timeout=5.0)
    except sqlite3.Error as exc:
        raise QueueFileError(f"cannot open {path}: {exc}") from exc
    try:
        if _identify(conn, path):
            raise QueueFileError(f"{path} is an empty SQLite database, not a reactor queue")
        sql, params = _letters_query(consumer, limit)
        return [_stored_letter(row) for row in conn.execute(sql, params)]
    except (sqlite3.Error, ValueError, TypeError) as exc:
        # Reading a file in WAL mode may need to create its side files: a full disk says
        # so, rather than pass for a damaged file.
        why = _unavailable_cause(path, exc)
        if why is not None:
            raise QueueUnavailableError(
                f"cannot read the dead letters of {path} right now: {why} ({exc})"
            ) from exc
        raise QueueFileError(f"cannot read the dead letters of {path}: {exc}") from exc
    finally:
        conn.close()


def _letters_query(consumer: str | None, limit: int | None) -> tuple[str, list[Any]]:
    sql = f"SELECT {_LETTER_COLUMNS} FROM reactor_dead_letters"
    params: list[Any] = []
    if consumer is not None:
        sql += " WHERE consumer = ?"
        params.append(consumer)
    sql += " ORDER BY id"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    return sql, params


def _set_journal_mode(conn: sqlite3.Connection, path: Path) -> None:
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise QueueFileError(f"{path} cannot use write-ahead logging (journal mode {mode!r})")


class _Checkpointer:
    """Copies the write-ahead log into the database file, in a thread beside the writer.

    SQLite lets a second connection checkpoint while the first keeps committing (PASSIVE
    mode never blocks the writer), so the copying and its fsync overlap the commits
    instead of stalling one of them every thousand pages. Started by ``open()``, stopped
    and joined by ``close()``; a failed checkpoint is logged and tried again next time.
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
        self._thread = threading.Thread(
            target=self._run, name=f"reactor checkpoint of {path.name}", daemon=True
        )
        self._thread.start()

    def request(self) -> None:
        """Ask for a checkpoint (requests made while one runs are merged)."""
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
        finally:
            self._conn.close()


# -- one owner per file -----------------------------------------------------------------

_held: set[str] = set()
_held_lock = threading.Lock()


class _OwnerLock:
    """The owner lock of a queue file: an OS lock on a file beside it (``<name>-lock``).

    The operating system releases it when the process dies, however it dies. Within one
    process a second queue on the same file is refused too.

    A clean close removes the lock file while still holding its lock, so a process that
    opened the old file meanwhile holds a lock on a file that no longer has the name: the
    taker checks, once it holds a lock, that the name still leads to the file it locked,
    and tries again if not. So two processes never both own the queue file.
    """

    def __init__(self, file: IO[str], key: str, lock_path: Path) -> None:
        self.file = file
        self.key = key
        self.lock_path = lock_path

    @classmethod
    def take(cls, path: Path) -> _OwnerLock:
        """Take the lock of *path* or raise :class:`~reactor.QueueInUseError`."""
        key = os.path.realpath(path)
        lock_path = path.with_name(path.name + "-lock")
        with _held_lock:
            if key in _held:
                raise QueueInUseError(f"{path} is already open as a queue in this process")
            while True:
                try:
                    file = open(lock_path, "a+", encoding="utf-8")  # held until release()
                except OSError as exc:
                    raise _lock_file_error(lock_path, exc) from exc
                try:
                    _os_lock(file)
                except OSError:
                    file.seek(0)
                    holder = file.read().strip() or "unknown"
                    file.close()
                    raise QueueInUseError(
                        f"{path} is in use by another process ({holder}); one process at "
                        "a time owns a queue file"
                    ) from None
                if _names(lock_path, file):
                    break
                file.close()  # removed by its owner's close() meanwhile: take the new one
            _held.add(key)
        try:
            # Who holds it, for the error of the next taker; worth nothing to the lock
            # itself, so a full disk does not stop the queue from opening.
            fd = file.fileno()
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)
        except OSError:
            pass
        return cls(file, key, lock_path)

    def release(self) -> None:
        """Remove the lock file, then give the lock up (closing the descriptor releases
        the OS lock)."""
        with _held_lock:
            _held.discard(self.key)
            if sys.platform != "win32" and _names(self.lock_path, self.file):
                # Removed while held: see the class docstring. (Windows cannot remove an
                # open file; the lock file stays there, which is harmless.)
                with contextlib.suppress(OSError):
                    self.lock_path.unlink()
            self.file.close()


def _names(lock_path: Path, file: IO[str]) -> bool:
    """Whether *lock_path* still names the open *file* (not removed, not replaced)."""
    try:
        named = os.stat(lock_path)
    except OSError:
        return False
    held = os.fstat(file.fileno())
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


def _lock_file_error(lock_path: Path, exc: OSError) -> QueueFileError | QueueUnavailableError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return QueueUnavailableError(
            f"cannot create the lock file {lock_path}: the disk is full ({exc})"
        )
    return QueueFileError(f"cannot create the lock file {lock_path}: {exc}")


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _os_lock(file: IO[str]) -> None:
        file.seek(0)
        msvcrt.locking(file.fileno(), msvcrt.LK_NBLCK, 1)

else:
    import fcntl

    def _os_lock(file: IO[str]) -> None:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
