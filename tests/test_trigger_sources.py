"""What the PostgreSQL, Redis, MQTT and object storage triggers share, checked on each (no
server needed).

Their names, the URI of their events and the key of their statistics, the options their
decorators and classes take, how a test helper says which source an event comes from, and
the ``decode`` option of the broker triggers.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import attrs
import pytest

from reactor import Event, Handler, Reactor, Subscription
from reactor.abc import GAP_EVENT_TYPE, Source
from reactor.sources import mqtt, objects, postgres, redis

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
    #: where an event of the helper names its source's URI (the poller's object events
    #: keep the bucket's source, and name the poller in an extension)
    origin: Callable[[Event], str] = lambda event: event.source


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
    Trigger(
        "objects",
        lambda app, **kw: app.on_bucket_change("s3://uploads/in/", **kw),
        lambda **kw: objects.BucketPollSource("s3://uploads/in/", **kw),
        lambda **kw: objects.bucket_change("created", "uploads", "in/a.csv", **kw),
        origin=lambda event: str(event.extensions[objects.POLLER_EXTENSION]),
    ),
]
IDS = ["on_pg_notify", "on_row_change", "on_redis_message", "on_mqtt", "on_bucket_change"]
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
    assert trigger.origin(trigger.helper(name=on_order)) == uri
    assert trigger.origin(trigger.helper(name="on_order")) == uri
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


def test_an_http_route_for_bucket_events_is_known_by_its_path() -> None:
    app = Reactor()
    app.on_bucket_event("/minio/events")(on_order)
    (route,) = (s for s in app.sources if isinstance(s, objects.BucketEvents))
    uri = "/reactor/objects/%2Fminio%2Fevents"
    assert (route.name, route.uri) == (uri, uri)
    assert uri in app.stats().sources


# -- decode="s3" on the broker triggers ------------------------------------------------


@attrs.frozen
class Decoding:
    #: the decorator, bound to an app, with the trigger's arguments
    decorator: Callable[..., Callable[[Handler], Handler]]
    #: the source's class, with the trigger's arguments
    source: Callable[..., Source]
    #: an event of the trigger's own, from the source named ``on_order``
    own: Event
    #: whether the decorator takes ``status_events``
    status_events: bool = True


DECODING = [
    Decoding(
        lambda app, **kw: app.on_pg_notify("minio", dsn=DSN, **kw),
        lambda **kw: postgres.PgNotifySource("minio", dsn=DSN, **kw),
        postgres.notification("minio", "{}", name="on_order"),
    ),
    Decoding(
        lambda app, **kw: app.on_row_change("public.minio_events", dsn=DSN, **kw),
        lambda **kw: postgres.RowChangeSource("public.minio_events", dsn=DSN, **kw),
        postgres.row_change("public.minio_events", "insert", {"id": 1}, name="on_order"),
        status_events=False,
    ),
    Decoding(
        lambda app, **kw: app.on_redis_message("minio", url=REDIS, **kw),
        lambda **kw: redis.RedisSource("minio", url=REDIS, **kw),
        redis.message("minio", b"{}", name="on_order"),
    ),
    Decoding(
        lambda app, **kw: app.on_mqtt("minio/events", url=MQTT, **kw),
        lambda **kw: mqtt.MqttSource("minio/events", url=MQTT, **kw),
        mqtt.message("minio/events", b"{}", name="on_order"),
    ),
]
each_decoding = pytest.mark.parametrize("trigger", DECODING, ids=IDS[:4])


def delivered(subscription: Subscription, event: Event) -> bool:
    """Whether *subscription* gets *event* (its type and source globs, then its filter)."""
    if not subscription.matches(event.type, event.source):
        return False
    return subscription.where is None or bool(subscription.where(event))


@each_decoding
def test_decode_s3_hands_the_handler_the_object_events_that_pass_its_filter(
    trigger: Decoding,
) -> None:
    app = Reactor()
    trigger.decorator(app, decode="s3", bucket="images", suffix=".jpg", events=["ObjectCreated:*"])(
        on_order
    )
    (subscription,) = app.subscriptions
    assert subscription.pattern == "com.amazonaws.s3.*"
    # Whichever transport brought it: the events of the HTTP routes and the poller too.
    assert delivered(subscription, objects.bucket_event("ObjectCreated:Put", "images", "a.jpg"))
    assert delivered(
        subscription, objects.bucket_change("created", "images", "b.jpg", name="poller")
    )
    assert not delivered(
        subscription, objects.bucket_event("ObjectRemoved:Delete", "images", "a.jpg")
    )
    assert not delivered(subscription, objects.bucket_event("ObjectCreated:Put", "other", "a.jpg"))
    assert not delivered(subscription, objects.bucket_event("ObjectCreated:Put", "images", "a.png"))
    assert not delivered(subscription, trigger.own)  # the trigger's own events: none come
    (source,) = app.sources
    # The source is named and counted as without decode; "filtered" is added.
    assert source.name == trigger.own.source
    assert source.statistics()["filtered"] == 0


@each_decoding
def test_decode_s3_with_status_events_adds_the_gap_events_of_the_source(
    trigger: Decoding,
) -> None:
    app = Reactor()
    if not trigger.status_events:
        with pytest.raises(TypeError, match="unexpected keyword argument 'status_events'"):
            trigger.decorator(app, decode="s3", status_events=True)
        return
    trigger.decorator(app, decode="s3", bucket="images", status_events=True)(on_order)
    (subscription,) = app.subscriptions
    (source,) = app.sources
    gap = source.gap_event(app, reason="reconnected")
    assert gap.type == GAP_EVENT_TYPE and delivered(subscription, gap)
    assert delivered(subscription, objects.bucket_event("ObjectCreated:Put", "images", "a"))
    assert not delivered(subscription, objects.bucket_event("ObjectCreated:Put", "other", "a"))
    # Another source's gap events are not its.
    assert not delivered(
        subscription, postgres.PgNotifySource("x", dsn=DSN).gap_event(app, reason="reconnected")
    )


@each_decoding
def test_without_decode_nothing_changes(trigger: Decoding) -> None:
    app = Reactor()
    trigger.decorator(app)(on_order)
    (subscription,) = app.subscriptions
    (source,) = app.sources
    assert delivered(subscription, trigger.own)
    assert not delivered(subscription, objects.bucket_event("ObjectCreated:Put", "images", "a"))
    assert "filtered" not in source.statistics()


@each_decoding
@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"bucket": "images"}, ValueError, "bucket= filters decoded records: give decode='s3'"),
        (
            {"prefix": "in/", "events": ["ObjectCreated:*"]},
            ValueError,
            "prefix=, events= filter decoded records",
        ),
        ({"decode": "xml"}, ValueError, "decode must be one of"),
        ({"decode": 1}, TypeError, "decode must be one of"),
        ({"decode": "s3", "events": "ObjectCreated:*"}, TypeError, "list of event name"),
        ({"decode": "s3", "bucket": ""}, ValueError, "bucket"),
        ({"decode": "s3", "bucket": 7}, TypeError, "bucket must be a str"),
    ],
)
def test_the_decode_options_are_checked_where_they_are_given(
    trigger: Decoding, options: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        trigger.decorator(Reactor(), **options)
    with pytest.raises(error, match=match):
        trigger.source(**options)


@pytest.mark.parametrize("trigger", [DECODING[0], *DECODING[2:]], ids=[IDS[0], *IDS[2:4]])
def test_the_payload_option_does_not_apply_with_decode(trigger: Decoding) -> None:
    with pytest.raises(ValueError, match="payload='json' does not apply with decode='s3'"):
        trigger.decorator(Reactor(), decode="s3", payload="json")
    trigger.decorator(Reactor(), decode="s3", payload="auto")  # the default: fine


def test_a_row_change_source_decodes_a_column_of_the_inserted_rows() -> None:
    table = "public.minio_events"
    with pytest.raises(ValueError, match="column= names the column that decode= reads"):
        postgres.on_row_change(Reactor(), table, dsn=DSN, column="event_data")
    with pytest.raises(ValueError, match="decode= reads the inserted rows"):
        postgres.on_row_change(Reactor(), table, dsn=DSN, decode="s3", ops=("insert", "delete"))
    with pytest.raises(ValueError, match="column must be a non-empty str"):
        postgres.RowChangeSource(table, dsn=DSN, decode="s3", column="")
    # Taken: ops left at its default (every operation), or inserts only.
    postgres.RowChangeSource(table, dsn=DSN, decode="s3")
    postgres.RowChangeSource(table, dsn=DSN, decode="s3", ops=("insert",), column="message")
