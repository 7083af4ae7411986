"""The ``reactor`` command line: import strings, configuration, signals and exit codes.

The resolver and the configuration are tested in-process. Running apps is tested in
child processes (``python -m reactor`` and the ``reactor`` console script) that print
lines the test waits for, so no test sleeps to wait for anything.
"""

from __future__ import annotations

import os
import pickle
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from importlib.metadata import version
from pathlib import Path

import pytest

import reactor
from reactor import AppImportError, Reactor
from reactor._cli import (
    ConfigError,
    RunSettings,
    build_parser,
    import_app,
    main,
    resolve_run_settings,
)

ROOT = Path(__file__).resolve().parents[1]
APPS = ROOT / "tests" / "apps"
BIN = Path(sys.executable).parent

#: How long a child may take to reach a line or to exit before the test fails.
PATIENCE = 20.0

#: Part of the line Reactor.run() logs when the first signal starts the drain.
DRAIN_LOG = "stopping sources and draining"
#: The exit status of ``reactor run`` when a second signal forced the stop: Reactor.run()'s 1.
FORCED = 1

ENV_VARS = (
    "REACTOR_APP_DIR",
    "REACTOR_BACKEND",
    "REACTOR_GRACEFUL_TIMEOUT",
    "REACTOR_HTTP",
    "REACTOR_LOG_CONFIG",
    "REACTOR_LOG_FORMAT",
    "REACTOR_LOG_LEVEL",
    "REACTOR_LOOP",
)

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


