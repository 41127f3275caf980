"""The metrics listener (:9113): a small HTTP/1.1 server with keep-alive and two routes.

Prometheus (and wrk) only ever send `GET /metrics`; a full web framework's per-request
cost would dominate a scrape of a local stub_status page. Anything that is not a plain
GET/HEAD of `/` or the telemetry path gets a short error answer, never a crash.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

Route = Callable[[], Awaitable[tuple[bytes, bytes]]]  # -> (content type, body)

MAX_REQUEST_HEAD = 16 * 1024
REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 405: b"Method Not Allowed",
           431: b"Request Header Fields Too Large", 500: b"Internal Server Error"}  # fmt: skip


def _response(status: int, content_type: bytes, body: bytes, keep_alive: bool, head: bool) -> bytes:
    head_lines = (
        b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n"
        % (status, REASONS[status], content_type, len(body),
           b"" if keep_alive else b"Connection: close\r\n")
    )  # fmt: skip
    return head_lines if head else head_lines + body


class _Protocol(asyncio.Protocol):
    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.busy = False
        self.paused = False
        self.idle_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.listener.connections.add(self)
        self._arm_idle_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self.listener.connections.discard(self)
        self.transport = None
        if self.idle_timer is not None:
            self.idle_timer.cancel()

    def _arm_idle_timer(self) -> None:
        # A connection that sends nothing for this long is closed, so idle or half-sent
        # requests cannot pile up file descriptors; Prometheus just reconnects.
        if self.idle_timer is not None:
            self.idle_timer.cancel()
        loop = asyncio.get_running_loop()
        self.idle_timer = loop.call_later(self.listener.idle_timeout, self._idle_close)

    def _idle_close(self) -> None:
        if self.busy:
            self._arm_idle_timer()  # a scrape in flight is not idleness
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
                self._send(_response(431, b"text/plain", b"request too large\n", False, False))
            return False
        head = bytes(self.buffer[:end])
        del self.buffer[: end + 4]
        lines = head.split(b"\r\n")
        parts = lines[0].split()
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            self._send(_response(400, b"text/plain", b"bad request\n", False, False))
            return False
        method, target, version = parts
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip().lower()
        keep_alive = (
            version == b"HTTP/1.1" and headers.get(b"connection") != b"close"
        ) or headers.get(b"connection") == b"keep-alive"
        if headers.get(b"content-length", b"0") != b"0" or b"transfer-encoding" in headers:
            keep_alive = False  # a body on a GET is not read; the connection ends after this
        head_only = method == b"HEAD"
        route = self.listener.routes.get(target.split(b"?", 1)[0])
        if method not in (b"GET", b"HEAD"):
            self._send(_response(405, b"text/plain", b"method not allowed\n", False, False))
        elif route is None:
            self._send(_response(404, b"text/plain", b"not found\n", keep_alive, head_only))
        else:
            self.busy = True
            task = asyncio.ensure_future(self._serve(route, keep_alive, head_only))
            self.listener.tasks.add(task)
            task.add_done_callback(self.listener.tasks.discard)
        return True

    async def _serve(self, route: Route, keep_alive: bool, head: bool) -> None:
        try:
            content_type, body = await route()
            answer = _response(200, content_type, body, keep_alive, head)
        except Exception as exc:  # the scraper turns target errors into up 0; this is a bug
            self.listener.on_error(exc)
            keep_alive = False
            answer = _response(500, b"text/plain", b"internal error\n", False, head)
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


class Listener:
    def __init__(
        self,
        routes: dict[str, Route],
        on_error: Callable[[Exception], None],
        idle_timeout: float = 300.0,
    ) -> None:
        self.idle_timeout = idle_timeout
        self.routes = {path.encode(): route for path, route in routes.items()}
        self.on_error = on_error
        self.connections: set[_Protocol] = set()
        self.tasks: set[asyncio.Future[None]] = set()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: _Protocol(self), host, port, reuse_address=True, backlog=1024
        )
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in list(self.tasks):
            task.cancel()
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.close()
        if self.server is not None:
            await self.server.wait_closed()
