"""The pytest plugin, used as a user uses it: a module-level app and its tests, run by pytest.

Each test writes a user's project (an app module and a test file) and runs pytest on it in
a subprocess, with pytest-asyncio in strict mode or with anyio's plugin, as a user's CI
does; the plugin comes from reactor's ``pytest11`` entry point, not from a conftest.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

#: The user's app: built at module level, on the system clock, as apps are.
SHOP = """
from reactor import Event, Reactor

app = Reactor()
reports: list[str] = []


@app.cron("0 3 * * *", name="nightly")
async def nightly_report(event: Event) -> None:
    reports.append(event.data["scheduled"])


@app.on_notification("orders")
async def confirm(event: Event) -> None:
    if event.data["id"] < 0:
        raise ValueError("no such order")


@app.on_webhook("/github", type="com.github.push", secret="s3cret", scheme="github")
async def pushed(event: Event) -> None: ...
"""

#: The user's tests, the same under both plugins: only the marker differs.
TESTS = """
import pytest

from reactor import testing
from shop import app, confirm, reports

pytestmark = {marker}


async def test_the_nightly_report_runs_at_three(reactor_run, reactor_clock):
    reports.clear()
    async with reactor_run(app) as recorder:
        await reactor_clock.advance(3 * 3600)
    recorder.assert_ran("nightly", times=1, status="ok")
    assert reports == ["2026-01-01T03:00:00Z"]


async def test_fired_triggers(reactor_run):
    async with reactor_run(app) as recorder:
        receipt = await testing.fire(app, "nightly")
        assert receipt.ok
        assert (await testing.fire_notification(app, "orders", {{"id": 1}})).ok
        failed = await testing.fire_notification(app, "orders", {{"id": -1}})
        assert failed.outcomes["confirm"].status == "failed"
        reply = await testing.fire_webhook(app, "/github", {{"ref": "main"}})
        assert reply.status == 202 and reply.ok
    recorder.assert_ran_with(confirm, data={{"id": 1}})
    assert recorder.outcomes(confirm) == ["ok", "failed"]
    recorder.assert_ran("pushed", times=1)


async def test_the_app_has_its_own_clock_again(reactor_run, reactor_clock):
    from reactor import SystemClock

    assert isinstance(app.clock, SystemClock)
    async with reactor_run(app, virtual_time=False):
        assert isinstance(app.clock, SystemClock)
        assert (await testing.fire(app, "nightly")).ok
"""

ANYIO_CONFTEST = """
import pytest


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param
"""

INI = """
[pytest]
filterwarnings = error
"""
ASYNCIO_INI = (
    INI
    + """
asyncio_mode = strict
asyncio_default_fixture_loop_scope = function
"""
)


def write_project(pytester: pytest.Pytester, marker: str) -> None:
    pytester.makeini(ASYNCIO_INI if "asyncio" in marker else INI)
    pytester.makepyfile(shop=SHOP, test_shop=TESTS.format(marker=marker))
    pytester.syspathinsert()


def test_the_fixtures_under_pytest_asyncio_strict_mode(pytester: pytest.Pytester) -> None:
    write_project(pytester, "pytest.mark.asyncio")
    result = pytester.runpytest_subprocess("-p", "no:anyio", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


def test_the_fixtures_under_anyio_on_asyncio_and_trio(pytester: pytest.Pytester) -> None:
    write_project(pytester, "pytest.mark.anyio")
    pytester.makeconftest(ANYIO_CONFTEST)
    result = pytester.runpytest_subprocess("-p", "no:asyncio", "-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines(["*test_fired_triggers?trio? PASSED*"])


def test_the_naive_fixture_fails_under_pytest_asyncio(pytester: pytest.Pytester) -> None:
    # Why the plugin's fixture gives a context manager to enter in the test, rather than
    # the running app: pytest-asyncio runs an async fixture's setup and its teardown in
    # different tasks, and the app's task group must be left by the task that entered it.
    pytester.makeini(ASYNCIO_INI)
    pytester.makepyfile(shop=SHOP)
    pytester.makepyfile(
        test_naive=textwrap.dedent(
            """
            import pytest
            import pytest_asyncio

            from shop import app


            @pytest_asyncio.fixture
            async def running():
                async with app:
                    yield app


            @pytest.mark.asyncio
            async def test_publish(running):
                await running.publish("order.created")
            """
        )
    )
    pytester.syspathinsert()
    result = pytester.runpytest_subprocess("-p", "no:anyio", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        ["*Attempted to exit cancel scope in a different task than it was entered in*"]
    )


def test_the_plugin_is_registered_and_imports_reactor_lazily(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_lazy="""
        import sys


        def test_nothing_of_reactor_is_imported(pytestconfig):
            assert pytestconfig.pluginmanager.has_plugin("reactor")
            assert "reactor.testing" not in sys.modules
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:asyncio", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_the_readme_pytest_example_passes(pytester: pytest.Pytester) -> None:
    # The README's test file, against the README's shop module, under both plugins.
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Testing an app built at module level", 1)[1]
    shop = re.findall(r"^```python\n(.*?)^```", section, flags=re.DOTALL | re.MULTILINE)[0]
    shop = shop.split("\nasync def test_the_shop", 1)[0]
    [test_file] = re.findall(r"^```py\n(.*?)^```", section, flags=re.DOTALL | re.MULTILINE)
    assert test_file.startswith("# test_shop.py\n")
    pytester.makepyfile(shop=shop)
    pytester.syspathinsert()
    pytester.makeini(ASYNCIO_INI)
    pytester.makepyfile(test_shop=test_file)
    result = pytester.runpytest_subprocess("-p", "no:anyio", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    pytester.makeini(INI)
    pytester.makeconftest(ANYIO_CONFTEST)
    pytester.makepyfile(test_shop=test_file.replace("pytest.mark.asyncio", "pytest.mark.anyio"))
    result = pytester.runpytest_subprocess("-p", "no:asyncio", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
