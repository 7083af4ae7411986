"""The settings of a :class:`NatsJetStreamQueue`, their checks, and the queue's URL."""

from __future__ import annotations

import os
import re
import secrets
import socket
from datetime import timedelta
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import attrs

from reactor import validators

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_CAPACITY",
    "DEFAULT_MAX_EVENT_SIZE",
    "DEFAULT_MAX_REDELIVERIES",
    "DEFAULT_URL",
    "Options",
    "default_consumer",
    "split_url",
]

#: The server a queue connects to by default.
DEFAULT_URL: Final = "nats://127.0.0.1:4222"
#: How many events of the group's backlog may wait before ``publish()`` waits.
DEFAULT_CAPACITY: Final = 10_000
#: The largest encoded event (CloudEvents JSON) accepted by default: 1 MiB (as SQLite's).
DEFAULT_MAX_EVENT_SIZE: Final = 1 << 20
#: How many times an unsettled event is handed out again by default before it is
#: dead-lettered instead of handled (as :class:`~reactor.queues.sqlite.SQLiteQueue`).
DEFAULT_MAX_REDELIVERIES: Final = 5
#: How many messages one pull request asks for (the read-ahead is twice this).
DEFAULT_BATCH_SIZE: Final = 512

# Stream, durable consumer and bucket names become subject tokens and names of streams:
# no dots, wildcards, spaces or slashes.
_NAME: Final = re.compile(r"[A-Za-z0-9_-]+")
# Every query parameter of the URL, with how to read its text.
_PARAMETERS: Final = (
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
_INTEGERS: Final = {"capacity", "max_event_size", "batch_size", "max_redeliveries"}
_SECONDS: Final = {"claim_after", "dedupe_window", "retention", "publish_timeout"}
_NULLABLE: Final = {"max_redeliveries", "dedupe_window", "retention"}


def default_consumer() -> str:
    """This process's default name in its group: host name, pid and a short random suffix."""
    host = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname()) or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"


def _stream_name(what: str, value: object) -> str:
    validators.name(what, value)
    assert isinstance(value, str)
    if not _NAME.fullmatch(value):
        raise ValueError(
            f"{what} must be made of letters, digits, '_' and '-' only (it names JetStream "
            f"streams, consumers and subjects), got {value!r}"
        )
    return value


def _optional_seconds(what: str, value: float | timedelta | None) -> float | None:
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if value is None:
        return None
    return validators.seconds(what, value)


@attrs.frozen(kw_only=True)
class Options:
    """A queue's settings, checked and normalised (see :class:`NatsJetStreamQueue`)."""

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
    ) -> Options:
        """Check the arguments of :class:`NatsJetStreamQueue`.

        :raises TypeError: an argument of the wrong type
        :raises ValueError: an argument out of its range, or no *group*
        """
        validators.name("url", url)
        scheme = urlsplit(url).scheme.lower()
        if scheme not in ("nats", "tls"):
            raise ValueError(f"url must be a nats:// or tls:// URL, got {url!r}")
        if group is None:
            raise ValueError(
                "a NatsJetStreamQueue needs a group: the app's name (group='billing', or "
                "?group=billing in the URL). Every app reading the stream has its own group "
                "and sees every event; the processes of one app share its group and split "
                "its events"
            )
        _stream_name("stream", stream)
        _stream_name("group", group)
        if consumer is None:
            consumer = default_consumer()
        validators.name("consumer", consumer)
        validators.integer("capacity", capacity, minimum=1)
        claim = _optional_seconds("claim_after", claim_after)
        if claim is None or claim <= 0:
            raise ValueError(f"claim_after must be a number of seconds > 0, got {claim_after!r}")
        if max_redeliveries is not None:
            validators.integer("max_redeliveries (or None)", max_redeliveries, minimum=0)
        window = _optional_seconds("dedupe_window (or None)", dedupe_window)
        kept = _optional_seconds("retention (or None)", retention)
        if kept is not None and kept <= 0:
            raise ValueError(
                f"retention must be a number of seconds > 0 or None, got {retention!r}"
            )
        validators.integer("max_event_size", max_event_size, minimum=1)
        validators.integer("batch_size", batch_size, minimum=1)
        timeout = _optional_seconds("publish_timeout", publish_timeout)
        if timeout is None or timeout <= 0:
            raise ValueError(
                f"publish_timeout must be a number of seconds > 0, got {publish_timeout!r}"
            )
        return cls(
            url=url,
            stream=stream,
            group=group,
            consumer=consumer,
            capacity=capacity,
            claim_after=claim,
            max_redeliveries=max_redeliveries,
            dedupe_window=window or None,
            retention=kept,
            max_event_size=max_event_size,
            batch_size=batch_size,
            publish_timeout=timeout,
        )


def split_url(url: str) -> tuple[str, dict[str, Any]]:
    """The server URL (without the query) and the queue's options from the query of *url*.

    ``nats://host:4222?stream=orders&group=billing&claim_after=30``: integers and
    seconds are read as numbers; ``none`` (or an empty value) is ``None`` for
    ``max_redeliveries``, ``dedupe_window`` and ``retention``.

    :raises TypeError: *url* is not a str
    :raises ValueError: not a ``nats://``/``tls://`` URL, an unknown or repeated
        parameter, or a value that is not a number
    """
    if not isinstance(url, str):
        raise TypeError(f"url must be a str, got {url!r}")
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("nats", "tls") or not parts.netloc:
        raise ValueError(
            f"expected a URL like nats://127.0.0.1:4222?stream=orders&group=billing, got {url!r}"
        )
    options: dict[str, Any] = {}
    for key, text in parse_qsl(parts.query, keep_blank_values=True):
        if key not in _PARAMETERS:
            raise ValueError(
                f"{url!r}: unknown parameter {key!r}; the known ones: {', '.join(_PARAMETERS)}"
            )
        if key in options:
            raise ValueError(f"{url!r}: the parameter {key!r} is given twice")
        value: Any = text
        if key in _NULLABLE and text.lower() in ("", "none"):
            value = None
        elif key in _INTEGERS:
            try:
                value = int(text)
            except ValueError:
                raise ValueError(f"{url!r}: {key} must be an integer, got {text!r}") from None
        elif key in _SECONDS:
            try:
                value = float(text)
            except ValueError:
                raise ValueError(
                    f"{url!r}: {key} must be a number of seconds, got {text!r}"
                ) from None
        options[key] = value
    server = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    return server, options
