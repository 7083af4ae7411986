"""``Event``: validation, defaults, hashing, the JSON format and the HTTP binding.

Round trips and robustness against malformed input are property tests; interoperability
is checked in both directions against the official CloudEvents SDK.
"""

from __future__ import annotations

import copy
import json
import os
import pickle
import threading
import uuid
import warnings
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reactor._event import Event, ExtensionValue
from reactor._exceptions import EventFormatError, InvalidEventError

# Every property test: no deadline (CI machines stall), no example database on disk.
hypothesis_settings = settings(deadline=None, database=None)

CONTEXT_ATTRIBUTES = (
    "specversion",
    "id",
    "source",
    "type",
    "subject",
    "time",
    "datacontenttype",
    "dataschema",
)
WHEN = datetime(2018, 4, 5, 17, 31, tzinfo=UTC)
REQUIRED_HEADERS = {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s", "ce-type": "t"}


def full_event(**changes: Any) -> Event:
    """An event with every attribute set."""
    fields: dict[str, Any] = {
        "type": "com.example.someevent",
        "source": "/mycontext",
        "id": "A234-1234-1234",
        "time": WHEN,
        "subject": "larger-context",
        "datacontenttype": "application/json",
        "dataschema": "https://example.com/schema.json",
        "data": {"appinfoA": "abc", "appinfoB": 123, "appinfoC": True},
        "extensions": {"comexampleextension1": "value", "comexampleothervalue": 5},
    }
    fields.update(changes)
    return Event(**fields)


MISSING: Any = object()  # leaves a member out of document()


def document(**changes: Any) -> bytes:
    """A minimal event in JSON with members changed, or left out when ``MISSING``."""
    members = {"specversion": "1.0", "id": "1", "source": "/s", "type": "t", **changes}
    return json.dumps(
        {name: value for name, value in members.items() if value is not MISSING}
    ).encode()


def rejects_cleanly(decode: Callable[..., object], *args: object) -> None:
    """Call a decoder on junk: it may succeed or raise one of our errors, nothing else."""
    try:
        decode(*args)
    except (EventFormatError, InvalidEventError) as exc:
        assert str(exc)


# -- validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "attribute"),
    [
        ({"type": ""}, "type"),
        ({"type": 5}, "type"),
        ({"type": None}, "type"),
        ({"source": ""}, "source"),
        ({"source": b"/x"}, "source"),
        ({"id": ""}, "id"),
        ({"id": 12}, "id"),
        ({"specversion": "0.3"}, "specversion"),
        ({"specversion": 1.0}, "specversion"),
        ({"time": datetime(2020, 1, 1)}, "time"),
        ({"time": "2020-01-01T00:00:00Z"}, "time"),
        ({"time": datetime.min.replace(tzinfo=timezone(timedelta(hours=1)))}, "time"),
        ({"subject": ""}, "subject"),
        ({"subject": 5}, "subject"),
        ({"datacontenttype": 5}, "datacontenttype"),
        ({"datacontenttype": ""}, "datacontenttype"),
        ({"dataschema": ""}, "dataschema"),
        ({"dataschema": ["x"]}, "dataschema"),
        ({"extensions": ["a"]}, "extensions"),
        ({"extensions": {5: "x"}}, "extensions"),
        ({"extensions": {"Upper": "x"}}, "Upper"),
        ({"extensions": {"": "x"}}, ""),
        ({"extensions": {"a" * 21: "x"}}, "a" * 21),
        ({"extensions": {"with_underscore": "x"}}, "with_underscore"),
        ({"extensions": {"dash-ed": "x"}}, "dash-ed"),
        ({"extensions": {"trailing\n": "x"}}, "trailing\n"),
        ({"extensions": {"id": "x"}}, "id"),
        ({"extensions": {"time": "x"}}, "time"),
        ({"extensions": {"datacontenttype": "x"}}, "datacontenttype"),
        ({"extensions": {"data": "x"}}, "data"),
        ({"extensions": {"data_base64": "x"}}, "data_base64"),
        ({"extensions": {"ext": 1.5}}, "ext"),
        ({"extensions": {"ext": None}}, "ext"),
        ({"extensions": {"ext": ["x"]}}, "ext"),
        ({"extensions": {"ext": bytearray(b"x")}}, "ext"),
        ({"extensions": {"ext": 2**31}}, "ext"),
        ({"extensions": {"ext": -(2**31) - 1}}, "ext"),
        ({"extensions": {"ext": datetime(2020, 1, 1)}}, "ext"),
    ],
)
def test_invalid_attribute_is_named(changes: dict[str, Any], attribute: str) -> None:
    with pytest.raises(InvalidEventError) as caught:
        full_event(**changes)
    assert caught.value.attribute == attribute
    assert repr(attribute) in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_required_attributes_are_keyword_only_and_required() -> None:
    with pytest.raises(TypeError):
        Event("a.b", "/x")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Event(type="a.b")  # type: ignore[call-arg]


@pytest.mark.parametrize("value", ["", "x", 2**31 - 1, -(2**31), 0, True, False, b"", b"\x00"])
def test_extension_values_within_the_spec_are_accepted(value: ExtensionValue) -> None:
    event = Event(type="a.b", source="/x", extensions={"ext": value})
    assert event.extensions == {"ext": value}


def test_extension_names_at_the_limits_are_accepted() -> None:
    names = {"a": 1, "z" * 20: 2, "0": 3, "abc123": 4}
    assert Event(type="a.b", source="/x", extensions=names).extensions == names


def test_str_subclasses_are_accepted() -> None:
    class Kind(str):
        pass

    assert Event(type=Kind("a.b"), source="/x").type == "a.b"


# -- defaults and normalization ----------------------------------------------------------


def test_defaults() -> None:
    before = datetime.now(UTC)
    event = Event(type="a.b", source="/x")
    after = datetime.now(UTC)
    assert event.specversion == "1.0"
    assert event.time is not None
    assert event.time.tzinfo is UTC
    assert before <= event.time <= after
    assert (event.subject, event.datacontenttype, event.dataschema, event.data) == (None,) * 4
    assert event.extensions == {}


def test_default_ids_are_unique_uuid_strings() -> None:
    ids = {Event(type="a.b", source="/x").id for _ in range(2000)}
    assert len(ids) == 2000
    for value in list(ids)[:200]:
        parsed = uuid.UUID(value)
        assert parsed.version == 8
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == value


