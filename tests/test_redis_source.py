"""The Redis pub/sub source against the real server, on asyncio and trio.

Every test uses channels of its own on the shared server (pub/sub leaves nothing behind to
clean up). The connection is cut with ``CLIENT KILL``, found by the name the source gives
it. Waits are on the events themselves, or on the source's counters (polled), bounded by
``fail_after``; nothing sleeps to let things happen.
"""

from __future__ import annotations

import gc
import logging
import secrets
from datetime import UTC, datetime
from typing import Any

import anyio
import coredis
import pytest
import services
from source_tools import (
    WAIT,
    free_port,
    run_without,
    start_fails,
    start_without,
    until,
    without_id_and_time,
)

from reactor import Event, Reactor, SourceUnavailableError
from reactor.abc import GAP_EVENT_TYPE
from reactor.queues.memory import MemoryQueue
from reactor.sources import redis
from reactor.sources.redis import MESSAGE_TYPE, RedisSource
from reactor.testing import Capture

pytestmark = pytest.mark.anyio

PASSWORD = "s3cret-pw-9d2f"  # the shared server's default user takes any password


@pytest.fixture
def url() -> str:
    return services.require("redis")


def unique(label: str) -> str:
    """A channel name no other test uses."""
    return f"reactor-test.{label}.{secrets.token_hex(4)}"


def with_password(url: str) -> str:
    return url.replace("redis://", f"redis://:{PASSWORD}@", 1)


async def publish(url: str, *messages: tuple[str, bytes | str]) -> None:
    async with coredis.Redis.from_url(url, decode_responses=False) as client:
        for channel, data in messages:
            await client.publish(channel, data)


async def clients_named(url: str, name: str) -> list[dict[str, Any]]:
    async with coredis.Redis.from_url(url, decode_responses=True) as client:
        return [dict(c) for c in await client.client_list() if c.get("name") == name]


async def kill(url: str, name: str) -> None:
    """Cut the connection named *name* (the source's subscriber) on the server."""
    found = await clients_named(url, name)
    assert len(found) == 1, found
    async with coredis.Redis.from_url(url, decode_responses=False) as client:
        await client.client_kill(identifier=int(found[0]["id"]))


#: coredis 6.9 leaves the anyio memory streams of a connection attempt that failed
#: unclosed (a ResourceWarning when they are collected); the tests whose connections fail
#: collect them, and ignore that warning.
CONNECT_LEAK = pytest.mark.filterwarnings("ignore:Unclosed <MemoryObject:ResourceWarning")


def stats(app: Reactor, source: RedisSource) -> dict[str, Any]:
    return dict(app.stats().sources[source.name])


# -- events ---------------------------------------------------------------------------


async def test_channel_and_pattern_messages_become_events(url: str) -> None:
    channel, prefix = unique("plain"), unique("pattern")
    app = Reactor()
    capture = Capture()
    app.on_redis_message(channel, f"{prefix}.*", url=url, name="alerts")(capture)
    async with app:
        (source,) = app.sources
        assert isinstance(source, RedisSource)
        (client,) = await clients_named(url, source.client_name)
        assert (client["sub"], client["psub"]) == (1, 1)  # SUBSCRIBE and PSUBSCRIBE
        await publish(
            url,
            (channel, b'{"load": 9.5}'),
            (f"{prefix}.cpu", "hot"),
            (f"{prefix}.disk", b"\xff\x00"),
            (unique("elsewhere"), b"nobody listens"),
        )
        with anyio.fail_after(WAIT):
            events = await capture.wait_for(3)
        counters = stats(app, source)

    assert [(e.type, e.source, e.subject) for e in events] == [
        (MESSAGE_TYPE, "/reactor/redis/alerts", channel),
        (MESSAGE_TYPE, "/reactor/redis/alerts", f"{prefix}.cpu"),
        (MESSAGE_TYPE, "/reactor/redis/alerts", f"{prefix}.disk"),
    ]
    assert [(e.data, e.datacontenttype) for e in events] == [
        ({"load": 9.5}, "application/json"),
        ("hot", "text/plain; charset=utf-8"),
        (b"\xff\x00", "application/octet-stream"),
    ]
    assert [dict(e.extensions) for e in events] == [
        {},
        {"redispattern": f"{prefix}.*"},
        {"redispattern": f"{prefix}.*"},
    ]
    assert counters == {
        "received": 3,
        "published": 3,
        "malformed": 0,
        "reconnects": 0,
        "gaps": 0,
        "oversized": 0,
        "dropped": 0,
        "last_error": None,
    }
    # Events survive the CloudEvents JSON format (what a durable queue stores).
    assert [Event.from_json(e.to_json()) for e in events] == events


