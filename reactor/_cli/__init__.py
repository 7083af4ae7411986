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

``--queue URL`` (or ``REACTOR_QUEUE``) runs the app on the queue the URL names instead
of the one its module built it with, so that where it is deployed decides, not the
code; the command builds the queue with :func:`reactor.queues.from_url` and gives it to
the app with :meth:`Reactor.use_queue() <reactor.Reactor.use_queue>` before it starts::

    reactor run shop:app --queue memory://
    reactor run shop:app --queue sqlite:///events.db
    reactor run shop:app --queue 'redis://127.0.0.1:6379/0?stream=orders&group=billing'
    REACTOR_QUEUE='nats://127.0.0.1:4222?stream=orders&group=billing' reactor run shop:app

A URL the queue refuses, and a queue whose client library is not installed (the
message names the ``pip install`` command), are usage errors.

``--http HOST:PORT`` (or ``REACTOR_HTTP``; port 0 picks a free one, which the log
says) serves the app's HTTP ingress (``app.asgi``) with uvicorn (the ``serve`` extra),
as a source of the app: the app starts, then the server listens; SIGINT or SIGTERM
stops the server, which finishes the requests it holds, then the app drains. uvicorn's
own signal handlers and logging setup are not installed, and it runs without lifespan
events (the app's lifecycle is the command's). It needs the asyncio backend. An address
that cannot be bound, or a server that stops by itself, stops the app: the command
writes ``reactor: error: cannot serve HTTP on ...`` and exits 1::

    reactor run shop:app --http 127.0.0.1:8000
    reactor run shop:app --http 0.0.0.0:8000 --queue sqlite:///events.db

Logging: the command writes text logs to standard error at ``--log-level``, unless
``--log-format json`` (one JSON object per line, :class:`reactor.JsonFormatter`) or
``--log-config FILE`` (a :func:`logging.config.dictConfig` file: ``.json``, ``.toml``, or
``.yaml`` with PyYAML; ``disable_existing_loggers`` defaults to ``False``) is given (or
``REACTOR_LOG_FORMAT``, ``REACTOR_LOG_CONFIG``). A user's own setup wins otherwise: when
the app's module configures logging as it is imported, the command leaves it alone
(and hands it what was logged during the import).

Exit status: the status :meth:`Reactor.run() <reactor.Reactor.run>` returns, 0 after a
graceful stop (everything in flight drained, or what was left was cancelled at the
graceful timeout, which is logged) and 1 when a second signal forced the stop; 2 for a
usage error (a bad
argument, environment variable or import string). An exception raised by the user's
own code (while it is imported, or by a failing source) propagates with its traceback
and exits 1, as under ``python -m``.

