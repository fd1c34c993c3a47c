"""`serve(app, host, port)`: run an app under uvicorn until SIGTERM or SIGINT, then stop gracefully.

A stop refuses new connections, lets every request in flight finish (the batching worker included), and
returns: the command exits 0, a clean stop of a server rather than a crash. The wait has a deadline
(`--drain-timeout`): requests still unanswered then get 503 and a log line counts them, so a client holding a
half-sent body cannot keep the process alive until an orchestrator's SIGKILL. Every connection must send a
request's headers within `--read-timeout` (uvicorn has no such limit). Port 0 takes a free port; `ready` is
called with the server's URL once it accepts connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
import socket
import threading
from collections.abc import Callable, Iterator

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from bertforge.errors import BertforgeError
from bertforge.serve.drain import Drain
from bertforge.serve.options import ServeOptions

# After the drain deadline's 503s, the time they get to be written before uvicorn cancels whatever still runs
# (a response to a client that does not read it).
_LAST_WORDS = 1.0


class _Server(uvicorn.Server):
    """uvicorn's server, except that a stop by signal is a normal return: uvicorn re-raises the signal after its
    graceful shutdown, which would report a server that finished every request as killed. Its graceful shutdown
    ends the requests still waiting at the drain deadline."""

    def __init__(self, config: uvicorn.Config, drain: Drain):
        super().__init__(config)
        self.drain = drain

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        deadline = asyncio.get_running_loop().call_later(self.drain.timeout, self.drain.expire)
        try:
            await super().shutdown(sockets)
        finally:
            deadline.cancel()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


class _Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 connection with a deadline on headers: from its opening, or the end of its last response,
    the next request's headers must all arrive within `read_timeout` seconds, else it is closed. (uvicorn's
    keep-alive timeout stops at the first byte: a header sent one byte at a time, or never finished, held its
    connection for ever.) The body has its own deadline in the app, which answers 408."""

    def __init__(self, *args, read_timeout: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.read_timeout = read_timeout
        self.headers_due: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._watch()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.headers_due is not None:
            self.headers_due.cancel()

    def _watch(self) -> None:
        """The deadline runs while the connection waits for a request's headers, and stops once they are in."""
        waiting = self.cycle is None or self.cycle.response_complete
        if waiting and self.headers_due is None and not self.transport.is_closing():
            self.headers_due = self.loop.call_later(self.read_timeout, self.transport.close)
        elif not waiting and self.headers_due is not None:
            self.headers_due.cancel()
            self.headers_due = None


def bind(host: str, port: int) -> socket.socket:
    """A listening-ready socket on host:port (port 0: a free one). Created with proto=IPPROTO_TCP: asyncio sets
    TCP_NODELAY only on connections whose socket says TCP, and without it a response's body waits behind its
    headers for the client's delayed ACK (40 ms per request on Linux loopback, measured)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise BertforgeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if sock.family == socket.AF_INET6 else f"http://{host}:{port}"


def serve(
    app,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    ready: Callable[[str], None] = lambda url: None,
    log_level: str = "warning",
) -> None:
    """Serve `app` (from `create_app`: its `state` holds the options and the drain) on host:port until
    SIGTERM/SIGINT; `ready(url)` once connections are accepted."""
    options: ServeOptions = app.state.options
    sock = bind(host, port)
    config = uvicorn.Config(
        app,
        http=functools.partial(_Protocol, read_timeout=options.read_timeout),
        timeout_graceful_shutdown=options.drain_timeout + _LAST_WORDS,
        log_level=log_level,
        access_log=log_level in ("info", "debug"),
        lifespan="on",
    )
    server = _Server(config, app.state.drain)

    async def run() -> None:
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        if server.started:
            ready(url_of(sock))
        await task

    with sock:
        asyncio.run(run())
