"""subscribe(..., outputs=True): the events a handler returns are published, linked to
the event that caused them by the ``causationid`` and ``correlationid`` extensions.

Each test runs on the memory queue and on the SQLite queue, where the outputs go through
the file (and JSON) before they reach their consumers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

import reactor
from reactor import Backoff, Event, Reactor, Retry
from reactor.queues.sqlite import SQLiteQueue
from reactor.testing import VirtualClock

pytestmark = pytest.mark.anyio

NO_WAIT = Backoff(initial=0.0, maximum=0.0, jitter=False)
RETRY = Retry(attempts=3, backoff=NO_WAIT)


@pytest.fixture(params=["memory", "sqlite"])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Reactor:
    """An app on the memory queue or on a SQLite file, retrying at once up to 3 attempts."""
    if request.param == "memory":
        return Reactor(retry=RETRY)
    return Reactor(queue=SQLiteQueue(tmp_path / "events.db"), retry=RETRY)


@dataclasses.dataclass
class Number:
    value: int


def collect(app: Reactor, pattern: str) -> list[Event]:
    """Subscribe a consumer that keeps the events of *pattern* it receives."""
    received: list[Event] = []

    async def keep(event: Event) -> None:
        received.append(event)

    app.subscribe(pattern, keep, name=f"keep_{pattern.replace('.', '_').strip('*_')}")
    return received


async def test_a_returned_event_is_published_with_the_links_to_its_cause(app: Reactor) -> None:
    async def invoice(event: Event) -> Event:
        return Event(type="invoice.due", source="/billing", data={"order": event.data["id"]})

    app.subscribe("order.placed", invoice, outputs=True)
    received = collect(app, "invoice.due")
    async with app:
        placed = await app.publish("order.placed", {"id": 7})
    [due] = received
    assert (due.type, due.source, due.data) == ("invoice.due", "/billing", {"order": 7})
    assert dict(due.extensions) == {"causationid": placed.id, "correlationid": placed.id}
    assert app.stats().dead_lettered == 0


async def test_a_chain_keeps_the_correlationid_of_its_first_event(app: Reactor) -> None:
    async def b(event: Event) -> Event:
        return Event(type="step.b", source="/chain")

    async def c(event: Event) -> Event:
        return Event(type="step.c", source="/chain")

    app.subscribe("step.a", b, outputs=True)
    app.subscribe("step.b", c, outputs=True)
    bs = collect(app, "step.b")
    cs = collect(app, "step.c")
    async with app:
        a = await app.publish("step.a")
    [b_event], [c_event] = bs, cs
    assert b_event.extensions == {"causationid": a.id, "correlationid": a.id}
    assert c_event.extensions == {"causationid": b_event.id, "correlationid": a.id}


async def test_the_links_the_handler_set_itself_are_kept(app: Reactor) -> None:
    async def relay(event: Event) -> Event:
        return Event(
            type="relayed",
            source="/relay",
            extensions={"correlationid": "saga-1", "tenant": "acme"},
        )

    app.subscribe("incoming", relay, outputs=True)
    received = collect(app, "relayed")
    async with app:
        incoming = await app.publish("incoming")
    [event] = received
    assert event.extensions == {
        "causationid": incoming.id,
        "correlationid": "saga-1",
        "tenant": "acme",
    }


@pytest.mark.parametrize("shape", ["list", "generator"])
async def test_several_events_are_published_in_order(app: Reactor, shape: str) -> None:
    async def split(event: Event) -> list[Event] | Iterator[Event]:
        lines = [Event(type="line", source="/orders", data=n) for n in event.data]
        return lines if shape == "list" else iter(lines)

    app.subscribe("order", split, outputs=True, name="split")
    received = collect(app, "line")
    async with app:
        order = await app.publish("order", [1, 2, 3])
        nothing = await app.publish("order", [])  # an empty iterable: nothing to publish
    assert [e.data for e in received] == [1, 2, 3]
    assert {e.extensions["causationid"] for e in received} == {order.id}
    assert nothing.id not in {e.extensions["causationid"] for e in received}


async def test_a_handler_returning_none_publishes_nothing(app: Reactor) -> None:
    async def quiet(event: Event) -> None:
        return None

    app.subscribe("ping", quiet, outputs=True)
    async with app:
        await app.publish("ping")
    stats = app.stats()
    assert (stats.published, stats.dead_lettered) == (1, 0)


async def test_without_outputs_what_the_handler_returns_is_ignored(app: Reactor) -> None:
    async def handler(event: Event) -> Event:
        return Event(type="unwanted", source="/test")

    app.subscribe("ping", handler)
    received = collect(app, "unwanted")
    async with app:
        await app.publish("ping")
    assert received == []
    assert app.stats().published == 1


async def test_a_failed_attempt_publishes_nothing(app: Reactor) -> None:
    attempts: list[int] = []

    async def flaky(event: Event) -> Event:
        attempts.append(reactor.current_delivery().retries)
        if len(attempts) < 3:
            raise RuntimeError("not yet")
        return Event(type="done", source="/test")

    app.subscribe("work", flaky, outputs=True, name="flaky")
    received = collect(app, "done")
    async with app:
        work = await app.publish("work")
    assert attempts == [0, 1, 2]
    [done] = received  # published once: by the attempt that succeeded
    assert done.extensions["causationid"] == work.id


async def test_a_handler_that_always_fails_publishes_nothing(app: Reactor) -> None:
    async def broken(event: Event) -> Event:
        output = Event(type="done", source="/test")
        raise RuntimeError(f"failed before returning {output.type}")

    app.subscribe("work", broken, outputs=True, name="broken")
    received = collect(app, "done")
    async with app:
        await app.publish("work")
    assert received == []
    [letter] = app.dead_letters
    assert (letter.consumer, letter.attempts) == ("broken", 3)


async def test_a_publish_failure_is_the_attempts_failure_and_is_retried(app: Reactor) -> None:
    calls: list[int] = []
    refused: list[Event] = []

    @app.on_publish
    def refuse_the_first_output(event: Event) -> Event:
        if event.type == "done" and not refused:
            refused.append(event)
            raise reactor.QueueUnavailableError("the queue is down for a moment")
        return event

    async def work(event: Event) -> Event:
        calls.append(reactor.current_delivery().retries)
        return Event(type="done", source="/test")

    app.subscribe("work", work, outputs=True)
    received = collect(app, "done")
    async with app:
        receipt = await app.publish_and_wait("work")
    assert calls == [0, 1]
    assert len(refused) == 1
    [done] = received
    assert done.extensions["causationid"] == receipt.event.id
    outcome = receipt.outcomes["work"]
    assert (outcome.status, outcome.attempts) == ("ok", 2)
    assert app.stats().retried == 1


async def test_several_outputs_are_published_all_or_nothing(app: Reactor) -> None:
    failures: list[str] = []

    @app.on_publish
    def refuse_the_second_line_once(event: Event) -> Event:
        if event.data == 2 and not failures:
            failures.append("refused")
            raise reactor.QueueUnavailableError("the queue is down for a moment")
        return event

    async def split(event: Event) -> list[Event]:
        return [Event(type="line", source="/orders", data=n) for n in (1, 2, 3)]

    app.subscribe("order", split, outputs=True)
    received = collect(app, "line")
    async with app:
        await app.publish("order")
    # The first attempt published none of the lines, the second all: each one once.
    assert failures == ["refused"]
    assert [e.data for e in received] == [1, 2, 3]


@pytest.mark.parametrize(
    ("returned", "what"),
    [
        pytest.param(42, "42", id="int"),
        pytest.param("done", "'done'", id="str"),
        pytest.param({"type": "done"}, "an iterable holding 'type'", id="dict"),
        pytest.param(
            [Event(type="done", source="/test", id="e1"), None],
            "an iterable holding None",
            id="list-with-none",
        ),
    ],
)
async def test_a_return_value_that_is_not_events_is_dead_lettered_with_a_type_error(
    app: Reactor, returned: object, what: str
) -> None:
    async def wrong(event: Event) -> object:
        return returned

    app.subscribe("work", wrong, outputs=True, name="wrong")
    received = collect(app, "done")
    async with app:
        await app.publish("work")
    assert received == []  # all or nothing: not even the list's valid event
    [letter] = app.dead_letters
    assert (letter.consumer, letter.attempts) == ("wrong", 3)
    assert isinstance(letter.error, TypeError)
    assert str(letter.error) == (
        f"handler {wrong!r} returned {what}: a handler subscribed with outputs=True "
        "returns None, a reactor.Event or an iterable of Events"
    )


async def test_outputs_of_a_typed_handler_and_of_a_thread_link_to_the_event(
    app: Reactor,
) -> None:
    async def typed(number: Number) -> Event:
        return Event(type="typed.out", source="/test", data=number.value + 1)

    def threaded(event: Event) -> list[Event]:
        return [Event(type="threaded.out", source="/test", data=event.data["value"] * 2)]

    app.subscribe("number", typed, data=Number, outputs=True)
    app.subscribe("number", threaded, run_in_thread=True, outputs=True)
    typed_out = collect(app, "typed.out")
    threaded_out = collect(app, "threaded.out")
    async with app:
        number = await app.publish("number", {"value": 20})
    links = {"causationid": number.id, "correlationid": number.id}
    assert [(e.data, e.extensions) for e in typed_out] == [(21, links)]
    assert [(e.data, e.extensions) for e in threaded_out] == [(40, links)]


async def test_middleware_sees_the_attempt_that_publishes_the_outputs() -> None:
    app = Reactor(retry=RETRY)
    seen: list[tuple[str, int]] = []

    @app.use
    async def count(call_next: reactor.Handler, event: Event) -> None:
        await call_next(event)
        seen.append((event.type, app.stats().published))

    async def forward(event: Event) -> Event:
        return Event(type="forwarded", source="/test")

    app.subscribe("incoming", forward, outputs=True)
    collect(app, "forwarded")
    async with app:
        await app.publish("incoming")
    # When call_next returns, the output is published already (2 events so far).
    assert seen == [("incoming", 2), ("forwarded", 2)]


async def test_a_timer_handler_publishes_its_outputs_linked_to_the_tick() -> None:
    clock = VirtualClock(start=datetime(2026, 1, 1, tzinfo=UTC))
    app = Reactor(clock=clock)
    ticks: list[Event] = []

    @app.every(seconds=60, outputs=True)
    async def report(tick: Event) -> Event:
        ticks.append(tick)
        return Event(type="report.due", source="/reports", data=tick.data["scheduled"])

    received = collect(app, "report.due")
    async with app:
        await clock.advance(150)
    assert [e.data for e in received] == ["2026-01-01T00:01:00Z", "2026-01-01T00:02:00Z"]
    assert [e.extensions["causationid"] for e in received] == [t.id for t in ticks]


async def test_outputs_must_be_a_bool() -> None:
    app = Reactor()

    async def handler(event: Event) -> None:
        pass

    with pytest.raises(TypeError, match="outputs"):
        app.subscribe("x", handler, outputs="yes")  # type: ignore[call-overload]
    assert app.subscriptions == ()
