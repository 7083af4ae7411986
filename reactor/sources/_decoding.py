"""The ``decode`` option: broker messages that carry another system's events.

By default a broker trigger (:func:`~reactor.sources.mqtt.on_mqtt`,
:func:`~reactor.sources.redis.on_redis_message`,
:func:`~reactor.sources.postgres.on_pg_notify`, and
:func:`~reactor.sources.postgres.on_row_change` for a column of the inserted rows)
publishes one event of its own per message, the payload as its data. With ``decode=``,
each message is another system's notification, turned into that system's events by a
decoder; the decoders:

``"s3"``
    An S3 event notification message (``{"Records": [...]}``, as MinIO publishes bucket
    notifications to MQTT, NATS, AMQP and Kafka, and into PostgreSQL tables and Redis
    lists in its ``access`` format): one object event per record, the CloudEvent that
    :mod:`reactor.sources.objects` publishes for it whichever way it came (type
    ``com.amazonaws.s3.<eventName>``, source ``<eventSource>.<region>.<bucket>``, subject
    the key, data the record). The options ``bucket``, ``prefix``, ``suffix`` and
    ``events`` filter the records as :func:`~reactor.sources.objects.on_bucket_event`
    filters them (a :class:`~reactor.sources.objects.BucketFilter`).

What a source does with a decoder is the same for every source and every decoder:

* It calls the decoder once per message and publishes the events it returns, in the
  order of the records; a message that gives none is done with (acknowledged, where the
  transport acknowledges).
* Records (or whole messages) the decoder refuses are counted in the source's
  ``malformed`` statistic and logged, a warning for the first and every 1,000th, at debug
  level in between; they never stop the source. Records the filter leaves out are
  counted in ``filtered``.
* The decorated handler is subscribed to the decoder's events that pass its filter,
  whichever source published them (their source attribute is the bucket's, not the
  trigger's); with ``status_events=True`` also to the trigger's gap events.
* The trigger's connection, reconnection, gap events and guarantee are unchanged. The
  ``payload`` option does not apply: the decoder reads the message itself.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import (
    TYPE_CHECKING,
    Any,
    Final,
    Literal,
    Protocol,
    TypeAlias,
    TypedDict,
    cast,
    get_args,
)

import attrs

from reactor import Event, validators

from ._link import LOG_EVERY, Link
from ._naming import Subscribing

if TYPE_CHECKING:
    from ._payload import PayloadMode

__all__ = [
    "DECODERS",
    "Decode",
    "DecodeOptions",
    "Decoding",
    "MessageDecoder",
    "decoding",
]

#: The decoders a broker trigger's ``decode`` option names (see the module's docs).
Decode: TypeAlias = Literal["s3"]
DECODERS: Final[tuple[Decode, ...]] = get_args(Decode)

# The filter options, at their defaults (no filter).
_FILTERS: Final[Mapping[str, object]] = {
    "bucket": None,
    "prefix": "",
    "suffix": "",
    "events": None,
}


class DecodeOptions(TypedDict, total=False):
    """The options of a broker trigger that decodes its messages: ``decode`` and, for
    ``decode="s3"``, the filter ``bucket``, ``prefix``, ``suffix`` and ``events``.

    Each trigger's decorator documents them and gives their defaults (``None``, ``None``,
    ``""``, ``""``, ``None``).
    """

    decode: Decode | None
    bucket: str | None
    prefix: str
    suffix: str
    events: Sequence[str] | None


class Decoded(Protocol):
    """What a decoder made of one message."""

    @property
    def events(self) -> Sequence[Event]:
        """The events, in the order of the records."""

    @property
    def refused(self) -> Sequence[object]:
        """What was refused, each with its reason as its ``str()``."""

    @property
    def filtered(self) -> int:
        """How many records the filter left out."""


class MessageDecoder(Protocol):
    """A decoder: one message in, its events out (:class:`~reactor.sources.objects.S3Decoder`)."""

    @property
    def pattern(self) -> str:
        """The type glob of the events it makes."""

    def __call__(self, payload: Any, /, *, default_id: str | None = None) -> Decoded:
        """Decode one message: bytes, text or parsed JSON; never raises on bad input."""

    def matches(self, event: Event) -> bool:
        """Whether *event* is one of its events that passes its filter."""


@attrs.define(eq=False)
class Decoding:
    """The ``decode`` option of one source at work: its decoder, and what it counted.

    :param decode: the option's value (``"s3"``)
    :param decoder: the decoder
    """

    decode: Decode
    decoder: MessageDecoder
    #: records the filter left out
    filtered: int = 0

    def __call__(
        self, link: Link, payload: Any, subject: str | None, *, default_id: str | None = None
    ) -> Sequence[Event]:
        """Decode one message; count and log what was refused and filtered.

        :param link: the source's link (its ``malformed`` counter and logger)
        :param payload: the message
        :param subject: what the message came from (the topic, the channel), for the log
        :param default_id: the message's own id, for records that carry none (see
            :func:`~reactor.sources.objects.decode_s3`)
        :return: the events to publish, perhaps none
        """
        decoded = self.decoder(payload, default_id=default_id)
        self.filtered += decoded.filtered
        if decoded.refused:
            self.refuse(link, subject, decoded.refused)
        return decoded.events

    def refuse(self, link: Link, subject: str | None, refused: Sequence[object]) -> None:
        """Count *refused* (records or messages) in ``link.malformed``, and log the first.

        A warning for the first refusal and every :data:`~reactor.sources._link.LOG_EVERY`-th,
        the others at debug level, so that a producer that sends nothing but garbage cannot
        flood the log.
        """
        before = link.malformed
        link.malformed += len(refused)
        level = (
            logging.WARNING
            if before == 0 or before // LOG_EVERY != link.malformed // LOG_EVERY
            else logging.DEBUG
        )
        more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
        link.logger.log(
            level,
            "%s: the message from %r: %s%s; refused by decode=%r (%d refused so far; logged "
            "once per %d)",
            link.source,
            subject,
            refused[0],
            more,
            self.decode,
            link.malformed,
            LOG_EVERY,
            extra={"source": link.name},
        )

    def statistics(self) -> dict[str, int]:
        """The counters it adds to its source's: ``filtered``."""
        return {"filtered": self.filtered}

    def subscription(self, uri: str, *, status_events: bool) -> Subscribing:
        """What the handler decorated for the source of *uri* is subscribed to: the
        decoder's events that pass its filter, from any source; and with *status_events*,
        the events of the source itself (its gap events).
        """
        matches = self.decoder.matches
        if not status_events:
            return Subscribing(self.decoder.pattern, where=matches)
        return Subscribing("*", where=lambda event: event.source == uri or matches(event))


