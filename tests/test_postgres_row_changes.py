"""The PostgreSQL row-change source, against a real server.

Every test works on a table of its own (``rc_<random>``, a composite primary key),
installed with :func:`postgres.install` and removed at the end. Rows are written from a
psycopg connection of the test (in a worker thread when a write must not block the
loop); waits are on the events themselves (``Capture`` plus ``fail_after``).
"""

from __future__ import annotations

import logging
import secrets
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, TypedDict

import anyio
import psycopg
import pytest
import services
from anyio.abc import TaskStatus
from source_tools import WAIT, received

from reactor import Event, Reactor, SourceUnavailableError
from reactor._cli import main
from reactor.queues.sqlite import SQLiteQueue
from reactor.sources import postgres
from reactor.sources.postgres import (
    ROW_DELETED,
    ROW_INSERTED,
    ROW_UPDATED,
    RowChangeSource,
    TableNotInstalledError,
    on_row_change,
    row_change,
)
from reactor.testing import Capture

pytestmark = pytest.mark.anyio


class Intervals(TypedDict):
    standby_interval: float
    poll_interval: float


# Quick takeovers and polls, so that the tests do not wait for the defaults.
FAST: Intervals = {"standby_interval": 0.05, "poll_interval": 0.5}


@pytest.fixture
def dsn() -> str:
    return services.require("postgres")


