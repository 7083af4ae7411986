"""The LISTEN connection: one dedicated connection, read from the event loop without threads.

:class:`Listener` holds a psycopg sync connection that has run ``LISTEN`` on its channels
and is never used for a query again: it waits with :func:`anyio.wait_readable` on the
libpq socket, then reads what arrived with ``pgconn.consume_input()`` and takes the
notifications with ``pgconn.notifies()``, so it runs on asyncio and trio alike and holds no
thread. :func:`listen` keeps one open for the life of a source: it reconnects with the
backoff of the source's :class:`~reactor.sources._link.Link` and reports every
reconnection, after which the caller publishes its gap event (the notification source) or
reads its change log (the row-change source, which uses notifications as wake-ups only).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, NamedTuple, NoReturn

import anyio
from anyio.abc import TaskStatus

from reactor.abc import App

from ._connection import CONNECT_TIMEOUT, connect, connection_errors, psycopg_module

if TYPE_CHECKING:
    import psycopg

    from reactor.sources._link import Link

__all__ = ["MAX_CHANNEL_BYTES", "Listener", "Notification", "checked_channel", "listen"]

logger = logging.getLogger("reactor.sources.postgres")

#: The longest channel name PostgreSQL takes, in bytes (NAMEDATALEN - 1).
MAX_CHANNEL_BYTES: Final = 63
#: The most notifications taken from libpq in one batch.
_BATCH: Final = 1024


class Notification(NamedTuple):
    """One notification as the server sent it."""

    channel: str
    payload: bytes
    pid: int


def checked_channel(channel: object) -> str:
    """Return *channel* if PostgreSQL takes it as a channel name, as ``pg_notify()`` does.

    :raises TypeError: not a str
    :raises ValueError: empty, longer than 63 bytes in UTF-8, or holding a NUL character
    """
    if not isinstance(channel, str):
        raise TypeError(f"a channel must be a non-empty str, got {channel!r}")
    if not channel or "\x00" in channel:
        raise ValueError(f"a channel must be a non-empty str without NUL, got {channel!r}")
    if len(channel.encode()) > MAX_CHANNEL_BYTES:
        raise ValueError(
            f"channel {channel[:20]!r}... is longer than PostgreSQL's {MAX_CHANNEL_BYTES} "
            "bytes; use a shorter name"
        )
    return channel


class Listener:
    """A connection that listens on *channels* (made by :meth:`open`).

    :param conn: the connection, after ``LISTEN``
    :param early: notifications psycopg received while running ``LISTEN``
    """

    def __init__(self, conn: psycopg.Connection[Any], early: Sequence[Notification]) -> None:
        self._conn = conn
        self._encoding = conn.info.encoding
        self._early = deque(early)

    @classmethod
    async def open(
        cls, dsn: str, channels: Sequence[str], *, connect_timeout: float = CONNECT_TIMEOUT
    ) -> Listener:
        """Connect and ``LISTEN`` on every channel, within *connect_timeout* seconds.

        :raises TimeoutError: it took longer
        :raises psycopg.Error: the server refused or could not be reached
        """
        sql = psycopg_module().sql
        early: list[Notification] = []

        def setup(conn: psycopg.Connection[Any]) -> None:
            # What psycopg reads while running LISTEN (a notification sent right after it
            # took effect) goes to its handlers, not back to libpq: keep it.
            conn.add_notify_handler(
                lambda n: early.append(
                    Notification(n.channel, n.payload.encode(conn.info.encoding), n.pid)
                )
            )
            for channel in channels:
                conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))

        conn = await connect(dsn, connect_timeout=connect_timeout, setup=setup)
        return cls(conn, early)

    @property
    def encoding(self) -> str:
        """The Python name of the connection's client encoding, for decoding payloads."""
        return self._encoding

    @property
    def backend_pid(self) -> int:
        """The server process of this connection (``pg_terminate_backend()`` ends it)."""
        return int(self._conn.info.backend_pid)

    async def receive(self) -> list[Notification]:
        """Wait for notifications and return those that arrived (at least one).

        :raises psycopg.OperationalError: the connection was lost
        """
        pgconn = self._conn.pgconn
        batch: list[Notification] = []
        while self._early and len(batch) < _BATCH:
            batch.append(self._early.popleft())
        while not batch:
            # A notification libpq already holds would not wake the socket: look first.
            while len(batch) < _BATCH and (n := pgconn.notifies()) is not None:
                batch.append(Notification(n.relname.decode(self._encoding), n.extra, n.be_pid))
            if batch:
                break
            await anyio.wait_readable(pgconn.socket)
            pgconn.consume_input()  # raises OperationalError once the server is gone
        return batch

    def close(self) -> None:
        """Close the connection (no I/O wait: the server ends the session on its own)."""
        self._conn.close()


async def listen(
    app: App,
    link: Link,
    dsn: str,
    channels: Sequence[str],
    deliver: Callable[[list[Notification]], Awaitable[None]],
    reconnected: Callable[[datetime], Awaitable[None]],
    *,
    opened: Callable[[Listener], None] | None = None,
    connect_timeout: float = CONNECT_TIMEOUT,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Listen on *channels* until cancelled, passing every batch of notifications to *deliver*.

    The first connection must succeed (else :meth:`Link.unavailable` is raised: the app does
    not start); ``task_status.started()`` is called once ``LISTEN`` is in place. A connection lost later is made again with the link's backoff, on the app's
    clock, for ever; once it is, *reconnected* is awaited with the time the outage began.

    :param app: the app (its clock)
    :param link: the source's connection state and counters (``received`` is counted here)
    :param dsn: the DSN
    :param channels: the channels
    :param deliver: awaited with each batch, in order
    :param reconnected: awaited after each reconnection, with the outage's start
    :param opened: called with each new listener, before it is read
    :param connect_timeout: the most seconds one connection attempt may take
    """
    errors = connection_errors()
    try:
        listener = await Listener.open(dsn, channels, connect_timeout=connect_timeout)
    except errors as exc:
        raise link.unavailable(exc) from None
    except psycopg_module().Error as exc:  # refused for another reason (a bad database name)
        raise link.unavailable(exc) from None
    link.connected(app.clock.now())
    if opened is not None:
        opened(listener)
    task_status.started()
    try:
        while True:
            try:
                while True:
                    batch = await listener.receive()
                    link.received += len(batch)
                    await deliver(batch)
            except errors as exc:
                listener.close()
                delay = link.failed(exc, app.clock.now())
            while True:
                await app.clock.sleep(delay)
                try:
                    listener = await Listener.open(dsn, channels, connect_timeout=connect_timeout)
                    break
                except (*errors, psycopg_module().Error) as exc:
                    delay = link.failed(exc, app.clock.now())
            if opened is not None:
                opened(listener)
            since = link.connected(app.clock.now())
            await reconnected(app.clock.now() if since is None else since)
    finally:
        listener.close()
