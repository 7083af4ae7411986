"""LISTEN/NOTIFY: :class:`PgNotifySource`, its decorator :func:`on_pg_notify`, and
:func:`notification`, the one definition of the events it publishes.
"""

from __future__ import annotations

import codecs
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from functools import partial
from typing import Final, TypeVar, Unpack

import anyio
from anyio.abc import TaskStatus

from reactor import ConsumerOptions, Event, Handler, validators
from reactor.abc import App

from .._decoding import Decode, DecodeOptions, decoding
from .._decorate import decorator, with_defaults
from .._link import Link
from .._naming import NamedSource, event_time, uri_for
from .._payload import Payload, PayloadMode, check_data, check_mode, note_malformed, payload_event
from ._connection import CONNECT_TIMEOUT, KIND, password_of, psycopg_module, resolve_dsn
from ._listener import Listener, Notification, checked_channel, listen

__all__ = [
    "NOTIFICATION_TYPE",
    "PgNotifyOptions",
    "PgNotifySource",
    "notification",
    "on_pg_notify",
]

logger = logging.getLogger("reactor.sources.postgres")

H = TypeVar("H", bound=Handler)

#: The type of the events of :class:`PgNotifySource`.
NOTIFICATION_TYPE: Final = "reactor.postgres.notification"
# The counters of a source that never ran.
_NO_LINK: Final = Link("", "", logger)


def _build(
    uri: str,
    channel: str,
    data: bytes | str,
    mode: PayloadMode,
    encoding: str,
    time: datetime,
) -> tuple[Event, Payload]:
    """Build the event for one notification, and say how its payload was decoded.

    The one definition of the event, for the source and for :func:`notification`.
    """
    return payload_event(
        NOTIFICATION_TYPE, _in_utf8(data, encoding), mode, source=uri, subject=channel, time=time
    )


def _in_utf8(data: bytes | str, encoding: str) -> bytes | str:
    """A payload in the connection's client *encoding*, as text unless it is UTF-8 already."""
    if isinstance(data, bytes) and codecs.lookup(encoding).name != "utf-8":
        with contextlib.suppress(UnicodeDecodeError):
            return data.decode(encoding)
    return data


def notification(
    channel: str,
    data: bytes | str = "",
    *,
    payload: PayloadMode = "auto",
    name: str | Handler,
    time: datetime | None = None,
) -> Event:
    """Build the event that a notification source publishes for ``NOTIFY channel, 'data'``.

    For tests that fire a handler without a server::

        @app.on_pg_notify("orders")
        async def on_order(event: Event) -> None: ...

        await app.publish_and_wait(postgres.notification("orders", '{"id": 1}', name=on_order))

    :param channel: the channel (the event's subject)
    :param data: the notification's payload, text or bytes (UTF-8)
    :param payload: the source's ``payload`` option
    :param name: the source the event comes from: its name, or the handler that
        :func:`on_pg_notify` decorated (without a ``name=``: the source is named after the
        handler); the event's source is ``/reactor/postgres/<name>``, which is what the
        handler is subscribed to
    :param time: the event's time (default: now)
    :return: the event, as the source would publish it
    :raises TypeError: an argument of the wrong type
    :raises ValueError: a bad channel, name or payload mode
    """
    return _build(
        uri_for(KIND, name),
        checked_channel(channel),
        check_data(data),
        check_mode(payload),
        "utf-8",
        event_time(time),
    )[0]


class PgNotifyOptions(DecodeOptions, total=False):
    """The options of a notification source, all optional: ``payload``,
    ``connect_timeout``, and ``decode`` with its filter (``bucket``, ``prefix``,
    ``suffix``, ``events``).

    :func:`on_pg_notify` documents each and gives its default; :class:`PgNotifySource`
    takes them as keyword arguments, with the same defaults.
    """

    payload: PayloadMode
    connect_timeout: float


class PgNotifySource(NamedSource):
    """Publish an event for every notification on PostgreSQL channels (``LISTEN``).

    See the package documentation for the events and the guarantee, and
    :func:`on_pg_notify` for the options (:class:`PgNotifyOptions`): the same, with the
    same defaults.

    :param channels: the channels, one or more
    :param dsn: the server (default: the ``REACTOR_POSTGRES_DSN`` environment variable)
    :param name: the source's name: its events' source is ``/reactor/postgres/<name>``,
        which is also the key of its statistics (default: the channels, comma-separated)
    :param options: the source's options (:class:`PgNotifyOptions`)
    :raises TypeError: an argument of the wrong type, or an unknown option
    :raises ValueError: no channel, a bad channel, a malformed DSN, or a bad option
    :raises ModuleNotFoundError: psycopg is not installed (``reactor-events[postgres]``)
    """

    kind = KIND

    def __init__(
        self,
        *channels: str,
        dsn: str | None = None,
        name: str | None = None,
        **options: Unpack[PgNotifyOptions],
    ) -> None:
        settings = with_defaults(type(self).__name__, options, PgNotifyOptions, on_pg_notify)
        if not channels:
            raise ValueError("PgNotifySource needs at least one channel")
        self._channels = tuple(dict.fromkeys(checked_channel(c) for c in channels))
        if dsn is not None:
            password_of(resolve_dsn(dsn))  # a malformed DSN is refused here, not at start
        self._dsn = dsn
        super().__init__(",".join(self._channels) if name is None else name)
        self._mode = check_mode(settings["payload"])
        self._decoding = decoding(settings, payload=self._mode)
        self._timeout = validators.seconds(
            "connect_timeout", settings["connect_timeout"], positive=True
        )
        self._link: Link | None = None
        self._listener: Listener | None = None

    @property
    def channels(self) -> tuple[str, ...]:
        """The channels listened to."""
        return self._channels

    @property
    def backend_pid(self) -> int | None:
        """The server process of the listening connection, ``None`` while there is none."""
        return None if self._listener is None else self._listener.backend_pid

    def statistics(self) -> Mapping[str, int | str | None]:
        """Return the counters: ``received`` (notifications), ``published`` (notification
        events), ``malformed`` (payloads not of the form the ``payload`` option expects,
        published as text or bytes), ``reconnects``, ``gaps`` (gap events published),
        ``oversized`` (events too large for the app's queue: published without their
        payload) and ``last_error`` (the last connection error, password hidden, or
        ``None``). With ``decode``: ``published`` counts the decoded events, ``malformed``
        the records and payloads the decoder refused, and ``filtered`` the records the
        filter left out.
        """
        link = _NO_LINK if self._link is None else self._link
        if self._decoding is None:
            return link.statistics()
        return {**link.statistics(), **self._decoding.statistics()}

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
            self._link = Link(self.name, dsn, logger, secrets=(password,) if password else ())
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
        decoding = self._decoding
        for item in batch:
            if decoding is not None:
                events += decoding(link, _in_utf8(item.payload, encoding), item.channel)
                continue
            event, payload = _build(
                self._uri, item.channel, item.payload, self._mode, encoding, now
            )
            if payload.problem is not None:
                note_malformed(link, item.channel, payload.problem, payload.datacontenttype)
            events.append(event)
        await link.publish_many(app, events)

    async def _reconnected(self, app: App, since: datetime) -> None:
        assert self._link is not None
        await self._link.publish_gap(app, self.gap_event(app, reason="reconnected", since=since))


