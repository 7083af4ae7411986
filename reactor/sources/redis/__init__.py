"""Redis pub/sub: a ``reactor.redis.message`` event for every message on channels and patterns.

Needs the ``redis`` extra (`coredis <https://pypi.org/project/coredis/>`_, Redis 6 or
later); works on asyncio and trio. ::

    from reactor.sources import redis

    @app.on_redis_message("alerts.*", "deploys", url="redis://127.0.0.1:6379/0")
    async def alert(event: Event) -> None:        # or redis.on_redis_message(app, ...)
        print(event.subject, event.data)          # "alerts.cpu", {"load": 9.5}

**Subscriptions.** Each name given is a channel (SUBSCRIBE) or, when it has ``*``, ``?``
or ``[``, a pattern in Redis glob syntax (PSUBSCRIBE); one source subscribes to all of them
on one connection of its own, named ``reactor:<name>`` on the server (``CLIENT LIST``).
A message that matches several of the source's channels and patterns arrives once per
match (Redis sends one per subscription), each with the pattern it matched.

**Events.** One per message: type :data:`MESSAGE_TYPE` (``"reactor.redis.message"``),
source ``/reactor/redis/<name>`` (the source's name, percent-encoded; a decorated handler's
is its consumer name), subject the channel, time when it was received, and:

* data: the payload under the ``payload`` option: ``"auto"`` (default) gives the parsed
  JSON value when it parses (``datacontenttype`` ``application/json``), else the text when
  it is UTF-8 (``text/plain; charset=utf-8``), else the bytes
  (``application/octet-stream``); ``"json"`` expects JSON and publishes anything else as
  text or bytes, counted as ``malformed`` (logged once per 1,000, never stopping the
  source); ``"text"`` and ``"bytes"`` never parse;
* the extension :data:`PATTERN_EXTENSION` (``redispattern``): the pattern the message
  matched, for a pattern subscription only.

**Delivery: at-most-once, with gap events.** Redis pub/sub keeps nothing: a message
published while the source is not connected is lost for it. The source reconnects forever,
with capped exponential backoff (0.1 s doubling to 5 s, on the app's clock), subscribes
again, and then publishes a gap event (type ``"reactor.source.gap"``, source the source's
URI, data ``{"reason": "reconnected", "since": <when the connection was lost>, "until":
..., "missed": null}``) before the first message of the new connection, so that consumers
can resynchronise (re-read the state the messages were about); ``status_events=True``
hands it to the decorated handler too. The outage is logged once
when it begins and once when it ends. The first connection must succeed: a wrong address
or a server that is down when the app starts raises :class:`reactor.SourceUnavailableError`
out of ``async with app:``.

**Bounded.** Messages wait for room in the app's queue in a buffer of ``buffer`` messages
(default 1,000). While it is full, new messages are dropped and counted (``dropped``), and
once there is room again a gap event with reason ``"overflow"`` and ``missed`` the number
dropped comes before the next message. (A subscriber that falls behind would be
disconnected by the server's ``client-output-buffer-limit`` otherwise.) coredis reads the
connection eagerly into its own buffer, which the source empties as fast as messages
arrive.

**Bucket notifications** (``decode="s3"``, with the filter options ``bucket``,
``prefix``, ``suffix`` and ``events``): each message is an S3 event notification,
published as one object event per record (the CloudEvents of
:mod:`reactor.sources.objects`, the same as over HTTP) in place of the message's event;
the handler receives those that pass its filter. MinIO's own Redis target writes to a
hash or a list, never to a channel: this is for a store or a bridge that ``PUBLISH``-es
the notifications (as they are, or in MinIO's ``access`` format). At most once, with gap
events, as above; records that cannot be decoded are counted as ``malformed``, filtered
ones as ``filtered``.

**Statistics** (``app.stats().sources["/reactor/redis/<name>"]``): ``received``,
``published``, ``malformed``, ``reconnects``, ``gaps``, ``oversized`` (events too large for
the app's queue: published without their payload, with a note saying so, and logged),
``dropped`` and ``last_error``; with ``decode``, also ``filtered``.

**Configuration.** ``url=`` or else the environment variable ``REACTOR_REDIS_URL``
(``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` for TLS, ``unix://``);
neither is an error. The password never appears in a log line, an error or the statistics.

**Testing without a server.** :func:`message` builds exactly the event the source would
publish (the source builds its events with it)::

    event = redis.message("alerts.cpu", b'{"load": 9.5}', pattern="alerts.*", name=alert)
    await alert(event)                                # or: await app.publish_and_wait(event)

``name=`` says which source the event comes from: the handler a decorator made the source
for (without a ``name=`` of its own, the source is named after the handler), or the
source's name (default ``"redis"``, the name of a :class:`RedisSource` made without one).
"""

from reactor.abc import export_from

from .._decoding import Decode as Decode
from .._payload import PayloadMode as PayloadMode
from ._events import DEFAULT_NAME as DEFAULT_NAME
from ._events import MESSAGE_TYPE as MESSAGE_TYPE
from ._events import PATTERN_EXTENSION as PATTERN_EXTENSION
from ._events import is_pattern as is_pattern
from ._events import message as message
from ._source import DEFAULT_BUFFER as DEFAULT_BUFFER
from ._source import URL_VARIABLE as URL_VARIABLE
from ._source import RedisOptions as RedisOptions
from ._source import RedisSource as RedisSource
from ._source import on_redis_message as on_redis_message

__all__ = [
    "DEFAULT_BUFFER",
    "DEFAULT_NAME",
    "MESSAGE_TYPE",
    "PATTERN_EXTENSION",
    "URL_VARIABLE",
    "Decode",
    "PayloadMode",
    "RedisOptions",
    "RedisSource",
    "is_pattern",
    "message",
    "on_redis_message",
]

export_from(__name__, globals())
