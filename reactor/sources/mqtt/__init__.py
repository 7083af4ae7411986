"""MQTT: a ``reactor.mqtt.message`` event for every message on topic filters.

The manual (its events, guarantees, settings and statistics, and how to test it) is the
documentation's "MQTT" page: ``docs/triggers/mqtt.md`` in the repository
(``mkdocs serve`` to read the site).
"""

from reactor.abc import export_from

from .._decoding import Decode as Decode
from .._payload import PayloadMode as PayloadMode
from ._client import Protocol as Protocol
from ._events import DEFAULT_NAME as DEFAULT_NAME
from ._events import FILTER_EXTENSION as FILTER_EXTENSION
from ._events import MESSAGE_TYPE as MESSAGE_TYPE
from ._events import RETAIN_EXTENSION as RETAIN_EXTENSION
from ._events import message as message
from ._source import URL_VARIABLE as URL_VARIABLE
from ._source import MqttOptions as MqttOptions
from ._source import MqttSource as MqttSource
from ._source import client_id_for as client_id_for
from ._source import on_mqtt as on_mqtt
from ._topics import check_filter as check_filter
from ._topics import topic_matches as topic_matches

__all__ = [
    "DEFAULT_NAME",
    "FILTER_EXTENSION",
    "MESSAGE_TYPE",
    "RETAIN_EXTENSION",
    "URL_VARIABLE",
    "Decode",
    "MqttOptions",
    "MqttSource",
    "PayloadMode",
    "Protocol",
    "check_filter",
    "client_id_for",
    "message",
    "on_mqtt",
    "topic_matches",
]

export_from(__name__, globals())
