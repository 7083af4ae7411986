"""The documentation's examples: the getting-started page runs as a newcomer would run it,
and every Python example of every page is valid Python."""

from __future__ import annotations

import ast
import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
#: A fenced Python block, with the file name its ``title`` gives, if any.
BLOCK = re.compile(
    r'^```python(?: title="(?P<title>[^"]+)")?\n(?P<code>.*?)^```', flags=re.DOTALL | re.MULTILINE
)


def test_the_docs_have_pages() -> None:
    assert DOCS / "getting-started.md" in PAGES
    assert len(PAGES) >= 20


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(DOCS)))
def test_every_python_example_is_valid_python(page: Path) -> None:
    for match in BLOCK.finditer(page.read_text(encoding="utf-8")):
        code = match.group("code")
        # Fragments may await at the top level, as they would inside `async def main()`.
        compile(code, f"{page.name} example", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


#: The pages whose Python examples are whole programs, run as they are.
RUNNABLE = [
    "index.md",
    "concepts/delivery.md",
    "concepts/events.md",
    "concepts/queues.md",
    "concepts/triggers.md",
    "how-to/durable-queues.md",
    "how-to/observability.md",
    "how-to/plugins.md",
    "how-to/testing.md",
    "queues/sqlite.md",
]


def _programs(page: str) -> list[str]:
    """The page's Python examples that are programs; a block with a ``title`` is a file,
    run by a test of its own."""
    text = (DOCS / page).read_text(encoding="utf-8")
    return [m.group("code") for m in BLOCK.finditer(text) if not m.group("title")]


@pytest.mark.parametrize(
    ("page", "index"),
    [(page, index) for page in RUNNABLE for index in range(len(_programs(page)))],
)
def test_runnable_example_runs(
    page: str, index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code = _programs(page)[index]
    exec(compile(code, f"{page} example {index}", "exec"), {"__name__": "__docs__"})


def _run_the_pages_tests(page: str, tmp_path: Path) -> str:
    """Write out the page's files, as named, run ``pytest test_shop.py`` as the page does;
    return pytest's output."""
    text = (DOCS / page).read_text(encoding="utf-8")
    files = {m.group("title"): m.group("code") for m in BLOCK.finditer(text) if m.group("title")}
    assert set(files) == {"shop.py", "test_shop.py"}
    for name, code in files.items():
        (tmp_path / name).write_text(code, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_shop.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=110,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.timeout(120)
def test_getting_started_app_and_its_tests_pass(tmp_path: Path) -> None:
    """The page's files, written out as named, and its test run with pytest as shown."""
    output = _run_the_pages_tests("getting-started.md", tmp_path)
    # anyio's plugin runs each test on every backend installed: asyncio, and trio here.
    assert re.search(r"^6 passed", output, flags=re.M), output
    page = (DOCS / "getting-started.md").read_text(encoding="utf-8")
    assert "3 passed" in page and "6 passed" in page  # the outputs the page shows


@pytest.mark.timeout(120)
def test_the_pytest_plugin_example_passes(tmp_path: Path) -> None:
    """The testing page's app and its tests, which use the installed plugin's fixtures
    under anyio's plugin and pytest-asyncio's strict mode."""
    output = _run_the_pages_tests("how-to/testing.md", tmp_path)
    # The anyio test on asyncio and trio, the pytest-asyncio test on asyncio.
    assert re.search(r"^3 passed", output, flags=re.M), output
    assert "3 passed" in (DOCS / "how-to" / "testing.md").read_text(encoding="utf-8")


def _roles() -> Any:
    spec = importlib.util.spec_from_file_location("docs_roles", DOCS / "_roles.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sphinx_markup_reads_as_markdown_in_the_api_reference() -> None:
    markdown = _roles().markdown
    assert markdown("See :func:`asgi` and :class:`~reactor.abc.Source`.") == (
        "See `asgi` and `Source`."
    )
    assert markdown(":meth:`Reactor.run() <reactor.Reactor.run>`") == "`Reactor.run()`"
    assert markdown("`cronsim <https://pypi.org/project/cronsim/>`_") == (
        "[cronsim](https://pypi.org/project/cronsim/)"
    )
    assert markdown("Like this::\n\n    x = 1\n\n    y = 2\n\nAfter.") == (
        "Like this:\n\n```python\nx = 1\n\ny = 2\n```\n\nAfter."
    )
    assert markdown("Data ::\n\n    {}\n") == "Data\n\n```python\n{}\n```\n"
    # A module's pointer to its manual becomes a link from its reference page.
    pointer = 'the "MQTT" page: ``docs/triggers/mqtt.md`` in the repository\n(``mkdocs serve`` to read the site).'
    assert _roles()._page_links(pointer) == (
        'the "MQTT" page: [docs/triggers/mqtt.md](../../triggers/mqtt.md).'
    )
    # Simple tables and definition lists of literals, as reactor.prometheus and
    # reactor.pytest_plugin write them.
    table = (
        "====  =====  ====\n"
        "name  type   what\n"
        "====  =====  ====\n"
        "``a``  gauge  one,\n"
        "             two\n"
        "``b_  count  three\n"
        "c``\n"
        "====  =====  ====\n"
    )
    assert markdown(table) == (
        "| name | type | what |\n|---|---|---|\n| ``a`` | gauge | one, two |\n"
        "| ``b_c`` | count | three |\n"
    )
    assert markdown("Fixtures:\n\n``clock``\n    a new\n    clock.\n\nAfter.") == (
        "Fixtures:\n\n``clock``\n:   a new clock.\n\nAfter."
    )
    # Sphinx fields are left to mkdocstrings' sphinx style.
    assert markdown(":param x: the x\n:raises ValueError: bad") == (
        ":param x: the x\n:raises ValueError: bad"
    )


def test_every_docs_page_a_module_points_to_exists_and_is_in_the_nav() -> None:
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    pointers = {
        path.relative_to(ROOT): match.group(1)
        for path in (ROOT / "reactor").rglob("*.py")
        for match in re.finditer(r"``docs/([\w/-]+\.md)``", path.read_text(encoding="utf-8"))
    }
    assert len(pointers) >= 9
    for module, page in pointers.items():
        assert (DOCS / page).is_file(), f"{module} points to docs/{page}, which is missing"
        assert f": {page}\n" in nav, f"docs/{page} ({module}) is not in mkdocs.yml's nav"


def test_the_command_line_page_names_every_option_and_variable_of_reactor_run() -> None:
    """The reference page against ``reactor run --help``, so a new option is documented."""
    proc = subprocess.run(
        [sys.executable, "-m", "reactor", "run", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    options = set(re.findall(r"^  (--[a-z-]+)", proc.stdout, flags=re.M)) - {"--help"}
    variables = set(re.findall(r"\bREACTOR_[A-Z_]+\b", proc.stdout))
    assert {"--http", "--log-format", "--log-config", "--queue"} <= options
    assert {"REACTOR_HTTP", "REACTOR_LOG_FORMAT", "REACTOR_LOG_CONFIG"} <= variables
    page = (DOCS / "reference" / "cli.md").read_text(encoding="utf-8")
    missing = sorted(name for name in options | variables if f"`{name}" not in page)
    assert not missing, f"docs/reference/cli.md does not name {missing}"
