"""podkit's small HTTP/1.1 server (admin endpoints, the exporter's listener): bad input."""

from __future__ import annotations

import asyncio
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from podkit.httpserver import HttpServer, Request, Response


async def _exchange(port: int, raw: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    writer.write_eof()  # the server answers what it got, then closes
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


# --- request smuggling: llhttp's strict mode refuses what two parsers could read apart ------

SMUGGLING = {
    "conflicting Content-Length": (
        b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 40\r\n\r\n"
        b"abcGET /secret HTTP/1.1\r\nHost: x\r\n\r\n"
    ),
    "Content-Length with Transfer-Encoding": (
        b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\nGET /secret HTTP/1.1\r\nHost: x\r\n\r\n"
    ),
    "Transfer-Encoding not ending in chunked": (
        b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n"
        b"0\r\n\r\nGET /secret HTTP/1.1\r\n\r\n"
    ),
    "obs-fold": b"GET /a HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 10.0.0.1\r\n 127.0.0.1\r\n\r\n",
    "bare LF line ends": b"GET /a HTTP/1.1\nHost: x\n\nGET /secret HTTP/1.1\n\n",
    "bare LF after a header": b"GET /a HTTP/1.1\r\nHost: x\nX: y\r\n\r\n",
    "space before the colon": b"GET /a HTTP/1.1\r\nContent-Length : 5\r\n\r\nGET /secret",
    "bad Content-Length": b"POST /a HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
    "bad method": b"G\x00T /a HTTP/1.1\r\n\r\n",
}


def _with_server(check) -> None:  # type: ignore[no-untyped-def]
    async def run() -> None:
        seen: list[str] = []

        async def record(request: Request) -> Response:
            seen.append(request.path)
            return Response(200, b"ok\n")

        routes = {"/a": {"GET": record, "POST": record}, "/secret": {"GET": record}}
        errors: list[Exception] = []
        server = HttpServer(routes, errors.append)
        await server.start("127.0.0.1", 0)
        try:
            await check(server.port, seen)
            assert errors == []
        finally:
            await server.stop()

    asyncio.run(run())


@pytest.mark.parametrize("raw", list(SMUGGLING.values()), ids=list(SMUGGLING))
def test_smuggling_attempts_are_refused_and_close_the_connection(raw: bytes) -> None:
    async def check(port: int, seen: list[str]) -> None:
        answer = await _exchange(port, raw)
        assert answer.startswith(b"HTTP/1.1 400 "), answer
        assert answer.count(b"HTTP/1.1 ") == 1  # nothing after the refusal is answered
        assert b"Connection: close" in answer
        assert "/secret" not in seen and seen == []

    _with_server(check)


def test_a_request_body_is_never_read_as_the_next_request() -> None:
    async def check(port: int, seen: list[str]) -> None:
        smuggled = b"GET /secret HTTP/1.1\r\nHost: x\r\n\r\n"
        raw = b"POST /a HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (len(smuggled), smuggled)
        answer = await _exchange(port, raw)
        assert answer.startswith(b"HTTP/1.1 200 OK") and answer.count(b"HTTP/1.1 ") == 1
        assert b"Connection: close" in answer
        assert seen == ["/a"]

    _with_server(check)


PIPELINE = (
    b"GET /a?n=1 HTTP/1.1\r\nHost: x\r\n\r\n"
    b"HEAD /a HTTP/1.1\r\nHost: x\r\n\r\n"
    b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
    b"GET /a HTTP/1.0\r\n\r\n"
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(0, len(PIPELINE)), max_size=8))
def test_pipelined_requests_answer_the_same_however_they_are_split(cuts: list[int]) -> None:
    points = sorted(set(cuts))
    chunks = [PIPELINE[a:b] for a, b in zip([0, *points], [*points, len(PIPELINE)], strict=True)]

    async def check(port: int, seen: list[str]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for chunk in chunks:
            writer.write(chunk)
            await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 5)  # HTTP/1.0 at the end: close
        writer.close()
        statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", answer)
        assert statuses == [b"200", b"200", b"404", b"200"]
        assert seen == ["/a", "/a", "/a"]

    _with_server(check)


