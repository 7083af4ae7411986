"""Delivery policies: how often to retry a failing consumer and how long to wait between tries."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any

import attrs

from . import validators
from ._event import Event
from ._exceptions import ReactorError

__all__ = ["Backoff", "Batch", "BatchFailed", "Debounce", "RateLimit", "Retry"]


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


def _duration(value: object) -> float:
    return validators.duration("max_wait", value)


def _batch_size(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    validators.integer("max_size", value, minimum=1)


@attrs.frozen(kw_only=True)
class Batch:
    """How a batch handler's events are gathered: ``subscribe(..., batch=Batch(...))``.

    The handler receives a ``list[Event]`` as soon as *max_size* events are waiting, or
    once the oldest has waited *max_wait* seconds, whichever comes first (and at once
    when the app stops, so that a drain does not wait for a batch to fill).

    :ivar max_size: the most events in one call (``>= 1``)
    :ivar max_wait: the longest the first event of a batch waits for others, in seconds
        or a :class:`~datetime.timedelta` (``0``: take what is there, never wait)
    """

    max_size: int = attrs.field(default=100, validator=_batch_size)
    max_wait: float = attrs.field(default=1.0, converter=_duration)


def _rate(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    validators.number("per_second", value, minimum=0)
    if value == 0:
        raise ValueError("per_second must be > 0, got 0")


def _burst(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    validators.integer("burst", value, minimum=1)


@attrs.frozen
class RateLimit:
    """A token bucket on a subscription's deliveries: ``rate_limit=RateLimit(10, burst=20)``.

    Deliveries start at most *per_second* times a second on average, and up to *burst*
    at once after a quiet spell. Events over the limit wait in the subscription, in
    order, counted in its ``held`` and ``rate_limited`` stats; nothing is dropped. The
    bucket counts deliveries as they first start: retries do not take tokens.

    :ivar per_second: the sustained rate, deliveries per second (``> 0``)
    :ivar burst: the bucket's size: how many may start at once (``>= 1``)
    """

    per_second: float = attrs.field(validator=_rate)
    burst: int = attrs.field(default=1, validator=_burst)


def _window(value: object) -> float:
    return validators.duration("window", value, positive=True)


def _key(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not callable(value):
        raise TypeError(f"key must be a callable taking the event, or None, got {value!r}")


@attrs.frozen
class Debounce:
    """Handle only the last event of a burst: ``debounce=Debounce(0.5, key=...)``.

    An event is held for *window* seconds; another event with the same key within that
    time replaces it (and starts the window again), so only the last event of a burst is
    handled, *window* seconds after the burst ended. Replaced events are settled without
    calling the handler: their outcome's status is ``"skipped"``, and the subscription's
    ``debounced`` stat counts them. When the app stops, the held events are handled at
    once.

    :ivar window: the quiet time that ends a burst, in seconds or a
        :class:`~datetime.timedelta` (``> 0``)
    :ivar key: ``key(event)``, which events are bursts of the same thing (default: the
        event's ``source`` and ``subject``, so a file's changes debounce per path)
    """

    window: float = attrs.field(converter=_window)
    key: Callable[[Event], Hashable] | None = attrs.field(default=None, validator=_key)


class BatchFailed(ReactorError):
    """Raised by a batch handler (``subscribe(..., batch=Batch(...))``) to fail some of
    its events only.

    The events it names fail, and are retried and dead-lettered by the subscription's
    :class:`~reactor.Retry` policy; every other event of the batch succeeds. (Any other
    exception fails the whole batch.) Name each failed event by the :class:`~reactor.Event`
    the handler received or by its ``id``, with the exception that explains it or
    without one (the :class:`BatchFailed` itself is then that event's error)::

        @app.subscribe("metrics.*", batch=reactor.Batch(max_size=500, max_wait=0.5))
        async def store(events: list[Event]) -> None:
            failed = {}
            for event in events:
                try:
                    await write(event)
                except OSError as exc:
                    failed[event] = exc
            if failed:
                raise reactor.BatchFailed(failed)

    :ivar failures: each failed event (or id) and its error (``None``: this exception)
    """

    def __init__(
        self,
        failures: Mapping[Event | str, BaseException | None] | Iterable[Event | str],
        message: str | None = None,
    ) -> None:
        items: dict[Event | str, BaseException | None] = (
            dict(failures) if isinstance(failures, Mapping) else dict.fromkeys(failures)
        )
        if not items:
            raise ValueError("BatchFailed needs at least one failed event")
        if message is None:
            message = f"{len(items)} event(s) of the batch failed"
        super().__init__(message)
        self.failures = items
