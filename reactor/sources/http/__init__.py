"""HTTP ingress: CloudEvents and signed webhooks into the app, through an ASGI application.

:func:`asgi` gives the app's :class:`HttpIngress`, an ASGI 3 application that needs no web
framework. It accepts two kinds of ``POST``:

* **CloudEvents** at its root (``/``), in any mode of the CloudEvents HTTP binding: binary
  (``ce-*`` headers, the data in the body), structured (``application/cloudevents+json``)
  or batched (``application/cloudevents-batch+json``). Every event is published as sent,
  except those of the reserved types and sources (see *Security*).
* **Webhooks** at the paths registered with :meth:`HttpIngress.webhook` (or the
  :func:`on_webhook` decorator): any JSON body becomes the ``data`` of an event whose
  ``type`` is the route's, whose ``source`` is ``"/reactor/http" + path`` and whose ``id``
  is the sender's delivery id (a new UUID without one). A route with a ``secret``
  verifies the signatures of the sender's scheme: `Standard Webhooks
  <https://www.standardwebhooks.com>`_, GitHub or Stripe.

::

    import os

    from reactor import Reactor
    from reactor.sources.http import asgi, on_webhook

    app = Reactor()
    ingress = asgi(app, token=os.environ["EVENTS_TOKEN"], allow_types=["com.example.*"])
    ingress.max_body = 4 * 2**20         # settings are also attributes (see HttpIngress)

    @on_webhook(app, "/github", type="com.github.push",
                secret=os.environ["GITHUB_WEBHOOK_SECRET"], scheme="github")
    async def pushed(event): ...         # event.data is the parsed JSON body

**Security.** Event types under ``reactor.`` (timers, file changes, notifications, gap
events) and sources under ``/reactor/`` (built-in sources and webhook routes) are
reserved: the CloudEvents endpoint answers 403 to a request holding any such event, so
that no client can run a cron handler with forged data or reach a signed webhook
route's handlers without its signature; ``allow_reserved=True`` lifts this for a trusted
forwarder. ``allow_types`` and ``allow_sources`` (globs) narrow what the endpoint takes
(403 otherwise). Authentication of the endpoint: a bearer ``token`` (``Authorization:
Bearer ...``, checked before the body is read) and/or a Standard Webhooks ``secret``
that signs each whole request (``webhook-id``, ``webhook-timestamp`` and
``webhook-signature`` headers, replays answered 200 as for webhooks); without either,
anyone who can reach the endpoint publishes events, so serve it only on a private
network or behind a proxy that authenticates. Webhook routes without a ``secret`` take
any request. A request is refused whole: 401 (authentication), 403 (reserved or not
allowed), with the reason in the JSON body.

Answers, all with a JSON body:

========  =================================================================================
status    when
========  =================================================================================
202       every event of the request is in the ingestion queue: ``{"ids": [...]}``
200       a signed webhook whose ``webhook-id`` was accepted already within the tolerance
          window: nothing is published again, ``{"ids": [id], "duplicate": true}``
400       malformed body, headers or event: ``{"error": "<reason>"}`` (and every 4xx below)
401       the endpoint's bearer token is missing or wrong (with ``WWW-Authenticate``), or
          a signature (of the endpoint or a route) is missing, stale or does not verify
403       a CloudEvent of a reserved type or source, or one the allow-lists exclude
404       no route at that path
405       not a ``POST`` (with an ``Allow: POST`` header)
413       ``Content-Length`` or the body read so far exceeds ``max_body`` (reading stops
          there), a batch holds more events than the queue can ever hold, or an event is
          larger than the queue takes (``SQLiteQueue``'s ``max_event_size``)
415       a content type this route does not take
501       a batch for a queue that cannot store batches all or nothing (a third-party
          queue without :meth:`~reactor.abc.EventQueue.put_many`)
503       the queue has no room for the request's events, cannot store anything right now
          (:class:`~reactor.QueueUnavailableError`, e.g. a full disk), or the app is not
          running or is stopping (with ``Retry-After``)
========  =================================================================================

No client input is answered 500: every event is checked by :class:`~reactor.Event`
whatever the queue (lone surrogates, for one, are refused before any queue sees them),
and a queue's refusal of an event is a 4xx or a 503 as above.

**Nothing answered with a 2xx is lost while the app runs**: the answer is sent only once
every event of the request is in the ingestion queue, which the app drains before it
stops. **A request is all or nothing on every queue**: its events are published with
:meth:`Reactor.publish_many <reactor.Reactor.publish_many>`, which stores every event or
none (``SQLiteQueue`` commits a batch in one transaction), so an answer other than 2xx
means nothing of the request was stored and the sender may retry it whole.

**Signatures** (Standard Webhooks; GitHub and Stripe are described at
:meth:`HttpIngress.webhook`): the ``webhook-signature`` header holds space-separated
``v1,<base64>`` entries, each an HMAC-SHA256 of ``"{webhook-id}.{webhook-timestamp}.{body}"``
under the route's secret; one matching entry (compared in constant time) is enough,
others (``v1a``, unknown versions) are skipped. ``webhook-timestamp`` (integer Unix
seconds) must be within ``tolerance`` seconds of ``app.clock.now()``. An accepted id is
remembered for a tolerance from its acceptance, and at least until its timestamp leaves
the window (at most ``replay_cache`` ids, the oldest forgotten first); a repeated id is
answered 200 without publishing: a sender that retried because it missed our first
answer stops there, and a replayed request publishes nothing. Routes without a secret
take any request and remember no ids.

**Mounting in FastAPI or Starlette.** Mounted applications receive no lifespan events:
start the Reactor from the host application's lifespan::

    import contextlib
    from fastapi import FastAPI   # or starlette.applications.Starlette

    @contextlib.asynccontextmanager
    async def lifespan(api):
        async with app:           # starts sources and dispatcher; drains on shutdown
            yield

    api = FastAPI(lifespan=lifespan)
    api.mount("/events", app.asgi)   # CloudEvents: POST /events/; webhooks: /events/github

The ingress strips the mount prefix (``scope["root_path"]``) from the request path.

**Standalone** (``uvicorn mymodule:app.asgi``): the ingress answers the server's lifespan
events itself. On startup it starts the Reactor (``async with app:``) unless the app
already runs, and on shutdown it stops and drains it. A server run with lifespan
disabled never starts the app: every request is then answered 503.

The ingress is also a :class:`~reactor.abc.Source` of the app: it stops accepting (503)
as soon as the app begins to stop, before the drain, and its counters appear in
``app.stats().sources["http"]``. It reads no more than ``max_body`` bytes of a body,
but sets no time limit on reading one: use the server's timeouts for slow clients.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import math
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from datetime import datetime
from json.encoder import encode_basestring_ascii as _quote
from types import MappingProxyType
from typing import Any, Literal, TypeAlias, TypeVar
from urllib.parse import parse_qs

import anyio
import attrs
from anyio.abc import TaskStatus

from reactor import (
    UNSET,
    Event,
    EventFormatError,
    Handler,
    InvalidEventError,
    KeyFunction,
    PayloadTooLargeError,
    QueueFileError,
    QueueFull,
    QueueUnavailableError,
    Reactor,
    ReactorNotRunning,
    Retry,
    Unset,
)
from reactor.abc import App, Source, compile_glob, load_json

__all__ = [
    "DEFAULT_MAX_BODY",
    "DEFAULT_REPLAY_CACHE",
    "DEFAULT_TOLERANCE",
    "RESERVED_SOURCE_PREFIX",
    "RESERVED_TYPE_PREFIX",
    "SOURCE_PREFIX",
    "HttpIngress",
    "Message",
    "Receive",
    "Scheme",
    "Scope",
    "Send",
    "Webhook",
    "asgi",
    "on_webhook",
]

logger = logging.getLogger("reactor.http")

H = TypeVar("H", bound=Handler)

#: ASGI types, spelled out so that no ASGI package is needed.
Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]

#: The largest body read by default: 1 MiB.
DEFAULT_MAX_BODY = 2**20
#: Seconds a ``webhook-timestamp`` may differ from now (the Standard Webhooks default).
DEFAULT_TOLERANCE = 300.0
#: The most accepted webhook ids remembered against replays, by default.
DEFAULT_REPLAY_CACHE = 100_000
#: Webhook events have the source ``SOURCE_PREFIX + path``.
SOURCE_PREFIX = "/reactor/http"
#: Event types of reactor's built-in sources (timers, files, notifications, gaps): the
#: CloudEvents endpoint refuses them unless ``allow_reserved`` is set.
RESERVED_TYPE_PREFIX = "reactor."
#: Sources of reactor's built-in sources and webhook routes (``"/reactor/..."``), refused
#: like the reserved types: a CloudEvent from ``/reactor/http/github`` would otherwise
#: reach the GitHub route's handlers without its signature.
RESERVED_SOURCE_PREFIX = "/reactor/"

Scheme: TypeAlias = Literal["standard", "github", "stripe"]
"""How a webhook route verifies its requests (see :meth:`HttpIngress.webhook`)."""
_SCHEMES = ("standard", "github", "stripe")

_SECRET_PREFIX = "whsec_"
_STRUCTURED = b"application/cloudevents+json"
_BATCH = b"application/cloudevents-batch+json"
_FORM = b"application/x-www-form-urlencoded"
# Paths are plain URL segments: no glob characters, so that the route's source can be
# used as a subscription's ``source=`` filter as is.
_PATH = re.compile(r"(?:/[A-Za-z0-9._~!$&'()+,;=:@-]+)+")
_DIGITS = re.compile(rb"[0-9]{1,19}")
_AUTH_HEADERS = frozenset(
    (
        b"authorization",
        b"x-hub-signature-256",
        b"x-github-delivery",
        b"x-github-event",
        b"stripe-signature",
    )
)


class _Reject(Exception):
    """Answer the request with an error status and a reason."""

    def __init__(
        self, status: int, reason: str, headers: Sequence[tuple[bytes, bytes]] = ()
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers


class _Disconnected(Exception):
    """The client went away before sending the whole body."""


def _check_path(path: object) -> str:
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


def _check_secret(secret: object, scheme: str = "standard") -> bytes | None:
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


def _check_tolerance(tolerance: object) -> float:
    if (
        not isinstance(tolerance, int | float)
        or isinstance(tolerance, bool)
        or not math.isfinite(tolerance)
        or tolerance <= 0
    ):
        raise ValueError(f"tolerance must be a finite number of seconds > 0, got {tolerance!r}")
    return float(tolerance)


def _check_globs(
    name: str, value: object, what: str
) -> tuple[tuple[str, ...] | None, Callable[[str], bool] | None]:
    if value is None:
        return None, None
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise TypeError(f"{name} must be a list of globs or None, got {value!r}")
    globs = tuple(value)
    matchers = [compile_glob(glob, what) for glob in globs]
    return globs, lambda text: any(match(text) for match in matchers)


def _check_count(name: str, value: object, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


@attrs.frozen(kw_only=True)
class Webhook:
    """A webhook route of an :class:`HttpIngress`: where JSON bodies become events.

    Made by :meth:`HttpIngress.webhook`; the secret is kept out of the repr.

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
            return "sha256=" + hmac.new(self.secret, body, hashlib.sha256).hexdigest()
        if self.scheme == "stripe":
            return f"t={timestamp},v1={_stripe_digest(self.secret, str(timestamp).encode(), body)}"
        digest = _digest(self.secret, msg_id.encode(), str(timestamp).encode(), body)
        return "v1," + base64.b64encode(digest).decode("ascii")


