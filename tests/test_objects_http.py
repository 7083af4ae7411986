"""S3 bucket notifications over HTTP: MinIO's webhook target and SNS subscriptions.

Requests are ASGI calls into the app's ingress, on asyncio and trio. SNS messages are
the examples of AWS's documentation (tests/data/sns-messages) and S3 notifications
wrapped like them, signed here with a certificate made for the test and served through
the route's ``fetch`` hook; the signed text is computed here from AWS's description,
independently of the library.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from reactor import Event, Reactor
from reactor.queues.memory import MemoryQueue
from reactor.sources import objects
from reactor.sources.http import Message
from reactor.sources.objects import (
    BucketEvents,
    _sns,
    bucket_event,
    on_bucket_event,
    s3_record,
)
from reactor.testing import Capture, VirtualClock

pytestmark = pytest.mark.anyio

DATA = Path(__file__).parent / "data"
TOPIC = "arn:aws:sns:us-west-2:123456789012:MyTopic"
SUBSCRIPTION = TOPIC + ":c9135db0-26c4-47ec-8998-413945fb5a96"
CERT_URL = (
    "https://sns.us-west-2.amazonaws.com/"
    "SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem"
)
START = datetime(2030, 1, 1, tzinfo=UTC)


# -- HTTP helpers -----------------------------------------------------------------------


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    json: Any


async def call(
    app: Reactor,
    body: bytes = b"",
    headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
    *,
    path: str = "/s3",
    method: str = "POST",
) -> Response:
    """Make one request to the app's ingress."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    messages: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[Message] = []

    async def receive() -> Message:
        assert messages, "the app read past the end of the body"
        return messages.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in items],
        "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 8000),
    }
    with anyio.fail_after(5):
        await app.asgi(scope, receive, send)
    start, answer = sent
    answer_headers = {k.decode(): v.decode() for k, v in start["headers"]}
    assert answer_headers["content-type"] == "application/json"
    return Response(start["status"], answer_headers, json.loads(answer["body"]))


def minio_body(*records: dict[str, Any]) -> bytes:
    """What MinIO's webhook target posts (internal/event/target/webhook.go)."""
    first = records[0]
    return json.dumps(
        {"EventName": first["eventName"], "Key": "images/x", "Records": list(records)}
    ).encode()


JSON_HEADERS = {"content-type": "application/json"}


@asynccontextmanager
async def running(app: Reactor) -> AsyncIterator[Capture]:
    """Run *app* with a consumer of every event."""
    everything = Capture()
    app.subscribe("*", everything, name="everything")
    async with app:
        yield everything


def accepted(app: Reactor) -> int:
    return int(app.stats().sources["http"]["accepted"] or 0)


# -- direct senders (MinIO's webhook target) --------------------------------------------


async def test_a_minio_notification_reaches_the_handler() -> None:
    app = Reactor()
    capture = Capture()
    app.on_bucket_event(path="/s3", bucket="images", events=("ObjectCreated:*",))(capture)
    record = s3_record("s3:ObjectCreated:Put", "images", "cat 1.jpg", event_source="minio:s3")
    async with running(app):
        response = await call(app, minio_body(record), JSON_HEADERS)
        with anyio.fail_after(5):
            (event,) = await capture.wait_for(1)
        stats = app.stats().sources["/reactor/objects/%2Fs3"]
    assert response.status == 202
    assert response.json == {"ids": [event.id]}
    assert event.type == "com.amazonaws.s3.ObjectCreated:Put"
    assert event.source == "minio:s3.us-east-1.images"
    assert event.subject == "cat 1.jpg"
    assert event.data == record
    assert stats["records"] == stats["published"] == 1


async def test_every_documentation_example_posted_directly() -> None:
    app = Reactor()
    capture = Capture()
    on_bucket_event(app, "/minio")(capture)
    names = sorted(p.name for p in (DATA / "s3-notifications").glob("*.json"))
    async with running(app):
        answers = {
            name: await call(
                app, (DATA / "s3-notifications" / name).read_bytes(), JSON_HEADERS, path="/minio"
            )
            for name in names
        }
        with anyio.fail_after(5):
            await capture.wait_for(9)
    statuses = {name: answer.status for name, answer in answers.items()}
    assert statuses == {
        "aws-put.json": 202,
        "aws-structure.json": 400,  # placeholder values
        "aws-test-event.json": 200,
        "minio-amqp.json": 400,  # en dashes in its eventTime
        **{name: 202 for name in names if name.startswith("minio-") and name != "minio-amqp.json"},
    }
    assert answers["aws-test-event.json"].json == {"ids": [], "test": True}
    assert "eventTime must be an ISO 8601 time" in answers["minio-amqp.json"].json["error"]
    assert {e.subject for e in capture.events} == {"HappyFace.jpg", "myphoto.jpg", "gopher.jpg"}


