"""reactor: an embeddable, event-driven runtime for async Python.

Producers publish CloudEvents into a bounded ingestion queue; a dispatcher hands every
event to every subscribed coroutine consumer whose filter matches, running them
concurrently, each isolated from the others' failures::

    from reactor import Reactor, Event

    app = Reactor()

    @app.subscribe("order.*")
    async def audit(event: Event) -> None:
        print(event.type, event.data)

    async with app:
        await app.publish("order.created", {"id": 1}, source="/shop")
"""

from typing import TYPE_CHECKING

__version__ = "0.1.0.dev0"

if TYPE_CHECKING:
    from ._clock import Clock as Clock
    from ._clock import SystemClock as SystemClock
    from ._dispatch import Delivery as Delivery
    from ._dispatch import current_delivery as current_delivery
    from ._event import Event as Event
    from ._event import ExtensionValue as ExtensionValue
    from ._exceptions import AppImportError as AppImportError
    from ._exceptions import ConsumerNotFound as ConsumerNotFound
    from ._exceptions import DataValidationError as DataValidationError
    from ._exceptions import DeadLetterNotFound as DeadLetterNotFound
    from ._exceptions import DeliveryTimeout as DeliveryTimeout
    from ._exceptions import DuplicateEvent as DuplicateEvent
    from ._exceptions import EventExpired as EventExpired
    from ._exceptions import EventFormatError as EventFormatError
    from ._exceptions import HandlerCancelled as HandlerCancelled
    from ._exceptions import InternalTaskDied as InternalTaskDied
    from ._exceptions import InvalidEventError as InvalidEventError
    from ._exceptions import InvalidScheduleError as InvalidScheduleError
    from ._exceptions import PayloadTooLargeError as PayloadTooLargeError
    from ._exceptions import QueueFileError as QueueFileError
    from ._exceptions import QueueFull as QueueFull
    from ._exceptions import QueueInUseError as QueueInUseError
    from ._exceptions import QueueUnavailableError as QueueUnavailableError
    from ._exceptions import ReactorError as ReactorError
    from ._exceptions import ReactorNotRunning as ReactorNotRunning
    from ._exceptions import RedeliveryLimitExceeded as RedeliveryLimitExceeded
    from ._exceptions import SourceUnavailableError as SourceUnavailableError
    from ._health import Health as Health
    from ._logs import JsonFormatter as JsonFormatter
    from ._outcomes import DeadLetter as DeadLetter
    from ._outcomes import DeadLetters as DeadLetters
    from ._outcomes import LetterId as LetterId
    from ._outcomes import Outcome as Outcome
    from ._outcomes import StoredDeadLetter as StoredDeadLetter
    from ._policies import Backoff as Backoff
    from ._policies import Batch as Batch
    from ._policies import BatchFailed as BatchFailed
    from ._policies import Debounce as Debounce
    from ._policies import RateLimit as RateLimit
    from ._policies import Retry as Retry
    from ._reactor import NOTIFICATION_TYPE as NOTIFICATION_TYPE
    from ._reactor import Reactor as Reactor
    from ._receipts import Receipt as Receipt
    from ._stats import LatencyStats as LatencyStats
    from ._stats import QueueStatistics as QueueStatistics
    from ._stats import Stats as Stats
    from ._stats import SubscriptionStats as SubscriptionStats
    from ._subscription import Subscription as Subscription
    from ._types import UNSET as UNSET
    from ._types import BaseConsumerOptions as BaseConsumerOptions
    from ._types import ConsumerOptions as ConsumerOptions
    from ._types import EventAttributes as EventAttributes
    from ._types import Handler as Handler
    from ._types import KeyFunction as KeyFunction
    from ._types import Middleware as Middleware
    from ._types import Predicate as Predicate
    from ._types import PublishOptions as PublishOptions
    from ._types import Unset as Unset