def _digest(key: bytes, msg_id: bytes, timestamp: bytes, body: bytes) -> bytes:
    return hmac.new(key, b"%s.%s.%s" % (msg_id, timestamp, body), hashlib.sha256).digest()


def _stripe_digest(key: bytes, timestamp: bytes, body: bytes) -> str:
    return hmac.new(key, b"%s.%s" % (timestamp, body), hashlib.sha256).hexdigest()


def _route_path(scope: Scope) -> str:
    """The request path below the ingress, without the mount prefix or a trailing slash."""
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    # ASGI servers and Starlette's Mount put the full path in "path" and the prefix in
    # "root_path"; a server that already stripped it leaves "path" without the prefix.
    if root_path and path.startswith(root_path):
        rest = path[len(root_path) :]
        if not rest or rest[0] == "/":
            path = rest
    if len(path) > 1 and path[-1] == "/":
        path = path.rstrip("/")
    return path or "/"


def _media_type(content_type: bytes | None) -> bytes:
    if content_type is None:
        return b""
    return content_type.split(b";", 1)[0].strip().lower()


def _is_json(media_type: bytes) -> bool:
    subtype = media_type.partition(b"/")[2]
    return subtype == b"json" or subtype.endswith(b"+json")


def _json_response(
    status: int, text: str, extra: Sequence[tuple[bytes, bytes]] = ()
) -> tuple[Message, Message]:
    body = text.encode("ascii")
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    if extra:
        headers += extra
    return (
        {"type": "http.response.start", "status": status, "headers": headers},
        {"type": "http.response.body", "body": body},
    )


