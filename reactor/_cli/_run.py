"""``reactor run``: its options, their environment variables, and running the app."""

from __future__ import annotations

import argparse
import importlib
import math
import os
from collections.abc import Mapping
from types import ModuleType
from typing import Any, Final

import attrs

from reactor import AppImportError

from ._apps import import_app
from ._logs import LOG_FORMATS, load_config
from ._logs import configure as configure_logging
from ._options import (
    ConfigError,
    argument_type,
    build_queue,
    check_choice,
    failure,
    logger,
    pick,
    redacted,
    usage_error,
)

BACKENDS: Final = ("asyncio", "trio")
LOOPS: Final = ("auto", "asyncio", "uvloop")
LOG_LEVELS: Final = ("critical", "error", "warning", "info", "debug")
_ENV_HELP: Final = """\
environment variables (a command-line argument wins over its variable):
  REACTOR_APP_DIR           --app-dir
  REACTOR_BACKEND           --backend
  REACTOR_LOOP              --loop
  REACTOR_GRACEFUL_TIMEOUT  --graceful-timeout
  REACTOR_LOG_LEVEL         --log-level
  REACTOR_LOG_FORMAT        --log-format
  REACTOR_LOG_CONFIG        --log-config
  REACTOR_QUEUE             --queue
  REACTOR_HTTP              --http

queue URLs (--queue; without it, the app runs on the queue its module built):
  memory://                  in memory, one process (memory://?capacity=N)
  sqlite:///events.db        an SQLite file, one process at a time
                             (sqlite:////abs/path/events.db for an absolute path)
  redis://HOST:6379/0?stream=orders&group=billing
                             a Redis stream, shared by the app's processes
                             (pip install 'reactor-events[redis]')
  nats://HOST:4222?stream=orders&group=billing
                             a NATS JetStream stream, shared by the app's processes
                             (pip install 'reactor-events[nats]')
Quote a URL that holds '&' in a shell. Each queue class's from_url() documents
the parameters of its URLs.
"""


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
    :ivar queue: the URL of the queue to run the app on instead of its own
        (:meth:`Reactor.use_queue() <reactor.Reactor.use_queue>`), or ``None`` to keep
        the queue the app was built with.
    :ivar queue_origin: where :attr:`queue` came from (``--queue`` or ``REACTOR_QUEUE``),
        for error messages.
    :ivar log_format: ``"text"`` or ``"json"`` when asked for (``--log-format``,
        ``REACTOR_LOG_FORMAT``), else ``None``: then logging is configured only if the
        app's module does not configure it itself.
    :ivar log_config: the path of a logging configuration file, or ``None``.
    :ivar http: the ``(host, port)`` to serve the app's HTTP ingress on, or ``None``.
    """

    app: str
    app_dir: str
    factory: bool
    backend: str
    use_uvloop: bool
    graceful_timeout: float | None
    log_level: str
    queue: str | None = None
    queue_origin: str = "default"
    log_format: str | None = None
    log_config: str | None = None
    http: tuple[str, int] | None = None


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
    backend, backend_origin = pick(args.backend, "--backend", environ, "REACTOR_BACKEND", "asyncio")
    backend = check_choice(backend.lower(), BACKENDS, backend_origin)
    loop, loop_origin = pick(args.loop, "--loop", environ, "REACTOR_LOOP", "auto")
    loop = check_choice(loop.lower(), LOOPS, loop_origin)
    level, level_origin = pick(args.log_level, "--log-level", environ, "REACTOR_LOG_LEVEL", "info")
    level = check_choice(level.lower(), LOG_LEVELS, level_origin)
    app_dir, _ = pick(args.app_dir, "--app-dir", environ, "REACTOR_APP_DIR", ".")
    queue, queue_origin = pick(args.queue, "--queue", environ, "REACTOR_QUEUE", "")
    if not queue and queue_origin == "--queue":
        raise ConfigError("--queue is empty: give a queue URL (sqlite:///events.db, ...)")
    log_format, format_origin = pick(
        args.log_format, "--log-format", environ, "REACTOR_LOG_FORMAT", ""
    )
    if log_format:
        log_format = check_choice(log_format.lower(), LOG_FORMATS, format_origin)
    log_config, _ = pick(args.log_config, "--log-config", environ, "REACTOR_LOG_CONFIG", "")
    if log_config and log_format:
        raise ConfigError(
            "give --log-config or --log-format, not both: the configuration file names "
            "its formatters (reactor.JsonFormatter writes JSON lines)"
        )
    http_text, http_origin = pick(args.http, "--http", environ, "REACTOR_HTTP", "")
    http = None
    if http_text:
        if backend != "asyncio":
            raise ConfigError(f"{http_origin} serves with uvicorn, which needs --backend asyncio")
        http = _parse_address(http_text, http_origin)

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
        queue=queue or None,
        queue_origin=queue_origin if queue else "default",
        log_format=log_format or None,
        log_config=log_config or None,
        http=http,
    )


def add_run_command(commands: Any) -> None:
    """Add ``reactor run`` to the subcommands of the ``reactor`` parser.

    :param commands: what the parser's ``add_subparsers()`` returned.
    """
    run = commands.add_parser(
        "run",
        help="run an app until SIGINT or SIGTERM",
        # Wrapped by hand: the raw formatter keeps the epilog's table intact.
        description=(
            "Import APP and run it until SIGINT or SIGTERM. The first signal stops the\n"
            "sources and drains in-flight work within the graceful timeout; a second\n"
            "signal forces the exit.\n\n"
            "--queue URL (or REACTOR_QUEUE) runs the app on the queue the URL names\n"
            "instead of the one its module built it with, without changing the code:\n"
            "  reactor run shop:app --queue sqlite:///events.db\n"
            "  reactor run shop:app --queue 'redis://127.0.0.1:6379/0?stream=orders&group=billing'\n\n"
            "--http HOST:PORT also serves the app's HTTP ingress with uvicorn, in the same\n"
            "process and lifecycle:\n"
            "  reactor run shop:app --http 127.0.0.1:8000"
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
        type=argument_type(_parse_timeout),
        help="seconds to drain in-flight work after the first signal "
        "(default: the app's graceful_timeout)",
    )
    run.add_argument(
        "--queue",
        metavar="URL",
        help="run the app on the queue this URL names instead of its own "
        "(memory://, sqlite:///events.db, redis://..., nats://...; see below)",
    )
    run.add_argument(
        "--http",
        metavar="HOST:PORT",
        help="serve the app's HTTP ingress (app.asgi) with uvicorn on this address, in the "
        "same process and lifecycle (pip install 'reactor-events[serve]'; port 0 picks one)",
    )
    run.add_argument(
        "--log-level", type=str.lower, choices=LOG_LEVELS, help="logging level (default: info)"
    )
    run.add_argument(
        "--log-format",
        type=str.lower,
        choices=LOG_FORMATS,
        help="write logs to standard error as text or as one JSON object per line; "
        "given, it replaces any logging setup (default: text, unless the app's module "
        "configures logging itself)",
    )
    run.add_argument(
        "--log-config",
        metavar="FILE",
        help="a logging dictConfig file (.json, .toml, or .yaml with PyYAML) applied "
        "instead of the command's own logging setup",
    )
    run.set_defaults(handler=run_command)


def run_command(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Run ``reactor run``: resolve its settings, import the app and run it.

    :param args: the parsed arguments.
    :param environ: the environment.
    :return: the exit status: :meth:`Reactor.run() <reactor.Reactor.run>`'s, or 2 for a
        usage error.
    """
    try:
        settings = resolve_run_settings(args, environ)
        # Built before the app is imported: a wrong URL or a missing client library is
        # a usage error, reported before the user's module runs.
        queue = (
            None if settings.queue is None else build_queue(settings.queue, settings.queue_origin)
        )
        serving = _serving_module() if settings.http is not None else None
        log_config = (
            None
            if settings.log_config is None
            else load_config(settings.log_config, "--log-config")
        )
        # Before the import, so that the app's import-time logs show; the library itself
        # never configures logging, the command line is the application (see _logs).
        imported = configure_logging(
            config=log_config, log_format=settings.log_format, level=settings.log_level
        )
    except ConfigError as exc:
        return usage_error(str(exc))
    try:
        app = import_app(settings.app, app_dir=settings.app_dir, factory=settings.factory)
    except AppImportError as exc:
        return usage_error(str(exc))
    finally:
        imported()
    if queue is not None:
        app.use_queue(queue)
        logger.info("queue: %s (%s)", redacted(settings.queue or ""), settings.queue_origin)
    if serving is not None:
        assert settings.http is not None
        host, port = settings.http
        # After use_queue(): a graceful timeout given on the command line applies.
        grace = (
            app.graceful_timeout if settings.graceful_timeout is None else settings.graceful_timeout
        )
        app.add_source(serving.HttpServer(app.asgi, host, port, grace=grace))

    logger.info(
        "starting %s on %s%s (pid %d)",
        settings.app,
        settings.backend,
        " with uvloop" if settings.use_uvloop else "",
        os.getpid(),
    )
    try:
        return app.run(
            backend=settings.backend,
            use_uvloop=settings.use_uvloop,
            graceful_timeout=settings.graceful_timeout,
        )
    except (OSError, BaseExceptionGroup) as exc:
        # The HTTP server could not bind, or stopped: a failure to report in one line,
        # not a traceback (the app has logged the source's failure already).
        error = None if serving is None else _only(exc, serving.ServeError)
        if error is None:
            raise
        return failure(str(error))


def _only(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    """*exc*, or the one exception inside its groups, if it is a *kind*; else ``None``."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc if isinstance(exc, kind) else None


def _serving_module() -> ModuleType:
    """The module of ``--http``, which imports uvicorn.

    :raises ConfigError: uvicorn is not installed.
    """
    try:
        from . import _http
    except ModuleNotFoundError as exc:
        if exc.name != "uvicorn":
            raise
        raise ConfigError(
            "--http serves with uvicorn, which is not installed: "
            "pip install 'reactor-events[serve]'"
        ) from None
    return _http


def _parse_address(text: str, origin: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (``[::1]:8000`` for IPv6; port 0 picks a free one).

    :raises ConfigError: not ``HOST:PORT`` with a port from 0 to 65535.
    """
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(
            f"{origin}={text!r} is not HOST:PORT (127.0.0.1:8000, 0.0.0.0:8000, [::1]:8000)"
        )
    return host, int(port)


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
                f"{origin}='uvloop' but uvloop is not installed: pip install 'reactor-events[uvloop]'"
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
