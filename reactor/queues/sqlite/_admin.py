"""Dead letters and replay: the stored letters (listed by the owner, or read beside it by
:func:`read_dead_letters`), their replay and purge, and the replay of a time window of
kept events.

The functions that take a connection run in the queue's worker thread, inside the
journal's transaction (:meth:`Journal.transact <._journal.Journal.transact>`); they are
given what they need of the loop side's state (the last event's number, the consumer
names the app noted) as arguments and return how many rows they published or deleted.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Collection, Iterable
from datetime import UTC, datetime
from pathlib import Path
from time import time
from typing import Any, Final, TypeVar

from reactor import (
    Event,
    EventFormatError,
    LetterId,
    QueueFileError,
    QueueUnavailableError,
    StoredDeadLetter,
    validators,
)
from reactor.abc import DeadLetterStore

from .._letters import checked_ids, missing_letters, replay_consumers, unknown
from ._errors import unavailable_cause
from ._journal import Journal, append, crc_with, stored_consumers
from ._options import timestamp
from ._schema import check_header, identify, public_type_name

__all__ = [
    "DeadLetterAdmin",
    "letter_filter",
    "list_letters",
    "purge_letters",
    "read_dead_letters",
    "replay_letters",
    "replay_window",
]

_T = TypeVar("_T")
#: The schema version from which dead letters are stored under public names.
_PUBLIC_NAMES_VERSION: Final = 2

_LETTER_COLUMNS: Final = (
    "id, consumer, body, error_type, error, attempts, first_failed_at, last_failed_at, dead_at"
)


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
        validators.integer("limit", limit, minimum=1)
    check_header(path, missing_ok=False)
    try:
        conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, timeout=5.0)
    except sqlite3.Error as exc:
        raise QueueFileError(f"cannot open {path}: {exc}") from exc
    try:
        if identify(conn, path):
            raise QueueFileError(f"{path} is an empty SQLite database, not a reactor queue")
        # A file of an earlier schema that no owner has opened (and migrated) since: its
        # names are renamed as they are read, as the migration would.
        old = conn.execute("PRAGMA user_version").fetchone()[0] < _PUBLIC_NAMES_VERSION
        return list_letters(conn, consumer, limit, old_names=old)
    except (sqlite3.Error, ValueError, TypeError) as exc:
        # Reading a file in WAL mode may need to create its side files: a full disk says
        # so, rather than pass for a damaged file.
        why = unavailable_cause(path, exc)
        if why is not None:
            raise QueueUnavailableError(
                f"cannot read the dead letters of {path} right now: {why} ({exc})"
            ) from exc
        raise QueueFileError(f"cannot read the dead letters of {path}: {exc}") from exc
    finally:
        conn.close()


def list_letters(
    conn: sqlite3.Connection,
    consumer: str | None,
    limit: int | None,
    *,
    old_names: bool = False,
) -> list[StoredDeadLetter]:
    """The stored dead letters, oldest first (of *consumer* only, at most *limit*).

    :param old_names: the file may hold names of an earlier schema: rename them
    """
    sql = f"SELECT {_LETTER_COLUMNS} FROM reactor_dead_letters"
    params: list[Any] = []
    if consumer is not None:
        sql += " WHERE consumer = ?"
        params.append(consumer)
    sql += " ORDER BY id"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    return [_stored_letter(row, old_names) for row in conn.execute(sql, params)]


def _stored_letter(row: tuple[Any, ...], old_names: bool) -> StoredDeadLetter:
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
        error_type=public_type_name(error_type) if old_names else error_type,
        error=error,
        attempts=attempts,
        first_failed_at=datetime.fromisoformat(first),
        last_failed_at=datetime.fromisoformat(last),
        dead_at=datetime.fromtimestamp(dead_at, UTC),
        body=bytes(body),
    )


class DeadLetterAdmin(DeadLetterStore):
    """The methods of :class:`SQLiteQueue` that list, replay and purge its dead letters
    and replay a time window of kept events (loop side; their SQL is below).

    They run through the queue's writer role, with the hooks below that the queue
    provides.
    """

    _path: Path
    _consumers: set[str]  # the consumer names the app noted

    def _check_running(self) -> None:
        """:raises ~reactor.ReactorNotRunning: the queue is not open"""
        raise NotImplementedError

    async def _flush(self) -> None:
        """Commit what is waiting for the next commit."""
        raise NotImplementedError

    async def _run(self, call: Callable[[Journal, int], _T]) -> _T:
        """Run ``call(journal, number of the last event)`` in the worker thread, holding
        the writer role."""
        raise NotImplementedError

    async def _republish(self, call: Callable[[Journal, int], int]) -> int:
        """Run *call*, which appends events after the last one and returns how many, and
        take them into the queue."""
        raise NotImplementedError

    async def dead_letters(
        self, *, consumer: str | None = None, limit: int | None = None
    ) -> list[StoredDeadLetter]:
        """Return the dead letters stored in the file, oldest first.

        :param consumer: only this consumer's letters
        :param limit: at most this many
        """
        self._check_running()
        if limit is not None:
            validators.integer("limit", limit, minimum=1)
        await self._flush()  # read what was recorded so far, letters not yet written included
        return await self._run(lambda journal, _: journal.read(list_letters, consumer, limit))

    async def replay_dead_letters(
        self, ids: Iterable[LetterId] | None = None, *, consumer: str | None = None
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
        wanted = None if ids is None else list(ids)
        where, params = letter_filter(wanted, consumer)
        path, noted = self._path, frozenset(self._consumers)
        id_set = None if wanted is None else set(wanted)
        return await self._republish(
            lambda journal, last_seq: journal.transact(
                replay_letters, path, noted, last_seq, where, params, id_set, consumer
            )
        )

    async def purge_dead_letters(
        self, ids: Iterable[LetterId] | None = None, *, consumer: str | None = None
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
        wanted = None if ids is None else list(ids)
        where, params = letter_filter(wanted, consumer, include_damaged=True)
        path, noted = self._path, frozenset(self._consumers)
        id_set = None if wanted is None else set(wanted)
        return await self._run(
            lambda journal, _: journal.transact(
                purge_letters, path, noted, where, params, id_set, consumer
            )
        )

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
        start = timestamp("since", since)
        end = None if until is None else timestamp("until", until)
        names = replay_consumers(consumers)
        path, noted = self._path, frozenset(self._consumers)
        return await self._republish(
            lambda journal, last_seq: journal.transact(
                replay_window, path, noted, last_seq, start, end, names
            )
        )


# -- changes, in the journal's transaction ----------------------------------------------


def replay_letters(
    conn: sqlite3.Connection,
    path: Path,
    noted: Collection[str],
    last_seq: int,
    where: str,
    params: list[Any],
    ids: set[LetterId] | None,
    consumer: str | None,
) -> int:
    """Append the events of the letters that *where* selects, each for its consumer only,
    after event *last_seq*, and delete the letters.

    :param noted: the consumer names the app noted (known although maybe not stored)
    :return: how many events were appended
    """
    if consumer is not None:
        _check_consumers(conn, path, noted, [consumer])
    rows = conn.execute(
        f"SELECT id, body, consumer FROM reactor_dead_letters WHERE {where} "
        "AND consumer IS NOT NULL ORDER BY id",
        params,
    ).fetchall()
    if ids is not None:
        missing_letters(ids, (row[0] for row in rows), replayable=True)
    now = time()
    append(conn, last_seq + 1, [(body, json.dumps([name]), now) for _, body, name in rows])
    conn.executemany("DELETE FROM reactor_dead_letters WHERE id = ?", [(row[0],) for row in rows])
    return len(rows)


def purge_letters(
    conn: sqlite3.Connection,
    path: Path,
    noted: Collection[str],
    where: str,
    params: list[Any],
    ids: set[LetterId] | None,
    consumer: str | None,
) -> int:
    """Delete the letters that *where* selects; return how many."""
    if consumer is not None:
        _check_consumers(conn, path, noted, [consumer])
    if ids is not None:
        found = conn.execute(f"SELECT id FROM reactor_dead_letters WHERE {where}", params)
        missing_letters(ids, (row[0] for row in found), replayable=False)
    count: int = conn.execute(f"DELETE FROM reactor_dead_letters WHERE {where}", params).rowcount
    return count


def replay_window(
    conn: sqlite3.Connection,
    path: Path,
    noted: Collection[str],
    last_seq: int,
    start: float,
    end: float | None,
    names: list[str] | None,
) -> int:
    """Append again, after event *last_seq*, the kept publications of ``[start, end)``
    (for the consumers *names* only, or every match); return how many."""
    only = None
    if names is not None:
        _check_consumers(conn, path, noted, names)
        only = json.dumps(names)
    # Kept publications only: a row with a consumer list is a redelivery (kept by files
    # of earlier releases only).
    where = "seq <= ? AND done_at IS NOT NULL AND only IS NULL AND published_at >= ?"
    params: list[Any] = [last_seq, start]
    if end is not None:
        where += " AND published_at < ?"
        params.append(end)
    # In publication order, numbered after the last event. The checksum of a
    # publication covers its body only, so a copy for chosen consumers extends the
    # stored one: damage to the original still shows in the copy.
    conn.create_function("reactor_crc_with", 2, crc_with, deterministic=True)
    count: int = conn.execute(
        "INSERT INTO reactor_events (seq, body, only, published_at, crc) "
        "SELECT ? + row_number() OVER (ORDER BY published_at, seq), body, ?, "
        f"published_at, reactor_crc_with(crc, ?) FROM reactor_events WHERE {where}",
        [last_seq, only, only, *params],
    ).rowcount
    if only is None:
        # Replayed to every consumer: the event itself goes back into the queue, not a
        # copy of it (kept again once settled, as one event).
        conn.execute(f"DELETE FROM reactor_events WHERE {where}", params)
    return count


def _check_consumers(
    conn: sqlite3.Connection, path: Path, noted: Collection[str], names: Iterable[str]
) -> None:
    """Raise :class:`~reactor.ConsumerNotFound` for a name this file never saw."""
    known = set(noted)
    known.update(stored_consumers(conn))
    known.update(
        name
        for (name,) in conn.execute(
            "SELECT DISTINCT consumer FROM reactor_dead_letters WHERE consumer IS NOT NULL"
        )
    )
    known.update(name for (name,) in conn.execute("SELECT DISTINCT consumer FROM reactor_progress"))
    unknown(names, known, str(path))


# -- arguments ----------------------------------------------------------------------------


def letter_filter(
    ids: Iterable[LetterId] | None, consumer: str | None, *, include_damaged: bool = False
) -> tuple[str, list[Any]]:
    """The WHERE clause (and its parameters) that selects letters by id and consumer.

    :raises TypeError: an id is not an int
    """
    clauses: list[str] = []
    params: list[Any] = []
    if ids is not None:
        numbers = checked_ids(ids, int, "the letters' numbers") or []
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
