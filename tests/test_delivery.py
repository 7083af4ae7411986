"""reactor.current_delivery(): what a running handler can learn about its delivery."""

from __future__ import annotations

import anyio
import pytest

import reactor
from reactor import Backoff, Delivery, Event, Reactor, Retry

pytestmark = [pytest.mark.anyio, pytest.mark.uvloop]


async def test_a_first_delivery_is_attempt_one_without_retries() -> None:
    app = Reactor()
    seen: list[Delivery] = []

    @app.subscribe("job.*", name="worker")
    async def handler(event: Event) -> None:
        seen.append(reactor.current_delivery())

    async with app:
        event = await app.publish("job.run", 1)
    [delivery] = seen
    assert delivery == Delivery(event=event, consumer="worker", attempt=1, retries=0)
    assert not delivery.redelivered


@pytest.mark.parametrize("attempt_timeout", [None, 5.0])
@pytest.mark.parametrize("ordered", [False, True])
async def test_retries_count_the_failed_calls_before_this_one(
    attempt_timeout: float | None, ordered: bool
) -> None:
    app = Reactor()
    seen: list[tuple[str, int, bool]] = []

    @app.subscribe(
        "job.*",
        retry=Retry(attempts=3, backoff=Backoff(initial=0.0, jitter=False)),
        timeout=attempt_timeout,
        ordered_by=(lambda event: event.subject) if ordered else None,
    )
    async def flaky(event: Event) -> None:
        delivery = reactor.current_delivery()
        seen.append((str(event.data), delivery.retries, delivery.redelivered))
        if event.data == "bad" and delivery.retries < 2:
            raise ValueError("not yet")

    async with app:
        await app.publish_and_wait("job.run", "bad", subject="k")
        await app.publish_and_wait("job.run", "good", subject="k")
    # The retry count is reset for the next delivery the same worker runs.
    assert seen == [("bad", 0, False), ("bad", 1, True), ("bad", 2, True), ("good", 0, False)]


async def test_each_concurrent_handler_sees_its_own_delivery() -> None:
    app = Reactor()
    seen: dict[str, str] = {}
    both = anyio.Event()
    arrived = 0

    @app.subscribe("job.*", concurrency=2)
    async def handler(event: Event) -> None:
        nonlocal arrived
        arrived += 1
        if arrived == 2:
            both.set()
        await both.wait()  # both deliveries are in flight at once here
        delivery = reactor.current_delivery()
        seen[delivery.event.id] = str(event.data)

    async with app:
        first = await app.publish("job.run", "first")
        second = await app.publish("job.run", "second")
    assert seen == {first.id: "first", second.id: "second"}


async def test_outside_a_handler_it_raises() -> None:
    with pytest.raises(RuntimeError, match="only available while a handler runs"):
        reactor.current_delivery()
    app = Reactor()
    leaked: list[BaseException] = []

    @app.subscribe("job.*")
    async def handler(event: Event) -> None:
        pass

    async with app:
        await app.publish_and_wait("job.run")
        try:
            reactor.current_delivery()  # the publisher's task is no handler
        except RuntimeError as exc:
            leaked.append(exc)
    assert len(leaked) == 1
