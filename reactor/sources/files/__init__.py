"""File changes: ``reactor.file.created|modified|deleted`` events for a directory tree.

::

    from reactor.sources import files

    @files.on_file_change(app, "inbox/", pattern="*.csv")
    async def load(event: Event) -> None:
        if event.type == files.FILE_CREATED:
            path = Path(event.data["root"]) / event.subject
            ...

The source adapts :func:`watchfiles.awatch` (inotify, FSEvents or ReadDirectoryChangesW
through the Rust ``notify`` crate, or polling); it walks the tree itself only to take the
snapshot it reconciles against and to rescan (below).

**One event per changed file.** Each file that changed in a debounced batch becomes one
event: type :data:`FILE_CREATED`, :data:`FILE_MODIFIED` or :data:`FILE_DELETED`, source
``/reactor/files/<name>``, subject the path relative to the watched root with ``/``
separators, and data ``{"path": subject, "change": "created" | "modified" | "deleted",
"root": the root as given (absolute), "size": bytes or null, "mtime": RFC 3339 or null,
"batch": n, "batch_size": k}``. Per-file events fan out like any other event, each file's
handler runs concurrently with the others', and ``ordered_by`` on the subject (the default
of :func:`on_file_change`) keeps the events of one file in order. The batch is kept in the
data: the events of batch *n* are published one after the other, sorted by path, each
with ``"batch": n`` and ``"batch_size": k``, so a consumer that needs whole batches can
gather *k* events of one batch number.

**State, not noise.** The watcher's reports are taken as hints of which paths to look at;
each hinted path is checked against the file system and against the source's snapshot of
the tree (path to inode, size and mtime, for the files that match the pattern), so:

* a file created and deleted within one batch yields nothing, a file deleted and
  re-created yields ``modified``;
* a directory moved into the tree yields ``created`` for every matching file inside it
  (the native watchers report only the directory), one moved out ``deleted`` for each;
* the union of the events published always describes how the tree changed since the
  source started: files present at start are not reported, everything after is.

Directories are never reported themselves, only the files in them.

**Paths never escape the root.** The root is resolved (``realpath``) each time watching
starts. With ``follow_symlinks=False`` (the default) no symbolic link is followed: a link is
not reported, nothing reached through a linked directory is reported under the link's
name, and a change the native watcher reports through a link to a directory inside the
root is reported under that directory's real path; anything whose real location is
outside the root is dropped (counted as ``escaped``). With ``follow_symlinks=True`` links
are followed wherever they point (that is what opting in means), and paths stay relative
to the root as seen through the links; a directory reachable by two paths is reported
under whichever the watcher picked.

**Interruptions are announced, never silent.**

* Root missing at start, or removed (or renamed away) while watching: every file still
  known is reported ``deleted``, then one :data:`ROOT_MISSING` event is published (data
  ``{"root": ..., "reason": "missing" | "removed" | "not a directory"}``) and the source
  checks for the directory every *poll_interval* seconds on the app's clock. When it is
  back, the source publishes :data:`ROOT_RESTORED`, rescans, and publishes ``created`` for
  what it finds.
* A directory replaced by another at the same path is rescanned and the differences
  published.
* A directory inside the tree that cannot be read (no read or search permission), there at
  start or made so later, is logged once (a warning naming it) and counted (``unreadable``
  in :meth:`FileChangeSource.statistics`); its files are invisible while it stays so: those
  known are reported ``deleted``, and once it can be read again (checked when the watcher
  has been quiet for a tick) what it holds is reported ``created``. Since one unreadable
  directory makes the recursive OS watcher (and the poller) fail as a whole, the source
  then watches each readable directory on its own, and sets the watcher up again when a
  directory appears or changes readability. The root itself unreadable at start is an
  error (``PermissionError``).
* Overflow: watchfiles does not pass the ``notify`` crate's "rescan" flag on (the kernel's
  inotify ``IN_Q_OVERFLOW`` arrives as an event without paths, which watchfiles drops;
  samuelcolvin/watchfiles#348), so an overflow cannot be seen directly. Instead, after any
  batch large enough that the kernel queue could have overflowed (1,000 changes or more),
  the source rescans the whole tree once the burst is over (the watcher has been quiet for
  a second, or 20 batches later at the latest). If the rescan finds changes that were not
  reported, it publishes a gap event (type ``reactor.source.gap``, reason
  ``"unreported changes"``, *missed* the number of them) and then the changes, so the final
  state is right even when events were lost. An overflow caused by many events on a few
  paths (small batches) goes unnoticed this way; :meth:`FileChangeSource.rescan` does the
  same check on demand.
* Polling (``force_polling``, or watchfiles' own choice) compares modification times to
  the second (the ``notify`` crate's PollWatcher), so a file changed again within the second
  of its previous change is not reported by the watcher. After any batch, once the watcher
  has been quiet for a tick (twice the poll interval, 0.2 to 1 s), the source rescans with
  its own full signature (inode, size, mtime in ns) and publishes what the polls missed as
  ordinary events: late, not lost, so without a gap event.
* A watcher failure (an error raised by watchfiles while watching) publishes a gap event
  with the error, and watching restarts (after a backoff on the app's clock) with a
  rescan. An OS watcher that cannot be set up at all (no inotify instance left, an
  unsupported file system) makes the source poll instead, with a warning in the log.
* Not detectable: when the inotify watch limit (``fs.inotify.max_user_watches``) is reached,
  ``notify`` fails to watch a new directory without telling watchfiles. Its files present
  when it appeared are still reported (the source looks inside every new directory), but
  later changes inside it are seen only by a rescan. Raise the limit, or use polling, for
  very large trees.

Gap events of this source carry the source's own URI as their CloudEvents ``source`` (not
the app's), like its root events, so that one subscription to that source sees them all.
The handler of :func:`on_file_change` gets file events only unless ``status_events=True``.

**Threads.** Each watching source keeps one worker thread of anyio's default thread limiter
(40 tokens unless raised) busy in watchfiles, and runs its own file-system work on a
thread of a private limiter of one: with dozens of file sources in one app, raise the
default limiter's ``total_tokens``.

**Bounds.** The watcher's pending changes are a set of (change, path) pairs inside
watchfiles, bounded by the number of distinct paths that changed; the source takes one
batch at a time and publishes it with ``await app.publish`` (backpressure: while the app's
queue is full, changes accumulate in that set and are coalesced). The snapshot holds one
entry per matching file in the tree.

Delivery: at-most-once across a crash like any in-memory source; while running, no change
is lost silently (see above). A ``modified`` may be repeated when a rescan and the watcher
both see one change.
"""

