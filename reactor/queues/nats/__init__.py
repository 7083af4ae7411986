"""A queue shared by many processes through a NATS JetStream stream (extra ``nats``).

The manual (its guarantees, settings, dead letters and replay, and how it works inside) is the
documentation's "NATS JetStream" page: ``docs/queues/nats.md`` in the repository
(``mkdocs serve`` to read the site).
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
