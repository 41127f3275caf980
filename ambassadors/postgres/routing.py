"""Where a client's (database, user) goes: PgBouncer's `[databases]` and `[users]`.

`--databases` (YAML/JSON, or pgbouncer.ini's `[databases]` section) names the databases
clients may ask for, each with its own host, port, database name, user, password and pool
settings; `*` is the fallback for every other name (its `dbname` defaulting to the name
the client asked for). Without `--databases`, every name goes to --server-host and
--server-port, as before. `--users` (`[users]`) overrides the pool settings of one user.
Each pool's `PoolTarget` is worked out once, when the pool is made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from podkit.ambassadors.postgres.databases import FALLBACK, DatabaseEntry, UserEntry

if TYPE_CHECKING:
    from podkit.ambassadors.postgres.settings import PgAmbassadorSettings


@dataclass(frozen=True)
class PoolTarget:
    """What one pool connects to and how it pools."""

    host: str
    port: int
    dbname: str
    user: str
    forced: bool
    """The database entry names the user: one pool for it, whoever the client (PgBouncer)."""
    password: str | None
    """The database entry's own; None: --password-file, else the user's auth_file entry."""
    pool_size: int
    min_pool_size: int
    reserve_pool_size: int
    pool_mode: Literal["transaction", "session"]
    connect_query: str
    server_lifetime: float
    query_timeout: float
    idle_transaction_timeout: float
    client_idle_timeout: float

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def target_for(settings: PgAmbassadorSettings, database: str, user: str) -> PoolTarget | None:
    """The target of a client of `database` as `user`; None when no entry takes it."""
    entry = DatabaseEntry()
    if settings.databases:
        found = settings.databases.get(database) or settings.databases.get(FALLBACK)
        if found is None:
            return None
        entry = found
    server_user = entry.user or settings.server_user or user
    # PgBouncer looks [users] up by the user it logs in as (the forced one, if any)
    person = settings.users.get(server_user) or UserEntry()

    def first(*values: float | int | None) -> float:
        return next(v for v in values if v is not None)

    return PoolTarget(
        host=entry.host or settings.server_host,
        port=entry.port or settings.server_port,
        dbname=entry.dbname or settings.server_dbname or database,
        user=server_user,
        forced=entry.user is not None,
        password=entry.password.get_secret_value() if entry.password is not None else None,
        pool_size=int(first(person.pool_size, entry.pool_size, settings.pool_size)),
        min_pool_size=int(first(entry.min_pool_size, settings.min_pool_size)),
        reserve_pool_size=int(
            first(person.reserve_pool_size, entry.reserve_pool_size, settings.reserve_pool_size)
        ),
        pool_mode=person.pool_mode or entry.pool_mode or settings.pool_mode,
        connect_query=entry.connect_query or settings.connect_query or "",
        server_lifetime=first(entry.server_lifetime, settings.server_lifetime),
        query_timeout=first(person.query_timeout, settings.query_timeout),
        idle_transaction_timeout=first(
            person.idle_transaction_timeout, settings.idle_transaction_timeout
        ),
        client_idle_timeout=first(person.client_idle_timeout, settings.client_idle_timeout),
    )
