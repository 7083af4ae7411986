"""Bucket notifications over HTTP: the receiver of a path on the app's ingress, and the decorator."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar, Unpack

import anyio
from anyio.abc import TaskStatus

from reactor import ConsumerOptions, Handler, validators
from reactor.abc import App, compile_glob, import_extra
from reactor.sources.http import Once, Receiver, Reject, Reply, Request, asgi

from .._link import LOG_EVERY
from .._naming import NamedSource
from . import _sns
from ._records import KIND, S3_TYPE_PREFIX, BucketFilter, Decoded, decode_s3
from ._sns import SNS_TYPE_PREFIX, Fetch

logger = logging.getLogger("reactor.sources.objects")

H = TypeVar("H", bound=Handler)

# Media types a bucket route takes: MinIO and Ceph send JSON, SNS sends text/plain
# (or what its delivery policy's headerContentType says).
_MEDIA_TYPES = frozenset(("", "application/json", "text/plain"))


class BucketEvents(Receiver, NamedSource):
    """The receiver of S3 bucket notifications at one path of the app's HTTP ingress.

    Made and routed by :func:`~reactor.sources.objects.on_bucket_event`, which also adds
    it to the app's sources. Its name is the path, so that its counters are in
    ``app.stats().sources["/reactor/objects/<path>"]`` (the path percent-encoded,
    ``/reactor/objects/%2Fminio`` for ``/minio``; see :meth:`statistics`).

    :param app: the app to publish into
    :param path: the path below the ingress
    :param token: the bearer token direct senders must present, or ``None``
    :param sns: globs on the ARNs of the SNS topics whose envelopes the path takes, or
        ``None`` for direct senders (MinIO, Ceph RGW)
    :param fetch: how SNS certificates are fetched and subscriptions confirmed
    """

    kind = KIND

    def __init__(
        self,
        app: App,
        path: str,
        *,
        token: str | None = None,
        sns: Sequence[str] | None = None,
        fetch: Fetch | None = None,
    ) -> None:
        super().__init__(path or "/")  # the root: refused by the ingress, which says why
        self._app = app
        self._path = path
        self._token = token
        self._expected = None if token is None else _authorization(token)
        self._sns = None if sns is None else tuple(sns)
        self._fetch = fetch
        self._get: Fetch = _sns.fetch_url if fetch is None else fetch
        self._certificates = _sns.Certificates(self._get)
        self._topic_allowed: Callable[[str], bool] | None = None
        if self._sns is not None:
            matchers = [compile_glob(glob, "SNS topic ARN") for glob in self._sns]
            self._topic_allowed = lambda arn: any(match(arn) for match in matchers)
        self._filters: list[BucketFilter] = []
        self._counters = dict.fromkeys(
            (
                "requests",
                "records",
                "published",
                "filtered",
                "malformed",
                "tests",
                "unauthorized",
                "confirmed",
                "unsubscribed",
            ),
            0,
        )

    @property
    def path(self) -> str:
        """The path below the ingress."""
        return self._path

    @property
    def filters(self) -> tuple[BucketFilter, ...]:
        """The filters of the subscribed handlers: a record is published if one passes it."""
        return tuple(self._filters)

    def settings(self) -> tuple[object, ...]:
        """What two :func:`on_bucket_event` calls at one path must agree on."""
        return (self._token, self._sns, self._fetch)

    def add_filter(self, where: BucketFilter) -> None:
        """Publish the records *where* passes too (a handler's filter)."""
        if where not in self._filters:
            self._filters.append(where)

    def wanted(self, bucket: str, key: str, event_name: str) -> bool:
        """Whether a record passes the filter of any handler (all pass without handlers)."""
        filters = self._filters
        return not filters or any(where(bucket, key, event_name) for where in filters)

    # -- Source -------------------------------------------------------------------------

    def statistics(self) -> Mapping[str, int]:
        """Return the counters.

        ``requests`` (requests that reached the route), ``records`` (records in the
        messages received), ``published`` (events published: one per record, plus SNS
        confirmations), ``filtered`` (records no handler's filter passes),
        ``malformed`` (records and messages refused), ``tests`` (S3 test messages),
        ``unauthorized`` (requests refused 401 or 403), ``confirmed`` (SNS subscriptions
        confirmed) and ``unsubscribed`` (SNS unsubscribe confirmations received).
        """
        return dict(self._counters)

    async def run(
        self, app: App, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Nothing to run: the ingress calls the route. Keeps the counters in the stats."""
        task_status.started()
        await anyio.sleep_forever()

    # -- Receiver -----------------------------------------------------------------------

    def check(self, headers: Mapping[str, str]) -> None:
        """Check the bearer token before the body is read (direct senders with a token)."""
        self._counters["requests"] += 1
        expected = self._expected
        if expected is None:
            return
        sent = headers.get("authorization")
        scheme, _, credentials = (sent or "").strip().partition(" ")
        if scheme.lower() != expected[0] or not hmac.compare_digest(
            credentials.strip().encode("latin-1"), expected[1]
        ):
            self._counters["unauthorized"] += 1
            raise Reject(
                401,
                "send the route's token as 'Authorization: Bearer <token>' (MinIO's auth_token)"
                if sent is None
                else "the authorization token is not valid",
                ((b"www-authenticate", b'Bearer realm="reactor"'),),
            )

    async def receive(self, request: Request) -> Reply:
        """Decode the notification, publish its records' events, say what was done."""
        media_type = request.media_type
        if media_type not in _MEDIA_TYPES and not media_type.endswith("+json"):
            raise Reject(415, f"S3 notifications are JSON; got Content-Type {media_type[:100]!r}")
        if self._sns is None:
            decoded = decode_s3(request.body, where=self.wanted)
            self._count(decoded)
            if decoded.malformed:
                raise Reject(400, _reason(decoded))
            await request.publish(decoded.events)
            self._counters["published"] += len(decoded.events)
            return _reply(decoded)
        try:
            return await self._sns_message(request)
        except Reject as reject:
            if reject.status in (401, 403):
                self._counters["unauthorized"] += 1
            raise

    async def _sns_message(self, request: Request) -> Reply:
        envelope = _sns.parse(request.body, request.headers)
        assert self._topic_allowed is not None
        if not self._topic_allowed(envelope.topic_arn):
            raise Reject(403, f"this route takes no messages of SNS topic {envelope.topic_arn!r}")
        _sns.check_fresh(envelope, self._app.clock.now())
        _sns.check_certificate_url(envelope.signing_cert_url)
        _sns.verify(envelope, await self._certificates.key(envelope.signing_cert_url))
        once = Once(envelope.message_id, envelope.timestamp.timestamp(), _WINDOW)
        counters = self._counters
        if envelope.type == _sns.NOTIFICATION:
            decoded = decode_s3(envelope.message, where=self.wanted)
            self._count(decoded)
            if decoded.malformed:
                raise Reject(
                    400, "the SNS message is not an S3 event notification: " + _reason(decoded)
                )
            if not await request.publish(decoded.events, once=once):
                return Reply(200, {"ids": [e.id for e in decoded.events], "duplicate": True})
            counters["published"] += len(decoded.events)
            return _reply(decoded)
        subscription = request.headers.get("x-amz-sns-subscription-arn")
        event = _sns.adapter_event(envelope, subscription)
        if envelope.type == _sns.SUBSCRIPTION_CONFIRMATION:
            assert envelope.subscribe_url is not None
            _sns.check_subscribe_url(envelope.subscribe_url, envelope.topic_arn)
            # Confirmed before publishing: a retry after a failed visit must visit again,
            # and a retry of a published confirmation is a duplicate, not visited again.
            try:
                await self._get(envelope.subscribe_url)
            except Exception as exc:
                logger.warning(
                    "%s: could not confirm the subscription to %s: %s",
                    self.name,
                    envelope.topic_arn,
                    exc,
                    extra={"source": self.name},
                )
                raise Reject(
                    503, f"the subscription could not be confirmed now ({type(exc).__name__})"
                ) from None
            counters["confirmed"] += 1
            logger.info(
                "%s: confirmed the subscription to %s",
                self.name,
                envelope.topic_arn,
                extra={"source": self.name},
            )
        else:
            counters["unsubscribed"] += 1
            logger.warning(
                "%s: SNS unsubscribed %s from %s; subscribe the endpoint again to receive "
                "its notifications",
                self.name,
                subscription,
                envelope.topic_arn,
                extra={"source": self.name},
            )
        if not await request.publish([event], once=once):
            return Reply(200, {"ids": [event.id], "duplicate": True})
        counters["published"] += 1
        return Reply.accepted([event])

    def _count(self, decoded: Decoded) -> None:
        counters = self._counters
        counters["records"] += decoded.records
        counters["filtered"] += decoded.filtered
        counters["tests"] += int(decoded.test)
        if decoded.refused:
            before = counters["malformed"]
            counters["malformed"] += len(decoded.refused)
            if before == 0 or before // LOG_EVERY != counters["malformed"] // LOG_EVERY:
                logger.warning(
                    "%s: refused %s (%d refused so far; logged once per %d)",
                    self.name,
                    decoded.refused[0],
                    counters["malformed"],
                    LOG_EVERY,
                    extra={"source": self.name},
                )

    def __repr__(self) -> str:
        kind = "sns" if self._sns is not None else "direct"
        return f"<BucketEvents {self._path!r} {kind}, {len(self._filters)} filter(s)>"


# A retried SNS delivery keeps its MessageId: repeats are caught for as long as SNS retries.
_WINDOW = _sns.MAX_AGE + _sns.CLOCK_SKEW


def _authorization(token: str) -> tuple[str, bytes]:
    """The scheme (lower case) and credentials MinIO sends for *token*.

    MinIO sends a one-word token as ``Bearer <token>`` and a two-word one (``"Basic
    dXNlcjpwYXNz"``) as it is.
    """
    words = token.split()
    if len(words) == 2:
        return words[0].lower(), words[1].encode("ascii")
    return "bearer", token.encode("ascii")


def _reason(decoded: Decoded) -> str:
    return "; ".join(str(refusal) for refusal in decoded.refused[:5])


def _reply(decoded: Decoded) -> Reply:
    members: dict[str, Any] = {}
    if decoded.filtered:
        members["filtered"] = decoded.filtered
    if decoded.refused:
        members["refused"] = [
            {"record": refusal.index, "reason": refusal.reason} for refusal in decoded.refused
        ]
    if decoded.test:
        members["test"] = True
    return Reply.accepted(decoded.events, **members)


def on_bucket_event(
    app: App,
    /,
    path: str = "/s3",
    *,
    bucket: str | None = None,
    prefix: str = "",
    suffix: str = "",
    events: Sequence[str] | None = None,
    token: str | None = None,
    sns: Sequence[str] | None = None,
    fetch: Fetch | None = None,
    **options: Unpack[ConsumerOptions],
) -> Callable[[H], H]:
    """Decorate a handler for the S3 bucket notifications ``POST``-ed to *path* of ``app.asgi``.

    Routes *path* on the app's HTTP ingress (a :class:`BucketEvents` receiver) and
    subscribes the handler to the S3 events that pass its filter. Two kinds of sender:

    * **Direct** (the default): the body is an S3 notification message
      (``{"Records": [...]}``), as MinIO's webhook target and Ceph RGW's HTTP endpoint
      post it. With a *token*, requests must carry ``Authorization: Bearer <token>``
      (MinIO's ``auth_token``; a two-word token such as ``"Basic ..."`` is expected as
      is, as MinIO sends it), compared in constant time; without one, anyone who can
      reach the path publishes bucket events.
    * **SNS** (*sns* given): the body is an Amazon SNS envelope from an HTTP(S)
      subscription of one of the topics *sns* names. Every message's signature is
      verified against SNS's signing certificate, fetched only from
      ``https://sns.<region>.amazonaws.com/...pem`` and kept; a subscription
      confirmation is confirmed by visiting its ``SubscribeURL`` (only on an SNS host);
      notifications carry the S3 message. Repeats of a delivery (SNS retries keep the
      ``MessageId``) are answered 200 without publishing again.

    ::

        @on_bucket_event(app, "/minio", bucket="images", suffix=".jpg",
                         events=["ObjectCreated:*"], token=os.environ["MINIO_TOKEN"])
        async def thumbnail(event): ...      # event.subject is the key

        @on_bucket_event(app, "/sns", sns=["arn:aws:sns:eu-west-1:123456789012:uploads"])
        async def uploaded(event): ...

    The filter (*bucket*, *prefix*, *suffix*, *events*, as :class:`BucketFilter` takes
    them) applies before publishing: a record that no handler of the path wants is
    counted as ``filtered`` and not published. The handler receives every S3 event of
    the app that passes its filter, whichever path or source published it (their type
    and source are the adapter's, the same for every transport). Several handlers may
    share a path (each with its own filter) when they give the same *token*, *sns* and
    *fetch*.

    :param app: the app whose ingress (``app.asgi``) takes the notifications
    :param path: the path below the ingress (default ``"/s3"``)
    :param bucket: the bucket's name (or a glob); ``None`` for any
    :param prefix: keys must start with it
    :param suffix: keys must end with it
    :param events: globs on event names (``"ObjectCreated:*"``, ``"s3:ObjectRemoved:*"``);
        ``None`` for all
    :param token: the bearer token of a direct sender (MinIO's ``auth_token``), or
        ``None`` to take any request
    :param sns: globs on the ARNs of the SNS topics the path takes
        (``"arn:aws:sns:us-east-1:123456789012:uploads"``; ``["*"]`` takes any topic,
        including one a stranger subscribes the endpoint to); needs
        ``reactor-events[sns]`` (the ``cryptography`` package)
    :param fetch: the hook that fetches for SNS routes: an async function taking an
        ``https://`` URL and returning the body (raising on failure), used for signing
        certificates and ``SubscribeURL``. Default: the standard library's HTTP client
        in a worker thread (10 s timeout). Tests pass their own, serving a certificate
        they made.
    :param options: the consumer's ``name``, ``concurrency``, ``ordered_by``,
        ``timeout`` and ``retry`` (:class:`~reactor.ConsumerOptions`)
    :raises TypeError: an argument of the wrong type or name
    :raises ValueError: a bad argument, or *path* is routed already with other settings
    :raises ModuleNotFoundError: *sns* is given and ``cryptography`` is not installed
    :return: a decorator that subscribes the handler and returns it unchanged
    """
    validators.keywords("on_bucket_event", options, ConsumerOptions)
    where = BucketFilter(bucket, prefix, suffix, events)
    if token is not None:
        if sns is not None:
            raise ValueError("token is for direct senders; an SNS route verifies signatures")
        if not (validators.name("token", token).isascii() and token.isprintable()):
            raise ValueError("token must be a non-empty str of printable ASCII, or None")
        if len(token.split()) > 2:
            raise ValueError("token must be one word, or a scheme and a credential")
    if sns is not None:
        if isinstance(sns, str) or not isinstance(sns, Sequence) or not sns:
            raise TypeError(f"sns must be a non-empty list of topic ARN globs, got {sns!r}")
        import_extra("cryptography", extra="sns")
    if fetch is not None and not callable(fetch):
        raise TypeError(f"fetch must be an async function, got {fetch!r}")
    if not isinstance(path, str):
        raise TypeError(f"path must be a str, got {type(path).__name__}")
    ingress = asgi(app)
    route = BucketEvents(app, path.rstrip("/"), token=token, sns=sns, fetch=fetch)
    existing = ingress.receivers.get(route.path)
    if existing is None:
        ingress.receiver(path, route, types=(S3_TYPE_PREFIX + "*", SNS_TYPE_PREFIX + "*"))
        app.add_source(route)
    elif isinstance(existing, BucketEvents) and existing.settings() == route.settings():
        route = existing
    else:
        raise ValueError(f"path {path!r} is routed already with other settings; use another path")

    def decorate(handler: H) -> H:
        app.subscribe(S3_TYPE_PREFIX + "*", handler, where=where.matches, **options)
        route.add_filter(where)
        return handler

    return decorate
