"""Routing: which subscriptions an event reaches, with many subscriptions and many sources.

The dispatcher finds an event's subscriptions through an index (by exact type, exact
source, and the glob patterns left over) and keeps its answers in a bounded cache. These
tests check that it answers exactly as a scan of every subscription in subscription
order would: the property test compares random subscriptions, cancellations and events,
while the app runs, with a brute-force model built on :func:`fnmatch.fnmatchcase`.
"""

from __future__ import annotations

import fnmatch
from collections import Counter
from dataclasses import dataclass
from typing import Literal

import anyio
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from reactor import Event, Handler, Reactor, Subscription
from reactor.testing import Capture

#: More distinct (type, source) pairs than the dispatcher keeps routes for (4,096).
MANY_PAIRS = 6000

# Few types and sources, so that scripts often route a pair again after a change.
TYPES = ("a", "a.b", "b.a", "A.b")
TYPE_PATTERNS = (*TYPES, "*", "a.*", "*.a", "a?b", "a.[bc]", "?.b", "[ab].*")
SOURCES = ("/s", "/s/1", "/t")
SOURCE_FILTERS = (None, *SOURCES, "/s/*", "/*", "*", "/?", "/[st]/1")

Where = Literal["any", "even"]


def _even(event: Event) -> bool:
    return bool(event.data % 2 == 0)


@dataclass(frozen=True)
class Sub:
    pattern: str
    source: str | None
    where: Where


@dataclass(frozen=True)
class Cancel:
    index: int  # of the active subscriptions, modulo their number


@dataclass(frozen=True)
class Publish:
    type: str
    source: str
    data: int


Op = Sub | Cancel | Publish

subs = st.builds(
    Sub,
    st.sampled_from(TYPE_PATTERNS),
    st.sampled_from(SOURCE_FILTERS),
    st.sampled_from(("any", "even")),
)
ops = st.lists(
    st.one_of(
        subs,
        st.builds(Cancel, st.integers(0, 50)),
        st.builds(Publish, st.sampled_from(TYPES), st.sampled_from(SOURCES), st.integers(0, 3)),
    ),
    max_size=40,
)


A_S = Publish("a", "/s", 0)


def _matches(sub: Sub, event: Publish) -> bool:
    """The model: a scan of one subscription, as routing was first written."""
    if not fnmatch.fnmatchcase(event.type, sub.pattern):
        return False
    if sub.source is not None and not fnmatch.fnmatchcase(event.source, sub.source):
        return False
    return sub.where == "any" or event.data % 2 == 0


def _replay(backend: str, before: list[Sub], script: list[Op]) -> None:
    """Subscribe *before*, start the app, run *script*, and compare every event's
    deliveries (who, and in which order) with the model."""
    calls: list[tuple[str, str]] = []  # (event id, consumer), in the order handlers ran
    active: list[tuple[str, Sub, Subscription]] = []
    made = 0

    def subscribe(app: Reactor, spec: Sub) -> None:
        nonlocal made
        name = f"c{made}"
        made += 1

        async def handler(event: Event) -> None:
            calls.append((event.id, name))

        sub = app.subscribe(
            spec.pattern,
            handler,
            name=name,
            source=spec.source,
            where=_even if spec.where == "even" else None,
        )
        active.append((name, spec, sub))

    async def main() -> None:
        app = Reactor()
        for spec in before:
            subscribe(app, spec)
        async with app:
            for op in script:
                if isinstance(op, Sub):
                    subscribe(app, op)
                elif isinstance(op, Cancel):
                    if active:
                        _, _, sub = active.pop(op.index % len(active))
                        sub.cancel()
                else:
                    receipt = await app.publish_and_wait(op.type, op.data, source=op.source)
                    expected = [name for name, spec, _ in active if _matches(spec, op)]
                    ran = [name for event_id, name in calls if event_id == receipt.event.id]
                    assert ran == expected, (op, [(n, s) for n, s, _ in active])
                    assert set(receipt.outcomes) == set(expected)
            assert [s for _, _, s in active] == list(app.subscriptions)

    anyio.run(main, backend=backend)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@settings(max_examples=100, deadline=None, database=None)
