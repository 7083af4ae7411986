"""Helpers of the MQTT tests: unique topics, publishing, sessions, and a broker of their own.

Publishing and session cleanup use paho-mqtt's blocking client in a worker thread (a test
publisher needs nothing of the source under test). :class:`OwnBroker` is a Mosquitto on a
free port with a configuration file of the test's own, which the test stops and starts;
the shared broker is never touched.
"""

from __future__ import annotations

import getpass
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

import anyio.to_thread
import pytest
from source_tools import free_port

#: Where Debian installs the broker (it is not on a normal user's PATH).
MOSQUITTO = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin")


def unique_topic(label: str) -> str:
    """A topic prefix no other test uses."""
    return f"reactor-test/{label}/{secrets.token_hex(4)}"


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 1883


def _client(v5: bool = True) -> object:
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

    return paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
    )


def _publish(
    url: str,
    messages: Sequence[tuple[str, bytes | str]],
    qos: int,
    retain: bool,
    auth: tuple[str, str] | None,
) -> None:
    import paho.mqtt.client as paho

    client = _client()
    assert isinstance(client, paho.Client)
    if auth is not None:
        client.username_pw_set(*auth)
    client.connect(*_address(url))
    client.loop_start()
    try:
        infos = [client.publish(topic, data, qos=qos, retain=retain) for topic, data in messages]
        for info in infos:
            info.wait_for_publish(10)  # QoS 1: until the broker acknowledged it
            assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


async def publish(
    url: str,
    *messages: tuple[str, bytes | str],
    qos: int = 1,
    retain: bool = False,
    auth: tuple[str, str] | None = None,
) -> None:
    """Publish *messages* (topic, payload) in order, and wait until the broker has them."""
    await anyio.to_thread.run_sync(_publish, url, messages, qos, retain, auth)


def _forget(url: str, client_id: str) -> None:
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = 0
    client.connect(*_address(url), clean_start=True, properties=properties)
    client.loop_start()
    try:
        deadline = time.monotonic() + 10
        while not client.is_connected() and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        client.disconnect()
        client.loop_stop()


async def forget_session(url: str, client_id: str) -> None:
    """Make the broker discard the session of *client_id* (a clean start that expires)."""
    await anyio.to_thread.run_sync(_forget, url, client_id)


class OwnBroker:
    """A Mosquitto of the test's own on a free port, which it may stop and start again.

    :param directory: where its configuration, password file and store go
    :param persistence: whether it saves its sessions and messages across a restart
    :param users: ``{name: password}``; when given, anonymous clients are refused
    """

    def __init__(
        self, directory: Path, *, persistence: bool = True, users: dict[str, str] | None = None
    ) -> None:
        if MOSQUITTO is None:
            pytest.skip("mosquitto is not installed")
        self.port = free_port()
        self.url = f"mqtt://127.0.0.1:{self.port}"
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        # Run as whoever runs the tests (as root, Mosquitto would switch to its own user,
        # who cannot write the store into the test's directory).
        lines = [f"listener {self.port} 127.0.0.1", f"user {getpass.getuser()}"]
        if users:
            passwords = directory / "passwords"
            passwords.touch()
            for user, password in users.items():
                subprocess.run(
                    ["mosquitto_passwd", "-b", str(passwords), user, password], check=True
                )
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        else:
            lines.append("allow_anonymous true")
        if persistence:
            lines += ["persistence true", f"persistence_location {directory}/"]
        self.config = directory / "mosquitto.conf"
        self.config.write_text("\n".join(lines) + "\n")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert MOSQUITTO is not None and self.process is None
        self.process = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def stop(self) -> None:
        """Stop it as a service manager would (SIGTERM: it saves its store first)."""
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(10)
            self.process = None

    def wipe(self) -> None:
        """Delete its store: the next start knows no session."""
        assert self.process is None
        (self.directory / "mosquitto.db").unlink(missing_ok=True)
