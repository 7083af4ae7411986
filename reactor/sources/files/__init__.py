"""File changes: ``reactor.file.created|modified|deleted`` events for a directory tree.

The manual (its events, guarantees, settings and statistics, and how to test it) is the
documentation's "File changes" page: ``docs/triggers/files.md`` in the repository
(``mkdocs serve`` to read the site).
"""

from reactor.abc import export_from

from ._events import FILE_CREATED as FILE_CREATED
from ._events import FILE_DELETED as FILE_DELETED
from ._events import FILE_MODIFIED as FILE_MODIFIED
from ._events import ROOT_MISSING as ROOT_MISSING
from ._events import ROOT_RESTORED as ROOT_RESTORED
from ._events import by_path as by_path
from ._source import FileChangeSource as FileChangeSource
from ._source import WatchOptions as WatchOptions
from ._source import on_file_change as on_file_change

__all__ = [
    "FILE_CREATED",
    "FILE_DELETED",
    "FILE_MODIFIED",
    "ROOT_MISSING",
    "ROOT_RESTORED",
    "FileChangeSource",
    "WatchOptions",
    "by_path",
    "on_file_change",
]

export_from(__name__, globals())
