"""What the file source publishes: the event types, and the events built from changes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Final, Literal, TypeAlias

import attrs

from reactor import Event

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

ChangeKind: TypeAlias = Literal["created", "modified", "deleted"]

_TYPES: Final[dict[ChangeKind, str]] = {
    "created": FILE_CREATED,
    "modified": FILE_MODIFIED,
    "deleted": FILE_DELETED,
}
_FILE_TYPES: Final = frozenset(_TYPES.values())


@attrs.frozen
class FileChange:
    """How one matching file changed, as found against the snapshot of the tree."""

    rel: str  # the path relative to the root, "/" separators: the event's subject
    change: ChangeKind
    size: int | None
    mtime_ns: int | None


def by_path(event: Event) -> str | None:
    """Return the event's subject: the ordering key that keeps each file's events in order.

    :param event: a file event
    :return: the path relative to the watched root (``None`` for root events)
    """
    return event.subject


def is_file_event(event: Event) -> bool:
    """Whether *event* is about a file (the handler's filter unless it wants status events)."""
    # Routed by type first: only the two root events get this far besides file events.
    return event.type in _FILE_TYPES


def change_events(
    changes: Sequence[FileChange], *, source: str, root: str, batch: int, time: datetime
) -> Iterator[Event]:
    """Yield the events of one batch of changes, in the order given (by path).

    :param changes: the batch
    :param source: the file source's URI
    :param root: the watched directory as given (absolute)
    :param batch: the batch's number
    :param time: the events' time
    """
    size = len(changes)
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
        yield Event(type=_TYPES[c.change], source=source, subject=c.rel, time=time, data=data)


def root_event(type: str, *, source: str, root: str, reason: str | None, time: datetime) -> Event:
    """Return a :data:`ROOT_MISSING` (with its *reason*) or :data:`ROOT_RESTORED` event."""
    data: dict[str, Any] = {"root": root}
    if reason is not None:
        data["reason"] = reason
    return Event(type=type, source=source, time=time, data=data)
