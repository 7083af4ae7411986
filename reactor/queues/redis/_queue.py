"""The queue: publishing (group commit), reading, settlement, claims, and housekeeping."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import deque
from collections.abc import Collection, Iterable, Mapping, Sequence
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

import anyio
import anyio.lowlevel

from reactor import (
    DeadLetter,
    DuplicateEvent,
    Event,
    PayloadTooLargeError,
    QueueFull,
    QueueStatistics,
    QueueUnavailableError,
    ReactorNotRunning,
    SystemClock,
    validators,
)
from reactor.abc import Clock, EventQueue, Received, import_extra
from reactor.queues._waiting import WaitingPublishers

from ._admin import DeadLetterAdmin, fields_of, letter_fields
from ._options import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_CAPACITY,
    DEFAULT_CLAIM_AFTER,
    DEFAULT_DEDUPE_WINDOW,
    DEFAULT_MAX_EVENT_SIZE,
    DEFAULT_MAX_REDELIVERIES,
    DEFAULT_PUBLISH_TIMEOUT,
    SCHEMES,
    Options,
    split_url,
)
from ._scripts import DROP_CONSUMER, PROMOTE, PUBLISH, STORE_FIRED, Keys

if TYPE_CHECKING:
    import coredis

__all__ = ["DEFAULT_URL", "RedisStreamsQueue", "logger"]

logger = logging.getLogger("reactor.queues.redis")

#: The server a queue uses when given no URL.
DEFAULT_URL: Final = "redis://127.0.0.1:6379/0"
#: How long one blocking read waits in the server before the reader looks around.
_BLOCK_MS: Final = 500
#: Backoff between attempts while the server does not answer.
_RETRY_DELAYS: Final = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
#: How often lag and pending are measured, and the stream is trimmed (seconds).
_REFRESH_EVERY: Final = 1.0
#: How long close() may take to write what is pending.
_CLOSE_TIMEOUT: Final = 5.0
#: How many claimed events may wait in memory before the claim loop pauses.
_CLAIM_AHEAD: Final = 1024


def _connection_errors() -> tuple[type[BaseException], ...]:
    exceptions = import_extra("coredis.exceptions", extra="redis")
    return (
        exceptions.ConnectionError,
        TimeoutError,
        OSError,
        anyio.BrokenResourceError,
        anyio.ClosedResourceError,
        anyio.EndOfStream,
    )


def _parse_id(entry_id: bytes | str) -> tuple[int, int]:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


#: Delayed entries moved to the stream per script call.
_PROMOTE_LIMIT: Final = 512

#: One event of a batch: the six values PUBLISH takes, and whether put_nowait() sent it.
_Item = tuple[str, bytes, str, str, str, str, bool]


class _Batch:
    """Publishes that go to the server together, in one script call (group commit)."""

    __slots__ = ("count", "done", "duplicates", "error", "fires", "items", "taken")

    def __init__(self) -> None:
        self.items: list[_Item | None] = []  # None: withdrawn by a cancelled publisher
        self.fires: list[tuple[str, str]] = []  # timers' fire times stored after the events
        self.count = 0  # items not withdrawn
        self.done = anyio.Event()
        self.error: BaseException | None = None
        self.taken = False  # the flusher took it: a cancelled publisher can no longer undo
        #: The items the server dropped as duplicates (their id()), once sent.
        self.duplicates: set[int] = set()

    def __len__(self) -> int:
        return self.count

    def args(self) -> list[bytes | str]:
        """The arguments of PUBLISH after the window."""
        return [value for item in self.items if item is not None for value in item[:6]]

    def nowait(self) -> list[_Item]:
        """The items of put_nowait()."""
        return [item for item in self.items if item is not None and item[6]]


class RedisStreamsQueue(DeadLetterAdmin, EventQueue):
    """A durable queue shared by the processes of an app, and by apps, through a Redis stream.

    Every event published goes into one Redis stream (*stream*). Each app that reads it
    is a Redis consumer group named *group*: every app sees every event, and the
    processes of one app (same *group*, each its own *consumer* name) split the app's
    events, each event going to one process, which fans it out to all its
    subscriptions. Start as many processes as you like, on as many machines::

        app = Reactor(queue=RedisStreamsQueue("redis://redis:6379/0", stream="orders",
                                              group="billing"))

    or ``reactor run module:app --queue 'redis://redis:6379/0?stream=orders&group=billing'``.

    Guarantees and their mechanics:

    * ``publish()`` returns once the server stored the event (the reply of the script
      that appends it); concurrent publishers of a process share one round trip. The
      event's durability is the server's: with Redis AOF (``appendonly yes``,
      ``appendfsync everysec`` or ``always``) it survives a restart of the server;
      without persistence it does not.
    * At-least-once: an event is acknowledged (``XACK``) only once every delivery of it
      in the process settled. Consumers that settled an event whose other consumers
      have not are recorded in a hash (``<stream>:progress:<group>``), so an event taken
      over by another process reruns only the unfinished consumers.
    * A process that dies leaves its events pending; the other processes of the group
      take them over (``XAUTOCLAIM``) once they have been unacknowledged for
      *claim_after* seconds. A process keeps the events it holds alive (``XCLAIM ...
      JUSTID`` every *claim_after*/3), so a slow handler is never run twice at once.
      A process restarted under the same *consumer* name takes its own pending events
      back at once, with its first read. A queue that is only opened (a dead-letter
      command, a process that only publishes) takes no event.
    * Poison events: the server's delivery count (raised before the handlers run) is
      :attr:`Received.attempt <reactor.abc.Received.attempt>`; past *max_redeliveries*
      the event is dead-lettered instead of handled.
    * Dead letters are kept in the stream ``<stream>:dead:<group>``, visible from every
      process (:meth:`dead_letters`, ``reactor dead-letters list --queue redis://...``).
    * Dedupe: a publish whose CloudEvents (source, id) was already stored within
      *dedupe_window* seconds is dropped (a key ``<stream>:dedupe:<digest>`` set with
      ``NX PX`` in the same script as the append), so a producer's retry does not make a
      second event. Replays bypass it. An app built with ``Reactor(dedupe=...)`` sets
      the window instead of *dedupe_window* (see :meth:`deduplicate`).
    * Delayed events (``publish(..., delay=...)``, also ``publish_nowait()``) wait in the
      server, beside the stream (a sorted set ``<stream>:delayed`` by due time, their
      fields in a hash), stored by the same script as other publishes (dedupe included);
      when they are due on the app's clock, a process of any app moves them into the
      stream (in the order of their times, each once, atomically), so every group gets
      them. A process looks when it reads and about once a second; ``statistics().delayed``
      is the count in the server as last seen, and counts against *capacity*.
    * Trimming: once a second, each process trims the stream (``XTRIM MINID``) below the
      oldest entry that some group has not read or not acknowledged yet; with
      *retention*, acknowledged entries are kept that long more, for :meth:`replay`.
    * ``open()`` creates the group when it is new, reading from the start of what the
      stream keeps (``XGROUP CREATE ... 0 MKSTREAM``): a worker started after its
      producer misses nothing. A process that only publishes should name the group of
      the app that reads its events (its backlog is what ``publish()`` waits for): a
      group that nobody reads holds the trimming back. Delete a retired app's group
      (``XGROUP DESTROY <stream> <group>``) for the same reason.

    ``statistics().depth`` is local to the process: the events it read and has not
    handed out, plus those it published that its group has not read yet; so a stopping
    process drains what it published and does not wait for the others' backlog.
    ``capacity`` bounds the group's backlog (its lag as last measured plus what this
    process published since): ``publish()`` waits while it is reached.
    ``publish_nowait()`` accepts an event into the next batch and returns before the
    server has it (it is lost if the process dies within that moment).

    When the server does not answer, publishes wait up to *publish_timeout* seconds for
    it, then raise :class:`~reactor.QueueUnavailableError`; reads reconnect with a capped
    backoff; settlements fail and the app retries them. The outage is logged once
    (warning) and its end once (info), and counted in ``statistics().errors``.

    Needs the ``redis`` extra (coredis); works on asyncio and trio. One Redis server
    (or a primary with replicas), not Redis Cluster.

    :param url: the server: ``redis://[[user]:password@]host[:port][/db]``,
        ``rediss://...`` (TLS) or ``unix:///path/to/socket``
    :param stream: the stream's key (default ``"reactor"``)
    :param group: the app's name, its consumer group (required)
    :param consumer: this process's name in the group (default: host name, pid and a
        random suffix); give a stable name to a process that should take its own
        pending events back when it restarts
    :param capacity: the group backlog at which ``publish()`` waits (default 10,000)
    :param claim_after: seconds an event handed to a process may stay unacknowledged
        before another process may take it over (default 30)
    :param max_redeliveries: how many times an event may be handed out again before it
        is dead-lettered instead (default 5; ``None``: no bound)
    :param dedupe_window: seconds during which a second publish of an event with the
        same source and id is dropped (default 120; 0 or ``None`` disables)
    :param retention: seconds acknowledged events stay in the stream for :meth:`replay`
        (default ``None``: trimmed once every group has acknowledged them)
    :param max_event_size: the largest encoded event accepted, in bytes (default 1 MiB)
    :param batch_size: the most events read in one round trip (default 256)
    :param publish_timeout: seconds a publish waits for a lost server (default 10)
    """

    needs_ack = True
    stores_immediately = False
    stores_dead_letters = True
    supports_delay = True
    stores_fire_times = True

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
        options = self._options = Options.checked(
            url,
            queue="RedisStreamsQueue",
            schemes=SCHEMES,
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
        self._keys = Keys(options.stream, options.group)
        self._group = options.group
        self._group_b = options.group.encode()
        self._consumer = options.consumer
        self._capacity = options.capacity
        self._window_ms = str(round((options.dedupe_window or 0.0) * 1000))
        self._claim_ms = max(1, round(options.claim_after * 1000))
        self._client: coredis.Redis[bytes] | None = None
        self._stack: AsyncExitStack | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._tasks: AsyncExitStack | None = None
        self._errors_caught: tuple[type[BaseException], ...] = ()
        self._no_group: type[BaseException] = Exception
        self._closed = True
        # Publishing: the batch being filled, and the flusher's wake-up call.
        self._batch = _Batch()
        self._flush_wanted = anyio.Event()
        self._unflushed = 0  # events accepted and not stored (or refused) yet
        self._mine: deque[tuple[int, int]] = deque()  # ids published, not read by the group
        self._delivered = (0, 0)  # the group's last-delivered id, as last seen
        self._others_lag = 0  # the group's lag, less what this process published
        self._waiting = WaitingPublishers()
        self._putters = self._waiting.tickets
        # Reading and settling.
        self._ready: deque[Received] = deque()  # taken back or over, not handed out yet
        self._unrecovered = 0  # this consumer's pending events at open, not taken back yet
        self._consuming = False  # get_batch() was called: claims may begin
        self._lost = False  # a read failed: look for events of a lost reply
        self._held: dict[str, None] = {}  # ids this process read and has not acked
        self._progress: dict[str, set[str]] = {}  # entry id -> consumers that settled it
        self._letters: list[DeadLetter] = []  # to store with the next settle()
        self._stored_letters: dict[tuple[str, str], str] = {}  # (event id, consumer) -> id
        self._discards: list[str] = []  # dead letters to delete with the next flush
        self._auto_acks: list[str] = []  # entries not for this app, or damaged
        self._damaged: list[dict[str, bytes | str]] = []  # their letters
        self._consumers: set[str] = set()  # the consumer names the app noted
        self._in_app = False  # note_consumers() was called: an app reads through the queue
        self._subscribed: anyio.Event | None = None  # get_batch() waits for a consumer
        self._unsaved_consumers: set[str] = set()
        # Timers' last fire times: as read at open and recorded since; those waiting for
        # their run's event, by its (source, id); those to store with the next flush.
        self._fire_times: dict[str, datetime] = {}
        self._fires_waiting: dict[tuple[str, str], tuple[str, str]] = {}
        self._loose_fires: list[tuple[str, str]] = []
        # Statistics.
        self._put_count = 0
        self._get_count = 0
        self._errors = 0
        self._last_error: str | None = None
        self._lag: int | None = None
        self._pending: int | None = None
        self._claimed = 0
        self._duplicates = 0
        self._app_dedupe = False  # deduplicate() was called: tell publishers of duplicates
        self._retry = 0
        # Delayed events: the app's clock, and the server's count and next due time (ms
        # since the epoch), as last seen.
        self._clock: Clock = SystemClock()
        self._delayed = 0
        self._next_due: float | None = None

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisStreamsQueue:
        """Build a queue from a URL whose query carries its options.

        ``redis://host:6379/0?stream=orders&group=billing&claim_after=30``: the
        parameters are the keyword arguments of :class:`RedisStreamsQueue` (``stream``,
        ``group``, ``consumer``, ``capacity``, ``claim_after``, ``max_redeliveries``,
        ``dedupe_window``, ``retention``, ``max_event_size``, ``batch_size``,
        ``publish_timeout``); ``none`` means ``None``. ``rediss://`` connects with TLS.

        :param url: the URL
        :param options: keyword arguments, which the URL's parameters override
        :raises ValueError: an unknown parameter (the message names the known ones), a
            malformed value, or no group
        """
        server, parsed = split_url(url)
        return cls(server, **{**options, **parsed})

    # -- properties -----------------------------------------------------------------

    @property
    def capacity(self) -> int:
        """The group backlog at which ``put()`` waits."""
        return self._capacity

    @property
    def stream(self) -> str:
        """The stream's key."""
        return self._options.stream

    @property
    def group(self) -> str:
        """The app's consumer group."""
        return self._group

    @property
    def consumer(self) -> str:
        """This process's consumer name in the group."""
        return self._consumer

    @property
    def duplicates(self) -> int:
        """Publishes dropped by the dedupe window since the queue was created (also
        ``statistics().deduplicated``)."""
        return self._duplicates

    def deduplicate(self, window: float) -> bool:
        """Take on an app's ``dedupe`` window: it replaces *dedupe_window*.

        Called by an app built with ``Reactor(dedupe=...)`` before it opens the queue.
        The keys are the server's, set in the script that appends the event (``SET NX
        PX``), so the window holds across restarts and for every process of the app; it
        runs on the server's clock, not the app's. ``put()`` then raises
        :class:`~reactor.DuplicateEvent` for a duplicate and ``put_many()`` returns
        them; a duplicate taken by ``put_nowait()`` is dropped when its batch is sent.
        Every one is counted in ``statistics().deduplicated``.

        :param window: seconds, ``> 0``
        :return: ``True``
        """
        seconds = validators.seconds("window", window, positive=True)
        self._window_ms = str(max(1, round(seconds * 1000)))
        self._app_dedupe = True
        return True

    def __repr__(self) -> str:
        return (
            f"RedisStreamsQueue(stream={self._options.stream!r}, group={self._group!r}, "
            f"consumer={self._consumer!r})"
        )

    # -- opening and closing --------------------------------------------------------

    async def open(self) -> None:
        """Connect, create the group when it is new, count this consumer's own pending
        events (taken back by the first :meth:`get_batch`), and start the background
        tasks (flusher, claims and keepalive once reading, statistics and trimming)."""
        if not self._closed:
            return
        coredis = import_extra("coredis", extra="redis")
        self._errors_caught = _connection_errors()
        self._no_group = import_extra("coredis.exceptions", extra="redis").StreamConsumerGroupError
        stack = AsyncExitStack()
        await stack.__aenter__()
        try:
            name = "".join(c if c.isalnum() or c in "-_.:" else "_" for c in self._consumer)
            client = coredis.Redis.from_url(
                self._options.url,
                decode_responses=False,
                verify_version=False,
                # The queue retries itself: it must see a cut connection (a lost reply).
                retry_policy=import_extra("coredis.retry", extra="redis").NoRetryPolicy(),
                client_name=f"reactor:{self._group}:{name}"[:200],
            )
            self._client = await stack.enter_async_context(client)
            await self._create_group()
            if self._consumers:
                await client.sadd(self._keys.consumers, list(self._consumers))
            # Only counted: the events are taken back by the first get_batch(), so that
            # a queue opened by a command (dead letters, replay) takes no event.
            self._unrecovered = 0
            for info in await client.xinfo_consumers(self._keys.stream, self._group):
                if _text(info[b"name"]) == self._consumer:
                    self._unrecovered = int(info[b"pending"])
            self._consuming = False
            self._fire_times = {
                _text(name): datetime.fromtimestamp(float(value), UTC)
                for name, value in (await client.hgetall(self._keys.fired)).items()
            }
            await self._refresh()
            tasks = AsyncExitStack()
            self._tg = await tasks.enter_async_context(anyio.create_task_group())
            stack.push_async_callback(tasks.aclose)
            self._tasks = tasks
        except BaseException:
            self._client = None
            await stack.aclose()
            raise
        self._stack = stack
        self._closed = False
        self._waiting = WaitingPublishers()
        self._putters = self._waiting.tickets
        self._tg.start_soon(self._flusher, name=f"{self!r} flusher")
        self._tg.start_soon(self._housekeeper, name=f"{self!r} housekeeper")

    async def close(self) -> None:
        """Store what is pending (events accepted by ``put_nowait()``), stop the
        background tasks and disconnect. A consumer that holds no pending event leaves
        the group. Publishers waiting for room raise :class:`~reactor.ReactorNotRunning`.
        """
        stack, self._stack = self._stack, None
        if stack is None:
            return
        self._closed = True
        self._waiting.close()
        assert self._tg is not None and self._tasks is not None
        self._tg.cancel_scope.cancel()
        self._tg = None
        await self._tasks.aclose()  # the background tasks end (the stack's callback: no-op)
        with anyio.CancelScope(shield=True):
            try:
                with anyio.move_on_after(_CLOSE_TIMEOUT):
                    await self._flush_remaining()
                    if self._letters:
                        await self._settle([], [])
                    assert self._client is not None
                    await self._client.eval(
                        DROP_CONSUMER, [self._keys.stream], [self._group, self._consumer]
                    )
            except Exception as exc:
                logger.warning("%r: could not store what was pending at close: %s", self, exc)
            if self._unflushed:
                logger.error(
                    "%r: %d event(s) accepted by publish_nowait() were not stored at close",
                    self,
                    self._unflushed,
                )
        # Outside the shield: the task groups in the stack were entered outside it.
        await stack.aclose()
        self._client = None
        self._batch = _Batch()
        self._unflushed = 0
        self._mine.clear()
        self._ready.clear()
        self._fires_waiting.clear()
        self._loose_fires = []
        self._held.clear()
        self._progress.clear()

    async def _create_group(self) -> None:
        assert self._client is not None
        exceptions = import_extra("coredis.exceptions", extra="redis")
        try:
            await self._client.xgroup_create(
                self._keys.stream, self._group, identifier="0", mkstream=True
            )
        except exceptions.StreamDuplicateConsumerGroupError:
            pass  # BUSYGROUP: the app's group exists

    async def _recover(self) -> None:
        """Take back this consumer's pending events (a restart under the same name)."""
        assert self._client is not None
        after: bytes | str = "0"
        while True:
            reply = await self._client.xreadgroup(
                self._group,
                self._consumer,
                {self._keys.stream: after},
                count=self._options.batch_size,
            )
            entries = next(iter(reply.values()), ()) if reply else ()
            if not entries:
                return
            after = entries[-1].identifier
            await self._take_over(entries)

    async def _recover_lost(self) -> None:
        """Take back the events the server handed to this consumer in a reply that was
        lost with its connection: pending here, but neither held nor read ahead. Their
        delivery count is left as the server counted it (no new hand-out is counted)."""
        assert self._client is not None
        client, keys = self._client, self._keys
        pending = await client.xpending(
            keys.stream, self._group, "-", "+", 100_000, consumer=self._consumer
        )
        skip = self._held.keys() | set(self._auto_acks)  # handed out, or acked soon
        lost = [
            (_text(p.identifier), p.delivered)  # type: ignore[union-attr]
            for p in pending
            if _text(p.identifier) not in skip  # type: ignore[union-attr]
        ]
        if not lost:
            return
        async with client.pipeline(transaction=False) as pipe:
            requests = [pipe.xrange(keys.stream, i, i) for i, _ in lost]
            progress_request = pipe.hmget(keys.progress, [i for i, _ in lost])
        progress = await progress_request
        for (entry_id, delivered), request, done in zip(lost, requests, progress, strict=True):
            entries = await request
            if not entries:  # trimmed meanwhile
                self._auto_acks.append(entry_id)
                self._flush_wanted.set()
                continue
            received = self._decode(entry_id, entries[0].field_values, delivered)
            if received is None:
                continue
            completed = frozenset(json.loads(done)) if done else frozenset()
            received.completed = completed
            if completed:
                self._progress[entry_id] = set(completed)
            self._held[entry_id] = None
            self._ready.append(received)
        logger.info("%r: took back %d event(s) whose delivery was cut", self, len(lost))

    async def _take_over(self, entries: Sequence[Any], *, claimed: bool = False) -> None:
        """Put redelivered *entries* in the read-ahead with their delivery count and the
        consumers that already settled them."""
        assert self._client is not None
        ids = [_text(entry.identifier) for entry in entries]
        gone = [i for i, entry in zip(ids, entries, strict=True) if not entry.field_values]
        if gone:  # trimmed while pending
            await self._client.xack(self._keys.stream, self._group, gone)
        live = [(i, e) for i, e in zip(ids, entries, strict=True) if e.field_values]
        if not live:
            return
        async with self._client.pipeline(transaction=False) as pipe:
            counts_request = pipe.xpending(
                self._keys.stream,
                self._group,
                start=live[0][0],
                end=live[-1][0],
                count=len(live) + len(self._held) + 16,
                consumer=self._consumer,
            )
            progress_request = pipe.hmget(self._keys.progress, [i for i, _ in live])
        counts = {_text(p.identifier): p.delivered for p in await counts_request}  # type: ignore[union-attr]
        progress = await progress_request
        for (entry_id, entry), done in zip(live, progress, strict=True):
            completed = frozenset(json.loads(done)) if done else frozenset()
            received = self._decode(entry_id, entry.field_values, counts.get(entry_id, 2))
            if received is None:
                continue
            received.completed = completed
            if completed:
                self._progress[entry_id] = set(completed)
            self._held[entry_id] = None
            self._ready.append(received)
            if claimed:
                self._claimed += 1

    # -- publishing -----------------------------------------------------------------

    def _check_running(self) -> None:
        if self._closed:
            raise ReactorNotRunning(f"{self!r} is not open")

    def _encode(self, event: Event) -> bytes:
        body = event.to_json()
        if len(body) > self._options.max_event_size:
            raise PayloadTooLargeError(len(body), self._options.max_event_size)
        return body

    def _dedupe_key(self, event: Event) -> str:
        if self._window_ms == "0":
            return ""
        digest = hashlib.blake2b(
            f"{event.source}\x00{event.id}".encode(), digest_size=16
        ).hexdigest()
        return self._keys.dedupe + digest

    def use_clock(self, clock: Clock) -> None:
        """Read the due times of delayed events on *clock* (the app's)."""
        self._clock = clock

    def _due(self, event: Event) -> str:
        """When *event* is due, in milliseconds since the epoch, if it is a delayed event
        not due yet on the app's clock; else ``""``."""
        due = event.deliver_at
        if due is None or due <= self._clock.now():
            return ""
        return str(round(due.timestamp() * 1000))

    def _now_ms(self) -> float:
        return self._clock.now().timestamp() * 1000

    async def _promote(self) -> None:
        """Move the delayed events that are due into the stream; note what is left."""
        assert self._client is not None
        keys = self._keys
        reply: Any = await self._client.eval(
            PROMOTE, keys.publish_keys()[:3], [str(int(self._now_ms())), _PROMOTE_LIMIT]
        )
        moved, next_due, left = reply
        self._delayed = int(left)
        self._next_due = float(next_due) if next_due else None
        if moved:
            self._waiting.wake(self._room())

    def _room(self) -> int:
        backlog = (
            self._unflushed
            + len(self._mine)
            + len(self._ready)
            + self._unrecovered
            + self._others_lag
            + self._delayed
        )
        return self._capacity - backlog

    def _accept(
        self,
        event: Event,
        body: bytes,
        only: Collection[str] | None,
        *,
        scoped: bool = False,
        replay: bool = False,
        nowait: bool = False,
    ) -> _Item:
        item = (
            # Only a publication is checked: a redelivery or replay (to chosen consumers)
            # sends an event again on purpose.
            "" if replay or only is not None else self._dedupe_key(event),
            body,
            "" if only is None else json.dumps(sorted(only)),
            self._group if scoped or only is not None else "",
            "1" if replay else "",
            self._due(event) if event.extensions else "",
            nowait,
        )
        batch = self._batch
        batch.items.append(item)
        batch.count += 1
        self._unflushed += 1
        self._put_count += 1
        self._flush_wanted.set()
        return item

    def put_nowait(self, event: Event, *, only: Collection[str] | None = None) -> None:
        """Accept *event* into the next batch sent to the server, without waiting.

        Unlike :meth:`put`, this returns before the server has the event: it is lost if
        the process dies within that moment.

        :raises ~reactor.QueueFull: the group's backlog is at capacity, or publishers are
            waiting for room
        :raises ~reactor.EventFormatError: the event cannot be encoded as JSON
        :raises ~reactor.PayloadTooLargeError: the encoded event is over the limit
        """
        self._check_running()
        body = self._encode(event)
        if self._putters or self._room() <= 0:
            raise QueueFull(
                f"the queue is full ({self._capacity} events in the group's backlog); "
                "use `await app.publish(...)` to wait for room"
            )
        self._accept(event, body, only, nowait=True)

    async def put(self, event: Event, *, only: Collection[str] | None = None) -> None:
        """Store *event* and return once the server has it; wait while the group's
        backlog is at capacity.

        :raises ~reactor.ReactorNotRunning: the queue is closed, or closed while waiting
        :raises ~reactor.EventFormatError: the event cannot be encoded as JSON
        :raises ~reactor.PayloadTooLargeError: the encoded event is over the limit
        :raises ~reactor.QueueUnavailableError: the server did not answer within
            *publish_timeout*; the event was not stored, publishing again later can succeed
        """
        await anyio.lowlevel.checkpoint_if_cancelled()
        self._check_running()
        body = self._encode(event)
        if self._putters or self._room() <= 0:
            await self._waiting.wait(self._room)
        batch = self._batch
        item = self._accept(event, body, only)
        fire = None
        if self._fires_waiting:
            # A timer's run: its fire time is stored right after its event, never before.
            fire = self._fires_waiting.pop((event.source, event.id), None)
            if fire is not None:
                batch.fires.append(fire)
        try:
            await self._wait_stored(batch, [item])
        except BaseException:
            if fire is not None and not batch.taken:
                batch.fires.remove(fire)
            raise
        if self._app_dedupe and id(item) in batch.duplicates:
            raise DuplicateEvent(event.source, event.id)

    async def put_many(self, events: Sequence[Event]) -> list[Event] | None:
        """Store all of *events* in one script call (atomic in the server), or none.

        Events dropped by the dedupe window (of stored events, or of one before them in
        the batch) are returned.

        :raises ~reactor.QueueFull: less room than events, or publishers waiting for room
        :raises ~reactor.ReactorNotRunning: the queue is closed
        :raises ~reactor.EventFormatError: an event cannot be encoded as JSON
        :raises ~reactor.PayloadTooLargeError: an encoded event is over the limit
        :raises ~reactor.QueueUnavailableError: the server did not answer within
            *publish_timeout* (nothing stored)
        """
        await anyio.lowlevel.checkpoint_if_cancelled()
        self._check_running()
        bodies = [self._encode(event) for event in events]
        if not bodies:
            return None
        if self._putters or self._room() < len(bodies):
            raise QueueFull(
                f"the queue has room for {max(self._room(), 0)} events, not the "
                f"{len(bodies)} of this batch; retry later"
            )
        batch = self._batch
        items = [
            self._accept(event, body, None) for event, body in zip(events, bodies, strict=True)
        ]
        await self._wait_stored(batch, items)
        dropped = batch.duplicates
        if not dropped:
            return None
        return [event for event, item in zip(events, items, strict=True) if id(item) in dropped]

    async def _republish(
        self, events: Iterable[tuple[Event, Collection[str] | None]], *, replay: bool = True
    ) -> int:
        """Publish again (a replay, a redelivery), to this group only, past the dedupe
        window; return how many."""
        batch = self._batch
        items = [
            self._accept(event, event.to_json(), only, scoped=True, replay=replay)
            for event, only in events
        ]
        if items:
            await self._wait_stored(batch, items)
        return len(items)

    async def _wait_stored(self, batch: _Batch, items: list[_Item]) -> None:
        try:
            await batch.done.wait()
        except BaseException:
            if not batch.taken:  # not sent yet: take the events back
                mine = {id(item) for item in items}
                batch.items = [
                    None if item is None or id(item) in mine else item for item in batch.items
                ]
                batch.count -= len(items)
                self._unflushed -= len(items)
                self._put_count -= len(items)
            raise
        if batch.error is not None:
            raise batch.error

    async def _flusher(self) -> None:
        """Send each batch of publishes (and the small writes that wait for one) in one
        round trip, while the next batch fills: group commit."""
        while True:
            await self._flush_wanted.wait()
            self._flush_wanted = anyio.Event()
            await self._flush_once(give_up=True)

    def _abandon(self, batch: _Batch) -> None:
        """The queue closed while *batch* was being sent: its publishers stop waiting."""
        if not batch.done.is_set():
            self._unflushed -= len(batch) - len(batch.nowait())  # those: counted lost at close
            batch.error = ReactorNotRunning(
                "the queue closed while the event was being stored; it may or may not be"
            )
            batch.done.set()

    async def _flush_remaining(self) -> None:
        while (
            self._batch.count
            or self._auto_acks
            or self._discards
            or self._unsaved_consumers
            or self._loose_fires
        ):
            await self._flush_once(give_up=False)
            if self._last_error is not None:
                return

    async def _flush_once(self, *, give_up: bool) -> None:
        batch, self._batch = self._batch, _Batch()
        batch.taken = True
        acks, self._auto_acks = self._auto_acks, []
        damaged, self._damaged = self._damaged, []
        discards, self._discards = self._discards, []
        consumers, self._unsaved_consumers = self._unsaved_consumers, set()
        if self._loose_fires:
            batch.fires += self._loose_fires
            self._loose_fires = []
        deadline = anyio.current_time() + self._options.publish_timeout
        try:
            ids = await self._send(batch, acks, damaged, discards, consumers, deadline, give_up)
        except BaseException:
            self._abandon(batch)
            raise
        if ids is None:
            return
        self._succeeded()
        self._unflushed -= len(batch)
        delivered = self._delivered
        sent = [item for item in batch.items if item is not None]
        for item, entry_id in zip(sent, ids, strict=False):  # one id per item sent
            if entry_id == 0:
                self._duplicates += 1
                batch.duplicates.add(id(item))
                logger.debug("%r: a duplicate publish was dropped (dedupe window)", self)
                continue
            if entry_id == -1:  # delayed: kept beside the stream until it is due
                self._delayed += 1
                due = float(item[5])
                if self._next_due is None or due < self._next_due:
                    self._next_due = due  # the reader's next block ends by then
                continue
            parsed = _parse_id(entry_id)
            if parsed > delivered:
                self._mine.append(parsed)
        batch.done.set()

    async def _send(
        self,
        batch: _Batch,
        acks: list[str],
        damaged: list[dict[str, bytes | str]],
        discards: list[str],
        consumers: set[str],
        deadline: float,
        give_up: bool,
    ) -> list[Any] | None:
        """Send *batch* and the small writes; retry while the server does not answer
        (until *deadline* for the publishers that wait). ``None``: the batch failed."""
        keys = self._keys
        while True:
            try:
                assert self._client is not None
                async with self._client.pipeline(transaction=False) as pipe:
                    if discards:
                        pipe.xdel(keys.dead, discards)
                    request = (
                        pipe.eval(PUBLISH, keys.publish_keys(), [self._window_ms, *batch.args()])
                        if batch.count
                        else None
                    )
                    for letter in damaged:
                        pipe.xadd(keys.dead, letter)
                    if acks:
                        pipe.xack(keys.stream, self._group, acks)
                    if consumers:
                        pipe.sadd(keys.consumers, list(consumers))
                    if batch.fires:  # after the events of the batch, in its order
                        pairs = [value for fire in batch.fires for value in fire]
                        pipe.eval(STORE_FIRED, [keys.fired], pairs)
                return [] if request is None else list(await request)  # type: ignore[arg-type]
            except self._errors_caught as exc:
                self._failed(exc, "publish")
                if not give_up:
                    raise
                if batch.count and anyio.current_time() >= deadline:
                    self._give_up(batch, exc)
                await self._backoff()
            except Exception as exc:
                # Not the connection: the server refused (out of memory, a wrong type).
                self._failed(exc, "publish")
                self._unflushed -= len(batch)
                batch.error = QueueUnavailableError(f"the Redis server refused the write: {exc}")
                batch.done.set()
                return None

    def _give_up(self, batch: _Batch, exc: BaseException) -> None:
        """Fail the waiting publishers of *batch* after *publish_timeout*; keep the
        events of ``put_nowait()`` for the next batch."""
        error = QueueUnavailableError(
            f"the Redis server at {self._options.url} did not answer for "
            f"{self._options.publish_timeout:g} s ({exc}); the event was not stored, "
            "publish again later"
        )
        kept = batch.nowait()
        self._unflushed -= len(batch) - len(kept)
        batch.error = error
        if kept:  # first in the next batch, in their order
            nxt = self._batch
            nxt.items[:0] = kept
            nxt.count += len(kept)
            self._flush_wanted.set()
        batch.items = []
        batch.count = 0
        batch.fires = []  # the runs' events were not stored: nor are their fire times
        batch.done.set()

    # -- reading --------------------------------------------------------------------

    def _decode(
        self, entry_id: str, fields: Any, attempt: int, *, fresh: bool = False
    ) -> Received | None:
        """The event of an entry, or ``None`` for one not meant for this app (acked
        without handing out) or damaged (dead-lettered, then acked)."""
        scope = fields.get(b"g")
        if scope is not None and scope != self._group_b:
            self._auto_acks.append(entry_id)  # another app's replay or redelivery
            self._flush_wanted.set()
            return None
        body = fields.get(b"e")
        try:
            event = Event.from_json(body)
        except Exception as exc:
            self._damaged_entry(entry_id, fields, exc)
            return None
        only = fields.get(b"o")
        received = Received(
            event,
            entry_id,
            attempt=attempt,
            only=None if only is None else frozenset(json.loads(only)),
        )
        if fresh:
            self._held[entry_id] = None
        return received

    def _damaged_entry(self, entry_id: str, fields: Any, exc: Exception) -> None:
        logger.error(
            "%r: entry %s cannot be decoded (%s); it is dead-lettered", self, entry_id, exc
        )
        now = time.time()
        body = (
            fields.get(b"e") or json.dumps({_text(k): _text(v) for k, v in fields.items()}).encode()
        )
        self._damaged.append(
            letter_fields(
                consumer="",
                error=exc,
                attempts=0,
                first_failed_at=now,
                last_failed_at=now,
                body=body,
                entry=entry_id,
            )
        )
        self._auto_acks.append(entry_id)
        self._flush_wanted.set()

    def _take_ready(self, limit: int) -> list[Received]:
        ready = self._ready
        batch = [ready.popleft() for _ in range(min(limit, len(ready)))]
        self._get_count += len(batch)
        self._waiting.wake(self._room())
        return batch

    async def get_batch(self, limit: int) -> Sequence[Received]:
        """Wait for at least one event; return up to *limit*, read with one ``XREADGROUP``.

        Events taken back (at open) or taken over from another process come first.
        While the server does not answer, this retries with a capped backoff.
        """
        self._check_running()
        while self._in_app and not self._consumers:
            # An app without a subscription (a process that only publishes) must not take
            # its group's events: it would acknowledge them unhandled, and the processes
            # of the app that handle them would never see them.
            subscribed = self._subscribed = anyio.Event()
            await subscribed.wait()
        if not self._consuming:
            self._consuming = True  # from now on, this process takes events: its own first
            await self._recover()
            self._unrecovered = 0
        if self._ready:
            return self._take_ready(limit)
        client = self._client
        assert client is not None
        count = min(limit, self._options.batch_size)
        streams = {self._keys.stream: ">"}
        while True:
            try:
                if self._lost:
                    await self._recover_lost()
                    self._lost = False
                    if self._ready:
                        return self._take_ready(limit)
                block = _BLOCK_MS
                if self._next_due is not None:
                    if self._next_due <= self._now_ms():
                        await self._promote()
                    if self._next_due is not None:
                        block = max(1, min(block, int(self._next_due - self._now_ms())))
                reply = await client.xreadgroup(
                    self._group, self._consumer, streams, count=count, block=block
                )
            except self._errors_caught as exc:
                self._failed(exc, "read")
                # A reply lost with the connection leaves its events pending here.
                self._lost = True
                await self._backoff()
                continue
            except self._no_group:
                logger.warning("%r: the group is gone (a server restart?); creating it", self)
                try:
                    await self._create_group()
                except self._errors_caught as exc:
                    self._failed(exc, "read")
                    await self._backoff()
                continue
            if self._last_error is not None:
                self._succeeded()
            if reply:
                entries = next(iter(reply.values()))
                batch = []
                held = self._held
                for entry in entries:
                    entry_id = _text(entry.identifier)
                    fields = entry.field_values
                    if len(fields) == 1:  # the common case: a publication ("e" only)
                        try:
                            event = Event.from_json(fields[b"e"])
                        except Exception:
                            pass
                        else:
                            held[entry_id] = None
                            batch.append(Received(event, entry_id))
                            continue
                    received = self._decode(entry_id, fields, 1, fresh=True)
                    if received is not None:
                        batch.append(received)
                if entries:
                    self._read_up_to(_parse_id(entries[-1].identifier))
                if batch:
                    self._get_count += len(batch)
                    return batch
            if self._ready:
                return self._take_ready(limit)

    def _read_up_to(self, position: tuple[int, int]) -> None:
        """The group has read the stream up to *position*: so much less is ours to wait for."""
        if position > self._delivered:
            self._delivered = position
        mine = self._mine
        if mine and mine[0] <= position:
            while mine and mine[0] <= position:
                mine.popleft()
            self._waiting.wake(self._room())

    # -- settlement -----------------------------------------------------------------

    async def settle(
        self, done: Sequence[Received], progress: Sequence[tuple[Received, str]]
    ) -> None:
        """Store dead letters, progress and acknowledgements in one transaction
        (``MULTI``: the letters, ``HSET`` of progress, ``XACK``, ``HDEL`` of progress).

        :raises ~reactor.QueueUnavailableError: the server did not answer; nothing of
            this call counts as stored (the app retries it)
        """
        try:
            await self._settle(done, progress)
        except self._errors_caught as exc:
            self._failed(exc, "settle")
            failure = f"{type(exc).__name__}: {exc}"
        else:
            return
        # Raised outside the handler, without the client's exception as its context: a
        # logged error would keep the connection's frames (and its streams) alive.
        raise QueueUnavailableError(
            f"the Redis server at {self._options.url} did not answer ({failure}); "
            "the settlements will be retried"
        )

    async def _settle(
        self, done: Sequence[Received], progress: Sequence[tuple[Received, str]]
    ) -> None:
        client = self._client
        if client is None:
            raise ReactorNotRunning(f"{self!r} is not open")
        keys = self._keys
        letters = self._letters
        self._letters = []
        changed: dict[str, str] = {}
        if progress:
            done_ids = {item.token for item in done} if done else ()
            for item, consumer in progress:
                entry_id = item.token
                assert isinstance(entry_id, str)
                if entry_id in done_ids:
                    continue
                consumers = self._progress.get(entry_id)
                if consumers is None:
                    consumers = self._progress[entry_id] = set(item.completed)
                consumers.add(consumer)
                changed[entry_id] = json.dumps(sorted(consumers))
        ids = [item.token for item in done]
        with_progress = [i for i in ids if i in self._progress] if self._progress else []
        letter_ids: list[Any] = []
        try:
            if letters or changed or with_progress:
                async with client.pipeline(transaction=True) as pipe:
                    letter_ids = [pipe.xadd(keys.dead, fields_of(letter)) for letter in letters]
                    if changed:
                        pipe.hset(keys.progress, changed)
                    if ids:
                        pipe.xack(keys.stream, self._group, ids)  # type: ignore[arg-type]
                    if with_progress:
                        pipe.hdel(keys.progress, with_progress)
            elif ids:  # the common case: one command, atomic by itself
                await client.xack(keys.stream, self._group, ids)  # type: ignore[arg-type]
        except BaseException as exc:
            if not isinstance(exc, self._no_group):
                self._letters[:0] = letters
                raise
            # The server lost the stream (a restart without persistence): the entries
            # are gone, so there is nothing left to acknowledge.
            await self._create_group()
        if self._last_error is not None:
            self._succeeded()
        for letter, request in zip(letters, letter_ids, strict=False):
            try:
                self._remember_letter(letter, _text(await request))
            except Exception:
                continue
        held, recorded = self._held, self._progress
        for entry_id in ids:
            held.pop(entry_id, None)  # type: ignore[call-overload]
            if recorded:
                recorded.pop(entry_id, None)  # type: ignore[call-overload]

    def _remember_letter(self, letter: DeadLetter, letter_id: str) -> None:
        remembered = self._stored_letters
        if len(remembered) >= 10_000:
            del remembered[next(iter(remembered))]
        remembered[letter.event.id, letter.consumer] = letter_id

    async def ack(self, received: Sequence[Received]) -> None:
        """Acknowledge events whose every delivery settled (as :meth:`settle`)."""
        await self.settle(received, ())

    async def record_progress(self, progress: Sequence[tuple[Received, str]]) -> None:
        """Record consumers that settled events not done yet (as :meth:`settle`)."""
        await self.settle((), progress)

    def record_dead_letter(self, letter: DeadLetter) -> None:
        """Keep *letter*; it is stored with the next :meth:`settle`."""
        self._letters.append(letter)

    def discard_dead_letter(self, letter: DeadLetter) -> None:
        """Forget *letter*, which the app redelivers: deleted with the next publish."""
        try:
            self._letters.remove(letter)
            return
        except ValueError:
            pass
        letter_id = self._stored_letters.pop((letter.event.id, letter.consumer), None)
        if letter_id is not None:
            self._discards.append(letter_id)

    def fire_times(self) -> Mapping[str, datetime]:
        """Return the timers' last fire times of the group, read when the queue opened,
        and those recorded since, by timer name."""
        return MappingProxyType(self._fire_times)

    def record_fire_time(self, timer: str, when: datetime, event: Event | None) -> None:
        """Keep *when* as the last fire time of *timer*, in the group's hash
        ``<stream>:fired:<group>``.

        With *event*, the time is sent right after the event, in the same round trip (and
        not at all if the event is not stored); without, with the next one. A closed
        queue ignores it.
        """
        if self._closed:
            return
        last = self._fire_times.get(timer)
        if last is None or when > last:
            self._fire_times[timer] = when
        fire = (timer, repr(when.timestamp()))
        if event is None:
            self._loose_fires.append(fire)
            self._flush_wanted.set()
        else:
            self._fires_waiting[event.source, event.id] = fire

    def note_consumers(self, names: Collection[str]) -> None:
        """Record the app's consumer names in the server (``<stream>:consumers:<group>``),
        so that a replay to a mistyped name is refused from any process.

        An app that has no subscription yet takes no event of its group: it only
        publishes, and the events are for the processes that handle them.
        """
        self._in_app = True
        new = set(names) - self._consumers
        self._consumers |= new
        if new and self._subscribed is not None:
            self._subscribed.set()
            self._subscribed = None
        if new and not self._closed:
            self._unsaved_consumers |= new
            self._flush_wanted.set()

    # -- background: claims, keepalive, statistics, trimming -------------------------

    async def _housekeeper(self) -> None:
        claim_after = self._options.claim_after
        period = min(_REFRESH_EVERY, claim_after / 3)
        now = anyio.current_time()
        next_claim = now + claim_after / 2
        next_keepalive = now + claim_after / 3
        next_refresh = now + _REFRESH_EVERY
        while True:
            await anyio.sleep(period)
            try:
                now = anyio.current_time()
                if now >= next_keepalive:
                    next_keepalive = now + claim_after / 3
                    if self._held:
                        await self._keep_alive()
                if now >= next_claim and self._consuming:
                    next_claim = now + claim_after / 2
                    await self._claim()
                if now >= next_refresh:
                    next_refresh = now + _REFRESH_EVERY
                    await self._refresh(trim=True)
            except self._errors_caught as exc:
                self._failed(exc, "housekeeping")
            except self._no_group:
                continue  # the reader recreates it
            except Exception:
                logger.exception("%r: housekeeping failed", self)

    async def _keep_alive(self) -> None:
        """Reset the idle time of the events this process holds, so that no other
        process takes them over while they run."""
        assert self._client is not None
        await self._client.xclaim(
            self._keys.stream, self._group, self._consumer, 0, list(self._held), justid=True
        )

    async def _claim(self) -> None:
        """Take over the group's events unacknowledged for *claim_after*."""
        assert self._client is not None
        start: bytes | str = "0-0"
        while len(self._ready) < _CLAIM_AHEAD:
            reply = await self._client.xautoclaim(
                self._keys.stream,
                self._group,
                self._consumer,
                self._claim_ms,
                start,
                count=self._options.batch_size,
            )
            start = reply[0]
            entries = [e for e in reply[1] if _text(e.identifier) not in self._held]
            deleted = reply[2] if len(reply) > 2 else ()
            if deleted:
                await self._client.hdel(self._keys.progress, list(deleted))
            if entries:
                logger.info("%r: took over %d event(s) not settled in time", self, len(entries))
                await self._take_over(entries, claimed=True)
            if _text(start) in ("0-0", "0"):
                return

    async def _refresh(self, *, trim: bool = False) -> None:
        """Measure the group's lag and pending count; trim what every group is done with."""
        assert self._client is not None
        keys = self._keys
        groups = [
            {_text(k): v for k, v in group.items()}
            for group in await self._client.xinfo_groups(keys.stream)
        ]
        for group in groups:
            if _text(group["name"]) == self._group:  # type: ignore[arg-type]
                self._read_up_to(_parse_id(group["last-delivered-id"]))  # type: ignore[arg-type]
                lag = group.get("lag")
                self._pending = int(group["pending"])  # type: ignore[arg-type]
                self._lag = None if lag is None else int(lag)
                self._others_lag = max(0, (self._lag or 0) - len(self._mine))
                self._waiting.wake(self._room())
        # Delayed events that any process published, due or not: moved when due.
        await self._promote()
        if trim and groups:
            await self._trim(groups)

    async def _trim(self, groups: list[dict[str, Any]]) -> None:
        assert self._client is not None
        keys = self._keys
        # Entries below MINID go: keep each group's first unread entry (just after its
        # last-delivered id) and its oldest pending one.
        bound = min(_parse_id(group["last-delivered-id"]) for group in groups)
        bound = (bound[0], bound[1] + 1)
        busy = [_text(group["name"]) for group in groups if group["pending"]]
        if busy:
            async with self._client.pipeline(transaction=False) as pipe:
                requests = [pipe.xpending(keys.stream, name) for name in busy]
            for request in requests:
                summary = await request
                oldest = summary.minimum_identifier  # type: ignore[union-attr]
                if oldest is not None:
                    bound = min(bound, _parse_id(oldest))
        retention = self._options.retention
        if retention is not None:
            bound = min(bound, (int((time.time() - retention) * 1000), 0))
        if bound > (0, 0):
            await self._client.xtrim(
                keys.stream,
                import_extra("coredis", extra="redis").PureToken.MINID,
                f"{bound[0]}-{bound[1]}",  # type: ignore[arg-type]
            )

    # -- failures -------------------------------------------------------------------

    def _failed(self, exc: BaseException, what: str) -> None:
        self._errors += 1
        error = f"{what}: {type(exc).__name__}: {exc}"
        if self._last_error is None:
            # The text only: a log record that kept the exception would keep its frames.
            logger.warning(
                "%s: the Redis server at %s does not answer (%s); retrying",
                repr(self),
                self._options.url,
                error,
            )
        self._last_error = error

    def _succeeded(self) -> None:
        if self._last_error is not None:
            logger.info("%r: the Redis server at %s answers again", self, self._options.url)
            self._last_error = None
        self._retry = 0

    async def _backoff(self) -> None:
        await anyio.sleep(_RETRY_DELAYS[min(self._retry, len(_RETRY_DELAYS) - 1)])
        self._retry += 1

    # -- statistics -----------------------------------------------------------------

    def statistics(self) -> QueueStatistics:
        """The queue's counters; ``lag`` and ``pending`` are the group's, measured about
        once a second; ``depth`` is this process's (see the class)."""
        return QueueStatistics(
            depth=self._unflushed + len(self._mine) + len(self._ready) + self._unrecovered,
            capacity=self._capacity,
            put_count=self._put_count,
            get_count=self._get_count,
            waiting_publishers=len(self._putters),
            errors=self._errors,
            last_error=self._last_error,
            lag=self._lag,
            pending=self._pending,
            claimed=self._claimed,
            delayed=self._delayed,
            deduplicated=self._duplicates,
        )
