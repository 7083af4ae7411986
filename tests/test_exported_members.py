"""The public surface: what ``reactor`` exports is deliberate, documented and importable."""

from __future__ import annotations

import ast
import importlib
import inspect
import subprocess
import sys
import typing
from collections.abc import Iterator
from typing import Any

import attrs
import pytest

import reactor
import reactor.abc
import reactor.testing


def test_all_is_sorted_and_complete() -> None:
    assert reactor.__all__ == sorted(reactor.__all__, key=lambda name: (not name.isupper(), name))
    # (Names of pytest's assertion rewriting start with "@": the pytest plugin makes pytest
    # rewrite the package's modules, as it does for every plugin's distribution.)
    public = {name for name in vars(reactor) if not name.startswith(("_", "@"))}
    modules = {
        "abc",
        "opentelemetry",
        "prometheus",
        "pytest_plugin",
        "queues",
        "sources",
        "testing",
        "validators",
    }
    assert public - modules - {"annotations"} <= set(reactor.__all__)
    for name in reactor.__all__:
        assert hasattr(reactor, name), name


def test_exported_members_are_documented_and_report_the_public_module() -> None:
    for name in reactor.__all__:
        member = getattr(reactor, name)
        if inspect.isclass(member) or inspect.isfunction(member):
            # As anyio's do: reprs, tracebacks, pickles and stored names say reactor.Event.
            assert member.__module__ == "reactor", name
            assert inspect.getdoc(member), f"{name} has no docstring"
            for attr, value in vars(member).items():
                if attr.startswith("_") or not callable(value):
                    continue
                assert inspect.getdoc(value), f"{name}.{attr} has no docstring"


def test_import_reactor_imports_no_optional_or_heavy_dependency() -> None:
    code = (
        "import sys, reactor, reactor.abc, reactor.testing, reactor.queues, reactor.queues.memory;"
        "import reactor.sources.objects;"
        "bad = {'trio', 'uvloop', 'watchfiles', 'cloudevents', 'cronsim', 'asyncio.subprocess',"
        " 'coredis', 'nats', 'paho', 'cryptography', 'psycopg', 'botocore',"
        " 'prometheus_client', 'opentelemetry', 'msgspec', 'pydantic'};"
        "print(sorted(bad & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_import_reactor_imports_none_of_its_modules_until_a_name_is_used() -> None:
    # The exported names are bound on first use (PEP 562): `import reactor` is cheap, and a
    # class reached first through the engine still reports reactor as its home.
    code = (
        "import sys, reactor\n"
        "print(sorted(m for m in sys.modules if m.startswith('reactor.')))\n"
        "app = reactor.Reactor()\n"
        "stats = app.stats()\n"
        "print(type(stats).__module__, type(stats.latency).__module__)\n"
        "from reactor import *\n"
        "print(sorted(set(reactor.__all__) - set(vars(reactor))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out == ["[]", "reactor reactor", "[]"]


def test_the_lazy_names_are_the_ones_type_checkers_see() -> None:
    # reactor/__init__.py lists each name twice: imports for type checkers, and where
    # __getattr__ finds it at run time. The two lists must agree.
    tree = ast.parse(inspect.getsource(reactor))
    [guarded] = [
        node
        for node in tree.body
        if isinstance(node, ast.If)
        and isinstance(node.test, ast.Name)
        and node.test.id == "TYPE_CHECKING"
    ]
    seen = {
        alias.asname or alias.name: (node.module or "").lstrip(".")
        for node in guarded.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    homes = vars(reactor)["_HOMES"]
    assert seen == homes
    assert set(homes) == set(reactor.__all__) - {"__version__"}
    with pytest.raises(AttributeError, match="module 'reactor' has no attribute 'Reactr'"):
        reactor.Reactr  # type: ignore[attr-defined]  # noqa: B018


def test_the_server_sources_import_their_client_only_when_they_run() -> None:
    # Declaring a source and building its events (the test helpers) need no client library.
    code = (
        "import sys, reactor.sources.redis, reactor.sources.mqtt;"
        "print(sorted({'coredis', 'paho'} & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_the_broker_triggers_import_the_s3_decoder_only_to_decode() -> None:
    code = (
        "import sys, reactor.sources.redis, reactor.sources.mqtt, reactor.sources.postgres;"
        "print('reactor.sources.objects' in sys.modules);"
        "from reactor import Reactor;"
        "Reactor().on_mqtt('minio/events', url='mqtt://127.0.0.1', decode='s3');"
        "print('reactor.sources.objects' in sys.modules);"
        "print(sorted({'botocore', 'cryptography', 'paho'} & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["False", "True", "[]"]


PUBLIC_MODULES = (
    "reactor",
    "reactor.abc",
    "reactor.testing",
    "reactor.pytest_plugin",
    "reactor.validators",
    "reactor.queues",
    "reactor.queues.memory",
    "reactor.queues.nats",
    "reactor.queues.redis",
    "reactor.queues.sqlite",
    "reactor.sources.files",
    "reactor.sources.http",
    "reactor.sources.mqtt",
    "reactor.sources.objects",
    "reactor.sources.postgres",
    "reactor.sources.redis",
    "reactor.sources.timers",
)


def _classes_and_functions(module_name: str) -> Iterator[Any]:
    """The classes and functions a public module exports."""
    module = importlib.import_module(module_name)
    for name in getattr(module, "__all__", ()):
        member = getattr(module, name)
        if inspect.isclass(member) or inspect.isfunction(member):
            yield member


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_type_hints_of_public_names_resolve(module_name: str) -> None:
    # Tools that read annotations at run time (attrs.resolve_types, cattrs, pydantic)
    # look names up in a class's __module__; a name moved to its public home must still
    # resolve.
    for member in _classes_and_functions(module_name):
        typing.get_type_hints(member)
        if inspect.isclass(member) and attrs.has(member):
            attrs.resolve_types(member)


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_public_names_report_a_public_module(module_name: str) -> None:
    # reactor.abc.compile_glob, not reactor._subscription.compile_glob: reprs, pickles
    # and documentation tools show where a user imports the name from.
    for member in _classes_and_functions(module_name):
        home = member.__module__
        assert not any(part.startswith("_") for part in home.split(".")), (member, home)
