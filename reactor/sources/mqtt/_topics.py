"""MQTT topic names and filters: checking them, and matching topics to filters.

The rules are MQTT 3.1.1 section 4.7 (the same in MQTT 5): levels are separated by ``/``;
``+`` matches one whole level and ``#`` (alone in the last level) any number of levels,
the parent level included (``a/#`` matches ``a``); a filter that starts with a wildcard
does not match a topic that starts with ``$`` (``$SYS/...``). A shared subscription
``$share/<group>/<filter>`` is matched by its filter.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from reactor import validators

__all__ = ["TopicFilters", "check_filter", "check_topic", "shared_filter", "topic_matches"]

# UTF-8 strings in MQTT packets are at most this long (a two-byte length).
_MAX_BYTES: Final = 65535
_SHARE: Final = "$share/"


def _check_text(what: str, text: object) -> str:
    value = validators.name(what, text)
    if "\0" in value:
        raise ValueError(f"{what} {value!r} has a NUL character, which MQTT does not allow")
    if len(value.encode("utf-8", "surrogatepass")) > _MAX_BYTES:
        raise ValueError(f"{what} is longer than MQTT's limit of {_MAX_BYTES} bytes")
    return value


def check_topic(topic: object) -> str:
    """Return *topic* if it is a valid MQTT topic name (what a message is published to).

    :raises TypeError: *topic* is not a str
    :raises ValueError: it is empty, too long, or has a wildcard or a NUL character
    """
    value = _check_text("topic", topic)
    if "+" in value or "#" in value:
        raise ValueError(f"topic {value!r} has a wildcard: a message's topic has none")
    return value


def shared_filter(text: str) -> tuple[str | None, str]:
    """Split ``$share/<group>/<filter>`` into the group and the filter (no group: ``None``)."""
    if not text.startswith(_SHARE):
        return None, text
    group, _, inner = text[len(_SHARE) :].partition("/")
    return group, inner


def check_filter(text: object) -> str:
    """Return *text* if it is a valid MQTT topic filter (what a client subscribes to).

    :raises TypeError: *text* is not a str
    :raises ValueError: it is empty or too long, has a NUL character, a ``+`` that is not a
        whole level, a ``#`` that is not the whole last level, or is a ``$share/``
        subscription without a group or a filter
    """
    value = _check_text("topic filter", text)
    group, inner = shared_filter(value)
    if group is not None and (not group or "+" in group or "#" in group or not inner):
        raise ValueError(
            f"topic filter {value!r}: a shared subscription is '$share/<group>/<filter>', "
            "with a group name without wildcards"
        )
    levels = inner.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            raise ValueError(
                f"topic filter {value!r}: '#' must be a whole level, the last one "
                "(as in 'sensors/#')"
            )
        if "+" in level and level != "+":
            raise ValueError(
                f"topic filter {value!r}: '+' must be a whole level (as in 'sensors/+/temp')"
            )
    return value


def _matches(levels: tuple[str, ...], topic: Sequence[str], system: bool) -> bool:
    if system and levels[0] in ("+", "#"):
        return False
    for index, level in enumerate(levels):
        if level == "#":
            return True
        if index >= len(topic) or (level != "+" and level != topic[index]):
            return False
    return len(topic) == len(levels)


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Whether *topic* matches *topic_filter*, by MQTT's rules (see the module's docs).

    :param topic_filter: a valid filter (``"sensors/+/temperature"``, ``"$share/g/a/#"``)
    :param topic: a topic name
    :raises ValueError: *topic_filter* is not a valid filter
    """
    return TopicFilters([check_filter(topic_filter)]).first_match(topic) == 0


class TopicFilters:
    """A source's topic filters, in the order given, for matching incoming topics.

    :param filters: valid filters (see :func:`check_filter`)
    """

    __slots__ = ("_filters", "_levels")

    def __init__(self, filters: Sequence[str]) -> None:
        self._filters = tuple(filters)
        self._levels = tuple(tuple(shared_filter(f)[1].split("/")) for f in self._filters)

    @property
    def filters(self) -> tuple[str, ...]:
        """The filters, as given."""
        return self._filters

    def first_match(self, topic: str) -> int | None:
        """The index of the first filter that matches *topic*, or ``None``.

        :param topic: a topic name
        """
        levels = topic.split("/")
        system = topic.startswith("$")
        for index, filter_levels in enumerate(self._levels):
            if _matches(filter_levels, levels, system):
                return index
        return None
