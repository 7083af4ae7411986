"""How ``reactor run`` sets up logging: ``--log-format``, ``--log-config``, and leaving a
user's own setup alone.

Three cases:

* ``--log-config FILE``: the file's logging configuration
  (:func:`logging.config.dictConfig`) is applied before the app is imported, as given,
  except that ``disable_existing_loggers`` defaults to ``False`` (reactor's loggers
  exist already and would otherwise be silenced).
* ``--log-format`` given (argument or variable): the root logger gets one handler on
  standard error with that format and the ``--log-level``, replacing any it had.
* neither: the command configures logging only if nobody else did. The app is imported
  first; what is logged meanwhile is held (at most :data:`_HELD` records). If the app's
  module configured logging as it was imported (``logging.basicConfig()``, its own
  ``dictConfig``, a handler on the root logger), that setup is kept and receives the held
  records; otherwise the command installs its handler (text format) and writes them.
"""

from __future__ import annotations

import collections
import importlib
import json
import logging
import logging.config
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from reactor._logs import JsonFormatter

from ._options import ConfigError

LOG_FORMATS: Final = ("text", "json")
TEXT_FORMAT: Final = "%(asctime)s %(levelname)-8s %(name)s: %(message)s"
# The most records held while the app is imported, before it is known who logs them.
_HELD: Final = 10_000


def load_config(path: str, origin: str) -> dict[str, Any]:
    """Read a logging configuration (a :func:`logging.config.dictConfig` dictionary).

    JSON (``.json``), TOML (``.toml``, the dictionary at its top level) or, when PyYAML is
    installed, YAML (``.yaml``, ``.yml``).

    :param path: the file.
    :param origin: where the path came from (``--log-config``, ``REACTOR_LOG_CONFIG``).
    :raises ConfigError: the file cannot be read or parsed, or is not a dictionary with
        a ``version``.
    :return: the configuration.
    """
    suffix = Path(path).suffix.lower()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{origin}: cannot read {path!r}: {exc.strerror or exc}") from None
    try:
        if suffix == ".toml":
            config: object = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            try:
                yaml = importlib.import_module("yaml")
            except ImportError:
                raise ConfigError(
                    f"{origin}: {path!r} is YAML but PyYAML is not installed "
                    "(pip install pyyaml), or write the configuration as JSON or TOML"
                ) from None
            config = yaml.safe_load(text)
        else:
            config = json.loads(text)
    except ConfigError:
        raise
    except ValueError as exc:  # json, tomllib and yaml errors are ValueErrors, or...
        raise ConfigError(f"{origin}: {path!r} is not valid: {exc}") from None
    except Exception as exc:  # ... yaml.YAMLError, which is not
        raise ConfigError(f"{origin}: {path!r} is not valid: {exc}") from None
    if not isinstance(config, dict) or "version" not in config:
        raise ConfigError(
            f"{origin}: {path!r} must hold a logging dictConfig dictionary "
            "(with 'version': 1; see the logging.config documentation)"
        )
    return config


def handler(log_format: str, level: str) -> logging.Handler:
    """A handler on standard error that writes *log_format* (``text`` or ``json``)."""
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    stream.setLevel(level.upper())
    return stream


def configure(
    *, config: dict[str, Any] | None, log_format: str | None, level: str
) -> Callable[[], None]:
    """Set up logging before the app is imported (see the module docs).

    :param config: a ``--log-config`` dictionary, or ``None``.
    :param log_format: ``--log-format`` when given, else ``None``.
    :param level: the ``--log-level``, lower case.
    :raises ConfigError: the configuration is refused by :func:`logging.config.dictConfig`.
    :return: what to call once the app is imported.
    """
    root = logging.getLogger()
    if config is not None:
        # dictConfig() would otherwise silence every logger that exists already, among
        # them reactor's own (the command has imported reactor): keep them, unless the
        # file says otherwise.
        config = {"disable_existing_loggers": False, **config}
        try:
            logging.config.dictConfig(config)
        except (ValueError, TypeError, AttributeError, ImportError) as exc:
            raise ConfigError(f"the logging configuration is refused: {exc}") from None
        return _nothing
    if log_format is not None:
        for old in root.handlers[:]:
            root.removeHandler(old)
            old.close()
        root.addHandler(handler(log_format, level))
        root.setLevel(level.upper())
        return _nothing
    if root.handlers:
        return _nothing  # configured by whoever called the command
    # Nobody configured logging yet: hold what is logged while the app is imported, then
    # decide. The held records bypass the root's handlers: logging.lastResort receives
    # exactly the records for which no handler was found.
    root.setLevel(level.upper())
    held: collections.deque[logging.LogRecord] = collections.deque(maxlen=_HELD)
    holder = _Holder(held)
    previous, logging.lastResort = logging.lastResort, holder

    def imported() -> None:
        logging.lastResort = previous
        if not root.handlers:
            root.addHandler(handler("text", level))
        for record in held:
            if record.levelno >= logging.getLogger(record.name).getEffectiveLevel():
                logging.getLogger(record.name).handle(record)
        held.clear()

    return imported


def _nothing() -> None:
    pass


class _Holder(logging.Handler):
    """Keeps the records it is given, for :func:`configure` to hand on."""

    def __init__(self, held: collections.deque[logging.LogRecord]) -> None:
        super().__init__()
        self._held = held

    def emit(self, record: logging.LogRecord) -> None:
        self._held.append(record)