def _accepted(events: Sequence[Event]) -> tuple[Message, Message]:
    # Built by hand: json.dumps() costs more than the rest of the answer on the hot path.
    return _json_response(202, '{"ids":[' + ",".join([_quote(e.id) for e in events]) + "]}")


class HttpIngress(Source):
    """The ASGI application that turns HTTP requests into events (see the module docs).

    Get the one of an app with :func:`asgi` (``app.asgi``), which also adds it to the app's
    sources. Built directly, add it yourself with ``app.add_source(ingress)``; without
    that it still publishes, but keeps accepting while the app drains and its counters
    are not in ``app.stats()``.

    Settings are attributes that may change at any time (or arguments of :func:`asgi`).
    The CloudEvents endpoint's security settings (see the module docs):

    :param app: the app to publish into
    :param max_body: the largest request body read, in bytes (default 1 MiB); larger
        bodies are answered 413
    :param retry_after: the ``Retry-After`` seconds of 503 answers (default 1)
    :param replay_cache: the most signed webhook ids remembered against replays
    :param token: CloudEvents requests must carry ``Authorization: Bearer <token>``
        (else 401); ``None`` (default) asks for none
    :param secret: CloudEvents requests must be signed as Standard Webhooks with this
        key (``"whsec_..."``, base64, or raw ``bytes``; else 401), the whole request
        once; ``None`` (default) asks for no signature
    :param tolerance: seconds the signature's ``webhook-timestamp`` may differ from now
    :param allow_types: globs; a CloudEvent whose type matches none is refused (403);
        ``None`` (default) allows every type that is not reserved
    :param allow_sources: globs on the ``source``, as *allow_types*
    :param allow_reserved: take CloudEvents of the reserved types (``reactor.*``) and
        sources (``/reactor/...``), which otherwise get 403: only for a trusted sender
        that forwards another reactor app's events
    """

    def __init__(
        self,
        app: App,
        *,
        max_body: int = DEFAULT_MAX_BODY,
        retry_after: int = 1,
        replay_cache: int = DEFAULT_REPLAY_CACHE,
        token: str | None = None,
        secret: str | bytes | None = None,
        tolerance: float = DEFAULT_TOLERANCE,
        allow_types: Sequence[str] | None = None,
        allow_sources: Sequence[str] | None = None,
        allow_reserved: bool = False,
    ) -> None:
        if not isinstance(app, Reactor):
            raise TypeError(f"app must be a reactor.Reactor, got {app!r}")
        self._app = app
        self.max_body = max_body
        self.retry_after = retry_after
        self.replay_cache = replay_cache
        self.token = token
        self.secret = secret
        self.tolerance = tolerance
        self.allow_types = allow_types
        self.allow_sources = allow_sources
        self.allow_reserved = allow_reserved
        self._routes: dict[str, Webhook] = {}
        # (path, webhook-id) -> Unix time until which a repeat is a replay; oldest first.
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()
        # Set when the app cancels this source (it is stopping): answer 503 from then on.
        self._stopping = False
        self._counters = dict.fromkeys(
            (
                "requests",
                "accepted",
                "rejected",
                "unauthorized",
                "forbidden",
                "unavailable",
                "duplicates",
            ),
            0,
        )

    # -- configuration --------------------------------------------------------------

    @property
    def app(self) -> Reactor:
        """The app this ingress publishes into."""
        return self._app

    @property
    def name(self) -> str:
        """``"http"``: the key of this source's counters in ``app.stats().sources``."""
        return "http"

    @property
    def max_body(self) -> int:
        """The largest request body read, in bytes; larger ones are answered 413."""
        return self._max_body

    @max_body.setter
    def max_body(self, value: int) -> None:
        self._max_body = _check_count("max_body", value, 1)

    @property
    def retry_after(self) -> int:
        """The ``Retry-After`` seconds of 503 answers."""
        return self._retry_after

    @retry_after.setter
    def retry_after(self, value: int) -> None:
        self._retry_after = _check_count("retry_after", value, 0)
        self._retry_header = (b"retry-after", b"%d" % self._retry_after)

    @property
    def replay_cache(self) -> int:
        """The most signed webhook ids remembered against replays (oldest forgotten first)."""
        return self._replay_cache

    @replay_cache.setter
    def replay_cache(self, value: int) -> None:
        self._replay_cache = _check_count("replay_cache", value, 1)

    @property
    def token(self) -> str | None:
        """The bearer token CloudEvents requests must carry, or ``None`` for none.

        Kept out of the repr; compared in constant time.
        """
        return self._token

    @token.setter
    def token(self, value: str | None) -> None:
        if value is not None and not (
            isinstance(value, str) and value and value.isascii() and value.isprintable()
        ):
            raise ValueError("token must be a non-empty str of printable ASCII, or None")
        self._token = value
        self._token_bytes = None if value is None else value.encode("ascii")

    @property
    def secret(self) -> bytes | None:
        """The decoded Standard Webhooks key that signs CloudEvents requests, or ``None``.

        Set it to ``"whsec_..."`` (or base64, or raw ``bytes``) as for a webhook route.
        """
        return self._secret

    @secret.setter
    def secret(self, value: str | bytes | None) -> None:
        self._secret = _check_secret(value)

    @property
    def tolerance(self) -> float:
        """Seconds a CloudEvents request's ``webhook-timestamp`` may differ from now."""
        return self._tolerance

    @tolerance.setter
    def tolerance(self, value: float) -> None:
        self._tolerance = _check_tolerance(value)

    @property
    def allow_types(self) -> tuple[str, ...] | None:
        """Globs the type of every CloudEvent must match (``None``: any unreserved type)."""
        return self._allow_types

    @allow_types.setter
    def allow_types(self, value: Sequence[str] | None) -> None:
        self._allow_types, self._type_allowed = _check_globs("allow_types", value, "event type")

    @property
    def allow_sources(self) -> tuple[str, ...] | None:
        """Globs the source of every CloudEvent must match (``None``: any unreserved one)."""
        return self._allow_sources

    @allow_sources.setter
    def allow_sources(self, value: Sequence[str] | None) -> None:
        self._allow_sources, self._source_allowed = _check_globs("allow_sources", value, "source")

    @property
    def allow_reserved(self) -> bool:
        """Whether CloudEvents of the reserved ``reactor.*`` types and ``/reactor/...``
        sources are taken (default ``False``: 403)."""
        return self._allow_reserved

    @allow_reserved.setter
    def allow_reserved(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise TypeError(f"allow_reserved must be a bool, got {value!r}")
        self._allow_reserved = value

    @property
    def routes(self) -> Mapping[str, Webhook]:
        """The webhook routes by path (read-only)."""
        return MappingProxyType(self._routes)

    def webhook(
        self,
        path: str,
        *,
        type: str,
        secret: str | bytes | None = None,
        tolerance: float = DEFAULT_TOLERANCE,
        scheme: Scheme = "standard",
    ) -> Webhook:
        """Route ``POST`` requests with a JSON body at *path* to events of *type*.

        Calling it again with the same settings returns the same route, so several
        handlers can share one path. With a *secret*, requests must be signed by the
        *scheme* the sender uses:

        * ``"standard"`` (`Standard Webhooks <https://www.standardwebhooks.com>`_):
          ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` headers; the
          event's id is the ``webhook-id``.
        * ``"github"``: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>``
          under the secret as typed in GitHub's settings; the event's id is the
          ``X-GitHub-Delivery`` header, its subject the ``X-GitHub-Event`` header
          (``"push"``, ...). GitHub signs no timestamp: a delivery id is refused again
          for *tolerance* seconds after it was accepted, and no longer.
        * ``"stripe"``: ``Stripe-Signature: t=<timestamp>,v1=<hex>`` (one or more
          ``v1``), an HMAC-SHA256 of ``"{t}.{body}"`` under the endpoint's signing
          secret (``"whsec_..."``, used as is); ``t`` must be within *tolerance* of now.
          The event's id is the body's ``id`` (``"evt_..."``), its subject the body's
          ``type`` (``"payment_intent.succeeded"``, ...).

        In every scheme a repeated id is answered 200 without publishing (see the
        module docs).

        :param path: the path below the ingress, e.g. ``"/github"`` (a trailing slash
            is ignored; ``"/"`` is the CloudEvents endpoint)
        :param type: the ``type`` of the events
        :param secret: the key the sender signs with: for ``"standard"``, ``"whsec_"``
            followed by base64 (as senders show it), base64 alone, or raw ``bytes``;
            for ``"github"`` and ``"stripe"``, the secret's text (or ``bytes``);
            ``None`` takes unsigned requests
        :param tolerance: seconds a signature's timestamp may differ from the app's clock
        :param scheme: ``"standard"`` (default), ``"github"`` or ``"stripe"``
        :raises ValueError: a bad setting, or *path* is routed already with other settings
        :return: the route
        """
        normalized = _check_path(path)
        if not isinstance(type, str) or not type:
            raise ValueError(f"type must be a non-empty str, got {type!r}")
        if scheme not in _SCHEMES:
            raise ValueError(f"scheme must be one of {', '.join(_SCHEMES)}, got {scheme!r}")
        if scheme != "standard" and secret is None:
            raise ValueError(f"a {scheme!r} webhook verifies signatures: give its secret")
        route = Webhook(
            path=normalized,
            type=type,
            source=SOURCE_PREFIX + normalized,
            secret=_check_secret(secret, scheme),
            tolerance=_check_tolerance(tolerance),
            scheme=scheme,
        )
        existing = self._routes.get(normalized)
        if existing is not None:
            if existing != route:
                raise ValueError(
                    f"webhook path {normalized!r} is already routed to type {existing.type!r} "
                    "with other settings; use another path"
                )
            return existing
        self._routes[normalized] = route
        return route

    # -- Source ---------------------------------------------------------------------

    def statistics(self) -> Mapping[str, int]:
        """Return the counters.

        ``requests`` (HTTP requests seen), ``accepted`` (events published), ``rejected``
        (requests answered 4xx), among them ``unauthorized`` (401: a missing or wrong
        token or signature) and ``forbidden`` (403: a reserved or not allowed type or
        source), ``unavailable`` (answered 503) and ``duplicates`` (replayed webhook ids
        answered 200).
        """
        return dict(self._counters)

    async def run(
        self, app: App, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Accept requests while the app runs; answer 503 once it begins to stop.

        :raises ValueError: *app* is not the app this ingress was made for
        """
        if app is not self._app:
            raise ValueError("this HttpIngress publishes into another app; use asgi(app)")
        self._stopping = False
        try:
            task_status.started()
            await anyio.sleep_forever()
        finally:
            self._stopping = True

    # -- ASGI -----------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection: ``http`` requests and ``lifespan`` events.

        :raises ValueError: an ASGI scope type other than ``http``, ``websocket`` or
            ``lifespan``
        """
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            # Closing before accepting makes the server answer the handshake with 403.
            await send({"type": "websocket.close", "code": 1008})
        else:
            raise ValueError(f"unsupported ASGI scope type {kind!r}")

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        counters = self._counters
        counters["requests"] += 1
        try:
            start, body = await self._handle(scope, receive)
        except _Reject as reject:
            if reject.status == 503:
                counters["unavailable"] += 1
            else:
                counters["rejected"] += 1
                if reject.status == 401:
                    counters["unauthorized"] += 1
                elif reject.status == 403:
                    counters["forbidden"] += 1
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug(
                    "%s %s answered %d: %s",
                    scope.get("method"),
                    scope.get("path"),
                    reject.status,
                    reject.reason,
                )
            start, body = _json_response(
                reject.status, f'{{"error":{_quote(reject.reason)}}}', reject.headers
            )
        except _Disconnected:
            return
        await send(start)
        await send(body)

    async def _handle(self, scope: Scope, receive: Receive) -> tuple[Message, Message]:
        path = _route_path(scope)
        route: Webhook | None = None
        if path != "/":
            route = self._routes.get(path)
            if route is None:
                raise _Reject(404, f"no route at {path[:200]!r}")
        if scope["method"] != "POST":
            raise _Reject(405, "use POST", ((b"allow", b"POST"),))
        app = self._app
        if self._stopping or not app.running:
            raise _Reject(503, "the app is not running", (self._retry_header,))

        content_type = content_length = msg_id = timestamp = signature = None
        binary = False
        # Only the CloudEvents headers go to Event.from_http(), which then has fewer to
        # look at; its checks (duplicates, encoding) are the same.
        event_headers: list[tuple[bytes, bytes]] = []
        # The headers of the other signature schemes and of the bearer token.
        auth: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            name = name.lower()
            if name[:3] == b"ce-":
                event_headers.append((name, value))
                if name == b"ce-specversion":
                    binary = True
            elif name == b"content-type":
                event_headers.append((name, value))
                content_type = value
            elif name == b"content-length":
                content_length = value
            elif name[:8] == b"webhook-":
                if name == b"webhook-id":
                    msg_id = value
                elif name == b"webhook-timestamp":
                    timestamp = value
                elif name == b"webhook-signature":
                    signature = value
            elif name in _AUTH_HEADERS:
                auth[name] = value
        if route is None and self._token_bytes is not None:
            # Checked before the body is read: an unauthenticated client costs nothing.
            self._check_token(auth.get(b"authorization"))
        limit = self._max_body
        if content_length is not None:
            if _DIGITS.fullmatch(content_length.strip()) is None:
                raise _Reject(400, "Content-Length must be a decimal number of bytes")
            if int(content_length) > limit:
                raise _Reject(413, f"the body is larger than {limit} bytes")
        message = await receive()
        if message["type"] != "http.request":
            raise _Disconnected
        body: bytes = message.get("body", b"")
        if message.get("more_body", False):
            body = await self._read_rest(receive, body, limit)
        elif len(body) > limit:
            raise _Reject(413, f"the body is larger than {limit} bytes")

        media_type = _media_type(content_type)
        if route is None:
            secret = self._secret
            if secret is None:
                events = self._cloudevents(event_headers, media_type, binary, body)
                self._check_allowed(events)
            else:
                unix_now = app.clock.now().timestamp()
                sent = _verify(
                    secret, self._tolerance, msg_id, timestamp, signature, body, unix_now
                )
                events = self._cloudevents(event_headers, media_type, binary, body)
                self._check_allowed(events)
                assert msg_id is not None  # verified
                key = ("/", msg_id.decode("latin-1"))
                window_end = max(sent, unix_now) + self._tolerance
                return await self._publish_signed(key, events, unix_now, window_end)
        elif route.secret is None:
            events = [self._webhook_event(route, msg_id, media_type, body, app.clock.now())]
        else:
            now = app.clock.now()
            unix_now = now.timestamp()
            if route.scheme == "github":
                _verify_github(route.secret, auth.get(b"x-hub-signature-256"), body)
                # No timestamp is signed: remember the delivery for a tolerance from now.
                sent = int(unix_now)
                msg_id = auth.get(b"x-github-delivery")
                subject = auth.get(b"x-github-event")
                event = self._webhook_event(route, msg_id, media_type, body, now, subject)
            elif route.scheme == "stripe":
                sent = _verify_stripe(
                    route.secret, route.tolerance, auth.get(b"stripe-signature"), body, unix_now
                )
                event = self._webhook_event(route, None, media_type, body, now)
                event = _stripe_event(event)
            else:
                sent = _verify(
                    route.secret, route.tolerance, msg_id, timestamp, signature, body, unix_now
                )
                event = self._webhook_event(route, msg_id, media_type, body, now)
            # Until then a replay of this very request passes the timestamp check; a
            # sender's retry (same id, new timestamp) is caught for a tolerance from now.
            window_end = max(sent, unix_now) + route.tolerance
            return await self._publish_signed((route.path, event.id), [event], unix_now, window_end)
        if len(events) == 1 and app.queue.stores_immediately:
            self._publish_now(events[0])
        else:
            await self._enqueue(events)
        return _accepted(events)

    def _check_token(self, authorization: bytes | None) -> None:
        expected = self._token_bytes
        assert expected is not None
        scheme, _, credentials = (authorization or b"").strip().partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(credentials.strip(), expected):
            raise _Reject(
                401,
                "send the ingress's token as 'Authorization: Bearer <token>'"
                if authorization is None
                else "the bearer token is not valid",
                ((b"www-authenticate", b'Bearer realm="reactor"'),),
            )

    def _check_allowed(self, events: Sequence[Event]) -> None:
        """Refuse (403) a request with any event of a reserved or not allowed type or source."""
        reserved = not self._allow_reserved
        type_allowed = self._type_allowed
        source_allowed = self._source_allowed
        for event in events:
            type_, source = event.type, event.source
            if reserved and (
                type_.startswith(RESERVED_TYPE_PREFIX)
                or source.startswith(RESERVED_SOURCE_PREFIX)
                or source == "/reactor"
            ):
                raise _Reject(
                    403,
                    f"event {event.id!r}: types under 'reactor.' and sources under "
                    f"'/reactor/' are reserved for reactor's built-in sources and webhook "
                    f"routes; got type {type_!r} from {source!r}",
                )
            if type_allowed is not None and not type_allowed(type_):
                raise _Reject(403, f"event {event.id!r}: type {type_!r} is not allowed here")
            if source_allowed is not None and not source_allowed(source):
                raise _Reject(403, f"event {event.id!r}: source {source!r} is not allowed here")

    async def _read_rest(self, receive: Receive, body: bytes, limit: int) -> bytes:
        """Read the rest of a body that comes in several messages, up to *limit* bytes."""
        chunks = [body]
        size = len(body)
        while True:
            if size > limit:
                # Stop reading here: the server discards the rest (or closes the connection).
                raise _Reject(413, f"the body is larger than {limit} bytes")
            message = await receive()
            if message["type"] != "http.request":
                raise _Disconnected
            chunk = message.get("body", b"")
            chunks.append(chunk)
            size += len(chunk)
            if not message.get("more_body", False):
                break
        if size > limit:
            raise _Reject(413, f"the body is larger than {limit} bytes")
        return b"".join(chunks)

    # -- CloudEvents ----------------------------------------------------------------

    def _cloudevents(
        self,
        headers: Sequence[tuple[bytes, bytes]],
        media_type: bytes,
        binary: bool,
        body: bytes,
    ) -> list[Event]:
        # The content type decides between the modes (HTTP binding 3.1): structured and
        # batched first, then binary mode, recognised by its ce-specversion header.
        if media_type.startswith(b"application/cloudevents"):
            if media_type not in (_STRUCTURED, _BATCH):
                raise _Reject(
                    415,
                    f"unsupported CloudEvents format {media_type.decode('latin-1')!r}; "
                    "send application/cloudevents+json or application/cloudevents-batch+json",
                )
        elif not binary:
            raise _Reject(
                415,
                "not a CloudEvent: send binary mode (ce-specversion, ce-id, ce-source and "
                "ce-type headers), or a body of type application/cloudevents+json or "
                "application/cloudevents-batch+json",
            )
        try:
            if media_type == _BATCH:
                return Event.batch_from_http(headers, body)
            return [Event.from_http(headers, body)]
        except (EventFormatError, InvalidEventError) as exc:
            raise _Reject(400, _reason(exc)) from None

    # -- webhooks -------------------------------------------------------------------

    def _webhook_event(
        self,
        route: Webhook,
        msg_id: bytes | None,
        media_type: bytes,
        body: bytes,
        now: datetime,
        subject: bytes | None = None,
    ) -> Event:
        if route.scheme == "github" and media_type == _FORM:
            # GitHub's other content type: the JSON payload in a form field named payload
            # (the signature covers the form body, checked before this).
            body = _github_form_payload(body)
        elif media_type and not _is_json(media_type):
            raise _Reject(
                415,
                f"webhook {route.path!r} takes JSON bodies, got {media_type.decode('latin-1')!r}",
            )
        data = _parse_json(body)
        try:
            if msg_id:
                return Event(
                    type=route.type,
                    source=route.source,
                    id=msg_id.decode("latin-1"),
                    subject=subject.decode("latin-1") if subject else None,
                    time=now,
                    data=data,
                )
            return Event(
                type=route.type,
                source=route.source,
                subject=subject.decode("latin-1") if subject else None,
                time=now,
                data=data,
            )
        except InvalidEventError as exc:
            raise _Reject(400, _reason(exc)) from None

    async def _publish_signed(
        self, key: tuple[str, str], events: list[Event], now: float, window_end: float
    ) -> tuple[Message, Message]:
        seen = self._seen
        # Forget ids whose window has passed. Entries are in acceptance order, which is
        # nearly window order; one that outlives its window a little is harmless.
        while seen:
            oldest = next(iter(seen))
            if seen[oldest] > now:
                break
            del seen[oldest]
        if key in seen:
            self._counters["duplicates"] += 1
            ids = ",".join([_quote(event.id) for event in events])
            return _json_response(200, f'{{"ids":[{ids}],"duplicate":true}}')
        while len(seen) >= self._replay_cache:
            seen.popitem(last=False)
        # Reserve the id before publishing, which may wait: a concurrent copy of this
        # request is then a duplicate, not a second event.
        seen[key] = window_end
        try:
            await self._enqueue(events)
        except BaseException:
            seen.pop(key, None)
            raise
        return _accepted(events)

    # -- publishing -----------------------------------------------------------------

    def _publish_now(self, event: Event) -> None:
        """Publish one event into a queue that stores without I/O (the memory queue)."""
        try:
            self._app.publish_nowait(event)
        except Exception as exc:
            raise self._refusal(exc) from None
        self._counters["accepted"] += 1

    async def _enqueue(self, events: list[Event]) -> None:
        """Publish the events of one request, all of them or (with an error answer) none."""
        app = self._app
        queue = app.queue
        if len(events) == 1 and queue.stores_immediately:
            self._publish_now(events[0])
            return
        capacity = queue.capacity
        if len(events) > capacity:
            raise _Reject(
                413,
                f"the batch holds {len(events)} events, more than the ingestion queue "
                f"ever holds ({capacity}); split it",
            )
        try:
            # All or nothing on every queue, and no waiting for room: a sender retries.
            await app.publish_many(events)
        except Exception as exc:
            raise self._refusal(exc) from None
        self._counters["accepted"] += len(events)

    def _refusal(self, exc: Exception) -> _Reject:
        """The answer to a queue's refusal of a request's events; re-raise anything else.

        Nothing of the request was stored: the queue stores a batch all or nothing.
        """
        retry = (self._retry_header,)
        if isinstance(exc, QueueFull):
            return _Reject(503, "the ingestion queue is full; retry later", retry)
        if isinstance(exc, ReactorNotRunning):
            return _Reject(503, "the app is not running", retry)
        if isinstance(exc, QueueUnavailableError | QueueFileError):
            # The queue's trouble (a full disk), not the client's: the request may pass later.
            # The detail (a file path, say) is for the log, not for the client.
            logger.warning("the ingestion queue refused a request: %s", exc)
            return _Reject(
                503, "the ingestion queue cannot store events right now; retry later", retry
            )
        if isinstance(exc, PayloadTooLargeError):
            return _Reject(413, _reason(exc))
        if isinstance(exc, EventFormatError | InvalidEventError):
            return _Reject(400, _reason(exc))
        if isinstance(exc, NotImplementedError):
            return _Reject(501, f"the ingestion queue takes no batches: {exc}")
        raise exc

    # -- lifespan -------------------------------------------------------------------

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        app = self._app
        await receive()  # lifespan.startup
        if app.running:
            # Someone else runs the app (the host's lifespan, a test): leave it alone.
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        started = False
        try:
            async with app:
                await send({"type": "lifespan.startup.complete"})
                started = True
                await receive()  # lifespan.shutdown
        except Exception as exc:
            logger.exception("the app failed to %s", "stop" if started else "start")
            kind = "lifespan.shutdown.failed" if started else "lifespan.startup.failed"
            await send({"type": kind, "message": _describe(exc)})
            return
        await send({"type": "lifespan.shutdown.complete"})

    def __repr__(self) -> str:
        return f"<HttpIngress {len(self._routes)} webhook route(s), max_body={self._max_body}>"


def _describe(exc: BaseException) -> str:
    """Name the errors inside *exc*, looking into exception groups (task groups raise them)."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(inner) for inner in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"


def _reason(exc: BaseException) -> str:
    notes = getattr(exc, "__notes__", ())
    return "; ".join([str(exc), *notes])


def _github_form_payload(body: bytes) -> bytes:
    try:
        fields = parse_qs(
            body.decode("ascii"), strict_parsing=True, max_num_fields=8, errors="strict"
        )
    except (UnicodeDecodeError, ValueError):
        raise _Reject(400, "the form body is not valid application/x-www-form-urlencoded") from None
    payload = fields.get("payload")
    if payload is None or len(payload) != 1:
        raise _Reject(400, "a form-encoded GitHub webhook has one field named payload")
    return payload[0].encode("utf-8")


def _parse_json(body: bytes) -> Any:
    if not body:
        raise _Reject(400, "the body is empty; a webhook takes a JSON body")
    try:
        # The event codec's reader: it refuses what no queue could store either (lone
        # surrogates, numbers out of range), so every queue takes the same bodies.
        return load_json(body)
    except EventFormatError as exc:
        raise _Reject(400, str(exc)) from None


def _verify(
    secret: bytes,
    tolerance: float,
    msg_id: bytes | None,
    timestamp: bytes | None,
    signature: bytes | None,
    body: bytes,
    now: float,
) -> int:
    """Check a Standard Webhooks signature; raise a 401 that says what is wrong.

    :return: the verified ``webhook-timestamp``
    """
    if not (msg_id and timestamp and signature):
        raise _Reject(
            401,
            "a signed webhook needs the webhook-id, webhook-timestamp and webhook-signature "
            "headers",
        )
    timestamp = timestamp.strip()
    if _DIGITS.fullmatch(timestamp) is None:
        raise _Reject(401, "webhook-timestamp must be an integer Unix time in seconds")
    sent = int(timestamp)
    if sent < now - tolerance:
        raise _Reject(401, "webhook-timestamp is too old")
    if sent > now + tolerance:
        raise _Reject(401, "webhook-timestamp is too far in the future")
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
    raise _Reject(401, "no webhook-signature matches the body")


def _verify_github(secret: bytes, header: bytes | None, body: bytes) -> None:
    """Check GitHub's ``X-Hub-Signature-256``; raise a 401 that says what is wrong."""
    if not header:
        raise _Reject(401, "a GitHub webhook needs the X-Hub-Signature-256 header")
    algorithm, _, signature = header.strip().partition(b"=")
    if algorithm != b"sha256":
        raise _Reject(401, "X-Hub-Signature-256 must be 'sha256=<hex digest>'")
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest().encode("ascii")
    if not hmac.compare_digest(signature.lower(), expected):
        raise _Reject(401, "X-Hub-Signature-256 does not match the body")


def _verify_stripe(
    secret: bytes, tolerance: float, header: bytes | None, body: bytes, now: float
) -> int:
    """Check a ``Stripe-Signature`` header; raise a 401 that says what is wrong.

    :return: the verified timestamp ``t``
    """
    if not header:
        raise _Reject(401, "a Stripe webhook needs the Stripe-Signature header")
    timestamp: bytes | None = None
    signatures: list[bytes] = []
    for item in header.split(b","):
        key, _, value = item.strip().partition(b"=")
        if key == b"t":
            timestamp = value
        elif key == b"v1":  # v0 (test mode's legacy scheme) and others are not checked
            signatures.append(value)
    if timestamp is None or _DIGITS.fullmatch(timestamp) is None:
        raise _Reject(401, "Stripe-Signature needs a timestamp t=<Unix seconds>")
    if not signatures:
        raise _Reject(401, "Stripe-Signature holds no v1 signature")
    sent = int(timestamp)
    if sent < now - tolerance:
        raise _Reject(401, "the Stripe-Signature timestamp is too old")
    if sent > now + tolerance:
        raise _Reject(401, "the Stripe-Signature timestamp is too far in the future")
    expected = _stripe_digest(secret, timestamp, body).encode("ascii")
    for candidate in signatures:
        if hmac.compare_digest(candidate.lower(), expected):
            return sent
    raise _Reject(401, "no Stripe-Signature v1 signature matches the body")


def _stripe_event(event: Event) -> Event:
    """Take the id and subject of a Stripe event from its body (``id``, ``type``)."""
    data = event.data
    if not isinstance(data, dict):
        return event
    stripe_id, stripe_type = data.get("id"), data.get("type")
    try:
        return attrs.evolve(
            event,
            id=stripe_id if isinstance(stripe_id, str) and stripe_id else event.id,
            subject=stripe_type if isinstance(stripe_type, str) and stripe_type else None,
        )
    except InvalidEventError as exc:
        raise _Reject(400, _reason(exc)) from None


def asgi(
    app: App,
    /,
    *,
    token: str | Unset | None = UNSET,
    secret: str | bytes | Unset | None = UNSET,
    tolerance: float | Unset = UNSET,
    allow_types: Sequence[str] | Unset | None = UNSET,
    allow_sources: Sequence[str] | Unset | None = UNSET,
    allow_reserved: bool | Unset = UNSET,
    max_body: int | Unset = UNSET,
    retry_after: int | Unset = UNSET,
    replay_cache: int | Unset = UNSET,
) -> HttpIngress:
    """Return the app's HTTP ingress, an ASGI application, creating it on first use.

    The ingress takes CloudEvents (binary, structured or batched) at its root and JSON
    webhooks at the paths routed with :meth:`HttpIngress.webhook`, and answers 202 once
    every event is in the ingestion queue. Serve it standalone (``uvicorn
    mymodule:app.asgi``: it then starts and stops the app from the server's lifespan) or
    mount it in FastAPI or Starlette and run ``async with app:`` in the host's lifespan.

    The settings given are set on the ingress (those left out keep their value; they
    are also attributes: ``app.asgi.max_body = 4 * 2**20``)::

        asgi(app, token=os.environ["INGRESS_TOKEN"], allow_types=["com.example.*"])

    :param app: the app to publish into
    :param token: see :class:`HttpIngress` (the other settings too)
    :raises ValueError: a bad setting (nothing is changed then)
    :return: the same :class:`HttpIngress` on every call for that app
    """
    for source in app.sources:
        if isinstance(source, HttpIngress) and source.app is app:
            ingress = source
            break
    else:
        ingress = HttpIngress(app)
        app.add_source(ingress)
    settings: dict[str, object] = {
        "token": token,
        "secret": secret,
        "tolerance": tolerance,
        "allow_types": allow_types,
        "allow_sources": allow_sources,
        "allow_reserved": allow_reserved,
        "max_body": max_body,
        "retry_after": retry_after,
        "replay_cache": replay_cache,
    }
    given = {name: value for name, value in settings.items() if value is not UNSET}
    if given:
        # Check every setting on a scratch ingress first: all of them apply, or none.
        HttpIngress(app, **given)  # type: ignore[arg-type]
        for name, value in given.items():
            setattr(ingress, name, value)
    return ingress


def on_webhook(
    app: App,
    /,
    path: str,
    *,
    type: str,
    secret: str | bytes | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    scheme: Scheme = "standard",
    name: str | None = None,
    concurrency: int = 16,
    ordered_by: KeyFunction | None = None,
    timeout: float | Unset | None = UNSET,
    retry: Retry | Unset | None = UNSET,
) -> Callable[[H], H]:
    """Decorate a handler for the JSON webhooks ``POST``-ed to *path* of ``app.asgi``.

    Routes *path* on the app's ingress (see :meth:`HttpIngress.webhook`) and subscribes
    the handler to the route's events only: type *type*, source ``"/reactor/http" +
    path``, the parsed JSON body as ``data`` and the delivery id as ``id``. Several
    handlers may share a path when they give the same route settings. The other
    options are those of :meth:`Reactor.subscribe`. Choose the *scheme* of the sender::

        @on_webhook(app, "/github", type="com.github.push", secret=..., scheme="github")
        @on_webhook(app, "/stripe", type="com.stripe.event", secret="whsec_...",
                    scheme="stripe")

    :param path: the path below the ingress, e.g. ``"/github"``
    :param type: the ``type`` of the events
    :param secret: verify signatures with this key (see :meth:`HttpIngress.webhook`);
        ``None`` takes unsigned requests
    :param tolerance: seconds a signature's timestamp may differ from the app's clock
    :param scheme: the sender's signature scheme: ``"standard"`` (Standard Webhooks,
        the default), ``"github"`` (``X-Hub-Signature-256``) or ``"stripe"``
        (``Stripe-Signature``)
    :param name: the consumer name (default: the handler's qualified name)
    :param concurrency: the most deliveries of this handler running at once
    :param ordered_by: ``key(event)``: events with equal keys are handled in order
    :param timeout: seconds each attempt may take (``None``: no limit; default: the app's)
    :param retry: the retry policy (``None``: one attempt; default: the app's)
    :raises ValueError: a bad option, or *path* is routed already with other settings
    :return: a decorator that subscribes the handler and returns it unchanged
    """
    route = asgi(app).webhook(path, type=type, secret=secret, tolerance=tolerance, scheme=scheme)
    return app.subscribe(
        route.type,
        source=route.source,
        name=name,
        concurrency=concurrency,
        ordered_by=ordered_by,
        timeout=timeout,
        retry=retry,
    )
