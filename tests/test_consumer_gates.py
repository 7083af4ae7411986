"""Batch handlers (``batch=``), rate limits (``rate_limit=``) and debounce (``debounce=``).

Every test drives time with the virtual clock: when a batch is handed over, when a token
comes back and when a burst ends are checked at exact virtual times.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

import reactor
from reactor import Batch, BatchFailed, Debounce, Event, RateLimit, Reactor, Retry
from reactor.queues.sqlite import SQLiteQueue
from reactor.testing import VirtualClock

pytestmark = pytest.mark.anyio

START = datetime(2026, 1, 1, tzinfo=UTC)
NO_WAIT = Retry(attempts=3, backoff=reactor.Backoff(initial=1.0, jitter=False))


class Calls:
    """A batch handler that records each call's event data and virtual time."""

    def __init__(self, clock: VirtualClock, fail: Callable[[list[Event]], None] | None = None):
        self.clock = clock
        self.fail = fail
        self.calls: list[tuple[float, list[Any]]] = []

    async def __call__(self, events: list[Event]) -> None:
        self.calls.append((self.clock.monotonic(), [event.data for event in events]))
        if self.fail is not None:
            self.fail(events)


def app_with(clock: VirtualClock, **options: Any) -> Reactor:
    return Reactor(clock=clock, graceful_timeout=5, **options)


# -- batches ------------------------------------------------------------------------


async def test_a_full_batch_is_handed_over_at_once_and_the_rest_after_max_wait() -> None:
    clock = VirtualClock(start=START)
    app = app_with(clock)
    calls = Calls(clock)
    app.subscribe("m", calls, batch=Batch(max_size=2, max_wait=3))
    async with app:
        for i in range(5):
            await app.publish("m", i)
        await clock.advance(0)
        assert calls.calls == [(0, [0, 1]), (0, [2, 3])]
        assert app.stats().subscriptions["Calls"].held == 1
        assert app.stats().subscriptions["Calls"].pending == 1
        await clock.advance(2.5)
        assert len(calls.calls) == 2
        await clock.advance(0.5)
        assert calls.calls[2] == (3.0, [4])
        stats = app.stats().subscriptions["Calls"]
        assert (stats.delivered, stats.held, stats.pending) == (5, 0, 0)


async def test_max_wait_counts_from_the_first_event_of_the_batch() -> None:
    clock = VirtualClock(start=START)
    app = app_with(clock)
    calls = Calls(clock)
    app.subscribe("m", calls, batch=Batch(max_size=100, max_wait=timedelta(seconds=1)))
    async with app:
        await app.publish("m", "a")
        await clock.advance(0.6)
        await app.publish("m", "b")
        await clock.advance(0.4)
        assert calls.calls == [(1.0, ["a", "b"])]
        await app.publish("m", "c")
        await clock.advance(0.99)
        assert len(calls.calls) == 1
        await clock.advance(0.01)
        assert calls.calls[1] == (2.0, ["c"])


async def test_the_app_stopping_hands_over_a_batch_that_is_filling() -> None:
    clock = VirtualClock(start=START)
    app = app_with(clock)
    calls = Calls(clock)
    app.subscribe("m", calls, batch=Batch(max_size=100, max_wait=3600))
    async with app:
        await app.publish("m", 1)
        await app.publish("m", 2)
        await clock.advance(10)
        assert calls.calls == []
    assert calls.calls == [(10, [1, 2])]


