"""The queue on the app's side: publishing (batched), backpressure, hand-out and
settlement; every exchange with the server goes through the engine, one call per batch."""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, Final

import anyio
import anyio.lowlevel
import attrs

from reactor import (
    DeadLetter,
    DuplicateEvent,
    Event,
    PayloadTooLargeError,
    QueueFull,
    QueueStatistics,
    ReactorNotRunning,
    SystemClock,
    validators,
)
from reactor.abc import Clock, EventQueue, Received, import_extra
from reactor.queues._waiting import WaitingPublishers

from ._admin import DeadLetterAdmin, letter_body
from ._engine import DELIVER_AT, GROUP, NAK_CAP_OTHER, ONLY, Engine, Outgoing, logger
from ._island import Bridge, open_bridge
from ._options import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_CAPACITY,
    DEFAULT_CLAIM_AFTER,
    DEFAULT_DEDUPE_WINDOW,
    DEFAULT_MAX_EVENT_SIZE,
    DEFAULT_MAX_REDELIVERIES,
    DEFAULT_PUBLISH_TIMEOUT,
    DEFAULT_URL,
    SCHEMES,
    Options,
    check_name,
    split_url,
)

__all__ = ["NatsJetStreamQueue"]

#: How long get_batch() waits in one call to the engine before looking around (fresh
#: statistics, room for waiting publishers).
TAKE_WAIT: Final = 1.0
#: Events accepted by put_nowait() and not stored yet, before it raises QueueFull.
WRITE_AHEAD: Final = 10_000
#: Seconds close() gives the engine to stop beyond *publish_timeout* (it sends what
#: put_nowait() accepted, hands back unsettled events, ends its tasks, disconnects).
STOP_TIMEOUT: Final = 20.0


class _Batch:
    """Publishes of concurrent put() calls, sent together by whoever sends next."""

    __slots__ = ("items", "results")

    def __init__(self) -> None:
        self.items: list[Outgoing | None] = []
        self.results: list[int | BaseException] | None = None


