"""A stateful model of delivery: every routed event is settled once per consumer.

Hypothesis drives a running app from a synchronous state machine through a blocking
portal, on asyncio and on trio. Rules publish batches of events (``publish``,
``publish_nowait``, ``publish_and_wait`` and ``notify`` from another thread), end
handler attempts that were told to wait (``succeed`` / ``fail``), and cancel and
subscribe consumers while deliveries are in flight. Each event carries a plan: for
every consumer name, how its handler behaves (succeed, fail the first k attempts,
always fail, fail with an error its retry policy does not retry, or wait for a rule to
decide each attempt). Consumers vary in pattern, ``where`` filter, ``concurrency``,
``ordered_by``, retry attempts and timeout (one that never expires: it only sends
deliveries down the timed path).

After every rule the app is brought to quiescence (every task blocked), so "the
consumers subscribed when the event was routed" is exactly the model's active set when
the rule ran, and the invariant compares everything observable with the model:

* the attempts each handler saw: a prefix of what the plan implies, no call for a
  consumer that was not subscribed at routing time, no attempt after a success;
* scheduling: at most ``concurrency`` attempts at once, one at a time and in order per
  ``ordered_by`` key, and a delivery not started is waiting for one of those reasons;
* ``publish_and_wait`` receipts: there exactly when the model says the event settled,
  with the model's outcome (status, attempts, error) for every consumer it was routed to;
* ``app.dead_letters``: exactly the (event id, consumer, attempts, error) the model
  expects, that is, one per delivery whose every attempt failed;
* ``app.stats()``: published, delivered, failed, retried, dead-lettered, in flight, the
  latency sample count, and each active subscription's counters.

Retries use a zero backoff without jitter, so nothing sleeps for real.
"""

from __future__ import annotations

import fnmatch
import functools
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Concatenate, Literal, ParamSpec, get_args

import anyio
import anyio.from_thread
import anyio.to_thread
import pytest
from anyio.abc import TaskGroup, TaskStatus
from anyio.lowlevel import checkpoint
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import reactor
from reactor import Event, Reactor, Receipt, Subscription

Behaviour = Literal["ok", "flaky1", "flaky2", "always", "fatal", "held"]
Result = Literal["running", "ok", "fail", "fatal"]
Decision = Literal["ok", "fail", "fatal"]
How = Literal["publish", "publish_nowait", "publish_and_wait", "notify"]

#: The fixed pool of consumer names; a cancelled name may be subscribed again.
NAMES = ("c0", "c1", "c2", "c3")
TYPES = ("order.created", "order.paid", "user.joined")
PATTERNS = ("*", "order.*", "order.created", "user.*")
KEYS = ("a", "b")
CHANNEL = "pings"

P = ParamSpec("P")

#: Checkpoints spun before the authoritative ``wait_all_tasks_blocked()``. On asyncio,
#: anyio's implementation sleeps 0.1 s whenever it finds a task that is not blocked; what
#: a rule sets off (route, start workers, retry) is over within a few loop iterations,
#: so after spinning it nearly always finds every task blocked at once.
SPINS = 40

