"""Object storage: S3 bucket events (objects created, removed, ...) as CloudEvents.

The manual (its events, guarantees, settings and statistics, and how to test it) is the
documentation's "Object storage" page: ``docs/triggers/objects.md`` in the repository
(``mkdocs serve`` to read the site).
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
