"""The exceptions reactor raises.

Every exception is a :class:`ReactorError`; leaves also subclass the builtin that a
caller would naturally catch, so ``except ValueError`` keeps working::

    ReactorError
    ├── InvalidEventError (ValueError)      an Event attribute is missing or malformed
    ├── EventFormatError (ValueError)       bytes or headers are not a valid CloudEvent
    ├── PayloadTooLargeError (ValueError)   an event is larger than the configured limit
    ├── InvalidScheduleError (ValueError)   a cron expression is invalid or never fires
    ├── DataValidationError (ValueError)    an event's data does not fit a subscription's data=
    ├── BatchFailed                         a batch handler failed some of its events
                                            (defined with Batch, in _policies)
    ├── QueueFull                           publish_nowait() found the ingestion queue full
    ├── DuplicateEvent                      a deduplicating queue stored that (source, id) already
    ├── ReactorNotRunning (RuntimeError)    publishing to an app that is not running
    ├── ConsumerNotFound (LookupError)      no subscription (or queue file's consumer) so named
    ├── DeadLetterNotFound (LookupError)    no stored dead letter has that id
    ├── DeliveryTimeout (TimeoutError)      a handler attempt exceeded its timeout
    ├── HandlerCancelled                    a handler ended with a cancellation not reactor's
    ├── InternalTaskDied (RuntimeError)     one of the app's own tasks was cancelled from outside
    ├── RedeliveryLimitExceeded             a durable queue handed an event out too often
    ├── EventExpired                        an event's delivery had not started by its expiry
    ├── AppImportError (ImportError)        ``reactor run`` could not load the app
    ├── QueueUnavailableError               the queue cannot store events right now (disk full)
    ├── SourceUnavailableError (ConnectionError)  a source cannot reach its server at startup
    └── QueueFileError                      a durable queue's file is foreign, newer or damaged
        └── QueueInUseError                 another process owns the queue's file
"""

from __future__ import annotations

from datetime import datetime

__all__ = [
    "AppImportError",
    "ConsumerNotFound",
    "DataValidationError",
    "DeadLetterNotFound",
    "DeliveryTimeout",
    "DuplicateEvent",
    "EventExpired",
    "EventFormatError",
    "HandlerCancelled",
    "InternalTaskDied",
    "InvalidEventError",
    "InvalidScheduleError",
    "PayloadTooLargeError",
    "QueueFileError",
    "QueueFull",
    "QueueInUseError",
    "QueueUnavailableError",
    "ReactorError",
    "ReactorNotRunning",
    "RedeliveryLimitExceeded",
    "SourceUnavailableError",
]


class ReactorError(Exception):
    """Base class of every exception raised by reactor."""


class InvalidEventError(ReactorError, ValueError):
    """An :class:`~reactor.Event` attribute is missing or malformed.

    :ivar attribute: the CloudEvents name of the offending attribute
        (``"type"``, ``"source"``, an extension name, ...).
    """

    def __init__(self, attribute: str, message: str) -> None:
        super().__init__(f"invalid CloudEvents attribute {attribute!r}: {message}")
        self.attribute = attribute


class EventFormatError(ReactorError, ValueError):
    """Bytes or HTTP headers that do not hold a valid CloudEvent."""