async def test_batch_failed_fails_the_named_events_only_and_retries_them_alone() -> None:
    clock = VirtualClock(start=START)
    app = app_with(clock)

    def fail_odd(events: list[Event]) -> None:
        odd = {event: ValueError(f"odd {event.data}") for event in events if event.data % 2}
        if odd:
            raise BatchFailed(odd)

    calls = Calls(clock, fail_odd)
    app.subscribe("m", calls, batch=Batch(max_size=4, max_wait=0), retry=NO_WAIT, name="b")
    async with app:
        async with anyio.create_task_group() as tg:
            receipts: dict[int, reactor.Receipt] = {}

            async def publish(i: int) -> None:
                receipts[i] = await app.publish_and_wait("m", i)

            for i in range(4):
                tg.start_soon(publish, i)
            await clock.advance(0)
            await clock.advance(1)  # the first retry
            await clock.advance(2)  # the second
    # (The publishers' order is up to the scheduler on trio.)
    assert [sorted(data) for _, data in calls.calls] == [[0, 1, 2, 3], [1, 3], [1, 3]]
    assert [when for when, _ in calls.calls] == [0, 1, 3]
    assert receipts[0].outcomes["b"] == reactor.Outcome(status="ok", attempts=1)
    assert receipts[2].ok
    failed = receipts[1].outcomes["b"]
    assert (failed.status, failed.attempts, str(failed.error)) == ("failed", 3, "odd 1")
    letters = sorted(letter.event.data for letter in app.dead_letters)
    assert letters == [1, 3]
    stats = app.stats().subscriptions["b"]
    assert (stats.delivered, stats.failed, stats.retried, stats.dead_lettered) == (2, 6, 4, 2)


async def test_events_can_be_named_by_id_and_without_an_error_of_their_own() -> None:
    clock = VirtualClock(start=START)
    app = app_with(clock)
    tries = 0

    async def handler(events: list[Event]) -> None:
        nonlocal tries
        tries += 1
        if tries == 1:
            raise BatchFailed([events[0].id])

    app.subscribe("m", handler, batch=Batch(max_size=2, max_wait=0), retry=NO_WAIT)
    async with app:
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(app.publish_and_wait, "m", 0)
                tg.start_soon(app.publish_and_wait, "m", 1)
                await clock.advance(0)
                await clock.advance(1)
    assert tries == 2
    assert app.stats().subscriptions["handler"].delivered == 2


async def test_any_other_exception_fails_the_whole_batch() -> None:
    clock = VirtualClock(start=START)
    app = app_with(clock)

    def boom(events: list[Event]) -> None:
        raise RuntimeError("down")

    calls = Calls(clock, boom)
    app.subscribe("m", calls, batch=Batch(max_size=3, max_wait=0), retry=Retry(attempts=1))
    async with app:
        for i in range(3):
            await app.publish("m", i)
        await clock.advance(0)
    assert [data for _, data in calls.calls] == [[0, 1, 2]]
    assert sorted(letter.event.data for letter in app.dead_letters) == [0, 1, 2]
    assert all(letter.attempts == 1 for letter in app.dead_letters)


async def test_a_batch_failed_naming_a_stranger_fails_the_whole_batch() -> None:
    clock = VirtualClock(start=START)
    app = app_with(clock)
    stranger = Event(type="x", source="/s", id="nobody")

    async def handler(events: list[Event]) -> None:
        raise BatchFailed([stranger])

    app.subscribe("m", handler, batch=Batch(max_size=2, max_wait=0), retry=Retry(attempts=1))
    async with app:
        await app.publish("m", 0)
        await app.publish("m", 1)
        await clock.advance(0)
    assert len(app.dead_letters) == 2
    error = next(iter(app.dead_letters)).error
    assert isinstance(error, ValueError) and "not an event of this batch" in str(error)


async def test_an_ordered_batch_retries_the_events_behind_a_failed_one_of_their_key() -> None:
    clock = VirtualClock(start=START)
    app = app_with(clock)
    first = True

    def fail_a1_once(events: list[Event]) -> None:
        nonlocal first
        if first:
            first = False
            raise BatchFailed([event for event in events if event.data == "a1"])

    calls = Calls(clock, fail_a1_once)
    app.subscribe(
        "m",
        calls,
        batch=Batch(max_size=4, max_wait=0),
        ordered_by=lambda event: event.subject,
        retry=NO_WAIT,
        concurrency=8,  # batches of an ordered subscription still run one at a time
    )
    async with app:
        for data in ("a1", "b1", "a2", "b2"):
            await app.publish("m", data, subject=data[0])
        await app.publish("m", "a3", subject="a")
        await clock.advance(0)
        # a2 waits behind a1 (no attempt of its own); b1, b2 succeed; a3 waits for the
        # batch in progress, which has a's events.
        assert [data for _, data in calls.calls] == [["a1", "b1", "a2", "b2"]]
        await clock.advance(1)
    assert [data for _, data in calls.calls] == [["a1", "b1", "a2", "b2"], ["a1", "a2"], ["a3"]]
    assert app.stats().subscriptions["Calls"].delivered == 5
    assert app.stats().subscriptions["Calls"].failed == 1


