"""What the MQTT source publishes: the event type, and the one function that builds events."""

from __future__ import annotations

from datetime import datetime
from typing import Final

from reactor import Event, Handler, validators

from .._naming import event_time, uri_for
from .._payload import Payload, PayloadMode, check_data, check_mode, payload_event
from ._topics import check_topic, topic_matches

__all__ = [
    "DEFAULT_NAME",
    "FILTER_EXTENSION",
    "KIND",
    "MESSAGE_TYPE",
    "RETAIN_EXTENSION",
    "build",
    "message",
]

#: The ``<kind>`` in the URI of the source's events, ``/reactor/mqtt/<name>``.
KIND: Final = "mqtt"
#: The type of the event published for each message.
MESSAGE_TYPE: Final = "reactor.mqtt.message"
#: The extension attribute that holds the topic filter (of the source's, the first in the
#: order given) that the message's topic matched.
FILTER_EXTENSION: Final = "mqttfilter"
#: The extension attribute that says whether the message is a retained one (``True``: the
#: broker kept it for the topic and sent it because the subscription is new).
RETAIN_EXTENSION: Final = "mqttretain"
#: The name of an :class:`MqttSource` made without one (a decorated handler's source is
#: named after the handler).
DEFAULT_NAME: Final = "mqtt"


def build(
    uri: str,
    topic: str,
    data: bytes | str,
    topic_filter: str,
    retain: bool,
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
        subject=topic,
        time=time,
        extensions={FILTER_EXTENSION: topic_filter, RETAIN_EXTENSION: retain},
    )


def message(
    topic: str,
    data: bytes | str,
    *,
    topic_filter: str | None = None,
    retain: bool = False,
    payload: PayloadMode = "auto",
    name: str | Handler = DEFAULT_NAME,
    time: datetime | None = None,
) -> Event:
    """Build the event the MQTT source publishes for a message: for tests, no broker needed.

    ``await app.publish(mqtt.message("sensors/1/temperature", b"21.5", name=record))``
    hands ``record``, a handler decorated with ``on_mqtt("sensors/+/temperature")``, the
    event a message on that topic would give it.

    :param topic: the topic the message was published to: the event's subject
    :param data: the payload, as a publisher sends it (``str`` is sent as UTF-8)
    :param topic_filter: the source's filter that the topic matched (default: the topic
        itself, a filter that matches only it)
    :param retain: whether the broker sent it as the topic's retained message
    :param payload: the source's ``payload`` option (see :mod:`reactor.sources.mqtt`)
    :param name: the source the event comes from: its name, or the handler that
        :func:`on_mqtt` decorated (without a ``name=``: the source is named after the
        handler); the event's source is ``/reactor/mqtt/<name>``, which is what the
        handler is subscribed to
    :param time: the event's time (default: now)
    :return: the event
    :raises TypeError: an argument of the wrong type
    :raises ValueError: an invalid topic or filter, a filter the topic does not match, an
        empty name, or an unknown payload mode
    """
    check_topic(topic)
    check_data(data)
    if topic_filter is None:
        topic_filter = topic
    elif not topic_matches(topic_filter, topic):
        raise ValueError(f"topic {topic!r} does not match the filter {topic_filter!r}")
    return build(
        uri_for(KIND, name),
        topic,
        data,
        topic_filter,
        validators.boolean("retain", retain),
        check_mode(payload),
        event_time(time),
    )[0]
