"""Object storage: S3 bucket events (objects created, removed, ...) as CloudEvents.

::

    from reactor.sources import objects

    @objects.on_bucket_event(app, "/minio", bucket="uploads", suffix=".csv",
                             events=["ObjectCreated:*"], token=os.environ["MINIO_TOKEN"])
    async def load(event: Event) -> None:        # app.on_bucket_event(...) is the same
        bucket, key = event.data["s3"]["bucket"]["name"], event.subject
        ...

**Events.** Every object event, whichever way it reached the app, is the CloudEvent the
CloudEvents specification's S3 adapter defines (cloudevents/spec,
``cloudevents/adapters/aws-s3.md``), built by :func:`object_event`:

=================== =========================================================================
``type``            ``"com.amazonaws.s3." + eventName``: ``com.amazonaws.s3.ObjectCreated:Put``,
                    ``com.amazonaws.s3.ObjectRemoved:Delete``, ... (subscribe to
                    ``"com.amazonaws.s3.ObjectCreated:*"`` for every creation)
``source``          ``eventSource + "." + awsRegion + "." + bucket``:
                    ``aws:s3.us-west-2.images``, ``minio:s3..images`` (MinIO has no region)
``subject``         the object's key, URL-decoded (``red flower.jpg``)
``id``              ``x-amz-request-id + "." + x-amz-id-2 + "." + sequencer + "." + key``
                    (the key as sent, URL-encoded; see below)
``time``            ``eventTime``
``datacontenttype`` ``application/json``
``data``            the S3 record, as sent (its ``s3.object.key`` still URL-encoded)
=================== =========================================================================

Where the adapter leaves a case open: MinIO's records write ``eventName`` with an
``s3:`` prefix (``s3:ObjectCreated:Put``) and AWS's without; the prefix is removed, so
one type names one event whatever the store. A record without ``x-amz-id-2`` (older
MinIO releases) gets the request id alone as its id, one without a request id a new
unique id. The adapter's id alone (``x-amz-request-id + "." + x-amz-id-2``) names the
request, not the record: a ``DeleteObjects`` call that removes ten keys gives ten records
with that one id, and whatever deduplicates on ``source`` + ``id`` (the broker queues'
dedupe windows, the HTTP ingress) would keep one. reactor therefore appends the object's
sequencer and key, which makes the id unique per event, as CloudEvents requires, and the
same on every redelivery of the record.

**Decoding.** :func:`decode_s3` turns one notification message (``{"Records": [...]}``,
eventVersion 2.x, as AWS S3, MinIO, Ceph RGW and others send it; MinIO's extra
``EventName`` and ``Key`` members are ignored) into one event per record, with an
optional :class:`BucketFilter`. Records it cannot decode (another ``eventVersion``, no
bucket or key, a bad time, a key that is not URL-encoded UTF-8) are refused one by
one, with the reason (:class:`Refusal`), never with an exception; the other records of
the message still decode. S3's test message (``s3:TestEvent``, sent when notifications
are set up) decodes to nothing, flagged ``test``. A source that carries such messages
(a broker subscription MinIO publishes to) calls it once per message.

**Through a broker.** MinIO also publishes its notifications to brokers and databases:
to MQTT, NATS, AMQP and Kafka the same ``{"EventName", "Key", "Records"}`` object it
posts to a webhook; into PostgreSQL and Redis in their ``access`` format (use it: the
``namespace`` format overwrites and deletes one entry per object instead of appending
events). The broker triggers take ``decode="s3"`` and the filter options of
:func:`on_bucket_event` (``bucket``, ``prefix``, ``suffix``, ``events``): each message is
then decoded by an :class:`S3Decoder` into the events above (the same as over HTTP, ids
included), and the decorated handler receives those that pass its filter, so one bucket
event reaches the same handlers whichever transport the operator configured::

    # mc admin config set ALIAS notify_mqtt:reactor broker=tcp://broker:1883 \
    #     topic=minio/events qos=1 queue_dir=/var/lib/minio/events
    # mc event add ALIAS/uploads arn:minio:sqs::reactor:mqtt --event put
    @app.on_mqtt("minio/events", url="mqtt://broker:1883", decode="s3",
                 bucket="uploads", suffix=".csv", events=["ObjectCreated:*"])
    async def load(event: Event) -> None: ...        # as with on_bucket_event

* **MinIO's MQTT target**: ``on_mqtt(topic, decode="s3")``, at least once with
  ``qos=1`` (a message is acknowledged once its events are in the app's queue; set
  MinIO's ``qos=1`` too, and its ``queue_dir`` for what it sends while the broker is
  away).
* **MinIO's PostgreSQL target** (``access`` format: a row per event, its columns
  ``event_time`` and ``event_data``): ``on_row_change(table, decode="s3")`` (``column=``
  another column than ``event_data``), at least once and without gaps, also for what was
  inserted while the app was down. The capture needs a primary key, which MinIO's own
  table lacks: create the table first, ``CREATE TABLE minio_events (id bigserial PRIMARY
  KEY, event_time timestamptz NOT NULL, event_data jsonb)`` (MinIO inserts naming its two
  columns), and ``reactor db install`` it. Only inserts are read: deleting old rows is
  cleaning up.
* **PostgreSQL ``NOTIFY``** (MinIO sends none; a trigger or a bridge of yours):
  ``on_pg_notify(channel, decode="s3")``, at most once, with gap events.
* **Redis pub/sub** (MinIO's Redis target writes a hash or a list, not a channel; a store
  or a bridge that ``PUBLISH``-es the messages): ``on_redis_message(channel,
  decode="s3")``, at most once, with gap events. Messages in the ``access`` format of
  MinIO's Redis target (``[{"Event": [...], "EventTime": ...}]``) decode too.

Each such trigger keeps its own connection, reconnection, gap events and guarantee; its
statistics (under its own ``/reactor/<kind>/<name>``) count the decoded events as
``published``, the records and messages refused as ``malformed`` (logged, a warning for
the first and every 1,000th) and the records left out by the filter as ``filtered``. The
``payload`` option does not apply. A record without a request id (older MinIO releases)
gets a new unique id, except from a table, where the id is the change's
(``<transaction id>-<change id>.<index>``), the same when the row is delivered again.

**Over HTTP.** :func:`on_bucket_event` routes a path of the app's HTTP ingress
(:mod:`reactor.sources.http`, ``app.asgi``) to a :class:`BucketEvents` receiver and
subscribes the handler. Two kinds of sender:

* **MinIO's webhook target** (and Ceph RGW's HTTP endpoint, or anything that posts the
  S3 message itself). Configure MinIO with ``mc admin config set ALIAS
  notify_webhook:reactor endpoint=https://app.example.com/events/minio
  auth_token=...`` and ``mc event add ALIAS/uploads arn:minio:sqs::reactor:webhook
  --event put``; give the same token as ``token=``: requests must then carry
  ``Authorization: Bearer <token>`` (checked in constant time, before the body is
  read). Without a token anyone who can reach the path publishes bucket events.
* **An Amazon SNS HTTP(S) subscription** (``sns=`` the topics' ARNs): S3 publishes to
  the topic, SNS posts each message in its signed envelope. The route verifies every
  signature (``SignatureVersion`` 1, SHA1, and 2, SHA256) against the certificate at
  ``SigningCertURL``, which is fetched only from ``https://sns.<region>.amazonaws.com``
  (``.com.cn``) and kept (at most 32); refuses topics not named (403) and messages
  older than SNS retries (an hour) or from the future; confirms a subscription by
  visiting its ``SubscribeURL`` (only on an SNS host, and only for a topic named); and
  answers a repeated ``MessageId`` with 200 without publishing again. Confirmations
  are published too, as the SNS adapter (``cloudevents/adapters/aws-sns.md``) maps
  them: types ``com.amazonaws.sns.SubscriptionConfirmation`` and
  ``com.amazonaws.sns.UnsubscribeConfirmation`` (an unsubscribe is logged as a warning
  and never undone by the route). Raw message delivery must be off: raw messages carry
  no signature. The ``fetch`` hook (see :func:`on_bucket_event`) replaces the HTTP
  client that fetches certificates and confirms subscriptions; tests give one that
  serves a certificate they made.

The filters (bucket, key prefix and suffix, event names with ``*``) apply before
publishing: a record no handler of the path wants is counted and not published. The
answers: 202 ``{"ids": [...]}`` once the events are in the ingestion queue (with
``"filtered"``, ``"refused"`` or ``"test"`` members when they apply), 200 when nothing
was to be published, 400 for a body that holds no decodable record or no SNS envelope,
401 for a missing or wrong token or signature, 403 for an SNS topic not named, 415 for
a content type other than JSON or text, 503 when the app is not running, the queue is
full or SNS's certificate cannot be fetched now: nothing is published with a 4xx or
5xx, so the sender may retry it whole. The CloudEvents endpoint of the same ingress
refuses events of the ``com.amazonaws.s3.`` and ``com.amazonaws.sns.`` types (403)
once a bucket route exists, so no client reaches the handlers around the route's checks.

**Delivery.** The route answers 2xx only once the events are in the ingestion queue,
so with a durable queue (``SQLiteQueue``, Redis, NATS) nothing acknowledged to the
sender is lost, and delivery is at-least-once as far as the sender retries:

* MinIO keeps and replays undelivered events only with a ``queue_dir`` on its webhook
  target (up to ``queue_limit`` events on disk); without one, an event the app does
  not accept (unreachable, or any answer but 2xx) is logged by MinIO and dropped. A
  replay can repeat an event whose answer was lost: handlers should be idempotent
  (the id names the S3 request).
* SNS retries an HTTP(S) delivery as its delivery policy says (by default three times,
  20 seconds apart; an hour at most), then drops it, or moves it to the subscription's
  dead-letter queue if one is set. Repeats within that time are caught by
  ``MessageId``.

Events sent while the app is down for longer than that are lost: pair the route with
polling the bucket where that matters.

**Statistics.** ``app.stats().sources["/reactor/objects/<path>"]`` (the route's name is
its path, percent-encoded in the URI: ``/reactor/objects/%2Fminio``): ``requests``,
``records``, ``published``, ``filtered``, ``malformed`` (records and messages
refused), ``tests``, ``unauthorized`` (401 and 403), ``confirmed`` and
``unsubscribed`` (SNS); the ingress's own counters stay under ``"http"``.

**Extras.** Decoding and MinIO's webhook need nothing beyond reactor;
SNS signatures need ``reactor-events[sns]`` (the ``cryptography`` package), imported
only when an SNS route is made; polling needs ``reactor-events[s3]`` (botocore),
imported only when a poller is made.

**Polling** (:func:`on_bucket_change`, :class:`BucketPollSource`; needs
``reactor-events[s3]``), for stores where bucket notifications cannot be configured::

    @app.on_bucket_change("s3://uploads/incoming/", interval=30, suffix=".csv")
    async def on_upload(event: Event) -> None:      # objects.on_bucket_change(app, ...)
        if event.type == "com.amazonaws.s3.ObjectCreated:Put":
            key = event.subject                     # "incoming/report.csv"

Every *interval* seconds (on the app's clock) the source lists the prefix with
``ListObjectsV2``, following every page, and compares the listing with the last one by
ETag, size and last-modified time. Its events have the shape above, with what a listing
knows: type ``ObjectCreated:Put`` for an object that appeared *or was overwritten* (a
listing cannot tell a put from a copy or a multipart upload, and S3's own notifications
report an overwrite as ``ObjectCreated`` too) and ``ObjectRemoved:Delete`` for one that
disappeared; source ``aws:s3.<region>.<bucket>`` (the client's region); time the object's
last-modified time, or the poll's time for a removal; id a digest of the bucket, key,
change, ETag, size and last-modified time, so the same change announced twice (see
below) has the same id; data ``{"change": "created" | "modified" | "removed", "bucket",
"key", "size", "eTag", "lastModified"}`` (for a removal, what was last seen); and the
extension ``reactorpoller``, the poller's URI ``/reactor/objects/<name>`` (its name:
``name=``, by default the handler's qualified name, for a decorated handler; else the
URL), so that the handler of one poller does not get another's events about the same
bucket. A poll sees states, not operations: an
object created and removed between two polls is never seen, one overwritten twice is
one change, an object overwritten with the same bytes within the second of its last
write is no change (listings give ETag, size and time to the second), and a change is
seen up to *interval* (plus the listing's time) after it happened.

*State.* The last listing (key, ETag, size, last-modified time per object) is kept in a
SQLite file (``state=``, else ``REACTOR_S3_STATE``, else ``reactor-objects.sqlite3`` in
the working directory; ``":memory:"`` keeps nothing; pollers may share a file, each under
its name), so that a restart does not announce every object again and changes made while
the app was stopped are announced when it starts. When the source finds no usable state
(the first start, a lost or deleted file, a file it cannot read, which it renames
``<file>.unreadable-<time>``, a first poll that was cut short, another bucket, prefix or
endpoint under the same name) it publishes a ``reactor.source.gap`` event (source and
subject the poller's URI, as every trigger's; data ``{"reason": ...}``;
``status_events=True`` hands it to the decorated handler) and
stores the listing as a new baseline *without* announcing the objects in it: consumers
that must not miss a change resynchronise on the gap event (list the bucket once). A
``state=`` file that is another program's SQLite database (the queue's, say) is left
alone, and the app does not start.

*Memory.* The listing and the state are merged in key order, like two sorted files (S3
lists keys in ascending UTF-8 order, and SQLite reads the stored rows in the same order,
a page at a time), so a poll holds one listing page (``page_size`` objects, 1,000 at
most), as many stored rows read ahead, and one chunk of at most 1,000 changes being
published: some 3,000 small records, whatever the number of objects under the prefix.

*Guarantee: at least once.* Each chunk of changes is published (in one
``publish_many`` when the queue has room for it, else one by one, waiting for room: the
queue's backpressure applies), then stored in the state file in one transaction; a
crash in between announces the chunk again at the next start, with the same ids. A poll
that fails (network, 403, throttling) is logged once per outage, counted, and retried
at the next interval; the changes are found then, late but not lost. The first poll, when
the app starts, must work: a missing bucket, refused or missing credentials or an
unreachable store make ``async with app:`` raise :class:`reactor.SourceUnavailableError`
saying what to fix; ``async with app:`` returns once the first poll is done. Each
process that runs a poller polls and publishes: run it in one process of a scaled-out
app (the state file is not shared between machines, and nothing elects a single poller).

*Connection.* ``endpoint_url=``, ``region=``, ``access_key_id=``, ``secret_access_key=``
and ``session_token=``, else the ``REACTOR_S3_ENDPOINT_URL``, ``REACTOR_S3_REGION``,
``REACTOR_S3_ACCESS_KEY_ID``, ``REACTOR_S3_SECRET_ACCESS_KEY`` and
``REACTOR_S3_SESSION_TOKEN`` variables, else botocore's own configuration (the standard
``AWS_*`` variables, ``~/.aws``, instance and container roles). Requests go through
botocore on worker threads, so the poller runs on asyncio and trio alike. No secret is
ever logged.

*Statistics* (``app.stats().sources["/reactor/objects/<name>"]``): ``listed`` (and ``received``, the same),
``pages``, ``polls``, ``created``, ``modified``, ``removed``, ``published``, ``filtered``,
``errors`` (failed polls), ``reconnects`` (polls that worked again after failures),
``gaps``, ``malformed``, ``oversized``, ``objects`` (in the stored listing) and
``last_error``.
:meth:`BucketPollSource.poll` polls at once (tests, or a nudge from elsewhere).

**Testing.** :func:`bucket_change` builds exactly the event a poller publishes
(``objects.bucket_change("created", "uploads", "incoming/a.csv", name=on_upload)``:
``name=`` is the poller's name or the handler it was made for, as for the other triggers'
helpers). :func:`bucket_event` builds exactly the event a notification publishes, over
HTTP or through a broker, so ``await app.publish_and_wait(objects.bucket_event(
"ObjectCreated:Put", "uploads", "day.csv"))`` runs the handlers of
:func:`on_bucket_event` and of the broker triggers with ``decode="s3"`` without a store;
:func:`s3_record` builds the record itself, to post to a route or send to a broker.
"""

