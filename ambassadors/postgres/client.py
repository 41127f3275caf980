"""One application connection after login: messages to whichever server it holds.

In transaction mode the client holds a server from its first message until the server
says ReadyForQuery idle with nothing owed (see server.py); then the server goes back to
its pool, or, when nobody waits for one, is parked there: idle, but the client takes it
back at its next message if nobody needed it meanwhile (`self.server` stays set; the
client holds it only while `server.client is self`). Messages that arrive while the
client holds none wait (reading paused) until the pool attaches one. The login is
login.py's, prepared statements are statements.py's: this class routes and paces.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from podkit.ambassadors.postgres import protocol as pq
from podkit.ambassadors.postgres import session
from podkit.ambassadors.postgres.client_base import (
    ADMIN_SHUTDOWN,
    AUTH,
    CLOSED,
    LOGIN,
    READY,
    SHUTTING_DOWN,
    STARTUP,
    TOO_MANY_CLIENTS,
    Hub,
)
from podkit.ambassadors.postgres.login import Login
from podkit.ambassadors.postgres.notify import batch_mentions
from podkit.ambassadors.postgres.pool import REPLAYED, quote_literal
from podkit.ambassadors.postgres.protocol import (
    BIND,
    CLOSE,
    COPY_DATA,
    COPY_DONE,
    COPY_FAIL,
    DESCRIBE,
    EXECUTE,
    FLUSH_MSG,
    FUNCTION_CALL,
    PARSE,
    QUERY,
    SYNC_MSG,
    TERMINATE_MSG,
)
from podkit.ambassadors.postgres.server import OWE_READY, ServerConn
from podkit.ambassadors.postgres.statements import Statements, _refusal

__all__ = ["AUTH", "READY", "ClientConn", "Hub"]


class ClientConn(Login, Statements):
    """An application connection: login (Login), prepared statements (Statements), and
    here the routing of its messages to the server it holds."""

    def __init__(self, amb: Hub) -> None:
        super().__init__(amb)

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
            notifier = self.notifier
            try:
                messages = self.framer.feed(data)
            except pq.ProtocolError as exc:
                self.protocol_error(exc)
                return
            if not messages:
                return
            if (
                notifier is not None
                and (self.listens is not None or batch_mentions(messages))
                and notifier.gate(self, messages)
            ):
                return  # held until the pool's listener LISTENs its channels
            self.route(messages)
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

    def route(self, messages: list[tuple[int, bytes]]) -> None:
        """Messages of the client: to the server it holds, or one it gets."""
        server = self.server
        if server is not None and server.client is self:
            self.process(messages)
        elif messages[0][0] == TERMINATE_MSG and not self.waiting:
            # Terminate needs no server: one parked with us stays parked until
            # connection_lost hands it back (taking it back would cost an orphan's
            # round of checks for nothing)
            self.transport.close()
        elif server is not None and server.parked_by is self and not server.closed:
            # (_take_back's usual case, without the call: every transaction of a
            # client whose server stayed parked with it takes this path)
            self.pool.unpark(server, self)  # type: ignore[union-attr]
            self.process(messages)
        elif server is not None and self._take_back(server):
            self.process(messages)
        elif self.console:
            self.amb.console.handle(self, messages)
        elif self.waiting or messages[0][0] == QUERY or not self.answer_locally(messages):
            self.pending.extend(messages)
            if not self.waiting:
                self.need_server()

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
        listens = self.listens
        if listens is not None and self.notifier is not None:
            self.notifier.forget(self)
        server = self.server
        if server is not None and pool is not None:
            self.server = None
            if self.checking and server.client is self:
                server.dirty = True  # _checked hands it back once its query is answered
                return
            if listens is not None and listens.probing:
                # the end-of-transaction question runs there: its answer releases it,
                # reset first (the session check that would have followed never runs)
                server.dirty = True
                return
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
            assert self.pool is not None  # (its server came from its pool)
            self.pool.unpark(server, self)
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
        if self.process_id and (self.passthrough or not server.owner_pid):
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
        # set_config takes the value as the setting's own text (what SHOW and current_setting
        # say), as a startup packet does: a list (search_path) is not quoted again, as SET
        # 'a, b' would; NULL resets.
        calls = []
        sparams = server.params
        for name, value in self.replay_items:
            if sparams.get(name, value) != value:
                calls.append(_set_config(name, value))
        for key, value in self.extra.items():
            if server.extra.get(key) != value:
                calls.append(_set_config(key, value))
        for key in server.extra:
            if key not in self.extra:
                calls.append(_set_config(key, None))
        if not calls:
            server.synced = (self, version)
            server.settings_key = self.replay_key
            return ""
        return "SELECT " + ", ".join(calls)

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
            # One failed set_config undid the whole statement, the previous client's
            # resets with it: what is set there is not known, so it is reset at release
            server.dirty = True
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
        # Notifications name the client whose transaction ended last on the server: they
        # reach the pool's listener after the notifier's ReadyForQuery, often after its
        # server went to the next client (notify.as_client_pid).
        server.owner_pid = self.process_id
        listens = self.listens
        if listens is not None:
            notifier = self.notifier
            assert notifier is not None
            if listens.ops:  # LISTEN/UNLISTEN ran: which committed? (notify.py)
                notifier.end_transaction(self, server, lambda: self._transaction_over(server))
                return
            self._transaction_over(server)
            if listens.queue:
                notifier.flush(self)
            return
        self._transaction_over(server)

    def _transaction_over(self, server: ServerConn) -> None:
        if self.ddl_ran:
            # PostgreSQL keeps the parameter types it inferred for a statement for the
            # statement's life: shared ones prepared before a CREATE, ALTER or DROP may
            # be typed otherwise now, and every server of the database drops them. (A
            # Parse inside the transaction was fresh: Statements._parse; result types
            # that changed are PostgreSQL's own error, Pool.statements_changed.)
            self.ddl_ran = False
            if self.pool is not None:
                self.amb.schema_changed(self.pool)
        if self.close_at_boundary:
            self.fatal("57P01", ADMIN_SHUTDOWN)
            return
        if self.unsettled and (self.pinned is None or self.pinned == "advisory_lock"):
            self._check_session(server)
            return
        self._let_go(server)

    def _let_go(self, server: ServerConn) -> None:
        """Park or release the server, unless the client keeps it (pinned, session mode)."""
        if self.pinned is None and not self.passthrough:
            # idle from now, not from its last message: a query longer than
            # client_idle_timeout must not get its client closed as it ends
            self.last_activity = now = time.monotonic()
            pool = self.pool
            assert pool is not None
            if not pool.park(server, self, now):
                self.server = None
                pool.release(server)

    def _check_session(self, server: ServerConn) -> None:
        """The transaction that SET settings or called advisory lock functions is over
        (committed, or rolled back with them): ask the server what is set and what is
        held now, before anyone else may get it. The client's messages wait meanwhile."""
        names = self.check_names
        if self.check_all:
            names |= self.extra.keys() | server.extra.keys()
        locks = self.check_locks
        if not names and not locks:  # RESET ALL with nothing set
            self.check_all = self.unsettled = False
            self._let_go(server)
            return
        self.check_names = set()
        self.check_all = False
        self.check_locks = ""
        self.unsettled = False
        rows: list[list[str | None]] = []
        self.checking = True
        self.pause()

        def done(ok: bool, status: bytes, error: str) -> None:
            self._checked(server, rows, locks, ok, status, error)

        server.run_internal(_check_sql(sorted(names), bool(locks)), done, rows)

    def _checked(
        self,
        server: ServerConn,
        rows: list[list[str | None]],
        locks: str,
        ok: bool,
        status: bytes,
        error: str,
    ) -> None:
        self.checking = False
        pool = self.pool
        assert pool is not None
        if server.closed:
            return  # (server_lost tells the client)
        if self.closed:
            pool.orphan(server, self)  # (marked dirty: reset before reuse)
            return
        if not ok or status != b"I":
            # Not known: keep it, as pinning poolers do
            self.amb.log.warning("session_check_failed", pool=pool.label, error=error)
            self.pin(session.SessionEvent("pin", "advisory_lock" if locks else "set", locks))
        else:
            changed = False
            for name, value, source in rows:
                if name is None:  # the advisory lock count
                    if value != "0":
                        self.pin(session.SessionEvent("pin", "advisory_lock", locks))
                    elif self.pinned == "advisory_lock":
                        self.unpin()
                elif source == "session" or (source is None and value):
                    # SET in this session, by the client or as its replay (a custom
                    # placeholder, which pg_settings does not list, is '' when reset)
                    assert value is not None
                    changed |= self.extra.get(name) != value
                    self.extra[name] = server.extra[name] = value
                else:  # back to the server's default (RESET, or a SET rolled back)
                    changed |= self.extra.pop(name, None) is not None
                    server.extra.pop(name, None)
            if changed:
                self.params_version += 1
            server.settings_key = None
            server.synced = (self, self.params_version)
        if self.close_at_boundary:  # a drain asked meanwhile
            self.fatal("57P01", ADMIN_SHUTDOWN)
            return
        listens = self.listens
        if listens is not None and listens.hold is not None:
            # a batch with a new LISTEN waits: it goes before anything read after it
            self._let_go(server)
            if listens.release_after:
                listens.release_after = False
                assert self.notifier is not None
                self.notifier.release_held(self)
            return
        self.resume()
        self._let_go(server)

    def server_lost(self, server: ServerConn) -> None:
        if self.server is server:
            self.server = None
            if server.said_fatal:  # the client has PostgreSQL's reason: close as it did
                if not self.closed:
                    self.closed = True
                    self.transport.close()
            else:
                self.fatal("08006", "pg-ambassador: the server connection was lost")

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
            if kind == QUERY:
                server.pool.queries += 1
                server.unnamed = None
                if not self._query(server, msg, out):
                    expect.append(OWE_READY)
                    out.append(msg)
            elif kind == PARSE:
                self.unsynced = True
                self._parse(server, msg, out)
            elif kind == BIND:
                self.unsynced = True
                key = self._bind(server, msg, out)
                if key is not None:
                    self._verify(server, key, messages, msg, out)
                    return
            elif kind == EXECUTE:
                self.unsynced = True
                server.pool.queries += 1
                out.append(msg)
            elif kind == SYNC_MSG:
                self.unsynced = False
                server.batch += 1
                expect.append(OWE_READY)
                out.append(msg)
            elif kind == DESCRIBE:
                self.unsynced = True
                self._describe(server, msg, out)
            elif kind == CLOSE:
                self.unsynced = True
                self._close(server, msg, out)
            elif kind == FLUSH_MSG:
                out.append(msg)
            elif kind in (COPY_DATA, COPY_DONE, COPY_FAIL):
                if kind != COPY_DATA:
                    server.copy_in = False
                out.append(msg)
            elif kind == FUNCTION_CALL:
                expect.append(OWE_READY)
                out.append(msg)
            elif kind == TERMINATE_MSG:
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
            if (kind in (QUERY, PARSE)) and session.suspect(msg):
                self._free_database(kind, msg)
            if kind in (QUERY, FUNCTION_CALL):
                if kind == QUERY:
                    server.pool.queries += 1
                expect.append(OWE_READY)
            elif kind == SYNC_MSG:
                self.unsynced = False
                expect.append(OWE_READY)
            elif kind == TERMINATE_MSG:
                if out:
                    server.transport.writelines(out)
                self.transport.close()
                return
            elif kind in (PARSE, BIND, DESCRIBE, CLOSE):
                self.unsynced = True
            elif kind == EXECUTE:
                self.unsynced = True
                server.pool.queries += 1
            elif kind in (COPY_DONE, COPY_FAIL):
                server.copy_in = False
            elif kind != FLUSH_MSG and kind != COPY_DATA:
                self.protocol_error(pq.ProtocolError(f"invalid frontend message type {kind}"))
                return
            out.append(msg)
        server.transport.writelines(out)

    def _free_database(self, kind: int, msg: bytes) -> None:
        """Session mode: only a DROP DATABASE and the like matter (see Ambassador.
        free_database); the pool keeps servers after their clients left here too."""
        pool = self.pool
        assert pool is not None
        if kind == QUERY:  # the text
            events = session.classify(msg[5:-1], pool.tracked)
        else:  # Parse: the statement name, then the Parse body
            events = pool.classify_parse(msg[msg.index(b"\x00", 5) + 1 :])
        for event in events:
            if event.kind == "database":
                self.amb.free_database(event.statement)

    def _query(self, server: ServerConn, msg: bytes, out: list[bytes]) -> bool:
        """Session state in a simple query; True if it was handled here (not forwarded)."""
        if not session.suspect(msg):  # most queries: no copy of the text, no parsing
            return False
        pool = self.pool
        assert pool is not None
        events = session.classify(msg[5:-1], pool.tracked)
        if not events:
            return False
        for event in events:
            if event.kind in session.TRACKED:
                tracked = self.track(event)
                if tracked is None:
                    continue
                event = tracked
            if event.kind == "pin":
                if self.settings.on_session_state == "error":
                    self.stats.refused_statements += 1
                    server.expect.append(OWE_READY)
                    out.append(pq.query(_raise_sql(event)))
                    return True
                self.pin(event)
            elif event.kind in ("deallocate_all", "discard_all"):
                self._forget_statements(server)
                if event.kind == "discard_all":
                    server.extra.clear()
                    server.settings_key = None
                    self.discarded()
            elif event.kind == "database":
                self.amb.free_database(event.statement)
            elif event.kind == "deallocate" and len(events) == 1:
                name = event.statement.encode()
                key = self.stmts.pop(name, None)
                if key is not None:
                    server_name = server.statement(key, out)
                    server.prepared.pop(key, None)
                    server.expect.append(OWE_READY)
                    out.append(pq.query(b"DEALLOCATE " + server_name))
                    return True
        return False

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

    def cancel_server(self, done: Callable[[], None] | None = None) -> bool:
        """Forward a cancel to the server held now; `done()` once it was delivered."""
        server = self.server
        if server is None or server.closed or server.client is not self:
            return False
        if self.checking or (self.listens is not None and self.listens.probing):
            # After its ReadyForQuery: only the pooler's own question runs there, and a
            # late cancel, which PostgreSQL would ignore, must not fail it
            return False
        server.cancel(done)
        return True