@pytest.mark.parametrize(
    ("token", "authorization"),
    [
        ("s3cr3t", "Bearer s3cr3t"),
        ("s3cr3t", "bearer  s3cr3t "),
        ("Basic dXNlcjpwYXNz", "Basic dXNlcjpwYXNz"),  # MinIO sends two words as they are
    ],
)
async def test_the_bearer_token_is_checked(token: str, authorization: str) -> None:
    app = Reactor()
    on_bucket_event(app, token=token)(Capture())
    body = minio_body(s3_record("ObjectCreated:Put", "b", "k"))
    async with running(app):
        good = await call(app, body, {**JSON_HEADERS, "authorization": authorization})
        assert good.status == 202
        missing = await call(app, body, JSON_HEADERS)
        wrong = await call(app, body, {**JSON_HEADERS, "authorization": "Bearer nope"})
        other_scheme = await call(app, body, {**JSON_HEADERS, "authorization": "Token s3cr3t"})
        stats = app.stats().sources["/reactor/objects/%2Fs3"]
        assert accepted(app) == 1
    assert missing.status == wrong.status == other_scheme.status == 401
    assert missing.headers["www-authenticate"] == 'Bearer realm="reactor"'
    assert "Authorization: Bearer <token>" in missing.json["error"]
    assert wrong.json == {"error": "the authorization token is not valid"}
    assert stats["unauthorized"] == 3
    assert stats["published"] == 1


async def test_a_bad_token_is_refused_before_the_body_is_read() -> None:
    app = Reactor()
    on_bucket_event(app, token="s3cr3t")(Capture())
    sent: list[Message] = []

    async def receive() -> Message:
        raise AssertionError("the body was read")

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/s3",
        "root_path": "",
        "headers": [(b"content-length", b"100000")],
    }
    async with app:
        await app.asgi(scope, receive, send)
    assert sent[0]["status"] == 401


@pytest.mark.parametrize(
    ("body", "headers", "status", "reason"),
    [
        (b"", JSON_HEADERS, 400, "the message is not JSON"),
        (b"{", JSON_HEADERS, 400, "the message is not JSON"),
        (b"\xff\xfe", JSON_HEADERS, 400, "the message is not JSON"),
        (b"[]", JSON_HEADERS, 400, "not an S3 event notification"),
        (b"{}", JSON_HEADERS, 400, "no Records list"),
        (b'{"Records": []}', JSON_HEADERS, 400, "Records list is empty"),
        (b'{"Records": [1, {"eventVersion": "1.0"}]}', JSON_HEADERS, 400,
         "record 0: a record must be a JSON object, got a number; record 1: unsupported"),
        (b'{"Records": []}', {"content-type": "application/xml"}, 415, "S3 notifications are JSON"),
    ],
)  # fmt: skip
async def test_bad_bodies_are_400_and_publish_nothing(
    body: bytes, headers: dict[str, str], status: int, reason: str
) -> None:
    app = Reactor()
    on_bucket_event(app)(Capture())
    async with running(app):
        response = await call(app, body, headers)
        assert accepted(app) == 0
    assert response.status == status
    assert reason in response.json["error"]


async def test_only_post_is_taken_and_a_stopped_app_answers_503() -> None:
    app = Reactor()
    on_bucket_event(app)(Capture())
    body = minio_body(s3_record("ObjectCreated:Put", "b", "k"))
    assert (await call(app, body, JSON_HEADERS)).status == 503
    async with running(app):
        response = await call(app, body, method="GET")
        assert (response.status, response.headers["allow"]) == (405, "POST")


async def test_records_are_filtered_before_publishing_and_counted() -> None:
    app = Reactor()
    capture = Capture()
    on_bucket_event(
        app, bucket="images", prefix="in/", suffix=".jpg", events=["s3:ObjectCreated:*"]
    )(capture)
    records = [
        s3_record("ObjectCreated:Put", "images", "in/a.jpg"),
        s3_record("ObjectRemoved:Delete", "images", "in/a.jpg"),
        s3_record("ObjectCreated:Put", "videos", "in/a.jpg"),
        s3_record("ObjectCreated:Put", "images", "out/a.jpg"),
        s3_record("ObjectCreated:Put", "images", "in/a.png"),
    ]
    async with running(app) as everything:
        some = await call(app, json.dumps({"Records": records}).encode(), JSON_HEADERS)
        none = await call(app, json.dumps({"Records": records[1:]}).encode(), JSON_HEADERS)
        with anyio.fail_after(5):
            await capture.wait_for(1)
        stats = app.stats().sources["/reactor/objects/%2Fs3"]
        assert len(everything.events) == 1  # nothing else was published
    assert some.status == 202
    assert some.json == {"ids": [capture.events[0].id], "filtered": 4}
    assert (none.status, none.json) == (200, {"ids": [], "filtered": 4})
    assert stats["filtered"] == 8
    assert stats["records"] == 9


