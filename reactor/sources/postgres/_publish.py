"""The CloudEvents source of the PostgreSQL sources' events, and its name."""

from __future__ import annotations

import logging
from urllib.parse import quote

from reactor import Handler, validators
from reactor.abc import default_name

__all__ = ["source_name", "source_uri"]

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
