"""The file-change source: real files in temporary directories, native watcher and polling.

Waits are on the events themselves (``Capture`` plus ``fail_after``), never on sleeps; the
watcher is real I/O, so these tests run in real time except where the root is missing
(the source polls for it on the app's clock, here a ``VirtualClock``).
"""

from __future__ import annotations

import inspect
import json
import pydoc
import shutil
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Unpack

import anyio
import pytest
from anyio.abc import Process
from anyio.streams.text import TextReceiveStream

from reactor import Clock, Event, EventAttributes, Reactor, Receipt, Stats, SystemClock
from reactor.abc import GAP_EVENT_TYPE, App, EventQueue, Source
from reactor.sources.files import (
    FILE_CREATED,
    FILE_DELETED,
    FILE_MODIFIED,
    ROOT_MISSING,
    ROOT_RESTORED,
    FileChangeSource,
    on_file_change,
)
from reactor.testing import Capture, VirtualClock

pytestmark = pytest.mark.anyio

FILE_TYPES = {FILE_CREATED, FILE_MODIFIED, FILE_DELETED}
# Real I/O: generous bounds that only a broken source reaches.
WAIT = 15.0


@pytest.fixture(params=["native", "polling"])
def mode(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Watcher options: the OS notifications, or polling every 20 ms."""
    if request.param == "native":
        return {"force_polling": False}
    return {"force_polling": True, "poll_interval": 0.02}


async def until(capture: Capture, done: Callable[[Sequence[Event]], bool]) -> list[Event]:
    """Wait until *done(events)* holds; fail after ``WAIT`` seconds."""
    with anyio.fail_after(WAIT):
        while not done(capture.events):
            await capture.wait_for(len(capture.events) + 1)
    return list(capture.events)


def file_events(events: Sequence[Event]) -> list[tuple[str, str]]:
    return [(e.data["change"], e.data["path"]) for e in events if e.type in FILE_TYPES]


class Mirror:
    """The directory as the events describe it: path to size, applied incrementally.

    Each event must be consistent with the state so far: no file created twice, modified or
    deleted before it was created.
    """

    def __init__(self) -> None:
        self.files: dict[str, int] = {}
        self._seen = 0

    def update(self, events: Sequence[Event]) -> dict[str, int]:
        for event in events[self._seen :]:
            if event.type not in FILE_TYPES:
                continue
            path = event.data["path"]
            assert event.subject == path
            if event.type == FILE_CREATED:
                assert path not in self.files, f"created twice: {path}"
                self.files[path] = event.data["size"]
            elif event.type == FILE_MODIFIED:
                assert path in self.files, f"modified before created: {path}"
                self.files[path] = event.data["size"]
            else:
                assert path in self.files, f"deleted but never created: {path}"
                del self.files[path]
        self._seen = len(events)
        return self.files


def replay(events: Sequence[Event]) -> set[str]:
    """The set of files the events describe (checked as :class:`Mirror` does)."""
    return set(Mirror().update(events))


def sizes(root: Path) -> dict[str, int]:
    """The regular files under *root* with their sizes."""
    return {
        p.relative_to(root).as_posix(): p.stat().st_size
        for p in root.rglob("*")
        if p.is_file() and not p.is_symlink()
    }


def listing(root: Path) -> set[str]:
    """The regular files under *root*, as relative POSIX paths."""
    return {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and not p.is_symlink()
    }


def watch(app: Reactor, root: Path, **options: Any) -> Capture:
    """A capture of everything the source publishes, status events included."""
    capture = Capture()
    on_file_change(app, root, name="files", **{"status_events": True} | options)(capture)
    return capture


async def test_created_modified_deleted_with_paths_relative_to_the_root(
    tmp_path: Path, mode: dict[str, Any]
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    app = Reactor()
    capture = watch(app, root, **mode)
    async with app:
        (root / "a.txt").write_text("hello")
        (root / "sub").mkdir()
        (root / "sub" / "b.txt").write_text("b")
        events = await until(capture, lambda ev: len(file_events(ev)) >= 2)
        assert sorted(file_events(events)) == [("created", "a.txt"), ("created", "sub/b.txt")]
        created = next(e for e in events if e.subject == "a.txt")
        assert created.type == FILE_CREATED
        assert created.source == "/reactor/files/files"
        assert created.time is not None
        assert created.data["path"] == "a.txt"
        assert created.data["root"] == str(root)
        assert created.data["size"] == 5
        assert created.data["mtime"].endswith("+00:00")

        (root / "a.txt").write_text("hello, world")
        events = await until(capture, lambda ev: len(file_events(ev)) >= 3)
        assert file_events(events)[2] == ("modified", "a.txt")
        assert events[2].data["size"] == 12

        (root / "sub" / "b.txt").unlink()
        events = await until(capture, lambda ev: len(file_events(ev)) >= 4)
        assert file_events(events)[3] == ("deleted", "sub/b.txt")
        assert events[3].data["size"] is None and events[3].data["mtime"] is None
    assert replay(capture.events) == listing(root) == {"a.txt"}
    stats = app.stats().sources["files"]
    assert stats["changes"] == 4 and stats["files"] == 1
    assert isinstance(stats["batches"], int) and stats["batches"] >= 1


async def test_files_present_at_start_are_known_but_not_reported(tmp_path: Path) -> None:
    (tmp_path / "old.txt").write_text("old")
    app = Reactor()
    capture = watch(app, tmp_path)
    async with app:
        (tmp_path / "new.txt").write_text("new")
        await until(capture, lambda ev: len(ev) >= 1)
        (tmp_path / "old.txt").unlink()
        await until(capture, lambda ev: len(ev) >= 2)
    assert file_events(capture.events) == [("created", "new.txt"), ("deleted", "old.txt")]


async def test_a_burst_of_2000_files_is_reported_exactly(
    tmp_path: Path, mode: dict[str, Any]
) -> None:
    root = tmp_path / "burst"
    root.mkdir()
    (root / "d1").mkdir()
    (root / "d2").mkdir()
    paths = [(root / f"d{i % 3}" if i % 3 else root) / f"f{i:04}.dat" for i in range(2000)]
    app = Reactor()
    capture = watch(app, root, **mode)
    mirror = Mirror()
    async with app:
        for path in paths:
            path.write_bytes(b"x")
        expected = sizes(root)
        assert len(expected) == 2000
        await until(capture, lambda events: mirror.update(events) == expected)
        # Then change the picture again: delete a quarter, rewrite another quarter.
        for path in paths[::4]:
            path.unlink()
        for path in paths[1::4]:
            path.write_bytes(b"yy")
        expected = sizes(root)
        assert len(expected) == 1500
        await until(capture, lambda events: mirror.update(events) == expected)
    events = capture.events
    assert {e.type for e in events} == FILE_TYPES  # no gap, no root event
    # Batches: consecutive runs of one batch number, each as long as its batch_size.
    numbers = [e.data["batch"] for e in events]
    assert numbers == sorted(numbers)
    runs = Counter(numbers)
    assert all(runs[e.data["batch"]] == e.data["batch_size"] for e in events)


@pytest.mark.parametrize(
    ("pattern", "reported", "sentinel"),
    [
        ("*.csv", {"a.csv", "sub/b.csv", "sub/deep/c.csv", ".hidden.csv"}, "zz.csv"),
        ("sub/*.csv", {"sub/b.csv"}, "sub/zz.csv"),
        ("sub/**/*.csv", {"sub/b.csv", "sub/deep/c.csv"}, "sub/zz.csv"),
        ("**/deep/*", {"sub/deep/c.csv", "sub/deep/d.txt"}, "sub/deep/zz"),
        ("[ab].*", {"a.csv", "a.txt", "sub/b.csv"}, "b.zz"),
        ("[!ab]*.csv", {"sub/deep/c.csv", ".hidden.csv"}, "zz.csv"),
        ("?.txt", {"a.txt", "sub/deep/d.txt"}, "z.txt"),
    ],
)
async def test_glob_patterns_on_the_relative_path(
    tmp_path: Path, pattern: str, reported: set[str], sentinel: str
) -> None:
    app = Reactor()
    capture = watch(app, tmp_path, pattern=pattern)
    names = ["a.csv", "a.txt", ".hidden.csv", "sub/b.csv", "sub/deep/c.csv", "sub/deep/d.txt"]
    async with app:
        (tmp_path / "sub" / "deep").mkdir(parents=True)
        for name in names:
            (tmp_path / name).write_text("x")
        # The watcher reports changes in order, so once the sentinel written last is
        # reported, every file before it has been looked at.
        (tmp_path / sentinel).write_text("x")
        await until(capture, lambda ev: sentinel in {e.subject for e in ev})
    assert {e.subject for e in capture.events} == reported | {sentinel}


async def test_a_directory_moved_in_or_out_reports_each_file(
    tmp_path: Path, mode: dict[str, Any]
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "staging"
    (outside / "batch" / "inner").mkdir(parents=True)
    for name in ("one", "two", "inner/three"):
        (outside / "batch" / name).write_text(name)
    app = Reactor()
    capture = watch(app, root, **mode)
    async with app:
        (outside / "batch").rename(root / "batch")
        wanted = {"batch/one", "batch/two", "batch/inner/three"}
        await until(capture, lambda ev: {s for c, s in file_events(ev) if c == "created"} >= wanted)
        (root / "batch").rename(tmp_path / "gone")
        await until(capture, lambda ev: {s for c, s in file_events(ev) if c == "deleted"} >= wanted)
    assert replay(capture.events) == listing(root) == set()


async def test_symlinks_are_not_followed_by_default(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("s")
    (root / "linkdir").symlink_to(outside, target_is_directory=True)
    (root / "alias").symlink_to(root / "sub", target_is_directory=True)
    app = Reactor()
    capture = watch(app, root)
    async with app:
        (outside / "x.txt").write_text("x")  # through linkdir: outside the root
        (root / "flink").symlink_to(outside / "secret.txt")  # a link is not reported
        (root / "alias" / "a.txt").write_text("a")  # through a link to a directory inside
        (root / "sub" / "b.txt").write_text("b")
        await until(capture, lambda ev: {"sub/a.txt", "sub/b.txt"} <= {e.subject for e in ev})
        (root / "sentinel").write_text("x")
        await until(capture, lambda ev: "sentinel" in {e.subject for e in ev})
    assert {e.subject for e in capture.events} == {"sub/a.txt", "sub/b.txt", "sentinel"}
    escaped = app.stats().sources["files"]["escaped"]
    assert isinstance(escaped, int) and escaped >= 1  # linkdir/x.txt was dropped


async def test_follow_symlinks_reports_files_behind_links(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    shared = tmp_path / "shared"
    shared.mkdir()
    (root / "linked").symlink_to(shared, target_is_directory=True)
    app = Reactor()
    capture = watch(app, root, follow_symlinks=True)
    async with app:
        (shared / "x.txt").write_text("x")
        await until(capture, lambda ev: len(ev) >= 1)
    assert file_events(capture.events) == [("created", "linked/x.txt")]


async def test_non_recursive_watches_the_top_level_only(
    tmp_path: Path, mode: dict[str, Any]
) -> None:
    (tmp_path / "sub").mkdir()
    app = Reactor()
    capture = watch(app, tmp_path, recursive=False, **mode)
    async with app:
        (tmp_path / "sub" / "deep.txt").write_text("x")
        (tmp_path / "top.txt").write_text("x")
        await until(capture, lambda ev: len(ev) >= 1)
        (tmp_path / "top2.txt").write_text("x")
        await until(capture, lambda ev: len(ev) >= 2)
    assert {s for _, s in file_events(capture.events)} == {"top.txt", "top2.txt"}


async def test_a_missing_root_is_announced_and_awaited_on_the_app_clock(tmp_path: Path) -> None:
    root = tmp_path / "later"
    clock = VirtualClock()
    app = Reactor(clock=clock)
    capture = watch(app, root, poll_interval=5.0)
    async with app:
        # Started (the block runs) although there is nothing to watch yet.
        events = await until(capture, lambda ev: len(ev) >= 1)
        assert events[0].type == ROOT_MISSING
        assert events[0].source == "/reactor/files/files"
        assert events[0].data == {"root": str(root), "reason": "missing"}
        (root / "sub").mkdir(parents=True)
        (root / "sub" / "early.txt").write_text("x")
        await clock.advance(4.9)
        assert len(capture.events) == 1  # not looked for again yet
        await clock.advance(0.1)
        events = await until(capture, lambda ev: len(ev) >= 3)
        assert [e.type for e in events] == [ROOT_MISSING, ROOT_RESTORED, FILE_CREATED]
        assert events[2].subject == "sub/early.txt"
        (root / "late.txt").write_text("x")  # and it is watched from then on
        await until(capture, lambda ev: len(ev) >= 4)
    assert replay(capture.events) == listing(root)
    assert app.stats().sources["files"]["root_missing"] == 1


@pytest.mark.parametrize("how", ["rmtree", "rename"])
async def test_a_removed_root_is_announced_and_watched_again_when_back(
    tmp_path: Path, mode: dict[str, Any], how: str
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    app = Reactor()
    capture = watch(app, root, **mode | {"poll_interval": 0.02})
    async with app:
        (root / "a.txt").write_text("a")
        await until(capture, lambda ev: len(ev) >= 1)
        if how == "rmtree":
            shutil.rmtree(root)
        else:
            root.rename(tmp_path / "elsewhere")
        events = await until(capture, lambda ev: any(e.type == ROOT_MISSING for e in ev))
        assert file_events(events) == [("created", "a.txt"), ("deleted", "a.txt")]
        assert events[-1].data == {"root": str(root), "reason": "removed"}
        root.mkdir()
        (root / "b.txt").write_text("b")
        events = await until(capture, lambda ev: ("created", "b.txt") in file_events(ev))
        assert [e.type for e in events][-2:] == [ROOT_RESTORED, FILE_CREATED]
    assert replay(capture.events) == listing(root) == {"b.txt"}


async def test_a_replaced_root_ends_in_the_right_state(
    tmp_path: Path, mode: dict[str, Any]
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    app = Reactor()
    capture = watch(app, root, **mode | {"poll_interval": 0.02})
    async with app:
        (root / "old.txt").write_text("a")
        await until(capture, lambda ev: len(ev) >= 1)
        # Swap the directory for another one (say, a deployment); the source may or may
        # not see the path empty in between, but must end up describing the new one.
        fresh = tmp_path / "fresh"
        fresh.mkdir()
        (fresh / "new.txt").write_text("n")
        root.rename(tmp_path / "previous")
        fresh.rename(root)
        await until(capture, lambda ev: ("created", "new.txt") in file_events(ev))
        (root / "sentinel").write_text("x")
        await until(capture, lambda ev: ("created", "sentinel") in file_events(ev))
    assert replay(capture.events) == listing(root) == {"new.txt", "sentinel"}


async def test_rescan_publishes_unreported_changes_after_a_gap_event(tmp_path: Path) -> None:
    (tmp_path / "known.txt").write_text("k")
    # A poll interval of an hour: the watcher reports nothing during the test, as if it
    # had missed everything (what an inotify overflow does).
    source = FileChangeSource(tmp_path, force_polling=True, poll_interval=3600, name="inbox")
    assert source.uri == "/reactor/files/inbox" and source.name == "inbox"
    app = Reactor()
    capture = Capture()
    app.subscribe("*", capture, source=source.uri)
    app.add_source(source)
    with pytest.raises(RuntimeError, match="not watching"):
        await source.rescan()
    async with app:
        (tmp_path / "known.txt").unlink()
        (tmp_path / "one.txt").write_text("1")
        (tmp_path / "two.txt").write_text("2")
        assert await source.rescan() == 3
        events = await until(capture, lambda ev: len(ev) >= 4)
        assert await source.rescan() == 0  # nothing more to find
    gap = events[0]
    assert gap.type == GAP_EVENT_TYPE
    assert gap.source == source.uri and gap.subject == "inbox"
    assert gap.data["reason"] == "unreported changes" and gap.data["missed"] == 3
    assert file_events(events[1:]) == [
        ("deleted", "known.txt"),
        ("created", "one.txt"),
        ("created", "two.txt"),
    ]
    assert len(capture.events) == 4
    stats = app.stats().sources["inbox"]
    assert stats["gaps"] == 1 and stats["rescans"] == 2


async def test_events_of_one_file_are_handled_in_order_by_default(tmp_path: Path) -> None:
    app = Reactor()
    order: list[str] = []
    running = anyio.Event()
    gate = anyio.Event()

    @on_file_change(app, tmp_path, name="slow")
    async def slow(event: Event) -> None:
        if event.type == FILE_CREATED:
            running.set()
            await gate.wait()  # the next event of this file must wait for this one
        order.append(event.data["change"])

    seen = Capture()
    app.subscribe("*", seen, source="/reactor/files/slow", ordered_by=None)
    async with app:
        (tmp_path / "f").write_text("1")
        with anyio.fail_after(WAIT):
            await running.wait()
        (tmp_path / "f").unlink()
        await until(seen, lambda ev: len(ev) >= 2)  # the deletion was routed to both
        await anyio.wait_all_tasks_blocked()
        assert order == []  # ... and waits behind the creation
        gate.set()
    assert order == ["created", "deleted"]


async def test_ordered_by_none_handles_the_events_of_one_file_concurrently(
    tmp_path: Path,
) -> None:
    # None is not "left out": it asks for no ordering, so the default by path does not apply.
    app = Reactor()
    order: list[str] = []
    running = anyio.Event()
    deleted = anyio.Event()
    gate = anyio.Event()

    @on_file_change(app, tmp_path, name="free", ordered_by=None)
    async def free(event: Event) -> None:
        if event.type == FILE_CREATED:
            running.set()
            await gate.wait()
        order.append(event.data["change"])
        if event.type == FILE_DELETED:
            deleted.set()

    async with app:
        (tmp_path / "f").write_text("1")
        with anyio.fail_after(WAIT):
            await running.wait()
        (tmp_path / "f").unlink()
        with anyio.fail_after(WAIT):
            await deleted.wait()  # the deletion does not wait behind the creation
        gate.set()
    assert order == ["deleted", "created"]


async def test_options_are_checked_when_decorating(tmp_path: Path) -> None:
    app = Reactor()
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        on_file_change(app, tmp_path / "file.txt")
    with pytest.raises(ValueError, match="debounce"):
        on_file_change(app, tmp_path, debounce=-1)
    with pytest.raises(ValueError, match="poll_interval"):
        on_file_change(app, tmp_path, poll_interval=0)
    with pytest.raises(ValueError, match="pattern"):
        on_file_change(app, tmp_path, pattern="")
    with pytest.raises(ValueError, match="relative"):
        on_file_change(app, tmp_path, pattern="/abs/*.txt")
    with pytest.raises(TypeError, match="pattern"):
        on_file_change(app, tmp_path, pattern=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="name"):
        FileChangeSource(tmp_path, name="")

    async def handler(event: Event) -> None:
        pass

    on_file_change(app, tmp_path, name="taken")(handler)
    with pytest.raises(ValueError, match="already subscribed"):
        on_file_change(app, tmp_path, name="taken")(handler)
    assert len(app.sources) == 1  # the failed one added no source
    # The default name is the handler's, which also names the source.
    on_file_change(app, tmp_path)(handler)
    assert app.sources[-1].name == "handler"
    assert app.subscriptions[-1].name == "handler"


async def test_the_app_method(tmp_path: Path) -> None:
    app = Reactor()
    capture = Capture()
    app.on_file_change(tmp_path, pattern="*.csv", name="csv")(capture)
    async with app:
        (tmp_path / "x.txt").write_text("x")
        (tmp_path / "x.csv").write_text("x")
        await until(capture, lambda ev: len(ev) >= 1)
    assert file_events(capture.events) == [("created", "x.csv")]


def test_an_unknown_keyword_is_a_type_error_naming_the_function(tmp_path: Path) -> None:
    app = Reactor()
    with pytest.raises(TypeError, match=r"on_file_change\(\) got an unexpected .*'ordred_by'"):
        on_file_change(app, tmp_path, ordred_by=None)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"FileChangeSource\(\) got an unexpected .*'paterns'"):
        FileChangeSource(tmp_path, paterns="*")  # type: ignore[call-arg]
    assert app.subscriptions == () and app.sources == ()


def test_an_option_of_the_wrong_type_is_a_type_error(tmp_path: Path) -> None:
    app = Reactor()
    with pytest.raises(TypeError, match="debounce"):
        on_file_change(app, tmp_path, debounce="0.1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="poll_interval"):
        FileChangeSource(tmp_path, poll_interval=None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="name"):
        FileChangeSource(tmp_path, name=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="path"):
        FileChangeSource(b"inbox")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"path must be a str or an os\.PathLike, got 3"):
        on_file_change(app, 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="path"):
        FileChangeSource("")
    # A flag given as anything but a bool is refused, not converted: bool("no") is True.
    with pytest.raises(TypeError, match="recursive must be a bool"):
        FileChangeSource(tmp_path, recursive="no")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="force_polling must be a bool"):
        FileChangeSource(tmp_path, force_polling=0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="follow_symlinks must be a bool"):
        on_file_change(app, tmp_path, follow_symlinks=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="status_events must be a bool"):
        on_file_change(app, tmp_path, status_events="yes")  # type: ignore[arg-type]
    assert app.subscriptions == () and app.sources == ()


def test_the_app_method_is_the_function_with_its_options_and_doc(tmp_path: Path) -> None:
    app = Reactor()
    assert app.on_file_change.__doc__ == on_file_change.__doc__
    assert ":param pattern:" in pydoc.render_doc(app.on_file_change)
    parameters = inspect.signature(app.on_file_change).parameters
    assert list(parameters) == [
        "path",
        "pattern",
        "recursive",
        "debounce",
        "force_polling",
        "poll_interval",
        "follow_symlinks",
        "status_events",
        "options",
    ]
    assert parameters["pattern"].default == "*"
    assert parameters["debounce"].default == 0.05
    assert parameters["options"].kind is inspect.Parameter.VAR_KEYWORD


async def test_a_source_made_directly_has_the_defaults_of_the_function(tmp_path: Path) -> None:
    # poll_interval (0.3 s by default) paces the checks for the missing root: count them.
    clock = VirtualClock()
    app = Reactor(clock=clock)
    source = FileChangeSource(tmp_path / "missing", name="direct")
    assert (
        repr(source)
        == f"FileChangeSource({str(tmp_path / 'missing')!r}, pattern='*', name='direct')"
    )
    capture = Capture()
    app.subscribe("*", capture, source=source.uri)
    app.add_source(source)
    async with app:
        await capture.wait_for(1)
        assert capture.events[0].type == ROOT_MISSING
        (tmp_path / "missing").mkdir()
        await clock.advance(0.29)
        assert len(capture.events) == 1
        await clock.advance(0.01)
        await capture.wait_for(2)
    assert capture.events[1].type == ROOT_RESTORED


class RecordingApp:
    """An :class:`App` that is not a :class:`Reactor`: it records what is published."""

    def __init__(self) -> None:
        self.published: list[Event] = []
        self.changed = anyio.Event()

    @property
    def clock(self) -> Clock:
        return SystemClock()

    @property
    def source(self) -> str:
        return "/recording"

    @property
    def running(self) -> bool:
        return True

    @property
    def queue(self) -> EventQueue:
        raise NotImplementedError

    @property
    def sources(self) -> tuple[Source, ...]:
        return ()

    async def publish(
        self, event: Event | str, data: Any = None, **attributes: Unpack[EventAttributes]
    ) -> Event:
        assert isinstance(event, Event)
        self.published.append(event)
        self.changed.set()
        self.changed = anyio.Event()
        return event

    # What the source does not use.

    def publish_nowait(self, *args: Any, **kwargs: Any) -> Event:
        raise NotImplementedError

    async def publish_many(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError

    async def publish_and_wait(self, *args: Any, **kwargs: Any) -> Receipt:
        raise NotImplementedError

    def subscribe(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def add_source(self, source: Source) -> None:
        raise NotImplementedError

    def stats(self) -> Stats:
        raise NotImplementedError


async def test_the_source_runs_in_any_app(tmp_path: Path) -> None:
    recording = RecordingApp()
    app: App = recording  # type checkers check that it is one
    source = FileChangeSource(tmp_path, name="any")
    async with anyio.create_task_group() as tg:
        await tg.start(source.run, app)
        (tmp_path / "a.txt").write_text("a")
        with anyio.fail_after(WAIT):
            while not recording.published:
                await recording.changed.wait()
        tg.cancel_scope.cancel()
    assert file_events(recording.published) == [("created", "a.txt")]
    assert recording.published[0].source == "/reactor/files/any"


async def test_a_pattern_handler_gets_only_the_file_events_it_asked_for(tmp_path: Path) -> None:
    root = tmp_path / "inbox"
    clock = VirtualClock()
    app = Reactor(clock=clock)
    csv = Capture()
    app.on_file_change(root, pattern="*.csv", name="csv", force_polling=True, poll_interval=60)(csv)
    # The status events are still published, under their own types and the source's URI.
    status = Capture()
    app.subscribe(
        "*", status, source="/reactor/files/csv", where=lambda e: e.subject is None, name="status"
    )
    gaps = Capture()
    app.subscribe(GAP_EVENT_TYPE, gaps, source="/reactor/files/csv", name="gaps")
    async with app:
        await until(status, lambda ev: len(ev) >= 1)
        root.mkdir()
        (root / "a.csv").write_text("a")
        (root / "a.txt").write_text("a")
        await clock.advance(60)  # the source looks for the missing root again
        await until(csv, lambda ev: len(ev) >= 1)
        await until(status, lambda ev: len(ev) >= 2)
        # A gap: changes the watcher did not report (it polls once a minute).
        (root / "b.csv").write_text("b")
        source = app.sources[-1]
        assert isinstance(source, FileChangeSource)
        assert await source.rescan() == 1
        await until(csv, lambda ev: len(ev) >= 2)
        await until(gaps, lambda ev: len(ev) >= 1)
        await anyio.wait_all_tasks_blocked()
    assert [(e.type, e.subject) for e in csv.events] == [
        (FILE_CREATED, "a.csv"),
        (FILE_CREATED, "b.csv"),
    ]
    assert [e.type for e in status.events] == [ROOT_MISSING, ROOT_RESTORED]
    assert gaps.events[0].data["missed"] == 1


async def test_status_events_true_hands_the_status_events_to_the_handler(tmp_path: Path) -> None:
    root = tmp_path / "inbox"
    clock = VirtualClock()
    app = Reactor(clock=clock)
    capture = Capture()
    app.on_file_change(root, pattern="*.csv", name="csv", status_events=True, poll_interval=60)(
        capture
    )
    async with app:
        await until(capture, lambda ev: len(ev) >= 1)
        root.mkdir()
        (root / "a.txt").write_text("a")
        (root / "a.csv").write_text("a")
        await clock.advance(60)
        await until(capture, lambda ev: len(ev) >= 3)
    assert [(e.type, e.subject) for e in capture.events] == [
        (ROOT_MISSING, None),
        (ROOT_RESTORED, None),
        (FILE_CREATED, "a.csv"),
    ]


# -- unreadable directories ------------------------------------------------------------------

CHILD = Path(__file__).with_name("files_unreadable_child.py")


class Child:
    """An app watching a tree in a child process to which directory permissions apply.

    The suite may run as root, which ignores directory permissions; the child drops the
    capabilities that allow that (see ``tests/files_unreadable_child.py``).
    """

    def __init__(self, process: Process) -> None:
        self.process = process
        self.messages: list[dict[str, Any]] = []
        assert process.stdout is not None
        self._lines = TextReceiveStream(process.stdout)
        self._buffer = ""

    async def until(
        self, done: Callable[[list[dict[str, Any]]], bool], *, failures: bool = True
    ) -> list[dict[str, Any]]:
        """Read messages until *done(messages)* holds; fail after ``WAIT`` seconds, or at
        once if the app failed (unless *failures* is false).
        """
        with anyio.fail_after(WAIT):
            while not done(self.messages):
                if failures and any("error" in m for m in self.messages):
                    pytest.fail(f"the app failed: {self.messages}")
                try:
                    chunk = await self._lines.receive()
                except anyio.EndOfStream:
                    pytest.fail(f"the child ended early: {self.messages}")
                *lines, self._buffer = (self._buffer + chunk).split("\n")
                self.messages.extend(json.loads(line) for line in lines)
        return self.messages

    def events(self) -> list[tuple[str, str]]:
        return [(m["event"], m["subject"]) for m in self.messages if "event" in m]

    def has(self, *wanted: tuple[str, str]) -> Callable[[list[dict[str, Any]]], bool]:
        return lambda _: set(wanted) <= set(self.events())

    def warnings(self) -> list[str]:
        return [m["message"] for m in self.messages if m.get("log") == "WARNING"]

    async def stop(self) -> dict[str, int]:
        """Leave the app (close stdin) and return its source's statistics."""
        assert self.process.stdin is not None
        await self.process.stdin.aclose()
        messages = await self.until(lambda ms: "stats" in ms[-1] if ms else False)
        with anyio.fail_after(WAIT):
            assert await self.process.wait() == 0
        stats: dict[str, int] = messages[-1]["stats"]
        return stats


async def start_child(anyio_backend: str, root: Path, **options: Any) -> Child:
    process = await anyio.open_process(
        [sys.executable, str(CHILD), anyio_backend, str(root), json.dumps(options)]
    )
    child = Child(process)
    await child.until(lambda ms: bool(ms))
    if "skip" in child.messages[0]:
        await process.wait()
        pytest.skip(f"cannot make a directory unreadable here: {child.messages[0]['skip']}")
    return child


@pytest.fixture
def unlock(tmp_path: Path) -> Iterator[None]:
    """Give every directory back its permissions afterwards, for the cleanup of tmp_path."""
    yield
    for path in [tmp_path, *tmp_path.rglob("*")]:
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o755)


