"""Faults in handlers, queues and threads: the app survives them or fails loudly, never silently.

Each test here reproduces a defect found by fault injection (issue 10) through the
public API, on asyncio and trio.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Sequence

import anyio
import anyio.lowlevel
import pytest

from reactor import (
    Backoff,
    DeliveryTimeout,
    Event,
    HandlerCancelled,
    InternalTaskDied,
    Reactor,
    ReactorNotRunning,
    RedeliveryLimitExceeded,
    Retry,
)
from reactor.abc import Received
from reactor.queues.memory import MemoryQueue
from reactor.testing import VirtualClock

pytestmark = pytest.mark.anyio

#: Real seconds a test may take before it fails instead of hanging.
PATIENCE = 10


async def stray_cancellation() -> BaseException:
    """Return a cancellation exception whose cancel scope is gone: raising it later is a
    cancellation that no scope around the raiser caused (trio's cannot be constructed)."""
    with anyio.CancelScope() as scope:
        scope.cancel()
        try:
            await anyio.sleep(1)
        except anyio.get_cancelled_exc_class() as exc:
            return exc
    raise AssertionError("the cancelled scope did not cancel the sleep")


# -- a cancellation that no scope of reactor's caused -------------------------------


@pytest.mark.parametrize("policy", ["fast", "timeout", "ordered"])
async def test_a_stray_cancellation_is_the_handlers_failure_and_delivery_goes_on(
    policy: str,
) -> None:
    app = Reactor()
    calls = 0
    others: list[int] = []

    @app.subscribe(
        "job",
        name="cancels",
        retry=Retry(attempts=2, backoff=Backoff(initial=0, jitter=False)),
        timeout=60.0 if policy == "timeout" else None,
        ordered_by=(lambda event: event.subject) if policy == "ordered" else None,
    )
    async def cancels(event: Event) -> None:
        nonlocal calls
        calls += 1
        raise await stray_cancellation()

    @app.subscribe("other", name="unrelated")
    async def unrelated(event: Event) -> None:
        others.append(event.data)

    with anyio.fail_after(PATIENCE):
        async with app:
            receipt = await app.publish_and_wait("job", subject="k")
            for n in range(100):
                await app.publish("other", n)
            await app.publish_and_wait("other", 100)
            assert app.running

    assert others == list(range(101))
    outcome = receipt.outcomes["cancels"]
    assert (outcome.status, outcome.attempts) == ("failed", 2)
    assert isinstance(outcome.error, HandlerCancelled)
    assert isinstance(outcome.error.__cause__, anyio.get_cancelled_exc_class())
    [letter] = app.dead_letters
    assert (letter.consumer, letter.attempts) == ("cancels", 2)
    assert isinstance(letter.error, HandlerCancelled)
    assert calls == 2
    stats = app.stats()
    assert (stats.failed, stats.retried, stats.dead_lettered, stats.queue_depth) == (2, 1, 1, 0)


async def test_a_stray_cancellation_is_retried_only_where_the_policy_says() -> None:
    app = Reactor()

    @app.subscribe("job", retry=Retry(attempts=3, on=ConnectionError))
    async def cancels(event: Event) -> None:
        raise await stray_cancellation()

    async with app:
        receipt = await app.publish_and_wait("job")
    assert receipt.outcomes["cancels"].attempts == 1


async def test_shutdown_still_cancels_handlers_without_an_outcome() -> None:
    app = Reactor(graceful_timeout=0)
    running = anyio.Event()

    @app.subscribe("job")
    async def forever(event: Event) -> None:
        running.set()
        await anyio.sleep_forever()

    with anyio.fail_after(PATIENCE):
        async with app:
            await app.publish("job")
            await running.wait()
    assert len(app.dead_letters) == 0
    assert app.stats().failed == 0


# -- reactor's own tasks never end silently -----------------------------------------


class StrayCancellingQueue(MemoryQueue):
    """A queue whose get_batch() raises a stray cancellation once *armed* is set."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False

    async def get_batch(self, limit: int) -> Sequence[Received]:
        if self.armed:
            raise await stray_cancellation()
        return await super().get_batch(limit)


async def test_a_dying_dispatcher_fails_the_app_loudly() -> None:
    queue = StrayCancellingQueue()
    app = Reactor(queue=queue)

    @app.subscribe("job")
    async def handler(event: Event) -> None:
        pass

    with (
        anyio.fail_after(PATIENCE),
        pytest.RaisesGroup(
            pytest.RaisesExc(InternalTaskDied, match="dispatcher task ended with a cancellation"),
            flatten_subgroups=True,
        ),
    ):
        async with app:
            queue.armed = True
            await app.publish("job")  # wakes the dispatcher, which dies
            await anyio.sleep_forever()  # the app's failure cancels the body
    assert not app.running
    with pytest.raises(ReactorNotRunning):
        app.publish_nowait("job")


async def test_a_dying_dispatcher_refuses_publishes_before_the_app_unwinds() -> None:
    queue = StrayCancellingQueue()
    app = Reactor(queue=queue)
    refused: list[BaseException] = []

    with anyio.fail_after(PATIENCE), pytest.RaisesGroup(RuntimeError, flatten_subgroups=True):
        async with app:
            queue.armed = True
            app.publish_nowait("job")
            with anyio.CancelScope(shield=True):
                # Shielded: the body sees the app after its dispatcher died, still inside.
                while not refused:
                    await anyio.lowlevel.checkpoint()
                    try:
                        app.publish_nowait("job")
                    except ReactorNotRunning as exc:
                        refused.append(exc)
    assert refused


@pytest.mark.parametrize("stop", [SystemExit(3), KeyboardInterrupt()])
async def test_a_handler_that_stops_the_process_unwinds_the_app_then_stops_it(
    stop: BaseException,
) -> None:
    # Not a failure to retry or dead-letter: the process is asked to stop. The app unwinds
    # in order (other deliveries are cancelled, not lost in a torn-down event loop), then
    # the original exception comes out of `async with app:` with its meaning intact.
    app = Reactor()
    cancelled: list[str] = []
    running = anyio.Event()

    @app.subscribe("slow")
    async def slow(event: Event) -> None:
        running.set()
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.append("slow")

    @app.subscribe("stop")
    async def stops(event: Event) -> None:
        raise stop

    with anyio.fail_after(PATIENCE), pytest.raises(type(stop)) as caught:
        async with app:
            await app.publish("slow")
            await running.wait()
            await app.publish("stop")
            await anyio.sleep_forever()
    assert caught.value is stop
    assert cancelled == ["slow"]
    assert len(app.dead_letters) == 0
    assert not app.running


class FlakySettleQueue(MemoryQueue):
    """A memory queue that needs acks and fails to store the first *failures* settlements."""

    needs_ack = True

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.calls = 0
        self.acked: list[str] = []

    async def settle(
        self, done: Sequence[Received], progress: Sequence[tuple[Received, str]]
    ) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise OSError(28, "No space left on device")
        self.acked.extend(received.event.id for received in done)


async def test_failed_settlements_are_retried_with_backoff_and_the_app_keeps_running(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = VirtualClock()
    queue = FlakySettleQueue(failures=3)
    app = Reactor(queue=queue, clock=clock)
    handled: list[int] = []

    @app.subscribe("job")
    async def handler(event: Event) -> None:
        handled.append(event.data)

    with anyio.fail_after(PATIENCE):
        async with app:
            first = await app.publish_and_wait("job", 1)
            await anyio.wait_all_tasks_blocked()
            assert queue.calls == 1 and queue.acked == []
            second = await app.publish_and_wait("job", 2)
            # The backoff (0.05, 0.1, 0.2 s) runs on the app's clock.
            await clock.advance(0.05)
            assert queue.calls == 2
            await clock.advance(0.1)
            assert queue.calls == 3
            await clock.advance(0.2)
            assert app.running
    assert queue.acked == [first.event.id, second.event.id]
    assert handled == [1, 2]
    failures = [r for r in caplog.records if "could not store the settlement" in r.message]
    assert len(failures) == 3
    assert failures[0].exc_info is not None  # the first failure has its traceback
    assert any("stores settlements again" in r.message for r in caplog.records)


class HeldAcksQueue(FlakySettleQueue):
    """Fails every settlement until *healed*."""

    def __init__(self) -> None:
        super().__init__(failures=10**9)

    def heal(self) -> None:
        self.failures = self.calls


async def test_intake_is_held_while_settlements_fail() -> None:
    clock = VirtualClock()
    queue = HeldAcksQueue()
    app = Reactor(queue=queue, clock=clock, max_in_flight=4)
    handled: list[int] = []

    @app.subscribe("job")
    async def handler(event: Event) -> None:
        handled.append(event.data)

    with anyio.fail_after(PATIENCE):
        async with app:
            for n in range(40):
                await app.publish("job", n)
            await clock.advance(1)
            # Unacked events count against max_in_flight while the queue cannot store:
            # once a settlement has failed, intake stops. (How many batches were taken
            # before the first failure was known depends on the scheduler.)
            held = len(handled)
            await clock.advance(5)
            assert len(handled) == held < 40
            assert app.stats().queue_depth == 40 - held
            queue.heal()
            await clock.advance(10)
            assert len(handled) == 40
    assert len(queue.acked) == 40


# -- poison events past the queue's redelivery bound --------------------------------


class GatedSettleQueue(MemoryQueue):
    """Fails its first settlement at once, its second once *gate* opens, then stores."""

    needs_ack = True

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.gate = anyio.Event()

    async def settle(
        self, done: Sequence[Received], progress: Sequence[tuple[Received, str]]
    ) -> None:
        self.calls += 1
        if self.calls == 1:
            raise OSError(28, "No space left on device")
        if self.calls == 2:
            await self.gate.wait()
            raise OSError(28, "No space left on device")


async def test_intake_stays_held_while_a_retried_settlement_is_under_way() -> None:
    # The acks handed to a settle() call that has not returned are still unacked: an
    # event settling meanwhile must not let intake past max_in_flight.
    clock = VirtualClock()
    queue = GatedSettleQueue()
    app = Reactor(queue=queue, clock=clock, max_in_flight=2)
    hold = anyio.Event()
    handled: list[int] = []

    @app.subscribe("job")
    async def handler(event: Event) -> None:
        handled.append(event.data)
        if event.data == 1:
            await hold.wait()

    with anyio.fail_after(PATIENCE):
        async with app:
            for n in range(6):
                await app.publish("job", n)
            await clock.advance(0)  # until the first failure is known, intake goes on
            assert queue.calls == 1
            before = list(handled)
            assert 1 in before
            await clock.advance(0.05)  # the first retry: settle() under way
            assert queue.calls == 2
            hold.set()  # event 1 settles while the retry is under way
            for _ in range(10):
                await anyio.lowlevel.checkpoint()
            await clock.advance(0)
            assert handled == before
            queue.gate.set()
            await clock.advance(10)
            assert handled == list(range(6))


class RedeliveringQueue(MemoryQueue):
    """Hands its events out as if this were their *attempt*-th hand-out."""

    needs_ack = True
    max_redeliveries = 2

    def __init__(self, attempt: int, completed: frozenset[str] = frozenset()) -> None:
        super().__init__()
        self.attempt = attempt
        self.completed = completed
        self.acked: list[Received] = []

    async def get_batch(self, limit: int) -> Sequence[Received]:
        batch = await super().get_batch(limit)
        return [
            Received(received.event, attempt=self.attempt, completed=self.completed)
            for received in batch
        ]

    async def settle(
        self, done: Sequence[Received], progress: Sequence[tuple[Received, str]]
    ) -> None:
        self.acked.extend(done)


@pytest.mark.parametrize(("attempt", "runs"), [(3, True), (4, False)])
async def test_an_event_handed_out_too_often_is_dead_lettered_without_running(
    attempt: int, runs: bool
) -> None:
    queue = RedeliveringQueue(attempt, completed=frozenset({"done_before"}))
    app = Reactor(queue=queue)
    ran: list[str] = []

    for name in ("a", "b", "done_before"):

        async def handler(event: Event, name: str = name) -> None:
            ran.append(name)

        app.subscribe("job", handler, name=name)

    with anyio.fail_after(PATIENCE):
        async with app:
            receipt = await app.publish_and_wait("job")

    assert [r.event.id for r in queue.acked] == [receipt.event.id]
    if runs:  # 1 + max_redeliveries hand-outs run the handlers
        assert sorted(ran) == ["a", "b"]
        assert len(app.dead_letters) == 0
        return
    assert ran == []
    letters = sorted(app.dead_letters, key=lambda letter: letter.consumer)
    assert [(letter.consumer, letter.attempts) for letter in letters] == [("a", 0), ("b", 0)]
    error = letters[0].error
    assert isinstance(error, RedeliveryLimitExceeded)
    assert (error.attempt, error.limit) == (4, 2)
    assert "max_redeliveries=2" in letters[0].error_message
    assert {name: o.status for name, o in receipt.outcomes.items()} == {
        "a": "failed",
        "b": "failed",
    }


# -- describing an error never fails ------------------------------------------------


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("str() of this error fails")

    def __repr__(self) -> str:
        raise RuntimeError("repr() of this error fails")


async def test_a_handler_error_that_cannot_be_described_is_dead_lettered() -> None:
    app = Reactor()

    @app.subscribe("job")
    async def handler(event: Event) -> None:
        raise Unprintable

    with anyio.fail_after(PATIENCE):
        async with app:
            await app.publish_and_wait("job")
            assert app.running
    [letter] = app.dead_letters
    assert isinstance(letter.error, Unprintable)
    assert letter.error_message == "<Unprintable whose str() and repr() raised>"


def test_describe_error_prefers_str_then_repr() -> None:
    from reactor._outcomes import describe_error

    assert describe_error(ValueError("bad")) == "bad"
    assert describe_error(ValueError()) == "ValueError()"

    class StrFails(Exception):
        def __str__(self) -> str:
            raise RuntimeError

    assert describe_error(StrFails("x")) == "StrFails('x')"


# -- a dead letter's traceback is its own --------------------------------------------


@pytest.mark.parametrize("policy", ["fast", "timeout", "ordered"])
async def test_a_dead_letters_error_is_not_chained_to_an_earlier_attempts(policy: str) -> None:
    app = Reactor()
    errors = iter([ConnectionError("first"), KeyError("second"), ValueError("last")])

    @app.subscribe(
        "job",
        retry=Retry(attempts=3, backoff=Backoff(initial=0, jitter=False)),
        timeout=60.0 if policy == "timeout" else None,
        ordered_by=(lambda event: event.subject) if policy == "ordered" else None,
    )
    async def handler(event: Event) -> None:
        raise next(errors)

    async with app:
        await app.publish_and_wait("job", subject="k")
    [letter] = app.dead_letters
    assert isinstance(letter.error, ValueError)
    assert letter.error.__context__ is None
    text = "".join(traceback.format_exception(letter.error))
    assert "During handling of the above exception" not in text
    assert "first" not in text and "second" not in text


# -- timeouts with a narrow retry policy (a surviving mutant) ------------------------


async def test_a_hanging_handler_is_retried_on_timeouts_whatever_retry_on_names() -> None:
    clock = VirtualClock()
    app = Reactor(clock=clock)
    calls = 0

    @app.subscribe(
        "job",
        timeout=1,
        retry=Retry(attempts=3, on=ConnectionError, backoff=Backoff(initial=0, jitter=False)),
    )
    async def hangs(event: Event) -> None:
        nonlocal calls
        calls += 1
        await anyio.sleep_forever()

    with anyio.fail_after(PATIENCE):
        async with app, anyio.create_task_group() as tg:
            receipts = []

            async def wait() -> None:
                receipts.append(await app.publish_and_wait("job"))

            tg.start_soon(wait)
            await clock.advance(10)
    assert calls == 3
    outcome = receipts[0].outcomes["hangs"]
    assert (outcome.status, outcome.attempts) == ("timed_out", 3)
    assert isinstance(outcome.error, DeliveryTimeout)
    [letter] = app.dead_letters
    assert letter.attempts == 3
    assert app.stats().dead_lettered == 1


# -- leaving the app under a virtual clock ------------------------------------------


async def test_leaving_the_app_never_waits_for_virtual_time_nobody_advances() -> None:
    clock = VirtualClock()
    app = Reactor(clock=clock, graceful_timeout=30)
    started = anyio.Event()
    finished: list[str] = []

    @app.subscribe("nap")
    async def nap(event: Event) -> None:
        started.set()
        await clock.sleep(event.data)
        finished.append(f"napped {event.data}")

    with anyio.fail_after(PATIENCE):
        async with app:
            await app.publish("nap", 10)  # finishes within the graceful timeout
            await app.publish("nap", 3600)  # would not: cut at the deadline
            await started.wait()
    assert finished == ["napped 10"]
    assert clock.monotonic() == 30  # the drain ran virtual time to its deadline, no further


async def test_leaving_the_app_lets_retries_on_virtual_time_run_out() -> None:
    clock = VirtualClock()
    app = Reactor(clock=clock)
    calls = 0

    @app.subscribe("job", retry=Retry(attempts=3, backoff=Backoff(initial=5, jitter=False)))
    async def fails(event: Event) -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("down")

    with anyio.fail_after(PATIENCE):
        async with app:
            await app.publish("job")
    # The backoffs (5 s, 10 s) passed in virtual time while draining, as in real time.
    assert calls == 3
    assert len(app.dead_letters) == 1


# -- publishing from other threads ---------------------------------------------------


async def test_publishing_from_another_thread_is_refused_with_directions() -> None:
    app = Reactor()

    async with app:

        def from_thread() -> BaseException | None:
            try:
                app.publish_nowait("job")
            except RuntimeError as exc:
                return exc
            return None

        error = await anyio.to_thread.run_sync(from_thread)
    assert isinstance(error, RuntimeError)
    assert "publish_from_thread" in str(error) and "notify" in str(error)
    assert app.stats().published == 0


async def test_publish_from_thread_queues_the_event_and_wakes_the_loop() -> None:
    app = Reactor()
    seen: list[tuple[str, object]] = []
    done = anyio.Event()

    @app.subscribe("job")
    async def handler(event: Event) -> None:
        seen.append((event.type, event.data))
        done.set()

    with anyio.fail_after(PATIENCE):
        async with app:
            event = await anyio.to_thread.run_sync(
                lambda: app.publish_from_thread("job", {"n": 1}, subject="s")
            )
            await done.wait()
            with pytest.raises(RuntimeError, match=r"await app\.publish"):
                app.publish_from_thread("job")
    assert event.subject == "s"
    assert seen == [("job", {"n": 1})]
    with pytest.raises(ReactorNotRunning):
        app.publish_from_thread("job")


# -- notification channel globs -----------------------------------------------------


async def test_a_notification_channel_glob_matches_channels() -> None:
    app = Reactor()
    seen: dict[str, list[str]] = {"glob": [], "exact": []}

    @app.on_notification("orders.*", name="glob")
    async def glob(event: Event) -> None:
        assert event.subject is not None
        seen["glob"].append(event.subject)

    @app.on_notification("orders.created", name="exact")
    async def exact(event: Event) -> None:
        assert event.subject is not None
        seen["exact"].append(event.subject)

    async with app:
        for channel in ("orders.created", "orders.paid", "orders", "invoices.created"):
            app.notify(channel)
        await app.publish_and_wait("reactor.notification", subject=None)
    assert seen == {"glob": ["orders.created", "orders.paid"], "exact": ["orders.created"]}


async def test_retrying_an_error_that_cannot_be_described_is_logged_safely(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="reactor")
    app = Reactor()

    @app.subscribe("job", retry=Retry(attempts=2, backoff=Backoff(initial=0, jitter=False)))
    async def handler(event: Event) -> None:
        raise Unprintable

    with anyio.fail_after(PATIENCE):
        async with app:
            receipt = await app.publish_and_wait("job")
            assert app.running
    assert receipt.outcomes["handler"].attempts == 2
    [retried] = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert "Unprintable whose str() and repr() raised" in retried.getMessage()
