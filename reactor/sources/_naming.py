"""How trigger sources and their events are named.

The events a built-in trigger makes itself (timers, file changes, notifications, messages,
row changes) come from ``/reactor/<kind>/<name>`` (:func:`source_uri`: the kind is the
source's package, the name percent-encoded): the CloudEvents ``source`` that a decorated
handler is subscribed to. For the sources that listen to a server (PostgreSQL,
Redis, MQTT: :class:`NamedSource`), as for the timers:

* A source has a name (the ``name=`` argument; a decorated handler's source takes the
  handler's consumer name, by default the handler's qualified name).
* Its URI is also its :attr:`~NamedSource.name`: the key of its statistics in
  ``app.stats().sources``, the subject of its gap events (whose ``source`` is the URI too,
  so that its decorated handler can get them) and the first word of its log lines, so
  that sources of different kinds with one name stay apart.
* A test helper that builds a source's events (``redis.message(...)``) says which source
  with ``name=``: the source's name, or the decorated handler itself (:func:`uri_for`).
* A decorated handler is subscribed to what :meth:`NamedSource.subscription` says: the
  events from the URI, unless the source publishes events of another system's shape
  (the bucket poller's, a broker trigger's with ``decode=``), whose ``source`` is that
  system's.

The object storage sources (:mod:`reactor.sources.objects`) follow the same rules, under
the kind ``objects``: a bucket poller is named like any trigger, an HTTP route by its
path.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, ClassVar
from urllib.parse import quote

import attrs

from reactor import Event, Handler, Predicate, validators
from reactor.abc import App, Source, default_name

if TYPE_CHECKING:
    from ._decoding import Decoding

__all__ = ["NamedSource", "Subscribing", "event_time", "source_uri", "uri_for"]


def source_uri(kind: str, name: str) -> str:
    """The CloudEvents ``source`` of the events of the *kind* source named *name*.

    :param kind: the package's name (``"redis"``)
    :param name: the source's name
    :return: ``/reactor/<kind>/<name>``, the name percent-encoded
    """
    return f"/reactor/{kind}/" + quote(name, safe="")


def uri_for(kind: str, name: str | Handler) -> str:
    """The URI of a source given, to a test helper, by its name or by its handler.

    :param kind: the package's name (``"postgres"``)
    :param name: the source's name, or the handler it was made for by a decorator (without
        a ``name=``: then the handler's qualified name is the source's name)
    :raises TypeError: neither a str nor a callable
    :raises ValueError: an empty name
    """
    if isinstance(name, str):
        return source_uri(kind, validators.name("name", name))
    if callable(name):
        return source_uri(kind, default_name(name))
    raise TypeError(f"name must be a source's name or a handler, got {name!r}")


def event_time(time: datetime | None) -> datetime:
    """The time of an event a test helper builds: *time*, or now.

    :raises TypeError: *time* is not a datetime
    :raises ValueError: *time* is naive
    """
    return datetime.now(UTC) if time is None else validators.aware_datetime("time", time)


@attrs.frozen
class Subscribing:
    """What the handler decorated for a source is subscribed to, as ``app.subscribe()``
    takes it.

    :ivar pattern: the glob on event types
    :ivar source: the glob on event sources, or ``None`` for any
    :ivar where: the extra filter, or ``None``
    """

    pattern: str
    source: str | None = None
    where: Predicate | None = None


class NamedSource(Source):
    """A source known as ``/reactor/<kind>/<name>`` (see the module's docs).

    :param name: the source's name
    :raises TypeError: *name* is not a str
    :raises ValueError: *name* is empty
    """

    #: The ``<kind>`` in the URI: the name of the source's package (``"redis"``).
    kind: ClassVar[str]

    def __init__(self, name: str) -> None:
        self._name = validators.name("name", name)
        self._uri = source_uri(self.kind, self._name)
        # The decode option at work (reactor.sources._decoding), for a source that takes it.
        self._decoding: Decoding | None = None

    @property
    def name(self) -> str:
        """The source's URI, ``/reactor/<kind>/<name>``: the key of its statistics."""
        return self._uri

    @property
    def uri(self) -> str:
        """``/reactor/<kind>/<name>``: the CloudEvents ``source`` of the events this source
        makes of its own (its messages, its gap events)."""
        return self._uri

    def subscription(self, events: str, *, status_events: bool) -> Subscribing:
        """What the handler a decorator makes this source for is subscribed to.

        The source's own events of the types *events* (with *status_events*: of every
        type, its gap events too) from its URI; with ``decode=``, the decoded events that
        pass the source's filter, from any source.

        :param events: the type glob of the source's own events
        :param status_events: the decorator's ``status_events`` argument
        """
        if self._decoding is not None:
            return self._decoding.subscription(self._uri, status_events=status_events)
        return Subscribing("*" if status_events else events, self._uri)

    def gap_event(
        self,
        app: App,
        *,
        reason: str,
        since: datetime | None = None,
        until: datetime | None = None,
        missed: int | None = None,
        source: str | None = None,
    ) -> Event:
        """As :meth:`reactor.abc.Source.gap_event`, with the source's URI as the event's
        ``source`` by default, so that its decorated handler can get it too."""
        return super().gap_event(
            app,
            reason=reason,
            since=since,
            until=until,
            missed=missed,
            source=self._uri if source is None else source,
        )
