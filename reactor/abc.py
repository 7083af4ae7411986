"""The plugin API: the contracts that plugins implement, and what they may use of the app.

Everything a third party needs to write a :class:`Source` or an :class:`EventQueue`
is documented here once; the built-in implementations in :mod:`reactor.sources` and
:mod:`reactor.queues` follow exactly these rules and use only the public API (this
module, :mod:`reactor` and :mod:`reactor.validators`), which CI checks. A source sees the
app through :class:`App`, the part of :class:`reactor.Reactor` a plugin may rely on.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import datetime
from time import perf_counter
from types import ModuleType
from typing import Any, ClassVar, Protocol, Self, TypeVar, Unpack

import anyio
from anyio.abc import TaskStatus

from ._clock import Clock as Clock
from ._clock import waiting_off_loop as waiting_off_loop
from ._event import Event
from ._exceptions import DuplicateEvent, QueueFull
from ._exports import export_from as export_from
from ._json import load_json as load_json
from ._outcomes import DeadLetter, LetterId, StoredDeadLetter
from ._receipts import Receipt
from ._stats import QueueStatistics, Stats
from ._subscription import Subscription
from ._subscription import compile_glob as compile_glob
from ._subscription import default_name as default_name
from ._types import ConsumerOptions, EventAttributes, Handler, Predicate

__all__ = [
    "GAP_EVENT_TYPE",
    "App",
    "Clock",
    "DeadLetterStore",
    "EventQueue",
    "Received",
    "Source",
    "compile_glob",
    "default_name",
    "export_from",
    "import_extra",
    "load_json",
    "run_with_subscription",
    "waiting_off_loop",
]

# The helpers re-exported from reactor's private modules report this module as their home,
# as every exported name does (see export_from()): reactor.abc.compile_glob, not
# reactor._subscription.compile_glob.
compile_glob.__module__ = default_name.__module__ = load_json.__module__ = __name__
waiting_off_loop.__module__ = __name__
export_from.__module__ = __name__

H = TypeVar("H", bound=Handler)

#: The type of the event a source publishes after an interruption in which it may have
#: missed events (see :meth:`Source.gap_event`).
GAP_EVENT_TYPE = "reactor.source.gap"


class App(Protocol):
    """What a plugin may use of the app it runs in: a protocol :class:`reactor.Reactor` meets.

    :meth:`Source.run`, :meth:`Source.gap_event` and plugin functions such as
    ``timers.every(app, ...)`` take an :class:`App`, so a plugin depends on this small
    interface, not on the concrete class. Each member behaves as the
    :class:`~reactor.Reactor` member of the same name documents.
    """

    @property
    def clock(self) -> Clock:
        """The clock every wait of the app and its plugins goes through."""

    @property
    def source(self) -> str:
        """The app's CloudEvents ``source``, the default of events published by type."""

    @property
    def running(self) -> bool:
        """Whether the app accepts events."""

    @property
    def queue(self) -> EventQueue:
        """The app's ingestion queue."""

    @property
    def sources(self) -> tuple[Source, ...]:
        """The sources the app runs."""

    async def publish(
        self, event: Event | str, data: Any = None, **attributes: Unpack[EventAttributes]
    ) -> Event:
        """Publish an event, waiting while the ingestion queue is full."""

    def publish_nowait(
        self, event: Event | str, data: Any = None, **attributes: Unpack[EventAttributes]
    ) -> Event:
        """Publish an event if the ingestion queue has room, else raise ``QueueFull``."""

    async def publish_many(self, events: Sequence[Event]) -> None:
        """Publish a batch of events, all or nothing."""

    async def publish_and_wait(
        self, event: Event | str, data: Any = None, **attributes: Unpack[EventAttributes]
    ) -> Receipt:
        """Publish an event and wait until every consumer it was routed to settled it."""

    def subscribe(
        self,
        pattern: str,
        handler: Handler,
        *,
        source: str | None = None,
        where: Predicate | None = None,
        **options: Unpack[ConsumerOptions],
    ) -> Subscription:
        """Subscribe a coroutine handler to events whose type matches *pattern*."""

    def add_source(self, source: Source) -> None:
        """Run *source* while the app runs."""

    def stats(self) -> Stats:
        """Return a snapshot of the app's counters."""


