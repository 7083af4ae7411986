"""The bucket poller (``@app.on_bucket_change``) against a real S3 API: moto's server.

The server runs in a child process on 127.0.0.1 (``benchmarks/_s3server.py``), started
once for this module; each test has buckets of its own. Objects are created, overwritten
and removed through the S3 API, except the bulk of the 10,000-object test, which the
server's own seeding command creates at once (10,000 PUTs would take most of a minute).
"""

from __future__ import annotations

import logging
import os
import secrets
import sqlite3
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest

import reactor
from benchmarks._s3server import ACCESS_KEY, SECRET_KEY, S3Server
from reactor import Event, Reactor, SourceUnavailableError
from reactor.queues.memory import MemoryQueue
from reactor.sources import objects
from reactor.testing import Capture, VirtualClock

pytestmark = pytest.mark.anyio

CREATED = "com.amazonaws.s3.ObjectCreated:Put"
REMOVED = "com.amazonaws.s3.ObjectRemoved:Delete"
GAP = "reactor.source.gap"
#: The URI of the poller the tests name "poller": the key of its statistics.
POLLER = "/reactor/objects/poller"
# A wait for real work (listing, publishing); never a timing assertion.
PATIENCE = 60


@pytest.fixture(scope="module")
def server() -> Iterator[S3Server]:
    with S3Server() as running:
        yield running


@pytest.fixture(scope="module")
def s3(server: S3Server) -> Any:
    return server.client()


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"poll-{secrets.token_hex(6)}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def state(tmp_path: Path) -> str:
    return str(tmp_path / "state.sqlite3")


def put(s3: Any, bucket: str, key: str, body: bytes = b"data") -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=body)


def changes(events: list[Event]) -> list[tuple[str, str]]:
    """(change, key) of the object events, in the order published."""
    return [(e.data["change"], e.subject or "") for e in events if e.type != GAP]


@asynccontextmanager
async def polling(
    server: S3Server,
    bucket: str,
    state: str,
    *,
    prefix: str = "in/",
    app: Reactor | None = None,
    handler: Any = None,
    **options: Any,
) -> AsyncIterator[tuple[Reactor, Capture, objects.BucketPollSource]]:
    """An app polling ``s3://bucket/prefix`` with a Capture (or *handler*), running."""
    app = Reactor() if app is None else app
    capture = Capture()
    options.setdefault("endpoint_url", server.endpoint)
    options.setdefault("access_key_id", ACCESS_KEY)
    options.setdefault("secret_access_key", SECRET_KEY)
    options.setdefault("status_events", True)
    options.setdefault("name", "poller")
    app.on_bucket_change(f"s3://{bucket}/{prefix}", state=state, **options)(
        capture if handler is None else handler
    )
    async with app:
        (source,) = app.sources
        assert isinstance(source, objects.BucketPollSource)
        yield app, capture, source


async def settle(app: Reactor, capture: Capture, count: int) -> list[Event]:
    """Wait until *capture* holds *count* events, and check that no more come."""
    with anyio.fail_after(PATIENCE):
        events = await capture.wait_for(count)
    await anyio.wait_all_tasks_blocked()
    assert len(capture.events) == count, capture.events
    return events


# -- created, modified, removed


