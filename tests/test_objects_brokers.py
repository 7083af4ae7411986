"""S3 bucket notifications through the broker triggers (``decode="s3"``), on real servers.

MinIO publishes its bucket notifications to MQTT (and NATS, AMQP, Kafka) as the JSON
message itself, and inserts them into a PostgreSQL table in its ``access`` format; a
store or a bridge may ``PUBLISH`` them on a Redis channel or send them with
``pg_notify()``. Each test sends the example messages of MinIO's documentation
(``tests/data/s3-notifications``, with AWS's put and test messages, one in the ``access``
format of MinIO's Redis target and one that is no S3 message at all) through one
transport on the shared loopback server, and checks that the handler gets what
:func:`reactor.sources.objects.decode_s3` makes of them: the same events as over HTTP,
in order, with the refused records counted as ``malformed`` and the filtered ones as
``filtered``. Waits are on the events themselves or on the source's counters, bounded;
nothing sleeps to let things happen.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypedDict

import attrs
import coredis
import psycopg
import pytest
import services
from mqtt_tools import forget_session, publish, unique_topic
from source_tools import received, until

from reactor import Event, Reactor
from reactor.abc import GAP_EVENT_TYPE
from reactor.sources import mqtt, postgres
from reactor.sources.objects import BucketFilter, decode_s3
from reactor.testing import Capture

pytestmark = pytest.mark.anyio

DATA = Path(__file__).parent / "data" / "s3-notifications"


class Filter(TypedDict):
    bucket: str
    events: list[str]


#: The filter of the tests' handlers: MinIO's examples are about the bucket "images";
#: AWS's put message (bucket "amzn-s3-demo-bucket") is left out, and counted.
FILTER: Filter = {"bucket": "images", "events": ["ObjectCreated:*"]}


def _messages() -> list[bytes]:
    """The messages every transport carries, in the order sent."""
    files = [
        *sorted(DATA.glob("minio-*.json")),
        DATA / "aws-put.json",
        DATA / "aws-test-event.json",
    ]
    found = [path.read_bytes() for path in files]
    # The "access" format of MinIO's Redis target: [{"Event": [records], "EventTime": ...}]
    (record,) = json.loads((DATA / "minio-redis-namespace.json").read_bytes())["Records"]
    found.append(json.dumps([{"Event": [record], "EventTime": record["eventTime"]}]).encode())
    found.append(b'"not an S3 notification"')
    return found


MESSAGES = _messages()


@attrs.frozen
class Expected:
    events: list[Event]
    malformed: int
    filtered: int


def expected(messages: list[bytes]) -> Expected:
    """What the handler with :data:`FILTER` gets of *messages*, and what its source counts."""
    where = BucketFilter(bucket="images", events=("ObjectCreated:*",))
    decoded = [decode_s3(message, where=where) for message in messages]
    return Expected(
        events=[event for d in decoded for event in d.events],
        malformed=sum(len(d.refused) for d in decoded),
        filtered=sum(d.filtered for d in decoded),
    )


EXPECTED = expected(MESSAGES)


def test_the_messages_hold_what_the_tests_check() -> None:
    # Events of several MinIO examples, records refused (the en dashes of the AMQP
    # example's time; the message that is no notification), AWS's record filtered out.
    assert len(EXPECTED.events) >= 8
    assert EXPECTED.malformed == 2 and EXPECTED.filtered == 1


def with_request_id(event: Event) -> bool:
    """Whether the record names its request (else its id is made by whoever decodes it)."""
    elements = event.data.get("responseElements") or {}
    return bool(elements.get("x-amz-request-id"))


def check(events: list[Event]) -> None:
    """*events* are those of :data:`EXPECTED`, in order: the same events as over HTTP.

    The ids of records with a request id are the adapter's, the same on every transport
    (the access-format message repeats the record of another: same id); the others are
    made by whoever decodes them, each its own.
    """
    assert [attrs.evolve(e, id="x") for e in events] == [
        attrs.evolve(e, id="x") for e in EXPECTED.events
    ]
    for got, wanted in zip(events, EXPECTED.events, strict=True):
        if with_request_id(wanted):
            assert got.id == wanted.id
    made = [e.id for e in events if not with_request_id(e)]
    assert made and len(set(made)) == len(made)


def stats_of(app: Reactor, name: str) -> Any:
    return app.stats().sources[name]


def counted(stats: Any) -> None:
    assert stats["received"] == len(MESSAGES)
    assert stats["published"] == len(EXPECTED.events)
    assert (stats["malformed"], stats["filtered"]) == (EXPECTED.malformed, EXPECTED.filtered)


# -- MQTT: MinIO's MQTT target ---------------------------------------------------------


@pytest.fixture
def mqtt_url() -> str:
    return services.require("mqtt")


async def test_mqtt_messages_from_minio_become_object_events(
    mqtt_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    topic = unique_topic("minio")
    name = f"minio-{secrets.token_hex(4)}"
    app = Reactor()
    capture = Capture()
    app.on_mqtt(topic, url=mqtt_url, decode="s3", name=name, concurrency=1, **FILTER)(capture)
    caplog.set_level(logging.WARNING, logger="reactor.sources.mqtt")
    try:
        async with app:
            await publish(mqtt_url, *((topic, message) for message in MESSAGES))
            events = await received(capture, len(EXPECTED.events))
            await until(lambda: stats_of(app, f"/reactor/mqtt/{name}")["received"] == len(MESSAGES))
            stats = app.stats().sources[f"/reactor/mqtt/{name}"]
    finally:
        await forget_session(mqtt_url, mqtt.client_id_for("/reactor", name))
    check(events)
    counted(stats)
    assert stats["gaps"] == stats["unmatched"] == 0
    # The refusals are logged with their reason, naming the source and the topic.
    (first, *_) = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert first.startswith(f"/reactor/mqtt/{name}: the message from {topic!r}: record 0: ")
    assert "eventTime must be an ISO 8601 time" in first and "refused by decode='s3'" in first


# -- Redis pub/sub: a store or a bridge that PUBLISHes the notifications ---------------


@pytest.fixture
def redis_url() -> str:
    return services.require("redis")


async def redis_publish(url: str, channel: str, *messages: bytes) -> None:
    async with coredis.Redis.from_url(url, decode_responses=False) as client:
        for message in messages:
            await client.publish(channel, message)


async def redis_kill(url: str, name: str) -> None:
    async with coredis.Redis.from_url(url, decode_responses=True) as client:
        (found,) = [c for c in await client.client_list() if c.get("name") == name]
        await client.client_kill(identifier=int(found["id"]))


async def test_redis_messages_become_object_events_and_gaps_still_come(redis_url: str) -> None:
    channel = f"reactor-test.minio.{secrets.token_hex(4)}"
    app = Reactor()
    capture = Capture()
    app.on_redis_message(
        channel,
        url=redis_url,
        decode="s3",
        name="minio",
        status_events=True,
        concurrency=1,
        **FILTER,
    )(capture)
    async with app:
        (source,) = app.sources
        await redis_publish(redis_url, channel, *MESSAGES[:5])
        await received(capture, len(expected(MESSAGES[:5]).events))
        # A lost connection: the gap event comes before what the new one brings.
        await redis_kill(redis_url, "reactor:minio")
        await until(lambda: source.statistics()["reconnects"] == 1)
        await redis_publish(redis_url, channel, *MESSAGES[5:])
        events = await received(capture, len(EXPECTED.events) + 1)
        stats = app.stats().sources["/reactor/redis/minio"]
    gaps = [e for e in events if e.type == GAP_EVENT_TYPE]
    assert [(g.source, g.data["reason"]) for g in gaps] == [("/reactor/redis/minio", "reconnected")]
    check([e for e in events if e.type != GAP_EVENT_TYPE])
    counted(stats)
    assert stats["gaps"] == 1 and stats["dropped"] == 0


# -- PostgreSQL: NOTIFY, and MinIO's table ---------------------------------------------


@pytest.fixture
def dsn() -> str:
    return services.require("postgres")


@pytest.fixture
def db(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        yield conn


async def test_notify_payloads_become_object_events(dsn: str, db: psycopg.Connection[Any]) -> None:
    channel = f"minio_{secrets.token_hex(5)}"
    app = Reactor()
    capture = Capture()
    postgres.on_pg_notify(
        app, channel, dsn=dsn, decode="s3", name="minio", concurrency=1, **FILTER
    )(capture)
    async with app:
        for message in MESSAGES:
            db.execute("SELECT pg_notify(%s, %s)", (channel, message.decode()))
        events = await received(capture, len(EXPECTED.events))
        await until(lambda: stats_of(app, "/reactor/postgres/minio")["received"] == len(MESSAGES))
        stats = app.stats().sources["/reactor/postgres/minio"]
    check(events)
    counted(stats)


@pytest.fixture
async def minio_table(dsn: str, db: psycopg.Connection[Any]) -> Any:
    """MinIO's ``access`` table (``event_time``, ``event_data``), made with a primary key as
    the capture needs, and installed."""
    name = f"minio_{secrets.token_hex(5)}"
    db.execute(
        f"CREATE TABLE {name} (id bigserial PRIMARY KEY, "
        "event_time timestamptz NOT NULL, event_data jsonb)"
    )
    try:
        await postgres.install(name, dsn=dsn)
        yield f"public.{name}"
    finally:
        await postgres.uninstall(name, dsn=dsn)
        db.execute(f"DROP TABLE IF EXISTS {name}")


def insert_as_minio(db: psycopg.Connection[Any], table: str, message: bytes) -> None:
    # What MinIO's PostgreSQL target runs for each event, in its "access" format.
    db.execute(
        f"INSERT INTO {table} (event_time, event_data) VALUES (now(), %s)", (message.decode(),)
    )


async def test_rows_inserted_by_minio_become_object_events(
    dsn: str, db: psycopg.Connection[Any], minio_table: str
) -> None:
    app = Reactor()
    capture = Capture()
    wrong = Capture()
    postgres.on_row_change(
        app,
        minio_table,
        dsn=dsn,
        decode="s3",
        name="minio",
        concurrency=1,
        poll_interval=0.5,
        standby_interval=0.05,
        **FILTER,
    )(capture)
    # A column the table does not have: every row refused, with the reason.
    postgres.on_row_change(
        app, minio_table, dsn=dsn, decode="s3", column="value", name="wrong", concurrency=1
    )(wrong)
    async with app:
        for message in MESSAGES:
            insert_as_minio(db, minio_table, message)
        # Deleting old rows is cleaning up, not an event.
        db.execute(f"DELETE FROM {minio_table} WHERE id = (SELECT min(id) FROM {minio_table})")
        events = await received(capture, len(EXPECTED.events))
        await until(lambda: stats_of(app, "/reactor/postgres/wrong")["malformed"] == len(MESSAGES))
        stats = stats_of(app, "/reactor/postgres/minio")
        wrong_stats = stats_of(app, "/reactor/postgres/wrong")
    check(events)
    counted(stats)
    assert (wrong_stats["received"], wrong_stats["published"]) == (len(MESSAGES), 0)
    # Its handler gets the S3 events of the app that pass its filter, from any source.
    assert wrong.events == events
    # A record without a request id gets the change's id: the same when delivered again.
    for event in events:
        if not with_request_id(event):
            assert event.id.count("-") == 1 and event.id.endswith(".0"), event.id
