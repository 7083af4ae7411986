"""Dead letters (list, replay, purge) and the replay of a time window, kept in Redis."""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable
from datetime import UTC, datetime
from typing import Any

from reactor import (
    DeadLetter,
    Event,
    LetterId,
    StoredDeadLetter,
    validators,
)
from reactor.abc import DeadLetterStore

from .._letters import checked_ids, choose, listed, replay_consumers, unknown
from .._names import public_name
from ._scripts import Keys

__all__ = ["DeadLetterAdmin", "fields_of", "letter_fields"]

_PAGE = 1000


def letter_fields(
    *,
    consumer: str,
    error: BaseException,
    attempts: int,
    first_failed_at: float,
    last_failed_at: float,
    body: bytes,
    entry: str = "",
) -> dict[str, bytes | str]:
    """The fields of a dead letter's entry in ``<stream>:dead:<group>``."""
    return {
        "c": consumer,  # "" for a damaged event
        "t": public_name(type(error)),
        "x": _describe(error),
        "a": str(attempts),
        "f": repr(first_failed_at),
        "l": repr(last_failed_at),
        "b": body,
        "i": entry,  # the stream entry it came from, when known
    }


def _describe(error: BaseException) -> str:
    try:
        text = str(error)
        return text if text else repr(error)
    except Exception:
        return f"<{type(error).__qualname__} whose str() raised>"


def fields_of(letter: DeadLetter) -> dict[str, bytes | str]:
    """The fields of *letter*'s entry."""
    return {
        "c": letter.consumer,
        "t": public_name(type(letter.error)),
        "x": letter.error_message,
        "a": str(letter.attempts),
        "f": repr(letter.first_failed_at.timestamp()),
        "l": repr(letter.last_failed_at.timestamp()),
        "b": letter.event.to_json(),
        "i": "",
    }


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _time(value: bytes) -> datetime:
    return datetime.fromtimestamp(float(value), UTC)


def _stored(entry_id: str, fields: Any) -> StoredDeadLetter:
    def get(key: bytes) -> bytes:
        value = fields.get(key)
        return b"" if value is None else value

    body = get(b"b")
    consumer = get(b"c").decode() or None
    event: Event | None = None
    if consumer is not None:
        try:
            event = Event.from_json(body)
        except Exception:
            consumer = None
    ms = int(entry_id.partition("-")[0])
    return StoredDeadLetter(
        id=entry_id,
        event=event,
        consumer=consumer,
        error_type=get(b"t").decode(),
        error=get(b"x").decode(),
        attempts=int(get(b"a") or 0),
        first_failed_at=_time(get(b"f") or b"0"),
        last_failed_at=_time(get(b"l") or b"0"),
        dead_at=datetime.fromtimestamp(ms / 1000, UTC),
        body=body,
    )


def _ms(value: datetime, *, up: bool = False) -> int:
    ms = validators.aware_datetime("time", value).timestamp() * 1000
    return math.ceil(ms) if up else math.floor(ms)


