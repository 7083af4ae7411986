"""The ``reactor`` command line.

``reactor run APP`` imports a :class:`~reactor.Reactor` and runs it until SIGINT or
SIGTERM: the first signal drains in-flight work within the graceful timeout, a second
one forces the exit. ``APP`` follows uvicorn's import-string rules::

    reactor run shop.events:app             # module "shop.events", attribute "app"
    reactor run shop:services.app           # the attribute may be dotted
    reactor run examples/quickstart.py:app  # a file path works too
    reactor run --factory shop:create_app   # call a zero-argument factory

Every option also reads a ``REACTOR_*`` environment variable; a command-line argument
wins over the variable, which wins over the default.

Exit status: the status :meth:`Reactor.run() <reactor.Reactor.run>` returns, 0 after a
graceful stop (everything in flight drained, or what was left was cancelled at the
graceful timeout, which is logged) and 1 when a second signal forced the stop; 2 for a
usage error (a bad
argument, environment variable or import string). An exception raised by the user's
own code (while it is imported, or by a failing source) propagates with its traceback
and exits 1, as under ``python -m``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import logging
import math
import os
import sys
from collections.abc import Mapping, Sequence
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as distribution_version
from pathlib import Path
from types import ModuleType
from typing import Final

import attrs

from ._exceptions import AppImportError
from ._reactor import Reactor

__all__ = [
    "ConfigError",
    "RunSettings",
    "build_parser",
    "import_app",
    "main",
    "resolve_run_settings",
]

BACKENDS: Final = ("asyncio", "trio")
LOOPS: Final = ("auto", "asyncio", "uvloop")
LOG_LEVELS: Final = ("critical", "error", "warning", "info", "debug")

#: Exit status for a usage error, the same as argparse's.
EXIT_USAGE: Final = 2

_LOG_FORMAT: Final = "%(asctime)s %(levelname)-8s %(name)s: %(message)s"
_ENV_HELP: Final = """\
environment variables (a command-line argument wins over its variable):
  REACTOR_APP_DIR           --app-dir
  REACTOR_BACKEND           --backend
  REACTOR_LOOP              --loop
  REACTOR_GRACEFUL_TIMEOUT  --graceful-timeout
  REACTOR_LOG_LEVEL         --log-level
