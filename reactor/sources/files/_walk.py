"""Walks of the watched tree: its files, the directories to watch, the unreadable ones.

Every function and method here does blocking file-system calls; the source runs them on a
worker thread, one call at a time.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable
from typing import TypeAlias

from ._filters import RootPaths

logger = logging.getLogger("reactor.sources.files")

#: (inode, size, mtime in ns): what a rescan compares to tell whether a file changed.
Sig: TypeAlias = tuple[int, int, int]


class Walker:
    """Walks the tree for its matching files and for the directories to watch.

    It keeps the directories found unreadable: each is logged once (a warning naming it),
    and a directory that becomes unreadable or readable again sets :attr:`replan`, since
    the watcher must then be set up again (see :meth:`plan`).
    """

    def __init__(
        self, paths: RootPaths, match: Callable[[str], bool], *, recursive: bool, name: str
    ) -> None:
        self.paths = paths
        self.match = match
        self.recursive = recursive
        self.name = name
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

    def mark_unreadable(self, rel: str, error: OSError | None) -> None:
        """Note that the directory *rel* cannot be read (logged the first time ever)."""
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
                self.paths.absolute(rel),
                error.strerror if error is not None and error.strerror else "permission denied",
                extra={"source": self.name},
            )

    def mark_readable(self, rel: str) -> None:
        """Note that the directory *rel* can be read (again)."""
        if rel in self.unreadable:
            self.unreadable.discard(rel)
            self.replan = True

    def scan(self, base: str = "") -> dict[str, Sig]:
        """Return the matching files under the directory *base* ("" for the root)."""
        found: dict[str, Sig] = {}
        follow = self.paths.follow
        seen: set[tuple[int, int]] = set()
        stack = [base]
        while stack:
            rel_dir = stack.pop()
            denied: OSError | None = None
            try:
                with os.scandir(self.paths.absolute(rel_dir)) as entries:
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
                self.mark_unreadable(rel_dir, denied)
            else:
                self.mark_readable(rel_dir)
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
        follow = self.paths.follow
        stack = [""]
        while stack:
            rel_dir = stack.pop()
            path = self.paths.absolute(rel_dir)
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
                self.mark_unreadable(rel_dir, exc)
                continue
            except OSError:
                continue  # vanished
            found.append(path)
            stack.extend(children)
        for rel in self.unreadable - unreadable:
            self.mark_readable(rel)
        self.replan = False
        self.one_by_one = bool(unreadable) or self.forced
        if not self.one_by_one or "" in unreadable:
            self.one_by_one = False
            return None
        found.sort()
        return found


def can_list(path: str) -> bool:
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


def root_identity(path: str) -> tuple[int, int] | None:
    """Return the (device, inode) of the directory *path*, or ``None`` if it is not one."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode):
        return None
    return (st.st_dev, st.st_ino)


def resolve_root(path: str) -> tuple[str | None, bool]:
    """Return the real path of the directory *path* (or ``None``), and whether *path* exists."""
    if not os.path.isdir(path):
        return None, os.path.lexists(path)
    return os.path.realpath(path), True


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
