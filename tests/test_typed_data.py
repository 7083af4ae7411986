"""subscribe(..., data=Order): the handler receives the event's data as an Order.

On the memory queue the data reaches the handler as published; on the SQLite queue it has
been through JSON and back, so the conversion of plain dicts and lists is what runs.
"""

from __future__ import annotations

import dataclasses
import enum
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal
from uuid import UUID

import attrs
import msgspec
import pydantic
import pytest

import reactor
from reactor import (
    Backoff,
    DataValidationError,
    Event,
    Handler,
    Reactor,
    Retry,
    StoredDeadLetter,
)
from reactor.queues.sqlite import SQLiteQueue

pytestmark = pytest.mark.anyio

NO_WAIT = Backoff(initial=0.0, maximum=0.0, jitter=False)
RETRY = Retry(attempts=3, backoff=NO_WAIT)


class Size(enum.Enum):
    SMALL = "s"
    LARGE = "l"


@attrs.frozen
class Item:
    sku: str
    qty: int = 1
    size: Size = Size.SMALL


@attrs.frozen
class Order:
    id: int
    items: list[Item]
    total: float
    placed: datetime
    note: str | None = None
    _secret: str = "none"  # attrs' private attribute: the key is "_secret", the argument "secret"


@dataclasses.dataclass(frozen=True)
class Refund:
    order: int
    reason: Literal["damaged", "late"]
    on: date
    ref: UUID
    lines: tuple[int, ...] = ()
    tags: frozenset[str] = frozenset()
    by_sku: dict[str, Item] = dataclasses.field(default_factory=dict)


class Shipment(msgspec.Struct):
    order: int
    carrier: str


class Invoice(pydantic.BaseModel):
    order: int
    amount: float


ORDER_DATA = {
    "id": 7,
    "items": [{"sku": "apple", "qty": 2}, {"sku": "pear", "size": "l"}],
    "total": 3,  # an int where a float is expected: JSON cannot tell them apart
    "placed": "2026-01-02T03:04:05+00:00",
    "_secret": "s3",
    "unknown": "ignored, as msgspec and pydantic ignore it",
}
ORDER = Order(
    id=7,
    items=[Item(sku="apple", qty=2), Item(sku="pear", size=Size.LARGE)],
    total=3.0,
    placed=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    secret="s3",
)
REFUND_DATA = {
    "order": 7,
    "reason": "late",
    "on": "2026-01-03",
    "ref": "12345678-1234-5678-1234-567812345678",
    "lines": [1, 2],
    "tags": ["a", "b"],
    "by_sku": {"apple": {"sku": "apple"}},
}
REFUND = Refund(
    order=7,
    reason="late",
    on=date(2026, 1, 3),
    ref=UUID("12345678-1234-5678-1234-567812345678"),
    lines=(1, 2),
    tags=frozenset({"a", "b"}),
    by_sku={"apple": Item(sku="apple")},
)


@pytest.fixture(params=["memory", "sqlite"])
def queue(request: pytest.FixtureRequest) -> str:
    """Which queue the app runs on."""
    return str(request.param)


