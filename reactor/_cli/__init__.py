"""The ``reactor`` command line.

``reactor run APP`` imports a :class:`~reactor.Reactor` and runs it until SIGINT or
SIGTERM: the first signal drains in-flight work within the graceful timeout, a second
one forces the exit. ``APP`` follows uvicorn's import-string rules::

    reactor run shop.events:app             # module "shop.events", attribute "app"
    reactor run shop:services.app           # the attribute may be dotted
    reactor run examples/quickstart.py:app  # a file path works too
    reactor run --factory shop:create_app   # call a zero-argument factory

Every option also reads a ``REACTOR_*`` environment variable; a command-line argument
wins over the variable, which wins over the default.

Exit status: the status :meth:`Reactor.run() <reactor.Reactor.run>` returns, 0 after a
graceful stop (everything in flight drained, or what was left was cancelled at the
graceful timeout, which is logged) and 1 when a second signal forced the stop; 2 for a
usage error (a bad
argument, environment variable or import string). An exception raised by the user's
own code (while it is imported, or by a failing source) propagates with its traceback
and exits 1, as under ``python -m``.

``reactor bench [--quick] [--json out.json] [--plots DIR] ...`` runs the benchmark suite:
reactor, hand-written baselines and the peer libraries of the ``bench`` extra on the same
workloads, each measurement in a child process (``reactor bench --help``).

The other commands work on the file of a :class:`~reactor.queues.sqlite.SQLiteQueue`,
named by ``--queue sqlite:///events.db`` (relative to the current directory; four
slashes for an absolute path) or the ``REACTOR_QUEUE`` variable::

    reactor dead-letters list --queue sqlite:///events.db [--consumer NAME] [--limit N] [--json]
    reactor dead-letters replay --queue sqlite:///events.db (--all | --id N ... | --consumer NAME)
    reactor dead-letters purge --queue sqlite:///events.db (--all | --id N ... | --consumer NAME)
    reactor replay --queue sqlite:///events.db --since 2h [--until TIME] [--consumer NAME ...]

``dead-letters list`` reads the file read-only, so it works while the app runs. The
others change the file, which one process at a time owns: they need the app stopped
(inside the app, call the queue's ``replay_dead_letters()``, ``purge_dead_letters()``
or ``replay()``). What they re-publish is delivered when the app next runs. They exit
with 0 on success, 1 when the file cannot be used (missing, not a reactor queue,
damaged, or owned by a running app) or the selection names what the file does not
hold (a consumer name it has never seen, or an ``--id`` of no dead letter: then
nothing is changed), and 2 for a usage error.

A replay is not a new publication. ``reactor replay`` replays each event published in
the window once, to the consumers it was meant for: every subscription whose pattern
and filter match it when it is delivered, or the ``--consumer`` names among them;
never the copies made by earlier replays or dead-letter replays, which the retention
does not keep.

Output to a closed pipe (``reactor dead-letters list --json | head -1``) ends the
command quietly with status 141, as a shell reports a command killed by SIGPIPE
(128 + 13), so that ``set -o pipefail`` scripts see what they see with other tools.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import json
import logging
import math
import os
import re
import sqlite3
import sys
from collections.abc import Callable, Coroutine, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as distribution_version
from pathlib import Path
from types import ModuleType
from typing import Any, Final, TypeVar

import anyio
import attrs

from ._exceptions import (
    AppImportError,
    ConsumerNotFound,
    DeadLetterNotFound,
    QueueFileError,
    QueueInUseError,
    QueueUnavailableError,
)
from ._reactor import Reactor
from .queues import sqlite as sqlite_queue
from .queues.sqlite import SQLiteQueue, StoredDeadLetter

__all__ = [
    "ConfigError",
    "RunSettings",
    "build_parser",
    "import_app",
    "main",
    "resolve_run_settings",
]

BACKENDS: Final = ("asyncio", "trio")
LOOPS: Final = ("auto", "asyncio", "uvloop")
LOG_LEVELS: Final = ("critical", "error", "warning", "info", "debug")

#: Exit status for a usage error, the same as argparse's.
EXIT_USAGE: Final = 2
#: Exit status when a queue file cannot be used: missing, not a queue, damaged or owned.
EXIT_FAILURE: Final = 1
#: Exit status when standard output was closed by its reader (``| head``): 128 + SIGPIPE,
#: what a shell reports for a tool that the signal ended.
EXIT_BROKEN_PIPE: Final = 141

_LOG_FORMAT: Final = "%(asctime)s %(levelname)-8s %(name)s: %(message)s"
_ENV_HELP: Final = """\
environment variables (a command-line argument wins over its variable):
  REACTOR_APP_DIR           --app-dir
  REACTOR_BACKEND           --backend
  REACTOR_LOOP              --loop
  REACTOR_GRACEFUL_TIMEOUT  --graceful-timeout
  REACTOR_LOG_LEVEL         --log-level
