"""Row changes: :class:`RowChangeSource`, its decorator :func:`on_row_change`, and
:func:`row_change`, the one definition of the events it publishes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Final, TypeVar, Unpack

import anyio
import attrs
from anyio.abc import TaskStatus

from reactor import ConsumerOptions, Event, Handler, PayloadTooLargeError, validators
from reactor.abc import App

from .._decoding import Decode, DecodeOptions, decoding
from .._decorate import decorator, with_defaults
from .._link import Link
from .._naming import NamedSource, event_time, uri_for
from ._changelog import (
    OPS,
    WAKE_CHANNEL,
    Change,
    Cursor,
    Op,
    Table,
    TableNotInstalledError,
    commit,
    load_cursor,
    open_cursor,
    read_page,
    resolve_table,
    trim,
    try_lock,
)
from ._connection import (
    CONNECT_TIMEOUT,
    KIND,
    connect,
    connection_errors,
    password_of,
    psycopg_module,
    resolve_dsn,
)
from ._listener import Notification, listen

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "DEFAULT_COLUMN",
    "ROW_DELETED",
    "ROW_INSERTED",
    "ROW_UPDATED",
    "Op",
    "RowChangeOptions",
    "RowChangeSource",
    "by_key",
    "on_row_change",
    "row_change",
]

logger = logging.getLogger("reactor.sources.postgres")

H = TypeVar("H", bound=Handler)
T = TypeVar("T")

#: The type of the event of an inserted row.
ROW_INSERTED: Final = "reactor.postgres.row.inserted"
#: The type of the event of an updated row.
ROW_UPDATED: Final = "reactor.postgres.row.updated"
#: The type of the event of a deleted row.
ROW_DELETED: Final = "reactor.postgres.row.deleted"
_TYPES: Final[Mapping[str, str]] = {
    "insert": ROW_INSERTED,
    "update": ROW_UPDATED,
    "delete": ROW_DELETED,
}
_ROW_TYPES: Final = "reactor.postgres.row.*"
#: The column that ``decode`` reads when no ``column`` is given: where MinIO's PostgreSQL
#: target, in its ``access`` format, writes each notification.
DEFAULT_COLUMN: Final = "event_data"

#: Rows of the log trimmed in one statement, and seconds between two trims.
_TRIM_BATCH: Final = 10_000
_TRIM_EVERY: Final = 1.0
#: Seconds a query of the reader may run on the server before it is cancelled.
_STATEMENT_TIMEOUT: Final = "60s"


def key_subject(values: Sequence[Any]) -> str:
    """The subject of a row's events: its key's value as text (a string as it is, other
    values as JSON), or, for a composite key, the values as a JSON array."""
    if len(values) == 1:
        (value,) = values
        return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return json.dumps(list(values), separators=(",", ":"), ensure_ascii=False)


def _build(
    table: str,
    op: str,
    key: Mapping[str, Any],
    new: Mapping[str, Any] | None,
    old: Mapping[str, Any] | None,
    *,
    uri: str,
    id: str | None,
    time: datetime,
) -> Event:
    data = {"table": table, "op": op, "key": dict(key), "new": new, "old": old}
    subject = key_subject(list(key.values()))
    if id is None:
        return Event(type=_TYPES[op], source=uri, subject=subject, time=time, data=data)
    return Event(type=_TYPES[op], source=uri, id=id, subject=subject, time=time, data=data)


def row_change(
    table: str,
    op: Op,
    key: Mapping[str, Any],
    *,
    new: Mapping[str, Any] | None = None,
    old: Mapping[str, Any] | None = None,
    name: str | Handler,
    id: str | None = None,
    time: datetime | None = None,
) -> Event:
    """Build the event that a row-change source publishes for one changed row.

    For tests that fire a handler without a server::

        @app.on_row_change("public.orders")
        async def on_order(event: Event) -> None: ...

        event = postgres.row_change(
            "public.orders", "insert", {"id": 7}, new={"id": 7, "total": 12.5}, name=on_order
        )
        await app.publish_and_wait(event)

    :param table: the table's full name, as the events carry it (``"public.orders"``)
    :param op: ``"insert"``, ``"update"`` or ``"delete"``
    :param key: the primary key's columns and values, in key order
    :param new: the row after the change (inserts and updates)
    :param old: the row before the change (updates and deletes)
    :param name: the source the event comes from: its name, or the handler that
        :func:`on_row_change` decorated (without a ``name=``: the source is named after
        the handler); the event's source is ``/reactor/postgres/<name>``, which is what
        the handler is subscribed to
    :param id: the event's id (the source's are ``"<xid>-<change id>"``; default: a new
        UUID)
    :param time: when the change was made (default: now)
    :return: the event, as the source would publish it
    :raises TypeError: an argument of the wrong type
    :raises ValueError: an unknown operation, an empty key, or an empty name
    """
    validators.name("table", table)
    validators.one_of("op", op, OPS)
    if not isinstance(key, Mapping):
        raise TypeError(f"key must be a mapping of column to value, got {key!r}")
    if not key:
        raise ValueError("key must name at least one column")
    for what, row in (("new", new), ("old", old)):
        if row is not None and not isinstance(row, Mapping):
            raise TypeError(f"{what} must be a mapping of column to value or None, got {row!r}")
    return _build(
        table,
        op,
        key,
        None if new is None else dict(new),
        None if old is None else dict(old),
        uri=uri_for(KIND, name),
        id=id,
        time=event_time(time),
    )


def by_key(event: Event) -> str | None:
    """The ``ordered_by`` of :func:`on_row_change`: the changed row's key (the subject), so
    that the changes of one row are handled one at a time, in order."""
    return event.subject


def _checked_ops(ops: object) -> tuple[str, ...]:
    if isinstance(ops, str) or not isinstance(ops, Sequence | frozenset | set):
        raise TypeError(f"ops must be a sequence of operations such as ('insert',), got {ops!r}")
    checked = tuple(dict.fromkeys(validators.one_of("ops", op, OPS) for op in ops))
    if not checked:
        raise ValueError(f"ops must name at least one of {', '.join(OPS)}")
    return checked


class RowChangeOptions(DecodeOptions, total=False):
    """The options of a row-change source, all optional: ``ops``, ``group``,
    ``batch_size``, ``poll_interval``, ``standby_interval``, ``connect_timeout``, and
    ``decode`` with ``column`` and its filter (``bucket``, ``prefix``, ``suffix``,
    ``events``).

    :func:`on_row_change` documents each and gives its default; :class:`RowChangeSource`
    takes them as keyword arguments, with the same defaults.
    """

    ops: Sequence[Op]
    group: str | None
    batch_size: int
    poll_interval: float
    standby_interval: float
    connect_timeout: float
    column: str | None


class RowChangeSource(NamedSource):
    """Publish an event for every committed insert, update and delete of a table.

    See the package documentation for the events, the guarantee and the processes, and
    :func:`on_row_change` for the options (:class:`RowChangeOptions`): the same, with the
    same defaults.

    :param table: the table (installed with ``reactor db install``)
    :param dsn: the server (default: the ``REACTOR_POSTGRES_DSN`` environment variable)
    :param name: the source's name: its events' source is ``/reactor/postgres/<name>``,
        which is also the key of its statistics (default: the table as given)
    :param options: the source's options (:class:`RowChangeOptions`)
    :raises TypeError: an argument of the wrong type, or an unknown option
    :raises ValueError: a bad argument, or a malformed DSN
    :raises ModuleNotFoundError: psycopg is not installed (``reactor-events[postgres]``)
    """

    kind = KIND

    def __init__(
        self,
        table: str,
        *,
        dsn: str | None = None,
        name: str | None = None,
        **options: Unpack[RowChangeOptions],
    ) -> None:
        settings = with_defaults(type(self).__name__, options, RowChangeOptions, on_row_change)
        self._table_given = validators.name("table", table)
        if dsn is not None:
            password_of(resolve_dsn(dsn))  # a malformed DSN is refused here, not at start
        self._dsn = dsn
        self._ops = _checked_ops(settings["ops"])
        super().__init__(self._table_given if name is None else name)
        group = settings["group"]
        self._group_given = None if group is None else validators.name("group", group)
        self._batch_size = validators.integer("batch_size", settings["batch_size"], minimum=1)
        self._poll_interval = validators.seconds(
            "poll_interval", settings["poll_interval"], positive=True
        )
        self._standby_interval = validators.seconds(
            "standby_interval", settings["standby_interval"], positive=True
        )
        self._timeout = validators.seconds(
            "connect_timeout", settings["connect_timeout"], positive=True
        )
        self._decoding = decoding(settings)
        column = settings["column"]
        if self._decoding is None:
            if column is not None:
                raise ValueError("column= names the column that decode= reads: give decode too")
            self._column = DEFAULT_COLUMN
        else:
            self._column = DEFAULT_COLUMN if column is None else validators.name("column", column)
            if set(self._ops) not in ({"insert"}, set(OPS)):
                raise ValueError(
                    "decode= reads the inserted rows (a notification table only grows): leave "
                    "ops= out, or give ops=('insert',)"
                )
            self._ops = ("insert",)
        self._link: Link | None = None
        self._wake_link: Link | None = None
        self._counts = {"trimmed": 0, "became_reader": 0}
        self._conn: psycopg.Connection[Any] | None = None
        self._limiter: anyio.CapacityLimiter | None = None
        self._table: Table | None = None
        self._cursor: Cursor | None = None
        self._group: str | None = None
        self._reader = False
        self._wake = anyio.Event()
        self._trimmed_at: float | None = None
        self._missing = False

    @property
    def table(self) -> str:
        """The table: its full name once the source ran, else as given."""
        return self._table_given if self._table is None else self._table.name

    @property
    def is_reader(self) -> bool:
        """Whether this process reads the table's changes now (else it stands by)."""
        return self._reader

    def statistics(self) -> Mapping[str, int | str | None]:
        """Return ``received`` (changes read from the log), ``published`` (events),
        ``oversized`` (changes over the queue's size limit, published without their rows),
        ``reconnects``, ``last_error``, ``reader`` (1 while this process is the reader, else
        0), ``became_reader`` (times it became the reader), ``trimmed`` (changes deleted from
        the log), ``listener_reconnects`` (of the wake-up connection), ``gaps``, always 0,
        and ``malformed``, 0 but with ``decode``. With ``decode``: ``published`` counts the
        decoded events, ``malformed`` the rows and records the decoder refused, and
        ``filtered`` the records the filter left out.
        """
        link = self._link or Link(self.name, "", logger)
        wake = self._wake_link
        decoded = {} if self._decoding is None else self._decoding.statistics()
        return {
            **link.statistics(),
            **self._counts,
            **decoded,
            "reader": int(self._reader),
            "listener_reconnects": 0 if wake is None else wake.reconnects,
        }

    def __repr__(self) -> str:
        return f"RowChangeSource({self.table!r}, ops={self._ops!r}, name={self._name!r})"

    # -- running

    async def run(
        self, app: App, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Read the change log and publish until cancelled.

        :param app: the running app
        :param task_status: started once the table was found installed, the wake-ups are
            listened to, and the source tried once to become the reader
        :raises ~reactor.SourceUnavailableError: the first connection failed
        :raises TableNotInstalledError: the table does not exist or has no row-change capture
        :raises ValueError: no DSN was given and ``REACTOR_POSTGRES_DSN`` is not set
        """
        psycopg_module()
        dsn = resolve_dsn(self._dsn)
        password = password_of(dsn)
        secrets = (password,) if password else ()
        if self._link is None:
            self._link = Link(self.name, dsn, logger, secrets=secrets)
            self._wake_link = Link(f"{self.name} (wake-ups)", dsn, logger, secrets=secrets)
        link, wake_link = self._link, self._wake_link
        assert wake_link is not None
        self._group = self._group_given or f"{app.source}:{self._name}"
        self._limiter = anyio.CapacityLimiter(1)
        self._wake = anyio.Event()
        self._trimmed_at = None
        try:
            try:
                await self._connect(dsn)
                await self._set_up()
                await self._try_to_read()
            except psycopg_module().Error as exc:
                raise link.unavailable(exc) from None
            except (OSError, TimeoutError) as exc:
                raise link.unavailable(exc) from None
            link.connected(app.clock.now())
            async with anyio.create_task_group() as tg:
                await tg.start(
                    partial(
                        listen,
                        app,
                        wake_link,
                        dsn,
                        [WAKE_CHANNEL],
                        self._woken,
                        self._listening_again,
                        connect_timeout=self._timeout,
                    )
                )
                task_status.started()
                await self._serve(app, dsn)
        finally:
            self._disconnect()

    async def _serve(self, app: App, dsn: str) -> None:
        link = self._link
        assert link is not None
        errors = connection_errors()
        database_error = psycopg_module().Error
        while True:
            try:
                if self._conn is None:
                    await self._connect(dsn)
                    link.connected(app.clock.now(), gap=False)
                if self._cursor is None:
                    await self._set_up()
                    if self._missing:
                        logger.warning(
                            "%s: %s can be read again",
                            self.name,
                            self.table,
                            extra={"source": self.name},
                        )
                        self._missing = False
                await self._work(app)
            except errors as exc:
                self._disconnect()
                await app.clock.sleep(link.failed(exc, app.clock.now()))
            except (TableNotInstalledError, database_error) as exc:
                # Uninstalled while the app runs (or a query failed as it went): the app
                # goes on, and reads the table again once it is installed again.
                await self._stand_down()
                link.last_error = " ".join(f"{type(exc).__name__}: {exc}".split())
                if not self._missing:
                    logger.error(
                        "%s: cannot read the changes of %s (%s); trying again every %s s",
                        self.name,
                        self.table,
                        link.last_error,
                        self._poll_interval,
                        extra={"source": self.name},
                    )
                    self._missing = True
                await app.clock.sleep(self._poll_interval)

    async def _work(self, app: App) -> None:
        """Read as the reader, or stand by and try to become it, until something fails."""
        while True:
            if not self._reader and not await self._try_to_read():
                await app.clock.sleep(self._standby_interval)
                continue
            await self._catch_up(app)
            with app.clock.deadline_scope(app.clock.monotonic() + self._poll_interval):
                await self._wake.wait()

    async def _try_to_read(self) -> bool:
        assert self._cursor is not None
        if await self._db(try_lock, self._cursor):
            self._reader = True  # holding the lock (released by _stand_down if what follows fails)
            # Another process may have read on since this one loaded the cursor.
            self._cursor = await self._db(load_cursor, self.table, self._group)
            self._counts["became_reader"] += 1
            logger.info(
                "%s: reading the changes of %s for group %r",
                self.name,
                self.table,
                self._group,
                extra={"source": self.name},
            )
        return self._reader

    async def _catch_up(self, app: App) -> None:
        """Publish every change after the cursor, committing the cursor after each page."""
        link, table, cursor = self._link, self._table, self._cursor
        assert link is not None and table is not None and cursor is not None
        self._wake = anyio.Event()  # a wake-up from now on asks for another read
        while True:
            page = await self._db(read_page, table.name, cursor, self._ops, self._batch_size)
            if page.changes:
                link.received += len(page.changes)
                if self._decoding is None:
                    events = [self._event(table, change) for change in page.changes]
                    await link.publish_many(app, events, oversized=self._without_rows)
                else:
                    await link.publish_many(app, self._decoded(table, page.changes))
            if page.moved:
                # The events are in the queue: store that, even when the app stops now.
                with anyio.CancelScope(shield=True):
                    stored = await self._db(commit, page.cursor)
                if not stored:
                    raise TableNotInstalledError(
                        f"the row-change capture of {table.name} was uninstalled"
                    )
                cursor = self._cursor = page.cursor
            if page.cursor.upto is None:  # the round is over
                break
        now = app.clock.monotonic()
        if page.moved and (self._trimmed_at is None or now - self._trimmed_at >= _TRIM_EVERY):
            self._trimmed_at = now
            self._counts["trimmed"] += await self._db(trim, table.name, _TRIM_BATCH)

    def _event(self, table: Table, change: Change) -> Event:
        return _build(
            table.name,
            change.op,
            dict(zip(table.key_columns, change.key, strict=False)),
            change.new,
            change.old,
            uri=self._uri,
            id=f"{change.xid}-{change.id}",
            time=change.changed_at,
        )

    def _decoded(self, table: Table, changes: Sequence[Change]) -> list[Event]:
        """The events decoded from the column of the inserted rows (with ``decode``)."""
        link, decoding, column = self._link, self._decoding, self._column
        assert link is not None and decoding is not None
        events: list[Event] = []
        for change in changes:
            row = change.new
            subject = f"{table.name} row {key_subject(change.key)}"
            if row is None or column not in row:
                reason = f"the row has no column {column!r} (its columns: {', '.join(row or ())})"
                decoding.refuse(link, subject, (reason,))
                continue
            # A record without a request id (older MinIO) gets the change's id: the same
            # when the change is delivered again.
            default_id = f"{change.xid}-{change.id}"
            events += decoding(link, row[column], subject, default_id=default_id)
        return events

    def _without_rows(self, event: Event, error: PayloadTooLargeError) -> Event:
        # The link logs it (rate-limited) and counts it as oversized.
        omitted = {"reason": "too large", "size": error.size, "limit": error.limit}
        return attrs.evolve(
            event, data={**event.data, "new": None, "old": None, "omitted": omitted}
        )

    # -- the wake-ups

    async def _woken(self, batch: Sequence[Notification]) -> None:
        table = self.table
        if any(n.payload.decode("utf-8", "replace") == table for n in batch):
            self._wake.set()

    async def _listening_again(self, since: datetime) -> None:
        self._wake.set()  # wake-ups may have been missed in the meantime

    # -- the database

    async def _connect(self, dsn: str) -> None:
        def setup(conn: psycopg.Connection[Any]) -> None:
            conn.execute(f"SET statement_timeout = '{_STATEMENT_TIMEOUT}'")

        self._conn = await connect(dsn, connect_timeout=self._timeout, setup=setup)

    async def _set_up(self) -> None:
        self._table = await self._db(resolve_table, self._table_given)
        self._cursor = await self._db(open_cursor, self._table.name, self._group)

    async def _stand_down(self) -> None:
        """Stop being the reader (keeping the connection, if it works)."""
        self._cursor = None
        if self._reader and self._conn is not None:
            self._reader = False
            try:
                await self._db(_unlock_all)
            except (*connection_errors(), psycopg_module().Error):
                self._disconnect()  # the lock goes with the connection

    def _disconnect(self) -> None:
        """Close the connection; the server releases the reader's lock with it."""
        self._reader = False
        self._cursor = None
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    async def _db(self, function: Callable[..., T], *args: Any) -> T:
        """Run *function* with the connection and *args* in the source's worker thread."""
        conn = self._conn
        assert conn is not None
        return await anyio.to_thread.run_sync(function, conn, *args, limiter=self._limiter)


def _unlock_all(conn: psycopg.Connection[Any]) -> None:
    conn.execute("SELECT pg_advisory_unlock_all()")


def on_row_change(
    app: App,
    table: str,
    /,
    *,
    ops: Sequence[Op] = OPS,
    dsn: str | None = None,
    group: str | None = None,
    batch_size: int = 500,
    poll_interval: float = 5.0,
    standby_interval: float = 1.0,
    connect_timeout: float = CONNECT_TIMEOUT,
    decode: Decode | None = None,
    column: str | None = None,
    bucket: str | None = None,
    prefix: str = "",
    suffix: str = "",
    events: Sequence[str] | None = None,
    **options: Unpack[ConsumerOptions],
) -> Callable[[H], H]:
    """Decorate a handler for the committed inserts, updates and deletes of *table*.

    The handler receives one event per changed row: type
    ``"reactor.postgres.row.inserted"``, ``"...updated"`` or ``"...deleted"``, subject the
    row's primary key (its value as text; a composite key as a JSON array), data
    ``{"table", "op", "key", "new", "old"}``, time when the change was made, id
    ``"<transaction id>-<change id>"`` (the same however often it is delivered). Every
    committed change is delivered at least once, also those made while the app was down
    (see the package documentation); the changes of one row in the order they were made.

    The table must be installed first (``reactor db install --dsn ... <table>`` or
    :func:`install`); the app never changes the schema itself.

    With ``decode="s3"`` the table is one where S3 bucket notifications are inserted, a
    message per row in *column* (MinIO's PostgreSQL target in its ``access`` format:
    the column ``event_data``), and the handler receives their records as object events
    (see :mod:`reactor.sources.objects`), at least once like any change. MinIO creates
    its table without a primary key, which the capture needs: create it first with one
    (MinIO inserts naming its two columns)::

        CREATE TABLE minio_events (id bigserial PRIMARY KEY,
                                   event_time timestamptz NOT NULL, event_data jsonb);

    :param app: the app
    :param table: the table, named as SQL would name it (``"orders"``, ``"shop.orders"``)
    :param ops: the operations to publish, any of ``"insert"``, ``"update"``, ``"delete"``
    :param dsn: the server, a ``postgresql://`` URL or libpq ``key=value`` string (default:
        the ``REACTOR_POSTGRES_DSN`` environment variable)
    :param group: the consumer group: the processes of one group share one reading
        position, and each change goes to one of them; every group gets every change.
        Default ``"<app source>:<name>"``: the processes of one app form a group, and apps
        with different ``Reactor(source=...)`` are different groups
    :param batch_size: the most changes read and published at once
    :param poll_interval: seconds between reads of the log when no wake-up comes (wake-ups
        come by ``NOTIFY`` at each commit; the poll is the safety net)
    :param standby_interval: seconds between attempts of a process that is not the reader
        to become it (how soon it takes over from a reader that died)
    :param connect_timeout: the most seconds one connection attempt may take
    :param decode: ``"s3"``: each inserted row holds an S3 event notification in
        *column*, published as one object event per record (type
        ``com.amazonaws.s3.<eventName>``, source the bucket's, subject the key; a record
        without a request id gets the id ``<transaction id>-<change id>.<index>``), which
        the handler receives when it passes *bucket*, *prefix*, *suffix* and *events*;
        rows and records that cannot be decoded are counted as ``malformed``. Only
        inserts are read (*ops* left out, or ``("insert",)``): deleting old rows is
        cleaning up. ``None`` (default): one row-change event per change
    :param column: with *decode*: the column that holds the message (JSON, JSONB or
        text); default ``"event_data"``
    :param bucket: with *decode*: the bucket's name, or a glob; ``None`` for any
    :param prefix: with *decode*: keys must start with it
    :param suffix: with *decode*: keys must end with it
    :param events: with *decode*: globs on S3 event names (``"ObjectCreated:*"``);
        ``None`` for all
    :param options: the consumer's options (:class:`~reactor.ConsumerOptions`); ``name``
        (default: the handler's qualified name) is also the source's name; ``ordered_by``
        defaults to :func:`by_key`, the subject (``None``: no ordering)
    :return: a decorator that subscribes the handler and returns it unchanged
    :raises TypeError: an argument of the wrong type, or an unknown keyword argument
    :raises ValueError: a bad argument (a filter or *column* without *decode*, *ops*
        other than inserts with it), a malformed DSN, or the name is taken (when
        decorating)
    :raises ModuleNotFoundError: psycopg is not installed; the message names
        ``pip install 'reactor-events[postgres]'``
    """
    # Without psycopg, the mistake is here, not when the app starts.
    psycopg_module()
    settings: RowChangeOptions = {
        "ops": ops,
        "group": group,
        "batch_size": batch_size,
        "poll_interval": poll_interval,
        "standby_interval": standby_interval,
        "connect_timeout": connect_timeout,
        "decode": decode,
        "column": column,
        "bucket": bucket,
        "prefix": prefix,
        "suffix": suffix,
        "events": events,
    }
    return decorator(
        app,
        "on_row_change",
        lambda name: RowChangeSource(table, dsn=dsn, name=name, **settings),
        _ROW_TYPES,
        options,
        ordered_by=by_key,
    )
