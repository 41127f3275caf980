"""What the ambassador's parts share: settings, counters, the log, TLS and credentials.

The pools, server and client connections and the console each hold this one small
object instead of the `Ambassador` (main.py), which builds it and is one: so no module
imports main back, and each sees only what it uses.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from podkit.ambassadors.postgres import auth, tls
from podkit.ambassadors.postgres.session import REASONS
from podkit.ambassadors.postgres.settings import PgAmbassadorSettings
from podkit.logs import Throttled, get_logger
from podkit.runtime import Runtime, StartupError

LOG_EVERY = 1.0
WAIT_BUCKETS = (0.0001, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0)

Resolver = Callable[[str, int], Awaitable[list[tuple[str, int]]]]


async def resolve(host: str, port: int) -> list[tuple[str, int]]:
    """Every address `host` has now (looked up again for each new server connection).

    The context's `resolve` hook (a `Resolver`); tests put their own in its place."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: list[tuple[str, int]] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        addr = (str(sockaddr[0]), int(sockaddr[1]))
        if addr not in seen:
            seen.append(addr)
    return seen


class HasOwnerPid(Protocol):
    """A server connection as the NotificationResponse pid map sees it."""

    owner_pid: int
    client: Any  # the client it serves now, if any
    expect: Any  # what it owes (a batch in flight when not empty)


class Stats:
    """Plain integers bumped on the hot path; exported at scrape time (metrics.py)."""

    def __init__(self) -> None:
        self.clients_total = 0
        self.clients_refused: dict[str, int] = {}
        self.bytes_from_client = 0  # the admin console's; the pools count their own
        self.prepared_hits = 0
        self.prepared_misses = 0
        self.prepared_reparses = 0
        self.prepared_evictions = 0
        self.prepared_retries = 0
        self.prepared_verifications = 0
        self.prepared_schema_drops = 0
        self.cancels_forwarded = 0
        self.cancels_dropped = 0
        self.server_connect_errors = 0
        self.server_connects = 0
        self.pins_total: dict[str, int] = {}
        self.refused_statements = 0
        self.wait_buckets = [0] * (len(WAIT_BUCKETS) + 1)
        self.wait_time_total = 0.0
        self.waits = 0
        self.protocol_errors = 0
        self.query_wait_timeouts = 0

    def waited(self, seconds: float) -> None:
        self.wait_buckets[bisect.bisect_left(WAIT_BUCKETS, seconds)] += 1
        self.wait_time_total += seconds
        self.waits += 1

    def refused(self, reason: str) -> None:
        self.clients_refused[reason] = self.clients_refused.get(reason, 0) + 1


class Context:
    """The shared state of one ambassador (main.Ambassador is one)."""

    def __init__(self, settings: PgAmbassadorSettings, runtime: Runtime | None) -> None:
        self.settings = settings
        self.runtime = runtime
        self.log = runtime.log if runtime is not None else get_logger("pg_ambassador")
        self.loop = asyncio.get_running_loop()
        self.stats = Stats()
        self.pinned: collections.Counter[str] = collections.Counter({r: 0 for r in REASONS})
        # (address, backend pid) -> server connection: NotificationResponse pids
        self.server_pids: dict[tuple[tuple[str, int], int], HasOwnerPid] = {}
        self.draining = False
        self.closing = False
        self._throttled = Throttled(self.log, LOG_EVERY)
        # how the server host is looked up, for each new server connection (a hook: tests
        # replace it to move the host to another address)
        self.resolve: Resolver = resolve
        password = (
            settings.password_file
            if settings.password_file is not None
            else (
                settings.password  # the pgbouncer image's DATABASES_PASSWORD
            )
        )
        self.server_password = password.get_secret_value() if password is not None else None
        try:
            self.server_tls = tls.server_tls(settings.server_tls_mode, settings.server_tls_ca_file)
            self.client_tls: ssl.SSLContext | None = (
                tls.client_tls_context(
                    settings.client_tls_cert_file,
                    settings.client_tls_key_file,  # type: ignore[arg-type]
                    settings.client_tls_ca_file,
                )
                if settings.client_tls_cert_file
                else None
            )
        except tls.TlsError as exc:
            raise StartupError("tls_config_invalid", error=str(exc)) from None
        self.credentials: auth.Credentials | None = None
        try:
            if settings.auth_file:
                self.credentials = auth.Credentials.from_auth_file(settings.auth_file)
            elif self.server_password is not None:
                user = settings.server_user or "postgres"
                self.credentials = auth.Credentials.single(user, self.server_password or "")
        except auth.CredentialsError as exc:
            raise StartupError("auth_file_invalid", error=str(exc)) from None

    def lookup(self, user: str) -> str | None:
        return self.credentials(user) if self.credentials is not None else None

    def warn(self, event: str, **fields: Any) -> None:
        """Log a per-connection problem at most once a second; the metrics count them all."""
        self._throttled.warning(event, **fields)