class DeadLetterAdmin(DeadLetterStore):
    """The :class:`~reactor.abc.DeadLetterStore` part of :class:`RedisStreamsQueue`.

    Every method needs the queue open; any process may call them while the app runs
    elsewhere: the letters are in the server.
    """

    # Any, not coredis.Redis: annotations read at run time must not need coredis.
    _client: Any
    _keys: Keys
    _group: str
    _consumers: set[str]
    _letters: list[DeadLetter]

    def _check_running(self) -> None:
        raise NotImplementedError

    async def _settle(self, done: Any, progress: Any) -> None:
        raise NotImplementedError

    async def _republish(
        self, events: Iterable[tuple[Event, Collection[str] | None]], *, replay: bool = True
    ) -> int:
        raise NotImplementedError

    async def _all_letters(self) -> list[StoredDeadLetter]:
        self._check_running()
        if self._letters:
            await self._settle([], [])  # the letters recorded so far, not yet stored
        assert self._client is not None
        letters: list[StoredDeadLetter] = []
        start = "-"
        while True:
            entries = await self._client.xrange(self._keys.dead, start, "+", count=_PAGE)
            letters.extend(
                _stored(entry.identifier.decode(), entry.field_values) for entry in entries
            )
            if len(entries) < _PAGE:
                return letters
            start = "(" + entries[-1].identifier.decode()

    async def _known_consumers(self, letters: Iterable[StoredDeadLetter] = ()) -> set[str]:
        assert self._client is not None
        known = set(self._consumers)
        known.update(name.decode() for name in await self._client.smembers(self._keys.consumers))
        known.update(letter.consumer for letter in letters if letter.consumer is not None)
        return known

    async def _check_consumers(
        self, names: Iterable[str], letters: Iterable[StoredDeadLetter] = ()
    ) -> None:
        known = await self._known_consumers(letters)
        unknown(names, known, f"the group {self._group!r} of the stream {self._keys.stream!r}")

    async def dead_letters(
        self, *, consumer: str | None = None, limit: int | None = None
    ) -> list[StoredDeadLetter]:
        """Return the group's dead letters, oldest first.

        :param consumer: only this consumer's letters
        :param limit: at most this many
        """
        return listed(await self._all_letters(), consumer, limit)

    async def _select(
        self, ids: Iterable[LetterId] | None, consumer: str | None, *, replayable: bool
    ) -> list[StoredDeadLetter]:
        wanted = checked_ids(ids, str, "the dead letters' stream entry ids")
        letters = await self._all_letters()
        if consumer is not None:
            await self._check_consumers([consumer], letters)
        return choose(letters, wanted, consumer, replayable=replayable)

    async def replay_dead_letters(
        self, ids: Iterable[LetterId] | None = None, *, consumer: str | None = None
    ) -> int:
        """Publish stored dead letters' events again, each to its consumer only (in this
        app: the group), then delete the letters.

        The events are published first and the letters deleted next: a crash between
        the two replays them again later (at-least-once). Letters of damaged events (no
        consumer) cannot be replayed and stay.

        :param ids: the letters to replay (default: all, or all of *consumer*); every id
            must name a letter that can be replayed
        :param consumer: only this consumer's letters
        :return: how many events were published again
        :raises ~reactor.DeadLetterNotFound: an id names no letter, or the letter of a
            damaged event; nothing was replayed
        :raises ~reactor.ConsumerNotFound: *consumer* is unknown to the group
        """
        chosen = await self._select(ids, consumer, replayable=True)
        if not chosen:
            return 0
        count = await self._republish(
            ((letter.event, (letter.consumer,)) for letter in chosen),  # type: ignore[misc]
            replay=True,
        )
        assert self._client is not None
        await self._client.xdel(self._keys.dead, [letter.id for letter in chosen])
        return count

    async def purge_dead_letters(
        self, ids: Iterable[LetterId] | None = None, *, consumer: str | None = None
    ) -> int:
        """Delete stored dead letters.

        :param ids: the letters to delete (default: all, or all of *consumer*); every id
            must name a letter
        :param consumer: only this consumer's letters
        :return: how many letters were deleted
        :raises ~reactor.DeadLetterNotFound: an id names no letter; nothing was deleted
        :raises ~reactor.ConsumerNotFound: *consumer* is unknown to the group
        """
        chosen = await self._select(ids, consumer, replayable=False)
        if not chosen:
            return 0
        assert self._client is not None
        return int(await self._client.xdel(self._keys.dead, [letter.id for letter in chosen]))

    async def replay(
        self,
        since: datetime,
        *,
        until: datetime | None = None,
        consumers: Collection[str] | None = None,
    ) -> int:
        """Publish again, to this app (group) only, the events published in ``[since,
        until)`` that the group has acknowledged and the stream still keeps (see
        *retention*), in their order, with their ids.

        Only publications are replayed, never a replay or a dead letter's redelivery.
        Replays bypass the dedupe window. A stream entry's id is its publish time in
        milliseconds, which is what the window compares: an event published in the
        millisecond of *since* or of *until* is in the window.

        :param since: replay events published at or after this time (aware)
        :param until: ... and before this time (default: no end)
        :param consumers: deliver them to these consumers only (default: every match)
        :return: how many events were published again
        :raises ValueError: a naive time, or an empty *consumers*
        :raises ~reactor.ConsumerNotFound: a name in *consumers* is unknown to the group
        """
        self._check_running()
        start = _ms(since)
        end = None if until is None else _ms(until, up=True)
        names = replay_consumers(consumers)
        if names is not None:
            await self._check_consumers(names)
        assert self._client is not None
        client, keys = self._client, self._keys
        delivered = (0, 0)
        pending_count = 0
        for group in await client.xinfo_groups(keys.stream):
            info = {k.decode() if isinstance(k, bytes) else k: v for k, v in group.items()}
            name = info["name"]
            if (name.decode() if isinstance(name, bytes) else name) == self._group:
                ms, _, seq = str(info["last-delivered-id"], "ascii").partition("-")
                delivered = (int(ms), int(seq))
                pending_count = int(info["pending"])
        unacked: set[str] = set()
        if pending_count:
            for item in await client.xpending(
                keys.stream, self._group, start="-", end="+", count=pending_count + 1000
            ):
                unacked.add(_text(item.identifier))
        events: list[tuple[Event, Collection[str] | None]] = []
        first: str = f"{start}-0"
        last = "+" if end is None else f"{end - 1}-18446744073709551615"
        if end is not None and end <= start:
            return 0
        while True:
            entries = await client.xrange(keys.stream, first, last, count=_PAGE)
            for entry in entries:
                fields = entry.field_values
                entry_id = _text(entry.identifier)
                ms, _, seq = entry_id.partition("-")
                if (int(ms), int(seq)) > delivered or entry_id in unacked:
                    continue  # not acknowledged yet: still to be delivered
                if b"r" in fields:
                    continue
                scope = fields.get(b"g")
                if scope is not None and _text(scope) != self._group:
                    continue
                try:
                    event = Event.from_json(fields[b"e"])
                except Exception:
                    continue
                events.append((event, names))
            if len(entries) < _PAGE:
                break
            first = "(" + entries[-1].identifier.decode()
        return await self._republish(events, replay=True)