def test_default_ids_are_unique_across_threads() -> None:
    ids: list[str] = []

    def make() -> None:
        ids.extend(Event(type="a.b", source="/x").id for _ in range(5000))

    threads = [threading.Thread(target=make) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(ids)) == 20000


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_makes_other_ids_than_its_parent() -> None:
    read, write = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns about forking a process that runs threads; the child here
        # only makes two ids and leaves.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if not pid:  # the child: send two ids and leave at once
        try:
            os.write(write, " ".join(Event(type="a", source="/x").id for _ in range(2)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = pipe.read().split()
    os.waitpid(pid, 0)
    parent = [Event(type="a", source="/x").id for _ in range(2)]
    assert len(child) == 2
    # The child drew its own random part: neither the ids nor their prefixes are the parent's.
    assert {value[:24] for value in child}.isdisjoint(value[:24] for value in parent)
    assert uuid.UUID(child[0]).version == 8


def test_time_is_normalized_to_utc() -> None:
    local = datetime(2020, 1, 1, 12, 30, tzinfo=timezone(timedelta(hours=2)))
    event = Event(type="a.b", source="/x", time=local)
    assert event.time == local
    assert event.time is not None
    assert event.time.tzinfo is UTC
    assert event.time.hour == 10


def test_time_can_be_left_out() -> None:
    event = Event(type="a.b", source="/x", time=None)
    assert event.time is None
    assert "time" not in event.to_dict()
    assert "ce-time" not in event.to_http()[0]


def test_datetime_extensions_are_normalized_to_utc() -> None:
    local = datetime(2020, 1, 1, 12, 30, tzinfo=timezone(timedelta(hours=-5)))
    event = Event(type="a.b", source="/x", extensions={"when": local})
    when = event.extensions["when"]
    assert isinstance(when, datetime)
    assert when == local
    assert when.tzinfo is UTC


def test_extensions_are_a_read_only_copy() -> None:
    given_extensions: dict[str, ExtensionValue] = {"ext": "x"}
    event = Event(type="a.b", source="/x", extensions=given_extensions)
    given_extensions["ext"] = "changed"
    assert event.extensions == {"ext": "x"}
    with pytest.raises(TypeError):
        event.extensions["ext"] = "y"  # type: ignore[index]


def test_events_are_frozen() -> None:
    event = Event(type="a.b", source="/x")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        event.type = "c.d"  # type: ignore[misc]


def test_evolve_keeps_the_id_and_revalidates() -> None:
    event = full_event()
    changed = attrs.evolve(event, subject="other")
    assert (changed.id, changed.subject, changed.extensions) == (
        event.id,
        "other",
        event.extensions,
    )
    with pytest.raises(InvalidEventError):
        attrs.evolve(event, type="")


# -- equality, hashing, pickling ---------------------------------------------------------


def test_equal_events_hash_alike_even_with_unhashable_data() -> None:
    first = full_event(data={"a": [1, 2]})
    second = full_event(data={"a": [1, 2]})
    assert first == second
    assert hash(first) == hash(second)
    assert len({first, second}) == 1


def test_data_and_extensions_take_part_in_equality_but_not_hashing() -> None:
    event = full_event()
    other_data = full_event(data={"different": True})
    other_extensions = full_event(extensions={"comexampleextension1": "other"})
    assert event != other_data
    assert event != other_extensions
    assert hash(event) == hash(other_data) == hash(other_extensions)
    assert full_event(id="other") != event


def test_pickle_and_copy() -> None:
    event = full_event(extensions={"raw": b"\x00", "when": WHEN, "flag": True})
    for clone in (pickle.loads(pickle.dumps(event)), copy.copy(event), copy.deepcopy(event)):
        assert clone == event
        assert isinstance(clone.extensions, Mapping)
        with pytest.raises(TypeError):
            clone.extensions["raw"] = b"x"  # type: ignore[index]


# -- JSON format -------------------------------------------------------------------------


def test_to_dict_of_a_json_event() -> None:
    assert full_event().to_dict() == {
        "specversion": "1.0",
        "id": "A234-1234-1234",
        "source": "/mycontext",
        "type": "com.example.someevent",
        "subject": "larger-context",
        "time": "2018-04-05T17:31:00Z",
        "datacontenttype": "application/json",
        "dataschema": "https://example.com/schema.json",
        "comexampleextension1": "value",
        "comexampleothervalue": 5,
        "data": {"appinfoA": "abc", "appinfoB": 123, "appinfoC": True},
    }


def test_to_json_is_compact_utf8() -> None:
    event = Event(type="a.b", source="/x", id="1", time=None, data={"name": "Zoë"})
    assert (
        event.to_json()
        == '{"specversion":"1.0","id":"1","source":"/x","type":"a.b","data":{"name":"Zoë"}}'.encode()
    )


def test_time_keeps_microseconds() -> None:
    when = datetime(2020, 1, 2, 3, 4, 5, 60, tzinfo=UTC)
    assert Event(type="a.b", source="/x", time=when).to_dict()["time"] == (
        "2020-01-02T03:04:05.000060Z"
    )


def test_bytes_data_goes_to_data_base64() -> None:
    event = full_event(datacontenttype="application/octet-stream", data=b"\x00\xffhi")
    encoded = event.to_dict()
    assert encoded["data_base64"] == "AP9oaQ=="
    assert "data" not in encoded
    assert Event.from_json(event.to_json()) == event


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "application/json",
        "text/json",
        "application/ld+json",
        "application/vnd.api+json; charset=utf-8",
        "APPLICATION/JSON ; charset=UTF-8",
    ],
)
def test_json_content_types_put_data_as_a_json_value(content_type: str | None) -> None:
    event = full_event(datacontenttype=content_type, data={"a": [1, None]})
    assert event.to_dict()["data"] == {"a": [1, None]}
    assert json.loads(event.to_json())["data"] == {"a": [1, None]}
    # A str is a JSON string, not a JSON document to parse.
    assert Event.from_json(
        full_event(datacontenttype=content_type, data='{"a"').to_json()
    ).data == ('{"a"')


def test_other_content_types_put_str_data_as_a_json_string() -> None:
    event = full_event(datacontenttype="application/xml", data='<much wow="xml"/>')
    assert json.loads(event.to_json())["data"] == '<much wow="xml"/>'
    assert Event.from_json(event.to_json()) == event


def test_non_text_data_for_a_non_json_content_type_cannot_be_encoded() -> None:
    event = full_event(datacontenttype="text/plain", data={"a": 1})
    with pytest.raises(EventFormatError, match="text/plain"):
        event.to_json()
    with pytest.raises(EventFormatError, match="text/plain"):
        event.to_http()


@pytest.mark.parametrize("data", [{1, 2}, float("nan"), {"x": float("inf")}, object()])
def test_data_json_cannot_encode_raises_event_format_error(data: object) -> None:
    event = Event(type="a.b", source="/x", data=data)
    with pytest.raises(EventFormatError, match="JSON"):
        event.to_json()
    with pytest.raises(EventFormatError, match="JSON"):
        event.to_http()


def test_extension_values_in_json() -> None:
    event = Event(
        type="a.b",
        source="/x",
        extensions={"s": "x", "i": -7, "b": False, "raw": b"\x01\x02", "when": WHEN},
    )
    encoded = json.loads(event.to_json())
    assert [encoded[name] for name in ("s", "i", "b", "raw", "when")] == [
        "x",
        -7,
        False,
        "AQI=",
        "2018-04-05T17:31:00Z",
    ]
    # JSON carries no type for strings, so Binary and Timestamp come back as str.
    assert Event.from_json(event.to_json()).extensions == {
        "s": "x",
        "i": -7,
        "b": False,
        "raw": "AQI=",
        "when": "2018-04-05T17:31:00Z",
    }


