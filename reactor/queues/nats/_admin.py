"""Dead letters (list, replay, purge) and the replay of a time window, for a
:class:`NatsJetStreamQueue`; and how a dead letter is stored."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from reactor import (
    DeadLetter,
    Event,
    EventFormatError,
    LetterId,
    StoredDeadLetter,
    validators,
)
from reactor.abc import DeadLetterStore

from .._letters import checked_ids, choose, listed, replay_consumers, unknown
from .._names import public_name
from ._engine import GROUP, ONLY, Outgoing, StoredMessage

if TYPE_CHECKING:
    from ._engine import Engine
    from ._island import Bridge

__all__ = ["DeadLetterAdmin", "letter_body"]


def letter_body(letter: DeadLetter) -> bytes:
    """The stored form of a dead letter: one JSON object."""
    return json.dumps(
        {
            "consumer": letter.consumer,
            "error_type": public_name(type(letter.error)),
            "error": letter.error_message,
            "attempts": letter.attempts,
            "first_failed_at": letter.first_failed_at.isoformat(),
            "last_failed_at": letter.last_failed_at.isoformat(),
            "source": letter.event.source,
            "id": letter.event.id,
            "body": letter.event.to_json().decode(),
        }
    ).encode()


def _stored(message: StoredMessage) -> StoredDeadLetter:
    seq, data, _, stamp = message
    fields = json.loads(data)
    body: bytes = fields["body"].encode("latin-1" if fields.get("binary") else "utf-8")
    event: Event | None = None
    consumer = fields.get("consumer")
    if consumer is not None:
        try:
            event = Event.from_json(body)
        except EventFormatError:
            event = None
    return StoredDeadLetter(
        id=seq,
        event=event,
        consumer=consumer if event is not None else None,
        error_type=fields["error_type"],
        error=fields["error"],
        attempts=fields["attempts"],
        first_failed_at=datetime.fromisoformat(fields["first_failed_at"]),
        last_failed_at=datetime.fromisoformat(fields["last_failed_at"]),
        dead_at=datetime.fromtimestamp(stamp, UTC),
        body=body,
    )


class DeadLetterAdmin(DeadLetterStore):
    """The methods of :class:`NatsJetStreamQueue` that list, replay and purge its dead
    letters and replay a time window of kept events."""

    _consumers: set[str]
    _subject: str

    def _running(self) -> tuple[Bridge, Engine]:
        raise NotImplementedError

    async def _discard(self) -> None:
        """Delete the stored copies of the letters given to discard_dead_letter()."""
        discards: list[DeadLetter] = getattr(self, "_discards", [])
        if not discards:
            return
        bridge, engine = self._running()
        wanted = {(letter.event.id, letter.consumer) for letter in discards}
        letters = await bridge.run(engine.read_letters)
        seqs = []
        for message in letters:
            fields = json.loads(message[1])
            if (fields.get("id"), fields.get("consumer")) in wanted:
                seqs.append(message[0])
        await bridge.run(engine.delete_letters, seqs)
        del discards[:]

    async def _stored_letters(self) -> list[StoredDeadLetter]:
        bridge, engine = self._running()
        return [_stored(message) for message in await bridge.run(engine.read_letters)]

    async def _check_consumers(self, names: Iterable[str]) -> None:
        bridge, engine = self._running()
        known = set(self._consumers)
        known.update(await bridge.run(engine.known_consumers))
        known.update(letter.consumer for letter in await self._stored_letters() if letter.consumer)
        unknown(names, known, f"the group {engine.options.group!r}")

    async def _select(
        self, ids: Iterable[LetterId] | None, consumer: str | None, *, replayable: bool
    ) -> list[StoredDeadLetter]:
        wanted = checked_ids(ids, int, "the letters' sequences")
        if consumer is not None:
            await self._check_consumers([consumer])
        return choose(await self._stored_letters(), wanted, consumer, replayable=replayable)

    async def dead_letters(
        self, *, consumer: str | None = None, limit: int | None = None
    ) -> list[StoredDeadLetter]:
        """Return the group's stored dead letters, oldest first.

        :param consumer: only this consumer's letters
        :param limit: at most this many
        """
        return listed(await self._stored_letters(), consumer, limit)

    async def replay_dead_letters(
        self, ids: Iterable[LetterId] | None = None, *, consumer: str | None = None
    ) -> int:
        """Publish stored dead letters' events again, each to its consumer only (in this
        group), and remove the letters.

        :param ids: the letters to replay (default: all, or all of *consumer*)
        :param consumer: only this consumer's letters
        :return: how many events were published again
        :raises ~reactor.DeadLetterNotFound: an id names no letter, or the letter of a
            damaged event; nothing was replayed
        :raises ~reactor.ConsumerNotFound: *consumer* is unknown to the group
        """
        letters = await self._select(ids, consumer, replayable=True)
        bridge, engine = self._running()
        outgoing: list[Outgoing] = []
        for letter in letters:
            assert letter.event is not None and letter.consumer is not None
            headers = {ONLY: json.dumps([letter.consumer]), GROUP: engine.options.group}
            outgoing.append((self._subject, letter.event.to_json(), headers, True))
        await self._publish(outgoing)
        await bridge.run(engine.delete_letters, [int(letter.id) for letter in letters])
        return len(letters)

    async def _publish(self, outgoing: list[Outgoing]) -> None:
        bridge, engine = self._running()
        if outgoing:
            for result in await bridge.run(engine.publish, outgoing):
                if isinstance(result, BaseException):
                    raise result

    async def purge_dead_letters(
        self, ids: Iterable[LetterId] | None = None, *, consumer: str | None = None
    ) -> int:
        """Delete stored dead letters.

        :param ids: the letters to delete (default: all, or all of *consumer*)
        :param consumer: only this consumer's letters
        :return: how many letters were deleted
        :raises ~reactor.DeadLetterNotFound: an id names no letter; nothing was deleted
        :raises ~reactor.ConsumerNotFound: *consumer* is unknown to the group
        """
        letters = await self._select(ids, consumer, replayable=False)
        bridge, engine = self._running()
        await bridge.run(engine.delete_letters, [int(letter.id) for letter in letters])
        return len(letters)

    async def replay(
        self,
        since: datetime,
        *,
        until: datetime | None = None,
        consumers: Collection[str] | None = None,
    ) -> int:
        """Publish again, to this group only, the events published in ``[since, until)``
        that the group acknowledged and the stream still keeps (see *retention*), in
        their order and with their ids (bypassing the dedupe window).

        Only publications are replayed, never a redelivery or an earlier replay.

        :param since: replay events published at or after this time (aware)
        :param until: ... and before this time (default: no end)
        :param consumers: deliver them to these consumers only (default: every match)
        :return: how many events were published again
        :raises ValueError: a naive time, or an empty *consumers*
        :raises ~reactor.ConsumerNotFound: a name in *consumers* is unknown to the group
        """
        bridge, engine = self._running()
        start = validators.aware_datetime("since", since).timestamp()
        end = None if until is None else validators.aware_datetime("until", until).timestamp()
        names = replay_consumers(consumers)
        if names is not None:
            await self._check_consumers(names)
        outgoing: list[Outgoing] = []
        for _, body, headers, _ in await bridge.run(engine.read_window, start, end):
            if ONLY in headers or GROUP in headers:
                continue  # a redelivery or a replay, not a publication
            extra = {GROUP: engine.options.group}
            if names is not None:
                extra[ONLY] = json.dumps(names)
            outgoing.append((self._subject, body, extra, True))
        await self._publish(outgoing)
        return len(outgoing)
