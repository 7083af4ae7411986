"""The asyncio island (``reactor.queues.nats._island``): asyncio-only code run from trio.

The bridge is reusable by any plugin that wraps an asyncio-only client; these tests run
it directly, on both backends (on asyncio it is the running loop itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

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
    produced = threading.Event()

    async def produce() -> int:
        await ready.wait()
        produced.set()
        return 7

    try:
        async with anyio.create_task_group() as tg:

            async def caller() -> None:
                got.append(await bridge.run(produce, abandoned=given_back.append))

            tg.start_soon(caller)
            await anyio.wait_all_tasks_blocked()
            bridge.call_soon(ready.set)
            # The result is produced on the island while trio is held here (no trio
            # checkpoint: the caller has not seen it yet) ...
            assert produced.wait(5)
            tg.cancel_scope.cancel()  # ... and the caller is cancelled
        with anyio.fail_after(5):  # whichever came first, the result is not lost
            while not got and not given_back:
                await bridge.run(asyncio.sleep, 0.01)
        assert got + given_back == [7]
    finally:
        await bridge.aclose()


async def test_a_coroutine_that_swallows_a_cancellation_still_ends() -> None:
    """Before Python 3.12, ``asyncio.wait_for()`` (which asyncio-only clients use) can
    swallow a cancellation that comes as its wait ends: the cancellation is sent again
    (here two are swallowed), and closing the bridge does not hang."""
    bridge = await open_bridge()
    started = threading.Event()
    swallowed: list[bool] = []
    ended: list[bool] = []

    async def stubborn() -> None:
        started.set()
        try:
            while True:
                try:
                    await asyncio.sleep(3600)
                except asyncio.CancelledError:
                    if len(swallowed) == 2:
                        raise
                    swallowed.append(True)
        finally:
            ended.append(True)

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(bridge.run, stubborn)
            assert await anyio.to_thread.run_sync(started.wait, 5)
            tg.cancel_scope.cancel()
    finally:
        with anyio.fail_after(10):
            await bridge.aclose()
    assert swallowed == [True, True]
    assert ended == [True]


@pytest.mark.parametrize("anyio_backend", ["trio"])  # on asyncio it is a plain await
async def test_a_call_cancelled_before_it_starts_does_not_run() -> None:
    bridge = await open_bridge()
    ran: list[bool] = []

    async def work() -> None:
        ran.append(True)

    gate = threading.Event()
    try:
        # The island's loop is held, so that the call and its cancellation both reach
        # it before it runs anything (else the call may run, and end, in between).
        bridge.call_soon(gate.wait, 5)
        with anyio.CancelScope() as scope:
            scope.cancel()
            await bridge.run(work)
        assert scope.cancelled_caught
        gate.set()
        await bridge.run(asyncio.sleep, 0)  # after the cancellation, on the island
        assert ran == []
    finally:
        await bridge.aclose()


@pytest.mark.parametrize("anyio_backend", ["trio"])  # on asyncio nothing is in between
async def test_closing_the_island_is_bounded_and_releases_a_call_that_never_ends() -> None:
    bridge = await open_bridge()
    assert isinstance(bridge, AsyncioIsland)
    bridge.STOP_TIMEOUT = 0.2
    started = threading.Event()

    async def deaf() -> None:  # ignores every cancellation
        started.set()
        while True:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(3600)

    async with anyio.create_task_group() as tg:

        async def caller() -> None:
            with pytest.raises(RuntimeError, match="closed while a call to it ran"):
                await bridge.run(deaf)

        tg.start_soon(caller)
        assert await anyio.to_thread.run_sync(started.wait, 5)
        with anyio.fail_after(10):
            await bridge.aclose()
