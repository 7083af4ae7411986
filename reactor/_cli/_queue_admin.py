"""The queue commands: ``reactor dead-letters list|replay|purge`` and ``reactor replay``.

They work on any queue that keeps its dead letters (a :class:`reactor.abc.DeadLetterStore`),
built from ``--queue URL`` by :func:`reactor.queues.from_url`. An SQLite queue's file has
one owner at a time, so for it ``list`` reads the file read-only (it works while the app
runs) and the changes need the app stopped; a broker's queue is opened for the command,
its methods called, and closed, while the app may run elsewhere.
"""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final, TypeVar

import anyio
import attrs

from reactor import (
    ConsumerNotFound,
    DeadLetterNotFound,
    LetterId,
    QueueFileError,
    QueueInUseError,
    QueueUnavailableError,
    StoredDeadLetter,
)
from reactor.abc import DeadLetterStore, EventQueue
from reactor.queues.sqlite import SQLiteQueue, read_dead_letters

from ._options import ConfigError, argument_type, build_queue, failure, pick, redacted, usage_error

_QUEUE_ENV_HELP: Final = """\
environment variables (a command-line argument wins over its variable):
  REACTOR_QUEUE  --queue
"""
_QUEUE_HELP: Final = (
    "the app's queue, by the URL the app runs with (the same stream and group): "
    "sqlite:///events.db (a file, relative to the current directory; "
    "sqlite:////abs/path/events.db), redis://host:6379/0?stream=S&group=G, "
    "nats://host:4222?stream=S&group=G, or any queue that keeps dead letters "
    "(default: $REACTOR_QUEUE)"
)
_TIME_HELP: Final = """\
TIME is an ISO 8601 time with a time zone (2026-11-30T10:00:00Z or
2026-11-30T10:00:00+01:00), a date (2026-11-30, meaning midnight UTC), or a
duration meaning that long ago (90s, 15m, 2h, 3d, 1w, 1h30m). A time without a
time zone (2026-11-30T10:00:00) is refused rather than guessed."""
#: Units of the relative times of ``reactor replay`` (``15m``: 15 minutes ago).
_DURATION_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_DURATION: Final = re.compile(r"(?:\d+(?:\.\d+)?[smhdw])+")
_DURATION_PART: Final = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
#: The longest error message shown in the table of ``reactor dead-letters list``.
_ERROR_WIDTH: Final = 60

_T = TypeVar("_T")


