"""What type checkers see of ``subscribe(..., data=, run_in_thread=)``: mypy checks this file.

Each ``assert_type`` is checked by mypy (and is a no-op when the test runs); each
``# type: ignore[...]`` marks a call that mypy must refuse (``warn_unused_ignores``, part
of ``--strict``, fails the check if mypy accepted it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Coroutine
from typing import Any, assert_type

import attrs
import pytest

from reactor import Batch, Event, Reactor, Subscription


@attrs.frozen
class Order:
    id: int


@dataclasses.dataclass
class Refund:
    order: int


def test_handler_types_follow_data_and_run_in_thread() -> None:
    app = Reactor()

    # A typed handler takes the data class; its decorator keeps its signature.
    @app.subscribe("order.created", data=Order)
    async def ship(order: Order) -> None: ...

    assert_type(ship, Callable[[Order], Coroutine[Any, Any, None]])

    @app.subscribe("order.created", data=Order, run_in_thread=True)
    def invoice(order: Order) -> int:
        return order.id

    assert_type(invoice, Callable[[Order], int])

    @app.subscribe("order.created", run_in_thread=True)
    def log(event: Event) -> None: ...

    @app.subscribe("order.created")
    async def audit(event: Event) -> None: ...

    async def refund(refund: Refund) -> None: ...

    def refund_now(refund: Refund) -> None: ...

    def plain(event: Event) -> None: ...

    async def on_event(event: Event) -> None: ...

    assert_type(app.subscribe("refund", refund, data=Refund), Subscription)
    assert_type(app.subscribe("refund", refund_now, data=Refund, run_in_thread=True), Subscription)
    assert_type(app.subscribe("refund", plain, run_in_thread=True, name="plain"), Subscription)

    # What mypy refuses: a handler whose parameter is not the data class ...
    app.subscribe("refund", refund, data=Order, name="a")  # type: ignore[arg-type]
    app.subscribe("refund", on_event, data=Refund, name="b")  # type: ignore[arg-type]
    # ... a plain function without run_in_thread=True, a coroutine function with it ...
    # (which fail at run time too)
    with pytest.raises(TypeError, match="run_in_thread=True"):
        app.subscribe("refund", plain, name="c")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="run_in_thread=True"):
        app.subscribe("refund", refund_now, data=Refund, name="d")  # type: ignore[arg-type]
    # ... and, as a decorator, a handler that takes the event where data= is given.
    decorate = app.subscribe("refund", data=Refund, name="e")
    decorate(on_event)  # type: ignore[arg-type]
    assert len(app.subscriptions) == 10


def test_a_batch_handler_takes_a_list_of_events() -> None:
    app = Reactor()

    @app.subscribe("metric", batch=Batch(max_size=10))
    async def store(events: list[Event]) -> None: ...

    # The decorator returns the handler itself.
    kept: Callable[[list[Event]], Coroutine[Any, Any, None]] = store
    assert kept is store

    async def store_again(events: list[Event]) -> None: ...

    async def one(event: Event) -> None: ...

    assert_type(app.subscribe("metric", store_again, batch=Batch(), name="s"), Subscription)
    # A handler of one event is refused where a batch is given.
    decorate = app.subscribe("metric", batch=Batch(), name="t")
    decorate(one)  # type: ignore[type-var]
    assert len(app.subscriptions) == 3
