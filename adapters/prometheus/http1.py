"""A minimal HTTP/1.1 GET client with keep-alive, for plain http:// and unix-socket targets.

Stats pages are tiny and scraped often; aiohttp's client costs more per request than the
fetch itself. This one sends a GET on a pooled connection, reads one response (length,
chunked or close-delimited) with a size cap, and hands the connection back. Anything
odd (no HTTP status line, truncation, oversize) is a `SourceError`; https goes to aiohttp.
"""

from __future__ import annotations

import asyncio
import contextlib

from podkit.adapters.prometheus.api import SourceError

MAX_HEADER = 64 * 1024


class _Connection(asyncio.Protocol):
    def __init__(self, max_body: int) -> None:
        self.max_body = max_body
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.closed = False
        self.keep_alive = False
        self.used = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._check(eof=False)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._check(eof=True)

    def request(self, raw: bytes) -> asyncio.Future[tuple[int, bytes]]:
        assert self.transport is not None
        self.buffer.clear()
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return self.waiter

    def _fail(self, message: str) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(SourceError(message))
        self.keep_alive = False
        if self.transport is not None:
            self.transport.close()

    def _done(self, status: int, body: bytes, keep_alive: bool) -> None:
        self.keep_alive = keep_alive and not self.closed
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result((status, body))

    def _check(self, eof: bool) -> None:
        if self.waiter is None or self.waiter.done():
            return
        buf = self.buffer
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > MAX_HEADER:
                self._fail("response headers are over 64 KiB")
            elif eof:
                empty = not buf
                self._fail("connection closed before a response" if empty else "truncated headers")
            return
        lines = bytes(buf[:end]).split(b"\r\n")
        parts = lines[0].split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            self._fail(f"not an HTTP response: {bytes(lines[0][:60])!r}")
            return
        status = int(parts[1])
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        keep_alive = parts[0] == b"HTTP/1.1" and headers.get(b"connection", b"").lower() != b"close"
        body_start = end + 4
        if status < 200 or status in (204, 304):
            self._done(status, b"", keep_alive)
        elif headers.get(b"transfer-encoding", b"").lower().endswith(b"chunked"):
            self._chunked(status, body_start, eof, keep_alive)
        elif b"content-length" in headers:
            length_text = headers[b"content-length"]
            if not length_text.isdigit():
                self._fail(f"bad Content-Length {length_text[:20]!r}")
                return
            length = int(length_text)
            if length > self.max_body:
                self._fail(f"body of {length} bytes is over --max-body-size {self.max_body}")
            elif len(buf) - body_start >= length:
                self._done(status, bytes(buf[body_start : body_start + length]), keep_alive)
            elif eof:
                got = len(buf) - body_start
                self._fail(f"truncated body: {got} of {length} bytes before the connection closed")
        else:  # delimited by the end of the connection
            if len(buf) - body_start > self.max_body:
                self._fail(f"body is over --max-body-size {self.max_body} bytes")
            elif eof:
                self._done(status, bytes(buf[body_start:]), False)

    def _chunked(self, status: int, pos: int, eof: bool, keep_alive: bool) -> None:
        buf = self.buffer
        body = bytearray()
        while True:
            line_end = buf.find(b"\r\n", pos)
            if line_end < 0:
                break
            size_text = bytes(buf[pos:line_end]).split(b";")[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                self._fail(f"bad chunk size {size_text[:20]!r}")
                return
            if len(body) + size > self.max_body:
                self._fail(f"body is over --max-body-size {self.max_body} bytes")
                return
            if size == 0:
                trailer_end = buf.find(b"\r\n", line_end + 2)
                if trailer_end >= 0:  # trailers are not expected from stats pages
                    self._done(status, bytes(body), keep_alive)
                    return
                break
            chunk_end = line_end + 2 + size
            if len(buf) < chunk_end + 2:
                break
            body += buf[line_end + 2 : chunk_end]
            pos = chunk_end + 2
        if eof:
            self._fail("truncated chunked body before the connection closed")


class Http1Pool:
    """Idle keep-alive connections per (host, port) or unix socket path."""

    def __init__(self, max_body: int) -> None:
        self.max_body = max_body
        self._idle: dict[tuple[str, int] | str, list[_Connection]] = {}

    async def _connect(self, key: tuple[str, int] | str) -> _Connection:
        loop = asyncio.get_running_loop()

        def factory() -> _Connection:
            return _Connection(self.max_body)

        try:
            if isinstance(key, str):
                _, conn = await loop.create_unix_connection(factory, key)
            else:
                _, conn = await loop.create_connection(factory, key[0], key[1])
        except FileNotFoundError:
            raise SourceError(f"unix socket {key} does not exist") from None
        except OSError as exc:
            raise SourceError(f"cannot connect: {exc.strerror or exc}") from None
        return conn

    async def get(self, key: tuple[str, int] | str, host: str, path: str) -> tuple[int, bytes]:
        raw = (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: podkit-stats-exporter\r\n"
            "Accept: */*\r\n\r\n"
        ).encode("latin-1")
        idle = self._idle.setdefault(key, [])
        while True:
            reused = False
            conn: _Connection | None = None
            while idle:
                candidate = idle.pop()
                if not candidate.closed:
                    conn, reused = candidate, True
                    break
            if conn is None:
                conn = await self._connect(key)
            conn.keep_alive = False
            try:
                status, body = await conn.request(raw)
            except SourceError as exc:
                # A keep-alive connection the server closed while idle: try a fresh one.
                if reused and "closed before a response" in str(exc):
                    continue
                raise
            finally:
                if not conn.keep_alive and conn.transport is not None:
                    conn.transport.close()
            if conn.keep_alive:
                idle.append(conn)
            return status, body

    def close(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                with contextlib.suppress(Exception):
                    if conn.transport is not None:
                        conn.transport.close()
        self._idle.clear()