def test_from_json_reads_the_spec_examples() -> None:
    binary = Event.from_json(
        b"""{
            "specversion": "1.0", "type": "com.example.someevent", "source": "/mycontext",
            "id": "A234-1234-1234", "time": "2018-04-05T17:31:00Z",
            "comexampleextension1": "value", "comexampleothervalue": 5,
            "unsetextension": null, "subject": null,
            "datacontenttype": "application/vnd.apache.thrift.binary",
            "data_base64": "AAEC"
        }"""
    )
    assert binary == Event(
        type="com.example.someevent",
        source="/mycontext",
        id="A234-1234-1234",
        time=WHEN,
        datacontenttype="application/vnd.apache.thrift.binary",
        data=b"\x00\x01\x02",
        extensions={"comexampleextension1": "value", "comexampleothervalue": 5},
    )
    string = Event.from_json(
        '{"specversion": "1.0", "type": "t", "source": "/s", "id": "D",'
        ' "data": "I\'m just a string"}'
    )
    assert (string.data, string.time, string.datacontenttype) == ("I'm just a string", None, None)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2018-04-05T17:31:00Z", WHEN),
        ("2018-04-05t17:31:00z", WHEN),
        ("2018-04-05T19:31:00+02:00", WHEN),
        ("2018-04-05T17:31:00-00:00", WHEN),
        ("2018-04-05T17:31:00.5Z", WHEN.replace(microsecond=500000)),
        ("2018-04-05T17:31:00.123456789Z", WHEN.replace(microsecond=123456)),
    ],
)
def test_rfc3339_times_are_read(text: str, expected: datetime) -> None:
    event = Event.from_json(document(time=text))
    assert event.time == expected
    assert event.time is not None
    assert event.time.tzinfo is UTC


@pytest.mark.parametrize(
    "text",
    [
        "2018-04-05",
        "2018-04-05T17:31:00",
        "2018-04-05 17:31:00Z",
        "20180405T173100Z",
        "2018-04-05T17:31Z",
        "2018-13-05T17:31:00Z",
        "2018-04-05T24:31:00Z",
        "2018-04-05T17:31:60Z",
        "0001-01-01T00:00:00+01:00",
        "\uff12\uff10\uff11\uff18-04-05T17:31:00Z",  # full-width digits
        "",
    ],
)
def test_bad_times_are_rejected(text: str) -> None:
    with pytest.raises(InvalidEventError) as caught:
        Event.from_json(document(time=text))
    assert caught.value.attribute == "time"
    with pytest.raises(InvalidEventError) as caught:
        Event.from_http({**REQUIRED_HEADERS, "ce-time": quote(text, safe=":+")}, b"")
    assert caught.value.attribute == "time"


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        (b"", EventFormatError, "invalid JSON"),
        (b"{", EventFormatError, "invalid JSON"),
        (b"\xff{}", EventFormatError, "UTF-8"),
        (b"[]", EventFormatError, "JSON object"),
        (b'"event"', EventFormatError, "JSON object"),
        (b"{} {}", EventFormatError, "invalid JSON"),
        (b'{"a": NaN}', EventFormatError, "NaN"),
        (b"[" * 100_000 + b"]" * 100_000, EventFormatError, "invalid JSON"),
        (document(specversion=MISSING), InvalidEventError, "'specversion'"),
        (document(specversion="0.3"), InvalidEventError, "'1.0'"),
        (document(id=MISSING), InvalidEventError, "'id'"),
        (document(id=None), InvalidEventError, "'id'"),
        (document(id=1), InvalidEventError, "'id'"),
        (document(source=MISSING), InvalidEventError, "'source'"),
        (document(type=MISSING), InvalidEventError, "'type'"),
        (document(time=5), InvalidEventError, "RFC 3339"),
        (document(ext=1.5), InvalidEventError, "'ext'"),
        (document(ext={}), InvalidEventError, "'ext'"),
        (document(Ext="x"), InvalidEventError, "'Ext'"),
        (document(data=1, data_base64="AA=="), EventFormatError, "not both"),
        (document(data_base64="A"), EventFormatError, "base64"),
        (document(data_base64="A*=="), EventFormatError, "base64"),
        (document(data_base64="é"), EventFormatError, "base64"),
        (document(data_base64=5), EventFormatError, "base64"),
    ],
)
def test_malformed_json_is_rejected(data: bytes, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        Event.from_json(data)


def test_from_json_takes_str_and_rejects_other_types() -> None:
    event = full_event()
    assert Event.from_json(event.to_json().decode()) == event
    with pytest.raises(EventFormatError, match="bytes or str"):
        Event.from_json(5)  # type: ignore[arg-type]
    with pytest.raises(EventFormatError, match="JSON object"):
        Event.from_dict(["not", "a", "mapping"])  # type: ignore[arg-type]


def test_batch_json() -> None:
    events = [full_event(id=str(n)) for n in range(3)] + [
        full_event(datacontenttype="image/png", data=b"\x89PNG")
    ]
    encoded = Event.batch_to_json(events)
    assert [member["id"] for member in json.loads(encoded)] == ["0", "1", "2", "A234-1234-1234"]
    assert Event.batch_from_json(encoded) == events
    assert Event.batch_from_json(encoded.decode()) == events
    assert Event.batch_to_json([]) == b"[]"
    assert Event.batch_from_json(b"[]") == []


def test_batch_json_errors_name_the_element() -> None:
    with pytest.raises(EventFormatError, match="JSON array"):
        Event.batch_from_json(full_event().to_json())
    bad = json.dumps([full_event().to_dict(), {"specversion": "1.0", "id": "2", "source": "/s"}])
    with pytest.raises(InvalidEventError) as caught:
        Event.batch_from_json(bad)
    assert caught.value.attribute == "type"
    assert caught.value.__notes__ == ["in element 1 of the CloudEvents batch"]
    with pytest.raises(EventFormatError) as format_error:
        Event.batch_from_json(b"[1]")
    assert format_error.value.__notes__ == ["in element 0 of the CloudEvents batch"]


# -- HTTP binding ------------------------------------------------------------------------


def test_to_http_binary() -> None:
    headers, body = full_event().to_http()
    assert headers == {
        "ce-specversion": "1.0",
        "ce-id": "A234-1234-1234",
        "ce-source": "/mycontext",
        "ce-type": "com.example.someevent",
        "ce-subject": "larger-context",
        "ce-time": "2018-04-05T17:31:00Z",
        "ce-dataschema": "https://example.com/schema.json",
        "ce-comexampleextension1": "value",
        "ce-comexampleothervalue": "5",
        "content-type": "application/json",
    }
    assert json.loads(body) == {"appinfoA": "abc", "appinfoB": 123, "appinfoC": True}
    assert full_event().to_http(mode="binary") == (headers, body)


def test_to_http_structured() -> None:
    event = full_event()
    assert event.to_http(mode="structured") == (
        {"content-type": "application/cloudevents+json; charset=utf-8"},
        event.to_json(),
    )


def test_to_http_rejects_unknown_modes() -> None:
    mode: Any = "batched"
    with pytest.raises(ValueError, match="mode"):
        full_event().to_http(mode=mode)


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        ("Euro € 😀", "Euro%20%E2%82%AC%20%F0%9F%98%80"),
        ('say "hi" 100%', "say%20%22hi%22%20100%25"),
        ("café", "caf%C3%A9"),
        ("tab\tnew\nline\x7f", "tab%09new%0Aline%7F"),
        ("/path?q=1&r=[2]~!$'()*+,;=:@{}|^`\\<>#", "/path?q=1&r=[2]~!$'()*+,;=:@{}|^`\\<>#"),
    ],
)
def test_header_values_are_percent_encoded(value: str, encoded: str) -> None:
    event = Event(type=value, source=value, id=value, subject=value, extensions={"ext": value})
    headers, _ = event.to_http()
    for name in ("ce-type", "ce-source", "ce-id", "ce-subject", "ce-ext"):
        assert headers[name] == encoded
    assert Event.from_http(headers, b"") == event


