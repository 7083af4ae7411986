"""A process of a group that takes events and dies without settling them (for the claim
tests of tests/test_nats_queue.py): it opens a queue, takes a batch, records the progress
of one consumer on each event when asked, prints ``taken <ids>``, and then waits to be
killed.

Usage: ``python nats_claim_child.py URL STREAM GROUP CLAIM_AFTER COUNT [CONSUMER]``
"""

from __future__ import annotations

import sys

import anyio

from reactor.abc import Received
from reactor.queues.nats import NatsJetStreamQueue


async def main(url: str, stream: str, group: str, claim_after: float, count: int) -> None:
    queue = NatsJetStreamQueue(url, stream=stream, group=group, claim_after=claim_after)
    await queue.open()
    taken: list[Received] = []
    while len(taken) < count:
        taken += await queue.get_batch(count - len(taken))
    if len(sys.argv) > 6:
        await queue.record_progress([(item, sys.argv[6]) for item in taken])
    sys.stdout.write("taken " + " ".join(item.event.id for item in taken) + "\n")
    sys.stdout.flush()
    await anyio.sleep_forever()


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5]))
