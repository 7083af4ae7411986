"""Structured logs: reactor's records carry ``event_id``, ``consumer``, ``attempt`` and
``source`` where they apply, and :class:`reactor.JsonFormatter` writes them as JSON lines.

The records are those the library really emits (captured with pytest's ``caplog``); the
JSON is read back with :func:`json.loads`.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import timedelta
from pathlib import Path

import anyio
import pytest
from anyio.abc import TaskStatus

from reactor import Event, JsonFormatter, Reactor, Retry
from reactor.abc import App, Source
from reactor.sources.files import on_file_change
from reactor.sources.http import Message, asgi
from reactor.testing import VirtualClock

pytestmark = pytest.mark.anyio


def fields_of(caplog: pytest.LogCaptureFixture, text: str) -> dict[str, object]:
    """The first captured record whose message holds *text*, formatted and parsed back."""
    for record in caplog.records:
        if text in record.getMessage():
            parsed = json.loads(JsonFormatter().format(record))
            assert isinstance(parsed, dict)
            return parsed
    pytest.fail(f"no record with {text!r}: {[r.getMessage() for r in caplog.records]}")


def test_json_formatter_writes_one_object_with_the_extra_fields() -> None:
    logger = logging.getLogger("test.json")
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        record = logger.makeRecord(
            "test.json",
            logging.ERROR,
            __file__,
            1,
            "failed %s",
            ("once",),
            sys.exc_info(),
            extra={"event_id": "e-1", "attempt": 2, "when": Path("/x")},
        )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["level"] == "ERROR"
    assert parsed["logger"] == "test.json"
    assert parsed["message"] == "failed once"
    assert (parsed["event_id"], parsed["attempt"], parsed["when"]) == ("e-1", 2, "/x")
    assert parsed["timestamp"].endswith("+00:00")
    assert parsed["exc_info"].startswith("Traceback (most recent call last):")
    assert parsed["exc_info"].endswith("ValueError: bad\nvalue")


async def test_a_retried_delivery_logs_its_event_consumer_and_attempt(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = Reactor()

    @app.subscribe("job", retry=Retry(attempts=2))
    async def flaky(event: Event) -> None:
        raise RuntimeError("no")

    with caplog.at_level(logging.INFO, "reactor"):
        async with app:
            with anyio.fail_after(10):
                receipt = await app.publish_and_wait("job")
    assert receipt.outcomes["flaky"].status == "failed"
    assert fields_of(caplog, "retrying in")["attempt"] == 1
    for record in caplog.records:
        if record.levelno >= logging.WARNING and record.name.startswith("reactor"):
            fields = json.loads(JsonFormatter().format(record))
            assert fields["event_id"] == receipt.event.id, fields
            assert fields["consumer"] == "flaky", fields


async def test_a_file_source_names_itself(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    app = Reactor()
    missing = tmp_path / "inbox"

    @on_file_change(app, missing, force_polling=True, name="inbox-files")
    async def changed(event: Event) -> None: ...

    with caplog.at_level(logging.WARNING, "reactor"):
        async with app:
            pass
    fields = fields_of(caplog, "waiting for it")
    assert fields["source"] == app.sources[0].name


class Failing(Source):
    """A source that fails once started."""

    @property
    def name(self) -> str:
        """``"failing"``."""
        return "failing"

    async def run(
        self, app: App, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Fail."""
        raise OSError("gone")


async def test_a_failing_source_is_named(caplog: pytest.LogCaptureFixture) -> None:
    app = Reactor()
    app.add_source(Failing())
    with pytest.raises(OSError, match="gone"), caplog.at_level(logging.ERROR, "reactor"):
        async with app:
            pass
    assert fields_of(caplog, "failed; stopping the app")["source"] == "failing"


async def test_the_ingress_names_itself(caplog: pytest.LogCaptureFixture) -> None:
    app = Reactor()
    ingress = asgi(app)
    messages: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"{", "more_body": False}

    async def send(message: Message) -> None:
        messages.append(message)

    scope = {"type": "http", "method": "POST", "path": "/", "root_path": "",
             "headers": [(b"content-type", b"application/cloudevents+json")]}  # fmt: skip
    with caplog.at_level(logging.DEBUG, "reactor.sources.http"):
        async with app:
            await ingress(scope, receive, send)
    assert messages[0]["status"] == 400
    assert fields_of(caplog, "answered 400")["source"] == "http"


async def test_a_timer_names_itself(caplog: pytest.LogCaptureFixture) -> None:
    clock = VirtualClock()
    app = Reactor(clock=clock)

    @app.at(clock.now() + timedelta(seconds=1), past="reject", name="too-late")
    async def once(event: Event) -> None: ...

    clock.jump(2)  # the time passes before the app starts: the timer drops its run
    with caplog.at_level(logging.WARNING, "reactor"):
        async with app:
            await anyio.wait_all_tasks_blocked()
    fields = fields_of(caplog, "had passed")
    assert fields["source"] == app.sources[0].name
    assert fields["logger"] == "reactor.sources.timers"