@pytest.mark.parametrize(
    ("header", "decoded"),
    [
        ("caf%c3%a9", "café"),
        ("%41%42c", "ABc"),
        ("  padded\t", "padded"),
        ("plain space", "plain space"),
        ('"quoted \\"value\\" \\\\ here"', 'quoted "value" \\ here'),
        ('"%25 inside quotes"', "% inside quotes"),
        ("", ""),
    ],
)
def test_header_values_are_decoded(header: str, decoded: str) -> None:
    headers = {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s", "ce-type": "t"}
    event = Event.from_http({**headers, "ce-ext": header}, b"")
    assert event.extensions == {"ext": decoded}


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("%C0%A0", "invalid UTF-8"),
        ("%ED%A0%80", "invalid UTF-8"),
        ("%FF", "invalid UTF-8"),
        ("%E2%82", "invalid UTF-8"),
        ("%zz", "two hex digits"),
        ("100%", "two hex digits"),
        ("%4", "two hex digits"),
        ("café", "printable ASCII"),
        ("new\nline", "printable ASCII"),
        ('"unterminated', "quoted string"),
        ('"escaped end\\"', "quoted string"),
    ],
)
def test_bad_header_values_are_rejected(header: str, message: str) -> None:
    headers = {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s", "ce-type": "t"}
    with pytest.raises(EventFormatError, match=message):
        Event.from_http({**headers, "ce-subject": header}, b"")


@pytest.mark.parametrize(
    ("content_type", "data", "body"),
    [
        ("application/octet-stream", b"\x00\xff", b"\x00\xff"),
        ("image/png", bytearray(b"\x89PNG"), b"\x89PNG"),
        ("text/plain", "Zoë", "Zoë".encode()),
        ("text/plain; charset=iso-8859-1", "Zoë", "Zoë".encode("latin-1")),
        ("application/xml", "<a/>", b"<a/>"),
        ("application/json", {"a": 1}, b'{"a":1}'),
        ("application/json", "I'm just a string", b'"I\'m just a string"'),
        ("application/ld+json", [1, 2], b"[1,2]"),
        (None, {"a": 1}, b'{"a":1}'),
        (None, b"raw", b"raw"),
        ("text/plain", None, b""),
        (None, None, b""),
    ],
)
def test_binary_mode_body(content_type: str | None, data: object, body: bytes) -> None:
    headers, encoded = Event(
        type="a.b", source="/x", datacontenttype=content_type, data=data
    ).to_http()
    assert encoded == body
    # JSON data without a content type is labelled as such (issue 10, item 10).
    labelled = content_type is None and data is not None and not isinstance(data, bytes)
    assert headers.get("content-type") == ("application/json" if labelled else content_type)
    assert "ce-datacontenttype" not in headers


@pytest.mark.parametrize(
    ("content_type", "data"),
    [
        ("text/plain; charset=ascii", "Zoë"),
        ("text/plain; charset=no-such-charset", "x"),
        ("text/plain; charset=base64", "x"),
    ],
)
def test_binary_mode_encoding_errors(content_type: str, data: str) -> None:
    event = Event(type="a.b", source="/x", datacontenttype=content_type, data=data)
    with pytest.raises(EventFormatError):
        event.to_http()


def test_lone_surrogates_cannot_be_encoded() -> None:
    with pytest.raises(InvalidEventError):
        Event(type="a.b", source="/x", subject="\ud800")
    event = Event(type="a.b", source="/x", data="\udfff")
    with pytest.raises(EventFormatError):
        event.to_http()
    with pytest.raises(EventFormatError):
        event.to_json()


@pytest.mark.parametrize(
    ("content_type", "body", "data"),
    [
        ("application/json", b'{"a": [1, 2]}', {"a": [1, 2]}),
        ("application/json; charset=utf-8", b'"text"', "text"),
        ("text/json", b"12", 12),
        ("application/problem+json", b"null", None),
        ("application/json", b"", None),
        ("text/plain", "Zoë".encode(), "Zoë"),
        ("text/plain; charset=latin-1", "Zoë".encode("latin-1"), "Zoë"),
        ('text/html; charset="utf-16"', "Zoë".encode("utf-16"), "Zoë"),
        ("text/plain", b"", None),
        ("application/octet-stream", b'{"a": 1}', b'{"a": 1}'),
        ("image/png", b"\x89PNG", b"\x89PNG"),
        (None, b"", None),
        (None, b'{"a": 1}', b'{"a": 1}'),
        (None, b"null", b"null"),
        (None, b"\x00\x01", b"\x00\x01"),
    ],
)
def test_binary_mode_data_by_content_type(
    content_type: str | None, body: bytes, data: object
) -> None:
    headers = dict(REQUIRED_HEADERS)
    if content_type is not None:
        headers["Content-Type"] = content_type
    event = Event.from_http(headers, body)
    assert event.data == data
    assert type(event.data) is type(data)
    assert event.datacontenttype == content_type


def test_from_http_accepts_asgi_headers() -> None:
    event = full_event(data={"x": "é"}, extensions={"ext": "a b"})
    headers, body = event.to_http()
    asgi: list[tuple[bytes, bytes]] = [
        (name.title().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()
    ]
    asgi = [*asgi, (b"host", b"example.com"), (b"accept", b"*/*"), (b"accept", b"text/plain")]
    assert Event.from_http(asgi, body) == event
    assert (
        Event.from_http([(name.upper(), value) for name, value in headers.items()], body) == event
    )


def test_from_http_chooses_structured_mode_by_content_type() -> None:
    event = full_event()
    _, body = event.to_http(mode="structured")
    for content_type in (
        "application/cloudevents+json",
        "Application/CloudEvents+JSON; charset=UTF-8",
    ):
        # ce-* headers in structured mode are informative only; the body wins.
        headers = {"Content-Type": content_type, "ce-id": "ignored"}
        assert Event.from_http(headers, body) == event
        assert Event.batch_from_http(headers, body) == [event]


def test_from_http_rejects_batches_and_other_formats() -> None:
    body = Event.batch_to_json([full_event()])
    with pytest.raises(EventFormatError, match="batch_from_http"):
        Event.from_http({"content-type": "application/cloudevents-batch+json"}, body)
    with pytest.raises(EventFormatError, match="unsupported"):
        Event.from_http({"content-type": "application/cloudevents+avro"}, b"...")


def test_batch_from_http() -> None:
    events = [full_event(id="1"), full_event(id="2", data=b"\x00")]
    body = Event.batch_to_json(events)
    headers = {"content-type": "application/cloudevents-batch+json; charset=utf-8"}
    assert Event.batch_from_http(headers, body) == events
    assert Event.batch_from_http(list(headers.items()), body) == events
    single = full_event(extensions={"ext": "x"})
    assert Event.batch_from_http(*single.to_http()) == [single]
    with pytest.raises(EventFormatError, match="JSON array"):
        Event.batch_from_http(headers, events[0].to_json())


@pytest.mark.parametrize(
    ("headers", "body", "error", "message"),
    [
        ({}, b"", EventFormatError, "ce-specversion"),
        ({"content-type": "application/json"}, b"{}", EventFormatError, "not a CloudEvent"),
        ({**REQUIRED_HEADERS, "ce-specversion": "0.3"}, b"", InvalidEventError, "specversion"),
        (
            {"ce-specversion": "1.0", "ce-source": "/s", "ce-type": "t"},
            b"",
            InvalidEventError,
            "ce-id",
        ),
        (
            {"ce-specversion": "1.0", "ce-id": "1", "ce-type": "t"},
            b"",
            InvalidEventError,
            "ce-source",
        ),
        (
            {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s"},
            b"",
            InvalidEventError,
            "ce-type",
        ),
        ({**REQUIRED_HEADERS, "ce-id": ""}, b"", InvalidEventError, "'id'"),
        (
            {**REQUIRED_HEADERS, "ce-datacontenttype": "text/plain"},
            b"",
            EventFormatError,
            "Content-Type",
        ),
        ({**REQUIRED_HEADERS, "ce-Bad_Name": "x"}, b"", InvalidEventError, "'bad_name'"),
        ({**REQUIRED_HEADERS, "ce-data": "x"}, b"", InvalidEventError, "'data'"),
        ({**REQUIRED_HEADERS, "ce-": "x"}, b"", InvalidEventError, "''"),
        (
            {**REQUIRED_HEADERS, "content-type": "application/json"},
            b"{",
            EventFormatError,
            "invalid JSON",
        ),
        (
            {**REQUIRED_HEADERS, "content-type": "application/json"},
            b"\xff",
            EventFormatError,
            "UTF-8",
        ),
        (
            {**REQUIRED_HEADERS, "content-type": "text/plain"},
            b"\xff",
            EventFormatError,
            "text/plain",
        ),
        (
            {**REQUIRED_HEADERS, "content-type": "text/plain; charset=nope"},
            b"x",
            EventFormatError,
            "charset",
        ),
        ({"content-type": "application/cloudevents+json"}, b"{", EventFormatError, "invalid JSON"),
        ({"content-type": "application/cloudevents+json"}, b"[]", EventFormatError, "JSON object"),
        ([("ce-id", "1"), ("CE-ID", "2")], b"", EventFormatError, "more than once"),
        (
            [("content-type", "a/b"), ("Content-Type", "c/d")],
            b"",
            EventFormatError,
            "more than once",
        ),
        ([("ce-id",)], b"", EventFormatError, "pairs"),
        ([("ce-id", 5)], b"", EventFormatError, "str or bytes"),
        (5, b"", EventFormatError, "mapping"),
        (REQUIRED_HEADERS, "body", EventFormatError, "bytes"),
    ],
)
def test_malformed_http_is_rejected(
    headers: Any, body: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        Event.from_http(headers, body)


# -- round trips (property tests) --------------------------------------------------------

RESERVED = {*CONTEXT_ATTRIBUTES, "data", "data_base64"}
ext_names = st.from_regex(r"[a-z0-9]{1,20}", fullmatch=True).filter(
    lambda name: name not in RESERVED
)
int32 = st.integers(min_value=-(2**31), max_value=2**31 - 1)
texts = st.text(min_size=1)
offsets = st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
aware_times = st.datetimes(
    min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31), timezones=offsets
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=12,
)
JSON_TYPES = [None, "application/json", "text/json", "application/vnd.api+json; charset=utf-8"]
TEXT_TYPES = ["text/plain", "text/csv; charset=utf-8", "text/plain; charset=iso-8859-1"]
BINARY_TYPES = ["application/octet-stream", "image/png", "application/vnd.apache.thrift.binary"]


@st.composite
def events(draw: st.DrawFn, *, binary_mode: bool = False) -> Event:
    """Events of every shape that the given encoding represents without loss.

    Binary HTTP mode loses more than JSON: extensions come back as str, an empty body
    is ``None``, and only ``text/*`` bodies come back as str.
    """
    content_type = draw(st.sampled_from(JSON_TYPES + TEXT_TYPES + BINARY_TYPES))
    if content_type in JSON_TYPES:
        data = draw(json_values if binary_mode else json_values | st.binary())
    elif content_type in TEXT_TYPES:
        latin1 = "iso-8859-1" in content_type
        # No surrogates: they are not text (and Event refuses them in attributes).
        text = st.text(
            st.characters(max_codepoint=0xFF if latin1 else None, exclude_categories=["Cs"]),
            min_size=1,
        )
        data = draw(st.none() | text if binary_mode else st.none() | text | st.binary())
    else:
        data = draw(
            st.none() | st.binary(min_size=1)
            if binary_mode
            else st.none() | st.binary() | st.text()
        )
    values: st.SearchStrategy[ExtensionValue] = (
        st.text() if binary_mode else st.text() | int32 | st.booleans()
    )
    return Event(
        type=draw(texts),
        source=draw(texts),
        id=draw(texts),
        time=draw(st.none() | aware_times),
        subject=draw(st.none() | texts),
        datacontenttype=content_type,
        dataschema=draw(st.none() | texts),
        data=data,
        extensions=draw(st.dictionaries(ext_names, values, max_size=4)),
    )


@hypothesis_settings
@given(events())
def test_json_round_trip(event: Event) -> None:
    assert Event.from_json(event.to_json()) == event
    assert Event.from_dict(json.loads(json.dumps(event.to_dict()))) == event
    assert Event.from_http(*event.to_http(mode="structured")) == event


@hypothesis_settings
@given(st.lists(events(), max_size=5))
def test_batch_round_trip(batch: list[Event]) -> None:
    encoded = Event.batch_to_json(batch)
    assert Event.batch_from_json(encoded) == batch
    headers = {"content-type": "application/cloudevents-batch+json"}
    assert Event.batch_from_http(headers, encoded) == batch


@hypothesis_settings
@given(events(binary_mode=True))
def test_http_binary_round_trip(event: Event) -> None:
    headers, body = event.to_http()
    assert all(value.isascii() and value.isprintable() for value in headers.values())
    expected = _expected_after_binary_mode(event)
    assert Event.from_http(headers, body) == expected
    asgi = [(name.encode(), value.encode()) for name, value in headers.items()]
    assert Event.from_http(asgi, body) == expected


@hypothesis_settings
@given(events(binary_mode=True))
def test_http_binary_round_trip_keeps_canonical_strings(event: Event) -> None:
    typed = attrs.evolve(event, extensions={"i": 7, "b": True, "raw": b"\xff", "when": WHEN})
    decoded = Event.from_http(*typed.to_http())
    assert decoded.extensions == {
        "i": "7",
        "b": "true",
        "raw": "/w==",
        "when": "2018-04-05T17:31:00Z",
    }


# -- malformed input (property tests) ----------------------------------------------------


@hypothesis_settings
@given(st.binary() | st.text())
def test_json_junk(data: bytes | str) -> None:
    rejects_cleanly(Event.from_json, data)
    rejects_cleanly(Event.batch_from_json, data)


@st.composite
def mutated(draw: st.DrawFn, valid: bytes) -> bytes:
    """Valid JSON with a few bytes changed, inserted or deleted."""
    result = bytearray(valid)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        position = draw(st.integers(min_value=0, max_value=len(result)))
        junk = draw(st.binary(max_size=3))
        cut = draw(st.integers(min_value=0, max_value=3))
        result[position : position + cut] = junk
    return bytes(result)


VALID_JSON = full_event(extensions={"ext": "x", "n": 1}).to_json()


@hypothesis_settings
@given(mutated(VALID_JSON) | mutated(Event.batch_to_json([full_event(), full_event(data=b"\x00")])))
def test_mutated_json(data: bytes) -> None:
    rejects_cleanly(Event.from_json, data)
    rejects_cleanly(Event.batch_from_json, data)


member_names = st.sampled_from(sorted(RESERVED)) | st.text(max_size=6)


@hypothesis_settings
@given(
    st.dictionaries(member_names, json_values, max_size=6),
    st.dictionaries(member_names, json_values, max_size=3),
)
def test_json_objects_with_junk_members(members: dict[str, Any], overrides: dict[str, Any]) -> None:
    valid = {"specversion": "1.0", "id": "1", "source": "/s", "type": "t"}
    for candidate in (members, {**valid, **members}, {**valid, **overrides}):
        rejects_cleanly(Event.from_json, json.dumps(candidate))
        rejects_cleanly(Event.from_dict, candidate)


header_names = st.sampled_from(
    [f"ce-{name}" for name in CONTEXT_ATTRIBUTES]
    + ["content-type", "Content-Type", "CE-ID", "ce-ext", "ce-", "ce-Ext", "ce-data", "host"]
) | st.text(max_size=8)
header_values = (
    st.sampled_from(
        [
            "1.0",
            "2018-04-05T17:31:00Z",
            "application/json",
            "application/cloudevents+json",
            "application/cloudevents-batch+json",
            "application/cloudevents+avro",
            "text/plain; charset=utf-16",
            "text/plain; charset=bogus",
            "text/plain; charset=rot13",
            "text/plain; charset=",
            "text/plain; charset=utf\x00-8",
            "image/png",
        ]
    )
    | st.text(alphabet='%0123456789abcdefABCDEFzZ "\\\té\x00', max_size=12)
    | st.text(max_size=12)
)
header_lists = st.lists(
    st.tuples(header_names, header_values)
    | st.tuples(st.binary(max_size=8), st.binary(max_size=12)),
    max_size=8,
)
bodies = st.binary(max_size=40) | st.sampled_from(
    [VALID_JSON, b"[" + VALID_JSON + b"]", b'{"a": 1}', b"null", b'"text"', "Zoë".encode("utf-16")]
)


@hypothesis_settings
@given(header_lists, bodies)
def test_http_junk(headers: list[tuple[Any, Any]], body: bytes) -> None:
    rejects_cleanly(Event.from_http, headers, body)
    rejects_cleanly(Event.batch_from_http, headers, body)
    # The same junk on top of a valid binary-mode event reaches the deeper checks.
    with_required = [*REQUIRED_HEADERS.items(), *headers]
    rejects_cleanly(Event.from_http, with_required, body)
    rejects_cleanly(Event.from_http, dict(with_required), body)


# -- interoperability with the CloudEvents SDK -------------------------------------------


@pytest.fixture(scope="module")
def sdk() -> None:
    """Skip the test when the CloudEvents SDK is not installed."""
    pytest.importorskip("cloudevents")


# Binary mode carries extensions as strings, so these stay str; typed extensions are
# checked in structured mode on their own.
STR_EXTENSIONS = {"ext": 'Euro € 😀 "q" 100%', "other": ""}
INTEROP_EVENTS = [
    pytest.param(full_event(extensions=STR_EXTENSIONS), id="json-data"),
    pytest.param(
        full_event(
            datacontenttype="application/octet-stream",
            data=b"\x00\xff\xfe",
            extensions=STR_EXTENSIONS,
        ),
        id="bytes-data",
    ),
    pytest.param(
        full_event(datacontenttype="text/plain", data="Zoë", extensions=STR_EXTENSIONS),
        id="text-data",
    ),
    pytest.param(
        Event(type="a.b", source="/x", id="1", time=None, data={"list": [1, 2.5, None]}),
        id="minimal",
    ),
    pytest.param(Event(type="a.b", source="/x", id="2", time=WHEN), id="no-data"),
]


def sdk_attributes(event: Event) -> dict[str, Any]:
    """The attributes dict the CloudEvents SDK (``cloudevents.core``) uses for an event."""
    attributes: dict[str, Any] = {
        name: getattr(event, name)
        for name in CONTEXT_ATTRIBUTES
        if getattr(event, name) is not None
    }
    attributes.update(event.extensions)
    return attributes


def assert_same_as_sdk_event(event: Event, sdk_event: Any) -> None:
    expected = sdk_attributes(event)
    # The SDK always stamps a time; events without one are compared on the rest.
    if event.time is None:
        expected["time"] = sdk_event.get_attributes()["time"]
    assert sdk_event.get_attributes() == expected
    assert sdk_event.get_data() == event.data


@pytest.mark.usefixtures("sdk")
@pytest.mark.parametrize("event", INTEROP_EVENTS)
def test_sdk_http_to_event(event: Event) -> None:
    from cloudevents.core.bindings.http import to_binary_event, to_structured_event
    from cloudevents.core.v1.event import CloudEvent

    sdk_event = CloudEvent(sdk_attributes(event), event.data)
    binary = to_binary_event(sdk_event)
    expected = attrs.evolve(event, time=sdk_event.get_time())
    if event.datacontenttype is None and event.data is not None:
        # The SDK sends JSON data without a Content-Type; without one, binary mode
        # infers no content type (HTTP binding 3.1.1), so the body is read as octets.
        expected = attrs.evolve(expected, data=binary.body)
    assert Event.from_http(binary.headers, binary.body) == expected
    structured = to_structured_event(sdk_event)
    assert Event.from_http(structured.headers, structured.body) == attrs.evolve(
        event, time=sdk_event.get_time()
    )


@pytest.mark.usefixtures("sdk")
@pytest.mark.parametrize("event", INTEROP_EVENTS)
@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_event_http_to_sdk(event: Event, mode: Any) -> None:
    from cloudevents.core.bindings.http import HTTPMessage, from_http_event

    headers, body = event.to_http(mode=mode)
    if mode == "binary":
        event = _expected_after_binary_mode(event)
    assert_same_as_sdk_event(event, from_http_event(HTTPMessage(headers, body)))


@pytest.mark.usefixtures("sdk")
def test_sdk_typed_extensions_in_structured_mode() -> None:
    from cloudevents.core.bindings.http import HTTPMessage, from_http_event, to_structured_event
    from cloudevents.core.v1.event import CloudEvent

    event = full_event(extensions={"count": 5, "flag": True, "neg": -(2**31)})
    structured = to_structured_event(CloudEvent(sdk_attributes(event), event.data))
    assert Event.from_http(structured.headers, structured.body) == event
    assert_same_as_sdk_event(event, from_http_event(HTTPMessage(*event.to_http(mode="structured"))))


@pytest.mark.usefixtures("sdk")
@pytest.mark.parametrize("event", INTEROP_EVENTS)
def test_sdk_json_format(event: Event) -> None:
    from cloudevents.core.formats.json import JSONFormat
    from cloudevents.core.v1.event import CloudEvent

    sdk_event = CloudEvent(sdk_attributes(event), event.data)
    assert Event.from_json(JSONFormat().write(sdk_event)) == attrs.evolve(
        event, time=sdk_event.get_time()
    )
    assert_same_as_sdk_event(event, JSONFormat().read(None, event.to_json()))


@pytest.mark.usefixtures("sdk")
@pytest.mark.parametrize("binary", [True, False])
def test_legacy_sdk_http(binary: bool) -> None:
    # The 1.x API (cloudevents.v1) neither percent-encodes nor decodes headers, so its
    # events stay within the characters that need neither.
    from cloudevents.v1.conversion import to_binary, to_structured
    from cloudevents.v1.http import CloudEvent, from_http

    event = full_event(extensions={"ext": "value", "other": "x"})
    legacy = CloudEvent({**sdk_attributes(event), "time": "2018-04-05T17:31:00Z"}, event.data)
    headers, body = to_binary(legacy) if binary else to_structured(legacy)
    assert Event.from_http(headers, body) == event

    read_back = from_http(*event.to_http(mode="binary" if binary else "structured"))
    assert datetime.fromisoformat(read_back["time"]) == event.time
    assert {
        name: value for name, value in read_back.get_attributes().items() if name != "time"
    } == {name: value for name, value in sdk_attributes(event).items() if name != "time"}
    assert read_back.get_data() == event.data


@pytest.mark.usefixtures("sdk")
@hypothesis_settings
@given(events(binary_mode=True), st.sampled_from(["binary", "structured"]))
def test_sdk_reads_generated_events(event: Event, mode: Any) -> None:
    from cloudevents.core.bindings.http import HTTPMessage, from_http_event

    # The SDK reads every body that decodes as UTF-8 as str, whatever the content type
    # and its charset, and stamps a time on events without one.
    if isinstance(event.data, bytes):
        event = attrs.evolve(event, data=b"\xff" + event.data)
    if event.datacontenttype is not None and "charset=iso-8859-1" in event.datacontenttype:
        event = attrs.evolve(event, datacontenttype="text/plain")
    if event.time is None:
        event = attrs.evolve(event, time=WHEN)
    message = event.to_http(mode=mode)
    if mode == "binary":
        event = _expected_after_binary_mode(event)
    assert_same_as_sdk_event(event, from_http_event(HTTPMessage(*message)))


def _circular() -> dict[str, Any]:
    loop: dict[str, Any] = {"items": [1]}
    loop["items"].append(loop)
    return loop


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"ids": [1, 2, {3}]}, r"at data\['ids'\]\[2\]: a set is not JSON serializable"),
        ([{"ok": 1}, {"x": float("inf")}], r"at data\[1\]\['x'\]: inf is not valid JSON"),
        ({1.5: "a", "b": [object()]}, r"at data\['b'\]\[0\]: an object is not JSON"),
        ({(1, 2): "a"}, r"at data: key \(1, 2\) is not a str"),
        (_circular(), r"at data\['items'\]\[1\]: it contains itself"),
    ],
)
def test_an_unencodable_value_is_named_by_its_path(data: object, where: str) -> None:
    with pytest.raises(EventFormatError, match=where):
        Event(type="a.b", source="/x", data=data).to_json()


