"""The listening socket: connections it accepts send each write at once (TCP_NODELAY)."""

from __future__ import annotations

import asyncio
import socket

from bertforge.serve.server import bind


def test_accepted_connections_have_nodelay():
    """asyncio turns Nagle off only on sockets that say TCP; without it a response's body waited behind its
    headers for the client's delayed ACK, 40 ms added to every request (seen with http.client)."""

    async def accept_one() -> int:
        sock = bind("127.0.0.1", 0)
        sock.listen()
        seen: asyncio.Future = asyncio.get_running_loop().create_future()

        class Record(asyncio.Protocol):
            def connection_made(self, transport):
                option = transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
                seen.set_result(option)
                transport.close()

        server = await asyncio.get_running_loop().create_server(Record, sock=sock)
        _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
        try:
            return await asyncio.wait_for(seen, 10)
        finally:
            writer.close()
            server.close()

    assert asyncio.run(accept_one()) != 0