def run_with_subscription(
    app: App,
    source: Source,
    pattern: str,
    handler: Handler,
    *,
    events_from: str | None = None,
    where: Predicate | None = None,
    **options: Unpack[ConsumerOptions],
) -> Subscription:
    """Subscribe *handler* to the events of *source*, then run *source* in *app*.

    What every trigger decorator does with the handler it decorates. It subscribes
    first: that checks the handler and the consumer name, so a mistake leaves no
    source behind that would publish events nobody handles.

    :param app: the app
    :param source: the new source
    :param pattern: the event types the handler receives, as in ``app.subscribe()``
    :param handler: the decorated handler
    :param events_from: a glob on the event ``source`` attribute (the source's URI), so
        that the handler receives this source's events only
    :param where: an extra filter, as in ``app.subscribe()``
    :param options: the consumer's options (:class:`~reactor.ConsumerOptions`)
    :return: the subscription
    """
    subscription = app.subscribe(pattern, handler, source=events_from, where=where, **options)
    app.add_source(source)
    return subscription


def import_extra(module: str, *, extra: str, distribution: str = "reactor-events") -> ModuleType:
    """Import *module*, an optional dependency, or say which extra installs it.

    A plugin that needs a client library (a broker's, a database's) imports it through
    this function when the plugin is first used, never when ``reactor`` is imported, so
    that an app that does not use the plugin does not need the library.

    :param module: the module to import (``"coredis"``)
    :param extra: the extra of *distribution* that installs it (``"redis"``)
    :param distribution: the distribution whose extra it is (a third-party plugin passes
        its own)
    :return: the module
    :raises ModuleNotFoundError: *module* is not installed; the message names the command
        that installs it: ``pip install 'reactor-events[redis]'``
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is None or module.split(".")[0] != exc.name.split(".")[0]:
            raise  # the library is there, but something it imports is not
        raise ModuleNotFoundError(
            f"{module} is not installed; install it with: pip install '{distribution}[{extra}]'",
            name=exc.name,
        ) from exc


class Source(ABC):
    """A trigger: something outside the app that turns into events.

    The app runs every source it was given (``app.add_source(source)``) in its own task
    while the app runs, and cancels it when the app stops, before draining.

    Rules for implementations:

    * :meth:`run` publishes with ``await app.publish(...)`` (which waits when the
      ingestion queue is full: that is the backpressure a source should respect) and
      returns or is cancelled when the app stops.
    * Call ``task_status.started()`` once the source is ready (listening, subscribed,
      first deadline computed), so that ``async with app:`` returns only when every
      source can see its trigger fire.
    * Wait through ``app.clock`` so the source runs in virtual time under test.
    * An exception escaping :meth:`run` stops the app: handle what can be retried.
    * A source that cannot replay what it missed (a notification channel, a watcher
      that overflowed, a listener that reconnected) is at-most-once and says so in its
      documentation; after an interruption it publishes a gap event built by
      :meth:`gap_event` (type :data:`GAP_EVENT_TYPE`) instead of going silent, so that
      consumers can resynchronise (re-read the table, rescan the directory).
    * Counters a user should see (ticks skipped, events dropped, reconnects) are
      returned by :meth:`statistics` and appear in ``app.stats().sources``.
    """

    @property
    def name(self) -> str:
        """A name for logs, errors and stats; the class name unless overridden."""
        return type(self).__name__

    def statistics(self) -> Mapping[str, int | str | None]:
        """Return the source's counters (default: none).

        Values are counts, or short texts such as the last error (``None`` when there is
        none), keyed by name; the keys a source reports are part of its documentation.
        """
        return {}

    def gap_event(
        self,
        app: App,
        *,
        reason: str,
        since: datetime | None = None,
        until: datetime | None = None,
        missed: int | None = None,
        source: str | None = None,
    ) -> Event:
        """Build the event that announces an interruption in which events may be lost.

        Its type is :data:`GAP_EVENT_TYPE`, its subject this source's :attr:`name`, and
        its data a JSON object: ``{"source": name, "reason": reason, "since": ..., "until":
        ..., "missed": ...}`` (times as RFC 3339 strings or ``null``; *missed* is the
        number of lost events when the source knows it, else ``null``).

        :param app: the app the event is for (its clock and source stamp the event)
        :param reason: what happened, for people (``"reconnected"``, ``"overflow"``, ...)
        :param since: when the interruption began, if known
        :param until: when it ended (default: now)
        :param missed: how many events were lost, if known
        :param source: the event's CloudEvents source (default: the app's); a source
            whose own events carry its URI passes it, so its subscribers get the gap too
        """
        now = app.clock.now()
        return Event(
            type=GAP_EVENT_TYPE,
            source=app.source if source is None else source,
            subject=self.name,
            time=now,
            data={
                "source": self.name,
                "reason": reason,
                "since": None if since is None else since.isoformat(),
                "until": (now if until is None else until).isoformat(),
                "missed": missed,
            },
        )

    @abstractmethod
    async def run(
        self, app: App, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Publish events into *app* until cancelled.

        :param app: the running app to publish into
        :param task_status: call ``task_status.started()`` once ready
        """


