"""The default ingestion queue: bounded, in memory, at-most-once across a crash."""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from time import perf_counter
from urllib.parse import parse_qsl, urlsplit

import anyio

from reactor import Clock, Event, QueueFull, QueueStatistics, SystemClock, validators
from reactor.abc import EventQueue, Received

from ._waiting import WaitingPublishers

__all__ = ["DEFAULT_CAPACITY", "MemoryQueue"]

#: How many events wait in a :class:`MemoryQueue` before ``publish()`` waits.
DEFAULT_CAPACITY = 10_000


class MemoryQueue(EventQueue):
    """A bounded FIFO in the app's memory.

    Nothing is lost while the app runs; events still queued or in flight when the process
    dies are gone (at-most-once across a crash). ``put()`` does not yield to the event
    loop while there is room, like :meth:`asyncio.Queue.put`, so a producer publishing in
    a loop fills the queue in one go and the dispatcher takes it in large batches.

    Delayed events (``publish(..., delay=...)``) wait in a heap ordered by due time,
    read on the app's clock; they count against *capacity* while they wait. Leaving
    ``async with app:`` does not wait for them: they stay in the queue for the app's
    next start in this process, and are lost with it.

    :param capacity: the most events waiting to be dispatched (default 10,000)
    """

    needs_ack = False
    stores_immediately = True
    supports_delay = True

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._capacity = validators.integer("capacity", capacity, minimum=1)
        self._items: deque[Received] = deque()
        self._getter: anyio.Event | None = None
        self._waiting = WaitingPublishers()
        self._putters = self._waiting.tickets  # tested on every publish
        # Delayed events by due time (then put order), and the room left for the others:
        # capacity less the delayed ones, so the test on every publish stays one compare.
        self._held: list[tuple[datetime, int, Received]] = []
        self._held_seq = 0
        self._limit = self._capacity
        self._clock: Clock = SystemClock()
        self._put_count = 0
        self._get_count = 0
        # The dispatcher's direct route, while it runs: an event that would be alone in
        # the queue skips it.
        self._route: Callable[[Received], bool] | None = None

    @classmethod
    def from_url(cls, url: str) -> MemoryQueue:
        """Build a queue from a URL: ``memory://`` or ``memory://?capacity=500``.

        :param url: the URL
        :raises ValueError: not a ``memory://`` URL, or an unknown or bad parameter
        """
        parts = urlsplit(url)
        if parts.scheme.lower() != "memory" or parts.netloc or parts.path not in ("", "/"):
            raise ValueError(
                f"{url!r} is not a memory queue URL: memory:// or memory://?capacity=N"
            )
        options: dict[str, int] = {}
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key != "capacity":
                raise ValueError(f"{url!r}: unknown parameter {key!r} (known: capacity)")
            try:
                options[key] = int(value)
            except ValueError:
                raise ValueError(f"{url!r}: capacity must be a whole number") from None
        return cls(**options)

    @property
    def capacity(self) -> int:
        """The most events that may wait in the queue."""
        return self._capacity

    def use_clock(self, clock: Clock) -> None:
        """Read the due times of delayed events on *clock* (the app's)."""
        self._clock = clock

    async def open(self) -> None:
        """Accept waiting publishers again (the app started)."""
        self._waiting.closed = False

    async def close(self) -> None:
        """Wake every publisher waiting for room: they raise :class:`~reactor.ReactorNotRunning`.

        Queued events stay for the next run of the app.
        """
        self._waiting.close()

    def __len__(self) -> int:
        return len(self._items)

    def connect(self, route: Callable[[Received], bool] | None) -> bool:
        """Pass events that would wait alone in the queue straight to *route*.

        Not in a subclass that overrides :meth:`get_batch`: the events it hands out are
        then its own to choose, so every event goes through it.

        :return: whether the queue will call *route*
        """
        if type(self).get_batch is not MemoryQueue.get_batch:
            self._route = None
            return False
        self._route = route
        return route is not None

    def _hold(self, event: Event, only: Collection[str] | None) -> bool:
        """Keep *event* until it is due if it is a delayed event not due yet."""
        due = event.deliver_at
        if due is None or due <= self._clock.now():
            return False
        received = Received(event) if only is None else Received(event, only=frozenset(only))
        self._held_seq += 1
        heapq.heappush(self._held, (due, self._held_seq, received))
        self._limit -= 1
        self._put_count += 1
        if self._getter is not None:  # get_batch() waits for a later due time, or none
            self._getter.set()
            self._getter = None
        return True

    def _release(self) -> None:
        """Move the delayed events that are due to the end of the line, in due order."""
        held = self._held
        now = self._clock.now()
        while held and held[0][0] <= now:
            received = heapq.heappop(held)[2]
            received.enqueued_at = perf_counter()  # its latency counts from now
            self._items.append(received)
            self._limit += 1

    def _append(self, event: Event, only: Collection[str] | None) -> None:
        # put_nowait() repeats these lines inline: it is on every publish's path.
        if event.extensions and self._hold(event, only):
            return
        received = Received(event) if only is None else Received(event, only=frozenset(only))
        self._put_count += 1
        if not self._items and self._route is not None and self._route(received):
            self._get_count += 1
            return
        self._items.append(received)
        if self._getter is not None:
            self._getter.set()
            self._getter = None

    def put_nowait(self, event: Event, *, only: Collection[str] | None = None) -> None:
        """Store *event* if there is room.

        :raises ~reactor.QueueFull: the queue holds :attr:`capacity` events, or
            publishers are already waiting for room
        """
        if len(self._items) >= self._limit or self._putters:
            raise QueueFull(
                f"the ingestion queue is full ({self._capacity} events); "
                "use `await app.publish(...)` to wait for room, or raise the capacity"
            )
        if event.extensions and self._hold(event, only):
            return
        received = Received(event) if only is None else Received(event, only=frozenset(only))
        self._put_count += 1
        if not self._items and self._route is not None and self._route(received):
            self._get_count += 1
            return
        self._items.append(received)
        if self._getter is not None:
            self._getter.set()
            self._getter = None

    async def put(self, event: Event, *, only: Collection[str] | None = None) -> None:
        """Store *event*, waiting (first come, first served) while the queue is full.

        :raises ~reactor.ReactorNotRunning: the app stopped while this call waited
        """
        if len(self._items) >= self._limit or self._putters:
            await self._waiting.wait(self._room)
        self._append(event, only)

    def _room(self) -> int:
        return self._limit - len(self._items)

    async def get_batch(self, limit: int) -> Sequence[Received]:
        """Wait for at least one event; return up to *limit*, oldest first.

        Delayed events join the end of the line when they are due, on the app's clock.
        """
        items = self._items
        while True:
            if self._held:
                self._release()
            if items:
                break
            getter = self._getter = anyio.Event()
            if self._held:
                clock = self._clock
                wait = (self._held[0][0] - clock.now()).total_seconds()
                with clock.deadline_scope(clock.monotonic() + wait):
                    await getter.wait()
            else:
                await getter.wait()
        if len(items) <= limit:
            batch = list(items)
            items.clear()
        else:
            batch = [items.popleft() for _ in range(limit)]
        self._get_count += len(batch)
        if self._putters:
            self._waiting.wake(self._limit - len(items))
        return batch

    def statistics(self) -> QueueStatistics:
        """Return a snapshot of the queue's depth, capacity and counters."""
        return QueueStatistics(
            depth=len(self._items),
            capacity=self._capacity,
            put_count=self._put_count,
            get_count=self._get_count,
            waiting_publishers=len(self._putters),
            delayed=len(self._held),
        )

    def __repr__(self) -> str:
        return f"MemoryQueue(capacity={self._capacity}, depth={len(self._items)})"