async def test_partly_refused_messages_publish_the_rest_and_say_what_was_refused() -> None:
    app = Reactor()
    capture = Capture()
    on_bucket_event(app)(capture)
    body = json.dumps(
        {"Records": [s3_record("ObjectCreated:Put", "b", "k"), {"eventVersion": "9"}]}
    ).encode()
    async with running(app):
        response = await call(app, body, JSON_HEADERS)
        with anyio.fail_after(5):
            await capture.wait_for(1)
        stats = app.stats().sources["/reactor/objects/%2Fs3"]
    assert response.status == 202
    assert response.json["refused"] == [
        {
            "record": 1,
            "reason": "unsupported eventVersion '9': only version 2.x of the S3 event "
            "structure is decoded",
        }
    ]
    assert stats["malformed"] == 1


async def test_handlers_of_one_path_get_their_own_records() -> None:
    app = Reactor()
    images, logs = Capture(), Capture()
    on_bucket_event(app, bucket="images", name="images")(images)
    on_bucket_event(app, bucket="logs", events=["ObjectRemoved:*"], name="logs")(logs)
    records = [
        s3_record("ObjectCreated:Put", "images", "a"),
        s3_record("ObjectCreated:Put", "logs", "b"),  # nobody's
        s3_record("ObjectRemoved:Delete", "logs", "c"),
    ]
    async with running(app):
        response = await call(app, json.dumps({"Records": records}).encode(), JSON_HEADERS)
        with anyio.fail_after(5):
            await images.wait_for(1)
            await logs.wait_for(1)
    assert response.json["filtered"] == 1
    assert [e.subject for e in images.events] == ["a"]
    assert [e.subject for e in logs.events] == ["c"]


async def test_a_handler_receives_bucket_events_from_a_test_without_http() -> None:
    app = Reactor()
    capture = Capture()
    on_bucket_event(app, bucket="images", suffix=".jpg")(capture)
    async with app:
        await app.publish_and_wait(bucket_event("ObjectCreated:Put", "images", "a.jpg"))
        await app.publish_and_wait(bucket_event("ObjectCreated:Put", "images", "a.png"))
    assert [e.subject for e in capture.events] == ["a.jpg"]


async def test_the_cloudevents_endpoint_refuses_the_routes_types() -> None:
    app = Reactor()
    on_bucket_event(app)(Capture())
    forged = bucket_event("ObjectCreated:Put", "images", "a.jpg")
    headers, body = forged.to_http()
    async with running(app):
        response = await call(app, body, headers, path="/")
        other_headers, other_body = Event(type="com.example", source="/x").to_http()
        allowed = await call(app, other_body, other_headers, path="/")
        app.asgi.allow_reserved = True
        trusted = await call(app, body, headers, path="/")
    assert response.status == 403
    assert "reserved for a receiver" in response.json["error"]
    assert allowed.status == 202
    assert trusted.status == 202


async def test_more_records_than_the_queue_holds_is_413_and_nothing_is_published() -> None:
    app = Reactor(queue=MemoryQueue(capacity=1))
    on_bucket_event(app)(Capture())
    body = json.dumps(
        {"Records": [s3_record("ObjectCreated:Put", "b", k) for k in ("x", "y")]}
    ).encode()
    async with app:
        response = await call(app, body, JSON_HEADERS)
        stats = app.stats().sources["/reactor/objects/%2Fs3"]
    assert response.status == 413  # more events than the queue ever holds
    assert stats["published"] == 0


