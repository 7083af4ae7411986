"""The settings of a :class:`SQLiteQueue`, and the checks of its methods' arguments."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from urllib.parse import unquote, urlsplit

import attrs

from reactor import validators

from ._schema import Check, Synchronous

__all__ = ["Options", "path_from_url", "timestamp"]


@attrs.frozen(kw_only=True)
class Options:
    """A queue's settings, checked and normalised (see :class:`SQLiteQueue` for each)."""

    path: Path
    synchronous: Synchronous
    capacity: int
    max_event_size: int
    retention: float | None  # seconds
    check: Check
    busy_timeout: float
    max_redeliveries: int | None

    @classmethod
    def checked(
        cls,
        path: str | os.PathLike[str],
        *,
        synchronous: Synchronous,
        capacity: int,
        max_event_size: int,
        retention: float | timedelta | None,
        check: Check,
        busy_timeout: float,
        max_redeliveries: int | None,
    ) -> Options:
        """Check the arguments of :class:`SQLiteQueue`.

        :raises TypeError: *path* is not a file path, or another argument is of the
            wrong type
        :raises ValueError: another argument is out of its range
        """
        if not isinstance(path, str | os.PathLike) or not os.fspath(path):
            raise TypeError(f"path must be a file path, got {path!r}")
        validators.one_of("synchronous", synchronous, ("full", "normal"))
        validators.integer("capacity", capacity, minimum=1)
        validators.integer("max_event_size", max_event_size, minimum=1)
        if isinstance(retention, timedelta):
            retention = retention.total_seconds()
        if retention is not None:
            retention = validators.seconds("retention", retention)
        validators.one_of("check", check, ("quick", "full", "none"))
        validators.seconds("busy_timeout", busy_timeout)
        if max_redeliveries is not None:
            validators.integer("max_redeliveries (or None)", max_redeliveries, minimum=0)
        return cls(
            path=Path(path),
            synchronous=synchronous,
            capacity=capacity,
            max_event_size=max_event_size,
            retention=None if retention is None else float(retention),
            check=check,
            busy_timeout=float(busy_timeout),
            max_redeliveries=max_redeliveries,
        )


def path_from_url(url: str) -> str:
    """The file path of a URL: ``sqlite:///events.db`` (relative to the current
    directory) or ``sqlite:////var/lib/app/events.db`` (absolute).

    :raises ValueError: not a ``sqlite://`` URL with a path
    """
    parts = urlsplit(url)
    if (
        parts.scheme != "sqlite"
        or parts.netloc
        or not parts.path.startswith("/")
        or parts.query
        or parts.fragment
    ):
        raise ValueError(
            f"expected a URL like sqlite:///events.db or sqlite:////abs/path.db, got {url!r}"
        )
    path = unquote(parts.path[1:])
    if not path:
        raise ValueError(f"the URL {url!r} names no file")
    return path


def timestamp(name: str, value: object) -> float:
    """The POSIX time of an aware datetime.

    :raises TypeError: not a datetime
    :raises ValueError: a naive one
    """
    return validators.aware_datetime(name, value).timestamp()
