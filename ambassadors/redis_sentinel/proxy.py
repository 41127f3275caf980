"""The L4 proxy: bytes between the application and the current master, nothing else.

Each client connection is a pair of asyncio Protocols (client side, master side) that
hand chunks straight to the other transport: no task and no await per chunk. A full
write buffer on one side pauses reading on the other (both directions), so a slow reader
never makes the proxy buffer without bound. Nothing is parsed, so AUTH/HELLO, MULTI,
pub/sub, blocking commands, MONITOR and pipelining pass untouched.

Every connection is bound to the master it was opened to. When the master changes, all
connections bound to the old one are closed at once: the bytes the client already sent
and that were not yet written to the old master are dropped (abort), so nothing reaches a
demoted node after the switch; the client reconnects and lands on the new master.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from typing import Any

from podkit.config import split_host_port
from podkit.listener import Listener
from podkit.logs import Throttled, get_logger

# How long a closed client gets to take the replies already in flight before it is cut.
CLOSE_FLUSH_GRACE = 5.0
LOG_EVERY = 1.0
NO_MASTER_REPLY = b"-ERR podkit redis-ambassador: no Redis master is known, try again\r\n"
UPSTREAM_DOWN_REPLY = b"-ERR podkit redis-ambassador: the Redis master refused the connection\r\n"
# What redis-server itself answers past its maxclients, so clients handle it the same way.
MAX_CLIENTS_REPLY = b"-ERR max number of clients reached\r\n"


class ProxyStats:
    """Plain integers bumped on the hot path; exported at scrape time by the collector."""

    __slots__ = (
        "active",
        "bytes_from_master",
        "bytes_to_master",
        "closed_by_failover",
        "closed_idle",
        "refused_max_clients",
        "refused_no_master",
        "total",
        "upstream_errors",
    )

    def __init__(self) -> None:
        self.active = 0
        self.total = 0
        self.bytes_to_master = 0
        self.bytes_from_master = 0
        self.closed_by_failover = 0
        self.closed_idle = 0
        self.refused_max_clients = 0
        self.refused_no_master = 0
        self.upstream_errors = 0


class MasterSide(asyncio.Protocol):
    """The connection to the master; its data goes straight to the client transport."""

    __slots__ = ("client", "stats", "transport")

    def __init__(self, client: ClientSide) -> None:
        self.client = client
        self.stats = client.proxy.stats
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.stats.bytes_from_master += len(data)
        self.client.transport.write(data)

    def eof_received(self) -> bool:
        # Half-close passes through; once both directions have ended, both sides close.
        client = self.client
        client.master_eof = True
        if client.client_eof or client.transport.is_closing():
            return False
        client.transport.write_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.master_lost()

    # The client cannot take more: stop reading from the master until it can.
    def pause_writing(self) -> None:
        self.client.transport.pause_reading()

    def resume_writing(self) -> None:
        if not self.client.transport.is_closing():
            self.client.transport.resume_reading()


class ClientSide(asyncio.Protocol):
    """One application connection. Reading is paused until the master side is connected."""

    master_side: type[MasterSide] = MasterSide

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.stats = proxy.stats
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.master: asyncio.Transport | None = None
        self.master_addr: str | None = None
        self.connecting: asyncio.Task[None] | None = None
        self.pending: list[bytes] = []
        self.eof_pending = False
        self.client_eof = False
        self.master_eof = False
        self.closed = False
        self.refused = False
        self.ticks = 0  # chunks moved either way; the idle sweep compares it
        self.seen_ticks = -1
        self.quiet_since = 0.0

    # --- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        proxy = self.proxy
        if len(proxy.listener.connections) >= proxy.max_clients:
            self.refused = True
            self.closed = True
            self.stats.refused_max_clients += 1
            proxy.warn("client_refused", reason="max_clients", limit=proxy.max_clients)
            transport.write(MAX_CLIENTS_REPLY)  # type: ignore[attr-defined]
            transport.close()
            return
        self.stats.total += 1
        self.stats.active += 1
        proxy.listener.add(self)
        transport.pause_reading()  # type: ignore[attr-defined]
        self.connecting = self.proxy.loop.create_task(self._connect())

    def data_received(self, data: bytes) -> None:
        # (A refused connection is closed in connection_made: no data reaches it.)
        self.stats.bytes_to_master += len(data)
        master = self.master
        if master is None:
            # uvloop may deliver data before the pause in connection_made takes effect:
            # keep it (and pause again) until the master side is connected.
            self.pending.append(data)
            self.transport.pause_reading()
            return
        master.write(data)

    def eof_received(self) -> bool:
        self.client_eof = True
        master = self.master
        if master is None:
            if self.pending:
                self.eof_pending = True  # sent after the pending bytes, once connected
                return True
            return False
        if self.master_eof or master.is_closing() or not master.can_write_eof():
            return False  # (TLS cannot half-close: the whole connection ends)
        master.write_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if self.refused:
            return
        self.closed = True
        self.stats.active -= 1
        self.proxy.forget(self)
        if self.connecting is not None and not self.connecting.done():
            self.connecting.cancel()
        if self.master is not None:
            # The client is gone: what it sent still goes to the master (it is the same master).
            self.master.close()

    # The master cannot take more: stop reading from the client until it can.
    def pause_writing(self) -> None:
        if self.master is not None:
            self.master.pause_reading()

    def resume_writing(self) -> None:
        if self.master is not None and not self.master.is_closing():
            self.master.resume_reading()

    # --- the proxy's side ------------------------------------------------------------------

    async def _connect(self) -> None:
        proxy = self.proxy
        deadline = proxy.loop.time() + proxy.connect_wait
        while not self.closed:
            addr = proxy.master
            if addr is None:
                remaining = deadline - proxy.loop.time()
                if remaining <= 0 or proxy.draining:
                    self.stats.refused_no_master += 1
                    proxy.warn("client_refused", reason="no_master", wait=proxy.connect_wait)
                    self.refuse(NO_MASTER_REPLY)
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proxy.master_known.wait(), remaining)
                continue
            host, port = split_host_port(addr)
            try:
                transport, _ = await asyncio.wait_for(
                    proxy.loop.create_connection(
                        lambda: self.master_side(self), host, port, ssl=proxy.ssl_context,
                        server_hostname=host if proxy.ssl_context else None,
                    ),
                    proxy.connect_timeout,
                )  # fmt: skip
            except (OSError, TimeoutError, ssl.SSLError) as exc:
                self.stats.upstream_errors += 1
                proxy.warn("master_connect_failed", master=addr, error=str(exc) or "timeout")
                proxy.on_upstream_error(addr)
                if proxy.master != addr:
                    continue  # the master changed meanwhile: try the new one
                self.refuse(UPSTREAM_DOWN_REPLY)
                return
            if self.closed or proxy.master != addr:
                # The master changed while connecting; nothing was sent yet, so retry.
                transport.abort()
                continue
            self.master = transport
            self.master_addr = addr
            proxy.bind(self, addr)
            if self.pending:
                transport.writelines(self.pending)
                self.pending.clear()
            if self.eof_pending:
                if transport.can_write_eof():
                    transport.write_eof()
                else:
                    self.close()
                return
            self.transport.resume_reading()
            return

    def refuse(self, reply: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(reply)
            self.close()

    def close(self) -> None:
        """Close the client side, giving it a short while to take what is already buffered."""
        if not self.transport.is_closing():
            self.transport.close()
            self.proxy.loop.call_later(CLOSE_FLUSH_GRACE, self.transport.abort)

    def master_lost(self) -> None:
        self.close()

    def cut(self) -> None:
        """Failover: drop whatever is not yet written to the old master, close the client."""
        if self.master is not None:
            self.master.abort()
        self.close()

    # --- podkit.listener.Connection -----------------------------------------------------------

    def ask_to_finish(self) -> bool:
        # Bytes carry no request boundary a proxy could stop at: the client ends it.
        return True

    def close_now(self) -> None:
        self.cut()


class CountingMasterSide(MasterSide):
    """MasterSide that counts chunks for the idle sweep (only with --client-idle-timeout)."""

    __slots__ = ()

    def data_received(self, data: bytes) -> None:
        self.client.ticks += 1
        super().data_received(data)


class CountingClientSide(ClientSide):
    """ClientSide that counts chunks for the idle sweep (only with --client-idle-timeout)."""

    master_side = CountingMasterSide

    def data_received(self, data: bytes) -> None:
        self.ticks += 1
        super().data_received(data)


class Proxy:
    """Accepts application connections and binds each to the master known at that moment."""

    def __init__(
        self,
        listen: str,
        *,
        connect_wait: float,
        connect_timeout: float,
        ssl_context: ssl.SSLContext | None,
        on_upstream_error: Any = None,
        max_clients: int = 10000,
        idle_timeout: float = 0.0,
    ) -> None:
        self.listen = listen
        self.max_clients = max_clients
        self.idle_timeout = idle_timeout
        self.sweeper: asyncio.Task[None] | None = None
        self.connect_wait = connect_wait
        self.connect_timeout = connect_timeout
        self.ssl_context = ssl_context
        self.on_upstream_error = on_upstream_error or (lambda addr: None)
        self.log = get_logger("redis_ambassador.proxy")
        self.stats = ProxyStats()
        self.master: str | None = None
        self.master_known = asyncio.Event()
        self.listener: Listener[ClientSide] = Listener()
        self.bound: dict[str, set[ClientSide]] = {}
        self.draining = False
        self.loop = asyncio.get_running_loop()
        self._throttled = Throttled(self.log, LOG_EVERY)

    def warn(self, event: str, **fields: Any) -> None:
        """Log a per-connection problem at most once a second; the metrics count them all."""
        self._throttled.warning(event, **fields)

    async def start(self) -> str:
        host, port = split_host_port(self.listen)
        # The idle sweep needs chunk counts; without it the hot path does not count.
        client_side = CountingClientSide if self.idle_timeout > 0 else ClientSide
        bound = await self.listener.start(lambda: client_side(self), host, port, backlog=4096)
        if self.idle_timeout > 0:
            self.sweeper = self.loop.create_task(self._sweep_idle(), name="idle sweep")
        return bound

    async def _sweep_idle(self) -> None:
        """Close connections that moved no byte either way for --client-idle-timeout."""
        period = max(self.idle_timeout / 4, 0.01)
        while True:
            await asyncio.sleep(period)
            now = self.loop.time()
            for client in list(self.listener.connections):
                if client.master is None:
                    continue  # still waiting for a master: --connect-wait governs it
                if client.ticks != client.seen_ticks:
                    client.seen_ticks = client.ticks
                    client.quiet_since = now
                elif now - client.quiet_since >= self.idle_timeout:
                    self.stats.closed_idle += 1
                    self.warn("client_idle_closed", timeout=self.idle_timeout)
                    client.close()

    def set_master(self, addr: str | None) -> int:
        """Route new connections to `addr` (None: make them wait); cut the old master's."""
        old = self.master
        if addr == old:
            return 0
        self.master = addr
        if addr is None:
            self.master_known.clear()
        else:
            self.master_known.set()
        cut = 0
        if old is not None:
            doomed = self.bound.pop(old, set())
            for client in doomed:
                client.cut()
            cut = len(doomed)
            self.stats.closed_by_failover += cut
        return cut

    def bind(self, client: ClientSide, addr: str) -> None:
        self.bound.setdefault(addr, set()).add(client)

    def forget(self, client: ClientSide) -> None:
        self.listener.discard(client)
        if client.master_addr is not None:
            bucket = self.bound.get(client.master_addr)
            if bucket is not None:
                bucket.discard(client)

    async def drain(self) -> None:
        """Stop accepting; open connections go on until they finish (or we are cancelled)."""
        self.draining = True
        if self.sweeper is not None:
            self.sweeper.cancel()
        started = time.monotonic()
        clients = self.listener.connections
        if clients:
            self.log.info("draining_connections", connections=len(clients))
        try:
            await self.listener.shutdown()
        finally:
            self.log.info(
                "drained", left=len(clients), seconds=round(time.monotonic() - started, 3)
            )
