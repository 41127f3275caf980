"""`run(settings, runtime)`: the listener, the pools, the periodic checks and the drain."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Callable

from podkit.ambassadors.postgres import core
from podkit.ambassadors.postgres import protocol as pq
from podkit.ambassadors.postgres.client import AUTH, ClientConn
from podkit.ambassadors.postgres.console import Console
from podkit.ambassadors.postgres.context import Context
from podkit.ambassadors.postgres.metrics import PgCollector
from podkit.ambassadors.postgres.pool import Pool
from podkit.ambassadors.postgres.routing import target_for
from podkit.ambassadors.postgres.settings import PgAmbassadorSettings
from podkit.config import split_host_port
from podkit.listener import Listener
from podkit.runtime import Runtime, listening

ADDRESS_CHECK_EVERY = 10.0


class Ambassador(Context):
    """The listener, the pools and the registries of one pg-ambassador; its parts see
    only the `Context` it is (or, for the clients and the console, a `Hub`)."""

    def __init__(self, settings: PgAmbassadorSettings, runtime: Runtime | None) -> None:
        super().__init__(settings, runtime)
        self.pools: dict[tuple[str, str], Pool] = {}
        self.listener: Listener[ClientConn] = Listener()
        self.clients = self.listener.connections  # the open client connections
        self.cancel_keys: dict[int, ClientConn] = {}
        self.next_pid = secrets.randbelow(1 << 30) + 1
        self.console = Console(self)
        self.started_at = time.time()
        if runtime is not None:
            runtime.registry.register(PgCollector(self))
            if runtime.admin is not None:
                runtime.admin.add_status(self.figures)

    def figures(self) -> dict[str, object]:
        """Key figures for `podkit ctl status` (/status): the pools summed, with the states
        of /metrics (an active client holds a server)."""
        now = time.monotonic()
        out = dict.fromkeys(
            ("clients_active", "clients_waiting", "clients_idle", "servers_active",
             "servers_idle", "servers_login", "transactions", "queries"), 0,
        )  # fmt: skip
        longest_wait = 0.0
        for pool in self.pools.values():
            waiting = [c for c in pool.waiters if not c.closed]
            active = sum(1 for c in pool.clients if c.holding)
            out["clients_active"] += active
            out["clients_waiting"] += len(waiting)
            out["clients_idle"] += max(len(pool.clients) - active - len(waiting), 0)
            out["servers_active"] += len(pool.active)
            out["servers_idle"] += pool.idle_count()
            out["servers_login"] += pool.connecting
            out["transactions"] += pool.xacts
            out["queries"] += pool.queries
            longest_wait = max([longest_wait, *(now - c.wait_started for c in waiting)])
        return {
            "pools": len(self.pools),
            **out,
            "max_wait_seconds": round(longest_wait, 3),
            "core": core.loaded(),
        }

    def pool_for(self, database: str, user: str) -> Pool | None:
        """The pool of `database` and `user`; None when --databases has no such database."""
        key = (database, user)
        pool = self.pools.get(key)
        if pool is None:
            target = target_for(self.settings, database, user)
            if target is None:
                return None
            if target.forced:  # one pool for the database, whoever the client
                key = (database, target.user)
                pool = self.pools.get(key)
            if pool is None:
                pool = self.pools[key] = Pool(self, database, key[1], target)
        return pool

    # --- cancel keys -----------------------------------------------------------------------------

    def assign_cancel_key(self, client: ClientConn) -> None:
        pid = self.next_pid
        while pid in self.cancel_keys:
            pid = (pid % 0x7FFFFFFE) + 1
        self.next_pid = (pid % 0x7FFFFFFE) + 1
        client.process_id = pid
        client.secret_key = secrets.randbits(31)
        self.cancel_keys[pid] = client

    def forget_cancel_key(self, client: ClientConn) -> None:
        if self.cancel_keys.get(client.process_id) is client:
            del self.cancel_keys[client.process_id]

    def cancel(
        self, process_id: int, secret_key: int, done: Callable[[], None] = lambda: None
    ) -> None:
        """A client's CancelRequest; `done()` once handled (forwarded and taken, or dropped)."""
        client = self.cancel_keys.get(process_id)
        if client is None or not secrets.compare_digest(
            client.secret_key.to_bytes(4, "big"), (secret_key & 0xFFFFFFFF).to_bytes(4, "big")
        ):
            self.stats.cancels_dropped += 1
            self.warn("cancel_unknown_key", process_id=process_id)
            done()
            return
        if client.cancel_server(done):
            self.stats.cancels_forwarded += 1
        else:
            self.stats.cancels_dropped += 1  # it holds no server: nothing runs for it
            done()

    # --- serving ---------------------------------------------------------------------------------

    async def start(self) -> str:
        host, port = split_host_port(self.settings.listen)
        with listening(self.settings, "listen"):
            return await self.listener.start(lambda: ClientConn(self), host, port, backlog=4096)

    async def check_loop(self) -> None:
        last_addresses = time.monotonic()
        while True:
            await asyncio.sleep(self.settings.stats_period)
            now = time.monotonic()
            for pool in list(self.pools.values()):
                pool.check(now)
            for client in list(self.clients):
                idle_timeout = (
                    client.pool.target.client_idle_timeout
                    if client.pool is not None
                    else self.settings.client_idle_timeout
                )
                if (
                    idle_timeout
                    and not client.holding
                    and now - client.last_activity > idle_timeout
                ):
                    client.fatal("57P05", "pg-ambassador: client_idle_timeout")
            if now - last_addresses > ADDRESS_CHECK_EVERY:
                last_addresses = now
                for pool in list(self.pools.values()):
                    await pool.check_addresses()

    async def drain(self) -> None:
        """Refuse new clients; close each client at its next transaction boundary.

        The listener stays open until the end, as PostgreSQL's does while it shuts down:
        a client that connects meanwhile is told why (57P03 after its startup packet)
        instead of being refused, or reset when its connection was still in the accept
        queue as the listener closed.
        """
        self.draining = True
        busy = sum(1 for client in self.clients if client.state >= AUTH and client.holding)
        self.log.info("draining", clients_in_transaction=busy)
        started = time.monotonic()
        # Each client closes at its transaction boundary (ClientConn.ask_to_finish); no
        # timeout here: the runtime's --shutdown-timeout ends it, and close() the rest.
        await self.listener.finish()
        self.log.info("drained", seconds=round(time.monotonic() - started, 3))

    def free_database(self, database: str) -> None:
        """A client is about to DROP (or rename, or copy as a template) `database`, which
        PostgreSQL refuses while other sessions are connected to it: close the pool's idle
        connections to it now (PostgreSQL waits up to 5 s for their backends to exit), and
        the busy ones when released. PgBouncer keeps them and the statement fails."""
        for pool in self.pools.values():
            if pool.server_database == database:
                closed = pool.close_idle_and_retire()
                self.log.info("database_connections_closed", pool=pool.label, closed=closed)

    def schema_changed(self, pool: Pool) -> None:
        """A client's CREATE, ALTER or DROP committed on `pool`'s database: every pool
        with servers in that database drops the statements it may have typed otherwise
        (ClientConn._transaction_over)."""
        target = pool.target
        for other in self.pools.values():
            if (
                other.server_database == pool.server_database
                and other.target.host == target.host
                and other.target.port == target.port
            ):
                other.drop_inferred_statements()

    def close(self) -> None:
        self.closing = True
        self.listener.close()
        for pool in self.pools.values():
            pool.close_all()
            for server in list(pool.active):
                server.close()


async def run(settings: PgAmbassadorSettings, runtime: Runtime) -> None:
    amb = Ambassador(settings, runtime)
    bound = await amb.start()
    problem = core.problem()
    if problem:  # never silently slow
        runtime.log.warning("core_not_compiled", reason=problem, running="python source")
    runtime.log.info(
        "listening",
        core=core.loaded(),
        addr=bound,
        server=f"{settings.server_host}:{settings.server_port}",
        pool_mode=settings.pool_mode,
        pool_size=settings.pool_size,
        **({"databases": sorted(settings.databases)} if settings.databases else {}),
    )
    runtime.set_ready(True)
    checks = asyncio.create_task(amb.check_loop(), name="pool-checks")
    try:
        await runtime.wait_drain()
        await amb.drain()
    finally:
        amb.close()
        checks.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await checks
        # let the Terminate messages and FATAL errors reach their peers
        await asyncio.sleep(0)


__all__ = ["Ambassador", "pq", "run"]
