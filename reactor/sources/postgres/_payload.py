"""Payloads: what the ``payload`` option makes of a message's bytes.

The semantics every message source shares (the pub/sub sources have the same rules):

* ``"auto"`` (default): the parsed JSON value when the payload is JSON, else the text
  when it decodes, else the bytes;
* ``"json"``: the payload must be JSON; when it is not, it is published as text (or bytes,
  when it does not decode) and counted as malformed;
* ``"text"``: the decoded text; a payload that does not decode is published as bytes and
  counted as malformed;
* ``"bytes"``: the bytes as received.

The event's ``datacontenttype`` says which it became: ``application/json``,
``text/plain; charset=utf-8`` or ``application/octet-stream``.
"""

from __future__ import annotations

from typing import Any, Final, Literal, NamedTuple, get_args

from reactor import EventFormatError, validators
from reactor.abc import load_json

__all__ = [
    "BYTES_CONTENT_TYPE",
    "JSON_CONTENT_TYPE",
    "TEXT_CONTENT_TYPE",
    "Parsed",
    "PayloadMode",
    "checked_mode",
    "parse_payload",
]

#: How a payload becomes event data (see the module documentation).
PayloadMode = Literal["auto", "json", "text", "bytes"]
_MODES: Final[tuple[PayloadMode, ...]] = get_args(PayloadMode)

JSON_CONTENT_TYPE: Final = "application/json"
TEXT_CONTENT_TYPE: Final = "text/plain; charset=utf-8"
BYTES_CONTENT_TYPE: Final = "application/octet-stream"


class Parsed(NamedTuple):
    """A payload made into event data."""

    data: Any
    content_type: str
    #: the payload was not what the mode requires (published as text or bytes instead)
    malformed: bool


def checked_mode(mode: PayloadMode) -> PayloadMode:
    """Return *mode* if it is a payload mode.

    :raises TypeError: not a str
    :raises ValueError: not one of ``"auto"``, ``"json"``, ``"text"``, ``"bytes"``
    """
    return validators.one_of("payload", mode, _MODES)


def parse_payload(payload: bytes | str, mode: PayloadMode, encoding: str = "utf-8") -> Parsed:
    """Make *payload* into event data according to *mode*.

    :param payload: the payload as received (bytes), or text already decoded
    :param mode: the payload mode
    :param encoding: the encoding of the bytes, when they are text
    """
    if mode == "bytes":
        raw = payload.encode(encoding) if isinstance(payload, str) else payload
        return Parsed(raw, BYTES_CONTENT_TYPE, False)
    if isinstance(payload, str):
        text: str | None = payload
    else:
        try:
            text = payload.decode(encoding)
        except UnicodeDecodeError:
            text = None
    if text is None:
        return Parsed(payload, BYTES_CONTENT_TYPE, mode != "auto")
    if mode == "text":
        return Parsed(text, TEXT_CONTENT_TYPE, False)
    try:
        return Parsed(load_json(text), JSON_CONTENT_TYPE, False)
    except EventFormatError:
        return Parsed(text, TEXT_CONTENT_TYPE, mode == "json")
