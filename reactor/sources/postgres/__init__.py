"""PostgreSQL: notifications (``LISTEN``/``NOTIFY``) as events. Needs ``reactor-events[postgres]``.

::

    from reactor.sources import postgres

    @app.on_pg_notify("orders", dsn="postgresql://app@db/shop")   # postgres.on_pg_notify(app, ...)
    async def on_order(event: Event) -> None:
        order = event.data                                       # NOTIFY orders, '{"id": 1}'

**Events.** One per notification: type :data:`NOTIFICATION_TYPE`
(``"reactor.postgres.notification"``), source ``/reactor/postgres/<name>`` (the name is
the consumer's, by default the handler's qualified name), subject the channel, data the
payload: with ``payload="auto"`` (the default) the parsed JSON value when the payload is
JSON, else the text; ``"json"`` requires JSON (a payload that is not is published as text
and counted as ``malformed``), ``"text"`` and ``"bytes"`` take it as it is. The
``datacontenttype`` says which: ``application/json``, ``text/plain; charset=utf-8`` or
``application/octet-stream``.

**Guarantee: at most once, with gap events.** ``NOTIFY`` is not stored: what is sent while
the source is not connected is lost. The source listens on a connection of its own; when it
breaks (a server restart, ``pg_terminate_backend()``, a network failure, noticed through TCP
keepalives within about 30 s when the peer vanishes silently), it reconnects with backoff
(0.1 s doubling to 5 s, jittered, on the app's clock), logs the outage once, and after
every reconnection publishes a ``"reactor.source.gap"`` event (source
``/reactor/postgres/<name>``, data ``{"reason": "reconnected", "since": ..., "until": ...}``)
so that consumers can resynchronise (re-read the table the notifications were about).
A source that cannot connect when the app starts makes ``async with app:`` raise
:class:`reactor.SourceUnavailableError`. While the app's queue is full the source waits and
the server keeps the notifications (in its queue of 8 GB, shared by the database cluster).
For changes that must not be lost, use the row-change source.

**Connection.** ``dsn=`` (a ``postgresql://`` URL or a libpq ``key=value`` string), else the
``REACTOR_POSTGRES_DSN`` environment variable. Passwords never appear in logs, errors or
statistics. The connection is a psycopg sync connection read from the event loop without a
thread, so the source runs on asyncio and trio.

**Statistics** (``app.stats().sources[name]``): ``received``, ``published``, ``malformed``,
``reconnects``, ``gaps``, ``last_error``.

**Testing without a server.** :func:`notification` builds the event the source would
publish: ``await app.publish_and_wait(postgres.notification("orders", '{"id": 1}',
source=on_order))``.
"""

from reactor.abc import export_from

from ._connection import DSN_VARIABLE as DSN_VARIABLE
from ._notify import NOTIFICATION_TYPE as NOTIFICATION_TYPE
from ._notify import PgNotifySource as PgNotifySource
from ._notify import notification as notification
from ._notify import on_pg_notify as on_pg_notify
from ._payload import PayloadMode as PayloadMode

__all__ = [
    "DSN_VARIABLE",
    "NOTIFICATION_TYPE",
    "PayloadMode",
    "PgNotifySource",
    "notification",
    "on_pg_notify",
]

export_from(__name__, globals())
