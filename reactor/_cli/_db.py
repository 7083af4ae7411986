"""The database commands: ``reactor db install|uninstall``, row-change capture on tables.

They call :func:`reactor.sources.postgres.install` and
:func:`~reactor.sources.postgres.uninstall`, so that the schema changes that
``@app.on_row_change`` needs are made on purpose, by someone allowed to, never by an app
starting up.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final

import anyio

from ._options import failure, pick, usage_error

_DB_ENV_HELP: Final = """\
environment variables (a command-line argument wins over its variable):
  REACTOR_POSTGRES_DSN  --dsn
"""


def add_db_commands(commands: Any) -> None:
    """Add ``reactor db install|uninstall`` to the subcommands.

    :param commands: what the parser's ``add_subparsers()`` returned.
    """
    dsn_option = argparse.ArgumentParser(add_help=False)
    dsn_option.add_argument(
        "--dsn",
        metavar="DSN",
        help="the PostgreSQL server and database: postgresql://user@host:5432/db or "
        "'host=... dbname=...' (default: $REACTOR_POSTGRES_DSN)",
    )
    dsn_option.add_argument(
        "tables",
        metavar="TABLE",
        nargs="+",
        help="a table, named as SQL would name it: orders (found on the search_path), "
        "shop.orders, 'public.\"Order Lines\"'",
    )
    common: dict[str, Any] = {
        "parents": [dsn_option],
        "epilog": _DB_ENV_HELP,
        "formatter_class": argparse.RawDescriptionHelpFormatter,
    }
    db = commands.add_parser(
        "db",
        help="install or remove the row-change capture that @app.on_row_change reads",
        description=(
            "Install or remove the row-change capture of PostgreSQL tables: the change\n"
            "log in the schema 'reactor' and a trigger on each table, which\n"
            "@app.on_row_change reads. Needs reactor-events[postgres]."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = db.add_subparsers(title="actions", dest="action", required=True)
    install = actions.add_parser(
        "install",
        help="install row-change capture on tables (idempotent)",
        description=(
            "Create the change log (schema 'reactor') where missing and a trigger on each\n"
            "table, in one transaction: all tables or none. A table installed already is\n"
            "left as it is. Every table needs a primary key."
        ),
        **common,
    )
    install.set_defaults(handler=_install)
    uninstall = actions.add_parser(
        "uninstall",
        help="remove row-change capture from tables (idempotent)",
        description=(
            "Drop each table's trigger and delete its logged changes and cursors, in one\n"
            "transaction; the change log and the schema 'reactor' go with the last table.\n"
            "A table without capture is no error."
        ),
        **common,
    )
    uninstall.set_defaults(handler=_uninstall)


def _install(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    return _run(args, environ, "install", ("installed", "already installed"))


def _uninstall(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    return _run(args, environ, "uninstall", ("uninstalled", "not installed"))


def _run(
    args: argparse.Namespace,
    environ: Mapping[str, str],
    action: str,
    outcomes: tuple[str, str],
) -> int:
    dsn, origin = pick(args.dsn, "--dsn", environ, "REACTOR_POSTGRES_DSN", "")
    if not dsn:
        return usage_error(
            "no database given: pass --dsn postgresql://user@host/db or set REACTOR_POSTGRES_DSN"
        )
    try:
        from reactor.sources import postgres
        from reactor.sources.postgres._connection import password_of

        password = password_of(dsn)
    except ModuleNotFoundError as exc:
        return usage_error(str(exc))
    except ValueError as exc:
        return usage_error(f"{origin}: {exc}")
    work: Callable[..., Awaitable[Mapping[str, bool]]] = getattr(postgres, action)
    tables: Sequence[str] = args.tables
    try:
        done = anyio.run(lambda: work(*tables, dsn=dsn))
    except Exception as exc:  # psycopg's errors, a missing table, a table without a key
        message = " ".join(f"{type(exc).__name__}: {exc}".split())
        if password:
            message = message.replace(password, "***")
        return failure(f"{action} failed, nothing was changed: {message}")
    for name, changed in done.items():
        sys.stdout.write(f"{name}: {outcomes[0] if changed else outcomes[1]}\n")
    return 0
