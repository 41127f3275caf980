"""What every part of a client connection shares: its state, and the ambassador it sees.

A client connection (client.ClientConn) is three layers over this base: `login.Login`
(startup, TLS, authentication, the welcome), `statements.Statements` (the client's
prepared statements and the pool's statement memory) and `client.ClientConn` (routing
messages to the server it holds, and flow control). `Hub` is all they see of the
ambassador (main.Ambassador is one), so none of them imports main.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ssl
import time
from collections.abc import Callable, Sized
from typing import Any, Protocol

from podkit.ambassadors.postgres import protocol as pq
from podkit.ambassadors.postgres import session
from podkit.ambassadors.postgres.auth import ClientAuth
from podkit.ambassadors.postgres.context import Stats
from podkit.ambassadors.postgres.notify import ClientListens, Notifier
from podkit.ambassadors.postgres.pool import Pool
from podkit.ambassadors.postgres.server import ServerConn
from podkit.ambassadors.postgres.settings import PgAmbassadorSettings
from podkit.listener import Listener
from podkit.logs import EventLogger

ADMIN_SHUTDOWN = "terminating connection due to administrator command"
# A new client while draining: PostgreSQL answers 57P03 while it shuts down, and PQping
# (pg_isready) reads that code as "rejecting connections".
SHUTTING_DOWN = ("57P03", "pg-ambassador is shutting down")
TOO_MANY_CLIENTS = ("53300", "pg-ambassador: no more connections allowed (max_client_conn)")

STARTUP, HANDSHAKE, AUTH, LOGIN, READY, CLOSED = range(6)


class ConsoleHandler(Protocol):
    def handle(self, client: Any, messages: list[tuple[int, bytes]]) -> None: ...


class Hub(Protocol):
    """What a client connection sees of the ambassador."""

    settings: PgAmbassadorSettings
    stats: Stats
    loop: asyncio.AbstractEventLoop
    log: EventLogger
    draining: bool
    client_tls: ssl.SSLContext | None
    pinned: collections.Counter[str]

    @property
    def console(self) -> ConsoleHandler: ...

    @property
    def listener(self) -> Listener[Any]: ...

    @property
    def clients(self) -> Sized: ...

    def warn(self, event: str, **fields: Any) -> None: ...
    def lookup(self, user: str) -> str | None: ...
    def pool_for(self, database: str, user: str) -> Pool | None: ...
    def free_database(self, database: str) -> None: ...
    def schema_changed(self, pool: Pool) -> None: ...
    def assign_cancel_key(self, client: Any) -> None: ...
    def forget_cancel_key(self, client: Any) -> None: ...
    def cancel(self, process_id: int, secret_key: int, done: Callable[[], None] = ...) -> None: ...


class ClientBase(asyncio.Protocol):
    """The state of one application connection; the layers above add the behaviour."""

    def __init__(self, amb: Hub) -> None:
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
        # settings the server does not report: of those, and the session SETs read back
        # (ClientConn._checked); name -> the value as the server shows it
        self.extra: dict[str, str] = {}
        self.pinned: str | None = None
        # Session state asked of the server at the transaction's end (_check_session): the
        # settings SET or RESET since (all of them after RESET ALL / DISCARD ALL), and
        # whether an advisory lock call ran; `unsettled` is any of them (one test per
        # transaction). `checking`: that query is running.
        self.unsettled = False
        self.check_names: set[str] = set()
        self.check_all = False
        self.check_locks = ""  # the advisory lock statement (shortened), for the pin
        self.checking = False
        # a CREATE, ALTER or DROP ran in the open transaction (client._transaction_over)
        self.ddl_ran = False
        # Parse bodies of this client's statements that carry TRACKED events: each Bind
        # of one is noted again
        self.tracked_stmts: dict[bytes, list[session.SessionEvent]] = {}
        # Session mode: the client keeps its server, so its statements, names and session
        # state are its own there, as on a direct connection; nothing is renamed or pinned.
        self.passthrough = amb.settings.pool_mode == "session"
        # transaction mode: the pool's LISTEN/NOTIFY fan-out, and this client's part in it
        self.notifier: Notifier | None = None
        self.listens: ClientListens | None = None
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

    def pause(self) -> None:
        if not self.read_paused and not self.closed:
            self.read_paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.read_paused and not self.waiting and not self.closed:
            self.read_paused = False
            self.transport.resume_reading()

    refusal: tuple[str, str] | None = None

    auth_reply = b""

    def refuse(self, error: tuple[str, str], reason: str) -> None:
        """Answer the startup packet with this FATAL error (sqlstate, text)."""
        if self.refusal is None:
            self.stats.refused(reason)
            self.refusal = error

    def track(self, event: session.SessionEvent) -> session.SessionEvent | None:
        """Note a TRACKED event for the check at the transaction's end; the pin event to
        handle instead when pinning is asked for (--session-settings pin for settings,
        --on-session-state error for advisory locks, which refuses them)."""
        settings = self.settings
        if event.kind == "schema":
            self.ddl_ran = True  # see _transaction_over
            return None
        if event.kind == "advisory":
            if event.reason == "lock" and settings.on_session_state == "error":
                return session.SessionEvent("pin", "advisory_lock", event.statement)
            self.check_locks = self.check_locks or event.statement or "advisory"
        elif settings.session_settings == "pin":
            if event.kind == "setting" and event.reason == "set":
                return session.SessionEvent("pin", "set", f"SET {event.statement}")
            return None  # RESET: as pinning poolers, nothing to do
        elif event.kind == "setting":
            self.check_names.add(event.statement)
        else:  # reset_all
            self.check_all = True
        self.unsettled = True
        return None

    def discarded(self) -> None:
        """DISCARD ALL: every setting is back to the server's default."""
        if self.settings.session_settings == "replay":
            self.check_all = self.unsettled = True

    def pin(self, event: session.SessionEvent) -> None:
        if self.pinned is not None:
            if self.pinned != "advisory_lock" or event.reason == "advisory_lock":
                return
            # pinned while a lock is held, and now for good
            self.amb.pinned[self.pinned] -= 1
            self.pinned = None
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

    def unpin(self) -> None:
        """The client holds no advisory lock any more: back to transaction pooling."""
        reason, self.pinned = self.pinned, None
        if reason is None:
            return
        self.amb.pinned[reason] -= 1
        self.amb.log.info(
            "client_unpinned",
            reason=reason,
            pool=self.pool.label if self.pool else "",
            client=self.addr,
        )

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

    # --- provided by the layers above ------------------------------------------------------

    def need_server(self) -> None:
        raise NotImplementedError

    @property
    def holding(self) -> bool:
        raise NotImplementedError

    def attach(self, server: ServerConn) -> None:
        raise NotImplementedError

    def server_done(self, server: ServerConn) -> None:
        raise NotImplementedError

    def server_lost(self, server: ServerConn) -> None:
        raise NotImplementedError

    def process(self, messages: list[tuple[int, bytes]]) -> None:
        raise NotImplementedError