def test_routes_share_a_path_only_with_the_same_settings() -> None:
    app = Reactor()
    on_bucket_event(app, "/s3/", token="t", name="one")(Capture())
    on_bucket_event(app, "/s3", token="t", bucket="other", name="two")(Capture())
    (route,) = [s for s in app.sources if isinstance(s, BucketEvents)]
    assert route.path == "/s3"
    assert len(route.filters) == 2
    with pytest.raises(ValueError, match="routed already with other settings"):
        on_bucket_event(app, "/s3", token="u")
    with pytest.raises(ValueError, match="taken by a receiver"):
        app.asgi.webhook("/s3", type="x")
    app.asgi.webhook("/hook", type="x")
    with pytest.raises(ValueError, match="routed already"):
        on_bucket_event(app, "/hook")


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"path": "/"}, ValueError, "the root path"),
        ({"path": "/a*"}, ValueError, "path must look like"),
        ({"path": 3}, TypeError, "path must be a str"),
        ({"token": ""}, ValueError, "token"),
        ({"token": "a\nb"}, ValueError, "printable ASCII"),
        ({"token": "a b c"}, ValueError, "one word"),
        ({"token": "t", "sns": [TOPIC]}, ValueError, "token is for direct senders"),
        ({"sns": TOPIC}, TypeError, "sns must be a non-empty list"),
        ({"sns": []}, TypeError, "sns must be a non-empty list"),
        ({"fetch": "nope"}, TypeError, "fetch must be an async function"),
        ({"events": "ObjectCreated:*"}, TypeError, "events must be a list"),
        ({"bucket": ""}, ValueError, "must not be empty"),
        ({"concurrency": 0}, ValueError, "concurrency"),
        ({"nme": "x"}, TypeError, "nme"),
    ],
)
def test_bad_arguments_are_refused(
    options: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        on_bucket_event(Reactor(), **options)(Capture())


def test_the_reactor_method_is_the_plugin_function() -> None:
    assert Reactor.on_bucket_event is objects.on_bucket_event
    app = Reactor()
    app.on_bucket_event("/x", sns=["*"])
    (route,) = [source for source in app.sources if isinstance(source, BucketEvents)]
    assert repr(route) == "<BucketEvents '/x' sns, 0 filter(s)>"  # no handler yet
    assert route.name == route.uri == "/reactor/objects/%2Fx"


def test_importing_reactor_or_the_objects_package_imports_no_cryptography() -> None:
    code = "import sys, reactor, reactor.sources.objects;print('cryptography' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_an_sns_route_without_cryptography_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "cryptography", None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'reactor-events\[sns\]'"):
        on_bucket_event(Reactor(), sns=[TOPIC])
    on_bucket_event(Reactor())(Capture())  # direct routes need nothing


# -- SNS --------------------------------------------------------------------------------


def _certificate(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime(2000, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2100, 1, 1, tzinfo=UTC))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)


KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
CERTIFICATE = _certificate(KEY)

# The signed fields, in order, per message type (AWS: "Verifying the signatures of
# Amazon SNS messages"); written out here, not taken from the library.
NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
CONFIRMATION_FIELDS = (
    "Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"
)  # fmt: skip


def sign(
    envelope: dict[str, Any],
    *,
    version: str = "1",
    key: rsa.RSAPrivateKey = KEY,
    cert_url: str = CERT_URL,
) -> dict[str, Any]:
    """Sign *envelope* as SNS does, with *key*; return the signed copy."""
    signed = {**envelope, "SignatureVersion": version, "SigningCertURL": cert_url}
    fields = NOTIFICATION_FIELDS if signed["Type"] == "Notification" else CONFIRMATION_FIELDS
    text = "".join(f"{name}\n{signed[name]}\n" for name in fields if name in signed)
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
    signature = key.sign(text.encode(), padding.PKCS1v15(), algorithm)
    signed["Signature"] = base64.b64encode(signature).decode()
    return signed


class FakeSns:
    """The route's fetch hook: serves the test's certificate, records every URL asked for."""

    def __init__(self, certificates: Mapping[str, bytes] | None = None) -> None:
        self.certificates = dict(certificates or {CERT_URL: CERTIFICATE})
        self.fetched: list[str] = []
        self.failing = 0  # fetches that fail next
        self.failing_confirmations = 0  # visits of a SubscribeURL that fail next

    async def fetch(self, url: str) -> bytes:
        self.fetched.append(url)
        if self.failing:
            self.failing -= 1
            raise OSError("network is unreachable")
        if url in self.certificates:
            return self.certificates[url]
        if "Action=ConfirmSubscription" in url:
            if self.failing_confirmations:
                self.failing_confirmations -= 1
                raise OSError("connection reset")
            return b"<ConfirmSubscriptionResponse/>"
        raise OSError(f"404 for {url}")

    @property
    def confirmations(self) -> list[str]:
        return [url for url in self.fetched if "Action=ConfirmSubscription" in url]


def sns_headers(
    envelope: Mapping[str, Any], subscription: str | None = SUBSCRIPTION
) -> dict[str, str]:
    """The headers SNS sends with an envelope (AWS: "HTTP/HTTPS headers")."""
    headers = {
        "x-amz-sns-message-type": envelope["Type"],
        "x-amz-sns-message-id": envelope["MessageId"],
        "x-amz-sns-topic-arn": envelope["TopicArn"],
        "content-type": "text/plain; charset=UTF-8",
        "user-agent": "Amazon Simple Notification Service Agent",
    }
    if subscription is not None and envelope["Type"] != "SubscriptionConfirmation":
        headers["x-amz-sns-subscription-arn"] = subscription
    return headers


