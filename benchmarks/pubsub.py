"""Pub/sub trigger benchmark: message → handler start, and messages per second.

Run ``python -m benchmarks.pubsub [--quick] [--json out.json] [--loops asyncio,trio]
[--brokers mqtt,redis] [--mqtt URL] [--redis URL]``.

For each broker (Mosquitto at ``--mqtt``, Redis at ``--redis``) and loop, an app with one
trigger (``on_mqtt(topic, qos=1)`` / ``on_redis_message(channel)``, their defaults
otherwise, the in-memory queue) and one trivial handler, and a publisher **process**
(paho-mqtt with QoS 1, waiting for each PUBACK in the background as a device would; coredis
``PUBLISH``) on the same machine. Each message carries ``time.monotonic_ns()`` taken just
before it is published (``CLOCK_MONOTONIC``: one clock for every process of the machine);
the handler's first line takes it again, and the difference is one sample.

* ``latency`` -- the publisher sends at a paced 1,000 messages/s (absolute deadlines);
  the first 10% are a warm-up and left out. Reported: p50, p99 and max (nearest rank).
* ``throughput`` -- how fast the trigger takes messages in, with the publisher out of the
  way. MQTT: a backlog of 900 QoS 1 messages is published while the app is away (its
  persistent session keeps them; Mosquitto keeps at most 1,000 per client by default),
  then the app starts and drains it; the rate is taken from the first handler start to
  the last, and the median of 5 drains (1 with ``--quick``) is reported. Redis (pub/sub
  keeps nothing for an absent subscriber): the publisher sends a burst, pipelined 100
  messages per round trip, while the app runs; the rate is taken the same way, and the
  publisher's own rate is shown beside it.

``raw`` rows run the same workloads with the client library by hand, no reactor: paho's
own network thread (``loop_start``) calling ``on_message`` for MQTT, a coredis pub/sub
``async for`` loop for Redis; they say what the broker and the client cost before reactor
adds its trigger, queue and dispatch. Every run counts the messages its handler saw: a
run that loses one (or, for QoS 1, sees one twice) is reported as an error, not a speed.

No targets are set for these sources (the issue asks for the figures); the NOTIFY target
(p99 < 10 ms at 1,000 messages/s) is shown as a reference.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import platform
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import anyio

from reactor import Event, Reactor

RATE = 1000
LATENCY_MESSAGES = 5000
LATENCY_MESSAGES_QUICK = 500
BACKLOG = 900
DRAINS = 5
DRAINS_QUICK = 1
BURST = 20000
BURST_QUICK = 2000
PIPELINE = 100
WARM_UP = 0.1
WAIT = 120.0
REFERENCE_P99_MS = 10.0
URLS = {"mqtt": "mqtt://127.0.0.1:1883", "redis": "redis://127.0.0.1:6379/0"}


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of sorted values.

    :param sorted_values: the samples, ascending
    :param q: the percentile, 0-100
    :return: the sample at that rank
    """
    rank = max(1, min(len(sorted_values), round(q / 100 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


class _Samples:
    """What a handler saw: each message's latency and when it started, by sequence number."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.latency_ms: list[float] = []
        self.started_ns: list[int] = []
        self.seen: set[int] = set()
        self.duplicates = 0
        self.done = threading.Event()  # set from a paho thread, or from the loop

    def record(self, payload: Any) -> None:
        now = time.monotonic_ns()
        seq, sent = int(payload["seq"]), int(payload["t"])
        if seq in self.seen:
            self.duplicates += 1
            return
        self.seen.add(seq)
        self.latency_ms.append((now - sent) / 1e6)
        self.started_ns.append(now)
        if len(self.seen) == self.count:
            self.done.set()

    def summary(self, kind: str, publisher: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = {
            "messages": self.count,
            "handled": len(self.seen),
            "duplicates": self.duplicates,
            "publisher_per_s": publisher.get("per_s"),
        }
        if kind == "latency":
            kept = sorted(self.latency_ms[int(self.count * WARM_UP) :])
            result.update(
                p50_ms=_percentile(kept, 50), p99_ms=_percentile(kept, 99), max_ms=kept[-1]
            )
        else:
            result["per_s"] = self.rate()
        return result

    def rate(self) -> float:
        """Messages per second, from the first handler start to the last."""
        span = (max(self.started_ns) - min(self.started_ns)) / 1e9
        return (len(self.started_ns) - 1) / span if span > 0 else float("inf")

    def wait_sync(self) -> None:
        if not self.done.wait(WAIT):
            raise TimeoutError(f"handled {len(self.seen)} of {self.count}")

    async def wait(self) -> None:
        with anyio.fail_after(WAIT):
            while not self.done.is_set():  # noqa: ASYNC110 - set from paho's thread too
                await anyio.sleep(0.005)


# -- the publisher process ------------------------------------------------------------


def _address(url: str) -> tuple[str, int, str | None, str | None]:
    """Host, port, user and password of an ``mqtt://`` URL."""
    parts = urlsplit(url)
    user = None if parts.username is None else unquote(parts.username)
    password = None if parts.password is None else unquote(parts.password)
    return parts.hostname or "127.0.0.1", parts.port or 1883, user, password


def _publish_mqtt(url: str, topic: str, count: int, rate: float) -> float:
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

    host, port, user, password = _address(url)
    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5
    )
    if user is not None:
        client.username_pw_set(user, password)
    client.max_inflight_messages_set(100)
    client.connect(host, port)
    client.loop_start()
    start = time.monotonic()
    infos = []
    for seq in range(count):
        if rate:
            delay = start + seq / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        payload = json.dumps({"seq": seq, "t": time.monotonic_ns()})
        infos.append(client.publish(topic, payload, qos=1))
    for info in infos:
        info.wait_for_publish(WAIT)
    elapsed = time.monotonic() - start
    client.disconnect()
    client.loop_stop()
    return elapsed


async def _publish_redis(url: str, channel: str, count: int, rate: float) -> float:
    import coredis

    async with coredis.Redis.from_url(url, decode_responses=False) as client:
        start = time.monotonic()
        if not rate:
            for first in range(0, count, PIPELINE):
                async with client.pipeline(transaction=False) as pipe:
                    for seq in range(first, min(count, first + PIPELINE)):
                        pipe.publish(channel, json.dumps({"seq": seq, "t": time.monotonic_ns()}))
            return time.monotonic() - start
        for seq in range(count):
            delay = start + seq / rate - time.monotonic()
            if delay > 0:
                await anyio.sleep(delay)
            await client.publish(channel, json.dumps({"seq": seq, "t": time.monotonic_ns()}))
        return time.monotonic() - start


def _publisher_main(spec: str) -> int:
    broker, url, target, count, rate = json.loads(spec)
    if broker == "mqtt":
        elapsed = _publish_mqtt(url, target, count, rate)
    else:
        elapsed = anyio.run(_publish_redis, url, target, count, rate)
    print(json.dumps({"seconds": elapsed, "per_s": count / elapsed if elapsed else None}))
    return 0


async def _run_publisher(broker: str, url: str, target: str, count: int, rate: float) -> Any:
    spec = json.dumps([broker, url, target, count, rate])
    process = await anyio.run_process(
        [sys.executable, "-m", "benchmarks.pubsub", "--publisher", spec],
        stderr=subprocess.STDOUT,
    )
    return json.loads(process.stdout.decode().strip().splitlines()[-1])


# -- the runs -------------------------------------------------------------------------


async def _reactor_run(broker: str, url: str, kind: str, count: int) -> dict[str, Any]:
    """One live run of reactor's trigger in the running loop: the publisher sends while
    the app runs (paced for ``latency``, a burst for Redis ``throughput``)."""
    samples = _Samples(count)
    target = f"bench/pubsub/{secrets.token_hex(4)}"
    app = _app(broker, url, target, f"bench-{secrets.token_hex(6)}", samples)
    async with app:
        publisher = await _run_publisher(
            broker, url, target, count, RATE if kind == "latency" else 0
        )
        await samples.wait()
        source = dict(app.stats().sources[f"/reactor/{broker}/bench"])
    result = samples.summary(kind, publisher)
    result["source"] = source
    return result


def _app(broker: str, url: str, target: str, client_id: str, samples: _Samples) -> Reactor:
    app = Reactor()

    async def handler(event: Event) -> None:
        samples.record(event.data)

    if broker == "mqtt":
        app.on_mqtt(target, url=url, qos=1, name="bench", client_id=client_id, session_expiry=60)(
            handler
        )
    else:
        app.on_redis_message(target, url=url, name="bench")(handler)
    return app


async def _reactor_drains(url: str, count: int, drains: int) -> dict[str, Any]:
    """MQTT throughput: drains of a backlog the broker kept for the app's session."""
    target = f"bench/pubsub/{secrets.token_hex(4)}"
    client_id = f"bench-{secrets.token_hex(6)}"
    async with _app("mqtt", url, target, client_id, _Samples(count)):
        pass  # the session and its subscription exist from now on
    rates = []
    for _ in range(drains):
        await _run_publisher("mqtt", url, target, count, 0)
        samples = _Samples(count)
        async with _app("mqtt", url, target, client_id, samples) as app:
            await samples.wait()
            source = dict(app.stats().sources["/reactor/mqtt/bench"])
        if len(samples.seen) != count or samples.duplicates:
            return samples.summary("throughput", {})
        rates.append(samples.rate())
    result = samples.summary("throughput", {})
    result.update(per_s=sorted(rates)[len(rates) // 2], drains=rates, source=source)
    return result


def _raw_client(url: str, client_id: str | None, samples: _Samples) -> Any:
    """A paho client by hand, connected and subscribed, its network thread running."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    host, port, user, password = _address(url)
    subscribed = threading.Event()
    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id or "",
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    if user is not None:
        client.username_pw_set(user, password)
    client.on_message = lambda c, u, m: samples.record(json.loads(m.payload))
    client.on_subscribe = lambda c, u, mid, codes, props: subscribed.set()
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = 60
    client.connect(host, port, clean_start=False, properties=properties)
    client.loop_start()
    return client, subscribed


def _raw_mqtt(url: str, kind: str, count: int, drains: int) -> dict[str, Any]:
    """The same runs with paho by hand: its network thread calls on_message."""
    target = f"bench/pubsub/{secrets.token_hex(4)}"
    client_id = f"bench-raw-{secrets.token_hex(6)}"
    samples = _Samples(count)
    client, subscribed = _raw_client(url, client_id, samples)
    try:
        client.subscribe(target, qos=1)
        subscribed.wait(WAIT)
        if kind == "latency":
            publisher = anyio.run(_run_publisher, "mqtt", url, target, count, RATE)
            samples.wait_sync()
            return samples.summary(kind, publisher)
    finally:
        client.disconnect()
        client.loop_stop()
    rates = []
    for _ in range(drains):
        anyio.run(_run_publisher, "mqtt", url, target, count, 0)
        samples = _Samples(count)
        client, _ = _raw_client(url, client_id, samples)
        try:
            samples.wait_sync()
        finally:
            client.disconnect()
            client.loop_stop()
        rates.append(samples.rate())
    result = samples.summary("throughput", {})
    result.update(per_s=sorted(rates)[len(rates) // 2], drains=rates)
    return result


async def _raw_redis(url: str, kind: str, count: int) -> dict[str, Any]:
    """The same run with a coredis pub/sub loop by hand."""
    import coredis

    samples = _Samples(count)
    target = f"bench/pubsub/{secrets.token_hex(4)}"
    async with (
        coredis.Redis.from_url(url, decode_responses=False) as client,
        client.pubsub(channels=[target], ignore_subscribe_messages=True) as pubsub,
        anyio.create_task_group() as tg,
    ):

        async def consume() -> None:
            async for message in pubsub:
                data = message["data"]
                assert isinstance(data, bytes)
                samples.record(json.loads(data))
                if samples.done.is_set():
                    return

        tg.start_soon(consume)
        publisher = await _run_publisher(
            "redis", url, target, count, RATE if kind == "latency" else 0
        )
        await samples.wait()
        tg.cancel_scope.cancel()
    return samples.summary(kind, publisher)


def _run(
    system: str, broker: str, loop: str, url: str, kind: str, count: int, drains: int
) -> dict[str, Any]:
    if system == "raw":
        if broker == "mqtt":
            return _raw_mqtt(url, kind, count, drains)
        return anyio.run(_raw_redis, url, kind, count, backend=loop)
    if broker == "mqtt" and kind == "throughput":
        return anyio.run(_reactor_drains, url, count, drains, backend=loop)
    return anyio.run(_reactor_run, broker, url, kind, count, backend=loop)


def _versions() -> dict[str, str]:
    found = {}
    for name in ("reactor-events", "anyio", "trio", "paho-mqtt", "coredis"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "missing"
    return found


_KNOWN = {"loop": ("asyncio", "trio"), "broker": ("mqtt", "redis"), "system": ("reactor", "raw")}


def _names(parser: argparse.ArgumentParser, kind: str, text: str) -> list[str]:
    """The comma-separated names of *text*, each a known *kind*, else a usage error."""
    names = [name for name in text.split(",") if name]
    for name in names:
        if name not in _KNOWN[kind]:
            parser.error(f"unknown {kind} {name!r}: choose from {', '.join(_KNOWN[kind])}")
    return names


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pubsub", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="fewer messages, asyncio only: a smoke run"
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the results here")
    parser.add_argument("--loops", help="loops to run on (default asyncio,trio; --quick asyncio)")
    parser.add_argument("--brokers", default="mqtt,redis", help="brokers to measure")
    parser.add_argument("--systems", default="reactor,raw", help="reactor and/or raw")
    parser.add_argument("--mqtt", default=URLS["mqtt"], metavar="URL", help="the MQTT broker")
    parser.add_argument("--redis", default=URLS["redis"], metavar="URL", help="the Redis server")
    parser.add_argument("--publisher", metavar="SPEC", help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the table.

    :param argv: command-line arguments (default: ``sys.argv[1:]``)
    :return: 0, or 1 if a run failed (an error, or a message lost or duplicated)
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if args.publisher:
        return _publisher_main(args.publisher)
    loops = _names(parser, "loop", args.loops or ("asyncio" if args.quick else "asyncio,trio"))
    brokers = _names(parser, "broker", args.brokers)
    systems = _names(parser, "system", args.systems)
    latency_count = LATENCY_MESSAGES_QUICK if args.quick else LATENCY_MESSAGES
    burst = BURST_QUICK if args.quick else BURST
    drains = DRAINS_QUICK if args.quick else DRAINS
    urls = {"mqtt": args.mqtt, "redis": args.redis}
    print(
        f"CPython {platform.python_version()} | {platform.platform()} | "
        + ", ".join(f"{k} {v}" for k, v in _versions().items())
    )
    print(
        f"latency: {latency_count} messages at {RATE}/s (first {WARM_UP:.0%} left out); "
        f"throughput: MQTT median of {drains} drains of {BACKLOG} messages, Redis a burst "
        f"of {burst}\n"
    )
    header = (
        f"{'broker':6} {'system':8} {'loop':8} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} "
        f"{'msg/s':>9} {'publisher msg/s':>16}  result"
    )
    print(header)
    print("-" * len(header))
    results: list[dict[str, Any]] = []
    failed = False
    for broker in brokers:
        for system in systems:
            for loop in loops if system == "reactor" or broker == "redis" else ["thread"]:
                if loop == "trio" and not _importable("trio"):
                    print(f"{broker:6} {system:8} {loop:8} skipped: trio is not installed")
                    continue
                row: dict[str, Any] = {"broker": broker, "system": system, "loop": loop}
                try:
                    row["latency"] = _run(
                        system, broker, loop, urls[broker], "latency", latency_count, drains
                    )
                    row["throughput"] = _run(
                        system,
                        broker,
                        loop,
                        urls[broker],
                        "throughput",
                        BACKLOG if broker == "mqtt" else burst,
                        drains,
                    )
                except Exception as exc:  # report and go on with the other runs
                    failed = True
                    row["error"] = repr(exc)
                    print(f"{broker:6} {system:8} {loop:8} ERROR {exc!r}")
                    results.append(row)
                    continue
                lat, thr = row["latency"], row["throughput"]
                problems = [
                    f"{name}: {r['handled']} of {r['messages']} handled, {r['duplicates']} twice"
                    for name, r in (("latency", lat), ("throughput", thr))
                    if r["handled"] != r["messages"] or r["duplicates"]
                ]
                row["result"] = "; ".join(problems) or "ok"
                failed = failed or bool(problems)
                results.append(row)
                print(
                    f"{broker:6} {system:8} {loop:8} {lat['p50_ms']:7.2f} {lat['p99_ms']:7.2f} "
                    f"{lat['max_ms']:7.1f} {thr['per_s']:9.0f} {_rate(thr['publisher_per_s']):>16}"
                    f"  {row['result']}"
                )
    print(f"\nreference (the NOTIFY target): p99 < {REFERENCE_P99_MS:.0f} ms at {RATE}/s")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "environment": {
                        "python": platform.python_version(),
                        "platform": platform.platform(),
                        "versions": _versions(),
                    },
                    "config": {
                        "rate": RATE,
                        "latency_messages": latency_count,
                        "warm_up": WARM_UP,
                        "burst": burst,
                        "backlog": BACKLOG,
                        "drains": drains,
                        "urls": {k: v for k, v in urls.items() if k in brokers},
                    },
                    "results": results,
                },
                indent=2,
            )
        )
    return 1 if failed else 0


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _importable(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
