"""The package's logger, and what a failure to use the file is: a file that cannot be
written right now (:class:`~reactor.QueueUnavailableError`, it may pass) or anything else
(:class:`~reactor.QueueFileError`)."""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
from pathlib import Path
from typing import Final

from reactor import QueueFileError, QueueUnavailableError

__all__ = ["logger", "storage_error", "unavailable_cause"]

#: The one logger of the SQLite queue, whichever of its modules logs.
logger: Final = logging.getLogger("reactor.queues.sqlite")

#: Free bytes below which a failed write is reported as a full disk.
FULL_DISK_BYTES: Final = 1 << 20

#: SQLite's primary result codes that mean "cannot write right now", not a damaged file:
#: full disk (FULL, and IOERR for the files SQLite creates beside the database), another
#: connection's lock (BUSY, LOCKED), a file or directory that cannot be written.
_UNAVAILABLE_CODES: Final = frozenset(
    {
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_CANTOPEN,
    }
)


def storage_error(
    path: Path, exc: BaseException, *, opening: bool = False
) -> QueueFileError | QueueUnavailableError:
    """Describe a failure to use *path*: what cannot be written right now (a full disk,
    a read-only file, another connection's lock) is :class:`~reactor.QueueUnavailableError`,
    anything else :class:`~reactor.QueueFileError`, either way with the real cause."""
    error: QueueFileError | QueueUnavailableError
    why = unavailable_cause(path, exc)
    if why is None:
        error = QueueFileError(f"could not use {path}: {exc}")
    elif opening:
        error = QueueUnavailableError(
            f"cannot open {path} right now: {why} ({exc}); the file was left as it is "
            "and can be opened once this is resolved"
        )
    else:
        error = QueueUnavailableError(
            f"cannot write {path} right now: {why} ({exc}); nothing of this write was "
            "stored, and the queue tries again"
        )
    error.__cause__ = exc
    return error


def unavailable_cause(path: Path, exc: BaseException) -> str | None:
    """Say why *exc* means the file cannot be written right now, or return ``None``."""
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        if not isinstance(code, int) or code & 0xFF not in _UNAVAILABLE_CODES:
            return None
        code &= 0xFF
    elif isinstance(exc, OSError):
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return "the disk is full"
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            code = sqlite3.SQLITE_READONLY
        elif exc.errno == errno.EIO:
            code = sqlite3.SQLITE_IOERR
        else:
            return None
    else:
        return None
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return "another connection holds its write lock"
    # SQLite reports a full disk as FULL when the log cannot grow, but as an I/O error
    # when the files beside the database cannot be created or sized: ask the disk.
    try:
        stat = os.statvfs(path.parent)
    except (OSError, AttributeError):  # AttributeError: no statvfs on Windows
        free = None
    else:
        free = stat.f_bavail * stat.f_frsize
    if code == sqlite3.SQLITE_FULL or (free is not None and free < FULL_DISK_BYTES):
        return "the disk is full" if free is None else f"the disk is full ({free} bytes free)"
    if code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN):
        return "the file or its directory cannot be written"
    return "the disk reported an I/O error"
