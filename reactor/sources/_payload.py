"""The ``payload`` option: how the bytes of a message from outside become an event's data.

Sources whose messages carry an opaque payload (Redis pub/sub, MQTT, PostgreSQL NOTIFY)
take the same option, with the same meaning:

``"auto"`` (the default)
    JSON when the payload parses as JSON (``datacontenttype`` ``application/json``, data
    the parsed value), else the text when it is UTF-8 (``text/plain; charset=utf-8``, a
    ``str``), else the bytes (``application/octet-stream``, ``bytes``).
``"json"``
    The payload must be JSON. One that is not is still published, as text or bytes as
    under ``"auto"`` (so ``datacontenttype`` tells a consumer what it got), and counted as
    ``malformed`` in the source's statistics; it never stops the source.
``"text"``
    The payload as text (``str``); one that is not UTF-8 is published as bytes and
    counted as ``malformed``.
``"bytes"``
    The payload as it came (``bytes``), never parsed.

JSON is parsed as strictly as reactor's CloudEvents codec parses it
(:func:`reactor.abc.load_json`: no ``NaN``, no lone surrogates, bounded nesting), so every
event built here can be stored by a durable queue and read back equal.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final, Literal, TypeAlias, cast, get_args

import attrs

from reactor import Event, EventFormatError, validators
from reactor.abc import load_json

from ._link import LOG_EVERY, Link

__all__ = [
    "BINARY",
    "JSON",
    "PAYLOAD_MODES",
    "TEXT",
    "Payload",
    "PayloadMode",
    "check_data",
    "check_mode",
    "decode",
    "note_malformed",
    "payload_event",
]

#: How a source turns a message's payload into an event's data (see the module's docs).
PayloadMode: TypeAlias = Literal["auto", "json", "text", "bytes"]
PAYLOAD_MODES: Final[tuple[PayloadMode, ...]] = get_args(PayloadMode)

#: The ``datacontenttype`` of data parsed from JSON.
JSON: Final = "application/json"
#: The ``datacontenttype`` of text data.
TEXT: Final = "text/plain; charset=utf-8"
#: The ``datacontenttype`` of bytes.
BINARY: Final = "application/octet-stream"


@attrs.frozen
class Payload:
    """A message's payload as event data.

    :ivar data: the parsed JSON value, the text, or the bytes
    :ivar datacontenttype: :data:`JSON`, :data:`TEXT` or :data:`BINARY`
    :ivar problem: why the payload is not of the form the mode expects (``None`` when it
        is); the source counts such a payload as malformed
    """

    data: Any
    datacontenttype: str
    problem: str | None = None


def check_mode(value: object) -> PayloadMode:
    """Return *value* if it is a payload mode (``"auto"``, ``"json"``, ``"text"``, ``"bytes"``).

    :raises TypeError: *value* is not a str
    :raises ValueError: *value* is another string
    """
    return cast(PayloadMode, validators.one_of("payload", value, PAYLOAD_MODES))


def check_data(value: object) -> bytes | str:
    """Return *value* if it is a message's payload as a test helper takes it: bytes or text.

    :raises TypeError: *value* is neither
    """
    if not isinstance(value, bytes | str):
        raise TypeError(f"data must be bytes or str, got {value!r}")
    return value


def decode(raw: bytes | str, mode: PayloadMode) -> Payload:
    """Turn a message's payload into event data under *mode*.

    :param raw: the payload; ``str`` for a server that sends text (PostgreSQL NOTIFY),
        taken as its UTF-8 encoding
    :param mode: the ``payload`` option
    :return: the data, its content type, and the problem if it is not of the expected form
    """
    if mode == "bytes":
        return Payload(_bytes(raw), BINARY)
    if mode == "text":
        text, problem = _text(raw)
        if text is None:
            return Payload(_bytes(raw), BINARY, f"not UTF-8 text ({problem})")
        return Payload(text, TEXT)
    try:
        return Payload(load_json(raw), JSON)
    except EventFormatError as exc:
        expected = f"not JSON ({exc})" if mode == "json" else None
    text, _ = _text(raw)
    if text is None:
        return Payload(_bytes(raw), BINARY, expected)
    return Payload(text, TEXT, expected)


def payload_event(
    type: str,
    raw: bytes | str,
    mode: PayloadMode,
    *,
    source: str,
    subject: str,
    time: datetime,
    extensions: Mapping[str, Any] | None = None,
) -> tuple[Event, Payload]:
    """Build the event for one message whose payload is its data, decoded under *mode*.

    :param type: the event's type
    :param raw: the payload
    :param mode: the ``payload`` option
    :param source: the event's ``source``: the source's URI
    :param subject: the event's subject: the channel, the topic
    :param time: the event's time
    :param extensions: the event's extension attributes
    :return: the event, and the decoded payload (whose ``problem`` says whether the source
        counts it as malformed)
    """
    payload = decode(raw, mode)
    event = Event(
        type=type,
        source=source,
        subject=subject,
        time=time,
        datacontenttype=payload.datacontenttype,
        data=payload.data,
        extensions={} if extensions is None else extensions,
    )
    return event, payload


def _bytes(raw: bytes | str) -> bytes:
    return raw.encode("utf-8") if isinstance(raw, str) else bytes(raw)


def _text(raw: bytes | str) -> tuple[str | None, str | None]:
    if isinstance(raw, str):
        return raw, None
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        return None, str(exc)


def note_malformed(link: Link, subject: str | None, problem: str, kept_as: str) -> None:
    """Count a malformed payload in ``link.malformed`` and log it.

    A warning for the first and every :data:`~reactor.sources._link.LOG_EVERY`-th, the
    others at debug level, so that a producer that sends nothing but garbage cannot
    flood the log.

    :param link: the source's link (its counters and logger)
    :param subject: what the payload came from (the channel, the topic)
    :param problem: what is wrong with it (:attr:`Payload.problem`)
    :param kept_as: the content type it was published as
    """
    link.malformed += 1
    level = logging.WARNING if link.malformed % LOG_EVERY == 1 else logging.DEBUG
    link.logger.log(
        level,
        "%s: the payload from %r is %s; published it as %s (%d so far; logged once per %d)",
        link.source,
        subject,
        problem,
        kept_as,
        link.malformed,
        LOG_EVERY,
        extra={"source": link.name},
    )
