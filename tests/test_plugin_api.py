"""The plugin API: what a third-party source or queue may use, through the public names only."""

from __future__ import annotations

import importlib
import inspect
import json
import typing
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import TaskStatus
from hypothesis import given, settings
from hypothesis import strategies as st

from reactor import (
    UNSET,
    ConsumerOptions,
    Event,
    EventAttributes,
    EventFormatError,
    Reactor,
    Retry,
    validators,
)
from reactor.abc import App, Source, load_json, run_with_subscription
from reactor.testing import Capture

pytestmark = pytest.mark.anyio


class Ticker(Source):
    """A third-party source written against the App protocol only."""

    def __init__(self, count: int) -> None:
        self.count = count

    async def run(
        self, app: App, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        for n in range(self.count):
            await app.publish("tick", n, source="/ticker", subject=str(n))


def _as_app(app: Reactor) -> App:
    # Checked by mypy: the concrete app meets the protocol that plugins are given.
    return app


async def test_a_source_written_against_app_runs_in_a_reactor() -> None:
    app = Reactor()
    seen: list[Any] = []

    async def handler(event: Event) -> None:
        seen.append(event.data)

    run_with_subscription(_as_app(app), Ticker(3), "tick", handler, events_from="/ticker")
    async with app:
        pass
    assert seen == [0, 1, 2]
    assert app.subscriptions[0].source == "/ticker"


def test_run_with_subscription_leaves_no_source_when_the_subscription_fails() -> None:
    app = Reactor()

    async def handler(event: Event) -> None: ...

    app.subscribe("tick", handler, name="taken")
    with pytest.raises(ValueError, match="taken"):
        run_with_subscription(app, Ticker(1), "tick", handler, name="taken")
    assert app.sources == ()


@pytest.mark.parametrize(
    ("module", "function"),
    [
        ("timers", "every"),
        ("timers", "cron"),
        ("timers", "at"),
        ("files", "on_file_change"),
        ("http", "on_webhook"),
        ("objects", "on_bucket_event"),
    ],
)
def test_trigger_shortcuts_are_the_plugin_functions_bound_to_the_app(
    module: str, function: str
) -> None:
    plugin = getattr(importlib.import_module(f"reactor.sources.{module}"), function)
    app = Reactor()
    shortcut = getattr(app, function)
    assert shortcut.__func__ is plugin
    assert shortcut.__self__ is app
    assert inspect.getdoc(shortcut) == inspect.getdoc(plugin)
    parameters = list(inspect.signature(plugin).parameters.values())
    assert list(inspect.signature(shortcut).parameters.values()) == parameters[1:]
    assert inspect.getdoc(getattr(Reactor, function))  # the class attribute says what it is


def test_unknown_keywords_are_refused_like_python_does() -> None:
    app = Reactor()

    async def handler(event: Event) -> None: ...

    with pytest.raises(TypeError, match=r"subscribe\(\) got an unexpected keyword argument 'nme'"):
        app.subscribe("x", handler, nme="typo")  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="unexpected keyword argument 'timout'"):
        app.on_notification("orders", timout=1)  # type: ignore[call-arg]
    assert app.subscriptions == ()


async def test_publish_refuses_unknown_attributes_and_takes_the_known_ones() -> None:
    app = Reactor()
    capture = Capture()
    app.subscribe("*", capture)
    async with app:
        with pytest.raises(TypeError, match=r"publish\(\) got an unexpected keyword argument"):
            await app.publish("t", 1, subjet="typo")  # type: ignore[call-arg]
        attributes: EventAttributes = {"subject": "s", "id": "fixed", "source": None}
        event = await app.publish("t", 2, **attributes)
        with pytest.raises(TypeError, match="not both"):
            await app.publish(event, subject="again")
    assert [(e.data, e.subject, e.id, e.source) for e in capture.events] == [
        (2, "s", "fixed", "/reactor")
    ]


async def test_unset_means_the_apps_default_and_none_means_none() -> None:
    app = Reactor(timeout=5.0, retry=Retry(attempts=3))

    async def handler(event: Event) -> None: ...

    defaults: ConsumerOptions = {"name": "inherited", "timeout": UNSET, "retry": UNSET}
    inherited = app.subscribe("a", handler, **defaults)
    cleared = app.subscribe("b", handler, name="cleared", timeout=None, retry=None)
    assert (inherited.timeout, inherited.retry.attempts) == (5.0, 3)
    assert (cleared.timeout, cleared.retry.attempts) == (None, 1)
    assert repr(UNSET) == "UNSET"


def test_load_json_is_the_codecs_strict_reader() -> None:
    assert load_json(b'{"a": [1, "\\u00e9"]}') == {"a": [1, "é"]}
    for bad in (b"NaN", b'"\\ud800"', b"\xff", b"[" * 100_000, b"[1e400]"):
        with pytest.raises(EventFormatError):
            load_json(bad)


def test_load_json_takes_json_whitespace_around_the_value_and_nothing_else() -> None:
    assert load_json(b' \t{"a": 1}\r\n ') == {"a": 1}
    assert load_json("[1.5]\n") == [1.5]
    for bad, where in (
        ('{"a": 1} x', "Extra data: line 1 column 10"),
        ("{}{}", "Extra data"),
        ("{}\x0b", "Extra data"),  # not JSON whitespace
        ("", "Expecting value: line 1 column 1"),
        ("  ", "Expecting value: line 1 column 3"),
        ("\ufeff{}", "Expecting value"),
    ):
        with pytest.raises(EventFormatError, match=f"invalid JSON: {where}"):
            load_json(bad)


_JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(codec="utf-8")),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(st.characters(codec="utf-8")), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(deadline=None, database=None)
@given(
    _JSON_VALUES,
    st.text(" \t\r\n", max_size=3),
    st.text(" \t\r\n", max_size=3),
    st.booleans(),
)
def test_load_json_reads_what_json_writes(
    value: object, before: str, after: str, ascii_only: bool
) -> None:
    text = before + json.dumps(value, ensure_ascii=ascii_only) + after
    assert load_json(text) == value
    assert load_json(text.encode()) == value


class TestValidators:
    """One rule: the wrong type raises TypeError, a bad value of the right type ValueError."""

    def test_integer(self) -> None:
        assert validators.integer("n", 3, minimum=1) == 3
        for wrong_type in (1.0, True, "3", None):
            with pytest.raises(TypeError, match="n must be an int >= 1"):
                validators.integer("n", wrong_type, minimum=1)
        with pytest.raises(ValueError, match="n must be an int >= 1, got 0"):
            validators.integer("n", 0, minimum=1)

    def test_number_and_seconds(self) -> None:
        assert validators.number("x", -2, minimum=None) == -2.0
        assert validators.seconds("s", 0) == 0.0
        assert validators.seconds("s", 2.5, positive=True) == 2.5
        for wrong_type in (True, "1", None):
            with pytest.raises(TypeError, match="finite number"):
                validators.number("x", wrong_type)
            with pytest.raises(TypeError, match="s must be a finite number of seconds"):
                validators.seconds("s", wrong_type)
        for bad in (float("nan"), float("inf"), -1):
            with pytest.raises(ValueError, match="s must be a finite number of seconds >= 0"):
                validators.seconds("s", bad)
        with pytest.raises(ValueError, match="> 0"):
            validators.seconds("s", 0, positive=True)
        with pytest.raises(ValueError, match=">= 1"):
            validators.number("x", 0.5, minimum=1)

    def test_aware_datetime(self) -> None:
        moment = datetime(2030, 1, 1, tzinfo=timezone(timedelta(hours=2)))
        assert validators.aware_datetime("when", moment) is moment
        with pytest.raises(TypeError, match="when must be a datetime"):
            validators.aware_datetime("when", "2030-01-01")
        with pytest.raises(ValueError, match="aware"):
            validators.aware_datetime("when", datetime(2030, 1, 1))
        assert validators.aware_datetime("when", datetime(2030, 1, 1, tzinfo=UTC))

    def test_one_of_and_name(self) -> None:
        assert validators.one_of("mode", "skip", ("skip", "queue")) == "skip"
        with pytest.raises(ValueError, match="mode must be one of 'skip', 'queue', got 'x'"):
            validators.one_of("mode", "x", ("skip", "queue"))
        with pytest.raises(TypeError, match="mode must be one of"):
            validators.one_of("mode", 1, ("skip", "queue"))
        assert validators.name("channel", "c") == "c"
        with pytest.raises(TypeError):
            validators.name("channel", b"c")
        with pytest.raises(ValueError):
            validators.name("channel", "")

    def test_boolean(self) -> None:
        assert validators.boolean("recursive", True) is True
        assert validators.boolean("recursive", False) is False
        for wrong_type in (0, 1, "no", None):
            with pytest.raises(TypeError, match="recursive must be a bool"):
                validators.boolean("recursive", wrong_type)

    def test_keywords(self) -> None:
        validators.keywords("f", {"name": "n", "retry": None}, ConsumerOptions)
        with pytest.raises(TypeError, match=r"f\(\) got an unexpected keyword argument 'a'"):
            validators.keywords("f", {"b": 1, "a": 2}, ConsumerOptions)


def _package(root: Path, name: str, private: str) -> None:
    (root / name).mkdir()
    (root / name / "_impl.py").write_text(private)
    (root / name / "__init__.py").write_text(
        "from reactor.abc import export_from\n"
        "from ._impl import Price as Price\n"
        "export_from(__name__, globals())\n"
    )


def test_export_from_moves_names_and_keeps_their_type_hints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _package(
        tmp_path,
        "plugin_resolved",
        "from __future__ import annotations\n"
        "from decimal import Decimal\n"
        "class Price:\n"
        "    amount: Decimal\n",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    package = importlib.import_module("plugin_resolved")
    assert package.Price.__module__ == "plugin_resolved"
    assert typing.get_type_hints(package.Price) == {"amount": Decimal}


def test_export_from_survives_annotations_for_type_checkers_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A name imported under `if TYPE_CHECKING:` cannot be resolved at run time; the
    # package must still import (it raised NameError), its names still move.
    _package(
        tmp_path,
        "plugin_type_checking",
        "from __future__ import annotations\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from decimal import Decimal\n"
        "class Price:\n"
        "    amount: Decimal\n",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    package = importlib.import_module("plugin_type_checking")
    assert package.Price.__module__ == "plugin_type_checking"
    assert package.Price.__annotations__ == {"amount": "Decimal"}
