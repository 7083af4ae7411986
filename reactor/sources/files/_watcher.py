"""The bridge to watchfiles: :func:`pump` runs ``awatch`` and hands its batches over.

``awatch`` waits for changes in a worker thread of anyio's default limiter, in Rust
(inotify, FSEvents or ReadDirectoryChangesW through the ``notify`` crate, or polling).
"""

from __future__ import annotations

import os
import platform
from contextlib import aclosing
from datetime import datetime
from typing import Final, TypeAlias, cast

import anyio
import attrs
from anyio.streams.memory import MemoryObjectSendStream
from watchfiles import Change, awatch

# How long the Rust side waits for changes before returning empty-handed: the quiet time
# after which a pending verification rescan runs, and the period of the root check while
# nothing happens (removals are normally reported as changes and noticed at once). When
# polling: twice the poll interval, within 0.2 s and this.
_TICK_MS: Final = 1000

#: What :func:`pump` hands over: a batch of (change, path) hints (empty when the watcher
#: was quiet for a tick), or the error that ended the watcher.
Message: TypeAlias = set[tuple[Change, str]] | Exception


class StopHook:
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
        """Whether ``awatch`` must stop (asked from its worker thread, after each step)."""
        if not self.live:
            self.live = True
            try:
                anyio.from_thread.run_sync(self.ready.set)
            except Exception:  # the loop is gone: nobody waits for readiness any more
                pass
        return self._stop

    def set(self) -> None:
        """Stop ``awatch``: its worker thread sees it within one step and returns."""
        self._stop = True


async def pump(
    paths: list[str],
    send: MemoryObjectSendStream[Message],
    hook: StopHook,
    *,
    recursive: bool,
    debounce: float,
    poll_interval: float,
    polling: bool,
    polls: bool,
) -> None:
    """Watch *paths* with ``awatch`` and send each batch, then the error that ends it, if any.

    :param paths: the directories to watch
    :param send: where the batches go (closed on return)
    :param hook: the ``stop_event``; ``hook.ready`` is set once the watcher is live, or
        has failed
    :param recursive: watch the directories' subdirectories too
    :param debounce: the source's *debounce*, in seconds
    :param poll_interval: the source's *poll_interval*, in seconds
    :param polling: make watchfiles poll
    :param polls: whether it polls (asked to or not): then a quiet tick is shorter
    """
    debounce_ms = round(debounce * 1000)
    step_ms = min(max(debounce_ms // 5, 5), 50)
    poll_ms = max(1, round(poll_interval * 1000))
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
class Failure:
    """How a watcher ended with an error."""

    error: Exception
    live: bool  # whether the watcher had started
    batches: int  # batches it delivered before failing
    since: datetime


def watchfiles_polls() -> bool:
    """Whether watchfiles polls although not asked to (its documented rules)."""
    setting = os.environ.get("WATCHFILES_FORCE_POLLING")
    if setting:
        return setting.lower() not in {"false", "disable", "disabled"}
    uname = platform.uname()
    return uname.system.lower() == "linux" and "microsoft-standard" in uname.release.lower()
