"""The least a Python proxy can do: forward bytes, one server connection per client.

    python bench/python_forwarder.py LISTEN_PORT SERVER_PORT

uvloop and asyncio Protocols, as pg-ambassador uses; no framing, no pooling, no parsing.
bench_pg_ambassador.py runs pgbench through it beside PgBouncer and podkit: its tps is a
ceiling for any pooler written in Python on the machine the bench runs on.
"""

from __future__ import annotations

import asyncio
import sys

import uvloop

HOST = "127.0.0.1"


class Side(asyncio.Protocol):
    """One end of a forwarded connection; writes what it reads to its peer."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: Side | None = None
        self.early = b""  # read before the peer's connection was up

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is None or peer.transport is None:
            self.early += data
        else:
            peer.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()


async def main(listen_port: int, server_port: int) -> None:
    loop = asyncio.get_running_loop()
    connecting: set[asyncio.Task[None]] = set()

    async def connect(client: Side) -> None:
        server = Side()
        server.peer = client
        try:
            await loop.create_connection(lambda: server, HOST, server_port)
        except OSError:
            if client.transport is not None:
                client.transport.close()
            return
        client.peer = server
        if client.early and server.transport is not None:
            server.transport.write(client.early)
            client.early = b""

    def accept() -> Side:
        client = Side()
        task = loop.create_task(connect(client))
        connecting.add(task)
        task.add_done_callback(connecting.discard)
        return client

    server = await loop.create_server(accept, HOST, listen_port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]), int(sys.argv[2])))
