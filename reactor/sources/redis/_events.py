"""What the Redis source publishes: the event type, and the one function that builds events."""

from __future__ import annotations

from datetime import datetime
from typing import Final

from reactor import Event, Handler, validators

from .._naming import event_time, uri_for
from .._payload import Payload, PayloadMode, check_data, check_mode, payload_event

__all__ = [
    "DEFAULT_NAME",
    "KIND",
    "MESSAGE_TYPE",
    "PATTERN_EXTENSION",
    "build",
    "is_pattern",
    "message",
]

#: The ``<kind>`` in the URI of the source's events, ``/reactor/redis/<name>``.
KIND: Final = "redis"
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
    return payload_event(
        MESSAGE_TYPE,
        data,
        mode,
        source=uri,
        subject=channel,
        time=time,
        extensions=None if pattern is None else {PATTERN_EXTENSION: pattern},
    )


def message(
    channel: str,
    data: bytes | str,
    *,
    pattern: str | None = None,
    payload: PayloadMode = "auto",
    name: str | Handler = DEFAULT_NAME,
    time: datetime | None = None,
) -> Event:
    """Build the event the Redis source publishes for a message: for tests, no server needed.

    ``await app.publish(redis.message("alerts.cpu", b'{"load": 9}', name=on_alert))``
    hands ``on_alert``, a handler decorated with ``on_redis_message("alerts.*")``, the
    event a message on ``alerts.cpu`` would give it (pass ``pattern="alerts.*"`` for the
    pattern the source would record).

    :param channel: the channel the message was published on: the event's subject
    :param data: the message, as a publisher sends it (``str`` is sent as UTF-8)
    :param pattern: the pattern the message matched, for a pattern subscription
    :param payload: the source's ``payload`` option (see :mod:`reactor.sources.redis`)
    :param name: the source the event comes from: its name, or the handler that
        :func:`on_redis_message` decorated (without a ``name=``: the source is named after
        the handler); the event's source is ``/reactor/redis/<name>``, which is what the
        handler is subscribed to
    :param time: the event's time (default: now)
    :return: the event
    :raises TypeError: an argument of the wrong type
    :raises ValueError: an empty channel or name, or an unknown payload mode
    """
    validators.name("channel", channel)
    if pattern is not None:
        validators.name("pattern", pattern)
    return build(
        uri_for(KIND, name),
        channel,
        check_data(data),
        pattern,
        check_mode(payload),
        event_time(time),
    )[0]