async def test_created_overwritten_and_removed_objects_become_s3_cloudevents(
    server: S3Server, s3: Any, bucket: str, state: str
) -> None:
    put(s3, bucket, "in/keep.txt")
    put(s3, bucket, "in/overwrite.txt", b"old")
    put(s3, bucket, "in/remove.txt", b"gone soon")
    put(s3, bucket, "out/elsewhere.txt")
    async with polling(server, bucket, state) as (app, capture, source):
        gap = (await settle(app, capture, 1))[0]
        assert gap.type == GAP and gap.data["reason"].startswith("no stored state")
        # From the poller's URI, as every trigger's gap events.
        assert gap.source == gap.subject == POLLER
        put(s3, bucket, "in/new file+1.txt", b"hello")
        put(s3, bucket, "in/overwrite.txt", b"new content")
        s3.delete_object(Bucket=bucket, Key="in/remove.txt")
        put(s3, bucket, "out/ignored.txt")
        result = await source.poll()
        assert (result.created, result.modified, result.removed) == (1, 1, 1)
        assert (result.listed, result.pages, result.baseline) == (3, 1, False)
        events = (await settle(app, capture, 4))[1:]
        assert changes(events) == [
            ("created", "in/new file+1.txt"),
            ("modified", "in/overwrite.txt"),
            ("removed", "in/remove.txt"),
        ]
        head = s3.head_object(Bucket=bucket, Key="in/new file+1.txt")
        created, modified, removed = events
        # cloudevents/adapters/aws-s3.md: type, source, subject; time: last-modified.
        assert created.type == modified.type == CREATED
        assert removed.type == REMOVED
        assert {e.source for e in events} == {f"aws:s3.us-east-1.{bucket}"}
        assert created.time == head["LastModified"]
        assert created.datacontenttype == "application/json"
        assert created.data == {
            "change": "created",
            "bucket": bucket,
            "key": "in/new file+1.txt",
            "size": 5,
            "eTag": head["ETag"].strip('"'),
            "lastModified": head["LastModified"].isoformat(),
        }
        assert modified.data["size"] == len(b"new content")
        assert removed.data["size"] == len(b"gone soon")
        assert {e.extensions[objects.POLLER_EXTENSION] for e in events} == {POLLER}
        # The test helper builds the very same event, id included.
        assert created == objects.bucket_change(
            "created",
            bucket,
            "in/new file+1.txt",
            name="poller",
            size=5,
            etag=head["ETag"],
            last_modified=head["LastModified"],
        )
        # Nothing changed: nothing published.
        result = await source.poll()
        assert (result.created, result.modified, result.removed) == (0, 0, 0)
        await settle(app, capture, 4)
        stats = app.stats().sources[POLLER]
        assert stats["polls"] == 3 and stats["pages"] == 3
        assert stats["listed"] == stats["received"] == 3 + 3 + 3
        assert (stats["created"], stats["modified"], stats["removed"]) == (1, 1, 1)
        assert (stats["published"], stats["gaps"], stats["errors"]) == (3, 1, 0)
        assert stats["objects"] == 3 and stats["last_error"] is None


async def test_the_interval_runs_on_the_apps_clock(
    server: S3Server, s3: Any, bucket: str, state: str
) -> None:
    clock = VirtualClock()
    async with polling(server, bucket, state, app=Reactor(clock=clock), interval=300) as (
        app,
        capture,
        _,
    ):
        await settle(app, capture, 1)  # the gap event of the first start
        put(s3, bucket, "in/a")
        await clock.advance(299)
        await settle(app, capture, 1)
        await clock.advance(1)
        events = await settle(app, capture, 2)
        assert changes(events) == [("created", "in/a")]


async def test_keys_in_any_script_are_merged_in_the_listings_order(
    server: S3Server, s3: Any, bucket: str, state: str
) -> None:
    # S3 orders keys by their UTF-8 bytes, SQLite too: no false change from one poll to
    # the next, whatever the characters.
    keys = ["in/z", "in/a b", "in/ä", "in/日本", "in/A", "in/a+b", "in/😀", "in/~", "in/a%2Fb"]
    async with polling(server, bucket, state, page_size=2) as (app, capture, source):
        for key in keys:
            put(s3, bucket, key)
        await source.poll()
        events = await settle(app, capture, 1 + len(keys))
        assert [key for _, key in changes(events)] == sorted(keys, key=str.encode)
        for _ in range(2):
            result = await source.poll()
            assert (result.created, result.modified, result.removed) == (0, 0, 0)
        s3.delete_object(Bucket=bucket, Key="in/ä")
        await source.poll()
        events = await settle(app, capture, 2 + len(keys))
        assert changes(events[-1:]) == [("removed", "in/ä")]


