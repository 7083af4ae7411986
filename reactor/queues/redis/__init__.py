"""A durable queue shared by many processes through a Redis stream (extra ``redis``).

Data flow::

    put() / put_many() ──► batch ──► flusher: one EVAL per batch (dedupe SET NX + XADD)
                                                 │
    get_batch() ◄── XREADGROUP COUNT n (group) ◄─┘      housekeeper (background):
                ◄── read-ahead: own pending at open,    XCLAIM JUSTID keepalive,
                    events taken over (XAUTOCLAIM)      XAUTOCLAIM, XINFO GROUPS, XTRIM
    settle() ──► MULTI: dead letters XADD, progress HSET, XACK, progress HDEL ──► EXEC

The modules, by job:

* ``_queue``: :class:`RedisStreamsQueue`, publishing, reading, settlement, background tasks.
* ``_admin``: dead letters (list, replay, purge) and the replay of a time window.
* ``_scripts``: the Lua scripts and the key names.
* ``_options``: the settings, their checks and the URL's parameters.
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
