"""Receivers: routes of the ingress whose requests a plugin turns into events itself.

A webhook route turns any JSON body into one event of a fixed type; a receiver decodes
a sender's own format (S3 notifications, SNS envelopes, ...) into as many events as it
holds, checks the sender's credentials its own way, and answers what the sender expects.
The ingress still does everything around it: routing, refusing what is not a ``POST``,
answering 503 while the app is not running, reading a bounded body, publishing all or
nothing, replay protection, counting, and turning :class:`~._asgi.Reject` into an answer.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import attrs

from reactor import Event

from ._asgi import Answer, json_response


@attrs.frozen
class Once:
    """A delivery to publish once: its id, when it was sent, how long repeats are caught.

    Passed to :meth:`Request.publish`: a delivery whose id the ingress accepted already
    within the window is not published again (``publish`` returns ``False``), as signed
    webhooks are not; the window lasts *window* seconds from the later of *sent* and now.

    :ivar id: the sender's delivery id (unique per delivery, the same on its retries)
    :ivar sent: when the sender stamped it, as Unix seconds
    :ivar window: how long after that a repeat is refused, in seconds
    """

    id: str
    sent: float
    window: float


@attrs.frozen(kw_only=True)
class Request:
    """A ``POST`` request to a receiver's path, its body read whole.

    :ivar path: the path below the ingress (mount prefix and trailing slash removed)
    :ivar headers: the headers, names in lower case, values decoded as Latin-1; of a
        header sent several times, the last
    :ivar body: the body (at most the ingress's ``max_body`` bytes)
    """

    path: str
    headers: Mapping[str, str]
    body: bytes
    _publish: Callable[[Sequence[Event], Once | None], Awaitable[bool]] = attrs.field(
        alias="publish", repr=False
    )

    @property
    def media_type(self) -> str:
        """The ``Content-Type``'s media type, lower case, without parameters (``""`` if none)."""
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()

    async def publish(self, events: Sequence[Event], *, once: Once | None = None) -> bool:
        """Publish *events* into the app before the request is answered: all or nothing.

        Events are checked and stored as the ingress's own are: a batch the queue
        cannot take whole is refused whole.

        :param events: the events, published in this order (none: nothing to publish,
            but *once* is still recorded)
        :param once: publish them only if this delivery was not accepted already
        :raises Reject: the queue refused the events (413, 503, ...); let it propagate,
            the ingress answers it
        :return: ``False`` when *once* names a delivery accepted already (nothing was
            published), else ``True``
        """
        return await self._publish(events, once)


@attrs.frozen
class Reply:
    """The answer to a receiver's request: a status and a JSON object.

    :ivar status: the HTTP status
    :ivar body: the JSON object of the answer's body
    :ivar headers: extra headers, as ``(name, value)`` byte pairs
    """

    status: int
    body: Mapping[str, Any]
    headers: Sequence[tuple[bytes, bytes]] = ()

    @classmethod
    def accepted(cls, events: Sequence[Event], **members: Any) -> Reply:
        """The ingress's answer to published events: ``{"ids": [...]}``, 202 (200 if none).

        :param events: the events published
        :param members: more members of the JSON object
        """
        return cls(202 if events else 200, {"ids": [event.id for event in events], **members})

    def answer(self) -> Answer:
        """The ASGI messages of this reply."""
        text = json.dumps(self.body, ensure_ascii=True, separators=(",", ":"))
        return json_response(self.status, text, self.headers)


class Receiver(ABC):
    """A route of the ingress that decodes its requests itself (see the module docs).

    Give one to :meth:`HttpIngress.receiver <reactor.sources.http.HttpIngress.receiver>`.
    Raise :class:`~reactor.sources.http.Reject` to refuse a request: the ingress answers
    it with its status and ``{"error": reason}``, and counts it (401 as unauthorized,
    403 as forbidden, 503 as unavailable).
    """

    def check(self, headers: Mapping[str, str]) -> None:  # noqa: B027 - optional
        """Check a request's headers before its body is read (default: nothing).

        A credential carried in a header (a bearer token) is best checked here: a client
        that has none costs no body read.

        :param headers: the request's headers, as :attr:`Request.headers`
        :raises Reject: to refuse the request
        """

    @abstractmethod
    async def receive(self, request: Request) -> Reply:
        """Turn a request into events, publish them, and say what to answer.

        :param request: the request, with its body
        :raises Reject: to refuse the request
        :return: the answer
        """
