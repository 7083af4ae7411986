"""The queue's asyncio world: the nats-py connection and everything done with it.

An :class:`Engine` lives on an asyncio loop (the app's on asyncio, the island's on trio;
see :mod:`._island`) and is reached from the queue through coarse calls, one per batch:
:meth:`Engine.publish` (many publishes awaiting their PubAcks together),
:meth:`Engine.take` (the read-ahead), :meth:`Engine.settle` (acks, progress, dead
letters). Its background tasks, on its loop: the fetcher (pull requests), the processor
(decoding what arrives), the keepalive (``+WPI`` for deliveries still open), the stats
refresh (consumer info every second), the sweeper (progress records left behind acked
events, every 10 s), and the flusher of ``put_nowait()`` events.

Wire layout (stream ``S``, group ``G``):

* events: stream ``S``, subject ``S.events``; headers ``Nats-Msg-Id`` (dedupe),
  ``Reactor-Only`` (a JSON list of consumers) and ``Reactor-Group`` (a redelivery or a
  replay meant for one group only);
* the group: durable pull consumer ``G`` on ``S``, explicit acks, ``ack_wait`` =
  claim_after, no ``max_deliver`` (the dispatcher dead-letters past max_redeliveries);
* progress: KV bucket ``S_progress``, key ``G.<stream sequence>`` = a JSON list of the
  consumers that settled the event; key ``G.consumers`` = the app's consumer names;
* dead letters: stream ``S_dead``, subject ``S.dead.G``, one JSON message per letter;
* delayed events: stream ``S_delayed`` (work-queue retention), subject ``S.delayed``,
  header ``Reactor-Deliver-At`` (the due time, POSIX seconds); every process's mover
  reads them through the one durable consumer ``mover`` of that stream and publishes
  each into ``S.events`` when due (``Nats-Msg-Id`` ``S_delayed.<sequence>``), then acks it.

State belongs to the engine's loop; the queue reads the plain counters of
:meth:`Engine.counts` from its own thread (each read is whole under the GIL).
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import contextlib
import functools
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from types import ModuleType
from typing import Any, Final

from reactor import Event, EventFormatError, PayloadTooLargeError, QueueUnavailableError
from reactor.abc import Received

from ._options import Options

__all__ = ["DELIVER_AT", "GROUP", "ONLY", "Engine", "Outgoing", "StoredMessage"]

logger = logging.getLogger("reactor.queues.nats")

#: Header: the JSON list of the consumers an event is for (a redelivery, a replay).
ONLY: Final = "Reactor-Only"
#: Header: the group an event is for (the others skip it).
GROUP: Final = "Reactor-Group"
#: Header: the due time of a delayed event (POSIX seconds, on the app's clock).
DELIVER_AT: Final = "Reactor-Deliver-At"
#: The durable consumer of the delayed events' stream, shared by every process.
MOVER: Final = "mover"
#: Delayed messages the mover fetches at once (due ones among them move in due order).
MOVE_BATCH: Final = 256
#: The longest a mover hands a delayed message back for (real seconds, NAK delay) when
#: the app runs on the system clock; on any other clock (virtual time, whose seconds
#: are not the server's), the mover looks again this often.
NAK_CAP_SYSTEM: Final = 300.0
NAK_CAP_OTHER: Final = 0.05
#: Seconds a mover gathers due events before moving them (so that events falling due
#: together move in order), and the most it gathers.
MOVE_GATHER: Final = 0.1
MOVE_LIMIT: Final = 1_024
#: Seconds a mover waits before handing back again delayed events it failed to move.
MOVE_RETRY: Final = 1.0
#: Seconds a pull request waits on the server for messages before it expires.
PULL_EXPIRES: Final = 0.5
#: Seconds between two refreshes of the group's lag and pending counts.
STATS_PERIOD: Final = 1.0
#: Seconds between two sweeps of the group's progress records left behind acked events.
SWEEP_PERIOD: Final = 10.0
#: Progress records deleted at most per sweep (the rest go with the next ones), and at
#: most at once.
SWEEP_LIMIT: Final = 1_000
SWEEP_CHUNK: Final = 100
#: Seconds take() waits at most for this queue's own fresh events to arrive, so that a
#: batch holds what was published before it was asked for.
TOP_UP: Final = 0.05
#: Seconds settle() waits for the server to confirm it has the acks (PING/PONG).
ACK_TIMEOUT: Final = 2.0
#: Pauses after a failure of the fetcher or the put_nowait() flusher (doubling).
RETRY_DELAY: Final = (0.05, 2.0)
#: The keepalive tells the server about a message held once claim_after / this passed.
KEEPALIVE_SHARE: Final = 4
#: Seconds stop() waits for the engine's background tasks to end once cancelled.
TASKS_TIMEOUT: Final = 5.0
#: Seconds stop() gives closing the connection (the socket's last writes).
CLOSE_TIMEOUT: Final = 5.0

#: The key prefix, in the group's part of the bucket, of timers' last fire times.
FIRED: Final = "fired."
#: One message to publish: subject, body, headers, and whether it is an event of the
#: stream that this queue counts as its own until its group has read it.
Outgoing = tuple[str, bytes, dict[str, str] | None, bool]
#: A stored message read back: stream sequence, body, headers, time (POSIX seconds).
StoredMessage = tuple[int, bytes, dict[str, str], float]


class _PubBatch:
    """Publishes awaiting their PubAcks together."""

    __slots__ = ("done", "left", "results")

    def __init__(self, count: int) -> None:
        self.results: list[int | BaseException | None] = [None] * count
        self.left = count
        self.done = asyncio.Event()

    def resolve(self, index: int, result: int | BaseException) -> None:
        if self.results[index] is None:
            self.results[index] = result
            self.left -= 1
            if not self.left:
                self.done.set()


async def _wait(event: asyncio.Event, seconds: float) -> bool:
    """Wait up to *seconds* for *event*; return whether it is set.

    Not ``asyncio.wait_for()``: before Python 3.12 it swallows a cancellation that comes
    as the wait ends, and a task cancelled then would go on for good.
    """
    if event.is_set():
        return True
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return False
    return True


def _unavailable(what: str, exc: BaseException) -> QueueUnavailableError:
    error = QueueUnavailableError(f"{what}: the NATS server cannot be reached ({exc!r})")
    error.__cause__ = exc
    return error


class Engine:
    """The nats-py side of a queue (see the module); built and used on one asyncio loop."""

    def __init__(self, nats: ModuleType, options: Options, server: str) -> None:
        self._nats = nats
        self.options = options
        self._server = server
        stream, group = options.stream, options.group
        self.subject = f"{stream}.events"
        self.dead_stream = f"{stream}_dead"
        self.dead_subject = f"{stream}.dead.{group}"
        self.bucket = f"{stream}_progress"
        self.kv_stream = f"KV_{self.bucket}"
        self.kv_prefix = f"$KV.{self.bucket}.{group}."
        self.delayed_stream = f"{stream}_delayed"
        self.delayed_subject = f"{stream}.delayed"
        #: The app's clock, in POSIX seconds, and the longest NAK delay of the mover.
        self.now: Callable[[], float] = time.time
        self.nak_cap = NAK_CAP_SYSTEM
        # Delayed events in the server (as last measured, with this queue's publications
        # stored since and its moves done since), and the last sequence measured.
        self.delayed = 0
        self._delayed_seq = 0
        self._delayed_lock = asyncio.Lock()  # a measurement does not cross a move
        self._mover_sub: Any = None
        self._mover_task: asyncio.Task[None] | None = None
        self._next = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{group}"
        self.read_ahead = 2 * options.batch_size
        self.nc: Any = None
        self._pull_sub: Any = None
        self._pull_inbox = ""
        self._stopping = False
        # Whether this process takes the group's events (get_batch() was called, or
        # the app opened the queue).
        self.fetching = False
        self.js: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        # Fetched and decoded, not taken yet; and every fetched message not acked yet.
        self.buffer: deque[Received] = deque()
        self.unacked: dict[int, list[Any]] = {}  # seq -> [reply subject, last touched]
        self._progress: dict[int, set[str]] = {}  # seq -> consumers that settled it
        self._arrived: list[Any] = []
        self._arrived_at = 0.0  # when the oldest message of _arrived came (monotonic)
        self._arrived_event = asyncio.Event()
        self._buffer_event = asyncio.Event()
        self._room_event = asyncio.Event()
        self._request_left = 0
        self._request_done = asyncio.Event()  # set while no pull request is open
        self._starting: asyncio.Task[None] | None = None  # the first fetch (see take())
        self._request_done.set()
        # This queue's publications that its group has not read yet (their sequences,
        # sorted), and the highest stream sequence the group is known to have read.
        self.own: list[int] = []
        self.delivered = 0
        # The stream's last sequence when lag was measured: lag counts the group's unread
        # events up to it, and this queue's publications above it are not in lag yet.
        self.measured = 0
        # put_nowait(): appended from the queue's thread, sent by the flusher.
        self.nowait: deque[Outgoing] = deque()
        self.nowait_sending = 0
        self._flushing = False
        self._pub_prefix = ""
        # Publishes awaiting their PubAck, by reply token, with what to send again.
        self._pub_waiting: dict[str, tuple[_PubBatch, int, Outgoing]] = {}
        self._pub_counter = 0
        #: Called on the engine's loop after each refresh of the group's numbers (the
        #: queue wakes publishers waiting for room: the backlog may have gone down).
        self.on_refresh: Callable[[], object] | None = None
        # Counters read by the queue's statistics().
        self.lag: int | None = None
        self.pending: int | None = None
        self.ack_floor = 0  # every event of the group up to this sequence is acknowledged
        self.swept = 0  # progress records deleted by the sweeper
        self.claimed = 0
        self.duplicates = 0
        #: The stream must keep the dedupe window of ``options`` (an app's ``dedupe``).
        self.require_window = False
        self.errors = 0
        self.last_error: str | None = None

    # -- counters read from the queue's thread ------------------------------------------

    def depth(self) -> int:
        """Events of this process not handed out yet: put_nowait() ones not stored yet,
        its publications its group has not read, and the read-ahead."""
        return len(self.nowait) + self.nowait_sending + len(self.own) + len(self.buffer)

    def published_since(self) -> int:
        """This queue's publications stored after lag was measured (so not in it)."""
        own = self.own
        return len(own) - bisect.bisect_right(own, self.measured)

    def backlog(self) -> int:
        """The group's backlog as far as this process knows (for backpressure): its lag
        as last measured plus this queue's publications stored since, counted by their
        stream sequences, not by the time their PubAck came (a PubAck may arrive after
        the measurement that counted its event)."""
        return max(self.depth(), (self.lag or 0) + self.published_since()) + self.delayed

    # -- lifecycle -------------------------------------------------------------------

    async def start(self, consumers: Sequence[str], fetch: bool) -> None:
        """Connect, create what is missing (stream, group, bucket, dead letters), and
        start the background tasks; with *fetch*, take what the group has ready into
        the read-ahead and keep fetching (else from the first :meth:`take` on).

        :raises ~reactor.QueueUnavailableError: the server cannot be reached
        """
        nats = self._nats
        self._loop = asyncio.get_running_loop()
        options = self.options
        try:
            # nats-py retries a first connection as long as it retries a lost one (for
            # ever): a server that never answered is an error after publish_timeout.
            async with asyncio.timeout(options.publish_timeout):
                self.nc = await nats.connect(
                    servers=[self._server],
                    name=f"reactor {options.group}/{options.consumer}",
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.5,
                    connect_timeout=min(5.0, options.publish_timeout),
                    disconnected_cb=self._disconnected,
                    reconnected_cb=self._reconnected,
                    error_cb=self._error,
                )
        except Exception as exc:
            raise _unavailable(f"cannot connect to {self._server}", exc) from exc
        try:
            self.js = self.nc.jetstream(timeout=options.publish_timeout)
            await self._declare(consumers)
            inbox = self.nc.new_inbox()
            self._pub_prefix = f"{inbox}.p."
            await self.nc.subscribe(
                f"{inbox}.p.*", cb=self._on_puback, pending_msgs_limit=-1, pending_bytes_limit=-1
            )
            self._pull_inbox = f"{inbox}.f"
            self._pull_sub = await self.nc.subscribe(
                self._pull_inbox, cb=self._on_pulled, pending_msgs_limit=-1, pending_bytes_limit=-1
            )
            if consumers:
                await self.note_consumers(consumers)
            self._mover_sub = await self.js.pull_subscribe_bind(
                MOVER, self.delayed_stream, pending_msgs_limit=-1, pending_bytes_limit=-1
            )
        except BaseException:
            await self._close_connection()
            raise
        loop = self._loop
        self._mover_task = loop.create_task(self._mover())
        self._tasks = [
            loop.create_task(self._keepalive()),
            loop.create_task(self._refresh()),
            self._mover_task,
        ]
        await self._refresh_once()
        self._tasks.append(loop.create_task(self._sweeper()))
        if fetch:
            await self._start_fetching()

    async def _start_fetching(self) -> None:
        """Start fetching (once), and wait until what the group has ready now is in the
        read-ahead. A caller cancelled meanwhile does not stop it: events half taken in
        would stay held (kept alive, never handed out) until the queue closes."""
        if self._starting is None:
            if self._stopping:
                return
            self.fetching = True
            self._starting = asyncio.get_running_loop().create_task(self._first_fetch())
            self._tasks.append(self._starting)
        if not self._starting.done():
            # Not shield(): when stop() cancels the first fetch, this caller goes on.
            await asyncio.wait([self._starting])

    async def _first_fetch(self) -> None:
        # What the group has ready now (events handed back by a process that stopped)
        # is in the read-ahead, and in depth, when open() returns.
        self._request_left = self.read_ahead
        self._request_done.clear()
        try:
            await self.nc.publish(
                self._next, b'{"batch":%d,"no_wait":true}' % self.read_ahead, reply=self._pull_inbox
            )
            await _wait(self._request_done, PULL_EXPIRES + 1.0)
            arrived, self._arrived = self._arrived, []
            await self._process(arrived, self._arrived_at)
        except Exception as exc:  # the fetcher asks again
            logger.debug("the first fetch failed: %r", exc)
        finally:
            if not self._stopping:
                loop = asyncio.get_running_loop()
                self._tasks += [
                    loop.create_task(self._fetcher()),
                    loop.create_task(self._processor()),
                ]

    async def _declare(self, consumers: Sequence[str]) -> None:
        api = self._nats.js.api
        errors = self._nats.js.errors
        js, options = self.js, self.options
        retention = options.retention
        try:
            info = await js.stream_info(options.stream)
        except errors.NotFoundError:
            await self._create(
                js.stream_info,
                options.stream,
                js.add_stream,
                api.StreamConfig(
                    name=options.stream,
                    subjects=[self.subject],
                    retention=api.RetentionPolicy.INTEREST
                    if retention is None
                    else api.RetentionPolicy.LIMITS,
                    max_age=retention,
                    storage=api.StorageType.FILE,
                    duplicate_window=max(options.dedupe_window or 0.0, 0.1),  # the least it takes
                    max_msg_size=options.max_event_size + 4096,
                ),
            )
        else:
            window = options.dedupe_window or 0.0
            kept = info.config.duplicate_window or 0.0
            if self.require_window and kept < window:
                raise QueueUnavailableError(
                    f"the stream {options.stream} drops duplicates within {kept:g} s "
                    f"(duplicate_window), shorter than the app's dedupe window of "
                    f"{window:g} s; widen it (nats stream edit {options.stream} "
                    f"--dupe-window {_seconds(window)}) or shorten the app's dedupe"
                )
            wanted = "interest" if retention is None else "limits"
            if info.config.retention != wanted:
                logger.warning(
                    "the stream %s exists with %s retention; this queue asked for %s "
                    "(retention=%r) and uses the stream as it is",
                    options.stream,
                    info.config.retention.value,
                    wanted,
                    retention,
                )
        for name, subjects in ((self.dead_stream, [f"{options.stream}.dead.>"]),):
            try:
                await js.stream_info(name)
            except errors.NotFoundError:
                await self._create(
                    js.stream_info,
                    name,
                    js.add_stream,
                    api.StreamConfig(name=name, subjects=subjects, storage=api.StorageType.FILE),
                )
        try:
            await js.stream_info(self.delayed_stream)
        except errors.NotFoundError:
            await self._create(
                js.stream_info,
                self.delayed_stream,
                js.add_stream,
                api.StreamConfig(
                    name=self.delayed_stream,
                    subjects=[self.delayed_subject],
                    # A delayed event is deleted once a mover acked it (it moved).
                    retention=api.RetentionPolicy.WORK_QUEUE,
                    storage=api.StorageType.FILE,
                    duplicate_window=max(options.dedupe_window or 0.0, 0.1),
                    max_msg_size=options.max_event_size + 4096,
                ),
            )
        try:
            await js.consumer_info(self.delayed_stream, MOVER)
        except errors.NotFoundError:
            await self._create(
                functools.partial(js.consumer_info, self.delayed_stream),
                MOVER,
                functools.partial(js.add_consumer, self.delayed_stream),
                api.ConsumerConfig(
                    durable_name=MOVER,
                    deliver_policy=api.DeliverPolicy.ALL,
                    ack_policy=api.AckPolicy.EXPLICIT,
                    ack_wait=options.claim_after,
                    max_deliver=-1,
                    # Every delayed event is held by the mover, handed back until due:
                    # no bound on them (they are not the groups' events).
                    max_ack_pending=-1,
                ),
            )
        try:
            await js.stream_info(self.kv_stream)
        except errors.NotFoundError:
            await self._create(
                js.stream_info,
                self.kv_stream,
                functools.partial(js.create_key_value, bucket=self.bucket, history=1),
            )
        config = api.ConsumerConfig(
            durable_name=options.group,
            # Like Redis's XGROUP CREATE ... 0: a group's first process gets the events
            # the stream still keeps (a worker started after its producer misses nothing).
            deliver_policy=api.DeliverPolicy.ALL,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=options.claim_after,
            max_deliver=-1,
            filter_subject=self.subject,
            max_ack_pending=-1,
        )
        try:
            existing = await js.consumer_info(options.stream, options.group)
        except errors.NotFoundError:
            await self._create(
                functools.partial(js.consumer_info, options.stream),
                options.group,
                functools.partial(js.add_consumer, options.stream),
                config,
            )
        else:
            if existing.config.ack_wait != options.claim_after:
                logger.warning(
                    "the group %s exists with ack_wait %s s, not claim_after=%s s; it is used "
                    "as it is (the processes of a group must agree on claim_after)",
                    options.group,
                    existing.config.ack_wait,
                    options.claim_after,
                )

    async def _create(self, check: Any, name: str, create: Any, *args: Any) -> None:
        """``create(*args)``, unless another process created *name* meanwhile (the
        processes of an app often start together)."""
        errors = self._nats.js.errors
        try:
            await create(*args)
        except errors.APIError as exc:
            try:
                await check(name)
            except errors.NotFoundError:
                raise exc from None

    async def stop(self) -> None:
        """Stop the tasks, send what put_nowait() accepted, hand back (NAK) every
        fetched message not acknowledged, and close the connection.

        Bounded: about *publish_timeout* plus a few seconds at most, whatever the
        server does (events not handed back are redelivered after claim_after).
        """
        self._stopping = True
        mover = self._mover_task
        if mover is not None and not mover.done():
            # Let its last pull request end (bounded): what it fetched is moved or
            # handed back, not left to ack_wait.
            await asyncio.wait([mover], timeout=PULL_EXPIRES + 2.0)
        await self._end_tasks()
        nc = self.nc
        if nc is None:
            return
        try:
            async with asyncio.timeout(self.options.publish_timeout + CLOSE_TIMEOUT):
                await self._hand_back(nc)
        except Exception as exc:
            logger.warning("could not hand back unsettled events at close: %r", exc)
        finally:
            self.unacked.clear()
            self.buffer.clear()
            self.own.clear()
            await self._close_connection()

    async def _end_tasks(self) -> None:
        """Cancel the background tasks and wait for them to end (a bounded wait: a
        cancellation that nats-py swallows is sent again; each loop also ends on
        ``_stopping``)."""
        tasks, self._tasks = self._tasks, []
        pending = {task for task in tasks if not task.done()}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TASKS_TIMEOUT
        while pending:
            for task in pending:
                task.cancel()
            left = deadline - loop.time()
            if left <= 0:
                logger.warning(
                    "%d background task(s) of the queue did not end when cancelled: %r",
                    len(pending),
                    pending,
                )
                return
            _, pending = await asyncio.wait(pending, timeout=min(left, 0.1))
        for task in tasks:
            if not task.cancelled() and task.exception() is not None:
                logger.debug("a background task of the queue failed: %r", task.exception())

    async def _hand_back(self, nc: Any) -> None:
        timeout = min(self.options.publish_timeout, ACK_TIMEOUT)
        if self._pull_sub is not None and nc.is_connected:
            # The pull request still open on the server would take what this process
            # hands back, and the server would hand it back again without counting
            # the delivery: let it end first (it expires within PULL_EXPIRES).
            await _wait(self._request_done, PULL_EXPIRES + 0.5)
            await self._pull_sub.unsubscribe()
            await nc.flush(timeout=timeout)
        for msg in self._arrived:
            self.unacked.setdefault(-1 - len(self.unacked), [msg.reply, 0.0])
        self._arrived = []
        if self.nowait and not nc.is_closed:
            items = list(self.nowait)
            self.nowait.clear()
            results = await self.publish(items)
            lost = sum(isinstance(result, BaseException) for result in results)
            if lost:
                logger.error(
                    "%d event(s) accepted by publish_nowait() could not be stored "
                    "before the queue closed; they are lost",
                    lost,
                )
        if self.unacked and nc.is_connected:
            # Redelivered right away to the group's other processes (or the next
            # start), with their delivery count raised.
            for reply, _ in self.unacked.values():
                await nc.publish(reply, b"-NAK")
            await nc.flush(timeout=timeout)

    async def _close_connection(self) -> None:
        self._stopping = True
        nc, self.nc = self.nc, None
        if nc is not None and not nc.is_closed:
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await nc.close()
            except Exception as exc:  # pragma: no cover - a best effort
                logger.debug("closing the NATS connection: %r", exc)

    # -- connection events -------------------------------------------------------------

    async def _disconnected(self) -> None:
        if self._stopping:
            return
        if self.last_error is None:
            logger.warning(
                "lost the connection to the NATS server %s; reconnecting (publishes wait "
                "up to %s s)",
                self._server,
                self.options.publish_timeout,
            )
        self.errors += 1
        self.last_error = f"disconnected from the NATS server {self._server}"

    async def _reconnected(self) -> None:
        logger.info("reconnected to the NATS server %s", self._server)
        self.last_error = None
        self._request_done.set()  # the pending pull request died with the connection
        # Publishes written as the connection broke may never have reached the server:
        # send again those still awaiting their PubAck (the server drops a second copy
        # within the dedupe window).
        try:
            for token, (_, _, (subject, body, headers, _)) in list(self._pub_waiting.items()):
                await self.nc.publish(
                    subject, body, reply=self._pub_prefix + token, headers=headers
                )
        except Exception as exc:  # the connection broke again: its own reconnection follows
            logger.debug("sending publishes again after reconnecting: %r", exc)

    async def _error(self, exc: Exception) -> None:
        logger.debug("NATS client error: %r", exc)

    # -- publishing --------------------------------------------------------------------

    async def publish(self, items: Sequence[Outgoing]) -> list[int | BaseException]:
        """Publish *items* together; return each one's stream sequence, or its error.

        Every publish is written at once and their PubAcks are awaited together, for
        ``publish_timeout`` at most (through a reconnection, nats-py keeps what is
        written meanwhile and sends it when the connection is back).
        """
        batch = _PubBatch(len(items))
        nc, prefix, waiting = self.nc, self._pub_prefix, self._pub_waiting
        tokens: list[str] = []
        for index, (subject, body, headers, _) in enumerate(items):
            token = str(self._pub_counter)
            self._pub_counter += 1
            waiting[token] = (batch, index, items[index])
            tokens.append(token)
            try:
                await nc.publish(subject, body, reply=prefix + token, headers=headers)
            except self._nats.errors.MaxPayloadError:
                waiting.pop(token, None)  # over the server's max_payload
                batch.resolve(index, PayloadTooLargeError(len(body), nc.max_payload))
            except Exception as exc:
                waiting.pop(token, None)
                batch.resolve(index, _unavailable("cannot publish", exc))
        if batch.left:
            try:
                stored = await _wait(batch.done, self.options.publish_timeout)
            except BaseException:  # cancelled: no PubAck is awaited any more
                for token in tokens:
                    waiting.pop(token, None)
                raise
            if not stored:
                error = QueueUnavailableError(
                    f"the NATS server {self._server} did not acknowledge the publish within "
                    f"{self.options.publish_timeout} s (publish_timeout); it may still store "
                    "it: publishing again is safe within the dedupe window"
                )
                for index, token in enumerate(tokens):
                    waiting.pop(token, None)
                    batch.resolve(index, error)
                self.errors += 1
        results: list[int | BaseException] = []
        own, delivered = self.own, self.delivered
        for (subject, _, _, counted), result in zip(items, batch.results, strict=True):
            assert result is not None
            results.append(result)
            if subject == self.delayed_subject:
                if isinstance(result, int) and result > self._delayed_seq:
                    self.delayed += 1  # stored after the last measurement: not in it
                continue
            if counted and isinstance(result, int) and result > delivered:
                if not own or result > own[-1]:
                    own.append(result)
                else:
                    bisect.insort(own, result)
        return results

    async def _on_puback(self, msg: Any) -> None:
        entry = self._pub_waiting.pop(msg.subject[len(self._pub_prefix) :], None)
        if entry is None:
            return  # given up already
        batch, index, _ = entry
        result: int | BaseException
        headers = msg.headers
        if headers and headers.get("Status") == "503":
            result = QueueUnavailableError(
                f"no JetStream stream takes this subject on {self._server} (was it deleted?)"
            )
        else:
            try:
                reply = json.loads(msg.data)
                error = reply.get("error")
                if error:
                    result = QueueUnavailableError(
                        f"the NATS server refused the publish: {error.get('description', error)}"
                    )
                else:
                    result = int(reply["seq"])
                    if reply.get("duplicate"):
                        self.duplicates += 1
                        result = -result  # a duplicate: stored before, not again
                        logger.debug("a duplicate publish was dropped (seq %d)", -result)
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                result = QueueUnavailableError(f"an unexpected PubAck: {msg.data!r} ({exc})")
        batch.resolve(index, result)

    def kick(self) -> None:
        """Send the events put_nowait() accepted (called on the engine's loop)."""
        if not self._flushing and self.nowait and self._loop is not None and not self._stopping:
            self._flushing = True
            self._tasks.append(self._loop.create_task(self._flush_nowait()))

    async def _flush_nowait(self) -> None:
        delay = RETRY_DELAY[0]
        try:
            while self.nowait:
                items: list[Outgoing] = []
                while self.nowait:
                    items.append(self.nowait.popleft())
                self.nowait_sending += len(items)
                try:
                    results = await self.publish(items)
                except BaseException:  # stopped: stop() sends them (a copy is deduped)
                    self.nowait.extendleft(reversed(items))
                    raise
                finally:
                    self.nowait_sending -= len(items)
                failed = [
                    item
                    for item, result in zip(items, results, strict=True)
                    if isinstance(result, BaseException)
                ]
                if failed:
                    logger.debug("%d publish_nowait() event(s) wait to be stored", len(failed))
                    self.nowait.extendleft(reversed(failed))
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RETRY_DELAY[1])
        finally:
            self._flushing = False
            task = asyncio.current_task()
            if task in self._tasks:
                self._tasks.remove(task)

    # -- fetching ----------------------------------------------------------------------

    async def _fetcher(self) -> None:
        """Keep one pull request open while the read-ahead has room."""
        nc, batch_size = self.nc, self.options.batch_size
        expires = int(PULL_EXPIRES * 1e9)
        delay = RETRY_DELAY[0]
        while not self._stopping:
            room = self.read_ahead - len(self.buffer) - len(self._arrived)
            if room < max(1, batch_size // 2) and self.buffer:
                self._room_event.clear()
                await self._room_event.wait()
                continue
            count = min(batch_size, max(room, 1))
            self._request_left = count
            self._request_done.clear()
            try:
                await nc.publish(
                    self._next,
                    b'{"batch":%d,"expires":%d}' % (count, expires),
                    reply=self._pull_inbox,
                )
            except Exception as exc:
                logger.debug("cannot ask for messages: %r", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_DELAY[1])
                continue
            delay = RETRY_DELAY[0]
            # Not answered in time: lost with a reconnection, ask again.
            await _wait(self._request_done, PULL_EXPIRES + 1.0)

    async def _on_pulled(self, msg: Any) -> None:
        headers = msg.headers
        if headers is not None and "Status" in headers and not msg.reply:
            status = headers["Status"]
            if status in ("404", "408", "409"):
                if status == "409":
                    logger.debug("pull request ended: %s", headers.get("Description"))
                self._request_done.set()
            return
        if not self._arrived:
            self._arrived_at = time.monotonic()
        self._arrived.append(msg)
        self._arrived_event.set()
        self._request_left -= 1
        if self._request_left <= 0:
            self._request_done.set()

    async def _processor(self) -> None:
        while not self._stopping:
            await self._arrived_event.wait()
            self._arrived_event.clear()
            arrived, self._arrived = self._arrived, []
            if arrived:
                try:
                    await self._process(arrived, self._arrived_at)
                except Exception:  # pragma: no cover - a bug; the messages come back
                    logger.exception("could not process fetched messages")

    async def _process(self, arrived: list[Any], now: float) -> None:
        """Take in messages that arrived at *now* (monotonic) or after: the keepalive
        counts from their arrival, not from here."""
        group = self.options.group
        unacked = self.unacked
        items: list[Received] = []
        redelivered: list[Received] = []
        damaged: list[tuple[int, bytes]] = []
        foreign: list[str] = []
        highest = self.delivered
        lag = None
        measured = 0
        for msg in arrived:
            reply = msg.reply
            tokens = reply.split(".")
            if len(tokens) == 9:
                count, seq, pending = int(tokens[4]), int(tokens[5]), int(tokens[8])
            else:  # the newer form, with a domain and an account hash
                count, seq, pending = int(tokens[6]), int(tokens[7]), int(tokens[10])
            if count == 1:
                # A first delivery is at the group's read position: *pending* events of
                # the stream follow it, so they are those up to seq + pending.
                lag, measured = pending, seq + pending
            if seq > highest:
                highest = seq
            headers = msg.headers
            if headers is not None and headers.get(GROUP, group) != group:
                foreign.append(reply)
                continue
            if seq in unacked:
                # Delivered again while this process holds it (its claim ran out before
                # the keepalive, on a loaded machine): ack this delivery, and do not hand
                # the event out a second time, which would run its handlers twice at once.
                unacked[seq][0] = reply
                unacked[seq][1] = now
                continue
            unacked[seq] = [reply, now]
            try:
                event = Event.from_json(msg.data)
            except EventFormatError:
                damaged.append((seq, msg.data))
                continue
            only = None
            if headers is not None and ONLY in headers:
                only = frozenset(json.loads(headers[ONLY]))
            received = Received(event, seq, attempt=count, only=only)
            items.append(received)
            if count > 1:
                redelivered.append(received)
        if redelivered:
            self.claimed += len(redelivered)
            await self._completions(redelivered)
        if foreign:
            for reply in foreign:
                await self.nc.publish(reply, b"+ACK")
        if damaged:
            await self._damaged(damaged)
        self.buffer.extend(items)
        if lag is not None:
            self.lag, self.measured = lag, measured
        self._read_up_to(highest)
        if self.buffer:
            self._buffer_event.set()

    async def _completions(self, redelivered: list[Received]) -> None:
        """Read the consumers that settled redelivered events in an earlier attempt."""
        missing = self._nats.js.errors.NotFoundError

        async def read(received: Received) -> None:
            seq = received.token
            assert isinstance(seq, int)
            known = self._progress.get(seq)
            if known is None:
                try:
                    stored = await self.js.get_msg(
                        self.kv_stream, subject=f"{self.kv_prefix}{seq}", direct=False
                    )
                except missing:
                    return
                if not stored.data:
                    return
                known = self._progress[seq] = set(json.loads(stored.data))
            received.completed = frozenset(known)

        results = await asyncio.gather(*(read(r) for r in redelivered), return_exceptions=True)
        failures = [result for result in results if isinstance(result, BaseException)]
        if failures:  # every consumer runs again: at least once still holds
            logger.warning("could not read the progress of redelivered events: %r", failures[0])

    async def _damaged(self, damaged: list[tuple[int, bytes]]) -> None:
        """Dead-letter events that cannot be decoded (no consumer), then ack them."""
        now = datetime.now(UTC).isoformat()
        letters: list[Outgoing] = []
        for seq, body in damaged:
            logger.error("the event at sequence %d cannot be decoded; dead-lettered", seq)
            envelope = {
                "consumer": None,
                "error_type": "reactor.EventFormatError",
                "error": "the stored event cannot be decoded",
                "attempts": 0,
                "first_failed_at": now,
                "last_failed_at": now,
                "body": body.decode("latin-1"),
                "binary": True,
            }
            letters.append((self.dead_subject, json.dumps(envelope).encode(), None, False))
        results = await self.publish(letters)
        for (seq, _), result in zip(damaged, results, strict=True):
            if isinstance(result, BaseException):
                continue  # stays unacked: redelivered after claim_after, tried again
            entry = self.unacked.pop(seq, None)
            if entry is not None:
                await self.nc.publish(entry[0], b"+ACK")

    async def take(self, limit: int, wait: float) -> list[Received]:
        """Return up to *limit* fetched events, waiting up to *wait* seconds for one
        (``[]`` when none came)."""
        if not self.fetching:
            await self._start_fetching()
        buffer = self.buffer
        if not buffer:
            self._buffer_event.clear()
            if not await _wait(self._buffer_event, wait):
                return []
        if len(buffer) < limit and self.own:
            # This queue's own publications are on their way: a batch holds what was
            # published before it was asked for (briefly: another process of the group
            # may have read them, which this one learns later).
            target = self.own[-1]
            loop = asyncio.get_running_loop()
            deadline = loop.time() + TOP_UP
            while (
                len(buffer) < limit
                and self.delivered < target
                and (left := deadline - loop.time()) > 0
            ):
                self._buffer_event.clear()
                if not await _wait(self._buffer_event, left):
                    break
        count = min(limit, len(buffer))
        taken = [buffer.popleft() for _ in range(count)]
        self._room_event.set()
        return taken

    def untake(self, taken: list[Received]) -> None:
        """Put back a batch that :meth:`take` returned to a caller that was cancelled."""
        self.buffer.extendleft(reversed(taken))
        if self.buffer:
            self._buffer_event.set()

    # -- settling ---------------------------------------------------------------------

    async def settle(
        self,
        acks: Sequence[int],
        progress: Sequence[tuple[int, str]],
        letters: Sequence[bytes],
    ) -> None:
        """Store dead letters and progress (awaiting their PubAcks), then send the acks
        and wait until the server has them (one PING/PONG); then delete the progress
        records of the acked events.

        :raises ~reactor.QueueUnavailableError: something could not be stored; nothing
            of it counts as stored (sending it again is harmless)
        """
        outgoing: list[Outgoing] = [(self.dead_subject, body, None, False) for body in letters]
        if progress:
            changed: dict[int, set[str]] = {}
            for seq, consumer in progress:
                consumers = self._progress.get(seq, set()) | changed.get(seq, set())
                consumers.add(consumer)
                changed[seq] = consumers
            outgoing += [
                (f"{self.kv_prefix}{seq}", json.dumps(sorted(names)).encode(), None, False)
                for seq, names in changed.items()
            ]
        if outgoing:
            for result in await self.publish(outgoing):
                if isinstance(result, BaseException):
                    raise result
            if progress:
                self._progress.update(changed)
        if not acks:
            return
        nc, unacked = self.nc, self.unacked
        try:
            # While the connection is down nats-py's flush() returns at once, without a
            # PONG: acks count as stored only when a live connection carried them.
            if not nc.is_connected:
                raise ConnectionError("not connected")
            for seq in acks:
                entry = unacked.get(seq)
                if entry is not None:
                    await nc.publish(entry[0], b"+ACK")
            # A PING lost with a broken connection is never answered: give up soon, the
            # app sends the settlement again.
            await nc.flush(timeout=min(self.options.publish_timeout, ACK_TIMEOUT))
            if not nc.is_connected:  # broken meanwhile: the acks may not have gone out
                raise ConnectionError("the connection broke")
        except Exception as exc:
            raise _unavailable("cannot acknowledge events", exc) from exc
        for seq in acks:
            unacked.pop(seq, None)
        recorded = [seq for seq in acks if seq in self._progress]
        if recorded:
            # After the ack (deleted first, a kill before the ack would lose which
            # consumers finished): a record left by a failure or a kill here is never
            # read again, and the group's next sweep deletes it (see _sweeper).
            for seq in recorded:
                del self._progress[seq]
            results = await asyncio.gather(
                *(
                    self.js.purge_stream(self.kv_stream, subject=f"{self.kv_prefix}{seq}")
                    for seq in recorded
                ),
                return_exceptions=True,
            )
            if any(isinstance(result, BaseException) for result in results):
                logger.debug("some progress records of acked events stay behind")

    # -- keepalive and statistics -------------------------------------------------------

    async def _keepalive(self) -> None:
        """Tell the server that fetched messages are still being worked on (``+WPI``)
        once claim_after/4 passed since it last heard of them (delivery or ``+WPI``), so
        that no other process takes them over.

        Each message is due at its own time and the task sleeps until the next one is
        due, so a message waits claim_after/4 plus the loop's lateness at most: the other
        3/4 of claim_after absorb a loaded machine (and, on trio, the island's thread).
        Messages due soon go with those due now, so that the sends come in bursts.
        """
        period = self.options.claim_after / KEEPALIVE_SHARE
        early = period / 4
        while not self._stopping:
            now = time.monotonic()
            due = now + period
            nc = self.nc
            try:
                if nc is None or not nc.is_connected:
                    due = now + early  # sent once the connection is back
                else:
                    for entry in list(self.unacked.values()):
                        touched = entry[1]
                        if now - touched >= period - early:
                            await nc.publish(entry[0], b"+WPI")
                            entry[1] = now
                        elif touched + period < due:
                            due = touched + period
                    # Fetched and not taken in yet (the processor is busy): kept too.
                    if self._arrived and now - self._arrived_at >= period - early:
                        for msg in list(self._arrived):
                            await nc.publish(msg.reply, b"+WPI")
                        self._arrived_at = now
            except Exception as exc:
                logger.debug("keepalive: %r", exc)
                due = now + early
            await asyncio.sleep(max(due - time.monotonic(), 0.0))

    async def _refresh(self) -> None:
        while not self._stopping:
            await asyncio.sleep(STATS_PERIOD)
            await self._refresh_once()

    async def _refresh_once(self) -> None:
        try:
            info = await self.js.consumer_info(self.options.stream, self.options.group)
        except Exception as exc:
            logger.debug("cannot read the group's info: %r", exc)
            return
        try:
            # After the group's info: its lag counts events up to this last sequence at
            # most (the events stored between the two count in neither until the next
            # refresh; counting them twice could hold publishers back for good).
            stream = await self.js.stream_info(self.options.stream)
        except Exception as exc:
            logger.debug("cannot read the stream's info: %r", exc)
            return
        self.lag, self.measured = info.num_pending, stream.state.last_seq
        self.pending = info.num_ack_pending
        self.ack_floor = max(self.ack_floor, info.ack_floor.stream_seq or 0)
        self._read_up_to(info.delivered.stream_seq or 0)
        await self._measure_delayed()
        if self.on_refresh is not None:
            self.on_refresh()

    async def _measure_delayed(self) -> None:
        """Read how many delayed events the server holds (between two moves)."""
        async with self._delayed_lock:
            try:
                info = await self.js.stream_info(self.delayed_stream)
            except Exception as exc:
                logger.debug("cannot read the delayed events' stream info: %r", exc)
                return
            self.delayed, self._delayed_seq = info.state.messages, info.state.last_seq

    # -- delayed events ------------------------------------------------------------------

    async def _mover(self) -> None:
        """Fetch delayed events; hand back those not due (at most ``nak_cap`` seconds),
        gather the due ones for MOVE_GATHER seconds (or MOVE_LIMIT of them), then move
        them into the stream in the order of their due times, then of publishing."""
        errors = self._nats.errors
        loop = asyncio.get_running_loop()
        delay = RETRY_DELAY[0]
        held: list[tuple[float, int, Any]] = []
        deadline = 0.0
        while not self._stopping:
            wait = PULL_EXPIRES if not held else max(deadline - loop.time(), 0.01)
            try:
                msgs = await self._mover_sub.fetch(MOVE_BATCH, timeout=wait)
            except errors.TimeoutError:
                msgs = []
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.debug("cannot fetch delayed events: %r", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_DELAY[1])
                msgs = []
            else:
                delay = RETRY_DELAY[0]
            try:
                due = await self._sort_out(msgs)
                if due and not held:
                    deadline = loop.time() + MOVE_GATHER
                held += due
                if held and (loop.time() >= deadline or len(held) >= MOVE_LIMIT):
                    moving, held = held, []
                    await self._move(moving)
            except Exception as exc:
                logger.debug("moving delayed events: %r", exc)
                for _, _, msg in held:
                    with contextlib.suppress(Exception):  # else ack_wait hands it back
                        await msg.nak(delay=MOVE_RETRY)
                held = []
        if held:
            await self._move(held)

    async def _sort_out(self, msgs: list[Any]) -> list[tuple[float, int, Any]]:
        """Hand back the messages of *msgs* not due yet; return the due ones."""
        now = self.now()
        due: list[tuple[float, int, Any]] = []
        for msg in msgs:
            try:
                at = float(msg.headers[DELIVER_AT])
            except (TypeError, KeyError, ValueError):
                at = 0.0  # not a delayed event of this queue: moved at once
            if at <= now:
                due.append((at, msg.metadata.sequence.stream, msg))
            else:
                await msg.nak(delay=max(min(at - now, self.nak_cap), 0.001))
        return due

    async def _move(self, due: list[tuple[float, int, Any]]) -> None:
        due.sort(key=lambda item: item[:2])
        items: list[Outgoing] = [
            (self.subject, msg.data, {"Nats-Msg-Id": f"{self.delayed_stream}.{seq}"}, False)
            for _, seq, msg in due
        ]
        async with self._delayed_lock:
            # Counted out before they are published: an event a handler sees is no
            # longer counted as delayed.
            self.delayed = max(0, self.delayed - len(due))
            results = await self.publish(items)
            moved = [
                msg
                for (_, _, msg), result in zip(due, results, strict=True)
                if not isinstance(result, BaseException)
            ]
            self.delayed += len(due) - len(moved)
            for (_, _, msg), result in zip(due, results, strict=True):
                if isinstance(result, BaseException):
                    await msg.nak(delay=MOVE_RETRY)
            timeout = min(self.options.publish_timeout, ACK_TIMEOUT)
            # A crash before the ack hands it to another mover, whose publish the
            # stream's duplicate window drops (same Nats-Msg-Id).
            await asyncio.gather(
                *(msg.ack_sync(timeout=timeout) for msg in moved), return_exceptions=True
            )

    def _read_up_to(self, delivered: int) -> None:
        """The group has read the stream up to *delivered*: forget this queue's
        publications up to it."""
        if delivered > self.delivered:
            self.delivered = delivered
            own = self.own
            del own[: bisect.bisect_right(own, delivered)]

    async def _sweeper(self) -> None:
        """Delete, every SWEEP_PERIOD, the group's progress records of acknowledged
        events: settle() deletes an event's record right after its ack, in another
        request, so a process that dies in between leaves it behind. Any process of the
        group sweeps them (the first sweep when the queue opens)."""
        while not self._stopping:
            try:
                await self.sweep()
            except Exception as exc:
                logger.debug("cannot sweep the group's progress records: %r", exc)
            await asyncio.sleep(SWEEP_PERIOD)

    async def sweep(self) -> int:
        """Delete up to SWEEP_LIMIT progress records of the group whose event is at or
        below the group's ack floor (every event up to it is acknowledged); return how
        many."""
        floor = self.ack_floor
        if not floor:
            return 0
        prefix = self.kv_prefix
        info = await self.js.stream_info(self.kv_stream, subjects_filter=f"{prefix}*")
        stale: list[str] = []
        for subject in info.state.subjects or {}:
            key = subject[len(prefix) :]
            # The key "consumers" holds the group's consumer names, not a progress record.
            if key.isdigit() and int(key) <= floor:
                stale.append(subject)
                if len(stale) >= SWEEP_LIMIT:
                    break
        deleted = 0
        for start in range(0, len(stale), SWEEP_CHUNK):
            results = await asyncio.gather(
                *(
                    self.js.purge_stream(self.kv_stream, subject=subject)
                    for subject in stale[start : start + SWEEP_CHUNK]
                ),
                return_exceptions=True,
            )
            deleted += sum(not isinstance(result, BaseException) for result in results)
        if deleted:
            self.swept += deleted
            logger.debug("deleted %d progress record(s) left behind acked events", deleted)
        return deleted

    # -- administration (dead letters, replay) ------------------------------------------

    async def note_consumers(self, names: Sequence[str]) -> None:
        """Add *names* to the consumer names recorded for the group."""
        known = set(await self.known_consumers())
        if set(names) <= known:
            return
        body = json.dumps(sorted(known | set(names))).encode()
        for result in await self.publish([(f"{self.kv_prefix}consumers", body, None, False)]):
            if isinstance(result, BaseException):
                raise result

    def fired_subject(self, timer: str) -> str:
        """The bucket's subject of *timer*'s last fire time (its name base64url-encoded:
        a key takes few characters)."""
        token = base64.urlsafe_b64encode(timer.encode()).decode().rstrip("=")
        return f"{self.kv_prefix}{FIRED}{token}"

    async def read_fire_times(self) -> dict[str, float]:
        """The timers' last fire times recorded for the group (POSIX seconds), by name."""
        prefix = f"{self.kv_prefix}{FIRED}"
        info = await self.js.stream_info(self.kv_stream, subjects_filter=f"{prefix}*")
        times: dict[str, float] = {}
        for subject in info.state.subjects or {}:
            token = subject[len(prefix) :]
            try:
                stored = await self.js.get_msg(self.kv_stream, subject=subject)
                name = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
                times[name] = float(stored.data)
            except self._nats.js.errors.NotFoundError:
                continue
            except (ValueError, TypeError):
                logger.warning("ignored a damaged timer fire time at %s", subject)
        return times

    async def known_consumers(self) -> list[str]:
        """The consumer names recorded for the group."""
        try:
            stored = await self.js.get_msg(self.kv_stream, subject=f"{self.kv_prefix}consumers")
        except self._nats.js.errors.NotFoundError:
            return []
        names: list[str] = json.loads(stored.data) if stored.data else []
        return names

    async def read_letters(self) -> list[StoredMessage]:
        """Every dead letter of the group, oldest first."""
        return await self._read_subject(self.dead_stream, self.dead_subject)

    async def _read_subject(self, stream: str, subject: str) -> list[StoredMessage]:
        missing = self._nats.js.errors.NotFoundError
        found: list[StoredMessage] = []
        seq = 1
        while True:
            try:
                msg = await self.js.get_msg(stream, seq=seq, subject=subject, next=True)
            except missing:
                return found
            stamp = msg.time.timestamp() if msg.time is not None else 0.0
            found.append((msg.seq, msg.data or b"", dict(msg.headers or {}), stamp))
            seq = msg.seq + 1

    async def delete_letters(self, seqs: Sequence[int]) -> None:
        """Delete dead letters by sequence."""
        for seq in seqs:
            await self.js.delete_msg(self.dead_stream, seq)

    async def read_window(self, start: float, end: float | None) -> list[StoredMessage]:
        """The events of the stream published in ``[start, end)`` (POSIX seconds) and
        acknowledged by the group, in order."""
        api = self._nats.js.api
        info = await self.js.consumer_info(self.options.stream, self.options.group)
        floor = info.ack_floor.stream_seq or 0
        if not floor:
            return []
        psub = await self.js.pull_subscribe(
            self.subject,
            stream=self.options.stream,
            config=api.ConsumerConfig(
                deliver_policy=api.DeliverPolicy.BY_START_TIME,
                opt_start_time=datetime.fromtimestamp(start, UTC),
                ack_policy=api.AckPolicy.NONE,
                inactive_threshold=30.0,
            ),
        )
        found: list[StoredMessage] = []
        try:
            remaining = (await psub.consumer_info()).num_pending
            while remaining > 0:
                msgs = await psub.fetch(min(256, remaining), timeout=self.options.publish_timeout)
                for msg in msgs:
                    meta = msg.metadata
                    seq = meta.sequence.stream
                    stamp = meta.timestamp.timestamp()
                    if seq > floor or (end is not None and stamp >= end):
                        return found
                    found.append((seq, msg.data, dict(msg.headers or {}), stamp))
                    remaining = meta.num_pending
            return found
        finally:
            try:
                await psub.unsubscribe()
            except Exception as exc:  # pragma: no cover - the server drops it anyway
                logger.debug("removing the replay consumer: %r", exc)


def _seconds(value: float) -> str:
    """*value* seconds as a duration the nats CLI reads (``2592000s``, ``0.5s``)."""
    return f"{int(value)}s" if value == int(value) else f"{value}s"