from __future__ import annotations

import logging
import math
import os
import platform
import re
import stat
from collections.abc import Callable, Iterable
from contextlib import aclosing
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, TypeAlias, TypeVar, cast
from urllib.parse import quote

import anyio
import attrs
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectSendStream
from watchfiles import Change, awatch

from reactor import UNSET, Event, Handler, KeyFunction, Unset
from reactor.abc import App, Source, default_name

if TYPE_CHECKING:
    from reactor import Retry

__all__ = [
    "FILE_CREATED",
    "FILE_DELETED",
    "FILE_MODIFIED",
    "ROOT_MISSING",
    "ROOT_RESTORED",
    "FileChangeSource",
    "by_path",
    "on_file_change",
]

logger = logging.getLogger("reactor.sources.files")

H = TypeVar("H", bound=Handler)
_T = TypeVar("_T")

#: The type of the event for a file that appeared (created, moved or copied in).
FILE_CREATED: Final = "reactor.file.created"
#: The type of the event for a file whose content or metadata changed, or that was replaced.
FILE_MODIFIED: Final = "reactor.file.modified"
#: The type of the event for a file that disappeared (deleted or moved out).
FILE_DELETED: Final = "reactor.file.deleted"
#: The type of the event published when the watched directory is missing or was removed.
ROOT_MISSING: Final = "reactor.file.root_missing"
#: The type of the event published when a missing watched directory is there again.
ROOT_RESTORED: Final = "reactor.file.root_restored"

_TYPES: Final = {"created": FILE_CREATED, "modified": FILE_MODIFIED, "deleted": FILE_DELETED}
_FILE_TYPES: Final = frozenset(_TYPES.values())

# How long the Rust side waits for changes before returning empty-handed: the quiet time
# after which a pending verification rescan runs, and the period of the root check while
# nothing happens (removals are normally reported as changes and noticed at once). When
# polling: twice the poll interval, within 0.2 s and this.
_TICK_MS: Final = 1000
# A batch this large may have come with a kernel queue overflow (16,384 raw inotify events
# by default, several per file): verify with a rescan once the burst is over.
_VERIFY_AT: Final = 1000
# ... or after this many further batches if the burst never stops.
_VERIFY_LATEST: Final = 20
# Backoff after a watcher failure, on the app's clock: poll_interval doubling up to this.
_MAX_BACKOFF: Final = 30.0

# (inode, size, mtime in ns): what a rescan compares to tell whether a file changed.
_Sig: TypeAlias = tuple[int, int, int]
_Message: TypeAlias = set[tuple[Change, str]] | Exception


