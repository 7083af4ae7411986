"""Amazon SNS HTTP(S) subscriptions: envelopes, signatures, certificates, confirmation.

An SNS topic delivers to an HTTP(S) endpoint by ``POST``-ing a JSON envelope
(``Type``, ``MessageId``, ``TopicArn``, ``Message``, ``Timestamp``, ``Signature``,
``SigningCertURL``, ...). Everything here follows AWS's documentation of those
envelopes ("Amazon SNS message and JSON formats") and of their signatures ("Verifying
the signatures of Amazon SNS messages"): the signed text is the envelope's fields as
``"Name\\nvalue\\n"`` lines in a fixed order, signed with RSA PKCS #1 v1.5 over SHA1
(``SignatureVersion`` 1) or SHA256 (2) by the key of an X.509 certificate that SNS
serves at ``SigningCertURL``. Trust comes from where the certificate is fetched: only
``https://sns.<region>.amazonaws.com/....pem`` (``.amazonaws.com.cn`` in China), over
TLS, is ever fetched.

The confirmations become the CloudEvents the specification's SNS adapter defines
(cloudevents/spec, ``cloudevents/adapters/aws-sns.md``); notifications carry S3
messages, decoded by :func:`~._records.decode_s3`.

Each function raises :class:`~reactor.sources.http.Reject` with the answer its failure
gets: 400 for a malformed envelope, 401 for a signature that does not verify or a
certificate from anywhere else, 503 when the certificate cannot be fetched now.
"""

from __future__ import annotations

import base64
import binascii
import re
import urllib.error
import urllib.request
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, TypeAlias
from urllib.parse import parse_qs, urlsplit

import anyio
import attrs

from reactor import Event, EventFormatError, InvalidEventError
from reactor.abc import load_json
from reactor.sources.http import Reject

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

#: The prefix of the types of SNS's own messages (the adapter's ``com.amazonaws.sns.``).
SNS_TYPE_PREFIX: Final = "com.amazonaws.sns."
#: The SNS message types (``Type``, and the ``x-amz-sns-message-type`` header).
NOTIFICATION: Final = "Notification"
SUBSCRIPTION_CONFIRMATION: Final = "SubscriptionConfirmation"
UNSUBSCRIBE_CONFIRMATION: Final = "UnsubscribeConfirmation"
_TYPES: Final = (NOTIFICATION, SUBSCRIPTION_CONFIRMATION, UNSUBSCRIBE_CONFIRMATION)

#: Seconds an envelope's ``Timestamp`` may lie in the past: SNS retries an HTTP(S)
#: delivery for at most an hour (a hard limit of its delivery policies), plus
#: :data:`CLOCK_SKEW`.
MAX_AGE: Final = 3600.0
#: Seconds the sender's and the app's clocks may disagree by.
CLOCK_SKEW: Final = 300.0
#: The most signing certificates kept (SNS has one per region, rotated rarely).
CERTIFICATE_CACHE: Final = 32
#: Seconds the default fetcher waits for an answer.
FETCH_TIMEOUT: Final = 10.0
#: The most bytes the default fetcher reads of an answer.
FETCH_LIMIT: Final = 1 << 20

Fetch: TypeAlias = Callable[[str], Awaitable[bytes]]
"""An HTTP GET: takes an ``https://`` URL, returns the answer's body, raises on failure.

What an SNS route uses to fetch signing certificates and to visit ``SubscribeURL``;
tests give their own (see :func:`~reactor.sources.objects.on_bucket_event`).
"""

