"""The app of ``tests/test_sqlite_poison.py``: one run of an app on an SQLiteQueue whose
consumer ``poison`` ends its own process when it handles the event ``p1``.

``python sqlite_poison_child.py FILE MODE RUNS MAX_REDELIVERIES [publish N]`` opens the
queue file and leaves ``async with app:`` once the queue is drained. With ``publish
N``, it first publishes ``p1`` and N innocent events ``e1``... after it, and every
handler waits until all have started: they are all handed out and in flight when
``p1`` ends the process.

Before anything else, every call of the handler appends one line ``<event id>
<attempt>`` to the file RUNS (``os.write`` on an ``O_APPEND`` descriptor: it survives
the process's death). MODE says how the handler of ``p1`` ends the process: ``exit``
(``os._exit(7)``, no cleanup at all), ``kill`` (SIGKILL to itself), ``system-exit``
(raises ``SystemExit(7)``) or ``keyboard-interrupt`` (raises ``KeyboardInterrupt``).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import anyio

import reactor
from reactor import Event, Reactor
from reactor.queues.sqlite import SQLiteQueue


def main(path: Path, mode: str, runs: Path, max_redeliveries: int, publish: int | None) -> None:
    app = Reactor(queue=SQLiteQueue(path, max_redeliveries=max_redeliveries))
    published = anyio.Event()
    in_flight = anyio.Event()
    started: list[str] = []

    @app.subscribe("order.*", name="poison", concurrency=100)
    async def poison(event: Event) -> None:
        descriptor = os.open(runs, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(descriptor, f"{event.id} {reactor.current_delivery().attempt}\n".encode())
        finally:
            os.close(descriptor)
        started.append(event.id)
        if publish is not None and len(started) == publish + 1:
            in_flight.set()
        await published.wait()
        if event.id != "p1":
            return
        if mode == "exit":
            os._exit(7)
        elif mode == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif mode == "system-exit":
            raise SystemExit(7)
        elif mode == "keyboard-interrupt":
            raise KeyboardInterrupt
        raise AssertionError(f"unknown mode {mode!r}")

    async def run() -> None:
        async with app:
            if publish is not None:
                await app.publish("order.created", {"n": 0}, id="p1")
                for n in range(1, publish + 1):
                    await app.publish("order.created", {"n": n}, id=f"e{n}")
                await in_flight.wait()
            published.set()

    anyio.run(run)


if __name__ == "__main__":
    file, mode, runs, limit, *rest = sys.argv[1:]
    main(Path(file), mode, Path(runs), int(limit), int(rest[1]) if rest else None)
