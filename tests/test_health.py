"""``app.health()``: readiness, sources started, a stuck queue, in virtual time."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import pytest
from anyio.abc import TaskStatus

from reactor import Event, Health, Reactor
from reactor.abc import App, Received, Source
from reactor.queues.memory import MemoryQueue
from reactor.testing import VirtualClock

pytestmark = pytest.mark.anyio


class Gate(Source):
    """A source that reports ready only when the test opens its gate."""

    def __init__(self) -> None:
        self.opened = anyio.Event()
        self.waiting = anyio.Event()

    @property
    def name(self) -> str:
        """``"gate"``."""
        return "gate"

    async def run(
        self, app: App, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Wait for the gate, then report ready and wait to be cancelled."""
        self.waiting.set()
        await self.opened.wait()
        task_status.started()
        await anyio.sleep_forever()


async def test_an_app_is_ready_only_while_it_runs() -> None:
    app = Reactor()
    before = app.health()
    async with app:
        running = app.health()
    after = app.health()
    assert before == after
    assert before == Health(
        ready=False,
        state="idle",
        sources_started=False,
        queue_depth=0,
        in_flight=0,
        stalled_for=0.0,
        settle_failures=0,
        problems=("the app is idle, not running",),
    )
    assert running.ready and running.state == "running" and running.sources_started
    assert running.problems == ()
    assert running.to_dict()["problems"] == []


async def test_an_app_whose_sources_have_not_started_is_not_ready() -> None:
    app = Reactor()
    gate = Gate()
    app.add_source(gate)
    seen: list[Health] = []
    async with anyio.create_task_group() as tg:

        async def start() -> None:
            async with app:
                seen.append(app.health())

        tg.start_soon(start)
        await gate.waiting.wait()
        seen.append(app.health())
        gate.opened.set()
    starting, started = seen
    # Running (it takes events) while its sources start, but not ready yet.
    assert (starting.ready, starting.state, starting.sources_started) == (False, "running", False)
    assert starting.problems == ("not every source has started",)
    assert started.ready


async def test_a_queue_that_holds_events_without_progress_is_stuck() -> None:
    clock = VirtualClock()
    app = Reactor(clock=clock, max_in_flight=1)
    release = anyio.Event()
    handled: list[str] = []

    @app.subscribe("job")
    async def work(event: Event) -> None:
        await release.wait()
        handled.append(event.id)

    async with app:
        await app.publish("job")
        await app.publish("job")
        await anyio.wait_all_tasks_blocked()
        first = app.health(stuck_after=60)
        await clock.advance(59)
        patient = app.health(stuck_after=60)
        await clock.advance(1)
        stuck = app.health(stuck_after=60)
        release.set()
        await anyio.wait_all_tasks_blocked()
        recovered = app.health(stuck_after=60)
    assert (first.queue_depth, first.in_flight, first.stalled_for, first.ready) == (1, 1, 0, True)
    assert (patient.stalled_for, patient.ready) == (59, True)
    assert (stuck.stalled_for, stuck.ready) == (60, False)
    assert stuck.problems == ("the queue has held 1 event(s) for 60 s without progress",)
    assert recovered.ready and recovered.stalled_for == 0
    assert len(handled) == 2


def test_stuck_after_must_be_seconds() -> None:
    with pytest.raises(ValueError, match="stuck_after"):
        Reactor().health(stuck_after=-1)


class FlakySettleQueue(MemoryQueue):
    """A memory queue that needs acks and fails to store its first settlement."""

    needs_ack = True

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    async def settle(
        self, done: Sequence[Received], progress: Sequence[tuple[Received, str]]
    ) -> None:
        """Fail the first call, as a full disk would."""
        self.calls += 1
        if self.calls == 1:
            raise OSError(28, "No space left on device")


async def test_an_app_whose_settlements_fail_is_not_ready_until_they_succeed() -> None:
    clock = VirtualClock()
    queue = FlakySettleQueue()
    app = Reactor(queue=queue, clock=clock)

    @app.subscribe("job")
    async def handler(event: Event) -> None: ...

    with anyio.fail_after(20):
        async with app:
            await app.publish_and_wait("job")
            await anyio.wait_all_tasks_blocked()
            failing = app.health()
            await clock.advance(1)  # past the settlement's retry backoff
            await anyio.wait_all_tasks_blocked()
            recovered = app.health()
    assert (failing.ready, failing.settle_failures) == (False, 1)
    assert failing.problems == ("the queue failed to store settlements 1 time(s) in a row",)
    assert (recovered.ready, recovered.settle_failures, queue.calls) == (True, 0, 2)
