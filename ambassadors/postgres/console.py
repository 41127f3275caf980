"""PgBouncer's admin console: the virtual database `pgbouncer`.

`psql -p 5432 -U any pgbouncer -c 'SHOW POOLS'` works as with PgBouncer, with the same
column names (so scripts and exporters that parse them keep working), simple query
protocol only. SHOW POOLS / STATS / STATS_TOTALS / LISTS / CLIENTS / SERVERS / DATABASES /
CONFIG / VERSION (all that prometheus-community/pgbouncer_exporter reads) / HELP; PAUSE [db]
(returns once the pools' servers are all released), RESUME [db]; RECONNECT [db] (each
server connection is closed now if idle, else when released; new ones are opened as
needed); SHUTDOWN [WAIT_FOR_SERVERS] (the drain SIGTERM starts: PgBouncer's plain SHUTDOWN
exits at once, this one lets each client finish its transaction, within
--shutdown-timeout).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection
from typing import TYPE_CHECKING, Protocol

from podkit import __version__
from podkit.ambassadors.postgres import protocol as pq
from podkit.ambassadors.postgres.client import READY

if TYPE_CHECKING:
    import collections

    from podkit.ambassadors.postgres.client import ClientConn
    from podkit.ambassadors.postgres.context import Stats
    from podkit.ambassadors.postgres.pool import Pool
    from podkit.ambassadors.postgres.settings import PgAmbassadorSettings
    from podkit.logs import EventLogger
    from podkit.runtime import Runtime


class ConsoleHub(Protocol):
    """What the console and the metrics see of the ambassador (main.Ambassador is one)."""

    settings: PgAmbassadorSettings
    stats: Stats
    pinned: collections.Counter[str]
    log: EventLogger
    runtime: Runtime | None
    pools: dict[tuple[str, str], Pool]

    @property
    def clients(self) -> Collection[ClientConn]: ...


VERSION = f"PgBouncer 1.21.0 compatible (podkit pg-ambassador {__version__})"
COMMANDS = (
    "SHOW POOLS|STATS|STATS_TOTALS|LISTS|CLIENTS|SERVERS|DATABASES|CONFIG|VERSION|HELP, "
    "PAUSE [db], RESUME [db], RECONNECT [db], SHUTDOWN [WAIT_FOR_SERVERS]"
)


def _ts(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds))


class Console:
    def __init__(self, amb: ConsoleHub) -> None:
        self.amb = amb
        self.tasks: set[asyncio.Task[None]] = set()

    def handle(self, client: ClientConn, messages: list[tuple[int, bytes]]) -> None:
        for kind, msg in messages:
            if kind == pq.TERMINATE_MSG:
                client.transport.close()
                return
            if kind != pq.QUERY:
                client.transport.write(
                    pq.error_response(
                        "pg-ambassador console: only the simple query protocol is supported",
                        "08P01",
                    )
                )
                if kind == pq.SYNC_MSG:
                    client.transport.write(pq.READY_IDLE)
                continue
            sql = msg[5:-1].decode(errors="replace").strip().rstrip(";").strip()
            self.command(client, sql)

    def command(self, client: ClientConn, sql: str) -> None:
        words = sql.split()
        verb = words[0].upper() if words else ""
        arg = words[1].upper() if len(words) > 1 else ""
        out: list[bytes]
        if client.console_read_only and verb != "SHOW":
            message = f'pg-ambassador: user "{client.user}" may run SHOW commands only'
            out = [pq.error_response(message, "42501")]
        elif verb == "SHOW" and arg in _SHOW:
            columns, rows = _SHOW[arg](self.amb)
            out = [pq.row_description(columns)]
            out += [pq.data_row([None if v is None else str(v) for v in row]) for row in rows]
            out.append(pq.command_complete("SHOW"))
        elif verb == "SHOW" and arg == "HELP":
            usage = pq.error_response(
                "Console usage", "00000", severity="NOTICE", detail=COMMANDS, kind=b"N"
            )
            out = [usage, pq.command_complete("SHOW")]
        elif verb in ("PAUSE", "RESUME", "RECONNECT"):
            database = words[1].strip('"') if len(words) > 1 else None
            pools = [p for p in self.amb.pools.values() if database in (None, p.database)]
            if verb == "RECONNECT":
                closed = sum(pool.close_idle_and_retire() for pool in pools)
                self.amb.log.info("reconnect", database=database or "*", idle_closed=closed)
                out = [pq.command_complete("RECONNECT")]
            elif verb == "RESUME":
                for pool in pools:
                    pool.resume()
                out = [pq.command_complete("RESUME")]
            else:
                for pool in pools:
                    pool.pause()
                client.transport.pause_reading()
                task = asyncio.get_running_loop().create_task(self._paused(client, pools))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
                return
        elif verb == "SHUTDOWN" and arg in ("", "WAIT_FOR_SERVERS") and len(words) <= 2:
            runtime = self.amb.runtime
            if runtime is None:  # an ConsoleHub embedded without the runtime (tests)
                out = [pq.error_response("pg-ambassador console: no runtime to drain", "55000")]
            else:
                # answered first: the drain then closes this idle client with 57P01
                client.transport.writelines([pq.command_complete("SHUTDOWN"), pq.READY_IDLE])
                runtime.request_drain(source="console")
                return
        elif not sql:
            out = [b"I\x00\x00\x00\x04"]
        else:
            hint = COMMANDS
            if verb == "SHUTDOWN" and arg == "WAIT_FOR_CLIENTS":
                hint = (
                    "pg-ambassador does not wait for clients to leave on their own: SHUTDOWN "
                    "closes each one at the end of its transaction"
                )
            out = [
                pq.error_response(
                    f"pg-ambassador console: unsupported command: {sql[:100]}", "42601", hint=hint
                )
            ]
        out.append(pq.READY_IDLE)
        client.transport.writelines(out)

    async def _paused(self, client: ClientConn, pools: list[Pool]) -> None:
        # An admin command, rare: polling the pools is simpler than events on every release.
        while any(p.active for p in pools) and not client.closed:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        if not client.closed:
            client.transport.writelines([pq.command_complete("PAUSE"), pq.READY_IDLE])
            client.transport.resume_reading()


def _pools(amb: ConsoleHub) -> tuple[list[str], list[list[object]]]:
    """PgBouncer's columns but those of states podkit has not: cancel requests are sent on
    connections of their own, outside the pools (cl_*_cancel_req, sv_active_cancel), and
    idle servers are not checked before use (sv_used)."""
    columns = ["database", "user", "cl_active", "cl_waiting", "sv_active",
               "sv_being_canceled", "sv_idle", "sv_tested", "sv_login", "maxwait",
               "maxwait_us", "pool_mode"]  # fmt: skip
    rows: list[list[object]] = []
    now = time.monotonic()
    for pool in amb.pools.values():
        waiting = [c for c in pool.waiters if not c.closed]
        maxwait = max((now - c.wait_started for c in waiting), default=0.0)
        resetting = sum(1 for s in pool.active if s.client is None and s.internal is not None)
        rows.append([
            pool.database, pool.user, len(pool.clients) - len(waiting), len(waiting),
            len(pool.active) - resetting, sum(1 for s in pool.active if s.cancelling),
            pool.idle_count(), resetting, pool.connecting, int(maxwait),
            int((maxwait % 1) * 1e6), pool.target.pool_mode,
        ])  # fmt: skip
    return columns, rows


def _totals(amb: ConsoleHub) -> list[tuple[str, list[int]]]:
    """Per database (its pools, one per user, summed): transactions, queries, bytes
    received and sent, and transaction, query and wait times in microseconds."""
    totals: dict[str, list[float]] = {}
    for pool in amb.pools.values():
        row = totals.setdefault(pool.database, [0.0] * 7)
        figures = (pool.xacts, pool.queries, pool.bytes_received, pool.bytes_sent,
                   pool.xact_time * 1e6, pool.query_time * 1e6, pool.wait_time * 1e6)  # fmt: skip
        for i, value in enumerate(figures):
            row[i] += value
    return [(db, [int(v) for v in row]) for db, row in sorted(totals.items())]


def _stats(amb: ConsoleHub) -> tuple[list[str], list[list[object]]]:
    """One row per database, as PgBouncer; times in us.

    PgBouncer's avg_* columns (rates over its last 15 s period) are left out: the same
    figures are on /metrics, where Prometheus computes rates over any window."""
    columns = ["database", "total_xact_count", "total_query_count", "total_received",
               "total_sent", "total_xact_time", "total_query_time", "total_wait_time",
               "cl_pinned"]  # fmt: skip
    pinned: dict[str, int] = {}
    for pool in amb.pools.values():
        count = sum(1 for c in pool.clients if c.pinned and not c.closed)
        pinned[pool.database] = pinned.get(pool.database, 0) + count
    return columns, [[db, *row, pinned[db]] for db, row in _totals(amb)]


def _stats_totals(amb: ConsoleHub) -> tuple[list[str], list[list[object]]]:
    """SHOW STATS' totals under PgBouncer's SHOW STATS_TOTALS names (what
    prometheus-community/pgbouncer_exporter reads)."""
    columns = ["database", "xact_count", "query_count", "bytes_received", "bytes_sent",
               "xact_time", "query_time", "wait_time"]  # fmt: skip
    return columns, [[db, *row] for db, row in _totals(amb)]


def _lists(amb: ConsoleHub) -> tuple[list[str], list[list[object]]]:
    """PgBouncer's SHOW LISTS: one (list, items) row per internal list podkit has too. Its
    object caches (free_*) and DNS cache have no counterpart here (names are resolved for
    every new server connection): no rows."""
    pools = amb.pools.values()
    clients = [c for c in amb.clients if not c.closed]
    logged_in = sum(1 for c in clients if c.state == READY)
    items = {
        "databases": len({p.database for p in pools}),
        "users": len({p.user for p in pools}),
        "pools": len(pools),
        "used_clients": logged_in,
        "login_clients": len(clients) - logged_in,
        "used_servers": sum(p.total() for p in pools),
    }
    return ["list", "items"], [[name, value] for name, value in items.items()]


_CONN_COLUMNS = ["type", "user", "database", "state", "addr", "port", "connect_time",
                 "request_time", "wait", "wait_us", "ptr", "link", "remote_pid", "tls",
                 "application_name", "prepared_statements", "pinned"]  # fmt: skip


def _wall(monotonic: float) -> str | None:
    """A time.monotonic() instant as PgBouncer shows times; None (NULL) for "never"."""
    return _ts(monotonic + time.time() - time.monotonic()) if monotonic else None


def _clients(amb: ConsoleHub) -> tuple[list[str], list[list[object]]]:
    rows: list[list[object]] = []
    now = time.monotonic()
    for client in amb.clients:
        if client.closed or (client.pool is None and not client.console):
            continue
        host, _, port = client.addr.rpartition(":")
        state = "active" if client.holding else (
            "waiting" if client.waiting else "idle")  # fmt: skip
        wait = now - client.wait_started if client.waiting else 0.0
        rows.append([
            "C", client.user, client.database, state, host, port, _ts(client.connected_at),
            _wall(client.request_time), int(wait), int((wait % 1) * 1e6), f"{id(client):x}",
            f"{id(client.server):x}" if client.holding else "", client.process_id,
            client.tls_info,
            client.params.get("application_name", ""), len(client.stmts), client.pinned or "",
        ])  # fmt: skip
    return _CONN_COLUMNS, rows


def _servers(amb: ConsoleHub) -> tuple[list[str], list[list[object]]]:
    rows: list[list[object]] = []
    for pool in amb.pools.values():
        for state, servers in (("active", list(pool.active)), ("idle", pool.idle_servers())):
            for server in servers:
                client = server.client
                # wait: servers never wait in a queue, as in PgBouncer
                rows.append([
                    "S", pool.server_user, pool.server_database, state, server.addr[0],
                    server.addr[1], _wall(server.created), _wall(server.request_time),
                    0, 0, f"{id(server):x}", f"{id(client):x}" if client else "",
                    server.process_id, server.tls_info,
                    server.params.get("application_name", ""), len(server.prepared),
                    client.pinned if client is not None and client.pinned else "",
                ])  # fmt: skip
    return _CONN_COLUMNS, rows


def _databases(amb: ConsoleHub) -> tuple[list[str], list[list[object]]]:
    columns = ["name", "host", "port", "database", "force_user", "pool_size", "min_pool_size",
               "reserve_pool", "pool_mode", "max_connections", "current_connections",
               "paused", "disabled"]  # fmt: skip
    rows: list[list[object]] = []
    for pool in amb.pools.values():
        t = pool.target
        rows.append([
            pool.database, t.host, t.port, pool.server_database,
            amb.settings.server_user or "", t.pool_size, t.min_pool_size, t.reserve_pool_size,
            t.pool_mode, 0, pool.total(), int(pool.paused), 0,
        ])  # fmt: skip
    return columns, rows


def _config(amb: ConsoleHub) -> tuple[list[str], list[list[object]]]:
    rows: list[list[object]] = []
    for name, value in amb.settings.model_dump().items():
        if name.endswith("_file") or "password" in name:
            value = "(set)" if value else ""
        rows.append([name, value, "no"])
    return ["key", "value", "changeable"], rows


def _version(amb: ConsoleHub) -> tuple[list[str], list[list[object]]]:
    return ["version"], [[VERSION]]


_SHOW = {
    "POOLS": _pools,
    "STATS": _stats,
    "STATS_TOTALS": _stats_totals,
    "LISTS": _lists,
    "CLIENTS": _clients,
    "SERVERS": _servers,
    "DATABASES": _databases,
    "CONFIG": _config,
    "VERSION": _version,
}
