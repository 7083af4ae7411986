"""A durable queue shared by many processes through a Redis stream (extra ``redis``).

The manual (its guarantees, settings, dead letters and replay, and how it works inside) is the
documentation's "Redis Streams" page: ``docs/queues/redis.md`` in the repository
(``mkdocs serve`` to read the site).
"""

from reactor import StoredDeadLetter as StoredDeadLetter
from reactor.abc import export_from

from ._options import DEFAULT_CAPACITY as DEFAULT_CAPACITY
from ._options import DEFAULT_CLAIM_AFTER as DEFAULT_CLAIM_AFTER
from ._options import DEFAULT_DEDUPE_WINDOW as DEFAULT_DEDUPE_WINDOW
from ._options import DEFAULT_MAX_EVENT_SIZE as DEFAULT_MAX_EVENT_SIZE
from ._options import DEFAULT_MAX_REDELIVERIES as DEFAULT_MAX_REDELIVERIES
from ._options import DEFAULT_PUBLISH_TIMEOUT as DEFAULT_PUBLISH_TIMEOUT
from ._queue import DEFAULT_URL as DEFAULT_URL
from ._queue import RedisStreamsQueue as RedisStreamsQueue

__all__ = [
    "DEFAULT_CAPACITY",
    "DEFAULT_CLAIM_AFTER",
    "DEFAULT_DEDUPE_WINDOW",
    "DEFAULT_MAX_EVENT_SIZE",
    "DEFAULT_MAX_REDELIVERIES",
    "DEFAULT_PUBLISH_TIMEOUT",
    "DEFAULT_URL",
    "RedisStreamsQueue",
    "StoredDeadLetter",
]

export_from(__name__, globals())
