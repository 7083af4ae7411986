"""LISTEN/NOTIFY: :class:`PgNotifySource`, its decorator :func:`on_pg_notify`, and
:func:`notification`, the one definition of the events it publishes.
"""

from __future__ import annotations

import codecs
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Final, TypeVar, Unpack

import anyio
from anyio.abc import TaskStatus

from reactor import ConsumerOptions, Event, Handler, validators
from reactor.abc import App, Source, default_name, run_with_subscription
from reactor.sources._link import Link
from reactor.sources._payload import PayloadMode, check_mode, decode, note_malformed

from ._connection import CONNECT_TIMEOUT, password_of, psycopg_module, resolve_dsn
from ._listener import Listener, Notification, checked_channel, listen
from ._publish import source_name, source_uri

__all__ = ["NOTIFICATION_TYPE", "PgNotifySource", "notification", "on_pg_notify"]

logger = logging.getLogger("reactor.sources.postgres")

H = TypeVar("H", bound=Handler)

#: The type of the events of :class:`PgNotifySource`.
NOTIFICATION_TYPE: Final = "reactor.postgres.notification"
# The counters of a source that never ran.
_NO_LINK: Final = Link("", "", logger)


def _build(
    channel: str,
    payload: bytes | str,
    *,
    uri: str,
    mode: PayloadMode,
    encoding: str,
    time: datetime,
) -> tuple[Event, str | None]:
    if isinstance(payload, bytes) and codecs.lookup(encoding).name != "utf-8":
        # The payload is in the connection's client encoding: text from here on.
        with contextlib.suppress(UnicodeDecodeError):
            payload = payload.decode(encoding)
    parsed = decode(payload, mode)
    event = Event(
        type=NOTIFICATION_TYPE,
        source=uri,
        subject=channel,
        time=time,
        datacontenttype=parsed.datacontenttype,
        data=parsed.data,
    )
    return event, parsed.problem


def notification(
    channel: str,
    payload: str | bytes = "",
    *,
    source: str | Handler,
    mode: PayloadMode = "auto",
    time: datetime | None = None,
) -> Event:
    """Build the event that a notification source publishes for ``NOTIFY channel, 'payload'``.

    For tests that fire a handler without a server::

        @app.on_pg_notify("orders")
        async def on_order(event: Event) -> None: ...

        await app.publish_and_wait(postgres.notification("orders", '{"id": 1}', source=on_order))

    :param channel: the channel (the event's subject)
    :param payload: the payload, text or bytes (UTF-8)
    :param source: the source the event comes from: the handler that
        :func:`on_pg_notify` decorated (without a ``name=``), or the source's name
    :param mode: the source's ``payload`` option
    :param time: the event's time (default: now)
    :return: the event, as the source would publish it
    :raises TypeError: an argument of the wrong type
    :raises ValueError: a bad channel, source name or mode
    """
    event, _ = _build(
        checked_channel(channel),
        payload,
        uri=source_uri(source_name(source)),
        mode=check_mode(mode),
        encoding="utf-8",
        time=datetime.now(UTC) if time is None else time,
    )
    return event


