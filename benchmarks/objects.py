"""Object-storage benchmark: S3 notification records per second, decoded and over HTTP.

Run ``python -m benchmarks.objects [--quick] [--json out.json] [--loops asyncio,trio]
[--sections decoder,http,polling,polling-memory]``.

Each section measures one way bucket events reach an app and reports rows of figures;
every run must account for every record, else it is an error (exit status 1).

* **decoder** -- :func:`reactor.sources.objects.decode_s3` alone (no app, no loop) on
  prebuilt message bodies as MinIO posts them (JSON bytes, URL-encoded keys): one record
  per message (what AWS and MinIO send) and ten; and one record per message through a
  :class:`~reactor.sources.objects.BucketFilter` that passes half of them. Records/s
  over the whole list, median of the repetitions.
* **http** -- the app's HTTP ingress called in-process, as a server would call it (as
  ``benchmarks.http`` does), by 8 concurrent clients: a bucket route with a bearer
  token taking MinIO webhook bodies of one record (``minio``) and of ten
  (``minio x10``), and an SNS route taking notifications whose signatures it verifies
  (``sns``: RSA 2048, ``SignatureVersion`` 2, one certificate served by the route's
  ``fetch`` hook and cached). The timed section ends when a counting consumer has
  received every record's event; records/s end to end, request to handler.

* **polling** -- what one poll of the bucket poller (``on_bucket_change``) costs, per
  10,000 objects listed. A private S3 server (moto's, ``benchmarks/_s3server.py``) runs
  in a child process on 127.0.0.1 with 10,000 objects under one prefix (``--quick``:
  1,000), seeded into it at once. One app polls the prefix (``page_size=1000``, the state
  in a temporary file) with a counting handler: ``baseline`` is the first start (list
  everything and store it as the state; ``async with app:`` returns when it is done),
  ``unchanged`` a ``source.poll()`` with nothing changed, ``changed`` one after 100
  objects spread over the prefix (``--quick``: 10) were overwritten through the S3 API
  (not timed); each changed poll must publish exactly those, and every event must be
  handled. Per poll: the wall time, the CPU time of the polling process
  (``time.process_time()``: botocore's HTTP and XML parsing, the merge with the stored
  state, SQLite, publishing) and the CPU time of the S3 server's process (moto builds
  every page from the whole bucket, so the wall time says more about moto than about a
  real store), each scaled to 10,000 objects listed.
* **polling-memory** -- the peak of the Python allocations (``tracemalloc``) during one
  unchanged poll of 10,000 objects and of 1,000 (``--quick``: 1,000 and 100): the poller
  holds one page at a time, so the peak should not grow with the number of objects.

Sections are entries of :data:`SECTIONS` (a name, a title, a function of the
:class:`Config` returning rows). There are no targets: the figures are reported.
"""

from __future__ import annotations

import argparse
import base64
import gc
import json
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import anyio
import anyio.to_thread
from anyio.lowlevel import checkpoint

from reactor import Event, Reactor
from reactor.sources.objects import (
    BucketFilter,
    BucketPollSource,
    decode_s3,
    on_bucket_change,
    on_bucket_event,
    s3_record,
)

from ._s3server import ACCESS_KEY, SECRET_KEY, S3Server
from .http import Exchange, environment, fmt_rate

#: Messages decoded per repetition (``--quick``: a tenth).
DECODER_MESSAGES = 20_000
#: Requests per HTTP workload (``--quick``: a tenth).
HTTP_REQUESTS = {"minio": 20_000, "minio x10": 2_000, "sns": 4_000}
CLIENTS = 8
TOKEN = "benchmark-token"
TOPIC = "arn:aws:sns:us-east-1:123456789012:uploads"
CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-bench.pem"
LOOPS = ("asyncio", "trio")
#: Objects under the polled prefix (``--quick``: a tenth).
POLL_OBJECTS = 10_000
#: Objects overwritten before each changed poll (``--quick``: a tenth).
POLL_CHANGES = 100
POLL_PAGE_SIZE = 1000
#: The polling figures are per this many objects listed.
PER_LISTED = 10_000


