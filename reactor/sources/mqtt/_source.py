"""The MQTT source and its decorator: the session, the messages, acknowledgements, gaps.

:func:`on_mqtt` is the one definition of the source's options (their defaults in its
signature, their meanings in its docstring); :class:`MqttSource` takes them as
:class:`MqttOptions`, with the same defaults.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Final, Literal, TypeVar, Unpack, get_args
from urllib.parse import unquote, urlsplit

import anyio
import anyio.lowlevel
from anyio.abc import TaskStatus

from reactor import ConsumerOptions, Handler, validators
from reactor.abc import App, import_extra

from .._decoding import Decode, DecodeOptions, decoding
from .._decorate import decorator, distinct, with_defaults
from .._link import Link, configured, connection_failure, password_of
from .._naming import NamedSource
from .._payload import PayloadMode, check_mode, note_malformed
from ._client import Connection, Protocol, Settings
from ._events import DEFAULT_NAME, KIND, MESSAGE_TYPE, build
from ._topics import TopicFilters, check_filter

if TYPE_CHECKING:
    from paho.mqtt.client import MQTTMessage

__all__ = ["URL_VARIABLE", "MqttOptions", "MqttSource", "client_id_for", "on_mqtt"]

logger = logging.getLogger("reactor.sources.mqtt")
# paho's own log lines (each packet, at debug level), apart from the source's.
_paho_logger = logging.getLogger("reactor.sources.mqtt.paho")

H = TypeVar("H", bound=Handler)

#: The environment variable that gives the broker's URL when no ``url=`` is passed.
URL_VARIABLE: Final = "REACTOR_MQTT_URL"
_PORTS: Final = {"mqtt": 1883, "mqtts": 8883}
_MAX_SESSION_EXPIRY: Final = 0xFFFFFFFF  # MQTT 5: the session never expires


class MqttOptions(DecodeOptions, total=False):
    """The options of an MQTT source, all optional: ``qos``, ``payload``, ``client_id``,
    ``session_expiry``, ``protocol``, ``keepalive``, and ``decode`` with its filter
    (``bucket``, ``prefix``, ``suffix``, ``events``).

    :func:`on_mqtt` documents each and gives its default; :class:`MqttSource` takes them
    as keyword arguments, with the same defaults.
    """

    qos: Literal[0, 1]
    payload: PayloadMode
    client_id: str | None
    session_expiry: int
    protocol: Protocol
    keepalive: int


def client_id_for(app_source: str, name: str) -> str:
    """The client id a source uses when given none: the same for the same app and source.

    ``reactor-<name, shortened to letters, digits and dashes>-<12 hex digits of a hash of
    the app's source and the source's name>``: stable across restarts (so the broker
    resumes the session), distinct between apps and sources, at most 53 characters.

    :param app_source: the app's CloudEvents source (``Reactor(source=...)``)
    :param name: the MQTT source's name
    """
    slug = "".join(c if c.isascii() and c.isalnum() else "-" for c in name)[:32].strip("-")
    digest = hashlib.sha256(f"{app_source}\0{name}".encode()).hexdigest()[:12]
    return f"reactor-{slug or 'source'}-{digest}"


class MqttSource(NamedSource):
    """Publish an event for every message on MQTT topic filters.

    See :mod:`reactor.sources.mqtt` for the events and the guarantees, and :func:`on_mqtt`
    for the options (:class:`MqttOptions`): the same, with the same defaults.
    ``app.add_source(MqttSource("sensors/#", url=...))`` publishes the messages without a
    handler of its own (subscribe to :attr:`uri`).

    :param topics: topic filters (``+`` for one level, ``#`` for the rest)
    :param url: the broker, ``mqtt://[user[:password]@]host[:port]`` (``mqtts://`` for
        TLS); default: the environment variable ``REACTOR_MQTT_URL``
    :param name: the source's name, which makes its events' source
        ``/reactor/mqtt/<name>`` (and, unless ``client_id`` is given, its client id)
    :param options: the source's options (:class:`MqttOptions`)
    :raises TypeError: an argument of the wrong type, or an unknown option
    :raises ValueError: no filter, an invalid filter or one given twice, a bad option, no
        URL, or a URL that is not an MQTT URL
    """

    kind = KIND

    def __init__(
        self,
        *topics: str,
        url: str | None = None,
        name: str = DEFAULT_NAME,
        **options: Unpack[MqttOptions],
    ) -> None:
        settings = with_defaults(type(self).__name__, options, MqttOptions, on_mqtt)
        super().__init__(name)
        distinct("topic filter", topics, check_filter)
        self._filters = TopicFilters(topics)
        self._url = configured(
            url, parameter="url", variable=URL_VARIABLE, example="mqtt://127.0.0.1:1883"
        )
        self._qos: int = validators.one_of("qos", settings["qos"], (0, 1))
        self._mode = check_mode(settings["payload"])
        self._decoding = decoding(settings, payload=self._mode)
        client_id = settings["client_id"]
        if client_id is not None:
            validators.name("client_id", client_id)
        self._client_id: str | None = client_id
        self._session_expiry = validators.integer(
            "session_expiry", settings["session_expiry"], minimum=0
        )
        if self._session_expiry > _MAX_SESSION_EXPIRY:
            raise ValueError(
                f"session_expiry must be at most {_MAX_SESSION_EXPIRY} (never expires), "
                f"got {self._session_expiry}"
            )
        self._protocol: Protocol = validators.one_of(
            "protocol", settings["protocol"], get_args(Protocol)
        )
        self._keepalive = validators.integer("keepalive", settings["keepalive"], minimum=1)
        if self._keepalive > 65535:
            raise ValueError(f"keepalive must be at most 65535 seconds, got {self._keepalive}")
        self._host, self._port, self._tls, self._username, self._password = _parse_url(self._url)
        self._link = Link(
            self._uri, self._url, logger, secrets=password_of(self._url), name=self._name
        )
        self._counters = {"unmatched": 0, "duplicates": 0}
        self._active_id: str | None = None
        self._started = False
        self._warned_grant = False

    # -- properties

    @property
    def topics(self) -> tuple[str, ...]:
        """The topic filters, as given."""
        return self._filters.filters

    @property
    def url(self) -> str:
        """The broker's URL, its password hidden."""
        return self._link.target

    @property
    def client_id(self) -> str | None:
        """The client id: the one given, else the one derived when the source started
        (:func:`client_id_for`); ``None`` before that."""
        return self._client_id if self._client_id is not None else self._active_id

    def statistics(self) -> Mapping[str, int | str | None]:
        """Return the counters: ``received`` (messages), ``published`` (message events),
        ``malformed`` (payloads not of the form the ``payload`` option expects, published
        as text or bytes), ``reconnects``, ``gaps`` (gap events published), ``oversized``
        (events too large for the app's queue: published without their payload),
        ``unmatched`` (messages on a topic none of the filters matches, from a
        subscription an earlier run left in the session: acknowledged and dropped),
        ``duplicates`` (MQTT 5: the copies of a message the broker sent for each further
        filter it matched: acknowledged and dropped), ``last_error`` (the last connection
        error, or ``None``) and ``client_id``. With ``decode``: ``published`` counts the
        decoded events, ``malformed`` the records and messages the decoder refused, and
        ``filtered`` the records the filter left out.
        """
        decoded = {} if self._decoding is None else self._decoding.statistics()
        return {
            **self._link.statistics(),
            **self._counters,
            **decoded,
            "client_id": self.client_id,
        }

    def __repr__(self) -> str:
        topics = ", ".join(repr(topic) for topic in self._filters.filters)
        return f"MqttSource({topics}, url={self.url!r}, name={self._name!r}, qos={self._qos})"

    # -- running

    async def run(
        self, app: App, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Connect, subscribe, then publish and acknowledge every message until cancelled;
        reconnect when the connection is lost, with a gap event when the session was lost.

        :raises reactor.SourceUnavailableError: the first connection failed, or the
            broker refused it or a subscription
        :raises ModuleNotFoundError: paho-mqtt is not installed (the ``mqtt`` extra)
        """
        import_extra("paho.mqtt.client", extra="mqtt")
        self._active_id = self._client_id or client_id_for(app.source, self._name)
        settings = Settings(
            host=self._host,
            port=self._port,
            tls=self._tls,
            username=self._username,
            password=self._password,
            client_id=self._active_id,
            protocol=self._protocol,
            clean=self._qos == 0,
            session_expiry=self._session_expiry,
            keepalive=self._keepalive,
        )
        failures = (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError)
        link = self._link
        self._started = False
        while True:
            failure: BaseException
            try:
                await self._session(app, settings, task_status)
            except BaseException as exc:
                found = connection_failure(exc, failures)
                if found is None:
                    raise
                failure = found
            await anyio.lowlevel.checkpoint_if_cancelled()
            if not self._started:
                raise link.unavailable(failure) from None
            await app.clock.sleep(link.failed(failure, app.clock.now()))

    async def _session(self, app: App, settings: Settings, task_status: TaskStatus[None]) -> None:
        """One connection, from CONNECT to its loss (it never ends otherwise)."""
        link = self._link
        connection = await Connection.open(settings, _paho_logger)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(connection.write_loop, name=f"{self._uri} writer")
                tg.start_soon(connection.keepalive_loop, name=f"{self._uri} keepalive")
                accepted = await connection.handshake()
                granted = await connection.subscribe(
                    self._filters.filters, self._qos, identifiers=accepted.identifiers
                )
                self._check_grants(granted)
                # QoS 1 with the session kept: the broker kept every message meanwhile.
                lost = self._qos == 0 or not accepted.session_present
                since = link.connected(app.clock.now(), gap=lost)
                if not self._started:
                    self._started = True
                    self._log_session(accepted.session_present)
                    task_status.started()
                if since is not None and lost:
                    reason = "session lost" if self._qos else "reconnected"
                    await link.publish_gap(app, self.gap_event(app, reason=reason, since=since))
                while True:
                    for message in await connection.receive():
                        await self._handle(app, connection, message, accepted.identifiers)
        finally:
            connection.close()

    async def _handle(
        self, app: App, connection: Connection, message: MQTTMessage, identifiers: bool
    ) -> None:
        """Publish one message's event, then acknowledge the message."""
        link = self._link
        link.received += 1
        try:
            topic = message.topic
        except UnicodeDecodeError:  # brokers refuse such topics; never stop for one
            note_malformed(link, None, "on a topic that is not UTF-8", "nothing (dropped)")
            connection.ack(message)
            return
        index = self._filters.first_match(topic)
        if index is None:
            self._counters["unmatched"] += 1
            if self._counters["unmatched"] == 1:
                logger.warning(
                    "%s: a message on %r matches none of this source's topic filters: the "
                    "broker's session for client id %r holds a subscription of an earlier "
                    "run; such messages are acknowledged and dropped (counted as "
                    "'unmatched'): give the source a new client_id to start a clean session",
                    self._uri,
                    topic,
                    self.client_id,
                    extra={"source": self.name},
                )
            connection.ack(message)
            return
        if identifiers:
            # The broker sends one copy per matching subscription, each with its own
            # identifier: only the copy of the first filter that matches is published.
            through = getattr(message.properties, "SubscriptionIdentifier", None)
            if through and index + 1 not in through:
                self._counters["duplicates"] += 1
                connection.ack(message)
                return
        if self._decoding is not None:
            # Acknowledged once every event is in the app's queue, as a message's event is.
            events = self._decoding(link, bytes(message.payload), topic)
            await link.publish_many(app, events)
            connection.ack(message)
            return
        event, payload = build(
            self._uri,
            topic,
            bytes(message.payload),
            self._filters.filters[index],
            bool(message.retain),
            self._mode,
            app.clock.now(),
        )
        if payload.problem is not None:
            note_malformed(link, topic, payload.problem, payload.datacontenttype)
        # Whether accepted or refused for good (too large: it never will be), the message
        # is done with; an unaccepted one is acknowledged only once it is accepted.
        await link.publish(app, event)
        connection.ack(message)

    def _check_grants(self, granted: list[tuple[str, int]]) -> None:
        for topic_filter, qos in granted:
            if qos < self._qos and not self._warned_grant:
                self._warned_grant = True
                logger.warning(
                    "%s: the broker granted QoS %d for %r (asked for %d): its messages are "
                    "not kept while the source is away",
                    self._uri,
                    qos,
                    topic_filter,
                    self._qos,
                    extra={"source": self.name},
                )

    def _log_session(self, present: bool) -> None:
        if self._qos == 0:
            return
        if present:
            logger.info(
                "%s: resuming the session the broker kept for client id %r",
                self._uri,
                self.client_id,
                extra={"source": self.name},
            )
        else:
            logger.info(
                "%s: the broker had no session for client id %r: a new one starts (if this "
                "client ran before, its session expired and what was sent meanwhile is lost)",
                self._uri,
                self.client_id,
                extra={"source": self.name},
            )


def _parse_url(url: str) -> tuple[str, int, bool, str | None, str | None]:
    """Split an MQTT URL into host, port, TLS, user and password."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"url is not a valid MQTT URL: {exc}") from None
    if parts.scheme not in _PORTS:
        raise ValueError(
            f"url must start with mqtt:// or mqtts://, got a {parts.scheme or 'no'} scheme"
        )
    if not parts.hostname:
        raise ValueError("url has no host: mqtt://host[:port]")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("url has a path, a query or a fragment: mqtt://host[:port] has none")
    username = None if parts.username is None else unquote(parts.username)
    password = None if parts.password is None else unquote(parts.password)
    return (
        parts.hostname,
        _PORTS[parts.scheme] if port is None else port,
        parts.scheme == "mqtts",
        username,
        password,
    )


def on_mqtt(
    app: App,
    /,
    *topics: str,
    url: str | None = None,
    qos: Literal[0, 1] = 1,
    payload: PayloadMode = "auto",
    client_id: str | None = None,
    session_expiry: int = 3600,
    protocol: Protocol = "5",
    keepalive: int = 30,
    decode: Decode | None = None,
    bucket: str | None = None,
    prefix: str = "",
    suffix: str = "",
    events: Sequence[str] | None = None,
    status_events: bool = False,
    **options: Unpack[ConsumerOptions],
) -> Callable[[H], H]:
    """Decorate a handler for the messages published on MQTT topics.

    ``@app.on_mqtt("sensors/+/temperature", url="mqtt://127.0.0.1:1883", qos=1)``: the
    handler receives one event per message: type ``"reactor.mqtt.message"``, subject the
    topic, data the payload (see *payload*), and the filter it matched in the
    ``mqttfilter`` extension (``mqttretain`` says whether it is a retained message). With
    ``qos=1`` (the default) the broker keeps the session and its messages while the app is
    away, and a message is acknowledged only once the app's queue accepted its event:
    at-least-once, with a gap event when the broker lost the session (see
    :mod:`reactor.sources.mqtt`).

    With ``decode="s3"`` each message is an S3 bucket notification, as MinIO's MQTT
    target publishes them, and the handler receives its records as object events (see
    :mod:`reactor.sources.objects`)::

        @app.on_mqtt("minio/events", url=..., decode="s3", bucket="uploads", suffix=".csv")
        async def load(event: Event) -> None: ...       # event.subject: the object's key

    :param app: the app to add the source and the subscription to
    :param topics: topic filters, one or more: ``+`` matches one level, ``#`` (the whole
        last level) any number; ``$share/<group>/<filter>`` is a shared subscription
        (several processes of one app share the messages)
    :param url: the broker, ``mqtt://[user[:password]@]host[:port]`` (``mqtts://`` for TLS,
        port 8883 by default); default: the environment variable ``REACTOR_MQTT_URL``, and
        an error if neither is given
    :param qos: 1 (default): a persistent session and acknowledgements after the app's
        queue accepted each event; 0: no session, at-most-once, and a gap event after
        every reconnection. (QoS 2 is refused: without a store of its own the client
        cannot keep its exactly-once promise across a crash)
    :param payload: how a message becomes the event's data: ``"auto"`` (JSON if it parses,
        else text if UTF-8, else bytes), ``"json"`` (a message that is not JSON is
        published as text or bytes and counted as ``malformed``), ``"text"`` or
        ``"bytes"``; ``datacontenttype`` says which
    :param client_id: the MQTT client id, which names the session on the broker (default:
        derived from the app's source and the source's name, :func:`client_id_for`, so the
        same on every restart). Two connections with one client id push each other off:
        give each process its own (and a ``$share/`` filter) to run several
    :param session_expiry: MQTT 5, QoS 1: seconds the broker keeps the session (and the
        messages for it) after the source disconnected; ``4294967295``: for ever. With
        MQTT 3.1.1 the broker's configuration decides
    :param protocol: ``"5"`` (default) or ``"3.1.1"``
    :param keepalive: seconds between pings on a quiet connection; a broker that does not
        answer within that time is taken as gone
    :param decode: ``"s3"``: each message is an S3 event notification, published as one
        object event per record (type ``com.amazonaws.s3.<eventName>``, source the
        bucket's, subject the key), which the handler receives when it passes *bucket*,
        *prefix*, *suffix* and *events*; records that cannot be decoded are counted as
        ``malformed``. ``None`` (default): one ``reactor.mqtt.message`` per message
    :param bucket: with *decode*: the bucket's name, or a glob; ``None`` for any
    :param prefix: with *decode*: keys must start with it
    :param suffix: with *decode*: keys must end with it
    :param events: with *decode*: globs on S3 event names (``"ObjectCreated:*"``);
        ``None`` for all
    :param status_events: also hand the handler the source's gap events (type
        ``"reactor.source.gap"``: check ``event.type``); by default it gets messages only
    :param options: the consumer's options (:class:`~reactor.ConsumerOptions`). ``name``
        (default: the handler's qualified name) is also the source's name in
        ``/reactor/mqtt/<name>``
    :return: a decorator that subscribes the handler and returns it unchanged
    :raises TypeError: an option of the wrong type, or an unknown keyword argument
    :raises ValueError: no filter, an invalid filter, a bad option (a filter without
        *decode*, a *payload* with it), no URL, or the consumer name is taken
    """
    settings: MqttOptions = {
        "qos": qos,
        "payload": payload,
        "client_id": client_id,
        "session_expiry": session_expiry,
        "protocol": protocol,
        "keepalive": keepalive,
        "decode": decode,
        "bucket": bucket,
        "prefix": prefix,
        "suffix": suffix,
        "events": events,
    }
    return decorator(
        app,
        "on_mqtt",
        lambda name: MqttSource(*topics, url=url, name=name, **settings),
        MESSAGE_TYPE,
        options,
        status_events=status_events,
    )
