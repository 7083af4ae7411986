"""The CloudEvents 1.0 envelope and its codecs: the JSON event format and the HTTP binding.

The strict JSON reader and writer live in :mod:`._json`, the HTTP binding's header and
body rules in :mod:`._binding`; this module is the :class:`Event` class and its checks.

Both codecs follow the CloudEvents 1.0 specification closely enough that any CloudEvents
SDK reads what :class:`Event` writes and the other way round.
"""

from __future__ import annotations

import itertools
import os
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, Self, TypeAlias

import attrs

from ._exceptions import EventFormatError, InvalidEventError
from ._json import dump_json, is_json, load_json, lone_surrogate, not_text, parse_media_type

if TYPE_CHECKING:
    from ._binding import Headers

# The HTTP binding (``_binding``, with urllib.parse) and base64 are imported by the
# methods that use them, so that an app that never speaks HTTP does not load them.

__all__ = [
    "BATCH_CONTENT_TYPE",
    "DELIVER_AT_EXTENSION",
    "EXPIRES_AT_EXTENSION",
    "STRUCTURED_CONTENT_TYPE",
    "Event",
    "ExtensionValue",
]

ExtensionValue: TypeAlias = str | int | bool | bytes | datetime
"""The CloudEvents types an extension attribute may hold."""


STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"
BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"

#: The extension that holds when a delayed event is to be delivered (an RFC 3339 time on
#: the wire, an aware datetime in :attr:`Event.extensions`); see :attr:`Event.deliver_at`.
DELIVER_AT_EXTENSION = "deliverat"
#: The extension that holds when an event expires; see :attr:`Event.expires_at`.
EXPIRES_AT_EXTENSION = "expiresat"
# reactor reads these two extensions: their values are always times (a string is parsed).
_TIME_EXTENSIONS = frozenset({DELIVER_AT_EXTENSION, EXPIRES_AT_EXTENSION})

_CONTEXT_ATTRIBUTES = frozenset(
    {"id", "source", "specversion", "type", "datacontenttype", "dataschema", "subject", "time"}
)
_RESERVED_NAMES = _CONTEXT_ATTRIBUTES | {"data", "data_base64"}
_REQUIRED_MEMBERS = frozenset({"specversion", "id", "source", "type"})
_EXTENSION_NAME = re.compile(r"[a-z0-9]{1,20}")
_INT32_MIN = -(2**31)
_INT32_MAX = 2**31 - 1
_NO_EXTENSIONS: Mapping[str, ExtensionValue] = MappingProxyType({})
_BINARY = (bytes, bytearray, memoryview)

# RFC 3339 proper: datetime.fromisoformat() alone also takes dates, basic format and
# naive times, none of which is a CloudEvents Timestamp.
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})", re.ASCII
)

# Default ids: one random prefix per process and a counter (see _new_id).
_COUNTER_BITS = 48
_COUNTER_LIMIT = 1 << _COUNTER_BITS
_id_lock = threading.Lock()
_id_prefix = ""
_id_counter: Iterator[int] = iter(())


