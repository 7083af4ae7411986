"""``reactor run --http HOST:PORT``: the app's HTTP ingress served by uvicorn, as a source.

The server is a :class:`~reactor.abc.Source` of the app, so it lives exactly as long as
the app's sources do: the app starts (queue, dispatcher), then the server binds and
serves ``app.asgi``; on SIGINT or SIGTERM (handled by :meth:`Reactor.run()
<reactor.Reactor.run>`, not by uvicorn) the sources stop first, so the server stops
accepting connections and finishes the requests it holds, then the app drains. A server
that cannot bind, or that stops by itself, fails the app like any failing source.

uvicorn runs on asyncio only. This module imports it: ``reactor run`` imports the module
only for ``--http``.
"""

from __future__ import annotations

import contextlib
import math
import socket
from collections.abc import Iterator, Mapping

import anyio
import uvicorn
from anyio.abc import TaskStatus

from reactor.abc import App, Source
from reactor.sources.http import HttpIngress

from ._options import logger


class ServeError(OSError):
    """The HTTP server cannot listen on its address, or stopped by itself."""


class _Server(uvicorn.Server):
    """uvicorn's server, without its signal handlers: the app's run() handles signals."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = anyio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Install nothing: SIGINT and SIGTERM stop the app, which stops this server."""
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Start serving, then say so."""
        await super().startup(sockets)
        self.ready.set()


class HttpServer(Source):
    """Serves the app's ingress (``app.asgi``) with uvicorn at *host*:*port*.

    :param asgi: the ASGI application to serve (the app's ingress).
    :param host: the address to listen on.
    :param port: the port; 0 picks a free one (the log line says which).
    :param grace: seconds to finish open requests once the app stops.
    :param access_log: log each request (uvicorn's ``uvicorn.access`` logger).
    """

    def __init__(
        self, asgi: HttpIngress, host: str, port: int, *, grace: float, access_log: bool = True
    ) -> None:
        self._asgi = asgi
        self._grace = max(1, math.ceil(grace))
        self._host = host
        self._port = port
        self._access_log = access_log
        self._requests = 0
        self.address: tuple[str, int] | None = None

    @property
    def name(self) -> str:
        """``"http-server"``."""
        return "http-server"

    def statistics(self) -> Mapping[str, int | str | None]:
        """The address served (``"host:port"``), ``None`` until the server listens."""
        address = None if self.address is None else f"{self.address[0]}:{self.address[1]}"
        return {"address": address}

    async def run(
        self, app: App, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Bind, serve until cancelled, then stop accepting and finish open requests.

        :raises ServeError: the address cannot be bound, or the server stopped by itself.
        """
        sock = self._bind()
        with sock:
            config = uvicorn.Config(
                self._asgi,
                lifespan="off",  # the app's lifecycle is this command's, not the server's
                log_config=None,  # logging is the command's (--log-format, --log-config)
                access_log=self._access_log,
                timeout_graceful_shutdown=self._grace,
            )
            server = _Server(config)
            done = anyio.Event()
            async with anyio.create_task_group() as tg:
                scope = anyio.CancelScope(shield=True)
                tg.start_soon(self._serve, server, sock, scope, done)
                with anyio.CancelScope() as waiting:
                    # Whichever comes first: the server serves, or it stopped (failed).
                    tg.start_soon(_set_when, done, waiting)
                    await server.ready.wait()
                    waiting.cancel()
                if not server.ready.is_set():
                    raise ServeError(f"the HTTP server on {self._url()} did not start")
                host, port = sock.getsockname()[:2]
                self.address = (host, port)
                logger.info(
                    "serving HTTP on %s (POST CloudEvents to /)",
                    self._url(),
                    extra={"source": self.name},
                )
                task_status.started()
                try:
                    await done.wait()
                    raise ServeError(f"the HTTP server on {self._url()} stopped by itself")
                finally:
                    # Shielded: the app is stopping (this source is cancelled), and the
                    # server must still close its listener and finish open requests.
                    server.should_exit = True
                    with anyio.CancelScope(shield=True):
                        with anyio.move_on_after(self._grace + 1):
                            await done.wait()
                        if not done.is_set():
                            server.force_exit = True
                            scope.cancel()

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        try:
            infos = socket.getaddrinfo(self._host, self._port, family, socket.SOCK_STREAM)
            family, _, _, _, address = infos[0]
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError as exc:
            raise ServeError(f"cannot serve HTTP on {self._url()}: {exc}") from None
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(2048)
        except OSError as exc:
            sock.close()
            raise ServeError(f"cannot serve HTTP on {self._url()}: {exc}") from None
        sock.setblocking(False)
        return sock

    def _url(self) -> str:
        host, port = self.address or (self._host, self._port)
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}"

    @staticmethod
    async def _serve(
        server: _Server, sock: socket.socket, scope: anyio.CancelScope, done: anyio.Event
    ) -> None:
        try:
            with scope:  # shielded: stopped by should_exit, cancelled only past the deadline
                await server.serve([sock])
        finally:
            done.set()


async def _set_when(done: anyio.Event, waiting: anyio.CancelScope) -> None:
    await done.wait()
    waiting.cancel()
