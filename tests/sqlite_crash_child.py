"""The worker process of ``tests/test_sqlite_crash.py``: an app on an SQLiteQueue that the
test kills with SIGKILL at random points, then restarts on the same file.

It also holds what the test and the worker agree on: which events are published
(:func:`event_type`, :func:`payload`, :func:`durable`), which consumers each event is
meant for (:func:`consumers_for`) and which deliveries end as dead letters
(:func:`dead_lettered`).

The worker leaves evidence, one fact per line, written with ``os.write`` on ``O_APPEND``
descriptors: what ``write()`` accepted survives a SIGKILL of the writer (the kernel has
it; a power loss is not simulated, so no fsync is needed):

* the ``acked`` file: ``T <n>`` before event *n* is published, ``A <n>`` once
  ``await app.publish()`` of it has returned (``publish_nowait()`` events get no ``A``);
* the run's journal: ``S <consumer> <n> <attempt> <retries>`` when a handler starts,
  ``F ...`` when it is about to return, ``X ...`` when it is about to raise, ``BAD ...``
  when the event differs from what was published; ``P <consumer> <n>`` and ``K <n>``
  once the queue's ``record_progress()`` and ``ack()`` have returned, that is once the
  settlement is committed to the file.

``python sqlite_crash_child.py serve`` is a fork server: it imports everything once,
then reads one JSON :class:`Scenario` per line on stdin and forks a worker for it, so a
kill costs a fork rather than an interpreter start. Messages on stdout, one per line,
each naming the worker's pid:

* ``pid <pid>``: forked;
* ``ready <pid>``: the worker's app is running (``async with app:`` entered);
* ``acked <pid>``: its publishers got their ``report_acked``-th acknowledgement;
* ``drained <pid> <depth> <in flight>``: a ``recover`` worker left ``async with app:``;
* ``in-use <pid> <message>``: another process owns the file (exit status 3);
* ``exit <pid> <code>``: the worker ended, with this exit status (minus the signal that
  killed it).

``python sqlite_crash_child.py run '<json scenario>'`` runs one scenario in the
foreground, to replay a seed by hand.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Literal

import anyio
import anyio.lowlevel
import attrs

import reactor
import reactor.queues.sqlite._queue as sqlite_module
from reactor import Backoff, Event, Reactor, Retry
from reactor.abc import Received
from reactor.queues.sqlite import SQLiteQueue

#: The CloudEvents source of every event the workers publish.
SOURCE = "/crash-test"
#: Attempts of the flaky consumer before it dead-letters an event.
FLAKY_ATTEMPTS = 2

Mode = Literal["crash", "recover", "publish", "hold"]
Synchronous = Literal["full", "normal"]


def event_id(n: int) -> str:
    """The id of the *n*-th event."""
    return f"e{n}"


def number(event_id_: str) -> int:
    """The *n* of an event id made by :func:`event_id`."""
    return int(event_id_.removeprefix("e"))


def event_type(n: int) -> str:
    """The type of the *n*-th event: ``slow`` subscribes to ``job.a`` only."""
    return "job.b" if n % 3 == 0 else "job.a"


def payload(n: int) -> dict[str, Any]:
    """The data of the *n*-th event (of varying size, so rows differ in length)."""
    return {"n": n, "text": f"event {n} " + "x" * (n * 37 % 300)}


def consumers_for(n: int) -> frozenset[str]:
    """The consumers the *n*-th event is meant for (by pattern and ``where`` filter)."""
    names = {"fast"}
    if event_type(n) == "job.a":
        names.add("slow")
    if n % 2 == 0:
        names.add("flaky")
    return frozenset(names)


def dead_lettered(consumer: str, n: int) -> bool:
    """Whether *consumer* fails every attempt on the *n*-th event (a dead letter)."""
    return consumer == "flaky" and n % 10 == 0


class FlakyError(Exception):
    """What the flaky consumer raises."""


@attrs.frozen(kw_only=True)
class Scenario:
    """One worker run.

    :ivar mode: ``crash``: publish events ``first`` to ``first + events - 1`` from
        ``publishers`` tasks while the consumers run, then wait to be killed;
        ``recover``: publish nothing, drain what the file holds, exit; ``publish``:
        publish to a consumer that never returns (nothing is acknowledged), then wait
        to be killed; ``hold``: own the file until killed
    """

    mode: Mode
    db: str
    journal: str
    acked: str = ""
    events: int = 0
    first: int = 0
    publishers: int = 8
    synchronous: Synchronous = "full"
    backend: str = "asyncio"
    max_in_flight: int = 1000
    #: When set, shrink the queue's in-memory read-ahead and read page so that a small
    #: backlog spills to the file and is read back page by page.
    read_ahead: int = 0
    #: In ``publish`` mode, report ``acked <pid>`` after this many acknowledgements.
    report_acked: int = 0
    log: str = ""


class Journal:
    """An append-only evidence file; each line is one ``write()`` (atomic in O_APPEND)."""

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, *lines: str) -> None:
        """Append *lines* at once."""
        if lines:
            os.write(self._fd, "".join(f"{line}\n" for line in lines).encode())


class JournaledQueue(SQLiteQueue):
    """An SQLiteQueue that journals each settlement once the queue reports it committed."""

    def __init__(self, path: str, journal: Journal, **options: Any) -> None:
        super().__init__(path, **options)
        self._journal = journal

    async def ack(self, received: Sequence[Received]) -> None:
        await super().ack(received)
        self._journal.write(*(f"K {number(item.event.id)}" for item in received))

    async def record_progress(self, progress: Sequence[tuple[Received, str]]) -> None:
        await super().record_progress(progress)
        self._journal.write(
            *(f"P {consumer} {number(item.event.id)}" for item, consumer in progress)
        )


def _say(*words: object) -> None:
    """Send one message line to the test (unbuffered: safe after fork, before a kill)."""
    os.write(1, (" ".join(str(word) for word in words) + "\n").encode())


def _subscribe(app: Reactor, journal: Journal) -> None:
    def handler_for(name: str) -> Callable[[Event], Coroutine[Any, Any, None]]:
        async def handler(event: Event) -> None:
            delivery = reactor.current_delivery()
            n = number(event.id)
            facts = f"{name} {n} {delivery.attempt} {delivery.retries}"
            if (
                event.type != event_type(n)
                or event.source != SOURCE
                or event.data != payload(n)
                or name not in consumers_for(n)
            ):
                journal.write(f"BAD {facts} {event.to_json().decode()!r}")
            journal.write(f"S {facts}")
            if name == "slow":
                # Mostly short; some long, so that events handed out from memory are still
                # running when later ones spill to the file and are read back.
                await anyio.sleep(0.02 if n % 7 == 0 else 0.001 * (n % 3))
            elif name == "flaky":
                await anyio.lowlevel.checkpoint()
                if dead_lettered(name, n) or (n % 7 == 0 and delivery.retries == 0):
                    journal.write(f"X {facts}")
                    raise FlakyError(f"flaky fails on event {n}")
            journal.write(f"F {facts}")

        return handler

    app.subscribe("job.*", handler_for("fast"), name="fast")
    app.subscribe("job.a", handler_for("slow"), name="slow")
    app.subscribe(
        "job.*",
        handler_for("flaky"),
        name="flaky",
        where=lambda event: isinstance(event.data, dict) and event.data.get("n", 1) % 2 == 0,
        retry=Retry(
            attempts=FLAKY_ATTEMPTS,
            backoff=Backoff(initial=0.001, maximum=0.001, jitter=False),
        ),
    )


def durable(n: int) -> bool:
    """Whether event *n* is published with ``await app.publish()`` (acknowledged once
    committed); the others go through ``app.publish_nowait()``, which may be lost."""
    return n % 11 != 5


async def _publish_all(app: Reactor, scenario: Scenario, acked: Journal) -> None:
    count = 0

    async def publisher(first: int) -> None:
        nonlocal count
        for n in range(first, scenario.first + scenario.events, scenario.publishers):
            acked.write(f"T {n}")
            if not durable(n):
                app.publish_nowait(event_type(n), payload(n), id=event_id(n), source=SOURCE)
                await anyio.lowlevel.checkpoint()
                continue
            await app.publish(event_type(n), payload(n), id=event_id(n), source=SOURCE)
            acked.write(f"A {n}")
            count += 1
            if count == scenario.report_acked:
                _say("acked", os.getpid())

    async with anyio.create_task_group() as tg:
        for first in range(scenario.first, scenario.first + scenario.publishers):
            tg.start_soon(publisher, first)


async def run(scenario: Scenario) -> None:
    """Run *scenario* (see :class:`Scenario`)."""
    if scenario.read_ahead:
        for name in ("READ_AHEAD", "READ_PAGE"):
            if not hasattr(sqlite_module, name):
                raise AssertionError(f"reactor.queues.sqlite has no {name} to shrink")
        sqlite_module.READ_AHEAD = scenario.read_ahead  # type: ignore[misc]
        sqlite_module.READ_PAGE = max(scenario.read_ahead // 3, 1)  # type: ignore[misc]
    journal = Journal(scenario.journal)
    acked = Journal(scenario.acked) if scenario.acked else None
    queue = JournaledQueue(scenario.db, journal, synchronous=scenario.synchronous)
    app = Reactor(queue=queue, max_in_flight=scenario.max_in_flight, graceful_timeout=60)
    if scenario.mode == "publish":

        @app.subscribe("job.*", name="stuck")
        async def stuck(event: Event) -> None:
            journal.write(f"S stuck {number(event.id)} {reactor.current_delivery().attempt} 0")
            await anyio.sleep_forever()

    elif scenario.mode != "hold":
        _subscribe(app, journal)
    async with app:
        _say("ready", os.getpid())
        if scenario.mode in ("crash", "publish"):
            assert acked is not None
            await _publish_all(app, scenario, acked)
            await anyio.sleep_forever()
        elif scenario.mode == "hold":
            await anyio.sleep_forever()
    # Leaving `async with app:` drained the queue (recover mode).
    stats = app.stats()
    _say("drained", os.getpid(), stats.queue.depth, stats.in_flight)


def _run_here(scenario: Scenario) -> int:
    if scenario.log:
        fd = os.open(scenario.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.dup2(fd, 2)
        os.close(fd)
        sys.stderr = open(2, "w", encoding="utf-8", buffering=1, closefd=False)
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("reactor.dispatch").setLevel(logging.CRITICAL)  # the flaky consumer
    try:
        anyio.run(run, scenario, backend=scenario.backend)
    except reactor.QueueInUseError as exc:
        _say("in-use", os.getpid(), str(exc))
        return 3
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        return 1
    sys.stderr.flush()
    return 0


def _serve() -> None:
    """Fork one worker per scenario line on stdin; report each one's pid and exit status."""
    # What anyio.run() imports on first use, imported once here instead of per worker.
    for backend in ("asyncio", "trio"):
        try:
            importlib.import_module(f"anyio._backends._{backend}")
        except ImportError:  # pragma: no cover - trio is a dev dependency
            pass
    for line in sys.stdin:
        if not line.strip():
            continue
        scenario = Scenario(**json.loads(line))
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                fd = os.open(os.devnull, os.O_RDONLY)
                os.dup2(fd, 0)
                os.close(fd)
                code = _run_here(scenario)
            finally:
                os._exit(code)
        _say("pid", pid)
        _, status = os.waitpid(pid, 0)
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        _say("exit", pid, code)


def main(argv: Sequence[str]) -> int:
    """``serve`` (fork server) or ``run <json scenario>``."""
    if len(argv) == 1 and argv[0] == "serve":
        _serve()
        return 0
    if len(argv) == 2 and argv[0] == "run":
        return _run_here(Scenario(**json.loads(argv[1])))
    sys.stderr.write("usage: sqlite_crash_child.py serve | run '<json scenario>'\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
