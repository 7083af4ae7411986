"""The testing kit: firing triggers by name, recording handler calls, virtual time for an app.

Each fired event is compared with the one the real trigger publishes (a timer coming due,
a file written in a watched directory, ``app.notify()``), and webhooks go through the
real ingress, whose signature checks answer 401 to anything signed wrongly.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest

from reactor import Clock, Event, Reactor, Retry, SystemClock
from reactor.sources import files, mqtt, objects, postgres, redis
from reactor.sources.http import on_webhook
from reactor.testing import (
    Capture,
    Recorder,
    VirtualClock,
    fire,
    fire_file_change,
    fire_notification,
    fire_webhook,
    record,
    run,
    virtual_clock,
)

pytestmark = [pytest.mark.anyio, pytest.mark.uvloop]

WAIT = 10


def same_event(fired: Event, real: Event, *, ignore: tuple[str, ...] = ()) -> None:
    """Assert that two events differ only in their id (and the attributes in *ignore*)."""
    skipped = {"id", *ignore}
    fired_fields = {k: v for k, v in fired.to_dict().items() if k not in skipped}
    real_fields = {k: v for k, v in real.to_dict().items() if k not in skipped}
    assert fired_fields == real_fields


async def test_a_fired_timer_event_is_the_one_the_timer_publishes() -> None:
    clock = VirtualClock(start=datetime(2026, 5, 1, tzinfo=UTC))
    app = Reactor(clock=clock)
    capture = Capture()

    @app.cron("0 3 * * *", name="nightly")
    async def nightly(event: Event) -> None:
        await capture(event)

    @app.every(60)
    async def poll(event: Event) -> None:
        await capture(event)

    async with app:
        await clock.advance(3 * 3600)  # the timers come due: the real events
        real_nightly = next(e for e in capture.events if e.subject == "nightly")
        real_poll = capture.events[0]
        count = len(capture.events)
        receipt = await fire(app, "nightly")  # by name
        assert [*receipt.outcomes] == ["nightly"] and receipt.ok
        receipt = await fire(app, poll)  # by handler
        assert [*receipt.outcomes] == ["poll"]
    fired_nightly, fired_poll = capture.events[count:]
    same_event(fired_nightly, real_nightly)
    # The interval timer's real run was due at 60 s, the fired one at "now" (3 h).
    same_event(fired_poll, real_poll, ignore=("time", "data"))
    assert fired_poll.data == {**real_poll.data, "scheduled": "2026-05-01T03:00:00Z"}
    with pytest.raises(LookupError, match=r"no timer named 'weekly'.*\['nightly', "):
        await fire(app, "weekly")


async def test_a_fired_notification_is_what_notify_publishes() -> None:
    app = Reactor()
    capture = Capture()
    app.on_notification("orders.*")(capture)
    async with app:
        app.notify("orders.paid", {"id": 7})
        with anyio.fail_after(WAIT):
            await capture.wait_for(1)
        receipt = await fire_notification(app, "orders.paid", {"id": 7})
    assert receipt.ok and len(receipt.outcomes) == 1
    real, fired = capture.events
    same_event(fired, real, ignore=("time",))


async def test_a_fired_file_change_is_what_the_watcher_publishes(tmp_path: Path) -> None:
    app = Reactor()
    capture = Capture()
    files.on_file_change(app, tmp_path, pattern="*.csv", name="inbox")(capture)
    async with app:
        (tmp_path / "a.csv").write_text("x,y\n")
        with anyio.fail_after(WAIT):
            await capture.wait_for(1)
        receipt = await fire_file_change(app, "inbox", "a.csv", "created")
        deleted = await fire_file_change(app, "inbox", "gone.csv", "deleted")
    assert receipt.ok and deleted.ok
    real, fired, gone = capture.events
    # The batch number is the source's next one.
    same_event(fired, real, ignore=("time", "data"))
    assert fired.data == {**real.data, "batch": real.data["batch"] + 1}
    assert gone.type == files.FILE_DELETED and gone.subject == "gone.csv"
    assert gone.data["size"] is None and gone.data["mtime"] is None
    with pytest.raises(LookupError, match="no file source named 'outbox'"):
        await fire_file_change(app, "outbox", "a.csv")


@pytest.mark.parametrize(
    ("scheme", "data", "subject"),
    [
        ("standard", {"ref": "main"}, None),
        ("github", {"ref": "main"}, "push"),
        ("stripe", {"id": "evt_1", "type": "charge.succeeded"}, "charge.succeeded"),
    ],
)
async def test_a_fired_webhook_is_signed_as_its_sender_signs(
    scheme: Any, data: dict[str, str], subject: str | None
) -> None:
    app = Reactor(clock=VirtualClock())  # signatures are checked against the app's clock
    got: list[Event] = []

    @on_webhook(app, "/hook", type="com.example.hook", secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", scheme=scheme)  # fmt: skip
    async def hook(event: Event) -> None:
        got.append(event)

    @on_webhook(app, "/open", type="com.example.open")
    async def unsigned(event: Event) -> None:
        got.append(event)

    async with app:
        headers = {"X-GitHub-Event": "push"} if scheme == "github" else None
        reply = await fire_webhook(app, "/hook", data, delivery_id="d-1", headers=headers)
        assert reply.status == 202 and reply.ok, reply
        assert reply.outcomes["hook"].ok
        [event] = got
        assert event.data == data and event.subject == subject
        assert event.id == ("evt_1" if scheme == "stripe" else "d-1")
        assert event.source == "/reactor/http/hook" and event.type == "com.example.hook"
        if scheme != "github":  # GitHub signs no timestamp nor id: a repeat is a new delivery
            again = await fire_webhook(app, "/hook", data, delivery_id="d-1")
            assert again.status == 200 and again.body["duplicate"] and not again.outcomes
        assert (await fire_webhook(app, "/open", [1, 2])).ok
    assert got[-1].data == [1, 2]
    with pytest.raises(LookupError, match=r"no webhook route at '/nope'"):
        await fire_webhook(app, "/nope", {})


async def test_a_webhook_the_ingress_refuses_settles_nothing() -> None:
    app = Reactor()
    on_webhook(app, "/hook", type="com.example.hook")(Capture())
    async with app:
        reply = await fire_webhook(app, "/hook", {}, headers={"content-type": "text/plain"})
    assert reply.status == 415 and not reply.ok and not reply.outcomes
    assert "JSON" in reply.body["error"]


async def test_the_events_built_by_broker_trigger_helpers_are_fired() -> None:
    app = Reactor()  # no server needed: only the sources' events are published
    got: list[Event] = []

    async def everything(event: Event) -> None:
        got.append(event)

    app.subscribe("*", everything)
    async with app:
        for event in (
            redis.message("alerts.cpu", b'{"load": 9}', name="alerts"),
            mqtt.message("sensors/1", b"21.5", name="sensors"),
            postgres.notification("orders", '{"id": 1}', name="orders"),
            objects.bucket_event("ObjectCreated:Put", "uploads", "a.csv"),
        ):
            receipt = await fire(app, event)
            assert receipt.event is event and receipt.ok
    assert [e.type for e in got] == [
        redis.MESSAGE_TYPE,
        mqtt.MESSAGE_TYPE,
        postgres.NOTIFICATION_TYPE,
        "com.amazonaws.s3.ObjectCreated:Put",
    ]


async def test_the_recorder_sees_every_attempt_and_how_it_ended() -> None:
    clock = VirtualClock()
    app = Reactor(clock=clock)
    failures = 2

    @app.subscribe("order.*", retry=Retry(attempts=3))
    async def flaky(event: Event) -> None:
        nonlocal failures
        if failures:
            failures -= 1
            raise ConnectionError("down")

    @app.subscribe("order.created", timeout=5)
    async def slow(event: Event) -> None:
        await clock.sleep(60)

    @app.subscribe("refund.*")
    async def refund(event: Event) -> None: ...

    with record(app) as recorder:
        async with app:
            async with anyio.create_task_group() as tg:
                tg.start_soon(app.publish_and_wait, "order.created", {"id": 1})
                await clock.advance(10)
            await app.publish_and_wait("order.paid", {"id": 1})
    assert isinstance(recorder, Recorder)
    assert recorder.outcomes(flaky) == ["failed", "failed", "ok", "ok"]
    assert [call.attempt for call in recorder.calls_to(flaky)] == [1, 2, 3, 1]
    assert isinstance(recorder.calls_to(flaky)[0].error, ConnectionError)
    assert [e.type for e in recorder.events(flaky)] == ["order.created", "order.paid"]
    recorder.assert_ran(flaky, times=4)
    recorder.assert_ran("slow", times=1, status="timed_out")
    call = recorder.assert_ran_with(flaky, type="order.paid", data={"id": 1})
    assert call.ok and call.consumer == "flaky"
    recorder.assert_not_ran(refund)
    assert sorted(recorder.consumers) == ["flaky", "slow"]
    with pytest.raises(AssertionError, match=r"refund did not run; calls: flaky\(order.created"):
        recorder.assert_ran("refund")
    with pytest.raises(AssertionError, match="ran 4 time"):
        recorder.assert_ran(flaky, times=1)
    with pytest.raises(AssertionError, match="did not end 'ok' every time"):
        recorder.assert_ran(flaky, status="ok")
    with pytest.raises(AssertionError, match=r"flaky ran; "):
        recorder.assert_not_ran(flaky)
    with pytest.raises(AssertionError, match=r"not called with \{'data': \{'id': 2\}\}"):
        recorder.assert_ran_with(flaky, data={"id": 2})
    # Outside the block, the handlers are the app's own again.
    async with app:
        await app.publish_and_wait("refund.issued")
    recorder.assert_not_ran(refund)
    recorder.clear()
    assert recorder.calls == []


async def test_the_recorder_refuses_a_consumer_name_that_nothing_has() -> None:
    app = Reactor()

    @app.subscribe("tick", name="ticker")
    async def tick(event: Event) -> None: ...

    sub = app.subscribe("tock", tick, name="gone")
    async with run(app) as recorder:
        await app.publish_and_wait("tock")
        sub.cancel()
    recorder.assert_not_ran("ticker")
    recorder.assert_ran("gone", times=1)  # cancelled since, but it ran: known
    with pytest.raises(LookupError, match=r"no consumer named 'tikcer'.*consumers: ticker"):
        recorder.assert_not_ran("tikcer")
    with pytest.raises(LookupError, match="no consumer named 'tikcer'"):
        recorder.outcomes("tikcer")


async def test_recorder_wait_for() -> None:
    app = Reactor()

    @app.subscribe("tick")
    async def tick(event: Event) -> None: ...

    async with run(app) as recorder:
        for n in range(3):
            await app.publish("tick", n)
        with anyio.fail_after(WAIT):
            calls = await recorder.wait_for(tick, 3)
    assert [call.event.data for call in calls] == [0, 1, 2]


#: An app built at module level, on the system clock, as a user's module builds it.
module_app = Reactor()
hourly_runs: list[datetime] = []


@module_app.every(3600, name="hourly")
async def hourly(event: Event) -> None:
    hourly_runs.append(module_app.clock.now())


def clock_of(app: Reactor) -> Clock:
    return app.clock


async def test_a_module_level_app_gets_a_virtual_clock_for_a_test() -> None:
    own = clock_of(module_app)
    assert isinstance(own, SystemClock)
    hourly_runs.clear()
    start = datetime(2026, 7, 1, tzinfo=UTC)
    with virtual_clock(module_app, VirtualClock(start=start)) as clock:
        assert clock_of(module_app) is clock
        async with module_app:
            with pytest.raises(RuntimeError, match="running app"):
                with virtual_clock(module_app):
                    pass
            await clock.advance(3 * 3600)
    assert clock_of(module_app) is own
    assert hourly_runs == [start.replace(hour=h) for h in (1, 2, 3)]
    # run() does the same, and records.
    async with run(module_app, clock=VirtualClock(start=start)) as recorder:
        assert clock_of(module_app) is not own
        await fire(module_app, "hourly")
    assert clock_of(module_app) is own
    recorder.assert_ran(hourly, times=1)
    with pytest.raises(TypeError, match="VirtualClock"):
        with virtual_clock(module_app, SystemClock()):  # type: ignore[arg-type]
            pass


async def test_what_timers_remember_is_set_back_after_a_virtual_timeline() -> None:
    app = Reactor()
    start = datetime(2026, 7, 1, tzinfo=UTC)
    runs: list[str] = []

    @app.at(datetime(2026, 7, 1, 1, tzinfo=UTC), name="launch")
    async def launch(event: Event) -> None:
        runs.append(event.data["scheduled"])

    for _ in range(2):  # two tests of one module-level app, each on a timeline of its own
        with virtual_clock(app, VirtualClock(start=start)) as clock:
            async with app:
                await clock.advance(7200)
    assert runs == ["2026-07-01T01:00:00Z"] * 2
