"""The CloudEvents HTTP binding's value rules: ``ce-`` headers, media types and bodies.

The binary and structured modes themselves are :class:`~reactor.Event` methods
(``to_http()``, ``from_http()``); these are the rules they apply to each header and body.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, TypeAlias
from urllib.parse import quote, unquote_to_bytes

from ._exceptions import EventFormatError
from ._json import dump_json, is_json, load_json, not_text, parse_media_type

Headers: TypeAlias = Mapping[str, str] | Iterable[tuple[str | bytes, str | bytes]]
"""HTTP headers: a mapping, or ``(name, value)`` pairs as ASGI servers provide them."""

_BINARY = (bytes, bytearray, memoryview)

# HTTP binding 3.1.3.2: printable ASCII travels as is, except space, '"' and '%'.
_HEADER_SAFE = "".join(c for c in map(chr, range(0x21, 0x7F)) if c not in ' "%')
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_QUOTED_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"', re.DOTALL)
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)
CE_PREFIX = "ce-"


def encode_header(value: str) -> str:
    try:
        return quote(value, safe=_HEADER_SAFE)
    except UnicodeEncodeError:
        raise EventFormatError(
            f"attribute value {value!r} is not valid Unicode and cannot go in a header"
        ) from None


def decode_header(name: str, value: str) -> str:
    # HTTP binding 3.1.3.2: undo an RFC 7230 quoted-string, then one round of
    # percent-decoding that must yield valid UTF-8.
    value = value.strip(" \t")
    if value.startswith('"'):
        quoted = _QUOTED_STRING.fullmatch(value)
        if quoted is None:
            raise EventFormatError(f"header {name!r} has a malformed quoted string")
        value = _QUOTED_PAIR.sub(r"\1", quoted.group(1))
    if not (value.isascii() and value.isprintable()):
        raise EventFormatError(
            f"header {name!r} holds characters outside printable ASCII; "
            "percent-encode them as UTF-8 (CloudEvents HTTP binding 3.1.3.2)"
        )
    if "%" not in value:
        return value
    if _BAD_PERCENT.search(value) is not None:
        raise EventFormatError(f"header {name!r} has a '%' not followed by two hex digits")
    try:
        return unquote_to_bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        raise EventFormatError(f"header {name!r} percent-decodes to invalid UTF-8") from None


def lowercase_headers(headers: Headers) -> dict[str, str]:
    """Headers as a dict of lower-case names, rejecting duplicated CloudEvents headers."""
    # Typed loosely on purpose: callers pass whatever their server hands them.
    source: Iterable[Any] = headers.items() if isinstance(headers, Mapping) else headers
    try:
        pairs = iter(source)
    except TypeError:
        raise EventFormatError(
            f"headers must be a mapping or (name, value) pairs, got {type(headers).__name__}"
        ) from None
    result: dict[str, str] = {}
    for pair in pairs:
        try:
            name, value = pair
        except (TypeError, ValueError):
            raise EventFormatError(f"headers must be (name, value) pairs, got {pair!r}") from None
        # ASGI passes bytes; HTTP header bytes are Latin-1 by definition.
        if isinstance(name, bytes):
            name = name.decode("latin-1")
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        if not (isinstance(name, str) and isinstance(value, str)):
            raise EventFormatError(f"header names and values must be str or bytes, got {pair!r}")
        name = name.lower()
        if name in result and (name.startswith(CE_PREFIX) or name == "content-type"):
            raise EventFormatError(f"header {name!r} appears more than once")
        result[name] = value
    content_type = result.get("content-type")
    if content_type is not None and not content_type.strip():
        del result["content-type"]
    return result


def body_bytes(body: object) -> bytes:
    if isinstance(body, bytes):
        return body
    if isinstance(body, bytearray | memoryview):
        return bytes(body)
    raise EventFormatError(f"the HTTP body must be bytes, got {type(body).__name__}")


def encode_body(data: Any, content_type: str | None) -> bytes:
    if data is None:
        return b""
    if isinstance(data, _BINARY):
        body = bytes(data)
        if content_type is not None and (
            is_json(content_type) or parse_media_type(content_type)[0].startswith("text/")
        ):
            # The body is read back as the JSON value or the text it encodes: bytes that
            # do not decode so would make a message no receiver (reactor included) reads.
            try:
                decode_body(body, content_type)
            except EventFormatError as exc:
                raise EventFormatError(
                    f"bytes data under datacontenttype {content_type!r} must be what that "
                    f"type says in binary mode ({exc}); send structured mode, or another "
                    "datacontenttype"
                ) from None
        return body
    if is_json(content_type):
        return dump_json(data)
    if not isinstance(data, str):
        raise not_text(content_type, data)
    charset = parse_media_type(content_type)[1] if content_type else None
    try:
        return data.encode(charset or "utf-8")
    except LookupError:
        raise EventFormatError(f"unknown charset in content type {content_type!r}") from None
    except ValueError as exc:
        raise EventFormatError(f"data cannot be encoded as {content_type!r}: {exc}") from None


def decode_body(body: bytes, content_type: str | None) -> Any:
    if not body:
        return None
    if content_type is None:
        # Binary mode without a Content-Type: no content type is inferred (HTTP binding
        # 3.1.1), so the body is octets. Guessing JSON would turn the bytes b"null" or
        # b'{ "a": 1 }' that an event carried into other data.
        return body
    if is_json(content_type):
        return load_json(body)
    media_type, charset = parse_media_type(content_type)
    if not media_type.startswith("text/"):
        return body
    try:
        return body.decode(charset or "utf-8")
    except LookupError:
        raise EventFormatError(f"unknown charset in content type {content_type!r}") from None
    except ValueError as exc:
        raise EventFormatError(f"the body is not valid {content_type!r}: {exc}") from None
