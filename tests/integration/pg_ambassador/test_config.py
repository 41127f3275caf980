"""`podkit pg-ambassador` configuration through the CLI: bad settings exit 2 with one line
on stderr naming the setting, the pgbouncer images' `PGBOUNCER_*`/`DATABASES_*` env (the
listener, the auth type, names podkit does not support), DATABASES_PASSWORD as a setting."""

from __future__ import annotations

import asyncio
import os
import subprocess

import asyncpg
import pytest

from podkit_dev.servers import HOST, free_port, podkit_argv
from tests.integration.pg_ambassador import kit

SECRET = "Env-Secret-b41e07"


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`podkit pg-ambassador ARGS` on free ports, with the pgbouncer names of this test's
    environment only (none inherited from the machine)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PGBOUNCER_", "DATABASES_"))}
    argv = [*podkit_argv(), "pg-ambassador", "--admin-addr", f"{HOST}:0", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60,
                          env={**base, **(env or {})}, check=False)  # fmt: skip


def assert_config_error(done: subprocess.CompletedProcess[str], *names: str) -> str:
    """Exit 2, one line on stderr naming each of `names`, no traceback."""
    lines = done.stderr.splitlines()
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert len(lines) == 1, done.stderr
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


# --- bad configuration: exit 2, one line ------------------------------------------------------


TRUST = ["--client-auth", "trust"]


@pytest.mark.parametrize(
    ("args", "names"),
    [
        # a certificate and a key that is not its own
        ([*TRUST, "--client-tls-cert-file", "{good_cert}", "--client-tls-key-file", "{other_key}"],
         ["--client-tls-key-file", "{good_cert}", "{other_key}", "cannot be loaded"]),
        ([*TRUST, "--client-tls-cert-file", "{garbage}", "--client-tls-key-file", "{garbage}"],
         ["--client-tls-key-file", "{garbage}"]),
        ([*TRUST, "--client-tls-cert-file", "{good_cert}", "--client-tls-key-file", "{good_key}",
          "--client-tls-ca-file", "{garbage}"], ["--client-tls-ca-file", "{garbage}"]),
        ([*TRUST, "--server-tls-mode", "verify-ca", "--server-tls-ca-file", "{garbage}"],
         ["--server-tls-ca-file", "{garbage}", "cannot be loaded"]),
        (["--auth-file", "{latin1}"], ["--auth-file", "{latin1}", "not UTF-8"]),
        (["--auth-file", "{unquoted}"], ["--auth-file", "{unquoted}:1"]),
        # SCRAM (the default) or md5 with nothing to check the passwords against
        (["--client-auth", "md5"], ["--client-auth", "md5", "--auth-file"]),
        ([], ["--client-auth", "scram", "--auth-file"]),
    ],
)  # fmt: skip
def test_bad_configuration_exits_2_with_one_line(pki, tmp_path, args, names) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    latin1 = tmp_path / "userlist-latin1.txt"
    latin1.write_bytes(b'"app" "caf\xe9"\n')
    unquoted = tmp_path / "userlist-unquoted.txt"
    unquoted.write_text("app secret\n")
    files = {"garbage": garbage, "latin1": latin1, "unquoted": unquoted,
             "good_cert": pki["good"]["cert"], "good_key": pki["good"]["key"],
             "other_key": pki["other"]["key"]}  # fmt: skip
    argv = [arg.format(**files) for arg in args]
    done = run_cli("--listen", f"{HOST}:{free_port()}", *argv)
    assert_config_error(done, *(name.format(**files) for name in names))


def test_databases_password_is_a_secret_setting() -> None:
    helped = run_cli("--help", env={"DATABASES_PASSWORD": SECRET})
    assert helped.returncode == 0
    assert "DATABASES_PASSWORD" in helped.stdout and SECRET not in helped.stdout
    text = " ".join(helped.stdout.split())
    assert "--password PASSWORD" in text and "PODKIT_PASSWORD, DATABASES_PASSWORD" in text
    # it counts as the credentials --client-auth needs; an error elsewhere never shows it
    done = run_cli("--listen", "nowhere", env={"DATABASES_PASSWORD": SECRET})
    assert assert_config_error(done, "--listen") and SECRET not in done.stderr
    done = run_cli("--listen", f"{HOST}:1", "--password", SECRET, "--pool-size", "0")
    assert assert_config_error(done, "--pool-size") and SECRET not in done.stderr


