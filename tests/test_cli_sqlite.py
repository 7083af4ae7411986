"""The queue commands of the ``reactor`` command line: ``dead-letters list|replay|purge``
and ``replay``, run in-process on queue files written by real apps.

``main()`` calls ``anyio.run()`` itself, so these are plain synchronous tests; the
files are built with ``anyio.run()`` too. A command that must meet a file owned by a
running app runs in a worker thread (or a child process) while the app runs.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import anyio
import anyio.to_thread
import pytest

from reactor import Event, Reactor
from reactor._cli import main
from reactor._cli._queue_admin import _parse_time
from reactor.queues.sqlite import SCHEMA_VERSION, SQLiteQueue

URL = "sqlite:///events.db"  # relative: the tests run in their tmp_path

#: The dead letters of the fixture file, by id: (consumer, event id, error type).
LETTERS = {
    1: ("audit", "e1", "ValueError"),
    2: ("mail", "e2", "RuntimeError"),
    3: ("audit", "e3", "ValueError"),
}
#: The mail server's complaint: longer than the table shows, and on two lines.
LONG_ERROR = "the mail server said:\n" + "no " * 40

Delivery = tuple[str, str]  # (consumer, event id)


class Result(NamedTuple):
    code: int
    out: str
    err: str


# -- fixture files ----------------------------------------------------------------------


def new_app(path: Path, received: list[Delivery] | None = None) -> Reactor:
    """An app with consumers "audit" and "mail" on the queue file at *path*.

    Without *received*, audit fails the odd-numbered orders and mail fails order 2;
    with it, both record what they receive and never fail.
    """
    app = Reactor(queue=SQLiteQueue(path, retention=3600))

    def consumer(name: str) -> Callable[[Event], Coroutine[Any, Any, None]]:
        async def handle(event: Event) -> None:
            if received is not None:
                received.append((name, event.id))
            elif name == "audit" and event.data["n"] % 2:
                raise ValueError(f"order {event.data['n']} is odd")
            elif name == "mail" and event.data["n"] == 2:
                raise RuntimeError(LONG_ERROR)

        return handle

    for name in ("audit", "mail"):
        app.subscribe("order.*", consumer(name), name=name)
    return app


async def fill(path: Path) -> None:
    """Publish orders e0 to e3 one at a time: dead letters 1 to 3 as in LETTERS."""
    async with new_app(path) as app:
        for n in range(4):
            await app.publish_and_wait("order.created", {"n": n}, id=f"e{n}")


def deliver(path: Path) -> list[Delivery]:
    """Run the app once more on *path* until idle; return what its consumers received."""
    received: list[Delivery] = []

    async def run() -> None:
        async with new_app(path, received):
            pass

    anyio.run(run)
    return sorted(received)


@pytest.fixture
def queue_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A queue file with three dead letters and four retained events, in the cwd."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("REACTOR_QUEUE", raising=False)
    path = tmp_path / "events.db"
    anyio.run(fill, path)
    return path


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """Run ``reactor ARGS...`` in-process; return its status and output."""

    def run(*args: str) -> Result:
        code = main(list(args))
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


def listed(cli: Callable[..., Result], *args: str) -> list[dict[str, Any]]:
    """The dead letters as ``reactor dead-letters list --json`` prints them."""
    result = cli("dead-letters", "list", "--queue", URL, "--json", *args)
    assert result.code == 0, result.err
    return [json.loads(line) for line in result.out.splitlines()]


def letter_ids(cli: Callable[..., Result]) -> list[int]:
    return [letter["id"] for letter in listed(cli)]


def add_damaged_letter(path: Path) -> None:
    """Store a dead letter of a journaled event that could not be decoded, as the queue
    does when a row of its journal is damaged (no consumer, no event)."""
    now = datetime.now(UTC)
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO reactor_dead_letters (source, event_id, consumer, body, error_type, "
            "error, attempts, first_failed_at, last_failed_at, dead_at) "
            "VALUES (NULL, NULL, NULL, ?, ?, ?, 0, ?, ?, ?)",
            (
                b"{not json",
                "reactor.EventFormatError",
                "journaled event #9 is damaged: its checksum does not match its contents",
                now.isoformat(),
                now.isoformat(),
                now.timestamp(),
            ),
        )
    conn.close()


@pytest.fixture
def owned(queue_file: Path, capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """Run ``reactor ARGS...`` while an app runs on the queue file (and owns it)."""

    def run(*args: str) -> Result:
        async def while_running() -> int:
            async with new_app(queue_file, []):
                # main() calls anyio.run() itself: in a worker thread, that is fine.
                return await anyio.to_thread.run_sync(main, list(args))

        code = anyio.run(while_running)
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


# -- dead-letters list ------------------------------------------------------------------


def test_list_table(queue_file: Path, cli: Callable[..., Result]) -> None:
    result = cli("dead-letters", "list", "--queue", URL)
    assert result.code == 0
    assert result.err == ""
    header, *rows = result.out.splitlines()
    assert header.split() == "ID CONSUMER ATTEMPTS LAST FAILED (UTC) ERROR EVENT".split()
    assert len(rows) == 3
    for row, (id_, (consumer, event_id, error_type)) in zip(rows, LETTERS.items(), strict=True):
        cells = row.split()
        assert cells[:3] == [str(id_), consumer, "1"]
        assert _parse_time(cells[3]) <= datetime.now(UTC)  # the form --since takes
        assert cells[4] == f"{error_type}:"
        assert cells[-2:] == ["order.created", event_id]
    assert "ValueError: order 1 is odd" in rows[0]
    # The long two-line message is cut, on one line.
    assert "RuntimeError: the mail server said: no no" in rows[1]
    assert "..." in rows[1]
    assert "no " * 30 not in rows[1]


def test_list_json(queue_file: Path, cli: Callable[..., Result]) -> None:
    letters = listed(cli)
    assert [(d["id"], d["consumer"], d["event"]["id"], d["error_type"]) for d in letters] == [
        (id_, *letter) for id_, letter in LETTERS.items()
    ]
    first = letters[0]
    assert set(first) == {
        "id",
        "consumer",
        "error_type",
        "error",
        "attempts",
        "first_failed_at",
        "last_failed_at",
        "dead_at",
        "event",
        "body",
    }
    assert first["error"] == "order 1 is odd"
    assert first["attempts"] == 1
    assert first["body"] is None
    for key in ("first_failed_at", "last_failed_at", "dead_at"):
        assert datetime.fromisoformat(first[key]).utcoffset() == timedelta(0)
    # The event is its CloudEvents JSON object, as stored.
    event = Event.from_json(json.dumps(first["event"]).encode())
    assert (event.type, event.id, event.data) == ("order.created", "e1", {"n": 1})
    assert letters[1]["error"] == LONG_ERROR  # in full


def test_list_filters(queue_file: Path, cli: Callable[..., Result]) -> None:
    assert [d["id"] for d in listed(cli, "--consumer", "audit")] == [1, 3]
    assert [d["id"] for d in listed(cli, "--limit", "2")] == [1, 2]
    assert [d["id"] for d in listed(cli, "--consumer=audit", "--limit=1")] == [1]
    assert listed(cli, "--consumer", "nobody") == []
    result = cli("dead-letters", "list", "--queue", URL, "--consumer", "nobody")
    assert (result.code, result.out) == (0, "no dead letters of consumer 'nobody' in events.db\n")


def test_list_damaged_letter(queue_file: Path, cli: Callable[..., Result]) -> None:
    add_damaged_letter(queue_file)
    damaged = listed(cli)[-1]
    assert (damaged["id"], damaged["consumer"], damaged["event"]) == (4, None, None)
    assert damaged["body"] == "{not json"
    assert damaged["error_type"] == "reactor.EventFormatError"
    row = cli("dead-letters", "list", "--queue", URL).out.splitlines()[-1]
    assert row.split()[:3] == ["4", "-", "0"]
    assert row.endswith("(damaged)")


def test_list_while_the_app_runs(owned: Callable[..., Result]) -> None:
    result = owned("dead-letters", "list", "--queue", URL, "--json")
    assert result.code == 0, result.err
    assert [json.loads(line)["id"] for line in result.out.splitlines()] == list(LETTERS)


def test_list_absolute_url_and_environment(
    queue_file: Path, cli: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    absolute = f"sqlite:///{queue_file}"
    assert absolute.startswith("sqlite:////")
    result = cli("dead-letters", "list", "--json", "--queue", absolute)
    assert (result.code, len(result.out.splitlines())) == (0, 3)

    monkeypatch.setenv("REACTOR_QUEUE", absolute)
    result = cli("dead-letters", "list", "--json")
    assert (result.code, len(result.out.splitlines())) == (0, 3)

    # The argument wins over the variable.
    monkeypatch.setenv("REACTOR_QUEUE", "sqlite:///elsewhere.db")
    assert cli("dead-letters", "list", "--queue", URL).code == 0
    result = cli("dead-letters", "list")
    assert (result.code, result.err) == (1, "reactor: error: elsewhere.db: no such file\n")


# -- dead-letters replay ----------------------------------------------------------------


def test_replay_by_id(queue_file: Path, cli: Callable[..., Result]) -> None:
    result = cli("dead-letters", "replay", "--queue", URL, "--id", "1")
    assert result.code == 0, result.err
    assert result.out.startswith("replayed 1 dead letter:")
    assert letter_ids(cli) == [2, 3]
    assert deliver(queue_file) == [("audit", "e1")]  # to its consumer only, once
    assert letter_ids(cli) == [2, 3]
    assert deliver(queue_file) == []


def test_replay_several_ids(queue_file: Path, cli: Callable[..., Result]) -> None:
    result = cli("dead-letters", "replay", "--queue", URL, "--id", "1", "2", "--id", "1")
    assert result.code == 0
    assert result.out.startswith("replayed 2 dead letters:")
    assert result.err == ""
    assert deliver(queue_file) == [("audit", "e1"), ("mail", "e2")]
    assert letter_ids(cli) == [3]


def test_replay_ids_that_match_nothing(queue_file: Path, cli: Callable[..., Result]) -> None:
    add_damaged_letter(queue_file)
    result = cli("dead-letters", "replay", "--queue", URL, "--id", "1", "99", "4", "--id", "7")
    assert (result.code, result.out) == (1, "")
    assert result.err == (
        "reactor: error: no dead letter that can be replayed has the ids 4, 7, 99 (no such "
        "id, or the letter of a damaged event, which can only be purged); nothing was "
        "changed\n"
    )
    assert letter_ids(cli) == [1, 2, 3, 4]
    assert deliver(queue_file) == []


def test_replay_by_consumer(queue_file: Path, cli: Callable[..., Result]) -> None:
    result = cli("dead-letters", "replay", "--queue", URL, "--consumer", "audit")
    assert (result.code, result.out.split(":")[0]) == (0, "replayed 2 dead letters")
    assert letter_ids(cli) == [2]
    assert deliver(queue_file) == [("audit", "e1"), ("audit", "e3")]


def test_replay_all(queue_file: Path, cli: Callable[..., Result]) -> None:
    add_damaged_letter(queue_file)
    result = cli("dead-letters", "replay", "--queue", URL, "--all")
    assert (result.code, result.out.split(":")[0]) == (0, "replayed 3 dead letters")
    assert "1 dead letter of damaged events cannot be replayed" in result.err
    assert letter_ids(cli) == [4]  # the damaged one stays
    assert deliver(queue_file) == [("audit", "e1"), ("audit", "e3"), ("mail", "e2")]
    assert letter_ids(cli) == [4]


def test_replay_nothing(queue_file: Path, cli: Callable[..., Result]) -> None:
    # A consumer the file knows, without letters: nothing to do.
    result = cli("dead-letters", "replay", "--queue", URL, "--id", "2")
    assert result.code == 0
    result = cli("dead-letters", "replay", "--queue", URL, "--consumer", "mail")
    assert (result.code, result.out) == (0, "replayed no dead letters: none matched\n")
    assert letter_ids(cli) == [1, 3]


@pytest.mark.parametrize("action", ["replay", "purge"])
def test_an_unknown_consumer_is_refused(
    queue_file: Path, cli: Callable[..., Result], action: str
) -> None:
    result = cli("dead-letters", action, "--queue", URL, "--consumer", "nobody")
    assert (result.code, result.out) == (1, "")
    assert result.err == (
        "reactor: error: events.db has never seen a consumer named 'nobody'; the "
        "consumers it knows: audit, mail\n"
    )
    assert letter_ids(cli) == [1, 2, 3]


# -- dead-letters purge -----------------------------------------------------------------


def test_purge_by_id(queue_file: Path, cli: Callable[..., Result]) -> None:
    result = cli("dead-letters", "purge", "--queue", URL, "--id", "2", "--id", "7")
    assert (result.code, result.out) == (1, "")
    assert result.err == "reactor: error: no dead letter has the id 7; nothing was changed\n"
    assert letter_ids(cli) == [1, 2, 3]
    result = cli("dead-letters", "purge", "--queue", URL, "--id", "2")
    assert (result.code, result.out, result.err) == (0, "purged 1 dead letter\n", "")
    assert letter_ids(cli) == [1, 3]
    assert deliver(queue_file) == []  # purged, not replayed


def test_purge_by_consumer(queue_file: Path, cli: Callable[..., Result]) -> None:
    result = cli("dead-letters", "purge", "--queue", URL, "--consumer", "audit")
    assert (result.code, result.out) == (0, "purged 2 dead letters\n")
    assert letter_ids(cli) == [2]


def test_purge_all_includes_damaged_letters(queue_file: Path, cli: Callable[..., Result]) -> None:
    add_damaged_letter(queue_file)
    result = cli("dead-letters", "purge", "--queue", URL, "--all")
    assert (result.code, result.out) == (0, "purged 4 dead letters\n")
    assert letter_ids(cli) == []
    assert deliver(queue_file) == []


@pytest.mark.parametrize("action", ["replay", "purge"])
@pytest.mark.parametrize(
    ("selection", "message"),
    [
        ([], "one of the arguments --all --id --consumer is required"),
        (["--all", "--id", "1"], "argument --id: not allowed with argument --all"),
        (["--id", "1", "--consumer", "a"], "argument --consumer: not allowed with argument --id"),
        (["--id"], "argument --id: expected at least one argument"),
        (["--id", "0"], "argument --id: '0' must be 1 or more"),
    ],
)
def test_a_selection_is_required(
    queue_file: Path,
    cli: Callable[..., Result],
    action: str,
    selection: list[str],
    message: str,
) -> None:
    result = cli("dead-letters", action, "--queue", URL, *selection)
    assert result.code == 2
    assert f"reactor dead-letters {action}: error: {message}" in result.err
    assert letter_ids(cli) == [1, 2, 3]


@pytest.mark.parametrize("action", ["replay", "purge"])
def test_a_file_letter_id_is_a_number(
    queue_file: Path, cli: Callable[..., Result], action: str
) -> None:
    # Another queue's ids may be strings (a Redis stream entry id); a file's never are.
    result = cli("dead-letters", action, "--queue", URL, "--id", "1733400000000-0")
    assert result == Result(
        2,
        "",
        "reactor: error: argument --id: '1733400000000-0' is not a whole number, as the ids "
        "of an SQLite queue's letters are\n",
    )
    assert letter_ids(cli) == [1, 2, 3]


# -- replay -----------------------------------------------------------------------------

ALL_DELIVERIES = sorted((consumer, f"e{n}") for consumer in ("audit", "mail") for n in range(4))


def set_published_at(path: Path, times: dict[int, datetime]) -> None:
    """Backdate journaled events (by sequence number), to test time windows."""
    with sqlite3.connect(path) as conn:
        conn.executemany(
            "UPDATE reactor_events SET published_at = ? WHERE seq = ?",
            [(moment.timestamp(), seq) for seq, moment in times.items()],
        )
    conn.close()


@pytest.fixture
def backdated(queue_file: Path) -> Path:
    """The queue file with e0 and e1 published on 2020-01-01, e2 and e3 a day later."""
    first = datetime(2020, 1, 1, 6, tzinfo=UTC)
    later = first + timedelta(days=1)
    set_published_at(queue_file, {1: first, 2: first, 3: later, 4: later})
    return queue_file


def test_replay_since_a_relative_time(queue_file: Path, cli: Callable[..., Result]) -> None:
    result = cli("replay", "--queue", URL, "--since", "15m")
    assert result.code == 0, result.err
    assert result.out.startswith("replayed 4 events published since ")
    assert result.out.endswith("; they are delivered when the app next runs\n")
    assert deliver(queue_file) == ALL_DELIVERIES
    assert deliver(queue_file) == []


def test_replay_to_chosen_consumers(queue_file: Path, cli: Callable[..., Result]) -> None:
    result = cli("replay", "--queue", URL, "--since", "1h", "--consumer", "mail")
    assert result.code == 0, result.err
    assert " for mail; " in result.out
    assert deliver(queue_file) == [("mail", f"e{n}") for n in range(4)]
    assert letter_ids(cli) == [1, 2, 3]  # the dead letters are left alone


def test_replay_since_an_absolute_time(backdated: Path, cli: Callable[..., Result]) -> None:
    result = cli("replay", "--queue", URL, "--since", "2020-01-01T12:00:00+01:00")
    assert result.code == 0, result.err
    assert result.out.startswith("replayed 2 events published since 2020-01-01T11:00:00Z;")
    assert deliver(backdated) == sorted((c, e) for c in ("audit", "mail") for e in ("e2", "e3"))


def test_replay_a_window(backdated: Path, cli: Callable[..., Result]) -> None:
    result = cli(
        "replay",
        "--queue",
        URL,
        "--since=2020-01-01",
        "--until=2020-01-01T12:00:00Z",
        "--consumer=audit",
        "--consumer=mail",
    )
    assert result.code == 0, result.err
    assert result.out == (
        "replayed 2 events published since 2020-01-01T00:00:00Z and before "
        "2020-01-01T12:00:00Z for audit, mail; they are delivered when the app next runs\n"
    )
    assert deliver(backdated) == sorted((c, e) for c in ("audit", "mail") for e in ("e0", "e1"))


def test_replay_finds_nothing(backdated: Path, cli: Callable[..., Result]) -> None:
    result = cli("replay", "--queue", URL, "--since", "2019-01-01", "--until", "2019-06-01")
    assert result.code == 0
    assert result.out.startswith("replayed no events")
    assert "only acknowledged events kept by the queue's retention" in result.err
    assert deliver(backdated) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "yesterday"], "argument --since: 'yesterday' is not a time"),
        (["--since", "2026-11-30T10:00:00"], "'2026-11-30T10:00:00' has no time zone"),
        (["--since", "2026-02-30"], "'2026-02-30' is not a valid date"),
        (["--since", "5y"], "'5y' is not a time"),
        (["--since", "99999999999w"], "'99999999999w' is too long ago"),
        (["--since", "1d", "--until", "nope"], "argument --until: 'nope' is not a time"),
        ([], "the following arguments are required: --since"),
    ],
)
def test_replay_bad_times(
    queue_file: Path, cli: Callable[..., Result], args: list[str], message: str
) -> None:
    result = cli("replay", "--queue", URL, *args)
    assert result.code == 2
    assert message in result.err


def test_replay_until_before_since(queue_file: Path, cli: Callable[..., Result]) -> None:
    result = cli("replay", "--queue", URL, "--since", "1h", "--until", "2h")
    assert result.code == 2
    assert "--until (" in result.err
    assert "must be later than --since" in result.err
    assert deliver(queue_file) == []


def test_parse_time() -> None:
    now = datetime(2026, 11, 30, 12, tzinfo=UTC)
    assert _parse_time("15m", now=now) == now - timedelta(minutes=15)
    assert _parse_time("2h", now=now) == now - timedelta(hours=2)
    assert _parse_time("3d", now=now) == now - timedelta(days=3)
    assert _parse_time("1h30m", now=now) == now - timedelta(minutes=90)
    assert _parse_time("1.5w", now=now) == now - timedelta(days=10.5)
    assert _parse_time("90s", now=now) == now - timedelta(seconds=90)
    assert _parse_time("2026-11-30") == datetime(2026, 11, 30, tzinfo=UTC)
    assert _parse_time("2026-11-30T10:00:00Z") == datetime(2026, 11, 30, 10, tzinfo=UTC)
    moment = _parse_time("2026-11-30T10:00:00+01:00")
    assert moment == datetime(2026, 11, 30, 9, tzinfo=UTC)
    assert moment.utcoffset() == timedelta(hours=1)
    with pytest.raises(ValueError, match="has no time zone"):
        _parse_time("2026-11-30 10:00")


# -- errors -----------------------------------------------------------------------------

COMMANDS = {
    "list": ["dead-letters", "list"],
    "replay letters": ["dead-letters", "replay", "--all"],
    "purge": ["dead-letters", "purge", "--all"],
    "replay": ["replay", "--since", "1h"],
}


@pytest.mark.parametrize("command", COMMANDS)
def test_missing_file_is_not_created(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cli: Callable[..., Result],
    command: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    result = cli(*COMMANDS[command], "--queue", "sqlite:///missing.db")
    assert result == Result(1, "", "reactor: error: missing.db: no such file\n")
    assert list(tmp_path.iterdir()) == []


def test_a_directory_is_not_a_queue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Callable[..., Result]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "events.db").mkdir()
    for command in COMMANDS.values():
        result = cli(*command, "--queue", URL)
        assert result == Result(
            1, "", "reactor: error: events.db is a directory, not a queue file\n"
        )


def test_list_limit_must_be_positive(queue_file: Path, cli: Callable[..., Result]) -> None:
    result = cli("dead-letters", "list", "--queue", URL, "--limit", "0")
    assert result.code == 2
    assert "argument --limit: '0' must be 1 or more" in result.err


def empty_file(path: Path) -> None:
    path.write_bytes(b"")


def text_file(path: Path) -> None:
    path.write_text("order,total\n1,2\n")


def another_database(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (text TEXT)")
    conn.close()


def another_application(path: Path) -> None:
    anyio.run(fill, path)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA application_id = 7")
    conn.close()


def newer_schema(path: Path) -> None:
    anyio.run(fill, path)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (empty_file, "events.db is empty, not a reactor queue"),
        (text_file, "events.db is not an SQLite database"),
        (another_database, "events.db is an SQLite database but not a reactor queue"),
        (
            another_application,
            "events.db is an SQLite database of another application (application_id 0x7)",
        ),
        (
            newer_schema,
            f"events.db has queue schema version 99, newer than the {SCHEMA_VERSION} this "
            "reactor supports",
        ),
    ],
    ids=["empty", "text", "another database", "another application", "newer schema"],
)
def test_not_a_reactor_queue(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cli: Callable[..., Result],
    command: str,
    spoil: Callable[[Path], None],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "events.db"
    spoil(path)
    before = path.read_bytes()
    result = cli(*COMMANDS[command], "--queue", URL)
    assert result.code == 1
    assert result.out == ""
    assert result.err.startswith(f"reactor: error: {message}")
    assert len(result.err.splitlines()) == 1
    assert path.read_bytes() == before  # left as it was


@pytest.mark.parametrize(
    ("command", "inside"),
    [
        ("replay letters", "queue.replay_dead_letters()"),
        ("purge", "queue.purge_dead_letters()"),
        ("replay", "queue.replay()"),
    ],
)
def test_changes_need_the_app_stopped(
    owned: Callable[..., Result], cli: Callable[..., Result], command: str, inside: str
) -> None:
    result = owned(*COMMANDS[command], "--queue", URL)
    assert (result.code, result.out) == (1, "")
    err = result.err
    assert err.startswith("reactor: error: ")
    assert "events.db is already open as a queue in this process" in err
    assert err.endswith(f"; stop the app first, or call {inside} inside it\n")
    assert letter_ids(cli) == [1, 2, 3]


@pytest.mark.skipif(sys.platform == "win32", reason="the child's output is checked as text")
def test_changes_need_the_app_stopped_in_another_process(queue_file: Path) -> None:
    async def while_running() -> tuple[int, str]:
        async with new_app(queue_file, []):
            child = await anyio.run_process(
                [sys.executable, "-m", "reactor", "dead-letters", "purge", "--all"],
                env={**os.environ, "REACTOR_QUEUE": URL},
                check=False,
            )
        return child.returncode, child.stderr.decode()

    code, err = anyio.run(while_running)
    assert code == 1
    assert "is in use by another process" in err
    assert "stop the app first, or call queue.purge_dead_letters() inside it" in err


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://localhost/0", "no queue serves the scheme 'http'; known: memory://, "),
        ("sqlite://events.db", "expected a URL like sqlite:///events.db"),
        ("sqlite:///", "the URL 'sqlite:///' names no file"),
        ("events.db", "'events.db' is not a queue URL: it has no scheme"),
    ],
)
def test_bad_url(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cli: Callable[..., Result],
    command: str,
    url: str,
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    result = cli(*COMMANDS[command], "--queue", url)
    assert (result.code, result.out) == (2, "")
    assert result.err.startswith("reactor: error: --queue: ")
    assert message in result.err
    monkeypatch.setenv("REACTOR_QUEUE", url)
    result = cli(*COMMANDS[command])
    assert (result.code, result.out) == (2, "")
    assert result.err.startswith("reactor: error: REACTOR_QUEUE: ")
    assert message in result.err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", COMMANDS)
def test_no_queue(
    monkeypatch: pytest.MonkeyPatch, cli: Callable[..., Result], command: str
) -> None:
    monkeypatch.setenv("REACTOR_QUEUE", "")
    result = cli(*COMMANDS[command])
    assert result == Result(
        2,
        "",
        "reactor: error: no queue given: pass --queue URL (sqlite:///events.db, redis://..., "
        "nats://...) or set REACTOR_QUEUE\n",
    )


# -- a closed pipe ------------------------------------------------------------------------


def add_letters(path: Path, count: int) -> None:
    """Store *count* more dead letters, so that listing them overflows a pipe's buffer."""
    now = datetime.now(UTC)
    body = Event(type="order.created", source="/shop", id="e9", data={"n": 9}).to_json()
    with sqlite3.connect(path) as conn:
        conn.executemany(
            "INSERT INTO reactor_dead_letters (source, event_id, consumer, body, error_type, "
            "error, attempts, first_failed_at, last_failed_at, dead_at) "
            "VALUES ('/shop', ?, 'audit', ?, 'ValueError', ?, 1, ?, ?, ?)",
            [
                (f"x{n}", body, f"order {n} is odd", now.isoformat(), now.isoformat(), 0.0)
                for n in range(count)
            ],
        )
    conn.close()


