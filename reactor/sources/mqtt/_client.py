"""One connection to an MQTT broker: paho-mqtt's protocol engine, driven by anyio.

`paho-mqtt <https://pypi.org/project/paho-mqtt/>`_ implements MQTT 3.1.1 and 5 and lets an
application run the network loop itself (its "external event loop" API: ``loop_read``,
``loop_write``, ``loop_misc``, ``want_write`` and the socket callbacks). This module runs
that loop with anyio, so the source works on asyncio and trio alike, with no asyncio-only
client and no thread except for opening the connection (paho connects, and shakes hands
for TLS, with blocking calls; a worker thread does that, bounded by a timeout).

A :class:`Connection` is used by three tasks of the source: the one that reads (the
handshake, the subscriptions, then the messages, one read at a time: nothing more is read
while the source publishes what it has), :meth:`Connection.write_loop` (whatever paho
queued: acknowledgements, pings) and :meth:`Connection.keepalive_loop`. Acknowledgements
are manual (``manual_ack=True``): paho sends a PUBACK only when :meth:`Connection.ack` is
called, so the source acknowledges a message once the app's queue has accepted its event.
Any loss of the connection raises :class:`ConnectionLost` in the task that sees it.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, Final, Literal

import anyio
import anyio.to_thread
import attrs

from reactor.abc import import_extra

if TYPE_CHECKING:
    from paho.mqtt.client import Client, ConnectFlags, DisconnectFlags, MQTTMessage
    from paho.mqtt.properties import Properties
    from paho.mqtt.reasoncodes import ReasonCode

__all__ = ["BrokerRefused", "Connection", "ConnectionLost", "Protocol", "Settings"]

#: The MQTT versions the source speaks.
Protocol = Literal["5", "3.1.1"]

# Seconds, in real time (network waits, not the app's schedule): to open the connection
# and have it accepted, and for the broker to confirm the subscriptions.
CONNECT_TIMEOUT: Final = 10.0
# The most messages read from the socket in one go (then published, then acknowledged).
_READ_AHEAD: Final = 64
# How often paho's keepalive bookkeeping runs (it sends PINGREQ when due, and gives up
# on a broker that does not answer within the keepalive interval).
_TICK: Final = 1.0


class ConnectionLost(ConnectionError):
    """The connection to the broker ended."""


class BrokerRefused(ConnectionError):
    """The broker refused the connection (CONNACK) or a subscription (SUBACK)."""


@attrs.frozen(kw_only=True)
class Settings:
    """What a connection needs: where to, who as, and the session it asks for."""

    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None = attrs.field(repr=False)
    client_id: str
    protocol: Protocol
    #: start a new session (and have the broker discard it at the end) instead of
    #: resuming the one the broker kept for the client id
    clean: bool
    #: MQTT 5: seconds the broker keeps the session after a disconnection
    session_expiry: int
    keepalive: int


@attrs.frozen
class Accepted:
    """The broker's CONNACK: whether it had a session, and what it supports."""

    session_present: bool
    #: MQTT 5 subscription identifiers (tell which subscription a message came through)
    identifiers: bool