def add_queue_commands(commands: Any) -> None:
    """Add ``reactor dead-letters ...`` and ``reactor replay`` to the subcommands.

    :param commands: what the parser's ``add_subparsers()`` returned.
    """
    queue_option = argparse.ArgumentParser(add_help=False)
    queue_option.add_argument("--queue", metavar="URL", help=_QUEUE_HELP)
    common: dict[str, Any] = {
        "parents": [queue_option],
        "epilog": _QUEUE_ENV_HELP,
        "formatter_class": argparse.RawDescriptionHelpFormatter,
    }

    dead_letters = commands.add_parser(
        "dead-letters",
        help="list, replay or purge the dead letters a queue keeps",
        description=(
            "List, replay or purge the dead letters a queue keeps (sqlite://, redis://,\n"
            "nats://, or any queue that keeps dead letters), named by --queue URL."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = dead_letters.add_subparsers(title="actions", dest="action", required=True)

    listing = actions.add_parser(
        "list",
        help="show the stored dead letters, oldest first",
        description=(
            "Show the stored dead letters, oldest first. This works while the app runs:\n"
            "an SQLite queue's file is read read-only, other queues are shared."
        ),
        **common,
    )
    listing.add_argument("--consumer", metavar="NAME", help="only this consumer's letters")
    listing.add_argument("--limit", metavar="N", type=_positive_int, help="show at most N letters")
    listing.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object per line: id, consumer, error_type, error, attempts, "
        "first_failed_at, last_failed_at, dead_at, event (the CloudEvents JSON object, "
        "null for a damaged event) and body (the stored text of a damaged event, else null)",
    )
    listing.set_defaults(handler=_dead_letters_list)

    for name, summary, description, handler in (
        (
            "replay",
            "publish the selected dead letters' events again and remove the letters",
            "Publish the selected dead letters' events again, each to its consumer only,\n"
            "and remove the letters. Letters of damaged events cannot be replayed (purge\n"
            "them). On an SQLite queue the app must be stopped (inside it, call\n"
            "queue.replay_dead_letters()) and the events are delivered when it next runs;\n"
            "other queues deliver them at once if the app runs.",
            _dead_letters_replay,
        ),
        (
            "purge",
            "delete the selected dead letters",
            "Delete the selected dead letters. On an SQLite queue the app must be\n"
            "stopped: inside it, call queue.purge_dead_letters().",
            _dead_letters_purge,
        ),
    ):
        action = actions.add_parser(name, help=summary, description=description, **common)
        selection = action.add_mutually_exclusive_group(required=True)
        selection.add_argument(
            "--all",
            action="store_true",
            help="every dead letter"
            + (" (but those of damaged events)" if name == "replay" else ""),
        )
        selection.add_argument(
            "--id",
            metavar="ID",
            dest="ids",
            type=_letter_id,
            action="extend",
            nargs="+",
            help="the letters with these ids, as listed by 'reactor dead-letters list': "
            "numbers, or strings such as a Redis entry id 1733400000000-0 "
            "(repeat --id or give several)",
        )
        selection.add_argument("--consumer", metavar="NAME", help="every letter of this consumer")
        action.set_defaults(handler=handler)

    replay = commands.add_parser(
        "replay",
        help="publish again the acknowledged events a queue kept",
        description=(
            "Publish again the events published in [--since, --until) that were\n"
            "acknowledged and are still kept by the queue's retention (only a queue\n"
            "created with a retention keeps any, e.g. SQLiteQueue(..., retention=...)),\n"
            "in their order and with their ids, to the --consumer names given, or to\n"
            "every matching subscription. On an SQLite queue the app must be stopped\n"
            "(inside it, call queue.replay() instead) and they are delivered when it\n"
            "next runs; other queues deliver them at once if the app runs.\n\n"
            "A replay is not a new publication: each event is replayed once, never the\n"
            "copies that earlier replays or dead-letter replays delivered. An event goes\n"
            "to a --consumer only if that consumer's subscription matches it. A consumer\n"
            "name that never used the queue is refused (exit status 1).\n\n"
            f"{_TIME_HELP}"
        ),
        **common,
    )
    replay.add_argument(
        "--since",
        metavar="TIME",
        type=argument_type(_parse_time),
        required=True,
        help="replay events published at or after TIME",
    )
    replay.add_argument(
        "--until",
        metavar="TIME",
        type=argument_type(_parse_time),
        help="... and before TIME (default: no end)",
    )
    replay.add_argument(
        "--consumer",
        metavar="NAME",
        dest="consumers",
        action="append",
        help="deliver them to this consumer only, if its subscription matches them (repeat "
        "for several; default: every subscription whose filter matches)",
    )
    replay.set_defaults(handler=_replay)


@attrs.frozen
class _Target:
    """The queue a command works on.

    :ivar queue: the queue, not opened.
    :ivar store: the same object, as the dead letter store it is.
    :ivar name: how messages name it: the file of an SQLite queue, else its URL (without
        its password).
    """

    queue: EventQueue
    store: DeadLetterStore
    name: str

    @property
    def file(self) -> SQLiteQueue | None:
        """The queue, when it is an SQLite queue: one owner at a time, read read-only."""
        return self.queue if isinstance(self.queue, SQLiteQueue) else None

    @property
    def later(self) -> str:
        """When what a command re-publishes is delivered."""
        if self.file is not None:
            return "when the app next runs"
        return "by the app (now, if it runs)"


def _queue_from(args: argparse.Namespace, environ: Mapping[str, str]) -> _Target:
    """Build the (unopened) queue that ``--queue`` or ``REACTOR_QUEUE`` names.

    :raises ConfigError: neither is given, the URL is refused, the queue's client library
        is missing, or the queue keeps no dead letters.
    """
    url, origin = pick(args.queue, "--queue", environ, "REACTOR_QUEUE", "")
    if not url:
        raise ConfigError(
            "no queue given: pass --queue URL (sqlite:///events.db, redis://..., nats://...) "
            "or set REACTOR_QUEUE"
        )
    queue = build_queue(url, origin)
    # Named before the test below, which mypy's narrowing would otherwise carry over.
    name = str(queue.path) if isinstance(queue, SQLiteQueue) else redacted(url)
    if not isinstance(queue, DeadLetterStore):
        raise ConfigError(
            f"{origin}: {redacted(url)!r} is a {type(queue).__qualname__}, which keeps no dead "
            "letters and no events to replay; name the queue of an app that keeps them "
            "(sqlite:///events.db, redis://..., nats://...)"
        )
    return _Target(queue, queue, name)


async def _opened(target: _Target, work: Callable[[DeadLetterStore], Awaitable[_T]]) -> _T:
    """Open the queue, run ``work(store)``, close the queue.

    close() runs in the same task and cancel scope as open(), as the app calls them: a
    queue may enter a task group in open() and leave it in close().
    """
    try:
        await target.queue.open()
    except (QueueFileError, QueueUnavailableError):
        raise
    except Exception as exc:
        if target.file is not None:
            raise  # the file's errors are reported as they always were
        # A broker's client has errors of its own (a refused connection, a failed
        # login): the command says which, on one line.
        raise _OpenFailed(f"cannot open the queue: {type(exc).__qualname__}: {exc}") from exc
    try:
        return await work(target.store)
    finally:
        await target.queue.close()


def _dead_letters_list(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    try:
        target = _queue_from(args, environ)
    except ConfigError as exc:
        return usage_error(str(exc))

    async def read(store: DeadLetterStore) -> list[StoredDeadLetter]:
        return await store.dead_letters(consumer=args.consumer, limit=args.limit)

    try:
        if target.file is not None:
            # Read-only, without taking the file: this works while the app runs.
            letters = read_dead_letters(target.file.path, consumer=args.consumer, limit=args.limit)
        else:
            letters = anyio.run(_opened, target, read)
    except (QueueFileError, QueueUnavailableError, OSError, _OpenFailed) as exc:
        return failure(f"{target.name}: {exc}" if target.file is None else str(exc))
    out = sys.stdout
    if args.json:
        for letter in letters:
            out.write(json.dumps(_letter_json(letter)) + "\n")
    elif letters:
        # Line by line: one big write to a pipe that its reader closes early is cut
        # short without an error, and the command would not know (see main()).
        out.writelines(_letter_table(letters))
    else:
        whose = "" if args.consumer is None else f" of consumer {args.consumer!r}"
        out.write(f"no dead letters{whose} in {target.name}\n")
    return 0


def _letter_json(letter: StoredDeadLetter) -> dict[str, object]:
    """A dead letter as a JSON object: the event is its CloudEvents JSON object."""
    event: object = None
    if letter.event is not None:
        try:
            event = json.loads(letter.body)
        except ValueError:
            event = None
    return {
        "id": letter.id,
        "consumer": letter.consumer,
        "error_type": letter.error_type,
        "error": letter.error,
        "attempts": letter.attempts,
        "first_failed_at": letter.first_failed_at.isoformat(),
        "last_failed_at": letter.last_failed_at.isoformat(),
        "dead_at": letter.dead_at.isoformat(),
        "event": event,
        "body": None if event is not None else letter.body.decode("utf-8", "replace"),
    }


def _letter_table(letters: Sequence[StoredDeadLetter]) -> list[str]:
    """Format dead letters as the lines of a table with a header line."""
    rows = [("ID", "CONSUMER", "ATTEMPTS", "LAST FAILED (UTC)", "ERROR", "EVENT")]
    for letter in letters:
        error = " ".join(letter.error.split())
        if len(error) > _ERROR_WIDTH:
            error = error[: _ERROR_WIDTH - 3] + "..."
        rows.append(
            (
                str(letter.id),
                "-" if letter.consumer is None else letter.consumer,
                str(letter.attempts),
                _format_time(letter.last_failed_at),
                f"{letter.error_type}: {error}" if error else letter.error_type,
                "(damaged)" if letter.event is None else f"{letter.event.type} {letter.event.id}",
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]) - 1)]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]).rstrip() + "\n")
    return lines


