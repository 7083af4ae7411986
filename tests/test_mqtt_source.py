"""The MQTT source against real brokers, on asyncio and trio.

The shared Mosquitto serves the tests that need no restart; each uses topics and client ids
of its own and makes the broker forget its sessions at the end. The tests that stop the
broker run a Mosquitto of their own (``mqtt_tools.OwnBroker``), with or without
persistence. Waits are on the events themselves, or on the source's counters (polled),
bounded by ``fail_after``; nothing sleeps to let things happen.
"""

from __future__ import annotations

import gc
import logging
import re
import secrets
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import mqtt_tools
import pytest
import services
from mqtt_tools import OwnBroker, publish, unique_topic
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
from reactor.queues.sqlite import SQLiteQueue
from reactor.sources import mqtt
from reactor.sources.mqtt import (
    MESSAGE_TYPE,
    MqttSource,
    check_filter,
    client_id_for,
    topic_matches,
)
from reactor.testing import Capture

pytestmark = pytest.mark.anyio

PASSWORD = "s3cret-pw-41c7"


@pytest.fixture
def url() -> str:
    return services.require("mqtt")


class Sessions:
    """The client ids a test used on the shared broker, whose sessions it forgets."""

    def __init__(self) -> None:
        self.ids: set[str] = set()

    def name(self, label: str) -> str:
        """A source name no other test uses (its client id is derived from it)."""
        name = f"{label}-{secrets.token_hex(4)}"
        self.ids.add(client_id_for("/reactor", name))
        return name


@pytest.fixture
async def sessions(url: str) -> AsyncIterator[Sessions]:
    found = Sessions()
    yield found
    for client_id in found.ids:
        await mqtt_tools.forget_session(url, client_id)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[OwnBroker]:
    yield from _broker(tmp_path / "broker", persistence=True)


def _broker(directory: Path, **options: Any) -> Iterator[OwnBroker]:
    own = OwnBroker(directory, **options)
    own.start()
    try:
        yield own
    finally:
        own.stop()


def stats(app: Reactor, name: str) -> dict[str, Any]:
    return dict(app.stats().sources[f"/reactor/mqtt/{name}"])


# -- topic filters --------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["a", "a/b/c", "+", "#", "a/+/c", "a/#", "+/+", "/", "a//b", "$SYS/#", "$share/g/a/+"],
)
def test_valid_filters_are_accepted(text: str) -> None:
    assert check_filter(text) == text


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "non-empty"),
        ("a/#/b", "'#' must be a whole level, the last one"),
        ("a#", "'#' must be a whole level"),
        ("a/b+", "'+' must be a whole level"),
        ("a\0b", "NUL"),
        ("x" * 65536, "longer than MQTT's limit"),
        ("$share/a", "shared subscription"),
        ("$share//a", "shared subscription"),
        ("$share/g+/a", "shared subscription"),
    ],
)
def test_invalid_filters_are_refused(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=re.escape(error)):
        check_filter(text)


@pytest.mark.parametrize(
    ("topic_filter", "topic", "matches"),
    [
        ("a/b", "a/b", True),
        ("a/b", "a/b/c", False),
        ("a/+", "a/b", True),
        ("a/+", "a/b/c", False),
        ("a/+", "a", False),
        ("a/+", "a/", True),  # an empty level is a level
        ("a/#", "a", True),  # '#' includes the parent level
        ("a/#", "a/b/c", True),
        ("#", "a/b", True),
        ("+/+", "/x", True),
        ("#", "$SYS/broker", False),  # wildcards at the start skip '$' topics
        ("+/broker", "$SYS/broker", False),
        ("$SYS/#", "$SYS/broker", True),
        ("$share/g/a/+", "a/b", True),
        ("sensors/+/temp", "sensors/7/temp", True),
    ],
)
def test_topics_match_filters_as_mqtt_says(topic_filter: str, topic: str, matches: bool) -> None:
    assert topic_matches(topic_filter, topic) is matches


# -- configuration --------------------------------------------------------------------


