"""What every ``reactor`` command shares: the argument-or-variable rule, errors, exit statuses."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Final, TypeVar

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
