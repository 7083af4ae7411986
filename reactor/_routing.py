"""Routing: which subscriptions an event of a given type and source goes to.

An index of the subscriptions and a bounded cache of its answers. A subscription is
filed under what it matches exactly, so that finding the subscriptions of an event
tests only the candidates that may match it, not every subscription::

    type pattern   source filter    filed under         tested per lookup
    exact          exact            (type, source)      no test: a dict lookup
    exact          any, or a glob   type                the source glob, if any
    a glob         exact            source              the type glob
    a glob         any, or a glob   the rest            both globs (scanned)

With 10,000 subscriptions that each filter on their own source, a lookup is a few dict
lookups, whatever the number of subscriptions; only subscriptions with a glob on the
type and no exact source (``"*"``, ``"order.*"``) are tested one by one on every lookup.

The cache keeps the answer for each (type, source) pair seen, up to a limit: 4,096 pairs,
or twice the number of subscriptions if that is more (an app with a subscription per
source keeps a route per source; memory grows with what the app subscribed, never with
what senders send). When it is full, the oldest eighth of it goes (first in, first out),
so that a new pair costs an insertion and, amortised, a fraction of an eviction. A hit costs one dict lookup and never
reorders the cache, which keeps the common case (a few hot pairs) at its cheapest; an
evicted pair costs one indexed lookup when it comes back. Subscribing or cancelling
empties the cache: an answer may change, and the index answers again.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from itertools import islice
from typing import Any, Generic, TypeAlias, TypeVar

from ._subscription import Subscription, is_glob

__all__ = ["ROUTES_PER_SUBSCRIPTION", "ROUTE_CACHE_LIMIT", "Route", "Router"]

T = TypeVar("T", bound=Hashable)

#: Routes kept in the cache (distinct type/source pairs), at least; beyond the limit, the
#: oldest go. The limit is this or ROUTES_PER_SUBSCRIPTION per subscription, the larger.
ROUTE_CACHE_LIMIT = 4096
ROUTES_PER_SUBSCRIPTION = 2
#: The share of the cache evicted at once when it is full (the oldest eighth).
EVICT_SHARE = 8

#: The targets of an event in subscription order, and whether any of them has a
#: ``where`` filter (then the route still depends on the event itself).
Route: TypeAlias = tuple[tuple[T, ...], bool]

_Test: TypeAlias = Callable[[str], bool]


class _Entry(Generic[T]):
    """One subscription in the index: its target, its place in subscription order, and
    the tests that its bucket leaves to do (``None``: matched by the bucket's key)."""

    __slots__ = ("filtered", "order", "source_test", "target", "type_test")

    def __init__(
        self,
        target: T,
        order: int,
        type_test: _Test | None,
        source_test: _Test | None,
        filtered: bool,
    ) -> None:
        self.target = target
        self.order = order
        self.type_test = type_test
        self.source_test = source_test
        self.filtered = filtered


class _Bucket(Generic[T]):
    """The entries filed under one key, in subscription order (a dict as an ordered set:
    an entry leaves it in O(1))."""

    __slots__ = ("_route", "entries")

    def __init__(self) -> None:
        self.entries: dict[_Entry[T], None] = {}
        self._route: Route[T] | None = None

    def changed(self) -> None:
        self._route = None

    def route(self) -> Route[T]:
        """The route to every entry: an exact bucket's whole answer, kept until it changes."""
        route = self._route
        if route is None:
            entries = self.entries
            route = self._route = (
                tuple([e.target for e in entries]),
                any(e.filtered for e in entries),
            )
        return route


#: Buckets by key: (type, source), type, or source.
_Index: TypeAlias = dict[Hashable, _Bucket[T]]

_NO_ROUTE: Route[Any] = ((), False)


def _order(entry: _Entry[T]) -> int:
    return entry.order


class Router(Generic[T]):
    """The subscriptions' index and the cache of routes, for targets of type *T*.

    :param limit: the most (type, source) routes kept in :attr:`cache`, unless there
        are more than half as many subscriptions (then twice their number)
    """

    def __init__(self, limit: int = ROUTE_CACHE_LIMIT) -> None:
        #: ``(type, source)`` to its route; the dispatcher reads it directly on the hot
        #: path and calls :meth:`lookup` on a miss.
        self.cache: dict[tuple[str, str], Route[T]] = {}
        self._least = self._limit = limit
        self._evict = max(1, limit // EVICT_SHARE)
        # Each target's entry, the index it is filed in (None: the rest) and its key there.
        self._entries: dict[T, tuple[_Entry[T], _Index[T] | None, Hashable]] = {}
        self._exact: _Index[T] = {}
        self._by_type: _Index[T] = {}
        self._by_source: _Index[T] = {}
        self._rest: _Bucket[T] = _Bucket()
        self._added = 0

    def add(self, sub: Subscription, target: T) -> None:
        """Route the events that *sub* matches to *target*, after every target added before.

        :param sub: the subscription: its type pattern, source filter and ``where``
        :param target: what its route lists for it (the dispatcher's lane)
        """
        exact_type = not is_glob(sub.pattern)
        exact_source = sub.source is not None and not is_glob(sub.source)
        entry = _Entry(
            target,
            self._added,
            None if exact_type else sub._matches_type,
            None if exact_source else sub._matches_source,
            # A subscription with gates (batch=, rate_limit=, debounce=) is routed through
            # the filtered path too, which offers its events to the gates.
            sub.where is not None
            or sub.batch is not None
            or sub.rate_limit is not None
            or sub.debounce is not None,
        )
        self._added += 1
        index: _Index[T] | None
        key: Hashable = None
        if exact_type and exact_source:
            index, key = self._exact, (sub.pattern, sub.source)
        elif exact_type:
            index, key = self._by_type, sub.pattern
        elif exact_source:
            index, key = self._by_source, sub.source
        else:
            index = None
        bucket = self._rest if index is None else index.get(key)
        if bucket is None:
            assert index is not None
            bucket = index[key] = _Bucket()
        bucket.entries[entry] = None
        bucket.changed()
        self._entries[target] = (entry, index, key)
        self._changed()

    def remove(self, target: T) -> None:
        """Stop routing to *target*.

        :raises KeyError: *target* is not routed to
        """
        entry, index, key = self._entries.pop(target)
        bucket = self._rest if index is None else index[key]
        del bucket.entries[entry]
        bucket.changed()
        if index is not None and not bucket.entries:
            # Dropped, so that subscriptions that came and went leave no keys behind.
            del index[key]
        self._changed()

    def _changed(self) -> None:
        self.cache.clear()
        self._limit = max(self._least, ROUTES_PER_SUBSCRIPTION * len(self._entries))
        self._evict = max(1, self._limit // EVICT_SHARE)

    def lookup(self, key: tuple[str, str]) -> Route[T]:
        """Find the targets of an event of ``(type, source)`` *key*, and cache the route.

        :return: the targets in the order they were added, and whether any has a
            ``where`` filter
        """
        type, source = key
        exact = self._exact.get(key)
        by_type = self._by_type.get(type) if self._by_type else None
        by_source = self._by_source.get(source) if self._by_source else None
        route: Route[T]
        if by_type is None and by_source is None and not self._rest.entries:
            route = _NO_ROUTE if exact is None else exact.route()
        else:
            route = self._search(type, source, exact, by_type, by_source)
        cache = self.cache
        if len(cache) >= self._limit:
            # The oldest routes go, a share at a time: a dict (unlike an OrderedDict)
            # keeps insertion order without a linked list to maintain on every insert.
            for old in list(islice(cache, self._evict)):
                del cache[old]
        cache[key] = route
        return route

    def _search(
        self,
        type: str,
        source: str,
        exact: _Bucket[T] | None,
        by_type: _Bucket[T] | None,
        by_source: _Bucket[T] | None,
    ) -> Route[T]:
        """Test the candidates of every bucket that may hold a match, and merge them."""
        found: list[_Entry[T]] = []
        parts = 0
        if exact is not None:
            found += exact.entries
            parts += 1
        if by_type is not None:
            matches = [e for e in by_type.entries if e.source_test is None or e.source_test(source)]
            found += matches
            parts += bool(matches)
        if by_source is not None:
            # Filed by source: each has a type test.
            matches = [e for e in by_source.entries if e.type_test and e.type_test(type)]
            found += matches
            parts += bool(matches)
        matches = [
            e
            for e in self._rest.entries
            if e.type_test
            and e.type_test(type)
            and (e.source_test is None or e.source_test(source))
        ]
        found += matches
        parts += bool(matches)
        if parts > 1:
            found.sort(key=_order)
        return tuple([e.target for e in found]), any(e.filtered for e in found)