# -- issue 10: what reactor writes it reads back; what it reads it can write --------------


@pytest.mark.parametrize("data", [b'{ "xyz": 123 }', b"null", b'"text"', b"12", b"\x00\xff"])
def test_binary_mode_keeps_bytes_without_a_content_type(data: bytes) -> None:
    event = Event(type="t", source="/s", data=data)
    headers, body = event.to_http()
    assert "content-type" not in headers
    assert body == data
    decoded = Event.from_http(headers, body)
    assert decoded.data == data
    assert type(decoded.data) is bytes
    assert decoded == event


@pytest.mark.parametrize("data", ["I'm just a string", "", {"a": [1, None]}, [1], 0, False])
def test_binary_mode_labels_data_without_a_content_type_as_json(data: object) -> None:
    # The specification's binary-mode example: JSON data travels as application/json.
    headers, body = Event(type="t", source="/s", data=data).to_http()
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == data
    decoded = Event.from_http(headers, body)
    assert decoded.data == data
    assert decoded.datacontenttype == "application/json"


@pytest.mark.parametrize(
    "document",
    [
        {"datacontenttype": "text/plain", "data": {"k": 1}},
        {"datacontenttype": "text/plain", "data": [1, 2]},
        {"datacontenttype": "application/octet-stream", "data": 12},
        {"datacontenttype": "application/xml", "data": True},
    ],
)
def test_json_that_cannot_be_written_back_is_refused(document: dict[str, Any]) -> None:
    members = {"specversion": "1.0", "id": "1", "source": "/s", "type": "t", **document}
    with pytest.raises(EventFormatError, match="not JSON"):
        Event.from_dict(members)
    with pytest.raises(EventFormatError, match="not JSON"):
        Event.from_json(json.dumps(members))
    headers = {"content-type": "application/cloudevents+json"}
    with pytest.raises(EventFormatError):
        Event.from_http(headers, json.dumps(members).encode())