@pytest.mark.usefixtures("unlock")
async def test_an_unreadable_directory_at_start_is_logged_counted_and_watched_around(
    tmp_path: Path, mode: dict[str, Any], anyio_backend: str
) -> None:
    root = tmp_path / "root"
    for name in ("aa", "locked", "zz"):
        (root / name).mkdir(parents=True)
    (root / "locked" / "old.txt").write_text("o")
    (root / "locked").chmod(0)
    child = await start_child(anyio_backend, root, **mode)
    try:
        await child.until(lambda ms: any("ready" in m for m in ms))  # the app started
        # Every readable directory is watched, before and after the unreadable one.
        for name in ("aa/a.txt", "zz/z.txt", "top.txt"):
            (root / name).write_text("x")
        await child.until(
            child.has(
                (FILE_CREATED, "aa/a.txt"), (FILE_CREATED, "zz/z.txt"), (FILE_CREATED, "top.txt")
            )
        )
        # A new directory, watched as soon as it appears (each is watched on its own now).
        (root / "new" / "sub").mkdir(parents=True)
        (root / "new" / "sub" / "n.txt").write_text("n")
        await child.until(child.has((FILE_CREATED, "new/sub/n.txt")))
        (root / "new" / "sub" / "m.txt").write_text("m")
        await child.until(child.has((FILE_CREATED, "new/sub/m.txt")))
        # Readable again: what it holds is reported, and it is watched from then on.
        (root / "locked").chmod(0o755)
        await child.until(child.has((FILE_CREATED, "locked/old.txt")))
        (root / "locked" / "new.txt").write_text("n")
        await child.until(child.has((FILE_CREATED, "locked/new.txt")))
        stats = await child.stop()
    finally:
        with anyio.CancelScope(shield=True):
            await child.process.aclose()
    assert stats["unreadable"] == 1 and stats["gaps"] == 0
    assert {event for event, _ in child.events()} == {FILE_CREATED}
    warnings = child.warnings()
    assert len(warnings) == 1 and str(root / "locked") in warnings[0], warnings


