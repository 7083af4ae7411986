"""The child process of the unreadable-directory tests in ``tests/test_files.py``.

Root ignores directory permissions (``CAP_DAC_OVERRIDE``, ``CAP_DAC_READ_SEARCH``), so the
test suite, which may run as root, cannot make a directory unreadable to itself. This
process drops those two capabilities before it starts anything (capabilities are per
thread: every thread started afterwards inherits the reduced set), so that permissions
apply to it as to any user; as a normal user it has nothing to drop. It stays the same
user, so it can still read everything its owner can (the interpreter, the test's files).

``python files_unreadable_child.py <backend> <root> '<json options for on_file_change>'``
runs an app whose ``app.on_file_change(root, name="files", ...)`` handler reports each
event, and writes one JSON object per line on stdout:

* ``{"skip": reason}``: permissions cannot be made to apply here (exit status 0);
* ``{"ready": true}``: ``async with app:`` was entered;
* ``{"event": type, "subject": subject}``: the handler got an event;
* ``{"log": level, "message": message}``: a record of the ``reactor`` loggers, WARNING or
  above;
* ``{"error": repr}``: the app failed (exit status 1);
* ``{"stats": {...}}``: the source's statistics, after leaving ``async with app:``,
  which happens when stdin is closed.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import sys
import tempfile
from typing import Any

import anyio

from reactor import Event, Reactor

_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_CAP_DAC_OVERRIDE = 1
_CAP_DAC_READ_SEARCH = 2


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def emit(**message: Any) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def drop_permission_override() -> str | None:
    """Drop the capabilities that bypass file permissions; return why not, if impossible."""
    if sys.platform != "linux":
        return "dropping capabilities is Linux-only"
    if os.geteuid() == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
        data = (_CapData * 2)()
        if libc.capget(ctypes.byref(header), data) != 0:
            return f"capget failed: {os.strerror(ctypes.get_errno())}"
        keep = ~((1 << _CAP_DAC_OVERRIDE) | (1 << _CAP_DAC_READ_SEARCH)) & 0xFFFFFFFF
        data[0].effective &= keep
        data[0].permitted &= keep
        data[0].inheritable &= keep
        if libc.capset(ctypes.byref(header), data) != 0:
            return f"capset failed: {os.strerror(ctypes.get_errno())}"
    # Check that it worked: a directory without permissions must refuse this process.
    probe = tempfile.mkdtemp()
    try:
        os.chmod(probe, 0)
        try:
            os.listdir(probe)
        except PermissionError:
            return None
        return "directory permissions are not enforced for this process"
    finally:
        os.chmod(probe, 0o700)
        os.rmdir(probe)


class _Report(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        emit(log=record.levelname, message=record.getMessage())


async def main(root: str, options: dict[str, Any]) -> None:
    app = Reactor()

    @app.on_file_change(root, name="files", **options)
    async def handler(event: Event) -> None:
        emit(event=event.type, subject=event.subject)

    try:
        async with app:
            emit(ready=True)
            await anyio.to_thread.run_sync(sys.stdin.read, abandon_on_cancel=True)
    except Exception as exc:
        emit(error=repr(exc))
        raise SystemExit(1) from None
    emit(stats=dict(app.stats().sources["files"]))


if __name__ == "__main__":
    backend, root, options = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    reason = drop_permission_override()
    if reason is not None:
        emit(skip=reason)
        raise SystemExit(0)
    report = _Report(logging.WARNING)
    logging.getLogger("reactor").addHandler(report)
    anyio.run(main, root, options, backend=backend)
