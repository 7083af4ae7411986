"""The PostgreSQL notification source (``LISTEN``/``NOTIFY``), against a real server.

Every test listens on channels of its own (a random suffix). The notifications are sent
from a psycopg connection of the test; waits are on the events themselves (``Capture``
plus ``fail_after``). The connection kill is ``pg_terminate_backend()`` on the source's
listening connection.
"""

from __future__ import annotations

import logging
import secrets
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import services
from source_tools import received

from reactor import Event, Reactor, SourceUnavailableError
from reactor.abc import GAP_EVENT_TYPE
from reactor.sources import postgres
from reactor.sources.postgres import NOTIFICATION_TYPE, PgNotifySource, notification, on_pg_notify
from reactor.testing import Capture

pytestmark = pytest.mark.anyio


@pytest.fixture
def dsn() -> str:
    return services.require("postgres")


@pytest.fixture
def channel() -> str:
    return f"test_{secrets.token_hex(6)}"


@pytest.fixture
def sender(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        yield conn


def notify(conn: psycopg.Connection[Any], channel: str, payload: str) -> None:
    conn.execute("SELECT pg_notify(%s, %s)", (channel, payload))


def source_of(app: Reactor) -> PgNotifySource:
    (source,) = (s for s in app.sources if isinstance(s, PgNotifySource))
    return source


async def test_notifications_become_events_with_the_channel_as_subject(
    dsn: str, channel: str, sender: psycopg.Connection[Any]
) -> None:
    app = Reactor()
    capture = Capture()
    other = f"{channel}_b"
    on_pg_notify(app, channel, other, dsn=dsn, name="orders")(capture)
    async with app:
        notify(sender, channel, '{"id": 1, "total": 9.5}')
        notify(sender, other, "plain text")
        notify(sender, channel, "42")
        notify(sender, channel, "")
        events = await received(capture, 4)
        stats = app.stats().sources["/reactor/postgres/orders"]
    assert [(e.type, e.subject, e.data, e.datacontenttype) for e in events] == [
        (NOTIFICATION_TYPE, channel, {"id": 1, "total": 9.5}, "application/json"),
        (NOTIFICATION_TYPE, other, "plain text", "text/plain; charset=utf-8"),
        (NOTIFICATION_TYPE, channel, 42, "application/json"),
        (NOTIFICATION_TYPE, channel, "", "text/plain; charset=utf-8"),
    ]
    assert {e.source for e in events} == {"/reactor/postgres/orders"}
    assert len({e.id for e in events}) == 4
    assert stats == {
        "received": 4,
        "published": 4,
        "malformed": 0,
        "reconnects": 0,
        "gaps": 0,
        "oversized": 0,
        "last_error": None,
    }


@pytest.mark.parametrize(
    ("mode", "payload", "data", "content_type", "malformed"),
    [
        ("json", '{"a": [1, 2]}', {"a": [1, 2]}, "application/json", 0),
        ("json", "not json", "not json", "text/plain; charset=utf-8", 1),
        ("json", "NaN", "NaN", "text/plain; charset=utf-8", 1),
        ("text", '{"a": 1}', '{"a": 1}', "text/plain; charset=utf-8", 0),
        ("bytes", "héllo", "héllo".encode(), "application/octet-stream", 0),
        ("auto", "[1, 2", "[1, 2", "text/plain; charset=utf-8", 0),
    ],
)
async def test_the_payload_option_decides_what_the_data_is(
    dsn: str,
    channel: str,
    sender: psycopg.Connection[Any],
    mode: postgres.PayloadMode,
    payload: str,
    data: object,
    content_type: str,
    malformed: int,
) -> None:
    app = Reactor()
    capture = Capture()
    on_pg_notify(app, channel, dsn=dsn, payload=mode, name="n")(capture)
    async with app:
        notify(sender, channel, payload)
        notify(sender, channel, '"second"')  # the source goes on after a malformed one
        first, second = await received(capture, 2)
        stats = app.stats().sources["/reactor/postgres/n"]
    assert (first.data, first.datacontenttype) == (data, content_type)
    assert stats["malformed"] == malformed
    assert second.data == {"json": "second", "auto": "second", "text": '"second"'}.get(
        mode, b'"second"'
    )
    # The test helper builds the same event (but for its id).
    expected = notification(channel, payload, name="n", payload=mode, time=first.time)
    assert _fields(expected) | {"id": first.id} == _fields(first)


def _fields(event: Event) -> dict[str, Any]:
    return {
        "type": event.type,
        "source": event.source,
        "id": event.id,
        "time": event.time,
        "subject": event.subject,
        "datacontenttype": event.datacontenttype,
        "data": event.data,
    }


async def test_a_killed_connection_is_made_again_and_announced_with_a_gap_event(
    dsn: str, channel: str, sender: psycopg.Connection[Any]
) -> None:
    app = Reactor()
    capture = Capture()
    gaps = Capture()
    on_pg_notify(app, channel, dsn=dsn, name="listener")(capture)
    app.subscribe(GAP_EVENT_TYPE, gaps, source="/reactor/postgres/listener", name="gaps")
    async with app:
        source = source_of(app)
        notify(sender, channel, "1")
        await received(capture, 1)
        first_pid = source.backend_pid
        sender.execute("SELECT pg_terminate_backend(%s)", (first_pid,))
        (gap,) = await received(gaps, 1)
        # LISTEN is in place again before the gap event is published.
        assert source.backend_pid not in (None, first_pid)
        notify(sender, channel, "2")
        events = await received(capture, 2)
        stats = app.stats().sources["/reactor/postgres/listener"]
    assert [e.data for e in events] == [1, 2]
    assert gap.type == GAP_EVENT_TYPE
    assert source.name == source.uri == "/reactor/postgres/listener"
    assert (gap.source, gap.subject, gap.data["source"]) == (source.uri,) * 3
    assert gap.data["reason"] == "reconnected"
    assert gap.data["since"] is not None
    assert stats["reconnects"] == 1
    assert stats["gaps"] == 1
    assert stats["received"] == stats["published"] == 2
    assert isinstance(stats["last_error"], str) and "\n" not in stats["last_error"]


async def test_status_events_hands_the_gap_to_the_handler(
    dsn: str, channel: str, sender: psycopg.Connection[Any]
) -> None:
    app = Reactor()
    capture = Capture()
    on_pg_notify(app, channel, dsn=dsn, name="s", status_events=True)(capture)
    async with app:
        sender.execute("SELECT pg_terminate_backend(%s)", (source_of(app).backend_pid,))
        (gap,) = await received(capture, 1)
        notify(sender, channel, "after")
        events = await received(capture, 2)
    assert gap.type == GAP_EVENT_TYPE
    assert events[1].data == "after"


async def test_a_server_that_cannot_be_reached_at_start_stops_the_app_with_a_clear_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = Reactor()
    on_pg_notify(
        app, "c", dsn="postgresql://app:s3cret@127.0.0.1:1/shop", name="down", connect_timeout=5
    )(Capture())
    with pytest.raises(SourceUnavailableError) as info:
        async with app:
            pass  # pragma: no cover - the app does not start
    message = str(info.value)
    assert "postgresql://app:***@127.0.0.1:1/shop" in message
    assert "s3cret" not in message
    assert "s3cret" not in caplog.text
    assert app.stats().sources == {} or "s3cret" not in str(app.stats().sources)


async def test_the_password_is_never_logged_nor_counted(
    dsn: str, channel: str, sender: psycopg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    # Trust authentication ignores the password, so the connection works with one.
    secret = f"pw{secrets.token_hex(4)}"
    with_password = psycopg.conninfo.make_conninfo(dsn, password=secret)
    app = Reactor()
    gaps = Capture()
    on_pg_notify(app, channel, dsn=with_password, name="pw")(Capture())
    app.subscribe(GAP_EVENT_TYPE, gaps, name="gaps")
    caplog.set_level(logging.DEBUG)
    async with app:
        sender.execute("SELECT pg_terminate_backend(%s)", (source_of(app).backend_pid,))
        await received(gaps, 1)
        shown = [repr(source_of(app)), str(app.stats().sources)]
    assert "lost the connection" in caplog.text
    assert secret not in caplog.text
    assert not any(secret in text for text in shown)


async def test_the_dsn_comes_from_the_environment(
    dsn: str, channel: str, sender: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REACTOR_POSTGRES_DSN", dsn)
    app = Reactor()
    capture = Capture()
    app.on_pg_notify(channel, name="env")(capture)
    async with app:
        notify(sender, channel, "x")
        (event,) = await received(capture, 1)
    assert event.data == "x"


async def test_without_a_dsn_the_app_does_not_start_and_says_what_to_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("REACTOR_POSTGRES_DSN", raising=False)
    app = Reactor()
    app.on_pg_notify("c", name="nodsn")(Capture())  # the variable is read at start
    with pytest.raises(ValueError, match="REACTOR_POSTGRES_DSN"):
        async with app:
            pass  # pragma: no cover - the app does not start


def test_a_missing_extra_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in [m for m in sys.modules if m == "psycopg" or m.startswith("psycopg.")]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'reactor-events\[postgres\]'"):
        Reactor().on_pg_notify("c", dsn="postgresql://127.0.0.1/db")


@pytest.mark.parametrize(
    ("channels", "options", "error"),
    [
        ((), {}, "at least one channel"),
        (("",), {}, "non-empty"),
        (("x" * 64,), {}, "63 bytes"),
        (("c",), {"payload": "yaml"}, "payload must be one of"),
        (("c",), {"connect_timeout": 0}, "connect_timeout"),
        (("c",), {"dsn": "host=h port"}, "not a valid connection string"),
    ],
)
def test_bad_arguments_are_refused_when_decorating(
    channels: tuple[str, ...], options: dict[str, Any], error: str
) -> None:
    options.setdefault("dsn", "postgresql://127.0.0.1/db")
    with pytest.raises(ValueError, match=error):
        on_pg_notify(Reactor(), *channels, **options)


def test_a_bad_dsn_error_does_not_show_the_dsn() -> None:
    with pytest.raises(ValueError) as info:
        PgNotifySource("c", dsn="host=h password=s3cret port")
    assert "s3cret" not in str(info.value)


async def test_the_test_helper_fires_a_handler_without_a_server() -> None:
    seen: list[Event] = []

    async def on_order(event: Event) -> None:
        seen.append(event)

    # What a user's test does: the handler on an app of the test, no source, no server.
    app = Reactor()
    app.subscribe(NOTIFICATION_TYPE, on_order)
    async with app:
        receipt = await app.publish_and_wait(notification("orders", '{"id": 1}', name=on_order))
    assert receipt.outcomes["on_order"].status == "ok"
    (event,) = seen
    assert (event.type, event.source, event.subject, event.data, event.datacontenttype) == (
        NOTIFICATION_TYPE,
        "/reactor/postgres/on_order",
        "orders",
        {"id": 1},
        "application/json",
    )
    assert event.time is not None
    named = notification("orders", b"\xff", name="listener", payload="text")
    assert (named.source, named.data) == ("/reactor/postgres/listener", b"\xff")


def test_importing_the_source_does_not_import_psycopg() -> None:
    code = "import sys, reactor.sources.postgres; print('psycopg' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
