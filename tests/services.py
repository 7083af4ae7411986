"""The real servers that service tests talk to: their URLs, and skipping when absent.

Each service's URL comes from a ``REACTOR_TEST_*`` variable, with this machine's loopback
server as the default. A test that needs a server calls :func:`require` (through the
fixtures of its module): it skips with the reason when the server does not answer, and
fails instead when ``REACTOR_REQUIRE_SERVICES=1`` (which CI sets when the servers answer),
so that a broken server cannot turn a suite into a row of skips.
"""

from __future__ import annotations

import os
import socket
from typing import Final
from urllib.parse import urlsplit

import pytest

#: Each service's variable and default URL.
SERVICES: Final = {
    "redis": ("REACTOR_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
    "nats": ("REACTOR_TEST_NATS_URL", "nats://127.0.0.1:4222"),
    "postgres": ("REACTOR_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"),
    "mqtt": ("REACTOR_TEST_MQTT_URL", "mqtt://127.0.0.1:1883"),
}
_DEFAULT_PORTS: Final = {"redis": 6379, "nats": 4222, "postgres": 5432, "mqtt": 1883}
_answers: dict[str, bool] = {}


def url(service: str) -> str:
    """The URL of *service* (``"redis"``, ``"nats"``, ...), from its variable or the default."""
    variable, default = SERVICES[service]
    return os.environ.get(variable) or default


def required() -> bool:
    """Whether a missing server fails the test instead of skipping it."""
    return os.environ.get("REACTOR_REQUIRE_SERVICES", "") == "1"


def require(service: str) -> str:
    """Return *service*'s URL once its server answers; skip (or fail) when it does not."""
    address = url(service)
    if service not in _answers:
        parts = urlsplit(address)
        host = parts.hostname or "127.0.0.1"
        port = parts.port or _DEFAULT_PORTS[service]
        try:
            with socket.create_connection((host, port), timeout=2.0):
                _answers[service] = True
        except OSError:
            _answers[service] = False
    if not _answers[service]:
        variable = SERVICES[service][0]
        reason = f"no {service} server answers at {address} (set {variable} to another)"
        if required():
            pytest.fail(f"{reason}, and REACTOR_REQUIRE_SERVICES=1 says it must")
        pytest.skip(reason)
    return address