__all__ = [
    "NOTIFICATION_TYPE",
    "UNSET",
    "AppImportError",
    "Backoff",
    "BaseConsumerOptions",
    "Batch",
    "BatchFailed",
    "Clock",
    "ConsumerNotFound",
    "ConsumerOptions",
    "DataValidationError",
    "DeadLetter",
    "DeadLetterNotFound",
    "DeadLetters",
    "Debounce",
    "Delivery",
    "DeliveryTimeout",
    "DuplicateEvent",
    "Event",
    "EventAttributes",
    "EventExpired",
    "EventFormatError",
    "ExtensionValue",
    "Handler",
    "HandlerCancelled",
    "Health",
    "InternalTaskDied",
    "InvalidEventError",
    "InvalidScheduleError",
    "JsonFormatter",
    "KeyFunction",
    "LatencyStats",
    "LetterId",
    "Middleware",
    "Outcome",
    "PayloadTooLargeError",
    "Predicate",
    "PublishOptions",
    "QueueFileError",
    "QueueFull",
    "QueueInUseError",
    "QueueStatistics",
    "QueueUnavailableError",
    "RateLimit",
    "Reactor",
    "ReactorError",
    "ReactorNotRunning",
    "Receipt",
    "RedeliveryLimitExceeded",
    "Retry",
    "SourceUnavailableError",
    "Stats",
    "StoredDeadLetter",
    "Subscription",
    "SubscriptionStats",
    "SystemClock",
    "Unset",
    "__version__",
    "current_delivery",
]

#: Where each exported name is defined. ``import reactor`` imports none of these modules:
#: the first time a name is looked up, its module is imported (PEP 562, as anyio does),
#: so that a program pays for what it uses (the HTTP ingress, a CLI command, a plugin's
#: helpers), not for the whole engine. Type checkers read the imports above instead; a
#: test checks that the two lists agree.
_HOMES = {
    "Clock": "_clock",
    "SystemClock": "_clock",
    "Delivery": "_dispatch",
    "current_delivery": "_dispatch",
    "Event": "_event",
    "ExtensionValue": "_event",
    "AppImportError": "_exceptions",
    "ConsumerNotFound": "_exceptions",
    "DataValidationError": "_exceptions",
    "DeadLetterNotFound": "_exceptions",
    "DeliveryTimeout": "_exceptions",
    "DuplicateEvent": "_exceptions",
    "EventExpired": "_exceptions",
    "EventFormatError": "_exceptions",
    "HandlerCancelled": "_exceptions",
    "InternalTaskDied": "_exceptions",
    "InvalidEventError": "_exceptions",
    "InvalidScheduleError": "_exceptions",
    "PayloadTooLargeError": "_exceptions",
    "QueueFileError": "_exceptions",
    "QueueFull": "_exceptions",
    "QueueInUseError": "_exceptions",
    "QueueUnavailableError": "_exceptions",
    "ReactorError": "_exceptions",
    "ReactorNotRunning": "_exceptions",
    "RedeliveryLimitExceeded": "_exceptions",
    "SourceUnavailableError": "_exceptions",
    "Health": "_health",
    "JsonFormatter": "_logs",
    "DeadLetter": "_outcomes",
    "DeadLetters": "_outcomes",
    "LetterId": "_outcomes",
    "Outcome": "_outcomes",
    "StoredDeadLetter": "_outcomes",
    "Backoff": "_policies",
    "Batch": "_policies",
    "BatchFailed": "_policies",
    "Debounce": "_policies",
    "RateLimit": "_policies",
    "Retry": "_policies",
    "NOTIFICATION_TYPE": "_reactor",
    "Reactor": "_reactor",
    "Receipt": "_receipts",
    "LatencyStats": "_stats",
    "QueueStatistics": "_stats",
    "Stats": "_stats",
    "SubscriptionStats": "_stats",
    "Subscription": "_subscription",
    "UNSET": "_types",
    "BaseConsumerOptions": "_types",
    "ConsumerOptions": "_types",
    "EventAttributes": "_types",
    "Handler": "_types",
    "KeyFunction": "_types",
    "Middleware": "_types",
    "Predicate": "_types",
    "PublishOptions": "_types",
    "Unset": "_types",
}

if not TYPE_CHECKING:

    def __getattr__(name: str) -> object:
        home = _HOMES.get(name)
        if home is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        from ._exports import adopt

        # __import__ rather than importlib.import_module: the same import, which
        # python -X importtime reports.
        __import__(f"{__name__}.{home}")
        # Every name of a module imported by now (this one, and the engine's modules it
        # imported) is adopted at once: reactor.Event reports "reactor" as its home
        # however the program first reached the class.
        adopt(__name__, globals(), _HOMES)
        try:
            return globals()[name]
        except KeyError:  # its module is still being imported (an import cycle)
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})


del TYPE_CHECKING