def test_header_values_arrive_as_sent_and_keywords_match_in_any_case() -> None:
    async def run() -> None:
        seen: list[dict[bytes, bytes]] = []

        async def record(request: Request) -> Response:
            seen.append(request.headers)
            return Response(200, b"x" * 4096)

        server = HttpServer({"/a": {"GET": record}})
        await server.start("127.0.0.1", 0)
        try:
            raw = (
                b"GET /a HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer MiXeD-Token\r\n"
                b"X-Twice: One\r\nx-twice: Two\r\nAccept-Encoding: GZIP;Q=1\r\n"
                b"Connection: Keep-Alive\r\n\r\n"
                b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: CLOSE\r\n\r\n"
                b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
            )
            answer = await _exchange(server.port, raw)
        finally:
            await server.stop()
        assert seen[0][b"authorization"] == b"Bearer MiXeD-Token"
        assert seen[0][b"x-twice"] == b"One, Two"
        first, second = answer.split(b"HTTP/1.1 ")[1:]  # CLOSE ends it: no third answer
        assert b"Content-Encoding: gzip" in first and b"Connection: close" not in first
        assert b"Content-Encoding" not in second and b"Connection: close" in second
        assert len(seen) == 2

    asyncio.run(run())


def _with_body_route(check, max_body: int = 64) -> None:  # type: ignore[no-untyped-def]
    async def run() -> None:
        seen: list[bytes | None] = []

        async def record(request: Request) -> Response:
            seen.append(request.body)
            return Response(200, b"got %d\n" % len(request.body or b""))

        server = HttpServer({"/a": {"GET": record}})
        server.add_route("POST", "/hook", record, max_body=max_body)
        await server.start("127.0.0.1", 0)
        try:
            await check(server.port, seen)
        finally:
            await server.stop()

    asyncio.run(run())


def test_a_route_with_max_body_reads_bodies_up_to_its_limit_and_keeps_the_connection() -> None:
    async def check(port: int, seen: list[bytes | None]) -> None:
        raw = (
            b"POST /hook HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
            b"POST /hook HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
            b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        answer = await _exchange(port, raw)
        assert re.findall(rb"HTTP/1\.1 (\d{3}) ", answer) == [b"200", b"200", b"200"]
        assert seen == [b"hello", b"abcde", b""]
        assert answer.count(b"Connection: close") == 1  # only after the last (EOF)

    _with_body_route(check)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_over_the_limit_reaches_the_handler_unread_and_closes(chunked: bool) -> None:
    async def check(port: int, seen: list[bytes | None]) -> None:
        smuggled = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
        body = b"x" * 65 + smuggled
        if chunked:
            head = b"POST /hook HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            raw = head + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
        else:
            head = b"POST /hook HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
            raw = head
        # The answer comes before the body is sent: nothing waits for it.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(raw)
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 200 OK") and answer.count(b"HTTP/1.1 ") == 1
        assert b"Connection: close" in answer
        assert seen == [None]

    _with_body_route(check)


def test_expect_100_continue_is_answered_before_the_body() -> None:
    async def check(port: int, seen: list[bytes | None]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /hook HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                     b"Expect: 100-continue\r\n\r\n")  # fmt: skip
        assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5) == (
            b"HTTP/1.1 100 Continue\r\n\r\n"
        )
        writer.write(b"ok")
        answer = await asyncio.wait_for(reader.readuntil(b"got 2\n"), 5)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 200 OK")
        assert seen == [b"ok"]

    _with_body_route(check)


def test_a_client_sending_a_whole_unread_body_still_reads_the_answer() -> None:
    """The answer to a body over the limit goes out before the body is read; the client
    (as a forge does) sends all of it first, then reads. The server reads and drops the
    rest instead of closing with unread bytes, whose RST would destroy the answer."""

    async def check(port: int, seen: list[bytes | None]) -> None:
        body = b"x" * (4 * 1024 * 1024)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /hook HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body))
        writer.write(body)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 200 OK") and b"Connection: close" in answer
        assert seen == [None]

    _with_body_route(check)
