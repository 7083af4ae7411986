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
