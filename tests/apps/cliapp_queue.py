"""An app for ``reactor run --queue``, run in a child process.

Its module builds it on a memory queue of capacity 7. One event is published by a small
source once the app runs; its handler prints ``handled <id> on <queue>``, where
``<queue>`` names the queue the app actually ran on (``MemoryQueue capacity=N`` or
``SQLiteQueue <path>``), so that the test sees which queue the command line chose.
"""

from __future__ import annotations

import anyio
from anyio.abc import TaskStatus

from reactor import Event, Reactor
from reactor.abc import App, EventQueue, Source
from reactor.queues.memory import MemoryQueue
from reactor.queues.sqlite import SQLiteQueue


def describe(queue: EventQueue) -> str:
    """Name *queue*: its class and what tells one from another."""
    if isinstance(queue, SQLiteQueue):
        return f"SQLiteQueue {queue.path}"
    return f"{type(queue).__name__} capacity={queue.capacity}"


class OneEvent(Source):
    """Publish a single ``job.created`` event once the app runs."""

    async def run(
        self, app: App, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Publish the event, then wait to be cancelled when the app stops."""
        task_status.started()
        await app.publish("job.created", {"job": 1}, id="job-1", source="/tests/cli")
        await anyio.sleep_forever()


app = Reactor(queue=MemoryQueue(capacity=7))


@app.subscribe("job.created")
async def handle(event: Event) -> None:
    """Say which queue the event came through."""
    print(f"handled {event.id} on {describe(app.queue)}", flush=True)  # noqa: T201


app.add_source(OneEvent())
