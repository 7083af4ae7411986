"""Time, behind one injectable clock.

Every part of reactor that waits (retry backoff, handler timeouts, the shutdown drain,
timers) asks the app's :class:`Clock`, so a test can swap in
:class:`reactor.testing.VirtualClock` and run hours of schedule in milliseconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

import anyio

__all__ = ["Clock", "SystemClock", "off_loop_calls", "waiting_off_loop"]

# Calls that tasks of an event loop wait for outside the loop (in worker threads), begun
# and not ended: see waiting_off_loop().
_off_loop = 0


@contextmanager
def waiting_off_loop() -> Iterator[None]:
    """Mark a wait for work done outside the event loop, in a thread of the plugin's own.

    A task waiting for a worker thread looks blocked to the event loop, as one waiting for
    time does: :class:`reactor.testing.VirtualClock` would move virtual time on while the
    thread works (a durable queue's commit), and a test would see a timer fire again
    before the event of its previous run was stored. Wrapped in this, the wait holds the
    virtual clock until it ends. It costs an increment and a decrement; with the real
    clock it changes nothing::

        with reactor.abc.waiting_off_loop():
            await call.done.wait()  # set by the worker thread through the loop's token
    """
    global _off_loop
    _off_loop += 1
    try:
        yield
    finally:
        _off_loop -= 1


def off_loop_calls() -> int:
    """How many waits marked by :func:`waiting_off_loop` are under way."""
    return _off_loop


@runtime_checkable
class Clock(Protocol):
    """The source of time for an app: wall time, monotonic time, sleeping and deadlines.

    Monotonic values are seconds on an arbitrary origin, only ever compared with
    each other; wall time is for stamping events and for calendar schedules.
    """

    def now(self) -> datetime:
        """Return the current wall time as an aware UTC datetime."""
        ...

    def monotonic(self) -> float:
        """Return the current monotonic time in seconds."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait for *seconds* of this clock's time (``0`` or less only checkpoints)."""
        ...

    async def sleep_until(self, deadline: float) -> None:
        """Wait until :meth:`monotonic` reaches *deadline*."""
        ...

    def deadline_scope(self, deadline: float) -> AbstractContextManager[anyio.CancelScope]:
        """Return a context manager giving a cancel scope cancelled at *deadline*.

        After the block, ``scope.cancelled_caught`` tells whether the deadline cut it.
        """
        ...


class SystemClock:
    """The real clock: the event loop's monotonic time and the system's wall time."""

    __slots__ = ()

    def now(self) -> datetime:
        """Return the current wall time as an aware UTC datetime."""
        return datetime.now(UTC)

    def monotonic(self) -> float:
        """Return the event loop's monotonic time in seconds."""
        return anyio.current_time()

    async def sleep(self, seconds: float) -> None:
        """Wait for *seconds* of real time."""
        await anyio.sleep(max(seconds, 0.0))

    async def sleep_until(self, deadline: float) -> None:
        """Wait until the event loop's clock reaches *deadline*."""
        await anyio.sleep_until(deadline)

    def deadline_scope(self, deadline: float) -> anyio.CancelScope:
        """Return a cancel scope with *deadline* on the event loop's clock."""
        return anyio.CancelScope(deadline=deadline)

    def __repr__(self) -> str:
        return "SystemClock()"