def test_bad_arguments_are_refused_when_decorating() -> None:
    app = Reactor()
    good = "mqtt://127.0.0.1:1883"
    with pytest.raises(ValueError, match="'#' must be a whole level"):
        app.on_mqtt("a/#/b", url=good)
    with pytest.raises(ValueError, match="qos must be one of 0, 1, got 2"):
        app.on_mqtt("a", url=good, qos=2)  # type: ignore[arg-type]
    for bad, message in [
        ("http://h:1883", "mqtt:// or mqtts://, got a http scheme"),
        ("mqtt://:1883", "has no host"),
        ("mqtt://h:99999", "not a valid MQTT URL"),
        ("mqtt://h:1883/topic", "has a path"),
    ]:
        with pytest.raises(ValueError, match=message):
            app.on_mqtt("a", url=bad)
    with pytest.raises(ValueError, match=r"protocol must be one of '5', '3\.1\.1'"):
        app.on_mqtt("a", url=good, protocol="4")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="keepalive must be at most 65535"):
        app.on_mqtt("a", url=good, keepalive=70000)
    with pytest.raises(ValueError, match="session_expiry must be at most 4294967295"):
        app.on_mqtt("a", url=good, session_expiry=2**32)
    with pytest.raises(ValueError, match="client_id must be a non-empty str"):
        app.on_mqtt("a", url=good, client_id="")
    with pytest.raises(TypeError, match="unexpected keyword argument 'topic'"):
        app.on_mqtt("a", url=good, topic="b")  # type: ignore[call-arg]
    assert app.sources == ()


def test_the_client_id_is_stable_per_app_and_source() -> None:
    first = client_id_for("/shop", "record")
    assert first == client_id_for("/shop", "record")
    assert first.startswith("reactor-record-") and len(first) == len("reactor-record-") + 12
    assert first != client_id_for("/shop", "other") != client_id_for("/billing", "record")
    assert client_id_for("/shop", "Ünïcode name!").startswith("reactor-n-code-name-")
    assert len(client_id_for("/shop", "x" * 500)) <= 53
    source = MqttSource("a/#", url="mqtts://u:pw@broker", name="x y", client_id="mine")
    assert source.client_id == "mine"
    assert source.uri == source.name == "/reactor/mqtt/x%20y"
    assert repr(source) == ("MqttSource('a/#', url='mqtts://u:***@broker', name='x y', qos=1)")
    assert MqttSource("a", url="mqtt://h").client_id is None  # derived when it starts


def test_the_test_helper_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="has a wildcard"):
        mqtt.message("a/+", b"x")
    with pytest.raises(ValueError, match="does not match the filter 'b/#'"):
        mqtt.message("a/b", b"x", topic_filter="b/#")
    with pytest.raises(TypeError, match="data must be bytes or str"):
        mqtt.message("a", 1)  # type: ignore[arg-type]
    event = mqtt.message("a/b", "21.5", retain=True)
    assert (event.source, event.subject, event.data) == ("/reactor/mqtt/mqtt", "a/b", 21.5)
    assert dict(event.extensions) == {"mqttfilter": "a/b", "mqttretain": True}


# -- events ---------------------------------------------------------------------------


async def test_messages_become_events(url: str, sessions: Sessions) -> None:
    base = unique_topic("events")
    name = sessions.name("record")
    # A retained message is there before the source subscribes: it is sent on subscribing.
    await publish(url, (f"{base}/retained", b"kept"), retain=True)
    app = Reactor()
    capture = Capture()
    app.on_mqtt(f"{base}/+/temperature", f"{base}/#", url=url, name=name)(capture)
    try:
        async with app:
            with anyio.fail_after(WAIT):
                await capture.wait_for(1)
            await publish(
                url,
                (f"{base}/7/temperature", b"21.5"),
                (f"{base}/7/humidity", b'{"rel": 40}'),
                (f"{base}/raw", b"\xff\x00"),
                (f"{base}/text", "plain words"),
                (unique_topic("elsewhere"), b"nobody listens"),
            )
            with anyio.fail_after(WAIT):
                events = await capture.wait_for(5)
            counters = stats(app, name)
    finally:
        await publish(url, (f"{base}/retained", b""), retain=True)  # no retained message left

    assert [(e.type, e.source, e.subject) for e in events] == [
        (MESSAGE_TYPE, f"/reactor/mqtt/{name}", f"{base}/retained"),
        (MESSAGE_TYPE, f"/reactor/mqtt/{name}", f"{base}/7/temperature"),
        (MESSAGE_TYPE, f"/reactor/mqtt/{name}", f"{base}/7/humidity"),
        (MESSAGE_TYPE, f"/reactor/mqtt/{name}", f"{base}/raw"),
        (MESSAGE_TYPE, f"/reactor/mqtt/{name}", f"{base}/text"),
    ]
    assert [(e.data, e.datacontenttype) for e in events] == [
        ("kept", "text/plain; charset=utf-8"),
        (21.5, "application/json"),
        ({"rel": 40}, "application/json"),
        (b"\xff\x00", "application/octet-stream"),
        ("plain words", "text/plain; charset=utf-8"),
    ]
    assert [dict(e.extensions) for e in events] == [
        {"mqttfilter": f"{base}/#", "mqttretain": True},
        {"mqttfilter": f"{base}/+/temperature", "mqttretain": False},
        {"mqttfilter": f"{base}/#", "mqttretain": False},
        {"mqttfilter": f"{base}/#", "mqttretain": False},
        {"mqttfilter": f"{base}/#", "mqttretain": False},
    ]
    # The temperature matched both filters: MQTT 5 sent two copies, one was published.
    assert counters == {
        "received": 6,
        "published": 5,
        "malformed": 0,
        "reconnects": 0,
        "gaps": 0,
        "oversized": 0,
        "unmatched": 0,
        "duplicates": 1,
        "last_error": None,
        "client_id": client_id_for("/reactor", name),
    }
    assert [Event.from_json(e.to_json()) for e in events] == events