def documented(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((DATA / "sns-messages" / name).read_text())
    return loaded


def s3_notification(
    *records: dict[str, Any], when: datetime = START, message_id: str = "m-1"
) -> dict[str, Any]:
    """An SNS notification carrying an S3 message, as S3 publishes to a topic."""
    return {
        "Type": "Notification",
        "MessageId": message_id,
        "TopicArn": TOPIC,
        "Subject": "Amazon S3 Notification",
        "Message": json.dumps({"Records": list(records)}),
        "Timestamp": when.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "UnsubscribeURL": f"https://sns.us-west-2.amazonaws.com/?Action=Unsubscribe&SubscriptionArn={SUBSCRIPTION}",
    }


def sns_app(
    sns: FakeSns, *, start: datetime = START, topics: Sequence[str] = (TOPIC,), **options: Any
) -> tuple[Reactor, Capture]:
    app = Reactor(clock=VirtualClock(start=start))
    capture = Capture()
    on_bucket_event(app, "/sns", sns=list(topics), fetch=sns.fetch, **options)(capture)
    return app, capture


async def post(app: Reactor, envelope: Mapping[str, Any], **headers: str) -> Response:
    return await call(
        app, json.dumps(envelope).encode(), {**sns_headers(envelope), **headers}, path="/sns"
    )


async def test_the_documented_subscription_confirmation_is_verified_and_confirmed() -> None:
    sns = FakeSns()
    message = documented("subscription-confirmation.json")
    app, _ = sns_app(sns, start=datetime(2012, 4, 26, 20, 45, 30, tzinfo=UTC))
    async with running(app) as everything:
        placeholder = await post(app, message)  # AWS's example signature: not ours
        assert sns.confirmations == []
        response = await post(app, sign(message))
        with anyio.fail_after(5):
            (event,) = await everything.wait_for(1)
        stats = app.stats().sources["/reactor/objects/%2Fsns"]
    assert placeholder.status == 401
    assert placeholder.json == {"error": "the SNS message's Signature does not verify"}
    assert response.status == 202
    assert sns.confirmations == [message["SubscribeURL"]]
    assert sns.fetched.count(CERT_URL) == 1
    # cloudevents/adapters/aws-sns.md, "Subscription Confirmation", field by field:
    assert event.id == "165545c9-2a5c-472c-8df2-7ff2be2b3b1b"  # x-amz-sns-message-id
    assert event.source == TOPIC  # x-amz-sns-topic-arn
    assert event.specversion == "1.0"
    assert event.type == "com.amazonaws.sns.SubscriptionConfirmation"
    assert event.datacontenttype == "application/json"
    assert event.dataschema is None
    assert event.subject is None
    assert event.time == datetime(2012, 4, 26, 20, 45, 4, 751000, tzinfo=UTC)  # Timestamp
    assert event.data == sign(message)  # the HTTP payload
    assert response.json == {"ids": [event.id]}
    assert stats["confirmed"] == 1
    assert stats["unauthorized"] == 1


async def test_the_documented_unsubscribe_confirmation_is_published_not_visited() -> None:
    sns = FakeSns()
    message = sign(documented("unsubscribe-confirmation.json"))
    subscription = TOPIC + ":2bcfbf39-05c3-41de-beaa-fcfcc21c8f55"
    app, _ = sns_app(sns, start=datetime(2012, 4, 26, 20, 7, tzinfo=UTC))
    async with running(app) as everything:
        without_header = await call(
            app, json.dumps(message).encode(), sns_headers(message, None), path="/sns"
        )
        response = await post(app, message, **{"x-amz-sns-subscription-arn": subscription})
        with anyio.fail_after(5):
            (event,) = await everything.wait_for(1)
        stats = app.stats().sources["/reactor/objects/%2Fsns"]
    assert without_header.status == 400
    assert response.status == 202
    assert sns.confirmations == []  # never re-subscribed on its own
    # cloudevents/adapters/aws-sns.md, "Unsubscribe Confirmation":
    assert event.id == "47138184-6831-46b8-8f7c-afc488602d7d"
    assert event.source == subscription  # x-amz-sns-subscription-arn
    assert event.type == "com.amazonaws.sns.UnsubscribeConfirmation"
    assert event.subject is None
    assert event.time == datetime(2012, 4, 26, 20, 6, 41, 581000, tzinfo=UTC)
    assert event.data == message
    assert stats["unsubscribed"] == 1


async def test_the_documented_notification_is_not_an_s3_message() -> None:
    sns = FakeSns()
    message = sign(documented("notification.json"))
    app, _ = sns_app(sns, start=datetime(2012, 5, 2, 1, tzinfo=UTC))
    async with running(app):
        response = await post(app, message)
        assert accepted(app) == 0
    assert response.status == 400
    assert response.json["error"].startswith(
        "the SNS message is not an S3 event notification: the message is not JSON"
    )


@pytest.mark.parametrize("version", ["1", "2"])
async def test_an_s3_notification_through_sns(version: str) -> None:
    sns = FakeSns()
    record = json.loads((DATA / "s3-notifications" / "aws-put.json").read_text())["Records"][0]
    app, capture = sns_app(sns)
    async with running(app):
        response = await post(app, sign(s3_notification(record), version=version))
        with anyio.fail_after(5):
            (event,) = await capture.wait_for(1)
    assert response.status == 202
    assert response.json == {"ids": [event.id]}
    # The S3 adapter's event, as if S3 had posted the record itself.
    assert event == only(objects.decode_s3({"Records": [record]}).events)


def only(events: Sequence[Event]) -> Event:
    (event,) = events
    return event


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda m: {**m, "Message": m["Message"].replace("HappyFace", "SadFace")}, id="message"),
        pytest.param(lambda m: {**m, "TopicArn": TOPIC + "2"}, id="topic"),
        pytest.param(lambda m: {**m, "Subject": "other"}, id="subject"),
        pytest.param(lambda m: {k: v for k, v in m.items() if k != "Subject"}, id="subject-removed"),
        pytest.param(lambda m: {**m, "Timestamp": "2030-01-01T00:00:01.000Z"}, id="timestamp"),
        pytest.param(lambda m: {**m, "MessageId": "m-2"}, id="message-id"),
        pytest.param(lambda m: {**m, "SignatureVersion": "2"}, id="version"),
        pytest.param(lambda m: {**m, "Signature": base64.b64encode(b"x" * 256).decode()}, id="signature"),
        pytest.param(lambda m: sign(m, key=OTHER_KEY), id="other-key"),
    ],
)  # fmt: skip
async def test_a_tampered_message_is_401_and_publishes_nothing(tamper: Any) -> None:
    sns = FakeSns()
    record = s3_record("ObjectCreated:Put", "images", "HappyFace.jpg")
    app, _ = sns_app(sns, topics=[TOPIC, TOPIC + "2"])
    async with running(app):
        response = await post(app, tamper(sign(s3_notification(record))))
        assert accepted(app) == 0
    assert response.status == 401
    assert response.json == {"error": "the SNS message's Signature does not verify"}


