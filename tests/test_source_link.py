"""The connection bookkeeping shared by the sources that listen to a server."""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from datetime import UTC, datetime, timedelta

import anyio
import pytest

from reactor import (
    Backoff,
    Event,
    PayloadTooLargeError,
    QueueUnavailableError,
    Reactor,
    SourceUnavailableError,
)
from reactor.abc import GAP_EVENT_TYPE
from reactor.queues.memory import MemoryQueue
from reactor.sources._link import Link, configured, connection_failure, password_of, redacted
from reactor.testing import Capture

START = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("target", "shown"),
    [
        ("postgresql://app:s3cret@db:5432/shop", "postgresql://app:***@db:5432/shop"),
        ("redis://:s3cret@cache:6379/0", "redis://:***@cache:6379/0"),
        ("mqtt://broker:1883", "mqtt://broker:1883"),
        ("host=db password=s3cret dbname=shop", "host=db password=*** dbname=shop"),
        ("host=db password = 'it''s s3cret' user=x", "host=db password = *** user=x"),
        ("redis://u:p@host:notaport/0", "redis://u:***@host:notaport/0"),
        ("redis://u:p@[bad/0", "redis://***@[bad/0"),
    ],
)
def test_passwords_are_hidden(target: str, shown: str) -> None:
    assert redacted(target) == shown


def test_an_outage_is_logged_once_and_its_end_reported(caplog: pytest.LogCaptureFixture) -> None:
    link = Link(
        "pg",
        "postgresql://app:s3cret@db/shop",
        logging.getLogger("reactor.test"),
        backoff=Backoff(initial=1, maximum=4, jitter=False),
        secrets=("s3cret",),
    )
    assert link.connected(START) is None  # the first connection is no reconnect
    delays = [
        link.failed(OSError("refused by s3cret"), START + timedelta(seconds=n)) for n in range(4)
    ]
    assert delays == [1, 2, 4, 4]
    outage = link.down_since
    assert outage == START
    assert link.connected(START + timedelta(seconds=9)) == START
    assert link.down_since is None
    assert [r.getMessage() for r in caplog.records] == [
        "pg: lost the connection to postgresql://app:***@db/shop (OSError: refused by ***);"
        " reconnecting with backoff",
        "pg: connected to postgresql://app:***@db/shop again after 9.0 s; publishing a gap event",
    ]
    assert link.statistics() == {
        "received": 0,
        "published": 0,
        "malformed": 0,
        "reconnects": 1,
        "gaps": 0,
        "oversized": 0,
        "last_error": "OSError: refused by ***",
    }
    # The backoff starts over with the next outage.
    assert link.failed(OSError(), START + timedelta(seconds=20)) == 1


def test_a_first_connection_that_fails_is_an_error_that_hides_the_password() -> None:
    link = Link("mqtt", "mqtt://u:pw@broker", logging.getLogger("reactor.test"))
    error = link.unavailable(ConnectionRefusedError("refused"))
    assert isinstance(error, SourceUnavailableError)
    assert isinstance(error, ConnectionError)
    assert "mqtt://u:***@broker" in str(error)
    assert "pw" not in str(error)


def test_the_cause_of_an_error_is_shown_too() -> None:
    link = Link("x", "redis://h", logging.getLogger("reactor.test"), secrets=("pw",))
    try:
        try:
            raise ConnectionRefusedError(111, "refused with pw")
        except OSError as exc:
            raise ConnectionError("cannot connect to h:6379") from exc
    except ConnectionError as exc:
        error = link.unavailable(exc)
    assert str(error).endswith(
        "ConnectionError: cannot connect to h:6379 (ConnectionRefusedError: [Errno 111] "
        "refused with ***); check that the server runs and the address is right"
    )


def test_a_reconnection_without_a_gap_says_so(caplog: pytest.LogCaptureFixture) -> None:
    link = Link("mqtt", "mqtt://broker", logging.getLogger("reactor.test"))
    link.connected(START)
    link.failed(OSError("gone"), START)
    assert link.connected(START + timedelta(seconds=2), gap=False) == START
    assert caplog.records[-1].getMessage() == (
        "mqtt: connected to mqtt://broker again after 2.0 s; nothing was missed meanwhile"
    )


def test_the_url_comes_from_the_argument_or_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    options = {"parameter": "url", "variable": "REACTOR_TEST_URL", "example": "x://h"}
    monkeypatch.setenv("REACTOR_TEST_URL", "x://from-env")
    assert configured("x://given", **options) == "x://given"
    assert configured(None, **options) == "x://from-env"
    monkeypatch.delenv("REACTOR_TEST_URL")
    with pytest.raises(ValueError, match=r"no server to connect to: pass url='x://h' or set"):
        configured(None, **options)
    with pytest.raises(ValueError, match="url must be a non-empty str"):
        configured("", **options)
    assert password_of("redis://u:p%40ss@h") in {("p%40ss", "p@ss"), ("p@ss", "p%40ss")}
    assert password_of("redis://h") == password_of("redis://u@[bad") == ()


