"""reactor's pytest plugin: fixtures to test an app, on pytest-asyncio and anyio's plugin.

Installed with reactor (the ``pytest11`` entry point ``reactor``); it imports nothing of
reactor until a test asks for a fixture. The fixtures are plain (not async) fixtures, so
they work the same under pytest-asyncio (strict or auto mode) and under anyio's pytest
plugin, on asyncio and trio:

``reactor_clock``
    a new :class:`~reactor.testing.VirtualClock` for the test.

``reactor_run``
    ``reactor_run(app)`` is an async context manager that runs *app* on
    ``reactor_clock`` (its own clock given back after) and records its handlers' calls
    (:func:`reactor.testing.run`): ``async with reactor_run(app) as recorder:``. Pass
    ``virtual_time=False`` to keep the app's own clock.

::

    from myapp import app                   # a module-level app: no factory needed

    @pytest.mark.anyio                      # or @pytest.mark.asyncio
    async def test_nightly_report(reactor_run, reactor_clock):
        async with reactor_run(app) as recorder:
            await reactor_clock.advance(24 * 3600)
        recorder.assert_ran("nightly_report", times=1)

Why a context manager, not a fixture that yields the running app: the app's task group
must be left by the task that entered it, and pytest-asyncio runs an async fixture's
setup, the test and the fixture's teardown in different tasks, so ``async with app:
yield app`` in a fixture fails at teardown with "Attempted to exit cancel scope in a
different task than it was entered in". (anyio's plugin runs them in one task, where
such a fixture works; the context manager works under both.)
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Protocol

import pytest

if TYPE_CHECKING:
    from reactor import Reactor
    from reactor.testing import Recorder, VirtualClock

__all__ = ["AppRunner", "reactor_clock", "reactor_run"]


class AppRunner(Protocol):
    """The ``reactor_run`` fixture: ``async with reactor_run(app) as recorder:``."""

    def __call__(
        self, app: Reactor, /, *, virtual_time: bool = True
    ) -> AbstractAsyncContextManager[Recorder]:
        """Run *app* for the test, on the ``reactor_clock`` fixture's clock (with
        ``virtual_time=False``: on its own clock); the context gives a
        :class:`~reactor.testing.Recorder`."""
        ...


@pytest.fixture
def reactor_clock() -> VirtualClock:
    """A new :class:`~reactor.testing.VirtualClock`, the one ``reactor_run`` uses."""
    from reactor.testing import VirtualClock

    return VirtualClock()


@pytest.fixture
def reactor_run(reactor_clock: VirtualClock) -> AppRunner:
    """Run an app for the test: ``async with reactor_run(app) as recorder:``.

    The app runs on ``reactor_clock`` (its own clock given back after) and its handlers'
    calls are recorded (:func:`reactor.testing.run`).
    """
    from reactor.testing import run

    def runner(
        app: Reactor, /, *, virtual_time: bool = True
    ) -> AbstractAsyncContextManager[Recorder]:
        return run(app, clock=reactor_clock if virtual_time else None)

    return runner
