"""Polling a bucket: :class:`BucketPollSource` and its decorator :func:`on_bucket_change`.

:func:`on_bucket_change` is the one definition of the poll options (their defaults in its
signature, their meanings in its docstring); :class:`BucketPollSource` takes them as
:class:`PollOptions`, with the same defaults.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from functools import partial
from itertools import islice
from typing import Final, TypedDict, TypeVar, Unpack

import anyio
import anyio.to_thread
import attrs
from anyio.abc import TaskStatus

from reactor import ConsumerOptions, Event, Handler, SourceUnavailableError, validators
from reactor.abc import GAP_EVENT_TYPE, App

from .._decorate import decorator, with_defaults
from .._link import Link
from .._naming import NamedSource, Subscribing, uri_for
from ._client import (
    MAX_PAGE_SIZE,
    Listed,
    Lister,
    Settings,
    botocore_modules,
    explain,
    parse_bucket_url,
)
from ._records import KIND, BucketFilter, object_event
from ._state import Change, ChangeKind, Found, State

__all__ = [
    "DEFAULT_STATE_FILE",
    "POLLER_EXTENSION",
    "STATE_VARIABLE",
    "BucketPollSource",
    "PollOptions",
    "PollResult",
    "bucket_change",
    "by_key",
    "on_bucket_change",
]

logger = logging.getLogger("reactor.sources.objects")

H = TypeVar("H", bound=Handler)
_T = TypeVar("_T")

#: The state file when neither ``state=`` nor :data:`STATE_VARIABLE` names one (relative to
#: the working directory).
DEFAULT_STATE_FILE: Final = "reactor-objects.sqlite3"
#: The variable naming the state file when ``state=`` is not given.
STATE_VARIABLE: Final = "REACTOR_S3_STATE"
#: The CloudEvents extension attribute naming the poller that published an event (its URI,
#: ``/reactor/objects/<name>``), so that a poller's handler gets its own events only, when
#: two poll the same bucket.
POLLER_EXTENSION: Final = "reactorpoller"
# Changes published, then stored, at a time: the bound on a poll's events in memory.
_CHUNK: Final = 1000
# The types of the object events (cloudevents/adapters/aws-s3.md: "com.amazonaws.s3." +
# the S3 event name).
_EVENT_TYPES: Final = "com.amazonaws.s3.*"

# The S3 event names of the poller's changes: a listing cannot tell a put from a copy or a
# multipart upload, and S3 itself reports an overwrite as ObjectCreated.
_EVENT_NAMES: Final[dict[ChangeKind, str]] = {
    "created": "ObjectCreated:Put",
    "modified": "ObjectCreated:Put",
    "removed": "ObjectRemoved:Delete",
}


class PollOptions(TypedDict, total=False):
    """The options of a bucket poller, all optional: ``interval``, ``suffix``, ``events``,
    ``endpoint_url``, ``region``, ``access_key_id``, ``secret_access_key``,
    ``session_token``, ``state`` and ``page_size``.

    :func:`on_bucket_change` documents each and gives its default; :class:`BucketPollSource`
    takes them as keyword arguments, with the same defaults.
    """

    interval: float
    suffix: str | None
    events: tuple[str, ...]
    endpoint_url: str | None
    region: str | None
    access_key_id: str | None
    secret_access_key: str | None
    session_token: str | None
    state: str | os.PathLike[str] | None
    page_size: int


@attrs.frozen(kw_only=True)
class PollResult:
    """What one poll found: the objects listed and the changes published."""

    listed: int
    pages: int
    created: int
    modified: int
    removed: int
    #: a baseline: the listing was stored, nothing announced
    baseline: bool


def by_key(event: Event) -> str | None:
    """Return the event's subject, the object's key: the ordering key that keeps the events
    of one object in order (the default ``ordered_by`` of :func:`on_bucket_change`).
    """
    return event.subject


class BucketPollSource(NamedSource):
    """Publish an event for every object created, modified or removed under a bucket prefix,
    found by listing it every *interval* seconds.

    See the package documentation for the events, the state file and the guarantees, and
    :func:`on_bucket_change` for the options (:class:`PollOptions`): the same, with the
    same defaults. ``app.add_source(BucketPollSource(url, ...))`` polls without a handler
    of its own (subscribe to the object events whose ``reactorpoller`` extension is its
    :attr:`uri`).

    :param url: ``s3://bucket/prefix``
    :param name: the source's name: its URI ``/reactor/objects/<name>`` is the key of its
        statistics, the source of its gap events and its events' ``reactorpoller``
        extension; the name keys its row in the state file (default: the URL)
    :param options: the poll options (:class:`PollOptions`)
    :raises TypeError: an option of the wrong type, or an unknown one
    :raises ValueError: a bad URL or option
    :raises ModuleNotFoundError: botocore is not installed (``reactor-events[s3]``)
    """

    kind = KIND

    def __init__(
        self, url: str, *, name: str | None = None, **options: Unpack[PollOptions]
    ) -> None:
        settings = with_defaults(type(self).__name__, options, PollOptions, on_bucket_change)
        self._where = parse_bucket_url(url)
        super().__init__(url if name is None else name)
        self._interval = validators.seconds("interval", settings["interval"], positive=True)
        suffix = settings["suffix"]
        self._suffix: str | None = None if suffix is None else validators.name("suffix", suffix)
        self._events = _checked_events(settings["events"])
        self._wanted = BucketFilter(events=self._events)
        self._page_size = validators.integer("page_size", settings["page_size"], minimum=1)
        if self._page_size > MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be at most {MAX_PAGE_SIZE}, got {self._page_size}")
        state = settings["state"]
        if state is not None and not isinstance(state, str | os.PathLike):
            raise TypeError(f"state must be a path, got {state!r}")
        self._state_given = None if state is None else validators.name("state", os.fspath(state))
        self._connection = _Connection(
            endpoint_url=settings["endpoint_url"],
            region=settings["region"],
            access_key_id=settings["access_key_id"],
            secret_access_key=settings["secret_access_key"],
            session_token=settings["session_token"],
        )
        # A mistake in the connection settings shows now; the REACTOR_S3_* variables are
        # read again when the app starts.
        self._connection.resolve()
        botocore_modules()
        self._link = Link(self._uri, str(self._where), logger, name=self._name)
        self._counters = {
            "listed": 0,
            "created": 0,
            "modified": 0,
            "removed": 0,
            "filtered": 0,
            "pages": 0,
            "polls": 0,
            "errors": 0,
        }
        self._region = "us-east-1"
        self._event_source = _event_source(self._where.bucket, self._region)
        self._state: State | None = None
        self._lister: Lister | None = None
        self._app: App | None = None
        self._lock = anyio.Lock()
        self._failing_since: datetime | None = None
        self._failed_polls = 0
        # The state file turned out damaged during a poll: reopen it before the next.
        self._damaged = False

    # -- properties

    @property
    def bucket(self) -> str:
        """The bucket."""
        return self._where.bucket

    @property
    def prefix(self) -> str:
        """The key prefix (``""``: the whole bucket)."""
        return self._where.prefix

    @property
    def event_source(self) -> str:
        """The CloudEvents ``source`` of this source's object events,
        ``aws:s3.<region>.<bucket>`` (known once the app started: the region comes from the
        client's configuration).
        """
        return self._event_source

    @property
    def state_file(self) -> str:
        """The state file: ``state=``, else :data:`STATE_VARIABLE`, else
        :data:`DEFAULT_STATE_FILE`.
        """
        return self._state_given or os.environ.get(STATE_VARIABLE) or DEFAULT_STATE_FILE

    def statistics(self) -> Mapping[str, int | str | None]:
        """Return the counters: ``received`` and ``listed`` (objects listed), ``published``
        (events), ``created``, ``modified`` and ``removed`` (changes found, published or
        filtered out by ``events=``), ``filtered`` (objects and changes left out by
        ``suffix=`` and ``events=``), ``pages`` (listing requests), ``polls`` (completed),
        ``errors`` (failed polls), ``reconnects`` (polls that worked again after failures),
        ``gaps``, ``malformed`` (listing entries without a key), ``oversized`` (events
        over a durable queue's size limit, published without their data), ``objects`` (in
        the stored listing) and ``last_error`` (secrets hidden).
        """
        state = self._state
        return {
            **self._link.statistics(),
            **self._counters,
            "objects": 0 if state is None else state.objects,
        }

    def __repr__(self) -> str:
        return f"BucketPollSource({str(self._where)!r}, name={self._name!r})"

    def subscription(self, events: str, *, status_events: bool) -> Subscribing:
        """What the handler decorated for this poller gets: the object events it published
        (their ``reactorpoller`` extension is its URI: not those of another poller of the
        same bucket), and with *status_events* its gap events too.

        :param events: the type glob of the object events
        :param status_events: the decorator's ``status_events`` argument
        """
        uri = self._uri

        def from_this_poller(event: Event) -> bool:
            if event.extensions.get(POLLER_EXTENSION) == uri:
                return True
            return event.type == GAP_EVENT_TYPE and event.source == uri

        return Subscribing("*" if status_events else events, where=from_this_poller)

    # -- running

    async def run(
        self, app: App, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Poll and publish until cancelled.

        :param app: the running app
        :param task_status: started once the first poll is done (the baseline stored, or
            the changes since the last run published)
        :raises ~reactor.SourceUnavailableError: the first poll failed (the bucket does not
            exist, access denied, no credentials, the store cannot be reached)
        :raises sqlite3.Error: the state file cannot be opened or written
        :raises RuntimeError: the state file is another program's database (it is left
            alone)
        """
        settings = self._connection.resolve()
        link = self._link
        link.secrets = settings.secrets
        link.target = settings.describe(self._where)
        lister = Lister(settings, self._where, page_size=self._page_size)
        state = State(self.state_file, name=self._name, target=link.target)
        try:
            try:
                await anyio.to_thread.run_sync(lister.open)
            except Exception as exc:
                raise self._unavailable(exc) from exc
            self._region = lister.region
            self._event_source = _event_source(self._where.bucket, self._region)
            try:
                found = await anyio.to_thread.run_sync(state.open)
            except sqlite3.Error as exc:
                exc.add_note(f"{self._uri}: the state file {state.path}")
                raise
            self._state, self._lister = state, lister
            begun = app.clock.monotonic()
            async with self._lock:
                try:
                    await self._poll(app, found)
                except sqlite3.Error:
                    raise
                except Exception as exc:
                    raise self._unavailable(exc) from exc
            self._app = app
            task_status.started()
            while True:
                # From the start of one poll to the start of the next; at once after a
                # poll that took longer.
                await app.clock.sleep_until(begun + self._interval)
                begun = app.clock.monotonic()
                async with self._lock:
                    await self._poll_or_note(app)
        finally:
            self._app = self._lister = None
            self._state = None
            state.close()

    async def poll(self) -> PollResult:
        """Poll now, between the scheduled polls, and return what the poll found.

        :raises RuntimeError: the source is not running
        :raises Exception: what the poll raised, counted in ``errors`` (the scheduled polls
            go on)
        """
        app = self._app
        if app is None:
            raise RuntimeError(f"{self._uri}: the bucket poller is not running")
        async with self._lock:
            try:
                return await self._poll(app, None)
            except Exception as exc:
                self._failed(exc)
                raise

    def _unavailable(self, error: BaseException) -> SourceUnavailableError:
        text = self._link.note(error)
        hint = explain(error)
        return SourceUnavailableError(
            f"{self._uri}: cannot list {self._link.target}: {text}" + (f"; {hint}" if hint else "")
        )

    def _failed(self, error: Exception) -> str:
        """Count a failed poll; return the error's text (secrets hidden)."""
        if isinstance(error, sqlite3.DatabaseError) and not isinstance(
            error, sqlite3.OperationalError
        ):
            self._damaged = True  # the file, not the moment: open it again (set aside)
        self._counters["errors"] += 1
        return self._link.note(error)

    async def _poll_or_note(self, app: App) -> None:
        try:
            await self._poll(app, None)
        except Exception as exc:
            text = self._failed(exc)
            self._failed_polls += 1
            if self._failing_since is None:
                self._failing_since = app.clock.now()
                hint = explain(exc)
                logger.warning(
                    "%s: listing %s failed (%s%s); retrying every %g s",
                    self._uri,
                    self._link.target,
                    text,
                    f"; {hint}" if hint else "",
                    self._interval,
                    extra={"source": self.name},
                )
            else:
                logger.debug(
                    "%s: the poll failed again (%s)", self._uri, text, extra={"source": self.name}
                )
            return
        if self._failing_since is not None:
            down = (app.clock.now() - self._failing_since).total_seconds()
            logger.warning(
                "%s: listing %s works again after %.1f s (%d failed polls)",
                self._uri,
                self._link.target,
                down,
                self._failed_polls,
                extra={"source": self.name},
            )
            self._link.reconnects += 1
            self._failing_since, self._failed_polls = None, 0

    async def _poll(self, app: App, found: Found | None) -> PollResult:
        """List the prefix, publish the changes, store them; *found*: the state just opened."""
        state, lister = self._state, self._lister
        assert state is not None and lister is not None
        if self._damaged:
            state.close()
            found = await anyio.to_thread.run_sync(state.open)
            self._damaged = False
        baseline = found is not None and not found.usable
        if found is not None and not found.usable:
            await anyio.to_thread.run_sync(state.reset)
            gap = self.gap_event(
                app, reason=found.reason or "no stored state", since=found.polled_at
            )
            await self._link.publish_gap(app, gap)
            logger.info(
                "%s: %s; storing the listing of %s as the baseline",
                self._uri,
                found.reason,
                self._link.target,
                extra={"source": self.name},
            )
        merge = state.merge(self._page_size)
        counts = {"created": 0, "modified": 0, "removed": 0}
        listed = pages = 0
        token: str | None = None
        while True:
            page = await anyio.to_thread.run_sync(lister.page, token, abandon_on_cancel=True)
            pages += 1
            self._counters["pages"] += 1
            self._link.received += len(page.objects)
            self._link.malformed += page.malformed
            listed += len(page.objects)
            self._counters["listed"] += len(page.objects)
            objects = page.objects
            if self._suffix is not None:
                suffix = self._suffix
                kept = [o for o in objects if o.key.endswith(suffix)]
                self._counters["filtered"] += len(objects) - len(kept)
                objects = kept
            await self._drain(app, merge.page(objects), counts, announce=not baseline)
            if page.next_token is None:
                break
            token = page.next_token
        await self._drain(app, merge.rest(), counts, announce=not baseline)
        await anyio.to_thread.run_sync(state.finish, app.clock.now())
        self._counters["polls"] += 1
        return PollResult(
            listed=listed,
            pages=pages,
            created=counts["created"],
            modified=counts["modified"],
            removed=counts["removed"],
            baseline=baseline,
        )

    async def _drain(
        self, app: App, changes: Iterator[Change], counts: dict[str, int], *, announce: bool
    ) -> None:
        """Take *changes* a chunk at a time: publish each chunk, then store it."""
        state = self._state
        assert state is not None
        take = partial(_take, changes, _CHUNK)
        while chunk := await anyio.to_thread.run_sync(take):
            if announce:
                now = app.clock.now()
                bucket = self._where.bucket
                events = []
                for change in chunk:
                    counts[change.kind] += 1
                    self._counters[change.kind] += 1
                    if self._wanted(bucket, change.listed.key, _EVENT_NAMES[change.kind]):
                        events.append(self._event(change, now))
                    else:
                        self._counters["filtered"] += 1
                # One transaction on a durable queue when it has room for the chunk.
                await self._link.publish_many(app, events)
            await anyio.to_thread.run_sync(state.apply, chunk)

    def _event(self, change: Change, now: datetime) -> Event:
        return _object_event(
            change, bucket=self._where.bucket, region=self._region, poller=self._uri, now=now
        )


@attrs.frozen(kw_only=True)
class _Connection:
    """The connection options as given (``None``: the variable, else botocore's chain)."""

    endpoint_url: str | None
    region: str | None
    access_key_id: str | None
    secret_access_key: str | None = attrs.field(repr=False)
    session_token: str | None = attrs.field(repr=False)

    def resolve(self) -> Settings:
        return Settings.resolve(
            endpoint_url=self.endpoint_url,
            region=self.region,
            access_key_id=self.access_key_id,
            secret_access_key=self.secret_access_key,
            session_token=self.session_token,
        )


def _take(changes: Iterator[_T], count: int) -> list[_T]:
    return list(islice(changes, count))


def _event_source(bucket: str, region: str) -> str:
    # What object_event() makes of the adapter's "eventSource" + "." + "awsRegion" + "." +
    # bucket (cloudevents/spec, cloudevents/adapters/aws-s3.md).
    return f"aws:s3.{region}.{bucket}"


def _object_event(change: Change, *, bucket: str, region: str, poller: str, now: datetime) -> Event:
    """Build the event of one change with the shared builder (the adapter's mapping)."""
    listed = change.listed
    modified = _parse_time(listed.last_modified)
    # The same change found again (after a crash before it was stored) has the same id.
    identity = "\n".join(
        (bucket, listed.key, change.kind, listed.etag, str(listed.size), listed.last_modified)
    )
    event = object_event(
        _EVENT_NAMES[change.kind],
        bucket,
        listed.key,
        time=now if change.kind == "removed" or modified is None else modified,
        data={
            "change": change.kind,
            "bucket": bucket,
            "key": listed.key,
            "size": listed.size,
            "eTag": listed.etag.strip('"'),
            "lastModified": None if modified is None else modified.isoformat(),
        },
        region=region,
        id=hashlib.sha256(identity.encode()).hexdigest()[:32],
    )
    return attrs.evolve(event, extensions={POLLER_EXTENSION: poller})


def bucket_change(
    change: ChangeKind,
    bucket: str,
    key: str,
    *,
    name: str | Handler,
    size: int = 0,
    etag: str = "d41d8cd98f00b204e9800998ecf8427e",
    last_modified: datetime | None = None,
    region: str = "us-east-1",
    time: datetime | None = None,
) -> Event:
    """Build the event a bucket poller publishes for one change, for tests without a store::

        @app.on_bucket_change("s3://uploads/incoming/")
        async def on_upload(event: Event) -> None: ...

        await app.publish_and_wait(
            objects.bucket_change("created", "uploads", "incoming/a.csv", name=on_upload)
        )

    The poller builds its events here too: the same object listed with this ETag, size and
    time gives the same event, id included.

    :param change: ``"created"``, ``"modified"`` or ``"removed"``
    :param bucket: the bucket's name
    :param key: the object's key
    :param name: the poller the event comes from: its name, or the handler that
        :func:`on_bucket_change` decorated (without a ``name=``: the poller is named after
        the handler); the event's ``reactorpoller`` extension is ``/reactor/objects/<name>``,
        which is what the handler is subscribed to
    :param size: the object's size in bytes
    :param etag: its ETag (with or without the quotes S3 lists it with)
    :param last_modified: its last-modified time, aware (default: now); S3 lists it to the
        millisecond
    :param region: the region of the poller's client (the event's source)
    :param time: the event's time for ``"removed"``, when the poll found it gone (default:
        now); for the others it is *last_modified*
    :return: the event
    :raises TypeError: an argument of the wrong type
    :raises ValueError: an unknown change, an empty bucket, key or name
    """
    validators.one_of("change", change, _EVENT_NAMES)
    poller = uri_for(KIND, name)
    when = (
        datetime.now(UTC)
        if last_modified is None
        else validators.aware_datetime("last_modified", last_modified)
    )
    listed = Listed(
        key=validators.name("key", key),
        etag=f'"{etag.strip(chr(34))}"',
        size=validators.integer("size", size),
        last_modified=_listing_time(when),
    )
    return _object_event(
        Change(change, listed),
        bucket=validators.name("bucket", bucket),
        region=region,
        poller=poller,
        now=datetime.now(UTC) if time is None else validators.aware_datetime("time", time),
    )


def _listing_time(when: datetime) -> str:
    """*when* as S3's listings write it: ``2026-01-01T12:00:00.000Z``."""
    utc = when.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def _parse_time(text: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _checked_events(events: object) -> tuple[str, ...]:
    if isinstance(events, str) or not isinstance(events, tuple | list):
        raise TypeError(f"events must be a tuple of S3 event names, got {events!r}")
    checked = tuple(validators.name("events", e) for e in events)
    if not checked:
        raise ValueError("events must name at least one S3 event name, e.g. 'ObjectCreated:*'")
    for pattern in checked:
        one = BucketFilter(events=(pattern,))
        if not any(one("", "", name) for name in _EVENT_NAMES.values()):
            raise ValueError(
                f"events: {pattern!r} matches no event the poller publishes "
                f"({', '.join(sorted(set(_EVENT_NAMES.values())))})"
            )
    return checked


def on_bucket_change(
    app: App,
    /,
    url: str,
    *,
    interval: float = 60.0,
    suffix: str | None = None,
    events: tuple[str, ...] = ("ObjectCreated:*", "ObjectRemoved:*"),
    endpoint_url: str | None = None,
    region: str | None = None,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
    session_token: str | None = None,
    state: str | os.PathLike[str] | None = None,
    page_size: int = 1000,
    status_events: bool = False,
    **options: Unpack[ConsumerOptions],
) -> Callable[[H], H]:
    """Decorate a handler for the objects created, modified or removed under an S3 prefix,
    found by listing it every *interval* seconds.

    The handler receives one event per changed object, in the CloudEvents shape of the
    adapter specification for S3 (``cloudevents/adapters/aws-s3.md``): type
    ``"com.amazonaws.s3.ObjectCreated:Put"`` for an object created or overwritten
    (``data["change"]`` says which: ``"created"`` or ``"modified"``) and
    ``"com.amazonaws.s3.ObjectRemoved:Delete"`` for one removed, source
    ``aws:s3.<region>.<bucket>``, subject the key. Objects present at the first start are
    not announced (they make the baseline); changes made while the app was stopped are
    announced at the next start. Delivery is at least once (see the package documentation).

    :param app: the app
    :param url: ``s3://bucket/prefix``; the prefix is a string prefix of the keys (end it
        with ``/`` for a "directory"), empty for the whole bucket
    :param interval: seconds from the start of one poll to the start of the next (on the
        app's clock); each poll lists the whole prefix (1 request per 1,000 objects)
    :param suffix: only keys ending with this (``".csv"``); others are not stored either
    :param events: S3 event-name globs of the changes to publish (``"ObjectCreated:*"``
        for created and modified, ``"ObjectRemoved:*"`` for removed); the others are
        still stored and counted as ``filtered``
    :param endpoint_url: the S3 API of another store (``"http://127.0.0.1:9000"`` for
        MinIO); default the ``REACTOR_S3_ENDPOINT_URL`` variable, else botocore's
        (``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL``), else AWS
    :param region: default ``REACTOR_S3_REGION``, else ``AWS_REGION``,
        ``AWS_DEFAULT_REGION``, the AWS config file, else ``us-east-1``
    :param access_key_id: with *secret_access_key* (and *session_token* for temporary
        credentials); default the ``REACTOR_S3_ACCESS_KEY_ID``,
        ``REACTOR_S3_SECRET_ACCESS_KEY`` and ``REACTOR_S3_SESSION_TOKEN`` variables, else
        the AWS credential chain (``AWS_ACCESS_KEY_ID``, ``~/.aws``, an instance role).
        Secrets never appear in logs, errors or statistics
    :param secret_access_key: see *access_key_id*
    :param session_token: see *access_key_id*
    :param state: the SQLite file that keeps the last listing between runs (default:
        the ``REACTOR_S3_STATE`` variable, else ``reactor-objects.sqlite3`` in the working
        directory; ``":memory:"`` keeps nothing); several pollers may share one file
    :param page_size: objects per listing request (``MaxKeys``, at most 1,000): also the
        bound on what a poll holds in memory
    :param status_events: also hand the handler the poller's gap events
    :param options: the consumer's options (:class:`~reactor.ConsumerOptions`). ``name``
        (default: the handler's qualified name) is also the poller's name: its row in the
        state file, so keep it stable; ``ordered_by`` defaults to :func:`by_key`, which
        handles the events of one object in order (``None``: no ordering)
    :return: a decorator that subscribes the handler and returns it unchanged
    :raises TypeError: an option of the wrong type, or an unknown keyword argument
    :raises ValueError: a bad URL or option, or the name is taken (when decorating)
    :raises ModuleNotFoundError: botocore is not installed; the message names
        ``pip install 'reactor-events[s3]'``
    """
    poll: PollOptions = {
        "interval": interval,
        "suffix": suffix,
        "events": events,
        "endpoint_url": endpoint_url,
        "region": region,
        "access_key_id": access_key_id,
        "secret_access_key": secret_access_key,
        "session_token": session_token,
        "state": state,
        "page_size": page_size,
    }
    return decorator(
        app,
        "on_bucket_change",
        lambda name: BucketPollSource(url, name=name, **poll),
        _EVENT_TYPES,
        options,
        status_events=status_events,
        ordered_by=by_key,
    )
