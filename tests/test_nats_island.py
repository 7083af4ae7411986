"""The asyncio island (``reactor.queues.nats._island``): asyncio-only code run from trio.

The bridge is reusable by any plugin that wraps an asyncio-only client; these tests run
it directly, on both backends (on asyncio it is the running loop itself).
"""

from __future__ import annotations

import asyncio

import anyio
import pytest

from reactor.queues.nats._island import AsyncioIsland, SameLoop, open_bridge

pytestmark = pytest.mark.anyio


async def in_asyncio(value: int) -> tuple[int, bool]:
    await asyncio.sleep(0)  # fails outside an asyncio loop
    return value * 2, isinstance(asyncio.get_running_loop(), asyncio.AbstractEventLoop)


async def test_a_call_runs_on_an_asyncio_loop_and_returns_its_result(anyio_backend: str) -> None:
    bridge = await open_bridge()
    try:
        assert isinstance(bridge, AsyncioIsland if anyio_backend == "trio" else SameLoop)
        assert await bridge.run(in_asyncio, 21) == (42, True)

        async def fail() -> None:
            raise KeyError("boom")

        with pytest.raises(KeyError, match="boom"):
            await bridge.run(fail)
    finally:
        await bridge.aclose()


async def test_cancelling_the_caller_cancels_the_coroutine() -> None:
    bridge = await open_bridge()
    cancelled: list[bool] = []

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    try:
        with anyio.move_on_after(0.2):
            await bridge.run(forever)
        # The island learns of the cancellation through its loop: wait for it there.
        with anyio.fail_after(5):
            while not cancelled:
                await bridge.run(asyncio.sleep, 0.01)
    finally:
        await bridge.aclose()


@pytest.mark.parametrize("anyio_backend", ["trio"])  # on asyncio the coroutine is cancelled
async def test_a_result_produced_for_a_cancelled_caller_is_given_back() -> None:
    bridge = await open_bridge()
    got: list[int] = []
    given_back: list[int] = []
    ready = asyncio.Event()  # set on the bridge's loop

    async def produce() -> int:
        await ready.wait()
        return 7

    try:
        async with anyio.create_task_group() as tg:

            async def caller() -> None:
                got.append(await bridge.run(produce, abandoned=given_back.append))

            tg.start_soon(caller)
            await anyio.wait_all_tasks_blocked()
            bridge.call_soon(ready.set)  # the result is produced ...
            tg.cancel_scope.cancel()  # ... while the caller is cancelled
        with anyio.fail_after(5):  # whichever came first, the result is not lost
            while not got and not given_back:
                await bridge.run(asyncio.sleep, 0.01)
        assert got + given_back == [7]
    finally:
        await bridge.aclose()