@pytest.mark.parametrize(
    "body",
    [
        b'{"specversion":"1.0","id":"1","source":"/s","type":"t","data":"\\ud800"}',
        b'{"specversion":"1.0","id":"1","source":"/s","type":"t","data":{"\\udfff":1}}',
        b'{"specversion":"1.0","id":"1","source":"/s","type":"t","data":[1e400]}',
        b'{"specversion":"1.0","id":"1","source":"/s","type":"t","data":[-1e999]}',
        b'{"specversion":"1.0","id":"1","source":"/s","type":"t","data":"x\\uDBFFy"}',
        # Text given as str may hold a raw surrogate, which no UTF-8 bytes can.
        '{"specversion":"1.0","id":"1","source":"/s","type":"t","data":"a\ud800"}',
        '{"specversion":"1.0","id":"1","source":"/s","type":"t","data":{"\udc00":"é"}}',
    ],
)
def test_json_data_that_cannot_be_encoded_is_refused(body: bytes | str) -> None:
    with pytest.raises(EventFormatError):
        Event.from_json(body)


def test_paired_surrogate_escapes_are_text() -> None:
    body = b'{"specversion":"1.0","id":"1","source":"/s","type":"t","data":"\\ud83d\\ude00"}'
    assert Event.from_json(body).data == "\U0001f600"