async def test_suffix_and_events_filter_what_is_published(
    server: S3Server, s3: Any, bucket: str, state: str
) -> None:
    put(s3, bucket, "in/a.csv")
    put(s3, bucket, "in/b.txt")
    async with polling(server, bucket, state, suffix=".csv", events=("ObjectRemoved:*",)) as (
        app,
        capture,
        source,
    ):
        put(s3, bucket, "in/c.csv")
        put(s3, bucket, "in/d.txt")
        s3.delete_object(Bucket=bucket, Key="in/a.csv")
        s3.delete_object(Bucket=bucket, Key="in/b.txt")
        await source.poll()
        events = await settle(app, capture, 2)
        assert changes(events) == [("removed", "in/a.csv")]
        stats = app.stats().sources[POLLER]
        assert (stats["created"], stats["removed"], stats["published"]) == (1, 1, 1)
        # b.txt (baseline) and d.txt by suffix=; c.csv's creation by events=
        assert stats["filtered"] == 3
        assert stats["objects"] == 1


# -- paging and size


async def test_ten_thousand_objects_over_several_pages(
    server: S3Server, s3: Any, bucket: str, state: str
) -> None:
    server.seed(bucket, "in/", 10_000)  # in/000000 ... in/009999
    async with polling(server, bucket, state, status_events=False, page_size=1000) as (
        app,
        capture,
        source,
    ):
        stats = app.stats().sources[POLLER]
        assert (stats["pages"], stats["listed"], stats["objects"]) == (10, 10_000, 10_000)
        assert capture.events == []  # the baseline is not announced
        # Changes across the pages: the first and last keys, page boundaries, before the
        # first and after the last, and 1,500 removals (more than one chunk of changes).
        put(s3, bucket, "in/000000", b"changed")
        put(s3, bucket, "in/000999", b"changed")
        put(s3, bucket, "in/001000", b"changed")
        put(s3, bucket, "in/009999", b"changed")
        put(s3, bucket, "in/", b"before the first")
        put(s3, bucket, "in/zzz", b"after the last")
        removed = [f"in/{i:06d}" for i in range(5000, 6500)]
        for start in range(0, len(removed), 1000):
            batch = removed[start : start + 1000]
            s3.delete_objects(
                Bucket=bucket, Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True}
            )
        result = await source.poll()
        assert (result.listed, result.pages) == (10_000 - 1500 + 2, 9)
        assert (result.created, result.modified, result.removed) == (2, 4, 1500)
        events = await settle(app, capture, 2 + 4 + 1500)
        assert changes(events) == [
            ("created", "in/"),
            ("modified", "in/000000"),
            ("modified", "in/000999"),
            ("modified", "in/001000"),
            *(("removed", key) for key in removed),
            ("modified", "in/009999"),
            ("created", "in/zzz"),
        ]
        assert app.stats().sources[POLLER]["objects"] == 10_000 - 1500 + 2
        result = await source.poll()
        assert (result.created, result.modified, result.removed) == (0, 0, 0)


# -- restarts and state


async def test_a_restart_announces_only_what_changed_while_stopped(
    server: S3Server, s3: Any, bucket: str, state: str
) -> None:
    for i in range(30):
        put(s3, bucket, f"in/{i:02d}")
    async with polling(server, bucket, state, page_size=7) as (app, capture, _):
        await settle(app, capture, 1)  # the gap event of the first start: nothing else
    put(s3, bucket, "in/05", b"changed while stopped")
    put(s3, bucket, "in/new")
    s3.delete_object(Bucket=bucket, Key="in/20")
    async with polling(server, bucket, state, page_size=7) as (app, capture, source):
        # Published before ``async with app:`` returned: the first poll is done.
        events = await settle(app, capture, 3)
        assert changes(events) == [
            ("modified", "in/05"),
            ("removed", "in/20"),
            ("created", "in/new"),
        ]
        stats = app.stats().sources[POLLER]
        assert (stats["gaps"], stats["objects"]) == (0, 30)
        result = await source.poll()
        assert (result.created, result.modified, result.removed) == (0, 0, 0)
    async with polling(server, bucket, state, page_size=7) as (app, capture, _):
        await settle(app, capture, 0)


