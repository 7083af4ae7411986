"""The CloudEvents conformance suite's HTTP scenarios, run against the HTTP ingress.

The scenarios are a copy of the ``cloudevents/conformance`` repository's
``features/http-protocol-binding.feature`` (origin and license in
``tests/data/cloudevents-conformance/README.md``). This module reads the Gherkin subset
the file uses and runs every scenario through the real ASGI app: the raw HTTP request
of the scenario is sent to ``app.asgi`` mounted at the request's path, and the event the
app delivers must have the scenario's attributes and data.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import pytest

from reactor import Event, Reactor
from reactor.sources.http import Message
from reactor.testing import Capture

pytestmark = pytest.mark.anyio

FEATURE = (
    Path(__file__).parent / "data" / "cloudevents-conformance" / "http-protocol-binding.feature"
)

_STEP = re.compile(r"(Given|When|Then|And|But)\s+(.*)")
_PLACEHOLDER = re.compile(r"<([^<>]+)>")


@dataclass
class Step:
    """One step: its text, and the doc string or table that follows it."""

    text: str
    doc: str | None = None
    table: list[list[str]] = field(default_factory=list)


@dataclass
class Scenario:
    """One scenario (an outline expanded for one row of its examples)."""

    name: str
    steps: list[Step]


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _substitute(text: str, row: dict[str, str]) -> str:
    return _PLACEHOLDER.sub(lambda match: row.get(match.group(1), match.group(0)), text)


def read_feature(text: str) -> list[Scenario]:
    """Read Background, Scenario and Scenario Outline blocks with their steps, doc
    strings, tables and Examples; other Gherkin is not used by the file and refused."""
    lines = text.splitlines()
    background: list[Step] = []
    outlines: list[tuple[str, list[Step], list[list[str]]]] = []
    current: list[Step] | None = None
    examples: list[list[str]] | None = None
    index = 0
    while index < len(lines):
        line = lines[index]
        stripped = line.strip()
        index += 1
        if not stripped or stripped.startswith("#") or stripped.startswith("@"):
            continue
        if stripped.startswith("Feature:"):
            # The description lines that follow are free text up to the first block.
            while index < len(lines) and not lines[index].strip().startswith(
                ("Background:", "Scenario")
            ):
                index += 1
            continue
        if stripped == "Background:":
            current, examples = background, None
            continue
        if stripped.startswith(("Scenario:", "Scenario Outline:")):
            name = stripped.partition(":")[2].strip()
            current, examples = [], None
            outlines.append((name, current, []))
            continue
        if stripped == "Examples:":
            examples = outlines[-1][2]
            continue
        if stripped.startswith("|"):
            if examples is not None:
                examples.append(_cells(stripped))
            else:
                assert current, f"a table without a step: {line!r}"
                current[-1].table.append(_cells(stripped))
            continue
        if stripped == '"""':
            assert current, f"a doc string without a step: {line!r}"
            # Gherkin strips the doc string's lines of the opening quotes' indentation.
            indent = len(line) - len(line.lstrip())
            doc: list[str] = []
            while lines[index].strip() != '"""':
                doc.append(lines[index][indent:])
                index += 1
            index += 1
            current[-1].doc = "\n".join(doc)
            continue
        step = _STEP.fullmatch(stripped)
        if step is None:
            raise ValueError(f"unsupported Gherkin line: {line!r}")
        assert current is not None, f"a step outside a scenario: {line!r}"
        current.append(Step(step.group(2)))

    scenarios: list[Scenario] = []
    for name, steps, table in outlines:
        rows = [dict(zip(table[0], row, strict=True)) for row in table[1:]] if table else [{}]
        scenarios.extend(_expand(name, [*background, *steps], row) for row in rows)
    return scenarios


def _expand(name: str, steps: list[Step], row: dict[str, str]) -> Scenario:
    """The scenario of an outline for one row of its examples."""
    return Scenario(
        _substitute(name, row),
        [
            Step(
                _substitute(step.text, row),
                None if step.doc is None else _substitute(step.doc, row),
                [[_substitute(cell, row) for cell in cells] for cells in step.table],
            )
            for step in steps
        ],
    )


@dataclass
class HttpRequest:
    method: str
    path: str
    headers: list[tuple[bytes, bytes]]
    body: bytes