@pytest.mark.parametrize("attribute", ["id", "source", "type", "subject", "dataschema"])
def test_lone_surrogates_are_refused_in_every_string_attribute(attribute: str) -> None:
    fields: dict[str, Any] = {"type": "t", "source": "/s", attribute: "a\ud800b"}
    with pytest.raises(InvalidEventError) as caught:
        Event(**fields)
    assert caught.value.attribute == attribute
    document = {"specversion": "1.0", "id": "1", "source": "/s", "type": "t"}
    document[attribute] = "a\ud800b"
    with pytest.raises((InvalidEventError, EventFormatError)):
        Event.from_json(json.dumps(document))


def test_lone_surrogates_are_refused_in_extensions() -> None:
    with pytest.raises(InvalidEventError) as caught:
        Event(type="t", source="/s", extensions={"ext": "\udc80"})
    assert caught.value.attribute == "ext"


@pytest.mark.parametrize("content_type", ["text/plain\r\nx-injected: 1", "text/plain; name=Zoë"])
def test_datacontenttype_must_be_printable_ascii(content_type: str) -> None:
    with pytest.raises(InvalidEventError) as caught:
        Event(type="t", source="/s", datacontenttype=content_type, data="x")
    assert caught.value.attribute == "datacontenttype"


def _expected_after_binary_mode(event: Event) -> Event:
    """What binary mode gives back: the one documented normalisation."""
    if event.datacontenttype is None and event.data is not None:
        if not isinstance(event.data, bytes):
            return attrs.evolve(event, datacontenttype="application/json")
    elif isinstance(event.data, bytes) and event.datacontenttype in JSON_TYPES:
        return attrs.evolve(event, data=json.loads(event.data))
    elif isinstance(event.data, bytes) and event.datacontenttype in TEXT_TYPES:
        charset = "iso-8859-1" if "iso-8859-1" in event.datacontenttype else "utf-8"
        return attrs.evolve(event, data=event.data.decode(charset))
    elif isinstance(event.data, str) and event.datacontenttype in BINARY_TYPES:
        return attrs.evolve(event, data=event.data.encode())
    return event