"""
_QUEUE_ENV_HELP: Final = """\
environment variables (a command-line argument wins over its variable):
  REACTOR_QUEUE  --queue
"""
_QUEUE_HELP: Final = (
    "the queue file: sqlite:///events.db (relative to the current directory) or "
    "sqlite:////abs/path/events.db (default: $REACTOR_QUEUE)"
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

logger = logging.getLogger("reactor.cli")


class ConfigError(ValueError):
    """An argument or environment variable has a value ``reactor run`` cannot use."""


@attrs.frozen(kw_only=True)
class RunSettings:
    """The resolved configuration of one ``reactor run``.

    :ivar app: the import string or file path of the app (``module:attr``).
    :ivar app_dir: the directory put first on :data:`sys.path` before importing.
    :ivar factory: whether ``app`` names a zero-argument callable returning the app.
    :ivar backend: the anyio backend, ``"asyncio"`` or ``"trio"``.
    :ivar use_uvloop: whether the asyncio backend runs on uvloop.
    :ivar graceful_timeout: seconds to drain after the first signal, or ``None`` to
        keep the app's own ``graceful_timeout``.
    :ivar log_level: the level of the root logger, in lower case.
    """

    app: str
    app_dir: str
    factory: bool
    backend: str
    use_uvloop: bool
    graceful_timeout: float | None
    log_level: str


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``reactor`` command line.

    :param argv: the arguments after the program name; ``None`` reads :data:`sys.argv`.
    :return: the process exit status: for ``reactor run``, 0 after a graceful stop, 1
        when a second signal forced it; for the queue commands, 0 on success and 1 when
        the queue file cannot be used; 2 for a usage error; 141 when standard output
        was closed by its reader (``reactor dead-letters list | head -1``).
    """
    try:
        status = _main(argv)
        # Written out here, so that a reader that went away shows up below, not as an
        # error printed by the interpreter's final flush.
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader has all it wanted, as with any Unix tool: end quietly. Standard
        # output goes to devnull, so that the interpreter's final flush of what is
        # left in its buffer does not fail again (the pattern of Python's signal docs).
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        finally:
            os.close(devnull)
        return EXIT_BROKEN_PIPE
    return status


