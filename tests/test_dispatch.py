"""Routing and fan-out: every matching consumer gets every event, concurrently, in isolation."""

from __future__ import annotations

from collections import Counter, defaultdict

import anyio
import pytest

from reactor import Event, QueueFull, Reactor, Subscription
from reactor.queues.memory import MemoryQueue
from reactor.testing import Capture

pytestmark = [pytest.mark.anyio, pytest.mark.uvloop]


async def test_every_matching_consumer_gets_every_event() -> None:
    app = Reactor()
    orders, created, everything, other = Capture(), Capture(), Capture(), Capture()
    app.subscribe("order.*", orders, name="orders")
    app.subscribe("order.created", created, name="created")
    app.subscribe("*", everything, name="everything")
    app.subscribe("invoice.*", other, name="other")
    async with app:
        for i in range(10):
            await app.publish("order.created", i)
            await app.publish("order.paid", i)
        with anyio.fail_after(5):
            await everything.wait_for(20)
            await orders.wait_for(20)
            await created.wait_for(10)
    assert sorted(e.data for e in created.events) == list(range(10))
    assert len(orders.events) == 20
    assert len(everything.events) == 20
    assert other.events == []
    assert app.stats().delivered == 50


async def test_one_failing_consumer_of_five_does_not_affect_the_others() -> None:
    app = Reactor()
    seen: dict[str, list[int]] = defaultdict(list)

    def consumer(name: str, fail_every: int | None = None) -> None:
        async def handle(event: Event) -> None:
            seen[name].append(event.data)
            if fail_every is not None and event.data % fail_every == 0:
                raise RuntimeError(f"{name} rejects {event.data}")

        app.subscribe("job", handle, name=name)

    for n in range(4):
        consumer(f"ok{n}")
    consumer("flaky", fail_every=3)
    async with app:
        receipts = [await app.publish_and_wait("job", i) for i in range(30)]
    for n in range(4):
        assert Counter(seen[f"ok{n}"]) == Counter(range(30)), "each event exactly once"
    assert sorted(seen["flaky"]) == list(range(30))
    failed = [r.event.data for r in receipts if not r.outcomes["flaky"].ok]
    assert failed == [i for i in range(30) if i % 3 == 0]
    for receipt in receipts:
        assert all(receipt.outcomes[f"ok{n}"].ok for n in range(4))
    assert sorted(letter.event.data for letter in app.dead_letters) == failed
    assert {letter.consumer for letter in app.dead_letters} == {"flaky"}
    stats = app.stats()
    assert stats.delivered == 4 * 30 + 20
    assert stats.dead_lettered == 10
    assert stats.subscriptions["flaky"].dead_lettered == 10


async def test_failures_are_logged_with_event_id_and_consumer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = Reactor()

    @app.subscribe("boom", name="exploder")
    async def exploder(event: Event) -> None:
        raise ValueError("kaboom")

    async with app:
        receipt = await app.publish_and_wait("boom", id="evt-42")
    assert receipt.outcomes["exploder"].status == "failed"
    record = next(r for r in caplog.records if r.name == "reactor.dispatch")
    assert "evt-42" in record.getMessage()
    assert "exploder" in record.getMessage()
    assert record.__dict__["event_id"] == "evt-42"
    assert record.__dict__["consumer"] == "exploder"
    assert record.exc_info is not None and isinstance(record.exc_info[1], ValueError)


async def test_consumers_run_concurrently_with_each_other() -> None:
    app = Reactor()
    arrived = 0
    all_arrived = anyio.Event()

    async def rendezvous(event: Event) -> None:
        # Each consumer waits for all the others: only possible if they run concurrently.
        nonlocal arrived
        arrived += 1
        if arrived == 3:
            all_arrived.set()
        await all_arrived.wait()

    for n in range(3):
        app.subscribe("meet", rendezvous, name=f"c{n}")
    async with app:
        with anyio.fail_after(5):
            receipt = await app.publish_and_wait("meet")
    assert receipt.ok and len(receipt.outcomes) == 3


async def test_concurrency_limit_per_subscription() -> None:
    app = Reactor()
    running = peak = 0
    release = anyio.Event()

    @app.subscribe("work", concurrency=3)
    async def work(event: Event) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await release.wait()
        running -= 1

    async with app:
        for i in range(10):
            await app.publish("work", i)
        await anyio.wait_all_tasks_blocked()
        assert running == 3
        assert app.stats().subscriptions["work"].pending == 10
        release.set()
    assert peak == 3
    assert app.stats().delivered == 10


