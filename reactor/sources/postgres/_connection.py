"""Connections: the DSN, the psycopg import, a bounded connect, the errors that mean "lost".

Every connection of the PostgreSQL sources is a psycopg *sync* connection: it is made in a
worker thread (bounded by a timeout, abandoned on cancellation), and then either driven from
the event loop without threads (the LISTEN connection, see :mod:`._listener`) or used in a
worker thread of its own for queries (the change-log reader). That works the same on asyncio
and trio, which psycopg's ``AsyncConnection`` does not.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, TypeVar

import anyio

from reactor.abc import import_extra

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "CONNECT_TIMEOUT",
    "DSN_VARIABLE",
    "KIND",
    "connect",
    "connection_errors",
    "password_of",
    "psycopg_module",
    "resolve_dsn",
]

T = TypeVar("T")

#: The ``<kind>`` in the URI of the PostgreSQL sources' events, ``/reactor/postgres/<name>``.
KIND: Final = "postgres"
#: The environment variable that gives the DSN when no ``dsn=`` is passed.
DSN_VARIABLE: Final = "REACTOR_POSTGRES_DSN"
#: Seconds a connection attempt may take (DNS, TCP, TLS, authentication) before it fails.
CONNECT_TIMEOUT: Final = 10.0

# libpq settings a connection gets unless its DSN says otherwise: a peer that vanishes
# without closing the socket (a dead host, a dropped route) is noticed within about half a
# minute instead of the kernel's hours, idle (keepalives) or busy (tcp_user_timeout).
_DEFAULT_PARAMS: Final[Mapping[str, str]] = {
    "keepalives": "1",
    "keepalives_idle": "10",
    "keepalives_interval": "5",
    "keepalives_count": "3",
    "tcp_user_timeout": "30000",
    "application_name": "reactor",
}


def psycopg_module() -> Any:
    """Import psycopg, or raise the error that names ``pip install 'reactor-events[postgres]'``."""
    return import_extra("psycopg", extra="postgres")


def resolve_dsn(dsn: str | None, environ: Mapping[str, str] | None = None) -> str:
    """Return *dsn*, else the ``REACTOR_POSTGRES_DSN`` environment variable.

    :param dsn: the DSN given (a ``postgresql://`` URL or a libpq ``key=value`` string)
    :param environ: the environment (default: :data:`os.environ`)
    :raises TypeError: *dsn* is not a str
    :raises ValueError: no DSN is given and the variable is unset or empty
    """
    if dsn is not None:
        if not isinstance(dsn, str):
            raise TypeError(f"dsn must be a str, got {type(dsn).__name__}")
        if dsn:
            return dsn
    value = (os.environ if environ is None else environ).get(DSN_VARIABLE)
    if value:
        return value
    raise ValueError(
        f"no PostgreSQL DSN: pass dsn='postgresql://user@host/db' or set {DSN_VARIABLE}"
    )


def password_of(dsn: str) -> str | None:
    """The password written in *dsn*, if any, so that it can be hidden wherever text is shown.

    :raises ValueError: *dsn* is not a valid libpq connection string (the message holds
        no part of it)
    """
    conninfo = import_extra("psycopg.conninfo", extra="postgres")
    try:
        params = conninfo.conninfo_to_dict(dsn)
    except Exception:  # psycopg.ProgrammingError: the text may hold the password
        raise ValueError(
            "the PostgreSQL DSN is not a valid connection string: write it as "
            "'postgresql://user@host:5432/db' or 'host=... dbname=...'"
        ) from None
    password = params.get("password")
    return str(password) if password else None


def connection_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean the connection is gone or the server cannot be used now."""
    pg = psycopg_module()
    return (pg.OperationalError, pg.InterfaceError, OSError, TimeoutError)


def _params(dsn: str) -> dict[str, Any]:
    conninfo = import_extra("psycopg.conninfo", extra="postgres")
    given = conninfo.conninfo_to_dict(dsn)
    return {key: value for key, value in _DEFAULT_PARAMS.items() if key not in given}


async def connect(
    dsn: str,
    *,
    connect_timeout: float = CONNECT_TIMEOUT,
    setup: Callable[[psycopg.Connection[Any]], None] | None = None,
) -> psycopg.Connection[Any]:
    """Open an autocommit connection in a worker thread, within *connect_timeout* seconds.

    :param dsn: the DSN
    :param connect_timeout: the most seconds it may take, *setup* included
    :param setup: called with the new connection in the worker thread (``LISTEN``, ``SET``);
        the connection is closed when it raises
    :return: the connection, in autocommit mode, with server-side prepared statements off
        (each query is planned with its own values)
    :raises TimeoutError: it took longer than *connect_timeout*
    :raises psycopg.OperationalError: the server refused or could not be reached
    """
    pg = psycopg_module()
    extra = _params(dsn)
    extra.setdefault("connect_timeout", str(max(2, round(connect_timeout))))
    # The thread and the caller hand the connection over under a lock: a caller that gives
    # up (timeout, cancellation) never sees the thread's result, so whichever of the two
    # comes second closes the connection.
    lock = threading.Lock()
    made: list[psycopg.Connection[Any]] = []
    abandoned = False

    def open_blocking() -> psycopg.Connection[Any]:
        conn: psycopg.Connection[Any] = pg.Connection.connect(
            dsn, autocommit=True, prepare_threshold=None, **extra
        )
        try:
            if setup is not None:
                setup(conn)
        except BaseException:
            conn.close()
            raise
        with lock:
            made.append(conn)
            if abandoned:
                conn.close()
        return conn

    try:
        with anyio.fail_after(connect_timeout):
            return await anyio.to_thread.run_sync(open_blocking, abandon_on_cancel=True)
    except BaseException:
        with lock:
            abandoned = True
            orphans = list(made)
        for conn in orphans:
            conn.close()
        raise