@pytest.fixture
def isolated_imports(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Undo what importing test apps does to ``sys.path`` and ``sys.modules``."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.startswith("cliapp"):
            del sys.modules[name]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove ``REACTOR_*`` variables the developer may have set."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


def settings(*args: str, env: Mapping[str, str] | None = None) -> RunSettings:
    """Resolve ``reactor run`` settings from arguments and an environment."""
    return resolve_run_settings(build_parser().parse_args(["run", *args]), env or {})


def load(app: str, *, factory: bool = False) -> Reactor:
    """Import *app* with the test apps' directory as the app dir."""
    return import_app(app, app_dir=str(APPS), factory=factory)


def app_import_error(app: str, *, factory: bool = False) -> str:
    """Return the message of the AppImportError that importing *app* raises."""
    with pytest.raises(AppImportError) as caught:
        load(app, factory=factory)
    return str(caught.value)


# -- the import-string resolver ---------------------------------------------------------


@pytest.mark.usefixtures("isolated_imports")
class TestImportApp:
    def test_module_and_attribute(self) -> None:
        app = load("cliapp_good:app")
        assert app is sys.modules["cliapp_good"].app

    def test_dotted_attribute(self) -> None:
        assert load("cliapp_good:services.app") is load("cliapp_good:app")

    def test_dotted_module(self) -> None:
        assert isinstance(load("cliapp_pkg.events:app"), Reactor)

    def test_app_dir_defaults_to_the_current_directory(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.chdir(APPS)
        assert isinstance(import_app("cliapp_good:app"), Reactor)

    def test_app_dir_goes_first_on_sys_path(self) -> None:
        load("cliapp_good:app")
        assert sys.path[0] == str(APPS)

    def test_factory(self) -> None:
        app = load("cliapp_good:create_app", factory=True)
        assert isinstance(app, Reactor)
        assert app is not sys.modules["cliapp_good"].app

    def test_file_path(self) -> None:
        app = load(f"{APPS / 'cliapp_file_app.py'}:app")
        assert app is sys.modules["cliapp_file_app"].app

    def test_relative_file_path(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.chdir(ROOT)
        assert isinstance(import_app("tests/apps/cliapp_file_app.py:app"), Reactor)

    def test_file_module_is_registered_for_pickle_and_dataclasses(self) -> None:
        load(f"{APPS / 'cliapp_file_app.py'}:app")
        module = sys.modules["cliapp_file_app"]
        order = module.Order(id=1)
        assert pickle.loads(pickle.dumps(order)) == order

    def test_file_already_imported_as_that_module_is_reused(self) -> None:
        app = load("cliapp_good:app")
        assert load(f"{APPS / 'cliapp_good.py'}:app") is app

    def test_failing_file_module_is_not_left_in_sys_modules(self, tmp_path: Path) -> None:
        path = tmp_path / "cliapp_fails.py"
        path.write_text("raise RuntimeError('boom')\n")
        with pytest.raises(RuntimeError, match="boom"):
            load(f"{path}:app")
        assert "cliapp_fails" not in sys.modules

    @pytest.mark.parametrize(
        "app", ["cliapp_good", "cliapp_good:", ":app", "cliapp_good:services..app", "m:1app"]
    )
    def test_malformed(self, app: str) -> None:
        message = app_import_error(app)
        assert repr(app) in message or "not a valid" in message

    def test_no_colon_says_the_expected_form(self) -> None:
        assert "'module:attribute'" in app_import_error("cliapp_good")

    def test_module_not_found(self) -> None:
        message = app_import_error("cliapp_nowhere:app")
        assert "could not import module 'cliapp_nowhere'" in message

    def test_submodule_not_found(self) -> None:
        message = app_import_error("cliapp_pkg.nowhere:app")
        assert "could not import module 'cliapp_pkg.nowhere'" in message

    def test_package_not_found(self) -> None:
        message = app_import_error("cliapp_nowhere.events:app")
        assert "'cliapp_nowhere.events'" in message
        assert "no module named 'cliapp_nowhere'" in message

    def test_missing_import_inside_the_module_is_the_modules_bug(self) -> None:
        with pytest.raises(ModuleNotFoundError) as caught:
            load("cliapp_broken:app")
        assert not isinstance(caught.value, AppImportError)
        assert caught.value.name == "cliapp_missing_dependency"

    def test_file_not_found(self) -> None:
        message = app_import_error(f"{APPS / 'cliapp_nowhere.py'}:app")
        assert "cliapp_nowhere.py" in message
        assert "not found" in message

    def test_file_that_is_not_python(self, tmp_path: Path) -> None:
        path = tmp_path / "cliapp_data.txt"
        path.write_text("app = 1\n")
        assert "not a Python source file" in app_import_error(f"{path}:app")

    def test_file_named_like_an_imported_module(self, tmp_path: Path) -> None:
        path = tmp_path / "json.py"
        path.write_text("app = 1\n")
        message = app_import_error(f"{path}:app")
        assert "'json'" in message
        assert "already imported" in message
        assert sys.modules["json"].__file__ != str(path)

    def test_attribute_missing(self) -> None:
        message = app_import_error("cliapp_good:nowhere")
        assert message == "attribute 'nowhere' not found in module 'cliapp_good'"

    def test_dotted_attribute_missing(self) -> None:
        message = app_import_error("cliapp_good:services.nowhere")
        assert "attribute 'services.nowhere' not found in module 'cliapp_good'" in message
        assert "'services' has no attribute 'nowhere'" in message

    def test_not_a_reactor(self) -> None:
        message = app_import_error("cliapp_good:not_an_app")
        assert message == "'cliapp_good:not_an_app' is an object of type int, not a reactor.Reactor"

    def test_callable_without_factory_suggests_it(self) -> None:
        message = app_import_error("cliapp_good:create_app")
        assert "is the function cliapp_good.create_app, not a reactor.Reactor" in message
        assert message.endswith("pass --factory")

    def test_the_reactor_class_itself(self) -> None:
        message = app_import_error("cliapp_good:Reactor")
        assert message == (
            "'cliapp_good:Reactor' is the Reactor class itself, not an instance; "
            "create one (app = Reactor()) or pass --factory"
        )

    def test_a_module(self) -> None:
        load("cliapp_pkg.events:app")  # importing a submodule sets it on its package
        message = app_import_error("cliapp_pkg:events")
        assert "is the module cliapp_pkg.events, not a reactor.Reactor" in message

    def test_factory_returning_something_else(self) -> None:
        message = app_import_error("cliapp_good:make_number", factory=True)
        assert "returned an object of type int, not a reactor.Reactor" in message

    def test_factory_that_is_not_callable(self) -> None:
        assert "not callable" in app_import_error("cliapp_good:not_an_app", factory=True)

    def test_factory_needing_arguments(self) -> None:
        message = app_import_error("cliapp_good:needs_arguments", factory=True)
        assert "cannot be called without arguments" in message

    def test_async_factory(self) -> None:
        message = app_import_error("cliapp_good:create_app_async", factory=True)
        assert "coroutine function" in message


# -- configuration ----------------------------------------------------------------------


class TestSettings:
    def test_defaults(self) -> None:
        resolved = settings("m:app")
        assert resolved == RunSettings(
            app="m:app",
            app_dir=".",
            factory=False,
            backend="asyncio",
            use_uvloop=True,  # loop "auto", and the dev extra installs uvloop
            graceful_timeout=None,
            log_level="info",
        )

    def test_environment_beats_defaults(self) -> None:
        env = {
            "REACTOR_APP_DIR": "/srv/app",
            "REACTOR_BACKEND": "trio",
            "REACTOR_GRACEFUL_TIMEOUT": "2.5",
            "REACTOR_LOG_LEVEL": "DEBUG",
        }
        resolved = settings("m:app", env=env)
        assert resolved.app_dir == "/srv/app"
        assert resolved.backend == "trio"
        assert resolved.use_uvloop is False
        assert resolved.graceful_timeout == 2.5
        assert resolved.log_level == "debug"

    def test_arguments_beat_environment(self) -> None:
        env = {
            "REACTOR_APP_DIR": "/srv/app",
            "REACTOR_BACKEND": "trio",
            "REACTOR_GRACEFUL_TIMEOUT": "2.5",
            "REACTOR_LOG_LEVEL": "debug",
            "REACTOR_LOOP": "uvloop",
        }
        resolved = settings(
            "m:app",
            "--app-dir=src",
            "--backend=asyncio",
            "--graceful-timeout=7",
            "--log-level=error",
            "--loop=asyncio",
            env=env,
        )
        assert resolved.app_dir == "src"
        assert resolved.backend == "asyncio"
        assert resolved.graceful_timeout == 7.0
        assert resolved.log_level == "error"
        assert resolved.use_uvloop is False

    def test_loop_from_environment(self) -> None:
        assert settings("m:app", env={"REACTOR_LOOP": "asyncio"}).use_uvloop is False
        assert settings("m:app", env={"REACTOR_LOOP": "uvloop"}).use_uvloop is True

    def test_empty_variables_count_as_unset(self) -> None:
        resolved = settings("m:app", env=dict.fromkeys(ENV_VARS, ""))
        assert resolved == settings("m:app")

    @pytest.mark.parametrize(
        ("variable", "value"),
        [
            ("REACTOR_BACKEND", "curio"),
            ("REACTOR_LOOP", "tokio"),
            ("REACTOR_LOG_LEVEL", "loud"),
            ("REACTOR_GRACEFUL_TIMEOUT", "soon"),
            ("REACTOR_GRACEFUL_TIMEOUT", "-1"),
            ("REACTOR_GRACEFUL_TIMEOUT", "nan"),
            ("REACTOR_GRACEFUL_TIMEOUT", "inf"),
        ],
    )
    def test_bad_environment_value_names_the_variable(self, variable: str, value: str) -> None:
        with pytest.raises(ConfigError, match=variable) as caught:
            settings("m:app", env={variable: value})
        assert repr(value) in str(caught.value)

    def test_uvloop_on_trio_is_an_error(self) -> None:
        with pytest.raises(ConfigError, match="--loop='uvloop' applies only to the asyncio"):
            settings("m:app", "--backend=trio", "--loop=uvloop")
        with pytest.raises(ConfigError, match="REACTOR_LOOP='uvloop'"):
            settings("m:app", "--backend=trio", env={"REACTOR_LOOP": "uvloop"})

    def test_auto_loop_on_trio(self) -> None:
        assert settings("m:app", "--backend=trio").use_uvloop is False

    def test_choices_ignore_case(self) -> None:
        resolved = settings("m:app", "--backend=TRIO", "--log-level=Warning")
        assert (resolved.backend, resolved.log_level) == ("trio", "warning")

    def test_factory_flag(self) -> None:
        assert settings("m:create", "--factory").factory is True


@pytest.mark.usefixtures("clean_env")
class TestMain:
    def test_version(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["--version"]) == 0
        assert capsys.readouterr().out == f"reactor {reactor.__version__}\n"

    def test_the_installed_version_is_the_one_the_package_declares(self) -> None:
        # One place holds the version (reactor.__version__); the build reads it from there.
        assert version("reactor-events") == reactor.__version__

    def test_no_command(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main([]) == 2
        assert "required: command" in capsys.readouterr().err

    def test_bad_argument(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["run", "m:app", "--graceful-timeout=-3"]) == 2
        err = capsys.readouterr().err
        assert "reactor run: error: argument --graceful-timeout: '-3' must be" in err

    def test_bad_environment_is_one_line(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        monkeypatch.setenv("REACTOR_BACKEND", "curio")
        assert main(["run", "m:app"]) == 2
        assert capsys.readouterr().err == (
            "reactor: error: REACTOR_BACKEND='curio' is not one of asyncio, trio\n"
        )


# -- running apps in a child process ----------------------------------------------------

LAUNCHERS = {
    "python -m reactor": [sys.executable, "-m", "reactor"],
    "reactor script": [str(BIN / "reactor")],
}


class Child:
    """A ``reactor`` child process whose output lines (stdout and stderr) we can await."""

    def __init__(self, command: list[str], env: Mapping[str, str]) -> None:
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._received: queue.Queue[str | None] = queue.Queue()
        # A thread reads the pipe so that waiting for a line can have a deadline.
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._received.put(line.rstrip("\n"))
        self._received.put(None)

    @property
    def output(self) -> str:
        """Everything the child printed so far that the test has read."""
        return "\n".join(self.lines)

    def wait_for(self, text: str) -> str:
        """Read lines until one contains *text*; fail if the child exits or stalls."""
        deadline = time.monotonic() + PATIENCE
        while True:
            try:
                line = self._received.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                pytest.fail(f"no line with {text!r} within {PATIENCE} s:\n{self.output}")
            if line is None:
                code = self.process.wait(PATIENCE)
                pytest.fail(f"exited with {code} before printing {text!r}:\n{self.output}")
            self.lines.append(line)
            if text in line:
                return line

    def send(self, signum: signal.Signals) -> None:
        """Send *signum* to the child."""
        self.process.send_signal(signum)

    def exit_code(self, timeout: float = PATIENCE) -> int:
        """Wait for the child to exit, read the rest of its output, return its status."""
        code = self.process.wait(timeout=timeout)
        self._reader.join(PATIENCE)
        while (line := self._received.get_nowait()) is not None:
            self.lines.append(line)
        return code

    def close(self) -> None:
        """Kill the child if it still runs and release its pipe."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(PATIENCE)
        self._reader.join(PATIENCE)
        assert self.process.stdout is not None
        self.process.stdout.close()


@pytest.fixture
def spawn() -> Iterator[Callable[..., Child]]:
    """Start ``reactor`` children; kill any left running when the test ends."""
    children: list[Child] = []
    env = dict(os.environ)
    for name in ENV_VARS:
        env.pop(name, None)
    env["PYTHONUNBUFFERED"] = "1"

    def start(
        *args: str, launcher: str = "python -m reactor", extra_env: Mapping[str, str] | None = None
    ) -> Child:
        child = Child([*LAUNCHERS[launcher], *args], {**env, **(extra_env or {})})
        children.append(child)
        return child

    yield start
    for child in children:
        child.close()


def started_job(child: Child) -> tuple[str, str]:
    """Wait for the handler to start; return the event id and what it runs on."""
    _, event_id, flavour = child.wait_for("started ").split()
    return event_id, flavour


@posix_only
@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_sigterm_drains_in_flight_work(spawn: Callable[..., Child], launcher: str) -> None:
    child = spawn("run", "--app-dir=tests/apps", "cliapp_signals:app", launcher=launcher)
    event_id, flavour = started_job(child)
    assert flavour == "uvloop"  # --loop auto, and uvloop is installed
    child.send(signal.SIGTERM)
    assert child.exit_code() == 0, child.output
    assert f"finished {event_id}" in child.lines


@posix_only
def test_sigint_drains_in_flight_work(spawn: Callable[..., Child]) -> None:
    child = spawn("run", "--loop=asyncio", "tests/apps/cliapp_signals.py:app")
    event_id, flavour = started_job(child)
    assert flavour == "asyncio"
    child.send(signal.SIGINT)
    assert child.exit_code() == 0, child.output
    assert f"finished {event_id}" in child.lines
    assert "Traceback" not in child.output


@posix_only
def test_second_signal_forces_exit(spawn: Callable[..., Child]) -> None:
    child = spawn("run", "--graceful-timeout=60", "tests/apps/cliapp_signals.py:stubborn")
    event_id, _ = started_job(child)
    child.send(signal.SIGTERM)
    child.wait_for(DRAIN_LOG)
    child.send(signal.SIGTERM)
    # Well under the handler's 30 s of work and the 60 s graceful timeout.
    assert child.exit_code(timeout=5) == FORCED, child.output
    assert f"finished {event_id}" not in child.lines


@posix_only
def test_second_signal_while_sources_stop_forces_exit(spawn: Callable[..., Child]) -> None:
    child = spawn("run", "--graceful-timeout=60", "tests/apps/cliapp_signals.py:slow_to_stop")
    event_id, _ = started_job(child)
    child.send(signal.SIGTERM)
    child.wait_for("source stopping")  # it cleans up for a second, shielded
    child.send(signal.SIGTERM)
    assert child.exit_code(timeout=5) == FORCED, child.output
    assert f"finished {event_id}" not in child.lines


@posix_only
def test_graceful_timeout_from_environment_cuts_the_drain(spawn: Callable[..., Child]) -> None:
    child = spawn(
        "run",
        "tests/apps/cliapp_signals.py:stubborn",
        extra_env={"REACTOR_GRACEFUL_TIMEOUT": "0.2"},
    )
    event_id, _ = started_job(child)
    child.send(signal.SIGTERM)
    child.wait_for("not drained within 0.2 s")
    assert child.exit_code() == 0, child.output  # a graceful stop, cut at its deadline
    assert f"finished {event_id}" not in child.lines


@posix_only
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_trio_backend_drains_on_signal(spawn: Callable[..., Child], signum: signal.Signals) -> None:
    child = spawn("run", "--backend=trio", "--app-dir=tests/apps", "cliapp_signals:app")
    event_id, flavour = started_job(child)
    assert flavour == "trio"
    child.send(signum)
    assert child.exit_code() == 0, child.output
    assert f"finished {event_id}" in child.lines


@pytest.mark.parametrize("launcher", LAUNCHERS)
@pytest.mark.parametrize(
    ("app", "message"),
    [
        ("cliapp_nowhere:app", "could not import module 'cliapp_nowhere'"),
        ("cliapp_good:nowhere", "attribute 'nowhere' not found in module 'cliapp_good'"),
        ("tests/apps/cliapp_nowhere.py:app", "file 'tests/apps/cliapp_nowhere.py' not found"),
    ],
)
def test_import_errors_are_one_line(
    spawn: Callable[..., Child], launcher: str, app: str, message: str
) -> None:
    child = spawn("run", "--app-dir=tests/apps", app, launcher=launcher)
    assert child.exit_code() == 2
    assert len(child.lines) == 1, child.output
    assert child.lines[0].startswith(f"reactor: error: {message}")


def test_missing_import_inside_the_app_shows_its_traceback(spawn: Callable[..., Child]) -> None:
    child = spawn("run", "--app-dir=tests/apps", "cliapp_broken:app")
    assert child.exit_code() == 1
    assert "Traceback" in child.output
    assert "No module named 'cliapp_missing_dependency'" in child.lines[-1]
    assert "reactor: error:" not in child.output


def test_an_app_whose_dispatcher_dies_exits_non_zero(spawn: Callable[..., Child]) -> None:
    child = spawn("run", "--app-dir=tests/apps", "cliapp_dying:app")
    assert child.exit_code() == 1
    assert "the queue's storage broke" in child.output
    assert "reactor's dispatcher task died; the app stops" in child.output
