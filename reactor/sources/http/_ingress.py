"""HttpIngress: the ASGI application and source; routing, authentication, allow-lists, publishing."""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, TypedDict, Unpack

import anyio
from anyio.abc import TaskStatus

from reactor import (
    Event,
    EventFormatError,
    InvalidEventError,
    PayloadTooLargeError,
    QueueFileError,
    QueueFull,
    QueueUnavailableError,
    ReactorNotRunning,
    validators,
)
from reactor.abc import App, Source, compile_glob

from . import _decode, _webhooks
from ._asgi import (
    Answer,
    Disconnected,
    Receive,
    Reject,
    Scope,
    Send,
    accepted,
    json_response,
    lifespan,
    read_body,
    reason,
    route_path,
)
from ._receivers import Once, Receiver, Request
from ._webhooks import (
    DEFAULT_REPLAY_CACHE,
    DEFAULT_TOLERANCE,
    ReplayCache,
    SignatureError,
    Webhook,
    WebhookOptions,
)

logger = logging.getLogger("reactor.sources.http")

#: The largest body read by default: 1 MiB.
DEFAULT_MAX_BODY = 2**20
#: Event types of reactor's built-in sources (timers, files, notifications, gaps): the
#: CloudEvents endpoint refuses them unless ``allow_reserved`` is set.
RESERVED_TYPE_PREFIX = "reactor."
#: Sources of reactor's built-in sources and webhook routes (``"/reactor/..."``), refused
#: like the reserved types: a CloudEvent from ``/reactor/http/github`` would otherwise
#: reach the GitHub route's handlers without its signature.
RESERVED_SOURCE_PREFIX = "/reactor/"

# The headers of the signature schemes and of the bearer token.
_AUTH_HEADERS = frozenset(
    (
        b"authorization",
        b"x-hub-signature-256",
        b"x-github-delivery",
        b"x-github-event",
        b"stripe-signature",
    )
)
# The probes, answered at these paths unless a route takes them (see HttpIngress._probe).
_PROBES = frozenset(("/healthz", "/readyz"))
# What the ingress uses of its app: checked when it is made, for a clear TypeError.
_APP_MEMBERS = ("clock", "running", "queue", "sources", "add_source", "publish_nowait")


class IngressSettings(TypedDict, total=False):
    """The settings of an :class:`HttpIngress`, all optional.

    Keyword arguments of :func:`~reactor.sources.http.asgi` and of :class:`HttpIngress`,
    and attributes of the ingress that may change at any time. The CloudEvents
    endpoint's security settings are described in the :mod:`reactor.sources.http` docs.

    * ``max_body``: the largest request body read, in bytes (an int ``>= 1``; default
      1 MiB); larger bodies are answered 413
    * ``retry_after``: the ``Retry-After`` seconds of 503 answers (an int ``>= 0``;
      default 1)
    * ``replay_cache``: the most signed webhook ids remembered against replays (an int
      ``>= 1``; default 100,000), the oldest forgotten first
    * ``token``: CloudEvents requests must carry ``Authorization: Bearer <token>`` (else
      401); kept out of the repr and compared in constant time; ``None`` (default) asks
      for none
    * ``secret``: CloudEvents requests must be signed as Standard Webhooks with this key
      (``"whsec_..."``, base64, or raw ``bytes``; else 401), the whole request once;
      ``None`` (default) asks for no signature. The attribute holds the decoded key.
    * ``tolerance``: seconds the signature's ``webhook-timestamp`` may differ from now
      (default 300)
    * ``allow_types``: globs; a CloudEvent whose type matches none is refused (403);
      ``None`` (default) allows every type that is not reserved
    * ``allow_sources``: globs on the ``source``, as ``allow_types``
    * ``allow_reserved``: take CloudEvents of the reserved types (``reactor.*``) and
      sources (``/reactor/...``), which otherwise get 403 (default ``False``): only for
      a trusted sender that forwards another reactor app's events
    """

    max_body: int
    retry_after: int
    replay_cache: int
    token: str | None
    secret: str | bytes | None
    tolerance: float
    allow_types: Sequence[str] | None
    allow_sources: Sequence[str] | None
    allow_reserved: bool


