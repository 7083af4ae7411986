"""kill -9 tests of the broker queues: three processes of one app, killed at random.

Per broker (Redis Streams, NATS JetStream), on a stream and group of its own: three
worker processes of one app (``tests/broker_crash_child.py worker``: the same stream and
group, each with its own consumer name, a small ``claim_after``) handle events with three
subscriptions while a producer process publishes at a paced rate. The test kills a
random worker with SIGKILL at seeded random moments and starts it again (sometimes with
the dead process's consumer name, as a fixed configuration would, mostly with a new
one; at one moment in ten it kills every running worker at once), :data:`KILLS` times:
10 in a default run, ``REACTOR_BROKER_KILLS=100`` for the full size
(``REACTOR_BROKER_SEED`` picks another seed). Workers alternate between asyncio and trio.
Then it stops the producer and the kills, lets the survivors run until the group has
nothing pending and no lag (the workers' own statistics, and the broker asked directly),
stops them, and checks the evidence of every process (see the child's docstring) with
:func:`account`:

* **lost**: every event whose ``publish()`` returned, and every event any handler saw,
  was handled to the end by every subscription it is meant for;
* **unexpected**: handlers saw only events the producer published, unaltered, and only
  those meant for them;
* **pending**: nothing stays pending or unread in the group once the survivors ran;
* **duplicates**: a subscription that handles an event again does so only after the
  process(es) that handled it before were killed (never two processes at once), with the
  attempt raised, and never once its completion was recorded: a ``P`` (the queue stored
  the subscription's progress) or ``K`` (the queue acknowledged the event) line written
  before the new start is a failure. The allowed ones are counted by kind: the handler
  was cut by the kill (it never returned), or it returned but its settlement was not
  stored before the kill. The test also counts the redelivered events on which a
  subscription whose completion was recorded was spared, the evidence that per-consumer
  completion keeps duplicates to the consumers that had not finished.

At the end, the broker must hold no per-consumer progress record of the group either:
it goes with the event's ack, or (NATS, a kill between the ack and the record's purge)
with the group's next sweep by a survivor, within :data:`SWEEP_WAIT`;
``test_a_kill_right_after_an_ack_leaves_no_progress_record`` puts the kill in that window
for sure. ``test_a_group_started_after_events_were_published_...``
checks what the kill test first met on NATS: a group whose first process starts after
events were published gets the ones the stream keeps.

It prints one summary line per broker (kills, events, duplicates by kind) to copy into
notes. At the end the stream and the queue's other keys / streams / buckets (every name
holding the run's unique token) are deleted.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import anyio
import attrs
import pytest
import services
from broker_crash_child import (
    LONG_SECONDS,
    SLOW,
    SOURCE,
    SUBSCRIPTIONS,
    Scenario,
    event_id,
    event_type,
    payload,
    subscriptions_for,
)

from reactor import Event, Reactor
from reactor.queues import from_url

CHILD = Path(__file__).with_name("broker_crash_child.py")
#: Workers killed per broker: 10 by default, 100 for the full run (REACTOR_BROKER_KILLS=100).
KILLS = int(os.environ.get("REACTOR_BROKER_KILLS", "10"))
#: The size of the full run, from which the test also requires evidence of subscriptions
#: spared by per-consumer completion (a short run may happen to have none).
FULL_SIZE = 100
#: The seed of the kills' targets and moments (another one: REACTOR_BROKER_SEED=n).
SEED = int(os.environ.get("REACTOR_BROKER_SEED", "1"))
#: Worker processes of the app under test.
WORKERS = 3
#: Seconds an unacknowledged event stays with its process before another may claim it.
CLAIM_AFTER = 2.0
# Some handlers run longer than claim_after: their process must keep its claim alive.
assert LONG_SECONDS > CLAIM_AFTER
#: Events per second the producer publishes.
RATE = 250.0
#: Seconds between two kills (a seeded random moment within).
KILL_EVERY = (0.1, 1.0)
#: The share of kill moments at which every running worker is killed at once.
WHOLE_APP = 0.1
#: Seconds any single step may take before the test fails instead of hanging.
STEP_TIMEOUT = 60.0
#: Seconds the survivors get to settle everything once the kills stop.
SETTLE_TIMEOUT = 120.0
#: The backends each broker's queue runs on (workers alternate between them).
BACKENDS = {"redis": ("asyncio", "trio"), "nats": ("asyncio", "trio")}

#: Seconds the progress records a kill left behind acked events may stay: the NATS queue
#: purges an event's record after its ack, in a separate request, and a process of the
#: group sweeps the ones left behind every 10 s (Redis deletes it with the ack).
SWEEP_WAIT = 30.0

pytestmark = [
    pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX"),
    pytest.mark.timeout(300 + 6 * KILLS),
]


# -- the processes ----------------------------------------------------------------------------


def _lines(path: Path) -> list[str]:
    """The complete lines of an evidence file: a kill may leave a torn last line (it has
    no newline yet), which is ignored: less evidence, never a false alarm."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return text.split("\n")[:-1]


