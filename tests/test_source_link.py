"""The connection bookkeeping shared by the sources that listen to a server."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from reactor import Backoff, SourceUnavailableError
from reactor.sources._link import Link, redacted

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
