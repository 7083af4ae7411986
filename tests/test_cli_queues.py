"""Choosing an app's queue by URL, and the queue commands on a queue that is not SQLite.

``reactor run --queue URL`` (and ``REACTOR_QUEUE``) run in child processes whose handler
prints the queue it ran on. ``Reactor.use_queue()``, which the command line calls, is
tested through the public API on both backends. ``reactor dead-letters ...`` and
``reactor replay`` run in-process against :class:`LetterQueue`, a small queue defined
here that keeps its dead letters as a broker's queue does (a :class:`DeadLetterStore`
whose letters every queue object of one URL sees, with string ids), found by
:func:`reactor.queues.from_url` under the scheme ``letters://``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlsplit

import anyio
import pytest

import reactor.queues
from reactor import (
    ConsumerNotFound,
    DeadLetter,
    DeadLetterNotFound,
    Event,
    LetterId,
    QueueStatistics,
    QueueUnavailableError,
    Reactor,
    RedeliveryLimitExceeded,
    StoredDeadLetter,
)
from reactor._cli import main
from reactor.abc import DeadLetterStore, EventQueue, Received, import_extra
from reactor.queues import from_url
from reactor.queues.memory import MemoryQueue
from reactor.queues.sqlite import SQLiteQueue, read_dead_letters

ROOT = Path(__file__).resolve().parents[1]
#: How long a child may take to reach a line or to exit.
PATIENCE = 20.0


class Result(NamedTuple):
    code: int
    out: str
    err: str


# -- a queue that keeps its dead letters as a broker does --------------------------------


class AuthenticationError(Exception):
    """What a broker's client raises when its login fails."""


class Broker:
    """What a broker keeps for one ``letters://NAME``: shared by every queue object."""

    def __init__(self) -> None:
        self.ready: deque[Received] = deque()
        self.published: list[tuple[Event, datetime]] = []
        self.letters: dict[LetterId, StoredDeadLetter] = {}
        self.consumers: set[str] = set()
        self.acked: list[str] = []
        self.open_queues = 0
        #: The ids each DeadLetterStore method was called with, as given.
        self.ids_given: list[list[LetterId] | None] = []
        self.serial = 0


BROKERS: dict[str, Broker] = {}


