"""A durable ingestion queue in one SQLite file: at-least-once, with dead letters and replay.

The manual (its guarantees, settings, dead letters and replay, and how it works inside) is the
documentation's "SQLite" page: ``docs/queues/sqlite.md`` in the repository
(``mkdocs serve`` to read the site).
"""

from reactor import StoredDeadLetter as StoredDeadLetter
from reactor.abc import export_from

from ._admin import read_dead_letters as read_dead_letters
from ._queue import DEFAULT_CAPACITY as DEFAULT_CAPACITY
from ._queue import DEFAULT_MAX_EVENT_SIZE as DEFAULT_MAX_EVENT_SIZE
from ._queue import DEFAULT_MAX_REDELIVERIES as DEFAULT_MAX_REDELIVERIES
from ._queue import SQLiteQueue as SQLiteQueue
from ._schema import SCHEMA_VERSION as SCHEMA_VERSION

__all__ = [
    "DEFAULT_CAPACITY",
    "DEFAULT_MAX_EVENT_SIZE",
    "DEFAULT_MAX_REDELIVERIES",
    "SCHEMA_VERSION",
    "SQLiteQueue",
    "StoredDeadLetter",
    "read_dead_letters",
]

export_from(__name__, globals())