class PayloadTooLargeError(ReactorError, ValueError):
    """An event's encoded size exceeds the configured limit."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"event is {size} bytes, over the limit of {limit} bytes; "
            "send a reference to the data instead, or raise the limit"
        )
        self.size = size
        self.limit = limit


class InvalidScheduleError(ReactorError, ValueError):
    """A schedule (a cron expression) is malformed, out of range or can never fire."""


class DataValidationError(ReactorError, ValueError):
    """An event's data does not fit the type that a subscription asked for with ``data=``.

    The handler is not called: the delivery is dead-lettered at once with this error,
    never retried (the same data would fail the same way). When msgspec or pydantic
    validated the data, their own error is the ``__cause__``.

    :ivar data_type: the class given as ``data=``
    :ivar detail: what did not fit, and where (``data.items[0].sku: expected str, got int``)
    """

    def __init__(self, data_type: type, detail: str) -> None:
        super().__init__(f"the event's data does not fit {data_type.__qualname__}: {detail}")
        self.data_type = data_type
        self.detail = detail


class QueueFull(ReactorError):
    """The ingestion queue is at capacity and ``publish_nowait()`` cannot wait.

    Use ``await app.publish(...)`` to wait for room, or raise the queue's capacity.
    """


class DuplicateEvent(ReactorError):
    """A queue that deduplicates (see :meth:`reactor.abc.EventQueue.deduplicate`) already
    stored an event with this ``(source, id)`` within the app's ``dedupe`` window.

    Raised by the queue's ``put()`` and ``put_nowait()``, which store nothing; the app
    catches it (the publish succeeds without storing the event, and is counted in
    ``app.stats().deduplicated``), so application code never sees it.

    :ivar source: the event's source
    :ivar id: the event's id
    """

    def __init__(self, source: str, id: str) -> None:
        super().__init__(
            f"an event with id {id!r} from {source!r} was stored within the dedupe window"
        )
        self.source = source
        self.id = id


class ReactorNotRunning(ReactorError, RuntimeError):
    """The app is not running: start it with ``async with app:`` or ``app.run()``."""


class ConsumerNotFound(ReactorError, LookupError):
    """No active subscription has the given consumer name (or, for a durable queue's
    replay, no consumer of that name ever used the queue's file)."""


class DeadLetterNotFound(ReactorError, LookupError):
    """No dead letter stored by a durable queue has the given id (or, for a replay, none
    that can be replayed).

    :ivar ids: the ids that matched nothing
    """

    def __init__(self, message: str, ids: list[int | str]) -> None:
        super().__init__(message)
        self.ids = ids


class DeliveryTimeout(ReactorError, TimeoutError):
    """A handler attempt exceeded its subscription's timeout and was cancelled.

    It is the ``error`` of the failed attempt, of the :class:`~reactor.Outcome` and of
    the :class:`~reactor.DeadLetter` when the last attempt timed out.
    """

    def __init__(self, consumer: str, timeout: float) -> None:
        super().__init__(f"consumer {consumer!r} did not finish within its timeout of {timeout} s")
        self.consumer = consumer
        self.timeout = timeout


class HandlerCancelled(ReactorError):
    """A handler attempt ended with a cancellation that no cancel scope of reactor's caused.

    Ordinary asyncio code raises such a stray ``CancelledError``: awaiting a task or
    future that someone else cancelled, a misused ``asyncio.timeout``, a library that
    cancels its own tasks. It is that attempt's failure, retried by the subscription's
    :class:`~reactor.Retry` policy like any :class:`Exception`, then dead-lettered; the
    original cancellation is its ``__cause__``. (Cancellation by the app's shutdown or by
    the subscription's timeout is not this: it is never a failure.)

    :ivar consumer: the name of the consumer whose handler was cancelled
    """

    def __init__(self, consumer: str) -> None:
        super().__init__(
            f"the handler of consumer {consumer!r} ended with a cancellation that reactor did "
            "not cause (it awaited something that was cancelled?)"
        )
        self.consumer = consumer


class InternalTaskDied(ReactorError, RuntimeError):
    """One of the app's own tasks (the dispatcher, a consumer's worker, the settlement
    loop) ended with a cancellation that reactor did not cause, while the app ran.

    The app stops with this error, raised out of ``async with app:`` (inside the task
    group's exception group), instead of accepting events that nobody would deliver. A
    queue or source that raises a stray ``CancelledError`` causes it.
    """


class RedeliveryLimitExceeded(ReactorError):
    """A durable queue handed an event out more often than its ``max_redeliveries``.

    The event kept ending the process (or its shutdown) before every consumer settled
    it: a poison event. Instead of running the handlers again, the dispatcher
    dead-letters it for each consumer that had not settled it, with this error.

    :ivar attempt: how many times the queue has handed the event out, this time included
    :ivar limit: the queue's ``max_redeliveries``
    """

    def __init__(self, attempt: int, limit: int) -> None:
        super().__init__(
            f"the queue handed this event out {attempt} times without every consumer "
            f"settling it (max_redeliveries={limit}); dead-lettered without running the "
            "handler again"
        )
        self.attempt = attempt
        self.limit = limit


class EventExpired(ReactorError):
    """An event's delivery had not started when the event expired.

    ``app.publish(..., expires=...)`` gives an event an expiry (its ``expiresat``
    extension). The dispatcher checks it when it routes the event and again when each
    delivery is about to start: a delivery too late is not handled but dead-lettered with
    this error (``attempts=0``), never retried; a handler already running when the event
    expires runs to its end.

    :ivar expires_at: when the event expired
    """

    def __init__(self, expires_at: datetime) -> None:
        super().__init__(
            f"the event expired at {expires_at.isoformat()} before its delivery started; "
            "dead-lettered without running the handler"
        )
        self.expires_at = expires_at


class AppImportError(ReactorError, ImportError):
    """``reactor run`` could not import the module or find the app attribute."""


class QueueFileError(ReactorError):
    """A durable queue's file cannot be used: it is not the queue's, is of a newer
    schema, is corrupt, or could not be read or written.

    The file is never replaced or emptied to get past this error: move it aside (and keep
    it for recovery) or point the queue at another path.
    """


class QueueUnavailableError(ReactorError):
    """The queue cannot store events right now: its disk is full, its file cannot be
    written, or its broker does not answer.

    The condition may pass: publishing again later can succeed. The app keeps running
    meanwhile and retries its own settlements; ``app.stats().queue`` counts the errors.
    The HTTP ingress answers such a publish with 503 and ``Retry-After``.
    """


class SourceUnavailableError(ReactorError, ConnectionError):
    """A trigger source cannot reach its server (database, broker) when the app starts.

    Raised out of ``async with app:`` so that a wrong address or a server that is down
    shows at once; a connection lost later is retried by the source with backoff and
    announced by a gap event where events may have been missed. The message names the
    server with any password shown as ``***``.
    """


class QueueInUseError(QueueFileError):
    """Another process has the durable queue's file open as its app's queue.

    One process at a time owns a queue file; read-only tools (listing dead letters) may
    still read it while the owner runs.
    """
