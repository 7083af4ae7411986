"""Webhook routes, their signature schemes and the replay protection of signed requests.

Pure functions over the request's headers, its body, the route's secret and the clock's
time: nothing here knows ASGI or the app, so each scheme can be checked alone. A
signature that does not verify raises :class:`SignatureError`, which the ingress
answers 401.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections import OrderedDict
from collections.abc import Mapping
from typing import Literal, TypeAlias, TypedDict

import attrs

from reactor import validators

#: Seconds a ``webhook-timestamp`` may differ from now (the Standard Webhooks default).
DEFAULT_TOLERANCE = 300.0
#: The most accepted webhook ids remembered against replays, by default.
DEFAULT_REPLAY_CACHE = 100_000
#: Webhook events have the source ``SOURCE_PREFIX + path``.
SOURCE_PREFIX = "/reactor/http"

Scheme: TypeAlias = Literal["standard", "github", "stripe"]
"""How a webhook route verifies its requests (see :func:`~reactor.sources.http.on_webhook`)."""
_SCHEMES: tuple[Scheme, ...] = ("standard", "github", "stripe")

_SECRET_PREFIX = "whsec_"
# Paths are plain URL segments: no glob characters, so that the route's source can be
# used as a subscription's ``source=`` filter as is.
_PATH = re.compile(r"(?:/[A-Za-z0-9._~!$&'()+,;=:@-]+)+")
_DIGITS = re.compile(rb"[0-9]{1,19}")


class SignatureError(Exception):
    """A request's signature is missing, stale or does not verify; the message says which."""


class WebhookOptions(TypedDict, total=False):
    """The optional settings of a webhook route: ``secret``, ``tolerance`` and ``scheme``.

    :meth:`~reactor.sources.http.HttpIngress.webhook` takes them as keyword arguments;
    :func:`~reactor.sources.http.on_webhook` documents them and their defaults.
    """

    secret: str | bytes | None
    tolerance: float
    scheme: Scheme


@attrs.frozen(kw_only=True)
class Webhook:
    """A webhook route of an :class:`~reactor.sources.http.HttpIngress`: where JSON bodies
    become events.

    Made by :meth:`~reactor.sources.http.HttpIngress.webhook`; the secret is kept out of
    the repr. The settings mean what :func:`~reactor.sources.http.on_webhook` says.

    :ivar path: the path below the ingress, e.g. ``"/github"``
    :ivar type: the ``type`` of the events it publishes
    :ivar source: the ``source`` of the events it publishes: ``"/reactor/http" + path``
    :ivar secret: the HMAC key of the route's signatures (decoded), or ``None`` for a
        route that takes unsigned requests
    :ivar tolerance: seconds a signature's timestamp may differ from the app's clock (and
        how long a scheme without timestamps remembers an accepted delivery id)
    :ivar scheme: how requests are signed: ``"standard"`` (Standard Webhooks),
        ``"github"`` or ``"stripe"``
    """

    path: str
    type: str
    source: str
    secret: bytes | None = attrs.field(default=None, repr=False)
    tolerance: float = DEFAULT_TOLERANCE
    scheme: Scheme = "standard"

    @property
    def signed(self) -> bool:
        """Whether requests must carry a valid signature."""
        return self.secret is not None

    def sign(self, msg_id: str, timestamp: int, body: bytes) -> str:
        """Return the signature header a sender would put on *body*.

        Handy for tests and for forwarding; a receiving app never needs it.

        :param msg_id: the ``webhook-id`` (Standard Webhooks; unused by the others)
        :param timestamp: integer Unix seconds (unused by GitHub, which signs none)
        :param body: the exact request body
        :raises ValueError: the route has no secret
        :return: the value of ``webhook-signature`` (``"v1,<base64>"``),
            ``X-Hub-Signature-256`` (``"sha256=<hex>"``) or ``Stripe-Signature``
            (``"t=<timestamp>,v1=<hex>"``), by the route's scheme
        """
        if self.secret is None:
            raise ValueError(f"webhook {self.path!r} has no secret to sign with")
        if self.scheme == "github":
            return "sha256=" + _github_digest(self.secret, body)
        if self.scheme == "stripe":
            return f"t={timestamp},v1={_stripe_digest(self.secret, str(timestamp).encode(), body)}"
        digest = _digest(self.secret, msg_id.encode(), str(timestamp).encode(), body)
        return "v1," + base64.b64encode(digest).decode("ascii")