def _main(argv: Sequence[str] | None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["bench"]:
        # The suite has its own parser (and imports nothing until asked to run).
        from ._bench._suite import main as bench

        return bench(arguments[1:], prog="reactor bench")
    parser = build_parser()
    try:
        args = parser.parse_args(arguments)
    except SystemExit as exc:
        # argparse exits for --help, --version and bad arguments; return the status
        # instead so that main() can be called (and tested) like a function.
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    command: Callable[[argparse.Namespace, Mapping[str, str]], int] = args.handler
    return command(args, os.environ)


def resolve_run_settings(args: argparse.Namespace, environ: Mapping[str, str]) -> RunSettings:
    """Combine the parsed arguments of ``reactor run`` with the environment.

    Each value comes from its command-line argument if given, else from its
    ``REACTOR_*`` environment variable if set and not empty, else from the default.

    :param args: the namespace returned by the ``reactor`` argument parser.
    :param environ: the environment, usually :data:`os.environ`.
    :raises ConfigError: an environment variable has an invalid value, or the loop
        and backend do not go together.
    :return: the resolved settings.
    """
    backend, backend_origin = _pick(
        args.backend, "--backend", environ, "REACTOR_BACKEND", "asyncio"
    )
    backend = _check_choice(backend.lower(), BACKENDS, backend_origin)
    loop, loop_origin = _pick(args.loop, "--loop", environ, "REACTOR_LOOP", "auto")
    loop = _check_choice(loop.lower(), LOOPS, loop_origin)
    level, level_origin = _pick(args.log_level, "--log-level", environ, "REACTOR_LOG_LEVEL", "info")
    level = _check_choice(level.lower(), LOG_LEVELS, level_origin)
    app_dir, _ = _pick(args.app_dir, "--app-dir", environ, "REACTOR_APP_DIR", ".")

    timeout: float | None = args.graceful_timeout
    if timeout is None and environ.get("REACTOR_GRACEFUL_TIMEOUT"):
        text = environ["REACTOR_GRACEFUL_TIMEOUT"]
        try:
            timeout = _parse_timeout(text)
        except ValueError as exc:
            raise ConfigError(f"REACTOR_GRACEFUL_TIMEOUT={text!r} {exc}") from None

    return RunSettings(
        app=args.app,
        app_dir=app_dir,
        factory=args.factory,
        backend=backend,
        use_uvloop=_use_uvloop(loop, loop_origin, backend),
        graceful_timeout=timeout,
        log_level=level,
    )


def import_app(app: str, *, app_dir: str | None = ".", factory: bool = False) -> Reactor:
    """Import the :class:`~reactor.Reactor` that an import string names.

    ``app`` is ``module:attribute`` (the attribute may be dotted, ``module:a.b``) or
    ``path/to/file.py:attribute``: a string whose module part ends in ``.py`` or
    contains a path separator is a file, loaded as a module named after its stem and
    registered in :data:`sys.modules` (so dataclasses and pickle find it), with the
    file's directory put on :data:`sys.path` as ``python path/to/file.py`` would.

    A :exc:`ModuleNotFoundError` for the named module (or a package it lives in)
    becomes an :exc:`~reactor.AppImportError`; one raised while the module itself runs,
    for some other module it imports, is a bug in that module and propagates, as does
    any other exception raised by the user's code.

    :param app: the import string.
    :param app_dir: a directory to put first on :data:`sys.path`, or ``None`` for none.
    :param factory: ``app`` names a callable taking no arguments that returns the app.
    :raises reactor.AppImportError: the string is malformed, the module or file does
        not exist, the attribute is missing, or it is not a ``Reactor``.
    :return: the app.
    """
    module_part, sep, attr_part = app.rpartition(":")
    if not sep or not module_part or not attr_part:
        raise AppImportError(
            f"app {app!r} must be in the form 'module:attribute' or 'path/to/file.py:attribute'"
        )
    attrs_path = attr_part.split(".")
    if not all(part.isidentifier() for part in attrs_path):
        raise AppImportError(f"app {app!r}: {attr_part!r} is not a valid attribute name")

    if app_dir is not None:
        sys.path.insert(0, os.path.abspath(app_dir))
    if _is_file_path(module_part):
        module = _load_file(module_part)
    else:
        module = _import_module(module_part, app)

    obj: object = module
    for depth, part in enumerate(attrs_path):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            where = (
                f" ({'.'.join(attrs_path[:depth])!r} has no attribute {part!r})" if depth else ""
            )
            raise AppImportError(
                f"attribute {attr_part!r} not found in module {module.__name__!r}{where}"
            ) from None

    if factory:
        obj = _call_factory(obj, app)
        if not isinstance(obj, Reactor):
            raise AppImportError(
                f"factory {app!r} returned {_describe(obj)}, not a reactor.Reactor"
            )
    elif not isinstance(obj, Reactor):
        if isinstance(obj, type) and issubclass(obj, Reactor):
            hint = "; create an instance (app = Reactor()) or pass --factory"
        elif callable(obj) and not isinstance(obj, type):
            hint = "; if it is a factory that returns one, pass --factory"
        else:
            hint = ""
        raise AppImportError(f"{app!r} is {_describe(obj)}, not a reactor.Reactor{hint}")
    return obj


def build_parser() -> argparse.ArgumentParser:
    """Build the parser of the ``reactor`` command line.

    :return: the parser; ``reactor run`` options default to ``None`` when not given.
    """
    parser = argparse.ArgumentParser(
        prog="reactor",
        description="reactor: an embeddable, event-driven runtime for async Python.",
    )
    parser.add_argument("--version", action="version", version=f"reactor {_version()}")
    commands = parser.add_subparsers(title="commands", dest="command", required=True)

    run = commands.add_parser(
        "run",
        help="run an app until SIGINT or SIGTERM",
        # Wrapped by hand: the raw formatter keeps the epilog's table intact.
        description=(
            "Import APP and run it until SIGINT or SIGTERM. The first signal stops the\n"
            "sources and drains in-flight work within the graceful timeout; a second\n"
            "signal forces the exit."
        ),
        epilog=_ENV_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument(
        "app",
        metavar="APP",
        help="'module:attribute' or 'path/to/file.py:attribute' naming a reactor.Reactor",
    )
    # Defaults are None so that resolve_run_settings() can tell "not given" (fall back to
    # the environment) from "given".
    run.add_argument(
        "--app-dir",
        metavar="DIR",
        help="directory to put first on the module search path (default: the current directory)",
    )
    run.add_argument(
        "--factory",
        action="store_true",
        help="APP names a callable taking no arguments that returns the reactor.Reactor",
    )
    run.add_argument(
        "--backend", type=str.lower, choices=BACKENDS, help="anyio backend (default: asyncio)"
    )
    run.add_argument(
        "--loop",
        type=str.lower,
        choices=LOOPS,
        help="asyncio event loop; auto uses uvloop when it is installed (default: auto)",
    )
    run.add_argument(
        "--graceful-timeout",
        metavar="SECONDS",
        type=_timeout_argument,
        help="seconds to drain in-flight work after the first signal "
        "(default: the app's graceful_timeout)",
    )
    run.add_argument(
        "--log-level", type=str.lower, choices=LOG_LEVELS, help="logging level (default: info)"
    )
    run.set_defaults(handler=_run)
    _add_queue_commands(commands)
    # Listed for --help only: main() hands "reactor bench ..." to the suite's own parser.
    commands.add_parser(
        "bench",
        help="benchmark reactor against hand-written baselines and peer libraries "
        "(reactor bench --help)",
        add_help=False,
    )
    return parser


def _add_queue_commands(commands: Any) -> None:
    """Add ``reactor dead-letters ...`` and ``reactor replay`` to the subcommands."""
    queue_option = argparse.ArgumentParser(add_help=False)
    queue_option.add_argument("--queue", metavar="URL", help=_QUEUE_HELP)
    common: dict[str, Any] = {
        "parents": [queue_option],
        "epilog": _QUEUE_ENV_HELP,
        "formatter_class": argparse.RawDescriptionHelpFormatter,
    }

    dead_letters = commands.add_parser(
        "dead-letters",
        help="list, replay or purge the dead letters stored in a queue file",
        description="List, replay or purge the dead letters stored in an SQLiteQueue's file.",
    )
    actions = dead_letters.add_subparsers(title="actions", dest="action", required=True)

    listing = actions.add_parser(
        "list",
        help="show the stored dead letters, oldest first",
        description=(
            "Show the stored dead letters, oldest first. The file is read read-only, so\n"
            "this works while the app runs."
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
            "and remove the letters; the events are delivered when the app next runs.\n"
            "Letters of damaged events cannot be replayed (purge them).\n"
            "The app must be stopped: inside it, call queue.replay_dead_letters().",
            _dead_letters_replay,
        ),
        (
            "purge",
            "delete the selected dead letters",
            "Delete the selected dead letters.\n"
            "The app must be stopped: inside it, call queue.purge_dead_letters().",
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
            metavar="N",
            dest="ids",
            type=_positive_int,
            action="extend",
            nargs="+",
            help="the letters with these ids, as listed by 'reactor dead-letters list' "
            "(repeat --id or give several)",
        )
        selection.add_argument("--consumer", metavar="NAME", help="every letter of this consumer")
        action.set_defaults(handler=handler)

    replay = commands.add_parser(
        "replay",
        help="publish again the acknowledged events a queue file kept",
        description=(
            "Publish again the events published in [--since, --until) that were\n"
            "acknowledged and are still kept by the queue's retention (only a queue\n"
            "created with SQLiteQueue(..., retention=...) keeps any), in their order and\n"
            "with their ids. They are delivered when the app next runs, to the --consumer\n"
            "names given, or to every matching subscription. The app must be stopped:\n"
            "inside it, call queue.replay() instead.\n\n"
            "A replay is not a new publication: each event is replayed once, never the\n"
            "copies that earlier replays or dead-letter replays delivered. An event goes\n"
            "to a --consumer only if that consumer's subscription matches it. A consumer\n"
            "name that never used the file is refused (exit status 1).\n\n"
            f"{_TIME_HELP}"
        ),
        **common,
    )
    replay.add_argument(
        "--since",
        metavar="TIME",
        type=_time_argument,
        required=True,
        help="replay events published at or after TIME",
    )
    replay.add_argument(
        "--until",
        metavar="TIME",
        type=_time_argument,
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


def _run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    try:
        settings = resolve_run_settings(args, environ)
    except ConfigError as exc:
        return _usage_error(str(exc))
    # Configure logging before the import, so that the app's import-time logs show; the
    # library itself never configures logging, the command line is the application.
    logging.basicConfig(level=settings.log_level.upper(), format=_LOG_FORMAT, stream=sys.stderr)
    try:
        app = import_app(settings.app, app_dir=settings.app_dir, factory=settings.factory)
    except AppImportError as exc:
        return _usage_error(str(exc))

    logger.info(
        "starting %s on %s%s (pid %d)",
        settings.app,
        settings.backend,
        " with uvloop" if settings.use_uvloop else "",
        os.getpid(),
    )
    return app.run(
        backend=settings.backend,
        use_uvloop=settings.use_uvloop,
        graceful_timeout=settings.graceful_timeout,
    )


def _usage_error(message: str) -> int:
    sys.stderr.write(f"reactor: error: {message}\n")
    return EXIT_USAGE


def _failure(message: str) -> int:
    sys.stderr.write(f"reactor: error: {message}\n")
    return EXIT_FAILURE


# -- the queue commands -----------------------------------------------------------------


def _queue_from(args: argparse.Namespace, environ: Mapping[str, str]) -> SQLiteQueue:
    """Build the (unopened) queue that ``--queue`` or ``REACTOR_QUEUE`` names.

    :raises ConfigError: neither is given, or the URL is not an ``sqlite://`` one.
    """
    url, origin = _pick(args.queue, "--queue", environ, "REACTOR_QUEUE", "")
    if not url:
        raise ConfigError("no queue given: pass --queue sqlite:///events.db or set REACTOR_QUEUE")
    try:
        return SQLiteQueue.from_url(url)
    except ValueError as exc:
        raise ConfigError(f"{origin}: {exc}") from None


def _dead_letters_list(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    try:
        queue = _queue_from(args, environ)
    except ConfigError as exc:
        return _usage_error(str(exc))
    try:
        letters = sqlite_queue.read_dead_letters(
            queue.path, consumer=args.consumer, limit=args.limit
        )
    except (QueueFileError, QueueUnavailableError) as exc:
        return _failure(str(exc))
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
        out.write(f"no dead letters{whose} in {queue.path}\n")
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


_T = TypeVar("_T")


class _Stop(Exception):
    """A queue command stops with this exit status; its message is written already."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def _change_queue(
    args: argparse.Namespace,
    environ: Mapping[str, str],
    work: Callable[[SQLiteQueue], Coroutine[Any, Any, _T]],
    inside: str,
) -> _T:
    """Check the queue file, then run *work* on the queue (which it opens) in anyio.

    :param inside: the call that does the same inside the app, for the "in use" error.
    :raises _Stop: after writing the error, for a usage error or an unusable file.
    """
    try:
        queue = _queue_from(args, environ)
    except ConfigError as exc:
        raise _Stop(_usage_error(str(exc))) from None
    try:
        # Checked read-only first: SQLiteQueue.open() would create a missing file, and
        # turn an empty one into a queue.
        sqlite_queue.read_dead_letters(queue.path, limit=1)
        return anyio.run(work, queue)
    except QueueInUseError as exc:
        raise _Stop(_failure(f"{exc}; stop the app first, or call {inside} inside it")) from None
    except (QueueFileError, QueueUnavailableError, ConsumerNotFound, DeadLetterNotFound) as exc:
        raise _Stop(_failure(str(exc))) from None
    except sqlite3.Error as exc:  # the queue's methods let SQLite's errors through
        raise _Stop(_failure(f"cannot change {queue.path}: {exc}")) from None


def _dead_letters_replay(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    async def replay(queue: SQLiteQueue) -> tuple[int, int]:
        async with queue:
            count = await queue.replay_dead_letters(args.ids, consumer=args.consumer)
            damaged = 0
            if args.all:  # every replayable letter is gone: what is left is damaged
                damaged = sum(letter.consumer is None for letter in await queue.dead_letters())
            return count, damaged

    try:
        count, damaged = _change_queue(args, environ, replay, "queue.replay_dead_letters()")
    except _Stop as stop:
        return stop.status
    if count:
        sys.stdout.write(
            f"replayed {_plural(count, 'dead letter')}: "
            f"{'its event is' if count == 1 else 'their events are'} queued again for "
            f"{'its consumer' if count == 1 else 'their consumers'}, and delivered when "
            "the app next runs\n"
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
    async def purge(queue: SQLiteQueue) -> int:
        async with queue:
            return await queue.purge_dead_letters(args.ids, consumer=args.consumer)

    try:
        count = _change_queue(args, environ, purge, "queue.purge_dead_letters()")
    except _Stop as stop:
        return stop.status
    sys.stdout.write(f"purged {_plural(count, 'dead letter')}\n")
    return 0


def _replay(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    since: datetime = args.since
    until: datetime | None = args.until
    if until is not None and until <= since:
        return _usage_error(
            f"--until ({_format_time(until)}) must be later than --since ({_format_time(since)})"
        )

    async def replay(queue: SQLiteQueue) -> int:
        async with queue:
            return await queue.replay(since, until=until, consumers=args.consumers)

    try:
        count = _change_queue(args, environ, replay, "queue.replay()")
    except _Stop as stop:
        return stop.status
    window = f"since {_format_time(since)}"
    if until is not None:
        window += f" and before {_format_time(until)}"
    to = "" if args.consumers is None else f" for {', '.join(sorted(set(args.consumers)))}"
    if count:
        sys.stdout.write(
            f"replayed {_plural(count, 'event')} published {window}{to}; "
            f"{'it is' if count == 1 else 'they are'} delivered when the app next runs\n"
        )
    else:
        sys.stdout.write(f"replayed no events: none kept was published {window}\n")
        sys.stderr.write(
            "reactor: only acknowledged events kept by the queue's retention can be "
            "replayed (SQLiteQueue(..., retention=...))\n"
        )
    return 0


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


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


def _time_argument(text: str) -> datetime:
    try:
        return _parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} {exc}") from None


def _pick(
    given: str | None, flag: str, environ: Mapping[str, str], variable: str, default: str
) -> tuple[str, str]:
    """Return a value and where it came from, for error messages."""
    if given is not None:
        return given, flag
    # An empty variable counts as unset, as in most shells' ${VAR:-default}.
    if value := environ.get(variable):
        return value, variable
    return default, "default"


def _check_choice(value: str, choices: Sequence[str], origin: str) -> str:
    if value not in choices:
        raise ConfigError(f"{origin}={value!r} is not one of {', '.join(choices)}")
    return value


def _use_uvloop(loop: str, origin: str, backend: str) -> bool:
    if backend != "asyncio":
        if loop != "auto":
            raise ConfigError(f"{origin}={loop!r} applies only to the asyncio backend")
        return False
    if loop == "asyncio":
        return False
    try:
        importlib.import_module("uvloop")
    except ImportError:
        if loop == "uvloop":
            raise ConfigError(
                f"{origin}='uvloop' but uvloop is not installed: pip install 'reactor[uvloop]'"
            ) from None
        return False
    return True


def _parse_timeout(text: str) -> float:
    """Parse seconds; the ValueError's message completes a sentence about *text*."""
    try:
        seconds = float(text)
    except ValueError:
        raise ValueError("is not a number of seconds") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError("must be a finite number of seconds, zero or more")
    return seconds


def _timeout_argument(text: str) -> float:
    try:
        return _parse_timeout(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} {exc}") from None


def _is_file_path(module_part: str) -> bool:
    separators = [sep for sep in (os.sep, os.altsep) if sep]
    return module_part.endswith(".py") or any(sep in module_part for sep in separators)


def _import_module(name: str, app: str) -> ModuleType:
    if not all(part.isidentifier() for part in name.split(".")):
        raise AppImportError(f"app {app!r}: {name!r} is not a valid module name")
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        # Only the module we were asked for, or a package on its way, is "not found";
        # any other missing module was imported by the user's code: their bug, keep
        # the traceback (uvicorn draws the same line).
        if exc.name is None or not (name == exc.name or name.startswith(exc.name + ".")):
            raise
        missing = "" if exc.name == name else f" (no module named {exc.name!r})"
        raise AppImportError(
            f"could not import module {name!r}{missing}; "
            "check the name, or pass --app-dir with the directory that holds it"
        ) from None


def _load_file(module_part: str) -> ModuleType:
    path = Path(module_part).resolve()
    if not path.is_file():
        raise AppImportError(f"file {module_part!r} not found")
    name = path.stem
    existing = sys.modules.get(name)
    if existing is not None:
        existing_file = getattr(existing, "__file__", None)
        if existing_file is not None and Path(existing_file).resolve() == path:
            return existing
        raise AppImportError(
            f"cannot load {module_part!r} as module {name!r}: a module of that name is "
            "already imported; rename the file or use the 'module:attribute' form"
        )
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise AppImportError(f"cannot load {module_part!r}: not a Python source file")
    module = importlib.util.module_from_spec(spec)
    # Sibling imports work as they do under ``python path/to/file.py``.
    sys.path.insert(0, str(path.parent))
    # Registered before it runs: dataclasses, attrs and pickle look classes up by
    # their module's name.
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _call_factory(obj: object, app: str) -> object:
    if not callable(obj):
        raise AppImportError(
            f"{app!r} is {_describe(obj)}, not callable; --factory needs a function "
            "taking no arguments that returns a reactor.Reactor"
        )
    try:
        inspect.signature(obj).bind()
    except TypeError as exc:
        raise AppImportError(f"factory {app!r} cannot be called without arguments: {exc}") from None
    except ValueError:
        pass  # no signature to check (some builtins): just call it
    result: object = obj()
    if inspect.iscoroutine(result):
        result.close()  # never awaited: close it so no RuntimeWarning follows the error
        raise AppImportError(
            f"factory {app!r} is a coroutine function; --factory needs a regular function"
        )
    return result


def _describe(obj: object) -> str:
    """Say what *obj* is, for an error message."""
    if isinstance(obj, type):
        return f"the class {_qualified_name(obj)}"
    if isinstance(obj, ModuleType):
        return f"the module {obj.__name__}"
    if inspect.isroutine(obj):
        return f"the function {_qualified_name(obj)}"
    return f"an object of type {_qualified_name(type(obj))}"


def _qualified_name(obj: object) -> str:
    module = getattr(obj, "__module__", None)
    name = getattr(obj, "__qualname__", None) or repr(obj)
    return name if module in (None, "builtins") else f"{module}.{name}"


def _version() -> str:
    try:
        return distribution_version("reactor")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"
