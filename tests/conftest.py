"""Test configuration: every backend-agnostic test runs on asyncio and trio."""

from __future__ import annotations

import os

import anyio
import pytest


@pytest.fixture(
    params=[
        pytest.param("asyncio", id="asyncio"),
        pytest.param("trio", id="trio"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run each ``pytest.mark.anyio`` test on both backends."""
    backend: str = request.param
    return backend


def pytest_configure(config: pytest.Config) -> None:
    # Without trio installed the trio half of the suite would vanish silently.
    if os.environ.get("CI") and "trio" not in anyio.get_available_backends():
        raise pytest.UsageError("trio is not installed: install the project with '.[dev]'")