class Received:
    """One event as handed from a queue to the dispatcher, with its settlement token.

    :ivar event: the event
    :ivar token: whatever the queue needs to acknowledge this event later
    :ivar attempt: how many times the queue has handed this event out (1 the first time)
    :ivar completed: consumers that already settled this event in an earlier attempt
        (a durable queue that records progress skips them on redelivery)
    :ivar only: when not ``None``, deliver to these consumers only (a redelivery)
    :ivar enqueued_at: ``time.perf_counter()`` when the event was accepted, for latency stats

    The dispatcher keeps its bookkeeping of the event in private slots of this object
    (one allocation per event on the hot path instead of two); queues leave them alone.
    """

    __slots__ = (
        "_open",
        "_started",
        "attempt",
        "completed",
        "enqueued_at",
        "event",
        "only",
        "token",
    )

    def __init__(
        self,
        event: Event,
        token: object = None,
        *,
        attempt: int = 1,
        completed: frozenset[str] = frozenset(),
        only: frozenset[str] | None = None,
        enqueued_at: float | None = None,
    ) -> None:
        self.event = event
        self.token = token
        self.attempt = attempt
        self.completed = completed
        self.only = only
        self.enqueued_at = perf_counter() if enqueued_at is None else enqueued_at
        self._open = 0
        self._started = False

    def __repr__(self) -> str:
        return (
            f"Received(event={self.event.id!r}, type={self.event.type!r}, attempt={self.attempt})"
        )


