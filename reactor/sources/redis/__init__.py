"""Redis pub/sub: a ``reactor.redis.message`` event for every message on channels and patterns.

The manual (its events, guarantees, settings and statistics, and how to test it) is the
documentation's "Redis pub/sub" page: ``docs/triggers/redis.md`` in the repository
(``mkdocs serve`` to read the site).
"""

from reactor.abc import export_from

from .._decoding import Decode as Decode
from .._payload import PayloadMode as PayloadMode
from ._events import DEFAULT_NAME as DEFAULT_NAME
from ._events import MESSAGE_TYPE as MESSAGE_TYPE
from ._events import PATTERN_EXTENSION as PATTERN_EXTENSION
from ._events import is_pattern as is_pattern
from ._events import message as message
from ._source import DEFAULT_BUFFER as DEFAULT_BUFFER
from ._source import URL_VARIABLE as URL_VARIABLE
from ._source import RedisOptions as RedisOptions
from ._source import RedisSource as RedisSource
from ._source import on_redis_message as on_redis_message

__all__ = [
    "DEFAULT_BUFFER",
    "DEFAULT_NAME",
    "MESSAGE_TYPE",
    "PATTERN_EXTENSION",
    "URL_VARIABLE",
    "Decode",
    "PayloadMode",
    "RedisOptions",
    "RedisSource",
    "is_pattern",
    "message",
    "on_redis_message",
]

export_from(__name__, globals())
