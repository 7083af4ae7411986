"""What became of deliveries: per-consumer outcomes and dead letters."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator
from datetime import datetime
from typing import Literal, TypeAlias

import attrs

from . import validators
from ._event import Event

__all__ = ["DeadLetter", "DeadLetters", "LetterId", "Outcome", "StoredDeadLetter", "describe_error"]

logger = logging.getLogger("reactor.dispatch")

#: How many dead letters an app keeps in memory by default.
DEFAULT_DEAD_LETTER_LIMIT = 10_000


def describe_error(error: BaseException) -> str:
    """Return ``str(error)``, or ``repr(error)`` when that is empty; never raise.

    A handler's exception is the handler's code: its ``__str__`` or ``__repr__`` may
    raise. Logging, storing or listing a dead letter must not fail on it, so such an
    error is described by its type alone.
    """
    try:
        text = str(error)
        return text if text else repr(error)
    except Exception:
        pass
    try:
        return repr(error)
    except Exception:
        return f"<{type(error).__qualname__} whose str() and repr() raised>"


@attrs.frozen(kw_only=True)
class Outcome:
    """How one consumer's delivery of one event ended.

    :ivar status: ``"ok"`` (the handler returned), ``"failed"`` (its last attempt
        raised), ``"timed_out"`` (its last attempt exceeded the timeout) or
        ``"skipped"`` (the handler was not called for it: a later event replaced it in a
        ``debounce=`` window)
    :ivar attempts: how many times the handler was called
    :ivar error: the last attempt's exception, ``None`` when ok
    """

    status: Literal["ok", "failed", "timed_out", "skipped"]
    attempts: int
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        """Whether the handler finally succeeded."""
        return self.status == "ok"


@attrs.frozen(kw_only=True)
class DeadLetter:
    """A delivery that was given up: the event, who failed it, how and when.

    :ivar event: the event that could not be handled
    :ivar consumer: the name of the consumer that failed it
    :ivar error: the last attempt's exception (a :class:`TimeoutError` after a timeout)
    :ivar attempts: how many times the handler was called (0 when its filter raised)
    :ivar first_failed_at: wall time of the first failed attempt (aware UTC)
    :ivar last_failed_at: wall time of the last failed attempt (aware UTC)
    """

    event: Event
    consumer: str
    error: BaseException
    attempts: int
    first_failed_at: datetime
    last_failed_at: datetime

    @property
    def error_message(self) -> str:
        """The error's text (its ``str()``, else its ``repr()``); never raises, even for an
        exception whose ``__str__`` does."""
        return describe_error(self.error)


#: How a durable queue names a stored dead letter: a number (the SQLite queue, a
#: JetStream sequence) or a string (a Redis stream entry id such as ``"1733400000000-0"``).
LetterId: TypeAlias = int | str


@attrs.frozen(kw_only=True)
class StoredDeadLetter:
    """A dead letter as a durable queue stores it (in a file, in a broker).

    What ``queue.dead_letters()`` and ``reactor dead-letters list`` show, the same fields
    for every queue that keeps its dead letters (:class:`reactor.abc.DeadLetterStore`).

    :ivar id: the letter's id in the queue (for replaying or purging it)
    :ivar event: the event, or ``None`` when the stored event was damaged and could
        not be decoded (then :attr:`body` holds its bytes and :attr:`consumer` is ``None``)
    :ivar consumer: the consumer that gave up on the event
    :ivar error_type: the qualified class name of the last attempt's exception (the
        public name of reactor's own: ``reactor.DeliveryTimeout``)
    :ivar error: the text of that exception (its ``str()``, or its ``repr()`` when that is
        empty or raises)
    :ivar attempts: how many times the handler was called
    :ivar first_failed_at: wall time of the first failed attempt (aware UTC)
    :ivar last_failed_at: wall time of the last failed attempt (aware UTC)
    :ivar dead_at: when the letter was stored (aware UTC)
    :ivar body: the event as stored (CloudEvents JSON)
    """

    id: LetterId
    event: Event | None
    consumer: str | None
    error_type: str
    error: str
    attempts: int
    first_failed_at: datetime
    last_failed_at: datetime
    dead_at: datetime
    body: bytes = attrs.field(repr=False)


class DeadLetters:
    """The in-memory dead-letter sink of an app (``app.dead_letters``), oldest first.

    It holds at most *limit* letters; when full, the oldest letter is dropped, logged
    and counted in :attr:`dropped`. Redeliver a letter to its consumer with
    ``await app.redeliver(letter)``.

    :param limit: the most letters kept
    """

    def __init__(self, limit: int = DEFAULT_DEAD_LETTER_LIMIT) -> None:
        validators.integer("dead_letter_limit", limit, minimum=1)
        self._letters: deque[DeadLetter] = deque()
        self._limit = limit
        #: How many letters were dropped because the sink was full.
        self.dropped = 0

    def add(self, letter: DeadLetter) -> None:
        """Store *letter*, dropping (and logging) the oldest one when full."""
        if len(self._letters) >= self._limit:
            old = self._letters.popleft()
            self.dropped += 1
            logger.error(
                "dead-letter sink full (%d letters): dropped the letter of event %s for %s",
                self._limit,
                old.event.id,
                old.consumer,
                extra={"event_id": old.event.id, "consumer": old.consumer},
            )
        self._letters.append(letter)

    def remove(self, letter: DeadLetter) -> None:
        """Remove *letter* (compared by identity).

        :raises LookupError: the letter is not in the sink
        """
        for index, held in enumerate(self._letters):
            if held is letter:
                del self._letters[index]
                return
        raise LookupError("that dead letter is not in this sink")

    def clear(self) -> None:
        """Remove every letter."""
        self._letters.clear()

    def __iter__(self) -> Iterator[DeadLetter]:
        return iter(tuple(self._letters))

    def __len__(self) -> int:
        return len(self._letters)

    def __repr__(self) -> str:
        return f"<DeadLetters: {len(self._letters)} of at most {self._limit}>"
