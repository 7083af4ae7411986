"""The names under which the durable queues store the classes of errors.

A dead letter keeps its error's class by name. reactor's own classes live in private
modules (``reactor._exceptions``) and are exported by a public package (``reactor``), so
they are stored under that public name (``reactor.DeliveryTimeout``), which stays valid
when the private modules move. The SQLite, Redis and NATS queues all store names so.
"""

from __future__ import annotations

import sys

import reactor

__all__ = ["first_private", "public_name", "resolve"]


def public_name(cls: type) -> str:
    """The name under which *cls* is stored: ``ValueError`` for a builtin, and for a class
    of a private module of reactor (``reactor._x``, ``reactor.sources._y``) its name in
    the nearest public package that exports it (``reactor.DeliveryTimeout``).

    Any other class (the application's) is stored as ``module.qualname``; so is a class
    of reactor's that no public package exports, as none of the dead letters' errors is.
    """
    module, name = cls.__module__, cls.__qualname__
    if module == "builtins":
        return name
    parts = module.split(".")
    private = first_private(parts)
    if private is not None:
        for end in range(private, 0, -1):
            if resolve(".".join(parts[:end]), name) is cls:
                return f"{'.'.join(parts[:end])}.{name}"
    return f"{module}.{name}"


def first_private(parts: list[str]) -> int | None:
    """The index of the first private part of a dotted name of reactor's, or ``None``."""
    if parts[0] != "reactor":
        return None
    return next((i for i, part in enumerate(parts) if part.startswith("_")), None)


def resolve(module: str, qualname: str) -> object:
    """What *qualname* names in the imported *module*, or ``None`` (nothing is imported)."""
    found: object = sys.modules.get(module) if module != "reactor" else reactor
    for part in qualname.split("."):
        found = getattr(found, part, None)
        if found is None:
            return None
    return found
