"""``reactor run --http``, ``--log-format json`` and ``--log-config``, in child processes.

Each test runs the ``reactor`` command on a tiny app of ``tests/apps``, reads its output
line by line (waiting for lines, never sleeping), talks HTTP to it over loopback with
:mod:`http.client`, and parses its JSON log lines with :func:`json.loads`.
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from reactor import Event
from reactor._cli import ConfigError, build_parser, main, resolve_run_settings

pytest.importorskip("uvicorn")

ROOT = Path(__file__).resolve().parents[1]
PATIENCE = 20.0
SERVING = re.compile(r"serving HTTP on http://127\.0\.0\.1:(\d+)")

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


class Child:
    """A ``python -m reactor`` child whose stderr lines the test awaits."""

    def __init__(self, args: list[str], env: Mapping[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "reactor", *args],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._received: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._received.put(line.rstrip("\n"))
        self._received.put(None)

    def wait_for(self, text: str) -> str:
        """Read lines until one contains *text*; fail if the child exits or stalls."""
        deadline = time.monotonic() + PATIENCE
        while True:
            try:
                line = self._received.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                pytest.fail(f"no line with {text!r} within {PATIENCE} s:\n" + "\n".join(self.lines))
            if line is None:
                code = self.process.wait(PATIENCE)
                pytest.fail(f"exited with {code} before {text!r}:\n" + "\n".join(self.lines))
            self.lines.append(line)
            if text in line:
                return line

    def exit_code(self) -> int:
        """Wait for the child to exit and read the rest of its output."""
        code = self.process.wait(timeout=PATIENCE)
        self._reader.join(PATIENCE)
        while (line := self._received.get_nowait()) is not None:
            self.lines.append(line)
        return code

    def close(self) -> None:
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
    env = {k: v for k, v in os.environ.items() if not k.startswith("REACTOR_")}
    env["PYTHONUNBUFFERED"] = "1"

    def start(*args: str) -> Child:
        child = Child(list(args), env)
        children.append(child)
        return child

    yield start
    for child in children:
        child.close()


def request(port: int, method: str, path: str, body: bytes = b"", **headers: str) -> Any:
    """Send one request to the child's server; return the status and the JSON body."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=PATIENCE)
    try:
        connection.request(method, path, body, {k.replace("_", "-"): v for k, v in headers.items()})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def records(lines: list[str]) -> list[dict[str, Any]]:
    """Parse every line as one JSON object (a line that is not fails the test)."""
    parsed = [json.loads(line) for line in lines]
    assert all(isinstance(record, dict) for record in parsed)
    return parsed


# -- --http -----------------------------------------------------------------------------


@posix_only
def test_http_serves_the_ingress_and_sigterm_stops_both(spawn: Callable[..., Child]) -> None:
    child = spawn(
        "run", "--app-dir=tests/apps", "cliapp_http:app", "--http=127.0.0.1:0", "--log-format=json"
    )
    match = SERVING.search(child.wait_for("serving HTTP on"))
    assert match is not None
    port = int(match.group(1))
    child.wait_for("reactor running")

    assert request(port, "GET", "/healthz") == (200, {"status": "alive"})
    status, health = request(port, "GET", "/readyz")
    assert (status, health["ready"], health["state"], health["problems"]) == (
        200,
        True,
        "running",
        [],
    )
    event = Event(type="com.example.order", source="/shop", data={"id": 1})
    headers, body = event.to_http()
    assert request(port, "POST", "/", body, **headers) == (202, {"ids": [event.id]})
    child.wait_for(f"handled {event.id}")

    child.process.send_signal(signal.SIGTERM)
    assert child.exit_code() == 0
    logs = records(child.lines)
    handled = next(r for r in logs if r["message"] == f"handled {event.id}")
    assert handled["logger"] == "cliapp_http"
    assert handled["level"] == "INFO"
    assert (handled["event_id"], handled["consumer"]) == (event.id, "handle")
    assert {"timestamp", "level", "logger", "message"} <= set(logs[0])
    messages = [r["message"] for r in logs]
    # The held import-time record, then the server after the app, then a clean stop.
    assert messages.index("imported") < messages.index("reactor running; press Ctrl-C to stop")
    # The server stopped (uvicorn's last line) before the app's drain ended.
    assert messages.index("Shutting down") < messages.index("reactor stopped")
    assert messages[-1] == "reactor stopped"


