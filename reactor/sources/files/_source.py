"""The file source and its decorator: watching, publishing, restarting, rescanning.

:func:`on_file_change` is the one definition of the watch options (their defaults in its
signature, their meanings in its docstring); :class:`FileChangeSource` takes them as
:class:`WatchOptions`, with the same defaults.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import Any, Final, TypedDict, TypeVar, Unpack

import anyio
from anyio.abc import TaskStatus
from watchfiles import Change

from reactor import BaseConsumerOptions, Event, Handler, validators
from reactor.abc import App, Source, default_name, run_with_subscription

from .._decorate import with_defaults
from .._naming import source_uri
from ._events import (
    ROOT_MISSING,
    ROOT_RESTORED,
    ChangeKind,
    FileChange,
    by_path,
    change_events,
    is_file_event,
    root_event,
)
from ._filters import RootPaths, compile_pattern
from ._tree import Tree
from ._walk import Walker, resolve_root, root_identity
from ._watcher import Failure, Message, StopHook, pump, watchfiles_polls

logger = logging.getLogger("reactor.sources.files")

H = TypeVar("H", bound=Handler)
_T = TypeVar("_T")

# A batch this large may have come with a kernel queue overflow (16,384 raw inotify events
# by default, several per file): verify with a rescan once the burst is over.
_VERIFY_AT: Final = 1000
# ... or after this many further batches if the burst never stops.
_VERIFY_LATEST: Final = 20
# Backoff after a watcher failure, on the app's clock: poll_interval doubling up to this.
_MAX_BACKOFF: Final = 30.0


class WatchOptions(TypedDict, total=False):
    """The options of a file watcher, all optional: ``pattern``, ``recursive``, ``debounce``,
    ``force_polling``, ``poll_interval`` and ``follow_symlinks``.

    :func:`on_file_change` documents each and gives its default; :class:`FileChangeSource`
    takes them as keyword arguments, with the same defaults.
    """

    pattern: str
    recursive: bool
    debounce: float
    force_polling: bool
    poll_interval: float
    follow_symlinks: bool


class FileChangeSource(Source):
    """Publish an event for every file created, modified or deleted under a directory.

    See the module documentation for the events, the guarantees and the limits, and
    :func:`on_file_change` for the options (:class:`WatchOptions`): the same, with the same
    defaults. ``app.add_source(FileChangeSource(path, ...))`` is the way to watch a
    directory without a handler of its own (subscribe to :attr:`uri` instead).

    :param path: the directory to watch (it may be missing at start)
    :param name: the source's name, unique among the app's file sources: it makes the
        CloudEvents source ``/reactor/files/<name>`` (default: the path as given)
    :param options: the watch options (:class:`WatchOptions`)
    :raises TypeError: an option of the wrong type, or an unknown one
    :raises ValueError: a bad option, or *path* exists and is not a directory
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        name: str | None = None,
        **options: Unpack[WatchOptions],
    ) -> None:
        settings = with_defaults(type(self).__name__, options, WatchOptions, on_file_change)
        if not isinstance(path, str | os.PathLike):
            raise TypeError(f"path must be a str or an os.PathLike, got {path!r}")
        given = validators.name("path", os.fspath(path))
        self._path = os.path.abspath(given)
        if os.path.exists(self._path) and not os.path.isdir(self._path):
            raise ValueError(f"{given!r} is not a directory: watch the directory that holds it")
        self._pattern: str = settings["pattern"]
        match = compile_pattern(self._pattern)
        self._recursive = validators.boolean("recursive", settings["recursive"])
        self._debounce = validators.seconds("debounce", settings["debounce"])
        self._poll_interval = validators.seconds(
            "poll_interval", settings["poll_interval"], positive=True
        )
        self._force_polling = validators.boolean("force_polling", settings["force_polling"])
        self._name = given if name is None else validators.name("name", name)
        self._uri = source_uri("files", self._name)
        follow_symlinks = validators.boolean("follow_symlinks", settings["follow_symlinks"])
        self._paths = RootPaths(follow_symlinks=follow_symlinks)
        self._walker = Walker(self._paths, match, recursive=self._recursive, name=self._name)
        self._tree = Tree(self._paths, self._walker)
        self._batch = 0
        self._counters = {
            "batches": 0,
            "changes": 0,
            "rescans": 0,
            "gaps": 0,
            "root_missing": 0,
            "restarts": 0,
        }
        self._app: App | None = None
        self._lock: anyio.Lock | None = None
        self._limiter: anyio.CapacityLimiter | None = None
        self._snapshot_taken = False
        self._missing = False

    # -- properties

    @property
    def name(self) -> str:
        """The name given (default: the path as given)."""
        return self._name

    @property
    def uri(self) -> str:
        """The CloudEvents ``source`` of this source's events: ``/reactor/files/<name>``."""
        return self._uri

    @property
    def root(self) -> str:
        """The watched directory as an absolute path (as given, not resolved)."""
        return self._path

    def statistics(self) -> dict[str, int]:
        """Return the counters: ``batches`` taken from the watcher, file ``changes`` published,
        ``rescans`` of the tree, ``gaps`` announced, times the root was found ``root_missing``,
        watcher ``restarts``, paths dropped as ``escaped`` (outside the root), ``files``
        known in the snapshot, and directories found ``unreadable`` (each counted once).
        """
        return {
            **self._counters,
            "escaped": self._paths.escaped,
            "files": len(self._tree.files),
            "unreadable": len(self._walker.warned),
        }

    def __repr__(self) -> str:
        return f"FileChangeSource({self._path!r}, pattern={self._pattern!r}, name={self._name!r})"

    def change_event(
        self,
        path: str,
        change: ChangeKind,
        *,
        time: datetime,
        size: int | None = None,
        mtime_ns: int | None = None,
    ) -> Event:
        """Build the event this source publishes when one file changes: for tests.

        The event is the source's next batch, of one file, exactly as the watcher would
        have it published (``reactor.testing.fire_file_change`` fills *size* and
        *mtime_ns* from the file system, as the source does).

        :param path: the file's path relative to :attr:`root`, ``/`` separators
        :param change: ``"created"``, ``"modified"`` or ``"deleted"``
        :param time: the event's time
        :param size: the file's size in bytes (``None`` for a deleted file)
        :param mtime_ns: the file's modification time in ns (``None`` for a deleted file)
        :return: a ``reactor.file.<change>`` event from :attr:`uri`
        :raises ValueError: an empty or absolute *path*, or an unknown *change*
        """
        rel = validators.name("path", path)
        if rel.startswith("/") or os.path.isabs(rel):
            raise ValueError(f"path must be relative to the watched root, got {path!r}")
        validators.one_of("change", change, ("created", "modified", "deleted"))
        self._batch += 1
        (event,) = change_events(
            [FileChange(rel, change, size, mtime_ns)],
            source=self._uri,
            root=self._path,
            batch=self._batch,
            time=time,
        )
        return event

    # -- publishing

    async def _publish_changes(self, app: App, changes: list[FileChange]) -> None:
        if not changes:
            return
        self._batch += 1
        events = change_events(
            changes, source=self._uri, root=self._path, batch=self._batch, time=app.clock.now()
        )
        for event in events:
            await app.publish(event)
        self._counters["changes"] += len(changes)

    async def _publish_root(self, app: App, type: str, reason: str | None) -> None:
        now = app.clock.now()
        await app.publish(
            root_event(type, source=self._uri, root=self._path, reason=reason, time=now)
        )

    async def _publish_gap(
        self, app: App, reason: str, since: datetime | None, missed: int | None
    ) -> None:
        # The source URI instead of the app's, so that the file handler gets it too.
        gap = self.gap_event(app, reason=reason, since=since, missed=missed, source=self._uri)
        self._counters["gaps"] += 1
        await app.publish(gap)

    async def rescan(self) -> int:
        """Rescan the tree now and publish what the watcher did not report.

        Differences are published after a gap event (reason ``"unreported changes"``)
        saying how many there were; nothing is published when there are none. Useful after
        a period in which the watcher may have missed changes (a suspended machine, a
        remounted file system). Waits while the source is busy with a batch.

        :return: the number of unreported changes found
        :raises RuntimeError: the source is not watching (its app is not running, or the
            root is missing)
        """
        app = self._app
        if app is None:
            raise RuntimeError(f"file source {self._name!r} is not watching")
        return await self._verify(app, since=None)

    async def _verify(self, app: App, since: datetime | None) -> int:
        assert self._lock is not None
        async with self._lock:
            changes = await self._in_thread(self._tree.rescan)
            self._counters["rescans"] += 1
            if changes:
                logger.warning(
                    "file source %s: a rescan found %d change(s) the watcher did not report",
                    self._name,
                    len(changes),
                    extra={"source": self.name},
                )
                await self._publish_gap(app, "unreported changes", since, len(changes))
                await self._publish_changes(app, changes)
            return len(changes)

    async def _in_thread(self, func: Callable[..., _T], *args: Any) -> _T:
        """Run blocking file-system work on this source's own worker thread."""
        return await anyio.to_thread.run_sync(func, *args, limiter=self._limiter)

    # -- running

    async def run(
        self, app: App, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Watch the directory and publish its changes until cancelled.

        :param app: the running app to publish into
        :param task_status: started once the watcher is live (or the root was found
            missing and announced)
        :raises PermissionError: the directory itself cannot be read
        """
        self._tree.clear()
        self._batch = 0
        self._lock = anyio.Lock()
        self._limiter = anyio.CapacityLimiter(1)
        self._snapshot_taken = False  # files present when the source starts are not reported
        self._missing = False
        polling = self._force_polling
        failures = 0
        started = False
        dirs: list[str] | None = None  # None: the root, recursively; else these one by one
        walker = self._walker

        def ready() -> None:
            nonlocal started
            if not started:
                started = True
                task_status.started()

        while True:
            real, occupied = await self._in_thread(resolve_root, self._path)
            if real is None:
                await self._announce_missing(app, occupied)
                ready()
                await app.clock.sleep(self._poll_interval)
                continue
            self._paths.set_root(real)
            if walker.replan or walker.one_by_one:  # directories may have come and gone since
                dirs = await self._in_thread(walker.plan)
            failure = await self._watch(app, real, dirs, polling=polling, ready=ready)
            if failure is None:
                failures = 0
                continue  # the root is gone or was replaced, or directories changed: again
            error = failure.error
            if isinstance(error, FileNotFoundError) and not failure.live:
                continue  # removed between the check and the watch
            # An unreadable directory in the tree fails the watcher (at start natively, at
            # each poll when polling; the error says which path, not always as a
            # PermissionError): watch around the unreadable directories if that helps.
            denied = isinstance(error, PermissionError)
            previous = dirs
            dirs = await self._in_thread(walker.plan)
            if denied and not started and "" in walker.unreadable:
                raise error  # the directory itself: nothing to watch at all
            if denied and dirs is None and not walker.forced:
                walker.forced = True
                dirs = await self._in_thread(walker.plan)
            if dirs != previous:
                continue
            if not failure.live and not polling and not denied:
                # The OS watcher could not be set up (inotify instance or watch limits,
                # an unsupported file system): polling works everywhere.
                logger.warning(
                    "file source %s: cannot use the OS file watcher (%s); polling instead",
                    self._name,
                    error,
                    extra={"source": self.name},
                )
                polling = True
                continue
            failures = 0 if failure.batches else failures + 1
            self._counters["restarts"] += 1
            logger.warning(
                "file source %s: the watcher failed (%s); restarting",
                self._name,
                error,
                extra={"source": self.name},
            )
            await self._publish_gap(app, f"watcher failed: {error}", failure.since, None)
            ready()
            await app.clock.sleep(min(self._poll_interval * 2 ** min(failures, 10), _MAX_BACKOFF))

    async def _announce_missing(self, app: App, occupied: bool) -> None:
        if self._missing:
            return
        self._missing = True
        self._counters["root_missing"] += 1
        await self._publish_changes(app, self._tree.clear())
        if occupied:
            reason = "not a directory"
        else:
            reason = "removed" if self._snapshot_taken else "missing"
        self._snapshot_taken = True  # of an empty tree: whatever appears later is reported
        logger.warning(
            "file source %s: %s is %s; waiting for it",
            self._name,
            self._path,
            reason,
            extra={"source": self.name},
        )
        await self._publish_root(app, ROOT_MISSING, reason)

    async def _watch(
        self,
        app: App,
        root: str,
        dirs: list[str] | None,
        *,
        polling: bool,
        ready: Callable[[], None],
    ) -> Failure | None:
        """Watch *root* until it is gone or replaced or must be watched anew (``None``), or
        the watcher fails. *dirs*: watch these one by one instead of *root* recursively.
        """
        tree = self._tree
        lock = self._lock
        assert lock is not None
        hook = StopHook()
        # Polls miss changes within the second of the previous one: look again once quiet
        # after anything happened.
        polls = polling or watchfiles_polls()
        send, receive = anyio.create_memory_object_stream[Message](0)
        async with anyio.create_task_group() as tg, receive:
            try:
                watch = partial(
                    pump,
                    [root] if dirs is None else dirs,
                    send,
                    hook,
                    recursive=dirs is None and self._recursive,
                    debounce=self._debounce,
                    poll_interval=self._poll_interval,
                    polling=polling,
                    polls=polls,
                )
                tg.start_soon(watch, name=f"watch {self._name}")
                await hook.ready.wait()
                if not hook.live:
                    message = await receive.receive()
                    assert isinstance(message, Exception)
                    return Failure(message, live=False, batches=0, since=app.clock.now())
                identity = await self._in_thread(root_identity, root)
                if identity is None:
                    return None  # gone already
                if self._snapshot_taken:
                    changes = await self._in_thread(tree.rescan)
                    self._counters["rescans"] += 1
                else:
                    await self._in_thread(tree.adopt)
                    self._snapshot_taken = True
                    changes = []
                if self._missing:
                    self._missing = False
                    await self._publish_root(app, ROOT_RESTORED, None)
                await self._publish_changes(app, changes)
                self._app = app
                ready()
                batches = 0
                verify_since: datetime | None = None
                verify_countdown = 0
                dirty = False
                async for message in receive:
                    if isinstance(message, Exception):
                        return Failure(message, live=True, batches=batches, since=app.clock.now())
                    if message:
                        batches += 1
                        dirty = polls
                        self._counters["batches"] += 1
                        async with lock:
                            changes, now_identity = await self._in_thread(
                                _reconcile, tree, message, root
                            )
                            await self._publish_changes(app, changes)
                        if len(message) >= _VERIFY_AT and not polls:  # polls cannot overflow
                            if verify_since is None:
                                verify_since = app.clock.now()
                            verify_countdown = _VERIFY_LATEST
                        else:
                            verify_countdown -= 1
                    elif self._walker.unreadable:  # the watcher was quiet: can they be read now?
                        async with lock:
                            changes, now_identity = await self._in_thread(_probe, tree, root)
                            await self._publish_changes(app, changes)
                    else:  # the watcher was quiet for a while
                        now_identity = await self._in_thread(root_identity, root)
                    if now_identity != identity or self._walker.replan:
                        return None
                    if verify_since is not None and (not message or verify_countdown <= 0):
                        await self._verify(app, verify_since)
                        verify_since = None
                        dirty = False
                    elif dirty and not message:
                        dirty = False
                        async with lock:
                            changes = await self._in_thread(tree.rescan)
                            self._counters["rescans"] += 1
                            await self._publish_changes(app, changes)
                return None  # the watcher stopped by itself: start again
            finally:
                self._app = None
                hook.set()  # the worker thread sees it within one step and returns
                tg.cancel_scope.cancel()
        return None  # cancelled from outside: the caller is being cancelled too


def _probe(tree: Tree, root: str) -> tuple[list[FileChange], tuple[int, int] | None]:
    """Look into the unreadable directories and check the root, in one trip to a thread."""
    return tree.probe(), root_identity(root)


def _reconcile(
    tree: Tree, hints: set[tuple[Change, str]], root: str
) -> tuple[list[FileChange], tuple[int, int] | None]:
    """Reconcile a batch and check the root, in one trip to a worker thread."""
    return tree.reconcile(hints), root_identity(root)


def on_file_change(
    app: App,
    /,
    path: str | os.PathLike[str],
    *,
    pattern: str = "*",
    recursive: bool = True,
    debounce: float = 0.05,
    force_polling: bool = False,
    poll_interval: float = 0.3,
    follow_symlinks: bool = False,
    status_events: bool = False,
    **options: Unpack[BaseConsumerOptions],
) -> Callable[[H], H]:
    """Decorate a handler for the files created, modified or deleted under *path*.

    The handler receives one event per changed file that matches *pattern*: type
    ``"reactor.file.created"``, ``"reactor.file.modified"`` or ``"reactor.file.deleted"``,
    subject the path relative to *path* (``/`` separators), data ``{"path", "change",
    "root", "size", "mtime", "batch", "batch_size"}``, and nothing else. Files present when
    the app starts are not reported. Changes are batched for up to *debounce* seconds; the
    events of each file are handled in order (``ordered_by``), different files concurrently.

    The source's status events, which name no file, are published too:
    ``"reactor.file.root_missing"`` and ``"reactor.file.root_restored"`` when the directory
    disappears and comes back, and ``"reactor.source.gap"`` when changes were found that the
    watcher had not reported (they follow as file events). Their CloudEvents source is the
    file source's, ``/reactor/files/<name>``: subscribe to them with
    ``app.subscribe("*", handler, source="/reactor/files/<name>")`` (or a narrower type
    such as ``"reactor.file.root_*"``), or pass ``status_events=True`` to hand them to this
    handler as well (then check ``event.type``).

    :param app: the app to add the source and the subscription to
    :param path: the directory to watch; it may be missing when the app starts
    :param pattern: a glob on the file's path relative to *path*, with ``/`` separators and
        case-sensitive; default all files. Without a ``/`` it is matched against the file
        name alone (``"*.csv"`` matches ``a/b/x.csv``); with one, against the whole relative
        path, where ``*``, ``?`` and ``[...]`` never match ``/`` and ``**`` as a whole path
        segment matches any number of directories (``"data/**/*.csv"`` matches
        ``data/x.csv`` and ``data/a/b/x.csv``). ``*`` matches names starting with a dot too.
    :param recursive: watch subdirectories too
    :param debounce: the longest time (seconds) a change waits to be batched with later
        ones; a batch also ends as soon as no change arrived for a fifth of it (at least
        5 ms, at most 50 ms)
    :param force_polling: poll the tree instead of using the OS notifications (network and
        container mounts without inotify). ``False`` leaves the choice to watchfiles, which
        polls on WSL, when ``WATCHFILES_FORCE_POLLING`` is set, or when the OS watcher is
        unavailable
    :param poll_interval: seconds between polls when polling, and between checks for a
        missing directory (on the app's clock)
    :param follow_symlinks: follow symbolic links; by default none is, and nothing outside
        the directory is ever reported (see the module documentation)
    :param status_events: also hand the handler the source's status events (root missing,
        root restored, gap), which have no path; by default it gets file events only
    :param options: the consumer's options (:class:`~reactor.BaseConsumerOptions`). ``name``
        is also the source's name in ``/reactor/files/<name>``; ``ordered_by`` defaults to
        :func:`by_path` here, which handles the events of one file in order (``None``: no
        ordering)
    :return: a decorator that subscribes the handler and returns it unchanged
    :raises TypeError: an option of the wrong type, or an unknown keyword argument
    :raises ValueError: a bad option, *path* is not a directory, or *name* is taken
    """
    validators.keywords("on_file_change", options, BaseConsumerOptions)
    validators.boolean("status_events", status_events)
    watch: WatchOptions = {
        "pattern": pattern,
        "recursive": recursive,
        "debounce": debounce,
        "force_polling": force_polling,
        "poll_interval": poll_interval,
        "follow_symlinks": follow_symlinks,
    }
    # Check the options now, where the mistake is, not when the handler is decorated.
    FileChangeSource(path, name="check", **watch)
    if "ordered_by" not in options:  # absent, not None: None asks for no ordering
        options["ordered_by"] = by_path

    def decorate(handler: H) -> H:
        name = options.get("name")
        source = FileChangeSource(
            path, name=default_name(handler) if name is None else name, **watch
        )
        run_with_subscription(
            app,
            source,
            "*" if status_events else "reactor.file.*",
            handler,
            events_from=source.uri,
            where=None if status_events else is_file_event,
            **options,
        )
        return handler

    return decorate
