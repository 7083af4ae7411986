"""Billing for a shop, on as many processes and machines as you like.

The README's "Running on several machines" runs it: every worker is this app, started
with ``reactor run examples.orders:app`` and the queue URL in ``REACTOR_QUEUE``; the
producer is this file run as a script, which publishes orders through the same queue
without handling any.
"""

from __future__ import annotations

import os
import sys

import anyio

from reactor import Event, Reactor
from reactor.queues import from_url

app = Reactor(source="/shop/billing")


@app.subscribe("order.placed")
async def bill(event: Event) -> None:
    print(f"worker {os.getpid()}: billed order {event.data['order']}", flush=True)


@app.subscribe("order.placed")
async def confirm(event: Event) -> None:
    print(f"worker {os.getpid()}: confirmed order {event.data['order']}", flush=True)


async def produce(url: str, count: int) -> None:
    """Publish *count* orders through the queue that *url* names; handle none of them."""
    async with from_url(url) as queue:
        for number in range(count):
            # Returns once the broker has stored the event.
            await queue.put(Event(type="order.placed", source="/shop/web", data={"order": number}))


if __name__ == "__main__":
    anyio.run(produce, os.environ["REACTOR_QUEUE"], int(sys.argv[1]))
