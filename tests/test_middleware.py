"""app.use(middleware): a wrapper around every delivery attempt."""

from __future__ import annotations

from datetime import UTC, datetime

import anyio
import attrs
import pytest

import reactor
from reactor import Backoff, DeliveryTimeout, Event, Handler, Reactor, Retry
from reactor.testing import VirtualClock

pytestmark = pytest.mark.anyio

START = datetime(2026, 1, 1, tzinfo=UTC)
NO_WAIT = Backoff(initial=0.0, maximum=0.0, jitter=False)
#: Real seconds a regression may hang before it fails (not a timing threshold).
PATIENCE = 10


def tracing(log: list[str], name: str) -> reactor.Middleware:
    async def middleware(call_next: Handler, event: Event) -> None:
        log.append(f"{name} before {event.data}")
        try:
            await call_next(event)
        except Exception as exc:
            log.append(f"{name} saw {exc}")
            raise
        log.append(f"{name} after")

    return middleware


@pytest.mark.parametrize("attempt_timeout", [None, 5.0])
@pytest.mark.parametrize("ordered", [False, True])
async def test_middleware_runs_in_the_order_used_around_the_handler(
    attempt_timeout: float | None, ordered: bool
) -> None:
    app = Reactor()
    log: list[str] = []
    app.use(tracing(log, "outer"))
    app.use(tracing(log, "inner"))

    @app.subscribe(
        "job",
        timeout=attempt_timeout,
        ordered_by=(lambda event: event.subject) if ordered else None,
    )
    async def handler(event: Event) -> None:
        log.append(f"handler {event.data}")

    async with app:
        receipt = await app.publish_and_wait("job", 1, subject="k")
    assert receipt.ok
    assert log == ["outer before 1", "inner before 1", "handler 1", "inner after", "outer after"]


async def test_middleware_applies_to_subscriptions_made_before_and_after_and_while_running() -> (
    None
):
    app = Reactor()
    log: list[str] = []

    @app.subscribe("job", name="early")
    async def early(event: Event) -> None:
        log.append("early")

    app.use(tracing(log, "mw"))

    @app.subscribe("job", name="late")
    async def late(event: Event) -> None:
        log.append("late")

    async with app:
        await app.publish_and_wait("job", 1)
        assert sorted(log) == sorted(["mw before 1", "mw after"] * 2 + ["early", "late"])
        log.clear()
        app.use(tracing(log, "added"))
        await app.publish_and_wait("job", 2)
    assert log.count("added before 2") == 2 and log.count("mw before 2") == 2


async def test_without_middleware_the_handler_runs_alone() -> None:
    app = Reactor()
    assert app.middleware == ()
    frames: list[str] = []

    @app.subscribe("job")
    async def handler(event: Event) -> None:
        import sys

        # The handler's caller is reactor's dispatcher itself: no wrapper in between.
        caller = sys._getframe(1)
        frames.append(caller.f_globals["__name__"])

    async with app:
        await app.publish_and_wait("job")
    assert len(frames) == 1 and frames[0].startswith("reactor.")


async def test_each_retry_runs_the_chain_again_as_a_new_attempt() -> None:
    app = Reactor()
    seen: list[tuple[str, int, int]] = []

    @app.use
    async def record(call_next: Handler, event: Event) -> None:
        delivery = reactor.current_delivery()
        seen.append((delivery.consumer, delivery.attempt, delivery.retries))
        await call_next(event)

    @app.subscribe("job", name="flaky", retry=Retry(attempts=3, backoff=NO_WAIT))
    async def flaky(event: Event) -> None:
        if reactor.current_delivery().retries < 2:
            raise ValueError("not yet")

    async with app:
        receipt = await app.publish_and_wait("job")
    assert receipt.outcomes["flaky"].attempts == 3
    assert seen == [("flaky", 1, 0), ("flaky", 1, 1), ("flaky", 1, 2)]


async def test_a_failing_middleware_fails_the_attempt_and_is_retried_then_dead_lettered() -> None:
    app = Reactor()
    calls = 0

    @app.use
    async def refuse(call_next: Handler, event: Event) -> None:
        raise PermissionError(f"tenant {event.subject} may not")

    @app.subscribe("job", name="guarded", retry=Retry(attempts=2, backoff=NO_WAIT))
    async def guarded(event: Event) -> None:
        nonlocal calls
        calls += 1

    async with app:
        receipt = await app.publish_and_wait("job", subject="acme")
    outcome = receipt.outcomes["guarded"]
    assert (outcome.status, outcome.attempts) == ("failed", 2)
    assert isinstance(outcome.error, PermissionError)
    [letter] = app.dead_letters
    assert str(letter.error) == "tenant acme may not"
    assert calls == 0
    stats = app.stats()
    assert (stats.failed, stats.retried, stats.dead_lettered) == (2, 1, 1)