_DEFAULTS: IngressSettings = {
    "max_body": DEFAULT_MAX_BODY,
    "retry_after": 1,
    "replay_cache": DEFAULT_REPLAY_CACHE,
    "token": None,
    "secret": None,
    "tolerance": DEFAULT_TOLERANCE,
    "allow_types": None,
    "allow_sources": None,
    "allow_reserved": False,
}


class HttpIngress(Source):
    """The ASGI application that turns HTTP requests into events (see the module docs).

    Get the one of an app with :func:`~reactor.sources.http.asgi` (``app.asgi``), which
    also adds it to the app's sources. Built directly, add it yourself with
    ``app.add_source(ingress)``; without that it still publishes, but keeps accepting
    while the app drains and its counters are not in ``app.stats()``.

    :param app: the app to publish into: a :class:`reactor.Reactor`, or another
        :class:`reactor.abc.App`
    :param settings: the :class:`IngressSettings`, which are also attributes that may
        change at any time
    :raises TypeError: *app* is not an app, or a setting of the wrong type or name
    :raises ValueError: a bad setting
    """

    def __init__(self, app: App, **settings: Unpack[IngressSettings]) -> None:
        missing = [name for name in _APP_MEMBERS if not hasattr(app, name)]
        if missing:
            raise TypeError(
                f"app must be a reactor.Reactor (or another reactor.abc.App), got {app!r}, "
                f"which has no {', '.join(missing)}"
            )
        validators.keywords(type(self).__name__, settings, IngressSettings)
        self._app = app
        self._routes: dict[str, Webhook] = {}
        self._receivers: dict[str, Receiver] = {}
        self._pages: dict[str, Callable[[str | None], tuple[bytes, str]]] = {}
        # Globs of the types the receivers publish, refused at the CloudEvents endpoint.
        self._receiver_types: dict[str, Callable[[str], bool]] = {}
        self._replays = ReplayCache(DEFAULT_REPLAY_CACHE)
        for name, value in {**_DEFAULTS, **settings}.items():
            setattr(self, name, value)
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
    def app(self) -> App:
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
        self._max_body = validators.integer("max_body", value, minimum=1)

    @property
    def retry_after(self) -> int:
        """The ``Retry-After`` seconds of 503 answers."""
        return self._retry_after

    @retry_after.setter
    def retry_after(self, value: int) -> None:
        self._retry_after = validators.integer("retry_after", value, minimum=0)
        self._retry_header = (b"retry-after", b"%d" % self._retry_after)

    @property
    def replay_cache(self) -> int:
        """The most signed webhook ids remembered against replays (oldest forgotten first)."""
        return self._replays.size

    @replay_cache.setter
    def replay_cache(self, value: int) -> None:
        self._replays.size = validators.integer("replay_cache", value, minimum=1)

    @property
    def token(self) -> str | None:
        """The bearer token CloudEvents requests must carry, or ``None`` for none."""
        return self._token

    @token.setter
    def token(self, value: str | None) -> None:
        if value is not None and not (
            validators.name("token", value).isascii() and value.isprintable()
        ):
            raise ValueError("token must be a non-empty str of printable ASCII, or None")
        self._token = value
        self._token_bytes = None if value is None else value.encode("ascii")

    @property
    def secret(self) -> bytes | None:
        """The decoded Standard Webhooks key that signs CloudEvents requests, or ``None``."""
        return self._secret

    @secret.setter
    def secret(self, value: str | bytes | None) -> None:
        self._secret = _webhooks.check_secret(value)

    @property
    def tolerance(self) -> float:
        """Seconds a CloudEvents request's ``webhook-timestamp`` may differ from now."""
        return self._tolerance

    @tolerance.setter
    def tolerance(self, value: float) -> None:
        self._tolerance = validators.seconds("tolerance", value, positive=True)

    @property
    def allow_types(self) -> tuple[str, ...] | None:
        """Globs the type of every CloudEvent must match (``None``: any unreserved type)."""
        return self._allow_types

    @allow_types.setter
    def allow_types(self, value: Sequence[str] | None) -> None:
        self._allow_types, self._type_allowed = _globs("allow_types", value, "event type")

    @property
    def allow_sources(self) -> tuple[str, ...] | None:
        """Globs the source of every CloudEvent must match (``None``: any unreserved one)."""
        return self._allow_sources

    @allow_sources.setter
    def allow_sources(self, value: Sequence[str] | None) -> None:
        self._allow_sources, self._source_allowed = _globs("allow_sources", value, "source")

    @property
    def allow_reserved(self) -> bool:
        """Whether CloudEvents of the reserved types and sources are taken."""
        return self._allow_reserved

    @allow_reserved.setter
    def allow_reserved(self, value: bool) -> None:
        self._allow_reserved = validators.boolean("allow_reserved", value)

    @property
    def routes(self) -> Mapping[str, Webhook]:
        """The webhook routes by path (read-only)."""
        return MappingProxyType(self._routes)

    def webhook(self, path: str, *, type: str, **options: Unpack[WebhookOptions]) -> Webhook:
        """Route ``POST`` requests with a JSON body at *path* to events of *type*.

        What :func:`~reactor.sources.http.on_webhook` does before it subscribes its
        handler; the arguments, their defaults and the signature schemes are described
        there. Calling it again with the same settings returns the same route, so
        several handlers can share one path.

        :raises TypeError: a setting of the wrong type or name
        :raises ValueError: a bad setting, or *path* is routed already with other settings
        :return: the route
        """
        validators.keywords("webhook", options, WebhookOptions)
        route = _webhooks.route(path, type, options)
        if route.path in self._receivers or route.path in self._pages:
            raise ValueError(
                f"path {route.path!r} is taken by a receiver or a page; use another path"
            )
        existing = self._routes.get(route.path)
        if existing is not None:
            if existing != route:
                raise ValueError(
                    f"webhook path {route.path!r} is already routed to type "
                    f"{existing.type!r} with other settings; use another path"
                )
            return existing
        self._routes[route.path] = route
        return route

    @property
    def receivers(self) -> Mapping[str, Receiver]:
        """The receivers by path (read-only)."""
        return MappingProxyType(self._receivers)

    def receiver(self, path: str, receiver: Receiver, *, types: Sequence[str] = ()) -> None:
        """Route ``POST`` requests at *path* to *receiver*, which decodes them itself.

        For plugins that take a sender's own format (the S3 notifications of
        :func:`reactor.sources.objects.on_bucket_event`, say): the ingress routes, reads
        the body, and publishes what the receiver hands to :meth:`Request.publish`; the
        receiver decodes, authenticates and chooses the answer (see :class:`Receiver`).
        Routing the same receiver at the same path again does nothing.

        :param path: the path below the ingress, as for :meth:`webhook`
        :param receiver: the receiver
        :param types: globs of the event types the receiver publishes: the CloudEvents
            endpoint refuses them (403) as it refuses reserved types, so that no client
            reaches the receiver's subscribers without its checks (``allow_reserved``
            lifts this too)
        :raises TypeError: *receiver* is not a :class:`Receiver`, or a glob not a str
        :raises ValueError: *path* is not a valid path, or is taken by another route
        """
        normalized = _webhooks.check_path(path)
        if not isinstance(receiver, Receiver):
            raise TypeError(f"receiver must be a reactor.sources.http.Receiver, got {receiver!r}")
        if isinstance(types, str):
            raise TypeError(f"types must be a list of globs, got the str {types!r}")
        matchers = {glob: compile_glob(glob, "event type") for glob in types}
        existing = self._receivers.get(normalized)
        if existing is receiver:
            return
        if existing is not None or normalized in self._routes or normalized in self._pages:
            raise ValueError(f"path {normalized!r} is routed already; use another path")
        self._receivers[normalized] = receiver
        self._receiver_types.update(matchers)

    def mount(self, host: Any, path: str) -> None:
        """Mount the ingress at *path* of a Starlette or FastAPI application.

        ``api.mount("/events", app.asgi)`` alone takes ``/events/`` and what is below it,
        but not ``/events``: Starlette answers ``POST /events`` with a bare 307 redirect to
        ``/events/``, which senders of CloudEvents and webhooks do not follow. This method
        adds the same ``Mount`` plus a ``Route`` at *path* itself, so that both spellings
        reach the CloudEvents endpoint (and ``/events/github`` a webhook route)::

            api = FastAPI(lifespan=lifespan)
            app.asgi.mount(api, "/events")   # POST /events, POST /events/, /events/github

        :param host: a Starlette or FastAPI application, or a Starlette ``Router``
        :param path: the prefix, such as ``"/events"`` (a trailing slash is ignored)
        :raises ModuleNotFoundError: Starlette is not installed
        :raises TypeError: *host* has no list of routes
        :raises ValueError: *path* is not a path below the root
        """
        from starlette.routing import Mount, Route

        if isinstance(path, str) and not path.rstrip("/"):
            raise ValueError("mount the ingress below the root, such as at '/events'")
        prefix = _webhooks.check_path(path)
        routes = getattr(getattr(host, "router", host), "routes", None)
        if not isinstance(routes, list):
            raise TypeError(f"host must be a Starlette or FastAPI application, got {host!r}")
        routes.append(Route(prefix, _AtPrefix(self)))
        routes.append(Mount(prefix, app=self))

    def page(self, path: str, render: Callable[[str | None], tuple[bytes, str]]) -> None:
        """Answer ``GET`` (and ``HEAD``) requests at *path* with what *render* returns.

        For read-only pages such as metrics (:func:`reactor.prometheus.serve_metrics`
        routes ``/metrics`` this way). *render* is called with the request's ``Accept``
        header (``None`` without one) and returns the body and its content type; it runs
        in the event loop, so it must be quick. Pages need no authentication.

        :param path: the path below the ingress, as for :meth:`webhook`
        :param render: ``render(accept) -> (body, content_type)``
        :raises ValueError: *path* is not a valid path, or is taken by another route
        """
        normalized = _webhooks.check_path(path)
        if normalized in self._routes or normalized in self._receivers:
            raise ValueError(f"path {normalized!r} is routed already; use another path")
        self._pages[normalized] = render

    def _page(self, path: str, scope: Scope) -> Answer:
        if scope["method"] not in ("GET", "HEAD"):
            raise Reject(405, "use GET", ((b"allow", b"GET, HEAD"),))
        accept = next(
            (value.decode("latin-1") for name, value in scope["headers"] if name == b"accept"),
            None,
        )
        body, content_type = self._pages[path](accept)
        headers = [
            (b"content-type", content_type.encode("latin-1")),
            (b"content-length", b"%d" % len(body)),
        ]
        return (
            {"type": "http.response.start", "status": 200, "headers": headers},
            {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body},
        )

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
            await lifespan(self._app, receive, send)
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
        except (Reject, SignatureError) as error:
            reject = error if isinstance(error, Reject) else Reject(401, str(error))
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
                    extra={"source": self.name},
                )
            start, body = reject.answer()
        except Disconnected:
            return
        await send(start)
        await send(body)

    async def _handle(self, scope: Scope, receive: Receive) -> Answer:
        path = route_path(scope)
        if path in self._pages:
            return self._page(path, scope)
        route: Webhook | None = None
        if path != "/":
            route = self._routes.get(path)
            if route is None:
                receiver = self._receivers.get(path)
                if receiver is None:
                    if path in _PROBES:
                        return self._probe(path, scope)
                    raise Reject(404, f"no route at {path[:200]!r}")
                return await self._receive(receiver, path, scope, receive)
        if scope["method"] != "POST":
            raise Reject(405, "use POST", ((b"allow", b"POST"),))
        app = self._app
        if self._stopping or not app.running:
            raise Reject(503, "the app is not running", (self._retry_header,))

        content_type = content_length = None
        binary = False
        # Only the CloudEvents headers go to Event.from_http(), which then has fewer to
        # look at; its checks (duplicates, encoding) are the same.
        event_headers: list[tuple[bytes, bytes]] = []
        # The headers of the signature schemes and of the bearer token.
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
            elif name[:8] == b"webhook-" or name in _AUTH_HEADERS:
                auth[name] = value
        if route is None and self._token_bytes is not None:
            # Checked before the body is read: an unauthenticated client costs nothing.
            self._check_token(auth.get(b"authorization"))
        body = await read_body(receive, content_length, self._max_body)

        media_type = _decode.media_type(content_type)
        if route is None:
            secret = self._secret
            if secret is None:
                events = _decode.cloudevents(event_headers, media_type, binary, body)
                self._check_allowed(events)
            else:
                unix_now = app.clock.now().timestamp()
                tolerance = self._tolerance
                signed = _webhooks.verify("standard", secret, tolerance, auth, body, unix_now)
                events = _decode.cloudevents(event_headers, media_type, binary, body)
                self._check_allowed(events)
                assert signed.id is not None  # verified
                key = ("/", signed.id.decode("latin-1"))
                return await self._publish_signed(key, events, signed.sent, unix_now, tolerance)
        elif route.secret is None:
            msg_id = auth.get(b"webhook-id")
            events = [_decode.webhook_event(route, msg_id, media_type, body, app.clock.now())]
        else:
            now = app.clock.now()
            unix_now = now.timestamp()
            tolerance = route.tolerance
            signed = _webhooks.verify(route.scheme, route.secret, tolerance, auth, body, unix_now)
            event = _decode.webhook_event(route, signed.id, media_type, body, now, signed.subject)
            if route.scheme == "stripe":
                event = _decode.stripe_event(event)
            key = (route.path, event.id)
            return await self._publish_signed(key, [event], signed.sent, unix_now, tolerance)
        if len(events) == 1 and app.queue.stores_immediately:
            self._publish_now(events[0])
        else:
            await self._enqueue(events)
        return accepted(events)

    async def _receive(
        self, receiver: Receiver, path: str, scope: Scope, receive: Receive
    ) -> Answer:
        """Handle a request to a receiver's path."""
        if scope["method"] != "POST":
            raise Reject(405, "use POST", ((b"allow", b"POST"),))
        if self._stopping or not self._app.running:
            raise Reject(503, "the app is not running", (self._retry_header,))
        headers = {
            name.decode("latin-1").lower(): value.decode("latin-1")
            for name, value in scope["headers"]
        }
        receiver.check(headers)
        length = headers.get("content-length")
        body = await read_body(
            receive, None if length is None else length.encode("latin-1"), self._max_body
        )

        async def publish(events: Sequence[Event], once: Once | None) -> bool:
            if once is None:
                if events:
                    await self._enqueue(list(events))
                return True
            key = (path, once.id)
            now = self._app.clock.now().timestamp()
            if not self._replays.reserve(key, once.sent, now, once.window):
                self._counters["duplicates"] += 1
                return False
            try:
                if events:
                    await self._enqueue(list(events))
            except BaseException:
                self._replays.release(key)
                raise
            return True

        reply = await receiver.receive(
            Request(path=path, headers=headers, body=body, publish=publish)
        )
        return reply.answer()

    def _probe(self, path: str, scope: Scope) -> Answer:
        """Answer ``GET /healthz`` (alive: always 200) or ``GET /readyz`` (200 or 503)."""
        if scope["method"] not in ("GET", "HEAD"):
            raise Reject(405, "use GET", ((b"allow", b"GET, HEAD"),))
        if path == "/healthz":
            return json_response(200, '{"status":"alive"}')
        # reactor.abc.App does not promise health(): a third-party app is ready while running.
        health = getattr(self._app, "health", None)
        if callable(health):
            fields: dict[str, Any] = health().to_dict()
        else:
            running = self._app.running
            fields = {"ready": running, "problems": [] if running else ["the app is not running"]}
        if self._stopping and fields["ready"]:
            fields["ready"] = False
            fields["problems"] = [*fields["problems"], "the HTTP ingress is stopping"]
        return json_response(200 if fields["ready"] else 503, json.dumps(fields))

    def _check_token(self, authorization: bytes | None) -> None:
        expected = self._token_bytes
        assert expected is not None
        scheme, _, credentials = (authorization or b"").strip().partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(credentials.strip(), expected):
            raise Reject(
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
        received = self._receiver_types if reserved else None
        for event in events:
            type_, source = event.type, event.source
            if reserved and (
                type_.startswith(RESERVED_TYPE_PREFIX)
                or source.startswith(RESERVED_SOURCE_PREFIX)
                or source == "/reactor"
            ):
                raise Reject(
                    403,
                    f"event {event.id!r}: types under 'reactor.' and sources under "
                    f"'/reactor/' are reserved for reactor's built-in sources and webhook "
                    f"routes; got type {type_!r} from {source!r}",
                )
            if received:
                for glob, match in received.items():
                    if match(type_):
                        raise Reject(
                            403,
                            f"event {event.id!r}: type {type_!r} is reserved for a "
                            f"receiver of this ingress (it takes {glob!r} at its own path)",
                        )
            if type_allowed is not None and not type_allowed(type_):
                raise Reject(403, f"event {event.id!r}: type {type_!r} is not allowed here")
            if source_allowed is not None and not source_allowed(source):
                raise Reject(403, f"event {event.id!r}: source {source!r} is not allowed here")

    # -- publishing -----------------------------------------------------------------

    async def _publish_signed(
        self,
        key: tuple[str, str],
        events: list[Event],
        sent: float,
        now: float,
        tolerance: float,
    ) -> Answer:
        """Publish the events of a verified request, or answer 200 to a replay of one."""
        # Reserve the id before publishing, which may wait: a concurrent copy of this
        # request is then a duplicate, not a second event.
        if not self._replays.reserve(key, sent, now, tolerance):
            self._counters["duplicates"] += 1
            return accepted(events, duplicate=True)
        try:
            await self._enqueue(events)
        except BaseException:
            self._replays.release(key)
            raise
        return accepted(events)

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
            raise Reject(
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

    def _refusal(self, exc: Exception) -> Reject:
        """The answer to a queue's refusal of a request's events; re-raise anything else.

        Nothing of the request was stored: the queue stores a batch all or nothing.
        """
        retry = (self._retry_header,)
        if isinstance(exc, QueueFull):
            return Reject(503, "the ingestion queue is full; retry later", retry)
        if isinstance(exc, ReactorNotRunning):
            return Reject(503, "the app is not running", retry)
        if isinstance(exc, QueueUnavailableError | QueueFileError):
            # The queue's trouble (a full disk), not the client's: the request may pass later.
            # The detail (a file path, say) is for the log, not for the client.
            logger.warning(
                "the ingestion queue refused a request: %s", exc, extra={"source": self.name}
            )
            return Reject(
                503, "the ingestion queue cannot store events right now; retry later", retry
            )
        if isinstance(exc, PayloadTooLargeError):
            return Reject(413, reason(exc))
        if isinstance(exc, EventFormatError | InvalidEventError):
            return Reject(400, reason(exc))
        if isinstance(exc, NotImplementedError):
            return Reject(501, f"the ingestion queue takes no batches: {exc}")
        raise exc

    def __repr__(self) -> str:
        return (
            f"<HttpIngress {len(self._routes)} webhook route(s), "
            f"{len(self._receivers)} receiver(s), max_body={self._max_body}>"
        )


class _AtPrefix:
    """The ingress, for requests at its mount prefix itself (``/events``): its root."""

    def __init__(self, ingress: HttpIngress) -> None:
        self._ingress = ingress

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The whole path is the prefix: the ingress strips it and sees its root "/".
        await self._ingress(dict(scope, root_path=scope["path"]), receive, send)


def _globs(
    name: str, value: object, what: str
) -> tuple[tuple[str, ...] | None, Callable[[str], bool] | None]:
    """Check an allow-list; return its globs and a matcher for them (``None`` for none)."""
    if value is None:
        return None, None
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise TypeError(f"{name} must be a list of globs or None, got {value!r}")
    globs = tuple(value)
    matchers = [compile_glob(glob, what) for glob in globs]
    return globs, lambda text: any(match(text) for match in matchers)
