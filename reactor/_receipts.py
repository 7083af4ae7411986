"""Receipts: what ``publish_and_wait()`` waits for, kept in one place.

The facade registers an event before it is queued (:meth:`Receipts.wait`); the
dispatcher reports each consumer's outcome (:meth:`Receipts.note`) and the event's end
(:meth:`Receipts.done`), and tests ``receipts.waiting`` first, so that while no event is
awaited, which is nearly always, the hot path pays one truth test per event.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType

import anyio
import attrs

from ._event import Event
from ._exceptions import ReactorNotRunning
from ._outcomes import Outcome

__all__ = ["Receipt", "Receipts"]


@attrs.frozen(kw_only=True)
class Receipt:
    """The settled fate of one event, returned by ``publish_and_wait()``.

    :ivar event: the event as published
    :ivar outcomes: each matching consumer's outcome, by consumer name (empty when no
        subscription matched, or for a duplicate)
    :ivar duplicate: ``True`` when the event was not published because the app's
        ``dedupe`` window had accepted one of the same ``(source, id)`` already: it was
        not handled again, and *outcomes* is empty (the first one's outcomes are not
        known here)
    """

    event: Event
    outcomes: Mapping[str, Outcome]
    duplicate: bool = False

    @property
    def ok(self) -> bool:
        """Whether every consumer succeeded (``True`` when there was none)."""
        return all(outcome.ok for outcome in self.outcomes.values())


class _Waiter:
    """The outcomes of one awaited event, collected as its consumers settle."""

    __slots__ = ("abandoned", "done", "outcomes")

    def __init__(self) -> None:
        self.outcomes: dict[str, Outcome] = {}
        self.done = anyio.Event()
        #: Set when the app stopped before the event was settled.
        self.abandoned = False


class Receipts:
    """The events awaited by ``publish_and_wait()``, by (source, id)."""

    __slots__ = ("waiting",)

    def __init__(self) -> None:
        #: The awaited events; the dispatcher tests it before calling anything here.
        self.waiting: dict[tuple[str, str], _Waiter] = {}

    async def wait(self, event: Event, put: Callable[[Event], Awaitable[bool]]) -> Receipt:
        """Queue *event* with *put* and wait until every consumer it reached settled it.

        *put* returns ``False`` for a duplicate (not queued): the receipt then says so
        at once.

        :raises ValueError: an event with the same source and id is already awaited
        :raises ReactorNotRunning: the app stopped before the event was settled
        """
        key = (event.source, event.id)
        if key in self.waiting:
            raise ValueError(f"event {event.id!r} from {event.source!r} is already being awaited")
        waiter = self.waiting[key] = _Waiter()
        try:
            if not await put(event):
                return Receipt(event=event, outcomes=MappingProxyType({}), duplicate=True)
            await waiter.done.wait()
        finally:
            del self.waiting[key]
        if waiter.abandoned:
            raise ReactorNotRunning(
                f"the app stopped before every consumer of event {event.id!r} settled it"
            )
        return Receipt(event=event, outcomes=MappingProxyType(dict(waiter.outcomes)))

    def note(self, event: Event, consumer: str, outcome: Outcome) -> None:
        """Record how *consumer*'s delivery of *event* ended, if the event is awaited."""
        waiter = self.waiting.get((event.source, event.id))
        if waiter is not None:
            waiter.outcomes[consumer] = outcome

    def done(self, event: Event) -> None:
        """Wake the waiter of *event*, if any: every delivery of it settled."""
        waiter = self.waiting.get((event.source, event.id))
        if waiter is not None:
            waiter.done.set()

    def abandon(self) -> None:
        """Wake every waiter whose event can no longer settle (the app stopped)."""
        for waiter in self.waiting.values():
            if not waiter.done.is_set():
                waiter.abandoned = True
                waiter.done.set()
