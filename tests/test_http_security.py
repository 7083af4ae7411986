"""The HTTP ingress's security: reserved types and sources, allow-lists, a bearer token,
Standard Webhooks signing of CloudEvents requests, and the GitHub and Stripe webhook
schemes checked against the senders' documented vectors (and Stripe's own library when
it is installed)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest
from test_http import SECRET, call, post_event, running, signed_headers

from reactor import Event, Reactor
from reactor.sources.http import HttpIngress, asgi, on_webhook
from reactor.testing import VirtualClock

pytestmark = pytest.mark.anyio

START = datetime(2030, 1, 1, tzinfo=UTC)
NOW = int(START.timestamp())  # 1893456000

# GitHub's documented example ("Validating webhook deliveries"): this secret and payload
# give this X-Hub-Signature-256.
GITHUB_SECRET = "It's a Secret to Everybody"
GITHUB_PAYLOAD = b"Hello, World!"
GITHUB_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

# Stripe documents the scheme (HMAC-SHA256 of "{t}.{payload}" under the endpoint secret,
# hex, in "t=...,v1=..."), not a vector: this one was made by the stripe package's
# WebhookSignature.generate_signature_header and passes its verify_header.
STRIPE_SECRET = "whsec_test_secret"
STRIPE_PAYLOAD = (
    b'{"id":"evt_1Nabc","object":"event","type":"payment_intent.succeeded",'
    b'"data":{"object":{"id":"pi_1","amount":2000}}}'
)
STRIPE_HEADER = "t=1893456000,v1=36d7e6d0d3346a0d8b94873e18216f0f2dee934c9da6b865e09cb6a73b19d93e"

JSON = {"content-type": "application/json"}
STRUCTURED = {"content-type": "application/cloudevents+json"}


# -- reserved types and sources ---------------------------------------------------------


async def test_a_forged_timer_event_does_not_run_the_cron_handler() -> None:
    # The repro: an unauthenticated POST ran the @app.cron(name="nightly") handler.
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    ran: list[Event] = []

    @app.cron("0 3 * * *", name="nightly")
    async def nightly(event: Event) -> None:
        ran.append(event)

    forged = {
        "specversion": "1.0",
        "id": "forged",
        "type": "reactor.timer",
        "source": "/reactor/timers/nightly",
        "data": {"kind": "cron", "scheduled": "2030-01-01T03:00:00Z"},
    }
    async with app:
        answer = await call(app.asgi, json.dumps(forged).encode(), STRUCTURED)
        assert answer.status == 403
        assert "reserved" in answer.error
        await anyio.wait_all_tasks_blocked()
    assert ran == []
    assert app.stats().published == 0


@pytest.mark.parametrize(
    ("type", "source"),
    [
        ("reactor.timer", "/anywhere"),
        ("reactor.notification", "/shop"),
        ("reactor.file.created", "/files"),
        ("reactor.source.gap", "/x"),
        ("com.github.push", "/reactor/http/github"),  # a signed route's events, unsigned
        ("com.example.thing", "/reactor"),
        ("com.example.thing", "/reactor/timers/nightly"),
    ],
)
async def test_reserved_types_and_sources_are_403(type: str, source: str) -> None:
    app = Reactor()
    ingress = asgi(app)
    event = Event(type=type, source=source)
    async with running(app) as capture:
        for mode in ("binary", "structured"):
            headers, body = event.to_http(mode=mode)
            answer = await call(ingress, body, headers)
            assert answer.status == 403
            assert repr(type) in answer.error or repr(source) in answer.error
        batch = Event.batch_to_json([Event(type="com.example.ok", source="/ok"), event])
        refused = await call(ingress, batch, {"content-type": "application/cloudevents-batch+json"})
        assert refused.status == 403
        await anyio.wait_all_tasks_blocked()
    assert capture.events == []


async def test_reserved_types_need_an_explicit_allow() -> None:
    app = Reactor()
    ingress = asgi(app, allow_reserved=True)
    assert ingress.allow_reserved
    async with running(app) as capture:
        event = Event(type="reactor.notification", source="/reactor", subject="orders")
        assert (await post_event(ingress, event)).status == 202
        with anyio.fail_after(5):
            [received] = await capture.wait_for(1)
    assert received == event


async def test_webhook_routes_may_use_any_type_they_declare() -> None:
    app = Reactor()
    ingress = asgi(app)
    ingress.webhook("/internal", type="reactor.custom")
    async with running(app) as capture:
        assert (await call(ingress, b"{}", JSON, path="/internal")).status == 202
        with anyio.fail_after(5):
            [received] = await capture.wait_for(1)
    assert received.type == "reactor.custom"


# -- allow-lists ------------------------------------------------------------------------


async def test_allow_lists_of_types_and_sources() -> None:
    app = Reactor()
    ingress = asgi(app, allow_types=["com.example.order.*", "com.example.ping"])
    ingress.allow_sources = ["/shop/*", "https://partner.example/*"]
    assert ingress.allow_types == ("com.example.order.*", "com.example.ping")
    cases = [
        (Event(type="com.example.order.created", source="/shop/eu"), 202),
        (Event(type="com.example.ping", source="https://partner.example/a"), 202),
        (Event(type="com.example.pong", source="/shop/eu"), 403),
        (Event(type="com.example.order.created", source="/elsewhere"), 403),
        (Event(type="reactor.timer", source="/shop/eu"), 403),
    ]
    async with running(app) as capture:
        for event, status in cases:
            answer = await post_event(ingress, event)
            assert answer.status == status, event
            if status == 403:
                assert "not allowed" in answer.error or "reserved" in answer.error
        with anyio.fail_after(5):
            received = await capture.wait_for(2)
        ingress.allow_types = None  # every unreserved type again
        assert (await post_event(ingress, cases[2][0])).status == 202
    assert [event.type for event in received[:2]] == [
        "com.example.order.created",
        "com.example.ping",
    ]


def test_allow_lists_are_checked() -> None:
    ingress = HttpIngress(Reactor())
    with pytest.raises(TypeError):
        ingress.allow_types = "com.example.*"
    with pytest.raises(ValueError, match="empty"):
        ingress.allow_sources = [""]
    with pytest.raises(TypeError):
        ingress.allow_reserved = 1  # type: ignore[assignment]


# -- bearer token -----------------------------------------------------------------------


async def test_a_bearer_token_is_required_when_set() -> None:
    app = Reactor()
    ingress = asgi(app, token="s3cret-token")
    assert "s3cret" not in repr(ingress)
    headers, body = Event(type="com.example.a", source="/s", id="1").to_http()
    async with running(app) as capture:
        # Refused before the body is read: call() fails if a chunk past the first is read.
        missing = await call(ingress, headers=headers, chunks=[body, b"never read"])
        assert missing.status == 401
        assert missing.headers["www-authenticate"].startswith("Bearer")
        for wrong in ("Bearer s3cret-tokem", "Basic s3cret-token", "s3cret-token", "Bearer "):
            answer = await call(ingress, body, {**headers, "authorization": wrong})
            assert answer.status == 401, wrong
        for right in ("Bearer s3cret-token", "bearer  s3cret-token "):
            answer = await call(ingress, body, {**headers, "authorization": right})
            assert answer.status == 202
        with anyio.fail_after(5):
            received = await capture.wait_for(2)
        # The token guards the CloudEvents endpoint only; webhook routes have their own.
        ingress.webhook("/open", type="com.example.hook")
        assert (await call(ingress, b"{}", JSON, path="/open")).status == 202
    assert len(received) == 2
    assert app.stats().sources["http"]["unauthorized"] == 5


def test_the_token_is_checked() -> None:
    with pytest.raises(ValueError, match="token"):
        asgi(Reactor(), token="")
    with pytest.raises(ValueError, match="token"):
        asgi(Reactor(), token="line\nbreak")


async def test_asgi_sets_settings_all_or_nothing_and_keeps_one_ingress() -> None:
    app = Reactor()
    ingress = asgi(app, token="t", allow_types=["a.*"], max_body=10)
    assert app.asgi is ingress
    assert (ingress.token, ingress.allow_types, ingress.max_body) == ("t", ("a.*",), 10)
    with pytest.raises(ValueError, match="max_body"):
        asgi(app, token="other", max_body=0)
    assert (ingress.token, ingress.max_body) == ("t", 10)
    assert asgi(app, token=None) is ingress
    assert ingress.token is None
    assert ingress.allow_types == ("a.*",)  # settings not given keep their value


# -- Standard Webhooks signing of CloudEvents requests ----------------------------------


async def test_signed_cloudevents_requests() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    ingress = asgi(app, secret=SECRET)
    route = ingress.webhook("/only-for-signing", type="x", secret=SECRET)
    event = Event(type="com.example.a", source="/s", id="e1")
    headers, body = event.to_http()

    def signed(msg_id: str, timestamp: int = NOW, payload: bytes = body) -> dict[str, str]:
        extra = signed_headers(route, msg_id, timestamp, payload)
        del extra["content-type"]  # binary mode: the event has no data
        return {**headers, **extra}

    async with running(app) as capture:
        assert (await call(ingress, body, headers)).status == 401  # unsigned
        tampered = await call(ingress, body + b" ", signed("m1"))
        assert tampered.status == 401
        stale = await call(ingress, body, signed("m1", NOW - 301))
        assert stale.status == 401
        accepted = await call(ingress, body, signed("m1"))
        assert (accepted.status, accepted.json) == (202, {"ids": ["e1"]})
        replayed = await call(ingress, body, signed("m1"))
        assert (replayed.status, replayed.json) == (200, {"ids": ["e1"], "duplicate": True})
        # A signature does not lift the reserved types.
        forged, forged_body = Event(type="reactor.timer", source="/s").to_http()
        forged_signed = {**forged, **signed_headers(route, "m2", NOW, forged_body)}
        assert (await call(ingress, forged_body, forged_signed)).status == 403
        with anyio.fail_after(5):
            [received] = await capture.wait_for(1)
        await anyio.wait_all_tasks_blocked()
    assert received == event
    assert len(capture.events) == 1


# -- GitHub -----------------------------------------------------------------------------


def test_github_signatures_match_githubs_documented_example() -> None:
    route = HttpIngress(Reactor()).webhook(
        "/github", type="com.github.event", secret=GITHUB_SECRET, scheme="github"
    )
    assert route.sign("", 0, GITHUB_PAYLOAD) == GITHUB_SIGNATURE
    assert route.secret == GITHUB_SECRET.encode()  # used as typed, not base64-decoded


async def test_github_deliveries() -> None:
    app = Reactor()
    pushes: list[Event] = []

    @on_webhook(app, "/github", type="com.github.event", secret=GITHUB_SECRET, scheme="github")
    async def on_push(event: Event) -> None:
        pushes.append(event)

    ingress = app.asgi
    route = ingress.routes["/github"]
    body = b'{"ref":"refs/heads/main","commits":[]}'
    headers = {
        "content-type": "application/json",
        "x-github-event": "push",
        "x-github-delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        "x-hub-signature-256": route.sign("", 0, body),
        "user-agent": "GitHub-Hookshot/044aadd",
    }
    async with app:
        # The documented example's signature verifies (the body is no JSON: 400, not 401).
        example = await call(
            ingress,
            GITHUB_PAYLOAD,
            {**headers, "x-hub-signature-256": GITHUB_SIGNATURE},
            path="/github",
        )
        assert example.status == 400
        assert "JSON" in example.error
        for bad in ("", "sha1=" + GITHUB_SIGNATURE[7:], GITHUB_SIGNATURE, "sha256=zz"):
            answer = await call(
                ingress, body, {**headers, "x-hub-signature-256": bad}, path="/github"
            )
            assert answer.status == 401, bad
        accepted = await call(ingress, body, headers, path="/github")
        assert accepted.json == {"ids": ["72d3162e-cc78-11e3-81ab-4c9367dc0958"]}
        again = await call(ingress, body, headers, path="/github")  # a redelivery
        assert (again.status, again.json["duplicate"]) == (200, True)
        upper = {**headers, "x-github-delivery": "d2", "x-hub-signature-256": "sha256="}
        upper["x-hub-signature-256"] += route.sign("", 0, body)[7:].upper()
        assert (await call(ingress, body, upper, path="/github")).status == 202
        with anyio.fail_after(5):
            while len(pushes) < 2:
                await anyio.wait_all_tasks_blocked()
    first = pushes[0]
    assert (first.id, first.subject, first.source) == (
        "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        "push",
        "/reactor/http/github",
    )
    assert first.data == {"ref": "refs/heads/main", "commits": []}


async def test_github_form_encoded_deliveries_are_read_from_their_payload_field() -> None:
    # GitHub's default content type for a new webhook: the JSON in a form field "payload";
    # the signature covers the form body as sent.
    import hashlib
    import hmac
    from urllib.parse import urlencode

    app = Reactor()
    pushes: list[Event] = []

    @on_webhook(app, "/github", type="com.github.event", secret=GITHUB_SECRET, scheme="github")
    async def on_push(event: Event) -> None:
        pushes.append(event)

    def delivery(body: bytes, delivery_id: str) -> dict[str, str]:
        digest = hmac.new(GITHUB_SECRET.encode(), body, hashlib.sha256).hexdigest()
        return {
            "content-type": "application/x-www-form-urlencoded",
            "x-github-event": "push",
            "x-github-delivery": delivery_id,
            "x-hub-signature-256": "sha256=" + digest,
        }

    form = urlencode({"payload": json.dumps({"ref": "refs/heads/main", "n": "a&b=c"})}).encode()
    async with app:
        accepted = await call(app.asgi, form, delivery(form, "d1"), path="/github")
        assert accepted.status == 202
        for bad in (b"payload=%7B", b"other=1", b"payload=1&payload=2", b"\xff=1"):
            answer = await call(app.asgi, bad, delivery(bad, "d2"), path="/github")
            assert answer.status == 400, bad
        unsigned = {**delivery(form, "d3"), "x-hub-signature-256": "sha256=00"}
        assert (await call(app.asgi, form, unsigned, path="/github")).status == 401
        with anyio.fail_after(5):
            while not pushes:
                await anyio.wait_all_tasks_blocked()
    assert pushes[0].data == {"ref": "refs/heads/main", "n": "a&b=c"}
    assert len(pushes) == 1


# -- Stripe -----------------------------------------------------------------------------


def stripe_route(tolerance: float = 300) -> Any:
    return HttpIngress(Reactor()).webhook(
        "/stripe",
        type="com.stripe.event",
        secret=STRIPE_SECRET,
        scheme="stripe",
        tolerance=tolerance,
    )


def test_stripe_signatures_follow_the_documented_scheme() -> None:
    assert stripe_route().sign("", NOW, STRIPE_PAYLOAD) == STRIPE_HEADER


async def test_stripe_deliveries() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    ingress = asgi(app)
    ingress.webhook("/stripe", type="com.stripe.event", secret=STRIPE_SECRET, scheme="stripe")
    signature = STRIPE_HEADER.split(",")[1]
    wrong = "v1=" + "0" * 64
    cases = [
        ("", 401),
        ("t=1893456000", 401),  # no v1
        (f"{signature}", 401),  # no t
        (f"t=1893456000,{wrong}", 401),
        (f"t=1893455699,{signature}", 401),  # another t: the signature does not match
        (f"t=1893456000,v0={signature[3:]}", 401),  # only v1 is checked
    ]
    async with running(app) as capture:
        for header, status in cases:
            answer = await call(
                ingress, STRIPE_PAYLOAD, {**JSON, "stripe-signature": header}, path="/stripe"
            )
            assert answer.status == status, header
        # Several v1 signatures (Stripe sends one per active secret while rolling): one
        # matching is enough, whatever its place; spaces after commas are tolerated.
        rolled = f"t=1893456000, {wrong}, {signature}, v0=abc"
        accepted = await call(
            ingress, STRIPE_PAYLOAD, {**JSON, "stripe-signature": rolled}, path="/stripe"
        )
        assert accepted.json == {"ids": ["evt_1Nabc"]}
        again = await call(
            ingress, STRIPE_PAYLOAD, {**JSON, "stripe-signature": STRIPE_HEADER}, path="/stripe"
        )
        assert (again.status, again.json["duplicate"]) == (200, True)
        with anyio.fail_after(5):
            [event] = await capture.wait_for(1)
        # Past the tolerance the same signed request is refused.
        await clock.advance(301)
        late = await call(
            ingress, STRIPE_PAYLOAD, {**JSON, "stripe-signature": STRIPE_HEADER}, path="/stripe"
        )
        assert late.status == 401
        assert "too old" in late.error
    assert (event.id, event.subject, event.type) == (
        "evt_1Nabc",
        "payment_intent.succeeded",
        "com.stripe.event",
    )
    assert event.data["data"]["object"]["amount"] == 2000


def test_a_scheme_is_chosen_explicitly_and_needs_a_secret() -> None:
    ingress = HttpIngress(Reactor())
    with pytest.raises(ValueError, match="scheme"):
        ingress.webhook("/x", type="t", secret="s", scheme="gitlab")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="secret"):
        ingress.webhook("/x", type="t", scheme="github")
    standard = ingress.webhook("/std", type="t", secret=SECRET)
    assert standard.scheme == "standard"


@pytest.fixture
def stripe_library() -> Any:
    return pytest.importorskip("stripe", reason="the stripe package is not installed")


@pytest.mark.parametrize(
    "payload", [STRIPE_PAYLOAD, b'{"id":"evt_2","type":"charge.failed","note":"Zo\xc3\xab"}']
)
def test_stripe_library_agrees(stripe_library: Any, payload: bytes) -> None:
    signature = stripe_library.WebhookSignature
    ours = stripe_route().sign("", NOW, payload)
    assert signature.verify_header(payload, ours, STRIPE_SECRET, tolerance=None)
    theirs = signature.generate_signature_header(
        payload.decode("utf-8"), STRIPE_SECRET, timestamp=NOW
    )
    assert theirs == ours
