"""The queue on the event loop's side: publishing, waiting publishers, the read-ahead,
the writer role (group commit) and settlement; every statement runs in the journal.

State is the loop's own: it is changed on the loop only, before a thread hop and from
what the hop returns (see :mod:`._journal`).

Over 600 lines on purpose: :class:`SQLiteQueue` is one object whose state (depth,
read-ahead, writer role, waiting publishers) is read on every ``put()`` and
``get_batch()``, so it is kept in one class rather than behind more indirection on the
hot path; much of the module is the documentation of its public methods. Everything
else lives beside it: the SQL in ``_journal``, the file's layout in ``_schema``, the
dead-letter methods in ``_admin``, the settings in ``_options``, the lock in ``_lock``.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import sqlite3
from collections import OrderedDict, deque
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from time import time
from types import MappingProxyType
from typing import Any, Final, TypeVar

import anyio
import anyio.lowlevel

import reactor
from reactor import (
    DeadLetter,
    DuplicateEvent,
    Event,
    EventFormatError,
    PayloadTooLargeError,
    QueueFileError,
    QueueFull,
    QueueStatistics,
    QueueUnavailableError,
    ReactorNotRunning,
    SystemClock,
    validators,
)
from reactor.abc import Clock, EventQueue, Received
from reactor.queues._waiting import WaitingPublishers

from ._admin import DeadLetterAdmin
from ._errors import logger, storage_error
from ._journal import (
    FIRED_PREFIX,
    Delayed,
    Journal,
    Recovered,
    Writes,
    promote_due,
    store_delayed,
)
from ._options import Options, path_from_url
from ._schema import Check, Synchronous, public_name
from ._worker import Worker

__all__ = [
    "DEFAULT_CAPACITY",
    "DEFAULT_MAX_EVENT_SIZE",
    "DEFAULT_MAX_REDELIVERIES",
    "SQLiteQueue",
]

#: How many events may wait in a :class:`SQLiteQueue` (on disk) before ``publish()`` waits.
DEFAULT_CAPACITY: Final = 1_000_000
#: The largest encoded event (CloudEvents JSON) accepted by default: 1 MiB.
DEFAULT_MAX_EVENT_SIZE: Final = 1 << 20
#: How many times :class:`SQLiteQueue` hands an unsettled event out again by default
#: before it is dead-lettered instead of handled (see ``max_redeliveries``).
DEFAULT_MAX_REDELIVERIES: Final = 5

#: Decoded events kept in memory ahead of the dispatcher; the rest wait on disk only.
READ_AHEAD: Final = 2048
#: Events read from the file per thread hop when the backlog is on disk.
READ_PAGE: Final = 512
#: Events accepted by ``put_nowait()`` and not yet written, before it raises QueueFull.
WRITE_AHEAD: Final = 10_000
#: The most dedupe keys kept in memory (see ``deduplicate()``); beyond that the oldest
#: are forgotten before their window ends (their retries are then stored again).
MAX_DEDUPE_KEYS: Final = 1_000_000
#: Seconds that close() waits for pending writes before giving them up.
CLOSE_TIMEOUT: Final = 30.0
#: Seconds between two tries to read the backlog while the file cannot be written (the
#: first pause; it doubles up to the second).
RETRY_DELAY: Final = (0.05, 2.0)

_T = TypeVar("_T")


class _Work(Writes):
    """Everything waiting for the next commit; whoever commits takes it all."""

    __slots__ = ("done", "error", "finished", "kept")

    def __init__(self) -> None:
        super().__init__()
        # The inserts of put_nowait(), whose publishers do not wait: when the commit
        # fails, they wait for the next one; the others are their publishers' error.
        self.kept: list[tuple[Received, bytes, str | None, float]] = []
        self.finished = False
        self.error: BaseException | None = None
        self.done = anyio.Event()


class SQLiteQueue(DeadLetterAdmin, EventQueue):
    """A durable ingestion queue: events survive a crash and are delivered at least once.

    ``Reactor(queue=SQLiteQueue("events.db"))`` journals every published event in one
    SQLite file (WAL mode) before ``publish()`` returns, and removes it only once every
    consumer's delivery of it has settled: succeeded, or failed every attempt and been
    stored as a dead letter in the same file. After a crash or a cut-short stop, the
    next start hands the unfinished events out again, to the consumers that had not
    settled them only, with ``reactor.current_delivery().attempt`` raised.

    Writes are batched: concurrent publishers, acknowledgements and dead letters share
    one transaction and one fsync (group commit), run in a worker thread of the queue's
    own so the event loop never waits on the disk. One process at a time owns the file
    (a second one gets :class:`~reactor.QueueInUseError`); the dead-letter listing reads
    it while the owner runs.

    ``publish_nowait()`` (and ``app.notify()``) accept an event without waiting: it is
    written with the next commit, a few milliseconds later, and is lost if the process
    dies before that. ``await app.publish()`` returns only after the commit.

    Delayed events (``await app.publish(..., delay=...)``) wait in the file, in a table of
    their own, until they are due on the app's clock; then they join the end of the queue.
    They survive a restart (an event that fell due while the app was stopped is delivered
    when it starts), count against *capacity* while they wait, and leaving ``async with
    app:`` does not wait for them. ``publish_nowait()`` cannot delay an event (storing it
    is I/O).

    When the file cannot be written (a full disk, most often), ``publish()`` raises
    :class:`~reactor.QueueUnavailableError` saying why, and stores nothing; events
    accepted by ``publish_nowait()`` and dead letters wait in memory for the next commit
    that succeeds; the app retries its settlements until they are stored, and keeps
    running. The queue recovers by itself once the disk has room again. Failures are
    logged (once, when they begin, and again when they end) and counted in
    ``app.stats().queue``: ``errors``, and ``last_error`` while it lasts. Opening a file on
    a full disk raises :class:`~reactor.QueueUnavailableError` too, never a damaged-file
    error. A clean close removes the ``<name>-lock`` file beside the database.

    With an app's ``dedupe`` window (``Reactor(dedupe=...)``), the queue keeps the key
    (``source``, ``id``) of every published event in the file, written in the transaction
    that stores the event, and drops a duplicate within the window, also after a
    restart (see :meth:`deduplicate`).

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
    supports_delay = True
    stores_fire_times = True

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
        options = self._options = Options.checked(
            path,
            synchronous=synchronous,
            capacity=capacity,
            max_event_size=max_event_size,
            retention=retention,
            check=check,
            busy_timeout=busy_timeout,
            max_redeliveries=max_redeliveries,
        )
        self.max_redeliveries = max_redeliveries
        self._path = options.path
        # Read for every event: kept at hand.
        self._capacity = capacity
        self._max_event_size = max_event_size
        self._db: Journal | None = None  # the open file's journal
        self._worker: Worker | None = None  # the thread that runs the journal's calls
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
        self._last_seq = 0  # the number of the last event in the file
        self._handed_out = 0  # the persisted hand-out watermark
        self._given = 0  # the last seq that get_batch() handed out
        self._with_progress: set[Any] = set()
        # Consumer names the app told of (note_consumers), and those the file has.
        self._consumers: set[str] = set()
        self._consumers_stored: frozenset[str] = frozenset()
        self._depth = 0
        # Delayed events in the file, their earliest due time (seconds since the epoch),
        # and the room left for the other events: capacity less the delayed ones.
        self._delayed = 0
        self._next_due: float | None = None
        self._limit = capacity
        self._clock: Clock = SystemClock()
        self._getter: anyio.Event | None = None
        self._waiting = WaitingPublishers()
        self._putters = self._waiting.tickets
        self._closed = True
        self._put_count = 0
        self._get_count = 0
        self._errors = 0  # failed storage operations
        self._last_error: str | None = None  # set while the file cannot be written
        self._retry_delay = RETRY_DELAY[0]
        # Deduplication (deduplicate()): the window, and the keys of the
        # window, as in the file (and those waiting for the next commit), oldest first.
        self._dedupe_window: float | None = None
        self._keys: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._deduplicated = 0
        # The timers' last fire times, as stored and recorded since; and those waiting
        # for their run's event, by the event's (source, id), to join its insert.
        self._fire_times: dict[str, datetime] = {}
        self._fires_waiting: dict[tuple[str, str], tuple[str, float]] = {}

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SQLiteQueue:
        """Build a queue from a URL: ``sqlite:///events.db`` (relative to the current
        directory) or ``sqlite:////var/lib/app/events.db`` (absolute).

        :param url: the URL
        :param options: keyword arguments of :class:`SQLiteQueue`
        :raises ValueError: not a ``sqlite://`` URL with a path
        """
        return cls(path_from_url(url), **options)

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
        return self._options.retention

    # -- lifecycle ------------------------------------------------------------------

    def use_clock(self, clock: Clock) -> None:
        """Read and wait for the due times of delayed events on *clock* (the app's)."""
        self._clock = clock

    async def open(self) -> None:
        """Open (or create) the file, check it, and recover what an earlier run left.

        :raises ~reactor.QueueInUseError: another process owns the file
        :raises ~reactor.QueueFileError: the file is not a reactor queue, has a newer
            schema, or is damaged; it is left untouched
        """
        if self._db is None:
            consumers = self._unstored_consumers()
            open_journal = functools.partial(
                Journal.open,
                self._path,
                synchronous=self._options.synchronous,
                check=self._options.check,
                busy_timeout=self._options.busy_timeout,
                retention=self._options.retention,
                writer=f"reactor {reactor.__version__}",
                consumers=consumers,
            )
            since = self._keys_since()
            path = self._path

            def open_with_keys() -> tuple[Journal, Recovered, list[tuple[str, str, float]]]:
                journal, recovered = open_journal()
                if since is None:
                    return journal, recovered, []
                try:
                    keys = journal.dedupe_keys(since)
                except BaseException as exc:
                    journal.close(None, None)
                    if isinstance(exc, sqlite3.Error):
                        raise storage_error(path, exc, opening=True) from exc
                    raise
                return journal, recovered, keys

            worker = Worker(f"reactor journal of {self._path.name}")
            try:
                journal, recovered, keys = await worker.run(open_with_keys)
            except BaseException:
                await worker.stop()
                raise
            self._db, self._worker = journal, worker
            self._consumers_stored |= frozenset(consumers or ())
            self._recovered(recovered)
            self._keys = OrderedDict(((source, id_), at) for source, id_, at in keys)
            while len(self._keys) > MAX_DEDUPE_KEYS:
                self._keys.popitem(last=False)
        self._closed = self._waiting.closed = False

    def _recovered(self, recovered: Recovered) -> None:
        """Start from what an earlier run left: everything on disk only, read back from
        its first unsettled event on, none of it handed out by this run."""
        self._handed_out = self._given = 0
        self._last_seq = recovered.last_seq
        self._depth = recovered.depth
        self._on_disk_until = recovered.last_seq
        self._cursor = recovered.last_seq + 1 if recovered.first is None else recovered.first
        self._ready.clear()
        self._redeliveries = 0
        self._with_progress.clear()
        self._work = _Work()
        self._fire_times = {
            name: datetime.fromtimestamp(seconds, UTC)
            for name, seconds in recovered.fire_times.items()
        }
        self._fires_waiting.clear()
        self._set_delayed(recovered.delayed)
        if self._depth:
            logger.info(
                "%s: %d event(s) left by an earlier run will be delivered again",
                self._path,
                self._depth,
            )

    def deduplicate(self, window: float) -> bool:
        """Drop events whose ``(source, id)`` was stored within the last *window* seconds.

        Called by an app built with ``Reactor(dedupe=...)`` before it opens the queue. The
        key of every event published from then on is written to the file in the
        transaction that stores the event, with the app clock's wall time (``now()`` of
        the clock that :meth:`use_clock` gave);
        the keys of the window are read back when the queue opens, so the window
        survives a restart, and keys older than the window are deleted in bulk as
        commits go by. The check itself is made in memory (one process owns the file):
        about 200 bytes per key of the window, at most a million keys (the oldest are
        forgotten early beyond that). ``put()`` and ``put_nowait()`` raise
        :class:`~reactor.DuplicateEvent` for a duplicate; ``put_many()`` returns them.

        :param window: seconds, ``> 0``
        :return: ``True``
        """
        self._dedupe_window = validators.seconds("window", window, positive=True)
        return True

    def _keys_since(self) -> float | None:
        """The oldest time of a dedupe key still in the window (``None``: no dedupe)."""
        if self._dedupe_window is None:
            return None
        return self._clock.now().timestamp() - self._dedupe_window

    def _known(self, key: tuple[str, str]) -> bool:
        """Whether *key* is in the dedupe window (forgetting the keys that left it)."""
        since = self._keys_since()
        assert since is not None
        keys = self._keys
        forgot = False
        while keys:
            oldest = next(iter(keys))
            if keys[oldest] > since:
                break
            del keys[oldest]
            forgot = True
        if forgot:
            # Deleted from the file too, with the next commit (in bulk).
            self._work.forget_keys = since
        return key in keys

    def _unstored_consumers(self) -> list[str] | None:
        """The consumer names to record in the file (all of them), or ``None`` when it
        has them all."""
        if self._consumers <= self._consumers_stored:
            return None
        return sorted(self._consumers)

    async def close(self) -> None:
        """Write what is pending (acknowledgements, dead letters), then close the file.

        Publishers waiting for room raise :class:`~reactor.ReactorNotRunning`.
        """
        self._closed = True
        self._waiting.close()
        journal = self._db
        if journal is None:
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
            worker = self._worker
            assert worker is not None
            # Fresh events that were read ahead but never handed out are not counted as
            # handed out at the next start.
            given = self._given if self._handed_out > self._given else None
            self._db = self._worker = None
            try:
                await worker.run(journal.close, self._unstored_consumers(), given)
            finally:
                await worker.stop()
        self._ready.clear()
        self._redeliveries = 0
        self._depth = 0
        self._keys.clear()  # read back from the file at the next open
        self._fires_waiting.clear()

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
        if self._db is None or self._closed:
            raise ReactorNotRunning(f"the queue {self._path} is not open")

    def put_nowait(self, event: Event, *, only: Collection[str] | None = None) -> None:
        """Accept *event* without waiting; it is written with the next commit.

        Unlike :meth:`put`, this returns before the event is on disk: it is lost if the
        process dies within the few milliseconds before that commit.

        :raises ~reactor.QueueFull: the queue is at capacity, publishers are waiting for
            room, or too many accepted events are still waiting to be written
        :raises ~reactor.DuplicateEvent: a duplicate in the dedupe window (nothing stored)
        :raises ~reactor.EventFormatError: the event cannot be encoded as JSON
        :raises ~reactor.PayloadTooLargeError: the encoded event is over the limit
        """
        self._check_running()
        body = self._encode(event)
        if self._dedupe_window is not None and only is None:
            self._refuse_duplicate(event)
        if event.extensions and self._due(event) is not None:
            raise NotImplementedError(
                "SQLiteQueue stores a delayed event with I/O, so it cannot accept one without "
                "waiting: use `await app.publish(..., delay=...)`"
            )
        if self._depth >= self._limit or self._putters or len(self._work.inserts) >= WRITE_AHEAD:
            raise QueueFull(
                f"the durable queue is full ({self._capacity} events, or {WRITE_AHEAD} "
                "waiting to be written); use `await app.publish(...)` to wait for room"
            )
        self._work.kept.append(self._accept(event, body, only))
        self._wake_getter()  # the dispatcher commits it when no publisher does

    def _refuse_duplicate(self, event: Event) -> None:
        if self._known((event.source, event.id)):
            self._count_duplicate(event)
            raise DuplicateEvent(event.source, event.id)

    def _count_duplicate(self, event: Event) -> None:
        self._deduplicated += 1
        logger.debug(
            "%s: event %r from %r was stored within the dedupe window; dropped",
            self._path,
            event.id,
            event.source,
        )

    def _accept(
        self, event: Event, body: bytes, only: Collection[str] | None
    ) -> tuple[Received, bytes, str | None, float]:
        row: tuple[Received, bytes, str | None, float]
        if only is None:
            if self._dedupe_window is not None:
                # Checked again here, with no wait before the row is taken: a copy that
                # was accepted while this one waited for room makes it a duplicate.
                self._refuse_duplicate(event)
                key = (event.source, event.id)
                at = self._keys[key] = self._clock.now().timestamp()
                self._work.keys[key] = at
                if len(self._keys) > MAX_DEDUPE_KEYS:
                    self._keys.popitem(last=False)
            row = (Received(event), body, None, time())
        else:
            consumers = frozenset(only)
            row = (Received(event, only=consumers), body, json.dumps(sorted(consumers)), time())
        self._work.inserts.append(row)
        self._depth += 1
        self._put_count += 1
        return row

    def _forget_key(self, work: _Work, event: Event) -> None:
        """Forget the dedupe key of an event taken back before it was written."""
        key = (event.source, event.id)
        if work.keys.pop(key, None) is not None:
            self._keys.pop(key, None)

    async def put(self, event: Event, *, only: Collection[str] | None = None) -> None:
        """Store *event* and return once it is committed; wait while the queue is full.

        A publisher cancelled before its batch began to be written stores nothing; one
        cancelled while it is written stores the event (it will be delivered) unless the
        write fails.

        :raises ~reactor.ReactorNotRunning: the queue is closed, or closed while waiting
        :raises ~reactor.DuplicateEvent: a duplicate in the dedupe window (nothing stored)
        :raises ~reactor.EventFormatError: the event cannot be encoded as JSON
        :raises ~reactor.PayloadTooLargeError: the encoded event is over the limit
        :raises ~reactor.QueueUnavailableError: the file cannot be written right now (a
            full disk, a read-only file, another connection's lock); nothing was stored,
            and publishing again later can succeed
        :raises ~reactor.QueueFileError: the file could not be written for another reason
        """
        self._check_running()
        body = self._encode(event)
        if self._dedupe_window is not None and only is None:
            self._refuse_duplicate(event)
        waited = self._depth >= self._limit or bool(self._putters)
        if waited:
            await self._waiting.wait(self._room)
        try:
            if event.extensions:
                due = self._due(event)
                if due is not None:
                    await self._put_delayed(event, body, only, due)
                    return
            row = self._accept(event, body, only)
        except DuplicateEvent:
            if waited:  # accepted while this one waited: pass the room on
                self._waiting.wake(self._room())
            raise
        work = self._work
        fire = None
        if self._fires_waiting:
            # A timer's run: its fire time goes in the same transaction as its event.
            fire = self._fires_waiting.pop((event.source, event.id), None)
            if fire is not None:
                work.fires.append(fire)
        try:
            await self._commit(work)
        except BaseException:
            if not work.finished and self._writing is not work:
                # Not written yet: take the event back, the publish did not happen.
                work.inserts.remove(row)
                self._forget_key(work, event)
                if fire is not None:
                    work.fires.remove(fire)
                self._depth -= 1
                self._put_count -= 1
            raise

    async def put_many(self, events: Sequence[Event]) -> list[Event] | None:
        """Store all of *events* in one transaction, or none; do not wait for room.

        With a dedupe window, the batch's duplicates (of stored events, or of an event
        before them in the batch) are not stored but returned; the others are stored all
        or nothing.

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
        duplicates: list[Event] = []
        if self._dedupe_window is not None:
            fresh: list[tuple[Event, bytes]] = []
            batch: set[tuple[str, str]] = set()
            for event, body in zip(events, bodies, strict=True):
                key = (event.source, event.id)
                if key in batch or self._known(key):
                    duplicates.append(event)
                else:
                    batch.add(key)
                    fresh.append((event, body))
            events = [event for event, _ in fresh]
            bodies = [body for _, body in fresh]
        if not bodies:
            for event in duplicates:
                self._count_duplicate(event)
            return duplicates
        if self._depth + len(bodies) > self._limit or self._putters:
            raise QueueFull(
                f"the durable queue has room for {max(self._limit - self._depth, 0)} "
                f"events, not the {len(bodies)} of this batch; retry later"
            )
        dues = [self._due(event) if event.extensions else None for event in events]
        if any(due is not None for due in dues):
            now = time()
            await self._store_delayed(
                [(body, None, now) for body, due in zip(bodies, dues, strict=True) if due is None],
                [(due, body, None, now) for body, due in zip(bodies, dues, strict=True) if due],
                events,
            )
            for event in duplicates:
                self._count_duplicate(event)
            return duplicates
        # One work item holds every row, so they are committed in one transaction.
        rows = [self._accept(event, body, None) for event, body in zip(events, bodies, strict=True)]
        work = self._work
        try:
            await self._commit(work)
        except BaseException:
            if not work.finished and self._writing is not work:
                for row in rows:
                    work.inserts.remove(row)
                    self._forget_key(work, row[0].event)
                self._depth -= len(rows)
                self._put_count -= len(rows)
            raise
        for event in duplicates:  # once the batch is stored: a refused one is sent again
            self._count_duplicate(event)
        return duplicates

    def _room(self) -> int:
        return self._limit - self._depth

    # -- delayed events -------------------------------------------------------------

    def _due(self, event: Event) -> float | None:
        """When *event* is due (seconds since the epoch), if it is a delayed event not due
        yet on the app's clock; else ``None``."""
        due = event.deliver_at
        if due is None or due <= self._clock.now():
            return None
        return due.timestamp()

    async def _put_delayed(
        self, event: Event, body: bytes, only: Collection[str] | None, due: float
    ) -> None:
        """Store *event*, due at *due*, among the delayed events."""
        if only is None and self._dedupe_window is not None:
            self._refuse_duplicate(event)  # again: a copy may have been stored meanwhile
        consumers = None if only is None else json.dumps(sorted(only))
        await self._store_delayed(
            [], [(due, body, consumers, time())], [event] if only is None else ()
        )

    async def _store_delayed(
        self,
        rows: list[tuple[bytes, str | None, float]],
        delayed: list[tuple[float, bytes, str | None, float]],
        keyed: Sequence[Event] = (),
    ) -> None:
        """Append *rows* and store the *delayed* events (due time first) in one
        transaction of their own (not a group commit), with the dedupe keys of *keyed*
        under a dedupe window."""
        keys: dict[tuple[str, str], float] = {}
        if self._dedupe_window is not None and keyed:
            at = self._clock.now().timestamp()
            keys = {(event.source, event.id): at for event in keyed}
            self._keys.update(keys)  # taken now: a copy put meanwhile is a duplicate
        stored = [(source, id_, at) for (source, id_), at in keys.items()]

        def call(journal: Journal, last: int) -> tuple[int, Delayed]:
            return journal.transact(store_delayed, last + 1, rows, delayed, stored)

        try:
            count, held = await self._run(call)
        except BaseException:
            for key in keys:
                self._keys.pop(key, None)
            raise
        while len(self._keys) > MAX_DEDUPE_KEYS:
            self._keys.popitem(last=False)
        self._took(count)
        self._put_count += count + len(delayed)
        self._set_delayed(held)

    async def _promote(self) -> None:
        """Move the delayed events that are due to the end of the queue."""
        now = self._clock.now().timestamp()

        def call(journal: Journal, last: int) -> tuple[int, Delayed]:
            return journal.transact(promote_due, last + 1, now, READ_PAGE)

        count, held = await self._run(call)
        self._took(count)
        self._set_delayed(held)

    def _took(self, count: int) -> None:
        """Take into the queue *count* events just appended to the file."""
        if count:
            self._spill(self._last_seq + 1, self._last_seq + count)
            self._last_seq += count
            self._depth += count
            self._wake_getter()

    def _set_delayed(self, held: Delayed) -> None:
        """Note the delayed events in the file; wake get_batch() to wait for the next."""
        self._delayed, self._next_due = held
        self._limit = self._capacity - held.total
        self._wake_getter()

    # -- the writer role ------------------------------------------------------------

    async def _commit(self, work: _Work) -> None:
        """Return once *work* is committed, taking the writer role when it is free.

        While a commit runs, the first task to wait for the next one is its leader and
        the others wait for their batch to finish, so a finished commit wakes only the
        tasks it concerns and one leader.
        """
        while not work.finished:
            if self._busy is None:
                # The commit runs shielded, and whoever runs it waits for nothing else:
                # without this, a publishing loop in a cancelled scope would never see its
                # cancellation (a publisher cancelled here has stored nothing). Checked
                # here, once per commit, rather than in every put().
                await anyio.lowlevel.checkpoint_if_cancelled()
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
        assert self._busy is None and self._worker is not None and self._db is not None
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
        first = self._last_seq + 1  # the number of the first insert
        # The last event handed out from memory: fresh events kept for the dispatcher
        # count as handed out from now on (there is no commit between their read-ahead
        # and get_batch()); events of the backlog count once get_batch() hands them out.
        mark = max(first + keep - 1 if keep else 0, work.mark)
        try:
            page = await self._worker.run(
                self._db.commit,
                work,
                first,
                mark if mark > self._handed_out else 0,
                progress_done,
                (self._cursor, self._on_disk_until, read) if read else None,
            )
        except Exception as exc:
            # Nothing of the transaction is stored, and nothing of the queue's state moved
            # (it moves after a commit only). The publishers waiting for this commit
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
            if work.keys:
                # The keys of the events that wait for the next commit wait with them;
                # those of the events not stored are forgotten (their retry is no copy).
                waiting = {(row[0].event.source, row[0].event.id) for row in later}
                for key, at in work.keys.items():
                    if key in waiting:
                        pending.keys[key] = at
                    else:
                        self._keys.pop(key, None)
            pending.loose[:0] = work.loose
            if later:
                self._wake_getter()  # the dispatcher writes them when nobody else does
        else:
            self._succeeded()
            self._handed_out = max(self._handed_out, mark)
            if page is not None:
                received, self._cursor, damaged = page
                self._depth -= damaged
                with_progress.update([item.token for item in received if item.completed])
                ready.extend(received)
                self._redeliveries += sum(item.attempt > 1 for item in received)
            with_progress.difference_update(progress_done)
            with_progress.update(seq for seq, _ in work.progress)
            if inserts:
                # Each event's token is its number in the file, now that it has one.
                for seq, insert in enumerate(inserts, first):
                    insert[0].token = seq
                self._last_seq = last = first + len(inserts) - 1
                ready.extend([insert[0] for insert in inserts[:keep]])
                if keep < len(inserts):
                    self._spill(first + keep, last)
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
        error = storage_error(self._path, exc)
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
            if self._next_due is not None and self._next_due <= self._clock.now().timestamp():
                try:
                    await self._promote()
                except QueueUnavailableError:
                    await self._pause()  # the due events wait in the file meanwhile
                continue
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
                    self._waiting.wake(self._limit - self._depth)
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
                if self._next_due is None:
                    await getter.wait()
                else:
                    clock = self._clock
                    wait = self._next_due - clock.now().timestamp()
                    with clock.deadline_scope(clock.monotonic() + wait):
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
                public_name(type(letter.error)),
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

    def fire_times(self) -> Mapping[str, datetime]:
        """Return the timers' last fire times read from the file when it was opened, and
        those recorded since, by timer name."""
        return MappingProxyType(self._fire_times)

    def record_fire_time(self, timer: str, when: datetime, event: Event | None) -> None:
        """Keep *when* as the last fire time of *timer*, in the file's ``reactor_meta``.

        With *event*, the time is written in the transaction that stores the event (and
        never if the event is not stored); without, with the next commit (at the latest
        when the queue closes). A closed queue ignores it.
        """
        if self._db is None or self._closed:
            return
        last = self._fire_times.get(timer)
        if last is None or when > last:
            self._fire_times[timer] = when
        fire = (FIRED_PREFIX + timer, when.timestamp())
        if event is None:
            self._work.loose.append(fire)
        else:
            self._fires_waiting[event.source, event.id] = fire

    def note_consumers(self, names: Collection[str]) -> None:
        """Remember the app's consumer names, recorded in the file (see :meth:`replay`)."""
        self._consumers.update(names)

    async def _flush(self) -> None:
        if self._work:
            await self._commit(self._work)

    async def _run(self, call: Callable[[Journal, int], _T]) -> _T:
        """Run ``call(journal, last)`` in the worker thread, holding the writer role (so
        that no commit runs meanwhile and *last*, the number of the last event in the
        file, stays the last).

        *call* reads only its arguments and what it captured on the loop side before.
        """
        while self._busy is not None:
            await self._busy.wait()
        journal, worker = self._db, self._worker
        if journal is None or worker is None:
            raise ReactorNotRunning(f"the queue {self._path} is not open")
        busy = self._busy = anyio.Event()
        try:
            result = await worker.run(call, journal, self._last_seq)
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

    async def _republish(self, call: Callable[[Journal, int], int]) -> int:
        """Run *call* (as :meth:`_run`), which appends events after the last one and
        returns how many, and take them into the queue.

        Nothing runs on the loop between the end of *call* and this: no commit can
        number other events in between.
        """
        count = await self._run(call)
        self._took(count)
        self._put_count += count
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
            delayed=self._delayed,
            deduplicated=self._deduplicated,
        )

    def __repr__(self) -> str:
        return f"SQLiteQueue({str(self._path)!r}, synchronous={self._options.synchronous!r})"


def _seq(received: Received) -> int:
    seq = received.token
    assert isinstance(seq, int)
    return seq