def parse_request(raw: str) -> HttpRequest:
    """Read the scenario's HTTP/1.1 request: request line, headers, blank line, body."""
    head, _, body_text = raw.partition("\n\n")
    request_line, *header_lines = head.split("\n")
    method, path, version = request_line.split()
    assert version == "HTTP/1.1"
    headers = []
    for header in header_lines:
        name, _, value = header.partition(":")
        headers.append((name.strip().lower().encode("latin-1"), value.strip().encode("latin-1")))
    body = body_text.encode("utf-8")
    declared = dict(headers).get(b"content-length")
    if declared is not None:
        # HTTP reads exactly Content-Length bytes; the scenario must give that many.
        assert len(body) >= int(declared), "the scenario's body is shorter than declared"
        body = body[: int(declared)]
    return HttpRequest(method, path, headers, body)


async def send_through_ingress(app: Reactor, request: HttpRequest) -> tuple[int, Any]:
    """Send *request* to ``app.asgi`` mounted at the request's path; return the answer."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": request.method,
        "scheme": "http",
        "path": request.path,
        "raw_path": request.path.encode(),
        "root_path": request.path,  # mounted there: the CloudEvents endpoint
        "query_string": b"",
        "headers": request.headers,
        "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 80),
    }
    messages: list[Message] = [{"type": "http.request", "body": request.body, "more_body": False}]
    sent: list[Message] = []

    async def receive() -> Message:
        return messages.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    with anyio.fail_after(5):
        await app.asgi(scope, receive, send)
    start, body = sent
    return start["status"], json.loads(body["body"])


def attribute_text(event: Event, name: str) -> str | None:
    """The event's attribute *name* as the scenarios write it."""
    value = getattr(event, name, None) if name != "extensions" else None
    if value is None:
        extension = event.extensions.get(name)
        return None if extension is None else str(extension)
    return str(value)


def same_time(expected: str, actual: datetime | None) -> bool:
    assert actual is not None
    return datetime.fromisoformat(expected.replace("Z", "+00:00")) == actual


SCENARIOS = read_feature(FEATURE.read_text(encoding="utf-8"))


def test_the_feature_file_is_read_whole() -> None:
    # 2 outlines with 2 examples each; every scenario requests, parses and checks.
    assert [s.name for s in SCENARIOS] == [
        "Binary content mode (application/json)",
        "Binary content mode (application/json; charset=utf-8)",
        "Structured content mode (application/cloudevents+json)",
        "Structured content mode (application/cloudevents+json; charset=utf-8)",
    ]
    for scenario in SCENARIOS:
        assert [step.text for step in scenario.steps] == [
            "HTTP Protocol Binding is supported",
            "an HTTP request",
            "parsed as HTTP request",
            "the attributes are:",
            "the data is equal to the following JSON:",
        ]


def _ids() -> Iterator[str]:
    for scenario in SCENARIOS:
        yield scenario.name


@pytest.mark.parametrize("scenario", SCENARIOS, ids=list(_ids()))
async def test_conformance_scenario(scenario: Scenario) -> None:
    app = Reactor()
    capture = Capture()
    app.subscribe("*", capture)
    request: HttpRequest | None = None
    received: Event | None = None
    checked = 0
    async with app:
        for step in scenario.steps:
            if step.text == "HTTP Protocol Binding is supported":
                continue
            if step.text == "an HTTP request":
                assert step.doc is not None
                request = parse_request(step.doc)
            elif step.text == "parsed as HTTP request":
                assert request is not None
                status, answer = await send_through_ingress(app, request)
                assert status == 202, answer
                with anyio.fail_after(5):
                    [received] = await capture.wait_for(1)
                assert answer == {"ids": [received.id]}
            elif step.text == "the attributes are:":
                assert received is not None
                header, *rows = step.table
                assert header == ["key", "value"]
                for name, value in rows:
                    if name == "time":
                        assert same_time(value, received.time)
                    else:
                        assert attribute_text(received, name) == value, name
                    checked += 1
            elif step.text == "the data is equal to the following JSON:":
                assert received is not None and step.doc is not None
                assert received.data == json.loads(step.doc)
                checked += 1
            else:
                raise AssertionError(f"no driver for the step {step.text!r}")
    assert checked == 7  # six attributes and the data
