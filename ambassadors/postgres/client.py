"""One application connection: startup, login, then messages to whichever server it holds.

In transaction mode the client holds a server from its first message until the server
says ReadyForQuery idle with nothing owed (see server.py); then the server goes back to
its pool, or, when nobody waits for one, is parked there: idle, but the client takes it
back at its next message if nobody needed it meanwhile (`self.server` stays set; the
client holds it only while `server.client is self`). Messages that arrive while the
client holds none wait (reading paused) until the pool attaches one. Named prepared
statements live in the client's own namespace (`stmts`, name -> Parse body) and are
renamed to the server's names on the way out.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import struct
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from podkit.ambassadors.postgres import protocol as pq
from podkit.ambassadors.postgres import session
from podkit.ambassadors.postgres.auth import AuthError, ClientAuth
from podkit.ambassadors.postgres.pool import REPLAYED, Pool, quote_ident, quote_literal
from podkit.ambassadors.postgres.server import (
    C_FWD,
    DESCRIBE,
    EMPTY_PARSE,
    FAIL,
    FAIL_BIND,
    NOOP_CLOSE,
    P_FWD,
    P_SWALLOW,
    RETRY,
    SYNC,
    ServerConn,
    ServerLoginError,
)
from podkit.ambassadors.postgres.tls import describe as tls_describe

if TYPE_CHECKING:
    from podkit.ambassadors.postgres.main import Ambassador

_pack_u32 = struct.Struct("!I").pack
ADMIN_SHUTDOWN = "terminating connection due to administrator command"
# A new client while draining: PostgreSQL answers 57P03 while it shuts down, and PQping
# (pg_isready) reads that code as "rejecting connections".
SHUTTING_DOWN = ("57P03", "pg-ambassador is shutting down")
TOO_MANY_CLIENTS = ("53300", "pg-ambassador: no more connections allowed (max_client_conn)")
# PostgreSQL's error for a statement whose result type changed; drivers (asyncpg) know it
# by its code and the function that raised it, not by its (localised) text.
CACHED_PLAN_ERROR = pq.error_response(
    "cached plan must not change result type", "0A000", routine="RevalidateCachedQuery"
)

STARTUP, HANDSHAKE, AUTH, LOGIN, READY, CLOSED = range(6)


class ClientConn(asyncio.Protocol):
    def __init__(self, amb: Ambassador) -> None:
        self.amb = amb
        self.settings = amb.settings
        self.stats = amb.stats
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.state = STARTUP
        self.startup_buf = bytearray()
        self.framer = pq.Framer(amb.settings.max_packet_size)
        self.pool: Pool | None = None
        self.server: ServerConn | None = None
        self.pending: list[tuple[int, bytes]] = []
        self.waiting = False
        self.wait_started = 0.0
        self.unsynced = False
        self.stmts: dict[bytes, bytes] = {}
        # name -> generation of its text's result type when prepared (see Pool.changed)
        self.stmt_gen: dict[bytes, int] = {}
        self.unnamed: bytes | None = None
        # names whose Parse was answered from a statement some server already had (it
        # may have gone stale), not used since; and the one whose first use is being sent
        self.fresh: set[bytes] = set()
        self.first_use: bytes | None = None
        # the rest of a batch held while the pooler checks a statement's row type
        self.held: list[tuple[int, bytes]] | None = None
        self.unchecked = False  # sending a held batch whose check failed: no new check
        self.params: dict[str, str] = {}
        self.wanted: dict[str, str] = {}  # settings from the startup packet
        self.extra: dict[str, str] = {}  # of those, the ones the server does not report
        self.pinned: str | None = None
        # Session mode: the client keeps its server, so its statements, names and session
        # state are its own there, as on a direct connection; nothing is renamed or pinned.
        self.passthrough = amb.settings.pool_mode == "session"
        self.process_id = 0
        self.secret_key = 0
        self.close_at_boundary = False
        self.closed = False
        self.console = False
        self.console_read_only = False  # a stats_users user: SHOW only
        self.user = ""
        self.database = ""
        self.addr = ""
        self.connected_at = time.time()
        self.last_activity = time.monotonic()
        self.request_time = self.last_activity
        self.login_timer: asyncio.TimerHandle | None = None
        self.read_paused = False
        self.params_version = 0  # bumped whenever params change
        self.replay_items: list[tuple[str, str]] = []
        self.replay_version = -1
        self.replay_key: tuple[object, ...] = ()
        self.login_task: asyncio.Task[None] | None = None
        self.tls = False
        self.tls_info = ""  # protocol/cipher, for SHOW CLIENTS
        self.authenticator: ClientAuth = None  # type: ignore[assignment]

    # --- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        amb = self.amb
        self.stats.clients_total += 1
        peer = transport.get_extra_info("peername")
        self.addr = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer or "")
        amb.listener.add(self)
        # Refusals are answered after the startup packet (and SSLRequest), as PostgreSQL does,
        # so that drivers read them as what they are.
        if amb.draining:
            self.refuse(SHUTTING_DOWN, "draining")
        elif len(amb.clients) > self.settings.max_client_conn:
            amb.warn("client_refused", reason="max_client_conn", addr=self.addr)
            self.refuse(TOO_MANY_CLIENTS, "max_client_conn")
        self.login_timer = amb.loop.call_later(
            self.settings.client_login_timeout, self._login_timeout
        )

    def data_received(self, data: bytes) -> None:
        if self.state == READY:
            pool = self.pool
            if pool is not None:
                pool.bytes_received += len(data)
            else:  # the admin console
                self.stats.bytes_from_client += len(data)
            # request_time: when the client's latest request arrived (PgBouncer's)
            self.last_activity = self.request_time = time.monotonic()
            try:
                messages = self.framer.feed(data)
            except pq.ProtocolError as exc:
                self.protocol_error(exc)
                return
            if not messages:
                return
            server = self.server
            if server is not None and server.client is self:
                self.process(messages)
            elif messages[0][0] == 88 and not self.waiting:
                # Terminate needs no server: one parked with us stays parked until
                # connection_lost hands it back (taking it back would cost an orphan's
                # round of checks for nothing)
                self.transport.close()
            elif server is not None and self._take_back(server):
                self.process(messages)
            elif self.console:
                self.amb.console.handle(self, messages)
            elif self.waiting or messages[0][0] == 81 or not self.answer_locally(messages):
                self.pending.extend(messages)
                if not self.waiting:
                    self.need_server()
            return
        if self.state == STARTUP:
            self._startup_data(data)
        elif self.state == AUTH:
            self._auth_data(data)
        elif self.state == LOGIN:
            # Bytes before ReadyForQuery (pipelined queries, or auth answers): keep them.
            self.startup_buf += data
            if len(self.startup_buf) > self.settings.max_packet_size:
                self.protocol_error(pq.ProtocolError("too much data during login"))

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.state = CLOSED
        amb = self.amb
        amb.listener.discard(self)
        amb.forget_cancel_key(self)
        if self.login_timer is not None:
            self.login_timer.cancel()
        if self.login_task is not None and not self.login_task.done():
            self.login_task.cancel()
        pool = self.pool
        if pool is not None:
            pool.clients.discard(self)
            if self.pinned:
                amb.pinned[self.pinned] -= 1
        server = self.server
        if server is not None and pool is not None:
            self.server = None
            if server.client is not self:  # parked, or taken by another client since
                if server.parked_by is self:
                    pool.left_parked(server)
                return
            if self.stmts and (server.status != b"I" or server.expect):
                # Its transaction is rolled back: what it prepared may name objects that
                # never existed for anyone else (a type created in it, say).
                self.invalidate_statements()
            pool.orphan(server, self)

    # Reading is paused only when needed (each pause/resume is a system call): while the
    # client waits for a server, and while its server cannot take more.
    def pause_writing(self) -> None:
        server = self.server
        if server is not None and server.client is self and not server.read_paused:
            server.read_paused = True
            server.transport.pause_reading()

    def resume_writing(self) -> None:
        server = self.server
        if server is not None and server.client is self and server.read_paused:
            server.read_paused = False
            server.transport.resume_reading()

    def pause(self) -> None:
        if not self.read_paused and not self.closed:
            self.read_paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.read_paused and not self.waiting and not self.closed:
            self.read_paused = False
            self.transport.resume_reading()

    # --- startup and login ---------------------------------------------------------------------

    def _login_timeout(self) -> None:
        if self.state in (STARTUP, HANDSHAKE, AUTH, LOGIN):
            self.stats.refused("login_timeout")
            self.fatal("08P01", "pg-ambassador: client_login_timeout: login not finished in time")

    def _startup_data(self, data: bytes) -> None:
        buf = self.startup_buf
        buf += data
        while self.state == STARTUP:
            try:
                length = pq.startup_length(buf)
                if length is None or len(buf) < length:
                    return
                packet = bytes(buf[:length])
                del buf[:length]
                startup = pq.parse_startup(packet)
            except pq.ProtocolError as exc:
                self.protocol_error(exc)
                return
            if startup.kind in ("ssl", "gssenc"):
                if buf:
                    # Bytes after an SSLRequest before our answer: a man in the middle
                    # (CVE-2021-23214); PostgreSQL refuses them too.
                    self.protocol_error(pq.ProtocolError("unexpected data after SSLRequest"))
                    return
                context = self.amb.client_tls
                if startup.kind == "ssl" and context is not None and not self.tls:
                    self.transport.write(b"S")
                    self.state = HANDSHAKE
                    self.login_task = self.amb.loop.create_task(self._start_tls(context))
                    return
                self.transport.write(b"N")
                continue
            if startup.kind == "cancel":
                # Closed once PostgreSQL has taken the forwarded request, as PostgreSQL
                # does: libpq's PQcancel waits for that close, so that the query it
                # sends next cannot be the one a late cancel hits.
                self.state = CLOSED
                self.amb.cancel(startup.process_id, startup.secret_key, self.transport.close)
                return
            self._startup(startup)

    refusal: tuple[str, str] | None = None

    def refuse(self, error: tuple[str, str], reason: str) -> None:
        """Answer the startup packet with this FATAL error (sqlstate, text)."""
        if self.refusal is None:
            self.stats.refused(reason)
            self.refusal = error

    async def _start_tls(self, context: ssl.SSLContext) -> None:
        try:
            transport = await self.amb.loop.start_tls(
                self.transport, self, context, server_side=True
            )
        except (OSError, ssl.SSLError, ConnectionError) as exc:
            self.amb.warn("client_tls_failed", addr=self.addr, error=str(exc))
            self.transport.abort()
            return
        if transport is None:
            return
        self.transport = transport
        self.tls = True
        self.tls_info = tls_describe(transport)
        self.state = STARTUP

    def _startup(self, startup: pq.Startup) -> None:
        if self.refusal is not None:
            self.fatal(*self.refusal)
            return
        params = startup.params
        self.user = params["user"]
        self.database = params.get("database") or self.user
        self.state = LOGIN
        if startup.unsupported or startup.version != pq.PROTOCOL_V3:
            self.transport.write(pq.negotiate_protocol_version(0, startup.unsupported))
        if params.get("replication", "false").lower() not in ("false", "off", "no", "0"):
            self.fatal("08P01", "pg-ambassador: replication connections are not pooled")
            return
        for key, value in params.items():
            lower = key.lower()
            if lower in ("user", "database", "replication"):
                continue
            if lower == "options":
                for name, val in _parse_options(value).items():
                    self.wanted[name.lower()] = val
                continue
            self.wanted[lower] = value
        self.authenticator = ClientAuth(self.settings.client_auth, self.amb.lookup)
        try:
            reply = self.authenticator.start(self.user)
        except AuthError as exc:
            self._auth_failed(exc)
            return
        if self.authenticator.done:
            self._authenticated_after(reply)
        else:
            self.transport.write(reply)
            self.state = AUTH

    def _auth_data(self, data: bytes) -> None:
        try:
            messages = self.framer.feed(data)
        except pq.ProtocolError as exc:
            self.protocol_error(exc)
            return
        for i, (kind, msg) in enumerate(messages):
            if self.state != AUTH:
                # pipelined after the password: keep for after the welcome
                self.startup_buf += b"".join(m for _, m in messages[i:])
                return
            try:
                reply = self.authenticator.handle(kind, msg[5:])
            except AuthError as exc:
                self._auth_failed(exc)
                return
            if self.authenticator.done:
                self._authenticated_after(reply)
            else:
                self.transport.write(reply)

    def _auth_failed(self, exc: AuthError) -> None:
        self.stats.refused("auth_failed")
        self.amb.warn("client_auth_failed", user=self.user, addr=self.addr, error=str(exc))
        self.fatal(exc.sqlstate, exc.client_message or str(exc))

    # AuthenticationOk held back while the login goes on in the same call, so that the
    # welcome (or the error) goes out with it in one write: one system call and one
    # segment fewer per login, which connection-per-transaction clients pay each time.
    auth_reply = b""

    def _authenticated_after(self, reply: bytes) -> None:
        self.auth_reply = reply
        self._authenticated()
        if self.auth_reply:  # the login waits for a server: tell the client it is in
            self.transport.write(self.auth_reply)
            self.auth_reply = b""

    def _authenticated(self) -> None:
        self.state = LOGIN
        keys = self.authenticator.scram_keys
        if self.database == "pgbouncer":
            admins, readers = self.settings.admin_users, self.settings.stats_users
            if (admins or readers) and self.user not in admins and self.user not in readers:
                self.fatal("28000", f'pg-ambassador: user "{self.user}" may not use the console')
                return
            self.console = True
            self.console_read_only = self.user not in admins and self.user in readers
            self._welcome({"server_version": "16.0 (podkit pg-ambassador)",
                           "client_encoding": "UTF8", "server_encoding": "UTF8",
                           "DateStyle": "ISO, MDY", "standard_conforming_strings": "on",
                           "integer_datetimes": "on"})  # fmt: skip
            return
        pool = self.amb.pool_for(self.database, self.user)
        if pool is None:  # --databases (pgbouncer.ini's [databases]) does not name it
            self.fatal("3D000", f'pg-ambassador: no such database: "{self.database}"')
            return
        self.pool = pool
        self.passthrough = pool.target.pool_mode == "session"
        # the client's SCRAM keys log the pool in only as the client's own user
        if keys is not None and self.pool.scram_keys is None and pool.server_user == self.user:
            self.pool.scram_keys = keys
        if self.pool.params is not None:
            self._login_with(self.pool.params)  # the usual case: no task, no await
        else:
            self.login_task = self.amb.loop.create_task(self._login())

    async def _login(self) -> None:
        pool = self.pool
        assert pool is not None
        try:
            params = await pool.login_params()
        except ServerLoginError as exc:
            self.fatal(exc.sqlstate, str(exc))
            return
        if not self.closed:
            self._login_with(params)

    def _login_with(self, params: dict[str, str]) -> None:
        pool = self.pool
        assert pool is not None
        self.params = dict(params)
        lower = pool.param_names
        unknown = False
        for key, value in self.wanted.items():
            name = lower.get(key)
            if name is not None and key in REPLAYED:
                known = pool.normalized.get((key, value))
                if known is None and params[name] != value:
                    unknown = True
                self.params[name] = known if known is not None else value
            elif name is None:
                self.extra[key] = value
                if (key, value) not in pool.normalized:
                    unknown = True
        if unknown:
            # Settings never seen before: try them on a server now, so a bad one fails the
            # login (as PostgreSQL does) and the values reported are the server's.
            self.pending.clear()
            self.login_replay = True
            self.need_server()
            return
        self._login_done()

    login_replay = False

    def _login_done(self) -> None:
        self._welcome(self.params)

    def _welcome(self, params: dict[str, str]) -> None:
        if self.closed:
            return
        self.amb.assign_cancel_key(self)
        pool = self.pool
        statuses = pool.welcome(params) if pool else pq.parameter_statuses(params)  # console
        self.transport.write(
            self.auth_reply
            + statuses
            + pq.backend_key_data(self.process_id, self.secret_key)
            + pq.READY_IDLE
        )
        self.auth_reply = b""
        self.state = READY
        if self.login_timer is not None:
            self.login_timer.cancel()
            self.login_timer = None
        if self.pool is not None:
            self.pool.clients.add(self)
        self.resume()
        if self.amb.draining:
            self.fatal("57P01", ADMIN_SHUTDOWN)
            return
        early = bytes(self.startup_buf)
        self.startup_buf = bytearray()
        if early:
            self.data_received(early)

    # --- servers -------------------------------------------------------------------------------

    @property
    def holding(self) -> bool:
        """Holds a server now (a transaction, a pinned or session-mode client); a parked
        server is idle for the pool and not held."""
        server = self.server
        return server is not None and server.client is self

    def _take_back(self, server: ServerConn) -> bool:
        """The server parked at our last transaction's end: take it back, unless the pool
        gave it to another client or closed it meanwhile."""
        if server.parked_by is self and not server.closed:
            server.pool.unpark(server, self)
            return True
        self.server = None
        return False

    def need_server(self) -> None:
        assert self.pool is not None
        self.waiting = True
        self.pool.request(self)
        if self.waiting:  # queued: read nothing more until a server is attached
            self.pause()

    def attach(self, server: ServerConn) -> None:
        """The pool gave us `server`: set our settings on it, then send what waited."""
        self.server = server
        self.waiting = False
        if self.process_id:
            server.owner_pid = self.process_id
        sql = self._replay_sql(server)
        if sql:
            # What the client sends meanwhile must queue behind `pending`, not overtake
            # it: read nothing more until the settings are set (_attached resumes).
            self.pause()
            server.run_internal(sql, self._replayed)
            return
        self._attached()

    def _replay_sql(self, server: ServerConn) -> str:
        version = self.params_version
        if server.synced == (self, version):
            return ""  # nobody else used it since our settings were last set there
        if self.replay_version != version:
            self.replay_items = [(k, v) for k, v in self.params.items() if k.lower() in REPLAYED]
            self.replay_key = (tuple(self.replay_items), tuple(self.extra.items()))
            self.replay_version = version
        if server.settings_key == self.replay_key:
            # Last set for a client whose settings are the same as ours (the usual case:
            # one application's connections all log in alike): nothing to compare.
            server.synced = (self, version)
            return ""
        statements = []
        sparams = server.params
        for name, value in self.replay_items:
            if sparams.get(name, value) != value:
                statements.append(f"SET {quote_ident(name)} TO {quote_literal(value)}")
        for key, value in self.extra.items():
            if server.extra.get(key) != value:
                statements.append(f"SET {quote_ident(key)} TO {quote_literal(value)}")
        for key in server.extra:
            if key not in self.extra:
                statements.append(f"RESET {quote_ident(key)}")
        if not statements:
            server.synced = (self, version)
            server.settings_key = self.replay_key
        return ";".join(statements)

    def _replayed(self, ok: bool, status: bytes, error: str) -> None:
        server = self.server
        if server is None or self.closed:
            return
        pool = self.pool
        assert pool is not None
        if server.closed and not self.login_replay:
            # Lost before anything of the client's went out (only the SET): another one.
            self.server = None
            self.need_server()
            return
        if not ok:
            if self.login_replay:
                self.server = None
                pool.release(server)
                self.fatal("22023", error)
                return
            self.amb.log.warning("settings_replay_failed", pool=pool.label, error=error)
        server.extra = dict(self.extra)
        server.settings_key = None
        changed = []
        for name, value in list(self.params.items()):
            now = server.params.get(name)
            if now is None or name.lower() not in REPLAYED:
                continue
            if ok:
                # Also a value the server kept as given: the next client that asks for
                # it logs in without this round trip.
                pool.learn_setting(name.lower(), value, now)
            if now != value:
                self.params[name] = now
                changed.append(pq.parameter_status(name, now))
        if ok:
            for key, value in self.extra.items():
                pool.learn_setting(key, value, value)
        if self.login_replay:
            self.login_replay = False
            self.server = None
            pool.release(server)
            self._login_done()
            return
        if changed:
            self.params_version += 1
            self.transport.writelines(changed)
        if ok:
            server.synced = (self, self.params_version)
        self._attached()

    def _attached(self) -> None:
        if self.login_replay:
            self._replayed(True, b"I", "")
            return
        pending = self.pending
        if self.read_paused:
            self.resume()
        if pending:
            self.pending = []
            self.process(pending)

    def server_done(self, server: ServerConn) -> None:
        """ReadyForQuery idle with nothing owed: the transaction is over."""
        server.pool.xacts += 1
        if self.close_at_boundary:
            self.fatal("57P01", ADMIN_SHUTDOWN)
            return
        if self.pinned is None and not self.passthrough:
            # idle from now, not from its last message: a query longer than
            # client_idle_timeout must not get its client closed as it ends
            self.last_activity = now = time.monotonic()
            pool = self.pool
            assert pool is not None
            if not pool.park(server, self, now):
                self.server = None
                pool.release(server)

    def server_lost(self, server: ServerConn) -> None:
        if self.server is server:
            self.server = None
            self.fatal("08006", "pg-ambassador: the server connection was lost")

    def answer_locally(self, messages: list[tuple[int, bytes]]) -> bool:
        """Parse/Close of statements and Sync with no server held: answer without one.

        A Parse of a statement some server of the pool already parsed is only recorded
        (the server that runs it gets it on Bind). Without this, a client that prepares
        with a blocking call (pgbench -M prepared, libpq's PQprepare) while its other
        connections hold every server would wait forever.
        """
        pool = self.pool
        assert pool is not None
        if self.passthrough:
            return False
        known = pool.known
        stmts = self.stmts
        for kind, msg in messages:
            if kind == 80:  # P
                stop = msg.index(b"\x00", 5)
                name, pos = msg[5:stop], stop + 1
                if not name or name in stmts or msg[pos:] not in known:
                    return False
            elif kind == 67:  # C
                if msg[5] != 83 or msg[6] == 0:
                    return False
            elif kind not in (83, 72):  # S H
                return False
        if messages[-1][0] != 83:
            return False
        out: list[bytes] = []
        for kind, msg in messages:
            if kind == 80:
                name, pos = pq.cstr(msg, 5)
                if name in stmts:  # twice in this batch: let the server path refuse it
                    return False
                stmts[name] = msg[pos:]
                if pool.changed:
                    self.stmt_gen[name] = pool.changed.get(msg[pos:], 0)
                self.fresh.add(name)
                self.stats.prepared_hits += 1
                out.append(pq.PARSE_COMPLETE)
            elif kind == 67:
                name, _ = pq.cstr(msg, 6)
                stmts.pop(name, None)
                out.append(pq.CLOSE_COMPLETE)
            elif kind == 83:
                out.append(pq.READY_IDLE)
        self.transport.writelines(out)
        return True

    # --- messages to the server ------------------------------------------------------------

    def process(self, messages: list[tuple[int, bytes]]) -> None:
        if self.passthrough:
            self._process_session(messages)
            return
        if self.held is not None:
            self.held.extend(messages)
            return
        server = self.server
        assert server is not None
        out: list[bytes] = []
        expect = server.expect
        if not server.query_started:
            server.query_started = server.request_time = time.monotonic()
            server.cancel_sent = False
        batch_start = not expect and not self.unsynced and server.status == b"I"
        for kind, msg in messages:
            if kind == 81:  # Q
                server.pool.queries += 1
                server.unnamed = None
                if not self._query(server, msg, out):
                    expect.append((SYNC, None, None))
                    out.append(msg)
            elif kind == 80:  # P
                self.unsynced = True
                self._parse(server, msg, out)
            elif kind == 66:  # B
                self.unsynced = True
                key = self._bind(server, msg, out)
                if key is not None:
                    self._verify(server, key, messages, msg, out)
                    return
            elif kind == 69:  # E
                self.unsynced = True
                server.pool.queries += 1
                out.append(msg)
            elif kind == 83:  # S
                self.unsynced = False
                server.batch += 1
                expect.append((SYNC, None, None))
                out.append(msg)
            elif kind == 68:  # D
                self.unsynced = True
                self._describe(server, msg, out)
            elif kind == 67:  # C
                self.unsynced = True
                self._close(server, msg, out)
            elif kind == 72:  # H
                out.append(msg)
            elif kind in (100, 99, 102):  # d c f
                if kind != 100:
                    server.copy_in = False
                out.append(msg)
            elif kind == 70:  # F
                expect.append((SYNC, None, None))
                out.append(msg)
            elif kind == 88:  # X
                if out:
                    server.transport.writelines(out)
                self.transport.close()
                return
            else:
                self.protocol_error(pq.ProtocolError(f"invalid frontend message type {kind}"))
                return
            if self.server is not server:  # refused and closed meanwhile
                return
            if self.first_use is not None:
                self._first_use(server, messages, msg, batch_start)
        if out:
            server.transport.writelines(out)

    def _process_session(self, messages: list[tuple[int, bytes]]) -> None:
        """Session mode: forward everything; count what the server owes a ReadyForQuery
        for (the transaction boundary, for drain), and whether a Sync is missing."""
        server = self.server
        assert server is not None
        expect = server.expect
        if not server.query_started:
            server.query_started = server.request_time = time.monotonic()
            server.cancel_sent = False
        out: list[bytes] = []
        for kind, msg in messages:
            if (kind == 81 or kind == 80) and session.suspect(msg):  # Q P
                self._free_database(kind, msg)
            if kind == 81 or kind == 70:  # Q F
                if kind == 81:
                    server.pool.queries += 1
                expect.append((SYNC, None, None))
            elif kind == 83:  # S
                self.unsynced = False
                expect.append((SYNC, None, None))
            elif kind == 88:  # X
                if out:
                    server.transport.writelines(out)
                self.transport.close()
                return
            elif kind in (80, 66, 68, 67):  # P B D C
                self.unsynced = True
            elif kind == 69:  # E
                self.unsynced = True
                server.pool.queries += 1
            elif kind == 99 or kind == 102:  # c f
                server.copy_in = False
            elif kind not in (72, 100):  # H d
                self.protocol_error(pq.ProtocolError(f"invalid frontend message type {kind}"))
                return
            out.append(msg)
        server.transport.writelines(out)

    def _free_database(self, kind: int, msg: bytes) -> None:
        """Session mode: only a DROP DATABASE and the like matter (see Ambassador.
        free_database); the pool keeps servers after their clients left here too."""
        pool = self.pool
        assert pool is not None
        if kind == 81:  # Query: the text
            events = session.classify(msg[5:-1], pool.reported)
        else:  # Parse: the statement name, then the Parse body
            events = pool.classify_parse(msg[msg.index(b"\x00", 5) + 1 :])
        for event in events:
            if event.kind == "database":
                self.amb.free_database(event.statement)

    def _first_use(
        self, server: ServerConn, messages: list[tuple[int, bytes]], msg: bytes, batch_start: bool
    ) -> None:
        """`msg` (a Bind or Describe) is the first use of a statement whose Parse was
        answered from a shared one, which may have gone stale (a schema change altered its
        result type since another client prepared it). On its own server the client's
        Parse would have planned afresh and never failed so; drivers do not retry that
        error at prepare (asyncpg) or first run (psycopg). If it fails so, the server runs
        the rest of the batch again on a fresh statement (ServerConn._error), when the
        client has seen nothing of the batch but ParseComplete."""
        name, self.first_use = self.first_use, None
        if not batch_start:
            return
        i = _position(messages, msg)
        end = _rest_of_batch(messages, i)
        if end >= 0:
            server.watch((RETRY, self, (messages[i:end], name)))

    def _verify(
        self,
        server: ServerConn,
        key: bytes,
        messages: list[tuple[int, bytes]],
        msg: bytes,
        out: list[bytes],
    ) -> None:
        """Bind of a statement this server lacks, that clients were described before:
        Parse it here and Describe it (answers swallowed) before the Bind goes out. A
        schema change since may have changed its result type, and a client that cached the
        old row description (asyncpg) would read rows of another shape; the pool then
        treats it as PostgreSQL's `cached plan must not change result type` (Pool.
        check_row_type), so this Bind gets that error, as on the client's own server.
        The batch from this Bind on waits for the answer (ServerConn.resume_client)."""
        self.held = messages[_position(messages, msg) :]
        name = server.statement(key, out)  # a re-Parse: the server lacks it
        out.append(pq.message(b"D", b"S" + name + b"\x00"))
        out.append(pq.FLUSH)
        server.watch((DESCRIBE, self, (key, b"", True)))
        self.stats.prepared_verifications += 1
        server.transport.writelines(out)

    def resume_held(self, check: bool = True) -> None:
        """Send the batch held for a row-type check. If the check failed, the server
        skips the batch up to its Sync: it goes out as it is, with no check of its own
        (one would wait for an answer the skipping server never gives)."""
        held, self.held = self.held, None
        if held and self.server is not None and not self.closed:
            self.unchecked = not check
            try:
                self.process(held)
            finally:
                self.unchecked = False

    def retry(self, messages: list[tuple[int, bytes]], name: bytes) -> None:
        """Run again the part of a batch the server skipped when statement `name` proved
        stale; the pool has dropped it everywhere, so its use re-Parses it."""
        key = self.stmts.get(name)
        pool = self.pool
        if key is not None and pool is not None:
            self.stmt_gen[name] = pool.changed.get(key, 0)
        self.stats.prepared_retries += 1
        self.process(messages)

    def _query(self, server: ServerConn, msg: bytes, out: list[bytes]) -> bool:
        """Session state in a simple query; True if it was handled here (not forwarded)."""
        if not session.suspect(msg):  # most queries: no copy of the text, no parsing
            return False
        pool = self.pool
        assert pool is not None
        events = session.classify(msg[5:-1], pool.reported)
        if not events:
            return False
        for event in events:
            if event.kind == "pin":
                if self.settings.on_session_state == "error":
                    self.stats.refused_statements += 1
                    server.expect.append((SYNC, None, None))
                    out.append(pq.query(_raise_sql(event)))
                    return True
                self.pin(event)
            elif event.kind in ("deallocate_all", "discard_all"):
                self._forget_statements(server)
                if event.kind == "discard_all":
                    server.extra.clear()
                    server.settings_key = None
            elif event.kind == "database":
                self.amb.free_database(event.statement)
            elif event.kind == "deallocate" and len(events) == 1:
                name = event.statement.encode()
                key = self.stmts.pop(name, None)
                if key is not None:
                    server_name = server.statement(key, out)
                    server.prepared.pop(key, None)
                    server.expect.append((SYNC, None, None))
                    out.append(pq.query(b"DEALLOCATE " + server_name))
                    return True
        return False

    def _parse(self, server: ServerConn, msg: bytes, out: list[bytes]) -> None:
        stop = msg.index(b"\x00", 5)
        name, pos = msg[5:stop], stop + 1
        key = msg[pos:]
        pool = self.pool
        assert pool is not None
        for event in pool.classify_parse(key):
            if event.kind == "pin":
                if self.settings.on_session_state == "error":
                    self.stats.refused_statements += 1
                    self._fail(server, out, "0A000", _refusal(event))
                    return
                self.pin(event)
            elif event.kind in ("deallocate_all", "discard_all"):
                self._forget_statements(server)
            elif event.kind == "database":
                self.amb.free_database(event.statement)
        if not name:
            self.unnamed = key
            server.unnamed = (self, key)
            server.expect.append((P_FWD, None, None))
            out.append(msg)
            return
        if name in self.stmts:
            self._fail(
                server, out, "42P05", f'prepared statement "{name.decode(errors="replace")}" '
                "already exists",
            )  # fmt: skip
            return
        self.stmts[name] = key
        if pool.changed:
            self.stmt_gen[name] = pool.changed.get(key, 0)
        entry = server.prepared.get(key)
        if entry is not None and (server.status != b"I" or server.expect):
            # Inside a transaction (or behind other messages of its batch) the error of a
            # stale shared statement could not be rerun unseen: parse afresh, as the
            # client's own server would.
            server.retire_statement(key)
            entry = None
        if entry is not None:
            # The server has it already: a no-op Parse answers in order.
            self.stats.prepared_hits += 1
            self.fresh.add(name)
            server.prepared.move_to_end(key)
            server.unnamed = None
            server.expect.append((P_FWD, self, (name, None)))
            out.append(EMPTY_PARSE)
            return
        self.stats.prepared_misses += 1
        server_name = server.add_statement(key, out)
        # If this Parse fails or is skipped, the client and the server both forget it.
        server.expect.append((P_FWD, self, (name, key)))
        out.append(pq.parse_message(server_name, key))

    def _forget_statements(self, server: ServerConn) -> None:
        """DEALLOCATE ALL or DISCARD ALL: the client's statements, and the server's."""
        self.invalidate_statements()
        self.stmts.clear()
        self.fresh.clear()
        self.unnamed = None
        server.forget_prepared()

    def _ensure_unnamed(self, server: ServerConn, out: list[bytes]) -> None:
        """Re-Parse this client's unnamed statement on a server that holds another one."""
        unnamed = self.unnamed
        if unnamed is not None and server.unnamed != (self, unnamed):
            out.append(pq.parse_message(b"", unnamed))
            server.expect.append((P_SWALLOW, None, None))
            server.unnamed = (self, unnamed)

    def _bind(self, server: ServerConn, msg: bytes, out: list[bytes]) -> bytes | None:
        """Rename a Bind's statement; the statement's key if its row type must be checked
        on this server first (see _verify), then nothing was added to `out`."""
        pos = msg.index(b"\x00", 5) + 1  # after the portal name
        stop = msg.index(b"\x00", pos)
        name = msg[pos:stop]
        end = stop + 1
        if not name:
            self._ensure_unnamed(server, out)
            out.append(msg)
            return None
        key = self.stmts.get(name)
        if key is None:
            out.append(msg)  # PostgreSQL answers: prepared statement "name" does not exist
            return None
        pool = server.pool
        changed = pool.changed
        if changed and changed.get(key, 0) != self.stmt_gen.get(name, 0):
            if pool.shape_back(key, self.stmt_gen.get(name, 0)):
                self.stmt_gen[name] = changed[key]  # as prepared: valid again
            else:
                # Its result type changed since this client prepared it: PostgreSQL's
                # own answer, so the client prepares it again (and gets the new shape).
                server.expect.append((FAIL, CACHED_PLAN_ERROR, None))
                out.append(FAIL_BIND)
                return None
        if key not in server.prepared and key in pool.row_types and not self.unchecked:
            return key
        self._mark_first_use(name)
        server.bound.append(key)
        server_name = server.statement(key, out)
        body = msg[5:pos] + server_name + b"\x00" + msg[end:]
        out.append(b"B" + _pack_u32(len(body) + 4) + body)
        return None

    def _mark_first_use(self, name: bytes) -> None:
        """A use of `name`: its first since a Parse answered from a shared statement?"""
        if self.fresh and name in self.fresh:
            self.fresh.discard(name)
            self.first_use = name

    def _describe(self, server: ServerConn, msg: bytes, out: list[bytes]) -> None:
        if msg[5] != 83:  # 'S' statement; 'P' portal passes
            out.append(msg)
            return
        name, _ = pq.cstr(msg, 6)
        if not name:
            self._ensure_unnamed(server, out)
            out.append(msg)
            return
        key = self.stmts.get(name)
        if key is None:
            out.append(msg)
            return
        self._mark_first_use(name)
        server.bound.append(key)  # PostgreSQL revalidates the plan here too
        server_name = server.statement(key, out)
        # the row type the client is told: the pool compares it with earlier ones
        server.watch((DESCRIBE, self, (key, name, False)))
        out.append(pq.message(b"D", b"S" + server_name + b"\x00"))

    def _close(self, server: ServerConn, msg: bytes, out: list[bytes]) -> None:
        if msg[5] != 83:  # a portal: the server's business
            server.expect.append((C_FWD, None, None))
            out.append(msg)
            return
        name, _ = pq.cstr(msg, 6)
        if not name:
            self.unnamed = None
            if server.unnamed is not None and server.unnamed[0] is self:
                server.unnamed = None
            server.expect.append((C_FWD, None, None))
            out.append(msg)
            return
        key = self.stmts.pop(name, None)
        self.fresh.discard(name)
        # The server's copy stays for whoever needs it next; the client gets its answer.
        server.expect.append((C_FWD, self, (name, key)))
        out.append(NOOP_CLOSE)

    def _fail(self, server: ServerConn, out: list[bytes], sqlstate: str, text: str) -> None:
        """Make the server fail here (so it skips to Sync as PostgreSQL would), with our error."""
        server.expect.append((FAIL, pq.error_response(text, sqlstate), None))
        out.append(FAIL_BIND)

    def invalidate_statements(self) -> None:
        """No server of the pool hands out this client's statements again.

        Servers share a statement by its text, but what the text means can change: a
        client whose transaction rolled back, or that says DEALLOCATE ALL (psycopg does
        after a ROLLBACK or a DROP, "because the same object may get recreated and
        postgres would fail internal lookups"), may leave statements that name a type
        that no longer exists (`cache lookup failed for type`). The next use re-Parses.
        """
        pool = self.pool
        keys = set(self.stmts.values())
        if pool is None or not keys:
            return
        for server in (*pool.idle, *pool.active):
            server.drop_statements(keys)

    # --- undo, when the server skipped a message ----------------------------------------------

    def forget_statement(self, name: bytes) -> None:
        self.stmts.pop(name, None)  # (a Parse of a known name is refused, never sent)

    def restore_statement(self, undo: tuple[bytes, bytes | None]) -> None:
        name, key = undo
        if key is not None:
            self.stmts.setdefault(name, key)

    # --- session state -------------------------------------------------------------------------

    def pin(self, event: session.SessionEvent) -> None:
        if self.pinned is not None:
            return
        self.pinned = event.reason
        self.amb.pinned[event.reason] += 1
        stats = self.stats.pins_total
        stats[event.reason] = stats.get(event.reason, 0) + 1
        if self.server is not None:
            self.server.dirty = True
        self.amb.log.info(
            "client_pinned",
            reason=event.reason,
            statement=event.statement,
            pool=self.pool.label if self.pool else "",
            client=self.addr,
        )

    # --- ending ------------------------------------------------------------------------------

    def ask_to_finish(self) -> bool:
        """The drain (podkit.listener.Connection): close at the next transaction boundary.

        One that sent no startup packet yet is answered after it, not closed under it, and
        does not hold up the drain: it is closed with the rest at the end."""
        if self.state < AUTH:
            self.refuse(SHUTTING_DOWN, "draining")
            return False
        if self.holding:
            self.close_at_boundary = True
        else:
            self.fatal("57P01", ADMIN_SHUTDOWN)
        return True

    def close_now(self) -> None:
        self.fatal("57P01", ADMIN_SHUTDOWN)

    def fatal(self, sqlstate: str, text: str) -> None:
        if self.closed or self.transport is None:
            return
        if not self.transport.is_closing():
            error = pq.error_response(text, sqlstate, severity="FATAL")
            self.transport.write(self.auth_reply + error)
            self.auth_reply = b""
            self.transport.close()
        self.closed = True

    def protocol_error(self, exc: pq.ProtocolError) -> None:
        self.stats.protocol_errors += 1
        self.amb.warn("client_protocol_error", error=str(exc), addr=self.addr)
        self.fatal(exc.sqlstate, f"pg-ambassador: {exc}")
        with contextlib.suppress(Exception):
            self.transport.abort()

    def cancel_server(self, done: Callable[[], None] | None = None) -> bool:
        """Forward a cancel to the server held now; `done()` once it was delivered."""
        server = self.server
        if server is None or server.closed or server.client is not self:
            return False
        server.cancel(done)
        return True


