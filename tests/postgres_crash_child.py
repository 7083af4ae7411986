"""A process of the app under test of the row-change kill -9 test (``test_postgres_crash.py``).

Run as ``postgres_crash_child.py '<json Scenario>'``; the test kills it with SIGKILL and
starts it again with the same scenario (the same queue file).

It runs a :class:`reactor.Reactor` on a durable SQLite queue of its own (its file kept
across restarts) with one ``on_row_change`` handler on the test's table, in the consumer
group that every process of the test shares, until SIGTERM; then it drains and exits 0.
Its evidence goes to its journal, one ``write()`` per line on a file opened ``O_APPEND``
(a kill -9 loses nothing written; a torn last line is ignored by the reader):

* ``R <pid>``: the app runs (``async with app:`` entered; also written to standard output);
* ``E <op> <id> <v> <pid>``: the handler got the change of row *id* whose value ``v`` is
  *v* (the new row's, the old row's for a delete);
* ``Q <pid>``: the app stopped and drained (after SIGTERM).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import traceback
from collections.abc import Sequence

import anyio
import attrs

from reactor import Event, Reactor
from reactor.queues.sqlite import SQLiteQueue
from reactor.sources.postgres import on_row_change

#: The app's CloudEvents source: the consumer group is ``/crash-test:rows``.
SOURCE = "/crash-test"


@attrs.frozen(kw_only=True)
class Scenario:
    """One process of the kill test.

    :ivar dsn: the database
    :ivar table: the table whose changes are handled
    :ivar journal: the evidence file
    :ivar queue: the SQLite queue file of this process (kept across its restarts)
    :ivar backend: ``asyncio`` or ``trio``
    """

    dsn: str
    table: str
    journal: str
    queue: str
    backend: str = "asyncio"


class Journal:
    """An append-only evidence file; each line is one ``write()`` (atomic with O_APPEND)."""

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, line: str) -> None:
        """Append *line*."""
        os.write(self._fd, f"{line}\n".encode())


async def run(scenario: Scenario) -> None:
    """Run the app until SIGTERM (see the module docstring)."""
    journal = Journal(scenario.journal)
    pid = os.getpid()
    app = Reactor(source=SOURCE, queue=SQLiteQueue(scenario.queue), graceful_timeout=30)

    @on_row_change(
        app, scenario.table, dsn=scenario.dsn, name="rows", standby_interval=0.1, poll_interval=0.5
    )
    async def handle(event: Event) -> None:
        row = event.data["old"] if event.data["op"] == "delete" else event.data["new"]
        journal.write(f"E {event.data['op']} {row['id']} {row['v']} {pid}")

    async with app:
        journal.write(f"R {pid}")
        sys.stdout.write(f"R {pid}\n")  # for a test that waits for it on a pipe
        sys.stdout.flush()
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                break
    journal.write(f"Q {pid}")


def main(argv: Sequence[str]) -> int:
    """``'<json scenario>'``: run one process of the kill test."""
    if len(argv) != 1:
        sys.stderr.write("usage: postgres_crash_child.py '<json scenario>'\n")
        return 2
    scenario = Scenario(**json.loads(argv[0]))
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        anyio.run(run, scenario, backend=scenario.backend)
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
