"""The asyncio island: running an asyncio-only client library from any anyio backend.

nats-py (like aiomqtt) works on asyncio only. A plugin that uses such a library does all
of its work with it in coroutines and plain functions of an "asyncio world", and reaches
that world through a :class:`Bridge`, opened by :func:`open_bridge`:

* on asyncio (anyio's asyncio backend), the asyncio world is the running loop itself: a
  call is a plain ``await``, with nothing in between;
* on trio, the asyncio world is an **island**: one asyncio event loop running in a
  worker thread of its own, for as long as the bridge is open. A call crosses to it
  with :func:`asyncio.run_coroutine_threadsafe` and comes back through trio's
  ``run_sync_soon``, so neither side blocks its thread waiting for the other; a
  cancelled caller cancels the coroutine in the island.

Each crossing costs a thread hop (tens of microseconds), so a plugin should cross once
per batch of work (a fetch of many messages, one settlement of many acks), never once
per event. Objects handed over are shared by the two threads: a plugin reads the
island's plain counters from its own thread (the GIL keeps each read whole) and leaves
every mutation of its asyncio-world state to the island's loop.

This module depends on nothing but the standard library and anyio (trio is imported
only when the bridge runs on trio), so any plugin can reuse it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import anyio
import anyio.to_thread

__all__ = ["AsyncioIsland", "Bridge", "SameLoop", "open_bridge"]

_T = TypeVar("_T")


class Bridge:
    """The way from the caller's event loop to the asyncio world (see the module)."""

    #: The asyncio loop that the asyncio world runs on.
    loop: asyncio.AbstractEventLoop

    async def run(
        self,
        function: Callable[..., Coroutine[Any, Any, _T]],
        /,
        *args: Any,
        abandoned: Callable[[_T], object] | None = None,
    ) -> _T:  # pragma: no cover - abstract
        """Run ``function(*args)`` in the asyncio world and return its result.

        Cancelling the caller cancels the coroutine. When the coroutine had already
        produced its result (a batch taken from a buffer, say), that result is passed
        to *abandoned*, on the asyncio world's loop, so that it can be put back.
        """
        raise NotImplementedError

    def call_soon(self, function: Callable[..., object], /, *args: Any) -> None:
        """Schedule ``function(*args)`` (a plain function) on the asyncio world's loop,
        without waiting; callable from the caller's thread."""
        raise NotImplementedError  # pragma: no cover - abstract

    def call_in_caller(self, function: Callable[..., object], /, *args: Any) -> None:
        """Schedule ``function(*args)`` (a plain function) on the caller's event loop,
        without waiting; callable from the asyncio world (the way back of
        :meth:`call_soon`). Dropped once the caller's event loop has ended."""
        raise NotImplementedError  # pragma: no cover - abstract

    async def aclose(self) -> None:
        """Stop the asyncio world (an island's loop and thread); idempotent."""