def _position(messages: list[tuple[int, bytes]], msg: bytes) -> int:
    """Index of the message `msg` (that very object) in a batch."""
    return next(k for k, (_, m) in enumerate(messages) if m is msg)


def _rest_of_batch(messages: list[tuple[int, bytes]], i: int) -> int:
    """Where the part of a batch that can run again after a stale statement at
    `messages[i]` ends (exclusive), or -1. Before i only Parses (their answers are
    ParseComplete, already seen); after it only portal Describe, Execute and Flush,
    up to the Sync (included) or ending in a Flush (asyncpg's Parse, Describe, Flush)."""
    if any(kind != 80 for kind, _ in messages[:i]):
        return -1
    for k in range(i + 1, len(messages)):
        kind, msg = messages[k]
        if kind == 83:
            return k + 1
        if not (kind in (69, 72) or (kind == 68 and msg[5] == 80)):
            return -1
    return len(messages) if messages[-1][0] == 72 else -1


def _parse_options(value: str) -> dict[str, str]:
    """`options=-c a=b --c=d` of a startup packet -> settings."""
    out: dict[str, str] = {}
    tokens: list[str] = []
    current = ""
    escape = False
    for ch in value:
        if escape:
            current += ch
            escape = False
        elif ch == "\\":
            escape = True
        elif ch.isspace():
            if current:
                tokens.append(current)
            current = ""
        else:
            current += ch
    if current:
        tokens.append(current)
    i = 0
    while i < len(tokens):
        token = tokens[i]
        setting = None
        if token == "-c" and i + 1 < len(tokens):
            setting = tokens[i + 1]
            i += 1
        elif token.startswith(("-c", "--")):
            setting = token[2:]
        if setting and "=" in setting:
            name, val = setting.split("=", 1)
            out[name.replace("-", "_")] = val
        i += 1
    return out


def _refusal(event: session.SessionEvent) -> str:
    return (
        f"pg-ambassador: {event.reason.replace('_', ' ')} is session state that transaction "
        f"pooling cannot carry (--on-session-state error): {event.statement}"
    )


def _raise_sql(event: session.SessionEvent) -> str:
    text = _refusal(event).replace("'", "''")
    return (
        f"DO $pgamb$BEGIN RAISE EXCEPTION USING ERRCODE = '0A000', MESSAGE = '{text}'; END$pgamb$"
    )
