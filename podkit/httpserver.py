"""A small HTTP/1.1 server for the few fixed paths a helper serves (admin, metrics).

Probes and scrapes are tiny GETs; a full web framework costs every helper about 11 MiB
of RSS and 0.2 s of start-up (measured with aiohttp), which the restricted budgets of a
sidecar feel. Requests are parsed by llhttp (`httptools`, the parser of Node.js and
uvicorn) in its strict mode, so request smuggling tricks (duplicate Content-Length,
Content-Length with Transfer-Encoding, obs-fold, bare LF) are refused, not guessed at.
On top of it: keep-alive, pipelining (answered in order), HEAD, bounded request heads, and
request bodies only for the routes that take one, up to the route's limit. Anything else
gets a short error answer and, where the stream can no longer be trusted, a closed
connection; never a crash.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httptools

from podkit.listener import Listener

MAX_REQUEST_HEAD = 16 * 1024
GZIP_MIN_BYTES = 512
GZIP_LEVEL = 1  # metrics text compresses well at the cheapest level; CPU is the sidecar's
LINGER = 2.0
"""Seconds a connection ended by the server still reads (and drops) what the client sends."""
MAX_PIPELINED = 32
"""Requests parsed and waiting for an answer before the connection stops reading."""
REASONS = {
    200: b"OK", 202: b"Accepted", 400: b"Bad Request", 401: b"Unauthorized", 403: b"Forbidden",
    404: b"Not Found", 405: b"Method Not Allowed", 413: b"Content Too Large",
    429: b"Too Many Requests", 431: b"Request Header Fields Too Large",
    500: b"Internal Server Error", 503: b"Service Unavailable",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    query: str
    headers: dict[bytes, bytes]
    """Header names lower-cased, values as sent (a token is case-sensitive); repeated
    headers joined with ", "."""
    peer: str | None
    """The client's IP address."""
    body: bytes | None = b""
    """The request body, for a route that takes one (`max_body`); None when a body was
    sent but not read: larger than the route's limit, or the route takes none."""


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


def accepts_gzip(accept_encoding: bytes) -> bool:
    """Accept-Encoding lists gzip (or *) with a q above 0 (codings are case-insensitive)."""
    for item in accept_encoding.lower().split(b","):
        coding, *params = (p.strip() for p in item.split(b";"))
        if coding in (b"gzip", b"*"):
            q = next((p[2:] for p in params if p.startswith(b"q=")), b"1")
            try:
                return float(q) > 0
            except ValueError:
                return False
    return False


def _maybe_gzip(response: Response, request: Request) -> Response:
    """Compress a body worth compressing when the client accepts gzip (Prometheus does)."""
    if (
        len(response.body) < GZIP_MIN_BYTES
        or b"content-encoding" in response.headers
        or not accepts_gzip(request.headers.get(b"accept-encoding", b""))
    ):
        return response
    import gzip  # here: a helper that is only probed (no scraper) never loads it

    body = gzip.compress(response.body, compresslevel=GZIP_LEVEL, mtime=0)
    headers = {**response.headers, b"Content-Encoding": b"gzip", b"Vary": b"Accept-Encoding"}
    return Response(response.status, body, response.content_type, headers)


def _declared_length(headers: dict[bytes, bytes]) -> int:
    """Content-Length as a number (llhttp has checked it); 0 for a chunked body."""
    value = headers.get(b"content-length", b"0")
    return int(value) if value.isdigit() else 0


def _error(status: int, text: bytes) -> Response:
    return Response(status, text + b"\n")


@dataclass(slots=True)
class _Pending:
    """A parsed request waiting for its turn (answers go out in request order)."""

    request: Request | None
    handler: Handler | None
    answer: Response | None
    keep_alive: bool
    head: bool