async def test_mqtt_3_1_1_and_the_payload_option(url: str, sessions: Sessions) -> None:
    base = unique_topic("v311")
    name = sessions.name("v311")
    app = Reactor()
    capture = Capture()
    app.on_mqtt(f"{base}/#", url=url, name=name, protocol="3.1.1", payload="json")(capture)
    async with app:
        await publish(url, (f"{base}/a", b"[1, 2]"), (f"{base}/b", b"not json"))
        with anyio.fail_after(WAIT):
            events = await capture.wait_for(2)
        counters = stats(app, name)
    assert [(e.data, e.datacontenttype) for e in events] == [
        ([1, 2], "application/json"),
        ("not json", "text/plain; charset=utf-8"),
    ]
    assert (counters["received"], counters["published"], counters["malformed"]) == (2, 2, 1)


async def test_the_test_helper_builds_the_event_the_source_publishes(
    url: str, sessions: Sessions
) -> None:
    base = unique_topic("helper")
    name = sessions.name("helper")
    app = Reactor()
    capture = Capture()
    app.on_mqtt(f"{base}/+/t", url=url, name=name)(capture)
    async with app:
        await publish(url, (f"{base}/1/t", b"21.5"))
        with anyio.fail_after(WAIT):
            (received,) = await capture.wait_for(1)
        built = mqtt.message(f"{base}/1/t", b"21.5", topic_filter=f"{base}/+/t", name=name)
        assert without_id_and_time(built) == without_id_and_time(received)
        # The handler is subscribed to exactly such events.
        at = datetime(2030, 1, 1, tzinfo=UTC)
        receipt = await app.publish_and_wait(mqtt.message("x", b"1", name=name, time=at))
    assert receipt.outcomes[name].status == "ok"
    assert capture.events[-1].time == at


async def test_messages_sent_while_the_app_is_away_are_delivered_when_it_is_back(
    url: str, sessions: Sessions, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="reactor.sources.mqtt")
    base = unique_topic("away")
    name = sessions.name("away")

    def make() -> tuple[Reactor, Capture]:
        app = Reactor()
        capture = Capture()
        app.on_mqtt(f"{base}/#", url=url, name=name, status_events=True)(capture)
        return app, capture

    first, seen_first = make()
    async with first:
        await publish(url, (f"{base}/n", "0"))
        with anyio.fail_after(WAIT):
            await seen_first.wait_for(1)
    # The app is away (a restart, a deploy): the broker keeps what is sent meanwhile.
    await publish(url, *((f"{base}/n", str(n)) for n in range(1, 4)))
    second, seen_second = make()
    async with second:
        with anyio.fail_after(WAIT):
            events = await seen_second.wait_for(3)
        await publish(url, (f"{base}/n", "4"))
        with anyio.fail_after(WAIT):
            await seen_second.wait_for(4)
    assert [e.data for e in seen_first.events] == [0]
    assert [e.data for e in seen_second.events] == [1, 2, 3, 4]  # and no gap event
    assert all(e.type == MESSAGE_TYPE for e in events)
    messages = [r.getMessage() for r in caplog.records]
    assert any("a new one starts" in m for m in messages)
    assert any("resuming the session the broker kept" in m for m in messages)