def on_pg_notify(
    app: App,
    /,
    *channels: str,
    dsn: str | None = None,
    payload: PayloadMode = "auto",
    status_events: bool = False,
    connect_timeout: float = CONNECT_TIMEOUT,
    decode: Decode | None = None,
    bucket: str | None = None,
    prefix: str = "",
    suffix: str = "",
    events: Sequence[str] | None = None,
    **options: Unpack[ConsumerOptions],
) -> Callable[[H], H]:
    """Decorate a handler for the notifications on PostgreSQL *channels* (``LISTEN``).

    The handler receives one event per notification: type
    ``"reactor.postgres.notification"``, subject the channel, data the payload made into
    data by *payload*, source ``/reactor/postgres/<name>``. Delivery is at most once: a
    notification sent while the connection is down is lost, and after every reconnection a
    ``"reactor.source.gap"`` event with the same source says so (``status_events=True``
    hands it to this handler too).

    With ``decode="s3"`` each payload is an S3 bucket notification, and the handler
    receives its records as object events (see :mod:`reactor.sources.objects`). MinIO's
    own PostgreSQL target inserts rows without ``NOTIFY``: read its table with
    :func:`on_row_change` (``decode="s3"`` there too); this takes the notifications of a
    trigger or a bridge that sends them with ``pg_notify()``.

    :param app: the app
    :param channels: the channels, one or more, exactly as ``pg_notify()`` names them
        (``NOTIFY Orders`` folds to ``orders``, as SQL identifiers do)
    :param dsn: the server, a ``postgresql://`` URL or libpq ``key=value`` string (default:
        the ``REACTOR_POSTGRES_DSN`` environment variable)
    :param payload: ``"auto"`` (default: JSON when it parses, else the text), ``"json"``
        (must be JSON; other payloads are published as text and counted as ``malformed``),
        ``"text"`` or ``"bytes"``
    :param status_events: also hand the handler the source's gap events (type
        ``"reactor.source.gap"``: check ``event.type``); by default it gets notifications
        only
    :param connect_timeout: the most seconds one connection attempt may take
    :param decode: ``"s3"``: each payload is an S3 event notification, published as one
        object event per record (type ``com.amazonaws.s3.<eventName>``, source the
        bucket's, subject the key), which the handler receives when it passes *bucket*,
        *prefix*, *suffix* and *events*; records that cannot be decoded are counted as
        ``malformed``. ``None`` (default): one ``reactor.postgres.notification`` per
        notification
    :param bucket: with *decode*: the bucket's name, or a glob; ``None`` for any
    :param prefix: with *decode*: keys must start with it
    :param suffix: with *decode*: keys must end with it
    :param events: with *decode*: globs on S3 event names (``"ObjectCreated:*"``);
        ``None`` for all
    :param options: the consumer's options (:class:`~reactor.ConsumerOptions`); ``name``
        (default: the handler's qualified name) is also the source's name in
        ``/reactor/postgres/<name>``
    :return: a decorator that subscribes the handler and returns it unchanged
    :raises TypeError: an argument of the wrong type, or an unknown keyword argument
    :raises ValueError: no channel, a bad channel, a malformed DSN, a bad option (a filter
        without *decode*, a *payload* with it), or the name is taken (when decorating);
        without a DSN, the app does not start (the variable is read when it starts)
    :raises ModuleNotFoundError: psycopg is not installed; the message names
        ``pip install 'reactor-events[postgres]'``
    """
    # Without psycopg, the mistake is here, not when the app starts.
    psycopg_module()
    settings: PgNotifyOptions = {
        "payload": payload,
        "connect_timeout": connect_timeout,
        "decode": decode,
        "bucket": bucket,
        "prefix": prefix,
        "suffix": suffix,
        "events": events,
    }
    return decorator(
        app,
        "on_pg_notify",
        lambda name: PgNotifySource(*channels, dsn=dsn, name=name, **settings),
        NOTIFICATION_TYPE,
        options,
        status_events=status_events,
    )