@attrs.define(eq=False)
class Process:
    """One child process: a worker incarnation or the producer."""

    scenario: Scenario
    proc: subprocess.Popen[bytes]
    log: Path
    #: ``time.monotonic_ns()`` right before the test sent SIGKILL (``None``: not killed).
    killed_at: int | None = None
    #: Whether its ``R`` line was seen (once written, it stays).
    seen_ready: bool = False

    @property
    def journal(self) -> Path:
        """The process's evidence file."""
        return Path(self.scenario.journal)

    def ready(self) -> bool:
        """Whether the process wrote its ``R`` line (its app runs)."""
        if not self.seen_ready:
            self.seen_ready = any(line.startswith("R ") for line in _lines(self.journal))
        return self.seen_ready

    def log_tail(self) -> str:
        """The end of the process's stderr (for failure messages)."""
        try:
            return self.log.read_text(errors="replace")[-4000:] or "(empty log)"
        except FileNotFoundError:
            return "(no log)"


def _start(scenario: Scenario, log: Path) -> Process:
    with log.open("ab") as stderr:
        proc = subprocess.Popen(
            [sys.executable, str(CHILD), scenario.mode, json.dumps(attrs.asdict(scenario))],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    return Process(scenario, proc, log)


@attrs.define
class Cluster:
    """The producer and the workers of one run, and how the test drives them."""

    broker: str
    directory: Path
    url: str
    stream: str
    group: str
    rng: random.Random
    #: The current incarnation of each worker slot.
    workers: dict[int, Process] = attrs.Factory(dict)
    #: Every worker incarnation, in the order started (killed ones included).
    incarnations: list[Process] = attrs.Factory(list)
    producer: Process | None = None

    def queue_url(self, group: str, consumer: str) -> str:
        """The URL of the queue of *group* on the run's stream, as *consumer*."""
        query = {
            "stream": self.stream,
            "group": group,
            "consumer": consumer,
            "claim_after": CLAIM_AFTER,
            # The kills may hit one event several times in a row: that must not turn it
            # into a dead letter here (the bound has tests of its own).
            "max_redeliveries": 1000,
        }
        separator = "&" if "?" in self.url else "?"
        return f"{self.url}{separator}{urlencode(query)}"

    def start_producer(self) -> Process:
        """Start the producer (the queue of the workers' group, without an app)."""
        scenario = Scenario(
            mode="producer",
            url=self.queue_url(self.group, "producer"),
            journal=str(self.directory / "producer.log"),
            backend=BACKENDS[self.broker][0],
            rate=RATE,
        )
        self.producer = _start(scenario, self.directory / "producer.stderr")
        return self.producer

    def start_worker(self, slot: int, *, stall_purge: bool = False) -> None:
        """Start a process of the app under test in *slot* (see the child's Scenario)."""
        index = len(self.incarnations)
        # Mostly a new consumer name, as the default (host, pid, suffix) gives; sometimes
        # the dead process's name again, as a fixed name in a configuration would.
        previous = self.workers.get(slot)
        if previous is not None and self.rng.random() < 0.3:
            consumer = previous.scenario.consumer
        else:
            consumer = f"w{slot}-{index}"
        backends = BACKENDS[self.broker]
        scenario = Scenario(
            mode="worker",
            url=self.queue_url(self.group, consumer),
            journal=str(self.directory / f"worker-{index}.log"),
            status=str(self.directory / f"status-{slot}.json"),
            backend=backends[index % len(backends)],
            slot=slot,
            consumer=consumer,
            stall_purge=stall_purge,
        )
        process = _start(scenario, self.directory / f"worker-{index}.stderr")
        self.workers[slot] = process
        self.incarnations.append(process)

    def ready_slots(self) -> list[int]:
        """The worker slots whose current process runs its app."""
        return [slot for slot, process in sorted(self.workers.items()) if process.ready()]

    def all_ready(self) -> bool:
        """Whether the producer (while it runs) and every worker run their apps."""
        processes = list(self.workers.values())
        if self.producer is not None and self.producer.proc.returncode is None:
            processes.append(self.producer)
        return all(process.ready() for process in processes)

    def kill(self, slot: int) -> None:
        """SIGKILL the worker of *slot* and wait for it to be gone."""
        process = self.workers[slot]
        process.killed_at = time.monotonic_ns()
        process.proc.send_signal(signal.SIGKILL)
        code = process.proc.wait(timeout=STEP_TIMEOUT)
        assert code == -signal.SIGKILL, f"worker exited with {code}:\n{process.log_tail()}"

    def stop(self, process: Process) -> int:
        """SIGTERM *process* (a graceful stop: its app drains); return its exit status."""
        process.proc.send_signal(signal.SIGTERM)
        try:
            return process.proc.wait(timeout=STEP_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"a process did not stop:\n{process.log_tail()}") from None

    def check_running(self) -> None:
        """Fail if a process ended that the test did not stop."""
        for process in self.workers.values():
            code = process.proc.poll()
            if code is not None:
                raise AssertionError(
                    f"worker {process.proc.pid} exited by itself ({code}):\n{process.log_tail()}"
                )
        if self.producer is not None and self.producer.proc.poll() not in (None, 0):
            raise AssertionError(f"the producer failed:\n{self.producer.log_tail()}")

    def wait_for(
        self, what: str, condition: Callable[[], bool], timeout: float = STEP_TIMEOUT
    ) -> None:
        """Poll *condition* (the state of other processes, a broker) until it holds,
        failing as soon as a process ends unexpectedly."""
        deadline = time.monotonic() + timeout
        while not condition():
            self.check_running()
            if time.monotonic() > deadline:
                raise AssertionError(f"seed {SEED}: {what}: not within {timeout} s; {self.state()}")
            time.sleep(0.05)

    def statuses(self) -> list[dict[str, Any]]:
        """The workers' latest statistics (see the child's docstring)."""
        found = []
        for process in self.workers.values():
            try:
                found.append(json.loads(Path(process.scenario.status).read_text()))
            except (FileNotFoundError, json.JSONDecodeError):  # not written yet
                found.append({"pid": None})
        return found

    def state(self) -> str:
        """What the workers and the broker say (for failure messages)."""
        broker = group_state(self.broker, self.url, self.stream, self.group)
        return f"the broker's (lag, pending): {broker}; the workers': {self.statuses()}"

    def settled(self, since: int) -> bool:
        """Whether every worker reports, from a measure taken after *since*, nothing
        pending or unread in the group and nothing in the process, and the broker agrees."""
        pids = {process.proc.pid for process in self.workers.values()}
        for status in self.statuses():
            if status["pid"] not in pids or status["t"] < since:
                return False
            measured = (status["lag"], status["pending"], status["depth"], status["in_flight"])
            if measured != (0, 0, 0, 0):
                return False
        return group_state(self.broker, self.url, self.stream, self.group) == (0, 0)

    def terminate_all(self) -> None:
        """Kill whatever still runs (the end of a failed test)."""
        for process in [*self.incarnations, *([self.producer] if self.producer else [])]:
            if process.proc.poll() is None:
                process.proc.kill()
                process.proc.wait()


# -- the broker, asked directly -------------------------------------------------------------


async def _redis_group_state(url: str, stream: str, group: str) -> tuple[int, int] | None:
    """The group's (lag, pending) as Redis reports it, ``None`` if there is no such group."""
    import coredis

    async with coredis.Redis.from_url(url, decode_responses=True) as client:
        for info in await client.xinfo_groups(stream):
            if info["name"] == group:
                lag, pending = info["lag"], info["pending"]
                assert isinstance(lag, int) and isinstance(pending, int)
                return lag, pending
    return None


async def _redis_cleanup(url: str, token: str) -> list[str]:
    import coredis

    async with coredis.Redis.from_url(url, decode_responses=True) as client:
        keys = [key async for key in client.scan_iter(match=f"*{token}*")]
        if keys:
            await client.delete(keys)
        return keys


async def _nats_group_state(url: str, stream: str, group: str) -> tuple[int, int] | None:
    """The durable consumer's (lag, pending) as JetStream reports it, ``None`` if absent."""
    import nats
    import nats.js.errors

    connection = await nats.connect(url)
    try:
        jetstream = connection.jetstream()
        try:
            info = await jetstream.consumer_info(stream, group)
        except nats.js.errors.NotFoundError:
            return None
        return info.num_pending or 0, info.num_ack_pending or 0
    finally:
        await connection.close()


async def _nats_cleanup(url: str, token: str) -> list[str]:
    import nats

    connection = await nats.connect(url)
    try:
        jetstream = connection.jetstream()
        names = [
            info.config.name
            for info in await jetstream.streams_info()
            if info.config.name and token in info.config.name
        ]
        for name in names:
            await jetstream.delete_stream(name)
        return names
    finally:
        await connection.close()


async def _redis_progress_left(url: str, stream: str, group: str) -> list[str]:
    import coredis

    async with coredis.Redis.from_url(url, decode_responses=True) as client:
        return sorted(await client.hkeys(f"{stream}:progress:{group}"))


async def _nats_progress_left(url: str, stream: str, group: str) -> list[str]:
    import nats

    bucket = f"{stream}_progress"
    connection = await nats.connect(url)
    try:
        info = await connection.jetstream().stream_info(
            f"KV_{bucket}", subjects_filter=f"$KV.{bucket}.{group}.>"
        )
        subjects = info.state.subjects or {}
        # The key "consumers" holds the group's consumer names, not an event's progress.
        return sorted(subject for subject in subjects if not subject.endswith(".consumers"))
    finally:
        await connection.close()


def progress_left(broker: str, url: str, stream: str, group: str) -> list[str]:
    """The per-consumer progress records of the group that the broker still holds (as
    each queue's docstring names them: the hash ``<stream>:progress:<group>`` on Redis,
    the keys ``<group>.<sequence>`` of the KV bucket ``<stream>_progress`` on NATS)."""
    if broker == "redis":
        return anyio.run(_redis_progress_left, url, stream, group)
    return anyio.run(_nats_progress_left, url, stream, group, backend="asyncio")


def group_state(broker: str, url: str, stream: str, group: str) -> tuple[int, int] | None:
    """The group's (lag, pending), asked of the broker itself."""
    if broker == "redis":
        return anyio.run(_redis_group_state, url, stream, group)
    return anyio.run(_nats_group_state, url, stream, group, backend="asyncio")


def cleanup(broker: str, url: str, token: str) -> list[str]:
    """Delete every key / stream / bucket whose name holds *token*; return their names."""
    if broker == "redis":
        return anyio.run(_redis_cleanup, url, token)
    return anyio.run(_nats_cleanup, url, token, backend="asyncio")


# -- the oracle -------------------------------------------------------------------------------


@attrs.frozen
class Start:
    """A handler start, as a worker journaled it."""

    t: int
    attempt: int
    #: The worker incarnation (an index in the list of evidence).
    worker: int
    #: Whether the same handler run journaled its end.
    ended: bool


@attrs.frozen
class Evidence:
    """What one worker incarnation left: its journal's complete lines, and when the test
    sent it SIGKILL (``time.monotonic_ns()``; ``None``: it was not killed)."""

    lines: list[str]
    killed_at: int | None


@attrs.frozen
class Accounting:
    """What the oracle found (``problems`` must be empty) and what it counted."""

    problems: list[str]
    tried: int
    published: int
    runs: int
    #: Reruns after a kill that cut the handler's earlier run before it returned.
    cut: int
    #: Reruns after a kill that came after the earlier run returned but before its
    #: settlement was stored.
    unsettled: int
    #: Runs after the subscription's completion was recorded (``P``) or the event was
    #: acknowledged (``K``): forbidden.
    after_recorded: int
    #: Reruns while a process that had run it was not killed yet: forbidden.
    while_live: int
    #: Events handed out again after a kill (handled in more than one worker).
    redelivered: int
    #: (event, subscription) pairs not run again on a redelivered event because the
    #: subscription's completion was recorded before.
    spared: int

    @property
    def duplicates(self) -> int:
        """The reruns of a subscription on an event, of every kind."""
        return self.cut + self.unsettled + self.after_recorded + self.while_live


def account(producer: list[str], workers: list[Evidence]) -> Accounting:
    """Check the evidence of the producer's journal and of every worker incarnation."""
    problems: list[str] = []
    tried: set[int] = set()
    acked: set[int] = set()
    for line in producer:
        kind, *fields = line.split()
        if kind == "T":
            tried.add(int(fields[0]))
        elif kind == "A":
            acked.add(int(fields[0]))
    if not acked <= tried:
        problems.append("the producer journaled a publish that returned without trying it")

    starts: dict[tuple[str, int], list[Start]] = defaultdict(list)
    ended: set[tuple[str, int]] = set()
    recorded: dict[tuple[str, int], int] = {}  # the first P line per (subscription, event)
    acknowledged: dict[int, int] = {}  # the first K line per event
    for index, worker in enumerate(workers):
        ends = {tuple(line.split()[1:4]) for line in worker.lines if line.startswith("E ")}
        for line in worker.lines:
            kind, *fields = line.split(" ")
            if kind == "BAD":
                problems.append(f"worker {index}: {line}")
            elif kind == "S":
                sub, num, attempt, t = fields[0], int(fields[1]), int(fields[2]), int(fields[3])
                run = Start(t, attempt, index, tuple(fields[:3]) in ends)
                starts[sub, num].append(run)
            elif kind == "E":
                ended.add((fields[0], int(fields[1])))
            elif kind == "P":
                pair = (fields[0], int(fields[1]))
                recorded[pair] = min(recorded.get(pair, sys.maxsize), int(fields[2]))
            elif kind == "K":
                num = int(fields[0])
                acknowledged[num] = min(acknowledged.get(num, sys.maxsize), int(fields[1]))
            elif kind not in ("W", "R", "Q"):
                problems.append(f"worker {index}: unknown journal line {line!r}")

    seen = {num for _, num in starts}
    published = acked | seen

    # unexpected: only events the producer tried, only to the subscriptions meant for them
    for sub, num in starts:
        if num not in tried:
            problems.append(f"{sub} got event {num}, never published")
        elif sub not in subscriptions_for(num):
            problems.append(f"{sub} got event {num}, not meant for it")

    # lost: every acknowledged or delivered event handled to the end by each subscription
    for num in sorted(published):
        for sub in sorted(subscriptions_for(num)):
            if (sub, num) not in ended:
                what = "published" if num in acked else "delivered (publish not returned)"
                problems.append(f"lost: {sub} never finished {what} event {num}")

    # duplicates: only after a kill, with the attempt raised, never after a recorded
    # completion
    cut = unsettled = after_recorded = while_live = 0
    for (sub, num), runs in starts.items():
        runs.sort(key=lambda run: run.t)
        done_at = min(recorded.get((sub, num), sys.maxsize), acknowledged.get(num, sys.maxsize))
        for i, run in enumerate(runs):
            if run.t > done_at:
                after_recorded += 1
                what = "its completion was recorded" if (sub, num) in recorded else "it was acked"
                problems.append(
                    f"{sub} ran event {num} again in worker {run.worker} after {what} "
                    f"({(run.t - done_at) / 1e9:.3f} s before): runs {runs}"
                )
                continue
            if i == 0:
                continue
            live = [
                before.worker
                for before in runs[:i]
                if (killed_at := workers[before.worker].killed_at) is None or killed_at > run.t
            ]
            if any(run.attempt <= before.attempt for before in runs[:i]):
                problems.append(
                    f"{sub} ran event {num} again without the attempt raised: runs {runs}"
                )
            if live:
                while_live += 1
                problems.append(
                    f"{sub} ran event {num} in worker {run.worker} while worker(s) {live} "
                    f"(not killed then) had run it: runs {runs}"
                )
            elif runs[i - 1].ended:
                unsettled += 1
            else:
                cut += 1

    # per-consumer completion at work: on an event handed out again after a kill, the
    # subscriptions whose completion was recorded before are not run again
    redelivered = spared = 0
    by_event: dict[int, list[Start]] = defaultdict(list)
    for (_, num), runs in starts.items():
        by_event[num].extend(runs)
    for num, runs in by_event.items():
        first = min(runs, key=lambda run: run.t).worker
        later = [run.t for run in runs if run.worker != first]
        if not later:
            continue
        redelivered += 1
        again = min(later)
        for sub in subscriptions_for(num):
            if recorded.get((sub, num), sys.maxsize) < again and len(starts[sub, num]) == 1:
                spared += 1

    return Accounting(
        problems,
        tried=len(tried),
        published=len(published),
        runs=sum(len(runs) for runs in starts.values()),
        cut=cut,
        unsettled=unsettled,
        after_recorded=after_recorded,
        while_live=while_live,
        redelivered=redelivered,
        spared=spared,
    )


# -- the test ---------------------------------------------------------------------------------


@pytest.fixture
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    broker: str = request.param
    url = services.require(broker)
    token = f"kill{secrets.token_hex(4)}"
    made = Cluster(
        broker=broker,
        directory=tmp_path,
        url=url,
        stream=f"crash-{token}",
        group=f"app-{token}",
        rng=random.Random(f"{broker}-{SEED}"),
    )
    try:
        yield made
    finally:
        made.terminate_all()
        cleanup(broker, url, token)


@pytest.mark.parametrize("cluster", ["redis", "nats"], indirect=True)
def test_kill_9_workers_of_one_app_loses_nothing_and_reruns_only_unfinished_consumers(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    began = time.monotonic()
    for slot in range(WORKERS):
        cluster.start_worker(slot)
    # The group exists once a worker runs; the producer starts then (what a group started
    # after its producer gets is test_a_group_started_after_events_were_published_...).
    cluster.wait_for("the workers start", cluster.all_ready)
    producer = cluster.start_producer()
    cluster.wait_for("the producer starts", cluster.all_ready)

    rng = cluster.rng
    kills = 0
    while kills < KILLS:
        time.sleep(rng.uniform(*KILL_EVERY))  # the random moment is the point of the test
        cluster.wait_for("a worker to kill", lambda: bool(cluster.ready_slots()))
        ready = cluster.ready_slots()
        # Mostly one worker; sometimes every running one at once: the whole app dies,
        # and nobody is left to claim its events until the restarts.
        victims = ready if rng.random() < WHOLE_APP and len(ready) > 1 else [rng.choice(ready)]
        victims = victims[: KILLS - kills]
        for slot in victims:
            cluster.kill(slot)
        for slot in victims:
            cluster.start_worker(slot)
        kills += len(victims)

    code = cluster.stop(producer)
    assert code == 0, f"the producer exited with {code}:\n{producer.log_tail()}"
    stopped = time.monotonic_ns()
    cluster.wait_for("the restarted workers start", cluster.all_ready)
    cluster.wait_for(
        "the survivors settle every event", lambda: cluster.settled(stopped), SETTLE_TIMEOUT
    )
    # The record of which subscriptions finished an event goes with the event's ack, or
    # with the group's next sweep (polling the broker, until SWEEP_WAIT).
    left = _progress_swept(cluster)
    for process in list(cluster.workers.values()):
        code = cluster.stop(process)
        assert code == 0, f"a worker exited with {code}:\n{process.log_tail()}"
    duration = time.monotonic() - began

    evidence = [
        Evidence(_lines(worker.journal), worker.killed_at) for worker in cluster.incarnations
    ]
    # For a post-mortem (tests/test_broker_crash.py's account() on the directory's files).
    killed = [(worker.proc.pid, worker.killed_at) for worker in cluster.incarnations]
    (cluster.directory / "kills.json").write_text(json.dumps(killed))
    result = account(_lines(producer.journal), evidence)
    (cluster.directory / "problems.txt").write_text("".join(f"{p}\n" for p in result.problems))
    summary = (
        f"kill -9 {cluster.broker} (seed {SEED}): {KILLS} kills of {WORKERS} workers in "
        f"{duration:.0f} s; {result.published} events published ({result.tried} tried), "
        f"{result.runs} handler runs of {len(SUBSCRIPTIONS)} subscriptions; "
        f"{result.redelivered} events handed out again after a kill; duplicates "
        f"{result.duplicates}: {result.cut} cut by the kill, {result.unsettled} returned but "
        f"unsettled at the kill, {result.after_recorded} after a recorded completion, "
        f"{result.while_live} beside a live process; {result.spared} finished subscriptions "
        f"spared on redelivery; progress records left behind acked events: {len(left)}; "
        f"problems: {len(result.problems)}"
    )
    with capsys.disabled():
        sys.stdout.write(f"\n{summary}\n")
    assert not result.problems, (
        f"{summary}\n(all in {cluster.directory / 'problems.txt'})\n"
        + "\n".join(result.problems[:50])
    )
    # The kills did hit events in flight (the test checks something) and, at full size,
    # subscriptions that had finished were spared when their event was handed out again.
    assert result.published > 0 and result.redelivered > 0, summary
    assert result.spared > 0 or KILLS < FULL_SIZE, summary
    assert not left, f"seed {SEED}: progress records stay behind acked events: {left[:20]}"


def _progress_swept(cluster: Cluster) -> list[str]:
    """The group's progress records left once the survivors swept them (polling the
    broker until none is left, or SWEEP_WAIT)."""
    deadline = time.monotonic() + SWEEP_WAIT
    while True:
        left = progress_left(cluster.broker, cluster.url, cluster.stream, cluster.group)
        if not left or time.monotonic() > deadline:
            return left
        cluster.check_running()
        time.sleep(0.25)


# -- a group that starts after its producer ----------------------------------------------------


async def _late_group_gets(url: str, stream: str, group: str, events: int) -> set[str]:
    """Publish *events* from an app of another group, then run an app of *group* (its
    first process: the group is created now) until it got them all, or STEP_TIMEOUT."""
    query = f"stream={stream}&claim_after={CLAIM_AFTER}&retention=600"
    separator = "&" if "?" in url else "?"
    producer = Reactor(queue=from_url(f"{url}{separator}{query}&group={group}-producer"))
    async with producer:
        for n in range(events):
            await producer.publish(event_type(n), payload(n), id=event_id(n), source=SOURCE)
    worker = Reactor(queue=from_url(f"{url}{separator}{query}&group={group}"))
    got: set[str] = set()
    all_in = anyio.Event()

    @worker.subscribe("job.*")
    async def handle(event: Event) -> None:
        got.add(event.id)
        if len(got) == events:
            all_in.set()

    async with worker:
        with anyio.fail_after(STEP_TIMEOUT):
            # Until every event arrived, or the broker says the group has nothing left
            # to read and nothing pending (polling the broker's state, measured by the
            # queue about every second).
            while not all_in.is_set():
                queue = worker.stats().queue
                if (queue.lag, queue.pending, worker.stats().in_flight) == (0, 0, 0):
                    break
                await anyio.sleep(0.05)
    return got


@pytest.mark.parametrize("broker", ["redis", "nats"])
def test_a_group_started_after_events_were_published_gets_the_kept_events(broker: str) -> None:
    """What the kill test first met on NATS (seed 1, REACTOR_BROKER_KILLS=100, the workers
    started together with the producer): the events published before the workers' group
    existed were never handled, though the stream kept them. Redis creates the group at
    the stream's start (``XGROUP CREATE ... 0``), NATS with ``DeliverPolicy.ALL``: its
    first process gets them."""
    url = services.require(broker)
    token = f"late{secrets.token_hex(4)}"
    try:
        backend = BACKENDS[broker][0]
        got = anyio.run(_late_group_gets, url, f"crash-{token}", f"app-{token}", 5, backend=backend)
    finally:
        cleanup(broker, url, token)
    assert got == {event_id(n) for n in range(5)}


# -- a kill between an ack and the cleanup of the progress record ------------------------------


async def _publish(url: str, *numbers: int) -> None:
    async with from_url(url) as queue:
        for n in numbers:
            await queue.put(
                Event(type=event_type(n), source=SOURCE, id=event_id(n), data=payload(n))
            )


@pytest.mark.parametrize("cluster", ["redis", "nats"], indirect=True)
def test_a_kill_right_after_an_ack_leaves_no_progress_record(cluster: Cluster) -> None:
    """The reproduction of what the kill test found on NATS, with the kill put in the
    window for sure: the worker's purge requests never return (NATS), and the test kills
    it once the broker has the ack of an event whose progress was recorded. The next
    process of the group deletes the record left behind (NATS: its sweep)."""
    cluster.start_worker(0, stall_purge=cluster.broker == "nats")
    cluster.wait_for("the worker starts", cluster.all_ready)
    anyio.run(
        _publish,
        cluster.queue_url(cluster.group, "producer"),
        SLOW,
        backend=BACKENDS[cluster.broker][0],
    )
    worker = cluster.workers[0]
    # alpha returns at once and its completion is stored; beta takes half a second.
    cluster.wait_for(
        "alpha's progress is stored", lambda: f"P alpha {SLOW}" in worker.journal.read_text()
    )
    assert progress_left(cluster.broker, cluster.url, cluster.stream, cluster.group)
    cluster.wait_for(
        "the event is acknowledged",
        lambda: group_state(cluster.broker, cluster.url, cluster.stream, cluster.group) == (0, 0),
    )
    cluster.kill(0)
    cluster.start_worker(0)
    cluster.wait_for("the worker starts again", cluster.all_ready)
    left = _progress_swept(cluster)
    assert left == [], f"progress records stay behind the acknowledged event: {left}"


# -- the oracle itself, on made-up evidence ---------------------------------------------------


def _handled(n: int, attempt: int, t: int, *subs: str, settled: bool = True) -> list[str]:
    """The journal lines of *subs* handling event *n* to the end (and its ack)."""
    lines = [f"S {sub} {n} {attempt} {t}" for sub in subs]
    lines += [f"E {sub} {n} {attempt} {t + 1}" for sub in subs]
    return [*lines, f"K {n} {t + 2}"] if settled else lines


def test_the_oracle_passes_evidence_of_a_clean_run() -> None:
    producer = ["T 1", "A 1", "T 3", "A 3", "T 4"]  # 4: the publish did not return
    worker = Evidence(
        [*_handled(1, 1, 10, "alpha", "beta"), *_handled(3, 1, 20, *SUBSCRIPTIONS)], None
    )
    result = account(producer, [worker])
    assert result.problems == []
    assert (result.published, result.tried, result.runs, result.duplicates) == (2, 3, 5, 0)


def test_the_oracle_finds_lost_unexpected_and_altered_events() -> None:
    producer = ["T 1", "A 1", "T 2", "A 2", "T 3"]
    worker = Evidence(
        [
            *_handled(1, 1, 10, "alpha"),  # beta never finished event 1
            "S beta 3 1 12",  # delivered (its publish did not return), never finished
            *_handled(5, 1, 14, "alpha", "beta"),  # never published
            *_handled(4, 1, 16, "gamma"),  # not meant for gamma (and never published)
            "BAD alpha 7 '{}'",
        ],
        None,
    )
    problems = "\n".join(account(producer, [worker]).problems)
    for found in (
        "lost: beta never finished published event 1",
        "lost: alpha never finished published event 2",
        "lost: beta never finished delivered (publish not returned) event 3",
        "alpha got event 5, never published",
        "gamma got event 4",
        "BAD alpha 7",
    ):
        assert found in problems


def test_the_oracle_allows_reruns_of_unfinished_consumers_after_a_kill() -> None:
    producer = ["T 1", "A 1", "T 3", "A 3"]
    # Worker 0: alpha finished event 1 and its progress was stored; beta was cut by
    # the kill. gamma returned on event 3 but was not settled, beta was cut.
    killed = Evidence(
        [
            "S alpha 1 1 10",
            "S beta 1 1 10",
            "E alpha 1 1 11",
            "P alpha 1 12",
            *_handled(3, 1, 10, "alpha", "gamma", settled=False),
            "P alpha 3 13",
            "S beta 3 1 13",
        ],
        killed_at=20,
    )
    survivor = Evidence(
        [*_handled(1, 2, 30, "beta"), *_handled(3, 3, 30, "beta", "gamma")], killed_at=None
    )
    result = account(producer, [killed, survivor])
    assert result.problems == []
    assert (result.cut, result.unsettled, result.redelivered, result.spared) == (2, 1, 2, 2)


def test_the_oracle_refuses_reruns_of_recorded_or_live_consumers() -> None:
    producer = ["T 1", "A 1", "T 2", "A 2", "T 3", "A 3"]
    first = Evidence(
        [
            *_handled(1, 1, 10, "alpha", settled=False),
            "P alpha 1 12",
            *_handled(2, 1, 10, "alpha", "beta"),  # acked (K 2)
            "S beta 3 1 10",
        ],
        killed_at=20,
    )
    live = Evidence(["S beta 3 1 15"], killed_at=None)  # while the first one ran
    rerun = Evidence(
        [
            *_handled(1, 2, 30, "alpha", "beta"),  # alpha again, after its P line
            *_handled(2, 2, 30, "beta"),  # after the event was acked
            "S beta 3 1 30",  # and with the attempt not raised
            "E beta 3 1 31",
        ],
        killed_at=None,
    )
    result = account(producer, [first, live, rerun])
    problems = "\n".join(result.problems)
    assert "alpha ran event 1 again in worker 2 after its completion was recorded" in problems
    assert "beta ran event 2 again in worker 2 after it was acked" in problems
    assert "beta ran event 3 in worker 1 while worker(s) [0] (not killed then)" in problems
    assert "beta ran event 3 in worker 2 while worker(s) [1] (not killed then)" in problems
    assert (result.after_recorded, result.while_live, result.cut, result.unsettled) == (2, 2, 0, 0)
    assert "beta ran event 3 again without the attempt raised" in problems


def test_a_torn_last_line_is_ignored(tmp_path: Path) -> None:
    journal = tmp_path / "worker.log"
    journal.write_text("S alpha 1 1 10\nE alpha 1 1 11\nK 1 1")
    assert _lines(journal) == ["S alpha 1 1 10", "E alpha 1 1 11"]
    assert _lines(tmp_path / "missing.log") == []
