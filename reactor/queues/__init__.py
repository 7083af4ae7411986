"""Ingestion queues: import the one you need by module, or build one from a URL.

* :mod:`reactor.queues.memory`: :class:`~reactor.queues.memory.MemoryQueue`, the default:
  bounded, in memory, at-most-once across a crash (``memory://``)
* :mod:`reactor.queues.sqlite`: :class:`~reactor.queues.sqlite.SQLiteQueue`, durable in
  one SQLite file: at-least-once, with stored dead letters and replay (``sqlite://``)
* :mod:`reactor.queues.redis`: :class:`~reactor.queues.redis.RedisStreamsQueue`, shared by
  many processes through a Redis stream (``redis://``, ``rediss://``; extra ``redis``)
* :mod:`reactor.queues.nats`: :class:`~reactor.queues.nats.NatsJetStreamQueue`, shared by
  many processes through a NATS JetStream stream (``nats://``, ``tls://``; extra ``nats``)

:func:`from_url` builds any of them from a URL, as ``reactor run --queue URL`` and the
``REACTOR_QUEUE`` variable do. A third-party queue joins by declaring an entry point in
the group ``reactor.queues`` whose name is its URL scheme and whose value is its class,
which has a ``from_url(url)`` class method.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Final

from reactor.abc import EventQueue

__all__ = ["from_url"]

#: The built-in queues by URL scheme: "module:class", imported when used.
_BUILT_IN: Final = {
    "memory": "reactor.queues.memory:MemoryQueue",
    "sqlite": "reactor.queues.sqlite:SQLiteQueue",
    "redis": "reactor.queues.redis:RedisStreamsQueue",
    "rediss": "reactor.queues.redis:RedisStreamsQueue",
    "nats": "reactor.queues.nats:NatsJetStreamQueue",
    "tls": "reactor.queues.nats:NatsJetStreamQueue",
}
#: The entry point group of third-party queues.
ENTRY_POINT_GROUP: Final = "reactor.queues"


def from_url(url: str) -> EventQueue:
    """Build the (unopened) queue that *url* names, by its scheme.

    ``memory://``, ``sqlite:///events.db``, ``redis://host:6379/0?stream=...&group=...``,
    ``nats://host:4222?stream=...&group=...``, or the scheme of a third-party queue
    (entry point group ``reactor.queues``). Each queue class documents its URL's form in
    its ``from_url()``.

    :param url: the URL
    :return: the queue, not opened yet (the app opens it when it starts)
    :raises TypeError: *url* is not a str
    :raises ValueError: no known scheme, or a URL the queue refuses (the message says why)
    :raises ModuleNotFoundError: the queue's client library is not installed (the message
        names the extra that installs it)
    """
    if not isinstance(url, str):
        raise TypeError(f"a queue URL must be a str, got {url!r}")
    scheme, colon, _ = url.partition(":")
    scheme = scheme.lower()
    if not colon or not scheme:
        raise ValueError(f"{url!r} is not a queue URL: it has no scheme (sqlite:///events.db)")
    target = _BUILT_IN.get(scheme)
    if target is not None:
        module_name, _, class_name = target.partition(":")
        queue_class = getattr(importlib.import_module(module_name), class_name)
    else:
        found = entry_points(group=ENTRY_POINT_GROUP, name=scheme)
        if not found:
            known = ", ".join(
                f"{name}://"
                for name in sorted({*_BUILT_IN, *entry_points(group=ENTRY_POINT_GROUP).names})
            )
            raise ValueError(f"{url!r}: no queue for the scheme {scheme!r}; known: {known}")
        queue_class = next(iter(found)).load()
    queue = queue_class.from_url(url)
    if not isinstance(queue, EventQueue):
        raise TypeError(f"{queue_class!r}.from_url() returned {queue!r}, not an EventQueue")
    return queue