async def test_a_subscription_the_code_no_longer_has_is_dropped_and_counted(
    url: str, sessions: Sessions, caplog: pytest.LogCaptureFixture
) -> None:
    base = unique_topic("stale")
    name = sessions.name("stale")
    before = Reactor()
    before.on_mqtt(f"{base}/old/#", url=url, name=name)(Capture())
    async with before:
        pass
    after = Reactor()
    capture = Capture()
    after.on_mqtt(f"{base}/new/#", url=url, name=name)(capture)
    async with after:
        await publish(url, (f"{base}/old/x", b"1"), (f"{base}/new/x", b"2"))
        with anyio.fail_after(WAIT):
            await capture.wait_for(1)
        counters = stats(after, name)
    assert [e.data for e in capture.events] == [2]
    assert counters["unmatched"] == 1
    assert "matches none of this source's topic filters" in caplog.text


# -- restarts of a broker of the test's own --------------------------------------------


async def test_a_broker_restart_that_keeps_the_session_loses_nothing(
    broker: OwnBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="reactor.sources.mqtt")
    release = anyio.Event()
    seen: list[Event] = []
    # One event in the handler, one in the queue, one waiting for room (so not yet
    # acknowledged to the broker), and one still at the broker when it stops.
    app = Reactor(queue=MemoryQueue(capacity=1), max_in_flight=1)

    @app.on_mqtt("jobs/#", url=broker.url, name="jobs", status_events=True)
    async def work(event: Event) -> None:
        seen.append(event)
        await release.wait()

    async with app:
        await publish(broker.url, *((f"jobs/{n}", str(n)) for n in range(4)))
        await until(lambda: stats(app, "jobs")["received"] >= 3)
        broker.stop()
        broker.start()
        release.set()
        await until(lambda: stats(app, "jobs")["reconnects"] == 1)
        await publish(broker.url, ("jobs/4", "4"))
        await until(lambda: 4 in [e.data for e in seen])
        counters = stats(app, "jobs")

    assert all(e.type == MESSAGE_TYPE for e in seen)  # no gap event
    numbers = [e.data for e in seen]
    # At least once: the message that was not acknowledged when the connection broke
    # came again, from the session the broker kept; no gap.
    assert set(numbers) == {0, 1, 2, 3, 4}
    assert numbers[:3] == [0, 1, 2]
    assert (counters["reconnects"], counters["gaps"]) == (1, 0)
    assert "nothing was missed meanwhile" in caplog.text


async def test_a_lost_session_is_announced_with_a_gap_event(broker: OwnBroker) -> None:
    app = Reactor()
    capture = Capture()
    app.on_mqtt("alerts/#", url=broker.url, name="alerts", status_events=True)(capture)
    async with app:
        await publish(broker.url, ("alerts/a", "before"))
        with anyio.fail_after(WAIT):
            await capture.wait_for(1)
        broker.stop()
        broker.wipe()  # the broker forgets every session
        broker.start()
        with anyio.fail_after(WAIT):
            await capture.wait_for(2)
        await publish(broker.url, ("alerts/a", "after"))  # subscribed again
        with anyio.fail_after(WAIT):
            await capture.wait_for(3)
        counters = stats(app, "alerts")
    before, gap, after = capture.events
    assert (before.data, after.data) == ("before", "after")
    assert gap.type == GAP_EVENT_TYPE
    assert (gap.source, gap.subject) == ("/reactor/mqtt/alerts", "/reactor/mqtt/alerts")
    assert gap.data["reason"] == "session lost"
    assert datetime.fromisoformat(gap.data["since"]) <= datetime.fromisoformat(gap.data["until"])
    assert (counters["reconnects"], counters["gaps"]) == (1, 1)
    assert isinstance(counters["last_error"], str)


async def test_qos_0_announces_every_reconnection(broker: OwnBroker) -> None:
    app = Reactor()
    capture = Capture()
    app.on_mqtt("q0/#", url=broker.url, name="q0", qos=0, status_events=True)(capture)
    async with app:
        broker.stop()
        broker.start()  # its store has the session... which QoS 0 never asked for
        with anyio.fail_after(WAIT):
            (gap,) = await capture.wait_for(1)
        await publish(broker.url, ("q0/a", "after"), qos=0)
        with anyio.fail_after(WAIT):
            await capture.wait_for(2)
    assert gap.type == GAP_EVENT_TYPE and gap.data["reason"] == "reconnected"
    assert capture.events[1].data == "after"


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[OwnBroker]:
    yield from _broker(tmp_path / "guarded", users={"app": PASSWORD})