@posix_only
def test_http_that_cannot_bind_stops_the_app_with_a_clear_error(
    spawn: Callable[..., Child],
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        child = spawn("run", "--app-dir=tests/apps", "cliapp_http:app", f"--http=127.0.0.1:{port}")
        assert child.exit_code() == 1
    assert child.lines[-1].startswith(
        f"reactor: error: cannot serve HTTP on http://127.0.0.1:{port}: "
    )
    assert "reactor running" not in "\n".join(child.lines)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--http=8000"], "--http='8000' is not HOST:PORT"),
        (["--http=localhost:http"], "is not HOST:PORT"),
        (["--http=127.0.0.1:70000"], "is not HOST:PORT"),
        (["--http=127.0.0.1:8000", "--backend=trio"], "needs --backend asyncio"),
        (["--log-config=x.json", "--log-format=json"], "not both"),
    ],
)
def test_usage_errors(args: list[str], message: str) -> None:
    namespace = build_parser().parse_args(["run", "m:app", *args])
    with pytest.raises(ConfigError, match=re.escape(message)):
        resolve_run_settings(namespace, {})


def test_settings_from_the_environment() -> None:
    namespace = build_parser().parse_args(["run", "m:app"])
    env = {"REACTOR_HTTP": "[::1]:0", "REACTOR_LOG_FORMAT": "JSON"}
    resolved = resolve_run_settings(namespace, env)
    assert (resolved.http, resolved.log_format, resolved.log_config) == (("::1", 0), "json", None)


# -- logging ----------------------------------------------------------------------------

JSON_CONFIG = {
    "version": 1,
    "formatters": {"json": {"()": "reactor.JsonFormatter"}},
    "handlers": {
        "err": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    },
    "root": {"level": "INFO", "handlers": ["err"]},
}
TOML_CONFIG = """\
version = 1
[formatters.json]
"()" = "reactor.JsonFormatter"
[handlers.err]
class = "logging.StreamHandler"
formatter = "json"
stream = "ext://sys.stderr"
[root]
level = "INFO"
handlers = ["err"]
"""


@posix_only
@pytest.mark.parametrize("suffix", [".json", ".toml"])
def test_log_config_file(spawn: Callable[..., Child], tmp_path: Path, suffix: str) -> None:
    config = tmp_path / f"logging{suffix}"
    config.write_text(json.dumps(JSON_CONFIG) if suffix == ".json" else TOML_CONFIG)
    child = spawn("run", "--app-dir=tests/apps", "cliapp_http:app", f"--log-config={config}")
    child.wait_for("reactor running")
    child.process.send_signal(signal.SIGTERM)
    assert child.exit_code() == 0
    messages = [record["message"] for record in records(child.lines)]
    assert messages[0] == "imported"
    assert messages[-1] == "reactor stopped"


def test_a_bad_log_config_file_is_a_usage_error(
    spawn: Callable[..., Child], tmp_path: Path
) -> None:
    config = tmp_path / "logging.json"
    config.write_text('{"handlers": {}}')
    child = spawn("run", "--app-dir=tests/apps", "cliapp_http:app", f"--log-config={config}")
    assert child.exit_code() == 2
    assert "must hold a logging dictConfig dictionary" in child.lines[-1]


@posix_only
def test_the_apps_own_logging_setup_is_kept(spawn: Callable[..., Child]) -> None:
    child = spawn("run", "--app-dir=tests/apps", "cliapp_own_logging:app")
    child.wait_for("OWN reactor: reactor running")
    child.process.send_signal(signal.SIGTERM)
    assert child.exit_code() == 0
    assert "OWN reactor.cli: starting cliapp_own_logging:app" in child.lines[0]
    assert all(line.startswith("OWN ") for line in child.lines)


@posix_only
def test_log_format_asked_for_replaces_the_apps_setup(spawn: Callable[..., Child]) -> None:
    child = spawn("run", "--app-dir=tests/apps", "cliapp_own_logging:app", "--log-format=json")
    child.wait_for("reactor running")
    child.process.send_signal(signal.SIGTERM)
    assert child.exit_code() == 0
    assert records(child.lines)[-1]["message"] == "reactor stopped"


@posix_only
def test_text_logs_by_default_show_what_the_import_logged(spawn: Callable[..., Child]) -> None:
    child = spawn("run", "--app-dir=tests/apps", "cliapp_http:app")
    child.wait_for("reactor running")
    child.process.send_signal(signal.SIGTERM)
    assert child.exit_code() == 0
    assert re.fullmatch(r"\S+ \S+ INFO +cliapp_http: imported", child.lines[0])


def test_http_without_uvicorn_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # As if uvicorn were not installed: its import fails, and --http with it.
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    monkeypatch.delitem(sys.modules, "reactor._cli._http", raising=False)
    monkeypatch.delattr("reactor._cli._http", raising=False)
    for name in [name for name in os.environ if name.startswith("REACTOR_")]:
        monkeypatch.delenv(name)
    assert main(["run", "tests/apps/cliapp_http.py:app", "--http=127.0.0.1:0"]) == 2
    assert capsys.readouterr().err == (
        "reactor: error: --http serves with uvicorn, which is not installed: "
        "pip install 'reactor-events[serve]'\n"
    )
