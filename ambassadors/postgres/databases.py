"""A `[databases]` and a `[users]` entry (PgBouncer's), as settings hold them.

`--databases` (YAML/JSON, or pgbouncer.ini's `[databases]` section) names the databases
clients may ask for, each with its own host, port, database name, user, password and pool
settings; `*` is the fallback for every other name. `--users` (`[users]`) overrides the
pool settings of one user. routing.py turns them into each pool's target.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from podkit.config import Duration

FALLBACK = "*"


class DatabaseEntry(BaseModel):
    """One database clients may connect to (a `[databases]` line); unset keys inherit
    podkit's settings (--server-host, --server-port, --pool-size, ...)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str | None = Field(None, min_length=1)
    port: int | None = Field(None, ge=1, le=65535)
    dbname: str | None = Field(None, min_length=1)
    user: str | None = Field(None, min_length=1)
    password: SecretStr | None = None
    pool_size: int | None = Field(None, ge=1)
    min_pool_size: int | None = Field(None, ge=0)
    reserve_pool_size: int | None = Field(None, ge=0)
    pool_mode: Literal["transaction", "session"] | None = None
    connect_query: str | None = Field(None, min_length=1)
    server_lifetime: Duration | None = Field(None, gt=0)


class UserEntry(BaseModel):
    """Pool settings of one user (a `[users]` line); they win over the database's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pool_mode: Literal["transaction", "session"] | None = None
    pool_size: int | None = Field(None, ge=1)
    reserve_pool_size: int | None = Field(None, ge=0)
    query_timeout: Duration | None = None
    idle_transaction_timeout: Duration | None = None
    client_idle_timeout: Duration | None = None