def decoding(settings: Mapping[str, Any], *, payload: PayloadMode | None = None) -> Decoding | None:
    """Check a source's ``decode`` options and make its :class:`Decoding` (``None``: no
    ``decode``).

    :param settings: the source's options (:class:`DecodeOptions` among them, every key
        present)
    :param payload: the source's ``payload`` option, which must be left at ``"auto"``
        with ``decode``
    :raises TypeError: an option of the wrong type
    :raises ValueError: an unknown decoder, a filter without ``decode``, or a ``payload``
        with it
    """
    decode = settings["decode"]
    filters = {key: settings[key] for key in _FILTERS}
    if decode is None:
        given = [f"{key}=" for key, value in filters.items() if value != _FILTERS[key]]
        if given:
            raise ValueError(
                f"{', '.join(given)} filter{'s' if len(given) == 1 else ''} decoded "
                "records: give decode='s3' too"
            )
        return None
    if not isinstance(decode, str):
        raise TypeError(f"decode must be one of {DECODERS!r} or None, got {decode!r}")
    name = cast(Decode, validators.one_of("decode", decode, DECODERS))
    if payload is not None and payload != "auto":
        raise ValueError(
            f"payload={payload!r} does not apply with decode={name!r}: the decoder reads "
            "the message itself"
        )
    # Imported here: a broker trigger that decodes nothing needs none of it.
    from reactor.sources.objects import BucketFilter, S3Decoder

    return Decoding(name, S3Decoder(BucketFilter(**filters)))