async def test_the_test_helper_builds_the_event_the_source_publishes(url: str) -> None:
    prefix = unique("helper")
    app = Reactor()
    capture = Capture()
    app.on_redis_message(f"{prefix}.*", url=url, name="helper")(capture)
    async with app:
        await publish(url, (f"{prefix}.a", b'{"n": 1}'))
        with anyio.fail_after(WAIT):
            (received,) = await capture.wait_for(1)

    built = redis.message(f"{prefix}.a", b'{"n": 1}', pattern=f"{prefix}.*", name="helper")
    assert without_id_and_time(built) == without_id_and_time(received)
    assert built.time is not None and built.time.tzinfo is UTC
    # The handler is subscribed to exactly that event: publishing it reaches the handler.
    at = datetime(2030, 1, 1, tzinfo=UTC)
    event = redis.message("c", "text", name="helper", payload="bytes", time=at)
    assert (event.data, event.time, dict(event.extensions)) == (b"text", at, {})
    async with app:
        receipt = await app.publish_and_wait(event)
    assert receipt.outcomes["helper"].status == "ok"


async def test_the_payload_option_and_malformed_payloads(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="reactor.sources.redis")
    channel = unique("payload")
    app = Reactor()
    sources = {
        mode: RedisSource(channel, url=url, name=mode, payload=mode)
        for mode in ("auto", "json", "text", "bytes")
    }
    captures = {}
    for mode, source in sources.items():
        app.add_source(source)
        captures[mode] = Capture()
        app.subscribe(MESSAGE_TYPE, captures[mode], source=source.uri, name=mode)
    payloads = [b'{"a": [1, 2]}', b"NaN", b"plain words", b"\xff\xfe", b""]
    async with app:
        await publish(url, *((channel, p) for p in payloads))
        with anyio.fail_after(WAIT):
            for capture in captures.values():
                await capture.wait_for(len(payloads))
        counters = {mode: stats(app, source) for mode, source in sources.items()}

    def shape(mode: str) -> list[tuple[object, str | None]]:
        return [(e.data, e.datacontenttype) for e in captures[mode].events]

    text, json_type, binary = (
        "text/plain; charset=utf-8",
        "application/json",
        ("application/octet-stream"),
    )
    assert shape("auto") == [
        ({"a": [1, 2]}, json_type),
        ("NaN", text),  # strict JSON: NaN is not JSON
        ("plain words", text),
        (b"\xff\xfe", binary),
        ("", text),
    ]
    assert shape("json") == shape("auto")  # published all the same, as text or bytes
    assert shape("text") == [
        ('{"a": [1, 2]}', text),
        ("NaN", text),
        ("plain words", text),
        (b"\xff\xfe", binary),
        ("", text),
    ]
    assert shape("bytes") == [(p, binary) for p in payloads]
    assert {mode: c["malformed"] for mode, c in counters.items()} == {
        "auto": 0,
        "json": 4,
        "text": 1,
        "bytes": 0,
    }
    # One warning for the first malformed payload of a source, the next at debug level.
    json_lines = [r for r in caplog.records if r.getMessage().startswith("/reactor/redis/json")]
    assert [r.levelname for r in json_lines] == ["WARNING", "DEBUG", "DEBUG", "DEBUG"]
    assert "is not JSON (invalid JSON" in json_lines[0].getMessage()
    assert "published it as text/plain" in json_lines[0].getMessage()


