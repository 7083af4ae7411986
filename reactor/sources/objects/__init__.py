"""Object storage: S3 bucket events (created, removed, ...) as CloudEvents.

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
``id``              ``x-amz-request-id + "." + x-amz-id-2``
``time``            ``eventTime``
``datacontenttype`` ``application/json``
``data``            the S3 record, as sent (its ``s3.object.key`` still URL-encoded)
=================== =========================================================================

Where the adapter leaves a case open: MinIO's records write ``eventName`` with an
``s3:`` prefix (``s3:ObjectCreated:Put``) and AWS's without; the prefix is removed, so
one type names one event whatever the store. A record without ``x-amz-id-2`` (MinIO
before 2023) gets the request id alone as its id, one without a request id a new unique
id. Events of one request share their id: a ``DeleteObjects`` call that removes ten keys
gives ten events with one id and ten subjects, so anything that deduplicates by
``(source, id)`` must add the subject.

**Decoding.** :func:`decode_s3` turns one notification message (``{"Records": [...]}``,
eventVersion 2.x, as AWS S3, MinIO, Ceph RGW and others send it) into one event per
record, with an optional :class:`BucketFilter`; records it cannot decode are refused
one by one, with the reason (:class:`Refusal`), never with an exception. S3's test
message (``s3:TestEvent``) decodes to nothing, flagged ``test``.

**Testing.** :func:`bucket_event` builds exactly the event a notification publishes;
:func:`s3_record` builds the record itself, to post to a route in a test.
"""

from __future__ import annotations

from reactor.abc import export_from

from ._records import (
    AWS_EVENT_SOURCE,
    S3_DATACONTENTTYPE,
    S3_TYPE_PREFIX,
    BucketFilter,
    Decoded,
    Refusal,
    bucket_event,
    decode_s3,
    object_event,
    s3_record,
)

__all__ = [
    "AWS_EVENT_SOURCE",
    "S3_DATACONTENTTYPE",
    "S3_TYPE_PREFIX",
    "BucketFilter",
    "Decoded",
    "Refusal",
    "bucket_event",
    "decode_s3",
    "object_event",
    "s3_record",
]

export_from(__name__, globals())
