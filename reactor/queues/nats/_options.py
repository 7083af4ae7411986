"""The settings of a :class:`NatsJetStreamQueue`: those of every broker queue
(:mod:`reactor.queues._broker`), NATS's own defaults, and its rule for names."""

from __future__ import annotations

import re
from typing import Final

from reactor import validators

from .._broker import DEFAULT_CAPACITY as DEFAULT_CAPACITY
from .._broker import DEFAULT_CLAIM_AFTER as DEFAULT_CLAIM_AFTER
from .._broker import DEFAULT_DEDUPE_WINDOW as DEFAULT_DEDUPE_WINDOW
from .._broker import DEFAULT_MAX_EVENT_SIZE as DEFAULT_MAX_EVENT_SIZE
from .._broker import DEFAULT_MAX_REDELIVERIES as DEFAULT_MAX_REDELIVERIES
from .._broker import DEFAULT_PUBLISH_TIMEOUT as DEFAULT_PUBLISH_TIMEOUT
from .._broker import BrokerOptions as Options
from .._broker import default_consumer as default_consumer
from .._broker import split_url as split_url

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_CAPACITY",
    "DEFAULT_CLAIM_AFTER",
    "DEFAULT_DEDUPE_WINDOW",
    "DEFAULT_MAX_EVENT_SIZE",
    "DEFAULT_MAX_REDELIVERIES",
    "DEFAULT_PUBLISH_TIMEOUT",
    "DEFAULT_URL",
    "SCHEMES",
    "Options",
    "check_name",
    "default_consumer",
    "split_url",
]

#: The server a queue connects to by default.
DEFAULT_URL: Final = "nats://127.0.0.1:4222"
#: How many messages one pull request asks for (the read-ahead is twice this).
DEFAULT_BATCH_SIZE: Final = 512
#: The URL schemes of a NATS server.
SCHEMES: Final = ("nats", "tls")

# Stream, durable consumer and bucket names become subject tokens and names of streams:
# no dots, wildcards, spaces or slashes.
_NAME: Final = re.compile(r"[A-Za-z0-9_-]+")


def check_name(what: str, value: object) -> str:
    """Check a stream or group name: it names JetStream streams, consumers and subjects."""
    validators.name(what, value)
    assert isinstance(value, str)
    if not _NAME.fullmatch(value):
        raise ValueError(
            f"{what} must be made of letters, digits, '_' and '-' only (it names JetStream "
            f"streams, consumers and subjects), got {value!r}"
        )
    return value