def by_path(event: Event) -> str | None:
    """Return the event's subject: the ordering key that keeps each file's events in order.

    :param event: a file event
    :return: the path relative to the watched root (``None`` for root events)
    """
    return event.subject


# -- patterns ---------------------------------------------------------------------------


def _compile_pattern(pattern: str) -> Callable[[str], bool]:
    """Return a matcher for a relative POSIX path (see :class:`FileChangeSource`)."""
    if not isinstance(pattern, str):
        raise TypeError(f"pattern must be a str, got {type(pattern).__name__}")
    if not pattern:
        raise ValueError("pattern must not be empty; use '*' to match every file")
    if pattern.startswith("/") or pattern == ".." or pattern.startswith("../"):
        raise ValueError(f"pattern must be relative to the watched root, got {pattern!r}")
    if pattern == "*" or pattern == "**":
        return lambda rel: True
    if "/" not in pattern:
        name_match = re.compile(_translate(pattern) + r"\Z").match
        return lambda rel: name_match(rel.rpartition("/")[2]) is not None
    match = re.compile(_translate(pattern) + r"\Z").match
    return lambda rel: match(rel) is not None


def _translate(pattern: str) -> str:
    """Translate a glob to a regex: ``**`` spans directories, ``*`` and ``?`` do not."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            if pattern.startswith("**", i):
                start_of_part = i == 0 or pattern[i - 1] == "/"
                end = i + 2
                if start_of_part and pattern.startswith("/", end):
                    out.append("(?:.*/)?")  # "**/": zero or more whole directories
                    i = end + 1
                    continue
                if start_of_part and end == n:
                    out.append(".*")  # a trailing "**": everything below
                    i = end
                    continue
            out.append("[^/]*")
            while i < n and pattern[i] == "*":
                i += 1
            continue
        if c == "?":
            out.append("[^/]")
        elif c == "[":
            j = i + 1
            if j < n and pattern[j] in "!^":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 1
            if j >= n:
                out.append(re.escape(c))  # no closing bracket: a literal "["
            else:
                body = pattern[i + 1 : j]
                negate = body.startswith("!")
                if negate:
                    body = body[1:]
                # Escape all but the range dash: no regex set syntax leaks in.
                body = "".join(ch if ch == "-" else re.escape(ch) for ch in body)
                out.append(f"[^/{body}]" if negate else f"(?!/)[{body}]")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


# -- the tree: snapshot and reconciliation (synchronous, run in a worker thread) ---------


@attrs.frozen
class _FileChange:
    rel: str
    change: str  # "created" | "modified" | "deleted"
    size: int | None
    mtime_ns: int | None


class _Tree:
    """The snapshot of the watched tree and the rules that turn hints into changes.

    Every method does blocking file-system calls and is called from one worker thread at a
    time (the source awaits each call before the next).
    """

    def __init__(
        self,
        match: Callable[[str], bool],
        *,
        recursive: bool,
        follow_symlinks: bool,
        name: str,
    ) -> None:
        self.match = match
        self.recursive = recursive
        self.follow = follow_symlinks
        self.name = name
        self.root = ""
        self.prefix = ""
        self.files: dict[str, _Sig] = {}
        # Directories that hold known files, with how many: a removed directory that is
        # in here is rescanned so that each file under it is reported deleted.
        self.dirs: dict[str, int] = {}
        self.escaped = 0
        # Directories found unreadable and not readable again since, and every directory
        # ever found so (each is logged once).
        self.unreadable: set[str] = set()
        self.warned: set[str] = set()
        # Set when a directory became unreadable or readable, or (watching directories
        # one by one) one appeared: the watcher must be set up again.
        self.replan = False
        # Whether the watcher watches the readable directories one by one; always, once a
        # recursive watcher was refused where no unreadable directory could be found (a
        # link to one outside the tree, which ``notify`` follows).
        self.one_by_one = False
        self.forced = False

    def set_root(self, root: str) -> None:
        self.root = root
        self.prefix = root if root.endswith(os.sep) else root + os.sep

    # paths

    def _abs(self, rel: str) -> str:
        return os.path.join(self.root, *rel.split("/")) if rel else self.root

    def _rel(self, native: str) -> str:
        return native if os.sep == "/" else native.replace(os.sep, "/")

    def _canonical(self, path: str, parents: dict[str, str | None]) -> str | None:
        """Return the reported relative path for a path from the watcher, or ``None``."""
        prefix = self.prefix
        if not path.startswith(prefix):
            if path.rstrip(os.sep) != self.root:
                self.escaped += 1
            return None
        if self.follow:
            rel = self._rel(path[len(prefix) :])
            if ".." in rel.split("/"):
                self.escaped += 1
                return None
            return rel or None
        parent, name = os.path.split(path)
        if parent in parents:
            rel_parent = parents[parent]
        else:
            # Resolve the parent only: the leaf is the entry itself, a link not followed.
            real = os.path.realpath(parent)
            if real == self.root:
                rel_parent = ""
            elif real.startswith(prefix):
                rel_parent = self._rel(real[len(prefix) :])
            else:
                rel_parent = None
            parents[parent] = rel_parent
        if rel_parent is None:
            self.escaped += 1
            return None
        return f"{rel_parent}/{name}" if rel_parent else name

    def _stat(self, rel: str) -> os.stat_result | None:
        try:
            if self.follow:
                return os.stat(self._abs(rel))
            return os.lstat(self._abs(rel))
        except OSError:
            return None

    # bookkeeping

    def _unreadable(self, rel: str, error: OSError | None) -> None:
        if rel in self.unreadable:
            return
        self.unreadable.add(rel)
        self.replan = True
        if rel not in self.warned:
            self.warned.add(rel)
            logger.warning(
                "file source %s: cannot read the directory %s (%s); the files in it are "
                "not reported while it cannot be read",
                self.name,
                self._abs(rel),
                error.strerror if error is not None and error.strerror else "permission denied",
            )

    def _readable(self, rel: str) -> None:
        if rel in self.unreadable:
            self.unreadable.discard(rel)
            self.replan = True

    def _add(self, rel: str, sig: _Sig) -> None:
        if rel not in self.files:
            dirs = self.dirs
            for i, c in enumerate(rel):
                if c == "/":
                    d = rel[:i]
                    dirs[d] = dirs.get(d, 0) + 1
        self.files[rel] = sig

    def _remove(self, rel: str) -> None:
        del self.files[rel]
        dirs = self.dirs
        for i, c in enumerate(rel):
            if c == "/":
                d = rel[:i]
                left = dirs[d] - 1
                if left:
                    dirs[d] = left
                else:
                    del dirs[d]

    # operations

    def reconcile(self, hints: Iterable[tuple[Change, str]]) -> list[_FileChange]:
        """Turn one batch of watcher reports into the changes of matching files, by path."""
        kinds: dict[str, set[Change]] = {}
        parents: dict[str, str | None] = {}
        for change, path in hints:
            rel = self._canonical(path, parents)
            if rel is None or (not self.recursive and "/" in rel):
                continue
            kinds.setdefault(rel, set()).add(change)
        out: list[_FileChange] = []
        subtrees: list[str] = []
        regular: list[tuple[str, os.stat_result]] = []
        for rel in sorted(kinds):
            st = self._stat(rel)
            if st is not None and stat.S_ISREG(st.st_mode):
                regular.append((rel, st))
                continue
            if rel in self.files:  # gone, or no longer a regular file
                self._remove(rel)
                out.append(_FileChange(rel, "deleted", None, None))
            is_dir = st is not None and stat.S_ISDIR(st.st_mode)
            if not is_dir:
                self.unreadable.discard(rel)  # gone: nothing to read again
            elif self.one_by_one and Change.added in kinds[rel]:
                self.replan = True  # a new directory, which nothing watches yet
            # A directory created or moved in is reported alone by the native watchers (its
            # files may even predate the watch on it), one removed or moved out likewise: look
            # inside. A "modified" directory (polling) only means its entries changed, and
            # those are reported one by one; but a change of its permissions (native) may
            # have made its files visible or invisible: look inside if it did.
            if (
                (is_dir and self.recursive and kinds[rel] & {Change.added, Change.deleted})
                or (not is_dir and rel in self.dirs)
                or (
                    is_dir
                    and self.recursive
                    and Change.modified in kinds[rel]
                    and _can_list(self._abs(rel)) == (rel in self.unreadable)
                )
            ):
                if not any(rel.startswith(done + "/") for done in subtrees):
                    subtrees.append(rel)
                    out.extend(self.rescan(rel))
        for rel, st in regular:
            if any(rel.startswith(done + "/") for done in subtrees) or not self.match(rel):
                continue
            sig = (st.st_ino, st.st_size, st.st_mtime_ns)
            old = self.files.get(rel)
            if old is None:
                kind = "created"
            elif old == sig and kinds[rel] == {Change.added}:
                continue  # already known as it is (seen by the snapshot first)
            else:
                kind = "modified"
            self._add(rel, sig)
            out.append(_FileChange(rel, kind, st.st_size, st.st_mtime_ns))
        out.sort(key=lambda c: c.rel)
        return out

    def scan(self, base: str = "") -> dict[str, _Sig]:
        """Return the matching files under the directory *base* ("" for the root)."""
        found: dict[str, _Sig] = {}
        follow = self.follow
        seen: set[tuple[int, int]] = set()
        stack = [base]
        while stack:
            rel_dir = stack.pop()
            denied: OSError | None = None
            try:
                with os.scandir(self._abs(rel_dir)) as entries:
                    for entry in entries:
                        rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                        try:
                            if entry.is_dir(follow_symlinks=follow):
                                if self.recursive and _first_visit(entry, follow, seen):
                                    stack.append(rel)
                            elif entry.is_file(follow_symlinks=follow) and self.match(rel):
                                st = entry.stat(follow_symlinks=follow)
                                found[rel] = (st.st_ino, st.st_size, st.st_mtime_ns)
                        except PermissionError as exc:
                            denied = exc  # listed but not searchable: its files are hidden
                        except OSError:
                            continue  # vanished since listed
            except PermissionError as exc:
                denied = exc
            except OSError:
                continue  # a directory that vanished has no files for us
            if denied is not None:
                self._unreadable(rel_dir, denied)
            else:
                self._readable(rel_dir)
        return found

    def plan(self) -> list[str] | None:
        """Return the directories to watch one by one, or ``None`` to watch the root whole.

        A directory in the tree that cannot be read makes a recursive watcher fail as a
        whole (``notify`` adds the watches of a tree one after the other and gives up at the
        first one refused; its poller fails every poll): then each readable directory is
        watched on its own, the unreadable ones are not.
        """
        if not self.recursive:
            self.replan = False
            return None  # the root alone: unreadable subdirectories do not matter
        found: list[str] = []
        unreadable: set[str] = set()
        seen: set[tuple[int, int]] = set()
        follow = self.follow
        stack = [""]
        while stack:
            rel_dir = stack.pop()
            path = self._abs(rel_dir)
            children: list[str] = []
            try:
                with os.scandir(path) as entries:
                    for entry in entries:
                        try:
                            if not (
                                entry.is_dir(follow_symlinks=follow)
                                and _first_visit(entry, follow, seen)
                            ):
                                continue
                        except OSError:
                            continue
                        children.append(f"{rel_dir}/{entry.name}" if rel_dir else entry.name)
            except PermissionError as exc:
                unreadable.add(rel_dir)
                self._unreadable(rel_dir, exc)
                continue
            except OSError:
                continue  # vanished
            found.append(path)
            stack.extend(children)
        for rel in self.unreadable - unreadable:
            self._readable(rel)
        self.replan = False
        self.one_by_one = bool(unreadable) or self.forced
        if not self.one_by_one or "" in unreadable:
            self.one_by_one = False
            return None
        found.sort()
        return found

    def probe(self) -> list[_FileChange]:
        """Look again into each unreadable directory that can be read now."""
        out: list[_FileChange] = []
        for rel in sorted(self.unreadable):
            path = self._abs(rel)
            if not os.path.isdir(path):
                self.unreadable.discard(rel)
            elif _can_list(path):
                out.extend(self.rescan(rel))
        out.sort(key=lambda c: c.rel)
        return out

    def adopt(self) -> None:
        """Take the snapshot of the whole tree without reporting anything."""
        self.clear()
        for rel, sig in self.scan().items():
            self._add(rel, sig)

    def rescan(self, base: str = "") -> list[_FileChange]:
        """Rescan *base* and return (and apply) its differences from the snapshot."""
        found = self.scan(base)
        prefix = base + "/"
        known = self.files if not base else [rel for rel in self.files if rel.startswith(prefix)]
        out: list[_FileChange] = []
        for rel in [rel for rel in known if rel not in found]:
            self._remove(rel)
            out.append(_FileChange(rel, "deleted", None, None))
        for rel, sig in found.items():
            old = self.files.get(rel)
            if old != sig:
                self._add(rel, sig)
                out.append(
                    _FileChange(rel, "created" if old is None else "modified", sig[1], sig[2])
                )
        out.sort(key=lambda c: c.rel)
        return out

    def clear(self) -> list[_FileChange]:
        """Forget every file and return them as deleted."""
        out = [_FileChange(rel, "deleted", None, None) for rel in sorted(self.files)]
        self.files.clear()
        self.dirs.clear()
        return out


def _can_list(path: str) -> bool:
    """Whether the directory *path* can be listed and its entries looked at."""
    # Not os.access(): it asks about the real user, not the effective one.
    try:
        with os.scandir(path) as entries:
            for entry in entries:
                entry.stat(follow_symlinks=False)
                break
    except PermissionError:
        return False
    except OSError:
        return True  # vanished, or an entry did: not a matter of permission
    return True


def _root_identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode):
        return None
    return (st.st_dev, st.st_ino)


# -- the bridge to the watcher thread -------------------------------------------------------


class _StopHook:
    """The ``stop_event`` handed to ``awatch``: stops it, and tells when it is watching.

    watchfiles builds its Rust watcher (which installs the OS watches) before its first
    wait in a worker thread, whose first act after one step is to ask ``is_set()``: that
    first call is the proof that the watcher is live, which ``awatch`` gives no other way.
    """

    def __init__(self) -> None:
        self.ready = anyio.Event()
        self.live = False
        self._stop = False

    def is_set(self) -> bool:
        if not self.live:
            self.live = True
            try:
                anyio.from_thread.run_sync(self.ready.set)
            except Exception:  # the loop is gone: nobody waits for readiness any more
                pass
        return self._stop

    def set(self) -> None:
        self._stop = True


# -- the source -------------------------------------------------------------------------------


def _check_seconds(name: str, value: float, *, positive: bool) -> float:
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or value < 0
        or (positive and value == 0)
    ):
        raise ValueError(
            f"{name} must be a finite number of seconds {'> 0' if positive else '>= 0'}, "
            f"got {value!r}"
        )
    return float(value)


class FileChangeSource(Source):
    """Publish an event for every file created, modified or deleted under a directory.

    See the module documentation for the events, the guarantees and the limits.

    *pattern* is a glob on the file's path relative to the root, with ``/`` separators and
    case-sensitive: without a ``/`` it is matched against the file name alone (``"*.csv"``
    matches ``a/b/x.csv``); with one, against the whole relative path, where ``*``, ``?``
    and ``[...]`` never match ``/`` and ``**`` as a whole path segment matches any number
    of directories (``"data/**/*.csv"`` matches ``data/x.csv`` and ``data/a/b/x.csv``).
    ``*`` matches names starting with a dot too.

    :param path: the directory to watch (it may be missing at start)
    :param pattern: which files to report (default: all)
    :param recursive: watch subdirectories too
    :param debounce: the longest time (seconds) a change waits to be batched with later
        ones; a batch also ends as soon as no change arrived for a fifth of it (at least
        5 ms, at most 50 ms)
    :param force_polling: poll the tree instead of using the OS notifications (network and
        container mounts without inotify). ``False`` leaves the choice to watchfiles, which
        polls on WSL, when ``WATCHFILES_FORCE_POLLING`` is set, or when the OS watcher is
        unavailable
    :param poll_interval: seconds between polls when polling, and between checks for a
        missing root (on the app's clock)
    :param follow_symlinks: follow symbolic links (see the module documentation)
    :param name: the source's name, unique among the app's file sources: it makes the
        CloudEvents source ``/reactor/files/<name>`` (default: the path as given)
    :raises ValueError: a bad option, or *path* exists and is not a directory
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        pattern: str = "*",
        recursive: bool = True,
        debounce: float = 0.05,
        force_polling: bool = False,
        poll_interval: float = 0.3,
        follow_symlinks: bool = False,
        name: str | None = None,
    ) -> None:
        given = os.fspath(path)
        if not isinstance(given, str) or not given:
            raise ValueError(f"path must be a non-empty str or os.PathLike[str], got {path!r}")
        self._path = os.path.abspath(given)
        if os.path.exists(self._path) and not os.path.isdir(self._path):
            raise ValueError(f"{given!r} is not a directory: watch the directory that holds it")
        self._match = _compile_pattern(pattern)
        self._pattern = pattern
        self._recursive = bool(recursive)
        self._debounce = _check_seconds("debounce", debounce, positive=False)
        self._poll_interval = _check_seconds("poll_interval", poll_interval, positive=True)
        self._force_polling = bool(force_polling)
        self._follow = bool(follow_symlinks)
        if name is None:
            name = given
        elif not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty str, got {name!r}")
        self._name = name
        self._uri = "/reactor/files/" + quote(name, safe="")
        self._tree = _Tree(
            self._match, recursive=self._recursive, follow_symlinks=self._follow, name=name
        )
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
        tree = self._tree
        return {
            **self._counters,
            "escaped": tree.escaped,
            "files": len(tree.files),
            "unreadable": len(tree.warned),
        }

    def __repr__(self) -> str:
        return f"FileChangeSource({self._path!r}, pattern={self._pattern!r}, name={self._name!r})"

    # -- publishing

    async def _publish_changes(self, app: App, changes: list[_FileChange]) -> None:
        if not changes:
            return
        self._batch += 1
        batch, size = self._batch, len(changes)
        now = app.clock.now()
        root = self._path
        for c in changes:
            data: dict[str, Any] = {
                "path": c.rel,
                "change": c.change,
                "root": root,
                "size": c.size,
                "mtime": None
                if c.mtime_ns is None
                else datetime.fromtimestamp(c.mtime_ns / 1e9, UTC).isoformat(),
                "batch": batch,
                "batch_size": size,
            }
            await app.publish(
                Event(type=_TYPES[c.change], source=self._uri, subject=c.rel, time=now, data=data)
            )
        self._counters["changes"] += size

    async def _publish_root(self, app: App, type: str, reason: str | None) -> None:
        data: dict[str, Any] = {"root": self._path}
        if reason is not None:
            data["reason"] = reason
        await app.publish(Event(type=type, source=self._uri, time=app.clock.now(), data=data))

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

        def ready() -> None:
            nonlocal started
            if not started:
                started = True
                task_status.started()

        while True:
            real, occupied = await self._in_thread(_resolve_root, self._path)
            if real is None:
                await self._announce_missing(app, occupied)
                ready()
                await app.clock.sleep(self._poll_interval)
                continue
            tree = self._tree
            tree.set_root(real)
            if tree.replan or tree.one_by_one:  # directories may have come and gone since
                dirs = await self._in_thread(tree.plan)
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
            dirs = await self._in_thread(tree.plan)
            if denied and not started and "" in tree.unreadable:
                raise error  # the directory itself: nothing to watch at all
            if denied and dirs is None and not tree.forced:
                tree.forced = True
                dirs = await self._in_thread(tree.plan)
            if dirs != previous:
                continue
            if not failure.live and not polling and not denied:
                # The OS watcher could not be set up (inotify instance or watch limits,
                # an unsupported file system): polling works everywhere.
                logger.warning(
                    "file source %s: cannot use the OS file watcher (%s); polling instead",
                    self._name,
                    error,
                )
                polling = True
                continue
            failures = 0 if failure.batches else failures + 1
            self._counters["restarts"] += 1
            logger.warning("file source %s: the watcher failed (%s); restarting", self._name, error)
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
        logger.warning("file source %s: %s is %s; waiting for it", self._name, self._path, reason)
        await self._publish_root(app, ROOT_MISSING, reason)

    async def _watch(
        self,
        app: App,
        root: str,
        dirs: list[str] | None,
        *,
        polling: bool,
        ready: Callable[[], None],
    ) -> _Failure | None:
        """Watch *root* until it is gone or replaced or must be watched anew (``None``), or
        the watcher fails. *dirs*: watch these one by one instead of *root* recursively.
        """
        tree = self._tree
        lock = self._lock
        assert lock is not None
        hook = _StopHook()
        # Polls miss changes within the second of the previous one: look again once quiet
        # after anything happened.
        polls = polling or _watchfiles_polls()
        send, receive = anyio.create_memory_object_stream[_Message](0)
        async with anyio.create_task_group() as tg, receive:
            try:
                tg.start_soon(
                    self._pump,
                    [root] if dirs is None else dirs,
                    dirs is None and self._recursive,
                    hook,
                    send,
                    polling,
                    polls,
                    name=f"watch {self._name}",
                )
                await hook.ready.wait()
                if not hook.live:
                    message = await receive.receive()
                    assert isinstance(message, Exception)
                    return _Failure(message, live=False, batches=0, since=app.clock.now())
                identity = await self._in_thread(_root_identity, root)
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
                        return _Failure(message, live=True, batches=batches, since=app.clock.now())
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
                    elif tree.unreadable:  # the watcher was quiet: can they be read now?
                        async with lock:
                            changes, now_identity = await self._in_thread(_probe, tree, root)
                            await self._publish_changes(app, changes)
                    else:  # the watcher was quiet for a while
                        now_identity = await self._in_thread(_root_identity, root)
                    if now_identity != identity or tree.replan:
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

    async def _pump(
        self,
        paths: list[str],
        recursive: bool,
        hook: _StopHook,
        send: MemoryObjectSendStream[_Message],
        polling: bool,
        polls: bool,
    ) -> None:
        debounce_ms = round(self._debounce * 1000)
        step_ms = min(max(debounce_ms // 5, 5), 50)
        poll_ms = max(1, round(self._poll_interval * 1000))
        tick_ms = min(max(2 * poll_ms, 200), _TICK_MS) if polls else _TICK_MS
        async with send:
            try:
                async with aclosing(
                    awatch(
                        *paths,
                        watch_filter=None,
                        debounce=max(debounce_ms, step_ms),
                        step=step_ms,
                        stop_event=cast("anyio.Event", hook),
                        rust_timeout=tick_ms,
                        yield_on_timeout=True,
                        debug=False,
                        force_polling=True if polling else None,
                        poll_delay_ms=poll_ms,
                        recursive=recursive,
                        # Never skip what cannot be read (WATCHFILES_IGNORE_PERMISSION_DENIED):
                        # notify would then silently leave out whatever it had not reached.
                        ignore_permission_denied=False,
                    )
                ) as batches:
                    async for batch in batches:
                        await send.send(batch)
            except Exception as exc:  # handed to the source, which decides what to do
                hook.ready.set()
                await send.send(exc)
            finally:
                hook.ready.set()


@attrs.frozen
class _Failure:
    error: Exception
    live: bool  # whether the watcher had started
    batches: int  # batches it delivered before failing
    since: datetime


def _watchfiles_polls() -> bool:
    """Whether watchfiles polls although not asked to (its documented rules)."""
    setting = os.environ.get("WATCHFILES_FORCE_POLLING")
    if setting:
        return setting.lower() not in {"false", "disable", "disabled"}
    uname = platform.uname()
    return uname.system.lower() == "linux" and "microsoft-standard" in uname.release.lower()


def _resolve_root(path: str) -> tuple[str | None, bool]:
    """Return the real path of the directory *path* (or ``None``), and whether *path* exists."""
    if not os.path.isdir(path):
        return None, os.path.lexists(path)
    return os.path.realpath(path), True


def _probe(tree: _Tree, root: str) -> tuple[list[_FileChange], tuple[int, int] | None]:
    """Look into the unreadable directories and check the root, in one trip to a thread."""
    return tree.probe(), _root_identity(root)


def _reconcile(
    tree: _Tree, hints: set[tuple[Change, str]], root: str
) -> tuple[list[_FileChange], tuple[int, int] | None]:
    """Reconcile a batch and check the root, in one trip to a worker thread."""
    return tree.reconcile(hints), _root_identity(root)


def _is_file_event(event: Event) -> bool:
    # Routed by type first: only the two root events get this far besides file events.
    return event.type in _FILE_TYPES


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
    name: str | None = None,
    concurrency: int = 16,
    ordered_by: KeyFunction | None = by_path,
    timeout: float | Unset | None = UNSET,
    retry: Retry | Unset | None = UNSET,
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
    :param pattern: a glob on the relative path (``"*.csv"`` matches by file name;
        ``"data/**/*.csv"`` by path, ``**`` spanning directories); default all files
    :param recursive: watch subdirectories too
    :param debounce: the longest time (seconds) a change waits to be batched with later ones
    :param force_polling: poll instead of using OS notifications (mounts without inotify)
    :param poll_interval: seconds between polls when polling, and between checks for a
        missing directory
    :param follow_symlinks: follow symbolic links; by default none is, and nothing outside
        the directory is ever reported
    :param status_events: also hand the handler the source's status events (root missing,
        root restored, gap), which have no path; by default it gets file events only
    :param name: the consumer name, unique in the app, also the source's name in
        ``/reactor/files/<name>`` (default: the handler's qualified name)
    :param concurrency: the most events handled at once
    :param ordered_by: ``key(event)``: events with equal keys are handled one at a time, in
        order (default: by path; ``None`` for no ordering)
    :param timeout: seconds each attempt may take (``None``: no limit; default: the app's)
    :param retry: the retry policy (``None``: one attempt; default: the app's)
    :return: a decorator that subscribes the handler and returns it unchanged
    :raises ValueError: a bad option, *path* is not a directory, or *name* is taken
    """

    def make(source_name: str) -> FileChangeSource:
        return FileChangeSource(
            path,
            pattern=pattern,
            recursive=recursive,
            debounce=debounce,
            force_polling=force_polling,
            poll_interval=poll_interval,
            follow_symlinks=follow_symlinks,
            name=source_name,
        )

    # Check the options now, where the mistake is, not when the handler is decorated.
    make("check")

    def decorate(handler: H) -> H:
        source = make(default_name(handler) if name is None else name)
        app.subscribe(
            "*" if status_events else "reactor.file.*",
            handler,
            source=source.uri,
            where=None if status_events else _is_file_event,
            name=name,
            concurrency=concurrency,
            ordered_by=ordered_by,
            timeout=timeout,
            retry=retry,
        )
        app.add_source(source)
        return handler

    return decorate


def _first_visit(entry: os.DirEntry[str], follow: bool, seen: set[tuple[int, int]]) -> bool:
    """Whether the directory *entry* is met for the first time in this walk.

    Only links can lead to one directory twice (and into cycles): without following
    them, every directory is new.
    """
    if not follow:
        return True
    st = entry.stat()
    key = (st.st_dev, st.st_ino)
    if key in seen:
        return False
    seen.add(key)
    return True
