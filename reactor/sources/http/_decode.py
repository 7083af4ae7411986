"""Request bodies into events: the CloudEvents HTTP binding and webhooks' JSON bodies.

Each function raises :class:`~._asgi.Reject` with the answer a request that cannot be
decoded gets: 415 for a content type the endpoint does not take, 400 for a malformed
body or event.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

import attrs

from reactor import Event, EventFormatError, InvalidEventError
from reactor.abc import load_json

from ._asgi import Reject, reason
from ._webhooks import Webhook

_STRUCTURED = b"application/cloudevents+json"
_BATCH = b"application/cloudevents-batch+json"
_FORM = b"application/x-www-form-urlencoded"


def media_type(content_type: bytes | None) -> bytes:
    """The media type of a ``Content-Type`` header, lower case, without parameters."""
    if content_type is None:
        return b""
    return content_type.split(b";", 1)[0].strip().lower()


def cloudevents(
    headers: Sequence[tuple[bytes, bytes]], media_type: bytes, binary: bool, body: bytes
) -> list[Event]:
    """Decode the CloudEvents of a request in binary, structured or batched mode.

    :param headers: the request's ``ce-*`` and ``content-type`` headers
    :param media_type: the request's media type (:func:`media_type`)
    :param binary: whether the request has a ``ce-specversion`` header
    """
    # The content type decides between the modes (HTTP binding 3.1): structured and
    # batched first, then binary mode, recognised by its ce-specversion header.
    if media_type.startswith(b"application/cloudevents"):
        if media_type not in (_STRUCTURED, _BATCH):
            raise Reject(
                415,
                f"unsupported CloudEvents format {media_type.decode('latin-1')!r}; "
                "send application/cloudevents+json or application/cloudevents-batch+json",
            )
    elif not binary:
        raise Reject(
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
        raise Reject(400, reason(exc)) from None


def webhook_event(
    route: Webhook,
    msg_id: bytes | None,
    media_type: bytes,
    body: bytes,
    now: datetime,
    subject: bytes | None = None,
) -> Event:
    """The event of a webhook request: its JSON body as ``data``.

    :param msg_id: the sender's delivery id (default: a new one)
    :param now: the event's ``time``
    :param subject: the event's ``subject``, if the sender names one
    """
    if route.scheme == "github" and media_type == _FORM:
        # GitHub's other content type: the JSON payload in a form field named payload
        # (the signature covers the form body, checked before this).
        body = _github_form_payload(body)
    elif media_type and not _is_json(media_type):
        raise Reject(
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
        raise Reject(400, reason(exc)) from None


def stripe_event(event: Event) -> Event:
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
        raise Reject(400, reason(exc)) from None


def _is_json(media_type: bytes) -> bool:
    subtype = media_type.partition(b"/")[2]
    return subtype == b"json" or subtype.endswith(b"+json")


def _github_form_payload(body: bytes) -> bytes:
    try:
        fields = parse_qs(
            body.decode("ascii"), strict_parsing=True, max_num_fields=8, errors="strict"
        )
    except (UnicodeDecodeError, ValueError):
        raise Reject(400, "the form body is not valid application/x-www-form-urlencoded") from None
    payload = fields.get("payload")
    if payload is None or len(payload) != 1:
        raise Reject(400, "a form-encoded GitHub webhook has one field named payload")
    return payload[0].encode("utf-8")


def _parse_json(body: bytes) -> Any:
    if not body:
        raise Reject(400, "the body is empty; a webhook takes a JSON body")
    try:
        # The event codec's reader: it refuses what no queue could store either (lone
        # surrogates, numbers out of range), so every queue takes the same bodies.
        return load_json(body)
    except EventFormatError as exc:
        raise Reject(400, str(exc)) from None