@pytest.mark.anyio
async def test_connection_failures_are_found_inside_exception_groups() -> None:
    kinds = (OSError,)
    nested = ExceptionGroup("outer", [ExceptionGroup("inner", [ConnectionResetError("x")])])
    assert isinstance(connection_failure(nested, kinds), ConnectionResetError)
    assert connection_failure(ExceptionGroup("g", [OSError(), KeyError()]), kinds) is None
    assert connection_failure(KeyError(), kinds) is None
    # Cancelled while the client's cleanup failed: the cancellation goes on.
    with anyio.CancelScope() as scope:
        scope.cancel()
        try:
            await anyio.sleep(1)
        except BaseException as exc:
            group = BaseExceptionGroup("g", [exc, OSError("closed")])
            with pytest.raises(anyio.get_cancelled_exc_class()):
                connection_failure(group, kinds)
            raise
    assert scope.cancelled_caught


class Flaky(MemoryQueue):
    """A memory queue that cannot store anything for its first *down* puts, and refuses
    events whose data is ``"big"``, or any event of type ``"huge"``."""

    stores_immediately = False  # publish() calls put()

    def __init__(self, down: int) -> None:
        super().__init__()
        self.down = down

    async def put(self, event: Event, *, only: Collection[str] | None = None) -> None:
        if event.data == "big" or event.type == "huge":
            raise PayloadTooLargeError(10_000, 100)
        if self.down:
            self.down -= 1
            raise QueueUnavailableError("the disk is full")
        await super().put(event, only=only)

    async def put_many(
        self, events: Sequence[Event], *, only: Collection[str] | None = None
    ) -> None:
        for event in events:
            if event.data == "big" or event.type == "huge":
                raise PayloadTooLargeError(10_000, 100)
        for event in events:
            await super().put(event, only=only)


@pytest.mark.anyio
async def test_publish_waits_out_an_unavailable_queue_and_slims_what_is_too_large(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="reactor.test")
    app = Reactor(queue=Flaky(down=3))
    capture = Capture()
    app.subscribe("*", capture)
    link = Link(
        "src", "x://h", logging.getLogger("reactor.test"), backoff=Backoff(initial=0, maximum=0)
    )
    async with app:
        assert await link.publish(app, Event(type="t", source="/s", data=1))
        big = Event(type="t", source="/s", subject="s", data="big")
        assert await link.publish(app, big)
        assert await link.publish(app, Event(type="t", source="/s", data="big"))
        # Too large even without its data: dropped.
        assert not await link.publish(app, Event(type="huge", source="/s", subject="h"))
        assert await link.publish_gap(app, Event(type=GAP_EVENT_TYPE, source="/s"))
        with anyio.fail_after(5):
            await capture.wait_for(4)
    note = "payload dropped: the event was 10000 bytes, over the queue's limit of 100"
    assert [e.data for e in capture.events] == [1, note, note, None]
    slim = capture.events[1]
    assert (slim.id, slim.subject, slim.type) == (big.id, "s", "t")
    assert slim.datacontenttype == "text/plain; charset=utf-8"
    assert (link.published, link.oversized, link.gaps) == (3, 3, 1)  # a gap is not an event
    messages = [(r.levelname, r.getMessage()) for r in caplog.records]
    limit = (
        "event is 10000 bytes, over the limit of 100 bytes; send a reference to the data "
        "instead, or raise the limit"
    )
    assert messages == [
        (
            "WARNING",
            "src: the app's queue cannot store events (the disk is full); waiting to publish",
        ),
        (
            "WARNING",
            f"src: the event for 's' is too large for the app's queue ({limit}); published it "
            "without its data (1 so far; logged once per 1000)",
        ),
        (
            "DEBUG",
            f"src: the event for None is too large for the app's queue ({limit}); published it "
            "without its data (2 so far; logged once per 1000)",
        ),
        (
            "DEBUG",
            f"src: the event for 'h' is too large for the app's queue ({limit}); published it "
            "without its data (3 so far; logged once per 1000)",
        ),
        (
            "ERROR",
            f"src: the event for 'h' is over the queue's limit even without its data ({limit}); "
            "dropped it",
        ),
    ]


@pytest.mark.anyio
async def test_publish_many_takes_a_batch_whole_or_one_by_one() -> None:
    app = Reactor(queue=Flaky(down=0))
    capture = Capture()
    app.subscribe("*", capture)
    link = Link("src", "x://h", logging.getLogger("reactor.test"))
    async with app:
        await link.publish_many(app, [Event(type="t", source="/s", data=n) for n in range(3)])
        # One too large: the batch goes one by one, the large one slimmed.
        await link.publish_many(
            app, [Event(type="t", source="/s", data=d) for d in ("a", "big", "c")]
        )
        with anyio.fail_after(5):
            await capture.wait_for(6)
    assert [e.data for e in capture.events][:4] == [0, 1, 2, "a"]
    assert capture.events[4].data.startswith("payload dropped")
    assert capture.events[5].data == "c"
    assert (link.published, link.oversized) == (6, 1)