@pytest.mark.parametrize(
    "url",
    [
        "http://sns.us-west-2.amazonaws.com/cert.pem",
        "https://sns.us-west-2.amazonaws.com.example.com/cert.pem",
        "https://example.com/sns.us-west-2.amazonaws.com/cert.pem",
        "https://sns.us-west-2.amazonaws.com@example.com/cert.pem",
        "https://user@sns.us-west-2.amazonaws.com/cert.pem",
        "https://sns.us-west-2.amazonaws.com:8443/cert.pem",
        "https://sns.amazonaws.com/cert.pem",
        "https://s3.us-west-2.amazonaws.com/cert.pem",
        "https://sns.us-west-2.amazonaws.com/cert.pem.txt",
        "https://sns.us-west-2.amazonaws.com/cert.pem?x=1",
        "https://sns.us-west-2.amazonaws.com:notaport/cert.pem",
        "sns.us-west-2.amazonaws.com/cert.pem",
    ],
)
async def test_a_certificate_url_off_the_aws_hosts_is_401_and_never_fetched(url: str) -> None:
    sns = FakeSns({url: CERTIFICATE})
    app, _ = sns_app(sns)
    message = sign(s3_notification(s3_record("ObjectCreated:Put", "b", "k")), cert_url=url)
    async with running(app):
        response = await post(app, message)
        assert accepted(app) == 0
    assert response.status == 401
    assert "SigningCertURL" in response.json["error"]
    assert sns.fetched == []


@pytest.mark.parametrize(
    "url",
    [
        "https://sns.eu-central-1.amazonaws.com/SimpleNotificationService-x.pem",
        "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-x.pem",
    ],
)
async def test_the_certificate_of_any_region_is_fetched(url: str) -> None:
    sns = FakeSns({url: CERTIFICATE})
    app, _capture = sns_app(sns)
    message = sign(s3_notification(s3_record("ObjectCreated:Put", "b", "k")), cert_url=url)
    async with running(app):
        assert (await post(app, message)).status == 202
    assert sns.fetched == [url]


async def test_what_is_served_at_the_url_must_be_an_rsa_certificate() -> None:
    other = CERT_URL.replace(".pem", "-2.pem")
    sns = FakeSns(
        {
            CERT_URL: b"not a certificate",
            other: _certificate(ec.generate_private_key(ec.SECP256R1())),
        }
    )
    app, _ = sns_app(sns)
    record = s3_record("ObjectCreated:Put", "b", "k")
    async with running(app):
        junk = await post(app, sign(s3_notification(record)))
        not_rsa = await post(app, sign(s3_notification(record), cert_url=other))
    assert (junk.status, not_rsa.status) == (401, 401)
    assert "not a PEM X.509 certificate" in junk.json["error"]
    assert "does not hold an RSA key" in not_rsa.json["error"]


