"""SQLiteQueue on a full disk: a real small tmpfs filled with a file, then freed.

Publishing fails with :class:`~reactor.QueueUnavailableError` naming the full disk, the
dispatcher retries its settlements, the app keeps running and recovers by itself once
space is freed, nothing is lost, and ``app.stats().queue`` shows it. Opening a healthy
queue file on a full disk reports the full disk, never a damaged file.

Mounting needs root (or CAP_SYS_ADMIN): elsewhere these tests are skipped, saying so.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import anyio
import pytest

from reactor import Event, QueueFileError, QueueUnavailableError, Reactor, Retry
from reactor.queues.sqlite import SQLiteQueue, read_dead_letters
from reactor.queues.sqlite import _journal as sqlite_queue
from reactor.testing import Capture, VirtualClock

pytestmark = pytest.mark.anyio

#: The size of the small filesystem; the queue file and its log fit in it many times.
DISK_SIZE = "2m"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A fresh tmpfs of :data:`DISK_SIZE`, unmounted after the test."""
    if sys.platform != "linux":
        pytest.skip("tmpfs mounts are Linux only")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_SIZE}", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path, leave: int = 0) -> Path:
    """Fill *disk* with a file, leaving about *leave* bytes free; return the file."""
    filler = disk / f"filler-{len(list(disk.glob('filler-*')))}"
    with filler.open("wb", buffering=0) as file:
        try:
            while True:
                file.write(b"\0" * 4096)
        except OSError:
            pass
    if leave:
        os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler


class LogWaiter(logging.Handler):
    """Sets an event when a record whose message contains *text* is logged."""

    def __init__(self, logger: str, text: str) -> None:
        super().__init__()
        self.text = text
        self.seen = anyio.Event()
        self.logger = logging.getLogger(logger)

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.seen.set()

    def __enter__(self) -> LogWaiter:
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.logger.removeHandler(self)


def checkpoint_thread_alive(path: Path) -> bool:
    return any(
        thread.name == f"reactor checkpoint of {path.name}" and thread.is_alive()
        for thread in threading.enumerate()
    )


