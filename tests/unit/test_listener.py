"""podkit.listener: the drain every TCP helper shares, over real loopback sockets.

The connections here speak a tiny line protocol: "work" starts a job (answered
"working"), "done" ends it. A connection asked to finish says "finishing" and closes
when its job is done; an idle one closes at once; one that never said anything is not
waited for (as pg-ambassador's clients before their startup packet).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from podkit.listener import Listener


class LineConn(asyncio.Protocol):
    def __init__(self, listener: Listener[LineConn]) -> None:
        self.listener = listener
        self.transport: asyncio.Transport | None = None
        self.spoke = False
        self.busy = False
        self.finishing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.listener.add(self)
        self.transport.write(b"hi\n")  # type: ignore[union-attr]

    def connection_lost(self, exc: Exception | None) -> None:
        self.listener.discard(self)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.spoke = True
        for line in data.splitlines():
            if line == b"work":
                self.busy = True
                self.transport.write(b"working\n")
            elif line == b"done":
                self.busy = False
                self.transport.write(b"finished\n")
                if self.finishing:
                    self.transport.close()

    def ask_to_finish(self) -> bool:
        assert self.transport is not None
        if not self.spoke:
            return False  # left open, not waited for: closed with the rest at the end
        self.finishing = True
        if self.busy:
            self.transport.write(b"finishing\n")
        else:
            self.transport.close()
        return True

    def close_now(self) -> None:
        assert self.transport is not None
        self.transport.close()


Client = tuple[asyncio.StreamReader, asyncio.StreamWriter]


ANSWERS = {b"work": b"working\n", b"done": b"finished\n"}


async def _connect(listener: Listener[LineConn], *lines: bytes) -> Client:
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
    assert await asyncio.wait_for(reader.readline(), 10) == b"hi\n"
    for line in lines:
        writer.write(line + b"\n")
        assert await asyncio.wait_for(reader.readline(), 10) == ANSWERS[line]
    return reader, writer


async def _closed(client: Client) -> bytes:
    """What the server sent before it closed the connection (waits for the close)."""
    return await asyncio.wait_for(client[0].read(), 10)


def _run(test: Callable[[Listener[LineConn]], Awaitable[None]]) -> None:
    async def main() -> None:
        listener: Listener[LineConn] = Listener()
        await listener.start(lambda: LineConn(listener), "127.0.0.1", 0)
        try:
            await test(listener)
        finally:
            listener.close()
            await listener.wait_closed()

    asyncio.run(main())


def test_shutdown_stops_accepting_and_waits_for_work_in_flight() -> None:
    async def test(listener: Listener[LineConn]) -> None:
        idle = await _connect(listener, b"work", b"done")
        busy = await _connect(listener, b"work")
        silent = await _connect(listener)
        shutdown = asyncio.create_task(listener.shutdown())
        assert await _closed(idle) == b""  # nothing in flight: closed at once
        assert await asyncio.wait_for(busy[0].readline(), 10) == b"finishing\n"
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", listener.port)
        assert not shutdown.done()
        busy[1].write(b"done\n")
        assert await _closed(busy) == b"finished\n"
        await asyncio.wait_for(shutdown, 10)
        # not waited for, closed at the end
        assert await _closed(silent) == b""
        assert listener.connections == set()

    _run(test)


def test_shutdown_closes_the_rest_after_the_grace() -> None:
    async def test(listener: Listener[LineConn]) -> None:
        stuck = await _connect(listener, b"work")
        await asyncio.wait_for(listener.shutdown(grace=0.2), 10)
        assert await _closed(stuck) == b"finishing\n"
        assert listener.connections == set()

    _run(test)


def test_close_during_shutdown_closes_at_once() -> None:
    """A second request to stop (uvicorn's force_exit) does not wait for anyone."""

    async def test(listener: Listener[LineConn]) -> None:
        stuck = await _connect(listener, b"work")
        shutdown = asyncio.create_task(listener.shutdown())
        assert await asyncio.wait_for(stuck[0].readline(), 10) == b"finishing\n"
        assert not shutdown.done()
        listener.close()
        assert await _closed(stuck) == b""
        await asyncio.wait_for(shutdown, 10)

    _run(test)


def test_finish_keeps_accepting_and_waits_only_for_those_that_asked() -> None:
    async def test(listener: Listener[LineConn]) -> None:
        silent = await _connect(listener)
        busy = await _connect(listener, b"work")
        finish = asyncio.create_task(listener.finish())
        assert await asyncio.wait_for(busy[0].readline(), 10) == b"finishing\n"
        newcomer = await _connect(listener)  # still accepted while finishing
        busy[1].write(b"done\n")
        assert await _closed(busy) == b"finished\n"
        await asyncio.wait_for(finish, 10)
        assert len(listener.connections) == 2  # the silent one and the newcomer: open
        listener.close()
        assert await _closed(newcomer) == b""
        assert await _closed(silent) == b""

    _run(test)
