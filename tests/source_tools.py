"""What the tests of the sources that listen to a server (PostgreSQL, Redis, MQTT) share.

Waits are on the events themselves or on a source's counters (polled), bounded by
:data:`WAIT`; nothing sleeps to let things happen.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Awaitable, Callable

import anyio
import attrs
import pytest

from reactor import Event, Reactor
from reactor.abc import Source
from reactor.testing import Capture

#: Real I/O: a bound only a broken source (or server) reaches.
WAIT = 20.0


async def received(capture: Capture, count: int) -> list[Event]:
    """Wait until *capture* holds *count* events; return them."""
    with anyio.fail_after(WAIT):
        return await capture.wait_for(count)


async def until(check: Callable[[], bool | Awaitable[bool]]) -> None:
    """Poll *check* until it holds (the state of a server or of a source's counters)."""
    with anyio.fail_after(WAIT):
        while True:
            result = check()
            if not isinstance(result, bool):
                result = await result
            if result:
                return
            await anyio.sleep(0.02)


async def start_fails(app: Reactor) -> BaseException:
    """Start *app*, which must fail; return the error it raised."""
    with pytest.raises(Exception) as caught:
        async with app:
            pytest.fail("the app started")
    return caught.value


def without_id_and_time(event: Event) -> Event:
    """*event* with the attributes that differ between two builds of it made equal."""
    return attrs.evolve(event, id="x", time=None)


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on (for now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def run_without(module: str, *lines: str) -> str:
    """Run *lines* of Python in a new interpreter where *module* cannot be imported.

    The lines come after ``app = Reactor()`` and ``async def handle(event): pass``.

    :return: what they printed
    """
    code = "\n".join(
        (
            f"import sys; sys.modules[{module!r}] = None",
            "from reactor import Reactor",
            "async def handle(event): pass",
            "app = Reactor()",
            *lines,
        )
    )
    result = await anyio.run_process([sys.executable, "-c", code])
    return result.stdout.decode()


async def start_without(monkeypatch: pytest.MonkeyPatch, module: str, source: Source) -> str:
    """Start an app with *source* while *module* cannot be imported, which must fail with
    :class:`ModuleNotFoundError`; return its message."""
    monkeypatch.setitem(sys.modules, module, None)
    app = Reactor()
    app.add_source(source)
    error = await start_fails(app)
    assert isinstance(error, ModuleNotFoundError)
    return str(error)