async def test_middleware_sees_the_handlers_exception() -> None:
    app = Reactor()
    log: list[str] = []
    app.use(tracing(log, "mw"))

    @app.subscribe("job")
    async def broken(event: Event) -> None:
        raise ValueError("boom")

    async with app:
        receipt = await app.publish_and_wait("job", 1)
    assert not receipt.ok
    assert log == ["mw before 1", "mw saw boom"]


async def test_middleware_may_replace_the_event_or_skip_the_handler() -> None:
    app = Reactor()
    handled: list[object] = []

    @app.use
    async def enrich(call_next: Handler, event: Event) -> None:
        if event.subject == "skip":
            return
        await call_next(Event(type=event.type, source=event.source, data=(event.data, "tenant")))

    @app.subscribe("job")
    async def handler(event: Event) -> None:
        handled.append(event.data)

    async with app:
        await app.publish_and_wait("job", 1)
        skipped = await app.publish_and_wait("job", 2, subject="skip")
    assert handled == [(1, "tenant")]
    assert skipped.ok


async def test_the_timeout_cuts_the_middleware_too() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    cut = anyio.Event()
    handler_ran = False

    @app.use
    async def stuck(call_next: Handler, event: Event) -> None:
        try:
            await anyio.sleep_forever()  # e.g. waiting for a rate limiter
        finally:
            cut.set()
        await call_next(event)

    @app.subscribe("job", name="slow", timeout=5.0)
    async def handler(event: Event) -> None:
        nonlocal handler_ran
        handler_ran = True

    receipts = []
    with anyio.fail_after(PATIENCE):
        async with app, anyio.create_task_group() as tg:

            async def wait() -> None:
                receipts.append(await app.publish_and_wait("job"))

            tg.start_soon(wait)
            await clock.advance(4.9)
            assert not cut.is_set()
            await clock.advance(0.1)
            assert cut.is_set()
    [receipt] = receipts
    outcome = receipt.outcomes["slow"]
    assert outcome.status == "timed_out"
    assert isinstance(outcome.error, DeliveryTimeout)
    assert not handler_ran


async def test_a_middleware_must_be_a_coroutine_function() -> None:
    app = Reactor()

    def not_async(call_next: Handler, event: Event) -> None:
        pass

    with pytest.raises(TypeError, match="not a coroutine function"):
        app.use(not_async)  # type: ignore[type-var]
    assert app.middleware == ()


async def test_publish_hooks_see_every_event_published_in_order() -> None:
    app = Reactor()
    handled: list[tuple[object, object]] = []

    @app.on_publish
    def tenant(event: Event) -> Event:
        return attrs.evolve(event, extensions={**event.extensions, "tenant": "acme"})

    @app.on_publish
    def stamp(event: Event) -> Event:
        return attrs.evolve(event, subject=f"{event.extensions['tenant']!s}/{event.data}")

    @app.subscribe("*")
    async def handler(event: Event) -> None:
        handled.append((event.data, event.subject))

    async with app:
        returned = await app.publish("job", 1)
        app.publish_nowait("job", 2)
        await app.publish_and_wait(Event(type="job", source="/s", data=3))
        await app.publish_many([Event(type="job", source="/s", data=4)])
        app.notify("channel", 5)
        await app.publish_and_wait("job", 6)
        await app.publish(Event(type="job", source="/s", data=7))
    assert returned.extensions == {"tenant": "acme"} and returned.subject == "acme/1"
    assert sorted(handled, key=str) == [(n, f"acme/{n}") for n in range(1, 8)]


async def test_a_publish_hook_that_returns_no_event_fails_the_publish() -> None:
    app = Reactor()
    app.on_publish(lambda event: None)  # type: ignore[arg-type,return-value]
    async with app:
        with pytest.raises(TypeError, match="not an Event"):
            await app.publish("job")
    assert app.stats().published == 0


async def test_call_next_is_one_object_per_subscription() -> None:
    app = Reactor()
    chains: dict[str, set[int]] = {}

    @app.use
    async def record(call_next: Handler, event: Event) -> None:
        chains.setdefault(reactor.current_delivery().consumer, set()).add(id(call_next))
        await call_next(event)

    async def handler(event: Event) -> None:
        pass

    # The same handler twice: still two chains, each the same on every attempt.
    app.subscribe("job", handler, name="first")
    app.subscribe("job", handler, name="second")
    async with app:
        for n in range(3):
            await app.publish_and_wait("job", n)
    assert set(chains) == {"first", "second"}
    assert all(len(ids) == 1 for ids in chains.values())
    assert chains["first"] != chains["second"]
