"""A durable ingestion queue in one SQLite file: at-least-once, with dead letters and replay.

Data flow::

    put() ──► encode (CloudEvents JSON, size limit) ──► open _Work ──┐
    ack() / record_progress() / record_dead_letter() ───────────────┤ group commit:
                                                                    ▼ one thread hop and
                        writer role (one at a time, taken by whoever waits first)  one
                                                                    │ transaction per batch
    get_batch() ◄── read-ahead (decoded events, bounded) ◄──────────┤ fresh events stay
                ◄── backlog pages read from the file ◄──────────────┘ in memory, the rest
                                                                      spills to the file

Every statement runs in the queue's worker thread, one at a time; there is no background
task, so the queue works the same on asyncio and trio and needs no task group: whoever
needs a write (a publisher, the settlement loop, the dispatcher) and finds none running
takes the writer role and commits everything pending at that moment, so commits batch
themselves under load (group commit) and cost one thread hop per batch, not per event.

The modules, by job:

* ``_queue``: :class:`SQLiteQueue`, the loop side (publishing, waiting publishers, the
  read-ahead, the writer role, settlement); its state changes on the loop only.
* ``_journal``: the connection and the SQL of the hot path, run in the worker thread;
  it takes its inputs as arguments and returns its results.
* ``_worker``: the worker thread, which runs the journal's calls and hands their results
  back to the event loop.
* ``_schema``: the file's layout, its version and migrations, the checks of a file, and
  the public names stored for classes.
* ``_admin``: dead letters (list, replay, purge) and the replay of a time window, the
  methods and their SQL.
* ``_options``: the queue's settings and the checks of arguments.
* ``_lock``: one owner per file.
* ``_errors``: the package's logger, and what a failure to use the file is.
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