async def test_credentials_and_passwords(
    guarded: OwnBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    good = guarded.url.replace("mqtt://", f"mqtt://app:{PASSWORD}@")
    wrong = guarded.url.replace("mqtt://", f"mqtt://app:not-{PASSWORD}@")
    refused = Reactor()
    refused.on_mqtt("a/#", url=wrong, name="refused")(Capture())
    error = await start_fails(refused)
    assert isinstance(error, SourceUnavailableError)
    assert "the broker refused the connection: Not authorized" in str(error)
    assert f"mqtt://app:***@127.0.0.1:{guarded.port}" in str(error)

    app = Reactor()
    capture = Capture()
    app.on_mqtt("a/#", url=good, name="allowed")(capture)
    async with app:
        guarded.stop()
        guarded.start()
        await until(lambda: stats(app, "allowed")["reconnects"] == 1)
        await publish(guarded.url, ("a/b", "in"), auth=("app", PASSWORD))
        with anyio.fail_after(WAIT):
            await capture.wait_for(1)
        shown = repr(app.sources) + repr(app.stats())
    assert PASSWORD not in caplog.text
    assert PASSWORD not in shown
    assert "lost the connection to mqtt://app:***@" in caplog.text


async def test_a_broker_that_does_not_answer_stops_the_app_from_starting() -> None:
    app = Reactor()
    app.on_mqtt("a", url=f"mqtt://u:{PASSWORD}@127.0.0.1:{free_port()}", name="d")(Capture())
    error = await start_fails(app)
    assert isinstance(error, SourceUnavailableError)
    assert "/reactor/mqtt/d: cannot connect to mqtt://u:***@127.0.0.1:" in str(error)
    assert "ConnectionRefusedError" in str(error)
    assert PASSWORD not in str(error)


async def test_an_event_too_large_for_the_queue_is_published_without_its_payload(
    url: str, sessions: Sessions, tmp_path: Path
) -> None:
    base = unique_topic("large")
    name = sessions.name("large")

    def make() -> tuple[Reactor, Capture]:
        app = Reactor(queue=SQLiteQueue(tmp_path / "events.db", max_event_size=4096))
        capture = Capture()
        app.on_mqtt(f"{base}/#", url=url, name=name)(capture)
        return app, capture

    app, capture = make()
    async with app:
        await publish(url, (f"{base}/big", b"x" * 10_000), (f"{base}/small", b"ok"))
        with anyio.fail_after(WAIT):
            await capture.wait_for(2)
        counters = stats(app, name)
    assert [e.subject for e in capture.events] == [f"{base}/big", f"{base}/small"]
    assert capture.events[0].data == (
        "payload dropped: the event was 10336 bytes, over the queue's limit of 4096"
    )
    assert (counters["received"], counters["published"], counters["oversized"]) == (2, 2, 1)
    # Acknowledged: the broker does not send it again.
    app, capture = make()
    async with app:
        await publish(url, (f"{base}/next", b"1"))
        with anyio.fail_after(WAIT):
            await capture.wait_for(1)
    assert [e.subject for e in capture.events] == [f"{base}/next"]


async def test_the_url_comes_from_the_environment(
    url: str, sessions: Sessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = unique_topic("env")
    name = sessions.name("env")
    monkeypatch.setenv("REACTOR_MQTT_URL", url)
    app = Reactor()
    capture = Capture()
    app.on_mqtt(f"{base}/#", name=name)(capture)
    async with app:
        await publish(url, (f"{base}/a", "hi"))
        with anyio.fail_after(WAIT):
            await capture.wait_for(1)
    monkeypatch.delenv("REACTOR_MQTT_URL")
    with pytest.raises(
        ValueError, match=r"pass url='mqtt://127\.0\.0\.1:1883' or set REACTOR_MQTT_URL"
    ):
        app.on_mqtt("a", name="none")


async def test_a_missing_extra_names_the_install_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Declaring the source and building events need no paho; running it does.
    output = await run_without(
        "paho",
        "from reactor.sources import mqtt",
        "app.on_mqtt('a/#', url='mqtt://127.0.0.1:1')(handle)",
        "print(mqtt.message('a/b', b'[1]', name=handle).data)",
    )
    assert output == "[1]\n"
    source = MqttSource("a", url="mqtt://127.0.0.1:1883")
    error = await start_without(monkeypatch, "paho.mqtt.client", source)
    assert error == (
        "paho.mqtt.client is not installed; install it with: pip install 'reactor-events[mqtt]'"
    )
    gc.collect()