class _Protocol(asyncio.Protocol):
    """One connection: llhttp parses, handlers run one at a time, answers keep order."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.peer: str | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.queue: deque[_Pending] = deque()
        self.busy = False
        self.paused = False
        self.closing = False
        """No request after the ones queued is read (a body, an upgrade, bad input)."""
        self.head_bytes = 0
        self.idle_timer: asyncio.TimerHandle | None = None
        self.peer_done = False
        """The client sent EOF."""
        self.lingering: asyncio.Transport | None = None
        """The transport of a connection ended by us, still reading (`_linger`)."""
        self._url = b""
        self._headers: dict[bytes, bytes] = {}
        self._body: bytearray | None = None
        """The body being read for a route that takes one; None otherwise."""
        self._body_limit = 0
        self._waiting: _Pending | None = None
        """The request whose body is being read: queued once the body is complete."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peername = transport.get_extra_info("peername")
        self.peer = peername[0] if isinstance(peername, tuple) else None
        self.server.listener.add(self)
        self._arm_idle_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.listener.discard(self)
        self.transport = self.lingering = None
        if self.idle_timer is not None:
            self.idle_timer.cancel()

    # --- podkit.listener.Connection -----------------------------------------------------------

    def ask_to_finish(self) -> bool:
        """Answer the requests already read, then close; an idle connection closes now."""
        self.closing = True
        if self.lingering is not None:
            self.lingering.close()
        if not self.busy and not self.queue and self.transport is not None:
            self.transport.close()
            self.transport = None
        return True

    def close_now(self) -> None:
        if self.lingering is not None:
            self.lingering.close()
        if self.transport is not None:
            self.transport.close()
            self.transport = None

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

    # --- parsing (llhttp, strict: no bare LF, obs-fold, duplicate Content-Length, CL+TE) ---

    def data_received(self, data: bytes) -> None:
        self._arm_idle_timer()
        if self.closing:
            return  # a body or whatever follows a request we will not read past
        self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.closing = True  # answered like any request, then the connection ends
        except httptools.HttpParserError:
            self._reject(400, b"bad request")
        else:
            if self.head_bytes > MAX_REQUEST_HEAD:
                self._reject(431, b"request too large")
        if len(self.queue) > MAX_PIPELINED and self.transport and not self.paused:
            self.paused = True  # a client pipelining faster than we answer
            self.transport.pause_reading()
        self._process()

    def eof_received(self) -> bool:
        """The client is done sending: answer what it asked, then close (half-close)."""
        self.closing = True
        self.peer_done = True
        # False: nothing left to answer, asyncio closes the transport; True: keep it open.
        return self.busy or bool(self.queue)

    def _reject(self, status: int, text: bytes) -> None:
        if not self.closing:
            self.closing = True
            self.queue.append(_Pending(None, None, _error(status, text), False, False))

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = {}

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        old = self._headers.get(name)
        self._headers[name] = value if old is None else old + b", " + value

    def on_headers_complete(self) -> None:
        self.head_bytes = 0
        if self.closing:
            return
        headers = self._headers
        keep_alive = self.parser.should_keep_alive()
        method = self.parser.get_method().decode("latin-1")
        head = method == "HEAD"
        path, _, query = self._url.decode("latin-1").partition("?")
        methods = self.server.routes.get(path)
        handler = methods.get("GET" if head else method) if methods is not None else None
        limit = self.server.body_limits.get((path, method), 0) if handler is not None else 0
        has_body = headers.get(b"content-length", b"0") != b"0" or b"transfer-encoding" in headers
        body: bytes | None = b""
        if has_body and (not limit or _declared_length(headers) > limit):
            # A body not read: the connection ends after this answer.
            keep_alive, body = False, None
            self.closing = True
        if methods is None:
            pending = _Pending(None, None, _error(404, b"not found"), keep_alive, head)
        elif handler is None:
            pending = _Pending(None, None, _error(405, b"method not allowed"), False, head)
            self.closing = True
        else:
            request = Request(method, path, query, headers, self.peer, body)
            pending = _Pending(request, handler, None, keep_alive, head)
            if has_body and body is not None:
                self._body, self._body_limit, self._waiting = bytearray(), limit, pending
                expect = headers.get(b"expect", b"").lower() == b"100-continue"
                if expect and self.transport is not None and not self.busy and not self.queue:
                    self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # curl waits for it
                return  # queued by on_message_complete, with its body
        self.queue.append(pending)

    def on_body(self, data: bytes) -> None:
        self.head_bytes -= len(data)  # body bytes are not head bytes
        if self._body is None:
            return
        self._body += data
        if len(self._body) > self._body_limit and self._waiting is not None:
            # A chunked body past the limit: answered as unread; nothing more is read.
            self._queue_waiting(None)
            self.closing = True

    def on_message_complete(self) -> None:
        if self._waiting is not None and self._body is not None:
            self._queue_waiting(bytes(self._body))

    def _queue_waiting(self, body: bytes | None) -> None:
        pending, self._waiting, self._body = self._waiting, None, None
        assert pending is not None and pending.request is not None
        if body is None:
            pending.keep_alive = False
        pending.request = dataclasses.replace(pending.request, body=body)
        self.queue.append(pending)

    # --- answering --------------------------------------------------------------------------

    def _process(self) -> None:
        """Answer queued requests in order; a handler's answer waits for nothing else."""
        while self.transport is not None and not self.busy and self.queue:
            item = self.queue.popleft()
            keep_alive = item.keep_alive and not (self.closing and not self.queue)
            if item.answer is not None:
                self._send(_encode(item.answer, keep_alive, item.head), keep_alive)
                continue
            assert item.handler is not None and item.request is not None
            self.busy = True
            task = asyncio.ensure_future(self._serve(item.handler, item.request, item.head))
            self.server.tasks.add(task)
            task.add_done_callback(self.server.tasks.discard)
            self._pending_keep_alive = item.keep_alive
        if self.paused and self.transport is not None and len(self.queue) <= MAX_PIPELINED:
            self.paused = False
            self.transport.resume_reading()

    async def _serve(self, handler: Handler, request: Request, head: bool) -> None:
        try:
            response = _maybe_gzip(await handler(request), request)
            keep_alive = self._pending_keep_alive and not (self.closing and not self.queue)
        except Exception as exc:  # a handler bug: answer 500, report it, keep serving
            self.server.on_error(exc)
            response, keep_alive = _error(500, b"internal error"), False
        self.busy = False
        self._send(_encode(response, keep_alive, head), keep_alive)
        self._process()  # requests pipelined behind this one

    def _send(self, data: bytes, keep_alive: bool = False) -> None:
        if self.transport is None:
            return
        self.transport.write(data)
        if not keep_alive:
            self._linger()

    def _linger(self) -> None:
        """End the connection after the last answer with a half-close: the answer goes out
        with a FIN and what the client still sends (the rest of a body not read) is read
        and dropped (`closing`) until it closes too, or LINGER seconds. Closing at once
        with unread bytes would send a RST, which can destroy the answer on its way: a
        client that sends a whole body before reading would never see its 413."""
        transport, self.transport = self.transport, None
        assert transport is not None
        self.closing = True
        if self.peer_done or not transport.can_write_eof():
            transport.close()  # (after the answer is written)
            return
        transport.write_eof()
        if self.paused:
            transport.resume_reading()
        self.lingering = transport
        asyncio.get_running_loop().call_later(LINGER, transport.close)


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
        self.listener: Listener[_Protocol] = Listener()
        self.tasks: set[asyncio.Future[None]] = set()
        self.body_limits: dict[tuple[str, str], int] = {}

    def add_route(self, method: str, path: str, handler: Handler, max_body: int = 0) -> None:
        """max_body: the route reads request bodies up to this many bytes (0: none); a
        larger one reaches the handler as `body=None`, unread, and the connection closes."""
        self.routes.setdefault(path, {})[method.upper()] = handler
        self.body_limits[(path, method.upper())] = max_body

    @property
    def port(self) -> int:
        """The port bound (differs from the one asked for when that was 0)."""
        return self.listener.port

    async def start(self, host: str, port: int) -> None:
        await self.listener.start(lambda: _Protocol(self), host, port, backlog=1024)

    async def stop(self, grace: float = 2.0) -> None:
        """Stop listening, give requests in flight `grace` seconds, close the rest."""
        await self.listener.shutdown(grace)
        for task in list(self.tasks):
            task.cancel()
        await self.listener.wait_closed()