async def deliver(
    queue: str, tmp_path: Path, data: object, subscribe: Callable[[Reactor], object]
) -> tuple[Reactor, list[StoredDeadLetter]]:
    """Deliver one event of type "thing" with *data* to the subscriptions *subscribe*
    makes; return the app (stopped) and the letters its queue stores.

    On SQLite the event is written to the file before the app starts, so that the app
    reads it back from its JSON (an event published while the app runs reaches the
    handlers as it was published, without a round trip).
    """
    event = Event(type="thing", source="/test", subject="s", data=data)
    if queue == "memory":
        app = Reactor(retry=RETRY)
        subscribe(app)
        async with app:
            await app.publish(event)
        return app, []
    path = tmp_path / "events.db"
    store = SQLiteQueue(path)
    await store.open()
    try:
        await store.put(event)
    finally:
        await store.close()
    app = Reactor(queue=SQLiteQueue(path), retry=RETRY)
    subscribe(app)
    async with app:
        pass  # leaving drains the queue: the event is handled
    store = SQLiteQueue(path)
    await store.open()
    try:
        return app, await store.dead_letters()
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("cls", "data", "expected"),
    [
        pytest.param(Order, ORDER_DATA, ORDER, id="attrs"),
        pytest.param(Refund, REFUND_DATA, REFUND, id="dataclass"),
        pytest.param(
            Shipment, {"order": 7, "carrier": "ups"}, Shipment(order=7, carrier="ups"), id="msgspec"
        ),
        pytest.param(
            Invoice, {"order": 7, "amount": 9.5}, Invoice(order=7, amount=9.5), id="pydantic"
        ),
    ],
)
async def test_the_handler_receives_the_data_as_the_class_asked_for(
    queue: str, tmp_path: Path, cls: type, data: dict[str, Any], expected: object
) -> None:
    received: list[object] = []
    seen_events: list[Event] = []

    async def handle(value: Any) -> None:
        received.append(value)
        seen_events.append(reactor.current_delivery().event)  # the event is still at hand

    app, letters = await deliver(
        queue, tmp_path, data, lambda app: app.subscribe("thing", handle, data=cls)
    )
    assert (list(app.dead_letters), letters) == ([], [])
    assert received == [expected]
    assert type(received[0]) is cls
    assert [e.subject for e in seen_events] == ["s"]


async def test_invalid_data_is_dead_lettered_with_the_error_without_calling_the_handler(
    queue: str, tmp_path: Path
) -> None:
    calls: list[Order] = []

    async def ship(order: Order) -> None:
        calls.append(order)

    bad = {**ORDER_DATA, "items": [{"sku": "apple"}, {"sku": 42}]}
    app, stored = await deliver(
        queue, tmp_path, bad, lambda app: app.subscribe("thing", ship, name="ship", data=Order)
    )
    assert calls == []
    [letter] = app.dead_letters
    assert (letter.consumer, letter.attempts) == ("ship", 1)  # not retried, though RETRY says 3
    error = letter.error
    assert isinstance(error, DataValidationError)
    assert error.data_type is Order
    assert error.detail == "data.items[1].sku: expected str, got int"
    assert str(error) == (
        "the event's data does not fit Order: data.items[1].sku: expected str, got int"
    )
    stats = app.stats()
    assert (stats.dead_lettered, stats.retried, stats.failed) == (1, 0, 1)
    if queue == "sqlite":  # the durable queue keeps the letter with the error
        [row] = stored
        assert (row.consumer, row.attempts) == ("ship", 1)
        assert row.error_type == "reactor.DataValidationError"
        assert row.error == str(error)
        assert row.event is not None and row.event.data == bad


async def test_the_outcome_of_invalid_data_is_failed_after_one_attempt() -> None:
    app = Reactor(retry=RETRY)
    app.subscribe("thing", _never_called, data=Order)
    async with app:
        receipt = await app.publish_and_wait("thing", {"id": "x"})
    outcome = receipt.outcomes["_never_called"]
    assert (outcome.status, outcome.attempts) == ("failed", 1)
    assert isinstance(outcome.error, DataValidationError)


