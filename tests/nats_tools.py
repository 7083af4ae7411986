"""Helpers of the NATS tests: unique stream names, and deleting what a test created.

nats-py works on asyncio only, so the cleanup runs its own asyncio loop in a worker
thread, whatever the test's backend.
"""

from __future__ import annotations

import asyncio
import uuid

import anyio.to_thread


def unique_stream(prefix: str = "test") -> str:
    """A stream name no other test uses."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


async def delete_streams(url: str, *streams: str) -> None:
    """Delete *streams* with their dead letters and progress bucket (missing ones are fine)."""

    async def delete() -> None:
        import nats
        import nats.js.errors

        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            for stream in streams:
                for name in (
                    stream,
                    f"{stream}_dead",
                    f"{stream}_delayed",
                    f"KV_{stream}_progress",
                ):
                    try:
                        await js.delete_stream(name)
                    except nats.js.errors.NotFoundError:
                        pass
        finally:
            await nc.close()

    await anyio.to_thread.run_sync(asyncio.run, delete())


async def stream_messages(url: str, stream: str) -> int:
    """How many messages *stream* holds now."""

    async def count() -> int:
        import nats

        nc = await nats.connect(url)
        try:
            info = await nc.jetstream().stream_info(stream)
            messages: int = info.state.messages
            return messages
        finally:
            await nc.close()

    return await anyio.to_thread.run_sync(asyncio.run, count())


async def publish_raw(url: str, subject: str, body: bytes) -> None:
    """Publish *body* as it is to *subject* (a damaged event, say) and wait for its PubAck."""

    async def publish() -> None:
        import nats

        nc = await nats.connect(url)
        try:
            await nc.jetstream().publish(subject, body)
        finally:
            await nc.close()

    await anyio.to_thread.run_sync(asyncio.run, publish())