@pytest.mark.skipif(sys.platform == "win32", reason="head(1) and SIGPIPE are Unix's")
@pytest.mark.parametrize(
    "args",
    [
        ["dead-letters", "list"],
        ["dead-letters", "list", "--json"],
        ["dead-letters", "list", "--consumer", "audit", "--limit", "20000"],
    ],
    ids=" ".join,
)
def test_output_piped_to_head_ends_quietly(queue_file: Path, args: list[str]) -> None:
    # Far more than a pipe holds (over 2 MiB: Linux's pipes hold 64 KiB, at most
    # fs.pipe-max-size, 1 MiB by default), so the command is still writing when head(1)
    # has its line and exits.
    add_letters(queue_file, 20_000)
    command = subprocess.Popen(
        [sys.executable, "-m", "reactor", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=queue_file.parent,
        env={**os.environ, "REACTOR_QUEUE": URL},
    )
    assert command.stdout is not None and command.stderr is not None
    head = subprocess.Popen(["head", "-1"], stdin=command.stdout, stdout=subprocess.PIPE)
    command.stdout.close()  # head is the only reader
    first, _ = head.communicate(timeout=60)
    err = command.stderr.read().decode()
    command.stderr.close()
    status = command.wait(timeout=60)
    assert first.strip()
    assert err == ""
    assert status == 141  # 128 + SIGPIPE, what a shell reports for a tool it ended


@pytest.mark.skipif(sys.platform == "win32", reason="SIGPIPE is Unix's")
@pytest.mark.parametrize(
    "args",
    [
        ["dead-letters", "list"],
        ["dead-letters", "list", "--json"],
    ],
    ids=" ".join,
)
def test_output_to_a_pipe_nobody_reads_ends_quietly(queue_file: Path, args: list[str]) -> None:
    # The reader is gone before the command writes anything: its first write fails,
    # however short the output.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        command = subprocess.run(
            [sys.executable, "-m", "reactor", *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            cwd=queue_file.parent,
            env={**os.environ, "REACTOR_QUEUE": URL},
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert (command.returncode, command.stderr.decode()) == (141, "")