@pytest.mark.parametrize(
    ("cls", "data", "detail"),
    [
        (Order, [1, 2], "data: expected an object for Order, got list"),
        (Order, {"id": 1, "total": 1.0}, "data: missing required field 'items'"),
        (Order, {**ORDER_DATA, "id": "7"}, "data.id: expected int, got str"),
        (Order, {**ORDER_DATA, "id": True}, "data.id: expected int, got bool"),
        (Order, {**ORDER_DATA, "note": 5}, "data.note: expected str | None, got int"),
        (
            Order,
            {**ORDER_DATA, "placed": "soon"},
            "data.placed: expected datetime, got the string 'soon'",
        ),
        (
            Order,
            {**ORDER_DATA, "items": [{"sku": "a", "size": "xl"}]},
            "data.items[0].size: expected one of ['s', 'l'], got 'xl'",
        ),
        (
            Refund,
            {**REFUND_DATA, "reason": "bored"},
            "data.reason: expected one of ['damaged', 'late'], got 'bored'",
        ),
        (Refund, {**REFUND_DATA, "lines": [1, "2"]}, "data.lines[1]: expected int, got str"),
        (
            Refund,
            {**REFUND_DATA, "by_sku": {"apple": {"qty": 1}}},
            "data.by_sku['apple']: missing required field 'sku'",
        ),
        (Shipment, {"order": 7}, "Object missing required field `carrier`"),
        (Invoice, {"order": 7, "amount": "much"}, "data.amount: Input should be a valid number"),
    ],
)
async def test_what_does_not_fit_is_reported_with_its_place(
    cls: type, data: object, detail: str
) -> None:
    app = Reactor()
    app.subscribe("thing", _never_called, data=cls)
    async with app:
        receipt = await app.publish_and_wait("thing", data)
    error = receipt.outcomes["_never_called"].error
    assert isinstance(error, DataValidationError)
    assert error.detail.startswith(detail)


async def _never_called(value: object) -> None:
    raise AssertionError("the handler ran on data that does not fit")


@attrs.frozen
class Positive:
    n: int = attrs.field(validator=attrs.validators.gt(0))


async def test_the_classs_own_validation_refuses_data_too() -> None:
    app = Reactor()
    app.subscribe("thing", _never_called, data=Positive)
    async with app:
        receipt = await app.publish_and_wait("thing", {"n": -1})
    error = receipt.outcomes["_never_called"].error
    assert isinstance(error, DataValidationError)
    assert error.detail.startswith("data: Positive() refused it: ValueError: 'n' must be > 0")


async def test_the_handlers_own_failure_is_still_retried(queue: str, tmp_path: Path) -> None:
    attempts: list[int] = []

    async def ship(order: Order) -> None:
        attempts.append(order.id)
        if len(attempts) < 3:
            raise RuntimeError("carrier down")

    app, letters = await deliver(
        queue, tmp_path, ORDER_DATA, lambda app: app.subscribe("thing", ship, data=Order)
    )
    assert attempts == [7, 7, 7]
    assert (list(app.dead_letters), letters) == ([], [])
    assert app.stats().retried == 2


async def test_an_instance_published_in_process_is_handed_over_as_it_is() -> None:
    app = Reactor()
    received: list[Order] = []

    @app.subscribe("order.created", data=Order)
    async def ship(order: Order) -> None:
        received.append(order)

    async with app:
        await app.publish_and_wait("order.created", ORDER)
    assert received[0] is ORDER


async def test_middleware_sees_the_event_and_wraps_the_typed_handler() -> None:
    app = Reactor()
    log: list[str] = []

    @app.subscribe("order.created", data=Order)
    async def ship(order: Order) -> None:
        log.append(f"ship {order.id}")

    @app.use  # used after subscribing: the chain is rebuilt around the typed handler
    async def around(call_next: Handler, event: Event) -> None:
        log.append(f"before {type(event.data).__name__}")
        await call_next(event)
        log.append("after")

    async with app:
        await app.publish_and_wait("order.created", ORDER_DATA)
    assert log == ["before dict", "ship 7", "after"]


class NotAModel:
    id: int


def test_an_unsupported_class_is_refused_when_subscribing() -> None:
    app = Reactor()
    with pytest.raises(
        TypeError, match=r"attrs class, a dataclass, a msgspec\.Struct or a pydantic"
    ):
        app.subscribe("thing", _never_called, data=NotAModel)
    with pytest.raises(TypeError, match="data must be a class"):
        app.subscribe("thing", _never_called, data=list[int])
    assert app.subscriptions == ()