class NatsJetStreamQueue(DeadLetterAdmin, EventQueue):
    """A queue shared by the processes of one or more apps through a NATS JetStream stream.

    ``Reactor(queue=NatsJetStreamQueue("nats://127.0.0.1:4222", stream="orders",
    group="billing"))``, or ``reactor run app:app --queue
    'nats://127.0.0.1:4222?stream=orders&group=billing'``. Every app that reads the
    stream has its own *group* (a durable JetStream pull consumer) and sees every event;
    the processes of one app share its group and split its events, each handled by one
    process and fanned out there to all of the app's subscriptions.

    Guarantees and how they map to JetStream:

    * ``publish()`` returns once the server stored the event (its PubAck). Concurrent
      publishers are sent together and await their PubAcks together.
    * At least once: an event is acknowledged only once every delivery in this process
      settled; the acks of a settlement are sent, then one PING/PONG makes sure the
      server has them before ``settle()`` returns. An event a process took and did not
      acknowledge (it died) goes to another process of the group after *claim_after*
      (``ack_wait``); while a delivery runs, the owner sends ``+WPI`` (in progress)
      once claim_after/4 passed since the last one, so a slow handler is not run
      twice at once. A clean stop hands its unsettled events back at once (``-NAK``).
    * Per-consumer completion: which consumers settled an event not yet done is kept in
      the KV bucket ``<stream>_progress`` (key ``<group>.<sequence>``), read when the
      event is delivered again, and deleted right after its ack. A record left behind
      by a process that died between the two is deleted by the group's next sweep:
      every open queue of the group deletes, when it opens and every 10 s, the
      records of events at or below the group's ack floor (up to 1,000 at a time).
    * Poison events: the group's consumer has no ``max_deliver``; the delivery count
      (``num_delivered``, raised by the server before the handlers run) is
      ``attempt``, and past *max_redeliveries* the app dead-letters the event with
      :class:`~reactor.RedeliveryLimitExceeded` and acknowledges it.
    * Dead letters are messages of the stream ``<stream>_dead`` (subject
      ``<stream>.dead.<group>``), visible from every process (see
      :class:`~reactor.abc.DeadLetterStore`); their ids are those messages' sequences.
    * Dedupe: each event carries ``Nats-Msg-Id`` = a digest of its CloudEvents
      ``source`` and ``id``; the stream's ``duplicate_window`` (*dedupe_window*) drops a
      second publish of it (counted, logged at debug). Replays bypass it.
    * Delayed events (``publish(..., delay=...)``, also ``publish_nowait()``) are
      stored in the stream ``<stream>_delayed`` (work-queue retention; dedupe as
      above) with their due time. Every open queue runs a mover: a reader of that
      stream's one durable consumer ``mover``, shared by all processes of all apps,
      which hands back an event not due yet (``-NAK`` with the time left on the app's
      clock, at most 300 s; at most 0.05 s on a clock other than
      :class:`~reactor.SystemClock`, whose seconds are not the server's), gathers due
      ones for 0.1 s, publishes them into the event stream in the order of their due
      times (``Nats-Msg-Id`` ``<stream>_delayed.<sequence>``: a crash before the ack
      is deduplicated within the stream's duplicate window), then acks them. They
      survive restarts, reach every group once, hold no slot of any group's consumer,
      and count in ``statistics().delayed`` and against *capacity*.
    * Retention: with ``retention=None`` the stream uses **interest** retention, so an
      event is deleted once every group acknowledged it; with a number of seconds it
      uses **limits** retention with ``max_age``: every event is kept that long for
      :meth:`replay`, acknowledged or not, and deleted after, read or not, so choose a
      retention above any backlog you can have. The stream is created with the
      settings of the first queue that opens it; later ones use it as it is.
    * A new group (its first process opens the queue) starts at the beginning of the
      stream, like Redis's ``XGROUP CREATE ... 0``: it gets every event the stream
      still keeps, so a worker started after its producer misses nothing that is kept.
      With limits retention that is every event of the last *retention* seconds. With
      interest retention it is every event some other group has not acknowledged yet;
      an event published while the stream has no group at all is not kept (JetStream
      drops it at once, nobody being interested), and one every existing group
      already acknowledged is gone. To be sure an app gets every event, start it (or
      open its queue once) before anything is published, or use a retention.
    * ``publish_nowait()`` returns before the server has the event (it is sent right
      after, and lost if the process dies first).
    * ``publish_many()`` of more than one event is refused (JetStream has no atomic
      batch of messages).
    * Connection loss: the client reconnects by itself (every 0.5 s); publishes wait
      up to *publish_timeout* for their PubAck, then raise
      :class:`~reactor.QueueUnavailableError`; settlements that fail raise and are
      retried by the app. The outage is logged once (warning), the recovery once
      (info), and counted in ``statistics().errors`` / ``last_error``.

    ``statistics().depth`` is local: the events this process fetched and not handed out,
    plus those it published that its group has not read yet (so a stopping process
    drains what it published, not the other processes' backlog); ``lag`` (the group's
    ``num_pending``) and ``pending`` (``num_ack_pending``) are refreshed every second;
    ``claimed`` counts the events this process received with a raised delivery count.

    On trio, nats-py (asyncio only) runs in an asyncio loop in a worker thread of its
    own, reached once per batch.

    :param url: the server, ``nats://host:4222`` or ``tls://host:4222``
    :param stream: the JetStream stream (created when missing)
    :param group: the app's name: its durable consumer (required)
    :param consumer: this process's name in the group (default: host, pid, random)
    :param capacity: the group's backlog at which ``publish()`` waits (default 10,000)
    :param claim_after: seconds an event may stay unacknowledged by a silent process
        before another process of the group takes it over (default 30)
    :param max_redeliveries: deliveries after the first before an event is
        dead-lettered instead of handled (default 5; ``None``: no bound)
    :param dedupe_window: seconds within which a second publish of the same CloudEvents
        source and id is dropped (default 120; ``0`` or ``None``: no dedupe)
    :param retention: seconds acknowledged events stay for :meth:`replay`, or ``None``
        (default): deleted once every group acknowledged them
    :param max_event_size: the largest encoded event accepted, in bytes (default 1 MiB)
    :param batch_size: messages per pull request; the read-ahead is twice this
    :param publish_timeout: seconds a publish waits for the server (default 10)
    """

    needs_ack = True
    stores_immediately = False
    stores_dead_letters = True
    stores_fire_times = True
    supports_delay = True

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        stream: str = "reactor",
        group: str | None = None,
        consumer: str | None = None,
        capacity: int = DEFAULT_CAPACITY,
        claim_after: float | timedelta = DEFAULT_CLAIM_AFTER,
        max_redeliveries: int | None = DEFAULT_MAX_REDELIVERIES,
        dedupe_window: float | timedelta | None = DEFAULT_DEDUPE_WINDOW,
        retention: float | timedelta | None = None,
        max_event_size: int = DEFAULT_MAX_EVENT_SIZE,
        batch_size: int = DEFAULT_BATCH_SIZE,
        publish_timeout: float | timedelta = DEFAULT_PUBLISH_TIMEOUT,
    ) -> None:
        self._options = options = Options.checked(
            url,
            queue="NatsJetStreamQueue",
            schemes=SCHEMES,
            check_name=check_name,
            stream=stream,
            group=group,
            consumer=consumer,
            capacity=capacity,
            claim_after=claim_after,
            max_redeliveries=max_redeliveries,
            dedupe_window=dedupe_window,
            retention=retention,
            max_event_size=max_event_size,
            batch_size=batch_size,
            publish_timeout=publish_timeout,
        )
        self.max_redeliveries = max_redeliveries
        self._capacity = capacity
        self._max_event_size = max_event_size
        self._subject = f"{options.stream}.events"
        self._delayed_subject = f"{options.stream}.delayed"
        self._clock: Clock = SystemClock()
        self._delayed = 0  # delayed events in the server, as last seen while open
        self._bridge: Bridge | None = None
        self._engine: Engine | None = None
        self._closed = True
        self._batch = _Batch()
        self._sending: anyio.Event | None = None
        self._unsent = 0  # events of put() calls not acknowledged by the server yet
        self._waiting = WaitingPublishers()
        self._putters = self._waiting.tickets
        self._letters: list[bytes] = []
        self._discards: list[DeadLetter] = []
        self._consumers: set[str] = set()  # the consumer names the app noted
        self._in_app = False  # note_consumers() was called: an app reads through the queue
        self._subscribed: anyio.Event | None = None  # get_batch() waits for a consumer
        self._put_count = 0
        self._get_count = 0
        self._errors = 0
        self._last_error: str | None = None
        self._app_dedupe = False  # deduplicate() was called: tell publishers of duplicates
        self._deduplicated = 0  # duplicates counted by the engines of earlier opens
        # Timers' last fire times: as read at open and recorded since; those waiting for
        # their run's event, by its (source, id); those sent with the next one or at close.
        self._fire_times: dict[str, datetime] = {}
        self._fires_waiting: dict[tuple[str, str], Outgoing] = {}
        self._loose_fires: list[Outgoing] = []

    @classmethod
    def from_url(cls, url: str, **options: Any) -> NatsJetStreamQueue:
        """Build a queue from a URL: ``nats://host:4222?stream=orders&group=billing``
        (``tls://`` for TLS).

        Every option of :class:`NatsJetStreamQueue` may be given as a query parameter:
        ``stream``, ``group``, ``consumer``, ``capacity``, ``claim_after``,
        ``max_redeliveries``, ``dedupe_window``, ``retention``, ``max_event_size``,
        ``batch_size``, ``publish_timeout`` (``none`` for ``None``).

        :param url: the URL
        :param options: more keyword arguments of :class:`NatsJetStreamQueue` (the URL's
            win)
        :raises ValueError: not a ``nats://``/``tls://`` URL, an unknown parameter (the
            message names the known ones), a bad value, or no group
        """
        server, query = split_url(url)
        return cls(server, **{**options, **query})

    # -- properties -----------------------------------------------------------------

    @property
    def capacity(self) -> int:
        """The group's backlog at which ``publish()`` waits."""
        return self._capacity

    @property
    def stream(self) -> str:
        """The JetStream stream."""
        return self._options.stream

    @property
    def group(self) -> str:
        """The app's group: the stream's durable consumer."""
        return self._options.group

    @property
    def consumer(self) -> str:
        """This process's name within the group."""
        return self._options.consumer

    # -- lifecycle ------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, create the stream, the group and the bucket when missing, and start
        fetching the group's events (the app calls it).

        :raises ~reactor.QueueUnavailableError: the server cannot be reached
        :raises ModuleNotFoundError: nats-py is not installed (the message says how)
        """
        # An app without a subscription (it only publishes) takes none of its group's
        # events: it starts fetching with its first subscription.
        await self._open(fetch=bool(self._consumers) or not self._in_app)

    async def _open(self, *, fetch: bool) -> None:
        if self._engine is not None:
            return
        nats = import_extra("nats", extra="nats")
        import_extra("nats.errors", extra="nats")
        import_extra("nats.js.api", extra="nats")
        import_extra("nats.js.errors", extra="nats")
        bridge = await open_bridge("reactor-nats")
        engine = Engine(nats, self._options, self._options.url)
        engine.require_window = self._app_dedupe
        clock = self._clock
        engine.now = lambda: clock.now().timestamp()
        if not isinstance(clock, SystemClock):
            engine.nak_cap = NAK_CAP_OTHER
        # The group's backlog is measured on the engine's loop: publishers waiting for
        # room are woken in this one (across the island's thread on trio).
        engine.on_refresh = functools.partial(bridge.call_in_caller, self._wake_publishers)
        try:
            await bridge.run(engine.start, sorted(self._consumers), fetch)
            fired = await bridge.run(engine.read_fire_times)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._stop(bridge, engine)
            raise
        self._bridge, self._engine = bridge, engine
        self._fire_times = {name: datetime.fromtimestamp(at, UTC) for name, at in fired.items()}
        self._fires_waiting.clear()
        self._closed = self._waiting.closed = False

    async def close(self) -> None:
        """Store what is pending (dead letters, put_nowait() events), hand unsettled
        events back to the group, and disconnect.

        Publishers waiting for room raise :class:`~reactor.ReactorNotRunning`.
        """
        self._closed = True
        self._waiting.close()
        bridge, engine = self._bridge, self._engine
        if bridge is None or engine is None:
            return
        with anyio.CancelScope(shield=True):
            try:
                if self._letters:
                    with anyio.move_on_after(self._options.publish_timeout):
                        await self.settle((), ())
                if self._loose_fires:
                    with anyio.move_on_after(self._options.publish_timeout):
                        await self._send_fires([])
            except Exception as exc:
                self._failed(exc)
            finally:
                self._fires_waiting.clear()
                self._loose_fires = []
                self._bridge = self._engine = None
                self._deduplicated += engine.duplicates
                self._delayed = engine.delayed
                await self._stop(bridge, engine)

    async def _stop(self, bridge: Bridge, engine: Engine) -> None:
        """Stop *engine* and close *bridge*, within a bounded time whatever the server
        or the asyncio world does (the engine bounds each of its own steps; this is the
        last guard)."""
        try:
            with anyio.move_on_after(self._options.publish_timeout + STOP_TIMEOUT):
                await bridge.run(engine.stop)
        except Exception as exc:
            self._failed(exc)
        finally:
            await bridge.aclose()

    async def __aenter__(self) -> NatsJetStreamQueue:
        """Open the queue for use without an app (tools, scripts): ``async with queue:``.

        Opened this way, the queue takes none of the group's events until
        :meth:`get_batch` is called, so dead letters and replays can be handled while
        the app runs elsewhere.
        """
        await self._open(fetch=False)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _running(self) -> tuple[Bridge, Engine]:
        if self._closed or self._bridge is None or self._engine is None:
            raise ReactorNotRunning(f"the queue {self!r} is not open")
        return self._bridge, self._engine

    def _check_running(self) -> None:
        self._running()

    # -- publishing -------------------------------------------------------------------

    def _outgoing(
        self, event: Event, only: Collection[str] | None, *, dedupe: bool = True
    ) -> Outgoing:
        body = event.to_json()
        if len(body) > self._max_event_size:
            raise PayloadTooLargeError(len(body), self._max_event_size)
        headers: dict[str, str] | None = None
        if dedupe and self._options.dedupe_window:
            digest = hashlib.blake2b(
                f"{event.source}\0{event.id}".encode(), digest_size=16
            ).hexdigest()
            headers = {"Nats-Msg-Id": digest}
        if only is not None:
            headers = headers or {}
            headers[ONLY] = json.dumps(sorted(only))
            headers[GROUP] = self._options.group
        elif event.extensions:
            due = event.deliver_at
            if due is not None and due > self._clock.now():
                # Held in the delayed events' stream until a mover finds it due.
                headers = headers or {}
                headers[DELIVER_AT] = repr(due.timestamp())
                return (self._delayed_subject, body, headers, False)
        return (self._subject, body, headers, True)

    def use_clock(self, clock: Clock) -> None:
        """Read the due times of delayed events on *clock* (the app's)."""
        self._clock = clock

    def _wake_publishers(self) -> None:
        if self._putters:
            self._waiting.wake(self._room())

    def _backlog(self) -> int:
        engine = self._engine
        return self._unsent + (0 if engine is None else engine.backlog())

    def _room(self) -> int:
        return self._capacity - self._backlog()

    def put_nowait(self, event: Event, *, only: Collection[str] | None = None) -> None:
        """Accept *event* without waiting; it is sent to the server right after.

        Unlike :meth:`put`, this returns before the server has the event: it is lost if
        the process dies first.

        :raises ~reactor.QueueFull: the group's backlog is at capacity, publishers are
            waiting for room, or too many accepted events wait to be sent
        :raises ~reactor.EventFormatError: the event cannot be encoded as JSON
        :raises ~reactor.PayloadTooLargeError: the encoded event is over the limit
        """
        bridge, engine = self._running()
        item = self._outgoing(event, only, dedupe=only is None)
        if self._room() <= 0 or self._putters or len(engine.nowait) >= WRITE_AHEAD:
            raise QueueFull(
                f"the queue is full (the group's backlog is at {self._capacity} events, or "
                f"{WRITE_AHEAD} wait to be sent); use `await app.publish(...)` to wait for room"
            )
        engine.nowait.append(item)
        self._put_count += 1
        bridge.call_soon(engine.kick)

    async def put(self, event: Event, *, only: Collection[str] | None = None) -> None:
        """Store *event*; return once the server acknowledged it. Wait while the group's
        backlog is at capacity.

        A publisher cancelled before its publish was sent stores nothing; one cancelled
        while it is sent may store it.

        :raises ~reactor.ReactorNotRunning: the queue is closed, or closed while waiting
        :raises ~reactor.EventFormatError: the event cannot be encoded as JSON
        :raises ~reactor.PayloadTooLargeError: the encoded event is over the limit
        :raises ~reactor.QueueUnavailableError: the server did not acknowledge the event
            within *publish_timeout* (it may still store it; publishing again is safe
            within the dedupe window)
        """
        await anyio.lowlevel.checkpoint_if_cancelled()
        self._running()
        # Only a publication is checked: a redelivery (to chosen consumers) sends an event
        # again on purpose.
        item = self._outgoing(event, only, dedupe=only is None)
        if self._putters or self._room() <= 0:
            # Woken by get_batch() (room in the read-ahead) and by each refresh of the
            # group's backlog (other processes read it; every second).
            await self._waiting.wait(self._room)
        if self._discards:
            await self._discard()
        fire = (
            self._fires_waiting.pop((event.source, event.id), None) if self._fires_waiting else None
        )
        sequence = await self._send_one(item)
        if fire is not None or self._loose_fires:
            # A timer's run: its fire time is sent once the event is stored, never before,
            # and even when the app stops meanwhile (bounded by publish_timeout).
            with anyio.CancelScope(shield=True):
                await self._send_fires([] if fire is None else [fire])
        if sequence < 0 and self._app_dedupe and only is None:
            raise DuplicateEvent(event.source, event.id)

    async def _send_fires(self, fires: list[Outgoing]) -> None:
        """Store timers' fire times in the bucket (with those waiting to be sent); a
        failure is logged, not raised: the run's event is stored already."""
        fires += self._loose_fires
        self._loose_fires = []
        bridge, engine = self._bridge, self._engine
        if bridge is None or engine is None:
            return
        try:
            results = await bridge.run(engine.publish, fires)
        except Exception as exc:
            results = [exc]
        for result in results:
            if isinstance(result, BaseException):
                logger.warning(
                    "%r: a timer's fire time was not stored (%s); a restart may run it again",
                    self,
                    result,
                )
                break

    async def _send_one(self, item: Outgoing) -> int:
        """Send *item* with the next batch; return its stream sequence (negative: a
        duplicate the server dropped)."""
        batch = self._batch
        batch.items.append(item)
        index = len(batch.items) - 1
        self._unsent += 1
        self._put_count += 1
        try:
            while batch.results is None:
                if self._sending is None:
                    await self._send()
                else:
                    await self._sending.wait()
        except BaseException:
            if batch.results is None and batch is self._batch:
                batch.items[index] = None  # not sent: the publish did not happen
                self._unsent -= 1
                self._put_count -= 1
            raise
        result = batch.results[index]
        if isinstance(result, BaseException):
            self._put_count -= 1
            raise result
        return result

    async def _send(self) -> None:
        """Send every publish waiting now, in one call to the engine."""
        bridge, engine = self._running()
        sending = self._sending = anyio.Event()
        try:
            # Let the publishers woken by the last send join this one.
            await anyio.lowlevel.cancel_shielded_checkpoint()
            batch, self._batch = self._batch, _Batch()
            items = [item for item in batch.items if item is not None]
            results: list[int | BaseException] = []
            try:
                with anyio.CancelScope(shield=True):
                    results = await bridge.run(engine.publish, items)
            except Exception as exc:
                results = [exc] * len(items)
            finally:
                self._unsent -= len(items)
            failure = next((r for r in results if isinstance(r, BaseException)), None)
            if failure is not None:
                self._failed(failure)
            elif results:
                self._succeeded()
            found = iter(results)
            batch.results = [
                next(found) if item is not None else ReactorNotRunning("not sent")
                for item in batch.items
            ]
        finally:
            self._sending = None
            sending.set()

    async def put_many(self, events: Sequence[Event]) -> Sequence[Event] | None:
        """Store one event (a batch of one); JetStream cannot store more all or nothing.

        :return: the event, when the dedupe window dropped it (see :meth:`deduplicate`)
        :raises NotImplementedError: more than one event
        :raises ~reactor.QueueFull: no room right now, or publishers waiting
        """
        return await super().put_many(events)

    def deduplicate(self, window: float) -> bool:
        """Take on an app's ``dedupe`` window: it replaces *dedupe_window*.

        Called by an app built with ``Reactor(dedupe=...)`` before it opens the queue.
        Each event carries ``Nats-Msg-Id`` (a digest of its source and id) and the
        stream's ``duplicate_window`` drops a copy within it, for every process of the
        app and across restarts, on the server's clock (not the app's). A stream this
        queue creates gets *window*; an existing stream must keep at least that much, or
        ``open()`` raises :class:`~reactor.QueueUnavailableError` saying how to widen it.
        ``put()`` then raises :class:`~reactor.DuplicateEvent` for a duplicate (read from
        the server's acknowledgement); a duplicate taken by ``put_nowait()`` is dropped
        by the server. Every one is counted in ``statistics().deduplicated``.

        :param window: seconds, ``> 0``
        :return: ``True``
        """
        seconds = validators.seconds("window", window, positive=True)
        self._options = attrs.evolve(self._options, dedupe_window=seconds)
        self._app_dedupe = True
        return True

    def _failed(self, exc: BaseException) -> None:
        self._errors += 1
        self._last_error = str(exc)

    def _succeeded(self) -> None:
        self._last_error = None

    # -- handing out ------------------------------------------------------------------

    async def get_batch(self, limit: int) -> Sequence[Received]:
        """Wait for at least one event of the group; return up to *limit*, oldest first.

        In an app without a subscription, this waits for one (see
        :meth:`note_consumers`).
        """
        self._running()
        while self._in_app and not self._consumers:
            # An app without a subscription (a process that only publishes) must not take
            # its group's events: it would acknowledge them unhandled, and the processes
            # of the app that handle them would never see them.
            subscribed = self._subscribed = anyio.Event()
            await subscribed.wait()
        while True:
            bridge, engine = self._running()
            batch = await bridge.run(engine.take, limit, TAKE_WAIT, abandoned=engine.untake)
            if self._putters:
                self._waiting.wake(self._room())
            if batch:
                self._get_count += len(batch)
                return batch

    # -- settlement -------------------------------------------------------------------

    async def settle(
        self, done: Sequence[Received], progress: Sequence[tuple[Received, str]]
    ) -> None:
        """Store dead letters, progress and acks in one call to the engine (see the
        class); raise when they could not be stored (the app sends them again)."""
        bridge, engine = self._running()
        letters, self._letters = self._letters, []
        acks = [item.token for item in done]
        pairs = [(item.token, consumer) for item, consumer in progress]
        try:
            await bridge.run(engine.settle, acks, pairs, letters)
        except BaseException as exc:
            self._letters[:0] = letters  # stored with the next settlement that succeeds
            if isinstance(exc, Exception):
                self._failed(exc)
            raise
        self._last_error = None  # the server takes settlements again

    async def ack(self, received: Sequence[Received]) -> None:
        """Acknowledge events whose every delivery settled."""
        await self.settle(received, ())

    async def record_progress(self, progress: Sequence[tuple[Received, str]]) -> None:
        """Record consumers that settled events whose other consumers have not yet."""
        await self.settle((), progress)

    def record_dead_letter(self, letter: DeadLetter) -> None:
        """Keep *letter*; it is stored with the next settlement."""
        self._letters.append(letter_body(letter))

    def discard_dead_letter(self, letter: DeadLetter) -> None:
        """Remove *letter*'s stored copy; done before the next put()."""
        self._discards.append(letter)

    def fire_times(self) -> Mapping[str, datetime]:
        """Return the timers' last fire times of the group, read when the queue opened,
        and those recorded since, by timer name."""
        return MappingProxyType(self._fire_times)

    def record_fire_time(self, timer: str, when: datetime, event: Event | None) -> None:
        """Keep *when* as the last fire time of *timer*, in the bucket, under the group.

        With *event*, the time is sent once the server has acknowledged the event (a
        crash in between may run it again at the next start); without, with the next
        run's or at close. A closed queue ignores it.
        """
        engine = self._engine
        if self._closed or engine is None:
            return
        last = self._fire_times.get(timer)
        if last is not None and when < last:
            return  # a later time is recorded already (the bucket keeps the last write)
        self._fire_times[timer] = when
        fire: Outgoing = (engine.fired_subject(timer), repr(when.timestamp()).encode(), None, False)
        if event is None:
            self._loose_fires.append(fire)
        else:
            self._fires_waiting[event.source, event.id] = fire

    def note_consumers(self, names: Collection[str]) -> None:
        """Remember the app's consumer names (recorded for the group at open).

        An app that has no subscription yet takes no event of its group: it only
        publishes, and the events are for the processes that handle them. (A queue used
        without an app, which never calls this, takes events from its first
        :meth:`get_batch`.)
        """
        self._in_app = True
        new = set(names) - self._consumers
        self._consumers |= new
        if new and self._subscribed is not None:
            self._subscribed.set()
            self._subscribed = None

    # -- statistics -------------------------------------------------------------------

    def statistics(self) -> QueueStatistics:
        """Return a snapshot of the queue's depth, capacity and counters (no I/O)."""
        engine = self._engine
        if engine is None:
            return QueueStatistics(
                depth=0,
                capacity=self._capacity,
                put_count=self._put_count,
                get_count=self._get_count,
                waiting_publishers=len(self._putters),
                errors=self._errors,
                last_error=self._last_error,
                deduplicated=self._deduplicated,
                delayed=self._delayed,
            )
        return QueueStatistics(
            depth=self._unsent + engine.depth(),
            capacity=self._capacity,
            put_count=self._put_count,
            get_count=self._get_count,
            waiting_publishers=len(self._putters),
            errors=self._errors + engine.errors,
            last_error=engine.last_error or self._last_error,
            lag=engine.lag,
            pending=engine.pending,
            claimed=engine.claimed,
            deduplicated=self._deduplicated + engine.duplicates,
            delayed=engine.delayed,
        )

    def __repr__(self) -> str:
        options = self._options
        return (
            f"NatsJetStreamQueue({options.url!r}, stream={options.stream!r}, "
            f"group={options.group!r})"
        )
