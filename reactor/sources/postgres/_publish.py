"""Publishing a batch of events into the app: all at once when it fits, else one by one."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from urllib.parse import quote

from reactor import Event, Handler, PayloadTooLargeError, QueueFull, validators
from reactor.abc import App, default_name

__all__ = ["publish_all", "source_name", "source_uri"]

logger = logging.getLogger("reactor.sources.postgres")

_URI_PREFIX = "/reactor/postgres/"


def source_uri(name: str) -> str:
    """The CloudEvents ``source`` of the events of the PostgreSQL source named *name*."""
    return _URI_PREFIX + quote(name, safe="")


def source_name(source: str | Handler) -> str:
    """The name of a source given as itself or as the handler it was made for (by default
    a decorated handler's source is named after it), for the test helpers.

    :raises TypeError: neither a str nor a callable
    :raises ValueError: an empty name
    """
    if isinstance(source, str):
        return validators.name("source", source)
    if callable(source):
        return default_name(source)
    raise TypeError(f"source must be a source name or a handler, got {source!r}")


async def publish_all(
    app: App,
    events: Sequence[Event],
    oversized: Callable[[Event, PayloadTooLargeError], Event | None],
) -> int:
    """Publish *events* in order; return how many were over the queue's size limit.

    The batch goes in one ``publish_many()`` (one transaction on a durable queue) when the
    queue has room for it; otherwise the events are published one at a time, each waiting
    for room. An event the queue refuses as too large is replaced by ``oversized(event,
    error)`` (a smaller event that says what happened), or dropped when that returns
    ``None`` or is too large as well; either way the source goes on.

    :return: the number of events that were too large
    """
    if len(events) > 1:
        try:
            await app.publish_many(events)
        except (QueueFull, PayloadTooLargeError):
            pass  # no room for all at once, or one is too large: one by one, below
        else:
            return 0
    too_large = 0
    for event in events:
        try:
            await app.publish(event)
        except PayloadTooLargeError as exc:
            too_large += 1
            substitute = oversized(event, exc)
            if substitute is None:
                continue
            try:
                await app.publish(substitute)
            except PayloadTooLargeError:
                logger.error(
                    "event %s of %s is over the queue's limit of %d bytes even without its "
                    "data; dropped",
                    event.id,
                    event.source,
                    exc.limit,
                )
    return too_large