class LetterQueue(EventQueue, DeadLetterStore):
    """An in-memory queue whose dead letters live in a shared :class:`Broker`.

    ``letters://NAME[?max_redeliveries=N]``; ``letters://down`` cannot be opened (an
    unreachable broker). Letter ids are strings like a Redis stream's entry ids.
    """

    stores_dead_letters = True

    def __init__(self, name: str, *, max_redeliveries: int | None = None) -> None:
        self.name = name
        self.broker = BROKERS.setdefault(name, Broker())
        self.max_redeliveries = max_redeliveries
        self._opened = False
        self._wakeup = anyio.Event()
        self._puts = self._gets = 0

    @classmethod
    def from_url(cls, url: str) -> LetterQueue:
        """Build a queue from ``letters://NAME[?max_redeliveries=N]``."""
        parts = urlsplit(url)
        options: dict[str, int] = {}
        for key, value in parse_qsl(parts.query):
            if key != "max_redeliveries":
                raise ValueError(f"{url!r}: unknown parameter {key!r} (known: max_redeliveries)")
            options[key] = int(value)
        return cls(parts.hostname or "", **options)

    @property
    def capacity(self) -> int:
        """The most events that may wait."""
        return 100

    async def open(self) -> None:
        """Connect to the broker."""
        if self.name == "down":
            raise QueueUnavailableError("cannot reach the broker: connection refused")
        if self.name == "locked":
            raise AuthenticationError("the password was refused")
        self._opened = True
        self.broker.open_queues += 1

    async def close(self) -> None:
        """Disconnect."""
        if self._opened:
            self._opened = False
            self.broker.open_queues -= 1

    def _check_open(self) -> None:
        if not self._opened:
            raise RuntimeError("the queue is not open")

    def note_consumers(self, names: Collection[str]) -> None:
        """Remember the app's consumer names, as a broker's queue may."""
        self.broker.consumers.update(names)

    async def put(self, event: Event, *, only: Collection[str] | None = None) -> None:
        """Store *event*."""
        self.put_nowait(event, only=only)

    def put_nowait(self, event: Event, *, only: Collection[str] | None = None) -> None:
        """Store *event* (it is all in memory)."""
        self._check_open()
        if only is None:
            self.broker.published.append((event, datetime.now(UTC)))
        self.broker.ready.append(
            Received(event, event.id, only=None if only is None else frozenset(only))
        )
        self._puts += 1
        self._wakeup.set()

    async def get_batch(self, limit: int) -> Sequence[Received]:
        """Wait for events and hand them out."""
        while not self.broker.ready:
            self._wakeup = anyio.Event()
            await self._wakeup.wait()
        batch = [self.broker.ready.popleft() for _ in range(min(limit, len(self.broker.ready)))]
        self._gets += len(batch)
        return batch

    async def ack(self, received: Sequence[Received]) -> None:
        """Remember which events were acknowledged."""
        self.broker.acked.extend(item.event.id for item in received)

    def record_dead_letter(self, letter: DeadLetter) -> None:
        """Keep *letter* under a Redis-like id."""
        self.broker.serial += 1
        letter_id = f"1733400000000-{self.broker.serial}"
        self.broker.letters[letter_id] = StoredDeadLetter(
            id=letter_id,
            event=letter.event,
            consumer=letter.consumer,
            error_type=f"{type(letter.error).__module__}.{type(letter.error).__qualname__}",
            error=letter.error_message,
            attempts=letter.attempts,
            first_failed_at=letter.first_failed_at,
            last_failed_at=letter.last_failed_at,
            dead_at=datetime.now(UTC),
            body=letter.event.to_json(),
        )

    def statistics(self) -> QueueStatistics:
        """Depth and counters."""
        return QueueStatistics(
            depth=len(self.broker.ready),
            capacity=self.capacity,
            put_count=self._puts,
            get_count=self._gets,
            waiting_publishers=0,
        )

    # -- DeadLetterStore ---------------------------------------------------------------

    def _select(
        self, ids: Iterable[LetterId] | None, consumer: str | None
    ) -> list[StoredDeadLetter]:
        self._check_open()
        wanted = None if ids is None else list(ids)
        self.broker.ids_given.append(wanted)
        if consumer is not None and consumer not in self.broker.consumers:
            raise ConsumerNotFound(f"no consumer named {consumer!r} uses {self.name}")
        if wanted is not None:
            missing = [letter_id for letter_id in wanted if letter_id not in self.broker.letters]
            if missing:
                raise DeadLetterNotFound(
                    f"no dead letter has the id {', '.join(map(str, missing))}; "
                    "nothing was changed",
                    missing,
                )
            return [self.broker.letters[letter_id] for letter_id in wanted]
        return [
            letter
            for letter in self.broker.letters.values()
            if consumer is None or letter.consumer == consumer
        ]

    async def dead_letters(
        self, *, consumer: str | None = None, limit: int | None = None
    ) -> list[StoredDeadLetter]:
        """The letters, oldest first."""
        self._check_open()
        letters = [
            letter
            for letter in self.broker.letters.values()
            if consumer is None or letter.consumer == consumer
        ]
        return letters[:limit]

    async def replay_dead_letters(
        self, ids: Iterable[LetterId] | None = None, *, consumer: str | None = None
    ) -> int:
        """Put the letters' events again, each for its consumer, and remove them."""
        letters = self._select(ids, consumer)
        for letter in letters:
            assert letter.event is not None and letter.consumer is not None
            self.put_nowait(letter.event, only=(letter.consumer,))
            del self.broker.letters[letter.id]
        return len(letters)

    async def purge_dead_letters(
        self, ids: Iterable[LetterId] | None = None, *, consumer: str | None = None
    ) -> int:
        """Remove the letters."""
        letters = self._select(ids, consumer)
        for letter in letters:
            del self.broker.letters[letter.id]
        return len(letters)

    async def replay(
        self,
        since: datetime,
        *,
        until: datetime | None = None,
        consumers: Collection[str] | None = None,
    ) -> int:
        """Put again the events published in the window."""
        self._check_open()
        events = [
            event
            for event, at in self.broker.published
            if at >= since and (until is None or at < until)
        ]
        for event in events:
            self.broker.ready.append(
                Received(event, event.id, only=None if consumers is None else frozenset(consumers))
            )
        return len(events)