async def test_a_batch_attempt_is_cut_by_the_timeout() -> None:
    clock = VirtualClock(start=START)
    app = app_with(clock)

    async def slow(events: list[Event]) -> None:
        await clock.sleep(10)

    app.subscribe("m", slow, batch=Batch(max_size=2, max_wait=0), timeout=1, retry=None)
    async with app:
        await app.publish("m", 0)
        await app.publish("m", 1)
        await clock.advance(1)
    assert len(app.dead_letters) == 2
    assert all(isinstance(letter.error, reactor.DeliveryTimeout) for letter in app.dead_letters)
    assert app.stats().subscriptions["slow"].timed_out == 2


async def test_current_delivery_in_a_batch_handler_is_its_first_event() -> None:
    clock = VirtualClock(start=START)
    app = app_with(clock)
    seen: list[tuple[Any, str]] = []

    @app.subscribe("m", batch=Batch(max_size=2, max_wait=0))
    async def handler(events: list[Event]) -> None:
        delivery = reactor.current_delivery()
        seen.append((delivery.event.data, delivery.consumer))

    async with app:
        await app.publish("m", "first")
        await app.publish("m", "second")
        await clock.advance(0)
    assert seen == [("first", "handler")]


async def test_a_plain_def_batch_handler_runs_in_a_thread() -> None:
    got: list[list[Any]] = []
    threads: set[int] = set()

    def handler(events: list[Event]) -> None:
        threads.add(threading.get_ident())
        got.append(sorted(event.data for event in events))

    app = Reactor()
    app.subscribe("m", handler, batch=Batch(max_size=3, max_wait=60), run_in_thread=True)
    async with app:
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                for i in range(3):
                    tg.start_soon(app.publish_and_wait, "m", i)
    assert got == [[0, 1, 2]]
    assert threading.get_ident() not in threads


async def test_middleware_does_not_wrap_batch_handlers() -> None:
    clock = VirtualClock(start=START)
    app = app_with(clock)
    wrapped: list[Any] = []

    @app.use
    async def middleware(call_next: reactor.Handler, event: Event) -> None:
        wrapped.append(event.data)
        await call_next(event)

    calls = Calls(clock)
    app.subscribe("m", calls, batch=Batch(max_size=1, max_wait=0))
    async with app:
        await app.publish("m", 1)
        await clock.advance(0)
    assert calls.calls == [(0, [1])]
    assert wrapped == []


