"""The snapshot of the watched tree, and the rules that turn the watcher's hints into changes.

The watcher's reports are taken as hints of which paths to look at: each hinted path is
checked against the file system and against the snapshot (path to inode, size and mtime,
for the files that match the pattern). Every method here does blocking file-system calls;
the source runs them on a worker thread, one call at a time.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable

from watchfiles import Change

from ._events import ChangeKind, FileChange
from ._filters import RootPaths
from ._walk import Sig, Walker, can_list


class Tree:
    """The snapshot of the watched tree: the matching files with their signatures."""

    def __init__(self, paths: RootPaths, walker: Walker) -> None:
        self.paths = paths
        self.walker = walker
        self.files: dict[str, Sig] = {}
        # Directories that hold known files, with how many: a removed directory that is
        # in here is rescanned so that each file under it is reported deleted.
        self.dirs: dict[str, int] = {}

    # bookkeeping

    def _add(self, rel: str, sig: Sig) -> None:
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

    def reconcile(self, hints: Iterable[tuple[Change, str]]) -> list[FileChange]:
        """Turn one batch of watcher reports into the changes of matching files, by path."""
        kinds: dict[str, set[Change]] = {}
        parents: dict[str, str | None] = {}
        for change, path in hints:
            rel = self.paths.canonical(path, parents)
            if rel is None or (not self.walker.recursive and "/" in rel):
                continue
            kinds.setdefault(rel, set()).add(change)
        out: list[FileChange] = []
        subtrees: list[str] = []
        regular: list[tuple[str, os.stat_result]] = []
        for rel in sorted(kinds):
            st = self.paths.stat(rel)
            if st is not None and stat.S_ISREG(st.st_mode):
                regular.append((rel, st))
                continue
            if rel in self.files:  # gone, or no longer a regular file
                self._remove(rel)
                out.append(FileChange(rel, "deleted", None, None))
            is_dir = st is not None and stat.S_ISDIR(st.st_mode)
            if not is_dir:
                self.walker.unreadable.discard(rel)  # gone: nothing to read again
            elif self.walker.one_by_one and Change.added in kinds[rel]:
                self.walker.replan = True  # a new directory, which nothing watches yet
            # A directory created or moved in is reported alone by the native watchers (its
            # files may even predate the watch on it), one removed or moved out likewise: look
            # inside. A "modified" directory (polling) only means its entries changed, and
            # those are reported one by one; but a change of its permissions (native) may
            # have made its files visible or invisible: look inside if it did.
            if (
                (is_dir and self.walker.recursive and kinds[rel] & {Change.added, Change.deleted})
                or (not is_dir and rel in self.dirs)
                or (
                    is_dir
                    and self.walker.recursive
                    and Change.modified in kinds[rel]
                    and can_list(self.paths.absolute(rel)) == (rel in self.walker.unreadable)
                )
            ):
                if not any(rel.startswith(done + "/") for done in subtrees):
                    subtrees.append(rel)
                    out.extend(self.rescan(rel))
        for rel, st in regular:
            if any(rel.startswith(done + "/") for done in subtrees) or not self.walker.match(rel):
                continue
            sig = (st.st_ino, st.st_size, st.st_mtime_ns)
            old = self.files.get(rel)
            kind: ChangeKind
            if old is None:
                kind = "created"
            elif old == sig and kinds[rel] == {Change.added}:
                continue  # already known as it is (seen by the snapshot first)
            else:
                kind = "modified"
            self._add(rel, sig)
            out.append(FileChange(rel, kind, st.st_size, st.st_mtime_ns))
        out.sort(key=lambda c: c.rel)
        return out

    def probe(self) -> list[FileChange]:
        """Look again into each unreadable directory that can be read now."""
        out: list[FileChange] = []
        for rel in sorted(self.walker.unreadable):
            path = self.paths.absolute(rel)
            if not os.path.isdir(path):
                self.walker.unreadable.discard(rel)
            elif can_list(path):
                out.extend(self.rescan(rel))
        out.sort(key=lambda c: c.rel)
        return out

    def adopt(self) -> None:
        """Take the snapshot of the whole tree without reporting anything."""
        self.clear()
        for rel, sig in self.walker.scan().items():
            self._add(rel, sig)

    def rescan(self, base: str = "") -> list[FileChange]:
        """Rescan *base* and return (and apply) its differences from the snapshot."""
        found = self.walker.scan(base)
        prefix = base + "/"
        known = self.files if not base else [rel for rel in self.files if rel.startswith(prefix)]
        out: list[FileChange] = []
        for rel in [rel for rel in known if rel not in found]:
            self._remove(rel)
            out.append(FileChange(rel, "deleted", None, None))
        for rel, sig in found.items():
            old = self.files.get(rel)
            if old != sig:
                self._add(rel, sig)
                out.append(
                    FileChange(rel, "created" if old is None else "modified", sig[1], sig[2])
                )
        out.sort(key=lambda c: c.rel)
        return out

    def clear(self) -> list[FileChange]:
        """Forget every file and return them as deleted."""
        out = [FileChange(rel, "deleted", None, None) for rel in sorted(self.files)]
        self.files.clear()
        self.dirs.clear()
        return out
