"""What every ``reactor`` command shares: the argument-or-variable rule, errors, exit statuses."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Final, TypeVar
from urllib.parse import urlsplit

from reactor.abc import EventQueue
from reactor.queues import from_url

T = TypeVar("T")

#: Exit status for a usage error, the same as argparse's.
EXIT_USAGE: Final = 2
#: Exit status when a queue file cannot be used: missing, not a queue, damaged or owned.
EXIT_FAILURE: Final = 1

#: The command line's one logger, named for the command line rather than for a module.
logger = logging.getLogger("reactor.cli")


class ConfigError(ValueError):
    """An argument or environment variable has a value ``reactor run`` cannot use."""


def usage_error(message: str) -> int:
    """Write a usage error to standard error.

    :param message: what was wrong and what to do.
    :return: :data:`EXIT_USAGE`, for the command to return.
    """
    sys.stderr.write(f"reactor: error: {message}\n")
    return EXIT_USAGE


def failure(message: str) -> int:
    """Write why a command failed to standard error.

    :param message: what failed and why.
    :return: :data:`EXIT_FAILURE`, for the command to return.
    """
    sys.stderr.write(f"reactor: error: {message}\n")
    return EXIT_FAILURE


def pick(
    given: str | None, flag: str, environ: Mapping[str, str], variable: str, default: str
) -> tuple[str, str]:
    """Choose an option's value: the argument, else its environment variable, else the default.

    :param given: the command-line argument, ``None`` when not given.
    :param flag: the argument's name, as the origin of its value.
    :param environ: the environment.
    :param variable: the environment variable's name.
    :param default: the value when neither is given.
    :return: the value, and where it came from (for error messages).
    """
    if given is not None:
        return given, flag
    # An empty variable counts as unset, as in most shells' ${VAR:-default}.
    if value := environ.get(variable):
        return value, variable
    return default, "default"


def check_choice(value: str, choices: Sequence[str], origin: str) -> str:
    """Check that *value* is one of *choices*.

    :param value: the value.
    :param choices: the allowed values.
    :param origin: where the value came from (``--backend``, ``REACTOR_BACKEND``, ...).
    :raises ConfigError: it is not.
    :return: the value.
    """
    if value not in choices:
        raise ConfigError(f"{origin}={value!r} is not one of {', '.join(choices)}")
    return value


def argument_type(parse: Callable[[str], T]) -> Callable[[str], T]:
    """Make an argparse ``type=`` from *parse*, whose :class:`ValueError` says what is wrong.

    The usage error then shows the text given and the reason: ``'2h30' is not ...``.
    """

    def convert(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{text!r} {exc}") from None

    return convert


def build_queue(url: str, origin: str) -> EventQueue:
    """Build the (unopened) queue that *url* names, with :func:`reactor.queues.from_url`.

    :param url: the queue URL.
    :param origin: where it came from (``--queue`` or ``REACTOR_QUEUE``), for messages.
    :raises ConfigError: the URL is refused, or the queue's client library is missing
        (the message names the command that installs it); a password in the URL is
        shown as ``***``.
    :return: the queue.
    """
    try:
        return from_url(url)
    except (ValueError, TypeError, ModuleNotFoundError) as exc:
        message = str(exc)
        password = _password(url)
        if password:
            message = message.replace(password, "***")
        raise ConfigError(f"{origin}: {message}") from None


def redacted(url: str) -> str:
    """*url* with its password, if any, replaced by ``***``, for logs and messages."""
    password = _password(url)
    return url.replace(f":{password}@", ":***@", 1) if password else url


def _password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:  # a malformed authority: a bad port, an unclosed bracket
        return None