class Connection:
    """One connection, opened with :meth:`open`; closed with :meth:`close`."""

    def __init__(self, client: Client, settings: Settings) -> None:
        self._client = client
        self._settings = settings
        self._sock: Any = None
        self._wake = anyio.Event()
        self._inbox: list[MQTTMessage] = []
        self._connack: tuple[bool, ReasonCode, Properties | None] | None = None
        self._subacks: dict[int, list[ReasonCode]] = {}
        self._reason: str | None = None
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect

    @classmethod
    async def open(cls, settings: Settings, logger: logging.Logger) -> Connection:
        """Open a TCP (or TLS) connection and send CONNECT.

        :param settings: the connection's settings
        :param logger: where paho logs (each packet, at debug level; never a password)
        :raises OSError: the connection could not be opened
        :raises ModuleNotFoundError: paho-mqtt is not installed (the ``mqtt`` extra)
        """
        paho = import_extra("paho.mqtt.client", extra="mqtt")
        enums = import_extra("paho.mqtt.enums", extra="mqtt")
        v5 = settings.protocol == "5"
        client = paho.Client(
            callback_api_version=enums.CallbackAPIVersion.VERSION2,
            client_id=settings.client_id,
            protocol=enums.MQTTProtocolVersion.MQTTv5 if v5 else enums.MQTTProtocolVersion.MQTTv311,
            clean_session=None if v5 else settings.clean,
            manual_ack=True,
            reconnect_on_failure=False,
        )
        client.enable_logger(logger)
        client.connect_timeout = CONNECT_TIMEOUT
        if settings.username is not None:
            client.username_pw_set(settings.username, settings.password)
        if settings.tls:
            client.tls_set_context(ssl.create_default_context())
        connect = partial(client.connect, settings.host, settings.port, settings.keepalive)
        if v5:
            properties = import_extra("paho.mqtt.properties", extra="mqtt").Properties(
                import_extra("paho.mqtt.packettypes", extra="mqtt").PacketTypes.CONNECT
            )
            properties.SessionExpiryInterval = 0 if settings.clean else settings.session_expiry
            connect = partial(connect, clean_start=settings.clean, properties=properties)
        connection = cls(client, settings)
        await anyio.to_thread.run_sync(connect)
        # From here on, paho runs in this thread only, on a non-blocking socket.
        connection._sock = client.socket()
        client.on_socket_register_write = connection._on_register_write
        client.on_socket_close = connection._on_socket_close
        return connection

    # -- paho's callbacks (called inside loop_read and friends, in this thread)

    def _on_connect(
        self,
        client: Client,
        userdata: object,
        flags: ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._connack = (flags.session_present, reason, properties)

    def _on_subscribe(
        self,
        client: Client,
        userdata: object,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        self._subacks[mid] = reasons

    def _on_message(self, client: Client, userdata: object, message: MQTTMessage) -> None:
        self._inbox.append(message)

    def _on_disconnect(
        self,
        client: Client,
        userdata: object,
        flags: DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if flags.is_disconnect_packet_from_server:  # the broker says why ("Session taken over")
            self._reason = str(reason)

    def _on_register_write(self, client: Client, userdata: object, sock: object) -> None:
        self._wake.set()

    def _on_socket_close(self, client: Client, userdata: object, sock: Any) -> None:
        # Wake the tasks waiting on the socket (with ClosedResourceError) before paho
        # closes it under them.
        anyio.notify_closing(sock)

    # -- the loops

    def _lost(self, rc: int | None = None) -> ConnectionLost:
        if rc is None:
            text = "the connection was closed"
        else:
            text = import_extra("paho.mqtt.client", extra="mqtt").error_string(rc).rstrip(".")
        if self._reason is not None:
            text += f" ({self._reason})"
        return ConnectionLost(text)

    async def _read(self) -> None:
        """Wait for data and hand what arrived to paho (which calls the callbacks)."""
        sock = self._sock
        if not (isinstance(sock, ssl.SSLSocket) and sock.pending()):
            try:
                await anyio.wait_readable(sock)
            except (anyio.ClosedResourceError, OSError, ValueError):
                raise self._lost() from None
        client, inbox = self._client, self._inbox
        # paho reads one packet per call: take what already arrived, up to a bound, while
        # each call completes a message.
        for _ in range(_READ_AHEAD):
            before = len(inbox)
            rc = client.loop_read()
            if rc:
                raise self._lost(rc)
            if len(inbox) == before:
                break

    async def write_loop(self) -> None:
        """Write what paho queued (acknowledgements, subscriptions, pings), for ever.

        :raises ConnectionLost: the connection ended
        """
        client = self._client
        while True:
            while client.want_write():
                # The socket is non-blocking: write what fits now, wait only for the rest.
                rc = client.loop_write()
                if rc:
                    raise self._lost(rc)
                if client.want_write():
                    try:
                        await anyio.wait_writable(self._sock)
                    except (anyio.ClosedResourceError, OSError, ValueError):
                        raise self._lost() from None
            await self._wake.wait()
            self._wake = anyio.Event()

    async def keepalive_loop(self) -> None:
        """Run paho's keepalive every second, for ever.

        It sleeps in real time, not on the app's clock: paho times the keepalive with
        :func:`time.monotonic`, and a broker that does not hear from the client in time
        drops it whatever the app's clock says.

        :raises ConnectionLost: the broker did not answer a ping in time
        """
        while True:
            await anyio.sleep(_TICK)
            rc = self._client.loop_misc()
            if rc:
                raise self._lost(rc)

    # -- the conversation

    async def handshake(self) -> Accepted:
        """Wait for the broker's CONNACK.

        :raises BrokerRefused: the broker refused the connection (bad credentials, a
            client id it does not accept, ...)
        :raises TimeoutError: no answer within the connect timeout
        :raises ConnectionLost: the connection ended
        """
        with anyio.fail_after(CONNECT_TIMEOUT):
            while self._connack is None:
                try:
                    await self._read()
                except ConnectionLost:
                    if self._connack is None:
                        raise
                    # paho closes the connection on a refusal: the CONNACK says why.
        present, reason, properties = self._connack
        if reason.is_failure:
            raise BrokerRefused(f"the broker refused the connection: {reason}")
        identifiers = self._settings.protocol == "5" and (
            getattr(properties, "SubscriptionIdentifierAvailable", 1) == 1
        )
        return Accepted(session_present=bool(present), identifiers=identifiers)

    async def subscribe(
        self, filters: Sequence[str], qos: int, *, identifiers: bool
    ) -> list[tuple[str, int]]:
        """Subscribe to *filters* and wait for the broker to confirm.

        With MQTT 5 a retained message is sent only for a subscription the session did
        not have yet, and, where the broker supports them, filter *i* gets the
        subscription identifier *i + 1*, which each message then carries.

        :return: each filter with the QoS the broker granted
        :raises BrokerRefused: the broker refused a subscription
        :raises ConnectionLost: the connection ended
        """
        client = self._client
        mids: list[tuple[int, list[str]]] = []
        if self._settings.protocol == "5":
            options_class = import_extra("paho.mqtt.subscribeoptions", extra="mqtt")
            options = options_class.SubscribeOptions(
                qos=qos, retainHandling=options_class.SubscribeOptions.RETAIN_SEND_IF_NEW_SUB
            )
            if identifiers:
                properties_module = import_extra("paho.mqtt.properties", extra="mqtt")
                subscribe = import_extra("paho.mqtt.packettypes", extra="mqtt").PacketTypes
                for index, topic_filter in enumerate(filters):
                    properties = properties_module.Properties(subscribe.SUBSCRIBE)
                    properties.SubscriptionIdentifier = index + 1
                    mids.append(
                        (
                            self._sent(
                                client.subscribe(
                                    topic_filter, options=options, properties=properties
                                )
                            ),
                            [topic_filter],
                        )
                    )
            else:
                mids.append(
                    (self._sent(client.subscribe([(f, options) for f in filters])), list(filters))
                )
        else:
            mids.append((self._sent(client.subscribe([(f, qos) for f in filters])), list(filters)))
        with anyio.fail_after(CONNECT_TIMEOUT):
            while any(mid not in self._subacks for mid, _ in mids):
                await self._read()
        granted: list[tuple[str, int]] = []
        for mid, sent in mids:
            for topic_filter, reason in zip(sent, self._subacks.pop(mid), strict=False):
                if reason.is_failure:
                    raise BrokerRefused(
                        f"the broker refused the subscription to {topic_filter!r}: {reason}"
                    )
                granted.append((topic_filter, reason.value))
        return granted

    def _sent(self, result: tuple[int, int | None]) -> int:
        rc, mid = result
        if rc or mid is None:
            raise self._lost(rc)
        return mid

    async def receive(self) -> list[MQTTMessage]:
        """Read until at least one message arrived; return the messages.

        :raises ConnectionLost: the connection ended
        """
        while not self._inbox:
            await self._read()
        messages, self._inbox = self._inbox, []
        return messages

    def ack(self, message: MQTTMessage) -> None:
        """Acknowledge *message* (PUBACK for QoS 1; nothing for QoS 0)."""
        if message.qos:
            self._client.ack(message.mid, message.qos)

    def close(self) -> None:
        """Say goodbye (DISCONNECT, which keeps a persistent session) if the connection is
        still up, and close the socket. Never waits."""
        client = self._client
        client.on_socket_close = None  # no task waits on the socket any more
        if client.is_connected():
            client.disconnect()
            client.loop_write()  # the socket is non-blocking: what fits goes
        sock = client.socket()
        if sock is not None:
            sock.close()