async def test_certificates_are_cached_and_the_cache_is_bounded() -> None:
    size = _sns.CERTIFICATE_CACHE
    urls = [CERT_URL.replace(".pem", f"-{n}.pem") for n in range(size + 1)]
    sns = FakeSns(dict.fromkeys(urls, CERTIFICATE))
    app, _ = sns_app(sns)
    record = s3_record("ObjectCreated:Put", "b", "k")

    async def send(n: int, url: str) -> None:
        response = await post(app, sign(s3_notification(record, message_id=f"m-{n}"), cert_url=url))
        assert response.status == 202

    async with running(app):
        await send(0, urls[0])
        await send(1, urls[0])
        assert sns.fetched == [urls[0]]
        for n, url in enumerate(urls[1:], 2):  # one more than the cache holds
            await send(n, url)
        assert len(sns.fetched) == size + 1
        await send(100, urls[-1])  # still kept
        assert len(sns.fetched) == size + 1
        await send(101, urls[0])  # the least recently used was forgotten
        assert sns.fetched[-1] == urls[0]


async def test_a_certificate_that_cannot_be_fetched_is_503_and_the_retry_passes() -> None:
    sns = FakeSns()
    sns.failing = 1
    app, capture = sns_app(sns)
    message = sign(s3_notification(s3_record("ObjectCreated:Put", "b", "k")))
    async with running(app):
        first = await post(app, message)
        assert accepted(app) == 0
        second = await post(app, message)
        with anyio.fail_after(5):
            await capture.wait_for(1)
    assert first.status == 503
    assert "cannot be fetched now (OSError)" in first.json["error"]
    assert second.status == 202


async def test_a_repeated_delivery_is_published_once() -> None:
    sns = FakeSns()
    app, capture = sns_app(sns)
    message = sign(s3_notification(s3_record("ObjectCreated:Put", "b", "k")))
    async with running(app):
        first = await post(app, message)
        again = await post(app, message)
        with anyio.fail_after(5):
            await capture.wait_for(1)
        stats = app.stats().sources
    assert first.status == 202
    assert (again.status, again.json) == (200, {"ids": first.json["ids"], "duplicate": True})
    assert len(capture.events) == 1
    assert stats["http"]["duplicates"] == 1
    assert stats["/reactor/objects/%2Fsns"]["published"] == 1


async def test_stale_and_future_messages_are_401() -> None:
    sns = FakeSns()
    app, _ = sns_app(sns)
    record = s3_record("ObjectCreated:Put", "b", "k")
    old = START - timedelta(seconds=_sns.MAX_AGE + _sns.CLOCK_SKEW + 1)
    late_but_fine = START - timedelta(seconds=_sns.MAX_AGE)
    future = START + timedelta(seconds=_sns.CLOCK_SKEW + 1)
    async with running(app):
        stale = await post(app, sign(s3_notification(record, when=old)))
        ahead = await post(app, sign(s3_notification(record, when=future)))
        fine = await post(app, sign(s3_notification(record, when=late_but_fine)))
    assert (stale.status, ahead.status, fine.status) == (401, 401, 202)
    assert "too old" in stale.json["error"]
    assert "in the future" in ahead.json["error"]
    assert sns.fetched == [CERT_URL]  # the time is checked before anything is fetched


async def test_a_topic_the_route_does_not_take_is_403_and_not_confirmed() -> None:
    sns = FakeSns()
    app, _ = sns_app(sns, topics=["arn:aws:sns:*:123456789012:uploads-*"])
    message = sign(documented("subscription-confirmation.json"))
    async with running(app):
        response = await post(app, message)
        stats = app.stats().sources["/reactor/objects/%2Fsns"]
    assert response.status == 403
    assert TOPIC in response.json["error"]
    assert sns.fetched == []
    assert stats["unauthorized"] == 1


@pytest.mark.parametrize(
    ("url", "status", "reason"),
    [
        ("https://example.com/?Action=ConfirmSubscription&TopicArn=" + TOPIC, 401, "not on an Amazon SNS host"),
        ("https://sns.us-west-2.amazonaws.com/?Action=Unsubscribe&TopicArn=" + TOPIC, 400, "does not confirm"),
        ("https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription&TopicArn=" + TOPIC + "2", 400, "does not confirm"),
    ],
)  # fmt: skip
async def test_a_subscribe_url_elsewhere_is_never_visited(
    url: str, status: int, reason: str
) -> None:
    sns = FakeSns()
    app, _ = sns_app(sns, start=datetime(2012, 4, 26, 20, 46, tzinfo=UTC))
    message = sign({**documented("subscription-confirmation.json"), "SubscribeURL": url})
    async with running(app):
        response = await post(app, message)
    assert response.status == status
    assert reason in response.json["error"]
    assert sns.confirmations == []