async def test_a_full_disk_refuses_publishes_retries_settlements_and_recovers_by_itself(
    small_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = small_disk / "events.db"
    clock = VirtualClock()
    queue = SQLiteQueue(path)
    app = Reactor(queue=queue, clock=clock)
    release = anyio.Event()
    capture = Capture()
    app.subscribe("job.*", capture, name="capture")

    @app.subscribe("job.*", name="held")
    async def held(event: Event) -> None:
        if event.data == "held":
            await release.wait()

    @app.subscribe("job.fail", retry=Retry(attempts=1), name="fails")
    async def fails(event: Event) -> None:
        await release.wait()
        raise ConnectionError("the provider is down")

    with (
        LogWaiter("reactor.dispatch", "could not store the settlement") as settle_failed,
        LogWaiter("reactor.dispatch", "stores settlements again") as settled_again,
        anyio.fail_after(30),
    ):
        async with app:
            await app.publish("job.run", "before")
            await app.publish("job.run", "held")
            await app.publish("job.fail", "fail")
            await capture.wait_for(3)
            await anyio.wait_all_tasks_blocked()  # "held" and "fail" wait for release
            await queue.dead_letters()  # returns once every settlement so far is written
            filler = fill(small_disk)

            with pytest.raises(QueueUnavailableError, match="disk is full") as refused:
                await app.publish("job.run", "refused")
            assert str(path) in str(refused.value)
            stats = app.stats().queue
            assert (stats.errors, stats.last_error) == (1, str(refused.value))
            assert (stats.put_count, stats.depth) == (3, 0)

            release.set()  # their settlements (an ack, a dead letter) cannot be stored
            await settle_failed.seen.wait()
            await anyio.wait_all_tasks_blocked()
            assert app.running
            assert app.stats().queue.errors >= 2
            assert app.stats().queue.last_error is not None
            assert checkpoint_thread_alive(path)

            filler.unlink()
            await clock.advance(60)  # past the dispatcher's backoff: it tries again
            await settled_again.seen.wait()
            assert app.stats().queue.last_error is None
            await app.publish("job.run", "after")
            await capture.wait_for(4)
            assert checkpoint_thread_alive(path)
    assert [event.data for event in capture.events] == ["before", "held", "fail", "after"]
    assert app.stats().queue.put_count == 4
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT count(*) FROM reactor_events").fetchone() == (0,)
    [letter] = read_dead_letters(path)
    assert (letter.consumer, letter.error) == ("fails", "the provider is down")
    assert not await anyio.Path(f"{path}-lock").exists()
    messages = [record.getMessage() for record in caplog.records]
    assert any("disk is full" in message for message in messages)
    assert any("has recovered" in message for message in messages)


async def test_a_publish_nowait_during_a_full_disk_is_written_once_there_is_room(
    small_disk: Path,
) -> None:
    path = small_disk / "events.db"
    capture = Capture()
    app = Reactor(queue=SQLiteQueue(path))
    app.subscribe("job.*", capture)
    with anyio.fail_after(30):
        async with app:
            await app.publish("job.run", 1)
            await capture.wait_for(1)
            await anyio.wait_all_tasks_blocked()
            filler = fill(small_disk)
            app.publish_nowait("job.run", 2)  # accepted; its commit fails for now
            with pytest.raises(QueueUnavailableError, match="disk is full"):
                await app.publish("job.run", 3)  # the same commit: 2 waits for the next
            assert app.stats().queue.depth == 1  # 2 is still there, 3 is not
            filler.unlink()
            await capture.wait_for(2)  # the dispatcher's retry writes 2
            await app.publish("job.run", 4)
            await capture.wait_for(3)
    assert [event.data for event in capture.events] == [1, 2, 4]


async def _open_on_full_disk(path: Path) -> str:
    """Start an app on *path*: return "refused" (the full disk reported) or "opened"."""
    # max_redeliveries=None: the 30 runs of the test hand the same events out again and
    # again; past the default bound a run that routes them before it stops would
    # dead-letter (and so remove) them, and the test wants them all kept.
    app = Reactor(queue=SQLiteQueue(path, max_redeliveries=None), graceful_timeout=0)

    @app.subscribe("*")
    async def hold(event: Event) -> None:
        await anyio.sleep_forever()  # settles nothing: the events stay in the file

    try:
        async with app:
            pass
    except QueueUnavailableError as exc:
        message = str(exc)
        assert "disk is full" in message and str(path) in message
        assert "damaged" not in message and "cannot be used as a reactor queue" not in message
        return "refused"
    except QueueFileError as exc:  # pragma: no cover - the regression this test is for
        pytest.fail(f"a healthy file on a full disk was reported as a bad file: {exc}")
    return "opened"


async def test_restarting_on_a_full_disk_reports_the_full_disk_not_a_damaged_file(
    small_disk: Path,
) -> None:
    path = small_disk / "events.db"
    async with SQLiteQueue(path) as queue:
        for n in range(20):
            await queue.put(Event(type="job.run", source="/test", data=n))
    outcomes: set[str] = set()
    # No room at all, and a little (the shared-memory index fits, the log does not).
    for leave in (0, 4096, 16384, 32768, 65536, 131072):
        filler = fill(small_disk, leave)
        for _ in range(5):
            with anyio.fail_after(30):
                outcomes.add(await _open_on_full_disk(path))
        filler.unlink()
    assert "refused" in outcomes
    # Healthy all along: every event is still there, once. (Held by the runs above, cut
    # short 30 times, they are past the default max_redeliveries: lift it here too.)
    capture = Capture()
    app = Reactor(queue=SQLiteQueue(path, max_redeliveries=None))
    app.subscribe("job.*", capture)
    with anyio.fail_after(30):
        async with app:
            await capture.wait_for(20)
    assert sorted(event.data for event in capture.events) == list(range(20))


class ThreadLogWaiter(logging.Handler):
    """Notes, from any thread, a record whose message contains *text*."""

    def __init__(self, logger: str, text: str) -> None:
        super().__init__()
        self.text = text
        self.seen = threading.Event()
        self.logger = logging.getLogger(logger)

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.seen.set()

    def __enter__(self) -> ThreadLogWaiter:
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.logger.removeHandler(self)


async def test_the_checkpoint_thread_survives_a_full_disk(
    small_disk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = small_disk / "events.db"
    # No checkpoint while the log fills up, so that the log holds what the file has not.
    monkeypatch.setattr(sqlite_queue, "CHECKPOINT_BYTES", 1 << 30)
    with anyio.fail_after(30):
        async with SQLiteQueue(path) as queue:
            for n in range(40):
                await queue.put(Event(type="job.run", source="/test", data="x" * 8000 + str(n)))
            filler = fill(small_disk, leave=65536)  # room for the log to grow a little
            monkeypatch.setattr(sqlite_queue, "CHECKPOINT_BYTES", 1)
            with ThreadLogWaiter("reactor.queues.sqlite", "checkpoint failed") as failed:
                await queue.put(Event(type="job.run", source="/test", data="asks a checkpoint"))
                # Copying the log into the file needs room the disk does not have.
                assert await anyio.to_thread.run_sync(failed.seen.wait, 20)
            assert checkpoint_thread_alive(path)
            filler.unlink()
            await queue.put(Event(type="job.run", source="/test", data="after"))
            assert queue.statistics().depth == 42
            assert checkpoint_thread_alive(path)
        assert not checkpoint_thread_alive(path)  # stopped by close()
    async with SQLiteQueue(path) as reopened:
        assert reopened.statistics().depth == 42


async def test_the_command_line_reports_a_full_disk_without_a_traceback(
    small_disk: Path,
) -> None:
    path = small_disk / "events.db"
    app = Reactor(queue=SQLiteQueue(path))

    @app.subscribe("job.*")
    async def fails(event: Event) -> None:
        raise ValueError("refused")

    async with app:
        await app.publish_and_wait("job.run")
    filler = fill(small_disk)
    try:
        for command in (["list"], ["replay", "--all"], ["purge", "--all"]):
            done = await anyio.run_process(
                [sys.executable, "-m", "reactor", "dead-letters", *command],
                env={**os.environ, "REACTOR_QUEUE": f"sqlite:///{path}"},
                check=False,
            )
            output = (done.stdout + done.stderr).decode()
            assert done.returncode == 1, output
            assert "Traceback" not in output
            assert "disk is full" in output
    finally:
        filler.unlink()
    [letter] = read_dead_letters(path)  # nothing was changed
    assert letter.consumer == "fails"
