"""`serve(app, host, port)`: run an app under uvicorn until SIGTERM or SIGINT, then stop gracefully.

A stop refuses new connections, lets every request in flight finish (the batching worker included), and
returns: the command exits 0, a clean stop of a server rather than a crash. Port 0 takes a free port; `ready`
is called with the server's URL once it accepts connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import threading
from collections.abc import Callable, Iterator

import uvicorn

from bertforge.errors import BertforgeError


class _Server(uvicorn.Server):
    """uvicorn's server, except that a stop by signal is a normal return: uvicorn re-raises the signal after its
    graceful shutdown, which would report a server that finished every request as killed."""

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
    """Serve `app` on host:port until SIGTERM/SIGINT; `ready(url)` once connections are accepted."""
    sock = bind(host, port)
    config = uvicorn.Config(app, log_level=log_level, access_log=log_level in ("info", "debug"), lifespan="on")
    server = _Server(config)

    async def run() -> None:
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        if server.started:
            ready(url_of(sock))
        await task

    with sock:
        asyncio.run(run())