"""

logger = logging.getLogger("reactor.cli")


class ConfigError(ValueError):
    """An argument or environment variable has a value ``reactor run`` cannot use."""


@attrs.frozen(kw_only=True)
class RunSettings:
    """The resolved configuration of one ``reactor run``.

    :ivar app: the import string or file path of the app (``module:attr``).
    :ivar app_dir: the directory put first on :data:`sys.path` before importing.
    :ivar factory: whether ``app`` names a zero-argument callable returning the app.
    :ivar backend: the anyio backend, ``"asyncio"`` or ``"trio"``.
    :ivar use_uvloop: whether the asyncio backend runs on uvloop.
    :ivar graceful_timeout: seconds to drain after the first signal, or ``None`` to
        keep the app's own ``graceful_timeout``.
    :ivar log_level: the level of the root logger, in lower case.
    """

    app: str
    app_dir: str
    factory: bool
    backend: str
    use_uvloop: bool
    graceful_timeout: float | None
    log_level: str


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``reactor`` command line.

    :param argv: the arguments after the program name; ``None`` reads :data:`sys.argv`.
    :return: the process exit status: 0 after a graceful stop, 1 when a second signal
        forced it, 2 for a usage error.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        # argparse exits for --help, --version and bad arguments; return the status
        # instead so that main() can be called (and tested) like a function.
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    return _run(args, os.environ)


def resolve_run_settings(args: argparse.Namespace, environ: Mapping[str, str]) -> RunSettings:
    """Combine the parsed arguments of ``reactor run`` with the environment.

    Each value comes from its command-line argument if given, else from its
    ``REACTOR_*`` environment variable if set and not empty, else from the default.

    :param args: the namespace returned by the ``reactor`` argument parser.
    :param environ: the environment, usually :data:`os.environ`.
    :raises ConfigError: an environment variable has an invalid value, or the loop
        and backend do not go together.
    :return: the resolved settings.
    """
    backend, backend_origin = _pick(
        args.backend, "--backend", environ, "REACTOR_BACKEND", "asyncio"
    )
    backend = _check_choice(backend.lower(), BACKENDS, backend_origin)
    loop, loop_origin = _pick(args.loop, "--loop", environ, "REACTOR_LOOP", "auto")
    loop = _check_choice(loop.lower(), LOOPS, loop_origin)
    level, level_origin = _pick(args.log_level, "--log-level", environ, "REACTOR_LOG_LEVEL", "info")
    level = _check_choice(level.lower(), LOG_LEVELS, level_origin)
    app_dir, _ = _pick(args.app_dir, "--app-dir", environ, "REACTOR_APP_DIR", ".")

    timeout: float | None = args.graceful_timeout
    if timeout is None and environ.get("REACTOR_GRACEFUL_TIMEOUT"):
        text = environ["REACTOR_GRACEFUL_TIMEOUT"]
        try:
            timeout = _parse_timeout(text)
        except ValueError as exc:
            raise ConfigError(f"REACTOR_GRACEFUL_TIMEOUT={text!r} {exc}") from None

    return RunSettings(
        app=args.app,
        app_dir=app_dir,
        factory=args.factory,
        backend=backend,
        use_uvloop=_use_uvloop(loop, loop_origin, backend),
        graceful_timeout=timeout,
        log_level=level,
    )


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
            hint = "; create an instance (app = Reactor()) or pass --factory"
        elif callable(obj) and not isinstance(obj, type):
            hint = "; if it is a factory that returns one, pass --factory"
        else:
            hint = ""
        raise AppImportError(f"{app!r} is {_describe(obj)}, not a reactor.Reactor{hint}")
    return obj


def build_parser() -> argparse.ArgumentParser:
    """Build the parser of the ``reactor`` command line.

    :return: the parser; ``reactor run`` options default to ``None`` when not given.
    """
    parser = argparse.ArgumentParser(
        prog="reactor",
        description="reactor: an embeddable, event-driven runtime for async Python.",
    )
    parser.add_argument("--version", action="version", version=f"reactor {_version()}")
    commands = parser.add_subparsers(title="commands", dest="command", required=True)

    run = commands.add_parser(
        "run",
        help="run an app until SIGINT or SIGTERM",
        # Wrapped by hand: the raw formatter keeps the epilog's table intact.
        description=(
            "Import APP and run it until SIGINT or SIGTERM. The first signal stops the\n"
            "sources and drains in-flight work within the graceful timeout; a second\n"
            "signal forces the exit."
        ),
        epilog=_ENV_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument(
        "app",
        metavar="APP",
        help="'module:attribute' or 'path/to/file.py:attribute' naming a reactor.Reactor",
    )
    # Defaults are None so that resolve_run_settings() can tell "not given" (fall back to
    # the environment) from "given".
    run.add_argument(
        "--app-dir",
        metavar="DIR",
        help="directory to put first on the module search path (default: the current directory)",
    )
    run.add_argument(
        "--factory",
        action="store_true",
        help="APP names a callable taking no arguments that returns the reactor.Reactor",
    )
    run.add_argument(
        "--backend", type=str.lower, choices=BACKENDS, help="anyio backend (default: asyncio)"
    )
    run.add_argument(
        "--loop",
        type=str.lower,
        choices=LOOPS,
        help="asyncio event loop; auto uses uvloop when it is installed (default: auto)",
    )
    run.add_argument(
        "--graceful-timeout",
        metavar="SECONDS",
        type=_timeout_argument,
        help="seconds to drain in-flight work after the first signal "
        "(default: the app's graceful_timeout)",
    )
    run.add_argument(
        "--log-level", type=str.lower, choices=LOG_LEVELS, help="logging level (default: info)"
    )
    return parser


def _run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    try:
        settings = resolve_run_settings(args, environ)
    except ConfigError as exc:
        return _usage_error(str(exc))
    # Configure logging before the import, so that the app's import-time logs show; the
    # library itself never configures logging, the command line is the application.
    logging.basicConfig(level=settings.log_level.upper(), format=_LOG_FORMAT, stream=sys.stderr)
    try:
        app = import_app(settings.app, app_dir=settings.app_dir, factory=settings.factory)
    except AppImportError as exc:
        return _usage_error(str(exc))

    logger.info(
        "starting %s on %s%s (pid %d)",
        settings.app,
        settings.backend,
        " with uvloop" if settings.use_uvloop else "",
        os.getpid(),
    )
    return app.run(
        backend=settings.backend,
        use_uvloop=settings.use_uvloop,
        graceful_timeout=settings.graceful_timeout,
    )


def _usage_error(message: str) -> int:
    sys.stderr.write(f"reactor: error: {message}\n")
    return EXIT_USAGE


def _pick(
    given: str | None, flag: str, environ: Mapping[str, str], variable: str, default: str
) -> tuple[str, str]:
    """Return a value and where it came from, for error messages."""
    if given is not None:
        return given, flag
    # An empty variable counts as unset, as in most shells' ${VAR:-default}.
    if value := environ.get(variable):
        return value, variable
    return default, "default"


def _check_choice(value: str, choices: Sequence[str], origin: str) -> str:
    if value not in choices:
        raise ConfigError(f"{origin}={value!r} is not one of {', '.join(choices)}")
    return value


def _use_uvloop(loop: str, origin: str, backend: str) -> bool:
    if backend != "asyncio":
        if loop != "auto":
            raise ConfigError(f"{origin}={loop!r} applies only to the asyncio backend")
        return False
    if loop == "asyncio":
        return False
    try:
        importlib.import_module("uvloop")
    except ImportError:
        if loop == "uvloop":
            raise ConfigError(
                f"{origin}='uvloop' but uvloop is not installed: pip install 'reactor[uvloop]'"
            ) from None
        return False
    return True


def _parse_timeout(text: str) -> float:
    """Parse seconds; the ValueError's message completes a sentence about *text*."""
    try:
        seconds = float(text)
    except ValueError:
        raise ValueError("is not a number of seconds") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError("must be a finite number of seconds, zero or more")
    return seconds


def _timeout_argument(text: str) -> float:
    try:
        return _parse_timeout(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} {exc}") from None


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


def _version() -> str:
    try:
        return distribution_version("reactor")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"
