"""Argument checks with reactor's one rule for bad arguments, for plugins to share.

The rule, kept by every public function and constructor of reactor and its plugins: an
argument of the wrong **type** raises :class:`TypeError`; one of the right type whose
**value** is not allowed raises :class:`ValueError`. The message names the argument,
says what it must be, and shows what it got. :class:`bool` is not a number here (``True``
is not a capacity), and NaN and the infinities are not a number of seconds.

The one exception is :class:`~reactor.Event`: a bad attribute raises
:class:`~reactor.InvalidEventError` (a :class:`ValueError` that names the attribute)
whatever is wrong with it, because events mostly come from outside (an HTTP request, a
queue's file), where the caller wants one error to answer with.

Each check returns the value it accepted, so a constructor can check and store in one
line::

    from reactor import validators

    self.period = validators.seconds("period", period, positive=True)
    self.limit = validators.integer("limit", limit, minimum=1)
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from datetime import datetime, timedelta
from typing import TypeVar

__all__ = [
    "aware_datetime",
    "boolean",
    "duration",
    "integer",
    "keywords",
    "name",
    "number",
    "one_of",
    "seconds",
]

T = TypeVar("T")


def integer(what: str, value: object, *, minimum: int = 0) -> int:
    """Return *value* if it is an :class:`int` ``>= minimum``.

    :param what: the argument's name, for the message
    :param value: the value to check
    :param minimum: the smallest value allowed
    :raises TypeError: *value* is not an int (or is a bool)
    :raises ValueError: *value* is below *minimum*
    """
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{what} must be an int >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{what} must be an int >= {minimum}, got {value!r}")
    return value


def number(what: str, value: object, *, minimum: float | None = None) -> float:
    """Return *value* as a float if it is a finite number ``>= minimum``.

    :param what: the argument's name, for the message
    :param value: the value to check (an int or a float)
    :param minimum: the smallest value allowed (``None``: any finite number)
    :raises TypeError: *value* is not an int or a float (or is a bool)
    :raises ValueError: *value* is NaN, infinite, or below *minimum*
    """
    bound = "" if minimum is None else f" >= {minimum:g}"
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TypeError(f"{what} must be a finite number{bound}, got {value!r}")
    if not math.isfinite(value) or (minimum is not None and value < minimum):
        raise ValueError(f"{what} must be a finite number{bound}, got {value!r}")
    return float(value)


def seconds(what: str, value: object, *, positive: bool = False) -> float:
    """Return *value* as a float if it is a finite number of seconds ``>= 0`` (or ``> 0``).

    :param what: the argument's name, for the message
    :param value: the value to check (an int or a float)
    :param positive: refuse zero too
    :raises TypeError: *value* is not an int or a float (or is a bool)
    :raises ValueError: *value* is negative, NaN or infinite (or zero, with *positive*)
    """
    bound = "> 0" if positive else ">= 0"
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TypeError(f"{what} must be a finite number of seconds {bound}, got {value!r}")
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise ValueError(f"{what} must be a finite number of seconds {bound}, got {value!r}")
    return float(value)


def duration(what: str, value: object, *, positive: bool = False) -> float:
    """Return *value* in seconds if it is a :class:`~datetime.timedelta` or a number of
    seconds, finite and ``>= 0`` (or ``> 0``).

    :param what: the argument's name, for the message
    :param value: a timedelta, an int or a float
    :param positive: refuse zero too
    :raises TypeError: *value* is neither a timedelta nor a number (or is a bool)
    :raises ValueError: *value* is negative, NaN or infinite (or zero, with *positive*)
    """
    if isinstance(value, timedelta):
        value = value.total_seconds()
    elif not isinstance(value, int | float) or isinstance(value, bool):
        bound = "> 0" if positive else ">= 0"
        raise TypeError(
            f"{what} must be a timedelta or a finite number of seconds {bound}, got {value!r}"
        )
    return seconds(what, value, positive=positive)


def aware_datetime(what: str, value: object) -> datetime:
    """Return *value* if it is a time-zone-aware :class:`~datetime.datetime`.

    A naive datetime is refused: its meaning depends on the machine's time zone.

    :param what: the argument's name, for the message
    :param value: the value to check
    :raises TypeError: *value* is not a datetime
    :raises ValueError: *value* is naive (no tzinfo, or one that gives no UTC offset)
    """
    if not isinstance(value, datetime):
        raise TypeError(f"{what} must be a datetime, got {value!r}")
    if value.utcoffset() is None:
        raise ValueError(
            f"{what} must be an aware datetime (with a tzinfo such as datetime.UTC), got "
            f"{value!r}: a naive one means different times on different machines"
        )
    return value


def boolean(what: str, value: object) -> bool:
    """Return *value* if it is a :class:`bool` (a flag: ``True`` or ``False``).

    Nothing else passes, not even ``0``, ``1`` or ``"no"``: ``bool("no")`` is ``True``, so
    a flag given as anything but a bool is a mistake to report, not a value to convert.

    :param what: the argument's name, for the message
    :param value: the value to check
    :raises TypeError: *value* is not a bool
    """
    if not isinstance(value, bool):
        raise TypeError(f"{what} must be a bool (True or False), got {value!r}")
    return value


def one_of(what: str, value: T, choices: Collection[T]) -> T:
    """Return *value* if it is one of *choices* (a fixed set of strings, typically).

    :param what: the argument's name, for the message
    :param value: the value to check
    :param choices: the values allowed
    :raises TypeError: *value* is not of the choices' type
    :raises ValueError: *value* is not one of *choices*
    """
    if value in choices:
        return value
    allowed = ", ".join(repr(choice) for choice in choices)
    kinds = {type(choice) for choice in choices}
    if type(value) not in kinds:
        raise TypeError(f"{what} must be one of {allowed}, got {value!r}")
    raise ValueError(f"{what} must be one of {allowed}, got {value!r}")


def name(what: str, value: object) -> str:
    """Return *value* if it is a non-empty :class:`str` (a name, a channel, a path).

    :param what: the argument's name, for the message
    :param value: the value to check
    :raises TypeError: *value* is not a str
    :raises ValueError: *value* is empty
    """
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a non-empty str, got {value!r}")
    if not value:
        raise ValueError(f"{what} must be a non-empty str, got ''")
    return value


def keywords(function: str, given: Mapping[str, object], allowed: type) -> None:
    """Refuse a keyword argument that the TypedDict *allowed* does not declare.

    ``**options: Unpack[ConsumerOptions]`` is checked by type checkers only; this gives,
    at run time, the error Python gives for an unknown keyword argument.

    :param function: the function's name, for the message
    :param given: the keyword arguments received
    :param allowed: a TypedDict class such as :class:`~reactor.ConsumerOptions`
    :raises TypeError: a keyword argument that *allowed* does not declare
    """
    unknown = given.keys() - allowed.__required_keys__ - allowed.__optional_keys__  # type: ignore[attr-defined]
    if unknown:
        raise TypeError(f"{function}() got an unexpected keyword argument {min(unknown)!r}")
