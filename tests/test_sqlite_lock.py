"""The owner lock of an SQLiteQueue file: ``<file>-lock`` is removed at a clean close,
and removing it never lets two processes own the file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from reactor import Reactor
from reactor.queues.sqlite import SQLiteQueue
from reactor.queues.sqlite import _lock as sqlite_queue

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(sys.platform == "win32", reason="Windows keeps an open file's name"),
]

#: A process that opens the queue file named by its argument, says "ready" (or "in-use"
#: when another process owns it), then keeps it until a line arrives on its input.
OWNER = """
import sys, anyio
from reactor import QueueInUseError
from reactor.queues.sqlite import SQLiteQueue

async def main():
    try:
        async with SQLiteQueue(sys.argv[1]):
            print("ready", flush=True)
            sys.stdin.readline()
    except QueueInUseError:
        print("in-use", flush=True)

anyio.run(main)
"""


def start_owner(path: Path) -> tuple[subprocess.Popen[str], str]:
    """Start an :data:`OWNER` process on *path*; return it and its first line."""
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert owner.stdout is not None
    return owner, owner.stdout.readline().strip()


def stop_owner(owner: subprocess.Popen[str]) -> None:
    """Let an owner close the queue cleanly (if it has it), and wait for it to exit."""
    owner.communicate("close\n", timeout=30)
    assert owner.returncode == 0


async def test_the_lock_file_is_removed_at_a_clean_close(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    lock = anyio.Path(f"{path}-lock")
    async with SQLiteQueue(path):
        assert await lock.exists()
    assert not await lock.exists()
    app = Reactor(queue=SQLiteQueue(path))
    async with app:
        await app.publish("job.run", 1)
        assert await lock.exists()
    assert not await lock.exists()
    assert [p.name async for p in anyio.Path(tmp_path).iterdir()] == ["events.db"]


async def test_a_lock_file_removed_while_another_process_opens_it_is_never_shared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The interleaving that removing the lock file makes possible, forced: this process
    opens the lock file, then its owner closes (removing it and releasing its lock), then
    this process locks the file it opened, which no longer has the name. It must not
    count as the owner: a third process would create and lock a new lock file."""
    path = tmp_path / "events.db"
    first, said = await anyio.to_thread.run_sync(start_owner, path)
    assert said == "ready"
    os_lock = sqlite_queue._os_lock
    calls: list[str] = []

    def lock_after_the_owner_left(file: Any) -> None:
        if not calls:
            calls.append("the owner closed")
            stop_owner(first)
        os_lock(file)

    monkeypatch.setattr(sqlite_queue, "_os_lock", lock_after_the_owner_left)
    async with SQLiteQueue(path):
        third, said = await anyio.to_thread.run_sync(start_owner, path)
        assert said == "in-use", "two processes own the queue file"
        await anyio.to_thread.run_sync(stop_owner, third)
    assert calls == ["the owner closed"]
