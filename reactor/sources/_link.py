"""What the sources that hold a connection to a server share.

A source that listens to a server (PostgreSQL, Redis, MQTT) keeps one :class:`Link`: its
counters for ``app.stats().sources``, the outage it is in, if any, and the backoff between
reconnection attempts. The rules it carries out, the same for every such source:

* The first connection must succeed: a wrong address or a server that is down at startup
  raises :class:`reactor.SourceUnavailableError` out of ``async with app:`` at once.
* A connection lost later is retried forever, with capped exponential backoff; the outage
  is logged once when it begins and once when it ends, never once per attempt.
* The end of an outage is reported to the source, which publishes a gap event where
  events may have been missed while it was away.
* Passwords never reach a log line, an error message or the statistics.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from datetime import datetime
from urllib.parse import urlsplit

import attrs

from reactor import Backoff, SourceUnavailableError

__all__ = ["RECONNECT_BACKOFF", "Link", "redacted"]

#: The wait between reconnection attempts: 0.1 s doubling up to 5 s, jittered.
RECONNECT_BACKOFF = Backoff(initial=0.1, maximum=5.0, jitter=True)

# ``password=secret`` or ``password='it''s secret'`` in a libpq key/value string.
_KEY_VALUE_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.|'')*'|\S+)", re.IGNORECASE)


def redacted(target: str) -> str:
    """Return *target*, a server URL or a libpq key/value string, with its password as ``***``.

    :param target: ``scheme://user:password@host/...`` or ``host=... password=...``
    :return: the same text without the password
    """
    text = _KEY_VALUE_PASSWORD.sub(r"\1***", target)
    if "://" in text:
        try:
            password = urlsplit(text).password
        except ValueError:  # a malformed authority: hide everything up to the host
            return re.sub(r"//[^@/]*@", "//***@", text, count=1)
        if password:
            text = text.replace(f":{password}@", ":***@", 1)
    return text


def _describe(error: BaseException, secrets: tuple[str, ...]) -> str:
    text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    # One line: libpq's messages span several, with tabs.
    text = " ".join(text.split())
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text[:500]


@attrs.define(eq=False)
class Link:
    """The connection state of one source: counters, the current outage, the backoff.

    :param source: the source's name, for log lines
    :param target: the server, as given (URL or DSN); only its redacted form is shown
    :param logger: where outages are logged
    :param backoff: the wait between reconnection attempts
    """

    source: str
    target: str = attrs.field(converter=redacted)
    logger: logging.Logger
    backoff: Backoff = RECONNECT_BACKOFF
    secrets: tuple[str, ...] = ()
    #: messages received from the server (before any filtering or parsing)
    received: int = 0
    #: events published into the app
    published: int = 0
    #: messages that could not be turned into the expected shape (published raw or
    #: dead-lettered, as the source documents)
    malformed: int = 0
    #: connections made again after a loss
    reconnects: int = 0
    #: gap events published
    gaps: int = 0
    last_error: str | None = None
    _down_since: datetime | None = None
    _failures: int = 0
    _connected_once: bool = False

    @property
    def down_since(self) -> datetime | None:
        """When the current outage began, or ``None`` while connected."""
        return self._down_since

    def unavailable(self, error: BaseException) -> SourceUnavailableError:
        """Build the error for a first connection that failed (the app does not start).

        :param error: what the client raised
        """
        self.last_error = _describe(error, self.secrets)
        return SourceUnavailableError(
            f"{self.source}: cannot connect to {self.target}: {self.last_error}; check that "
            "the server runs and the address is right"
        )

    def failed(self, error: BaseException, now: datetime) -> float:
        """Record that the connection broke, or a reconnection attempt failed.

        :param error: what the client raised
        :param now: the app's clock's time
        :return: the seconds to wait before the next attempt
        """
        self.last_error = _describe(error, self.secrets)
        if self._down_since is None:
            self._down_since = now
            self.logger.warning(
                "%s: lost the connection to %s (%s); reconnecting with backoff",
                self.source,
                self.target,
                self.last_error,
            )
        self._failures += 1
        return self.backoff.delay(self._failures)

    def connected(self, now: datetime, *, gap: bool = True) -> datetime | None:
        """Record a working connection.

        :param now: the app's clock's time
        :param gap: whether the source publishes a gap event for the outage (for the log
            line; a source that replays what it missed, such as a change log, does not)
        :return: when the outage that this connection ends began, or ``None`` for the first
            connection; the source publishes a gap event for the time in between
        """
        since, self._down_since, self._failures = self._down_since, None, 0
        if not self._connected_once:
            self._connected_once = True
            return None
        if since is None:  # the connection ended without an error (a clean server close)
            since = now
        self.reconnects += 1
        self.logger.warning(
            "%s: connected to %s again after %.1f s%s",
            self.source,
            self.target,
            (now - since).total_seconds(),
            "; publishing a gap event" if gap else "",
        )
        return since

    def statistics(self) -> Mapping[str, int | str | None]:
        """The counters for ``app.stats().sources``.

        ``received``, ``published``, ``malformed``, ``reconnects``, ``gaps`` and
        ``last_error`` (the last connection error, password hidden, or ``None``).
        """
        return {
            "received": self.received,
            "published": self.published,
            "malformed": self.malformed,
            "reconnects": self.reconnects,
            "gaps": self.gaps,
            "last_error": self.last_error,
        }
