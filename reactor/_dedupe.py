"""Deduplication: the app's ``dedupe`` window on ``(source, id)``.

A producer that retries a publish it could not confirm (a timed-out HTTP request, a
reconnect) sends the same event again, with the same ``source`` and ``id``. With
``Reactor(dedupe=...)`` the app keeps the key of every event it accepted for the length
of the window and drops a second one within it: not stored, not handled, counted in
``app.stats().deduplicated``.

The keys live in one of two places, chosen when the app starts:

* the queue, when :meth:`reactor.abc.EventQueue.deduplicate` accepts the job (the SQLite
  queue does): the queue stores each key with its event, atomically, so the window
  survives a restart, and raises :class:`~reactor.DuplicateEvent` for a duplicate;
* otherwise this module's :class:`Deduplicator`, in the app's memory, driven by the
  app's clock, bounded by the window (and by :data:`MAX_KEYS`).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from typing import Final

from ._clock import Clock
from ._event import Event
from .abc import EventQueue

__all__ = ["MAX_KEYS", "Deduplicator"]

logger = logging.getLogger("reactor")

#: The most keys the memory store keeps (about 200 bytes each): beyond that the oldest
#: key is forgotten before its window ends (logged once), so memory stays bounded at
#: any publish rate. A forgotten key only loses its protection: its retry is handled.
MAX_KEYS: Final = 1_000_000

Key = tuple[str, str]


class Deduplicator:
    """The app's side of ``dedupe=``: the memory store, or the queue's, and the count.

    :ivar window: seconds during which a key stays known
    :ivar dropped: duplicates the memory store dropped (``app.stats().deduplicated`` adds
        those the queue counts in ``QueueStatistics.deduplicated``)
    :ivar in_queue: whether the queue keeps the keys (set at each start)
    """

    __slots__ = ("_clock", "_keys", "_warned", "dropped", "in_queue", "window")

    def __init__(self, window: float) -> None:
        self.window = window
        self.dropped = 0
        self.in_queue = False
        self._clock: Clock | None = None
        # Key -> monotonic time it was accepted, oldest first (times never decrease).
        self._keys: OrderedDict[Key, float] = OrderedDict()
        self._warned = False

    def start(self, queue: EventQueue, clock: Clock) -> None:
        """Choose where the keys live, as the app starts (before the queue opens)."""
        self.in_queue = bool(queue.deduplicate(self.window))
        if clock is not self._clock or self.in_queue:
            self._keys.clear()  # times of another clock mean nothing on this one
        self._clock = clock

    # -- the memory store -----------------------------------------------------------

    def _prune(self, now: float) -> None:
        keys = self._keys
        limit = now - self.window
        while keys:
            key = next(iter(keys))
            if keys[key] > limit:
                break
            del keys[key]

    def _known(self, key: Key) -> bool:
        assert self._clock is not None
        now = self._clock.monotonic()
        self._prune(now)
        return key in self._keys

    def _remember(self, key: Key) -> None:
        assert self._clock is not None
        keys = self._keys
        keys[key] = self._clock.monotonic()
        if len(keys) > MAX_KEYS:
            keys.popitem(last=False)
            if not self._warned:
                self._warned = True
                logger.warning(
                    "dedupe: more than %d event keys within the window of %s s; the oldest "
                    "are forgotten early, so their retries may be handled again",
                    MAX_KEYS,
                    self.window,
                )

    def claim(self, event: Event) -> bool:
        """Record *event*'s key before it is queued; ``False`` (counted) for a duplicate.

        With the keys in the queue, always ``True``: the queue decides.
        """
        if self.in_queue:
            return True
        key = (event.source, event.id)
        if self._known(key):
            self.drop(event)
            return False
        self._remember(key)
        return True

    def release(self, event: Event) -> None:
        """Forget *event*'s key: it was claimed, and then not queued (an error)."""
        if not self.in_queue:
            self._keys.pop((event.source, event.id), None)

    def claim_many(self, events: Sequence[Event]) -> tuple[list[Event], list[Event]]:
        """Split a batch into the events to queue (their keys recorded) and duplicates
        (of earlier events or of one before them in the batch), not counted yet."""
        if self.in_queue:
            return list(events), []
        fresh: list[Event] = []
        duplicates: list[Event] = []
        for event in events:
            key = (event.source, event.id)
            if self._known(key):
                duplicates.append(event)
            else:
                self._remember(key)
                fresh.append(event)
        return fresh, duplicates

    def release_many(self, events: Sequence[Event]) -> None:
        """Forget the keys of a batch that was not queued."""
        for event in events:
            self.release(event)

    def drop(self, event: Event) -> None:
        """Count and log a duplicate that is not published."""
        self.dropped += 1
        logger.debug(
            "dedupe: event %r from %r was accepted within the last %s s; dropped",
            event.id,
            event.source,
            self.window,
        )
