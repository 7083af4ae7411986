"""PostgreSQL: notifications and row changes as events. Needs ``reactor-events[postgres]``.

Two sources, each on connections of its own, on asyncio and trio (psycopg's sync
connections: the listening one read from the event loop without a thread, the others used
in a worker thread)::

    from reactor.sources import postgres

    @app.on_pg_notify("orders", dsn="postgresql://app@db/shop")   # postgres.on_pg_notify(app, ...)
    async def on_order(event: Event) -> None:
        order = event.data                                       # NOTIFY orders, '{"id": 1}'

    @app.on_row_change("public.orders", ops=("insert", "update"), dsn="postgresql://app@db/shop")
    async def on_order_row(event: Event) -> None:
        row = event.data["new"]                                  # the row after the change

**Connection.** ``dsn=`` (a ``postgresql://`` URL or a libpq ``key=value`` string), else the
``REACTOR_POSTGRES_DSN`` environment variable, read when the app starts. A server that
cannot be reached then makes ``async with app:`` fail with
:class:`reactor.SourceUnavailableError`; a connection lost later is made again with backoff
(0.1 s doubling to 5 s, jittered, on the app's clock) for ever, the outage logged once.
A peer that vanishes without closing the socket is noticed through TCP keepalives within
about 30 s. Passwords never appear in logs, errors or statistics.

Notifications: :func:`on_pg_notify`
-----------------------------------

One event per notification: type :data:`NOTIFICATION_TYPE`
(``"reactor.postgres.notification"``), source ``/reactor/postgres/<name>`` (the source's
name, percent-encoded; a decorated handler's is its consumer name, by default the
handler's qualified name), subject the channel, data the
payload: with ``payload="auto"`` (the default) the parsed JSON value when the payload is
JSON, else the text; ``"json"`` requires JSON (a payload that is not is published as text
and counted as ``malformed``), ``"text"`` and ``"bytes"`` take it as it is. The
``datacontenttype`` says which: ``application/json``, ``text/plain; charset=utf-8`` or
``application/octet-stream``.

**Guarantee: at most once, with gap events.** ``NOTIFY`` is not stored: what is sent while
the source is not connected is lost. After every reconnection the source publishes a
``"reactor.source.gap"`` event (source ``/reactor/postgres/<name>``, data ``{"reason":
"reconnected", "since": ..., "until": ...}``) so that consumers can resynchronise (re-read
the table the notifications were about); ``status_events=True`` hands it to the decorated
handler too. While the app's queue is full the source waits, and the server keeps the
notifications (in its queue of 8 GB, shared by the cluster). For changes that must not be
lost, use row changes.

Statistics (``app.stats().sources["/reactor/postgres/<name>"]``): ``received``,
``published``, ``malformed``, ``reconnects``, ``gaps``, ``oversized`` (events too large
for the app's queue: published without their payload, with a note saying so, and logged)
and ``last_error``; with ``decode``, also ``filtered`` (see below).

Row changes: :func:`on_row_change`
----------------------------------

One event per changed row: type :data:`ROW_INSERTED`, :data:`ROW_UPDATED` or
:data:`ROW_DELETED` (``"reactor.postgres.row.inserted|updated|deleted"``), source
``/reactor/postgres/<name>``, subject the primary key (its value as text; a composite key
as a JSON array, ``'["eu",42]'``), time when the row was changed, id ``"<transaction
id>-<change id>"`` (the same however often the change is delivered: deduplicate on it),
and data::

    {"table": "public.orders", "op": "insert" | "update" | "delete",
     "key": {"region": "eu", "id": 42},
     "new": {...} | null,        # the row after the change (insert, update)
     "old": {...} | null}        # the row before it (update, delete)

Rows are as ``to_jsonb()`` makes them: numbers as JSON numbers, timestamps as ISO 8601
strings, ``bytea`` as ``\\x...`` hex text. The changes of one row are handled one at a time,
in the order they were made (``ordered_by`` defaults to :func:`by_key`).

**Install first.** ``reactor db install --dsn ... public.orders`` (or :func:`install`)
creates, in the schema ``reactor``, a change log and a trigger on the table that writes
each change to the log in the same transaction and sends a ``NOTIFY`` wake-up. It is
idempotent, and ``reactor db uninstall`` (:func:`uninstall`) removes it. An app never
changes the schema: a table that is not installed makes it fail at start with
:class:`TableNotInstalledError`. The table needs a primary key (run ``install`` again after
changing it); ``TRUNCATE`` is not captured. Needs PostgreSQL 13 or later.

**Guarantee: at least once, nothing skipped.** Every committed change is published, also
those made while the app was down (they come when it is back), including after a crash.
The source reads the log from a cursor stored in PostgreSQL per *consumer group*, and
moves the cursor only once the events are in the app's queue (so, with a durable queue,
stored): a crash between the two delivers those changes again, with the same ids. Rolled
back changes are never published. The cursor is a snapshot, not an id: ids are handed out
at write time and transactions commit in another order, so "everything up to id N"
would skip a transaction that commits after a higher id was read. A round delivers, in id
order, the changes of the transactions visible in a new snapshot and not in the previous
one (all of them ended, so the set is final); a transaction still running is delivered
in a later round. Wake-ups come by ``NOTIFY`` at each commit, and the log is read every
``poll_interval`` anyway, so a lost wake-up only delays a change.

**Groups and processes.** Each consumer group gets every change; the default group is
``"<app source>:<name>"``, so apps with different ``Reactor(source=...)`` each get every
change, and the processes of one app share theirs. A group's processes elect one reader
with a session-level advisory lock on the reader's own connection: the others stand by and
try to take the lock every ``standby_interval`` seconds, so when the reader dies (its
connection ends, and the lock with it) another one takes over from the stored cursor. A
new group starts at the oldest change the log still holds. The log is trimmed behind the
slowest group of each table (a group that never reads again holds it: ``uninstall`` and
``install`` the table to forget its groups).

**Bad input never stops the source.** A change whose event is over the queue's size limit
(``max_event_size`` of a durable queue) is published without its rows (``"new"`` and
``"old"`` null, and ``"omitted": {"reason": "too large", "size": ..., "limit": ...}``) and
counted as ``oversized``; a table uninstalled while the app runs is logged and read again
once installed.

Statistics (``app.stats().sources["/reactor/postgres/<name>"]``): ``received`` (changes
read), ``published``, ``oversized``, ``reconnects``, ``last_error``, ``reader`` (1 while
this process is the reader), ``became_reader``, ``trimmed``, ``listener_reconnects``,
``gaps`` (always 0) and ``malformed`` (0 but with ``decode``; then also ``filtered``).

Bucket notifications: ``decode="s3"``
-------------------------------------

Both sources take ``decode="s3"`` and the filter options ``bucket``, ``prefix``,
``suffix`` and ``events``: each notification payload, or the column ``column=``
(default ``"event_data"``) of each inserted row, is then an S3 event notification,
published as one object event per record (the CloudEvents of
:mod:`reactor.sources.objects`, the same as over HTTP) in place of the source's own
event, and the handler receives those that pass its filter. Records that cannot be
decoded are counted as ``malformed``, filtered ones as ``filtered``; the guarantees stay
the sources' own. MinIO's PostgreSQL target (``access`` format) inserts a row per event
into a table of ``event_time`` and ``event_data``, without ``NOTIFY``: read it as row
changes, at least once and without gaps. MinIO creates that table without the primary
key the capture needs; create it first, and install it::

    CREATE TABLE minio_events (id bigserial PRIMARY KEY,
                               event_time timestamptz NOT NULL, event_data jsonb);
    -- reactor db install --dsn ... public.minio_events

    @app.on_row_change("public.minio_events", decode="s3", bucket="uploads")
    async def uploaded(event: Event) -> None:
        key = event.subject                                     # the object's key

Only inserts are read (``ops`` left out, or ``("insert",)``): deleting old rows is
cleaning up. A record without a request id (older MinIO) gets the id ``<transaction
id>-<change id>.<index>``, the same when the change is delivered again.

Testing without a server
------------------------

:func:`notification` and :func:`row_change` build the events the sources publish, for a
test that subscribes the handler to an app of its own::

    app = Reactor()
    app.subscribe("reactor.postgres.*", on_order_row)
    async with app:
        await app.publish_and_wait(postgres.row_change(
            "public.orders", "insert", {"id": 7}, new={"id": 7, "total": 12.5},
            name=on_order_row))
        await app.publish_and_wait(postgres.notification("orders", '{"id": 1}',
                                                         name=on_order))

``name=`` says which source the event comes from: the handler a decorator made the source
for (without a ``name=`` of its own, the source is named after the handler), or the
source's name.
"""