@dataclass
class Config:
    """What every section is given."""

    quick: bool
    repeat: int
    loops: Sequence[str]

    def count(self, full: int) -> int:
        """The size of a run: *full*, or a tenth of it with ``--quick``."""
        return max(10, full // 10) if self.quick else full


@dataclass
class Section:
    """One measurement of the benchmark.

    :ivar name: its ``--sections`` name
    :ivar title: the heading of its table
    :ivar run: measures; returns rows (dicts with at least ``"case"``, ``"ok"`` and the
        columns), one per case and repetition
    :ivar columns: the figures of a row to print, with their headings
    """

    name: str
    title: str
    run: Callable[[Config], list[dict[str, Any]]]
    columns: dict[str, str] = field(default_factory=dict)


# -------------------------------------------------------------------------------- bodies


def minio_body(index: int, records: int) -> bytes:
    """A webhook body as MinIO posts it, with *records* records (keys with a space).

    Even messages are about bucket ``uploads``, odd ones about ``archive``.
    """
    bucket = "uploads" if index % 2 == 0 else "archive"
    recs = [
        s3_record(
            "s3:ObjectCreated:Put",
            bucket,
            f"incoming/day {index}-{k}.csv",
            time=datetime(2030, 1, 1, tzinfo=UTC) + timedelta(milliseconds=index),
            size=1024 + k,
            event_source="minio:s3",
            region="",
            request_id=f"{index:016X}",
            host_id=f"{k:064x}",
        )
        for k in range(records)
    ]
    return json.dumps(
        {"EventName": "s3:ObjectCreated:Put", "Key": f"{bucket}/x", "Records": recs}
    ).encode()


# ------------------------------------------------------------------------------- decoder


def _decoder(config: Config) -> list[dict[str, Any]]:
    count = config.count(DECODER_MESSAGES)
    cases: list[tuple[str, int, BucketFilter | None]] = [
        ("1 record/message", 1, None),
        ("10 records/message", 10, None),
        ("1 record, filtered", 1, BucketFilter(bucket="uploads", suffix=".csv")),
    ]
    rows = []
    for case, per_message, where in cases:
        messages = max(1, count // per_message)
        bodies = [minio_body(i, per_message) for i in range(messages)]
        records = messages * per_message
        decode_s3(bodies[0], where=where)  # warm up
        for _ in range(config.repeat):
            gc.collect()
            start = time.perf_counter()
            events = filtered = refused = 0
            for body in bodies:
                decoded = decode_s3(body, where=where)
                events += len(decoded.events)
                filtered += decoded.filtered
                refused += len(decoded.refused)
            seconds = time.perf_counter() - start
            rows.append(
                {
                    "case": case,
                    "records": records,
                    "events": events,
                    "filtered": filtered,
                    "seconds": seconds,
                    "records_per_s": records / seconds,
                    "us_per_record": seconds / records * 1e6,
                    "ok": refused == 0 and events + filtered == records,
                }
            )
    return rows


# ---------------------------------------------------------------------------------- http


class _Signer:
    """Signs SNS envelopes with a key made for the benchmark; serves its certificate."""

    def __init__(self) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(datetime(2000, 1, 1, tzinfo=UTC))
            .not_valid_after(datetime(2100, 1, 1, tzinfo=UTC))
            .sign(self._key, hashes.SHA256())
            .public_bytes(serialization.Encoding.PEM)
        )

    async def fetch(self, url: str) -> bytes:
        return self.certificate

    def envelope(self, index: int, message: str, now: datetime) -> bytes:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        envelope = {
            "Type": "Notification",
            "MessageId": f"bench-{index}",
            "TopicArn": TOPIC,
            "Subject": "Amazon S3 Notification",
            "Message": message,
            "Timestamp": now.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "SignatureVersion": "2",
            "SigningCertURL": CERT_URL,
        }
        text = "".join(
            f"{name}\n{envelope[name]}\n"
            for name in ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
        )
        signature = self._key.sign(text.encode(), padding.PKCS1v15(), hashes.SHA256())
        envelope["Signature"] = base64.b64encode(signature).decode()
        return json.dumps(envelope).encode()


def _scope(path: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    raw = [(name.encode(), value.encode()) for name, value in headers.items()]
    raw.append((b"content-length", str(len(body)).encode()))
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": raw,
    }


def _requests(
    workload: str, count: int, signer: _Signer | None
) -> tuple[list[tuple[dict[str, Any], bytes]], int]:
    """Build a workload's requests: (scope, body) pairs, and the records they hold."""
    per_request = 10 if workload == "minio x10" else 1
    out = []
    now = datetime.now(UTC)
    for i in range(count):
        body = minio_body(i, per_request)
        if workload == "sns":
            assert signer is not None
            message = json.dumps({"Records": json.loads(body)["Records"]})
            body = signer.envelope(i, message, now)
            headers = {
                "content-type": "text/plain; charset=UTF-8",
                "x-amz-sns-message-type": "Notification",
                "x-amz-sns-message-id": f"bench-{i}",
                "x-amz-sns-topic-arn": TOPIC,
            }
            out.append((_scope("/sns", headers, body), body))
        else:
            headers = {"content-type": "application/json", "authorization": f"Bearer {TOKEN}"}
            out.append((_scope("/minio", headers, body), body))
    return out, count * per_request


async def _http_run(workload: str, count: int, signer: _Signer | None) -> dict[str, Any]:
    requests, expected = _requests(workload, count, signer)
    app = Reactor()
    received = [0]
    done = anyio.Event()

    async def consume(event: Event) -> None:
        received[0] += 1
        if received[0] == expected:
            done.set()

    if workload == "sns":
        assert signer is not None
        on_bucket_event(app, "/sns", sns=[TOPIC], fetch=signer.fetch, name="count")(consume)
    else:
        on_bucket_event(app, "/minio", token=TOKEN, name="count")(consume)
    ingress = app.asgi
    statuses: Counter[int] = Counter()

    async def client(mine: Sequence[tuple[dict[str, Any], bytes]]) -> None:
        for scope, body in mine:
            while True:
                exchange = Exchange(body)
                await ingress(scope, exchange.receive, exchange.send)
                statuses[exchange.status] += 1
                if exchange.status != 503:
                    break
                await anyio.sleep(0.001)  # a full queue: back off as Retry-After asks
            await checkpoint()

    gc.collect()
    gc.freeze()
    async with app:
        cpu = time.process_time()
        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for c in range(CLIENTS):
                tg.start_soon(client, requests[c::CLIENTS])
        if statuses[202] == count:
            with anyio.move_on_after(60):
                await done.wait()
        seconds = time.perf_counter() - start
        cpu = time.process_time() - cpu
    gc.unfreeze()
    return {
        "requests": count,
        "records": expected,
        "received": received[0],
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "seconds": seconds,
        "cpu_share": cpu / seconds if seconds else 0.0,
        "requests_per_s": count / seconds,
        "records_per_s": received[0] / seconds,
        "ok": statuses[202] == count and received[0] == expected,
    }


def _http(config: Config) -> list[dict[str, Any]]:
    try:
        signer: _Signer | None = _Signer()
    except ImportError:
        signer = None  # reported below: the sns workload needs reactor-events[sns]
    rows = []
    for loop in config.loops:
        backend = "trio" if loop == "trio" else "asyncio"
        for workload, full in HTTP_REQUESTS.items():
            if workload == "sns" and signer is None:
                rows.append({"case": f"{loop} {workload}", "skipped": "cryptography missing"})
                continue
            count = config.count(full)
            anyio.run(_http_run, workload, min(count, 200), signer, backend=backend)  # warm up
            for _ in range(config.repeat):
                result = anyio.run(_http_run, workload, count, signer, backend=backend)
                rows.append({"case": f"{loop} {workload}", **result})
    return rows


# ------------------------------------------------------------------------------- polling


def _poll_options(server: S3Server, state: str) -> dict[str, Any]:
    return {
        "endpoint_url": server.endpoint,
        "access_key_id": ACCESS_KEY,
        "secret_access_key": SECRET_KEY,
        "page_size": POLL_PAGE_SIZE,
        "interval": 3600.0,  # only the polls the benchmark asks for
        "state": state,
    }


def _server_cpu(pid: int) -> Callable[[], float]:
    """A function returning the CPU seconds (user + system) of process *pid* so far."""
    import psutil

    process = psutil.Process(pid)

    def cpu() -> float:
        times = process.cpu_times()
        return float(times.user + times.system)

    return cpu


async def _poll_run(
    server: S3Server, bucket: str, objects: int, repeat: int, changes: int
) -> list[dict[str, Any]]:
    """Baseline, *repeat* unchanged polls, *repeat* changed polls: one row each."""
    s3 = server.client()
    server_cpu = _server_cpu(server.pid)
    scale = PER_LISTED / objects
    rows: list[dict[str, Any]] = []
    expected = changes * repeat
    handled = 0
    all_handled = anyio.Event()

    async def count(event: Event) -> None:
        nonlocal handled
        handled += 1
        if handled == expected:
            all_handled.set()

    def row(case: str, start: tuple[float, float, float], ok: bool) -> dict[str, Any]:
        wall, cpu, served = start
        return {
            "case": case,
            "objects": objects,
            "wall_ms": (time.perf_counter() - wall) * scale * 1000,
            "cpu_ms": (time.process_time() - cpu) * scale * 1000,
            "server_cpu_ms": (server_cpu() - served) * scale * 1000,
            "ok": ok,
        }

    def now() -> tuple[float, float, float]:
        return time.perf_counter(), time.process_time(), server_cpu()

    with tempfile.TemporaryDirectory() as tmp:
        app = Reactor()
        on_bucket_change(app, f"s3://{bucket}/in/", **_poll_options(server, f"{tmp}/s"))(count)
        start = now()
        async with app:
            rows.append(row("baseline", start, True))
            (source,) = app.sources
            assert isinstance(source, BucketPollSource)
            for _ in range(repeat):
                start = now()
                found = await source.poll()
                same = found.listed == objects and not (
                    found.created or found.modified or found.removed
                )
                rows.append(row("unchanged", start, same) | {"found": repr(found)})
            step = max(1, objects // changes)
            for round_ in range(repeat):
                for i in range(0, step * changes, step):
                    put = partial(
                        s3.put_object,
                        Bucket=bucket,
                        Key=f"in/{i:06d}",
                        Body=f"{round_} {time.time_ns()}".encode(),
                    )
                    await anyio.to_thread.run_sync(put)
                start = now()
                found = await source.poll()
                right = found.modified == changes and not (found.created or found.removed)
                rows.append(row("changed", start, right) | {"found": repr(found)})
            with anyio.move_on_after(60):
                await all_handled.wait()
    for r in rows:
        r["handled"] = handled
        r["ok"] = r["ok"] and handled == expected
    return rows


def _polling(config: Config) -> list[dict[str, Any]]:
    objects, changes = config.count(POLL_OBJECTS), config.count(POLL_CHANGES)
    rows: list[dict[str, Any]] = []
    with S3Server() as server:
        bucket = f"bench-{time.time_ns() % 10**9}"
        server.seed(bucket, "in/", objects)
        for loop in config.loops:
            backend = "trio" if loop == "trio" else "asyncio"
            measured = anyio.run(
                _poll_run, server, bucket, objects, config.repeat, changes, backend=backend
            )
            rows.extend({**r, "case": f"{loop} {r['case']}"} for r in measured)
    return rows


async def _peak(server: S3Server, bucket: str) -> float:
    """The peak heap (KiB) of one unchanged poll of *bucket*, after a baseline."""
    with tempfile.TemporaryDirectory() as tmp:
        app = Reactor()
        app.add_source(BucketPollSource(f"s3://{bucket}/in/", **_poll_options(server, f"{tmp}/s")))
        async with app:
            (source,) = app.sources
            assert isinstance(source, BucketPollSource)
            tracemalloc.start()
            try:
                before, _ = tracemalloc.get_traced_memory()
                await source.poll()
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
    return (peak - before) / 1024


def _polling_memory(config: Config) -> list[dict[str, Any]]:
    objects = config.count(POLL_OBJECTS)
    rows = []
    with S3Server() as server:
        for count in (objects, objects // 10):
            bucket = f"bench-{time.time_ns() % 10**9}"
            server.seed(bucket, "in/", count)
            for _ in range(config.repeat):
                peak = anyio.run(_peak, server, bucket)
                rows.append({"case": f"{count} objects", "peak_kib": peak, "ok": True})
    return rows


# -------------------------------------------------------------------------------- report

SECTIONS: dict[str, Section] = {
    "decoder": Section(
        "decoder",
        "decode_s3 alone (no app): records/s",
        _decoder,
        {"records": "records", "records_per_s": "records/s", "us_per_record": "µs/record"},
    ),
    "http": Section(
        "http",
        "the ingress in-process, request to handler: records/s",
        _http,
        {
            "requests": "requests",
            "records": "records",
            "requests_per_s": "requests/s",
            "records_per_s": "records/s",
            "cpu_share": "cpu",
        },
    ),
    "polling": Section(
        "polling",
        f"the bucket poller against moto's S3 server, per {PER_LISTED:,} objects listed",
        _polling,
        {"wall_ms": "wall ms", "cpu_ms": "poller CPU ms", "server_cpu_ms": "server CPU ms"},
    ),
    "polling-memory": Section(
        "polling-memory",
        "the bucket poller: peak Python heap during one unchanged poll",
        _polling_memory,
        {"peak_kib": "KiB"},
    ),
}


def _cell(values: list[float], key: str) -> str:
    if key.endswith("_per_s"):
        mid, low, high = statistics.median(values), min(values), max(values)
        return f"{fmt_rate(mid)} ({fmt_rate(low)}-{fmt_rate(high)})"
    if key in ("cpu_share", "us_per_record"):
        return f"{statistics.median(values):.2f}"
    return f"{statistics.median(values):.0f}"


def report(section: Section, rows: list[dict[str, Any]]) -> bool:
    """Print a section's table (median (min-max) over repetitions); return whether all is well."""
    print(section.title)
    header = f"{'case':<22} " + " ".join(f"{title:>24}" for title in section.columns.values())
    print(header)
    print("-" * len(header))
    good = True
    cases: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        cases.setdefault(row["case"], []).append(row)
    for case, results in cases.items():
        if "skipped" in results[0]:
            print(f"{case:<22} skipped: {results[0]['skipped']}")
            continue
        bad = [r for r in results if not r["ok"]]
        if bad:
            good = False
            print(
                f"{case:<22} ERROR: {json.dumps({k: v for k, v in bad[0].items() if k != 'case'})}"
            )
            continue
        cells = [_cell([float(r[key]) for r in results], key) for key in section.columns]
        print(f"{case:<22} " + " ".join(f"{cell:>24}" for cell in cells))
    print()
    return good


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the figures; return the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.objects", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="10x smaller runs, one repetition")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    parser.add_argument("--loops", default=",".join(LOOPS), help="loops of the HTTP section")
    parser.add_argument("--sections", default=",".join(SECTIONS), help="sections to run")
    parser.add_argument("--repeat", type=int, help="repetitions (default 3, --quick 1)")
    args = parser.parse_args(argv)
    names = args.sections.split(",")
    unknown = [name for name in names if name not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    config = Config(
        quick=args.quick,
        repeat=args.repeat or (1 if args.quick else 3),
        loops=[loop for loop in args.loops.split(",") if loop in LOOPS],
    )
    env = environment()
    print("Object-storage benchmark")
    print(f"CPU: {env['cpu']} ({env['cores']} cores) | CPython {env['python']} | {env['platform']}")
    print(f"load average before: {', '.join(f'{x:.2f}' for x in env['load_average'])}")
    print(
        f"mode: {'quick' if config.quick else 'full'}, repeat={config.repeat}; "
        "cells are median (min-max) over repetitions"
    )
    print()
    results: dict[str, list[dict[str, Any]]] = {}
    good = True
    for name in names:
        section = SECTIONS[name]
        results[name] = section.run(config)
        good = report(section, results[name]) and good
    if args.json:
        with open(args.json, "w") as out:
            json.dump(
                {
                    "environment": env,
                    "mode": "quick" if config.quick else "full",
                    "repeat": config.repeat,
                    "loops": list(config.loops),
                    "sections": results,
                },
                out,
                indent=2,
            )
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