The other commands work on the dead letters and kept events of a queue that stores
them (a :class:`reactor.abc.DeadLetterStore`: :class:`~reactor.queues.sqlite.SQLiteQueue`,
the Redis and NATS queues, or a third party's), named by ``--queue URL`` or the
``REACTOR_QUEUE`` variable (``sqlite:///events.db`` is relative to the current
directory; four slashes for an absolute path)::

    reactor dead-letters list --queue URL [--consumer NAME] [--limit N] [--json]
    reactor dead-letters replay --queue URL (--all | --id ID ... | --consumer NAME)
    reactor dead-letters purge --queue URL (--all | --id ID ... | --consumer NAME)
    reactor replay --queue URL --since 2h [--until TIME] [--consumer NAME ...]

An ``--id`` is what ``dead-letters list`` shows: a number (an SQLite queue's, a NATS
stream sequence) or a string (a Redis stream entry id, ``1733400000000-0``).

An SQLite queue's file has one owner at a time: ``dead-letters list`` reads it
read-only, so it works while the app runs, and the others, which change it, need the
app stopped (inside the app, call the queue's ``replay_dead_letters()``,
``purge_dead_letters()`` or ``replay()``); what they re-publish is delivered when the
app next runs. Any other queue is opened for the command and closed after it, and
every command works while the app runs elsewhere: what is re-published is delivered by
the app's running processes. A queue that keeps no dead letters (``memory://``) is a
usage error.

They exit with 0 on success, 1 when the queue cannot be used (a file missing, not a
reactor queue, damaged, or owned by a running app; a broker that cannot be reached)
or the selection names what the queue does not hold (a consumer name it has never
seen, or an ``--id`` of no dead letter: then nothing is changed), and 2 for a usage
error.

A replay is not a new publication. ``reactor replay`` replays each event published in
the window once, to the consumers it was meant for: every subscription whose pattern
and filter match it when it is delivered, or the ``--consumer`` names among them;
never the copies made by earlier replays or dead-letter replays, which the retention
does not keep.

Output to a closed pipe (``reactor dead-letters list --json | head -1``) ends the
command quietly with status 141, as a shell reports a command killed by SIGPIPE
(128 + 13), so that ``set -o pipefail`` scripts see what they see with other tools.

``reactor db install|uninstall`` installs or removes the row-change capture that
``@app.on_row_change`` reads (:mod:`reactor.sources.postgres`), on the database that
``--dsn`` (or ``REACTOR_POSTGRES_DSN``) names; both are idempotent and exit 0, 1 when the
database refuses (nothing is changed then), 2 for a usage error::

    reactor db install --dsn postgresql://owner@db/shop public.orders public.refunds
    reactor db uninstall --dsn postgresql://owner@db/shop public.refunds

The benchmarks are not a command: they run from a clone of the repository, as
``python -m benchmarks``.

The package's modules, one job each: ``_apps`` imports the app an import string names,
``_run`` resolves the settings of ``reactor run`` and runs it, ``_logs`` sets up its
logging, ``_http`` serves ``--http``, ``_queue_admin`` holds the
dead-letter and replay commands, ``_db`` the database commands, and ``_options`` what
they all share (the argument-or-variable rule, queues from URLs, error output, exit
statuses, the ``reactor.cli`` logger).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Final

import reactor

from ._apps import import_app
from ._db import add_db_commands
from ._options import EXIT_USAGE, ConfigError
from ._queue_admin import add_queue_commands
from ._run import RunSettings, add_run_command, resolve_run_settings

__all__ = [
    "ConfigError",
    "RunSettings",
    "build_parser",
    "import_app",
    "main",
    "resolve_run_settings",
]

#: Exit status when standard output was closed by its reader (``| head``): 128 + SIGPIPE,
#: what a shell reports for a tool that the signal ended.
EXIT_BROKEN_PIPE: Final = 141


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``reactor`` command line.

    :param argv: the arguments after the program name; ``None`` reads :data:`sys.argv`.
    :return: the process exit status: for ``reactor run``, 0 after a graceful stop, 1
        when a second signal forced it; for the queue commands, 0 on success and 1 when
        the queue cannot be used or holds nothing the selection names; 2 for a usage error; 141 when standard output
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
    parser = build_parser()
    try:
        args = parser.parse_args(arguments)
    except SystemExit as exc:
        # argparse exits for --help, --version and bad arguments; return the status
        # instead so that main() can be called (and tested) like a function.
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    command: Callable[[argparse.Namespace, Mapping[str, str]], int] = args.handler
    return command(args, os.environ)


def build_parser() -> argparse.ArgumentParser:
    """Build the parser of the ``reactor`` command line.

    :return: the parser; ``reactor run`` options default to ``None`` when not given.
    """
    parser = argparse.ArgumentParser(
        prog="reactor",
        description="reactor: an embeddable, event-driven runtime for async Python.",
    )
    parser.add_argument("--version", action="version", version=f"reactor {reactor.__version__}")
    commands = parser.add_subparsers(title="commands", dest="command", required=True)

    add_run_command(commands)
    add_queue_commands(commands)
    add_db_commands(commands)
    return parser
