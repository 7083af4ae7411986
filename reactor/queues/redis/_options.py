"""The settings of a :class:`RedisStreamsQueue`: those of every broker queue
(:mod:`reactor.queues._broker`), and Redis's own defaults."""

from __future__ import annotations

from typing import Final

from .._broker import DEFAULT_CAPACITY as DEFAULT_CAPACITY
from .._broker import DEFAULT_CLAIM_AFTER as DEFAULT_CLAIM_AFTER
from .._broker import DEFAULT_DEDUPE_WINDOW as DEFAULT_DEDUPE_WINDOW
from .._broker import DEFAULT_MAX_EVENT_SIZE as DEFAULT_MAX_EVENT_SIZE
from .._broker import DEFAULT_MAX_REDELIVERIES as DEFAULT_MAX_REDELIVERIES
from .._broker import DEFAULT_PUBLISH_TIMEOUT as DEFAULT_PUBLISH_TIMEOUT
from .._broker import URL_OPTIONS as URL_OPTIONS
from .._broker import BrokerOptions as Options
from .._broker import default_consumer as default_consumer
from .._broker import split_url as split_url

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_CAPACITY",
    "DEFAULT_CLAIM_AFTER",
    "DEFAULT_DEDUPE_WINDOW",
    "DEFAULT_MAX_EVENT_SIZE",
    "DEFAULT_MAX_REDELIVERIES",
    "DEFAULT_PUBLISH_TIMEOUT",
    "SCHEMES",
    "URL_OPTIONS",
    "Options",
    "default_consumer",
    "split_url",
]

#: The most events read from the stream in one round trip.
DEFAULT_BATCH_SIZE: Final = 256
#: The URL schemes of a Redis server.
SCHEMES: Final = ("redis", "rediss", "unix")