any_data = json_values | st.binary(min_size=1) | st.text()


@st.composite
def own_events(draw: st.DrawFn) -> Event:
    """Any event reactor builds, with any data and content type (no generator filtering)."""
    content_type = draw(st.sampled_from(JSON_TYPES + TEXT_TYPES + BINARY_TYPES))
    if content_type in JSON_TYPES:
        data = draw(st.none() | any_data)
    else:
        latin1 = content_type is not None and "iso-8859-1" in content_type
        text = st.text(st.characters(max_codepoint=0xFF, exclude_categories=["Cs"]))
        data = draw(st.none() | st.binary(min_size=1) | (text if latin1 else st.text()))
    return Event(
        type=draw(texts),
        source=draw(texts),
        id=draw(texts),
        time=draw(st.none() | aware_times),
        subject=draw(st.none() | texts),
        datacontenttype=content_type,
        dataschema=draw(st.none() | texts),
        data=data,
        extensions=draw(st.dictionaries(ext_names, st.text(), max_size=4)),
    )


@hypothesis_settings
@given(own_events())
def test_own_output_round_trips_in_every_mode(event: Event) -> None:
    try:
        event.to_json()
    except EventFormatError:
        # Only data the JSON format cannot hold (non-text data for a non-JSON type).
        assert not isinstance(event.data, str | bytes) and event.datacontenttype not in JSON_TYPES
        return
    assert Event.from_json(event.to_json()) == event
    assert Event.from_http(*event.to_http(mode="structured")) == event
    try:
        binary = event.to_http()
    except EventFormatError:
        # Binary mode sends bytes under a JSON or text type as the text they must hold.
        assert isinstance(event.data, bytes) and event.datacontenttype is not None
        assert event.datacontenttype in JSON_TYPES + TEXT_TYPES
        with pytest.raises(ValueError):
            if event.datacontenttype in JSON_TYPES:
                json.loads(event.data)
            else:
                event.data.decode("utf-8")
        return
    decoded = Event.from_http(*binary)
    if event.data == "" and event.datacontenttype in TEXT_TYPES + BINARY_TYPES:
        # An empty body is no data in binary mode (documented).
        assert decoded == attrs.evolve(event, data=None)
    else:
        assert decoded == _expected_after_binary_mode(event)


@pytest.mark.usefixtures("sdk")
@pytest.mark.parametrize("data", [b'{ "xyz": 123 }', b"null", b"\x00\xff"])
def test_sdk_binary_bytes_without_a_content_type(data: bytes) -> None:
    from cloudevents.core.bindings.http import to_binary_event
    from cloudevents.core.v1.event import CloudEvent

    attributes = {"specversion": "1.0", "id": "1", "source": "/s", "type": "t"}
    message = to_binary_event(CloudEvent(attributes, data))
    assert "content-type" not in {name.lower() for name in message.headers}
    assert Event.from_http(message.headers, message.body).data == data


@pytest.mark.usefixtures("sdk")
@pytest.mark.parametrize("data", ["just text", {"k": [1, "ü"]}])
def test_sdk_reads_json_data_without_a_content_type(data: object) -> None:
    from cloudevents.core.bindings.http import HTTPMessage, from_http_event

    headers, body = Event(type="t", source="/s", id="1", data=data).to_http()
    sdk_event = from_http_event(HTTPMessage(headers, body))
    assert sdk_event.get_data() == data
    assert sdk_event.get_attributes()["datacontenttype"] == "application/json"