def route(path: object, type: object, options: WebhookOptions) -> Webhook:
    """Check a route's settings and make it (what ``HttpIngress.webhook()`` routes).

    :raises TypeError: a setting of the wrong type
    :raises ValueError: a bad setting
    """
    normalized = check_path(path)
    made = Webhook(
        path=normalized, type=validators.name("type", type), source=SOURCE_PREFIX + normalized
    )
    scheme = validators.one_of("scheme", options.get("scheme", made.scheme), _SCHEMES)
    secret = options.get("secret", made.secret)
    if scheme != "standard" and secret is None:
        raise ValueError(f"a {scheme!r} webhook verifies signatures: give its secret")
    return attrs.evolve(
        made,
        secret=check_secret(secret, scheme),
        tolerance=validators.seconds(
            "tolerance", options.get("tolerance", made.tolerance), positive=True
        ),
        scheme=scheme,
    )


def check_path(path: object) -> str:
    """Return a webhook *path* without its trailing slash.

    :raises TypeError: *path* is not a str
    :raises ValueError: *path* is the root or not plain URL segments
    """
    if not isinstance(path, str):
        raise TypeError(f"path must be a str, got {type(path).__name__}")
    normalized = path.rstrip("/")
    if not normalized:
        raise ValueError(
            "the root path '/' takes CloudEvents; give the webhook a path like '/github'"
        )
    if _PATH.fullmatch(normalized) is None:
        raise ValueError(
            f"path must look like '/github' or '/hooks/stripe' (letters, digits and "
            f"-._~!$&'()+,;=:@, no '*', '?' or '['), got {path!r}"
        )
    return normalized


def check_secret(secret: object, scheme: str = "standard") -> bytes | None:
    """Return the HMAC key of a *secret* as the *scheme* uses it, or ``None`` for none.

    :raises TypeError: *secret* is not a str, bytes or None
    :raises ValueError: *secret* is empty, or not base64 where the scheme wants it
    """
    if secret is None:
        return None
    if isinstance(secret, bytes | bytearray):
        key = bytes(secret)
    elif isinstance(secret, str) and scheme != "standard":
        # GitHub and Stripe use the secret's text itself as the HMAC key (Stripe's
        # "whsec_..." included), unlike Standard Webhooks, which base64-decodes it.
        key = secret.encode("utf-8")
    elif isinstance(secret, str):
        text = secret.removeprefix(_SECRET_PREFIX)
        try:
            key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(
                "secret must be 'whsec_' followed by base64 (a Standard Webhooks secret), "
                "or bytes for a raw key"
            ) from None
    else:
        raise TypeError(f"secret must be a str, bytes or None, got {type(secret).__name__}")
    if not key:
        raise ValueError("secret must not be empty")
    return key


@attrs.frozen
class Signed:
    """What a verified request's headers say of its delivery.

    :ivar sent: the signed Unix time (for GitHub, which signs none: now)
    :ivar id: the sender's delivery id, if its headers carry one
    :ivar subject: the sender's event name, if its headers carry one (GitHub)
    """

    sent: int
    id: bytes | None = None
    subject: bytes | None = None


def verify(
    scheme: Scheme,
    secret: bytes,
    tolerance: float,
    headers: Mapping[bytes, bytes],
    body: bytes,
    now: float,
) -> Signed:
    """Check the signature of a request by *scheme*.

    :param headers: the request's signature headers, by lower-case name
    :param now: the app clock's Unix time
    :raises SignatureError: the signature is missing, stale or does not verify
    """
    if scheme == "github":
        _verify_github(secret, headers.get(b"x-hub-signature-256"), body)
        return Signed(int(now), headers.get(b"x-github-delivery"), headers.get(b"x-github-event"))
    if scheme == "stripe":
        return Signed(
            _verify_stripe(secret, tolerance, headers.get(b"stripe-signature"), body, now)
        )
    msg_id = headers.get(b"webhook-id")
    sent = _verify_standard(
        secret,
        tolerance,
        msg_id,
        headers.get(b"webhook-timestamp"),
        headers.get(b"webhook-signature"),
        body,
        now,
    )
    return Signed(sent, msg_id)