@given(before=st.lists(subs, max_size=12), script=ops)
# A pair routed, then a subscription or a cancellation that changes its route.
@example(before=[Sub("a", "/s", "any")], script=[A_S, Sub("*", None, "any"), A_S]).via(
    "invalidation"
)
@example(before=[Sub("a", None, "any"), Sub("a", "/s", "any")], script=[A_S, Cancel(0), A_S]).via(
    "invalidation"
)
def test_routing_matches_a_scan_of_every_subscription_in_order(
    backend: str, before: list[Sub], script: list[Op]
) -> None:
    _replay(backend, before, script)


# -- many subscriptions, many sources --------------------------------------------------


@pytest.mark.anyio
async def test_ten_thousand_subscriptions_each_get_the_events_of_their_source() -> None:
    n = 10_000
    app = Reactor()
    seen: Counter[tuple[int, int]] = Counter()
    done = anyio.Event()

    def handler(j: int) -> Handler:
        async def handle(event: Event) -> None:
            seen[j, event.data] += 1
            if seen.total() == 2 * n:
                done.set()

        return handle

    for j in range(n):
        app.subscribe("reading", handler(j), source=f"/sensor/{j}", name=f"sensor{j}")
    with pytest.raises(ValueError, match="'sensor9999' is already subscribed"):
        app.subscribe("reading", handler(0), name="sensor9999")
    async with app:
        for i in range(2 * n):
            await app.publish("reading", i, source=f"/sensor/{i % n}")
        with anyio.fail_after(30):
            await done.wait()
    assert seen == Counter({(i % n, i): 1 for i in range(2 * n)})
    assert app.stats().delivered == 2 * n


@pytest.mark.anyio
async def test_routes_stay_right_when_the_cache_overflows_and_subscriptions_change() -> None:
    app = Reactor()
    hot, glob, late = Capture(), Capture(), Capture()
    app.subscribe("ping", hot, source="/hot", name="hot")
    app.subscribe("ping", glob, source="/cold/1*", name="glob")
    sources = [f"/cold/{i}" for i in range(MANY_PAIRS)]
    expected = [s for s in sources if s.startswith("/cold/1")]
    async with app:
        # Every cold source is a new route, so the cache overflows; the hot source comes
        # back in between and must keep its route.
        for i, source in enumerate(sources):
            await app.publish("ping", source=source)
            if i % 100 == 0:
                await app.publish("ping", source="/hot")
        with anyio.fail_after(30):
            await glob.wait_for(len(expected))
            await hot.wait_for(MANY_PAIRS // 100)
        # Subscribing while running: the next event from a source just routed reaches
        # the newcomer too (no stale route is used).
        await app.publish_and_wait("ping", source="/cold/17")
        newcomer = app.subscribe("p*", late, source="/cold/*", name="late")
        receipt = await app.publish_and_wait("ping", source="/cold/17")
        assert set(receipt.outcomes) == {"glob", "late"}
        newcomer.cancel()
        receipt = await app.publish_and_wait("ping", source="/cold/17")
        assert set(receipt.outcomes) == {"glob"}
    assert [e.source for e in glob.events] == [*expected, *["/cold/17"] * 3]
    assert [e.source for e in hot.events] == ["/hot"] * (MANY_PAIRS // 100)
    assert [e.source for e in late.events] == ["/cold/17"]


@pytest.mark.anyio
async def test_a_subscription_at_its_concurrency_limit_holds_up_no_other() -> None:
    app = Reactor()
    release = anyio.Event()
    quick = Capture()

    @app.subscribe("job", name="slow", concurrency=2)
    async def slow(event: Event) -> None:
        await release.wait()

    app.subscribe("job", quick, name="quick")
    async with app:
        for i in range(5):
            await app.publish("job", i)
        with anyio.fail_after(10):
            await quick.wait_for(5)
        await anyio.wait_all_tasks_blocked()
        stats = app.stats().subscriptions["slow"]
        assert (stats.running, stats.pending) == (2, 5)
        release.set()
    assert [e.data for e in quick.events] == list(range(5))
    assert app.stats().delivered == 10
