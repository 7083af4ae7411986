"""Delivery policies: timeouts, retries with backoff, dead letters, per-key ordering."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest

from reactor import (
    Backoff,
    ConsumerNotFound,
    DeliveryTimeout,
    Event,
    Reactor,
    ReactorNotRunning,
    Retry,
)
from reactor.testing import Capture, VirtualClock

pytestmark = [pytest.mark.anyio, pytest.mark.uvloop]

START = datetime(2026, 1, 1, tzinfo=UTC)
NO_JITTER = Backoff(initial=1.0, maximum=8.0, jitter=False)
#: Real seconds a virtual-clock test may take.
PATIENCE = 10


async def test_a_hanging_consumer_is_cut_by_its_timeout() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    other = Capture()
    app.subscribe("job", other, name="other")
    cancelled = anyio.Event()

    @app.subscribe("job", timeout=5.0, name="hang")
    async def hang(event: Event) -> None:
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()

    with anyio.fail_after(PATIENCE):  # a regression fails in seconds, not at the suite timeout
        async with app, anyio.create_task_group() as tg:
            receipts = []

            async def wait() -> None:
                receipts.append(await app.publish_and_wait("job", 1))

            tg.start_soon(wait)
            await clock.advance(4.9)
            assert not cancelled.is_set()
            assert [e.data for e in other.events] == [1]
            await clock.advance(0.1)
            assert cancelled.is_set()
        [receipt] = receipts
    outcome = receipt.outcomes["hang"]
    assert outcome.status == "timed_out" and outcome.attempts == 1
    assert isinstance(outcome.error, DeliveryTimeout) and isinstance(outcome.error, TimeoutError)
    assert receipt.outcomes["other"].ok
    [letter] = app.dead_letters
    assert letter.consumer == "hang" and isinstance(letter.error, DeliveryTimeout)
    assert letter.first_failed_at == datetime(2026, 1, 1, 0, 0, 5, tzinfo=UTC)
    stats = app.stats()
    assert (stats.timed_out, stats.failed, stats.dead_lettered) == (1, 1, 1)


async def test_timeouts_are_retried_and_count_as_failed_attempts() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    calls = 0

    @app.subscribe("job", timeout=2.0, retry=Retry(attempts=3, backoff=NO_JITTER))
    async def slow_then_fast(event: Event) -> None:
        nonlocal calls
        calls += 1
        if calls < 3:
            await anyio.sleep_forever()

    with anyio.fail_after(PATIENCE):  # a regression fails in seconds, not at the suite timeout
        async with app, anyio.create_task_group() as tg:
            tg.start_soon(app.publish_and_wait, "job")
            # attempt 1 times out at t=2, waits 1 s, attempt 2 times out at t=5, waits 2 s
            await clock.advance(6.9)
            assert calls == 2
            await clock.advance(0.1)
            assert calls == 3
    stats = app.stats()
    assert (stats.delivered, stats.timed_out, stats.retried, stats.dead_lettered) == (1, 2, 2, 0)


async def test_poison_event_is_retried_with_backoff_then_dead_lettered() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    attempts_at: list[float] = []

    @app.subscribe("job", retry=Retry(attempts=4, backoff=NO_JITTER), name="poisoned")
    async def poisoned(event: Event) -> None:
        attempts_at.append(clock.monotonic())
        raise ValueError(f"cannot handle {event.data}")

    with anyio.fail_after(PATIENCE):  # a regression fails in seconds, not at the suite timeout
        async with app, anyio.create_task_group() as tg:
            receipts = []

            async def wait() -> None:
                receipts.append(await app.publish_and_wait("job", "poison"))

            tg.start_soon(wait)
            await clock.advance(100)
    assert attempts_at == [0.0, 1.0, 3.0, 7.0]  # waits of 1, 2 and 4 seconds
    outcome = receipts[0].outcomes["poisoned"]
    assert (outcome.status, outcome.attempts) == ("failed", 4)
    assert isinstance(outcome.error, ValueError)
    [letter] = app.dead_letters
    assert letter.attempts == 4
    assert letter.first_failed_at == START
    assert letter.last_failed_at == datetime(2026, 1, 1, 0, 0, 7, tzinfo=UTC)
    assert letter.event.data == "poison"
    assert app.stats().retried == 3


async def test_retry_only_the_exceptions_named() -> None:
    app = Reactor()
    calls: defaultdict[str, int] = defaultdict(int)
    quick = Backoff(initial=0, maximum=0)

    @app.subscribe("job", retry=Retry(attempts=3, backoff=quick, on=ConnectionError))
    async def flaky(event: Event) -> None:
        calls[event.data] += 1
        raise (ConnectionError if event.data == "net" else ValueError)(event.data)

    async with app:
        await app.publish_and_wait("job", "net")
        await app.publish_and_wait("job", "bug")
    assert calls == {"net": 3, "bug": 1}


async def test_a_retried_delivery_reaches_only_the_failing_consumer() -> None:
    app = Reactor(retry=Retry(attempts=5, backoff=Backoff(initial=0, maximum=0)))
    calls: defaultdict[str, int] = defaultdict(int)

    @app.subscribe("job", name="steady")
    async def steady(event: Event) -> None:
        calls["steady"] += 1

    @app.subscribe("job", name="flaky")
    async def flaky(event: Event) -> None:
        calls["flaky"] += 1
        if calls["flaky"] < 3:
            raise RuntimeError("not yet")

    async with app:
        receipt = await app.publish_and_wait("job")
    assert calls == {"steady": 1, "flaky": 3}
    assert receipt.outcomes["flaky"].attempts == 3 and receipt.ok


async def test_dead_letters_can_be_redelivered_to_their_consumer() -> None:
    app = Reactor()
    broken = True
    others = Capture()
    app.subscribe("job", others, name="others")
    handled: list[object] = []
    fixed = anyio.Event()

    @app.subscribe("job", name="fixable")
    async def fixable(event: Event) -> None:
        if broken:
            raise RuntimeError("bug")
        handled.append(event.data)
        fixed.set()

    async with app:
        await app.publish_and_wait("job", 7)
        [letter] = app.dead_letters
        broken = False
        await app.redeliver(letter)
        with anyio.fail_after(5):
            await fixed.wait()
        assert len(app.dead_letters) == 0
    assert handled == [7]
    assert [e.data for e in others.events] == [7]  # not delivered to the others again


async def test_redeliver_needs_the_consumer_and_a_running_app() -> None:
    app = Reactor()

    @app.subscribe("job", name="gone")
    async def gone(event: Event) -> None:
        raise RuntimeError

    async with app:
        await app.publish_and_wait("job")
        [letter] = app.dead_letters
        app.subscriptions[0].cancel()
        with pytest.raises(ConsumerNotFound, match="gone"):
            await app.redeliver(letter)
        app.subscribe("job", gone)
    with pytest.raises(ReactorNotRunning):
        await app.redeliver(letter)


async def test_dead_letter_sink_is_bounded(caplog: pytest.LogCaptureFixture) -> None:
    app = Reactor(dead_letter_limit=3)

    @app.subscribe("job")
    async def fail(event: Event) -> None:
        raise RuntimeError

    async with app:
        for i in range(5):
            await app.publish_and_wait("job", i)
    assert [letter.event.data for letter in app.dead_letters] == [2, 3, 4]
    assert app.dead_letters.dropped == 2
    assert "dead-letter sink full" in caplog.text
    app.dead_letters.clear()
    assert len(app.dead_letters) == 0


async def test_per_key_order_is_kept_under_concurrency_and_retries() -> None:
    app = Reactor()
    seen: defaultdict[str, list[int]] = defaultdict(list)
    failures: set[tuple[str, int]] = set()
    running_keys: set[str] = set()
    overlap = False

    @app.subscribe(
        "account.*",
        ordered_by=lambda e: e.subject,
        concurrency=8,
        retry=Retry(attempts=3, backoff=Backoff(initial=0, maximum=0)),
    )
    async def apply(event: Event) -> None:
        nonlocal overlap
        key = event.subject
        assert key is not None
        overlap |= key in running_keys
        running_keys.add(key)
        try:
            await anyio.lowlevel.checkpoint()  # let other keys interleave
            if event.data % 4 == 1 and (key, event.data) not in failures:
                failures.add((key, event.data))
                raise RuntimeError("transient")
            seen[key].append(event.data)
        finally:
            running_keys.discard(key)

    async with app:
        for i in range(40):
            for key in ("a", "b", "c"):
                await app.publish("account.update", i, subject=key)
    assert not overlap, "two events of one key ran at the same time"
    assert dict(seen) == {key: list(range(40)) for key in ("a", "b", "c")}
    assert app.stats().retried == 30


async def test_ordering_key_errors_are_dead_lettered() -> None:
    app = Reactor()

    @app.subscribe("x", ordered_by=lambda e: e.data["key"], name="keyed")
    async def keyed(event: Event) -> None:
        pass

    async with app:
        ok = await app.publish_and_wait("x", {"key": 1})
        bad = await app.publish_and_wait("x", {})
        unhashable = await app.publish_and_wait("x", {"key": []})
    assert ok.ok
    assert bad.outcomes["keyed"].status == "failed"
    assert isinstance(bad.outcomes["keyed"].error, KeyError)
    assert isinstance(unhashable.outcomes["keyed"].error, TypeError)
    assert len(app.dead_letters) == 2


def test_backoff_delays() -> None:
    backoff = Backoff(initial=0.5, maximum=3.0, multiplier=2.0, jitter=False)
    assert [backoff.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert backoff.delay(10**9) == 3.0
    jittered = Backoff(initial=1.0, maximum=4.0)
    for n in range(1, 20):
        assert 0 <= jittered.delay(n) <= min(4.0, 2 ** (n - 1))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"initial": -1}, "initial"),
        ({"maximum": math.inf}, "maximum"),
        ({"initial": 2, "maximum": 1}, "maximum"),
        ({"multiplier": 0.5}, "multiplier"),
    ],
)
def test_bad_backoff(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Backoff(**kwargs)


def test_backoff_jitter_is_a_bool() -> None:
    with pytest.raises(TypeError, match="jitter must be a bool"):
        Backoff(jitter="no")  # type: ignore[arg-type]
    assert Backoff(jitter=False).jitter is False


def test_bad_retry() -> None:
    with pytest.raises(ValueError, match="attempts"):
        Retry(attempts=0)
    with pytest.raises(TypeError, match="attempts"):  # the wrong type: TypeError
        Retry(attempts=True)
    with pytest.raises(TypeError, match="Exception"):
        Retry(on=KeyboardInterrupt)
    assert Retry(on=KeyError).on == (KeyError,)


async def test_retries_after_a_raising_attempt_get_their_own_timeout() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    attempts_at: list[float] = []

    @app.subscribe("job", timeout=2.0, retry=Retry(attempts=3, backoff=NO_JITTER))
    async def flaky(event: Event) -> None:
        attempts_at.append(clock.monotonic())
        if len(attempts_at) == 1:
            raise RuntimeError("first attempt fails at once")
        await clock.sleep(5)  # every later attempt outlives its 2 s timeout

    with anyio.fail_after(PATIENCE):  # a regression fails in seconds, not at the suite timeout
        async with app, anyio.create_task_group() as tg:
            tg.start_soon(app.publish_and_wait, "job")
            await clock.advance(100)
    # fails at 0, retried at 1 (times out at 3), retried at 3 + 2 = 5 (times out at 7)
    assert attempts_at == [0.0, 1.0, 5.0]
    [letter] = app.dead_letters
    assert letter.attempts == 3 and isinstance(letter.error, DeliveryTimeout)
    stats = app.stats()
    assert (stats.failed, stats.timed_out, stats.retried) == (3, 2, 2)
