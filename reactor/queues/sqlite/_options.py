"""The settings of a :class:`SQLiteQueue`, and the checks of its methods' arguments."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import unquote, urlsplit

import attrs

from ._schema import Check, Synchronous

__all__ = ["Options", "check_positive_int", "path_from_url", "timestamp"]


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

        :raises TypeError: *path* is not a file path
        :raises ValueError: another argument is out of its range
        """
        if not isinstance(path, str | os.PathLike) or not os.fspath(path):
            raise TypeError(f"path must be a file path, got {path!r}")
        if synchronous not in ("full", "normal"):
            raise ValueError(f"synchronous must be 'full' or 'normal', got {synchronous!r}")
        check_positive_int("capacity", capacity)
        check_positive_int("max_event_size", max_event_size)
        if isinstance(retention, timedelta):
            retention = retention.total_seconds()
        if retention is not None and (
            not isinstance(retention, int | float) or isinstance(retention, bool) or retention < 0
        ):
            raise ValueError(
                f"retention must be seconds >= 0, a timedelta or None, got {retention!r}"
            )
        if check not in ("quick", "full", "none"):
            raise ValueError(f"check must be 'quick', 'full' or 'none', got {check!r}")
        if (
            not isinstance(busy_timeout, int | float)
            or isinstance(busy_timeout, bool)
            or busy_timeout < 0
        ):
            raise ValueError(f"busy_timeout must be seconds >= 0, got {busy_timeout!r}")
        if max_redeliveries is not None and (
            not isinstance(max_redeliveries, int)
            or isinstance(max_redeliveries, bool)
            or max_redeliveries < 0
        ):
            raise ValueError(
                f"max_redeliveries must be an int >= 0 or None, got {max_redeliveries!r}"
            )
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


def check_positive_int(name: str, value: object) -> None:
    """:raises ValueError: *value* is not an int >= 1"""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")


def timestamp(name: str, value: object) -> float:
    """The POSIX time of an aware datetime.

    :raises TypeError: not a datetime
    :raises ValueError: a naive one
    """
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime (with a time zone), got {value!r}")
    return value.timestamp()
