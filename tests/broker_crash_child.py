"""The processes of the broker kill -9 tests (``tests/test_broker_crash.py``).

Run as ``broker_crash_child.py worker|producer '<json Scenario>'``, each in its own
process started with :mod:`subprocess`; the test kills workers with SIGKILL and starts
them again.

**worker**: one process of the app under test. It builds a :class:`reactor.Reactor` on
``reactor.queues.from_url(scenario.url)`` (the broker queue: the same stream and group
in every worker, a consumer name of its own) with three subscriptions (see
:func:`subscriptions_for`) and runs it until SIGTERM, then drains and exits 0. It leaves
its evidence in its journal, one line per ``write()`` on a file opened ``O_APPEND`` (a
kill -9 loses nothing written; a torn last line is ignored by the reader), each line
ending with ``time.monotonic_ns()`` (one clock for every process of the machine):

* ``W <pid> <slot> <consumer name> <t>``: the process started;
* ``R <pid> <t>``: the app runs (``async with app:`` entered);
* ``S <subscription> <n> <attempt> <t>``: a handler started event *n*, at that attempt;
* ``E <subscription> <n> <attempt> <t>``: ... and is about to return;
* ``P <subscription> <n> <t>``: the queue's ``settle()`` returned, having stored that the
  subscription completed event *n* (per-consumer progress);
* ``K <n> <t>``: the queue's ``settle()`` returned, having acknowledged event *n*;
* ``BAD ...``: a handler got an event altered, or one not meant for it;
* ``Q <pid> <t>``: the app stopped and drained (after SIGTERM).

Its subscriptions: ``alpha`` (every event, returns at once), ``beta`` (every event, a few
milliseconds; half a second on the events ``n % 1000 == SLOW``, three seconds on
``n % 1000 == LONG``) and ``gamma`` (``job.b``
events only). With ``stall_purge`` (NATS) the client's purge requests never return.

Every quarter second it also replaces its status file with the app's statistics (JSON:
``pid``, ``t``, ``lag``, ``pending``, ``depth``, ``in_flight``, ``claimed``, ``errors``),
which the test polls to see the group settle at the end.

**producer**: publishes events ``e0``, ``e1``, ... at a paced rate from several tasks
until SIGTERM, then exits 0. Its journal has ``T <n>`` before each ``put()`` and
``A <n>`` once it returned (the broker acknowledged the write). It uses the queue without
an app (``async with queue: await queue.put(event)``), named with the workers' group as
a process that only publishes should be: it takes none of the group's events.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Literal

import anyio
import anyio.lowlevel
import attrs

import reactor
from reactor import Event, Reactor
from reactor.abc import EventQueue, Received
from reactor.queues import from_url

#: The CloudEvents source of every event the producer publishes.
SOURCE = "/broker-crash-test"
#: The subscriptions of the app under test, in the order they are subscribed.
SUBSCRIPTIONS = ("alpha", "beta", "gamma")

#: The events ``n`` with ``n % 1000 == SLOW`` take half a second in ``beta``.
SLOW = 999
#: The events ``n`` with ``n % 1000 == LONG`` take :data:`LONG_SECONDS` in ``beta``,
#: more than the kill test's ``claim_after``.
LONG = 500
LONG_SECONDS = 3.0

Mode = Literal["worker", "producer"]


def event_id(n: int) -> str:
    """The id of the *n*-th event."""
    return f"e{n}"


def number(event_id_: str) -> int:
    """The *n* of an event id made by :func:`event_id`."""
    return int(event_id_.removeprefix("e"))


def event_type(n: int) -> str:
    """The type of the *n*-th event: ``gamma`` subscribes to ``job.b`` only."""
    return "job.b" if n % 3 == 0 else "job.a"


def payload(n: int) -> dict[str, Any]:
    """The data of the *n*-th event (of varying size)."""
    return {"n": n, "text": "x" * (n * 37 % 200)}


def subscriptions_for(n: int) -> frozenset[str]:
    """The subscriptions that must handle the *n*-th event."""
    return frozenset(("alpha", "beta", "gamma") if event_type(n) == "job.b" else ("alpha", "beta"))


def handling_time(subscription: str, n: int) -> float:
    """Seconds the handler of *subscription* takes on event *n*.

    ``alpha`` returns at once; ``beta`` and ``gamma`` take a few milliseconds, so that a
    kill often lands while they run and ``alpha`` has settled already: the redelivery
    must then rerun them, and not ``alpha``.
    """
    if subscription == "beta":
        if n % 1000 == SLOW:  # alpha's completion is recorded long before
            return 0.5
        if n % 1000 == LONG:  # longer than claim_after: the process must keep its claim
            return LONG_SECONDS
        return 0.002 * (n % 5)
    if subscription == "gamma":
        return 0.003 if n % 2 else 0.0
    return 0.0


@attrs.frozen(kw_only=True)
class Scenario:
    """One process of a kill test.

    :ivar mode: ``worker`` (a process of the app under test) or ``producer``
    :ivar url: the queue URL (stream, group, consumer, claim_after ... as its query)
    :ivar journal: the evidence file (see the module docstring)
    :ivar status: the worker's statistics file
    :ivar log: where stderr goes
    :ivar backend: ``asyncio`` or ``trio``
    :ivar slot: the worker's number (0, 1, 2), kept by its restarts
    :ivar consumer: the worker's consumer name within the group (for the journal)
    :ivar rate: the producer's events per second, in all
    :ivar publishers: the producer's concurrent publishing tasks
    """

    mode: Mode
    url: str
    journal: str
    status: str = ""
    log: str = ""
    backend: str = "asyncio"
    slot: int = 0
    consumer: str = ""
    rate: float = 300.0
    publishers: int = 4
    #: Make the NATS client's purge requests never return (the queue deletes progress
    #: records that way after the ack): a kill then lands between the two for sure.
    stall_purge: bool = False


class Journal:
    """An append-only evidence file; each line is one ``write()`` (atomic with O_APPEND)."""

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, *lines: str) -> None:
        """Append *lines* at once."""
        if lines:
            os.write(self._fd, "".join(f"{line}\n" for line in lines).encode())


def now() -> int:
    """The time stamp of journal lines: one monotonic clock for every process."""
    return time.monotonic_ns()


def journal_settlements(queue: EventQueue, journal: Journal) -> None:
    """Make *queue* journal each settlement once its ``settle()`` returned (stored)."""
    settle = queue.settle

    async def journaled(done: Sequence[Received], progress: Sequence[tuple[Received, str]]) -> None:
        await settle(done, progress)
        t = now()
        journal.write(
            *(f"P {consumer} {number(item.event.id)} {t}" for item, consumer in progress),
            *(f"K {number(item.event.id)} {t}" for item in done),
        )

    # The dispatcher calls queue.settle() on the instance: the journal wraps the broker
    # queue's own implementation (one round trip for progress and acks), unchanged.
    setattr(queue, "settle", journaled)  # noqa: B010 - a method cannot be assigned directly


def _subscribe(app: Reactor, journal: Journal) -> None:
    def handler_for(name: str) -> Callable[[Event], Coroutine[Any, Any, None]]:
        async def handler(event: Event) -> None:
            attempt = reactor.current_delivery().attempt
            try:
                n = number(event.id)
            except ValueError:
                journal.write(f"BAD {name} {event.to_json().decode()!r}")
                return
            journal.write(f"S {name} {n} {attempt} {now()}")
            if (
                event.type != event_type(n)
                or event.source != SOURCE
                or event.data != payload(n)
                or name not in subscriptions_for(n)
            ):
                journal.write(f"BAD {name} {n} {event.to_json().decode()!r}")
            delay = handling_time(name, n)
            if delay:
                await anyio.sleep(delay)
            else:
                await anyio.lowlevel.checkpoint()
            journal.write(f"E {name} {n} {attempt} {now()}")

        return handler

    app.subscribe("job.*", handler_for("alpha"), name="alpha")
    app.subscribe("job.*", handler_for("beta"), name="beta")
    app.subscribe("job.b", handler_for("gamma"), name="gamma")


def _write_status(path: str, app: Reactor) -> None:
    stats = app.stats()
    status = {
        "pid": os.getpid(),
        "t": now(),
        "lag": stats.queue.lag,
        "pending": stats.queue.pending,
        "depth": stats.queue.depth,
        "in_flight": stats.in_flight,
        "claimed": stats.queue.claimed,
        "errors": stats.queue.errors,
        "last_error": stats.queue.last_error,
    }
    temporary = f"{path}.{os.getpid()}"
    with open(temporary, "w", encoding="utf-8") as file:
        json.dump(status, file)
    os.replace(temporary, path)


async def _report(path: str, app: Reactor) -> None:
    while True:
        _write_status(path, app)
        await anyio.sleep(0.25)


async def _until_sigterm() -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            return


def _stall_purges() -> None:
    import nats.js.client

    async def stalled(*args: Any, **kwargs: Any) -> bool:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    nats.js.client.JetStreamContext.purge_stream = stalled  # type: ignore[method-assign]


async def run_worker(scenario: Scenario) -> None:
    """Run one process of the app under test until SIGTERM (see the module docstring)."""
    journal = Journal(scenario.journal)
    journal.write(f"W {os.getpid()} {scenario.slot} {scenario.consumer} {now()}")
    if scenario.stall_purge:
        _stall_purges()
    queue = from_url(scenario.url)
    journal_settlements(queue, journal)
    app = Reactor(queue=queue, max_in_flight=200, graceful_timeout=60)
    _subscribe(app, journal)
    async with app:
        journal.write(f"R {os.getpid()} {now()}")
        async with anyio.create_task_group() as tg:
            tg.start_soon(_report, scenario.status, app)
            await _until_sigterm()
            tg.cancel_scope.cancel()
    # Leaving `async with app:` drained what this process had taken.
    _write_status(scenario.status, app)
    journal.write(f"Q {os.getpid()} {now()}")


async def run_producer(scenario: Scenario) -> None:
    """Publish paced events until SIGTERM (see the module docstring)."""
    journal = Journal(scenario.journal)
    async with from_url(scenario.url) as queue:
        journal.write(f"R {os.getpid()} {now()}")
        start = time.monotonic()

        async def publisher(first: int) -> None:
            for n in range(first, sys.maxsize, scenario.publishers):
                delay = start + n / scenario.rate - time.monotonic()
                if delay > 0:
                    await anyio.sleep(delay)
                journal.write(f"T {n}")
                event = Event(type=event_type(n), source=SOURCE, id=event_id(n), data=payload(n))
                await queue.put(event)
                journal.write(f"A {n}")

        async with anyio.create_task_group() as tg:
            for first in range(scenario.publishers):
                tg.start_soon(publisher, first)
            await _until_sigterm()
            tg.cancel_scope.cancel()
    journal.write(f"Q {os.getpid()} {now()}")


def main(argv: Sequence[str]) -> int:
    """``worker|producer '<json scenario>'``: run one process of a kill test."""
    if len(argv) != 2 or argv[0] not in ("worker", "producer"):
        sys.stderr.write("usage: broker_crash_child.py worker|producer '<json scenario>'\n")
        return 2
    scenario = Scenario(**json.loads(argv[1]))
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    target = run_worker if scenario.mode == "worker" else run_producer
    try:
        anyio.run(target, scenario, backend=scenario.backend)
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
