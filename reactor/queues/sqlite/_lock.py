"""One owner per queue file: an OS lock on a file beside it (``<name>-lock``)."""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import threading
from pathlib import Path
from typing import IO

from reactor import QueueFileError, QueueInUseError, QueueUnavailableError

__all__ = ["OwnerLock"]

# The files this process owns (by real path). Shared state that must stay: queues open
# and close in worker threads (one per queue, several queues may run), and two queues on
# one file in one process are refused here, since an OS lock is per process. So it is
# only read and changed under _held_lock.
_held: set[str] = set()
_held_lock = threading.Lock()


class OwnerLock:
    """The owner lock of a queue file: an OS lock on a file beside it (``<name>-lock``).

    The operating system releases it when the process dies, however it dies. Within one
    process a second queue on the same file is refused too.

    A clean close removes the lock file while still holding its lock, so a process that
    opened the old file meanwhile holds a lock on a file that no longer has the name: the
    taker checks, once it holds a lock, that the name still leads to the file it locked,
    and tries again if not. So two processes never both own the queue file.
    """

    def __init__(self, file: IO[str], key: str, lock_path: Path) -> None:
        self.file = file
        self.key = key
        self.lock_path = lock_path

    @classmethod
    def take(cls, path: Path) -> OwnerLock:
        """Take the lock of *path* or raise :class:`~reactor.QueueInUseError`."""
        key = os.path.realpath(path)
        lock_path = path.with_name(path.name + "-lock")
        with _held_lock:
            if key in _held:
                raise QueueInUseError(f"{path} is already open as a queue in this process")
            while True:
                try:
                    file = open(lock_path, "a+", encoding="utf-8")  # held until release()
                except OSError as exc:
                    raise _lock_file_error(lock_path, exc) from exc
                try:
                    _os_lock(file)
                except OSError:
                    file.seek(0)
                    holder = file.read().strip() or "unknown"
                    file.close()
                    raise QueueInUseError(
                        f"{path} is in use by another process ({holder}); one process at "
                        "a time owns a queue file"
                    ) from None
                if _names(lock_path, file):
                    break
                file.close()  # removed by its owner's close() meanwhile: take the new one
            _held.add(key)
        try:
            # Who holds it, for the error of the next taker; worth nothing to the lock
            # itself, so a full disk does not stop the queue from opening.
            fd = file.fileno()
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)
        except OSError:
            pass
        return cls(file, key, lock_path)

    def release(self) -> None:
        """Remove the lock file, then give the lock up (closing the descriptor releases
        the OS lock)."""
        with _held_lock:
            _held.discard(self.key)
            if sys.platform != "win32" and _names(self.lock_path, self.file):
                # Removed while held: see the class docstring. (Windows cannot remove an
                # open file; the lock file stays there, which is harmless.)
                with contextlib.suppress(OSError):
                    self.lock_path.unlink()
            self.file.close()


def _names(lock_path: Path, file: IO[str]) -> bool:
    """Whether *lock_path* still names the open *file* (not removed, not replaced)."""
    try:
        named = os.stat(lock_path)
    except OSError:
        return False
    held = os.fstat(file.fileno())
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


def _lock_file_error(lock_path: Path, exc: OSError) -> QueueFileError | QueueUnavailableError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return QueueUnavailableError(
            f"cannot create the lock file {lock_path}: the disk is full ({exc})"
        )
    return QueueFileError(f"cannot create the lock file {lock_path}: {exc}")


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _os_lock(file: IO[str]) -> None:
        file.seek(0)
        msvcrt.locking(file.fileno(), msvcrt.LK_NBLCK, 1)

else:
    import fcntl

    def _os_lock(file: IO[str]) -> None:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
