"""Delivery policies: how often to retry a failing consumer and how long to wait between tries."""

from __future__ import annotations

import attrs

from . import validators

__all__ = ["Backoff", "Retry"]


def _seconds(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    validators.seconds(attribute.name, value)


def _flag(instance: object, attribute: attrs.Attribute[bool], value: bool) -> None:
    validators.boolean(attribute.name, value)


def _multiplier(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    validators.number(attribute.name, value, minimum=1)


@attrs.frozen(kw_only=True)
class Backoff:
    """Capped exponential backoff between retries, with optional full jitter.

    The wait before retry *n* (``n = 1`` after the first failed attempt) is
    ``min(maximum, initial * multiplier ** (n - 1))``; with *jitter* it is drawn uniformly
    from ``[0, that]`` ("full jitter"), which spreads retries of many failing events apart.

    :ivar initial: the wait before the first retry, in seconds
    :ivar maximum: the cap on any single wait, in seconds
    :ivar multiplier: the growth factor per retry (``>= 1``)
    :ivar jitter: whether to randomise each wait
    """

    initial: float = attrs.field(default=0.1, validator=_seconds)
    maximum: float = attrs.field(default=30.0, validator=_seconds)
    multiplier: float = attrs.field(default=2.0, validator=_multiplier)
    jitter: bool = attrs.field(default=True, validator=_flag)

    def __attrs_post_init__(self) -> None:
        if self.maximum < self.initial:
            raise ValueError(
                f"maximum ({self.maximum}) must be >= initial ({self.initial}) in Backoff"
            )

    def delay(self, retry: int) -> float:
        """Return the wait in seconds before retry number *retry* (counting from 1).

        :param retry: which retry is about to happen, ``>= 1``
        :return: seconds to wait
        """
        # The exponent is capped so that a huge retry count cannot overflow a float.
        exponent = min(retry - 1, 1024)
        try:
            ceiling = min(self.maximum, self.initial * self.multiplier**exponent)
        except OverflowError:
            ceiling = self.maximum
        if not self.jitter:
            return ceiling
        import random  # here: most apps never retry with jitter

        return random.uniform(0.0, ceiling)


def _positive_attempts(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    validators.integer("attempts (1 means no retry)", value, minimum=1)


def _exception_types(
    value: type[BaseException] | tuple[type[BaseException], ...],
) -> tuple[type[BaseException], ...]:
    types = value if isinstance(value, tuple) else (value,)
    for t in types:
        if not (isinstance(t, type) and issubclass(t, Exception)):
            raise TypeError(f"Retry(on=...) takes Exception subclasses, got {t!r}")
    return types


@attrs.frozen(kw_only=True)
class Retry:
    """How a subscription retries a failed delivery before dead-lettering it.

    A delivery fails when the handler raises an exception or exceeds its timeout.
    Failures whose exception is not an instance of *on* are dead-lettered at once.
    Timeouts always count as retryable failures.

    :ivar attempts: total tries including the first; ``Retry(attempts=1)`` never retries
    :ivar backoff: the wait between tries
    :ivar on: the exception types worth retrying (default: every :class:`Exception`)
    """

    attempts: int = attrs.field(default=3, validator=_positive_attempts)
    backoff: Backoff = attrs.field(factory=Backoff)
    on: tuple[type[BaseException], ...] = attrs.field(
        default=(Exception,), converter=_exception_types
    )


#: The policy of a subscription that names none: one attempt, then the dead-letter sink.
NO_RETRY = Retry(attempts=1)