class PgNotifySource(Source):
    """Publish an event for every notification on PostgreSQL channels (``LISTEN``).

    See the package documentation for the events and the guarantee, and
    :func:`on_pg_notify` for the arguments.

    :param channels: the channels, one or more
    :param dsn: the server (default: the ``REACTOR_POSTGRES_DSN`` environment variable)
    :param name: the source's name: its events' source is ``/reactor/postgres/<name>``,
        and its statistics' key (default: the channels, comma-separated)
    :param payload: how payloads become event data (:data:`PayloadMode`)
    :param connect_timeout: the most seconds one connection attempt may take
    :raises TypeError: an argument of the wrong type
    :raises ValueError: no channel, a bad channel, a malformed DSN, or a bad option
    :raises ModuleNotFoundError: psycopg is not installed (``reactor-events[postgres]``)
    """

    def __init__(
        self,
        *channels: str,
        dsn: str | None = None,
        name: str | None = None,
        payload: PayloadMode = "auto",
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        if not channels:
            raise ValueError("PgNotifySource needs at least one channel")
        self._channels = tuple(dict.fromkeys(checked_channel(c) for c in channels))
        if dsn is not None:
            password_of(resolve_dsn(dsn))  # a malformed DSN is refused here, not at start
        self._dsn = dsn
        self._name = ",".join(self._channels) if name is None else validators.name("name", name)
        self._uri = source_uri(self._name)
        self._mode = check_mode(payload)
        self._timeout = validators.seconds("connect_timeout", connect_timeout, positive=True)
        self._link: Link | None = None
        self._listener: Listener | None = None

    @property
    def name(self) -> str:
        """The source's name (the key of its statistics)."""
        return self._name

    @property
    def uri(self) -> str:
        """The CloudEvents ``source`` of this source's events: ``/reactor/postgres/<name>``."""
        return self._uri

    @property
    def channels(self) -> tuple[str, ...]:
        """The channels listened to."""
        return self._channels

    @property
    def backend_pid(self) -> int | None:
        """The server process of the listening connection, ``None`` while there is none."""
        return None if self._listener is None else self._listener.backend_pid

    def statistics(self) -> Mapping[str, int | str | None]:
        """Return ``received`` (notifications), ``published`` (events), ``malformed``
        (payloads that were not what ``payload=`` requires), ``reconnects``, ``gaps`` and
        ``last_error`` (the last connection error, password hidden).
        """
        if self._link is None:
            return _NO_LINK.statistics()
        return self._link.statistics()

    def __repr__(self) -> str:
        return f"PgNotifySource({', '.join(map(repr, self._channels))}, name={self._name!r})"

    async def run(
        self, app: App, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen and publish until cancelled.

        :param app: the running app
        :param task_status: started once ``LISTEN`` is in place on every channel
        :raises ~reactor.SourceUnavailableError: the first connection failed
        :raises ValueError: no DSN was given and ``REACTOR_POSTGRES_DSN`` is not set
        """
        psycopg_module()
        dsn = resolve_dsn(self._dsn)
        if self._link is None:
            password = password_of(dsn)
            self._link = Link(self._name, dsn, logger, secrets=(password,) if password else ())
        try:
            await listen(
                app,
                self._link,
                dsn,
                self._channels,
                partial(self._deliver, app),
                partial(self._reconnected, app),
                opened=self._opened,
                connect_timeout=self._timeout,
                task_status=task_status,
            )
        finally:
            self._listener = None

    def _opened(self, listener: Listener) -> None:
        self._listener = listener

    async def _deliver(self, app: App, batch: Sequence[Notification]) -> None:
        link = self._link
        assert link is not None
        now = app.clock.now()
        events: list[Event] = []
        encoding = self._listener.encoding if self._listener is not None else "utf-8"
        for item in batch:
            event, problem = _build(
                item.channel,
                item.payload,
                uri=self._uri,
                mode=self._mode,
                encoding=encoding,
                time=now,
            )
            if problem is not None:
                note_malformed(link, item.channel, problem, str(event.datacontenttype))
            events.append(event)
        await link.publish_many(app, events)

    async def _reconnected(self, app: App, since: datetime) -> None:
        assert self._link is not None
        await app.publish(self.gap_event(app, reason="reconnected", since=since, source=self._uri))
        self._link.gaps += 1


def on_pg_notify(
    app: App,
    /,
    *channels: str,
    dsn: str | None = None,
    payload: PayloadMode = "auto",
    status_events: bool = False,
    connect_timeout: float = CONNECT_TIMEOUT,
    **options: Unpack[ConsumerOptions],
) -> Callable[[H], H]:
    """Decorate a handler for the notifications on PostgreSQL *channels* (``LISTEN``).

    The handler receives one event per notification: type
    ``"reactor.postgres.notification"``, subject the channel, data the payload made into
    data by *payload*, source ``/reactor/postgres/<name>``. Delivery is at most once: a
    notification sent while the connection is down is lost, and after every reconnection a
    ``"reactor.source.gap"`` event with the same source says so (``status_events=True``
    hands it to this handler too).

    :param app: the app
    :param channels: the channels, one or more, exactly as ``pg_notify()`` names them
        (``NOTIFY Orders`` folds to ``orders``, as SQL identifiers do)
    :param dsn: the server, a ``postgresql://`` URL or libpq ``key=value`` string (default:
        the ``REACTOR_POSTGRES_DSN`` environment variable)
    :param payload: ``"auto"`` (default: JSON when it parses, else the text), ``"json"``
        (must be JSON; other payloads are published as text and counted as ``malformed``),
        ``"text"`` or ``"bytes"``
    :param status_events: also hand the handler the source's gap events
    :param connect_timeout: the most seconds one connection attempt may take
    :param options: the consumer's options (:class:`~reactor.ConsumerOptions`); ``name``
        (default: the handler's qualified name) is also the source's name
    :return: a decorator that subscribes the handler and returns it unchanged
    :raises TypeError: an argument of the wrong type, or an unknown keyword argument
    :raises ValueError: no channel, a bad channel, a malformed DSN, a bad option, or the
        name is taken (when decorating); without a DSN, the app does not start (the
        variable is read when it starts)
    :raises ModuleNotFoundError: psycopg is not installed; the message names
        ``pip install 'reactor-events[postgres]'``
    """
    validators.keywords("on_pg_notify", options, ConsumerOptions)
    validators.boolean("status_events", status_events)
    # Check the arguments now, where the mistake is, not when the handler is decorated.
    psycopg_module()
    PgNotifySource(
        *channels, dsn=dsn, name="check", payload=payload, connect_timeout=connect_timeout
    )

    def decorate(handler: H) -> H:
        name = options.get("name")
        source = PgNotifySource(
            *channels,
            dsn=dsn,
            name=default_name(handler) if name is None else name,
            payload=payload,
            connect_timeout=connect_timeout,
        )
        run_with_subscription(
            app,
            source,
            "*" if status_events else NOTIFICATION_TYPE,
            handler,
            events_from=source.uri,
            **options,
        )
        return handler

    return decorate
