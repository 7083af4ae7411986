"""Helpers of the Redis tests: unique stream names, and deleting a test's keys."""

from __future__ import annotations

import secrets


def unique_stream(label: str = "test") -> str:
    """A stream name no other test (or helper) uses."""
    return f"reactor-test:{label}:{secrets.token_hex(6)}"


async def delete_stream(url: str, stream: str) -> None:
    """Delete *stream* and every key the queue keeps beside it (``<stream>:*``)."""
    import coredis  # here: the contract suite imports this module without the extra too

    async with coredis.Redis.from_url(url, decode_responses=False) as client:
        keys = [stream.encode()]
        keys += [key async for key in client.scan_iter(match=f"{stream}:*", count=1000)]
        await client.delete(keys)