def _new_prefix() -> None:
    """Draw the process's id prefix and restart the counter (at a random point of its
    lower half, so that a restarted counter does not repeat another process's run)."""
    global _id_prefix, _id_counter
    bits = int.from_bytes(os.urandom(16))
    # 74 random bits around UUID version 8 and the RFC 9562 variant: 8-4-4-4 hex digits.
    high, middle, low = bits >> 80, (bits >> 68) & 0xFFF, (bits >> 54) & 0x3FFF
    _id_prefix = f"{high >> 16:08x}-{high & 0xFFFF:04x}-8{middle:03x}-{0x8000 | low:04x}-"
    _id_counter = itertools.count(bits & (_COUNTER_LIMIT // 2 - 1))


def _new_id() -> str:
    """Return a new event id: a UUID string (version 8) unique to this process's run.

    ``os.urandom`` for every event is a system call (3 µs on some virtual machines); the
    id instead joins 74 random bits drawn once per process (again in a forked child, and
    after 2**47 ids) to a 48-bit counter. Two processes share ids only if they draw the
    same 74 bits. The ids are unique, not secret: the next one is easy to guess.
    """
    n = next(_id_counter)  # atomic under the GIL, so threads never share a value
    if n >= _COUNTER_LIMIT:
        with _id_lock:
            if next(_id_counter) >= _COUNTER_LIMIT:
                _new_prefix()
        return _new_id()
    return f"{_id_prefix}{n:012x}"


_new_prefix()
os.register_at_fork(after_in_child=_new_prefix)


def _utc_now() -> datetime:
    return datetime.now(UTC)


@attrs.frozen(kw_only=True)
class Event:
    """A CloudEvents 1.0 event: context attributes, extensions and data.

    Events are immutable values. They compare equal when every attribute, the
    extensions and the data are equal; the hash leaves out ``data`` and
    ``extensions`` so that an event with unhashable data is still hashable.

    :ivar type: what happened, e.g. ``"com.example.order.created"``; required.
    :ivar source: where it happened, a URI reference such as ``"/shop"``; required.
    :ivar id: unique among the events of ``source``; by default a new UUID (version 8:
        random per process, then counted; unique, not secret).
    :ivar specversion: always ``"1.0"``.
    :ivar time: when it happened, an aware datetime normalized to UTC; now by
        default, ``None`` to leave it out.
    :ivar subject: what the event is about, within ``source``.
    :ivar datacontenttype: the media type of ``data``; ``None`` means JSON.
    :ivar dataschema: a URI of the schema ``data`` adheres to.
    :ivar data: the payload: a JSON value, ``str`` or ``bytes``.
    :ivar extensions: extension attributes, a read-only mapping from names of 1 to 20
        characters ``[a-z0-9]`` to ``str``, ``int`` (signed 32-bit), ``bool``,
        ``bytes`` or aware ``datetime`` values. reactor reads two of them, whose values
        are always times (an RFC 3339 string is parsed into a datetime): ``deliverat``
        (see :attr:`deliver_at`) and ``expiresat`` (see :attr:`expires_at`).
    :raises InvalidEventError: from the constructor, naming the attribute that breaks
        the specification: among others a string attribute or extension holding a lone
        surrogate (not Unicode text: no UTF-8 encoder, JSON or SQLite writes it), or a
        ``datacontenttype`` outside printable ASCII.
    """

    type: str
    source: str
    id: str = attrs.field(factory=_new_id)
    specversion: str = "1.0"
    time: datetime | None = attrs.field(factory=_utc_now)
    subject: str | None = None
    datacontenttype: str | None = None
    dataschema: str | None = None
    data: Any = attrs.field(default=None, hash=False)
    extensions: Mapping[str, ExtensionValue] = attrs.field(default=_NO_EXTENSIONS, hash=False)

    def __attrs_post_init__(self) -> None:
        # On the publish path: one pass over the common case, reporting in helpers.
        if not (
            isinstance(self.type, str)
            and self.type
            and self.type.isascii()
            and isinstance(self.source, str)
            and self.source
            and self.source.isascii()
            and isinstance(self.id, str)
            and self.id
            and self.id.isascii()
            and self.specversion == "1.0"
        ):
            _check_required(self)
        time = self.time
        if time is not None and (time.__class__ is not datetime or time.tzinfo is not UTC):
            object.__setattr__(self, "time", _to_utc("time", time))
        if not (self.subject is None and self.datacontenttype is None and self.dataschema is None):
            _check_optional(self)
        if self.extensions is not _NO_EXTENSIONS:
            object.__setattr__(self, "extensions", _checked_extensions(self.extensions))

    @property
    def deliver_at(self) -> datetime | None:
        """When the event is to be delivered: its ``deliverat`` extension, or ``None``.

        ``app.publish(..., delay=...)`` and ``deliver_at=`` set it; a queue that holds
        delayed events hands the event to the dispatcher no earlier than this time of
        the app's clock. A time in the past means now.
        """
        value = self.extensions.get(DELIVER_AT_EXTENSION)
        return value if isinstance(value, datetime) else None

    @property
    def expires_at(self) -> datetime | None:
        """When the event expires: its ``expiresat`` extension, or ``None``.

        ``app.publish(..., expires=...)`` sets it. A delivery that has not started by
        then is not handled: it is dead-lettered with :class:`~reactor.EventExpired`.
        """
        value = self.extensions.get(EXPIRES_AT_EXTENSION)
        return value if isinstance(value, datetime) else None

    def __reduce__(self) -> tuple[Any, ...]:
        # MappingProxyType cannot be pickled, so pickle and copy go through __init__.
        fields = {a.name: getattr(self, a.name) for a in attrs.fields(type(self))}
        fields["extensions"] = dict(self.extensions)
        return (_rebuild, (type(self), fields))

    # -- JSON event format ----------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Return the event as a JSON object of the CloudEvents JSON event format.

        ``bytes`` data becomes ``data_base64``; other data goes under ``data`` as a
        JSON value when ``datacontenttype`` is JSON (or absent), as a string otherwise.
        ``time`` and ``datetime`` extensions become RFC 3339 strings, ``bytes``
        extensions base64 strings.

        :raises EventFormatError: if ``data`` is neither ``str`` nor ``bytes`` while
            ``datacontenttype`` is not a JSON media type.
        :return: a dict ready for :func:`json.dumps`.
        """
        result: dict[str, Any] = {
            "specversion": self.specversion,
            "id": self.id,
            "source": self.source,
            "type": self.type,
        }
        if self.subject is not None:
            result["subject"] = self.subject
        if self.time is not None:
            result["time"] = _format_time(self.time)
        if self.datacontenttype is not None:
            result["datacontenttype"] = self.datacontenttype
        if self.dataschema is not None:
            result["dataschema"] = self.dataschema
        for name, value in self.extensions.items():
            # bool is an int, so both stay JSON booleans and numbers.
            result[name] = value if isinstance(value, str | int) else _canonical_string(value)
        data = self.data
        if isinstance(data, _BINARY):
            import base64

            result["data_base64"] = base64.b64encode(data).decode("ascii")
        elif data is not None:
            if not (isinstance(data, str) or is_json(self.datacontenttype)):
                raise not_text(self.datacontenttype, data)
            result["data"] = data
        return result

    def to_json(self) -> bytes:
        """Encode the event in the CloudEvents JSON event format (structured mode).

        :raises EventFormatError: if ``data`` cannot be represented in JSON (see
            :meth:`to_dict`), or holds values :mod:`json` cannot encode.
        :return: compact UTF-8 JSON, media type ``application/cloudevents+json``.
        """
        return dump_json(self.to_dict())

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Self:
        """Build an event from a JSON object of the CloudEvents JSON event format.

        Members that are not context attributes, ``data`` or ``data_base64`` are
        extensions; ``null`` members count as absent. ``data_base64`` decodes to
        ``bytes``, ``data`` is taken as is. What :meth:`to_dict` could not write back
        is refused: ``data`` other than a string under a ``datacontenttype`` that is not
        JSON.

        :param d: the decoded JSON object.
        :raises EventFormatError: if ``d`` is not an object, has both ``data`` and
            ``data_base64``, ``data_base64`` is not valid base64, or ``data`` is not a
            string while ``datacontenttype`` is not JSON.
        :raises InvalidEventError: if an attribute is missing or invalid.
        :return: the event.
        """
        # A dict first: what JSON decodes to (an ABC's isinstance check costs more).
        if d.__class__ is not dict and not isinstance(d, Mapping):
            raise EventFormatError(
                f"a CloudEvent in JSON format must be a JSON object, got {type(d).__name__}"
            )
        members = {name: value for name, value in d.items() if value is not None}
        if not members.keys() >= _REQUIRED_MEMBERS:
            _require(members, ("specversion", "id", "source", "type"), "the member {!r}")
        data = members.pop("data", None)
        encoded = members.pop("data_base64", None)
        if encoded is not None:
            if data is not None:
                raise EventFormatError(
                    "a CloudEvent in JSON format has either 'data' or 'data_base64', not both"
                )
            data = _decode_base64(encoded)
        elif data is not None and not isinstance(data, str):
            content_type = members.get("datacontenttype")
            # The encoder writes such data only as JSON: refuse now what to_json() would.
            if isinstance(content_type, str) and not is_json(content_type):
                raise EventFormatError(
                    f"'data' is a JSON {_json_kind(data)} but datacontenttype {content_type!r} "
                    "is not JSON: send a JSON datacontenttype, a string, or data_base64"
                )
        return cls._from_members(members, data)

    @classmethod
    def from_json(cls, data: bytes | str) -> Self:
        """Decode an event in the CloudEvents JSON event format (structured mode).

        :param data: UTF-8 JSON bytes, or the JSON text.
        :raises EventFormatError: if ``data`` is not a JSON object that is a
            CloudEvent (see :meth:`from_dict`).
        :raises InvalidEventError: if an attribute is missing or invalid.
        :return: the event.
        """
        return cls.from_dict(load_json(data))

    @staticmethod
    def batch_to_json(events: Iterable[Event]) -> bytes:
        """Encode events in the CloudEvents JSON batch format.

        :param events: the events, in order; may be empty.
        :raises EventFormatError: if an event cannot be encoded (see :meth:`to_json`).
        :return: a compact UTF-8 JSON array, media type
            ``application/cloudevents-batch+json``.
        """
        return dump_json([event.to_dict() for event in events])

    @classmethod
    def batch_from_json(cls, data: bytes | str) -> list[Self]:
        """Decode events in the CloudEvents JSON batch format.

        :param data: a UTF-8 JSON array of CloudEvents, as bytes or text.
        :raises EventFormatError: if ``data`` is not a JSON array of CloudEvents; the
            exception has a note naming the index of the offending element.
        :raises InvalidEventError: if an attribute of an element is missing or
            invalid; noted with the element's index as well.
        :return: the events, in order.
        """
        batch = load_json(data)
        if not isinstance(batch, list):
            raise EventFormatError(
                f"a CloudEvents JSON batch must be a JSON array, got {type(batch).__name__}"
            )
        events = []
        for index, member in enumerate(batch):
            try:
                events.append(cls.from_dict(member))
            except (EventFormatError, InvalidEventError) as exc:
                exc.add_note(f"in element {index} of the CloudEvents batch")
                raise
        return events

    # -- HTTP binding ----------------------------------------------------------------

    def to_http(
        self, *, mode: Literal["binary", "structured"] = "binary"
    ) -> tuple[dict[str, str], bytes]:
        """Encode the event as an HTTP message of the CloudEvents HTTP binding.

        Binary mode puts every attribute in a percent-encoded ``ce-<name>`` header
        except ``datacontenttype``, which becomes ``content-type``, and the data in
        the body: ``bytes`` as is, JSON content types (and no content type) as JSON,
        ``str`` encoded with the content type's charset (UTF-8 by default), ``None``
        as an empty body. Data other than ``bytes`` without a ``datacontenttype`` is
        sent with ``content-type: application/json`` (a body without one is octets),
        so it is read back with that ``datacontenttype``; ``bytes`` without one are sent
        without a ``content-type`` and read back as the same bytes. ``bytes`` under a
        JSON or ``text/*`` type are the encoded body and are read back as the JSON value
        or text they encode; ``str`` under any other type is read back as its encoded
        ``bytes``. (Binary mode cannot tell empty data from none: an empty body is read
        back as ``None``.) Structured mode sends :meth:`to_json` as
        ``application/cloudevents+json``.

        :param mode: ``"binary"`` (the default) or ``"structured"``.
        :raises EventFormatError: if the data cannot be encoded for its content type
            (in binary mode also ``bytes`` that are not JSON text, or text in the
            charset, under such a type), or an attribute cannot be encoded as UTF-8.
        :return: ``(headers, body)``; header names are lower-case.
        """
        if mode == "structured":
            return {"content-type": f"{STRUCTURED_CONTENT_TYPE}; charset=utf-8"}, self.to_json()
        if mode != "binary":
            raise ValueError(f"mode must be 'binary' or 'structured', got {mode!r}")
        from ._binding import CE_PREFIX, encode_body, encode_header

        headers = {
            "ce-specversion": self.specversion,
            "ce-id": encode_header(self.id),
            "ce-source": encode_header(self.source),
            "ce-type": encode_header(self.type),
        }
        if self.subject is not None:
            headers["ce-subject"] = encode_header(self.subject)
        if self.time is not None:
            headers["ce-time"] = _format_time(self.time)
        if self.dataschema is not None:
            headers["ce-dataschema"] = encode_header(self.dataschema)
        for name, value in self.extensions.items():
            headers[CE_PREFIX + name] = encode_header(_canonical_string(value))
        content_type = self.datacontenttype
        if content_type is not None:
            # Printable ASCII (checked by the constructor): it cannot split the header.
            headers["content-type"] = content_type
        elif self.data is not None and not isinstance(self.data, _BINARY):
            # Data without a datacontenttype is JSON (the JSON format's default); binary
            # mode says so, as the specification's example does, since a body without a
            # Content-Type is read as octets.
            headers["content-type"] = "application/json"
        return headers, encode_body(self.data, self.datacontenttype)

    @classmethod
    def from_http(cls, headers: Headers, body: bytes) -> Self:
        """Decode an HTTP message of the CloudEvents HTTP binding.

        The mode follows the ``Content-Type``: ``application/cloudevents+json`` is
        structured mode, anything else binary mode, which needs the ``ce-specversion``,
        ``ce-id``, ``ce-source`` and ``ce-type`` headers. In binary mode the body
        becomes the data: parsed JSON for JSON content types, ``str`` for ``text/*``
        (decoded with the charset parameter, UTF-8 by default), ``bytes`` otherwise.
        Without a content type no content type is inferred: the body is ``bytes``
        (HTTP binding 3.1.1). An empty body is ``None``.

        :param headers: the request headers, a mapping or ``(name, value)`` pairs of
            ``str`` or ``bytes``; names are case-insensitive.
        :param body: the request body.
        :raises EventFormatError: if the message is not a CloudEvent: malformed
            headers, body or JSON, a batch (use :meth:`batch_from_http`), or an event
            format other than JSON.
        :raises InvalidEventError: if an attribute is missing or invalid.
        :return: the event.
        """
        from ._binding import lowercase_headers

        return cls._from_header_map(lowercase_headers(headers), body)

    @classmethod
    def batch_from_http(cls, headers: Headers, body: bytes) -> list[Self]:
        """Decode an HTTP message holding a batch of events, or a single event.

        A ``Content-Type`` of ``application/cloudevents-batch+json`` is batched mode;
        any other message is read by :meth:`from_http` and returned as a one-element
        list, so one endpoint can accept all three content modes.

        :param headers: the request headers, as for :meth:`from_http`.
        :param body: the request body.
        :raises EventFormatError: if the message is not a CloudEvent or a batch of
            them (see :meth:`batch_from_json` and :meth:`from_http`).
        :raises InvalidEventError: if an attribute is missing or invalid.
        :return: the events, in order.
        """
        from ._binding import body_bytes, lowercase_headers

        header_map = lowercase_headers(headers)
        content_type = header_map.get("content-type")
        if content_type is not None and parse_media_type(content_type)[0] == BATCH_CONTENT_TYPE:
            return cls.batch_from_json(body_bytes(body))
        return [cls._from_header_map(header_map, body)]

    # -- decoding internals ----------------------------------------------------------

    @classmethod
    def _from_header_map(cls, header_map: Mapping[str, str], body: bytes) -> Self:
        content_type = header_map.get("content-type")
        if content_type is not None and parse_media_type(content_type)[0].startswith(
            "application/cloudevents"
        ):
            return cls._from_structured(content_type, body)
        return cls._from_binary(header_map, content_type, body)

    @classmethod
    def _from_structured(cls, content_type: str, body: bytes) -> Self:
        from ._binding import body_bytes

        media_type = parse_media_type(content_type)[0]
        if media_type == STRUCTURED_CONTENT_TYPE:
            return cls.from_json(body_bytes(body))
        if media_type == BATCH_CONTENT_TYPE:
            raise EventFormatError(
                "the message is a batch of CloudEvents; read it with Event.batch_from_http()"
            )
        raise EventFormatError(
            f"unsupported CloudEvents event format {media_type!r}; "
            f"only {STRUCTURED_CONTENT_TYPE!r} is supported"
        )

    @classmethod
    def _from_binary(
        cls, header_map: Mapping[str, str], content_type: str | None, body: bytes
    ) -> Self:
        from ._binding import CE_PREFIX, body_bytes, decode_body, decode_header

        if "ce-specversion" not in header_map:
            raise EventFormatError(
                "not a CloudEvent: binary mode needs ce-* headers including ce-specversion, "
                f"structured mode a Content-Type of {STRUCTURED_CONTENT_TYPE!r}"
            )
        if "ce-datacontenttype" in header_map:
            raise EventFormatError(
                "binary mode carries datacontenttype in Content-Type; "
                "a ce-datacontenttype header is not allowed"
            )
        members = {
            name[len(CE_PREFIX) :]: decode_header(name, value)
            for name, value in header_map.items()
            if name.startswith(CE_PREFIX)
        }
        _require(members, ("id", "source", "type"), "the header ce-{}")
        if content_type is not None:
            members["datacontenttype"] = content_type
        return cls._from_members(members, decode_body(body_bytes(body), content_type))

    @classmethod
    def _from_members(cls, members: dict[str, Any], data: Any) -> Self:
        # members holds decoded attribute values by name; it is consumed.
        time = members.pop("time", None)
        return cls(
            specversion=members.pop("specversion"),
            id=members.pop("id"),
            source=members.pop("source"),
            type=members.pop("type"),
            time=None if time is None else _parse_time(time),
            subject=members.pop("subject", None),
            datacontenttype=members.pop("datacontenttype", None),
            dataschema=members.pop("dataschema", None),
            data=data,
            extensions=members or _NO_EXTENSIONS,
        )


def _rebuild(cls: type[Event], fields: dict[str, Any]) -> Event:
    return cls(**fields)


# -- validation --------------------------------------------------------------------


def _check_required(event: Event) -> None:
    for name in ("type", "source", "id"):
        value = getattr(event, name)
        if not (isinstance(value, str) and value):
            raise InvalidEventError(name, f"must be a non-empty str, got {value!r}")
        _check_unicode(name, value)
    if event.specversion != "1.0":
        raise InvalidEventError(
            "specversion", f"must be '1.0', the only version supported, got {event.specversion!r}"
        )


def _check_optional(event: Event) -> None:
    for name in ("subject", "datacontenttype", "dataschema"):
        value = getattr(event, name)
        if value is None:
            continue
        if not (isinstance(value, str) and value):
            raise InvalidEventError(name, f"must be a non-empty str or None, got {value!r}")
        _check_unicode(name, value)
    content_type = event.datacontenttype
    if content_type is not None and not (content_type.isascii() and content_type.isprintable()):
        # A media type (RFC 2045) is printable ASCII; anything else cannot be sent as the
        # Content-Type of binary mode.
        raise InvalidEventError(
            "datacontenttype", f"must be a media type in printable ASCII, got {content_type!r}"
        )


def _check_unicode(name: str, value: str) -> None:
    if lone_surrogate(value):
        raise InvalidEventError(
            name,
            f"{value!r} holds a lone surrogate, which is not Unicode text and cannot be "
            "encoded as UTF-8",
        )


def _to_utc(name: str, value: object) -> datetime:
    if not isinstance(value, datetime):
        raise InvalidEventError(name, f"must be a datetime, got {type(value).__name__}")
    if value.utcoffset() is None:
        raise InvalidEventError(
            name, f"must be timezone-aware, got naive {value!r}; pass tzinfo=datetime.UTC"
        )
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise InvalidEventError(name, f"{value!r} is out of range in UTC") from None


def _checked_extensions(extensions: object) -> Mapping[str, ExtensionValue]:
    if not isinstance(extensions, Mapping):
        raise InvalidEventError("extensions", f"must be a mapping, got {type(extensions).__name__}")
    checked: dict[str, ExtensionValue] = {}
    for name, value in extensions.items():
        if not isinstance(name, str):
            raise InvalidEventError("extensions", f"names must be str, got {name!r}")
        if _EXTENSION_NAME.fullmatch(name) is None:
            raise InvalidEventError(
                name, "extension names must be 1 to 20 characters of lower-case a-z and 0-9"
            )
        if name in _RESERVED_NAMES:
            raise InvalidEventError(
                name, "is a context attribute or data member, not an extension; pass it as such"
            )
        if name in _TIME_EXTENSIONS:
            # Read by reactor (delayed and expiring events): a time, whatever the carrier.
            checked[name] = (
                _to_utc(name, value) if isinstance(value, datetime) else _parse_time(value, name)
            )
        elif isinstance(value, str):
            _check_unicode(name, value)
            checked[name] = value
        elif isinstance(value, bytes):
            checked[name] = value
        elif isinstance(value, int):  # bool included: always in range
            if not _INT32_MIN <= value <= _INT32_MAX:
                raise InvalidEventError(name, f"integers must fit in signed 32 bits, got {value}")
            checked[name] = value
        elif isinstance(value, datetime):
            checked[name] = _to_utc(name, value)
        else:
            raise InvalidEventError(
                name,
                "extension values must be str, int, bool, bytes or datetime, "
                f"got {type(value).__name__}",
            )
    return MappingProxyType(checked)


def _require(members: Mapping[str, object], names: tuple[str, ...], carrier: str) -> None:
    for name in names:
        if name not in members:
            raise InvalidEventError(name, f"is required but {carrier.format(name)} is missing")


# -- value formats -----------------------------------------------------------------


def _format_time(value: datetime) -> str:
    # Every datetime in an Event is already in UTC, so isoformat() ends in +00:00.
    return value.isoformat()[:-6] + "Z"


def _parse_time(value: object, name: str = "time") -> datetime:
    if not isinstance(value, str) or _RFC3339.fullmatch(value) is None:
        raise InvalidEventError(
            name, f"must be an RFC 3339 timestamp like '2026-01-31T12:00:00Z', got {value!r}"
        )
    try:
        parsed = datetime.fromisoformat(value.upper())
        # "Z" and "+00:00" parse as UTC already (the timezone.utc singleton).
        return parsed if parsed.tzinfo is UTC else parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        raise InvalidEventError(name, f"{value!r} is not a valid UTC date and time") from None


def _canonical_string(value: ExtensionValue) -> str:
    """The CloudEvents canonical string of an attribute value (core spec, type system)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, bytes):
        import base64

        return base64.b64encode(value).decode("ascii")
    return _format_time(value)


def _decode_base64(value: object) -> bytes:
    if not isinstance(value, str):
        raise EventFormatError(f"'data_base64' must be a base64 string, got {value!r}")
    import base64

    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        raise EventFormatError("'data_base64' is not valid base64") from None


def _json_kind(value: object) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, bool):
        return "boolean"
    return "number"