async def test_a_lost_state_file_gives_a_gap_event_and_a_new_baseline(
    server: S3Server, s3: Any, bucket: str, state: str
) -> None:
    put(s3, bucket, "in/a")
    async with polling(server, bucket, state) as (app, capture, _):
        await settle(app, capture, 1)
    put(s3, bucket, "in/b")  # made while stopped, and the state is lost: not announced
    for suffix in ("", "-wal", "-shm"):
        await anyio.Path(state + suffix).unlink(missing_ok=True)
    async with polling(server, bucket, state) as (app, capture, source):
        (gap,) = await settle(app, capture, 1)
        assert gap.type == GAP
        assert gap.data["reason"] == "no stored state (a first start, or the state file was lost)"
        assert gap.data["since"] is None
        put(s3, bucket, "in/c")
        await source.poll()
        events = await settle(app, capture, 2)
        assert changes(events) == [("created", "in/c")]
        assert app.stats().sources[POLLER]["gaps"] == 1


async def test_an_unreadable_state_file_is_set_aside(
    server: S3Server, s3: Any, bucket: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "state.sqlite3"
    state.write_bytes(b"this is not a SQLite database, but a file of the same name" * 100)
    put(s3, bucket, "in/a")
    async with polling(server, bucket, str(state)) as (app, capture, source):
        (gap,) = await settle(app, capture, 1)
        assert gap.data["reason"].startswith("state unreadable: ")
        put(s3, bucket, "in/b")
        await source.poll()
        assert changes(await settle(app, capture, 2)) == [("created", "in/b")]
    (aside,) = [p async for p in anyio.Path(tmp_path).iterdir() if ".unreadable-" in p.name]
    assert (await aside.read_bytes()).startswith(b"this is not a SQLite database")
    assert "unreadable" in caplog.text


async def test_another_programs_database_is_never_taken_as_the_state_file(
    server: S3Server, bucket: str, tmp_path: Path
) -> None:
    theirs = tmp_path / "queue.sqlite3"
    with closing(sqlite3.connect(theirs)) as db:
        db.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, body BLOB)")
        db.commit()
    before = await anyio.Path(theirs).read_bytes()
    with pytest.raises(RuntimeError, match="left alone: give state= a file of its own"):
        async with polling(server, bucket, str(theirs)):
            pass
    assert await anyio.Path(theirs).read_bytes() == before


async def test_a_state_file_damaged_while_running_is_set_aside_at_the_next_poll(
    server: S3Server, s3: Any, bucket: str, tmp_path: Path
) -> None:
    state = tmp_path / "state.sqlite3"
    put(s3, bucket, "in/a")
    async with polling(server, bucket, str(state)) as (app, capture, source):
        await settle(app, capture, 1)
        async for path in anyio.Path(tmp_path).iterdir():  # the file, its WAL and -shm
            await path.write_bytes(b"\xff" * (await path.stat()).st_size)
        with pytest.raises(sqlite3.DatabaseError):
            await source.poll()
        result = await source.poll()
        assert result.baseline
        gap = (await settle(app, capture, 2))[1]
        assert gap.type == GAP and gap.data["reason"].startswith("state unreadable: ")
        put(s3, bucket, "in/b")
        await source.poll()
        assert changes(await settle(app, capture, 3)) == [("created", "in/b")]
        assert app.stats().sources[POLLER]["errors"] == 1


async def test_another_target_under_the_same_name_starts_afresh(
    server: S3Server, s3: Any, bucket: str, state: str
) -> None:
    put(s3, bucket, "in/a")
    put(s3, bucket, "other/a")
    async with polling(server, bucket, state) as (app, capture, _):
        await settle(app, capture, 1)
    async with polling(server, bucket, state, prefix="other/") as (app, capture, _):
        (gap,) = await settle(app, capture, 1)
        assert gap.data["reason"].startswith(f"the stored state is of s3://{bucket}/in/ at ")
        assert gap.data["since"] is not None  # the end of the other listing's last poll


