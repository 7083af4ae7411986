"""The types that appear in the public signatures: handlers, filters, options, "unset"."""

from __future__ import annotations

import enum
from collections.abc import Callable, Coroutine, Hashable, Mapping
from datetime import datetime, timedelta
from typing import Any, Final, TypeAlias, TypedDict

from ._event import Event
from ._policies import Debounce, RateLimit, Retry

__all__ = [
    "UNSET",
    "BaseConsumerOptions",
    "ConsumerOptions",
    "EventAttributes",
    "Handler",
    "KeyFunction",
    "Middleware",
    "Predicate",
    "PublishOptions",
    "Unset",
]

#: A consumer: a coroutine function taking the event.
Handler: TypeAlias = Callable[[Event], Coroutine[Any, Any, object]]
#: A filter evaluated when an event is routed.
Predicate: TypeAlias = Callable[[Event], bool]
#: Computes the ordering key of an event.
KeyFunction: TypeAlias = Callable[[Event], Hashable]
#: Wraps every delivery attempt (see ``Reactor.use``): ``async def middleware(call_next,
#: event)``, where ``await call_next(event)`` runs the rest of the chain and the handler.
Middleware: TypeAlias = Callable[[Handler, Event], Coroutine[Any, Any, object]]


class Unset(enum.Enum):
    """The type of :data:`UNSET`: an option left out, as opposed to one set to ``None``.

    ``timeout=None`` means "no time limit", while leaving ``timeout`` out means "the
    app's default"; a plugin that forwards such an option keeps :data:`UNSET` as its
    default and passes it on, so the two stay apart.
    """

    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        # False, as None is: `if options.get("timeout"):` must not take UNSET for a value.
        return False


#: The default of an option whose absence means "the app's default" (see :class:`Unset`).
UNSET: Final = Unset.UNSET


class BaseConsumerOptions(TypedDict, total=False):
    """How a consumer wants its deliveries: the options every way of subscribing takes.

    ``app.subscribe()``, ``app.on_notification()`` and every trigger decorator
    (``app.every()``, ``app.on_file_change()``, ``app.on_webhook()``, a plugin's own)
    take these keyword arguments, all optional:

    * ``name``: the consumer name, unique in the app (default: the handler's qualified
      name); the key of its outcomes, stats and dead letters
    * ``concurrency``: the most deliveries of this consumer running at once (an int
      ``>= 1``; default 16)
    * ``ordered_by``: ``key(event)``; events with equal keys are handled one at a time,
      in the order they were published, retries included (default: no ordering)
    * ``timeout``: seconds each attempt may take before it is cancelled and counted as
      failed (``None``: no limit; default: the app's)
    * ``retry``: the :class:`~reactor.Retry` policy (``None``: one attempt; default: the
      app's)
    * ``outputs``: publish the events the handler returns (``None``, an
      :class:`~reactor.Event` or an iterable of them), linked to the handled event by
      the ``causationid`` and ``correlationid`` extensions, when the attempt succeeds
      (default: ``False``, what the handler returns is ignored)
    * ``rate_limit``: at most this many deliveries start per second, a number or a
      :class:`~reactor.RateLimit` with a burst; events over it wait, in order (default:
      no limit)

    and, but for a trigger that has a ``debounce`` parameter of its own
    (``app.on_file_change()``, whose options are these), ``debounce``: see
    :class:`ConsumerOptions`.
    """

    name: str | None
    concurrency: int
    ordered_by: KeyFunction | None
    timeout: float | Unset | None
    retry: Retry | Unset | None
    outputs: bool
    rate_limit: RateLimit | float | None


class ConsumerOptions(BaseConsumerOptions, total=False):
    """:class:`BaseConsumerOptions`, and:

    * ``debounce``: a window in seconds (or a :class:`~datetime.timedelta`, or a
      :class:`~reactor.Debounce` with a key): of a burst of events with the same key,
      only the last is handled, once the window passes without another; the others
      settle as ``"skipped"`` (default: every event is handled)
    """

    debounce: Debounce | float | timedelta | None


class EventAttributes(TypedDict, total=False):
    """The CloudEvents attributes that ``app.publish(type, data, ...)`` and its variants take.

    All optional: ``source`` (default: the app's), ``subject``, ``id`` (default: a new
    UUID), ``time`` (default: the app clock's now), ``datacontenttype``, ``dataschema``
    and ``extensions``; see :class:`~reactor.Event` for what each may hold.
    """

    source: str | None
    subject: str | None
    id: str | None
    time: datetime | None
    datacontenttype: str | None
    dataschema: str | None
    extensions: Mapping[str, Any] | None


class PublishOptions(EventAttributes, total=False):
    """What ``app.publish(...)`` and its variants take besides the event and its data.

    The CloudEvents attributes of :class:`~reactor.EventAttributes`, and the delivery
    options, all optional:

    * ``delay``: deliver the event no earlier than this long from now (a
      :class:`~datetime.timedelta` or seconds, ``>= 0``)
    * ``deliver_at``: deliver it no earlier than this aware :class:`~datetime.datetime`
      (a time past means now); not with ``delay``
    * ``expires``: when the event expires, a :class:`~datetime.timedelta` from now or an
      aware :class:`~datetime.datetime`: a delivery not started by then is dead-lettered
      with :class:`~reactor.EventExpired` instead of being handled

    The times are read on the app's clock and carried in the event, as its
    ``deliverat`` and ``expiresat`` extensions (:attr:`Event.deliver_at
    <reactor.Event.deliver_at>`, :attr:`Event.expires_at <reactor.Event.expires_at>`),
    so that every queue stores them with the event.
    """

    delay: timedelta | float | None
    deliver_at: datetime | None
    expires: timedelta | datetime | None
