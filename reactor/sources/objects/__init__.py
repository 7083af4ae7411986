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

**Through a broker.** MinIO also publishes its notifications to MQTT, NATS, AMQP and
Kafka (the same ``{"EventName", "Key", "Records"}`` object as to a webhook), and to Redis
and PostgreSQL (use their ``access`` format: the ``namespace`` format overwrites and
deletes one entry per object instead of appending events). A source of such messages
takes an :class:`S3Decoder` (``decode="s3"``), calls it once per message and publishes
the events it returns, so one bucket event reaches the same handlers whichever
transport the operator configured.

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

**Statistics.** ``app.stats().sources["bucket-events:<path>"]``: ``requests``,
``records``, ``published``, ``filtered``, ``malformed`` (records and messages
refused), ``tests``, ``unauthorized`` (401 and 403), ``confirmed`` and
``unsubscribed`` (SNS); the ingress's own counters stay under ``"http"``.

**Extras.** Decoding and MinIO's webhook need nothing beyond reactor;
SNS signatures need ``reactor-events[sns]`` (the ``cryptography`` package), imported
only when an SNS route is made.

**Testing.** :func:`bucket_event` builds exactly the event a notification publishes, so
``await app.publish_and_wait(objects.bucket_event("ObjectCreated:Put", "uploads",
"day.csv"))`` runs the handler without a store; :func:`s3_record` builds the record
itself, to post to a route.
"""

from __future__ import annotations

from reactor.abc import export_from

from ._http import BucketEvents, on_bucket_event
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
    "AWS_EVENT_SOURCE",
    "S3_DATACONTENTTYPE",
    "S3_TYPE_PREFIX",
    "SNS_TYPE_PREFIX",
    "BucketEvents",
    "BucketFilter",
    "Decoded",
    "Fetch",
    "RecordFilter",
    "Refusal",
    "S3Decoder",
    "bucket_event",
    "decode_s3",
    "object_event",
    "on_bucket_event",
    "s3_record",
]

export_from(__name__, globals())