async def test_pollers_sharing_a_state_file_keep_their_own_state(
    server: S3Server, s3: Any, bucket: str, state: str
) -> None:
    put(s3, bucket, "in/a")
    app = Reactor()
    first, second = Capture(), Capture()
    common: dict[str, Any] = {
        "endpoint_url": server.endpoint,
        "access_key_id": ACCESS_KEY,
        "secret_access_key": SECRET_KEY,
        "state": state,
    }
    app.on_bucket_change(f"s3://{bucket}/in/", name="first", **common)(first)
    app.on_bucket_change(f"s3://{bucket}/", name="second", suffix="b", **common)(second)
    async with app:
        put(s3, bucket, "in/b")
        one, two = app.sources
        assert isinstance(one, objects.BucketPollSource)
        assert isinstance(two, objects.BucketPollSource)
        await one.poll()
        # Each handler gets its own poller's events only, though both are about "in/b".
        assert changes(await settle(app, first, 1)) == [("created", "in/b")]
        await settle(app, second, 0)
        await two.poll()
        assert changes(await settle(app, second, 1)) == [("created", "in/b")]
        await settle(app, first, 1)
    with closing(sqlite3.connect(state)) as db:
        rows = db.execute(
            "SELECT name, count(*) FROM objects JOIN pollers ON pollers.id = objects.poller "
            "GROUP BY name ORDER BY name"
        ).fetchall()
    assert rows == [("first", 2), ("second", 1)]


async def test_changes_published_but_not_stored_are_announced_again_with_the_same_ids(
    server: S3Server, s3: Any, bucket: str, state: str
) -> None:
    # The app stops while the poller waits for room in a full queue: the chunk it was
    # publishing is not stored, so the next start announces all of it again.
    clock = VirtualClock()
    app = Reactor(queue=MemoryQueue(capacity=1), max_in_flight=1, clock=clock, graceful_timeout=0)
    seen: list[Event] = []
    first_seen = anyio.Event()

    async def stuck(event: Event) -> None:
        seen.append(event)
        first_seen.set()
        await anyio.sleep_forever()

    async with polling(
        server, bucket, state, app=app, handler=stuck, status_events=False, interval=60
    ):
        for i in range(5):
            put(s3, bucket, f"in/{i}")
        await clock.advance(60)
        with anyio.fail_after(PATIENCE):
            await first_seen.wait()
    assert len(seen) == 1
    async with polling(server, bucket, state, status_events=False) as (app, capture, _):
        events = await settle(app, capture, 5)
    assert changes(events) == [("created", f"in/{i}") for i in range(5)]
    assert seen[0].id == events[0].id


# -- failures


async def test_a_missing_bucket_stops_the_start_with_a_clear_error(
    server: S3Server, state: str
) -> None:
    with pytest.raises(SourceUnavailableError, match="the bucket does not exist") as caught:
        async with polling(server, "no-such-bucket-here", state):
            pass
    assert "NoSuchBucket" in str(caught.value)


async def test_an_unreachable_store_stops_the_start(state: str) -> None:
    with anyio.fail_after(PATIENCE):
        with pytest.raises(SourceUnavailableError, match="cannot reach the endpoint"):
            app = Reactor()
            app.on_bucket_change(
                "s3://bucket/",
                endpoint_url="http://127.0.0.1:9",  # the discard port: nothing listens
                access_key_id=ACCESS_KEY,
                secret_access_key=SECRET_KEY,
                state=state,
            )(Capture())
            async with app:
                pass


