"""Installing and removing row-change capture: :func:`install` and :func:`uninstall`.

``reactor db install|uninstall`` calls them; an app never does (no DDL at startup).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio

from reactor import validators

from ._changelog import install_tables, uninstall_tables
from ._connection import CONNECT_TIMEOUT, connect, psycopg_module, resolve_dsn

if TYPE_CHECKING:
    import psycopg

__all__ = ["install", "uninstall"]


async def _run(
    what: str,
    tables: Sequence[str],
    dsn: str | None,
    connect_timeout: float,
    work: Callable[[psycopg.Connection[Any], Sequence[str]], list[tuple[str, bool]]],
) -> Mapping[str, bool]:
    psycopg_module()
    if not tables:
        raise ValueError(f"{what}() needs at least one table")
    names = [validators.name("table", table) for table in tables]
    conn = await connect(resolve_dsn(dsn), connect_timeout=connect_timeout)
    try:
        return dict(await anyio.to_thread.run_sync(work, conn, names))
    finally:
        conn.close()


async def install(
    *tables: str, dsn: str | None = None, connect_timeout: float = CONNECT_TIMEOUT
) -> Mapping[str, bool]:
    """Install row-change capture on *tables*: what :func:`on_row_change` reads.

    Creates, where missing, the schema ``reactor`` with the change log, the table registry,
    the cursors and the trigger function, then a trigger ``reactor_row_change`` (``AFTER
    INSERT OR UPDATE OR DELETE ... FOR EACH ROW``) on each table, all in one transaction.
    Idempotent: a table installed already is left alone (its trigger is made again only
    when its primary key changed). Needs the rights to create a schema and triggers (the
    table's owner, typically); the writers of the tables need no rights on the log.

    :param tables: the tables, named as SQL would name them (``"orders"`` is found on the
        ``search_path``; ``"shop.orders"``, ``'public."Order Lines"'``)
    :param dsn: the server (default: the ``REACTOR_POSTGRES_DSN`` environment variable)
    :param connect_timeout: the most seconds connecting may take
    :return: each table's full name (``"public.orders"``), and whether it was changed
    :raises ~reactor.sources.postgres.TableNotInstalledError: a table does not exist
        (nothing was installed)
    :raises ValueError: no table, no DSN, a table without a primary key or not a table
        (nothing was installed)
    :raises psycopg.Error: the server refused or could not be reached
    """
    return await _run("install", tables, dsn, connect_timeout, install_tables)


async def uninstall(
    *tables: str, dsn: str | None = None, connect_timeout: float = CONNECT_TIMEOUT
) -> Mapping[str, bool]:
    """Remove row-change capture from *tables*: their trigger, logged changes and cursors.

    With the last installed table go the change log, the registry and the trigger
    function, and the schema ``reactor`` if nothing else is in it. Idempotent: a table
    without capture (or that no longer exists) is no error. Apps still reading a removed
    table log an error and wait until it is installed again.

    :param tables: the tables, as for :func:`install`
    :param dsn: the server (default: the ``REACTOR_POSTGRES_DSN`` environment variable)
    :param connect_timeout: the most seconds connecting may take
    :return: each table's name, and whether anything was removed
    :raises ValueError: no table, or no DSN
    :raises psycopg.Error: the server refused or could not be reached
    """
    return await _run("uninstall", tables, dsn, connect_timeout, uninstall_tables)