async def test_a_confirmation_that_fails_is_503_and_its_retry_confirms() -> None:
    sns = FakeSns()
    sns.failing_confirmations = 1
    app, _ = sns_app(sns, start=datetime(2012, 4, 26, 20, 46, tzinfo=UTC))
    message = sign(documented("subscription-confirmation.json"))
    async with running(app) as everything:
        first = await post(app, message)
        assert accepted(app) == 0
        second = await post(app, message)
        with anyio.fail_after(5):
            await everything.wait_for(1)
        stats = app.stats().sources["/reactor/objects/%2Fsns"]
    assert first.status == 503
    assert "could not be confirmed now (OSError)" in first.json["error"]
    assert second.status == 202
    assert len(sns.confirmations) == 2
    assert stats["confirmed"] == 1


@pytest.mark.parametrize(
    ("change", "headers", "reason"),
    [
        (lambda m: m, {"x-amz-sns-rawdelivery": "true"}, "raw message delivery is on"),
        (lambda m: {**m, "Type": "Other"}, {}, "Type must be one of"),
        (lambda m: m, {"x-amz-sns-message-type": "SubscriptionConfirmation"}, "does not match"),
        (lambda m: m, {"x-amz-sns-topic-arn": TOPIC + "2"}, "does not match"),
        (lambda m: {**m, "SignatureVersion": "3"}, {}, "unsupported SNS SignatureVersion '3'"),
        (lambda m: {**m, "Signature": "***"}, {}, "not base64"),
        (lambda m: {k: v for k, v in m.items() if k != "Signature"}, {}, "no Signature"),
        (lambda m: {**m, "Timestamp": "yesterday"}, {}, "not an ISO 8601 UTC time"),
        (lambda m: {**m, "Timestamp": "2030-02-30T00:00:00.000Z"}, {}, "not a valid time"),
        (lambda m: {**m, "MessageId": 7}, {}, "no MessageId"),
        (lambda m: {**m, "Subject": 7}, {}, "Subject must be a string"),
        (lambda m: {k: v for k, v in m.items() if k != "SigningCertURL"}, {}, "no SigningCertURL"),
    ],
)  # fmt: skip
async def test_malformed_envelopes_are_400(
    change: Any, headers: dict[str, str], reason: str
) -> None:
    sns = FakeSns()
    app, _ = sns_app(sns)
    message = change(sign(s3_notification(s3_record("ObjectCreated:Put", "b", "k"))))
    async with running(app):
        response = await call(
            app,
            json.dumps(message).encode(),
            {"content-type": "text/plain", **headers},
            path="/sns",
        )
        assert accepted(app) == 0
    assert response.status == 400
    assert reason in response.json["error"]


@pytest.mark.parametrize("body", [b"", b"[]", b'"x"', b"{"])
async def test_bodies_that_are_no_envelope_are_400(body: bytes) -> None:
    app, _ = sns_app(FakeSns())
    async with running(app):
        response = await call(app, body, {"content-type": "text/plain"}, path="/sns")
    assert response.status == 400
    assert "not an SNS message" in response.json["error"]


async def test_s3s_test_event_through_sns_is_200_and_filters_apply() -> None:
    sns = FakeSns()
    app, _capture = sns_app(sns, bucket="images")
    test = documented("notification.json") | {
        "Message": (DATA / "s3-notifications" / "aws-test-event.json").read_text(),
        "Timestamp": "2030-01-01T00:00:00.000Z",
    }
    other = s3_notification(s3_record("ObjectCreated:Put", "videos", "v.mp4"), message_id="m-9")
    async with running(app):
        tested = await post(app, sign(test))
        filtered = await post(app, sign(other))
        stats = app.stats().sources["/reactor/objects/%2Fsns"]
    assert (tested.status, tested.json) == (200, {"ids": [], "test": True})
    assert (filtered.status, filtered.json) == (200, {"ids": [], "filtered": 1})
    assert stats["tests"] == 1
    assert stats["filtered"] == 1


async def test_a_direct_message_on_an_sns_route_is_refused() -> None:
    app, _ = sns_app(FakeSns())
    body = minio_body(s3_record("ObjectCreated:Put", "b", "k"))
    async with running(app):
        response = await call(app, body, JSON_HEADERS, path="/sns")
    assert response.status == 400
    assert "Type must be one of" in response.json["error"]


# -- the default fetcher ----------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        size = {"/small": 5, "/large": _sns.FETCH_LIMIT + 1}.get(self.path)
        if size is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("content-length", str(size))
        self.end_headers()
        self.wfile.write(b"x" * size)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterable[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


async def test_the_default_fetcher_gets_bounded_bodies(server: str) -> None:
    assert await _sns.fetch_url(server + "/small") == b"xxxxx"
    with pytest.raises(OSError, match="larger than"):
        await _sns.fetch_url(server + "/large")
    with pytest.raises(OSError, match="404"):
        await _sns.fetch_url(server + "/missing")
