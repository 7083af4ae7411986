"""What the trigger decorators share: checking the options, and subscribing the handler.

A trigger's decorator (``on_redis_message(app, ...)``) is the one definition of its
source's options: their defaults in its signature, their meanings in its docstring. The
source's class takes the same options as keyword arguments (a TypedDict of them), with the
defaults read from the decorator's signature by :func:`with_defaults`. The decorator checks
every argument at once, where the mistake is, and :func:`decorator` returns what subscribes
the handler to the events of a new source named after it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from reactor import ConsumerOptions, Handler, KeyFunction, validators
from reactor.abc import App, default_name, run_with_subscription

from ._naming import NamedSource

__all__ = ["decorator", "distinct", "with_defaults"]

H = TypeVar("H", bound=Handler)


def with_defaults(
    owner: str, given: Mapping[str, Any], allowed: type, decorator: Callable[..., object]
) -> dict[str, Any]:
    """Return the options *given* to a source's class, the others at their defaults.

    :param owner: the class's name, for the message
    :param given: the keyword arguments received
    :param allowed: the TypedDict of the options
    :param decorator: the trigger's decorator, whose signature gives the defaults
    :raises TypeError: a keyword argument that *allowed* does not declare
    """
    validators.keywords(owner, given, allowed)
    keys = allowed.__optional_keys__  # type: ignore[attr-defined]
    defaults = {
        key: value for key, value in (decorator.__kwdefaults__ or {}).items() if key in keys
    }
    return {**defaults, **given}


def distinct(what: str, names: Sequence[str], check: Callable[[str], object]) -> None:
    """Check what a source subscribes to (channels, topic filters): one at least, each valid
    and given once.

    :param what: what they are, for the messages (``"topic filter"``)
    :param names: the names given
    :param check: checks one name; raises when it is not valid
    :raises ValueError: no name, or one given twice (and what *check* raises)
    """
    if not names:
        raise ValueError(f"give at least one {what} to subscribe to")
    for name in names:
        check(name)
        if names.count(name) > 1:
            raise ValueError(f"{what} {name!r} is given twice")


def decorator(
    app: App,
    function: str,
    make: Callable[[str], NamedSource],
    events: str,
    options: ConsumerOptions,
    *,
    status_events: bool = False,
    ordered_by: KeyFunction | None = None,
) -> Callable[[H], H]:
    """Check a trigger's arguments, and return the decorator that subscribes a handler.

    The decorator makes the handler's source (named by the consumer's ``name``, by default
    the handler's qualified name), subscribes the handler to that source's events (what
    :meth:`NamedSource.subscription` says), and adds the source to *app*; it returns the
    handler unchanged.

    :param app: the app
    :param function: the trigger's name, for messages (``"on_redis_message"``)
    :param make: makes the source, given its name; called once at once, with a name of
        its own, to check the arguments
    :param events: the type pattern of the source's own events (``"reactor.redis.message"``)
    :param options: the consumer's options
    :param status_events: the ``status_events`` argument: also hand the handler the
        source's other events (its gap events), every type of the source's URI
    :param ordered_by: the consumer's ``ordered_by`` when *options* have none (absent, not
        ``None``: ``None`` asks for no ordering)
    :raises TypeError: an unknown consumer option, or *status_events* is not a bool
    :raises ValueError: what *make* raises for a bad argument
    """
    validators.keywords(function, options, ConsumerOptions)
    validators.boolean("status_events", status_events)
    make("check")
    if ordered_by is not None and "ordered_by" not in options:
        options["ordered_by"] = ordered_by

    def decorate(handler: H) -> H:
        name = options.get("name")
        source = make(default_name(handler) if name is None else name)
        subscribing = source.subscription(events, status_events=status_events)
        run_with_subscription(
            app,
            source,
            subscribing.pattern,
            handler,
            events_from=subscribing.source,
            where=subscribing.where,
            **options,
        )
        return handler

    return decorate