# sns.<region>.amazonaws.com, and .amazonaws.com.cn for the China regions.
_AWS_HOST = re.compile(r"sns\.[a-z0-9-]+\.amazonaws\.com(?:\.cn)?")
# The fields of the signed text, in order, by message type (AWS's documentation).
_SIGNED_FIELDS: Final = {
    NOTIFICATION: ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    SUBSCRIPTION_CONFIRMATION: (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
}
_SIGNED_FIELDS[UNSUBSCRIBE_CONFIRMATION] = _SIGNED_FIELDS[SUBSCRIPTION_CONFIRMATION]
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?Z", re.ASCII)


@attrs.frozen(kw_only=True)
class Envelope:
    """An SNS message as posted to an HTTP(S) subscription, its fields checked.

    :ivar type: ``Notification``, ``SubscriptionConfirmation`` or ``UnsubscribeConfirmation``
    :ivar message_id: ``MessageId``, the same on every retry of a delivery
    :ivar topic_arn: ``TopicArn``
    :ivar message: ``Message``: for S3 notifications, the S3 message as JSON text
    :ivar timestamp: ``Timestamp``, when SNS published it
    :ivar subject: ``Subject``, if any (notifications)
    :ivar subscribe_url: ``SubscribeURL`` (confirmations)
    :ivar signature_version: ``"1"`` (SHA1) or ``"2"`` (SHA256)
    :ivar signature: ``Signature``, decoded
    :ivar signing_cert_url: ``SigningCertURL``
    :ivar payload: the whole envelope, as parsed (the adapter's ``data``)
    """

    type: str
    message_id: str
    topic_arn: str
    message: str
    timestamp: datetime
    subject: str | None
    subscribe_url: str | None
    signature_version: str
    signature: bytes = attrs.field(repr=False)
    signing_cert_url: str
    payload: Mapping[str, Any] = attrs.field(repr=False)

    def signed_text(self) -> bytes:
        """The text SNS signed: each signed field present as ``"Name\\nvalue\\n"``."""
        payload = self.payload
        parts = []
        for name in _SIGNED_FIELDS[self.type]:
            value = payload.get(name)
            if value is not None:
                parts.append(f"{name}\n{value}\n")
        return "".join(parts).encode("utf-8")


def parse(body: bytes, headers: Mapping[str, str]) -> Envelope:
    """Check and parse an SNS envelope.

    :param body: the request's body
    :param headers: the request's headers (the ``x-amz-sns-*`` ones must agree with the body)
    :raises Reject: 400 for anything that is not a well-formed SNS envelope
    """
    if headers.get("x-amz-sns-rawdelivery", "").lower() == "true":
        raise Reject(
            400,
            "raw message delivery is on for this SNS subscription: its messages carry no "
            "signature; turn RawMessageDelivery off",
        )
    try:
        payload = load_json(body)
    except EventFormatError as exc:
        raise Reject(400, f"the body is not an SNS message: {exc}") from None
    if not isinstance(payload, dict):
        raise Reject(400, "the body is not an SNS message: expected a JSON object")
    kind = payload.get("Type")
    if kind not in _TYPES:
        raise Reject(
            400,
            f"not an SNS message: Type must be one of {', '.join(_TYPES)}, got {_short(kind)}",
        )
    for header, name in (
        ("x-amz-sns-message-type", "Type"),
        ("x-amz-sns-message-id", "MessageId"),
        ("x-amz-sns-topic-arn", "TopicArn"),
    ):
        sent = headers.get(header)
        if sent is not None and sent != payload.get(name):
            raise Reject(400, f"the {header} header does not match the message's {name}")
    version = _field(payload, "SignatureVersion")
    if version not in ("1", "2"):
        raise Reject(400, f"unsupported SNS SignatureVersion {version!r}: 1 and 2 are verified")
    try:
        signature = base64.b64decode(_field(payload, "Signature"), validate=True)
    except (binascii.Error, ValueError):
        raise Reject(400, "the SNS Signature is not base64") from None
    timestamp = _field(payload, "Timestamp")
    if _TIMESTAMP.fullmatch(timestamp) is None:
        raise Reject(400, f"the SNS Timestamp is not an ISO 8601 UTC time: {_short(timestamp)}")
    try:
        when = datetime.fromisoformat(timestamp).astimezone(UTC)
    except ValueError:
        raise Reject(400, f"the SNS Timestamp is not a valid time: {_short(timestamp)}") from None
    confirmation = kind != NOTIFICATION
    subject = payload.get("Subject")
    if subject is not None and not isinstance(subject, str):
        raise Reject(400, "the SNS Subject must be a string")
    if confirmation:
        _field(payload, "Token")
    return Envelope(
        type=kind,
        message_id=_field(payload, "MessageId"),
        topic_arn=_field(payload, "TopicArn"),
        message=_field(payload, "Message", empty=True),
        timestamp=when,
        subject=subject,
        subscribe_url=_field(payload, "SubscribeURL") if confirmation else None,
        signature_version=version,
        signature=signature,
        signing_cert_url=_field(payload, "SigningCertURL"),
        payload=payload,
    )


def _field(payload: Mapping[str, Any], name: str, *, empty: bool = False) -> str:
    value = payload.get(name)
    if not isinstance(value, str) or not (value or empty):
        raise Reject(400, f"the SNS message has no {name} (a string)")
    return value


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_fresh(envelope: Envelope, now: datetime) -> None:
    """Refuse an envelope stamped longer ago than SNS retries, or in the future.

    :raises Reject: 401
    """
    age = (now - envelope.timestamp).total_seconds()
    if age > MAX_AGE + CLOCK_SKEW:
        raise Reject(401, "the SNS message is too old (SNS retries for an hour at most)")
    if age < -CLOCK_SKEW:
        raise Reject(401, "the SNS message's Timestamp is in the future")


def check_aws_url(url: str, what: str) -> None:
    """Refuse a URL that is not ``https://sns.<region>.amazonaws.com[.cn]/...``.

    :param url: the URL
    :param what: what it is, for the reason
    :raises Reject: 401
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise Reject(401, f"the {what} is not a valid URL") from None
    host = parts.hostname or ""
    if (
        parts.scheme != "https"
        or parts.netloc != host
        or port is not None
        or _AWS_HOST.fullmatch(host) is None
    ):
        raise Reject(
            401,
            f"the {what} {_short(url)} is not on an Amazon SNS host "
            "(https://sns.<region>.amazonaws.com/...)",
        )


def check_certificate_url(url: str) -> None:
    """Refuse a ``SigningCertURL`` that is not a ``.pem`` on an Amazon SNS host.

    :raises Reject: 401
    """
    check_aws_url(url, "SigningCertURL")
    parts = urlsplit(url)
    if not parts.path.endswith(".pem") or parts.query or parts.fragment:
        raise Reject(401, f"the SigningCertURL {_short(url)} is not a .pem certificate")


def check_subscribe_url(url: str, topic_arn: str) -> None:
    """Refuse a ``SubscribeURL`` that does not confirm a subscription to *topic_arn* at SNS.

    :raises Reject: 401 for another host, 400 for another action or topic
    """
    check_aws_url(url, "SubscribeURL")
    query = parse_qs(urlsplit(url).query)
    if query.get("Action") != ["ConfirmSubscription"] or query.get("TopicArn") != [topic_arn]:
        raise Reject(400, "the SubscribeURL does not confirm a subscription to the message's topic")


class Certificates:
    """The public keys of SNS's signing certificates, fetched once each and kept.

    At most :data:`CERTIFICATE_CACHE` are kept, the least recently used forgotten first.

    :param fetch: how certificates are fetched
    """

    def __init__(self, fetch: Fetch) -> None:
        self.fetch = fetch
        self.fetched = 0
        self._keys: OrderedDict[str, RSAPublicKey] = OrderedDict()

    async def key(self, url: str) -> RSAPublicKey:
        """Return the RSA public key of the certificate at *url* (checked already).

        :raises Reject: 503 when it cannot be fetched, 401 when it is no RSA certificate
        """
        keys = self._keys
        key = keys.get(url)
        if key is not None:
            keys.move_to_end(url)
            return key
        try:
            pem = await self.fetch(url)
        except Exception as exc:
            raise Reject(
                503, f"the SNS signing certificate cannot be fetched now ({type(exc).__name__})"
            ) from None
        self.fetched += 1
        key = _public_key(pem)
        keys[url] = key
        while len(keys) > CERTIFICATE_CACHE:
            keys.popitem(last=False)
        return key


def _public_key(pem: bytes) -> RSAPublicKey:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

    try:
        certificate = x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise Reject(401, "the SNS signing certificate is not a PEM X.509 certificate") from None
    key = certificate.public_key()
    if not isinstance(key, RSAPublicKey):
        raise Reject(401, "the SNS signing certificate does not hold an RSA key")
    return key


def verify(envelope: Envelope, key: RSAPublicKey) -> None:
    """Check the envelope's signature with the certificate's key.

    :raises Reject: 401 when it does not verify
    """
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    algorithm = hashes.SHA1() if envelope.signature_version == "1" else hashes.SHA256()
    try:
        key.verify(envelope.signature, envelope.signed_text(), padding.PKCS1v15(), algorithm)
    except InvalidSignature:
        raise Reject(401, "the SNS message's Signature does not verify") from None


def adapter_event(envelope: Envelope, subscription_arn: str | None) -> Event:
    """The CloudEvent of an SNS message, mapped as ``cloudevents/adapters/aws-sns.md`` says.

    ``id``: the message id; ``source``: the topic ARN for a subscription confirmation,
    the subscription ARN (the ``x-amz-sns-subscription-arn`` header) for the others;
    ``type``: ``"com.amazonaws.sns." + Type``; ``subject``: the notification's ``Subject``
    (omitted for confirmations); ``time``: ``Timestamp``; ``datacontenttype``:
    ``application/json``; ``data``: the HTTP payload.

    :raises Reject: 400 without the subscription ARN where the source needs it
    """
    if envelope.type == SUBSCRIPTION_CONFIRMATION:
        source = envelope.topic_arn
    elif subscription_arn:
        source = subscription_arn
    else:
        raise Reject(400, "the x-amz-sns-subscription-arn header is missing")
    try:
        return Event(
            type=SNS_TYPE_PREFIX + envelope.type,
            source=source,
            id=envelope.message_id,
            subject=envelope.subject if envelope.type == NOTIFICATION else None,
            time=envelope.timestamp,
            datacontenttype="application/json",
            data=envelope.payload,
        )
    except InvalidEventError as exc:
        raise Reject(400, str(exc)) from None


async def fetch_url(url: str) -> bytes:
    """GET *url* with the standard library, in a worker thread: the default :data:`Fetch`.

    Waits :data:`FETCH_TIMEOUT` seconds at most for the server, reads
    :data:`FETCH_LIMIT` bytes at most, and verifies the server's TLS certificate.

    :raises OSError: the request failed, the status was not 2xx, or the answer is too
        large
    """
    return await anyio.to_thread.run_sync(_get, url, abandon_on_cancel=True)


def _get(url: str) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "reactor"})
    try:
        answer = urllib.request.urlopen(request, timeout=FETCH_TIMEOUT)
    except urllib.error.HTTPError as exc:
        exc.close()  # it holds the connection
        raise OSError(f"{url} answered {exc.code} {exc.reason}") from None
    with answer:
        body: bytes = answer.read(FETCH_LIMIT + 1)
    if len(body) > FETCH_LIMIT:
        raise OSError(f"the answer from {url} is larger than {FETCH_LIMIT} bytes")
    return body
