"""reactor.prometheus: the app's metrics, as the real prometheus-client parser reads them."""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime

import anyio
import pytest

from reactor import Backoff, Event, Reactor, Retry
from reactor.testing import VirtualClock

pytest.importorskip("prometheus_client")
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from reactor.prometheus import ReactorCollector, serve_metrics

pytestmark = pytest.mark.anyio

START = datetime(2026, 1, 1, tzinfo=UTC)
NO_WAIT = Backoff(initial=0.0, maximum=0.0, jitter=False)
PATIENCE = 10


def scrape(registry: CollectorRegistry) -> dict[str, Metric]:
    text = generate_latest(registry).decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def value(family: Metric, sample: str = "", **labels: str) -> float:
    name = sample or family.name + ("_total" if family.type == "counter" else "")
    found = [s.value for s in family.samples if s.name == name and s.labels == labels]
    assert len(found) == 1, (name, labels, family.samples)
    return found[0]


def buckets(family: Metric, **labels: str) -> dict[float, float]:
    return {
        float(s.labels["le"]): s.value
        for s in family.samples
        if s.name == family.name + "_bucket"
        and {k: v for k, v in s.labels.items() if k != "le"} == labels
    }


def app_with_consumers(clock: VirtualClock | None = None) -> Reactor:
    app = Reactor(clock=clock)

    @app.subscribe("job", name="fine")
    async def fine(event: Event) -> None:
        pass

    @app.subscribe("job", name="broken", retry=Retry(attempts=3, backoff=NO_WAIT))
    async def broken(event: Event) -> None:
        raise ValueError("always")

    return app


async def test_the_counters_and_histograms_parse_and_add_up() -> None:
    app = app_with_consumers()
    registry = CollectorRegistry()
    registry.register(ReactorCollector(app, durations=True))
    async with app:
        for n in range(5):
            await app.publish_and_wait("job", n)
    metrics = scrape(registry)

    assert value(metrics["reactor_events_published"]) == 5
    deliveries = metrics["reactor_deliveries"]
    assert deliveries.type == "counter"
    assert value(deliveries, consumer="fine", outcome="ok") == 5
    assert value(deliveries, consumer="fine", outcome="dead_lettered") == 0
    assert value(deliveries, consumer="broken", outcome="ok") == 0
    assert value(deliveries, consumer="broken", outcome="dead_lettered") == 5
    assert value(metrics["reactor_delivery_failures"], consumer="broken") == 15
    assert value(metrics["reactor_delivery_retries"], consumer="broken") == 10
    assert value(metrics["reactor_delivery_timeouts"], consumer="broken") == 0
    assert value(metrics["reactor_dead_letters"]) == 5
    assert value(metrics["reactor_in_flight_events"]) == 0
    assert value(metrics["reactor_queue_depth"]) == 0
    assert value(metrics["reactor_queue_capacity"]) == app.queue.statistics().capacity
    assert value(metrics["reactor_consumer_pending"], consumer="fine") == 0

    # One duration per attempt: 5 for "fine", 3 attempts x 5 for "broken".
    durations = metrics["reactor_delivery_duration_seconds"]
    assert durations.type == "histogram"
    assert value(durations, "reactor_delivery_duration_seconds_count", consumer="fine") == 5
    assert value(durations, "reactor_delivery_duration_seconds_count", consumer="broken") == 15
    fine = buckets(durations, consumer="fine")
    assert fine[math.inf] == 5
    assert list(fine.values()) == sorted(fine.values())  # cumulative

    latency = metrics["reactor_dispatch_latency_seconds"]
    assert latency.type == "histogram"
    assert value(latency, "reactor_dispatch_latency_seconds_count") == 5
    assert buckets(latency)[math.inf] == 5
    assert value(latency, "reactor_dispatch_latency_seconds_sum") > 0


async def test_duplicates_dropped_by_dedupe_are_counted() -> None:
    app = Reactor(clock=VirtualClock(start=START), dedupe=60)
    registry = CollectorRegistry()
    registry.register(ReactorCollector(app))
    event = Event(type="job", source="/test", id="job-1")
    async with app:
        for _ in range(3):
            await app.publish(event)
    metrics = scrape(registry)
    assert metrics["reactor_events_deduplicated"].type == "counter"
    assert value(metrics["reactor_events_deduplicated"]) == 2
    assert value(metrics["reactor_events_published"]) == 1


async def test_a_timed_out_attempt_counts_as_a_timeout_and_a_failure() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    registry = CollectorRegistry()
    registry.register(ReactorCollector(app, durations=False))

    @app.subscribe("job", name="hang", timeout=1.0)
    async def hang(event: Event) -> None:
        await anyio.sleep_forever()

    with anyio.fail_after(PATIENCE):
        async with app, anyio.create_task_group() as tg:
            tg.start_soon(app.publish_and_wait, "job")
            await clock.advance(1.0)
    metrics = scrape(registry)
    assert value(metrics["reactor_delivery_timeouts"], consumer="hang") == 1
    assert value(metrics["reactor_delivery_failures"], consumer="hang") == 1
    assert value(metrics["reactor_deliveries"], consumer="hang", outcome="dead_lettered") == 1
    assert "reactor_delivery_duration_seconds" not in metrics
    assert app.middleware == ()


