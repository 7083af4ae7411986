"""A private S3 server for the bucket poller's tests and benchmark: moto's, in a child process.

:class:`S3Server` starts ``python -m benchmarks._s3server`` (moto's standalone server,
``moto.server.ThreadedMotoServer``, on an ephemeral port of 127.0.0.1), and stops it when
its block ends. The poller talks to it over HTTP like to any S3-compatible store.

The child also reads commands on its standard input. ``seed BUCKET PREFIX COUNT`` creates
the bucket if needed and COUNT one-byte objects ``PREFIX000000``, ``PREFIX000001``, ...
directly in the server's storage: S3 has no bulk upload, and 10,000 PUT requests to moto
take about 40 s on a 2-core machine, 0.4 s this way. Tests and the benchmark change
objects through the S3 API (:meth:`S3Server.client`); only bulk setup goes this way.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final

__all__ = ["ACCESS_KEY", "REGION", "SECRET_KEY", "S3Server"]

#: Credentials the server accepts (moto takes any).
ACCESS_KEY: Final = "reactor-test"
SECRET_KEY: Final = "reactor-test-secret"
REGION: Final = "us-east-1"
_ROOT: Final = Path(__file__).resolve().parents[1]
_START_TIMEOUT: Final = 60.0


class S3Server:
    """moto's S3 server in a child process, on 127.0.0.1 and a free port.

    ::

        with S3Server() as server:
            server.seed("my-bucket", "in/", 10_000)
            ... endpoint_url=server.endpoint ...
    """

    def __init__(self) -> None:
        self._process: subprocess.Popen[str] | None = None
        self._port = 0

    @property
    def endpoint(self) -> str:
        """The server's URL."""
        return f"http://127.0.0.1:{self._port}"

    @property
    def pid(self) -> int:
        """The child's process id."""
        assert self._process is not None
        return self._process.pid

    def start(self) -> None:
        """Start the child and wait until the server listens."""
        environment = {**os.environ, "PYTHONPATH": str(_ROOT)}
        self._process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks._s3server"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=_ROOT,
            env=environment,
        )
        line = self._reply()
        if not line.startswith("ready "):
            self.stop()
            raise RuntimeError(f"the S3 server did not start: {line!r}")
        self._port = int(line.split()[1])

    def seed(self, bucket: str, prefix: str, count: int) -> None:
        """Create *bucket* if needed and *count* one-byte objects under *prefix* at once."""
        self._command(f"seed {bucket} {prefix} {count}")

    def client(self) -> Any:
        """A botocore S3 client of the server (for the test's own uploads and deletes)."""
        import botocore.session

        session = botocore.session.Session()
        return session.create_client(
            "s3",
            region_name=REGION,
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    def stop(self) -> None:
        """Stop the child (idempotent)."""
        process, self._process = self._process, None
        if process is None:
            return
        assert process.stdin is not None and process.stdout is not None
        try:
            process.stdin.close()
            process.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            process.kill()
            process.wait()
        process.stdout.close()

    def __enter__(self) -> S3Server:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _command(self, line: str) -> None:
        process = self._process
        assert process is not None and process.stdin is not None
        process.stdin.write(line + "\n")
        process.stdin.flush()
        reply = self._reply()
        if reply != "ok":
            raise RuntimeError(f"the S3 server refused {line!r}: {reply}")

    def _reply(self) -> str:
        process = self._process
        assert process is not None and process.stdout is not None
        return _read_line(process.stdout).strip()


def _read_line(stream: IO[str]) -> str:
    line = stream.readline()
    if not line:
        raise RuntimeError("the S3 server exited")
    return line


def _serve() -> None:
    from moto.backends import get_backend
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    _, port = server.get_host_and_port()
    print(f"ready {port}", flush=True)
    backend = get_backend("s3")[DEFAULT_ACCOUNT_ID]["global"]
    try:
        for line in sys.stdin:
            words = line.split()
            try:
                if len(words) == 4 and words[0] == "seed":
                    _, bucket, prefix, count = words
                    if bucket not in backend.buckets:
                        backend.create_bucket(bucket, REGION)
                    for i in range(int(count)):
                        backend.put_object(bucket, f"{prefix}{i:06d}", b"x")
                    print("ok", flush=True)
                else:
                    print(f"unknown command {line.strip()!r}", flush=True)
            except Exception as exc:
                print(f"{type(exc).__name__}: {exc}", flush=True)
    finally:
        server.stop()


if __name__ == "__main__":
    _serve()
