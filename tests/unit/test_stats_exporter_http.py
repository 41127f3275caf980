"""The exporter's own HTTP/1.1 client: its response parser and connection pool."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podkit.adapters.prometheus.http1 import Http1Pool, HttpError, _Connection

STUB = b"Active connections: 1 \nserver accepts handled requests\n 1 1 1 \n"


class _Transport:
    """Stands in for a socket: the parser under test only writes and closes."""

    def __init__(self) -> None:
        self.closed = False

    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def parse(chunks: list[bytes], eof: bool, max_body: int = 1000) -> tuple[int, bytes] | str | None:
    async def run() -> tuple[int, bytes] | str | None:
        conn = _Connection(max_body)
        conn.connection_made(_Transport())  # type: ignore[arg-type]
        waiter = conn.request(b"GET / HTTP/1.1\r\n\r\n")
        for chunk in chunks:
            conn.data_received(chunk)
        if eof:
            conn.connection_lost(None)
        if not waiter.done():
            return None
        try:
            return waiter.result()
        except HttpError as exc:
            return str(exc)

    return asyncio.run(run())


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


LENGTH = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(STUB), STUB)
CHUNKED = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    + b"%x\r\n%s\r\n" % (20, STUB[:20])
    + b"%x;ext=1\r\n%s\r\n" % (len(STUB) - 20, STUB[20:])
    + b"0\r\n\r\n"
)
CLOSE = b"HTTP/1.0 200 OK\r\n\r\n" + STUB


@settings(max_examples=150, deadline=None)
@given(st.sampled_from([LENGTH, CHUNKED, CLOSE]), st.lists(st.integers(0, 400), max_size=6))
def test_valid_responses_parse_the_same_however_they_are_split(raw: bytes, cuts: list[int]) -> None:
    assert parse(split(raw, cuts), eof=raw is CLOSE) == (200, STUB)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=5), st.booleans())
def test_garbage_is_a_source_error_or_a_bounded_body(chunks: list[bytes], eof: bool) -> None:
    result = parse(chunks, eof, max_body=100)
    if eof:
        assert result is not None  # the end of the connection always settles the request
    if isinstance(result, tuple):
        assert len(result[1]) <= 100


@pytest.mark.parametrize(
    ("raw", "eof", "message"),
    [
        (b"SSH-2.0-OpenSSH\r\n\r\n", False, "not an HTTP response"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\nshort", True, "truncated body"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n", False, "over --max-body-size"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", False, "bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", False, "chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", True, "truncated"),
        (b"HTTP/1.0 200 OK\r\n\r\n" + b"x" * 2000, False, "over --max-body-size"),
        (b"", True, "closed before a response"),
    ],
)
def test_bad_responses_name_the_problem(raw: bytes, eof: bool, message: str) -> None:
    result = parse([raw], eof)
    assert isinstance(result, str) and message in result, result


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 50\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX: a\r\n b\r\n\r\nhello",
        b"HTTP/1.1 200 OK\nContent-Length: 5\n\nhello",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\nX: y\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\nhello",
    ],
    ids=[
        "conflicting-length",
        "length-and-chunked",
        "obs-fold",
        "bare-lf",
        "bare-lf-header",
        "space-before-colon",
    ],
)
def test_ambiguous_responses_are_refused(raw: bytes) -> None:
    result = parse([raw], eof=True)
    assert isinstance(result, str), result


def test_a_second_response_to_one_request_retires_the_connection() -> None:
    async def run() -> tuple[tuple[int, bytes], bool, bool]:
        conn = _Connection(1000)
        transport = _Transport()
        conn.connection_made(transport)  # type: ignore[arg-type]
        waiter = conn.request(b"GET / HTTP/1.1\r\n\r\n")
        conn.data_received(LENGTH + LENGTH)
        return waiter.result(), conn.keep_alive, transport.closed

    result, keep_alive, closed = asyncio.run(run())
    assert result == (200, STUB) and not keep_alive and closed


def test_pool_reuses_a_connection_and_survives_the_server_closing_it() -> None:
    async def run() -> None:
        accepted = 0
        writers: list[asyncio.StreamWriter] = []

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal accepted
            accepted += 1
            writers.append(writer)
            while True:
                try:
                    await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                writer.write(LENGTH)

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        pool = Http1Pool(1000)
        key = ("127.0.0.1", port)
        assert await pool.get(key, "x", "/") == (200, STUB)
        assert await pool.get(key, "x", "/") == (200, STUB)
        assert accepted == 1
        # The server ends the idle keep-alive connection before the pool has noticed: the
        # request goes out on it, finds it closed, and is retried on a fresh connection.
        writers[0].close()
        assert not pool._idle[key][0].closed
        assert await pool.get(key, "x", "/") == (200, STUB)
        assert accepted == 2
        # The server ends it and the pool has noticed: the closed connection is skipped.
        writers[1].close()
        conn = pool._idle[key][0]
        for _ in range(500):
            if conn.closed:
                break
            await asyncio.sleep(0.01)
        assert conn.closed
        assert await pool.get(key, "x", "/") == (200, STUB)
        assert accepted == 3
        pool.close()
        server.close()

    asyncio.run(run())
