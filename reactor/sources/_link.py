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
* An event the app's queue refuses (larger than a durable queue's limit) is published
  without its data, with a note that says why, and counted; it never stops the source.
  While the queue cannot store anything (a full disk, a broker away) the source waits
  and tries again.
* Passwords never reach a log line, an error message or the statistics.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Final, TypeAlias
from urllib.parse import unquote, urlsplit

import anyio
import attrs

from reactor import (
    Backoff,
    Event,
    PayloadTooLargeError,
    QueueFull,
    QueueUnavailableError,
    SourceUnavailableError,
    validators,
)
from reactor.abc import GAP_EVENT_TYPE, App

__all__ = [
    "LOG_EVERY",
    "RECONNECT_BACKOFF",
    "Link",
    "Oversized",
    "configured",
    "connection_failure",
    "password_of",
    "redacted",
    "without_payload",
]

#: A problem that repeats with every message (a payload that is not JSON, an event too
#: large for the queue) is logged as a warning the first time and every this many times
#: after, at debug level in between.
LOG_EVERY: Final = 1000

#: Builds the event that stands for one too large for the app's queue.
Oversized: TypeAlias = Callable[[Event, PayloadTooLargeError], Event]


def without_payload(event: Event, error: PayloadTooLargeError) -> Event:
    """The event that stands for *event* when it is too large for the app's queue: the
    same attributes, and as data a text that says how large the payload was.

    :param event: the refused event
    :param error: the queue's refusal (its ``size`` and ``limit``)
    """
    return attrs.evolve(
        event,
        datacontenttype="text/plain; charset=utf-8",
        dataschema=None,
        data=f"payload dropped: the event was {error.size} bytes, over the queue's limit of "
        f"{error.limit}",
    )


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


def configured(given: str | None, *, parameter: str, variable: str, example: str) -> str:
    """Return the server's URL or DSN: the argument *given*, else the environment variable.

    :param given: the ``url=`` or ``dsn=`` argument, ``None`` when not given
    :param parameter: the argument's name, for the message
    :param variable: the environment variable that holds the default
        (``REACTOR_REDIS_URL``)
    :param example: a value to show in the message
    :raises TypeError: *given* is not a str
    :raises ValueError: *given* is empty, or neither it nor the variable is set
    """
    if given is not None:
        return validators.name(parameter, given)
    found = os.environ.get(variable, "")
    if not found:
        raise ValueError(f"no server to connect to: pass {parameter}={example!r} or set {variable}")
    return found


