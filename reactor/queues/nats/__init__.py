"""A queue shared by many processes through a NATS JetStream stream (extra ``nats``).

``Reactor(queue=NatsJetStreamQueue("nats://127.0.0.1:4222", stream="orders",
group="billing"))`` or ``--queue 'nats://127.0.0.1:4222?stream=orders&group=billing'``:
every app (group) reading the stream sees every event, the processes of one app split
its events, at least once, with dead letters and replay kept in the server. See
:class:`NatsJetStreamQueue` for the guarantees and how they map to JetStream.

The modules, by job:

* ``_queue``: :class:`NatsJetStreamQueue`, the app's side (publishing, backpressure,
  hand-out, settlement), one call to the engine per batch;
* ``_engine``: the nats-py side, on an asyncio loop: connection, pull requests,
  PubAcks, acks, keepalive, statistics;
* ``_island``: the bridge to that asyncio loop, which on trio runs in a thread of its
  own (reusable by any asyncio-only client);
* ``_admin``: dead letters (list, replay, purge) and the replay of a time window;
* ``_options``: the settings, their checks, and the URL.

nats-py is imported when a queue opens, never by ``import reactor``.
"""

from reactor import StoredDeadLetter as StoredDeadLetter
from reactor.abc import export_from

from ._options import DEFAULT_BATCH_SIZE as DEFAULT_BATCH_SIZE
from ._options import DEFAULT_CAPACITY as DEFAULT_CAPACITY
from ._options import DEFAULT_CLAIM_AFTER as DEFAULT_CLAIM_AFTER
from ._options import DEFAULT_DEDUPE_WINDOW as DEFAULT_DEDUPE_WINDOW
from ._options import DEFAULT_MAX_EVENT_SIZE as DEFAULT_MAX_EVENT_SIZE
from ._options import DEFAULT_MAX_REDELIVERIES as DEFAULT_MAX_REDELIVERIES
from ._options import DEFAULT_PUBLISH_TIMEOUT as DEFAULT_PUBLISH_TIMEOUT
from ._options import DEFAULT_URL as DEFAULT_URL
from ._queue import NatsJetStreamQueue as NatsJetStreamQueue

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_CAPACITY",
    "DEFAULT_CLAIM_AFTER",
    "DEFAULT_DEDUPE_WINDOW",
    "DEFAULT_MAX_EVENT_SIZE",
    "DEFAULT_MAX_REDELIVERIES",
    "DEFAULT_PUBLISH_TIMEOUT",
    "DEFAULT_URL",
    "NatsJetStreamQueue",
    "StoredDeadLetter",
]

export_from(__name__, globals())