@pytest.mark.usefixtures("unlock")
async def test_a_directory_made_unreadable_later_is_logged_once_and_counted(
    tmp_path: Path, mode: dict[str, Any], anyio_backend: str
) -> None:
    root = tmp_path / "root"
    (root / "d").mkdir(parents=True)
    (root / "d" / "f.txt").write_text("f")
    child = await start_child(anyio_backend, root, **mode)
    try:
        await child.until(lambda ms: any("ready" in m for m in ms))
        (root / "d").chmod(0)
        # Its files cannot be seen any more: reported deleted.
        await child.until(child.has((FILE_DELETED, "d/f.txt")))
        (root / "top.txt").write_text("t")  # the rest is still watched
        await child.until(child.has((FILE_CREATED, "top.txt")))
        (root / "d").chmod(0o755)
        await child.until(lambda _: child.events().count((FILE_CREATED, "d/f.txt")) == 1)
        (root / "d").chmod(0)  # again: the same directory is not logged twice
        await child.until(lambda _: child.events().count((FILE_DELETED, "d/f.txt")) == 2)
        (root / "d").chmod(0o755)
        await child.until(lambda _: child.events().count((FILE_CREATED, "d/f.txt")) == 2)
        (root / "d" / "g.txt").write_text("g")  # and it is watched again
        await child.until(child.has((FILE_CREATED, "d/g.txt")))
        stats = await child.stop()
    finally:
        with anyio.CancelScope(shield=True):
            await child.process.aclose()
    assert stats["unreadable"] == 1 and stats["gaps"] == 0
    warnings = child.warnings()
    assert len(warnings) == 1 and str(root / "d") in warnings[0], warnings


@pytest.mark.usefixtures("unlock")
async def test_an_unreadable_root_at_start_stops_the_app(
    tmp_path: Path, anyio_backend: str
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    root.chmod(0)
    child = await start_child(anyio_backend, root)
    try:
        messages = await child.until(lambda ms: any("error" in m for m in ms), failures=False)
        with anyio.fail_after(WAIT):
            assert await child.process.wait() == 1
    finally:
        with anyio.CancelScope(shield=True):
            await child.process.aclose()
    assert "PermissionError" in messages[-1]["error"]
    assert not any("ready" in m for m in messages)