async def test_global_in_flight_bound_holds_back_the_dispatcher() -> None:
    app = Reactor(max_in_flight=4)
    release = anyio.Event()

    @app.subscribe("slow", concurrency=100)
    async def slow(event: Event) -> None:
        await release.wait()

    async with app:
        for i in range(20):
            await app.publish("slow", i)
        await anyio.wait_all_tasks_blocked()
        stats = app.stats()
        assert stats.in_flight == 4
        assert stats.subscriptions["slow"].running == 4
        assert stats.queue.depth == 16
        release.set()
    assert app.stats().delivered == 20


async def test_source_and_where_filters() -> None:
    app = Reactor()
    shop, big = Capture(), Capture()
    app.subscribe("order.*", shop, source="/shop/*", name="shop")
    app.subscribe("order.*", big, where=lambda e: e.data["total"] > 100, name="big")
    async with app:
        await app.publish_and_wait("order.created", {"total": 5}, source="/shop/eu")
        await app.publish_and_wait("order.created", {"total": 500}, source="/shop/us")
        await app.publish_and_wait("order.created", {"total": 500}, source="/warehouse")
    assert [e.source for e in shop.events] == ["/shop/eu", "/shop/us"]
    assert [e.source for e in big.events] == ["/shop/us", "/warehouse"]


async def test_a_raising_filter_is_its_consumers_dead_letter() -> None:
    app = Reactor()
    fine = Capture()
    app.subscribe("x", fine, name="fine")

    async def never(event: Event) -> None:
        raise AssertionError("not called")

    app.subscribe("x", never, where=lambda e: e.data["missing"], name="picky")
    async with app:
        receipt = await app.publish_and_wait("x", {})
    assert receipt.outcomes["fine"].ok
    picky = receipt.outcomes["picky"]
    assert (picky.status, picky.attempts) == ("failed", 0)
    assert isinstance(picky.error, KeyError) and not receipt.ok
    [letter] = app.dead_letters
    assert letter.consumer == "picky" and letter.attempts == 0
    assert isinstance(letter.error, KeyError)


@pytest.mark.parametrize("pattern", ["a.?", "a.[bc]", "a.*", "*.b", "*"])
async def test_glob_patterns(pattern: str) -> None:
    app = Reactor()
    capture = Capture()
    app.subscribe(pattern, capture, name="c")
    async with app:
        for kind in ["a.b", "a.c", "A.b", "b.a"]:
            await app.publish_and_wait(kind)
    import fnmatch

    assert [e.type for e in capture.events] == [
        kind for kind in ["a.b", "a.c", "A.b", "b.a"] if fnmatch.fnmatchcase(kind, pattern)
    ]


async def test_subscribe_and_cancel_while_running() -> None:
    app = Reactor()
    first, second = Capture(), Capture()
    sub = app.subscribe("tick", first, name="first")
    assert isinstance(sub, Subscription)
    active_before = sub.active
    async with app:
        await app.publish_and_wait("tick", 1)
        late = app.subscribe("tick", second, name="second")
        await app.publish_and_wait("tick", 2)
        sub.cancel()
        sub.cancel()  # idempotent
        assert active_before and not sub.active
        receipt = await app.publish_and_wait("tick", 3)
        assert receipt.outcomes.keys() == {"second"}
        late.cancel()
        receipt = await app.publish_and_wait("tick", 4)
        assert receipt.outcomes == {}
    assert [e.data for e in first.events] == [1, 2]
    assert [e.data for e in second.events] == [2, 3]
    assert app.subscriptions == ()
    assert app.stats().delivered == 4  # totals keep cancelled subscriptions


async def test_cancelled_subscription_still_finishes_what_was_routed_to_it() -> None:
    app = Reactor()
    release = anyio.Event()
    done: list[int] = []

    async def slow(event: Event) -> None:
        await release.wait()
        done.append(event.data)

    sub = app.subscribe("job", slow, name="slow", concurrency=1)
    async with app:
        for i in range(3):
            await app.publish("job", i)
        await anyio.wait_all_tasks_blocked()
        sub.cancel()
        release.set()
    assert done == [0, 1, 2]


async def test_decorator_returns_the_handler_unchanged() -> None:
    app = Reactor()

    async def handler(event: Event) -> None:
        pass

    assert app.subscribe("x")(handler) is handler
    assert app.subscriptions[0].handler is handler
    assert app.subscriptions[0].name == "handler"


def test_handlers_must_be_coroutine_functions() -> None:
    app = Reactor()

    def sync_handler(event: Event) -> None:
        pass

    with pytest.raises(TypeError, match="async def"):
        app.subscribe("x", sync_handler)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="async def"):
        app.subscribe("x")(sync_handler)  # type: ignore[type-var]
    assert app.subscriptions == ()


