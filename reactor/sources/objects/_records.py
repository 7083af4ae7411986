"""S3 event notifications into CloudEvents: the decoder, the one builder, the filters.

The mapping is the CloudEvents specification's adapter for S3, followed attribute by
attribute (cloudevents/spec, ``cloudevents/adapters/aws-s3.md``):

=================  ==========================================================================
``id``             ``responseElements.x-amz-request-id`` + ``"."`` +
                   ``responseElements.x-amz-id-2``, then (reactor's addition, below)
                   ``"."`` + ``s3.object.sequencer`` + ``"."`` + ``s3.object.key``
``source``         ``eventSource`` + ``"."`` + ``awsRegion`` + ``"."`` + ``s3.bucket.name``
``specversion``    ``"1.0"``
``type``           ``"com.amazonaws.s3."`` + ``eventName``
``datacontenttype`` ``"application/json"``
``dataschema``     omitted
``subject``        ``s3.object.key``
``time``           ``eventTime``
``data``           the S3 event (the record)
=================  ==========================================================================

Where the adapter leaves a case open, this module decides, and the package docs say so:
the ``s3:`` prefix MinIO puts on ``eventName`` is removed (AWS's records carry none, so
one type names one event whatever the store), the subject is the key URL-decoded (S3
encodes keys form-style), and a record without ``x-amz-id-2`` or ``x-amz-request-id``
(older MinIO) gets the request id alone, or a new unique id. One departure: the adapter's
id names the request, which several records share (a ``DeleteObjects`` call), so the
object's sequencer and key are appended to make ``source`` + ``id`` unique per event, as
CloudEvents requires and as deduplication relies on.

Nothing here raises on bad input: :func:`decode_s3` returns what it refused, with the
reason, next to what it decoded.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, Final, TypeAlias
from urllib.parse import quote_plus, unquote_plus

import attrs

from reactor import Event, EventFormatError, InvalidEventError
from reactor.abc import compile_glob, load_json

#: The prefix of the type of every S3 event (the adapter's ``com.amazonaws.s3.``).
S3_TYPE_PREFIX: Final = "com.amazonaws.s3."
#: The ``datacontenttype`` of S3 events: the record is JSON.
S3_DATACONTENTTYPE: Final = "application/json"
#: The ``eventSource`` of AWS S3's records (MinIO sends ``"minio:s3"``).
AWS_EVENT_SOURCE: Final = "aws:s3"
#: The ``<kind>`` in the URI of the object storage sources, ``/reactor/objects/<name>``
#: (their statistics' key and the source of their gap events; object events keep the
#: bucket's source).
KIND: Final = "objects"

# An event name as S3 and MinIO write them: "ObjectCreated:Put", "LifecycleTransition",
# "Replication:OperationFailedReplication", "Scanner:ManyVersions".
_EVENT_NAME = re.compile(r"[A-Za-z0-9]+(?::[A-Za-z0-9]+)*")
# eventTime: ISO 8601 as S3 ("1970-01-01T00:00:00.000Z") and Ceph RGW (microseconds) write it.
_EVENT_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:?\d{2})", re.ASCII
)
_SHOWN = 80  # characters of a bad value quoted in a reason

JSON: TypeAlias = Any
RecordFilter: TypeAlias = Callable[[str, str, str], bool]
"""Which records to keep: called with the bucket, the decoded key and the event name
(without ``s3:``); a :class:`BucketFilter` is one."""


def _patterns(value: Sequence[str] | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        raise TypeError(f"events must be a list of event name patterns, got the str {value!r}")
    return tuple(value)


def _event_name(name: str) -> str:
    """An event name without the ``s3:`` prefix of MinIO's records and of S3's configuration."""
    return name[3:] if name.startswith("s3:") else name


@attrs.frozen
class Refusal:
    """A record (or a whole message) :func:`decode_s3` did not turn into an event.

    :ivar index: the record's position in the message's ``Records``, or ``None`` when the
        message as a whole is not an S3 event notification
    :ivar reason: what is wrong with it, for people
    """

    index: int | None
    reason: str

    def __str__(self) -> str:
        return self.reason if self.index is None else f"record {self.index}: {self.reason}"


@attrs.frozen(kw_only=True)
class Decoded:
    """What :func:`decode_s3` made of one message.

    :ivar events: one CloudEvent per record that was decoded and passed the filter, in
        the order of the records
    :ivar refused: the records (or the message) refused, with their reasons
    :ivar filtered: how many well-formed records the filter left out
    :ivar test: the message is S3's ``s3:TestEvent`` (sent when notifications are set up):
        it holds no records and is not an error
    """

    events: tuple[Event, ...] = ()
    refused: tuple[Refusal, ...] = ()
    filtered: int = 0
    test: bool = False

    @property
    def records(self) -> int:
        """How many records the message held (decoded, filtered and refused ones)."""
        refused_records = sum(1 for refusal in self.refused if refusal.index is not None)
        return len(self.events) + self.filtered + refused_records

    @property
    def malformed(self) -> bool:
        """Whether nothing could be decoded: something was refused, and no event or
        filtered record came out (the sender's message is bad as a whole)."""
        return bool(self.refused) and not self.events and not self.filtered


@attrs.frozen
class BucketFilter:
    """Which S3 events to keep: by bucket, key prefix and suffix, and event name.

    Applied to the decoded key, as S3's own filter rules are. Every test must pass.

    :ivar bucket: the bucket's name, or a glob on names; ``None`` for any bucket
    :ivar prefix: the key must start with it (``""``: any key)
    :ivar suffix: the key must end with it (``""``: any key)
    :ivar events: globs on event names, written as S3's notification configuration or
        the records write them, with or without the ``s3:`` prefix
        (``"ObjectCreated:*"``, ``"s3:ObjectRemoved:Delete"``); ``None`` for every event
    :raises TypeError: an argument of the wrong type
    :raises ValueError: an empty bucket or event pattern
    """

    bucket: str | None = None
    prefix: str = ""
    suffix: str = ""
    events: tuple[str, ...] | None = attrs.field(default=None, converter=_patterns)
    _match_bucket: Callable[[str], bool] | None = attrs.field(init=False, repr=False, eq=False)
    _match_events: Callable[[str], bool] | None = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        if self.bucket is not None and not isinstance(self.bucket, str):
            raise TypeError(f"bucket must be a str or None, got {type(self.bucket).__name__}")
        for name in ("prefix", "suffix"):
            if not isinstance(getattr(self, name), str):
                raise TypeError(f"{name} must be a str, got {type(getattr(self, name)).__name__}")
        object.__setattr__(
            self,
            "_match_bucket",
            None if self.bucket is None else compile_glob(self.bucket, "bucket"),
        )
        matcher: Callable[[str], bool] | None = None
        if self.events is not None:
            if not self.events:
                raise ValueError("events must name at least one event pattern, or be None")
            matchers = []
            for pattern in self.events:
                if not isinstance(pattern, str):
                    raise TypeError(f"event pattern must be a str, got {type(pattern).__name__}")
                matchers.append(compile_glob(_event_name(pattern), "event name"))
            if len(matchers) == 1:
                matcher = matchers[0]
            else:
                matcher = lambda name: any(match(name) for match in matchers)  # noqa: E731
        object.__setattr__(self, "_match_events", matcher)

    def __call__(self, bucket: str, key: str, event_name: str) -> bool:
        """Whether an event on *key* in *bucket* named *event_name* passes.

        :param bucket: the bucket's name
        :param key: the object's key, decoded
        :param event_name: the event's name (an ``s3:`` prefix is ignored)
        """
        if self._match_bucket is not None and not self._match_bucket(bucket):
            return False
        if not (key.startswith(self.prefix) and key.endswith(self.suffix)):
            return False
        return self._match_events is None or self._match_events(_event_name(event_name))

    def matches(self, event: Event) -> bool:
        """Whether an S3 CloudEvent (as :func:`object_event` builds them) passes.

        The bucket is read from the event's ``source`` (what follows its second ``.``),
        the key from its ``subject`` and the event name from its ``type``; events of
        other types do not pass.

        :param event: the event
        """
        type_, subject = event.type, event.subject
        if subject is None or not type_.startswith(S3_TYPE_PREFIX):
            return False
        parts = event.source.split(".", 2)
        if len(parts) != 3:
            return False
        return self(parts[2], subject, type_[len(S3_TYPE_PREFIX) :])


def object_event(
    event_name: str,
    bucket: str,
    key: str,
    *,
    time: datetime,
    data: JSON,
    event_source: str = AWS_EVENT_SOURCE,
    region: str = "",
    id: str | None = None,
) -> Event:
    """Build the CloudEvent of one object event, mapped as ``cloudevents/adapters/aws-s3.md`` says.

    The one definition of the mapping: the decoder of S3 notifications and the bucket
    poller both build their events here.

    * ``type``: ``"com.amazonaws.s3." + event_name`` (an ``s3:`` prefix removed first)
    * ``source``: ``f"{event_source}.{region}.{bucket}"``
    * ``subject``: *key*; ``time``: *time*; ``id``: *id* (default: a new UUID)
    * ``datacontenttype``: ``"application/json"``; ``data``: *data*

    ::

        object_event("ObjectCreated:Put", "images", "cats/tom.jpg",
                     time=datetime.now(UTC), data={...}, region="eu-west-1")

    :param event_name: the S3 event name, e.g. ``"ObjectCreated:Put"``,
        ``"ObjectRemoved:Delete"``
    :param bucket: the bucket's name
    :param key: the object's key, decoded (``"red flower.jpg"``, not ``"red+flower.jpg"``)
    :param time: when it happened (aware)
    :param data: the event's data: the S3 record, or what the caller has of the object
    :param event_source: the record's ``eventSource``: ``"aws:s3"`` for AWS, something of
        the store's own for others (MinIO: ``"minio:s3"``)
    :param region: the record's ``awsRegion`` (``""`` where the store has none)
    :param id: the event's id; the decoder passes the adapter's
        ``"{x-amz-request-id}.{x-amz-id-2}"`` followed by ``".{sequencer}.{key}"``
    :raises ValueError: *event_name* is not an S3 event name
    :raises reactor.InvalidEventError: an attribute CloudEvents refuses (an empty key, a
        naive *time*)
    :return: the event
    """
    name = _event_name(event_name) if isinstance(event_name, str) else event_name
    if not isinstance(name, str) or _EVENT_NAME.fullmatch(name) is None:
        raise ValueError(
            f"event_name must be an S3 event name like 'ObjectCreated:Put', got {_show(event_name)}"
        )
    if id is None:
        return Event(
            type=S3_TYPE_PREFIX + name,
            source=f"{event_source}.{region}.{bucket}",
            subject=key,
            time=time,
            datacontenttype=S3_DATACONTENTTYPE,
            data=data,
        )
    return Event(
        type=S3_TYPE_PREFIX + name,
        source=f"{event_source}.{region}.{bucket}",
        id=id,
        subject=key,
        time=time,
        datacontenttype=S3_DATACONTENTTYPE,
        data=data,
    )


def decode_s3(
    message: bytes | str | JSON,
    *,
    where: RecordFilter | None = None,
    default_id: str | None = None,
) -> Decoded:
    """Turn one S3 event notification message into CloudEvents, one per record.

    Takes the message as S3, MinIO, Ceph RGW and others send it: ``{"Records": [...]}``
    (other top-level members, such as MinIO's ``EventName`` and ``Key``, are ignored), as
    JSON text or bytes or already parsed; also MinIO's ``access`` format of its Redis
    target (``[{"Event": [...], "EventTime": ...}]``). Each record becomes the event
    :func:`object_event` builds; records the *where* filter leaves out are counted, and
    records that cannot be decoded (an ``eventVersion`` other than 2.x, a missing bucket
    or key, a bad time) are refused with the reason, each on its own: the other records
    of the message still decode. Never raises on bad input.

    ::

        decoded = decode_s3(body, where=BucketFilter(bucket="images", suffix=".jpg"))
        await app.publish_many(decoded.events)

    :param message: the message: JSON bytes or text, or the parsed JSON value (dicts
        and lists, as :func:`json.loads` returns it)
    :param where: which records to keep (default: all): a :class:`BucketFilter`, or any
        function of the bucket, the decoded key and the event name
    :param default_id: what names the message where a record carries no request id (older
        MinIO releases): such a record's event gets the id ``<default_id>.<index in the
        message>``, the same each time the message is decoded (a row of a table, say);
        default: a new unique id each time
    :return: the events, the refusals, the count of filtered records, and whether the
        message was S3's test event
    """
    if isinstance(message, bytes | bytearray | memoryview | str):
        try:
            message = load_json(bytes(message) if not isinstance(message, str) else message)
        except EventFormatError as exc:
            return _refused(f"the message is not JSON: {exc}")
    records = _records(message)
    if isinstance(records, Decoded):
        return records
    events: list[Event] = []
    refused: list[Refusal] = []
    filtered = 0
    for index, record in enumerate(records):
        try:
            event = _decode_record(
                record, where, None if default_id is None else f"{default_id}.{index}"
            )
        except _Refused as exc:
            refused.append(Refusal(index, str(exc)))
            continue
        if event is None:
            filtered += 1
        else:
            events.append(event)
    return Decoded(events=tuple(events), refused=tuple(refused), filtered=filtered)


def _records(message: JSON) -> Sequence[JSON] | Decoded:
    """The records of a parsed message, or what to answer for a message without any."""
    if isinstance(message, dict):
        records = message.get("Records")
        if isinstance(records, list):
            if not records:
                return _refused("the message's Records list is empty")
            return records
        if message.get("Event") == "s3:TestEvent":
            return Decoded(test=True)
        if records is not None:
            return _refused(f"Records must be a list, got {_kind(records)}")
        return _refused(
            "not an S3 event notification: the JSON object has no Records list "
            '(expected {"Records": [...]})'
        )
    if isinstance(message, list) and message and all(isinstance(i, dict) for i in message):
        # MinIO's "access" format (Redis target): [{"Event": [records], "EventTime": ...}]
        flat: list[JSON] = []
        for item in message:
            inner = item.get("Event")
            if not isinstance(inner, list):
                break
            flat.extend(inner)
        else:
            if flat:
                return flat
    return _refused(
        f'not an S3 event notification: expected a JSON object {{"Records": [...]}}, '
        f"got {_kind(message)}"
    )


class _Refused(Exception):
    """A record cannot be decoded; the message says why."""


def _decode_record(
    record: JSON, where: RecordFilter | None, default_id: str | None
) -> Event | None:
    """Decode one record; ``None`` when *where* leaves it out."""
    if not isinstance(record, dict):
        raise _Refused(f"a record must be a JSON object, got {_kind(record)}")
    version = record.get("eventVersion")
    if not isinstance(version, str) or version.partition(".")[0] != "2":
        raise _Refused(
            f"unsupported eventVersion {_show(version)}: only version 2.x of the S3 event "
            "structure is decoded"
        )
    name = record.get("eventName")
    if not isinstance(name, str) or _EVENT_NAME.fullmatch(_event_name(name)) is None:
        raise _Refused(
            f"eventName must be an S3 event name like 'ObjectCreated:Put', got {_show(name)}"
        )
    name = _event_name(name)
    s3 = _member(record, "s3", dict)
    bucket = _member(_member(s3, "bucket", dict, "s3."), "name", str, "s3.bucket.")
    encoded_key = _member(_member(s3, "object", dict, "s3."), "key", str, "s3.object.")
    if not bucket:
        raise _Refused("s3.bucket.name is empty")
    if not encoded_key:
        raise _Refused("s3.object.key is empty")
    try:
        # Keys are URL-encoded form-style ("red flower.jpg" is "red+flower.jpg").
        key = unquote_plus(encoded_key, errors="strict")
    except UnicodeDecodeError:
        raise _Refused(f"s3.object.key {_show(encoded_key)} is not URL-encoded UTF-8") from None
    if where is not None and not where(bucket, key, name):
        return None
    event_source = _member(record, "eventSource", str)
    if not event_source:
        raise _Refused("eventSource is empty")
    region = record.get("awsRegion", "")
    if not isinstance(region, str):
        raise _Refused(f"awsRegion must be a string, got {_kind(region)}")
    time = _event_time(record.get("eventTime"))
    try:
        return object_event(
            name,
            bucket,
            key,
            time=time,
            data=record,
            event_source=event_source,
            region=region,
            id=_event_id(record.get("responseElements"), s3, encoded_key) or default_id,
        )
    except InvalidEventError as exc:
        raise _Refused(str(exc)) from None


def _event_id(elements: JSON, s3: dict[str, Any], encoded_key: str) -> str | None:
    """The adapter's id, ``x-amz-request-id "." x-amz-id-2`` (or what there is of it),
    then ``"." sequencer "." key`` (the key as sent, URL-encoded).

    The adapter's id alone names the request, not the record: the records of one
    ``DeleteObjects`` call that removes ten keys share it. CloudEvents asks ``source`` +
    ``id`` to be unique per event, and whatever deduplicates on them (the broker queues'
    dedupe windows, the HTTP ingress) would drop nine of the ten; the object's sequencer
    and key make it unique, and the same on every redelivery of the record.
    """
    if not isinstance(elements, dict):
        return None
    request_id = elements.get("x-amz-request-id")
    if not isinstance(request_id, str) or not request_id:
        return None
    host_id = elements.get("x-amz-id-2")
    adapter = f"{request_id}.{host_id}" if isinstance(host_id, str) and host_id else request_id
    sequencer = s3["object"].get("sequencer")
    if isinstance(sequencer, str) and sequencer:
        return f"{adapter}.{sequencer}.{encoded_key}"
    return f"{adapter}.{encoded_key}"


def _event_time(value: JSON) -> datetime:
    if not isinstance(value, str) or _EVENT_TIME.fullmatch(value) is None:
        raise _Refused(
            f"eventTime must be an ISO 8601 time like '1970-01-01T00:00:00.000Z', got "
            f"{_show(value)}"
        )
    try:
        return datetime.fromisoformat(value.upper().replace(" ", "T")).astimezone(UTC)
    except (ValueError, OverflowError):
        raise _Refused(f"eventTime {_show(value)} is not a valid date and time") from None


def _member(parent: dict[str, JSON], name: str, kind: type, path: str = "") -> Any:
    value = parent.get(name)
    if not isinstance(value, kind):
        wanted = "a JSON object" if kind is dict else "a string"
        if value is None:
            raise _Refused(f"the record has no {path}{name}")
        raise _Refused(f"{path}{name} must be {wanted}, got {_kind(value)}")
    return value


def _refused(reason: str) -> Decoded:
    return Decoded(refused=(Refusal(None, reason),))


def _kind(value: object) -> str:
    """A JSON value's kind, for reasons: ``"a string"``, ``"null"``, ``"a list"``..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a JSON object"
    return type(value).__name__


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


@attrs.frozen
class S3Decoder:
    """What ``decode="s3"`` means for a source whose messages carry S3 notifications.

    MinIO publishes bucket notifications to brokers (MQTT, NATS, AMQP, Kafka; Redis and
    PostgreSQL in their ``access`` format), each message one notification message. The
    broker triggers given ``decode="s3"`` (``on_mqtt``, ``on_redis_message``,
    ``on_pg_notify``, ``on_row_change``) make one with the filter options they were
    given, call it once per message, in place of turning the payload into one event of
    their own, and publish the events it returns; a source of your own does the same::

        decoded = decoder(payload)               # bytes, text, or parsed JSON
        for event in decoded.events:
            await app.publish(event)
        malformed += len(decoded.refused)        # with decoded.refused[0] as the reason
        filtered += decoded.filtered

    and subscribes the decorated handler with ``app.subscribe(decoder.pattern, handler,
    where=decoder.matches)``, so that it receives the decoded events whatever their
    bucket's source. Never raises on a bad payload.

    :ivar where: which records to publish (default: all)
    """

    #: The type glob of the events the decoder makes.
    pattern: ClassVar[str] = S3_TYPE_PREFIX + "*"

    where: BucketFilter = attrs.field(factory=BucketFilter)

    def __call__(self, payload: bytes | str | JSON, *, default_id: str | None = None) -> Decoded:
        """Decode one message (see :func:`decode_s3`).

        :param payload: the message
        :param default_id: the id of the message, for records without a request id (see
            :func:`decode_s3`)
        """
        return decode_s3(payload, where=self.where, default_id=default_id)

    def matches(self, event: Event) -> bool:
        """Whether *event* is an S3 event that passes :attr:`where` (a subscription filter)."""
        return self.where.matches(event)


# -- test helpers ------------------------------------------------------------------


def s3_record(
    event_name: str,
    bucket: str,
    key: str,
    *,
    time: datetime | None = None,
    size: int = 0,
    etag: str = "d41d8cd98f00b204e9800998ecf8427e",
    region: str = "us-east-1",
    event_source: str = AWS_EVENT_SOURCE,
    request_id: str = "C3D13FE58DE4C810",
    host_id: str = "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD",
    sequencer: str = "0055AED6DCD90281E5",
) -> dict[str, JSON]:
    """Return one record of an S3 event notification, as S3 sends it (eventVersion 2.1).

    For tests and benchmarks: wrap records in ``{"Records": [...]}`` to make the body
    S3, MinIO or SNS would deliver. The key is URL-encoded as S3 does it; removal events
    carry no size or ETag, as S3's do not.

    :param event_name: e.g. ``"ObjectCreated:Put"`` (without ``s3:``, as AWS writes it)
    :param bucket: the bucket's name
    :param key: the object's key, not encoded
    :param time: the ``eventTime`` (default: 1970-01-01, AWS's documentation example)
    :param size: the object's size in bytes
    :param etag: the object's ETag
    :param region: the ``awsRegion``
    :param event_source: the ``eventSource``
    :param request_id: the ``x-amz-request-id``
    :param host_id: the ``x-amz-id-2``
    :param sequencer: the object's ``sequencer``
    :return: the record, a JSON object
    """
    when = datetime(1970, 1, 1, tzinfo=UTC) if time is None else time.astimezone(UTC)
    obj: dict[str, JSON] = {"key": quote_plus(key, safe="/")}
    if not _event_name(event_name).startswith("ObjectRemoved:"):
        obj["size"] = size
        obj["eTag"] = etag
    obj["sequencer"] = sequencer
    return {
        "eventVersion": "2.1",
        "eventSource": event_source,
        "awsRegion": region,
        "eventTime": when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z",
        "eventName": event_name,
        "userIdentity": {"principalId": "AIDAJDPLRKLG7UEXAMPLE"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {"x-amz-request-id": request_id, "x-amz-id-2": host_id},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "reactor",
            "bucket": {
                "name": bucket,
                "ownerIdentity": {"principalId": "A3NL1KOZZKExample"},
                "arn": f"arn:aws:s3:::{bucket}",
            },
            "object": obj,
        },
    }


def bucket_event(
    event_name: str,
    bucket: str,
    key: str,
    *,
    time: datetime | None = None,
    size: int = 0,
    etag: str = "d41d8cd98f00b204e9800998ecf8427e",
    region: str = "us-east-1",
    event_source: str = AWS_EVENT_SOURCE,
) -> Event:
    """Return the event a bucket notification of *event_name* on *key* publishes.

    The test helper: exactly what :func:`decode_s3` makes of the record
    :func:`s3_record` builds, so ``await app.publish(bucket_event(...))`` runs the
    handlers of :func:`~reactor.sources.objects.on_bucket_event` without S3::

        await app.publish_and_wait(bucket_event("ObjectCreated:Put", "images", "cat.jpg"))

    :param event_name: e.g. ``"ObjectCreated:Put"``
    :param bucket: the bucket's name
    :param key: the object's key, not encoded
    :param time: the event's time (default: 1970-01-01)
    :param size: the object's size
    :param etag: the object's ETag
    :param region: the ``awsRegion``
    :param event_source: the ``eventSource``
    :raises ValueError: the record would be refused (the reason says why)
    :return: the event
    """
    record = s3_record(
        event_name,
        bucket,
        key,
        time=time,
        size=size,
        etag=etag,
        region=region,
        event_source=event_source,
    )
    decoded = decode_s3({"Records": [record]})
    if not decoded.events:
        raise ValueError(str(decoded.refused[0]))
    return decoded.events[0]