async def test_batches_on_the_sqlite_queue_are_acknowledged(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    got: list[int] = []

    async def handler(events: list[Event]) -> None:
        got.extend(event.data for event in events)

    for run in range(2):
        app = Reactor(queue=SQLiteQueue(path))
        app.subscribe("m", handler, batch=Batch(max_size=5, max_wait=0.01))
        async with app:
            with anyio.fail_after(10):
                async with anyio.create_task_group() as tg:
                    for i in range(5):
                        tg.start_soon(app.publish_and_wait, "m", run * 10 + i)
    # The second run handled its own events only: the first run's were acknowledged.
    assert sorted(got) == [0, 1, 2, 3, 4, 10, 11, 12, 13, 14]


@pytest.mark.parametrize(
    "options", [{"debounce": 0.5}, {"rate_limit": RateLimit(1000, burst=2)}], ids=str
)
async def test_held_and_skipped_events_on_the_sqlite_queue_are_acknowledged(
    tmp_path: Path, options: dict[str, Any]
) -> None:
    path = tmp_path / "q.db"
    got: list[int] = []

    async def handler(event: Event) -> None:
        got.append(event.data)

    outcomes: list[str] = []

    async def publish(app: Reactor, number: int) -> None:
        receipt = await app.publish_and_wait("m", number)
        outcomes.append(receipt.outcomes["handler"].status)

    for run in range(2):
        app = Reactor(queue=SQLiteQueue(path))
        app.subscribe("m", handler, **options)
        async with app:
            with anyio.fail_after(10):
                async with anyio.create_task_group() as tg:
                    for i in range(5):
                        tg.start_soon(publish, app, run * 10 + i)
    # Each run handled (or skipped) its own events only: none came back.
    if "debounce" in options:
        assert len(got) == 2 and got[0] < 10 <= got[1]
        assert sorted(outcomes) == ["ok"] * 2 + ["skipped"] * 8
    else:
        assert sorted(got) == [0, 1, 2, 3, 4, 10, 11, 12, 13, 14]
        assert outcomes == ["ok"] * 10


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"batch": 10}, TypeError, "batch must be a reactor.Batch"),
        ({"batch": Batch(), "data": dict}, TypeError, "data= and outputs="),
        ({"batch": Batch(), "outputs": True}, TypeError, "data= and outputs="),
        ({"rate_limit": "fast"}, TypeError, "rate_limit must be"),
        ({"rate_limit": 0}, ValueError, "per_second must be > 0"),
        ({"rate_limit": -1.0}, ValueError, "per_second"),
        ({"debounce": "1s"}, TypeError, "debounce must be a timedelta"),
        ({"debounce": 0}, ValueError, "debounce must be"),
        ({"debounce": timedelta(seconds=-1)}, ValueError, "debounce must be"),
    ],
)
async def test_bad_options_are_refused(options: dict[str, Any], error: type, match: str) -> None:
    app = Reactor()

    async def handler(event: Any) -> None:
        pass

    with pytest.raises(error, match=match):
        app.subscribe("m", handler, **options)
    assert app.stats().subscriptions == {}


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: Batch(max_size=0), ValueError, "max_size"),
        (lambda: Batch(max_wait=-1), ValueError, "max_wait"),
        (lambda: Batch(max_wait="1"), TypeError, "max_wait"),
        (lambda: RateLimit(10, burst=0), ValueError, "burst"),
        (lambda: Debounce(1, key="subject"), TypeError, "key must be a callable"),  # type: ignore[arg-type]
        (lambda: BatchFailed([]), ValueError, "at least one"),
    ],
)
async def test_bad_policies_are_refused(
    make: Callable[[], object], error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        make()


# -- rate limits ----------------------------------------------------------------------


class Starts:
    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.starts: list[tuple[float, Any]] = []

    async def __call__(self, event: Event) -> None:
        self.starts.append((self.clock.monotonic(), event.data))


async def test_a_rate_limit_lets_a_burst_through_then_one_per_interval_in_order() -> None:
    clock = VirtualClock(start=START)
    app = app_with(clock)
    starts = Starts(clock)
    app.subscribe("m", starts, rate_limit=RateLimit(2, burst=3))
    async with app:
        for i in range(6):
            await app.publish("m", i)
        await clock.advance(0)
        assert starts.starts == [(0, 0), (0, 1), (0, 2)]
        stats = app.stats().subscriptions["Starts"]
        assert (stats.held, stats.rate_limited, stats.pending) == (3, 3, 3)
        await clock.advance(2)
    assert starts.starts[3:] == [(0.5, 3), (1.0, 4), (1.5, 5)]
    stats = app.stats().subscriptions["Starts"]
    assert (stats.held, stats.rate_limited, stats.delivered) == (0, 3, 6)


async def test_a_bucket_refills_while_quiet_up_to_its_burst() -> None:
    clock = VirtualClock(start=START)
    app = app_with(clock)
    starts = Starts(clock)
    app.subscribe("m", starts, rate_limit=10)  # burst 1
    async with app:
        await app.publish("m", "a")
        await clock.advance(5)
        await app.publish("m", "b")
        await app.publish("m", "c")
        await clock.advance(1)
    assert starts.starts == [(0, "a"), (5, "b"), (5.1, "c")]


async def test_a_rate_limit_with_ordering_and_a_timeout_still_limits() -> None:
    clock = VirtualClock(start=START)
    app = app_with(clock)
    starts = Starts(clock)
    app.subscribe("m", starts, rate_limit=1, ordered_by=lambda event: event.data % 2, timeout=30)
    async with app:
        for i in range(3):
            await app.publish("m", i)
        await clock.advance(3)
    assert starts.starts == [(0, 0), (1, 1), (2, 2)]


# -- debounce ------------------------------------------------------------------------


async def test_only_the_last_event_of_a_burst_is_handled_once_the_window_passes() -> None:
    clock = VirtualClock(start=START)
    app = app_with(clock)
    starts = Starts(clock)
    app.subscribe("saved", starts, debounce=timedelta(seconds=2), name="index")
    receipts: list[reactor.Receipt] = []

    async def publish(data: str, subject: str) -> None:
        receipts.append(await app.publish_and_wait("saved", data, subject=subject))

    async with app, anyio.create_task_group() as tg:
        tg.start_soon(publish, "a-1", "a.txt")
        await clock.advance(1)
        tg.start_soon(publish, "a-2", "a.txt")
        tg.start_soon(publish, "b-1", "b.txt")
        await clock.advance(1.5)  # a's window started again at 1: nothing is due yet
        assert starts.starts == []
        tg.start_soon(publish, "a-3", "a.txt")
        await clock.advance(0.5)
        assert starts.starts == [(3, "b-1")]
        await clock.advance(2)
    assert starts.starts == [(3, "b-1"), (4.5, "a-3")]
    by_data = {receipt.event.data: receipt.outcomes["index"] for receipt in receipts}
    assert by_data["a-1"] == reactor.Outcome(status="skipped", attempts=0)
    assert by_data["a-2"].status == "skipped"
    assert by_data["a-3"].ok and by_data["b-1"].ok
    stats = app.stats().subscriptions["index"]
    assert (stats.debounced, stats.delivered, stats.held) == (2, 2, 0)


async def test_debounce_with_a_key_function() -> None:
    clock = VirtualClock(start=START)
    app = app_with(clock)
    starts = Starts(clock)

    def key(event: Event) -> Hashable:
        return str(event.data["user"])

    app.subscribe("seen", starts, debounce=Debounce(1, key=key))
    async with app:
        for user, n in (("ann", 1), ("bob", 1), ("ann", 2)):
            await app.publish("seen", {"user": user, "n": n})
        await clock.advance(1)
    assert sorted((data["user"], data["n"]) for _, data in starts.starts) == [
        ("ann", 2),
        ("bob", 1),
    ]


async def test_a_key_function_that_raises_dead_letters_the_event() -> None:
    clock = VirtualClock(start=START)
    app = app_with(clock)
    starts = Starts(clock)
    app.subscribe("m", starts, debounce=Debounce(1, key=lambda event: event.data["k"]))
    async with app:
        await app.publish("m", "not a dict")
        await clock.advance(1)
    assert starts.starts == []
    (letter,) = app.dead_letters
    assert isinstance(letter.error, TypeError) and letter.attempts == 0


async def test_the_app_stopping_handles_held_events_at_once() -> None:
    clock = VirtualClock(start=START)
    app = app_with(clock)
    starts = Starts(clock)
    app.subscribe("m", starts, debounce=3600)
    async with app:
        await app.publish("m", 1)
        await clock.advance(1)
    assert starts.starts == [(1, 1)]


async def test_debounce_then_rate_limit_then_batch_compose() -> None:
    clock = VirtualClock(start=START)
    app = app_with(clock)
    calls = Calls(clock)
    app.subscribe(
        "m",
        calls,
        debounce=1,
        rate_limit=RateLimit(1, burst=1),
        batch=Batch(max_size=2, max_wait=5),
    )
    async with app:
        for subject in ("a", "b", "a", "c"):
            await app.publish("m", subject, subject=subject)
        # Debounced at 1 s: b, a, c leave the window; the rate lets one through per
        # second (b at 1, a at 2, c at 3); the batch of 2 fills at 2, c waits to 3 + 5.
        await clock.advance(10)
    assert calls.calls == [(2, ["b", "a"]), (8, ["c"])]
    stats = app.stats().subscriptions["Calls"]
    assert (stats.debounced, stats.rate_limited, stats.delivered) == (1, 2, 3)


async def test_a_debounced_trigger() -> None:
    clock = VirtualClock(start=START)
    app = app_with(clock)
    starts = Starts(clock)
    app.on_notification("cache", debounce=0.5, name="flush")(starts)
    async with app:
        for i in range(5):
            app.notify("cache", i)
        await clock.advance(1)
    assert starts.starts == [(0.5, 4)]
