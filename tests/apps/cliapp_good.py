"""Import targets for the resolver tests of ``reactor run``."""

from __future__ import annotations

from types import SimpleNamespace

from reactor import Reactor

app = Reactor()
services = SimpleNamespace(app=app)
not_an_app = 42


def create_app() -> Reactor:
    """Return a new app: a valid ``--factory`` target."""
    return Reactor()


def make_number() -> int:
    """Return something that is not an app."""
    return 7


def needs_arguments(name: str) -> Reactor:
    """Take an argument, which ``--factory`` cannot give."""
    return Reactor(source=f"/{name}")


async def create_app_async() -> Reactor:
    """Return an app from a coroutine function, which ``--factory`` does not await."""
    return Reactor()