async def test_the_dispatch_latency_buckets_agree_with_the_apps_percentiles() -> None:
    app = app_with_consumers()
    async with app:
        for n in range(20):
            await app.publish_and_wait("job", n)
    latency = app.stats().latency
    # Bounds chosen from the app's own percentiles (of the same histogram): half the
    # median holds fewer than half the samples, the slowest slot's top holds them all.
    low, high = latency.p50 / 2, latency.max + 1e-6
    registry = CollectorRegistry()
    registry.register(ReactorCollector(app, durations=False, buckets=[low, high, 3600.0]))
    found = buckets(scrape(registry)["reactor_dispatch_latency_seconds"])
    assert list(found) == [low, high, 3600.0, math.inf]
    assert found[low] < 10
    assert found[high] == found[3600.0] == found[math.inf] == latency.count == 20


async def test_source_statistics_become_metrics() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    registry = CollectorRegistry()
    registry.register(ReactorCollector(app))

    @app.every(seconds=10, name="tick")
    async def tick(event: Event) -> None:
        pass

    with anyio.fail_after(PATIENCE):
        async with app:
            await clock.advance(30)
    metrics = scrape(registry)
    statistics = app.stats().sources
    [name] = statistics
    fired = statistics[name]["fired"]
    assert isinstance(fired, int) and fired >= 3
    assert value(metrics["reactor_source_statistic"], source=name, name="fired") == fired


def http_scope(
    path: str, method: str = "GET", headers: Iterable[tuple[bytes, bytes]] = ()
) -> dict[str, object]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": list(headers),
    }


async def get(
    app: Reactor, path: str, method: str = "GET", accept: str | None = None
) -> tuple[int, dict[bytes, bytes], bytes]:
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    headers = [] if accept is None else [(b"accept", accept.encode())]
    await app.asgi(http_scope(path, method, headers), receive, send)  # type: ignore[arg-type]
    start, body = sent
    status = start["status"]
    assert isinstance(status, int)
    response_headers = dict(start["headers"])  # type: ignore[call-overload]
    payload = body["body"]
    assert isinstance(payload, bytes)
    return status, response_headers, payload


async def test_the_ingress_serves_the_registry_at_metrics() -> None:
    app = app_with_consumers()
    registry = CollectorRegistry()
    registry.register(ReactorCollector(app))
    serve_metrics(app, registry)
    async with app:
        await app.publish_and_wait("job", 1)
        status, headers, body = await get(app, "/metrics")
        assert status == 200
        assert headers[b"content-type"].startswith(b"text/plain; version=0.0.4")
        metrics = {f.name: f for f in text_string_to_metric_families(body.decode())}
        assert value(metrics["reactor_deliveries"], consumer="fine", outcome="ok") == 1

        status, headers, body = await get(
            app, "/metrics", accept="application/openmetrics-text; version=1.0.0"
        )
        assert status == 200
        assert headers[b"content-type"].startswith(b"application/openmetrics-text")
        assert body.endswith(b"# EOF\n")

        status, headers, body = await get(app, "/metrics", method="HEAD")
        assert (status, body) == (200, b"")
        status, headers, _ = await get(app, "/metrics", method="POST")
        assert status == 405 and headers[b"allow"] == b"GET, HEAD"


async def test_bad_buckets_are_refused() -> None:
    with pytest.raises(ValueError, match="increasing"):
        ReactorCollector(Reactor(), buckets=[1.0, 0.5])


async def test_the_metrics_path_is_not_shared_with_webhooks() -> None:
    app = Reactor()
    serve_metrics(app, CollectorRegistry())
    with pytest.raises(ValueError, match="taken by a receiver or a page"):
        app.asgi.webhook("/metrics", type="com.example.hook")
    app.asgi.webhook("/hook", type="com.example.hook")
    with pytest.raises(ValueError, match="routed already"):
        serve_metrics(app, CollectorRegistry(), path="/hook")


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_real_server_serves_metrics_to_a_scraper() -> None:
    # uvicorn runs on asyncio only. The socket listens before the server starts, so the
    # client's connection waits for it: no readiness polling.
    import socket

    uvicorn = pytest.importorskip("uvicorn")
    app = app_with_consumers()
    registry = CollectorRegistry()
    registry.register(ReactorCollector(app))
    serve_metrics(app, registry)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app.asgi, lifespan="off", log_level="warning", access_log=False)
    )
    request = (
        f"GET /metrics HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nconnection: close\r\n\r\n"
    ).encode()
    with sock, anyio.fail_after(PATIENCE):
        async with app, anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            await app.publish_and_wait("job", 1)
            async with await anyio.connect_tcp("127.0.0.1", port) as stream:
                await stream.send(request)
                chunks = [chunk async for chunk in stream]
            server.should_exit = True
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    metrics = {f.name: f for f in text_string_to_metric_families(body.decode())}
    assert value(metrics["reactor_deliveries"], consumer="broken", outcome="dead_lettered") == 1


async def test_durations_are_kept_per_consumer_of_one_handler() -> None:
    app = Reactor()
    registry = CollectorRegistry()
    registry.register(ReactorCollector(app, durations=True))

    async def handler(event: Event) -> None:
        pass

    app.subscribe("a", handler, name="on-a")
    app.subscribe("b", handler, name="on-b")
    async with app:
        for _ in range(3):
            await app.publish_and_wait("a")
        await app.publish_and_wait("b")
    durations = scrape(registry)["reactor_delivery_duration_seconds"]
    assert value(durations, "reactor_delivery_duration_seconds_count", consumer="on-a") == 3
    assert value(durations, "reactor_delivery_duration_seconds_count", consumer="on-b") == 1


async def test_a_missing_extra_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "prometheus_client.core", None)
    with pytest.raises(ModuleNotFoundError) as caught:
        ReactorCollector(Reactor())
    assert str(caught.value) == (
        "prometheus_client.core is not installed; install it with: "
        "pip install 'reactor-events[prometheus]'"
    )
