"""What the Redis source publishes: the event type, and the one function that builds events."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final
from urllib.parse import quote

from reactor import Event, validators

from .._payload import Payload, PayloadMode, check_mode, decode

__all__ = [
    "DEFAULT_NAME",
    "MESSAGE_TYPE",
    "PATTERN_EXTENSION",
    "build",
    "is_pattern",
    "message",
    "source_uri",
]

#: The type of the event published for each message.
MESSAGE_TYPE: Final = "reactor.redis.message"
#: The extension attribute that holds the pattern a message matched (pattern
#: subscriptions only).
PATTERN_EXTENSION: Final = "redispattern"
#: The name of a :class:`RedisSource` made without one (a decorated handler's source is
#: named after the handler).
DEFAULT_NAME: Final = "redis"

# The characters that make a Redis glob: a name with one is subscribed with PSUBSCRIBE.
_GLOB: Final = frozenset("*?[")


def is_pattern(name: str) -> bool:
    """Whether *name* is a pattern (it has ``*``, ``?`` or ``[``), subscribed with PSUBSCRIBE.

    :param name: a channel name or pattern, as given to the source
    """
    return not _GLOB.isdisjoint(name)


def source_uri(name: str) -> str:
    """The CloudEvents ``source`` of the events of the Redis source named *name*.

    :param name: the source's name
    :return: ``/reactor/redis/<name>``, the name percent-encoded
    """
    return "/reactor/redis/" + quote(name, safe="")


def build(
    uri: str,
    channel: str,
    data: bytes | str,
    pattern: str | None,
    mode: PayloadMode,
    time: datetime,
) -> tuple[Event, Payload]:
    """Build the event for one message, and say how its payload was decoded.

    The one definition of the event, for the source and for :func:`message`.
    """
    payload = decode(data, mode)
    return (
        Event(
            type=MESSAGE_TYPE,
            source=uri,
            subject=channel,
            time=time,
            datacontenttype=payload.datacontenttype,
            data=payload.data,
            extensions={} if pattern is None else {PATTERN_EXTENSION: pattern},
        ),
        payload,
    )


def message(
    channel: str,
    data: bytes | str,
    *,
    pattern: str | None = None,
    payload: PayloadMode = "auto",
    name: str = DEFAULT_NAME,
    time: datetime | None = None,
) -> Event:
    """Build the event the Redis source publishes for a message: for tests, no server needed.

    ``await app.publish(redis.message("alerts.cpu", b'{"load": 9}', name="on_alert"))``
    hands a handler decorated with ``on_redis_message("alerts.*")`` the event a message on
    ``alerts.cpu`` would give it (pass ``pattern="alerts.*"`` for the pattern the source
    would record).

    :param channel: the channel the message was published on: the event's subject
    :param data: the message, as a publisher sends it (``str`` is sent as UTF-8)
    :param pattern: the pattern the message matched, for a pattern subscription
    :param payload: the source's ``payload`` option (see :mod:`reactor.sources.redis`)
    :param name: the source's name: for a decorated handler, its consumer name (by
        default the handler's qualified name); the event's source is
        ``/reactor/redis/<name>``, which is what the handler is subscribed to
    :param time: the event's time (default: now)
    :return: the event
    :raises TypeError: an argument of the wrong type
    :raises ValueError: an empty channel or name, or an unknown payload mode
    """
    validators.name("channel", channel)
    if not isinstance(data, bytes | str):
        raise TypeError(f"data must be bytes or str, got {data!r}")
    if pattern is not None:
        validators.name("pattern", pattern)
    return build(
        source_uri(validators.name("name", name)),
        channel,
        data,
        pattern,
        check_mode(payload),
        datetime.now(UTC) if time is None else validators.aware_datetime("time", time),
    )[0]
