"""The ``payload`` option shared by the sources whose messages carry opaque payloads."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from reactor import Event
from reactor.sources._link import Link
from reactor.sources._payload import (
    BINARY,
    JSON,
    TEXT,
    Payload,
    check_data,
    check_mode,
    decode,
    note_malformed,
    payload_event,
)

NOT_JSON = "not JSON (invalid JSON: Expecting value: line 1 column 1 (char 0))"


@pytest.mark.parametrize(
    ("raw", "mode", "expected"),
    [
        (b'{"a": 1}', "auto", Payload({"a": 1}, JSON)),
        (b"21.5", "auto", Payload(21.5, JSON)),
        (b'"quoted"', "auto", Payload("quoted", JSON)),
        (b"plain", "auto", Payload("plain", TEXT)),
        (b"", "auto", Payload("", TEXT)),
        (b"NaN", "auto", Payload("NaN", TEXT)),  # not JSON to any other parser
        (b'"\\ud800"', "auto", Payload('"\\ud800"', TEXT)),  # a lone surrogate
        (b"\xff", "auto", Payload(b"\xff", BINARY)),
        ('{"a": 1}', "auto", Payload({"a": 1}, JSON)),  # text from the server (NOTIFY)
        (b"[1]", "json", Payload([1], JSON)),
        (b"plain", "json", Payload("plain", TEXT, NOT_JSON)),
        (b"[1]", "text", Payload("[1]", TEXT)),
        ("é", "text", Payload("é", TEXT)),
        (b"[1]", "bytes", Payload(b"[1]", BINARY)),
        ("é", "bytes", Payload("é".encode(), BINARY)),
    ],
)
def test_payloads_become_data(raw: bytes | str, mode: str, expected: Payload) -> None:
    assert decode(raw, check_mode(mode)) == expected


def test_what_is_not_of_the_expected_form_says_why() -> None:
    assert decode(b"\xff", "json").problem == (
        "not JSON (CloudEvents JSON must be UTF-8: 'utf-8' codec can't decode byte 0xff in "
        "position 0: invalid start byte)"
    )
    assert decode(b"\xff", "json").data == b"\xff"
    assert decode(b"\xff", "text") == Payload(
        b"\xff",
        BINARY,
        "not UTF-8 text ('utf-8' codec can't decode byte 0xff in position 0: invalid start byte)",
    )


@pytest.mark.parametrize("raw", [b"[1, {}]", b"text", b"\x00\xff", b""])
@pytest.mark.parametrize("mode", ["auto", "json", "text", "bytes"])
def test_every_payload_makes_an_event_that_survives_the_json_format(raw: bytes, mode: str) -> None:
    payload = decode(raw, check_mode(mode))
    event = Event(type="t", source="/s", data=payload.data, datacontenttype=payload.datacontenttype)
    assert Event.from_json(event.to_json()) == event


def test_the_event_of_a_message_carries_its_decoded_payload() -> None:
    at = datetime(2030, 1, 1, tzinfo=UTC)
    event, payload = payload_event(
        "t", b"plain", "json", source="/s", subject="c", time=at, extensions={"x": "y"}
    )
    assert payload == decode(b"plain", "json")
    assert (event.type, event.source, event.subject, event.time) == ("t", "/s", "c", at)
    assert (event.data, event.datacontenttype, dict(event.extensions)) == (
        "plain",
        TEXT,
        {"x": "y"},
    )
    event, _ = payload_event("t", "[1]", "auto", source="/s", subject="c", time=at)
    assert (event.data, event.datacontenttype, dict(event.extensions)) == ([1], JSON, {})


def test_data_is_bytes_or_text() -> None:
    assert check_data(b"x") == b"x"
    assert check_data("x") == "x"
    with pytest.raises(TypeError, match="data must be bytes or str, got 1"):
        check_data(1)


def test_modes_are_checked() -> None:
    with pytest.raises(ValueError, match="payload must be one of 'auto', 'json', 'text', 'bytes'"):
        check_mode("xml")
    with pytest.raises(TypeError, match="payload must be one of"):
        check_mode(1)


def test_malformed_payloads_are_counted_and_logged_once_per_thousand(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="reactor.test")
    link = Link("src", "x://h", logging.getLogger("reactor.test"))
    for _ in range(1001):
        note_malformed(link, "ch", "not JSON (x)", TEXT)
    assert link.malformed == 1001
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "src: the payload from 'ch' is not JSON (x); published it as text/plain; "
        "charset=utf-8 (1 so far; logged once per 1000)",
        "src: the payload from 'ch' is not JSON (x); published it as text/plain; "
        "charset=utf-8 (1001 so far; logged once per 1000)",
    ]
