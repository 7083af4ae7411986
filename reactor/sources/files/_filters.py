"""Which paths are reported: the glob on relative paths, and the rules that keep paths in the root.

Both are pure path work: :class:`RootPaths` turns the paths the watcher reports into the
relative paths the events name, dropping what lies outside the root (through symbolic
links, unless they are followed), and looks at one entry without following a link.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable


def compile_pattern(pattern: str) -> Callable[[str], bool]:
    """Return a matcher for a relative POSIX path (see ``on_file_change``'s *pattern*).

    :raises TypeError: *pattern* is not a str
    :raises ValueError: *pattern* is empty or not relative
    """
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


class RootPaths:
    """The watched root's real path, and the mapping between the watcher's paths and ours.

    With *follow_symlinks* off, the parent of a reported path is resolved (the leaf is the
    entry itself, a link not followed), so a change seen through a link to a directory
    inside the root is named by that directory's real path; anything whose real location is
    outside the root is dropped and counted in :attr:`escaped`.
    """

    def __init__(self, *, follow_symlinks: bool) -> None:
        self.follow = follow_symlinks
        self.root = ""
        self.prefix = ""
        self.escaped = 0

    def set_root(self, root: str) -> None:
        """Take *root* (a real path) as the root from now on."""
        self.root = root
        self.prefix = root if root.endswith(os.sep) else root + os.sep

    def absolute(self, rel: str) -> str:
        """Return the native path of the relative path *rel* ("" for the root)."""
        return os.path.join(self.root, *rel.split("/")) if rel else self.root

    def _relative(self, native: str) -> str:
        return native if os.sep == "/" else native.replace(os.sep, "/")

    def canonical(self, path: str, parents: dict[str, str | None]) -> str | None:
        """Return the relative path to report for a path from the watcher, or ``None``.

        :param path: a native absolute path, as the watcher reports it
        :param parents: the parents resolved so far in this batch (a cache, updated)
        """
        prefix = self.prefix
        if not path.startswith(prefix):
            if path.rstrip(os.sep) != self.root:
                self.escaped += 1
            return None
        if self.follow:
            rel = self._relative(path[len(prefix) :])
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
                rel_parent = self._relative(real[len(prefix) :])
            else:
                rel_parent = None
            parents[parent] = rel_parent
        if rel_parent is None:
            self.escaped += 1
            return None
        return f"{rel_parent}/{name}" if rel_parent else name

    def stat(self, rel: str) -> os.stat_result | None:
        """Return the status of the entry *rel* (a link's own unless links are followed)."""
        try:
            if self.follow:
                return os.stat(self.absolute(rel))
            return os.lstat(self.absolute(rel))
        except OSError:
            return None
