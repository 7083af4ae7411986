"""The queue's worker thread: it runs the journal's calls one at a time, in order, and
hands each result back to the event loop.

A call is handed over without a turn of the event loop: :meth:`Worker.run` puts it in
the thread's inbox and the thread starts on it at once, while the loop goes on with its
other tasks (handlers, publishers). ``anyio.to_thread.run_sync`` first waits two turns
of the loop (a checkpoint of its own, then the limiter's), and under load a turn of the
loop is the time it takes to run every task that was ready: the commit that publishers
wait for started that much later (about 4 ms of every 30 in the durable-queue benchmark
at ``synchronous="full"``), and the loop sat idle for that much longer while it ran.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread

from reactor.abc import waiting_off_loop

__all__ = ["Worker"]

_T = TypeVar("_T")


class _Call:
    """One call for the thread, and what came of it once :attr:`done` is set."""

    __slots__ = ("args", "done", "error", "func", "result")

    def __init__(self, func: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.func = func
        self.args = args
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = anyio.Event()  # set on the loop, by the thread through the loop's token


class Worker:
    """A thread that runs calls for the event loop that started it, one at a time.

    Built on the event loop's thread, which it reports back to; started at once, and
    stopped by :meth:`stop` once the last call has run. The calls run in the order they
    were made; each one's arguments must not change while it runs (the queue's writer
    role sees to that).
    """

    def __init__(self, name: str) -> None:
        self._token = anyio.lowlevel.current_token()
        self._inbox: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    async def run(self, func: Callable[..., _T], *args: Any) -> _T:
        """Run ``func(*args)`` in the thread and return its result (or raise its error).

        Not cancellable: a call that has begun runs to its end, and its result is
        returned (a cancellation is seen at the caller's next checkpoint).
        """
        call = _Call(func, args)
        self._inbox.put(call)
        with anyio.CancelScope(shield=True), waiting_off_loop():
            await call.done.wait()
        if call.error is not None:
            raise call.error
        result: _T = call.result
        return result

    async def stop(self) -> None:
        """Let the thread end after the calls already made, and wait for it."""
        self._inbox.put(None)
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self._thread.join)

    def _serve(self) -> None:
        inbox = self._inbox
        token = self._token
        while True:
            call = inbox.get()
            if call is None:
                return
            try:
                call.result = call.func(*call.args)
            except BaseException as exc:  # handed to the caller, on the loop
                call.error = exc
            try:
                anyio.from_thread.run_sync(call.done.set, token=token)
            except anyio.RunFinishedError:
                return  # the event loop is gone: nobody waits for this call any more
