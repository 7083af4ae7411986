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
the group ``reactor.queues`` whose name is its URL scheme, in lower case, and whose value
is its :class:`~reactor.abc.EventQueue` class, which has a ``from_url(url)`` class method
(see :func:`from_url` for what it must do). The schemes above are reactor's own: an entry
point cannot take them over.
"""

from __future__ import annotations

import importlib
import re
from importlib.metadata import entry_points
from typing import Final
from urllib.parse import urlsplit, urlunsplit

from reactor.abc import EventQueue, import_extra

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
#: The client library of each built-in queue that needs one: (module, extra). from_url()
#: imports it first, so that a missing extra is reported when the URL is read, however
#: late the queue itself imports it.
_CLIENTS: Final = {
    "redis": ("coredis", "redis"),
    "rediss": ("coredis", "redis"),
    "nats": ("nats", "nats"),
    "tls": ("nats", "nats"),
}
#: The entry point group of third-party queues.
ENTRY_POINT_GROUP: Final = "reactor.queues"
#: A URL's scheme, as RFC 3986 spells it, and the colon after it.
_SCHEME: Final = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")


def from_url(url: str) -> EventQueue:
    """Build the (unopened) queue that *url* names, by its scheme.

    ``memory://``, ``sqlite:///events.db``, ``redis://host:6379/0?stream=...&group=...``,
    ``nats://host:4222?stream=...&group=...``, or the scheme of a third-party queue
    (entry point group ``reactor.queues``). The scheme is matched in any case
    (``SQLITE://`` is ``sqlite://``); the rest of the URL is the queue's: each queue class
    documents its form in its ``from_url()``, which gets the URL as given.

    A queue class's ``from_url(url)`` returns the queue without opening it (no I/O);
    raises :exc:`ValueError` for a URL it cannot use, saying why (without repeating a
    password the URL holds); and imports its client library (through
    :func:`reactor.abc.import_extra`), so that a missing extra is reported here, before
    the app starts. (For reactor's own broker queues, this function imports the client
    first.)

    :param url: the URL
    :return: the queue, not opened yet (the app opens it when it starts)
    :raises TypeError: *url* is not a str, or the class found for the scheme is not a
        queue class (it has no ``from_url()``, or what that returned is not an
        :class:`~reactor.abc.EventQueue`)
    :raises ValueError: *url* has no scheme or one no queue serves, or the queue refuses
        it (the message says why); a password in *url* is shown as ``***``
    :raises ModuleNotFoundError: the queue's client library is not installed (the message
        names the command that installs it)
    """
    if not isinstance(url, str):
        raise TypeError(f"a queue URL must be a str, got {url!r}")
    match = _SCHEME.match(url)
    if match is None:
        raise ValueError(
            f"{_redacted(url)!r} is not a queue URL: it has no scheme; give one such as "
            "memory://, sqlite:///events.db (a file) or redis://host:6379/0?group=NAME"
        )
    scheme = match.group(1).lower()
    target = _BUILT_IN.get(scheme)
    if target is not None:
        if scheme in _CLIENTS:
            client, extra = _CLIENTS[scheme]
            import_extra(client, extra=extra)
        module_name, _, class_name = target.partition(":")
        queue_class = getattr(importlib.import_module(module_name), class_name)
    else:
        found = entry_points(group=ENTRY_POINT_GROUP, name=scheme)
        if not found:
            known = ", ".join(f"{name}://" for name in sorted({*_BUILT_IN, *_plugin_schemes()}))
            raise ValueError(
                f"{_redacted(url)!r}: no queue serves the scheme {scheme!r}; known: {known}"
            )
        queue_class = next(iter(found)).load()
    build = getattr(queue_class, "from_url", None)
    if not callable(build):
        raise TypeError(
            f"the queue of the scheme {scheme!r}, {queue_class!r}, has no from_url() class method"
        )
    queue = build(url)
    if not isinstance(queue, EventQueue):
        raise TypeError(f"{queue_class!r}.from_url() returned {queue!r}, not an EventQueue")
    return queue


def _plugin_schemes() -> set[str]:
    return {point.name for point in entry_points(group=ENTRY_POINT_GROUP)}


def _redacted(url: str) -> str:
    """*url* with its password, if any, replaced by ``***``, for error messages."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # a malformed authority (a bad port, an unclosed bracket)
        return url
    if not password:
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