def _format_time(moment: datetime) -> str:
    """A time in UTC to the second, in the form ``--since`` accepts."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _OpenFailed(Exception):
    """A queue that is not a file could not be opened; the message says why."""


class _IdsRefused(Exception):
    """The queue refused the kind of the ids given (a number where its ids are strings)."""


async def _with_ids(args: argparse.Namespace, call: Awaitable[_T]) -> _T:
    """Await a store method called with ``args.ids``; a TypeError about them is the user's."""
    try:
        return await call
    except TypeError as exc:
        if getattr(args, "ids", None) is None:
            raise
        raise _IdsRefused(str(exc)) from exc


class _Stop(Exception):
    """A queue command stops with this exit status; its message is written already."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def _change_queue(
    args: argparse.Namespace,
    environ: Mapping[str, str],
    work: Callable[[DeadLetterStore], Awaitable[_T]],
    inside: str,
) -> tuple[_T, _Target]:
    """Build the queue, open it, run *work* on it, and close it, in anyio.

    An SQLite queue's file is checked read-only first, and must not be in use by a
    running app.

    :param inside: the call that does the same inside the app, for the "in use" error.
    :raises _Stop: after writing the error, for a usage error or an unusable queue.
    :return: what *work* returned, and the queue.
    """
    try:
        target = _queue_from(args, environ)
        if target.file is not None and getattr(args, "ids", None):
            _check_file_ids(args.ids)
    except ConfigError as exc:
        raise _Stop(usage_error(str(exc))) from None
    try:
        if target.file is not None:
            # Checked read-only first: SQLiteQueue.open() would create a missing file, and
            # turn an empty one into a queue.
            read_dead_letters(target.file.path, limit=1)
        return anyio.run(_opened, target, work), target
    except QueueInUseError as exc:
        raise _Stop(failure(f"{exc}; stop the app first, or call {inside} inside it")) from None
    except _IdsRefused as exc:
        raise _Stop(usage_error(f"argument --id: {exc}")) from None
    except (QueueFileError, ConsumerNotFound, DeadLetterNotFound) as exc:
        raise _Stop(failure(str(exc))) from None
    except (QueueUnavailableError, OSError, _OpenFailed) as exc:
        raise _Stop(failure(str(exc) if target.file else f"{target.name}: {exc}")) from None
    except sqlite3.Error as exc:  # the queue's methods let SQLite's errors through
        raise _Stop(failure(f"cannot change {target.name}: {exc}")) from None


def _check_file_ids(ids: Sequence[LetterId]) -> None:
    """:raises ConfigError: an id is not a number, which no letter of a file has"""
    for letter_id in ids:
        if isinstance(letter_id, str):
            raise ConfigError(
                f"argument --id: {letter_id!r} is not a whole number, as the ids of an "
                "SQLite queue's letters are"
            )


def _dead_letters_replay(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    async def replay(store: DeadLetterStore) -> tuple[int, int]:
        count = await _with_ids(args, store.replay_dead_letters(args.ids, consumer=args.consumer))
        damaged = 0
        if args.all:  # every replayable letter is gone: what is left is damaged
            damaged = sum(letter.consumer is None for letter in await store.dead_letters())
        return count, damaged

    try:
        (count, damaged), target = _change_queue(
            args, environ, replay, "queue.replay_dead_letters()"
        )
    except _Stop as stop:
        return stop.status
    if count:
        sys.stdout.write(
            f"replayed {_plural(count, 'dead letter')}: "
            f"{'its event is' if count == 1 else 'their events are'} queued again for "
            f"{'its consumer' if count == 1 else 'their consumers'}, and delivered "
            f"{target.later}\n"
        )
    else:
        sys.stdout.write("replayed no dead letters: none matched\n")
    if damaged:
        sys.stderr.write(
            f"reactor: {_plural(damaged, 'dead letter')} of damaged events cannot be "
            "replayed; inspect them with 'reactor dead-letters list' and remove them with "
            "'reactor dead-letters purge'\n"
        )
    return 0


def _dead_letters_purge(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    async def purge(store: DeadLetterStore) -> int:
        return await _with_ids(args, store.purge_dead_letters(args.ids, consumer=args.consumer))

    try:
        count, _ = _change_queue(args, environ, purge, "queue.purge_dead_letters()")
    except _Stop as stop:
        return stop.status
    sys.stdout.write(f"purged {_plural(count, 'dead letter')}\n")
    return 0


def _replay(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    since: datetime = args.since
    until: datetime | None = args.until
    if until is not None and until <= since:
        return usage_error(
            f"--until ({_format_time(until)}) must be later than --since ({_format_time(since)})"
        )

    async def replay(store: DeadLetterStore) -> int:
        return await store.replay(since, until=until, consumers=args.consumers)

    try:
        count, target = _change_queue(args, environ, replay, "queue.replay()")
    except _Stop as stop:
        return stop.status
    window = f"since {_format_time(since)}"
    if until is not None:
        window += f" and before {_format_time(until)}"
    to = "" if args.consumers is None else f" for {', '.join(sorted(set(args.consumers)))}"
    if count:
        sys.stdout.write(
            f"replayed {_plural(count, 'event')} published {window}{to}; "
            f"{'it is' if count == 1 else 'they are'} delivered {target.later}\n"
        )
    else:
        option = "SQLiteQueue(..., retention=...)" if target.file else "its retention option"
        sys.stdout.write(f"replayed no events: none kept was published {window}\n")
        sys.stderr.write(
            "reactor: only acknowledged events kept by the queue's retention can be "
            f"replayed ({option})\n"
        )
    return 0


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _letter_id(text: str) -> LetterId:
    """Parse a letter id: digits are a number (SQLite's and NATS's ids), anything else a
    string (a Redis stream entry id, ``1733400000000-0``); the queue refuses ids it does
    not hold."""
    text = text.strip()
    if text.isdigit():
        return _positive_int(text)
    if not text:
        raise argparse.ArgumentTypeError("an empty id names no letter")
    return text


def _positive_int(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be 1 or more")
    return number


def _parse_time(text: str, *, now: datetime | None = None) -> datetime:
    """Parse a ``reactor replay`` time into an aware datetime.

    Accepted: an ISO 8601 time with a time zone (``2026-11-30T10:00:00Z``,
    ``2026-11-30T10:00:00+01:00``), a date (``2026-11-30``, midnight UTC), or a duration
    that long before *now*: a number and a unit among ``s``, ``m``, ``h``, ``d`` and
    ``w``, possibly several (``15m``, ``2h``, ``1h30m``, ``1.5d``).

    :param text: the time as given.
    :param now: the time durations count back from (default: the current time).
    :raises ValueError: the text is none of these, or a time without a time zone; the
        message completes a sentence about *text*.
    :return: the time, aware.
    """
    text = text.strip()
    if _DURATION.fullmatch(text):
        seconds = sum(
            float(number) * _DURATION_UNITS[unit] for number, unit in _DURATION_PART.findall(text)
        )
        try:
            return (datetime.now(UTC) if now is None else now) - timedelta(seconds=seconds)
        except OverflowError:
            raise ValueError("is too long ago") from None
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        try:
            day = date.fromisoformat(text)
        except ValueError:
            raise ValueError("is not a valid date") from None
        return datetime(day.year, day.month, day.day, tzinfo=UTC)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            "is not a time: give an ISO 8601 time with a time zone "
            "(2026-11-30T10:00:00Z), a date (2026-11-30) or a duration ago (15m, 2h, 3d)"
        ) from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(
            "has no time zone: add Z for UTC or an offset such as +01:00 (2026-11-30T10:00:00Z)"
        )
    return moment
