"""Shared by the pg-ambassador tests: a real PostgreSQL, and the ambassador in a thread.

The ambassador runs on its own event loop in a thread, so tests may use blocking clients
(psycopg, psql, pgbench) and asyncio ones (asyncpg) alike, and still look at its state.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from typing import Any

import asyncpg
import uvloop

from podkit.ambassadors.postgres import protocol as pq
from podkit.ambassadors.postgres.main import Ambassador
from podkit.ambassadors.postgres.settings import PgAmbassadorSettings
from podkit_dev.servers import HOST, PostgresServer, find_binary, free_port, until, wait_for
from tests.servers import serve

PG_DIRS = [str(d) for d in sorted(__import__("pathlib").Path("/usr/lib/postgresql").glob("*/bin"))]


class AmbassadorThread:
    """`Ambassador` on a loop in a thread; `call(fn)` runs fn on that loop and returns."""

    def __init__(self, **settings: Any) -> None:
        self.port = free_port()
        settings.setdefault("admin_addr", "127.0.0.1:0")
        settings.setdefault("stats_period", 0.1)
        settings.setdefault("client_auth", "trust")
        self.settings = PgAmbassadorSettings(listen=f"{HOST}:{self.port}", **settings)
        self.loop = uvloop.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.amb: Ambassador = None  # type: ignore[assignment]
        self.checks: asyncio.Task[None] | None = None

    def start(self) -> AmbassadorThread:
        self.thread.start()

        async def start() -> None:
            self.amb = Ambassador(self.settings, None)
            await self.amb.start()
            self.checks = asyncio.create_task(self.amb.check_loop())

        self.run(start())
        return self

    def run(self, coro: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[[], Any], timeout: float = 10.0) -> Any:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def runner() -> None:
            try:
                future.set_result(fn())
            except Exception as exc:
                future.set_exception(exc)

        self.loop.call_soon_threadsafe(runner)
        return future.result(timeout)

    def dsn(self, db: str = "postgres", user: str = "postgres") -> str:
        return f"postgresql://{user}@{HOST}:{self.port}/{db}"

    def stop(self) -> None:
        async def stop() -> None:
            if self.checks is not None:
                self.checks.cancel()
            if self.amb is not None:
                self.amb.close()
            await asyncio.sleep(0.05)

        try:
            self.run(stop(), timeout=10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)

    def pool_state(self) -> dict[str, int]:
        def read() -> dict[str, int]:
            out = {"idle": 0, "active": 0, "waiting": 0, "connecting": 0}
            for pool in self.amb.pools.values():
                out["idle"] += pool.idle_count()  # parked ones too
                out["active"] += len(pool.active)
                out["waiting"] += sum(1 for c in pool.waiters if not c.closed)
                out["connecting"] += pool.connecting
            return out

        return self.call(read)


def start_accepting(server: PostgresServer) -> None:
    """Start `server` and wait until it accepts connections (`start` of tests.servers.serve)."""
    server.start()
    server.wait_accepting()


def pg_server() -> Iterator[PostgresServer]:
    """For a `pg` fixture: a PostgreSQL that accepts connections."""
    yield from serve(PostgresServer, start_accepting)


def ambassadors(pg: PostgresServer) -> Iterator[Callable[..., AmbassadorThread]]:
    """For an `ambassador` fixture: `ambassador(pool_size=2, ...)` in front of `pg`."""
    started: list[AmbassadorThread] = []

    def make(**settings: Any) -> AmbassadorThread:
        settings.setdefault("server_port", pg.port)
        amb = AmbassadorThread(**settings).start()
        started.append(amb)
        return amb

    yield make
    for amb in started:
        amb.stop()


def pg_binary(name: str) -> str:
    return find_binary(name, *PG_DIRS)


def run_pg_tool(
    name: str, *args: str, timeout: float = 120, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PGCONNECT_TIMEOUT": "10", "PGSSLMODE": "disable"}
    return subprocess.run(
        [pg_binary(name), *args], capture_output=True, text=True, timeout=timeout, env=env,
        **kwargs,
    )  # fmt: skip


def read_to_eof(sock: socket.socket) -> bytes:
    """Everything the ambassador says on a raw socket until it closes it."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def server_backends(pg: PostgresServer) -> int:
    """Client backends connected to PostgreSQL (not counting the one asking)."""
    out = pg.sql(
        "select count(*) from pg_stat_activity where backend_type = 'client backend' "
        "and pid <> pg_backend_pid()"
    )
    return int(out.strip())


def send_cancel(port: int, conn: asyncpg.Connection) -> socket.socket:
    """A CancelRequest with `conn`'s key (asyncpg's) to `port`; the socket, to read."""
    protocol = conn._protocol  # type: ignore[attr-defined]
    sock = socket.create_connection((HOST, port))
    sock.sendall(pq.cancel_request(protocol.backend_pid, protocol.backend_secret))
    return sock


async def running(direct: asyncpg.Connection, query: str) -> bool:
    """`query` runs on PostgreSQL now (asked over `direct`, a connection past the pool)."""
    sql = "SELECT count(*) FROM pg_stat_activity WHERE query = $1 AND state = 'active'"
    return bool(await direct.fetchval(sql, query) == 1)


class RawClient:
    """A client speaking the protocol itself (trust login), to see each message the
    ambassador sends and in which order."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int) -> RawClient:
        reader, writer = await asyncio.open_connection(HOST, port)
        raw = cls(reader, writer)
        writer.write(pq.startup_message({"user": "postgres", "database": "postgres"}))
        await raw.until_ready()
        return raw

    async def message(self) -> tuple[int, bytes]:
        header = await asyncio.wait_for(self.reader.readexactly(5), 10)
        body = await self.reader.readexactly(int.from_bytes(header[1:5], "big") - 4)
        return header[0], header + body

    async def until_ready(self) -> list[tuple[int, bytes]]:
        got = []
        while True:
            kind, msg = await self.message()
            got.append((kind, msg))
            if kind == pq.READY_FOR_QUERY:
                return got

    async def query(self, sql: str) -> list[tuple[int, bytes]]:
        self.writer.write(pq.query(sql))
        return await self.until_ready()

    def close(self) -> None:
        self.writer.close()


__all__ = [
    "AmbassadorThread",
    "RawClient",
    "run_pg_tool",
    "running",
    "send_cancel",
    "server_backends",
    "until",
    "wait_for",
]
