"""What the PostgreSQL, Redis and MQTT triggers share, checked on each (no server needed).

Their names, the URI of their events and the key of their statistics, the options their
decorators and classes take, and how a test helper says which source an event comes from.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import attrs
import pytest

from reactor import Event, Handler, Reactor
from reactor.abc import Source
from reactor.sources import mqtt, postgres, redis

DSN = "postgresql://127.0.0.1/db"
REDIS = "redis://127.0.0.1:6379/0"
MQTT = "mqtt://127.0.0.1:1883"


@attrs.frozen
class Trigger:
    #: the ``<kind>`` in ``/reactor/<kind>/<name>``
    kind: str
    #: the decorator, bound to an app, with the trigger's arguments
    decorator: Callable[..., Callable[[Handler], Handler]]
    #: the source's class, with the trigger's arguments
    source: Callable[..., Source]
    #: the test helper, with the arguments of one event
    helper: Callable[..., Event]
    #: whether the decorator takes ``status_events`` (a source that publishes gap events)
    status_events: bool = True


TRIGGERS = [
    Trigger(
        "postgres",
        lambda app, **kw: app.on_pg_notify("orders", dsn=DSN, **kw),
        lambda **kw: postgres.PgNotifySource("orders", dsn=DSN, **kw),
        lambda **kw: postgres.notification("orders", '{"id": 1}', **kw),
    ),
    Trigger(
        "postgres",
        lambda app, **kw: app.on_row_change("public.orders", dsn=DSN, **kw),
        lambda **kw: postgres.RowChangeSource("public.orders", dsn=DSN, **kw),
        lambda **kw: postgres.row_change("public.orders", "delete", {"id": 7}, **kw),
        status_events=False,  # a change log has no gaps
    ),
    Trigger(
        "redis",
        lambda app, **kw: app.on_redis_message("alerts.*", url=REDIS, **kw),
        lambda **kw: redis.RedisSource("alerts.*", url=REDIS, **kw),
        lambda **kw: redis.message("alerts.cpu", b"9.5", **kw),
    ),
    Trigger(
        "mqtt",
        lambda app, **kw: app.on_mqtt("sensors/#", url=MQTT, **kw),
        lambda **kw: mqtt.MqttSource("sensors/#", url=MQTT, **kw),
        lambda **kw: mqtt.message("sensors/7", b"21.5", **kw),
    ),
]
IDS = ["on_pg_notify", "on_row_change", "on_redis_message", "on_mqtt"]
each_trigger = pytest.mark.parametrize("trigger", TRIGGERS, ids=IDS)


async def on_order(event: Event) -> None:
    pass


@each_trigger
def test_the_test_helper_names_the_source_by_its_handler(trigger: Trigger) -> None:
    app = Reactor()
    trigger.decorator(app)(on_order)
    (source,) = app.sources
    uri = f"/reactor/{trigger.kind}/on_order"
    # The handler is subscribed to its source's URI: the helper's event reaches it.
    assert (source.name, getattr(source, "uri", None)) == (uri, uri)
    assert trigger.helper(name=on_order).source == uri
    assert trigger.helper(name="on_order").source == uri
    with pytest.raises(TypeError, match="name must be a source's name or a handler"):
        trigger.helper(name=1)
    with pytest.raises(ValueError, match="name must be a non-empty str"):
        trigger.helper(name="")


@each_trigger
def test_a_source_is_known_by_its_uri(trigger: Trigger) -> None:
    app = Reactor()
    trigger.decorator(app, name="the orders")(on_order)
    (source,) = app.sources
    uri = f"/reactor/{trigger.kind}/the%20orders"
    # The key of its statistics in app.stats().sources, and the source of its gap events.
    assert source.name == uri
    assert list(app.stats().sources) == [uri]
    gap = source.gap_event(app, reason="reconnected")
    assert (gap.source, gap.subject, gap.data["source"]) == (uri, uri, uri)
    assert trigger.source(name="the orders").name == uri


@each_trigger
def test_status_events_hands_the_handler_every_event_of_its_source(trigger: Trigger) -> None:
    app = Reactor()
    if not trigger.status_events:
        with pytest.raises(TypeError, match="unexpected keyword argument 'status_events'"):
            trigger.decorator(app, status_events=True)
        return
    with pytest.raises(TypeError, match="status_events must be a bool"):
        trigger.decorator(app, status_events=1)
    trigger.decorator(app, status_events=True)(on_order)
    (subscription,) = app.subscriptions
    assert subscription.pattern == "*"


@each_trigger
def test_the_source_class_refuses_an_unknown_option(trigger: Trigger) -> None:
    options: dict[str, Any] = {"colour": 1}
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
        trigger.source(**options)
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
        trigger.decorator(Reactor(), **options)


@pytest.mark.parametrize(
    ("subscribe", "what", "name"),
    [
        (lambda *names: redis.on_redis_message(Reactor(), *names, url=REDIS), "channel", "a.*"),
        (lambda *names: mqtt.on_mqtt(Reactor(), *names, url=MQTT), "topic filter", "a/#"),
    ],
    ids=["on_redis_message", "on_mqtt"],
)
def test_a_source_subscribes_to_one_name_at_least_and_to_each_once(
    subscribe: Callable[..., object], what: str, name: str
) -> None:
    with pytest.raises(ValueError, match=f"give at least one {what}"):
        subscribe()
    with pytest.raises(ValueError, match=re.escape(f"{name!r} is given twice")):
        subscribe(name, "b", name)
