"""Apps for the command line's signal tests, run in a child process.

One event is published by a tiny source; its handler prints ``started <id> <flavour>``,
works for a while, then prints ``finished <id>``. The test reads these lines to know
where the child is, so it never sleeps. ``flavour`` is ``trio``, ``asyncio`` or
``uvloop``: what the handler actually ran on.
"""

from __future__ import annotations

import asyncio

import anyio
import sniffio
from anyio.abc import TaskStatus

from reactor import Event, Reactor
from reactor.abc import App, Source


def say(line: str) -> None:
    """Print *line* at once: the parent process is waiting for it."""
    print(line, flush=True)  # noqa: T201 - the test reads the child's stdout


def flavour() -> str:
    """Name what this task runs on: ``trio``, ``asyncio`` or ``uvloop``."""
    if sniffio.current_async_library() == "trio":
        return "trio"
    loop_module = type(asyncio.get_running_loop()).__module__
    return "uvloop" if loop_module.startswith("uvloop") else "asyncio"


class OneJob(Source):
    """Publish a single ``job.created`` event once the app runs."""

    async def run(
        self, app: App, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Publish the event, then wait to be cancelled when the app stops."""
        task_status.started()
        await app.publish("job.created", {"job": 1}, source="/tests/cli")
        await anyio.sleep_forever()


class SlowToStop(OneJob):
    """Like :class:`OneJob`, but stopping takes a second of shielded cleanup."""

    async def run(
        self, app: App, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Publish the event, wait to be cancelled, then clean up for a second."""
        try:
            await super().run(app, task_status=task_status)
        finally:
            say("source stopping")
            with anyio.CancelScope(shield=True):
                await anyio.sleep(1)  # the simulated cleanup, e.g. closing a connection


def make_app(work_seconds: float, source: Source | None = None) -> Reactor:
    """Build an app whose only handler works for *work_seconds*."""
    app = Reactor()

    @app.subscribe("job.created")
    async def work(event: Event) -> None:
        say(f"started {event.id} {flavour()}")
        await anyio.sleep(work_seconds)  # the simulated work that a drain must wait for
        say(f"finished {event.id}")

    app.add_source(OneJob() if source is None else source)
    return app


#: Its handler finishes a second after it starts: a drain waits for it.
app = make_app(1.0)
#: Its handler would work for 30 s: only a second signal or the graceful timeout stop it.
stubborn = make_app(30.0)
#: Like ``stubborn``, and its source takes a second to stop.
slow_to_stop = make_app(30.0, SlowToStop())