from reactor.abc import export_from

from .._decoding import Decode as Decode
from .._payload import PayloadMode as PayloadMode
from ._admin import install as install
from ._admin import uninstall as uninstall
from ._changelog import WAKE_CHANNEL as WAKE_CHANNEL
from ._changelog import TableNotInstalledError as TableNotInstalledError
from ._connection import DSN_VARIABLE as DSN_VARIABLE
from ._notify import NOTIFICATION_TYPE as NOTIFICATION_TYPE
from ._notify import PgNotifyOptions as PgNotifyOptions
from ._notify import PgNotifySource as PgNotifySource
from ._notify import notification as notification
from ._notify import on_pg_notify as on_pg_notify
from ._rows import DEFAULT_COLUMN as DEFAULT_COLUMN
from ._rows import ROW_DELETED as ROW_DELETED
from ._rows import ROW_INSERTED as ROW_INSERTED
from ._rows import ROW_UPDATED as ROW_UPDATED
from ._rows import Op as Op
from ._rows import RowChangeOptions as RowChangeOptions
from ._rows import RowChangeSource as RowChangeSource
from ._rows import by_key as by_key
from ._rows import on_row_change as on_row_change
from ._rows import row_change as row_change

__all__ = [
    "DEFAULT_COLUMN",
    "DSN_VARIABLE",
    "NOTIFICATION_TYPE",
    "ROW_DELETED",
    "ROW_INSERTED",
    "ROW_UPDATED",
    "WAKE_CHANNEL",
    "Decode",
    "Op",
    "PayloadMode",
    "PgNotifyOptions",
    "PgNotifySource",
    "RowChangeOptions",
    "RowChangeSource",
    "TableNotInstalledError",
    "by_key",
    "install",
    "notification",
    "on_pg_notify",
    "on_row_change",
    "row_change",
    "uninstall",
]

export_from(__name__, globals())
