"""Strict JSON for the CloudEvents codec and for plugins: what any JSON parser accepts.

Python's json module writes NaN and Infinity and reads them back, and lets lone
surrogates through; other JSON parsers do neither, so reactor refuses them both ways. The
encoder is built once (the C one where there is one) because events are encoded on the
hot path of durable queues; it is built, and :mod:`json` imported, on first use, so that
an app whose queue keeps events in memory does not load them. Also here: which media
types hold JSON, the rule both the JSON format and the HTTP binding apply to data.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ._exceptions import EventFormatError

__all__ = ["dump_json", "is_json", "load_json", "lone_surrogate", "not_text", "parse_media_type"]

_BINARY = (bytes, bytearray, memoryview)

# Python strings may hold surrogate code points that no UTF-8 encoder (JSON, headers,
# SQLite) can write; CloudEvents strings are Unicode text, so they are refused up front.
_SURROGATE = re.compile("[\ud800-\udfff]")
# What in JSON text may decode to a surrogate: a \uD800-\uDFFF escape (paired ones decode
# to one code point and are checked after decoding) or, in str input, a raw surrogate.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# A constant, not a tuple built per call: the hook runs for every number with a fraction
# or an exponent of every event read.
_INFINITIES = frozenset({math.inf, -math.inf})


def _finite_float(text: str) -> float:
    value = float(text)
    # 1e400 parses as inf, which no JSON encoder writes back: refuse it like Infinity.
    if value in _INFINITIES:
        raise ValueError(f"the number {text} is out of range")
    return value


def _refuse(value: object) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# Built by _codec() on first use.
_JSON_ENCODER: Any = None
_JSON_DECODER: Any = None
_C_ENCODER: Callable[[object, int], Iterable[str]] | None = None
# The decoder's scanner (the C one where there is one), which decode() calls.
_SCAN_VALUE: Callable[[str, int], tuple[Any, int]] | None = None


def _codec() -> None:
    global _JSON_ENCODER, _JSON_DECODER, _C_ENCODER, _SCAN_VALUE
    import json

    # NaN and Infinity are Python extensions that other JSON parsers reject.
    _JSON_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)
    _SCAN_VALUE = _JSON_DECODER.scan_once
    # The C encoder that json.JSONEncoder.encode() would build on every call, built once
    # (compact separators, no ASCII escaping, NaN refused; deep or circular values end in
    # RecursionError instead of the marker check); the pure-Python encoder where there is
    # no C one.
    make_c_encoder: Any = getattr(json.encoder, "c_make_encoder", None)
    if make_c_encoder is not None:
        _C_ENCODER = make_c_encoder(
            None, _refuse, json.encoder.encode_basestring, None, ":", ",", False, False, False
        )
    _JSON_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _decode(text: str) -> Any:
    """``_JSON_DECODER.decode(text)``, its scanner called directly when the text starts
    with the value (what encoders write): that saves two Python calls and two whitespace
    matches per event read. Text with whitespace before the value, or an error, goes
    through ``decode()`` itself, for the same value or the same error message."""
    assert _SCAN_VALUE is not None
    try:
        value, end = _SCAN_VALUE(text, 0)
    except StopIteration:  # no value at the start: whitespace first, or not JSON
        return _JSON_DECODER.decode(text)
    # After the value, decode() allows JSON's four whitespace characters only.
    if end != len(text) and text[end:].strip(" \t\n\r"):
        return _JSON_DECODER.decode(text)  # raises its "Extra data" error
    return value


def dump_json(value: object) -> bytes:
    if _JSON_ENCODER is None:
        _codec()
    try:
        if _C_ENCODER is not None:
            return "".join(_C_ENCODER(value, 0)).encode("utf-8")
        text: str = _JSON_ENCODER.encode(value)
        return text.encode("utf-8")
    except (TypeError, ValueError, RecursionError) as exc:
        where = _unencodable(value, "", ())
        at = f" at {where[0]}: {where[1]}" if where is not None else f": {exc}"
        raise EventFormatError(f"the event cannot be encoded as JSON{at}") from exc


#: Nesting deeper than this is reported as too deep by the encoder's error message.
_MAX_REPORTED_DEPTH = 500


def _unencodable(value: object, path: str, parents: tuple[int, ...]) -> tuple[str, str] | None:
    """Find the first value JSON cannot encode: (its path, why), e.g. ``data['ids'][2]``.

    Only called after the encoder failed, so the hot path never walks the value.

    :param parents: the ids of the containers that hold *value*, outermost first
    """
    if id(value) in parents:
        return path, "it contains itself (a circular reference)"
    if len(parents) > _MAX_REPORTED_DEPTH:
        return path or "the top level", "nested too deeply"
    parents = (*parents, id(value))
    if value is None or isinstance(value, str | bool | int):
        return None
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return path, f"{value!r} is not valid JSON"
        return None
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str | int | float | bool) and key is not None:
                return path or "the top level", f"key {key!r} is not a str"
            found = _unencodable(item, f"{path}[{key!r}]" if path else str(key), parents)
            if found is not None:
                return found
        return None
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = _unencodable(item, f"{path}[{index}]", parents)
            if found is not None:
                return found
        return None
    name = type(value).__name__
    article = "an" if name[:1].lower() in "aeiou" else "a"
    return path or "the top level", f"{article} {name} is not JSON serializable"


def load_json(data: object) -> Any:
    """Parse JSON text as strictly as reactor's CloudEvents codec does.

    For plugins that take JSON from outside (webhook bodies, broker payloads): UTF-8
    only, no ``NaN`` or ``Infinity``, no lone surrogates, a bounded nesting depth.

    :param data: the JSON text, as bytes (UTF-8) or str
    :return: the parsed value
    :raises ~reactor.EventFormatError: the text is not valid JSON under these rules
    """
    # Text decoded from UTF-8 holds no raw surrogate (the codec refuses them).
    raw_surrogates_possible = not isinstance(data, _BINARY)
    if isinstance(data, _BINARY):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise EventFormatError(f"CloudEvents JSON must be UTF-8: {exc}") from None
    if not isinstance(data, str):
        raise EventFormatError(f"expected JSON as bytes or str, got {type(data).__name__}")
    if _JSON_DECODER is None:
        _codec()
    try:
        value = _decode(data)
    except ValueError as exc:
        raise EventFormatError(f"invalid JSON: {exc}") from None
    except RecursionError:
        raise EventFormatError("invalid JSON: nested too deeply") from None
    # Cheap tests first: this runs for every event read (the ingress, a queue's file).
    if ("\\u" in data and _SURROGATE_ESCAPE.search(data) is not None) or (
        raw_surrogates_possible and not data.isascii() and _SURROGATE.search(data) is not None
    ):
        where = _surrogate_in(value, "")
        if where is not None:
            raise EventFormatError(
                f"invalid JSON: the string at {where} holds a lone surrogate (a \\uD800 to "
                "\\uDFFF escape without its pair), which is not Unicode text"
            )
    return value


def _surrogate_in(value: object, path: str) -> str | None:
    """The path of the first string (or key) in decoded JSON holding a lone surrogate."""
    if isinstance(value, str):
        return (path or "the top level") if _SURROGATE.search(value) is not None else None
    if isinstance(value, dict):
        for key, item in value.items():
            if _SURROGATE.search(key) is not None:
                return f"{path or 'the top level'} (a key)"
            found = _surrogate_in(item, f"{path}[{key!r}]")
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _surrogate_in(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def lone_surrogate(text: str) -> bool:
    """Whether *text* holds a surrogate code point that no UTF-8 encoder can write."""
    return not text.isascii() and _SURROGATE.search(text) is not None


@functools.lru_cache(maxsize=256)
def parse_media_type(content_type: str) -> tuple[str, str | None]:
    """Split a Content-Type into its lower-case ``type/subtype`` and charset parameter."""
    media_type, *parameters = content_type.split(";")
    charset = None
    for parameter in parameters:
        key, _, value = parameter.partition("=")
        if key.strip().lower() == "charset":
            charset = value.strip().strip('"')
    return media_type.strip().lower(), charset


def is_json(content_type: str | None) -> bool:
    """Whether a datacontenttype declares JSON: ``*/json``, ``*/*+json`` or absent."""
    if content_type is None:
        return True
    subtype = parse_media_type(content_type)[0].partition("/")[2]
    return subtype == "json" or subtype.endswith("+json")


def not_text(content_type: str | None, data: object) -> EventFormatError:
    return EventFormatError(
        f"data of type {type(data).__name__} cannot be encoded as {content_type!r}: "
        "pass str or bytes data, or a JSON datacontenttype"
    )
