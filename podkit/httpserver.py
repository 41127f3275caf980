"""A small HTTP/1.1 server for the few fixed paths a helper serves (admin, metrics).

Probes and scrapes are tiny GETs; a full web framework costs every helper about 11 MiB
of RSS and 0.2 s of start-up (measured with aiohttp), which the restricted budgets of a
sidecar feel. This server speaks just enough HTTP/1.1: keep-alive, pipelining (answered
in order), HEAD, bounded request heads, no request bodies. Anything else gets a short
error answer and, where the stream can no longer be trusted, a closed connection; never
a crash.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

MAX_REQUEST_HEAD = 16 * 1024
REASONS = {
    200: b"OK", 202: b"Accepted", 400: b"Bad Request", 403: b"Forbidden", 404: b"Not Found",
    405: b"Method Not Allowed", 431: b"Request Header Fields Too Large",
    500: b"Internal Server Error", 503: b"Service Unavailable",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    query: str
    headers: dict[bytes, bytes]
    """Header names and values, lower-cased."""
    peer: str | None
    """The client's IP address."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    content_type: bytes = b"text/plain; charset=utf-8"
    headers: dict[bytes, bytes] = field(default_factory=dict)


Handler = Callable[[Request], Awaitable[Response]]


def _encode(response: Response, keep_alive: bool, head: bool) -> bytes:
    reason = REASONS.get(response.status, b"Unknown")
    extra = b"".join(b"%s: %s\r\n" % item for item in response.headers.items())
    lines = b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s%s\r\n" % (
        response.status,
        reason,
        response.content_type,
        len(response.body),
        extra,
        b"" if keep_alive else b"Connection: close\r\n",
    )
    return lines if head else lines + response.body


def _error(status: int, text: bytes) -> Response:
    return Response(status, text + b"\n")


class _Protocol(asyncio.Protocol):
    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.peer: str | None = None
        self.buffer = bytearray()
        self.busy = False
        self.paused = False
        self.idle_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peername = transport.get_extra_info("peername")
        self.peer = peername[0] if isinstance(peername, tuple) else None
        self.server.connections.add(self)
        self._arm_idle_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.transport = None
        if self.idle_timer is not None:
            self.idle_timer.cancel()

    def _arm_idle_timer(self) -> None:
        # A connection that sends nothing for this long is closed, so idle or half-sent
        # requests cannot pile up file descriptors; probes and scrapers just reconnect.
        if self.idle_timer is not None:
            self.idle_timer.cancel()
        loop = asyncio.get_running_loop()
        self.idle_timer = loop.call_later(self.server.idle_timeout, self._idle_close)

    def _idle_close(self) -> None:
        if self.busy:
            self._arm_idle_timer()  # a request in flight is not idleness
        elif self.transport is not None:
            self.transport.close()
            self.transport = None

    def data_received(self, data: bytes) -> None:
        self._arm_idle_timer()
        self.buffer += data
        if not self.busy:
            self._process()
        elif len(self.buffer) > MAX_REQUEST_HEAD and self.transport and not self.paused:
            self.paused = True  # a client pipelining faster than we answer
            self.transport.pause_reading()

    def _process(self) -> None:
        """Answer every complete request in the buffer, in order (a loop, not recursion)."""
        while self.transport is not None and not self.busy and self._one():
            pass

    def _one(self) -> bool:
        """Handle one request from the buffer; False when none is complete yet."""
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > MAX_REQUEST_HEAD:
                self._send(_encode(_error(431, b"request too large"), False, False))
            return False
        head = bytes(self.buffer[:end])
        del self.buffer[: end + 4]
        lines = head.split(b"\r\n")
        parts = lines[0].split()
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            self._send(_encode(_error(400, b"bad request"), False, False))
            return False
        method_raw, target, version = parts
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip().lower()
        keep_alive = (
            version == b"HTTP/1.1" and headers.get(b"connection") != b"close"
        ) or headers.get(b"connection") == b"keep-alive"
        if headers.get(b"content-length", b"0") != b"0" or b"transfer-encoding" in headers:
            keep_alive = False  # a body is never read; the connection ends after this answer
        method = method_raw.decode("latin-1")
        head_only = method == "HEAD"
        path, _, query = target.decode("latin-1").partition("?")
        methods = self.server.routes.get(path)
        handler = methods and methods.get("GET" if head_only else method)
        if methods is None:
            self._send(_encode(_error(404, b"not found"), keep_alive, head_only), keep_alive)
        elif handler is None:
            self._send(_encode(_error(405, b"method not allowed"), False, head_only))
        else:
            self.busy = True
            request = Request(method, path, query, headers, self.peer)
            task = asyncio.ensure_future(self._serve(handler, request, keep_alive, head_only))
            self.server.tasks.add(task)
            task.add_done_callback(self.server.tasks.discard)
        return True

    async def _serve(
        self, handler: Handler, request: Request, keep_alive: bool, head: bool
    ) -> None:
        try:
            answer = _encode(await handler(request), keep_alive, head)
        except Exception as exc:  # a handler bug: answer 500, report it, keep serving
            self.server.on_error(exc)
            keep_alive = False
            answer = _encode(_error(500, b"internal error"), False, head)
        self.busy = False
        self._send(answer, keep_alive)
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        self._process()  # requests pipelined behind this one

    def _send(self, data: bytes, keep_alive: bool = False) -> None:
        if self.transport is None:
            return
        self.transport.write(data)
        if not keep_alive:
            self.transport.close()
            self.transport = None


class HttpServer:
    """Serves `routes` ({path: {method: handler}}); routes may be added while running."""

    def __init__(
        self,
        routes: dict[str, dict[str, Handler]] | None = None,
        on_error: Callable[[Exception], None] = lambda exc: None,
        idle_timeout: float = 300.0,
    ) -> None:
        self.routes: dict[str, dict[str, Handler]] = {
            path: dict(methods) for path, methods in (routes or {}).items()
        }
        self.on_error = on_error
        self.idle_timeout = idle_timeout
        self.connections: set[_Protocol] = set()
        self.tasks: set[asyncio.Future[None]] = set()
        self.server: asyncio.Server | None = None
        self.port = 0

    def add_route(self, method: str, path: str, handler: Handler) -> None:
        self.routes.setdefault(path, {})[method.upper()] = handler

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: _Protocol(self), host, port, reuse_address=True, backlog=1024
        )
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self, grace: float = 2.0) -> None:
        """Stop listening, give requests in flight `grace` seconds, close the rest."""
        if self.server is not None:
            self.server.close()
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=grace)
        for task in list(self.tasks):
            task.cancel()
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.close()
        if self.server is not None:
            await self.server.wait_closed()
