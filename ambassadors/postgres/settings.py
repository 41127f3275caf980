"""Settings of `podkit pg-ambassador`: PgBouncer's names and defaults where they exist.

The pgbouncer images' env vars (`DATABASES_*`, `PGBOUNCER_*`) are aliases of these
settings, so the classic pod runs with only its image changed; `compat_env` handles the
ones that are not one-to-one (the listen address in two variables, PgBouncer's auth type
names) and those podkit does not support (one log line, or exit 2 when ignoring them
would change what clients or servers see).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator

from podkit.ambassadors.postgres import auth, tls
from podkit.ambassadors.postgres.databases import DatabaseEntry, UserEntry
from podkit.config import (
    ByteSize,
    ConfigError,
    Duration,
    ForeignConfig,
    HelperSettings,
    HostPort,
    Notice,
    SecretFile,
    split_host_port,
)
from podkit.naming import Alias

PoolMode = Literal["transaction", "session"]


class PgAmbassadorSettings(HelperSettings):
    listen: HostPort = Field(
        "127.0.0.1:5432",
        description="address the application connects to (take another port when 5432 is "
        "in use, e.g. 127.0.0.1:6432); env PGBOUNCER_LISTEN_ADDR and PGBOUNCER_LISTEN_PORT",
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
    pgbouncer_config: Annotated[
        str | None,
        ForeignConfig(
            reader="podkit.ambassadors.postgres.pgbouncer_ini:read",
            default_path="/etc/pgbouncer/pgbouncer.ini",
        ),
    ] = Field(
        None,
        description="read this pgbouncer.ini ([databases], [users], [pgbouncer], %include; "
        "its auth_file is the userlist.txt); default in the image: "
        "/etc/pgbouncer/pgbouncer.ini if it exists. podkit's own settings win over it",
        json_schema_extra={"metavar": "FILE"},
    )
    databases: dict[str, DatabaseEntry] = Field(
        default_factory=dict,
        description="the databases clients may ask for (YAML), PgBouncer's [databases]: "
        "NAME: {host, port, dbname, user, password, pool_size, min_pool_size, "
        "reserve_pool_size, pool_mode, connect_query, server_lifetime}, unset keys from the "
        "settings here; '*' takes every other name; empty: every name goes to --server-host",
    )
    users: dict[str, UserEntry] = Field(
        default_factory=dict,
        description="per-user pool settings (YAML), PgBouncer's [users]: NAME: {pool_mode, "
        "pool_size, reserve_pool_size, query_timeout, idle_transaction_timeout, "
        "client_idle_timeout}",
    )
    password_file: SecretFile = Field(
        None,
        description="file with the PostgreSQL password of the server user",
    )
    password: Annotated[SecretStr | None, Alias(env=("DATABASES_PASSWORD",))] = Field(
        None,
        description="PostgreSQL password of the server user, from the environment "
        "(--password-file wins; a file from a Secret is better); env DATABASES_PASSWORD",
    )
    auth_file: Annotated[str | None, Alias(env=("PGBOUNCER_AUTH_FILE",))] = Field(
        None,
        description='PgBouncer userlist.txt ("user" "password, md5 hash or SCRAM verifier" '
        "per line) with the applications' credentials",
        json_schema_extra={"metavar": "PATH"},
    )
    client_auth: Literal["scram", "md5", "trust"] = Field(
        "scram",
        description="how applications prove who they are: scram (SCRAM-SHA-256), md5, or trust "
        "(no password); checked against --auth-file, else the server user's --password-file; "
        "env PGBOUNCER_AUTH_TYPE (scram-sha-256, md5, trust, any)",
    )
    server_tls_mode: Annotated[
        Literal["disable", "prefer", "require", "verify-ca", "verify-full"],
        Alias(env=("PGBOUNCER_SERVER_TLS_SSLMODE",)),
    ] = Field("prefer", description="TLS towards PostgreSQL (libpq's sslmode names)")
    server_tls_ca_file: Annotated[str | None, Alias(env=("PGBOUNCER_SERVER_TLS_CA_FILE",))] = Field(
        None, description="CA bundle for verify-ca / verify-full (default: the system CAs)",
        json_schema_extra={"metavar": "PATH"},
    )  # fmt: skip
    client_tls_cert_file: Annotated[
        str | None, Alias(env=("PGBOUNCER_CLIENT_TLS_CERT_FILE",))
    ] = Field(
        None, description="certificate (PEM) offered to applications that ask for TLS",
        json_schema_extra={"metavar": "PATH"},
    )  # fmt: skip
    client_tls_key_file: Annotated[str | None, Alias(env=("PGBOUNCER_CLIENT_TLS_KEY_FILE",))] = (
        Field(
            None,
            description="key of --client-tls-cert-file (PEM)",
            json_schema_extra={"metavar": "PATH"},
        )
    )
    client_tls_ca_file: Annotated[str | None, Alias(env=("PGBOUNCER_CLIENT_TLS_CA_FILE",))] = Field(
        None, description="applications must show a certificate signed by this CA",
        json_schema_extra={"metavar": "PATH"},
    )  # fmt: skip
    pool_mode: Annotated[PoolMode, Alias(env=("DATABASES_POOL_MODE", "PGBOUNCER_POOL_MODE"))] = (
        Field(
            "transaction",
            description="transaction: a server per transaction; session: a server per client "
            "connection; env PGBOUNCER_POOL_MODE",
        )
    )
    pool_size: Annotated[
        int,
        Alias(
            flags=("--default-pool-size",),
            env=("DATABASES_POOL_SIZE", "PGBOUNCER_DEFAULT_POOL_SIZE"),
        ),
    ] = Field(
        20, ge=1, description="server connections per (database, user); env "
        "PGBOUNCER_DEFAULT_POOL_SIZE",
    )  # fmt: skip
    min_pool_size: Annotated[int, Alias(env=("PGBOUNCER_MIN_POOL_SIZE",))] = Field(
        0, ge=0, description="server connections kept open per pool even when idle"
    )
    reserve_pool_size: Annotated[
        int, Alias(env=("DATABASES_RESERVE_POOL", "PGBOUNCER_RESERVE_POOL_SIZE"))
    ] = Field(
        0, ge=0, description="extra server connections for a pool whose clients waited "
        "longer than --reserve-pool-timeout",
    )  # fmt: skip
    reserve_pool_timeout: Annotated[Duration, Alias(env=("PGBOUNCER_RESERVE_POOL_TIMEOUT",))] = (
        Field(5.0, description="wait after which a client may use the reserve pool")
    )
    max_client_conn: Annotated[int, Alias(env=("PGBOUNCER_MAX_CLIENT_CONN",))] = Field(
        100, ge=1, description="client connections accepted at once; env "
        "PGBOUNCER_MAX_CLIENT_CONN",
    )  # fmt: skip
    query_wait_timeout: Annotated[Duration, Alias(env=("PGBOUNCER_QUERY_WAIT_TIMEOUT",))] = Field(
        120.0, description="how long a client may wait for a server (0: forever)"
    )
    query_timeout: Annotated[Duration, Alias(env=("PGBOUNCER_QUERY_TIMEOUT",))] = Field(
        0.0, description="cancel a query running longer than this (0: never)"
    )
    idle_transaction_timeout: Annotated[
        Duration, Alias(env=("PGBOUNCER_IDLE_TRANSACTION_TIMEOUT",))
    ] = Field(0.0, description="close a client idle inside a transaction this long (0: never)")
    client_idle_timeout: Annotated[Duration, Alias(env=("PGBOUNCER_CLIENT_IDLE_TIMEOUT",))] = Field(
        0.0, description="close a client idle (no transaction) this long (0: never)"
    )
    client_login_timeout: Annotated[Duration, Alias(env=("PGBOUNCER_CLIENT_LOGIN_TIMEOUT",))] = (
        Field(60.0, gt=0, description="a client must finish its login within this time")
    )
    server_lifetime: Annotated[Duration, Alias(env=("PGBOUNCER_SERVER_LIFETIME",))] = Field(
        3600.0, description="close a server connection this old when it is released (0: never)"
    )
    server_idle_timeout: Annotated[Duration, Alias(env=("PGBOUNCER_SERVER_IDLE_TIMEOUT",))] = Field(
        600.0, description="close a server connection idle in the pool this long (0: never)"
    )
    server_connect_timeout: Annotated[
        Duration, Alias(env=("PGBOUNCER_SERVER_CONNECT_TIMEOUT",))
    ] = Field(15.0, gt=0, description="timeout of connecting and logging in to PostgreSQL")
    connect_query: Annotated[str | None, Alias(env=("DATABASES_CONNECT_QUERY",))] = Field(
        None,
        min_length=1,
        description="run on each new server connection before any client gets it (an error is "
        "logged, the connection used); a --databases entry's own connect_query wins",
    )
    server_reset_query: Annotated[str, Alias(env=("PGBOUNCER_SERVER_RESET_QUERY",))] = Field(
        "DISCARD ALL",
        description="run on a server before another client gets it, after a session-mode or "
        "pinned client",
    )
    max_prepared_statements: Annotated[int, Alias(env=("PGBOUNCER_MAX_PREPARED_STATEMENTS",))] = (
        Field(200, ge=1, description="prepared statements kept per server connection (LRU)")
    )
    on_session_state: Literal["pin", "error"] = Field(
        "pin",
        description="session state transaction pooling cannot carry (a SET it cannot read "
        "with certainty, LISTEN, advisory locks while held, temp tables, WITH HOLD cursors, "
        "SQL PREPARE): pin the client to its server, "
        "or refuse the statement with an error (transaction mode; in session mode every "
        "client keeps its server and its state)",
    )
    session_settings: Literal["replay", "pin"] = Field(
        "replay",
        description="a session SET, RESET or set_config(..., false) of a setting the server "
        "does not report (transaction mode): replay it on whichever server the client gets "
        "next (read back from the server at the transaction's end), or pin the client to its "
        "server as pinning poolers do (for comparison)",
    )
    max_packet_size: Annotated[ByteSize, Alias(env=("PGBOUNCER_MAX_PACKET_SIZE",))] = Field(
        256 * 1024**2,
        ge=1024,
        description="longest protocol message a client may send (a longer one is refused)",
    )
    admin_users: Annotated[list[str], Alias(env=("PGBOUNCER_ADMIN_USERS",))] = Field(
        default_factory=list,
        description="users allowed on the `pgbouncer` admin database (empty: every user)",
    )
    stats_users: Annotated[list[str], Alias(env=("PGBOUNCER_STATS_USERS",))] = Field(
        default_factory=list,
        description="users allowed on the `pgbouncer` admin database for SHOW commands only "
        "(with --admin-users or this set, nobody else gets in)",
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

    @field_validator("databases")
    @classmethod
    def _console_name_reserved(cls, value: dict[str, DatabaseEntry]) -> dict[str, DatabaseEntry]:
        if "pgbouncer" in value:
            raise ValueError("the database name 'pgbouncer' is the admin console's")
        return value

    @field_validator("admin_users", "stats_users", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        # PgBouncer's "a, b" in one value, as in PGBOUNCER_ADMIN_USERS or pgbouncer.ini
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return [name.strip() for item in value for name in item.split(",") if name.strip()]
        return value

    @field_validator("password", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    # Files are loaded here once, so a bad one is a configuration error (exit 2, one
    # line) rather than a failure at start-up; run() loads them again to use them.
    @field_validator("auth_file")
    @classmethod
    def _auth_file_loads(cls, value: str | None) -> str | None:
        if value is not None:
            auth.Credentials.from_auth_file(value)  # CredentialsError is a ValueError
        return value

    @field_validator("client_auth")
    @classmethod
    def _credentials_for(cls, value: str, info: ValidationInfo) -> str:
        data = info.data
        if value != "trust" and not any(
            data.get(name) is not None for name in ("auth_file", "password_file", "password")
        ):
            raise ValueError(
                "needs credentials to check: --auth-file, or the server user's "
                "--password-file (or env DATABASES_PASSWORD); or --client-auth trust"
            )
        return value

    @field_validator("server_tls_ca_file")
    @classmethod
    def _ca_loads(cls, value: str | None) -> str | None:
        if value is not None:
            tls.check_ca_file("server TLS CA file", value)  # TlsConfigError is a ValueError
        return value

    @field_validator("client_tls_key_file")
    @classmethod
    def _cert_and_key(cls, value: str | None, info: ValidationInfo) -> str | None:
        cert = info.data.get("client_tls_cert_file")
        if bool(value) != bool(cert):
            raise ValueError("--client-tls-cert-file and --client-tls-key-file go together")
        if value and cert:
            tls.client_tls_context(cert, value)
        return value

    @field_validator("client_tls_ca_file")
    @classmethod
    def _client_ca_loads(cls, value: str | None) -> str | None:
        if value is not None:
            tls.check_ca_file("client TLS CA file", value)
        return value

    @classmethod
    def compat_env(
        cls, environ: Mapping[str, str], notices: list[Notice]
    ) -> dict[str, tuple[Any, str]]:
        found: dict[str, tuple[Any, str]] = {}
        listen = _compat_listen(environ)
        if listen is not None:
            found["listen"] = listen
        auth_type = _first(environ, "PGBOUNCER_AUTH_TYPE")
        if auth_type is not None:
            name, value = auth_type
            mapped = AUTH_TYPES.get(value)
            if mapped is None:
                raise ConfigError(
                    f"invalid setting {name}={value}: podkit supports "
                    f"{', '.join(AUTH_TYPES)} (--client-auth); not {value}"
                )
            found["client_auth"] = (mapped, name)
        _check_unsupported(cls, environ, notices)
        return found

    @field_validator("server_reset_query")
    @classmethod
    def _no_nul(cls, value: str) -> str:
        if "\x00" in value:
            raise ValueError("may not contain NUL")
        return value


# --- the pgbouncer images' env ----------------------------------------------------------
#
# pgbouncer/pgbouncer writes PGBOUNCER_<KEY> into pgbouncer.ini's [pgbouncer] section and
# DATABASES_<KEY> into the `*` database's connection string; bitnami/pgbouncer reads
# PGBOUNCER_<KEY> too, with PGBOUNCER_PORT and PGBOUNCER_LISTEN_ADDRESS for the listener.
# Those that map to a setting are `Alias`es above or handled in `compat_env`; the rest
# are listed here.

LISTEN_ADDR_ENV = ("PGBOUNCER_LISTEN_ADDR", "PGBOUNCER_LISTEN_ADDRESS")
LISTEN_PORT_ENV = ("PGBOUNCER_LISTEN_PORT", "PGBOUNCER_PORT")
AUTH_TYPES = {"scram-sha-256": "scram", "md5": "md5", "trust": "trust", "any": "trust"}

REFUSED: dict[str, tuple[tuple[str, ...], str]] = {
    # name: (values that mean what podkit does anyway, what podkit cannot do)
    "PGBOUNCER_UNIX_SOCKET_DIR": (("",), "podkit listens on TCP only (--listen)"),
    "PGBOUNCER_SOCKET_DIR": (("",), "podkit listens on TCP only (--listen)"),
    "PGBOUNCER_AUTH_HBA_FILE": ((), "no pg_hba-style rules for clients"),
    "PGBOUNCER_AUTH_IDENT_FILE": ((), "no ident maps for clients"),
    "PGBOUNCER_AUTH_USER": ((), "no auth_query login: use --auth-file"),
    "PGBOUNCER_AUTH_QUERY": ((), "no auth_query login: use --auth-file"),
    "PGBOUNCER_AUTH_DBNAME": ((), "no auth_query login: use --auth-file"),
    "DATABASES_AUTH_USER": ((), "no auth_query login: use --auth-file"),
    "PGBOUNCER_USERLIST": ((), "credentials come from --auth-file"),
    "PGBOUNCER_MAX_DB_CONNECTIONS": (("0",), "no per-database connection limit"),
    "PGBOUNCER_MAX_USER_CONNECTIONS": (("0",), "no per-user connection limit"),
    "DATABASES_MAX_DB_CONNECTIONS": (("0",), "no per-database connection limit"),
    "DATABASES_CLIENT_ENCODING": ((), "server connections take the client's settings"),
    "DATABASES_DATESTYLE": ((), "server connections take the client's settings"),
    "DATABASES_TIMEZONE": ((), "server connections take the client's settings"),
    "PGBOUNCER_SERVER_RESET_QUERY_ALWAYS": (
        ("0",),
        "the reset query runs only after session mode or a pinned client",
    ),
    "PGBOUNCER_DISABLE_PQEXEC": (("0",), "multi-statement queries are not refused"),
    "PGBOUNCER_APPLICATION_NAME_ADD_HOST": (("0",), "application_name is passed unchanged"),
    "PGBOUNCER_TRANSACTION_TIMEOUT": (
        ("0",),
        "no transaction timeout: see --idle-transaction-timeout",
    ),
    "PGBOUNCER_SERVER_TLS_CERT_FILE": ((), "no client certificate towards PostgreSQL"),
    "PGBOUNCER_SERVER_TLS_KEY_FILE": ((), "no client certificate towards PostgreSQL"),
    "PGBOUNCER_CLIENT_TLS_SSLMODE": (
        ("disable", "allow", "prefer"),
        "TLS is offered when --client-tls-cert-file is set, never required",
    ),
    "PGBOUNCER_CLIENT_TLS_PROTOCOLS": (("secure", "tlsv1.2,tlsv1.3"), "TLS 1.2 and 1.3 only"),
    "PGBOUNCER_SERVER_TLS_PROTOCOLS": (("secure", "tlsv1.2,tlsv1.3"), "TLS 1.2 and 1.3 only"),
    "PGBOUNCER_CLIENT_TLS_CIPHERS": (("default",), "OpenSSL's default ciphers only"),
    "PGBOUNCER_SERVER_TLS_CIPHERS": (("default",), "OpenSSL's default ciphers only"),
    "PGBOUNCER_CLIENT_TLS13_CIPHERS": (("",), "OpenSSL's default ciphers only"),
    "PGBOUNCER_SERVER_TLS13_CIPHERS": (("",), "OpenSSL's default ciphers only"),
    "PGBOUNCER_CLIENT_TLS_ECDHCURVE": (("auto",), "OpenSSL's default curves only"),
    "PGBOUNCER_CLIENT_TLS_DHEPARAMS": (("auto", "none"), "OpenSSL's default groups only"),
}
# Mapped names (Aliases) with a value that means something else in PgBouncer.
REFUSED_VALUES: dict[str, tuple[tuple[str, ...], str]] = {
    "PGBOUNCER_SERVER_LIFETIME": (
        ("0",),
        "PgBouncer's 0 uses a server connection once; podkit has no such mode",
    ),
}

IGNORED = {
    # logging, daemon and tuning knobs: podkit logs JSON to stderr and tunes itself
    "PGBOUNCER_LOGFILE", "PGBOUNCER_LOG_FILE", "PGBOUNCER_PIDFILE", "PGBOUNCER_SYSLOG",
    "PGBOUNCER_SYSLOG_IDENT", "PGBOUNCER_SYSLOG_FACILITY", "PGBOUNCER_LOG_CONNECTIONS",
    "PGBOUNCER_LOG_DISCONNECTIONS", "PGBOUNCER_LOG_POOLER_ERRORS", "PGBOUNCER_LOG_STATS",
    "PGBOUNCER_STATS_PERIOD", "PGBOUNCER_VERBOSE", "PGBOUNCER_USER", "PGBOUNCER_CONFFILE",
    "PGBOUNCER_JOB_NAME", "PGBOUNCER_UNIX_SOCKET_MODE", "PGBOUNCER_UNIX_SOCKET_GROUP",
    "PGBOUNCER_SOCKET_MODE", "PGBOUNCER_SOCKET_GROUP", "PGBOUNCER_DAEMON_USER",
    "PGBOUNCER_DAEMON_GROUP", "PGBOUNCER_PKT_BUF", "PGBOUNCER_SBUF_LOOPCNT",
    "PGBOUNCER_LISTEN_BACKLOG", "PGBOUNCER_SUSPEND_TIMEOUT", "PGBOUNCER_TCP_DEFER_ACCEPT",
    "PGBOUNCER_TCP_KEEPALIVE", "PGBOUNCER_TCP_KEEPCNT", "PGBOUNCER_TCP_KEEPIDLE",
    "PGBOUNCER_TCP_KEEPINTVL", "PGBOUNCER_TCP_USER_TIMEOUT", "PGBOUNCER_SO_REUSEPORT",
    "PGBOUNCER_PEER_ID", "PGBOUNCER_EXTRA_FLAGS", "PGBOUNCER_INIT_SLEEP_TIME",
    "PGBOUNCER_INIT_MAX_RETRIES", "PGBOUNCER_FORCE_INITSCRIPTS",
    "PGBOUNCER_FAIL_ON_INVALID_DSN_FILE",
    # server checks and DNS: podkit resolves the host for every new server connection
    "PGBOUNCER_SERVER_CHECK_DELAY", "PGBOUNCER_SERVER_CHECK_QUERY",
    "PGBOUNCER_SERVER_LOGIN_RETRY", "PGBOUNCER_SERVER_ROUND_ROBIN",
    "PGBOUNCER_SERVER_FAST_CLOSE", "PGBOUNCER_DNS_MAX_TTL", "PGBOUNCER_DNS_NXDOMAIN_TTL",
    "PGBOUNCER_DNS_ZONE_CHECK_PERIOD", "PGBOUNCER_AUTODB_IDLE_TIMEOUT",
    "PGBOUNCER_CANCEL_WAIT_TIMEOUT", "PGBOUNCER_IGNORE_STARTUP_PARAMETERS",
    "PGBOUNCER_TRACK_EXTRA_PARAMETERS",
    # client database names: podkit takes any (--server-dbname or the client's own)
    "DATABASES_CLIENT_SIDE_DBNAME", "PGBOUNCER_DATABASE", "PGBOUNCER_SET_DATABASE_USER",
    "PGBOUNCER_SET_DATABASE_PASSWORD",
}  # fmt: skip


def _first(environ: Mapping[str, str], *names: str) -> tuple[str, str] | None:
    """The first of `names` set in the environment, with its value."""
    for name in names:
        value = environ.get(name)
        if value is not None and value.strip():
            return name, value.strip()
    return None


def _compat_listen(environ: Mapping[str, str]) -> tuple[str, str] | None:
    """PGBOUNCER_LISTEN_ADDR and PGBOUNCER_LISTEN_PORT as one --listen HOST:PORT; the
    one not given keeps podkit's default (127.0.0.1, 5432)."""
    addr = _first(environ, *LISTEN_ADDR_ENV)
    port = _first(environ, *LISTEN_PORT_ENV)
    if addr is None and port is None:
        return None
    default_host, default_port = split_host_port(
        str(PgAmbassadorSettings.model_fields["listen"].default)
    )
    host = default_host
    if addr is not None:
        name, value = addr
        if "," in value:
            raise ConfigError(
                f"invalid setting {name}={value}: podkit listens on one address; "
                "give one (or --listen HOST:PORT)"
            )
        host = "0.0.0.0" if value == "*" else value.strip("[]")
    number = default_port
    if port is not None:
        name, value = port
        if not value.isdigit() or not 1 <= int(value) <= 65535:
            raise ConfigError(f"invalid setting {name}={value}: expected a port, 1 to 65535")
        number = int(value)
    host = f"[{host}]" if ":" in host else host
    variable = " and ".join(found[0] for found in (addr, port) if found is not None)
    return f"{host}:{number}", variable


def _check_unsupported(
    settings_cls: type[HelperSettings], environ: Mapping[str, str], notices: list[Notice]
) -> None:
    known = {*LISTEN_ADDR_ENV, *LISTEN_PORT_ENV, "PGBOUNCER_AUTH_TYPE"}
    for info in settings_cls.model_fields.values():
        alias = next((m for m in info.metadata if isinstance(m, Alias)), None)
        if alias is not None:
            known.update(alias.env)
    for name in sorted(environ):
        if not name.startswith(("PGBOUNCER_", "DATABASES_")):
            continue
        value = environ[name].strip()
        if name in known:
            values, why = REFUSED_VALUES.get(name, ((), ""))
            if value in values:
                raise ConfigError(f"unsupported setting {name}={value}: {why}")
            continue
        refused = REFUSED.get(name)
        if refused is not None and value and value.lower() not in refused[0]:
            shown = "(secret)" if "USERLIST" in name else value
            raise ConfigError(
                f"unsupported setting {name}={shown}: {refused[1]}; podkit cannot honour it"
            )
        reason = refused[1] if refused is not None else (
            "ignored" if name in IGNORED else "not a setting podkit knows")  # fmt: skip
        notices.append(Notice("unsupported_setting", {"name": name, "ignored": reason}))
