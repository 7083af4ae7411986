"""What the durable queues share in answering ``reactor.abc.DeadLetterStore`` calls:
checking the arguments, choosing the letters, and the errors that say what was wrong."""

from __future__ import annotations

from collections.abc import Collection, Iterable

from reactor import ConsumerNotFound, DeadLetterNotFound, LetterId, StoredDeadLetter, validators

__all__ = ["checked_ids", "choose", "listed", "missing_letters", "replay_consumers", "unknown"]


def checked_ids(
    ids: Iterable[LetterId] | None, kind: type[int] | type[str], what: str
) -> list[LetterId] | None:
    """Return *ids* as a list, after checking they are all of the queue's *kind*.

    :param ids: the ids a caller gave, or ``None`` for all letters
    :param kind: ``int`` or ``str``, the kind of the queue's letter ids
    :param what: what the ids are, for the error (``"the letters' sequences"``)
    :raises TypeError: an id of another kind (``bool`` is no ``int`` here)
    """
    if ids is None:
        return None
    wanted = list(ids)
    if not all(isinstance(i, kind) and not isinstance(i, bool) for i in wanted):
        raise TypeError(f"ids must be {kind.__name__}s ({what}), got {wanted!r}")
    return wanted


def missing_letters(
    wanted: Iterable[LetterId], found: Iterable[LetterId], *, replayable: bool
) -> None:
    """Raise :class:`~reactor.DeadLetterNotFound` when some *wanted* ids were not *found*.

    :param replayable: whether the letters were wanted for a replay (the letter of a
        damaged event can only be purged, and the message says so)
    """
    missing = sorted(set(wanted) - set(found), key=str)
    if missing:
        what = "dead letter that can be replayed" if replayable else "dead letter"
        why = " (no such id, or the letter of a damaged event, which can only be purged)"
        raise DeadLetterNotFound(
            f"no {what} has the id{'s' if len(missing) > 1 else ''} "
            f"{', '.join(map(str, missing))}{why if replayable else ''}; nothing was changed",
            missing,
        )


def unknown(names: Iterable[str], known: Collection[str], where: str) -> None:
    """Raise :class:`~reactor.ConsumerNotFound` for the *names* not among *known*.

    :param where: what has never seen them (``"the group 'billing'"``)
    """
    strangers = sorted(set(names) - set(known))
    if strangers:
        listed_known = ", ".join(sorted(known)) if known else "none yet"
        raise ConsumerNotFound(
            f"{where} has never seen a consumer named {', '.join(map(repr, strangers))}; "
            f"the consumers it knows: {listed_known}"
        )


def listed(
    letters: Iterable[StoredDeadLetter], consumer: str | None, limit: int | None
) -> list[StoredDeadLetter]:
    """The answer of ``dead_letters()``: the letters of *consumer* (or all), at most *limit*.

    :raises ValueError: *limit* is not a positive int
    """
    if limit is not None:
        validators.integer("limit", limit, minimum=1)
    chosen = [letter for letter in letters if consumer is None or letter.consumer == consumer]
    return chosen if limit is None else chosen[:limit]


def choose(
    letters: Iterable[StoredDeadLetter],
    wanted: Collection[LetterId] | None,
    consumer: str | None,
    *,
    replayable: bool,
) -> list[StoredDeadLetter]:
    """The letters a replay or a purge acts on: those of *consumer* (or all) among
    *wanted* (or all); for a replay only those that hold an event.

    :raises ~reactor.DeadLetterNotFound: a wanted id names no such letter
    """
    chosen = [
        letter
        for letter in letters
        if (consumer is None or letter.consumer == consumer)
        and (wanted is None or letter.id in wanted)
        and (not replayable or (letter.event is not None and letter.consumer is not None))
    ]
    if wanted is not None:
        missing_letters(wanted, (letter.id for letter in chosen), replayable=replayable)
    return chosen


def replay_consumers(consumers: Collection[str] | None) -> list[str] | None:
    """The *consumers* argument of ``replay()``, sorted, after checking it.

    :raises ValueError: an empty collection, or a single ``str`` (a common slip)
    """
    if consumers is None:
        return None
    if isinstance(consumers, str) or not consumers:
        raise ValueError("consumers must be a non-empty collection of names, or None")
    return sorted(set(consumers))
