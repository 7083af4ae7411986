"""HTTP ingestion benchmark: requests and events per second through ``reactor.sources.http``.

Run ``python -m benchmarks.http [--quick] [--json out.json] [--loops asyncio,uvloop,trio]``.

* **in-process** -- the ASGI application called directly, as a server would call it, by
  ``--clients`` concurrent tasks each making requests one after another (and letting the
  loop run between two, as a server does between two requests). Workloads: ``binary``
  (one CloudEvent per request in binary mode), ``structured`` (one per request,
  ``application/cloudevents+json``), ``webhook`` (a signed Standard Webhooks request
  with a JSON body, HMAC checked), ``batch`` (100 events per
  ``application/cloudevents-batch+json`` request). Requests are built before timing (and
  frozen out of the garbage collector's way, as in ``python -m benchmarks``); the timed
  section ends when a counting consumer has received every event. A request answered
  503 (the queue is full: batches arrive faster than one consumer drains them) is sent
  again after 1 ms, as a sender honouring ``Retry-After`` would, and counted in the
  ``503s`` column; in the end every request must have been answered 202.
* **loopback** -- the same ingress served by uvicorn (when it is installed) in a child
  process on 127.0.0.1, standalone (its lifespan runs the app), and a raw keep-alive
  HTTP/1.1 client in this process on ``--connections`` connections posting binary-mode
  events. The server counts what its consumer received and reports it when it stops;
  the run is an error unless that equals the number of 202 answers.

Target: in-process binary-mode ingestion >= 20,000 events/s on one core,
checked on asyncio; the other figures are reported. The exit status is 1 when a run lost
or refused events, else 0; a missed target shows as MISS.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import gc
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import anyio
from anyio.lowlevel import checkpoint

from reactor import Event, Reactor
from reactor.sources.http import Message, asgi

WORKLOADS = ("binary", "structured", "webhook", "batch")
LOOPS = ("asyncio", "uvloop", "trio")
BATCH = 100
REQUESTS = {"binary": 50_000, "structured": 50_000, "webhook": 40_000, "batch": 1_000}
LOOPBACK_REQUESTS = 20_000
TARGET_EVENTS_PER_S = 20_000.0
SECRET = "whsec_" + base64.b64encode(b"benchmark secret, 32 bytes long!").decode()
EVENT_TIME = datetime(2026, 1, 1, tzinfo=UTC)
RESULT_MARK = "BENCH-RESULT "


# --------------------------------------------------------------------------- in-process


class Exchange:
    """One request's ``receive`` and ``send``, as cheap as a server's."""

    __slots__ = ("message", "status")

    def __init__(self, body: bytes) -> None:
        self.message: Message = {"type": "http.request", "body": body, "more_body": False}
        self.status = 0

    async def receive(self) -> Message:
        return self.message

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]


def build_requests(
    workload: str, count: int, now: int
) -> tuple[list[tuple[dict[str, Any], bytes]], int]:
    """Build the requests of a run: (scope, body) pairs, and the number of events.

    :param workload: one of :data:`WORKLOADS`
    :param count: how many requests
    :param now: the Unix time to sign webhooks at
    :return: the requests and the events they hold
    """
    from reactor.sources.http import Webhook

    signer = Webhook(
        path="/hook", type="bench.hook", source="/s", secret=base64.b64decode(SECRET[6:])
    )
    requests = []
    for i in range(count):
        path = "/"
        if workload == "batch":
            events = [
                Event(type="bench", source="/bench", id=f"{i}-{k}", time=EVENT_TIME, data=k)
                for k in range(BATCH)
            ]
            headers = {"content-type": "application/cloudevents-batch+json"}
            body = Event.batch_to_json(events)
        elif workload == "webhook":
            path = "/hook"
            body = json.dumps({"order": i, "status": "paid"}).encode()
            headers = {
                "content-type": "application/json",
                "webhook-id": f"msg_{i}",
                "webhook-timestamp": str(now),
                "webhook-signature": signer.sign(f"msg_{i}", now, body),
            }
        else:
            event = Event(type="bench", source="/bench", id=str(i), time=EVENT_TIME, data={"i": i})
            headers, body = event.to_http(mode="binary" if workload == "binary" else "structured")
        raw_headers = [(name.encode(), value.encode()) for name, value in headers.items()]
        raw_headers += [(b"content-length", str(len(body)).encode()), (b"host", b"bench")]
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": raw_headers,
        }
        requests.append((scope, body))
    return requests, count * (BATCH if workload == "batch" else 1)


async def in_process(workload: str, count: int, clients: int) -> dict[str, Any]:
    """Measure one workload on the running loop.

    :return: requests, events, seconds, rates and the answers' status counts
    """
    requests, expected = build_requests(workload, count, int(time.time()))
    app = Reactor()
    ingress = asgi(app)
    ingress.webhook("/hook", type="bench.hook", secret=SECRET)
    received = [0]
    done = anyio.Event()

    @app.subscribe("*")
    async def consume(event: Event) -> None:
        received[0] += 1
        if received[0] == expected:
            done.set()

    statuses: Counter[int] = Counter()

    async def client(mine: Sequence[tuple[dict[str, Any], bytes]]) -> None:
        for scope, body in mine:
            while True:
                exchange = Exchange(body)
                await ingress(scope, exchange.receive, exchange.send)
                statuses[exchange.status] += 1
                if exchange.status != 503:
                    break
                # The queue is full: back off as a sender honouring Retry-After would,
                # scaled down from seconds to a millisecond.
                await anyio.sleep(0.001)
            await checkpoint()

    # The prebuilt requests are not garbage: keep the collector from rescanning them.
    gc.collect()
    gc.freeze()
    async with app:
        cpu = time.process_time()
        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for c in range(clients):
                tg.start_soon(client, requests[c::clients])
        if statuses[202] == count:
            with anyio.move_on_after(60):
                await done.wait()
        seconds = time.perf_counter() - start
        cpu = time.process_time() - cpu
    gc.unfreeze()
    return {
        "workload": workload,
        "requests": count,
        "events": expected,
        "received": received[0],
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "seconds": seconds,
        "cpu_share": cpu / seconds if seconds else 0.0,
        "requests_per_s": count / seconds,
        "events_per_s": received[0] / seconds,
        "refused": statuses[503],
        "ok": statuses[202] == count and received[0] == expected,
    }


def run_loop(loop: str, workload: str, count: int, clients: int) -> dict[str, Any]:
    """Run :func:`in_process` on *loop* (``asyncio``, ``uvloop`` or ``trio``)."""
    backend = "trio" if loop == "trio" else "asyncio"
    options = {"use_uvloop": True} if loop == "uvloop" else {}
    # An untimed warm-up first: imports, caches and the allocator's pools are not what
    # this measures (otherwise the first workload measured pays for them).
    anyio.run(
        in_process, workload, min(count, 1000), clients, backend=backend, backend_options=options
    )
    result: dict[str, Any] = anyio.run(
        in_process, workload, count, clients, backend=backend, backend_options=options
    )
    result["loop"] = loop
    return result


# --------------------------------------------------------------------------- loopback


def serve(port: int, http: str) -> None:
    """Child process: serve an app's ingress with uvicorn until SIGINT, then report."""
    import uvicorn

    app = Reactor()
    received = [0]

    @app.subscribe("*")
    async def consume(event: Event) -> None:
        received[0] += 1

    config = uvicorn.Config(
        asgi(app),
        host="127.0.0.1",
        port=port,
        lifespan="on",
        http=http,
        log_level="warning",
        access_log=False,
    )
    # uvicorn re-raises the SIGINT it handled once it has shut down (lifespan included).
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.Server(config).run()
    protocol = getattr(config.http_protocol_class, "__name__", str(config.http_protocol_class))
    loop = "uvloop" if "uvloop" in sys.modules else "asyncio"
    print(RESULT_MARK + json.dumps({"received": received[0], "protocol": protocol, "loop": loop}))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def loopback_client(port: int, requests: list[bytes], connections: int) -> dict[str, Any]:
    """Post *requests* on *connections* keep-alive connections; count the answers."""
    statuses: Counter[int] = Counter()
    length = re.compile(rb"content-length:\s*(\d+)", re.IGNORECASE)

    async def connection(mine: list[bytes]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for raw in mine:
                writer.write(raw)
                head = await reader.readuntil(b"\r\n\r\n")
                found = length.search(head)
                await reader.readexactly(int(found.group(1)) if found else 0)
                statuses[int(head[9:12])] += 1
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    start = time.perf_counter()
    await asyncio.gather(*(connection(requests[c::connections]) for c in range(connections)))
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "statuses": statuses}


