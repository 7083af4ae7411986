"""What the queues shared through a broker (Redis Streams, NATS JetStream) have in common:
their settings, their checks and the query parameters of their URLs.

Both queues take the same options with the same meaning, so that an app moves from one
broker to the other by changing its URL; this module is the one place they are defined.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import attrs

from reactor import validators

__all__ = [
    "DEFAULT_CAPACITY",
    "DEFAULT_CLAIM_AFTER",
    "DEFAULT_DEDUPE_WINDOW",
    "DEFAULT_MAX_EVENT_SIZE",
    "DEFAULT_MAX_REDELIVERIES",
    "DEFAULT_PUBLISH_TIMEOUT",
    "URL_OPTIONS",
    "BrokerOptions",
    "default_consumer",
    "split_url",
]

#: The default backpressure bound: events of the group's backlog before ``put()`` waits.
DEFAULT_CAPACITY: Final = 10_000
#: Seconds an event may stay unacknowledged before another process may take it over.
DEFAULT_CLAIM_AFTER: Final = 30.0
#: As :data:`reactor.queues.sqlite.DEFAULT_MAX_REDELIVERIES`.
DEFAULT_MAX_REDELIVERIES: Final = 5
#: Seconds during which a second publish of the same (source, id) is dropped.
DEFAULT_DEDUPE_WINDOW: Final = 120.0
#: As :data:`reactor.queues.sqlite.DEFAULT_MAX_EVENT_SIZE`: 1 MiB.
DEFAULT_MAX_EVENT_SIZE: Final = 1 << 20
#: Seconds a publish waits for a lost connection to come back.
DEFAULT_PUBLISH_TIMEOUT: Final = 10.0

#: The options a URL may carry as query parameters (all but the URL itself).
URL_OPTIONS: Final = (
    "stream",
    "group",
    "consumer",
    "capacity",
    "claim_after",
    "max_redeliveries",
    "dedupe_window",
    "retention",
    "max_event_size",
    "batch_size",
    "publish_timeout",
)
_INTEGERS: Final = frozenset({"capacity", "max_redeliveries", "max_event_size", "batch_size"})
_SECONDS: Final = frozenset({"claim_after", "dedupe_window", "retention", "publish_timeout"})
_NULLABLE: Final = frozenset({"max_redeliveries", "dedupe_window", "retention"})


def default_consumer() -> str:
    """This process's default name in its group: host name, pid and a short random suffix
    (letters, digits, ``_`` and ``-`` only, so that it is a valid name on every broker)."""
    host = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname()) or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"


def _seconds(what: str, value: float | timedelta, *, positive: bool = False) -> float:
    if isinstance(value, timedelta):
        value = value.total_seconds()
    return validators.seconds(what, value, positive=positive)


@attrs.frozen(kw_only=True)
class BrokerOptions:
    """A broker queue's settings, checked and normalised (see the queue classes)."""

    url: str
    stream: str
    group: str
    consumer: str
    capacity: int
    claim_after: float
    max_redeliveries: int | None
    dedupe_window: float | None  # None: no dedupe
    retention: float | None
    max_event_size: int
    batch_size: int
    publish_timeout: float

    @classmethod
    def checked(
        cls,
        url: str,
        *,
        queue: str,
        schemes: tuple[str, ...],
        stream: str,
        group: str | None,
        consumer: str | None,
        capacity: int,
        claim_after: float | timedelta,
        max_redeliveries: int | None,
        dedupe_window: float | timedelta | None,
        retention: float | timedelta | None,
        max_event_size: int,
        batch_size: int,
        publish_timeout: float | timedelta,
        check_name: Callable[[str, object], object] = validators.name,
    ) -> BrokerOptions:
        """Check the arguments of a broker queue.

        :param queue: the queue class's name, for messages
        :param schemes: the URL schemes the queue's server takes
        :param check_name: checks the stream and group names (the broker's rules)
        :raises TypeError: an argument of the wrong type
        :raises ValueError: an argument out of its range, or no *group*
        """
        validators.name("url", url)
        scheme = url.partition(":")[0].lower()
        if scheme not in schemes:
            expected = ", ".join(f"{name}://" for name in schemes)
            raise ValueError(f"{queue} needs a URL of {expected}, got {url!r}")
        if group is None:
            raise ValueError(
                f"{queue} needs group=: the name of the app (its consumer group). Every app "
                "that reads the stream has its own group and sees every event; the "
                "processes of one app share its group and split its events (in a URL: "
                "?group=billing)"
            )
        check_name("stream", stream)
        check_name("group", group)
        consumer = default_consumer() if consumer is None else validators.name("consumer", consumer)
        validators.integer("capacity", capacity, minimum=1)
        if max_redeliveries is not None:
            validators.integer("max_redeliveries (or None)", max_redeliveries, minimum=0)
        window = None if dedupe_window is None else _seconds("dedupe_window", dedupe_window)
        kept = None if retention is None else _seconds("retention", retention, positive=True)
        validators.integer("max_event_size", max_event_size, minimum=1)
        validators.integer("batch_size", batch_size, minimum=1)
        return cls(
            url=url,
            stream=stream,
            group=group,
            consumer=consumer,
            capacity=capacity,
            claim_after=_seconds("claim_after", claim_after, positive=True),
            max_redeliveries=max_redeliveries,
            dedupe_window=window or None,
            retention=kept,
            max_event_size=max_event_size,
            batch_size=batch_size,
            publish_timeout=_seconds("publish_timeout", publish_timeout, positive=True),
        )


def split_url(url: str) -> tuple[str, dict[str, Any]]:
    """Split a queue URL into the server's URL and the queue's options.

    ``redis://host:6379/0?stream=orders&group=billing&claim_after=30`` gives
    ``("redis://host:6379/0", {"stream": "orders", "group": "billing", "claim_after":
    30.0})``. Numbers are parsed; ``none`` (or an empty value) means ``None`` for
    ``max_redeliveries``, ``retention`` and ``dedupe_window``.

    :raises TypeError: *url* is not a str
    :raises ValueError: an unknown parameter (the message names the known ones), a
        parameter given twice, or a value that is not a number where one is expected
    """
    if not isinstance(url, str):
        raise TypeError(f"a queue URL must be a str, got {url!r}")
    parts = urlsplit(url)
    options: dict[str, Any] = {}
    for key, text in parse_qsl(parts.query, keep_blank_values=True):
        if key not in URL_OPTIONS:
            raise ValueError(
                f"{url!r}: unknown parameter {key!r}; the known ones: {', '.join(URL_OPTIONS)}"
            )
        if key in options:
            raise ValueError(f"{url!r}: the parameter {key!r} is given twice")
        options[key] = _parse(url, key, text)
    return urlunsplit(parts._replace(query="", fragment="")), options


def _parse(url: str, key: str, text: str) -> Any:
    if key in _NULLABLE and text.strip().lower() in ("", "none", "null"):
        return None
    if key not in _INTEGERS and key not in _SECONDS:
        return text
    try:
        return int(text) if key in _INTEGERS else float(text)
    except ValueError:
        kind = "an integer" if key in _INTEGERS else "a number of seconds"
        raise ValueError(f"{url!r}: {key} must be {kind}, got {text!r}") from None