class EventQueue(ABC):
    """The ingestion queue between producers and the dispatcher.

    Contract:

    * **Bounded.** :attr:`capacity` events at most wait in the queue; :meth:`put` waits
      for room and :meth:`put_nowait` raises :class:`~reactor.QueueFull`. Waiting
      publishers are served first come, first served.
    * **Durability.** :meth:`put` returns once the event is stored at the queue's
      promised durability; an event accepted by :meth:`put` is handed out by
      :meth:`get_batch` at least once (durable queues) or at most once (memory).
    * **Batches are all or nothing.** :meth:`put_many` stores every event of a batch or
      none: when it raises, no event of the batch is stored or handed out, so a sender
      that retries the whole batch creates no duplicates.
    * **Settlement.** The dispatcher reports settlements in batches through
      :meth:`settle`: events all of whose deliveries settled (succeeded or
      dead-lettered), and consumers that settled an event whose other consumers are
      still running. Its default implementation calls :meth:`record_progress`, then
      :meth:`ack`; a queue that can store both at once overrides it.
      An event handed out and never acked (the process stopped or crashed) is handed
      out again by a durable queue, with :attr:`Received.attempt` increased and the
      consumers recorded in :attr:`Received.completed`.
    * **Failed settlements are retried.** When :meth:`settle` raises an
      :class:`Exception`, none of that call's settlements count as stored: the
      dispatcher logs the error and calls :meth:`settle` again with the same
      settlements (and any newer ones), after a capped exponential backoff, until it
      succeeds. The app keeps running meanwhile; a queue that cannot store anything
      right now (a full disk, an unreachable broker) raises
      :class:`~reactor.QueueUnavailableError` from :meth:`put` and counts its failures
      in :attr:`QueueStatistics.errors <reactor.QueueStatistics.errors>`.
    * Queues whose :attr:`needs_ack` is ``False`` (the memory queue) are never called
      with :meth:`settle`, which keeps the hot path free.
    * **Bounded redeliveries.** A durable queue whose :attr:`max_redeliveries` is not
      ``None`` hands an event out at most ``1 + max_redeliveries`` times to be handled:
      when :attr:`Received.attempt` exceeds that, the dispatcher does not run the
      handlers; it dead-letters the event (error
      :class:`~reactor.RedeliveryLimitExceeded`) for every matching consumer that had
      not settled it, then settles it as usual. This ends the crash loop of a poison
      event that kills the process before it settles. For that the queue must count
      a hand-out durably before the handlers can run.
    * **Dead letters.** A queue whose :attr:`stores_dead_letters` is ``True`` is told of
      every dead letter through :meth:`record_dead_letter` before the delivery settles,
      and must store it no later than the :meth:`settle` that follows;
      ``app.redeliver(letter)`` calls :meth:`discard_dead_letter` before it puts the
      event again.
    * **Deduplication** (optional): a queue that can store the keys of an app's ``dedupe``
      window together with its events accepts the job in :meth:`deduplicate`; the
      default leaves it to the app, which keeps the keys in memory.
    * **Fire times.** A queue whose :attr:`stores_fire_times` is ``True`` keeps the last
      fire time of each named timer (see :meth:`record_fire_time`), so that a restarted
      app knows which runs it missed while it was down.
    * ``statistics().depth`` counts an event until :meth:`get_batch` has returned it:
      the app's drain waits for a depth of zero.
    * **Delayed events** (only when :attr:`supports_delay` is ``True``). An event whose
      :attr:`Event.deliver_at <reactor.Event.deliver_at>` (its ``deliverat`` extension)
      is later than the clock's :meth:`~reactor.Clock.now` when it is put is held, and
      :meth:`get_batch` hands it out no earlier than that time of the clock given to
      :meth:`use_clock`, due events in the order of their times (then of their puts).
      A held event counts against :attr:`capacity` but not in
      ``statistics().depth`` (the drain does not wait for it); it is counted in
      ``statistics().delayed``. A durable queue stores it as durably as any event.
    * One dispatcher calls :meth:`get_batch`; any number of tasks call :meth:`put`.
      Every method is called from the event loop's thread.
    """

    #: ``False`` when the queue has nothing to do on settlement (no ack calls at all).
    needs_ack: ClassVar[bool] = True
    #: ``True`` when :meth:`put_nowait` stores an event at the promised durability without
    #: any I/O (the memory queue): ``publish()`` then tries it before awaiting :meth:`put`.
    stores_immediately: ClassVar[bool] = False
    #: ``True`` when the queue keeps dead letters itself (see :meth:`record_dead_letter`).
    stores_dead_letters: ClassVar[bool] = False
    #: ``True`` when the queue holds delayed events until they are due (see the contract
    #: above). On a queue without it (the default), ``app.publish(..., delay=...)`` and
    #: ``deliver_at=`` raise :class:`NotImplementedError`; an event that carries a
    #: ``deliverat`` extension itself is handed out as soon as it is put.
    supports_delay: ClassVar[bool] = False
    #: ``True`` when the queue keeps timers' last fire times (see :meth:`record_fire_time`).
    stores_fire_times: ClassVar[bool] = False
    #: How many times an unsettled event may be handed out again before it is
    #: dead-lettered instead of handled (``None``: no bound; see the contract above).
    #: Read when the app starts.
    max_redeliveries: int | None = None

    @property
    @abstractmethod
    def capacity(self) -> int:
        """The most events that may wait in the queue."""

    def use_clock(self, clock: Clock) -> None:  # noqa: B027 - optional hook, empty by design
        """Learn the app's clock (default: ignored).

        The app calls it with its :attr:`~reactor.Reactor.clock` right before every
        :meth:`open`. A queue that holds delayed events (:attr:`supports_delay`) reads
        the time and waits on this clock, so that tests run its delays in virtual time;
        used outside an app, it falls back to the system clock.

        :param clock: the app's clock
        """

    async def open(self) -> None:  # noqa: B027 - optional hook, empty by design
        """Prepare the queue (open files, connect); called when the app starts."""

    async def close(self) -> None:  # noqa: B027 - optional hook, empty by design
        """Release resources; called when the app stops, after the drain.

        Publishers still waiting in :meth:`put` must be woken and raise
        :class:`~reactor.ReactorNotRunning`.
        """

    async def __aenter__(self) -> Self:
        """Open the queue outside an app (a process that only publishes, a tool):
        ``async with queue: await queue.put(event)``."""
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Close the queue."""
        await self.close()

    @abstractmethod
    async def put(self, event: Event, *, only: Collection[str] | None = None) -> None:
        """Store *event*, waiting while the queue is full.

        :param event: the event to store
        :param only: deliver it to these consumers only (``None``: every match)
        :raises ~reactor.DuplicateEvent: only on a queue that deduplicates (see
            :meth:`deduplicate`): a duplicate, not stored
        """

    async def put_many(self, events: Sequence[Event]) -> Sequence[Event] | None:
        """Store all of *events*, in order, or none of them.

        Returns once every event is stored at the queue's promised durability. It does
        not wait for room (a batch is taken whole or refused), and when it raises, none
        of the events is stored or will be handed out.

        The default implementation checks :meth:`statistics` for room for the whole
        batch, then, on a queue whose :attr:`stores_immediately` is ``True``, calls
        :meth:`put_nowait` for each event without yielding (so such a queue's
        :meth:`put_nowait` must not fail while there is room); on other queues it stores
        a single event with :meth:`put`. A queue that stores with I/O overrides it to take
        batches, typically with one transaction. A :class:`~reactor.DuplicateEvent` from
        those calls drops that event (it is returned), not the batch.

        :param events: the events, in the order they are to be handed out
        :return: ``None``; a queue that deduplicates (see :meth:`deduplicate`) returns the
            events of the batch it dropped as duplicates instead of storing them (the
            others are stored all or nothing)
        :raises ~reactor.QueueFull: the queue lacks room for every event right now, or
            publishers are waiting for room
        :raises NotImplementedError: a batch of more than one event, on a queue that
            stores with I/O and does not override this method
        """
        if not events:
            return None
        if not self.stores_immediately and len(events) > 1:
            raise NotImplementedError(
                f"{type(self).__name__} stores events with I/O and does not implement "
                "put_many(); it cannot store a batch all or nothing"
            )
        stats = self.statistics()
        held = stats.depth + stats.delayed
        if stats.waiting_publishers or held + len(events) > stats.capacity:
            raise QueueFull(
                f"the ingestion queue has room for {max(stats.capacity - held, 0)} "
                f"events, not the {len(events)} of this batch; retry later"
            )
        if not self.stores_immediately:
            try:
                await self.put(events[0])
            except DuplicateEvent:
                return events[:1]
            return None
        dropped: list[Event] = []
        for event in events:
            try:
                self.put_nowait(event)
            except DuplicateEvent:
                dropped.append(event)
        return dropped or None

    def deduplicate(self, window: float) -> bool:
        """Take on the app's ``dedupe`` window, if the queue can; called before :meth:`open`.

        An app built with ``Reactor(dedupe=...)`` calls it at every start, after
        :meth:`use_clock`. A queue that
        returns ``True`` drops, from then on, every published event whose ``(source,
        id)`` it stored within the last *window* seconds:

        * :meth:`put` and :meth:`put_nowait` raise :class:`~reactor.DuplicateEvent` for
          one, storing nothing; :meth:`put_many` stores the rest of the batch all or
          nothing and returns the duplicates (of stored events, or of an event before
          them in the batch);
        * an event taken by :meth:`put_nowait` whose duplicate the queue only finds once
          it stores it (after the call returned) is dropped then;
        * it counts every duplicate it drops in ``statistics().deduplicated`` (which
          ``app.stats().deduplicated`` includes), and may log it at DEBUG;
        * it stores each key atomically with its event (never a key without its event:
          that would drop the retry of an event that was not stored), and keeps it at
          least *window* seconds, by the app clock's wall time (``clock.now()`` of the
          clock :meth:`use_clock` gave) or its server's, across restarts when the queue is
          durable;
        * events put with ``only`` (redeliveries, replays) are neither checked nor recorded.

        The default returns ``False``: the app then keeps the keys in its own memory,
        and the window does not survive a restart.

        :param window: seconds, ``> 0``
        :return: whether the queue deduplicates
        """
        return False

    @abstractmethod
    def put_nowait(self, event: Event, *, only: Collection[str] | None = None) -> None:
        """Store *event* without waiting.

        :param event: the event to store
        :param only: deliver it to these consumers only (``None``: every match)
        :raises ~reactor.QueueFull: the queue is at capacity
        :raises ~reactor.DuplicateEvent: only on a queue that deduplicates (see
            :meth:`deduplicate`): a duplicate, not stored
        :raises NotImplementedError: a queue that must do I/O to store an event
        """

    @abstractmethod
    async def get_batch(self, limit: int) -> Sequence[Received]:
        """Wait for at least one event and return up to *limit* of them, oldest first.

        :param limit: the most events to return
        """

    async def settle(
        self, done: Sequence[Received], progress: Sequence[tuple[Received, str]]
    ) -> None:
        """Store one batch of settlements; return once they are stored.

        :param done: events whose every delivery settled, as for :meth:`ack`
        :param progress: (event, consumer) pairs of events not done yet, as for
            :meth:`record_progress`
        """
        if progress:
            await self.record_progress(progress)
        if done:
            await self.ack(done)

    async def ack(self, received: Sequence[Received]) -> None:  # noqa: B027
        """Mark events whose every delivery settled as done.

        :param received: the events, as handed out by :meth:`get_batch`
        """

    async def record_progress(self, progress: Sequence[tuple[Received, str]]) -> None:  # noqa: B027
        """Record that consumers settled events that are not done yet.

        :param progress: pairs of (event as handed out, consumer name)
        """

    def record_dead_letter(self, letter: DeadLetter) -> None:  # noqa: B027
        """Keep *letter* (called only when :attr:`stores_dead_letters` is ``True``).

        Called from the event loop without waiting; the letter must be stored no later
        than the settlement of its event that the dispatcher reports next.

        :param letter: the delivery that was given up
        """

    def note_consumers(self, names: Collection[str]) -> None:  # noqa: B027
        """Learn consumer names of the app (default: ignored).

        The app calls it with the names of its subscriptions right before :meth:`open`,
        and with a new subscription's name when one is added while it runs; from the
        event loop, without waiting. A queue that keeps events for replay can record
        them, to refuse a replay to a consumer name that never used it (a typo).

        :param names: consumer names
        """

    def discard_dead_letter(self, letter: DeadLetter) -> None:  # noqa: B027
        """Forget *letter*, which is being redelivered (only when :attr:`stores_dead_letters`).

        Called from the event loop without waiting, right before the event is put again;
        the removal must be stored no later than that put.

        :param letter: a letter passed to :meth:`record_dead_letter` earlier
        """

    def fire_times(self) -> Mapping[str, datetime]:
        """Return the last fire time stored for each timer, by timer name (default: none).

        Called by the app's timers when they start, after :meth:`open`, from the event
        loop: a queue reads what it stored when it opens. Only called when
        :attr:`stores_fire_times` is ``True``.

        :return: aware datetimes (UTC) by timer name
        """
        return {}

    def record_fire_time(self, timer: str, when: datetime, event: Event | None) -> None:  # noqa: B027
        """Keep *when* as the last fire time of the timer named *timer*.

        Called from the event loop without waiting, only when :attr:`stores_fire_times`
        is ``True``. With *event*, the run's event is put right after this call: the
        queue stores the time in the same transaction as that event or, when it cannot,
        right after the event is stored, never before it (a crash in between may then
        cause one extra run at the next start, never a lost one); the time of an event
        that is not stored (its put fails) is not stored either. Without *event* (a due
        time dropped or skipped, not run), the time is stored with the queue's next
        write, or when it closes. A time never replaces a later one of the same timer.

        :param timer: the timer's name
        :param when: the due time it fired for (aware, UTC)
        :param event: the event of the run, about to be put, or ``None``
        """

    def connect(self, route: Callable[[Received], bool] | None) -> bool:
        """Learn the dispatcher's direct route (default: ignored).

        The dispatcher calls it with *route* when it starts and with ``None`` when it
        stops. A queue that promises nothing across a crash (the memory queue) may then,
        in :meth:`put` and :meth:`put_nowait`, pass an event that would be the only one
        it holds, with no publisher waiting for room, to ``route(received)`` instead of
        storing it: the dispatcher routes it at once, so that its handlers start one loop
        turn after the publish rather than two. ``route`` returns ``False`` when the
        dispatcher has no room for the event (``max_in_flight``); the queue then stores it
        as usual. An event passed this way counts as put and as handed out. A durable
        queue ignores this hook: it must store an event before it is routed.

        :param route: the dispatcher's route for one event, or ``None``
        :return: whether the queue may call *route* (the default: ``False``)
        """
        return False

    @abstractmethod
    def statistics(self) -> QueueStatistics:
        """Return a snapshot of the queue's depth, capacity and counters."""