def raw_requests(count: int) -> list[bytes]:
    out = []
    for i in range(count):
        event = Event(type="bench", source="/bench", id=str(i), time=EVENT_TIME, data={"i": i})
        headers, body = event.to_http()
        lines = [f"{name}: {value}" for name, value in headers.items()]
        head = "\r\n".join(
            ["POST / HTTP/1.1", "host: 127.0.0.1", *lines, f"content-length: {len(body)}"]
        )
        out.append(head.encode("latin-1") + b"\r\n\r\n" + body)
    return out


def loopback(count: int, connections: int, http: str) -> dict[str, Any]:
    """Run the uvicorn measurement; ``{"skipped": reason}`` without uvicorn."""
    try:
        version = importlib.metadata.version("uvicorn")
    except importlib.metadata.PackageNotFoundError:
        return {"skipped": "uvicorn is not installed (pip install uvicorn)"}
    port = free_port()
    child = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.http", "--serve", str(port), "--http", http],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or child.poll() is not None:
                    return {"error": "the uvicorn child did not start listening"}
                time.sleep(0.05)
        requests = raw_requests(count)
        try:
            import uvloop

            result = uvloop.run(loopback_client(port, requests, connections))
        except ImportError:
            result = asyncio.run(loopback_client(port, requests, connections))
    finally:
        child.send_signal(signal.SIGINT)
        out, _ = child.communicate(timeout=60)
    report: dict[str, Any] = next(
        (
            json.loads(line[len(RESULT_MARK) :])
            for line in out.splitlines()
            if line.startswith(RESULT_MARK)
        ),
        {},
    )
    accepted = result["statuses"][202]
    return {
        "uvicorn": version,
        "protocol": report.get("protocol"),
        "server_loop": report.get("loop"),
        "connections": connections,
        "requests": count,
        "seconds": result["seconds"],
        "statuses": {str(k): v for k, v in sorted(result["statuses"].items())},
        "requests_per_s": count / result["seconds"],
        "server_received": report.get("received"),
        "ok": accepted == count and report.get("received") == accepted,
    }


