"""S3 event notifications into CloudEvents: the adapter's mapping, field by field.

The mapping is cloudevents/spec ``cloudevents/adapters/aws-s3.md``; the messages are
the examples of AWS's and MinIO's documentation (tests/data/s3-notifications/README.md
says where each comes from).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import TaskStatus
from hypothesis import given, settings
from hypothesis import strategies as st

from reactor import Event, InvalidEventError, Reactor
from reactor.abc import App, Source
from reactor.sources.objects import (
    S3_TYPE_PREFIX,
    BucketFilter,
    Decoded,
    Refusal,
    S3Decoder,
    bucket_event,
    decode_s3,
    object_event,
    s3_record,
)
from reactor.testing import Capture

DATA = Path(__file__).parent / "data" / "s3-notifications"
# A default event id (reactor.Event's): a UUID of version 8 with the RFC 9562 variant.
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def example(name: str) -> bytes:
    return (DATA / name).read_bytes()


def only_event(decoded: Decoded) -> Event:
    assert decoded.refused == ()
    assert len(decoded.events) == 1
    return decoded.events[0]


# -- the documentation's examples -------------------------------------------------------


def test_the_aws_put_example_maps_field_by_field() -> None:
    body = example("aws-put.json")
    event = only_event(decode_s3(body))
    record = json.loads(body)["Records"][0]

    # id: "responseElements.x-amz-request-id" + "." + "responseElements.x-amz-id-2", and
    # (reactor's addition, so that the records of one request differ) "." + sequencer +
    # "." + the key as sent
    assert event.id == (
        "C3D13FE58DE4C810.FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD"
        ".0055AED6DCD90281E5.HappyFace.jpg"
    )
    # source: "eventSource" + "." + "awsRegion" + "." + "s3.buckets.name"
    assert event.source == "aws:s3.us-west-2.mybucket"
    assert event.specversion == "1.0"
    # type: "com.amazonaws.s3." + "eventName"
    assert event.type == "com.amazonaws.s3.ObjectCreated:Put"
    assert event.datacontenttype == "application/json"
    assert event.dataschema is None
    # subject: "s3.object.key"
    assert event.subject == "HappyFace.jpg"
    # time: "eventTime"
    assert event.time == datetime(1970, 1, 1, tzinfo=UTC)
    # data: the S3 event
    assert event.data == record
    assert event.extensions == {}


def test_the_mapped_event_survives_the_cloudevents_json_format() -> None:
    event = only_event(decode_s3(example("aws-put.json")))
    text = json.loads(event.to_json())
    assert text["time"] == "1970-01-01T00:00:00Z"
    assert text["datacontenttype"] == "application/json"
    assert Event.from_json(event.to_json()) == event


def test_the_aws_test_message_is_a_test_not_an_error() -> None:
    decoded = decode_s3(example("aws-test-event.json"))
    assert decoded == Decoded(test=True)
    assert not decoded.malformed
    assert decoded.records == 0


def test_the_aws_structure_with_placeholder_values_is_refused_with_a_reason() -> None:
    decoded = decode_s3(example("aws-structure.json"))
    assert decoded.events == ()
    assert decoded.malformed
    (refusal,) = decoded.refused
    assert refusal.index == 0
    assert "eventName must be an S3 event name" in refusal.reason
    assert "'event-type'" in refusal.reason
    assert str(refusal).startswith("record 0: ")


@pytest.mark.parametrize(
    ("name", "source", "key", "event_id", "time"),
    [
        ("minio-elasticsearch.json", "minio:s3..images", "myphoto.jpg", "14B09A09703FC47B",
         datetime(2017, 3, 30, 8, 0, 41, tzinfo=UTC)),
        ("minio-redis-namespace.json", "minio:s3..images", "myphoto.jpg", "14AFFBD1ACE5F632",
         datetime(2017, 3, 28, 7, 41, 19, tzinfo=UTC)),
        ("minio-nats.json", "aws:s3..images", "myphoto.jpg", None,
         datetime(2016, 10, 12, 13, 51, 33, tzinfo=UTC)),
        ("minio-nats-streaming.json", "minio:s3..images", "myphoto.jpg", "14CF20BD1EFD5B93",
         datetime(2017, 7, 7, 18, 46, 37, tzinfo=UTC)),
        ("minio-postgresql.json", "aws:s3..images", "myphoto.jpg", None,
         datetime(2016, 10, 12, 21, 18, 20, tzinfo=UTC)),
        ("minio-mysql.json", "aws:s3..images", "myphoto.jpg", "14AC59476F809FD3",
         datetime(2017, 3, 16, 11, 29, tzinfo=UTC)),
        ("minio-kafka.json", "minio:s3..images", "myphoto.jpg", "15C3249451E12784",
         datetime(2019, 9, 10, 17, 41, 54, tzinfo=UTC)),
        ("minio-nsq.json", "minio:s3..images", "gopher.jpg", "1562A792DAA53426",
         datetime(2018, 10, 31, 9, 31, 11, tzinfo=UTC)),
    ],
)  # fmt: skip
def test_the_minio_examples(
    name: str, source: str, key: str, event_id: str | None, time: datetime
) -> None:
    body = example(name)
    event = only_event(decode_s3(body))
    parsed = json.loads(body)
    assert event.type == "com.amazonaws.s3.ObjectCreated:Put"  # MinIO's "s3:" removed
    assert event.source == source  # MinIO sends an empty awsRegion
    assert event.subject == key
    assert event.time == time
    assert event.data == parsed["Records"][0]
    if event_id is None:  # old MinIO: no x-amz-request-id in responseElements
        assert UUID.fullmatch(event.id)
    else:  # no x-amz-id-2 either: the request id alone, then the sequencer and key
        obj = parsed["Records"][0]["s3"]["object"]
        assert event.id == f"{event_id}.{obj['sequencer']}.{obj['key']}"


def test_the_minio_example_with_typographic_dashes_in_its_time_is_refused() -> None:
    decoded = decode_s3(example("minio-amqp.json"))
    (refusal,) = decoded.refused
    assert refusal.index == 0
    assert "eventTime must be an ISO 8601 time" in refusal.reason
    assert "2016\u201309\u201308" in refusal.reason  # en dashes


def test_every_example_is_decoded_or_refused_as_parsed_json_too() -> None:
    for path in DATA.glob("*.json"):
        from_bytes = decode_s3(path.read_bytes())
        from_text = decode_s3(path.read_text())
        from_json = decode_s3(json.loads(path.read_text()))
        assert from_bytes.refused == from_text.refused == from_json.refused, path.name
        assert [e.subject for e in from_bytes.events] == [e.subject for e in from_json.events]


# -- the mapping's details --------------------------------------------------------------


def test_a_current_minio_record_gets_the_adapters_id() -> None:
    record = s3_record(
        "s3:ObjectCreated:Put",
        "ai-demo",
        "service.yaml",
        event_source="minio:s3",
        region="",
        request_id="178869619B8B3C05",
        host_id="dd9025bab4ad464b049177c95eb6ebf374d3b3fd1af9251148b658df7ac2e3e8",
    )
    event = only_event(decode_s3({"EventName": "s3:ObjectCreated:Put", "Records": [record]}))
    assert event.id == (
        "178869619B8B3C05.dd9025bab4ad464b049177c95eb6ebf374d3b3fd1af9251148b658df7ac2e3e8"
        ".0055AED6DCD90281E5.service.yaml"
    )
    assert event.source == "minio:s3..ai-demo"
    assert event.type == S3_TYPE_PREFIX + "ObjectCreated:Put"


@pytest.mark.parametrize(
    ("encoded", "key"),
    [
        ("red+flower.jpg", "red flower.jpg"),  # AWS's own example
        ("Contrato+de+renova%C3%A7%C3%A3o-1.pdf", "Contrato de renovação-1.pdf"),
        ("photos%2F2024%2Fcat.jpg", "photos/2024/cat.jpg"),  # MinIO escapes "/" too
        ("photos/2024/cat.jpg", "photos/2024/cat.jpg"),  # AWS does not
        ("a%2Bb.txt", "a+b.txt"),  # a real "+"
        ("100%25.txt", "100%.txt"),
    ],
)
def test_keys_are_url_decoded_form_style(encoded: str, key: str) -> None:
    record = s3_record("ObjectCreated:Put", "b", "x")
    record["s3"]["object"]["key"] = encoded
    event = only_event(decode_s3({"Records": [record]}))
    assert event.subject == key
    assert event.data["s3"]["object"]["key"] == encoded  # the record is left as sent


def test_s3_record_encodes_keys_as_s3_does() -> None:
    record = s3_record("ObjectCreated:Put", "b", "red flower+1/ü.jpg")
    assert record["s3"]["object"]["key"] == "red+flower%2B1/%C3%BC.jpg"
    assert only_event(decode_s3({"Records": [record]})).subject == "red flower+1/ü.jpg"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2019-11-22T13:47:35.124724Z", datetime(2019, 11, 22, 13, 47, 35, 124724, tzinfo=UTC)),
        ("2023-09-26T09:38:47.702Z", datetime(2023, 9, 26, 9, 38, 47, 702000, tzinfo=UTC)),
        ("2030-01-01T01:00:00+01:00", datetime(2030, 1, 1, tzinfo=UTC)),
        ("2030-01-01T00:00:00z", datetime(2030, 1, 1, tzinfo=UTC)),
    ],
)
def test_event_times_of_every_store(text: str, expected: datetime) -> None:
    record = s3_record("ObjectCreated:Put", "b", "k")
    record["eventTime"] = text
    event = only_event(decode_s3({"Records": [record]}))
    assert event.time == expected
    assert event.time is not None and event.time.tzinfo is UTC


@pytest.mark.parametrize(
    "name",
    [
        "ObjectRemoved:Delete",
        "ObjectRemoved:DeleteMarkerCreated",
        "LifecycleExpiration:Delete",
        "ObjectRestore:Completed",
        "Replication:OperationFailedReplication",
        "IntelligentTiering",
        "s3:Scanner:ManyVersions",
    ],
)
def test_every_event_name_of_s3_and_minio_is_a_type(name: str) -> None:
    event = only_event(decode_s3({"Records": [s3_record(name, "b", "k")]}))
    assert event.type == "com.amazonaws.s3." + name.removeprefix("s3:")


def test_a_removal_record_has_no_size() -> None:
    event = bucket_event("ObjectRemoved:Delete", "b", "gone.txt")
    assert "size" not in event.data["s3"]["object"]
    assert event.type == "com.amazonaws.s3.ObjectRemoved:Delete"


# -- refusals ---------------------------------------------------------------------------


def without(record: dict[str, Any], path: str) -> dict[str, Any]:
    *parents, last = path.split(".")
    target = record
    for name in parents:
        target = target[name]
    del target[last]
    return record


def replaced(record: dict[str, Any], path: str, value: object) -> dict[str, Any]:
    *parents, last = path.split(".")
    target = record
    for name in parents:
        target = target[name]
    target[last] = value
    return record


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda r: without(r, "eventVersion"), "unsupported eventVersion None"),
        (lambda r: replaced(r, "eventVersion", "1.0"), "unsupported eventVersion '1.0'"),
        (lambda r: replaced(r, "eventVersion", "3.0"), "unsupported eventVersion '3.0'"),
        (lambda r: replaced(r, "eventVersion", 2.1), "unsupported eventVersion 2.1"),
        (lambda r: without(r, "eventName"), "eventName must be an S3 event name"),
        (lambda r: replaced(r, "eventName", "Object Created"), "eventName must be"),
        (lambda r: replaced(r, "eventName", ""), "eventName must be"),
        (lambda r: without(r, "s3"), "the record has no s3"),
        (lambda r: replaced(r, "s3", []), "s3 must be a JSON object, got a list"),
        (lambda r: without(r, "s3.bucket"), "the record has no s3.bucket"),
        (lambda r: without(r, "s3.bucket.name"), "the record has no s3.bucket.name"),
        (lambda r: replaced(r, "s3.bucket.name", 7), "s3.bucket.name must be a string"),
        (lambda r: replaced(r, "s3.bucket.name", ""), "s3.bucket.name is empty"),
        (lambda r: without(r, "s3.object"), "the record has no s3.object"),
        (lambda r: without(r, "s3.object.key"), "the record has no s3.object.key"),
        (lambda r: replaced(r, "s3.object.key", ""), "s3.object.key is empty"),
        (lambda r: replaced(r, "s3.object.key", "%FF.txt"), "is not URL-encoded UTF-8"),
        (lambda r: without(r, "eventSource"), "the record has no eventSource"),
        (lambda r: replaced(r, "eventSource", ""), "eventSource is empty"),
        (lambda r: replaced(r, "awsRegion", None), "awsRegion must be a string, got null"),
        (lambda r: without(r, "eventTime"), "eventTime must be an ISO 8601 time"),
        (lambda r: replaced(r, "eventTime", "yesterday"), "eventTime must be"),
        (lambda r: replaced(r, "eventTime", "2030-01-01T00:00:00"), "eventTime must be"),
        (lambda r: replaced(r, "eventTime", "2030-02-30T00:00:00Z"), "not a valid date"),
    ],
)
def test_malformed_records_are_refused_with_the_reason(change: Any, reason: str) -> None:
    record = change(s3_record("ObjectCreated:Put", "b", "k"))
    decoded = decode_s3({"Records": [record]})
    assert decoded.events == ()
    assert decoded.malformed
    (refusal,) = decoded.refused
    assert refusal.index == 0
    assert reason in refusal.reason


def test_a_missing_region_is_empty() -> None:
    record = without(s3_record("ObjectCreated:Put", "b", "k"), "awsRegion")
    assert only_event(decode_s3({"Records": [record]})).source == "aws:s3..b"


def test_each_record_is_decoded_or_refused_on_its_own() -> None:
    good = s3_record("ObjectCreated:Put", "b", "one")
    other = s3_record("ObjectRemoved:Delete", "b", "two")
    decoded = decode_s3({"Records": [good, "junk", {"eventVersion": "1.0"}, other]})
    assert [e.subject for e in decoded.events] == ["one", "two"]
    assert [r.index for r in decoded.refused] == [1, 2]
    assert decoded.refused[0].reason == "a record must be a JSON object, got a string"
    assert decoded.records == 4
    assert not decoded.malformed


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (b"", "the message is not JSON"),
        (b"\xff", "the message is not JSON"),
        (b'{"Records": [', "the message is not JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (b'"Records"', "expected a JSON object"),
        (b"null", "got null"),
        (b"{}", "the JSON object has no Records list"),
        (b'{"records": []}', "the JSON object has no Records list"),
        (b'{"Records": {}}', "Records must be a list, got a JSON object"),
        (b'{"Records": []}', "the message's Records list is empty"),
        (b'{"Event": "s3:TestEvent2"}', "no Records list"),
    ],
)
def test_a_message_that_is_not_a_notification_is_refused_whole(message: bytes, reason: str) -> None:
    decoded = decode_s3(message)
    assert decoded.events == ()
    (refusal,) = decoded.refused
    assert refusal.index is None
    assert reason in refusal.reason
    assert str(refusal) == refusal.reason
    assert decoded.malformed


def test_minios_access_format_is_decoded() -> None:
    one = s3_record("s3:ObjectCreated:Put", "images", "a.jpg", event_source="minio:s3")
    two = s3_record("s3:ObjectRemoved:Delete", "images", "b.jpg", event_source="minio:s3")
    message = [{"Event": [one], "EventTime": one["eventTime"]}, {"Event": [two]}]
    decoded = decode_s3(json.dumps(message))
    assert [e.subject for e in decoded.events] == ["a.jpg", "b.jpg"]


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                ["Records", "eventVersion", "eventName", "s3", "bucket", "object", "key",
                 "name", "eventTime", "eventSource", "awsRegion", "responseElements",
                 "x-amz-request-id", "x-amz-id-2", "Event"]
            ),
            inner,
            max_size=8,
        ),
        max_leaves=30,
    )
)  # fmt: skip
def test_no_message_makes_the_decoder_raise(message: object) -> None:
    decoded = decode_s3(message)
    assert decoded.test or decoded.events or decoded.refused or decoded.filtered
    decode_s3(json.dumps(message))


# -- the filter -------------------------------------------------------------------------


def test_the_filter_keeps_what_passes_and_counts_the_rest() -> None:
    where = BucketFilter(
        bucket="images", prefix="cats/", suffix=".jpg", events=("ObjectCreated:*",)
    )
    records = [
        s3_record("ObjectCreated:Put", "images", "cats/tom.jpg"),
        s3_record("ObjectCreated:CompleteMultipartUpload", "images", "cats/big.jpg"),
        s3_record("ObjectRemoved:Delete", "images", "cats/tom.jpg"),  # event
        s3_record("ObjectCreated:Put", "videos", "cats/tom.jpg"),  # bucket
        s3_record("ObjectCreated:Put", "images", "dogs/rex.jpg"),  # prefix
        s3_record("ObjectCreated:Put", "images", "cats/tom.png"),  # suffix
        {"eventVersion": "1.0"},  # refused, not filtered
    ]
    decoded = decode_s3({"Records": records}, where=where)
    assert [e.subject for e in decoded.events] == ["cats/tom.jpg", "cats/big.jpg"]
    assert decoded.filtered == 4
    assert len(decoded.refused) == 1
    assert decoded.records == 7


def test_the_filter_applies_to_the_decoded_key() -> None:
    where = BucketFilter(prefix="my photos/", suffix=" 1.jpg")
    record = s3_record("ObjectCreated:Put", "b", "my photos/summer 1.jpg")
    assert record["s3"]["object"]["key"] == "my+photos/summer+1.jpg"
    assert len(decode_s3({"Records": [record]}, where=where).events) == 1


@pytest.mark.parametrize(
    ("patterns", "name", "passes"),
    [
        (("ObjectCreated:*",), "ObjectCreated:Put", True),
        (("s3:ObjectCreated:*",), "ObjectCreated:Put", True),  # as S3's configuration writes it
        (("ObjectCreated:*",), "s3:ObjectCreated:Copy", True),  # as MinIO's records write it
        (("ObjectCreated:*",), "ObjectRemoved:Delete", False),
        (("ObjectCreated:Put", "ObjectRemoved:*"), "ObjectRemoved:Delete", True),
        (("ObjectCreated:Put", "ObjectRemoved:*"), "ObjectCreated:Post", False),
        (("*",), "Replication:OperationFailedReplication", True),
        (None, "anything", True),
    ],
)
def test_event_name_patterns(patterns: tuple[str, ...] | None, name: str, passes: bool) -> None:
    assert BucketFilter(events=patterns)("b", "k", name) is passes


def test_bucket_globs() -> None:
    where = BucketFilter(bucket="logs-*")
    assert where("logs-2030", "k", "ObjectCreated:Put")
    assert not where("images", "k", "ObjectCreated:Put")


def test_the_filter_matches_events_by_their_attributes() -> None:
    where = BucketFilter(bucket="my.bucket", prefix="in/", events=["ObjectCreated:*"])
    assert where.matches(bucket_event("ObjectCreated:Put", "my.bucket", "in/a.csv"))
    assert not where.matches(bucket_event("ObjectCreated:Put", "bucket", "in/a.csv"))
    assert not where.matches(bucket_event("ObjectRemoved:Delete", "my.bucket", "in/a.csv"))
    assert not where.matches(bucket_event("ObjectCreated:Put", "my.bucket", "out/a.csv"))
    assert not where.matches(Event(type="com.example", source="/x", subject="in/a.csv"))
    assert not where.matches(Event(type=S3_TYPE_PREFIX + "ObjectCreated:Put", source="/x"))


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"bucket": ""}, ValueError),
        ({"bucket": 3}, TypeError),
        ({"prefix": None}, TypeError),
        ({"suffix": b".jpg"}, TypeError),
        ({"events": ()}, ValueError),
        ({"events": ("",)}, ValueError),
        ({"events": "ObjectCreated:*"}, TypeError),
        ({"events": (1,)}, TypeError),
    ],
)
def test_bad_filters_are_refused(options: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        BucketFilter(**options)


def test_filters_compare_by_their_settings() -> None:
    assert BucketFilter(bucket="b", events=["ObjectCreated:*"]) == BucketFilter(
        bucket="b", events=("ObjectCreated:*",)
    )
    assert "ObjectCreated:*" in repr(BucketFilter(events=["ObjectCreated:*"]))


# -- the builder ------------------------------------------------------------------------


def test_object_event_is_the_adapters_mapping() -> None:
    when = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    event = object_event(
        "s3:ObjectCreated:Copy",
        "images",
        "cats/tom.jpg",
        time=when,
        data={"size": 3},
        event_source="minio:s3",
        region="eu-1",
        id="req.host",
    )
    assert event == Event(
        type="com.amazonaws.s3.ObjectCreated:Copy",
        source="minio:s3.eu-1.images",
        id="req.host",
        subject="cats/tom.jpg",
        time=datetime(2030, 1, 2, 1, 4, 5, tzinfo=UTC),
        datacontenttype="application/json",
        data={"size": 3},
    )
    default = object_event("ObjectRemoved:Delete", "b", "k", time=when, data=None)
    assert default.source == "aws:s3..b"
    assert UUID.fullmatch(default.id)


@pytest.mark.parametrize("name", ["", "ObjectCreated:", "Object Created", "s3:", 7, None])
def test_object_event_refuses_what_is_no_event_name(name: Any) -> None:
    with pytest.raises(ValueError, match="event_name must be an S3 event name"):
        object_event(name, "b", "k", time=datetime.now(UTC), data=None)


def test_object_event_refuses_what_cloudevents_refuses() -> None:
    with pytest.raises(InvalidEventError):
        object_event("ObjectCreated:Put", "b", "", time=datetime.now(UTC), data=None)
    with pytest.raises(InvalidEventError):
        object_event("ObjectCreated:Put", "b", "k", time=datetime(2030, 1, 1), data=None)


def test_bucket_event_is_what_the_decoder_makes_of_s3_record() -> None:
    when = datetime(2030, 5, 6, 7, 8, 9, 123000, tzinfo=UTC)
    event = bucket_event("ObjectCreated:Put", "images", "a b.jpg", time=when, size=9)
    record = s3_record("ObjectCreated:Put", "images", "a b.jpg", time=when, size=9)
    assert event == only_event(decode_s3({"Records": [record]}))
    assert event.time == when
    assert event.data["s3"]["object"]["size"] == 9
    with pytest.raises(ValueError, match=r"s3\.bucket\.name is empty"):
        bucket_event("ObjectCreated:Put", "", "k")


def test_refusals_and_results_are_values() -> None:
    assert Refusal(1, "x") == Refusal(1, "x")
    assert Decoded() == Decoded(events=(), refused=(), filtered=0, test=False)
    assert not Decoded().malformed


# -- the broker hook --------------------------------------------------------------------


class FakeBrokerSource(Source):
    """A broker source with ``decode="s3"``, as a source of issue 13 would use the decoder."""

    def __init__(self, payloads: list[bytes], decoder: S3Decoder) -> None:
        self.payloads = payloads
        self.decoder = decoder
        self.counters = {"received": 0, "published": 0, "malformed": 0, "filtered": 0}

    def statistics(self) -> dict[str, int]:
        return dict(self.counters)

    async def run(
        self, app: App, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        for payload in self.payloads:
            self.counters["received"] += 1
            decoded = self.decoder(payload)
            for event in decoded.events:
                await app.publish(event)
                self.counters["published"] += 1
            self.counters["malformed"] += len(decoded.refused)
            self.counters["filtered"] += decoded.filtered
        await anyio.sleep_forever()


@pytest.mark.anyio
async def test_a_broker_source_decodes_each_message_with_the_decoder() -> None:
    decoder = S3Decoder(BucketFilter(bucket="images", events=["ObjectCreated:*"]))
    payloads = [
        example("minio-nats-streaming.json"),  # MinIO's NATS example
        example("minio-amqp.json"),  # refused: its eventTime
        json.dumps({"Records": [s3_record("ObjectCreated:Put", "other", "x")]}).encode(),
        b"not json",
        example("minio-kafka.json"),
    ]
    app = Reactor()
    capture = Capture()
    app.subscribe(decoder.pattern, capture, where=decoder.matches)
    source = FakeBrokerSource(payloads, decoder)
    app.add_source(source)
    async with app:
        with anyio.fail_after(5):
            events = await capture.wait_for(2)
        await app.publish_and_wait(bucket_event("ObjectCreated:Put", "other", "y"))
    assert [e.id.partition(".")[0] for e in events] == ["14CF20BD1EFD5B93", "15C3249451E12784"]
    assert len(capture.events) == 2  # the other bucket's event does not match
    assert source.statistics() == {"received": 5, "published": 2, "malformed": 2, "filtered": 1}


def test_the_default_decoder_takes_every_record() -> None:
    decoder = S3Decoder()
    assert decoder.pattern == "com.amazonaws.s3.*"
    decoded = decoder(json.loads(example("aws-put.json")))
    assert decoded == decode_s3(example("aws-put.json"))
    assert decoder.matches(decoded.events[0])
    assert S3Decoder() == S3Decoder(BucketFilter())


def test_the_records_of_one_request_get_ids_of_their_own() -> None:
    # A DeleteObjects call: one request, several keys; deduplication on source + id (the
    # broker queues' windows, the ingress) must not take them for repeats of one event.
    records = [
        s3_record("ObjectRemoved:Delete", "images", key, sequencer=f"0055AED6DCD9028{n}")
        for n, key in enumerate(["a.jpg", "b.jpg", "c d.jpg"])
    ]
    events = decode_s3({"Records": records}).events
    assert len({(e.source, e.id) for e in events}) == 3
    assert [e.subject for e in events] == ["a.jpg", "b.jpg", "c d.jpg"]
    # The same record sent again (S3 delivers at least once) keeps its id.
    assert [e.id for e in decode_s3({"Records": records}).events] == [e.id for e in events]
