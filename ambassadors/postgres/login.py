"""A client's login: startup packet, TLS, authentication, then the welcome.

Startup packets are checked as PostgreSQL does; refusals (draining, max_client_conn) are
answered after the startup packet, as PostgreSQL does, so drivers read them as what they
are. Settings a client asks for at startup that the pool has not seen the server accept
are tried on a server first (client.ClientConn._replayed), so a bad one fails the login.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from functools import partial

from podkit.ambassadors.postgres import protocol as pq
from podkit.ambassadors.postgres.auth import AuthError, ClientAuth
from podkit.ambassadors.postgres.client_base import (
    ADMIN_SHUTDOWN,
    AUTH,
    CLOSED,
    HANDSHAKE,
    LOGIN,
    READY,
    STARTUP,
    ClientBase,
)
from podkit.ambassadors.postgres.pool import REPLAYED
from podkit.ambassadors.postgres.server import ServerLoginError
from podkit.ambassadors.postgres.tls import describe as tls_describe


class Login(ClientBase):
    # --- startup and login ----------------------------------------------------------------

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
        self._auth_step(partial(self.authenticator.start, self.user))

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
            if not self._auth_step(partial(self.authenticator.handle, kind, msg[5:])):
                return

    def _auth_step(self, step: Callable[[], bytes]) -> bool:
        """One exchange with the authenticator: its reply sent, or the welcome once it is
        done; False when it refused (the client is closed)."""
        try:
            reply = step()
        except AuthError as exc:
            self._auth_failed(exc)
            return False
        if self.authenticator.done:
            self._authenticated_after(reply)
        else:
            self.transport.write(reply)
            self.state = AUTH
        return True

    def _auth_failed(self, exc: AuthError) -> None:
        self.stats.refused("auth_failed")
        self.amb.warn("client_auth_failed", user=self.user, addr=self.addr, error=str(exc))
        self.fatal(exc.sqlstate, exc.client_message or str(exc))

    # AuthenticationOk held back while the login goes on in the same call, so that the
    # welcome (or the error) goes out with it in one write: one system call and one
    # segment fewer per login, which connection-per-transaction clients pay each time.

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
        if not self.passthrough:
            self.notifier = pool.notifier
        # the client's SCRAM keys log the pool in only as the client's own user
        if keys is not None and pool.scram_keys is None and pool.server_user == self.user:
            pool.scram_keys = keys
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
            self.pool.clients.add(self)  # type: ignore[arg-type]  # a ClientConn (Login is its layer)
        self.resume()
        if self.amb.draining:
            self.fatal("57P01", ADMIN_SHUTDOWN)
            return
        early = bytes(self.startup_buf)
        self.startup_buf = bytearray()
        if early:
            self.data_received(early)


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