class DeadLetterStore(ABC):
    """What a queue that keeps its dead letters (:attr:`EventQueue.stores_dead_letters`)
    offers to list, replay and purge them, and to replay a time window of kept events.

    ``reactor dead-letters list|replay|purge`` and ``reactor replay`` call these methods
    on the queue that ``--queue URL`` names, opened for the command (``open()``, the
    calls, then ``close()``, from one task, as the app does). Every method needs the
    queue open; a queue whose letters are visible from several processes (a broker)
    may be used this way while the app runs elsewhere, and its ``open()`` must then not
    take events of the app's group for itself before :meth:`EventQueue.get_batch` is
    called. The command line reads an ``--id`` of digits as an :class:`int` and any
    other as a :class:`str`; a queue refuses an id of its kind that names no letter with
    :class:`~reactor.DeadLetterNotFound` (an id of the other kind with :class:`TypeError`,
    which the command reports as a usage error).
    """

    @abstractmethod
    async def dead_letters(
        self, *, consumer: str | None = None, limit: int | None = None
    ) -> list[StoredDeadLetter]:
        """Return the stored dead letters, oldest first.

        :param consumer: only this consumer's letters
        :param limit: at most this many
        """

    @abstractmethod
    async def replay_dead_letters(
        self, ids: Iterable[LetterId] | None = None, *, consumer: str | None = None
    ) -> int:
        """Publish stored dead letters' events again, each to its consumer only, and
        remove the letters.

        :param ids: the letters to replay (default: all, or all of *consumer*); every id
            must name a letter that can be replayed
        :param consumer: only this consumer's letters
        :return: how many events were published again
        :raises ~reactor.DeadLetterNotFound: an id names no letter, or the letter of a
            damaged event; nothing was replayed
        :raises ~reactor.ConsumerNotFound: *consumer* is unknown to the queue
        """

    @abstractmethod
    async def purge_dead_letters(
        self, ids: Iterable[LetterId] | None = None, *, consumer: str | None = None
    ) -> int:
        """Delete stored dead letters.

        :param ids: the letters to delete (default: all, or all of *consumer*)
        :param consumer: only this consumer's letters
        :return: how many letters were deleted
        :raises ~reactor.DeadLetterNotFound: an id names no letter; nothing was deleted
        :raises ~reactor.ConsumerNotFound: *consumer* is unknown to the queue
        """

    @abstractmethod
    async def replay(
        self,
        since: datetime,
        *,
        until: datetime | None = None,
        consumers: Collection[str] | None = None,
    ) -> int:
        """Publish again the acknowledged events published in ``[since, until)`` that
        the queue still keeps, in their order and with their ids.

        :param since: replay events published at or after this time (aware)
        :param until: ... and before this time (default: no end)
        :param consumers: deliver them to these consumers only (default: every
            subscription whose filter matches)
        :return: how many events were published again
        :raises ValueError: a naive time, or an empty *consumers*
        :raises ~reactor.ConsumerNotFound: a name in *consumers* is unknown to the queue
        """