#: About 7 s per backend on a 2-core machine.
SETTINGS = settings(
    max_examples=50,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


class Retryable(Exception):
    """A failure the consumers' retry policy retries."""


class Fatal(Exception):
    """A failure the consumers' retry policy does not retry (dead-lettered at once)."""


def scripted(behaviour: Behaviour, attempt: int) -> Decision:
    """What a handler with a scripted *behaviour* does on *attempt* (counting from 1)."""
    if behaviour == "ok":
        return "ok"
    if behaviour == "flaky1":
        return "fail" if attempt <= 1 else "ok"
    if behaviour == "flaky2":
        return "fail" if attempt <= 2 else "ok"
    if behaviour == "always":
        return "fail"
    if behaviour == "fatal":
        return "fatal"
    raise AssertionError(f"{behaviour!r} is decided by the rules, not scripted")


def finished(results: Sequence[Result], attempts: int) -> bool:
    """Whether a delivery whose attempts ended with *results* is settled."""
    return (
        bool(results)
        and results[-1] != "running"
        and (results[-1] != "fail" or len(results) >= attempts)
    )


def error_of(result: Result) -> type[Exception]:
    """The exception a handler raised for a failed attempt."""
    return Retryable if result == "fail" else Fatal


@asynccontextmanager
async def task_group() -> AsyncIterator[TaskGroup]:
    """A task group created in the event loop (``create_task_group()`` needs one)."""
    async with anyio.create_task_group() as tg:
        yield tg


async def quiesce() -> None:
    """Return once every task of the event loop is blocked: the app has done all it can."""
    for _ in range(SPINS):
        await checkpoint()
    await anyio.wait_all_tasks_blocked()


# -- the handlers' side: runs in the event loop's thread -------------------------------


@dataclass
class Gate:
    """A held attempt, waiting for a rule to decide how it ends."""

    opened: anyio.Event = field(default_factory=anyio.Event)
    decision: Decision = "ok"


@dataclass
class Calls:
    """What one consumer's handler saw of one event."""

    generation: int
    results: list[Result] = field(default_factory=list)


class Harness:
    """Builds the handlers, records every attempt they make, collects receipts.

    Handlers write it in the event loop's thread; the state machine reads it only
    between portal calls, when every task is blocked.
    """

    def __init__(self) -> None:
        self.calls: dict[tuple[str, str], Calls] = {}
        self.held: dict[tuple[str, str], Gate] = {}
        self.receipts: dict[str, Receipt] = {}
        #: The scopes of the publish_and_wait calls, to give up on them after a failure.
        self.waiting: list[anyio.CancelScope] = []
        #: Impossibilities seen inside handlers (raising there would only fail the delivery).
        self.errors: list[str] = []

    def handler(self, name: str, generation: int) -> Callable[[Event], Coroutine[Any, Any, None]]:
        """Return the handler of subscription number *generation*, consumer *name*."""

        async def handle(event: Event) -> None:
            key = (event.id, name)
            calls = self.calls.setdefault(key, Calls(generation))
            if calls.generation != generation:
                self.errors.append(f"{key} ran in subscriptions {calls.generation}, {generation}")
            if calls.results and calls.results[-1] in ("running", "ok"):
                self.errors.append(f"{key} attempted again after {calls.results}")
            behaviour: Behaviour = event.data["plan"][name]
            if behaviour == "held":
                calls.results.append("running")
                gate = self.held[key] = Gate()
                try:
                    await gate.opened.wait()
                finally:
                    del self.held[key]
                result = calls.results[-1] = gate.decision
            else:
                result = scripted(behaviour, len(calls.results) + 1)
                calls.results.append(result)
            if result != "ok":
                raise error_of(result)(f"{name} fails {event.id}")

        return handle

    def open(self, key: tuple[str, str], decision: Decision) -> None:
        """End the held attempt *key* with *decision* (call in the event loop's thread)."""
        gate = self.held[key]
        gate.decision = decision
        gate.opened.set()

    async def publish_and_wait(
        self,
        app: Reactor,
        event_type: str,
        data: object,
        event_id: str,
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Publish and keep the receipt; report started before the event is queued.

        The publisher resumes only after this task's first suspension, and
        ``publish_and_wait`` queues the event (the queue has room) before suspending, so
        the events of a batch reach the queue in batch order.
        """
        with anyio.CancelScope() as scope:
            self.waiting.append(scope)
            task_status.started()
            self.receipts[event_id] = await app.publish_and_wait(event_type, data, id=event_id)

    def abandon(self) -> None:
        """Stop waiting for receipts (call in the event loop's thread)."""
        for scope in self.waiting:
            scope.cancel()


# -- the model ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """How a consumer subscribes."""

    pattern: str
    concurrency: int
    ordered: bool
    attempts: int
    timeout: float | None
    only_key: str | None

    def routes(self, event_type: str, key: str) -> bool:
        """Whether an event of *event_type* with ordering key *key* is routed here."""
        return fnmatch.fnmatchcase(event_type, self.pattern) and self.only_key in (None, key)


@dataclass(frozen=True)
class Spec:
    """One event of a published batch."""

    how: How
    type: str
    key: str
    plan: dict[str, Behaviour]


configs = st.builds(
    Config,
    pattern=st.sampled_from(PATTERNS),
    concurrency=st.sampled_from((1, 2, 16)),
    ordered=st.booleans(),
    attempts=st.integers(1, 3),
    # Never expires within a test, but deliveries take the timed path.
    timeout=st.sampled_from((None, 3600.0)),
    only_key=st.sampled_from((None, "a")),
)
# "held" twice: waiting attempts are what make concurrency, ordering and cancellation
# under load interesting.
behaviours = st.sampled_from(("ok", "flaky1", "flaky2", "always", "fatal", "held", "held"))
specs = st.builds(
    Spec,
    how=st.sampled_from(get_args(How)),
    type=st.sampled_from(TYPES),
    key=st.sampled_from(KEYS),
    plan=st.fixed_dictionaries(dict.fromkeys(NAMES, behaviours)),
)


@dataclass(frozen=True)
class Counts:
    """Delivery counters, as in ``app.stats()``."""

    delivered: int = 0
    failed: int = 0
    retried: int = 0
    dead_lettered: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            self.delivered + other.delivered,
            self.failed + other.failed,
            self.retried + other.retried,
            self.dead_lettered + other.dead_lettered,
        )


@dataclass(eq=False)
class ModelEvent:
    """A published event: its ordering key and the deliveries it was routed to."""

    id: str
    type: str
    key: str
    awaited: bool
    deliveries: dict[str, Delivery] = field(default_factory=dict)


@dataclass(eq=False)
class Generation:
    """One subscription made under a consumer name (a name may be subscribed again)."""

    number: int
    name: str
    config: Config
    subscription: Subscription
    active: bool = True
    #: The deliveries routed here, in routing order.
    routed: list[Delivery] = field(default_factory=list)


@dataclass(eq=False)
class Delivery:
    """One event routed to one subscription, and what the rules decided for it."""

    event: ModelEvent
    generation: Generation
    behaviour: Behaviour
    decisions: list[Decision] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, str]:
        return (self.event.id, self.generation.name)

    def expected(self) -> list[Result]:
        """The results of the attempts: all of them once settled, so far when held."""
        if self.behaviour == "held":
            return list(self.decisions)
        results: list[Result] = []
        while not finished(results, self.generation.config.attempts):
            results.append(scripted(self.behaviour, len(results) + 1))
        return results


# -- the machine -----------------------------------------------------------------------


def step(
    method: Callable[Concatenate[DeliveryMachine, P], None],
) -> Callable[Concatenate[DeliveryMachine, P], None]:
    """Mark the machine failed when a rule or the invariant raises.

    Hypothesis still calls ``teardown()``, which then only cleans up, quickly.
    """

    @functools.wraps(method)
    def run(machine: DeliveryMachine, /, *args: P.args, **kwargs: P.kwargs) -> None:
        try:
            method(machine, *args, **kwargs)
        except BaseException:
            machine.failed = True
            raise

    return run


class DeliveryMachine(RuleBasedStateMachine):
    """Publish, fail, succeed, cancel and subscribe against a model of delivery."""

    #: The anyio backend the portal runs the app on (set by the subclasses below).
    backend = "asyncio"

    def __init__(self) -> None:
        super().__init__()
        self.harness = Harness()
        self.events: list[ModelEvent] = []
        self.generations: list[Generation] = []
        self.active: dict[str, Generation] = {}
        self.failed = False
        self.app = Reactor()
        # Hypothesis calls teardown() only for a machine that was built: undo a partial start.
        with ExitStack() as stack:
            self.portal = stack.enter_context(
                anyio.from_thread.start_blocking_portal(backend=self.backend)
            )
            stack.enter_context(self.portal.wrap_async_context_manager(self.app))
            # Owns the publish_and_wait calls; left before the app, so all are answered.
            self.waiters = stack.enter_context(self.portal.wrap_async_context_manager(task_group()))
            self.stack = stack.pop_all()

    # -- reading the model and the observations -------------------------------------

    def quiesce(self) -> None:
        self.portal.call(quiesce)

    def deliveries(self) -> list[Delivery]:
        return [delivery for g in self.generations for delivery in g.routed]

    def delivery(self, key: tuple[str, str]) -> Delivery:
        return next(d for d in self.deliveries() if d.key == key)

    def held(self) -> list[tuple[str, str]]:
        """The held attempts, in publication order (ids of notifications are random)."""
        order = {event.id: index for index, event in enumerate(self.events)}
        return sorted(self.harness.held, key=lambda key: (order[key[0]], key[1]))

    def observed(self, delivery: Delivery) -> list[Result]:
        calls = self.harness.calls.get(delivery.key)
        return [] if calls is None else list(calls.results)

    def settled(self, delivery: Delivery) -> bool:
        expected = delivery.expected()
        return (
            finished(expected, delivery.generation.config.attempts)
            and self.observed(delivery) == expected
        )

    def running(self, delivery: Delivery) -> bool:
        return self.observed(delivery)[-1:] == ["running"]

    def counts(self, generation: Generation) -> Counts:
        total = Counts()
        for delivery in generation.routed:
            results = self.observed(delivery)
            settled = self.settled(delivery)
            total += Counts(
                delivered=int(settled and results[-1] == "ok"),
                failed=sum(result in ("fail", "fatal") for result in results),
                retried=max(len(results) - 1, 0),
                dead_lettered=int(settled and results[-1] != "ok"),
            )
        return total

    # -- driving the app --------------------------------------------------------------

    def subscribe_as(self, name: str, config: Config) -> None:
        number = len(self.generations)
        handler = self.harness.handler(name, number)
        retry = reactor.Retry(
            attempts=config.attempts,
            backoff=reactor.Backoff(initial=0, maximum=0, jitter=False),
            on=Retryable,
        )

        def key_of(event: Event) -> object:
            return event.data["key"]

        def accepts(event: Event) -> bool:
            return bool(event.data["key"] == config.only_key)

        def subscribe() -> Subscription:
            return self.app.subscribe(
                config.pattern,
                handler,
                name=name,
                concurrency=config.concurrency,
                ordered_by=key_of if config.ordered else None,
                where=None if config.only_key is None else accepts,
                timeout=config.timeout,
                retry=retry,
            )

        generation = Generation(number, name, config, self.portal.call(subscribe))
        self.generations.append(generation)
        self.active[name] = generation

    async def publish_batch(self, batch: Sequence[Spec]) -> list[str]:
        """Publish *batch* in order, in one go; return the event ids."""
        app = self.app
        ids: list[str] = []
        for spec in batch:
            event_id = f"e{len(self.events) + len(ids)}"
            data = {"key": spec.key, "plan": spec.plan}
            if spec.how == "publish":
                await app.publish(spec.type, data, id=event_id)
            elif spec.how == "publish_nowait":
                app.publish_nowait(spec.type, data, id=event_id)
            elif spec.how == "publish_and_wait":
                await self.waiters.start(
                    self.harness.publish_and_wait, app, spec.type, data, event_id
                )
            else:
                # From another thread, the way a callback-based library would.
                event = await anyio.to_thread.run_sync(app.notify, CHANNEL, data)
                event_id = event.id
            ids.append(event_id)
        return ids

    # -- rules -------------------------------------------------------------------------

    @initialize(c0=configs, c1=configs, c2=configs, c3=configs)
    @step
    def start(self, c0: Config, c1: Config, c2: Config, c3: Config) -> None:
        for name, config in zip(NAMES, (c0, c1, c2, c3), strict=True):
            self.subscribe_as(name, config)

    @rule(batch=st.lists(specs, min_size=1, max_size=3))
    @step
    def publish(self, batch: list[Spec]) -> None:
        ids = self.portal.call(self.publish_batch, batch)
        # Nothing subscribed or cancelled during the batch: it is routed to those active now.
        for spec, event_id in zip(batch, ids, strict=True):
            notified = spec.how == "notify"
            event_type = reactor.NOTIFICATION_TYPE if notified else spec.type
            event = ModelEvent(event_id, event_type, spec.key, spec.how == "publish_and_wait")
            for generation in self.active.values():
                if generation.config.routes(event_type, spec.key):
                    delivery = Delivery(event, generation, spec.plan[generation.name])
                    event.deliveries[generation.name] = delivery
                    generation.routed.append(delivery)
            self.events.append(event)
        self.quiesce()

    def resolve(self, data: st.DataObject, decision: Decision) -> None:
        key = data.draw(st.sampled_from(self.held()), label="held attempt")
        self.delivery(key).decisions.append(decision)
        self.portal.call(self.harness.open, key, decision)
        self.quiesce()

    @precondition(lambda self: bool(self.harness.held))
    @rule(data=st.data())
    @step
    def succeed(self, data: st.DataObject) -> None:
        self.resolve(data, "ok")

    @precondition(lambda self: bool(self.harness.held))
    @rule(data=st.data(), retryable=st.booleans())
    @step
    def fail(self, data: st.DataObject, retryable: bool) -> None:
        self.resolve(data, "fail" if retryable else "fatal")

    @precondition(lambda self: bool(self.active))
    @rule(data=st.data())
    @step
    def cancel_subscription(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.active)), label="cancelled consumer")
        generation = self.active.pop(name)
        self.portal.call(generation.subscription.cancel)
        generation.active = False
        self.quiesce()

    @precondition(lambda self: len(self.active) < len(NAMES))
    @rule(data=st.data(), config=configs)
    @step
    def subscribe(self, data: st.DataObject, config: Config) -> None:
        free = sorted(set(NAMES) - set(self.active))
        self.subscribe_as(data.draw(st.sampled_from(free), label="new consumer"), config)
        self.quiesce()

    # -- checks ------------------------------------------------------------------------

    @invariant()
    @step
    def agrees_with_model(self) -> None:
        assert self.harness.errors == []
        deliveries = {delivery.key: delivery for delivery in self.deliveries()}
        # No consumer ran an event it was not subscribed to when the event was routed,
        # and a consumer subscribed again did not run its predecessor's deliveries.
        for key, calls in self.harness.calls.items():
            assert key in deliveries, f"{key} ran but was not routed there"
            assert calls.generation == deliveries[key].generation.number, key
        assert set(self.harness.held) == {k for k, d in deliveries.items() if self.running(d)}
        for delivery in deliveries.values():
            self.check_attempts(delivery)
        for generation in self.generations:
            self.check_scheduling(generation)
        self.check_receipts()
        self.check_dead_letters()
        self.check_stats()

    def check_attempts(self, delivery: Delivery) -> None:
        """The attempts seen are those the plan and the decisions so far imply."""
        observed = self.observed(delivery)
        expected = delivery.expected()
        if delivery.behaviour != "held":
            # A scripted handler never waits: its delivery has not started or has settled.
            assert observed in ([], expected), (delivery.key, observed, expected)
        elif finished(expected, delivery.generation.config.attempts):
            assert observed == expected, (delivery.key, observed, expected)
        elif expected:
            # A retryable failure with attempts left: the next attempt starts at once.
            assert observed == [*expected, "running"], (delivery.key, observed, expected)
        else:
            assert observed in ([], ["running"]), (delivery.key, observed)

    def check_scheduling(self, generation: Generation) -> None:
        """Concurrency and ordering hold, and no delivery waits without a reason."""
        config = generation.config
        running = [d for d in generation.routed if self.running(d)]
        assert len(running) <= config.concurrency, generation.number
        saturated = len(running) == config.concurrency
        if not config.ordered:
            # One inbox, taken first in, first out.
            started = [d for d in generation.routed if self.observed(d)]
            assert started == generation.routed[: len(started)], generation.number
        for key in KEYS:
            same_key = [d for d in generation.routed if d.event.key == key]
            if config.ordered:
                # One at a time per key, in routing order, retries included.
                started = [d for d in same_key if self.observed(d)]
                assert started == same_key[: len(started)], (generation.number, key)
                assert sum(not self.settled(d) for d in started) <= 1, (generation.number, key)
            for index, delivery in enumerate(same_key):
                if self.observed(delivery):
                    continue
                behind = config.ordered and not all(self.settled(d) for d in same_key[:index])
                assert saturated or behind, f"{delivery.key} waits for nothing"

    def check_receipts(self) -> None:
        receipts = self.harness.receipts
        for event in self.events:
            settled = all(self.settled(d) for d in event.deliveries.values())
            assert (event.id in receipts) == (event.awaited and settled), event.id
            if event.id not in receipts:
                continue
            receipt = receipts[event.id]
            assert receipt.event.id == event.id
            outcomes = {
                name: (outcome.status, outcome.attempts, type(outcome.error))
                for name, outcome in receipt.outcomes.items()
            }
            expected: dict[str, tuple[str, int, type[BaseException | None]]] = {}
            for name, delivery in event.deliveries.items():
                results = delivery.expected()
                if results[-1] == "ok":
                    expected[name] = ("ok", len(results), type(None))
                else:
                    expected[name] = ("failed", len(results), error_of(results[-1]))
            assert outcomes == expected, event.id

    def check_dead_letters(self) -> None:
        letters = Counter(
            (letter.event.id, letter.consumer, letter.attempts, type(letter.error))
            for letter in self.app.dead_letters
        )
        expected: Counter[tuple[str, str, int, type[BaseException]]] = Counter()
        for delivery in self.deliveries():
            results = delivery.expected()
            if self.settled(delivery) and results[-1] != "ok":
                expected[(*delivery.key, len(results), error_of(results[-1]))] += 1
        assert letters == expected

    def check_stats(self) -> None:
        stats = self.app.stats()
        assert stats.published == len(self.events)
        assert stats.queue_depth == 0
        assert stats.timed_out == 0
        assert stats.in_flight == sum(
            not all(self.settled(d) for d in event.deliveries.values()) for event in self.events
        )
        # Latency is sampled once per event, when its first handler starts.
        assert stats.latency.count == sum(
            any(self.observed(d) for d in event.deliveries.values()) for event in self.events
        )

        # Totals include cancelled subscriptions, and what they settled after the cancel.
        totals = Counts(stats.delivered, stats.failed, stats.retried, stats.dead_lettered)
        expected = Counts()
        for generation in self.generations:
            expected += self.counts(generation)
        assert totals == expected

        assert self.app.subscriptions == tuple(g.subscription for g in self.generations if g.active)
        assert set(stats.subscriptions) == set(self.active)
        for name, generation in self.active.items():
            sub = stats.subscriptions[name]
            counts = self.counts(generation)
            assert Counts(sub.delivered, sub.failed, sub.retried, sub.dead_lettered) == counts
            assert sub.timed_out == 0
            assert sub.running == sum(self.running(d) for d in generation.routed)
            assert sub.pending == sum(not self.settled(d) for d in generation.routed)

    def teardown(self) -> None:
        clean = False
        try:
            if not self.failed:
                # Let every held attempt succeed (which may start queued ones) until none is left.
                for _ in range(len(self.deliveries()) + 1):
                    if not self.harness.held:
                        break
                    for key in self.held():
                        self.delivery(key).decisions.append("ok")
                        self.portal.call(self.harness.open, key, "ok")
                    self.quiesce()
                self.agrees_with_model()
                assert all(self.settled(delivery) for delivery in self.deliveries())
                assert len(self.harness.receipts) == sum(event.awaited for event in self.events)
                clean = True
        finally:
            if not clean:
                # Do not wait for deliveries or receipts that may never come.
                self.app.graceful_timeout = 0
                self.portal.call(self.harness.abandon)
            # Leaves the waiters, then the app (draining it), then stops the event loop.
            self.stack.close()
        if clean:
            assert not self.app.running
            assert self.app.stats().in_flight == 0


class AsyncioDeliveryMachine(DeliveryMachine):
    backend = "asyncio"


class TrioDeliveryMachine(DeliveryMachine):
    backend = "trio"


@pytest.mark.parametrize(
    "machine",
    [
        pytest.param(AsyncioDeliveryMachine, id="asyncio"),
        pytest.param(TrioDeliveryMachine, id="trio"),
    ],
)
def test_every_routed_event_settles_once_per_consumer(
    machine: type[DeliveryMachine], caplog: pytest.LogCaptureFixture
) -> None:
    # Failures are the point here, and dead letters are checked directly: skip the
    # thousands of log records (and tracebacks) they would produce.
    caplog.set_level(logging.CRITICAL, logger="reactor")
    run_state_machine_as_test(machine, settings=SETTINGS)