# --------------------------------------------------------------------------- report


def fmt_rate(value: float) -> str:
    return f"{value / 1000:.1f}k" if value >= 1000 else f"{value:.0f}"


def environment() -> dict[str, Any]:
    versions = {}
    for name in ("anyio", "attrs", "trio", "uvloop", "uvicorn", "h11", "httptools"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        cpu = next(
            (line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu
        )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "load_average": os.getloadavg(),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the figures; return the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.http", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="10x fewer requests, one repetition")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    parser.add_argument("--loops", default=",".join(LOOPS), help="loops for the in-process runs")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="in-process workloads")
    parser.add_argument("--repeat", type=int, help="repetitions (default 3, --quick 1)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent in-process clients")
    parser.add_argument("--connections", type=int, default=32, help="loopback connections")
    parser.add_argument("--no-loopback", action="store_true", help="skip the uvicorn run")
    parser.add_argument(
        "--http",
        default="auto",
        choices=["auto", "h11", "httptools"],
        help="uvicorn's HTTP implementation (auto: httptools when installed)",
    )
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve is not None:
        serve(args.serve, args.http)
        return 0

    scale = 0.1 if args.quick else 1.0
    repeat = args.repeat or (1 if args.quick else 3)
    loops = []
    for loop in args.loops.split(","):
        if loop == "uvloop" and importlib.util.find_spec("uvloop") is None:
            continue
        if loop == "trio" and importlib.util.find_spec("trio") is None:
            continue
        loops.append(loop)
    env = environment()
    print("HTTP ingestion benchmark")
    print(f"CPU: {env['cpu']} ({env['cores']} cores) | CPython {env['python']} | {env['platform']}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()))
    print(f"load average before: {', '.join(f'{x:.2f}' for x in env['load_average'])}")
    print(
        f"mode: {'quick' if args.quick else 'full'}, repeat={repeat}, clients={args.clients}; "
        "cells are median (min-max) over repetitions"
    )
    print()

    runs: list[dict[str, Any]] = []
    failed = False
    summary: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for _ in range(repeat):
        for loop in loops:
            for workload in args.workloads.split(","):
                count = max(1, int(REQUESTS[workload] * scale))
                result = run_loop(loop, workload, count, args.clients)
                runs.append(result)
                summary.setdefault((loop, workload), []).append(result)
                if not result["ok"]:
                    failed = True

    print("in-process: the ASGI app called directly (one core)")
    header = (
        f"{'loop':<8} {'workload':<10} {'requests':>8} {'events':>8}  {'requests/s':<22} "
        f"{'events/s':<22} {'cpu':>4} {'503s':>6}"
    )
    print(header)
    print("-" * len(header))
    figures: dict[tuple[str, str], float] = {}
    for (loop, workload), results in summary.items():
        good = [r for r in results if r["ok"]]
        if len(good) < len(results):
            bad = next(r for r in results if not r["ok"])
            print(
                f"{loop:<8} {workload:<10} ERROR: statuses {bad['statuses']}, "
                f"received {bad['received']} of {bad['events']} events"
            )
            continue
        rps = [r["requests_per_s"] for r in good]
        eps = [r["events_per_s"] for r in good]
        figures[loop, workload] = statistics.median(eps)
        cell_r = f"{fmt_rate(statistics.median(rps))} ({fmt_rate(min(rps))}-{fmt_rate(max(rps))})"
        cell_e = f"{fmt_rate(statistics.median(eps))} ({fmt_rate(min(eps))}-{fmt_rate(max(eps))})"
        share = min(r["cpu_share"] for r in good)
        print(
            f"{loop:<8} {workload:<10} {good[0]['requests']:>8} {good[0]['events']:>8}  "
            f"{cell_r:<22} {cell_e:<22} {share:>4.2f} {max(r['refused'] for r in good):>6}"
        )
    print()

    loop_result: dict[str, Any] | None = None
    if not args.no_loopback:
        count = max(1, int(LOOPBACK_REQUESTS * scale))
        loop_result = loopback(count, args.connections, args.http)
        if "skipped" in loop_result:
            print(f"loopback: skipped: {loop_result['skipped']}")
        elif "error" in loop_result:
            failed = True
            print(f"loopback: ERROR {loop_result['error']}")
        else:
            print(
                f"loopback: uvicorn {loop_result['uvicorn']} ({loop_result['protocol']}, "
                f"{loop_result['server_loop']} loop) in a child process, {loop_result['connections']} "
                f"keep-alive connections, {loop_result['requests']} binary-mode requests"
            )
            print(
                f"  {fmt_rate(loop_result['requests_per_s'])} requests/s (= events/s); answers "
                f"{loop_result['statuses']}; the server's consumer received "
                f"{loop_result['server_received']}"
            )
            if not loop_result["ok"]:
                failed = True
                print("  ERROR: accepted and received counts differ")
        print()

    print("Targets")
    binding = figures.get(("asyncio", "binary"))
    if binding is None:
        verdict, value = "n/a", "not measured"
    else:
        verdict = "PASS" if binding >= TARGET_EVENTS_PER_S else "MISS"
        value = f"{binding:,.0f} events/s"
    print(f"asyncio in-process binary-mode ingestion >= 20,000 events/s: {value}  {verdict}")
    for loop in loops:
        if loop != "asyncio" and (loop, "binary") in figures:
            other = figures[loop, "binary"]
            mark = "PASS" if other >= TARGET_EVENTS_PER_S else "MISS"
            print(f"({loop} in-process binary-mode: {other:,.0f} events/s  {mark})")

    if args.json:
        with open(args.json, "w") as out:
            json.dump(
                {
                    "environment": env,
                    "mode": "quick" if args.quick else "full",
                    "repeat": repeat,
                    "clients": args.clients,
                    "runs": runs,
                    "loopback": loop_result,
                    "target_events_per_s": TARGET_EVENTS_PER_S,
                    "asyncio_binary_events_per_s": binding,
                },
                out,
                indent=2,
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