def password_of(url: str) -> tuple[str, ...]:
    """The password in *url* as written and percent-decoded, for :attr:`Link.secrets`."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return ()
    return () if not password else tuple({password, unquote(password)})


def connection_failure(
    error: BaseException, kinds: tuple[type[BaseException], ...]
) -> BaseException | None:
    """Return the exception that says why a connection failed, or ``None`` if it did not.

    A client library that runs its connection in a task group raises the failure wrapped
    in (nested) exception groups; this looks through them. Call it from ``except
    BaseException``: when the task is being cancelled, a client's cleanup may fail on the
    connection it already closed, and the group then holds the cancellation beside that
    failure; the cancellation is what must go on, so this raises it.

    :param error: what was raised
    :param kinds: the exception classes that mean a failed connection (the client's
        connection errors, :class:`OSError`, :class:`TimeoutError`, ...)
    :return: the first of the failures when every exception raised is one of *kinds*,
        else ``None`` (something else went wrong: re-raise *error*)
    :raises BaseException: the cancellation, when *error* holds one and only failures of
        *kinds* beside it
    """
    leaves = list(_leaves(error))
    cancelled = anyio.get_cancelled_exc_class()
    stop = next((leaf for leaf in leaves if isinstance(leaf, cancelled)), None)
    if stop is not None and all(isinstance(leaf, (cancelled, *kinds)) for leaf in leaves):
        raise stop
    if leaves and all(isinstance(leaf, kinds) for leaf in leaves):
        return leaves[0]
    return None


def _leaves(error: BaseException) -> Iterator[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            yield from _leaves(inner)
    else:
        yield error


def _describe(error: BaseException, secrets: tuple[str, ...]) -> str:
    text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    # Client libraries wrap the OS's error ("cannot connect to host:port" from "connection
    # refused"): the cause says what went wrong.
    cause = error.__cause__
    if cause is not None and str(cause) and str(cause) not in text:
        text += f" ({type(cause).__name__}: {cause})"
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
    :param name: the source's name, the ``source`` field of log records (default: *source*)
    """

    source: str
    target: str = attrs.field(converter=redacted)
    logger: logging.Logger
    backoff: Backoff = RECONNECT_BACKOFF
    secrets: tuple[str, ...] = ()
    #: the source's name (its key in ``app.stats().sources``), the ``source`` field of
    #: the log records (default: *source*)
    name: str = attrs.field(default=attrs.Factory(lambda link: link.source, takes_self=True))
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
    #: events too large for the app's queue (a durable queue's limit), published without
    #: their data (see :meth:`publish`)
    oversized: int = 0
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

    def note(self, error: BaseException) -> str:
        """Record *error* as :attr:`last_error` without logging it, and return that text.

        For a source that reports its own failures (a poller: a failed poll is retried at
        the next interval, not reconnected).

        :param error: what the client raised
        :return: the error's type and message, secrets hidden
        """
        self.last_error = _describe(error, self.secrets)
        return self.last_error

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
                extra={"source": self.name},
            )
        self._failures += 1
        return self.backoff.delay(self._failures)

    def connected(self, now: datetime, *, gap: bool = True) -> datetime | None:
        """Record a working connection.

        :param now: the app's clock's time
        :param gap: whether the source publishes a gap event for the outage (``False``
            for a server that kept what was sent meanwhile, such as an MQTT broker that
            kept the session, or a source that replays what it missed, such as a change
            log); only the log line differs
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
            "; publishing a gap event" if gap else "; nothing was missed meanwhile",
            extra={"source": self.name},
        )
        return since

    async def publish(self, app: App, event: Event, *, oversized: Oversized | None = None) -> bool:
        """Publish *event* into *app*, counting it (a gap event is counted in :attr:`gaps`
        by the source, not here).

        While the app's queue cannot store anything (``QueueUnavailableError``: a full
        disk, a broker away) this waits, with :attr:`backoff` on the app's clock, and tries
        again: the source stops reading meanwhile, which is its backpressure. An event the
        queue refuses for good (``PayloadTooLargeError``: over a durable queue's size
        limit) is published in the form *oversized* gives it, the same event with a note
        in place of what made it large (default :func:`without_payload`), and counted in
        :attr:`oversized`; it is dropped (and logged as an error) only if even that is
        refused. Each is logged, a warning for the first and every
        :data:`LOG_EVERY`-th, debug level in between.

        :param app: the running app
        :param event: the event
        :param oversized: builds the smaller event that stands for a refused one
        :return: whether *event*, or what stands for it, is in the queue
        """
        failures = 0
        substitute = without_payload if oversized is None else oversized
        original: Event | None = None  # the refused event, once its substitute is tried
        while True:
            try:
                await app.publish(event)
            except PayloadTooLargeError as exc:
                if original is not None:
                    self.logger.error(
                        "%s: the event for %r is over the queue's limit even without its "
                        "data (%s); dropped it",
                        self.source,
                        original.subject,
                        exc,
                        extra={"source": self.name, "event_id": original.id},
                    )
                    return False
                self.oversized += 1
                level = logging.WARNING if self.oversized % LOG_EVERY == 1 else logging.DEBUG
                self.logger.log(
                    level,
                    "%s: the event for %r is too large for the app's queue (%s); published "
                    "it without its data (%d so far; logged once per %d)",
                    self.source,
                    event.subject,
                    exc,
                    self.oversized,
                    LOG_EVERY,
                    extra={"source": self.name, "event_id": event.id},
                )
                original, event = event, substitute(event, exc)
                continue
            except QueueUnavailableError as exc:
                failures += 1
                if failures == 1:
                    self.logger.warning(
                        "%s: the app's queue cannot store events (%s); waiting to publish",
                        self.source,
                        exc,
                        extra={"source": self.name, "event_id": event.id},
                    )
                await app.clock.sleep(self.backoff.delay(failures))
                continue
            if event.type != GAP_EVENT_TYPE:
                self.published += 1
            return True

    async def publish_gap(self, app: App, event: Event) -> bool:
        """Publish a gap event as :meth:`publish` does, and count it in :attr:`gaps`.

        :param app: the running app
        :param event: the gap event (:meth:`reactor.abc.Source.gap_event`)
        :return: whether it is in the queue
        """
        published = await self.publish(app, event)
        if published:
            self.gaps += 1
        return published

    async def publish_many(
        self, app: App, events: Sequence[Event], *, oversized: Oversized | None = None
    ) -> None:
        """Publish *events* in order: in one ``publish_many()`` (one transaction on a
        durable queue) when the queue takes them whole, else one at a time as
        :meth:`publish` does.

        :param app: the running app
        :param events: the events
        :param oversized: as for :meth:`publish`
        """
        if len(events) > 1:
            try:
                await app.publish_many(events)
            except (QueueFull, PayloadTooLargeError, QueueUnavailableError):
                pass  # no room for all at once, or one is too large: one by one, below
            else:
                self.published += sum(event.type != GAP_EVENT_TYPE for event in events)
                return
        for event in events:
            await self.publish(app, event, oversized=oversized)

    def statistics(self) -> Mapping[str, int | str | None]:
        """The counters for ``app.stats().sources``.

        ``received``, ``published``, ``malformed``, ``reconnects``, ``gaps``,
        ``oversized`` and ``last_error`` (the last connection error, password hidden, or
        ``None``).
        """
        return {
            "received": self.received,
            "published": self.published,
            "malformed": self.malformed,
            "reconnects": self.reconnects,
            "gaps": self.gaps,
            "oversized": self.oversized,
            "last_error": self.last_error,
        }