@pytest.fixture
def db(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        yield conn


@pytest.fixture
async def table(dsn: str, db: psycopg.Connection[Any]) -> AsyncIterator[str]:
    """A new table with a composite key and row-change capture, removed afterwards."""
    name = f"rc_{secrets.token_hex(5)}"
    db.execute(f"CREATE TABLE {name} (region text, id int, note text, PRIMARY KEY (region, id))")
    try:
        assert await postgres.install(name, dsn=dsn) == {f"public.{name}": True}
        yield f"public.{name}"
    finally:
        await postgres.uninstall(name, dsn=dsn)
        db.execute(f"DROP TABLE IF EXISTS {name}")


def insert(db: psycopg.Connection[Any], table: str, *rows: tuple[str, int, str]) -> None:
    with db.transaction():
        for row in rows:
            db.execute(f"INSERT INTO {table} VALUES (%s, %s, %s)", row)


def keys(events: list[Event]) -> list[tuple[str, str, int]]:
    return [
        (e.type.rpartition(".")[2], e.data["key"]["region"], e.data["key"]["id"]) for e in events
    ]


def source_of(app: Reactor) -> RowChangeSource:
    (source,) = (s for s in app.sources if isinstance(s, RowChangeSource))
    return source


def logged(db: psycopg.Connection[Any], table: str) -> int:
    row = db.execute(
        "SELECT count(*) FROM reactor.row_changes WHERE table_name = %s", (table,)
    ).fetchone()
    assert row is not None
    return int(row[0])


async def test_inserts_updates_and_deletes_become_events_keyed_by_the_primary_key(
    dsn: str, db: psycopg.Connection[Any], table: str
) -> None:
    app = Reactor()
    capture = Capture()
    deletes = Capture()
    on_row_change(app, table, dsn=dsn, name="all", **FAST)(capture)
    on_row_change(app, table, dsn=dsn, ops=("delete",), name="deletes", **FAST)(deletes)
    async with app:
        insert(db, table, ("eu", 1, "first"), ("us", 2, "second"))
        db.execute(f"UPDATE {table} SET note = 'changed' WHERE region = 'eu'")
        db.execute(f"DELETE FROM {table} WHERE id = 2")
        events = await received(capture, 4)
        (deleted,) = await received(deletes, 1)
        stats = app.stats().sources["/reactor/postgres/all"]
    inserted_eu, _, updated, removed = events
    assert [e.type for e in events] == [ROW_INSERTED, ROW_INSERTED, ROW_UPDATED, ROW_DELETED]
    assert inserted_eu.data == {
        "table": table,
        "op": "insert",
        "key": {"region": "eu", "id": 1},
        "new": {"region": "eu", "id": 1, "note": "first"},
        "old": None,
    }
    assert updated.data["new"]["note"] == "changed"
    assert updated.data["old"]["note"] == "first"
    assert removed.data["new"] is None and removed.data["old"]["id"] == 2
    assert [e.subject for e in events] == ['["eu",1]', '["us",2]', '["eu",1]', '["us",2]']
    assert {e.source for e in events} == {"/reactor/postgres/all"}
    assert deleted.data == {**removed.data} and deleted.source == "/reactor/postgres/deletes"
    # The id is the change's: the same however often it is delivered.
    assert deleted.id == removed.id
    assert all(e.time is not None for e in events)
    assert stats["received"] == stats["published"] == 4
    assert stats["reader"] == 1 and stats["became_reader"] == 1
    assert stats["gaps"] == 0 and stats["oversized"] == 0
    # The test helper builds the same event.
    assert (
        row_change(
            table,
            "update",
            {"region": "eu", "id": 1},
            new=updated.data["new"],
            old=updated.data["old"],
            name="all",
            id=updated.id,
            time=updated.time,
        )
        == updated
    )


async def test_a_single_column_key_is_the_subject_as_text_and_names_may_need_quotes(
    dsn: str, db: psycopg.Connection[Any]
) -> None:
    name = f"Rc Codes {secrets.token_hex(4)}"
    db.execute(f'CREATE TABLE "{name}" ("Code" text PRIMARY KEY, n int)')
    try:
        assert await postgres.install(f'"{name}"', dsn=dsn) == {f'public."{name}"': True}
        app = Reactor()
        capture = Capture()
        on_row_change(app, f'public."{name}"', dsn=dsn, name="codes", **FAST)(capture)
        async with app:
            db.execute(f"INSERT INTO \"{name}\" VALUES ('a/b', 1)")
            (event,) = await received(capture, 1)
        assert event.subject == "a/b"
        assert event.data["key"] == {"Code": "a/b"}
        assert event.data["table"] == f'public."{name}"'
    finally:
        await postgres.uninstall(f'"{name}"', dsn=dsn)
        db.execute(f'DROP TABLE "{name}"')


async def test_a_transaction_that_commits_later_with_a_lower_id_is_not_skipped(
    dsn: str, dsn_conn: psycopg.Connection[Any], db: psycopg.Connection[Any], table: str
) -> None:
    app = Reactor()
    capture = Capture()
    on_row_change(app, table, dsn=dsn, name="order", **FAST)(capture)
    async with app:
        # The first writer takes the lower change id and commits last.
        with dsn_conn.transaction():
            dsn_conn.execute(f"INSERT INTO {table} VALUES ('slow', 1, 'x')")
            insert(db, table, ("fast", 2, "y"))
            (first,) = await received(capture, 1)
            assert first.data["key"] == {"region": "fast", "id": 2}
            # A rolled-back write is never delivered.
            with pytest.raises(_Rollback), db.transaction():
                db.execute(f"INSERT INTO {table} VALUES ('gone', 3, 'z')")
                raise _Rollback
        insert(db, table, ("after", 4, "w"))
        events = await received(capture, 3)
    assert keys(events) == [
        ("inserted", "fast", 2),
        ("inserted", "slow", 1),
        ("inserted", "after", 4),
    ]
    assert len(capture.events) == 3


class _Rollback(Exception):
    pass


@pytest.fixture
def dsn_conn(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """A second connection, for a transaction that overlaps the test's writes."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        yield conn


async def test_the_changes_of_one_row_come_in_the_order_they_were_made(
    dsn: str, db: psycopg.Connection[Any], table: str
) -> None:
    app = Reactor()
    capture = Capture()
    on_row_change(app, table, dsn=dsn, name="row", batch_size=7, **FAST)(capture)
    async with app:
        insert(db, table, ("eu", 1, "0"))
        for n in range(1, 40):
            db.execute(f"UPDATE {table} SET note = %s", (str(n),))
        events = await received(capture, 40)
    assert [e.data["new"]["note"] for e in events] == [str(n) for n in range(40)]


async def test_a_backlog_larger_than_a_page_is_read_in_pages_in_order_and_once(
    dsn: str, dsn_conn: psycopg.Connection[Any], db: psycopg.Connection[Any], table: str
) -> None:
    app = Reactor()
    capture = Capture()
    on_row_change(app, table, dsn=dsn, name="pages", batch_size=50, **FAST)(capture)
    with dsn_conn.transaction():
        dsn_conn.execute(f"INSERT INTO {table} VALUES ('late', 0, '')")  # the lowest id
        for t in range(3):
            insert(db, table, *((f"t{t}", n, "") for n in range(120)))
        async with app:
            events = await received(capture, 360)
            assert [e.data["key"]["region"] for e in events] == [
                f"t{t}" for t in range(3) for _ in range(120)
            ]
            assert [e.data["key"]["id"] for e in events[:120]] == list(range(120))
    async with app:
        (late,) = (await received(capture, 361))[360:]
    assert late.data["key"] == {"region": "late", "id": 0}
    assert len(capture.events) == 361
    assert len({e.id for e in capture.events}) == 361


async def test_changes_made_while_the_app_was_down_are_delivered_when_it_comes_back(
    dsn: str, db: psycopg.Connection[Any], table: str
) -> None:
    def make_app() -> tuple[Reactor, Capture]:
        app = Reactor(source="/shop")
        capture = Capture()
        on_row_change(app, table, dsn=dsn, name="orders", **FAST)(capture)
        return app, capture

    app, capture = make_app()
    async with app:
        insert(db, table, ("eu", 1, "while up"))
        await received(capture, 1)
    insert(db, table, ("eu", 2, "while down"), ("eu", 3, "while down"))
    app, capture = make_app()
    async with app:
        events = await received(capture, 2)
        insert(db, table, ("eu", 4, "up again"))
        events = await received(capture, 3)
    assert [e.data["key"]["id"] for e in events] == [2, 3, 4]


async def test_two_apps_each_get_every_change_and_the_log_is_trimmed_behind_both(
    dsn: str, db: psycopg.Connection[Any], table: str
) -> None:
    billing, shipping = Reactor(source="/billing"), Reactor(source="/shipping")
    seen = {"billing": Capture(), "shipping": Capture()}
    on_row_change(billing, table, dsn=dsn, name="orders", **FAST)(seen["billing"])
    on_row_change(shipping, table, dsn=dsn, name="orders", **FAST)(seen["shipping"])
    # A group's changes are kept from its first start on: start both once.
    async with billing, shipping:
        pass
    async with billing:
        insert(db, table, *((f"r{n}", n, "") for n in range(5)))
        await received(seen["billing"], 5)
        insert(db, table, ("x", 99, ""))
        await received(seen["billing"], 6)
        # shipping has not read them yet: nothing can be trimmed.
        assert logged(db, table) == 6
    async with shipping:
        await received(seen["shipping"], 6)
        insert(db, table, ("y", 100, ""))
        await received(seen["shipping"], 7)
        stats = shipping.stats().sources["/reactor/postgres/orders"]
    # Each round trims what every group has read: at most the last round is left.
    assert isinstance(stats["trimmed"], int) and stats["trimmed"] >= 6
    assert logged(db, table) <= 1
    assert [len(c.events) for c in seen.values()] == [6, 7]


async def test_two_processes_of_one_app_have_one_reader_and_the_other_takes_over(
    dsn: str, db: psycopg.Connection[Any], table: str
) -> None:
    reader, standby = Reactor(source="/shop"), Reactor(source="/shop")
    seen = [Capture(), Capture()]
    for app, capture in zip((reader, standby), seen, strict=True):
        on_row_change(app, table, dsn=dsn, name="orders", **FAST)(capture)
    stop, stopped = anyio.Event(), anyio.Event()

    async def run_reader(*, task_status: TaskStatus[None]) -> None:
        async with reader:
            task_status.started()
            await stop.wait()
        stopped.set()

    async with anyio.create_task_group() as tg:
        await tg.start(run_reader)
        async with standby:
            assert source_of(reader).is_reader and not source_of(standby).is_reader
            insert(db, table, *((f"r{n}", n, "") for n in range(10)))
            await received(seen[0], 10)
            assert standby.stats().sources["/reactor/postgres/orders"]["reader"] == 0
            assert seen[1].events == []
            stop.set()  # the reader goes away
            with anyio.fail_after(WAIT):
                await stopped.wait()
            insert(db, table, ("after", 1, ""))
            (event,) = await received(seen[1], 1)
            assert event.data["key"] == {"region": "after", "id": 1}
            assert standby.stats().sources["/reactor/postgres/orders"]["became_reader"] == 1
    assert len(seen[0].events) == 10


async def test_a_killed_reader_connection_is_made_again_and_nothing_is_lost(
    dsn: str, db: psycopg.Connection[Any], table: str, caplog: pytest.LogCaptureFixture
) -> None:
    application = f"rc{secrets.token_hex(4)}"
    secret = f"pw{secrets.token_hex(4)}"
    # Trust authentication ignores the password, so the connection works with one.
    with_password = psycopg.conninfo.make_conninfo(
        dsn, application_name=application, password=secret
    )
    app = Reactor()
    capture = Capture()
    on_row_change(app, table, dsn=with_password, name="orders", **FAST)(capture)
    caplog.set_level(logging.DEBUG)
    async with app:
        insert(db, table, ("a", 1, ""))
        await received(capture, 1)
        # Both connections, the reader's and the wake-ups'; each gone when this returns.
        db.execute(
            """SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity
               WHERE application_name = %s""",
            (application,),
        )
        insert(db, table, ("a", 2, ""), ("a", 3, ""))
        with anyio.fail_after(WAIT):
            while {e.data["key"]["id"] for e in capture.events} != {1, 2, 3}:
                await capture.wait_for(len(capture.events) + 1)
        stats = app.stats().sources["/reactor/postgres/orders"]
        shown = repr(source_of(app)) + str(app.stats().sources)
    ids = [e.data["key"]["id"] for e in capture.events]
    # The kill may land before the cursor was stored: then a change comes twice (at least
    # once), never out of order.
    assert sorted(set(ids)) == [1, 2, 3] and ids == sorted(ids)
    assert stats["gaps"] == 0
    assert isinstance(stats["reconnects"], int) and stats["reconnects"] >= 1
    assert "lost the connection" in caplog.text
    assert secret not in caplog.text and secret not in shown


async def test_a_row_over_the_queues_size_limit_is_published_without_its_rows(
    dsn: str, db: psycopg.Connection[Any], table: str, tmp_path: Path
) -> None:
    app = Reactor(queue=SQLiteQueue(tmp_path / "q.db", max_event_size=4000))
    capture = Capture()
    on_row_change(app, table, dsn=dsn, name="big", **FAST)(capture)
    async with app:
        insert(db, table, ("eu", 1, "small"), ("eu", 2, "x" * 10_000), ("eu", 3, "small"))
        events = await received(capture, 3)
        stats = app.stats().sources["/reactor/postgres/big"]
    small, big, after = events
    assert big.data["key"] == {"region": "eu", "id": 2}
    assert big.data["new"] is None
    assert big.data["omitted"]["reason"] == "too large"
    assert big.data["omitted"]["limit"] == 4000
    assert small.data["new"]["note"] == after.data["new"]["note"] == "small"
    assert stats["oversized"] == 1 and stats["published"] == 3


async def test_a_table_that_is_not_installed_stops_the_app_at_start(
    dsn: str, db: psycopg.Connection[Any]
) -> None:
    name = f"rc_{secrets.token_hex(5)}"
    db.execute(f"CREATE TABLE {name} (id int PRIMARY KEY)")
    try:
        for target, message in ((name, "no row-change capture"), ("rc_nope", "does not exist")):
            app = Reactor()
            on_row_change(app, target, dsn=dsn, name="x")(Capture())
            with pytest.raises(TableNotInstalledError, match=message) as info:
                async with app:
                    pass  # pragma: no cover - the app does not start
            assert isinstance(info.value, LookupError)
    finally:
        db.execute(f"DROP TABLE {name}")


async def test_a_table_uninstalled_while_the_app_runs_does_not_stop_it(
    dsn: str, db: psycopg.Connection[Any], table: str
) -> None:
    app = Reactor()
    capture = Capture()
    on_row_change(app, table, dsn=dsn, name="u", **FAST)(capture)
    async with app:
        insert(db, table, ("a", 1, ""))
        await received(capture, 1)
        await postgres.uninstall(table, dsn=dsn)
        insert(db, table, ("a", 2, ""))  # not captured
        await postgres.install(table, dsn=dsn)
        insert(db, table, ("a", 3, ""))
        events = await received(capture, 2)
    assert [e.data["key"]["id"] for e in events] == [1, 3]


async def test_a_server_that_cannot_be_reached_at_start_stops_the_app() -> None:
    app = Reactor()
    on_row_change(app, "t", dsn="postgresql://u:s3cret@127.0.0.1:1/db", name="x")(Capture())
    with pytest.raises(SourceUnavailableError, match=r"u:\*\*\*@") as info:
        async with app:
            pass  # pragma: no cover - the app does not start
    assert "s3cret" not in str(info.value)


async def test_install_and_uninstall_are_idempotent(dsn: str, db: psycopg.Connection[Any]) -> None:
    name = f"rc_{secrets.token_hex(5)}"
    db.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, v text)")
    keyless = f"rc_{secrets.token_hex(5)}"
    db.execute(f"CREATE TABLE {keyless} (v text)")
    try:
        assert await postgres.install(name, dsn=dsn) == {f"public.{name}": True}
        assert await postgres.install(f"public.{name}", dsn=dsn) == {f"public.{name}": False}
        with pytest.raises(ValueError, match="no primary key"):
            await postgres.install(keyless, dsn=dsn)
        with pytest.raises(TableNotInstalledError, match="does not exist"):
            await postgres.install("rc_nope", dsn=dsn)
        # A changed primary key is installed again.
        db.execute(f"ALTER TABLE {name} DROP CONSTRAINT {name}_pkey, ADD PRIMARY KEY (id, v)")
        assert await postgres.install(name, dsn=dsn) == {f"public.{name}": True}
        assert await postgres.uninstall(name, dsn=dsn) == {f"public.{name}": True}
        assert await postgres.uninstall(name, dsn=dsn) == {f"public.{name}": False}
        db.execute(f"INSERT INTO {name} VALUES (1, 'not captured')")
        # A table dropped while installed is uninstalled by the name it was found by.
        await postgres.install(name, dsn=dsn)
        db.execute(f"DROP TABLE {name}")
        assert await postgres.uninstall(name, dsn=dsn) == {f"public.{name}": True}
        assert await postgres.uninstall(name, dsn=dsn) == {name: False}
    finally:
        db.execute(f"DROP TABLE IF EXISTS {name}, {keyless}")


def test_the_cli_installs_and_uninstalls(
    dsn: str, db: psycopg.Connection[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    name = f"rc_{secrets.token_hex(5)}"
    db.execute(f"CREATE TABLE {name} (id int PRIMARY KEY)")
    try:
        assert main(["db", "install", "--dsn", dsn, name]) == 0
        assert main(["db", "install", "--dsn", dsn, name]) == 0
        assert capsys.readouterr().out == (
            f"public.{name}: installed\npublic.{name}: already installed\n"
        )
        assert main(["db", "install", "--dsn", dsn, name, "rc_nope"]) == 1
        assert "does not exist" in capsys.readouterr().err
        assert main(["db", "uninstall", "--dsn", dsn, name]) == 0
        assert main(["db", "uninstall", "--dsn", dsn, name]) == 0
        assert capsys.readouterr().out == (
            f"public.{name}: uninstalled\npublic.{name}: not installed\n"
        )
    finally:
        db.execute(f"DROP TABLE {name}")


def test_the_cli_takes_the_dsn_from_the_environment_and_hides_passwords(
    dsn: str,
    db: psycopg.Connection[Any],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = f"rc_{secrets.token_hex(5)}"
    db.execute(f"CREATE TABLE {name} (id int PRIMARY KEY)")
    try:
        monkeypatch.setenv("REACTOR_POSTGRES_DSN", dsn)
        assert main(["db", "install", name]) == 0
        assert main(["db", "uninstall", name]) == 0
        monkeypatch.delenv("REACTOR_POSTGRES_DSN")
        assert main(["db", "install", name]) == 2
        assert "REACTOR_POSTGRES_DSN" in capsys.readouterr().err
        down = "postgresql://u:s3cret@127.0.0.1:1/db"
        assert main(["db", "install", "--dsn", down, name]) == 1
        err = capsys.readouterr().err
        assert "nothing was changed" in err and "s3cret" not in err
    finally:
        db.execute(f"DROP TABLE {name}")


def test_a_missing_extra_names_the_install_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for module in [m for m in sys.modules if m == "psycopg" or m.startswith("psycopg.")]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'reactor-events\[postgres\]'"):
        Reactor().on_row_change("orders", dsn="postgresql://127.0.0.1/db")
    assert main(["db", "install", "--dsn", "postgresql://127.0.0.1/db", "orders"]) == 2
    assert "reactor-events[postgres]" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("options", "error", "kind"),
    [
        ({"ops": ("insert", "upsert")}, "ops must be one of", ValueError),
        ({"ops": ()}, "at least one", ValueError),
        ({"ops": "insert"}, "sequence", TypeError),
        ({"batch_size": 0}, "batch_size", ValueError),
        ({"poll_interval": 0}, "poll_interval", ValueError),
        ({"group": ""}, "group", ValueError),
        ({"dsn": "host=h port"}, "not a valid connection string", ValueError),
        ({"concurrency": 0}, "concurrency", ValueError),
    ],
)
def test_bad_arguments_are_refused_when_decorating(
    options: dict[str, Any], error: str, kind: type[Exception]
) -> None:
    options.setdefault("dsn", "postgresql://127.0.0.1/db")
    app = Reactor()
    with pytest.raises(kind, match=error):
        on_row_change(app, "orders", **options)(Capture())


async def test_the_test_helper_fires_a_handler_without_a_server() -> None:
    seen: list[Event] = []

    async def on_order(event: Event) -> None:
        seen.append(event)

    app = Reactor()
    app.subscribe("reactor.postgres.row.*", on_order)
    event = row_change(
        "public.orders", "insert", {"id": 7}, new={"id": 7, "total": 12.5}, name=on_order
    )
    async with app:
        receipt = await app.publish_and_wait(event)
    assert receipt.outcomes["on_order"].status == "ok"
    (got,) = seen
    assert (got.type, got.source, got.subject) == (
        ROW_INSERTED,
        "/reactor/postgres/on_order",
        "7",
    )
    assert got.time is not None
    assert got.data == {
        "table": "public.orders",
        "op": "insert",
        "key": {"id": 7},
        "new": {"id": 7, "total": 12.5},
        "old": None,
    }
    with pytest.raises(ValueError, match="op must be one of"):
        row_change("t", "upsert", {"id": 1}, name="s")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one column"):
        row_change("t", "insert", {}, name="s")