from __future__ import annotations

from reactor.abc import export_from

from ._client import ACCESS_KEY_VARIABLE as ACCESS_KEY_VARIABLE
from ._client import ENDPOINT_VARIABLE as ENDPOINT_VARIABLE
from ._client import REGION_VARIABLE as REGION_VARIABLE
from ._client import SECRET_KEY_VARIABLE as SECRET_KEY_VARIABLE
from ._client import SESSION_TOKEN_VARIABLE as SESSION_TOKEN_VARIABLE
from ._http import BucketEvents, on_bucket_event
from ._poll import DEFAULT_STATE_FILE as DEFAULT_STATE_FILE
from ._poll import POLLER_EXTENSION as POLLER_EXTENSION
from ._poll import STATE_VARIABLE as STATE_VARIABLE
from ._poll import BucketPollSource as BucketPollSource
from ._poll import PollOptions as PollOptions
from ._poll import PollResult as PollResult
from ._poll import bucket_change as bucket_change
from ._poll import by_key as by_key
from ._poll import on_bucket_change as on_bucket_change
from ._records import (
    AWS_EVENT_SOURCE,
    S3_DATACONTENTTYPE,
    S3_TYPE_PREFIX,
    BucketFilter,
    Decoded,
    RecordFilter,
    Refusal,
    S3Decoder,
    bucket_event,
    decode_s3,
    object_event,
    s3_record,
)
from ._sns import SNS_TYPE_PREFIX, Fetch

__all__ = [
    "ACCESS_KEY_VARIABLE",
    "AWS_EVENT_SOURCE",
    "DEFAULT_STATE_FILE",
    "ENDPOINT_VARIABLE",
    "POLLER_EXTENSION",
    "REGION_VARIABLE",
    "S3_DATACONTENTTYPE",
    "S3_TYPE_PREFIX",
    "SECRET_KEY_VARIABLE",
    "SESSION_TOKEN_VARIABLE",
    "SNS_TYPE_PREFIX",
    "STATE_VARIABLE",
    "BucketEvents",
    "BucketFilter",
    "BucketPollSource",
    "Decoded",
    "Fetch",
    "PollOptions",
    "PollResult",
    "RecordFilter",
    "Refusal",
    "S3Decoder",
    "bucket_change",
    "bucket_event",
    "by_key",
    "decode_s3",
    "object_event",
    "on_bucket_change",
    "on_bucket_event",
    "s3_record",
]

export_from(__name__, globals())