def _set_config(name: str, value: str | None) -> str:
    text = "NULL" if value is None else quote_literal(value)
    return f"pg_catalog.set_config({quote_literal(name)}, {text}, false)"


def _check_sql(names: list[str], locks: bool) -> str:
    """Rows (name, value, source) of these settings, and (NULL, advisory locks held, NULL).

    At a transaction's end an advisory lock still held is a session one (those taken with
    the _xact_ functions ended with it). A value whose source is `session` was SET in this
    session (by the client, or replayed); any other source is the server's default; a name
    pg_settings does not list is a custom placeholder (or unknown: NULL)."""
    parts = []
    if names:
        array = ", ".join(quote_literal(name) for name in names)
        parts.append(
            "SELECT n, pg_catalog.current_setting(n, true), (SELECT s.source FROM "
            "pg_catalog.pg_settings s WHERE pg_catalog.lower(s.name) = n) "
            f"FROM pg_catalog.unnest(ARRAY[{array}]::text[]) AS n"
        )
    if locks:
        parts.append(
            "SELECT NULL, pg_catalog.count(*)::text, NULL FROM pg_catalog.pg_locks "
            "WHERE locktype = 'advisory' AND pid = pg_catalog.pg_backend_pid()"
        )
    return " UNION ALL ".join(parts)


def _raise_sql(event: session.SessionEvent) -> str:
    text = _refusal(event).replace("'", "''")
    return (
        f"DO $pgamb$BEGIN RAISE EXCEPTION USING ERRCODE = '0A000', MESSAGE = '{text}'; END$pgamb$"
    )
