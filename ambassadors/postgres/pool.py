"""Pools of server connections, one per (database, user), and the clients waiting for them.

A free server goes straight to the first waiting client (no task, no await); new server
connections are opened only for waiting clients, up to `--pool-size` (plus
`--reserve-pool-size` once a client waited `--reserve-pool-timeout`). When nobody waits,
a transaction's end parks its server instead of releasing it: idle for the pool, but its
client takes it back at its next message without the release, the attach and the
settings check, unless someone needed it meanwhile. A periodic check enforces the
timeouts: query_wait_timeout, query_timeout, idle_transaction_timeout,
client_idle_timeout, server_idle_timeout, server_lifetime, and tops up min_pool_size.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict, deque
from typing import TYPE_CHECKING, Any, Protocol

from podkit.ambassadors.postgres import protocol as pq
from podkit.ambassadors.postgres import session
from podkit.ambassadors.postgres.context import Context, Stats
from podkit.ambassadors.postgres.notify import Notifier
from podkit.ambassadors.postgres.server import (
    OWE_READY,
    ServedClient,
    ServerConn,
    ServerLoginError,
    login,
)
from podkit.backoff import Backoff

if TYPE_CHECKING:
    from podkit.ambassadors.postgres.routing import PoolTarget
    from podkit.ambassadors.postgres.settings import PgAmbassadorSettings


class PoolClient(ServedClient, Protocol):
    """What a pool needs of its clients (client.PoolClient)."""

    wait_started: float
    last_activity: float
    unsettled: bool  # session state to ask the server about (ClientBase.track)

    @property
    def holding(self) -> bool: ...

    def attach(self, server: ServerConn) -> None: ...
    def fatal(self, sqlstate: str, text: str) -> None: ...


# GUCs a client may set that the server reports in ParameterStatus: tracked, and set again
# on whichever server the client gets next (lower case).
REPLAYED = frozenset(
    {
        "client_encoding",
        "datestyle",
        "intervalstyle",
        "timezone",
        "application_name",
        "standard_conforming_strings",
        "search_path",
        "default_transaction_read_only",
    }
)


KNOWN_STATEMENTS = 10000
# Parse texts whose classification is remembered: at most this many, of at most this size
MAX_REMEMBERED_PARSES = 1000
MAX_REMEMBERED_TEXT = 2048
MAX_LEARNED_SETTINGS = 1000
MAX_WELCOMES = 100


def quote_literal(value: str) -> str:
    """A string literal for `value`, whatever standard_conforming_strings says."""
    if "\\" in value:
        return "E'" + value.replace("\\", "\\\\").replace("'", "''") + "'"
    return "'" + value.replace("'", "''") + "'"


class Pool:
    def __init__(self, ctx: Context, database: str, user: str, target: PoolTarget) -> None:
        self.ctx = ctx
        self.settings: PgAmbassadorSettings = ctx.settings
        self.stats: Stats = ctx.stats
        self.log = ctx.log
        self.database = database
        self.user = user
        # where it connects and how it pools (routing.target_for: --databases, --users)
        self.target = target
        self.server_user = target.user
        self.server_database = target.dbname
        self.idle: list[ServerConn] = []
        # Idle servers kept by their last client (park), oldest first: given to another
        # client only when no plain idle one is left, and counted as idle everywhere.
        self.parked: dict[ServerConn, None] = {}
        self.active: set[ServerConn] = set()
        self.connecting = 0
        self.waiters: deque[PoolClient] = deque()
        self.clients: set[PoolClient] = set()
        self.params: dict[str, str] | None = None
        self.reported: frozenset[str] = frozenset()
        # of those, the ones replayed (REPLAYED): a SET of any other GUC is read back
        self.tracked: frozenset[str] = frozenset()
        # lower-cased name -> the name as the server reports it (logins look up by lower)
        self.param_names: dict[str, str] = {}
        # a login's ParameterStatus messages, by its settings: clients of one application
        # log in alike, so each login sends bytes built once
        self.welcomes: dict[tuple[tuple[str, str], ...], bytes] = {}
        self.params_future: asyncio.Future[dict[str, str]] | None = None
        # (setting, value as a client gave it) -> the value as the server reports it
        self.normalized: dict[tuple[str, str], str] = {}
        self.paused = False
        self.backoff = Backoff(0.25, 5.0)
        self.next_connect = 0.0
        self.last_error = ""
        self.tasks: set[asyncio.Task[None]] = set()
        self.retired_addrs: set[tuple[str, int]] = set()
        self.retire_before = 0.0  # server connections made before this are closed on release
        # statements (Parse bodies) some server of this pool parsed without error
        self.known: OrderedDict[bytes, None] = OrderedDict()
        # statement text -> times its result type changed (PostgreSQL said "cached plan
        # must not change result type"); a client's name prepared before the last change
        # is refused as PostgreSQL would refuse it
        self.changed: dict[bytes, int] = {}
        # statement -> its row type (protocol.row_type) as clients were last described it
        self.row_types: dict[bytes, bytes] = {}
        # (statement, its change count then) -> the row type it had until that change: a
        # name prepared then is valid again once the table is back to that shape
        self.past_row_types: dict[tuple[bytes, int], bytes] = {}
        # Parse body -> what it means for pooling (session.classify): drivers Parse the
        # same few texts again and again (the unnamed statement on every execution)
        self.parse_events: dict[bytes, list[session.SessionEvent]] = {}
        # SCRAM keys of an application that logged in: lets the pool log in to PostgreSQL
        # as that user without a password of its own (same verifier on both sides)
        self.scram_keys: Any = None
        self.good_addrs: set[tuple[str, int]] = set()
        # SHOW STATS, per pool (summed per database there); times in seconds
        self.xacts = 0
        self.queries = 0
        self.bytes_received = 0
        self.bytes_sent = 0
        self.xact_time = 0.0
        self.query_time = 0.0
        self.wait_time = 0.0
        # LISTEN/NOTIFY in transaction mode: its listener connection and channels
        self.notifier = Notifier(self)

    def statements_changed(self, keys: set[bytes]) -> None:
        """The result type of these statements changed (a schema change): every server
        forgets them (each Closed later), new Parses make fresh ones."""
        changed = self.changed
        past = self.past_row_types
        if len(changed) >= KNOWN_STATEMENTS or len(past) >= KNOWN_STATEMENTS:
            changed.clear()  # forgetting only loses the refusal of a stale name
            past.clear()
        for key in keys:
            count = changed.get(key, 0)
            changed[key] = count + 1
            self.known.pop(key, None)
            row_type = self.row_types.pop(key, None)
            if row_type is not None:
                past[(key, count)] = row_type
        for server in (*self.idle_servers(), *self.active):
            server.drop_statements(keys)

    def drop_inferred_statements(self) -> None:
        """A schema change committed: no server hands out a statement whose parameter
        types PostgreSQL inferred before it (ClientConn._transaction_over)."""
        known = self.known
        for key in [key for key in known if pq.infers_param_types(key)]:
            del known[key]
        for server in (*self.idle_servers(), *self.active):
            server.drop_inferred_statements()

    def shape_back(self, key: bytes, count: int) -> bool:
        """Statement `key` has the row type again that it had at change count `count`
        (a table changed back to an earlier shape; PostgreSQL plans a statement prepared
        then afresh and finds its result type unchanged)."""
        row_type = self.past_row_types.get((key, count))
        return row_type is not None and row_type == self.row_types.get(key)

    def check_row_type(
        self, key: bytes, row_type: bytes, client: ServedClient | None, name: bytes
    ) -> None:
        """A Describe of statement `key` answered `row_type`. If clients were described
        another one, a schema change altered its result type since (a server parsed it
        afresh): as if PostgreSQL had said so (statements_changed); `client`, which was
        just told the new one, keeps its `name` valid."""
        row_types = self.row_types
        known = row_types.get(key)
        if known is not None and known != row_type:
            self.statements_changed({key})
            if client is not None:
                client.stmt_gen[name] = self.changed[key]
        elif known is None and len(row_types) >= KNOWN_STATEMENTS:
            row_types.clear()  # forgetting only loses the check of those statements
        row_types[key] = row_type

    def classify_parse(self, key: bytes) -> list[session.SessionEvent]:
        """session.classify of a Parse body's query text, remembered for short texts."""
        events = self.parse_events.get(key)
        if events is not None:
            return events
        events = session.classify(key[: key.find(b"\x00")], self.tracked)
        if len(key) <= MAX_REMEMBERED_TEXT:
            if len(self.parse_events) >= MAX_REMEMBERED_PARSES:
                self.parse_events.clear()  # forgetting only costs classifying again
            self.parse_events[key] = events
        return events

    def welcome(self, params: dict[str, str]) -> bytes:
        """The ParameterStatus messages that tell a client `params` at login."""
        key = tuple(params.items())
        block = self.welcomes.get(key)
        if block is None:
            block = pq.parameter_statuses(params)
            if len(self.welcomes) >= MAX_WELCOMES:
                self.welcomes.clear()  # forgetting only costs building them again
            self.welcomes[key] = block
        return block

    def learn_setting(self, name: str, value: str, server_value: str) -> None:
        """A login setting the server accepted (as server_value): later logins asking for
        it need no replay. Bounded: unique values (an application_name per process) must
        not grow it forever; forgetting only costs a replay."""
        if len(self.normalized) >= MAX_LEARNED_SETTINGS:
            self.normalized.clear()
        self.normalized[(name, value)] = server_value

    @property
    def label(self) -> str:
        return f"{self.database}/{self.user}"

    def parsed(self, key: bytes) -> None:
        known = self.known
        known[key] = None
        if len(known) > KNOWN_STATEMENTS:
            known.popitem(last=False)

    def total(self) -> int:
        return len(self.idle) + len(self.parked) + len(self.active) + self.connecting

    def idle_count(self) -> int:
        return len(self.idle) + len(self.parked)

    def idle_servers(self) -> list[ServerConn]:
        """The idle servers, parked ones first (the oldest parked first)."""
        return [*self.parked, *self.idle]

    # --- login parameters --------------------------------------------------------------------

    async def login_params(self) -> dict[str, str]:
        """The server's ParameterStatus set (from the first server connection)."""
        if self.params is not None:
            return self.params
        if self.params_future is None or self.params_future.done():
            self.params_future = asyncio.get_running_loop().create_future()
            # A client is logging in: try now, backoff or not (it waits for this answer).
            self._start_connect(force=True)
        return await asyncio.shield(self.params_future)

    # --- giving out servers --------------------------------------------------------------------

    def request(self, client: PoolClient) -> None:
        """`client` needs a server: attach one now, or queue it."""
        if not self.paused:
            idle = self.idle
            while idle:
                server = idle.pop()
                if not server.closed:
                    self.attach(client, server, 0.0)
                    return
            parked = self._take_parked()
            if parked is not None:
                self.attach(client, parked, 0.0)
                return
        client.wait_started = time.monotonic()
        self.waiters.append(client)
        self.maybe_connect()

    def attach(self, client: PoolClient, server: ServerConn, waited: float) -> None:
        self.active.add(server)
        server.client = client
        server.attached_at = time.monotonic()
        stats = self.stats
        if waited:
            stats.waited(waited)
            self.wait_time += waited
        else:  # the common case, without the bisect
            stats.wait_buckets[0] += 1
            stats.waits += 1
        client.attach(server)

    def release(self, server: ServerConn) -> None:
        """The client is done with `server` (ReadyForQuery idle, nothing owed)."""
        if server.cancelling and not server.closed:
            server.client = None
            server.release_deferred = True  # server.cancel() releases it once delivered
            return
        self.active.discard(server)
        server.client = None
        if server.closed:
            self.maybe_connect()
            return
        now = time.monotonic()
        self._detached(server, now)
        if server.dirty or server.status != b"I":
            self._reset(server)
            return
        if not self._reusable(server, now):
            server.close()
            self.maybe_connect()
            return
        self._give(server)

    def _detached(self, server: ServerConn, now: float) -> None:
        """`server` was just let go by its client: its idle time starts, its transaction's
        time is counted, and it is read again if its client had stalled it."""
        server.last_used = now
        if server.attached_at:  # (not again after a reset)
            self.xact_time += now - server.attached_at
            server.attached_at = 0.0
        if server.read_paused:
            server.read_paused = False
            server.transport.resume_reading()

    def _reusable(self, server: ServerConn, now: float) -> bool:
        lifetime = self.target.server_lifetime
        return not (
            (lifetime and now - server.created > lifetime)
            or (self.retired_addrs and server.addr in self.retired_addrs)
            or server.created < self.retire_before
            or self.ctx.closing
        )

    # --- parked servers ------------------------------------------------------------------------

    def park(self, server: ServerConn, client: PoolClient, now: float) -> bool:
        """`client` ended a transaction on `server` and nobody waits: keep the server idle
        with `client`, which takes it back (`unpark`) at its next message if nobody needed
        it meanwhile. False: the server must be released instead."""
        if (
            self.waiters
            or self.paused
            or server.cancelling
            or server.dirty
            or not self._reusable(server, now)
        ):
            return False
        self.active.discard(server)
        server.client = None
        server.parked_by = client
        self._detached(server, now)
        self.parked[server] = None
        return True

    def unpark(self, server: ServerConn, client: PoolClient) -> None:
        """`client` is back for the server it parked (server.parked_by is client)."""
        del self.parked[server]
        server.parked_by = None
        server.client = client
        self.active.add(server)
        server.attached_at = client.last_activity  # its message's arrival

    def _take_parked(self) -> ServerConn | None:
        """The server parked longest, taken from its client (which gets a server from the
        pool at its next message, as after a release)."""
        for server in list(self.parked):
            self._drop_parked(server)
            if not server.closed:
                return server
        return None

    def _drop_parked(self, server: ServerConn) -> None:
        del self.parked[server]
        server.parked_by = None

    def left_parked(self, server: ServerConn) -> None:
        """The client that parked `server` disconnected: a plain idle server now."""
        self._drop_parked(server)
        self._give(server)

    def pause(self) -> None:
        """PAUSE: no server is given out (parked ones are taken back from their clients)."""
        self.paused = True
        while (server := self._take_parked()) is not None:
            self.idle.append(server)

    def resume(self) -> None:
        """RESUME: the idle servers go to the clients that waited meanwhile."""
        self.paused = False
        while self.waiters and self.idle:
            client = self.waiters.popleft()
            if not client.closed:
                self.attach(client, self.idle.pop(), time.monotonic() - client.wait_started)
        self.maybe_connect()

    def _give(self, server: ServerConn) -> None:
        if not self.paused:
            waiters = self.waiters
            while waiters:
                client = waiters.popleft()
                if client.closed:
                    continue
                self.attach(client, server, time.monotonic() - client.wait_started)
                return
        self.idle.append(server)

    def _reset(self, server: ServerConn) -> None:
        """Roll back an open transaction and run the reset query if needed, then reuse."""
        self.active.add(server)
        server.client = None

        def after(ok: bool, status: bytes, error: str) -> None:
            if server.closed:
                return
            self.active.discard(server)
            if not ok or status != b"I":
                self.log.warning("server_reset_failed", pool=self.label, error=error)
                server.close()
                self.maybe_connect()
                return
            self.release(server)

        if server.status != b"I":
            server.run_internal("ROLLBACK", after)
        else:
            server.dirty = False
            server.synced = None
            server.settings_key = None
            server.forget_prepared()
            server.extra.clear()
            server.run_internal(self.settings.server_reset_query, after)

    def orphan(self, server: ServerConn, client: PoolClient) -> None:
        """`client` left while holding `server`: finish what is in flight, roll back, reuse."""
        if server.closed:
            self.active.discard(server)
            return
        sink = Orphan(self, server)
        server.client = sink
        transport = server.transport
        if server.read_paused:
            server.read_paused = False
            transport.resume_reading()
        if client.pinned or client.unsettled or self.target.pool_mode == "session":
            server.dirty = True
        if server.copy_in:
            transport.write(pq.message(b"f", b"client disconnected\x00"))
            server.copy_in = False
        if client.unsynced:
            transport.write(pq.SYNC)
            server.expect.append(OWE_READY)
        if server.expect:
            if server.query_started:
                server.cancel()
            return  # Orphan.server_done continues once the server owes nothing
        sink.server_done(server)

    def server_lost(self, server: ServerConn) -> None:
        self.active.discard(server)
        if server.parked_by is not None:
            self._drop_parked(server)
        with contextlib.suppress(ValueError):
            self.idle.remove(server)
        if self.waiters:
            self.maybe_connect()

    # --- opening server connections ----------------------------------------------------------

    def maybe_connect(self) -> None:
        if self.ctx.closing or not self.waiters or self.paused:
            return
        limit = self.target.pool_size
        oldest = next((c for c in self.waiters if not c.closed), None)
        if (
            self.target.reserve_pool_size
            and oldest is not None
            and time.monotonic() - oldest.wait_started > self.settings.reserve_pool_timeout
        ):
            limit += self.target.reserve_pool_size
        need = len(self.waiters) - self.connecting
        while need > 0 and self.total() < limit:
            if not self._start_connect():
                break
            need -= 1

    def _start_connect(self, force: bool = False) -> bool:
        now = time.monotonic()
        if now < self.next_connect and not force:
            return False
        self.connecting += 1
        task = asyncio.get_running_loop().create_task(self._connect())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return True

    async def _login(self) -> ServerConn:
        """Resolve the server host again (retiring addresses it lost), then log in."""
        target = self.target
        addrs = await self.ctx.resolve(target.host, target.port)
        self.resolved(addrs)
        return await login(
            self,
            host=target.host,
            port=target.port,
            addrs=addrs,
            user=self.server_user,
            database=self.server_database,
            password=self._server_password(),
            tls=self.ctx.server_tls,
            scram_keys=self.scram_keys,
        )

    def _server_password(self) -> str | None:
        """The database entry's password, else --password-file, else (as PgBouncer) the
        server user's own auth_file entry when it is a plain password."""
        if self.target.password is not None:
            return self.target.password
        if self.ctx.server_password is not None:
            return self.ctx.server_password
        stored = self.ctx.lookup(self.server_user)
        if stored is None or stored.startswith(("md5", "SCRAM-SHA-256$")):
            return None  # a hash: the client's SCRAM keys may still log in (scram_keys)
        return stored

    async def _connect_query(self, server: ServerConn) -> None:
        """The database's connect_query, once per new server connection; as PgBouncer, an
        error is logged and the connection used anyway."""
        done: asyncio.Future[tuple[bool, str]] = asyncio.get_running_loop().create_future()

        def after(ok: bool, status: bytes, error: str) -> None:
            if not done.done():
                done.set_result((ok, error))

        server.run_internal(self.target.connect_query, after)
        ok, error = await done
        if not ok:
            self.ctx.warn("connect_query_failed", pool=self.label, error=error)

    async def _connect(self) -> None:
        settings = self.settings
        started = time.monotonic()
        try:
            server = await asyncio.wait_for(self._login(), settings.server_connect_timeout)
            if self.target.connect_query:
                try:
                    await asyncio.wait_for(
                        self._connect_query(server), settings.server_connect_timeout
                    )
                except BaseException:
                    server.close()
                    raise
        except Exception as exc:  # OSError, timeout, login refused, bad server bytes
            self.connecting -= 1
            self._connect_failed(exc)
            return
        except asyncio.CancelledError:
            self.connecting -= 1
            raise
        self.connecting -= 1
        self.stats.server_connects += 1
        self.backoff.reset()
        self.next_connect = 0.0
        self.good_addrs.add(server.addr)
        if self.params is None:
            self.params = dict(server.params)
            self.reported = frozenset(k.lower() for k in server.params)
            self.tracked = self.reported & REPLAYED
            self.param_names = {k.lower(): k for k in server.params}
        if self.params_future is not None and not self.params_future.done():
            self.params_future.set_result(self.params)
        # Made from when the connect began: a retirement meanwhile (a client's DROP
        # DATABASE) covers it, whenever its TCP connection completed.
        server.created = started
        if not self._reusable(server, time.monotonic()):
            # retired while it connected or logged in: its database is being dropped, its
            # address no longer resolves, or the ambassador is closing
            server.close()
            self.maybe_connect()
            return
        self._give(server)

    def _connect_failed(self, exc: BaseException) -> None:
        self.stats.server_connect_errors += 1
        if isinstance(exc, ServerLoginError):
            message, sqlstate = str(exc), exc.sqlstate
        elif isinstance(exc, TimeoutError):
            message, sqlstate = "timeout connecting to PostgreSQL", "08006"
        else:
            message, sqlstate = f"cannot connect to PostgreSQL: {exc}", "08006"
        self.last_error = message
        self.ctx.warn("server_connect_failed", pool=self.label, error=message)
        self.next_connect = time.monotonic() + self.backoff.next()
        text = f"pg-ambassador: {message}"
        if self.params_future is not None and not self.params_future.done():
            self.params_future.set_exception(ServerLoginError(text, sqlstate))
            self.params_future.exception()  # retrieved: login waiters read it themselves
        if not self.active and not self.connecting:
            # Nobody will free a server soon: tell the waiting clients now, not at timeout.
            while self.waiters:
                client = self.waiters.popleft()
                if not client.closed:
                    client.fatal(sqlstate, text)

    # --- periodic checks ---------------------------------------------------------------------

    def check(self, now: float) -> None:
        settings = self.settings
        wait_timeout = settings.query_wait_timeout
        if wait_timeout and self.waiters:
            while self.waiters and (
                self.waiters[0].closed or now - self.waiters[0].wait_started > wait_timeout
            ):
                client = self.waiters.popleft()
                if not client.closed:
                    self.stats.query_wait_timeouts += 1
                    client.fatal(
                        "08P01",
                        "pg-ambassador: query_wait_timeout: no server connection became free "
                        f"within {wait_timeout:g}s (pool {self.label}, --pool-size "
                        f"{self.target.pool_size})",
                    )
        if self.waiters:
            self.maybe_connect()
        idle_timeout = settings.server_idle_timeout
        lifetime = self.target.server_lifetime
        keep = self.target.min_pool_size
        for server in self.idle_servers():
            expired = (idle_timeout and now - server.last_used > idle_timeout) or (
                lifetime and now - server.created > lifetime
            )
            if expired and self.total() > keep:
                self._remove_idle(server)
                server.close()
        if keep and not self.ctx.closing and self.total() < keep and now >= self.next_connect:
            for _ in range(keep - self.total()):
                self.connecting += 1
                task = asyncio.get_running_loop().create_task(self._connect())
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
        query_timeout = self.target.query_timeout
        idle_txn = self.target.idle_transaction_timeout
        for server in list(self.active):
            client = server.client  # type: ignore[assignment]
            if client is None or isinstance(client, Orphan):
                continue
            if (
                query_timeout
                and server.query_started
                and not server.cancel_sent
                and now - server.query_started > query_timeout
            ):
                server.cancel_sent = True
                self.stats.cancels_forwarded += 1
                server.cancel()
            if (
                idle_txn
                and not server.expect
                and server.status in (b"T", b"E")
                and now - client.last_activity > idle_txn
            ):
                client.fatal("25P03", "pg-ambassador: idle transaction timeout")

    async def check_addresses(self) -> None:
        """Resolve the server host (for pools opening no connection, which would)."""
        try:
            addrs = await self.ctx.resolve(self.target.host, self.target.port)
        except OSError:
            return
        self.resolved(addrs)

    def resolved(self, addrs: list[tuple[str, int]]) -> None:
        """The server host resolves to `addrs` now: retire connections to any other address
        (idle ones at once, the others when their client releases them)."""
        now_addrs = set(addrs)
        gone = self.good_addrs - now_addrs
        if gone:
            self.retired_addrs |= gone
            for server in self.idle_servers():
                if server.addr in gone:
                    self._remove_idle(server)
                    server.close()
            self.log.info(
                "server_addresses_retired",
                pool=self.label,
                retired=sorted(f"{host}:{port}" for host, port in gone),
                now=sorted(f"{host}:{port}" for host, port in now_addrs),
            )
        self.good_addrs &= now_addrs
        self.retired_addrs -= now_addrs

    def close_idle_and_retire(self) -> int:
        """Close the idle server connections now and the busy ones when released (a
        client needs their database to itself); new ones are opened as needed."""
        self.retire_before = time.monotonic()
        idle = self.idle_servers()
        for server in idle:
            self._remove_idle(server)
            server.close()
        return len(idle)

    def _remove_idle(self, server: ServerConn) -> None:
        """Take an idle or parked server out of the pool (to close it)."""
        if server.parked_by is not None:
            self._drop_parked(server)
        else:
            self.idle.remove(server)

    def close_all(self) -> None:
        self.notifier.close()
        for server in self.idle_servers():
            self._remove_idle(server)
            server.close()
        for task in list(self.tasks):
            task.cancel()


class Orphan:
    """Stands in for a client that left while holding a server: swallows the answers."""

    closed = True
    unsynced = False
    pinned: str | None = None
    unsettled = False
    params_version = 0
    stmt_gen: dict[bytes, int] = {}

    def __init__(self, pool: Pool, server: ServerConn) -> None:
        self.pool = pool
        self.server = server
        self.params: dict[str, str] = {}
        self.transport: Any = _NullTransport()
        self.last_activity = time.monotonic()

    def server_done(self, server: ServerConn) -> None:
        self.pool.release(server)  # ROLLBACK and reset there if needed

    def server_lost(self, server: ServerConn) -> None:
        self.pool.active.discard(server)

    def resume(self) -> None:
        pass

    def pause(self) -> None:
        pass

    def forget_statement(self, name: bytes) -> None:
        pass

    def restore_statement(self, name: bytes, key: bytes | None) -> None:
        pass

    def retry(self, messages: list[tuple[int, bytes]], name: bytes) -> None:
        pass

    def resume_held(self, check: bool = True) -> None:
        pass


class _NullTransport:
    def write(self, data: bytes) -> None:
        pass

    def writelines(self, data: Any) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass
