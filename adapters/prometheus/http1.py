"""A minimal HTTP/1.1 GET client with keep-alive, for plain http:// and unix-socket targets.

Stats pages are tiny and scraped often; aiohttp's client costs more per request than the
fetch itself. This one sends a GET on a pooled connection, reads one response (length,
chunked or close-delimited; parsed by llhttp through `httptools`) with a size cap, and
hands the connection back. Anything odd (no HTTP status line, truncation, oversize) is an
`HttpError`, which the fetch layer turns into a `SourceError`; https goes to aiohttp.
"""

from __future__ import annotations

import asyncio
import contextlib

import httptools

MAX_HEADER = 64 * 1024


class HttpError(Exception):
    """The transport's own failure: no good HTTP answer from this connection."""


class ClosedBeforeResponse(HttpError):
    """The server closed the connection before answering (a stale keep-alive connection)."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection; llhttp (`httptools`) parses each response."""

    def __init__(self, max_body: int) -> None:
        self.max_body = max_body
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.closed = False
        self.keep_alive = False
        self.used = False
        self.parser: httptools.HttpResponseParser | None = None
        self.body = bytearray()
        self.head_bytes = 0
        self.got_bytes = False
        self.headers_done = False
        self.delimited = False
        """The body has a length or is chunked (else it ends with the connection)."""
        self.error = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.waiter is None or self.waiter.done() or self.parser is None:
            # Nothing asked: bytes the server should not have sent. Never reuse the stream.
            self.keep_alive = False
            self.closed = True
            if self.transport is not None:
                self.transport.close()
            return
        self.got_bytes = self.got_bytes or bool(data)
        if not self.headers_done:
            self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail("the server switched protocols")
        except httptools.HttpParserError as exc:
            if not self.error:
                self.error = _describe(exc)
            self._fail(self.error)
        else:
            if self.error:
                self._fail(self.error)
            elif not self.headers_done and self.head_bytes > MAX_HEADER:
                self._fail("response headers are over 64 KiB")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is None or self.waiter.done():
            return
        if not self.got_bytes:
            self._fail("connection closed before a response", ClosedBeforeResponse)
        elif not self.headers_done:
            self._fail("truncated headers")
        elif not self.delimited:  # the end of the connection is the end of the body
            self._done(bytes(self.body), False)
        elif self.chunked:
            self._fail("truncated chunked body before the connection closed")
        else:
            self._fail(
                f"truncated body: {len(self.body)} of {self.length} bytes before the "
                "connection closed"
            )

    def request(self, raw: bytes) -> asyncio.Future[tuple[int, bytes]]:
        assert self.transport is not None
        self.parser = httptools.HttpResponseParser(self)
        self.body = bytearray()
        self.head_bytes = 0
        self.got_bytes = self.headers_done = self.delimited = self.chunked = False
        self.length = 0
        self.error = ""
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return self.waiter

    # --- llhttp callbacks (they never raise: a problem is noted and failed after feed) ---

    def on_message_begin(self) -> None:
        if self.waiter is not None and self.waiter.done():
            # A second response to one request: the stream is out of step; never reuse it.
            self.keep_alive = False
            self.closed = True
            if self.transport is not None:
                self.transport.close()

    def on_header(self, name: bytes, value: bytes) -> None:
        lower = name.lower()
        if lower == b"content-length":
            self.delimited = True
            if value.isdigit():
                self.length = int(value)
        elif lower == b"transfer-encoding":
            self.delimited = self.chunked = True

    def on_headers_complete(self) -> None:
        self.headers_done = True
        if self.length > self.max_body:
            self.error = f"body of {self.length} bytes is over --max-body-size {self.max_body}"

    def on_body(self, body: bytes) -> None:
        if self.error:
            return
        self.body += body
        if len(self.body) > self.max_body:
            self.error = f"body is over --max-body-size {self.max_body} bytes"

    def on_message_complete(self) -> None:
        if self.error or self.parser is None:
            return
        keep_alive = self.parser.should_keep_alive()
        self._done(bytes(self.body), keep_alive)

    # --- outcome ----------------------------------------------------------------------

    def _fail(self, message: str, error: type[HttpError] = HttpError) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(error(message))
        self.keep_alive = False
        if self.transport is not None:
            self.transport.close()

    def _done(self, body: bytes, keep_alive: bool) -> None:
        self.keep_alive = keep_alive and not self.closed
        if self.waiter is not None and not self.waiter.done() and self.parser is not None:
            self.waiter.set_result((self.parser.get_status_code(), body))


def _describe(exc: Exception) -> str:
    """llhttp's reason, in the words a user of a stats page can act on."""
    reason = str(exc) or type(exc).__name__
    if reason.startswith("Expected HTTP/") or "status" in reason.lower():
        return f"not an HTTP response ({reason})"
    if "Content-Length" in reason:
        return f"bad Content-Length ({reason})"
    return f"malformed HTTP response ({reason})"


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
            raise HttpError(f"unix socket {key} does not exist") from None
        except OSError as exc:
            raise HttpError(f"cannot connect: {exc.strerror or exc}") from None
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
            except ClosedBeforeResponse:
                # A keep-alive connection the server closed while idle: try a fresh one.
                if reused:
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
