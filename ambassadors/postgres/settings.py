"""Settings of `podkit pg-ambassador`: PgBouncer's names and defaults where they exist.

The pgbouncer image's env vars (`DATABASES_*`, `PGBOUNCER_*`) are aliases of these
settings, so the classic pod runs with only its image changed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator

from podkit.config import Alias, ByteSize, Duration, HelperSettings, HostPort, SecretFile

PoolMode = Literal["transaction", "session"]


class PgAmbassadorSettings(HelperSettings):
    listen: HostPort = Field(
        "127.0.0.1:5432",
        description="address the application connects to",
        json_schema_extra={"metavar": "HOST:PORT"},
    )
    server_host: Annotated[str, Alias(env=("DATABASES_HOST",))] = Field(
        "127.0.0.1",
        min_length=1,
        description="PostgreSQL host (resolved again for every new server connection); "
        "env DATABASES_HOST",
    )
    server_port: Annotated[int, Alias(env=("DATABASES_PORT",))] = Field(
        5432, ge=1, le=65535, description="PostgreSQL port; env DATABASES_PORT"
    )
    server_user: Annotated[str | None, Alias(env=("DATABASES_USER",))] = Field(
        None,
        description="log in to PostgreSQL as this user whatever the client's user "
        "(default: the client's); env DATABASES_USER",
    )
    server_dbname: Annotated[str | None, Alias(env=("DATABASES_DBNAME",))] = Field(
        None,
        description="connect every client database to this PostgreSQL database "
        "(default: the client's); env DATABASES_DBNAME",
    )
    password_file: SecretFile = Field(
        None,
        description="file with the PostgreSQL password of the server user "
        "(env DATABASES_PASSWORD is the fallback)",
    )
    client_auth: Literal["scram", "md5", "trust"] = Field(
        "scram",
        description="how applications prove who they are: scram (SCRAM-SHA-256), md5, or trust "
        "(no password); checked against --auth-file, else the server user's --password-file",
    )
    auth_file: str | None = Field(
        None,
        description='PgBouncer userlist.txt ("user" "password, md5 hash or SCRAM verifier" '
        "per line) with the applications' credentials",
        json_schema_extra={"metavar": "PATH"},
    )
    server_tls_mode: Literal["disable", "prefer", "require", "verify-ca", "verify-full"] = Field(
        "prefer", description="TLS towards PostgreSQL (libpq's sslmode names)"
    )
    server_tls_ca_file: str | None = Field(
        None, description="CA bundle for verify-ca / verify-full (default: the system CAs)",
        json_schema_extra={"metavar": "PATH"},
    )  # fmt: skip
    client_tls_cert_file: str | None = Field(
        None, description="certificate (PEM) offered to applications that ask for TLS",
        json_schema_extra={"metavar": "PATH"},
    )  # fmt: skip
    client_tls_key_file: str | None = Field(
        None,
        description="key of --client-tls-cert-file (PEM)",
        json_schema_extra={"metavar": "PATH"},
    )
    client_tls_ca_file: str | None = Field(
        None, description="applications must show a certificate signed by this CA",
        json_schema_extra={"metavar": "PATH"},
    )  # fmt: skip
    pool_mode: Annotated[PoolMode, Alias(env=("PGBOUNCER_POOL_MODE",))] = Field(
        "transaction",
        description="transaction: a server per transaction; session: a server per client "
        "connection; env PGBOUNCER_POOL_MODE",
    )
    pool_size: Annotated[
        int,
        Alias(flags=("--default-pool-size",), env=("PGBOUNCER_DEFAULT_POOL_SIZE",)),
    ] = Field(
        20, ge=1, description="server connections per (database, user); env "
        "PGBOUNCER_DEFAULT_POOL_SIZE",
    )  # fmt: skip
    min_pool_size: Annotated[int, Alias(env=("PGBOUNCER_MIN_POOL_SIZE",))] = Field(
        0, ge=0, description="server connections kept open per pool even when idle"
    )
    reserve_pool_size: Annotated[int, Alias(env=("PGBOUNCER_RESERVE_POOL_SIZE",))] = Field(
        0, ge=0, description="extra server connections for a pool whose clients waited "
        "longer than --reserve-pool-timeout",
    )  # fmt: skip
    reserve_pool_timeout: Duration = Field(
        5.0, description="wait after which a client may use the reserve pool"
    )
    max_client_conn: Annotated[int, Alias(env=("PGBOUNCER_MAX_CLIENT_CONN",))] = Field(
        100, ge=1, description="client connections accepted at once; env "
        "PGBOUNCER_MAX_CLIENT_CONN",
    )  # fmt: skip
    query_wait_timeout: Annotated[Duration, Alias(env=("PGBOUNCER_QUERY_WAIT_TIMEOUT",))] = Field(
        120.0, description="how long a client may wait for a server (0: forever)"
    )
    query_timeout: Duration = Field(
        0.0, description="cancel a query running longer than this (0: never)"
    )
    idle_transaction_timeout: Duration = Field(
        0.0, description="close a client idle inside a transaction this long (0: never)"
    )
    client_idle_timeout: Duration = Field(
        0.0, description="close a client idle (no transaction) this long (0: never)"
    )
    client_login_timeout: Duration = Field(
        60.0, gt=0, description="a client must finish its login within this time"
    )
    server_lifetime: Duration = Field(
        3600.0, description="close a server connection this old when it is released (0: never)"
    )
    server_idle_timeout: Duration = Field(
        600.0, description="close a server connection idle in the pool this long (0: never)"
    )
    server_connect_timeout: Duration = Field(
        15.0, gt=0, description="timeout of connecting and logging in to PostgreSQL"
    )
    server_reset_query: str = Field(
        "DISCARD ALL",
        description="run on a server before another client gets it, after a session-mode or "
        "pinned client",
    )
    max_prepared_statements: int = Field(
        200, ge=1, description="prepared statements kept per server connection (LRU)"
    )
    on_session_state: Literal["pin", "error"] = Field(
        "pin",
        description="session state transaction pooling cannot carry (SET, LISTEN, advisory "
        "locks, temp tables, WITH HOLD cursors, SQL PREPARE): pin the client to its server, "
        "or refuse the statement with an error (transaction mode; in session mode every "
        "client keeps its server and its state)",
    )
    max_packet_size: ByteSize = Field(
        256 * 1024**2,
        ge=1024,
        description="longest protocol message a client may send (a longer one is refused)",
    )
    admin_users: list[str] = Field(
        default_factory=list,
        description="users allowed on the `pgbouncer` admin database (empty: every user)",
    )
    stats_period: Duration = Field(
        1.0, gt=0, description="how often pools are checked for timeouts and idle servers"
    )

    @field_validator(
        "auth_file", "server_tls_ca_file", "client_tls_cert_file", "client_tls_key_file",
        "client_tls_ca_file",
    )  # fmt: skip
    @classmethod
    def _file_exists(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).is_file():
            raise ValueError(f"file {value} does not exist")
        return value

    @field_validator("client_tls_key_file")
    @classmethod
    def _cert_and_key(cls, value: str | None, info: ValidationInfo) -> str | None:
        if bool(value) != bool(info.data.get("client_tls_cert_file")):
            raise ValueError("--client-tls-cert-file and --client-tls-key-file go together")
        return value

    @field_validator("server_reset_query")
    @classmethod
    def _no_nul(cls, value: str) -> str:
        if "\x00" in value:
            raise ValueError("may not contain NUL")
        return value