# --- the pgbouncer images' env ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"PGBOUNCER_LISTEN_PORT": "abc"}, ["PGBOUNCER_LISTEN_PORT", "abc"]),
        ({"PGBOUNCER_PORT": "70000"}, ["PGBOUNCER_PORT", "70000"]),
        ({"PGBOUNCER_LISTEN_ADDR": "127.0.0.1,::1"}, ["PGBOUNCER_LISTEN_ADDR", "127.0.0.1,::1"]),
        ({"PGBOUNCER_AUTH_TYPE": "hba"}, ["PGBOUNCER_AUTH_TYPE", "hba"]),
        ({"PGBOUNCER_AUTH_TYPE": "cert"}, ["PGBOUNCER_AUTH_TYPE", "cert"]),
        ({"PGBOUNCER_UNIX_SOCKET_DIR": "/tmp"}, ["PGBOUNCER_UNIX_SOCKET_DIR", "/tmp"]),
        ({"PGBOUNCER_AUTH_QUERY": "SELECT 1"}, ["PGBOUNCER_AUTH_QUERY"]),
        ({"PGBOUNCER_MAX_DB_CONNECTIONS": "10"}, ["PGBOUNCER_MAX_DB_CONNECTIONS", "10"]),
        ({"PGBOUNCER_CLIENT_TLS_SSLMODE": "require"}, ["PGBOUNCER_CLIENT_TLS_SSLMODE"]),
        ({"PGBOUNCER_SERVER_LIFETIME": "0"}, ["PGBOUNCER_SERVER_LIFETIME", "0"]),
        ({"PGBOUNCER_POOL_MODE": "statement"}, ["PGBOUNCER_POOL_MODE", "statement"]),
        ({"DATABASES_TIMEZONE": "UTC"}, ["DATABASES_TIMEZONE", "UTC"]),
    ],
)  # fmt: skip
def test_pgbouncer_env_podkit_cannot_honour_exits_2(env, names) -> None:
    # (a --listen flag wins over the env's listener, but a bad one is still an error)
    done = run_cli("--listen", f"{HOST}:{free_port()}", "--client-auth", "trust", env=env)
    assert_config_error(done, *names)


async def test_pgbouncer_listen_port_auth_type_and_unsupported_names(run_helper, pg) -> None:
    port = free_port()
    env = {
        "DATABASES_HOST": HOST, "DATABASES_PORT": str(pg.port), "DATABASES_USER": "postgres",
        "PGBOUNCER_LISTEN_ADDR": HOST, "PGBOUNCER_LISTEN_PORT": str(port),
        # the pgbouncer/pgbouncer image's default: no client password (podkit's trust)
        "PGBOUNCER_AUTH_TYPE": "any",
        # names podkit does not use and that change nothing clients see: one line each
        "PGBOUNCER_LOGFILE": "/var/log/pgbouncer.log", "PGBOUNCER_STATS_PERIOD": "60",
        "DATABASES_CLIENT_SIDE_DBNAME": "app", "PGBOUNCER_MAX_DB_CONNECTIONS": "0",
        "PGBOUNCER_NOT_A_KEY": "1",
    }  # fmt: skip
    helper = run_helper("pg-ambassador", env=env)  # no --listen: PGBOUNCER_LISTEN_PORT's
    psql = kit.pg_binary("psql")
    done = await asyncio.to_thread(
        subprocess.run,
        [psql, "-X", "-At", "-h", HOST, "-p", str(port), "-U", "someone", "-d", "postgres",
         "-c", "select current_user"],
        capture_output=True, text=True, timeout=30, env={**os.environ, "PGSSLMODE": "disable"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "postgres"  # DATABASES_USER, whatever the client's user

    conn = await asyncpg.connect(host=HOST, port=port, user="app", database="postgres",
                                 ssl=False)  # fmt: skip
    assert await conn.fetchval("select 41 + 1") == 42
    await conn.close()
    events = list(helper.log_events())
    listening = [e for e in events if e.get("event") == "listening"]
    assert listening and listening[0]["addr"] == f"{HOST}:{port}"
    unsupported = sorted(e["name"] for e in events if e.get("event") == "unsupported_setting")
    assert unsupported == sorted([
        "DATABASES_CLIENT_SIDE_DBNAME", "PGBOUNCER_LOGFILE", "PGBOUNCER_MAX_DB_CONNECTIONS",
        "PGBOUNCER_NOT_A_KEY", "PGBOUNCER_STATS_PERIOD",
    ])  # fmt: skip
    # the supported ones are not reported
    assert not {"PGBOUNCER_LISTEN_PORT", "PGBOUNCER_AUTH_TYPE", "DATABASES_HOST"} & set(unsupported)
