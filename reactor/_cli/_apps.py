"""The app importer of ``reactor run``: import strings, files and factories."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from pathlib import Path
from types import ModuleType

from reactor import AppImportError, Reactor


def import_app(app: str, *, app_dir: str | None = ".", factory: bool = False) -> Reactor:
    """Import the :class:`~reactor.Reactor` that an import string names.

    ``app`` is ``module:attribute`` (the attribute may be dotted, ``module:a.b``) or
    ``path/to/file.py:attribute``: a string whose module part ends in ``.py`` or
    contains a path separator is a file, loaded as a module named after its stem and
    registered in :data:`sys.modules` (so dataclasses and pickle find it), with the
    file's directory put on :data:`sys.path` as ``python path/to/file.py`` would.

    A :exc:`ModuleNotFoundError` for the named module (or a package it lives in)
    becomes an :exc:`~reactor.AppImportError`; one raised while the module itself runs,
    for some other module it imports, is a bug in that module and propagates, as does
    any other exception raised by the user's code.

    :param app: the import string.
    :param app_dir: a directory to put first on :data:`sys.path`, or ``None`` for none.
    :param factory: ``app`` names a callable taking no arguments that returns the app.
    :raises reactor.AppImportError: the string is malformed, the module or file does
        not exist, the attribute is missing, or it is not a ``Reactor``.
    :return: the app.
    """
    module_part, sep, attr_part = app.rpartition(":")
    if not sep or not module_part or not attr_part:
        raise AppImportError(
            f"app {app!r} must be in the form 'module:attribute' or 'path/to/file.py:attribute'"
        )
    attrs_path = attr_part.split(".")
    if not all(part.isidentifier() for part in attrs_path):
        raise AppImportError(f"app {app!r}: {attr_part!r} is not a valid attribute name")

    if app_dir is not None:
        sys.path.insert(0, os.path.abspath(app_dir))
    if _is_file_path(module_part):
        module = _load_file(module_part)
    else:
        module = _import_module(module_part, app)

    obj: object = module
    for depth, part in enumerate(attrs_path):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            where = (
                f" ({'.'.join(attrs_path[:depth])!r} has no attribute {part!r})" if depth else ""
            )
            raise AppImportError(
                f"attribute {attr_part!r} not found in module {module.__name__!r}{where}"
            ) from None

    if factory:
        obj = _call_factory(obj, app)
        if not isinstance(obj, Reactor):
            raise AppImportError(
                f"factory {app!r} returned {_describe(obj)}, not a reactor.Reactor"
            )
    elif not isinstance(obj, Reactor):
        if isinstance(obj, type) and issubclass(obj, Reactor):
            # "the class reactor.Reactor, not a reactor.Reactor" would say nothing: the
            # mistake is passing the class where an instance belongs.
            raise AppImportError(
                f"{app!r} is the {obj.__qualname__} class itself, not an instance; "
                f"create one (app = {obj.__qualname__}()) or pass --factory"
            )
        if callable(obj) and not isinstance(obj, type):
            hint = "; if it is a factory that returns one, pass --factory"
        else:
            hint = ""
        raise AppImportError(f"{app!r} is {_describe(obj)}, not a reactor.Reactor{hint}")
    return obj


def _is_file_path(module_part: str) -> bool:
    separators = [sep for sep in (os.sep, os.altsep) if sep]
    return module_part.endswith(".py") or any(sep in module_part for sep in separators)


def _import_module(name: str, app: str) -> ModuleType:
    if not all(part.isidentifier() for part in name.split(".")):
        raise AppImportError(f"app {app!r}: {name!r} is not a valid module name")
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        # Only the module we were asked for, or a package on its way, is "not found";
        # any other missing module was imported by the user's code: their bug, keep
        # the traceback (uvicorn draws the same line).
        if exc.name is None or not (name == exc.name or name.startswith(exc.name + ".")):
            raise
        missing = "" if exc.name == name else f" (no module named {exc.name!r})"
        raise AppImportError(
            f"could not import module {name!r}{missing}; "
            "check the name, or pass --app-dir with the directory that holds it"
        ) from None


def _load_file(module_part: str) -> ModuleType:
    path = Path(module_part).resolve()
    if not path.is_file():
        raise AppImportError(f"file {module_part!r} not found")
    name = path.stem
    existing = sys.modules.get(name)
    if existing is not None:
        existing_file = getattr(existing, "__file__", None)
        if existing_file is not None and Path(existing_file).resolve() == path:
            return existing
        raise AppImportError(
            f"cannot load {module_part!r} as module {name!r}: a module of that name is "
            "already imported; rename the file or use the 'module:attribute' form"
        )
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise AppImportError(f"cannot load {module_part!r}: not a Python source file")
    module = importlib.util.module_from_spec(spec)
    # Sibling imports work as they do under ``python path/to/file.py``.
    sys.path.insert(0, str(path.parent))
    # Registered before it runs: dataclasses, attrs and pickle look classes up by
    # their module's name.
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _call_factory(obj: object, app: str) -> object:
    if not callable(obj):
        raise AppImportError(
            f"{app!r} is {_describe(obj)}, not callable; --factory needs a function "
            "taking no arguments that returns a reactor.Reactor"
        )
    try:
        inspect.signature(obj).bind()
    except TypeError as exc:
        raise AppImportError(f"factory {app!r} cannot be called without arguments: {exc}") from None
    except ValueError:
        pass  # no signature to check (some builtins): just call it
    result: object = obj()
    if inspect.iscoroutine(result):
        result.close()  # never awaited: close it so no RuntimeWarning follows the error
        raise AppImportError(
            f"factory {app!r} is a coroutine function; --factory needs a regular function"
        )
    return result


def _describe(obj: object) -> str:
    """Say what *obj* is, for an error message."""
    if isinstance(obj, type):
        return f"the class {_qualified_name(obj)}"
    if isinstance(obj, ModuleType):
        return f"the module {obj.__name__}"
    if inspect.isroutine(obj):
        return f"the function {_qualified_name(obj)}"
    return f"an object of type {_qualified_name(type(obj))}"


def _qualified_name(obj: object) -> str:
    module = getattr(obj, "__module__", None)
    name = getattr(obj, "__qualname__", None) or repr(obj)
    return name if module in (None, "builtins") else f"{module}.{name}"