def test_the_subscription_tells_its_data_class() -> None:
    app = Reactor()
    sub = app.subscribe("order.created", _never_called, data=Order)
    assert (sub.data, sub.run_in_thread, sub.handler) == (Order, False, _never_called)


def test_neither_msgspec_nor_pydantic_is_imported_for_an_attrs_class() -> None:
    code = (
        "import sys, attrs, reactor\n"
        "@attrs.frozen\n"
        "class A:\n"
        "    n: int\n"
        "async def h(a: A) -> None: ...\n"
        "reactor.Reactor().subscribe('x', h, data=A)\n"
        "assert 'msgspec' not in sys.modules and 'pydantic' not in sys.modules, sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@attrs.frozen
class Node:
    name: str
    children: list[Node] = attrs.Factory(list)


async def test_a_class_that_names_itself_is_converted(queue: str, tmp_path: Path) -> None:
    received: list[Node] = []

    async def walk(tree: Node) -> None:
        received.append(tree)

    data = {"name": "root", "children": [{"name": "a", "children": [{"name": "b"}]}]}
    await deliver(queue, tmp_path, data, lambda app: app.subscribe("thing", walk, data=Node))
    assert received == [Node("root", [Node("a", [Node("b")])])]


@pytest.mark.parametrize(
    "retry",
    [Retry(attempts=3, backoff=NO_WAIT, on=ValueError), Retry(attempts=3, backoff=NO_WAIT)],
    ids=["on ValueError", "on Exception"],
)
async def test_no_retry_policy_retries_data_that_does_not_fit(retry: Retry) -> None:
    # DataValidationError is a ValueError: a policy that retries ValueError still does not.
    app = Reactor()
    sub = app.subscribe("thing", _never_called, data=Order, retry=retry)
    async with app:
        receipt = await app.publish_and_wait("thing", {"id": "x"})
    assert receipt.outcomes["_never_called"].attempts == 1
    assert sub.retry is retry  # the subscription tells the policy as given


def test_string_annotations_resolve_in_the_handlers_globals() -> None:
    # Code run by exec (or a notebook cell) defines classes in no module of sys.modules;
    # with `from __future__ import annotations` their annotations name each other.
    code = (
        "from __future__ import annotations\n"
        "import attrs, anyio\n"
        "from reactor import Reactor\n"
        "@attrs.frozen\n"
        "class Line:\n"
        "    sku: str\n"
        "@attrs.frozen\n"
        "class Cart:\n"
        "    lines: list[Line]\n"
        "app = Reactor()\n"
        "got = []\n"
        "@app.subscribe('cart', data=Cart, run_in_thread=True)\n"
        "def handle_in_thread(cart: Cart) -> None:\n"
        "    got.append(cart)\n"
        "@app.subscribe('cart', data=Cart)\n"
        "async def handle(cart: Cart) -> None:\n"
        "    got.append(cart)\n"
        "async def main() -> None:\n"
        "    async with app:\n"
        "        await app.publish_and_wait('cart', {'lines': [{'sku': 'a'}]})\n"
        "anyio.run(main)\n"
    )
    namespace: dict[str, Any] = {"__name__": "not_a_module"}
    exec(compile(code, "cell", "exec", dont_inherit=True), namespace)
    expected = namespace["Cart"](lines=[namespace["Line"](sku="a")])
    assert namespace["got"] == [expected, expected]


def test_an_annotation_that_cannot_be_resolved_is_refused_when_subscribing() -> None:
    @attrs.frozen
    class Local:
        part: Missing  # type: ignore[name-defined]  # noqa: F821

    with pytest.raises(TypeError, match=r"the annotations of .*Local cannot be resolved"):
        Reactor().subscribe("thing", _never_called, data=Local)


@attrs.frozen
class WithCallback:
    callback: Callable[[int], int]


def test_an_annotation_that_values_cannot_be_checked_against_is_refused() -> None:
    with pytest.raises(TypeError, match="data= cannot check values against"):
        Reactor().subscribe("thing", _never_called, data=WithCallback)
