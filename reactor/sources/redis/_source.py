"""The Redis pub/sub source and its decorator: subscribing, reconnecting, the bounded buffer.

:func:`on_redis_message` is the one definition of the source's options (their defaults in
its signature, their meanings in its docstring); :class:`RedisSource` takes them as
:class:`RedisOptions`, with the same defaults.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Final, TypeAlias, TypeVar, Unpack
from urllib.parse import urlsplit

import anyio
import anyio.lowlevel
import attrs
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from reactor import ConsumerOptions, Event, Handler, SourceUnavailableError, validators
from reactor.abc import App, import_extra

from .._decoding import Decode, DecodeOptions, decoding
from .._decorate import decorator, distinct, with_defaults
from .._link import Link, configured, connection_failure, password_of
from .._naming import NamedSource
from .._payload import PayloadMode, check_mode, note_malformed
from ._events import DEFAULT_NAME, KIND, MESSAGE_TYPE, build, is_pattern

if TYPE_CHECKING:
    from coredis.response.types import PubSubMessage

__all__ = ["DEFAULT_BUFFER", "URL_VARIABLE", "RedisOptions", "RedisSource", "on_redis_message"]

logger = logging.getLogger("reactor.sources.redis")

H = TypeVar("H", bound=Handler)

#: The environment variable that gives the server's URL when no ``url=`` is passed.
URL_VARIABLE: Final = "REACTOR_REDIS_URL"
#: How many messages may wait between the connection and the app's queue.
DEFAULT_BUFFER: Final = 1000
_SCHEMES: Final = ("redis", "rediss", "unix")
# Seconds, in real time (network waits, not the app's schedule): to connect, for a
# subscription to be confirmed, and for the answer to the PING that checks a quiet
# connection (coredis sends one after 15 s without a message).
_CONNECT_TIMEOUT: Final = 10.0
# What waits in the buffer: one message's event (or a gap event), or the events decoded
# from one message.
_Item: TypeAlias = Event | tuple[Event, ...]


class RedisOptions(DecodeOptions, total=False):
    """The options of a Redis source, all optional: ``payload``, ``buffer``, and
    ``decode`` with its filter (``bucket``, ``prefix``, ``suffix``, ``events``).

    :func:`on_redis_message` documents each and gives its default; :class:`RedisSource`
    takes them as keyword arguments, with the same defaults.
    """

    payload: PayloadMode
    buffer: int


@attrs.define
class _Gap:
    """An interruption not announced yet: a reconnection, messages dropped, or both."""

    reason: str
    since: datetime
    missed: int | None

    def merge(self, reason: str, since: datetime, missed: int | None) -> None:
        if reason not in self.reason.split(", "):
            self.reason = f"{self.reason}, {reason}"
        self.since = min(self.since, since)
        self.missed = None if self.missed is None or missed is None else self.missed + missed


class RedisSource(NamedSource):
    """Publish an event for every message on Redis pub/sub channels and patterns.

    See :mod:`reactor.sources.redis` for the events and the guarantees, and
    :func:`on_redis_message` for the options (:class:`RedisOptions`): the same, with the
    same defaults. ``app.add_source(RedisSource("alerts.*", url=...))`` publishes the
    messages without a handler of its own (subscribe to :attr:`uri`).

    :param channels: channel names and patterns (a name with ``*``, ``?`` or ``[`` is a
        pattern)
    :param url: the server, ``redis://[[user]:password@]host[:port][/db]`` (``rediss://``
        for TLS, ``unix:///path``); default: the environment variable
        ``REACTOR_REDIS_URL``
    :param name: the source's name, which makes its events' source
        ``/reactor/redis/<name>``
    :param options: the source's options (:class:`RedisOptions`)
    :raises TypeError: an argument of the wrong type, or an unknown option
    :raises ValueError: no channel, a channel given twice, a bad option, no URL, or a URL
        that is not a Redis URL
    """

    kind = KIND

    def __init__(
        self,
        *channels: str,
        url: str | None = None,
        name: str = DEFAULT_NAME,
        **options: Unpack[RedisOptions],
    ) -> None:
        settings = with_defaults(type(self).__name__, options, RedisOptions, on_redis_message)
        super().__init__(name)
        distinct("channel or pattern", channels, partial(validators.name, "channel"))
        self._channels = channels
        self._url = configured(
            url, parameter="url", variable=URL_VARIABLE, example="redis://127.0.0.1:6379/0"
        )
        scheme = urlsplit(self._url).scheme
        if scheme not in _SCHEMES:
            raise ValueError(
                f"url must start with redis://, rediss:// or unix://, got a {scheme or 'no'} scheme"
            )
        self._mode = check_mode(settings["payload"])
        self._decoding = decoding(settings, payload=self._mode)
        self._buffer = validators.integer("buffer", settings["buffer"], minimum=1)
        # Visible in CLIENT LIST, so that an operator can tell (and kill) this connection.
        self._client_name = "reactor:" + "".join(
            c if (c.isascii() and c.isalnum()) or c in "-_.:/" else "_" for c in self._name
        )
        self._link = Link(
            self._uri, self._url, logger, secrets=password_of(self._url), name=self._name
        )
        self._dropped = 0
        self._gap: _Gap | None = None

    # -- properties

    @property
    def channels(self) -> tuple[str, ...]:
        """The channels and patterns, as given."""
        return self._channels

    @property
    def url(self) -> str:
        """The server's URL, its password hidden."""
        return self._link.target

    @property
    def client_name(self) -> str:
        """The connection's name on the server (``CLIENT LIST``): ``reactor:<name>``."""
        return self._client_name

    def statistics(self) -> Mapping[str, int | str | None]:
        """Return the counters: ``received`` (messages), ``published`` (message events),
        ``malformed`` (payloads not of the form the ``payload`` option expects, published
        as text or bytes), ``reconnects``, ``gaps`` (gap events published), ``oversized``
        (events too large for the app's queue: published without their payload),
        ``dropped`` (messages dropped because the buffer was full) and ``last_error`` (the
        last connection error, or ``None``). With ``decode``: ``published`` counts the
        decoded events, ``malformed`` the records and messages the decoder refused, and
        ``filtered`` the records the filter left out.
        """
        decoded = {} if self._decoding is None else self._decoding.statistics()
        return {**self._link.statistics(), "dropped": self._dropped, **decoded}

    def __repr__(self) -> str:
        channels = ", ".join(repr(channel) for channel in self._channels)
        return f"RedisSource({channels}, url={self.url!r}, name={self._name!r})"

    # -- running

    async def run(
        self, app: App, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Subscribe, then publish every message until cancelled; reconnect when the
        connection is lost, and announce the interruption with a gap event.

        :raises reactor.SourceUnavailableError: the first connection failed
        :raises ModuleNotFoundError: coredis is not installed (the ``redis`` extra)
        """
        coredis = import_extra("coredis", extra="redis")
        send, receive = anyio.create_memory_object_stream[_Item](self._buffer)
        with send, receive:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._forward, app, receive, name=f"{self._uri} publisher")
                unavailable = await self._listen(app, coredis, send, task_status)
                tg.cancel_scope.cancel()
        # Raised here, not in the task group, which would wrap it in an ExceptionGroup.
        raise unavailable

    async def _listen(
        self,
        app: App,
        coredis: Any,
        send: MemoryObjectSendStream[_Item],
        task_status: TaskStatus[None],
    ) -> SourceUnavailableError:
        """Subscribe, take the messages, reconnect; for ever, unless the first connection
        fails: then return the error to raise."""
        no_retry = import_extra("coredis.retry", extra="redis").NoRetryPolicy
        failures = (
            import_extra("coredis.exceptions", extra="redis").RedisError,
            OSError,
            TimeoutError,
            anyio.BrokenResourceError,
            anyio.ClosedResourceError,
            anyio.EndOfStream,
        )
        channels = [c for c in self._channels if not is_pattern(c)]
        patterns = [c for c in self._channels if is_pattern(c)]
        link = self._link
        ready: TaskStatus[None] | None = task_status
        while True:
            failure: BaseException
            try:
                client = coredis.Redis.from_url(
                    self._url,
                    decode_responses=False,
                    verify_version=False,
                    client_name=self._client_name,
                    connect_timeout=_CONNECT_TIMEOUT,
                    stream_timeout=_CONNECT_TIMEOUT,
                    # Reconnecting is this source's job: it must see every loss to
                    # announce it.
                    retry_policy=no_retry(),
                )
                async with (
                    client,
                    client.pubsub(
                        channels=channels,
                        patterns=patterns,
                        ignore_subscribe_messages=True,
                        retry_policy=no_retry(),
                        subscription_timeout=_CONNECT_TIMEOUT,
                    ) as pubsub,
                ):
                    since = link.connected(app.clock.now())
                    if ready is not None:
                        ready.started()
                        ready = None
                    if since is not None:
                        self._note_gap("reconnected", since, None)
                        self._flush_gap(app, send)
                    async for message in pubsub:
                        self._take(app, send, message)
                failure = ConnectionError("the server ended the subscription")
            except BaseException as exc:
                found = connection_failure(exc, failures)
                if found is None:
                    raise
                failure = found
            # Stopping: coredis may have turned the cancellation into an error of the
            # connection it closed; that is no outage.
            await anyio.lowlevel.checkpoint_if_cancelled()
            if ready is not None:
                return link.unavailable(failure)
            await app.clock.sleep(link.failed(failure, app.clock.now()))

    async def _forward(self, app: App, receive: MemoryObjectReceiveStream[_Item]) -> None:
        """Publish what the connection buffered, waiting when the app's queue is full."""
        link = self._link
        async for item in receive:
            if isinstance(item, Event):
                await link.publish(app, item)
            else:
                await link.publish_many(app, item)
            # A gap not announced yet comes right after the messages buffered before it,
            # even when no message follows to carry it into the buffer.
            gap = self._gap
            if gap is not None and receive.statistics().current_buffer_used == 0:
                self._gap = None
                await link.publish_gap(app, self._gap_event(app, gap))

    def _take(self, app: App, send: MemoryObjectSendStream[_Item], message: PubSubMessage) -> None:
        """Turn one message into an event in the buffer, or drop it when the buffer is full."""
        if message["type"] not in ("message", "pmessage"):
            return
        self._link.received += 1
        if self._gap is not None and not self._flush_gap(app, send):
            self._drop(app)
            return
        state = send.statistics()
        if state.current_buffer_used >= state.max_buffer_size:
            self._drop(app)
            return
        channel = _text(message["channel"])
        pattern = message["pattern"]
        data = message["data"]
        assert isinstance(data, bytes | str)  # a message's data; an int only in confirmations
        if self._decoding is not None:
            events = self._decoding(self._link, data, channel)
            if events:
                send.send_nowait(tuple(events))
            return
        event, payload = build(
            self._uri,
            channel,
            data,
            None if pattern is None else _text(pattern),
            self._mode,
            app.clock.now(),
        )
        if payload.problem is not None:
            note_malformed(self._link, channel, payload.problem, payload.datacontenttype)
        send.send_nowait(event)

    def _drop(self, app: App) -> None:
        self._dropped += 1
        if self._gap is None or "overflow" not in self._gap.reason:
            logger.warning(
                "%s: the app's queue is not keeping up and %d messages wait; dropping "
                "messages until there is room (a gap event will say how many)",
                self._uri,
                self._buffer,
                extra={"source": self.name},
            )
        self._note_gap("overflow", app.clock.now(), 1)

    def _note_gap(self, reason: str, since: datetime, missed: int | None) -> None:
        if self._gap is None:
            self._gap = _Gap(reason, since, missed)
        else:
            self._gap.merge(reason, since, missed)

    def _flush_gap(self, app: App, send: MemoryObjectSendStream[_Item]) -> bool:
        """Put the pending gap event in the buffer; ``False`` if the buffer is full."""
        gap = self._gap
        assert gap is not None
        state = send.statistics()
        if state.current_buffer_used >= state.max_buffer_size:
            return False
        send.send_nowait(self._gap_event(app, gap))
        self._gap = None
        self._link.gaps += 1
        return True

    def _gap_event(self, app: App, gap: _Gap) -> Event:
        return self.gap_event(app, reason=gap.reason, since=gap.since, missed=gap.missed)


def _text(value: bytes | str) -> str:
    # Channel names are bytes to Redis; one that is not UTF-8 still gets a subject.
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def on_redis_message(
    app: App,
    /,
    *channels: str,
    url: str | None = None,
    payload: PayloadMode = "auto",
    buffer: int = DEFAULT_BUFFER,
    decode: Decode | None = None,
    bucket: str | None = None,
    prefix: str = "",
    suffix: str = "",
    events: Sequence[str] | None = None,
    status_events: bool = False,
    **options: Unpack[ConsumerOptions],
) -> Callable[[H], H]:
    """Decorate a handler for the messages published on Redis channels and patterns.

    ``@app.on_redis_message("alerts.*", url="redis://127.0.0.1:6379/0")``: the handler
    receives one event per message: type ``"reactor.redis.message"``, subject the channel,
    data the payload (see *payload*), and the matched pattern in the ``redispattern``
    extension for a pattern subscription. Pub/sub is at-most-once: a message published
    while the source is disconnected is lost, and the source publishes a
    ``"reactor.source.gap"`` event after every reconnection (see
    :mod:`reactor.sources.redis`).

    With ``decode="s3"`` each message is an S3 bucket notification, and the handler
    receives its records as object events (see :mod:`reactor.sources.objects`). MinIO's
    own Redis target writes to a hash or a list, not to a channel: this takes the
    notifications of a store or a bridge that ``PUBLISH``-es them.

    :param app: the app to add the source and the subscription to
    :param channels: channel names and patterns, one or more; a name with ``*``, ``?`` or
        ``[`` (Redis glob syntax; ``\\`` escapes) is subscribed with PSUBSCRIBE, any other
        with SUBSCRIBE
    :param url: the server, ``redis://[[user]:password@]host[:port][/db]`` (``rediss://``
        for TLS, ``unix:///path.sock``); default: the environment variable
        ``REACTOR_REDIS_URL``, and an error if neither is given
    :param payload: how a message becomes the event's data: ``"auto"`` (JSON if it parses,
        else text if UTF-8, else bytes), ``"json"`` (a message that is not JSON is
        published as text or bytes and counted as ``malformed``), ``"text"`` or
        ``"bytes"``; ``datacontenttype`` says which
    :param buffer: how many messages may wait for room in the app's queue; beyond that,
        messages are dropped and counted, and a gap event says how many (a Redis server
        would disconnect a subscriber that falls behind anyway)
    :param decode: ``"s3"``: each message is an S3 event notification, published as one
        object event per record (type ``com.amazonaws.s3.<eventName>``, source the
        bucket's, subject the key), which the handler receives when it passes *bucket*,
        *prefix*, *suffix* and *events*; records that cannot be decoded are counted as
        ``malformed``. ``None`` (default): one ``reactor.redis.message`` per message
    :param bucket: with *decode*: the bucket's name, or a glob; ``None`` for any
    :param prefix: with *decode*: keys must start with it
    :param suffix: with *decode*: keys must end with it
    :param events: with *decode*: globs on S3 event names (``"ObjectCreated:*"``);
        ``None`` for all
    :param status_events: also hand the handler the source's gap events (type
        ``"reactor.source.gap"``: check ``event.type``); by default it gets messages only
    :param options: the consumer's options (:class:`~reactor.ConsumerOptions`). ``name``
        (default: the handler's qualified name) is also the source's name in
        ``/reactor/redis/<name>``; ``ordered_by=lambda e: e.subject`` keeps each channel's
        messages in order
    :return: a decorator that subscribes the handler and returns it unchanged
    :raises TypeError: an option of the wrong type, or an unknown keyword argument
    :raises ValueError: no channel, a bad option (a filter without *decode*, a *payload*
        with it), no URL, or the consumer name is taken
    """
    settings: RedisOptions = {
        "payload": payload,
        "buffer": buffer,
        "decode": decode,
        "bucket": bucket,
        "prefix": prefix,
        "suffix": suffix,
        "events": events,
    }
    return decorator(
        app,
        "on_redis_message",
        lambda name: RedisSource(*channels, url=url, name=name, **settings),
        MESSAGE_TYPE,
        options,
        status_events=status_events,
    )