async def test_no_credentials_stops_the_start_saying_where_they_come_from(
    server: S3Server, bucket: str, state: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for variable in list(os.environ):
        if variable.startswith(("AWS_", "REACTOR_S3_")):
            monkeypatch.delenv(variable)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(SourceUnavailableError, match="no credentials: give access_key_id="):
        async with polling(server, bucket, state, access_key_id=None, secret_access_key=None):
            pass


async def test_refused_credentials_stop_the_start_and_no_secret_is_shown(
    bucket: str, state: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A server of its own that checks credentials (moto does when
    # INITIAL_NO_AUTH_ACTION_COUNT is 0): the key is unknown to it.
    monkeypatch.setenv("INITIAL_NO_AUTH_ACTION_COUNT", "0")
    caplog.set_level(logging.DEBUG, logger="reactor")
    secret = "s3cret-" + secrets.token_hex(8)
    with S3Server() as checking:
        with pytest.raises(SourceUnavailableError, match="access denied") as caught:
            async with polling(checking, bucket, state, secret_access_key=secret):
                pass
    assert "InvalidAccessKeyId" in str(caught.value)
    assert secret not in str(caught.value) and secret not in caplog.text


class Records(logging.Handler):
    """The poller's log records, to wait for one (logged from the event loop's thread)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []
        self._changed = anyio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
        self._changed.set()

    async def wait_for(self, text: str, count: int) -> None:
        with anyio.fail_after(PATIENCE):
            while sum(text in m for m in self.messages) < count:
                self._changed = anyio.Event()
                await self._changed.wait()


@pytest.fixture
def records() -> Iterator[Records]:
    handler = Records()
    logger = logging.getLogger("reactor.sources.objects")
    level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


async def test_a_failing_poll_is_logged_once_retried_and_never_stops_the_app(
    server: S3Server, s3: Any, bucket: str, state: str, records: Records
) -> None:
    clock = VirtualClock()
    secret = "s3cret-" + secrets.token_hex(8)
    put(s3, bucket, "in/a")
    async with polling(
        server, bucket, state, app=Reactor(clock=clock), interval=10, secret_access_key=secret
    ) as (app, capture, _):
        await settle(app, capture, 1)
        s3.delete_object(Bucket=bucket, Key="in/a")
        s3.delete_bucket(Bucket=bucket)
        await clock.advance(10)
        await records.wait_for("failed (NoSuchBucket", 1)
        for again in range(1, 3):
            await clock.advance(10)
            await records.wait_for("failed again", again)
        stats = app.stats().sources[POLLER]
        assert stats["errors"] == 3 and "NoSuchBucket" in str(stats["last_error"])
        warnings = [m for m in records.messages if "failed (" in m]
        assert len(warnings) == 1 and "the bucket does not exist" in warnings[0]
        s3.create_bucket(Bucket=bucket)
        put(s3, bucket, "in/b")
        await clock.advance(10)
        events = await settle(app, capture, 3)
        assert changes(events) == [("removed", "in/a"), ("created", "in/b")]
        await records.wait_for("works again after 30.0 s (3 failed polls)", 1)
        stats = app.stats().sources[POLLER]
        assert (stats["errors"], stats["reconnects"]) == (3, 1)
    assert not any(secret in m for m in records.messages)


# -- configuration


async def test_connection_settings_and_the_state_file_from_the_environment(
    server: S3Server,
    s3: Any,
    bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(objects.ENDPOINT_VARIABLE, server.endpoint)
    monkeypatch.setenv(objects.ACCESS_KEY_VARIABLE, ACCESS_KEY)
    monkeypatch.setenv(objects.SECRET_KEY_VARIABLE, SECRET_KEY)
    monkeypatch.setenv(objects.REGION_VARIABLE, "eu-west-3")
    monkeypatch.setenv(objects.STATE_VARIABLE, str(tmp_path / "from-env.sqlite3"))
    app = Reactor()
    capture = Capture()
    app.on_bucket_change(f"s3://{bucket}/")(capture)
    async with app:
        (source,) = app.sources
        assert isinstance(source, objects.BucketPollSource)
        assert source.event_source == f"aws:s3.eu-west-3.{bucket}"
        put(s3, bucket, "x")
        await source.poll()
        (event,) = await settle(app, capture, 1)
        assert event.source == f"aws:s3.eu-west-3.{bucket}" and event.subject == "x"
    assert (tmp_path / "from-env.sqlite3").exists()


def test_bad_arguments_are_refused_where_they_are_given() -> None:
    app = Reactor()
    with pytest.raises(ValueError, match="s3://bucket/prefix"):
        app.on_bucket_change("https://bucket/prefix")
    with pytest.raises(ValueError, match="credentials and endpoints"):
        app.on_bucket_change("s3://key:secret@bucket/")
    with pytest.raises(ValueError, match="page_size must be at most 1000"):
        app.on_bucket_change("s3://bucket/", page_size=1001)
    with pytest.raises(ValueError, match="interval"):
        app.on_bucket_change("s3://bucket/", interval=0)
    with pytest.raises(ValueError, match="give both access_key_id and secret_access_key"):
        app.on_bucket_change("s3://bucket/", access_key_id="AKIA")
    with pytest.raises(ValueError, match="matches no event the poller publishes"):
        app.on_bucket_change("s3://bucket/", events=("ObjectRestore:*",))
    with pytest.raises(TypeError, match="tuple of S3 event names"):
        app.on_bucket_change("s3://bucket/", events="ObjectCreated:*")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="endpoint_url must be an http"):
        app.on_bucket_change("s3://bucket/", endpoint_url="127.0.0.1:9000")
    with pytest.raises(TypeError):
        app.on_bucket_change("s3://bucket/", intervall=5)  # type: ignore[call-arg]
    assert app.sources == ()


def test_a_missing_extra_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in list(sys.modules):
        if module == "botocore" or module.startswith("botocore."):
            monkeypatch.delitem(sys.modules, module)
    monkeypatch.setitem(sys.modules, "botocore", None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'reactor-events\[s3\]'"):
        Reactor().on_bucket_change("s3://bucket/")


async def test_poll_needs_a_running_source() -> None:
    source = objects.BucketPollSource("s3://bucket/in/")
    assert repr(source) == "BucketPollSource('s3://bucket/in/', name='s3://bucket/in/')"
    assert source.statistics()["polls"] == 0
    with pytest.raises(RuntimeError, match="is not running"):
        await source.poll()


async def test_the_test_helper_fires_a_handler_without_a_store() -> None:
    seen: list[Event] = []

    async def on_upload(event: Event) -> None:
        seen.append(event)

    # What a user's test does: the handler on an app of the test, no poller, no store.
    app = Reactor()
    app.subscribe("com.amazonaws.s3.*", on_upload)
    when = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    async with app:
        event = objects.bucket_change(
            "modified", "uploads", "in/a.csv", name=on_upload, size=3, last_modified=when
        )
        receipt = await app.publish_and_wait(event)
    assert receipt.outcomes["on_upload"].status == "ok"
    assert seen == [event]
    assert (event.type, event.source, event.subject, event.time) == (
        CREATED,
        "aws:s3.us-east-1.uploads",
        "in/a.csv",
        when,
    )
    assert event.data == {
        "change": "modified",
        "bucket": "uploads",
        "key": "in/a.csv",
        "size": 3,
        "eTag": "d41d8cd98f00b204e9800998ecf8427e",
        "lastModified": when.isoformat(),
    }
    assert event.extensions == {objects.POLLER_EXTENSION: "/reactor/objects/on_upload"}
    removed = objects.bucket_change("removed", "uploads", "in/a.csv", name="p", time=when)
    assert (removed.type, removed.time) == (REMOVED, when)
    with pytest.raises(ValueError, match="change"):
        objects.bucket_change("renamed", "uploads", "k", name="p")  # type: ignore[arg-type]


def test_the_source_is_a_public_name() -> None:
    assert objects.on_bucket_change.__module__ == "reactor.sources.objects"
    assert reactor.Reactor.on_bucket_change is objects.on_bucket_change