class NoStore(MemoryQueue):
    """A third-party queue that keeps no dead letters."""

    @classmethod
    def from_url(cls, url: str) -> NoStore:
        """Build one from ``nostore://``."""
        return cls()


class NeedsClient(MemoryQueue):
    """A queue whose client library is an optional dependency that is not installed."""

    @classmethod
    def from_url(cls, url: str) -> NeedsClient:
        """Import the client, as a broker's queue does, then build the queue."""
        import_extra("reactor_test_no_such_client", extra="nosuch")
        return cls()


class NotAQueue:
    """A class registered for a scheme by mistake: its from_url() returns no queue."""

    @classmethod
    def from_url(cls, url: str) -> object:
        """Return something that is not a queue."""
        return cls()


@pytest.fixture(autouse=True)
def schemes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Make ``from_url()`` find the queues above, as an entry point would."""
    for scheme, name in [
        ("letters", "LetterQueue"),
        ("nostore", "NoStore"),
        ("needsclient", "NeedsClient"),
        ("notaqueue", "NotAQueue"),
    ]:
        monkeypatch.setitem(reactor.queues._BUILT_IN, scheme, f"{__name__}:{name}")
    monkeypatch.delenv("REACTOR_QUEUE", raising=False)
    yield
    BROKERS.clear()


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """Run ``reactor ARGS...`` in-process; return its status and output."""

    def run(*args: str) -> Result:
        code = main(list(args))
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


# -- Reactor.use_queue() -----------------------------------------------------------------


@pytest.mark.anyio
async def test_use_queue_runs_the_app_on_the_new_queue(tmp_path: Path) -> None:
    own = MemoryQueue()
    app = Reactor(queue=own)
    handled: list[str] = []

    @app.subscribe("order.*")
    async def handle(event: Event) -> None:
        handled.append(event.id)

    sqlite = SQLiteQueue(tmp_path / "events.db")
    app.use_queue(sqlite)
    assert app.queue is sqlite
    async with app:
        receipt = await app.publish_and_wait("order.created", id="o1")
    assert receipt.ok
    assert handled == ["o1"]
    assert own.statistics().put_count == 0
    assert sqlite.statistics().put_count == 1
    assert (tmp_path / "events.db").is_file()


@pytest.mark.anyio
async def test_use_queue_takes_acks_dead_letters_and_redelivery_bound_from_the_new_queue() -> None:
    # The app is built on a memory queue, which needs no acks, keeps no dead letters and
    # has no redelivery bound: all three must come from the queue it is given.
    app = Reactor()
    handled: list[str] = []

    @app.subscribe("order.*", name="billing")
    async def bill(event: Event) -> None:
        handled.append(event.id)
        if event.id == "bad":
            raise ValueError("no price")

    queue = LetterQueue("shop", max_redeliveries=1)
    app.use_queue(queue)
    # An event some crashed process took twice already: past the bound, never handled.
    queue.broker.ready.append(
        Received(Event(type="order.created", source="/shop", id="poison"), attempt=3)
    )
    with anyio.fail_after(PATIENCE):  # a dispatcher left on the old queue would hang
        async with app:
            await app.publish_and_wait("order.created", id="good")
            await app.publish_and_wait("order.created", id="bad")
    assert handled == ["good", "bad"]
    assert sorted(queue.broker.acked) == ["bad", "good", "poison"]
    letters = {letter.event.id: letter for letter in queue.broker.letters.values() if letter.event}
    assert sorted(letters) == ["bad", "poison"]
    assert letters["bad"].error == "no price"
    assert letters["poison"].error_type.endswith(RedeliveryLimitExceeded.__name__)


@pytest.mark.anyio
async def test_use_queue_is_refused_while_the_app_runs() -> None:
    own = MemoryQueue()
    app = Reactor(queue=own)
    async with app:
        with pytest.raises(RuntimeError, match="before the app starts"):
            app.use_queue(MemoryQueue())
        assert app.queue is own
    # Stopped, it may change again; and it runs on the new queue.
    other = MemoryQueue()
    app.use_queue(other)
    async with app:
        await app.publish("order.created")
    assert other.statistics().put_count == 1
    assert own.statistics().put_count == 0


def test_use_queue_needs_a_queue() -> None:
    app = Reactor()
    with pytest.raises(TypeError, match=r"queue must be a reactor\.abc\.EventQueue"):
        app.use_queue("sqlite:///events.db")  # type: ignore[arg-type]


# -- reactor run --queue ------------------------------------------------------------------


def run_child(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run ``reactor run ... cliapp_queue:app`` until its handler ran, then SIGTERM it.

    :return: the exit status, and everything the child printed
    """
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("REACTOR_")}
    child_env.update(env or {})
    child_env["PYTHONUNBUFFERED"] = "1"
    process = subprocess.Popen(
        [sys.executable, "-m", "reactor", "run", "--app-dir=tests/apps", *args],
        cwd=ROOT,
        env=child_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines: list[str] = []
    try:
        for line in process.stdout:
            lines.append(line)
            if line.startswith("handled "):
                process.send_signal(signal.SIGTERM)
        return process.wait(timeout=PATIENCE), "".join(lines)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(PATIENCE)
        process.stdout.close()


def handled_on(output: str) -> str:
    """The queue the child's handler said it ran on."""
    found = [line for line in output.splitlines() if line.startswith("handled job-1 on ")]
    assert len(found) == 1, output
    return found[0].removeprefix("handled job-1 on ")


posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


@posix_only
def test_run_keeps_the_apps_own_queue_without_queue() -> None:
    code, output = run_child("cliapp_queue:app")
    assert code == 0, output
    assert handled_on(output) == "MemoryQueue capacity=7"


@posix_only
@pytest.mark.parametrize("how", ["--queue", "REACTOR_QUEUE"])
def test_run_on_an_sqlite_queue_named_by_url(tmp_path: Path, how: str) -> None:
    path = tmp_path / "events.db"
    url = f"sqlite:///{path}"  # an absolute path: four slashes
    if how == "--queue":
        code, output = run_child("--queue", url, "cliapp_queue:app")
    else:
        code, output = run_child("cliapp_queue:app", env={"REACTOR_QUEUE": url})
    assert code == 0, output
    assert handled_on(output) == f"SQLiteQueue {path}"
    assert read_dead_letters(path) == []  # the file it left is a queue's
    assert f"queue: {url} ({how})" in output


@posix_only
def test_run_on_a_memory_queue_named_by_url() -> None:
    code, output = run_child(
        "--queue", "memory://?capacity=5", "cliapp_queue:app", env={"REACTOR_QUEUE": "nowhere"}
    )
    assert code == 0, output  # the argument wins over the variable
    assert handled_on(output) == "MemoryQueue capacity=5"


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--queue", "ftp://x"], {}, "--queue: 'ftp://x': no queue serves the scheme 'ftp'"),
        ([], {"REACTOR_QUEUE": "events.db"}, "REACTOR_QUEUE: 'events.db' is not a queue URL"),
        (["--queue", "memory://?size=3"], {}, "--queue: 'memory://?size=3': unknown parameter"),
        (["--queue", ""], {}, "--queue is empty: give a queue URL"),
        (
            ["--queue", "letters://user:secret@shop?colour=red"],
            {},
            "--queue: 'letters://user:***@shop?colour=red': unknown parameter 'colour'",
        ),
        (
            ["--queue", "needsclient://x"],
            {},
            "--queue: reactor_test_no_such_client is not installed; install it with: "
            "pip install 'reactor-events[nosuch]'",
        ),
    ],
    ids=["scheme", "no scheme", "parameter", "empty", "password", "missing extra"],
)
def test_run_with_a_bad_queue_is_a_usage_error(
    cli: Callable[..., Result],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    env: dict[str, str],
    message: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # The app is not even imported: the queue is checked first.
    result = cli("run", *args, "cliapp_nowhere:app")
    assert (result.code, result.out) == (2, "")
    assert result.err.startswith(f"reactor: error: {message}"), result.err
    assert len(result.err.splitlines()) == 1
    assert "secret" not in result.err


def test_run_help_documents_queue(cli: Callable[..., Result]) -> None:
    result = cli("run", "--help")
    assert result.code == 0
    assert "--queue URL" in result.out
    assert "REACTOR_QUEUE             --queue" in result.out
    assert "redis://HOST:6379/0?stream=orders&group=billing" in result.out
    assert "pip install 'reactor-events[redis]'" in result.out


# -- from_url() ---------------------------------------------------------------------------


def test_from_url_matches_the_scheme_in_any_case() -> None:
    queue = from_url("MEMORY://?capacity=3")
    assert isinstance(queue, MemoryQueue)
    assert queue.capacity == 3
    assert isinstance(from_url("Letters://shop"), LetterQueue)


@pytest.mark.parametrize(
    ("url", "error", "message"),
    [
        ("events.db", ValueError, "'events.db' is not a queue URL: it has no scheme"),
        ("/var/lib/x:1", ValueError, "'/var/lib/x:1' is not a queue URL: it has no scheme"),
        (
            "http://admin:hunter2@example.com/",
            ValueError,
            "'http://admin:***@example.com/': no queue serves the scheme 'http'; known: ",
        ),
        ("notaqueue://x", TypeError, "from_url() returned"),
        (b"memory://", TypeError, "a queue URL must be a str"),
    ],
)
def test_from_url_errors(url: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error) as caught:
        from_url(url)
    assert message in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_from_url_lists_the_known_schemes() -> None:
    with pytest.raises(ValueError, match="no queue serves") as caught:
        from_url("ftp://x")
    for scheme in ("memory://", "sqlite://", "redis://", "nats://", "letters://"):
        assert scheme in str(caught.value)


# -- the queue commands on a queue that is not SQLite --------------------------------------

URL = "letters://shop"


def new_app() -> Reactor:
    """An app with consumers "audit" (fails odd orders) and "mail" (fails order 2)."""
    app = Reactor()

    @app.subscribe("order.*", name="audit")
    async def audit(event: Event) -> None:
        if event.data["n"] % 2:
            raise ValueError(f"order {event.data['n']} is odd")

    @app.subscribe("order.*", name="mail")
    async def mail(event: Event) -> None:
        if event.data["n"] == 2:
            raise RuntimeError("the mail server said no")

    return app


@pytest.fixture
def broker() -> Broker:
    """The broker of ``letters://shop`` after an app ran on it: three dead letters."""

    async def fill() -> None:
        app = new_app()
        app.use_queue(from_url(URL))
        async with app:
            for n in range(4):
                await app.publish_and_wait("order.created", {"n": n}, id=f"e{n}")

    anyio.run(fill)
    found = BROKERS["shop"]
    assert found.open_queues == 0
    found.ready.clear()
    found.ids_given.clear()
    return found


def listed(cli: Callable[..., Result], *args: str) -> list[dict[str, Any]]:
    result = cli("dead-letters", "list", "--queue", URL, "--json", *args)
    assert (result.code, result.err) == (0, "")
    return [json.loads(line) for line in result.out.splitlines()]


LETTER_IDS = ["1733400000000-1", "1733400000000-2", "1733400000000-3"]


def test_list_as_json(broker: Broker, cli: Callable[..., Result]) -> None:
    letters = listed(cli)
    assert [letter["id"] for letter in letters] == LETTER_IDS
    assert [(letter["consumer"], letter["event"]["id"]) for letter in letters] == [
        ("audit", "e1"),
        ("mail", "e2"),
        ("audit", "e3"),
    ]
    assert letters[0]["error"] == "order 1 is odd"
    assert [letter["id"] for letter in listed(cli, "--consumer", "mail")] == [LETTER_IDS[1]]
    assert [letter["id"] for letter in listed(cli, "--limit", "1")] == LETTER_IDS[:1]
    assert broker.open_queues == 0  # every command closed what it opened


def test_list_as_a_table(broker: Broker, cli: Callable[..., Result]) -> None:
    result = cli("dead-letters", "list", "--queue", URL)
    assert result.code == 0
    lines = result.out.splitlines()
    assert lines[0].split()[:3] == ["ID", "CONSUMER", "ATTEMPTS"]
    assert lines[2].split()[:2] == ["1733400000000-2", "mail"]
    assert "RuntimeError: the mail server said no" in lines[2]


def test_list_of_nothing_names_the_queue(broker: Broker, cli: Callable[..., Result]) -> None:
    broker.letters.clear()
    result = cli("dead-letters", "list", "--queue", URL)
    assert result == Result(0, "no dead letters in letters://shop\n", "")


def test_replay_by_string_id(broker: Broker, cli: Callable[..., Result]) -> None:
    result = cli("dead-letters", "replay", "--queue", URL, "--id", LETTER_IDS[1])
    assert result == Result(
        0,
        "replayed 1 dead letter: its event is queued again for its consumer, and delivered "
        "by the app (now, if it runs)\n",
        "",
    )
    assert broker.ids_given == [[LETTER_IDS[1]]]
    assert [(item.event.id, item.only) for item in broker.ready] == [("e2", frozenset({"mail"}))]
    assert [letter["id"] for letter in listed(cli)] == [LETTER_IDS[0], LETTER_IDS[2]]
    assert broker.open_queues == 0


def test_ids_of_digits_are_numbers(broker: Broker, cli: Callable[..., Result]) -> None:
    result = cli("dead-letters", "purge", "--queue", URL, "--id", "12", "1733400000000-1")
    assert result.code == 1
    assert broker.ids_given == [[12, "1733400000000-1"]]
    assert result.err == "reactor: error: no dead letter has the id 12; nothing was changed\n"
    assert len(broker.letters) == 3


def test_replay_of_an_unknown_id_changes_nothing(
    broker: Broker, cli: Callable[..., Result]
) -> None:
    result = cli("dead-letters", "replay", "--queue", URL, "--id", LETTER_IDS[0], "nope-0")
    assert result == Result(
        1, "", "reactor: error: no dead letter has the id nope-0; nothing was changed\n"
    )
    assert len(broker.letters) == 3
    assert not broker.ready


def test_replay_all(broker: Broker, cli: Callable[..., Result]) -> None:
    result = cli("dead-letters", "replay", "--queue", URL, "--all")
    assert result.code == 0
    assert result.out.startswith("replayed 3 dead letters: their events are queued again")
    assert broker.ids_given == [None]
    assert not broker.letters


def test_purge_by_consumer(broker: Broker, cli: Callable[..., Result]) -> None:
    result = cli("dead-letters", "purge", "--queue", URL, "--consumer", "audit")
    assert result == Result(0, "purged 2 dead letters\n", "")
    assert [letter["consumer"] for letter in listed(cli)] == ["mail"]
    result = cli("dead-letters", "purge", "--queue", URL, "--consumer", "nobody")
    assert result == Result(1, "", "reactor: error: no consumer named 'nobody' uses shop\n")


def test_replay_a_window(broker: Broker, cli: Callable[..., Result]) -> None:
    result = cli("replay", "--queue", URL, "--since", "1h", "--consumer", "mail")
    assert result.code == 0, result.err
    assert result.out.endswith(" for mail; they are delivered by the app (now, if it runs)\n"), (
        result.out
    )
    assert result.out.startswith("replayed 4 events published since ")
    assert [(item.event.id, item.only) for item in broker.ready] == [
        (f"e{n}", frozenset({"mail"})) for n in range(4)
    ]
    future = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    result = cli("replay", "--queue", URL, "--since", future)
    assert result.out.startswith("replayed no events")
    assert result.err == (
        "reactor: only acknowledged events kept by the queue's retention can be replayed "
        "(its retention option)\n"
    )


COMMANDS = {
    "list": ["dead-letters", "list"],
    "replay letters": ["dead-letters", "replay", "--all"],
    "purge": ["dead-letters", "purge", "--all"],
    "replay": ["replay", "--since", "1h"],
}


@pytest.mark.parametrize("command", COMMANDS)
def test_a_queue_without_dead_letters_is_refused(
    cli: Callable[..., Result], monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    result = cli(*COMMANDS[command], "--queue", "memory://")
    assert (result.code, result.out) == (2, "")
    assert result.err == (
        "reactor: error: --queue: 'memory://' is a MemoryQueue, which keeps no dead letters "
        "and no events to replay; name the queue of an app that keeps them "
        "(sqlite:///events.db, redis://..., nats://...)\n"
    )
    monkeypatch.setenv("REACTOR_QUEUE", "nostore://")
    result = cli(*COMMANDS[command])
    assert result.code == 2
    assert result.err.startswith("reactor: error: REACTOR_QUEUE: 'nostore://' is a NoStore")


@pytest.mark.parametrize("command", COMMANDS)
def test_an_unreachable_queue_fails(cli: Callable[..., Result], command: str) -> None:
    result = cli(*COMMANDS[command], "--queue", "letters://down")
    assert result == Result(
        1, "", "reactor: error: letters://down: cannot reach the broker: connection refused\n"
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_a_queue_that_cannot_be_opened_fails(cli: Callable[..., Result], command: str) -> None:
    result = cli(*COMMANDS[command], "--queue", "letters://user:hunter2@locked")
    assert result == Result(
        1,
        "",
        "reactor: error: letters://user:***@locked: cannot open the queue: "
        "AuthenticationError: the password was refused\n",
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_a_missing_client_library_names_the_extra(cli: Callable[..., Result], command: str) -> None:
    result = cli(*COMMANDS[command], "--queue", "needsclient://x")
    assert result == Result(
        2,
        "",
        "reactor: error: --queue: reactor_test_no_such_client is not installed; install it "
        "with: pip install 'reactor-events[nosuch]'\n",
    )


@pytest.mark.parametrize(
    ("url", "client", "extra"),
    [
        ("redis://127.0.0.1:6379/0?stream=orders&group=billing", "coredis", "redis"),
        ("rediss://127.0.0.1:6379/0?stream=orders&group=billing", "coredis", "redis"),
        ("nats://127.0.0.1:4222?stream=orders&group=billing", "nats", "nats"),
    ],
)
def test_a_missing_broker_client_is_reported_with_the_url(
    cli: Callable[..., Result],
    monkeypatch: pytest.MonkeyPatch,
    url: str,
    client: str,
    extra: str,
) -> None:
    # As if the extra were not installed: the import of the client fails.
    monkeypatch.setitem(sys.modules, client, None)
    with pytest.raises(ModuleNotFoundError) as caught:
        from_url(url)
    assert str(caught.value) == (
        f"{client} is not installed; install it with: pip install 'reactor-events[{extra}]'"
    )
    for command in (["run", "cliapp_nowhere:app"], COMMANDS["list"]):
        result = cli(*command, "--queue", url)
        assert result == Result(2, "", f"reactor: error: --queue: {caught.value}\n")
