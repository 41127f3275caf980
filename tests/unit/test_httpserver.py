"""podkit's small HTTP/1.1 server (admin endpoints, the exporter's listener): bad input."""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from podkit.httpserver import HttpServer, Request, Response


async def _exchange(port: int, raw: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    if not raw.endswith(b"\r\n\r\n"):
        writer.write_eof()
    try:
        return await asyncio.wait_for(reader.read(), 5)
    except TimeoutError:
        return b""  # an incomplete request waits for more, as it should
    finally:
        writer.close()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)  # fmt: skip
@given(st.lists(st.binary(max_size=300) | st.just(b"GET /metrics HTTP/1.1\r\n\r\n"), max_size=4))
def test_listener_survives_any_bytes(requests: list[bytes]) -> None:
    async def run() -> None:
        async def metrics(request: Request) -> Response:
            return Response(200, b"up 1\n")

        errors: list[Exception] = []
        listener = HttpServer({"/metrics": {"GET": metrics}}, errors.append)
        await listener.start("127.0.0.1", 0)
        try:
            for raw in requests:
                answer = await _exchange(listener.port, raw + b"\r\n\r\n")
                assert answer == b"" or answer.startswith(b"HTTP/1.1 ")
            good = await _exchange(
                listener.port, b"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n"
            )
            assert good.startswith(b"HTTP/1.1 200 OK") and good.endswith(b"up 1\n")
            assert errors == []
        finally:
            await listener.stop()

    asyncio.run(run())


def test_listener_closes_idle_and_half_sent_connections() -> None:
    async def run() -> None:
        async def metrics(request: Request) -> Response:
            return Response(200, b"up 1\n")

        listener = HttpServer({"/metrics": {"GET": metrics}}, idle_timeout=0.2)
        await listener.start("127.0.0.1", 0)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
            writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = await reader.readuntil(b"up 1\n")
            assert answer.startswith(b"HTTP/1.1 200 OK")
            writer.write(b"GET /metr")  # half a request, then nothing
            # The server ends the connection on its own: read() returns at EOF.
            assert await asyncio.wait_for(reader.read(), 10) == b""
            writer.close()
        finally:
            await listener.stop()

    asyncio.run(run())


def test_methods_pipelining_head_and_handler_errors() -> None:
    async def run() -> None:
        async def ok(request: Request) -> Response:
            return Response(200, f"{request.method} {request.path} {request.query}".encode())

        async def broken(request: Request) -> Response:
            raise RuntimeError("bug")

        errors: list[Exception] = []
        server = HttpServer({"/a": {"GET": ok}, "/b": {"GET": broken}}, errors.append)
        server.add_route("POST", "/a", ok)
        await server.start("127.0.0.1", 0)
        try:
            pipelined = (
                b"GET /a?x=1 HTTP/1.1\r\n\r\nPOST /a HTTP/1.1\r\n\r\n"
                b"HEAD /a HTTP/1.1\r\n\r\nGET /nope HTTP/1.1\r\nConnection: close\r\n\r\n"
            )
            answer = await _exchange(server.port, pipelined)
            assert answer.count(b"HTTP/1.1 200 OK") == 3
            assert b"GET /a x=1" in answer and b"POST /a " in answer
            assert answer.index(b"GET /a") < answer.index(b"POST /a")
            assert answer.endswith(b"not found\n")
            assert (await _exchange(server.port, b"DELETE /a HTTP/1.1\r\n\r\n")).startswith(
                b"HTTP/1.1 405"
            )
            assert (await _exchange(server.port, b"GET /b HTTP/1.1\r\n\r\n")).startswith(
                b"HTTP/1.1 500"
            )
            assert [str(e) for e in errors] == ["bug"]
            huge = b"GET /a HTTP/1.1\r\nX: " + b"y" * 20000
            assert (await _exchange(server.port, huge)).startswith(b"HTTP/1.1 431")
        finally:
            await server.stop()

    asyncio.run(run())
