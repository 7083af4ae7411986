"""An app whose queue fails under the dispatcher once the first event is published."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
from anyio.abc import TaskStatus

from reactor import Event, Reactor
from reactor.abc import App, Received, Source
from reactor.queues.memory import MemoryQueue


class BrokenQueue(MemoryQueue):
    """Hands out one batch, then its storage breaks."""

    def __init__(self) -> None:
        super().__init__()
        self.batches = 0

    async def get_batch(self, limit: int) -> Sequence[Received]:
        batch = await super().get_batch(limit)
        self.batches += 1
        if self.batches > 1:
            raise RuntimeError("the queue's storage broke")
        return batch


class Ticker(Source):
    """Publishes an event, then another once the first was handled."""

    async def run(
        self, app: App, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        await app.publish_and_wait("tick")
        await app.publish("tick")
        await anyio.sleep_forever()


app = Reactor(queue=BrokenQueue())
app.add_source(Ticker())


@app.subscribe("tick")
async def tick(event: Event) -> None:
    """Handles the first tick; the second never arrives."""