def test_async_callables_and_partials_are_accepted() -> None:
    import functools

    app = Reactor()

    class Handler:
        async def __call__(self, event: Event) -> None:
            pass

    async def with_prefix(prefix: str, event: Event) -> None:
        pass

    assert app.subscribe("x", Handler()).name == "Handler"
    assert app.subscribe("x", functools.partial(with_prefix, "p")).name == "with_prefix"


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"concurrency": 0}, ValueError, "concurrency"),
        ({"timeout": 0}, ValueError, "timeout"),
        ({"timeout": float("nan")}, ValueError, "timeout"),
        ({"retry": 3}, TypeError, "Retry"),
        ({"name": ""}, ValueError, "name"),
        ({"where": "yes"}, TypeError, "where"),
        ({"ordered_by": 1}, TypeError, "ordered_by"),
        ({"source": ""}, ValueError, "source"),
    ],
)
def test_bad_subscription_options(
    options: dict[str, object], error: type[Exception], match: str
) -> None:
    app = Reactor()

    async def handler(event: Event) -> None:
        pass

    with pytest.raises(error, match=match):
        app.subscribe("x", handler, **options)  # type: ignore[call-overload]


def test_bad_patterns() -> None:
    app = Reactor()

    async def handler(event: Event) -> None:
        pass

    with pytest.raises(ValueError, match="'\\*'"):
        app.subscribe("", handler)
    with pytest.raises(TypeError, match="str"):
        app.subscribe(None, handler)  # type: ignore[call-overload]


def test_consumer_names_are_unique() -> None:
    app = Reactor()

    async def handler(event: Event) -> None:
        pass

    app.subscribe("a", handler)
    with pytest.raises(ValueError, match="unique name"):
        app.subscribe("b", handler)
    app.subscribe("b", handler, name="handler-b")
    app.subscriptions[0].cancel()
    app.subscribe("b", handler)  # the name is free again


# -- the direct route: an event published into an empty memory queue ------------------


async def test_a_burst_runs_event_by_event_across_the_consumers() -> None:
    # A burst published without yielding: the first event reaches every consumer before
    # any consumer gets the second, not after one consumer has run the whole burst.
    app = Reactor()
    started: list[tuple[int, str]] = []
    for name in ("a", "b", "c"):

        async def handler(event: Event, name: str = name) -> None:
            started.append((event.data, name))

        app.subscribe("burst", handler, name=name)
    with anyio.fail_after(5):
        async with app:  # leaving it drains the app
            for i in range(5):
                app.publish_nowait("burst", i)
    assert started == [(i, name) for i in range(5) for name in ("a", "b", "c")]


async def test_events_are_handled_in_publish_order_across_the_direct_route_and_the_queue() -> None:
    # max_in_flight=2: the first events are routed as they are published, the next wait in
    # the queue, and the rest wait for room in publish(); one consumer at a time sees the
    # events of one publisher in the order they were published.
    app = Reactor(queue=MemoryQueue(capacity=3), max_in_flight=2)
    release = anyio.Event()
    handled: list[int] = []

    @app.subscribe("step", concurrency=1)
    async def step(event: Event) -> None:
        await release.wait()
        handled.append(event.data)

    with anyio.fail_after(5):
        async with app:  # leaving it drains the app
            async with anyio.create_task_group() as tg:
                for i in range(5):
                    await app.publish("step", i)  # 2 in flight, 3 queued: no wait
                assert app.stats().in_flight == 2
                assert app.stats().queue.depth == 3
                for i in range(5, 8):
                    tg.start_soon(app.publish, "step", i)
                    await anyio.wait_all_tasks_blocked()
                assert app.stats().queue.waiting_publishers == 3
                with pytest.raises(QueueFull):
                    # Publishers that wait for room go first, even once there is room.
                    app.publish_nowait("step", 99)
                release.set()
    # One publisher's events in its order; the three that waited publish concurrently, so
    # only their events' place after the others' is defined (trio may run them in any order).
    assert handled[:5] == list(range(5))
    assert sorted(handled[5:]) == [5, 6, 7]
    queue = app.stats().queue
    assert (queue.put_count, queue.get_count, queue.depth) == (8, 8, 0)


async def test_the_direct_route_counts_events_as_put_and_taken() -> None:
    app = Reactor()
    capture = Capture()
    app.subscribe("count", capture)
    async with app:
        await app.publish("count", 1)
        assert app.stats().in_flight == 1  # routed already: nothing waits in the queue
        assert app.stats().queue.depth == 0
        with anyio.fail_after(5):
            await capture.wait_for(1)
    queue = app.stats().queue
    assert (queue.put_count, queue.get_count) == (1, 1)


async def test_events_routed_directly_are_handled_before_the_app_stops() -> None:
    app = Reactor()
    capture = Capture()
    app.subscribe("last", capture)
    async with app:
        for i in range(50):
            app.publish_nowait("last", i)
    assert [event.data for event in capture.events] == list(range(50))
