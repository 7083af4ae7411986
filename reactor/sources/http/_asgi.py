"""ASGI plumbing: the scope's path, reading a bounded body, JSON answers, the lifespan.

The ASGI types are spelled out here so that no ASGI package is needed. Nothing here
knows about events beyond their ids, or about webhooks.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from contextlib import AbstractAsyncContextManager
from json.encoder import encode_basestring_ascii as quote
from typing import Any, TypeAlias

from reactor import Event
from reactor.abc import App

logger = logging.getLogger("reactor.sources.http")

#: ASGI types, spelled out so that no ASGI package is needed.
Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]

Answer: TypeAlias = tuple[Message, Message]
"""The two messages of an answer: ``http.response.start`` and ``http.response.body``."""

_DIGITS = re.compile(rb"[0-9]{1,19}")


class Reject(Exception):
    """Answer the request with an error status and a reason: ``{"error": reason}``.

    The ingress raises it for every request it refuses; a :class:`Receiver` raises it to
    refuse one.

    :param status: the HTTP status (4xx or 5xx)
    :param reason: why, for the sender; keep secrets and internal details out of it
    :param headers: extra headers, as ``(name, value)`` byte pairs (``WWW-Authenticate``,
        ``Retry-After``)
    """

    def __init__(
        self, status: int, reason: str, headers: Sequence[tuple[bytes, bytes]] = ()
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers

    def answer(self) -> Answer:
        """The JSON answer ``{"error": reason}``."""
        return json_response(self.status, f'{{"error":{quote(self.reason)}}}', self.headers)


class Disconnected(Exception):
    """The client went away before sending the whole body."""


def reason(exc: BaseException) -> str:
    """The message of *exc* with its notes, for an answer's reason."""
    notes = getattr(exc, "__notes__", ())
    return "; ".join([str(exc), *notes])


def route_path(scope: Scope) -> str:
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


async def read_body(receive: Receive, content_length: bytes | None, limit: int) -> bytes:
    """Read a request's body, no more than *limit* bytes of it.

    :raises Reject: 400 for a malformed ``Content-Length``, 413 for a body over *limit*
        (reading stops there: the server discards the rest or closes the connection)
    :raises Disconnected: the client went away
    """
    if content_length is not None:
        if _DIGITS.fullmatch(content_length.strip()) is None:
            raise Reject(400, "Content-Length must be a decimal number of bytes")
        if int(content_length) > limit:
            raise _too_large(limit)
    message = await receive()
    if message["type"] != "http.request":
        raise Disconnected
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        if len(body) > limit:
            raise _too_large(limit)
        return body
    chunks = [body]
    size = len(body)
    while True:
        if size > limit:
            raise _too_large(limit)
        message = await receive()
        if message["type"] != "http.request":
            raise Disconnected
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            break
    if size > limit:
        raise _too_large(limit)
    return b"".join(chunks)


def _too_large(limit: int) -> Reject:
    return Reject(413, f"the body is larger than {limit} bytes")


def json_response(status: int, text: str, extra: Sequence[tuple[bytes, bytes]] = ()) -> Answer:
    """An answer with the JSON *text* (ASCII) as its body and *extra* headers."""
    body = text.encode("ascii")
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    if extra:
        headers += extra
    return (
        {"type": "http.response.start", "status": status, "headers": headers},
        {"type": "http.response.body", "body": body},
    )


def accepted(events: Sequence[Event], *, duplicate: bool = False) -> Answer:
    """The answer to a request whose events are in the queue: 202 ``{"ids": [...]}``.

    :param duplicate: the request repeats one accepted already: 200, with
        ``"duplicate": true``
    """
    # Built by hand: json.dumps() costs more than the rest of the answer on the hot path.
    ids = ",".join([quote(event.id) for event in events])
    if duplicate:
        return json_response(200, f'{{"ids":[{ids}],"duplicate":true}}')
    return json_response(202, '{"ids":[' + ids + "]}")


async def lifespan(app: App, receive: Receive, send: Send) -> None:
    """Answer a server's lifespan events: start the app on startup, stop it on shutdown.

    An app that runs already (started by a host application or a test) is left alone.
    """
    await receive()  # lifespan.startup
    if app.running:
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.complete"})
        return
    if not isinstance(app, AbstractAsyncContextManager):
        # reactor.abc.App does not promise that an app starts with ``async with``.
        message = f"the ingress cannot start {app!r} (not an async context manager)"
        await send({"type": "lifespan.startup.failed", "message": message})
        return
    started = False
    try:
        async with app:
            await send({"type": "lifespan.startup.complete"})
            started = True
            await receive()  # lifespan.shutdown
    except Exception as exc:
        logger.exception(
            "the app failed to %s", "stop" if started else "start", extra={"source": "http"}
        )
        kind = "lifespan.shutdown.failed" if started else "lifespan.startup.failed"
        await send({"type": kind, "message": _describe(exc)})
        return
    await send({"type": "lifespan.shutdown.complete"})


def _describe(exc: BaseException) -> str:
    """Name the errors inside *exc*, looking into exception groups (task groups raise them)."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(inner) for inner in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"