# -- connection loss ------------------------------------------------------------------


async def test_a_killed_connection_reconnects_and_announces_a_gap(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    channel = unique("kill")
    secret_url = with_password(url)
    app = Reactor()
    everything, messages = Capture(), Capture()
    app.on_redis_message(channel, url=secret_url, name="watch", status_events=True)(everything)
    app.on_redis_message(channel, url=secret_url, name="quiet")(messages)
    async with app:
        watch, quiet = app.sources
        assert isinstance(watch, RedisSource) and isinstance(quiet, RedisSource)
        await publish(url, (channel, "before"))
        with anyio.fail_after(WAIT):
            await everything.wait_for(1)
            await messages.wait_for(1)
        await kill(url, watch.client_name)
        await kill(url, quiet.client_name)
        with anyio.fail_after(WAIT):
            await everything.wait_for(2)  # the gap: the subscription is back
        await until(lambda: stats(app, quiet)["gaps"] == 1)
        await publish(url, (channel, "after"))
        with anyio.fail_after(WAIT):
            await everything.wait_for(3)
            await messages.wait_for(2)
        counters = stats(app, watch)
        shown = repr(watch) + repr(app.stats())

    before, gap, after = everything.events
    assert (before.data, after.data) == ("before", "after")
    assert gap.type == GAP_EVENT_TYPE
    assert (gap.source, gap.subject) == (watch.uri, watch.uri)
    assert gap.data["reason"] == "reconnected"
    assert gap.data["missed"] is None
    assert datetime.fromisoformat(gap.data["since"]) <= datetime.fromisoformat(gap.data["until"])
    # A handler that did not ask for gap events gets the messages only.
    assert [e.data for e in messages.events] == ["before", "after"]
    assert counters["reconnects"] == 1
    assert counters["gaps"] == 1
    assert counters["received"] == counters["published"] == 2
    assert isinstance(counters["last_error"], str) and "ConnectionError" in counters["last_error"]
    # The outage is logged once when it begins and once when it ends; never the password.
    lines = [r.getMessage() for r in caplog.records if r.name == "reactor.sources.redis"]
    watch_lines = [line for line in lines if line.startswith(watch.uri)]
    assert len(watch_lines) == 2
    assert "lost the connection to redis://:***@" in watch_lines[0]
    assert "again after" in watch_lines[1] and "publishing a gap event" in watch_lines[1]
    assert PASSWORD not in caplog.text
    assert PASSWORD not in shown
    assert ":***@" in repr(watch)


@CONNECT_LEAK
async def test_a_first_connection_that_fails_stops_the_app_from_starting(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    port = free_port()  # nothing listens there
    for target, expected in [
        (f"redis://:{PASSWORD}@127.0.0.1:{port}/0", f"connection to 127.0.0.1:{port}"),
        (url.replace("redis://", f"redis://nobody:{PASSWORD}@", 1), "invalid username-password"),
    ]:
        app = Reactor()
        app.on_redis_message(unique("down"), url=target, name="down")(Capture())
        error = await start_fails(app)
        assert isinstance(error, SourceUnavailableError)
        assert expected in str(error)
        assert "/reactor/redis/down: cannot connect to redis://" in str(error)
        assert ":***@127.0.0.1:" in str(error)
        assert PASSWORD not in str(error)
    assert PASSWORD not in caplog.text
    gc.collect()  # see CONNECT_LEAK


async def test_the_url_comes_from_the_environment(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    channel = unique("env")
    monkeypatch.setenv("REACTOR_REDIS_URL", url)
    app = Reactor()
    capture = Capture()
    app.on_redis_message(channel, name="env")(capture)
    async with app:
        await publish(url, (channel, "hi"))
        with anyio.fail_after(WAIT):
            await capture.wait_for(1)
    monkeypatch.delenv("REACTOR_REDIS_URL")
    with pytest.raises(
        ValueError, match=r"pass url='redis://127.0.0.1:6379/0' or set REACTOR_REDIS_URL"
    ):
        app.on_redis_message(channel, name="none")


async def test_a_full_buffer_drops_messages_and_a_gap_says_how_many(url: str) -> None:
    channel = unique("overflow")
    release = anyio.Event()
    seen: list[Event] = []

    # The app holds one event in its handler and one in its queue; the source holds one
    # waiting for room, and two in its buffer: the rest of a burst is dropped.
    app = Reactor(queue=MemoryQueue(capacity=1), max_in_flight=1)

    @app.on_redis_message(channel, url=url, name="burst", buffer=2, status_events=True)
    async def slow(event: Event) -> None:
        seen.append(event)
        await release.wait()

    async with app:
        (source,) = app.sources
        assert isinstance(source, RedisSource)
        await publish(url, *((channel, str(n)) for n in range(20)))
        await until(lambda: stats(app, source)["received"] == 20)
        release.set()
        await until(lambda: any(e.type == GAP_EVENT_TYPE for e in seen))
        await publish(url, (channel, "later"))
        await until(lambda: bool(seen) and seen[-1].data == "later")
        counters = stats(app, source)

    *messages, gap, later = seen
    assert gap.type == GAP_EVENT_TYPE and later.data == "later"
    assert gap.data["reason"] == "overflow"
    numbers = [int(e.data) for e in messages]
    assert numbers == sorted(numbers)  # in order, with a hole where messages were dropped
    assert counters["dropped"] >= 1
    assert counters["dropped"] + len(numbers) == 20
    assert gap.data["missed"] == counters["dropped"]
    assert counters["gaps"] == 1
    assert counters["received"] == 21
    assert counters["published"] == len(numbers) + 1


# -- configuration --------------------------------------------------------------------


def test_bad_arguments_are_refused_when_decorating() -> None:
    app = Reactor()
    good = "redis://127.0.0.1:6379/0"
    with pytest.raises(ValueError, match="channel must be a non-empty str"):
        app.on_redis_message("", url=good)
    with pytest.raises(ValueError, match="redis://, rediss:// or unix://, got a http scheme"):
        app.on_redis_message("a", url="http://127.0.0.1:6379")
    with pytest.raises(ValueError, match="payload must be one of"):
        app.on_redis_message("a", url=good, payload="xml")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="buffer must be an int >= 1"):
        app.on_redis_message("a", url=good, buffer=0)
    with pytest.raises(TypeError, match="unexpected keyword argument 'channel'"):
        app.on_redis_message("a", url=good, channel="b")  # type: ignore[call-arg]
    assert app.sources == ()


def test_channels_with_glob_characters_are_patterns() -> None:
    assert [redis.is_pattern(c) for c in ("a.b", "a.*", "a?", "a[bc]", r"a\*")] == [
        False,
        True,
        True,
        True,
        True,
    ]
    source = RedisSource("a", "b.*", url="redis://u:pw@h:6379/0", name="x y")
    assert source.channels == ("a", "b.*")
    assert source.uri == source.name == "/reactor/redis/x%20y"
    assert source.client_name == "reactor:x_y"
    assert repr(source) == "RedisSource('a', 'b.*', url='redis://u:***@h:6379/0', name='x y')"


def test_the_test_helper_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="channel must be a non-empty str"):
        redis.message("", b"x")
    with pytest.raises(TypeError, match="data must be bytes or str"):
        redis.message("c", 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="payload must be one of"):
        redis.message("c", b"x", payload="yaml")  # type: ignore[arg-type]
    assert redis.message("c", b"1").source == "/reactor/redis/redis"


async def test_a_missing_extra_names_the_install_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Declaring the source and building events need no coredis; running it does.
    output = await run_without(
        "coredis",
        "from reactor.sources import redis",
        "app.on_redis_message('c', url='redis://127.0.0.1:1/0')(handle)",
        "print(redis.message('c', b'[1]', name=handle).data)",
    )
    assert output == "[1]\n"
    source = RedisSource("c", url="redis://127.0.0.1:6379/0")
    error = await start_without(monkeypatch, "coredis", source)
    assert error == "coredis is not installed; install it with: pip install 'reactor-events[redis]'"