class SameLoop(Bridge):
    """The bridge on asyncio: the asyncio world is the running loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    async def run(
        self,
        function: Callable[..., Coroutine[Any, Any, _T]],
        /,
        *args: Any,
        abandoned: Callable[[_T], object] | None = None,
    ) -> _T:
        """Await ``function(*args)`` right here (a result is never abandoned: a
        cancellation reaches the coroutine itself)."""
        return await function(*args)

    def call_soon(self, function: Callable[..., object], /, *args: Any) -> None:
        """Schedule ``function(*args)`` on the running loop."""
        self.loop.call_soon(function, *args)

    def call_in_caller(self, function: Callable[..., object], /, *args: Any) -> None:
        """Schedule ``function(*args)`` on the running loop (the caller's own)."""
        with contextlib.suppress(RuntimeError):  # the loop is closed
            self.loop.call_soon(function, *args)


class AsyncioIsland(Bridge):
    """The bridge on trio: an asyncio loop in a worker thread of its own."""

    #: Seconds the island's loop gives its tasks to end once cancelled, when it stops,
    #: and aclose() waits for its thread.
    STOP_TIMEOUT = 5.0

    def __init__(self, name: str = "reactor-asyncio-island") -> None:
        import trio.lowlevel  # only ever built on trio

        self._token = trio.lowlevel.current_trio_token()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._closed = False
        # The calls under way, each with what ends its caller's wait: called for those
        # still running once the loop has closed (a task that would not end).
        self._calls: set[Callable[[], None]] = set()
        self._thread.start()

    def _main(self) -> None:
        loop = self.loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            try:
                loop.run_until_complete(self._end_tasks())
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()
                for abandon in list(self._calls):
                    abandon()

    async def _end_tasks(self) -> None:
        """Cancel what still runs on the island and wait for it, a bounded time: a
        library may swallow a cancellation (the cancellation is sent again until then)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.STOP_TIMEOUT
        current = asyncio.current_task()
        pending = {task for task in asyncio.all_tasks(loop) if task is not current}
        while pending and (left := deadline - loop.time()) > 0:
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=min(left, 0.1))

    async def run(
        self,
        function: Callable[..., Coroutine[Any, Any, _T]],
        /,
        *args: Any,
        abandoned: Callable[[_T], object] | None = None,
    ) -> _T:
        """Run ``function(*args)`` on the island; wait for it without blocking trio."""
        if self._closed:
            raise RuntimeError("the asyncio island is closed")
        loop = self.loop
        future: concurrent.futures.Future[_T] = concurrent.futures.Future()
        tasks: list[asyncio.Task[_T]] = []
        done = anyio.Event()
        token = self._token

        def wake() -> None:
            try:
                token.run_sync_soon(done.set)
            except RuntimeError:  # trio has finished: nobody waits any more
                pass

        def finished(task: asyncio.Task[_T]) -> None:  # on the island
            self._calls.discard(abandon)
            if task.cancelled():
                future.cancel()
            elif (error := task.exception()) is not None:
                future.set_exception(error)
            else:
                future.set_result(task.result())
            wake()

        def abandon() -> None:  # on the island, once its loop has closed
            self._calls.discard(abandon)
            future.cancel()
            wake()

        def start() -> None:  # on the island
            # The task exists before anything else this caller schedules on the island
            # runs (a cancellation, say), so that it can always be cancelled.
            task = loop.create_task(function(*args))
            tasks.append(task)
            self._calls.add(abandon)
            task.add_done_callback(finished)

        try:
            loop.call_soon_threadsafe(start)
        except RuntimeError:  # the loop has stopped
            raise RuntimeError("the asyncio island is closed") from None
        try:
            await done.wait()
        except BaseException:
            # Cancel the coroutine's task on the island: a result produced meanwhile
            # still reaches the future, and goes to *abandoned*.
            def cancel() -> None:
                if tasks and not tasks[0].done():
                    tasks[0].cancel()

            def give_back(finished: concurrent.futures.Future[_T]) -> None:
                if not finished.cancelled() and finished.exception() is None:
                    assert abandoned is not None
                    with contextlib.suppress(RuntimeError):  # the island is closed
                        loop.call_soon_threadsafe(abandoned, finished.result())

            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(cancel)
            if abandoned is not None:
                future.add_done_callback(give_back)
            raise
        if future.cancelled():  # not by this caller: the island is closing
            raise RuntimeError("the asyncio island closed while a call to it ran")
        return future.result()

    def call_soon(self, function: Callable[..., object], /, *args: Any) -> None:
        """Schedule ``function(*args)`` on the island's loop (thread-safe)."""
        if not self._closed:
            with contextlib.suppress(RuntimeError):  # the loop has just stopped
                self.loop.call_soon_threadsafe(function, *args)

    def call_in_caller(self, function: Callable[..., object], /, *args: Any) -> None:
        """Schedule ``function(*args)`` in trio's thread (from the island's)."""
        with contextlib.suppress(RuntimeError):  # trio has finished
            self._token.run_sync_soon(function, *args)

    async def aclose(self) -> None:
        """Stop the island's loop (cancelling what still runs there) and its thread.

        Bounded: the thread is left to end by itself (it is a daemon) when it does not
        within a few seconds."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(RuntimeError):  # stopped already
            self.loop.call_soon_threadsafe(self.loop.stop)
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self._thread.join, 2 * self.STOP_TIMEOUT)


async def open_bridge(name: str = "reactor-asyncio-island") -> Bridge:
    """The bridge for the running backend: the loop itself on asyncio, an island on trio.

    :param name: the island thread's name (for debuggers and thread dumps)
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # not asyncio: trio
        return AsyncioIsland(name)
    return SameLoop(loop)
