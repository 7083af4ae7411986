"""The line of publishers waiting for room in a bounded queue, shared by the queues."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import anyio

from reactor import ReactorNotRunning

__all__ = ["WaitingPublishers"]


class WaitingPublishers:
    """Publishers waiting, first come first served, for room in a bounded queue.

    A queue keeps one, checks :attr:`tickets` (a plain deque, cheap to test on the hot
    path) before accepting an event without waiting, calls :meth:`wake` whenever room
    appears, and :meth:`close` when it closes.
    """

    __slots__ = ("closed", "tickets")

    def __init__(self) -> None:
        #: One event per waiting publisher, the longest waiting first.
        self.tickets: deque[anyio.Event] = deque()
        self.closed = False

    async def wait(self, room: Callable[[], int]) -> None:
        """Wait until this publisher's turn comes and *room* (a callable) is positive.

        :raises ~reactor.ReactorNotRunning: the queue closed meanwhile
        """
        tickets = self.tickets
        ticket = anyio.Event()
        tickets.append(ticket)
        try:
            while True:
                await ticket.wait()
                if self.closed:
                    raise ReactorNotRunning(
                        "the app stopped while this publish() waited for room in the queue"
                    )
                if room() > 0:
                    return
                # Someone else took the room we were woken for: queue up again, at the front.
                ticket = anyio.Event()
                tickets.appendleft(ticket)
        except BaseException:
            if ticket in tickets:
                tickets.remove(ticket)
            elif ticket.is_set():
                self.wake(room())  # pass the room we were given on to the next one
            raise

    def wake(self, room: int) -> None:
        """Let up to *room* publishers go, the longest waiting first."""
        tickets = self.tickets
        # A woken publisher leaves the line here; ones already woken hold their room.
        while room > 0 and tickets:
            tickets.popleft().set()
            room -= 1

    def close(self) -> None:
        """Wake every waiting publisher: they raise :class:`~reactor.ReactorNotRunning`."""
        self.closed = True
        for ticket in self.tickets:
            ticket.set()
        self.tickets.clear()
