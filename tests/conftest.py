"""Test configuration: every backend-agnostic test runs on asyncio and trio.

The dispatcher and lifecycle tests (modules marked ``pytest.mark.uvloop``) run on
asyncio with uvloop too: the hot path's scheduling and the app's shutdown are where an
event loop's differences would show. Only those, to keep the suite's time in bounds.
"""

from __future__ import annotations

import os
from typing import Any

import anyio
import pytest

#: The backends of the tests marked ``uvloop``: anyio's plugin takes a backend's options.
WITH_UVLOOP = [
    pytest.param("asyncio", id="asyncio"),
    pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
    pytest.param("trio", id="trio"),
]


@pytest.fixture(
    params=[
        pytest.param("asyncio", id="asyncio"),
        pytest.param("trio", id="trio"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    """Run each ``pytest.mark.anyio`` test on both backends."""
    return request.param


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # A parametrisation of the fixture's name on the test takes the place of its params;
    # added as a marker before pytest reads the test's markers.
    definition = metafunc.definition
    if (
        "anyio_backend" in metafunc.fixturenames
        and definition.get_closest_marker("uvloop") is not None
        and not any(
            "anyio_backend" in marker.args[0] for marker in definition.iter_markers("parametrize")
        )
    ):
        definition.add_marker(pytest.mark.parametrize("anyio_backend", WITH_UVLOOP))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "uvloop: also run the module's anyio tests on asyncio with uvloop"
    )
    # Without trio installed the trio half of the suite would vanish silently.
    if os.environ.get("CI") and "trio" not in anyio.get_available_backends():
        raise pytest.UsageError("trio is not installed: install the project with '.[dev]'")
