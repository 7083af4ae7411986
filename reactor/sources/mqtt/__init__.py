"""MQTT: a ``reactor.mqtt.message`` event for every message on topic filters.

Needs the ``mqtt`` extra (`paho-mqtt <https://pypi.org/project/paho-mqtt/>`_ 2.x); works on
asyncio **and trio**: the source drives paho's protocol engine with anyio itself (paho's
external-loop API), not through an asyncio-only client. MQTT 5 by default, 3.1.1 on
request. ::

    from reactor.sources import mqtt

    @app.on_mqtt("sensors/+/temperature", url="mqtt://127.0.0.1:1883", qos=1)
    async def record(event: Event) -> None:        # or mqtt.on_mqtt(app, ...)
        print(event.subject, event.data)           # "sensors/7/temperature", 21.5

**Subscriptions.** Each source has one connection and subscribes to all its topic filters
(``+``: one level, ``#``: the rest; ``$share/<group>/<filter>``: a shared subscription).
Filters are checked when registered. An incoming topic is matched against the filters in
the order given; the first that matches is recorded in the event. When a message matches
several filters, an MQTT 5 broker sends one copy per filter: the source publishes one event
(the first filter's copy) and drops the others (counted as ``duplicates``); an MQTT 3.1.1
broker may send one or several (Mosquitto sends one).

**Events.** One per message: type :data:`MESSAGE_TYPE` (``"reactor.mqtt.message"``),
source ``/reactor/mqtt/<name>`` (the source's name, percent-encoded; a decorated handler's
is its consumer name), subject the topic, time when it was received, and:

* data: the payload under the ``payload`` option: ``"auto"`` (default) gives the parsed
  JSON value when it parses (``datacontenttype`` ``application/json``; ``b"21.5"`` becomes
  ``21.5``), else the text when it is UTF-8 (``text/plain; charset=utf-8``), else the
  bytes (``application/octet-stream``); ``"json"`` expects JSON and publishes anything
  else as text or bytes, counted as ``malformed`` (logged once per 1,000, never stopping
  the source); ``"text"`` and ``"bytes"`` never parse;
* the extensions :data:`FILTER_EXTENSION` (``mqttfilter``: the filter the topic matched)
  and :data:`RETAIN_EXTENSION` (``mqttretain``: a retained message, sent because the
  subscription is new).

**Delivery with ``qos=1`` (the default): at-least-once while the broker keeps the
session, a gap event when it did not.**

* The source connects with a persistent session (MQTT 5: clean start off, session expiry
  ``session_expiry`` seconds, default 3,600; MQTT 3.1.1: clean session off, expiry as the
  broker is configured) under a client id that is the same on every restart (derived from
  the app's source and the source's name, :func:`client_id_for`; ``client_id=`` overrides
  it). While the app is away (a restart, a lost connection) the broker keeps the QoS 1
  messages for it and sends them when it is back.
* A message is acknowledged (PUBACK) only once the app's queue accepted its event
  (``await app.publish``): one that was not, because the connection or the process ended
  first, is sent again by the broker. With a durable queue that makes every message reach
  the handlers at least once; with the in-memory queue, events accepted but not yet
  handled are lost with the process, as any event is. A message may be handled twice (it
  was accepted, but its PUBACK was lost with the connection).
* Nothing more is read from the broker while the app's queue is full (the source waits in
  ``app.publish``), so the broker holds the backlog, within its own limits (Mosquitto:
  ``max_queued_messages``, 1,000 per client by default, beyond which it drops QoS 1
  messages without telling the client: raise it for bursts larger than that). A queue
  that stays full for longer than about the ``keepalive`` interval also leaves the
  broker's answers to pings unread: the connection is then taken as dead and reopened,
  and the broker sends again what was not acknowledged (nothing lost; a logged
  reconnection, and possibly messages handled twice).
* When the source reconnects and the broker has no session any more (it restarted
  without persistence, or the session expired), messages were lost: the source publishes
  a gap event (type ``"reactor.source.gap"``, source the source's URI, data ``{"reason":
  "session lost", "since": <when the connection was lost>, "until": ..., "missed":
  null}``) before the first message of the new session (``status_events=True`` hands it
  to the decorated handler too). A reconnection that found the session is logged, and
  needs no gap event. At the first connection of a process, a
  missing session cannot be told from a new client: it is logged (info), not announced.

**With ``qos=0``:** at-most-once. No session is kept (clean start), and every
reconnection publishes a gap event (reason ``"reconnected"``). QoS 2 is refused: paho keeps
the state of exactly-once deliveries in memory only, so after a crash it would lose
messages QoS 1 redelivers.

**Connection.** The first connection must succeed: a wrong address, refused credentials
or a refused subscription raise :class:`reactor.SourceUnavailableError` out of ``async with
app:``. A connection lost later (the broker went away, a keepalive went unanswered, the
broker took the session over for another connection with the same client id) is
reopened forever with capped exponential backoff (0.1 s doubling to 5 s, on the app's
clock), subscribing again each time (so a filter added to the code is subscribed, and
MQTT 5 resends no retained messages for subscriptions the session had; MQTT 3.1.1 resends
them). A subscription an earlier run made and the code no longer has stays in the session:
its messages are acknowledged and dropped (``unmatched``, with one warning).

**Bucket notifications** (``decode="s3"``, with the filter options ``bucket``,
``prefix``, ``suffix`` and ``events``): each message is an S3 event notification, as
MinIO's MQTT target publishes them, published as one object event per record (the
CloudEvents of :mod:`reactor.sources.objects`, the same as over HTTP) in place of the
message's event; the handler receives those that pass its filter. A message is
acknowledged once all its events are in the app's queue, so the guarantee is as above;
records that cannot be decoded are counted as ``malformed``, filtered ones as
``filtered``::

    @app.on_mqtt("minio/events", url="mqtt://127.0.0.1:1883", decode="s3",
                 bucket="uploads", suffix=".csv", events=["ObjectCreated:*"])
    async def load(event: Event) -> None:
        key = event.subject                        # the object's key

**Statistics** (``app.stats().sources["/reactor/mqtt/<name>"]``): ``received``,
``published``, ``malformed``, ``reconnects``, ``gaps``, ``oversized`` (events too large for
the app's queue: published without their payload, with a note saying so, and logged),
``unmatched``, ``duplicates``, ``last_error`` and ``client_id``; with ``decode``, also
``filtered``.

**Configuration.** ``url=`` or else the environment variable ``REACTOR_MQTT_URL``
(``mqtt://[user[:password]@]host[:port]``, ``mqtts://`` for TLS with the system's CA
certificates); neither is an error. The password never appears in a log line, an error or
the statistics.

**Testing without a broker.** :func:`message` builds exactly the event the source would
publish (the source builds its events with it)::

    event = mqtt.message("sensors/7/temperature", b"21.5",
                         topic_filter="sensors/+/temperature", name=record)
    await record(event)                               # or: await app.publish_and_wait(event)

``name=`` says which source the event comes from: the handler a decorator made the source
for (without a ``name=`` of its own, the source is named after the handler), or the
source's name (default ``"mqtt"``, the name of an :class:`MqttSource` made without one).
"""

from reactor.abc import export_from

from .._decoding import Decode as Decode
from .._payload import PayloadMode as PayloadMode
from ._client import Protocol as Protocol
from ._events import DEFAULT_NAME as DEFAULT_NAME
from ._events import FILTER_EXTENSION as FILTER_EXTENSION
from ._events import MESSAGE_TYPE as MESSAGE_TYPE
from ._events import RETAIN_EXTENSION as RETAIN_EXTENSION
from ._events import message as message
from ._source import URL_VARIABLE as URL_VARIABLE
from ._source import MqttOptions as MqttOptions
from ._source import MqttSource as MqttSource
from ._source import client_id_for as client_id_for
from ._source import on_mqtt as on_mqtt
from ._topics import check_filter as check_filter
from ._topics import topic_matches as topic_matches

__all__ = [
    "DEFAULT_NAME",
    "FILTER_EXTENSION",
    "MESSAGE_TYPE",
    "RETAIN_EXTENSION",
    "URL_VARIABLE",
    "Decode",
    "MqttOptions",
    "MqttSource",
    "PayloadMode",
    "Protocol",
    "check_filter",
    "client_id_for",
    "message",
    "on_mqtt",
    "topic_matches",
]

export_from(__name__, globals())