def _verify_standard(
    secret: bytes,
    tolerance: float,
    msg_id: bytes | None,
    timestamp: bytes | None,
    signature: bytes | None,
    body: bytes,
    now: float,
) -> int:
    """Check a Standard Webhooks signature.

    :return: the verified ``webhook-timestamp``
    """
    if not (msg_id and timestamp and signature):
        raise SignatureError(
            "a signed webhook needs the webhook-id, webhook-timestamp and webhook-signature headers"
        )
    timestamp = timestamp.strip()
    if _DIGITS.fullmatch(timestamp) is None:
        raise SignatureError("webhook-timestamp must be an integer Unix time in seconds")
    sent = _in_window(int(timestamp), now, tolerance, "webhook-timestamp")
    expected = _digest(secret, msg_id, timestamp, body)
    for entry in signature.split():
        version, _, encoded = entry.partition(b",")
        if version != b"v1":
            continue  # v1a (asymmetric) and future versions are not ours to check
        try:
            candidate = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        if hmac.compare_digest(candidate, expected):
            return sent
    raise SignatureError("no webhook-signature matches the body")


def _verify_github(secret: bytes, header: bytes | None, body: bytes) -> None:
    """Check GitHub's ``X-Hub-Signature-256``."""
    if not header:
        raise SignatureError("a GitHub webhook needs the X-Hub-Signature-256 header")
    algorithm, _, signature = header.strip().partition(b"=")
    if algorithm != b"sha256":
        raise SignatureError("X-Hub-Signature-256 must be 'sha256=<hex digest>'")
    expected = _github_digest(secret, body).encode("ascii")
    if not hmac.compare_digest(signature.lower(), expected):
        raise SignatureError("X-Hub-Signature-256 does not match the body")


def _verify_stripe(
    secret: bytes, tolerance: float, header: bytes | None, body: bytes, now: float
) -> int:
    """Check a ``Stripe-Signature`` header.

    :return: the verified timestamp ``t``
    """
    if not header:
        raise SignatureError("a Stripe webhook needs the Stripe-Signature header")
    timestamp: bytes | None = None
    signatures: list[bytes] = []
    for item in header.split(b","):
        key, _, value = item.strip().partition(b"=")
        if key == b"t":
            timestamp = value
        elif key == b"v1":  # v0 (test mode's legacy scheme) and others are not checked
            signatures.append(value)
    if timestamp is None or _DIGITS.fullmatch(timestamp) is None:
        raise SignatureError("Stripe-Signature needs a timestamp t=<Unix seconds>")
    if not signatures:
        raise SignatureError("Stripe-Signature holds no v1 signature")
    sent = _in_window(int(timestamp), now, tolerance, "the Stripe-Signature timestamp")
    expected = _stripe_digest(secret, timestamp, body).encode("ascii")
    for candidate in signatures:
        if hmac.compare_digest(candidate.lower(), expected):
            return sent
    raise SignatureError("no Stripe-Signature v1 signature matches the body")


def _in_window(sent: int, now: float, tolerance: float, what: str) -> int:
    """Return the signed time *sent* if it is within *tolerance* seconds of *now*."""
    if sent < now - tolerance:
        raise SignatureError(f"{what} is too old")
    if sent > now + tolerance:
        raise SignatureError(f"{what} is too far in the future")
    return sent


def _digest(key: bytes, msg_id: bytes, timestamp: bytes, body: bytes) -> bytes:
    return hmac.new(key, b"%s.%s.%s" % (msg_id, timestamp, body), hashlib.sha256).digest()


def _github_digest(key: bytes, body: bytes) -> str:
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def _stripe_digest(key: bytes, timestamp: bytes, body: bytes) -> str:
    return hmac.new(key, b"%s.%s" % (timestamp, body), hashlib.sha256).hexdigest()


class ReplayCache:
    """The delivery ids accepted lately, each remembered until its replay window ends.

    Entries are kept in acceptance order, which is nearly window order; one that
    outlives its window a little is harmless. At most *size* ids are kept, the oldest
    forgotten first.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        # (path, delivery id) -> Unix time until which a repeat is a replay.
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()

    def reserve(self, key: tuple[str, str], sent: float, now: float, tolerance: float) -> bool:
        """Remember *key* for its window; return ``False`` if it is remembered already.

        The window lasts a *tolerance* from the later of *sent* and *now*: until then a
        replay of this very request passes the timestamp check, and a sender's retry
        (same id, new timestamp) is caught for a tolerance from now.
        """
        seen = self._seen
        while seen:
            oldest = next(iter(seen))
            if seen[oldest] > now:
                break
            del seen[oldest]
        if key in seen:
            return False
        while len(seen) >= self.size:
            seen.popitem(last=False)
        seen[key] = max(sent, now) + tolerance
        return True

    def release(self, key: tuple[str, str]) -> None:
        """Forget *key*: its request was not accepted after all."""
        self._seen.pop(key, None)
