"""`podkit pg-ambassador --pgbouncer-config FILE`: PgBouncer's pgbouncer.ini and userlist.txt
as they are, through the real CLI and real PostgreSQL servers.

A PgBouncer pod's ConfigMap and Secret (k8s/pg-ambassador/pgbouncer-*.yaml) run unchanged but
for the addresses: their host names are cluster Services, replaced here by the loopback
ports of two PostgreSQL servers, and a small top file %includes the ConfigMap's file and
moves the listener and the auth_file to this test's places (later keys win, as in
PgBouncer)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import asyncpg
import psycopg
import pytest
import yaml

from podkit_dev.servers import HOST, free_port, podkit_argv
from tests.integration.pg_ambassador.test_config import assert_config_error, run_cli

K8S = Path(__file__).resolve().parents[3] / "k8s" / "pg-ambassador"
APP_PASSWORD = "change-me-please"  # the Secret's, as in the manifests
REPORTER_PASSWORD = "change-me-too"


def manifest_data(name: str) -> dict[str, str]:
    (doc,) = yaml.safe_load_all((K8S / name).read_text())
    return dict(doc.get("data") or doc.get("stringData"))


def scram_server(postgres_factory, database: str):  # type: ignore[no-untyped-def]
    server = postgres_factory(auth="scram-sha-256", password_encryption="scram-sha-256")
    server.wait_accepting()
    server.add_user("app", APP_PASSWORD)
    server.add_user("reporter", REPORTER_PASSWORD)
    server.sql(f"CREATE DATABASE {database} OWNER app")
    # each database says which it is, so a query shows where it landed
    server.sql(
        f"CREATE TABLE here (name text); INSERT INTO here VALUES ('{database}@{server.port}');"
        "GRANT SELECT ON here TO PUBLIC",
        database=database,
    )
    return server


def start_from_configmap(run_helper, tmp_path: Path, app_port: int, reports_port: int):  # type: ignore[no-untyped-def]
    ini = manifest_data("pgbouncer-configmap.yaml")["pgbouncer.ini"]
    ini = ini.replace(
        "host=postgres.default.svc.cluster.local port=5432", f"host={HOST} port={app_port}"
    ).replace(
        "host=reports-postgres.default.svc.cluster.local port=5432",
        f"host={HOST} port={reports_port}",
    )
    (tmp_path / "pgbouncer.ini").write_text(ini)
    (tmp_path / "userlist.txt").write_text(manifest_data("pgbouncer-secret.yaml")["userlist.txt"])
    port = free_port()
    top = tmp_path / "top.ini"
    top.write_text(
        f"%include {tmp_path / 'pgbouncer.ini'}\n"
        f"[pgbouncer]\nlisten_port = {port}\nauth_file = {tmp_path / 'userlist.txt'}\n"
    )
    helper = run_helper("pg-ambassador", "--pgbouncer-config", str(top))
    helper.port = port
    return helper


def dsn(port: int, database: str, user: str = "app", password: str = APP_PASSWORD) -> str:
    return (
        f"host={HOST} port={port} dbname={database} user={user} password={password} sslmode=disable"
    )


def test_the_pgbouncer_configmap_runs_unchanged_and_serves_two_databases(
    run_helper, postgres_factory, tmp_path
) -> None:
    app_db = scram_server(postgres_factory, "app")
    reports_db = scram_server(postgres_factory, "reports")
    helper = start_from_configmap(run_helper, tmp_path, app_db.port, reports_db.port)
    port = helper.port

    # both databases at once, each query landing on its own server and database; `app`
    # logs in as the client, `reports` as its forced user= with the userlist's password
    with (
        psycopg.connect(dsn(port, "app"), autocommit=True) as app,
        psycopg.connect(dsn(port, "reports"), autocommit=True) as reports,
    ):
        for _ in range(3):
            assert app.execute("SELECT name, current_user FROM here").fetchone() == (
                f"app@{app_db.port}",
                "app",
            )
            assert reports.execute("SELECT name, current_user FROM here").fetchone() == (
                f"reports@{reports_db.port}",
                "reporter",
            )
        # [users] reporter = pool_mode=session: the reports client keeps its backend
        pids = {reports.execute("SELECT pg_backend_pid()").fetchone() for _ in range(3)}
        assert len(pids) == 1
        app.execute("SET application_name = 'x'")  # (a client setting; still served)

    # a name [databases] does not list (and no '*'): refused as PgBouncer refuses it
    with pytest.raises(psycopg.OperationalError, match='no such database: "postgres"'):
        psycopg.connect(dsn(port, "postgres")).close()
    # the userlist checks the clients (auth_type = scram-sha-256)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(dsn(port, "app", password="wrong")).close()

    # another client user on `reports` shares its one pool (forced user=, as PgBouncer)
    with psycopg.connect(dsn(port, "reports", "monitor", "change-me-three")) as monitor:
        assert monitor.execute("SELECT current_user").fetchone() == ("reporter",)

    # the console: admin_users = app; stats_users = monitor may SHOW, not PAUSE
    with psycopg.connect(dsn(port, "pgbouncer"), autocommit=True) as console:
        pools = console.execute("SHOW POOLS").fetchall()
        assert sorted((row[0], row[1], row[-1]) for row in pools) == [
            ("app", "app", "transaction"),
            ("reports", "reporter", "session"),
        ]
        databases = console.execute("SHOW DATABASES").fetchall()
        assert {(row[0], row[2], row[3], row[5]) for row in databases} == {
            ("app", str(app_db.port), "app", "20"),
            ("reports", str(reports_db.port), "reports", "2"),
        }
    with psycopg.connect(
        dsn(port, "pgbouncer", "monitor", "change-me-three"), autocommit=True
    ) as monitor:
        assert monitor.execute("SHOW VERSION").fetchone()
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="SHOW commands only"):
            monitor.execute("PAUSE")
    with pytest.raises(psycopg.OperationalError, match="may not use the console"):
        psycopg.connect(dsn(port, "pgbouncer", "reporter", REPORTER_PASSWORD)).close()

    # the keys PgBouncer needs and podkit does not: one start-up line
    [notice] = helper.events("pgbouncer_config")
    assert set(notice["databases"]) == {"app", "reports"}
    assert set(notice["ignored"]) == {
        "logfile", "pidfile", "unix_socket_dir", "ignore_startup_parameters",
    }  # fmt: skip


async def test_the_star_fallback_connect_query_and_relative_includes(
    run_helper, pg, tmp_path
) -> None:
    """`*` takes every other name (to the database of that name); connect_query runs on
    each new server connection; `%include` of a relative name is found beside the
    including file when the working directory has no such file."""
    pg.sql("CREATE DATABASE other")
    conf = tmp_path / "conf.d"
    conf.mkdir()
    (conf / "databases.ini").write_text(
        "[databases]\n"
        f"* = host={HOST} port={pg.port} connect_query='SELECT set_config(''podkit.tag'', "
        "''from connect_query'', false)'\n"
        f"renamed = host={HOST} port={pg.port} dbname=other pool_size=1\n"
    )
    port = free_port()
    (tmp_path / "pgbouncer.ini").write_text(
        "%include conf.d/databases.ini\n"
        f"[pgbouncer]\nlisten_addr = {HOST}\nlisten_port = {port}\nauth_type = trust\n"
        "pool_mode = transaction\n"
    )
    run_helper("pg-ambassador", "--pgbouncer-config", str(tmp_path / "pgbouncer.ini"))

    async def ask(database: str) -> tuple[str, str | None]:
        conn = await asyncpg.connect(host=HOST, port=port, user="postgres", database=database)
        try:
            row = await conn.fetchrow(
                "SELECT current_database(), current_setting('podkit.tag', true)"
            )
            return row[0], row[1]
        finally:
            await conn.close()

    assert await ask("other") == ("other", "from connect_query")  # via '*'
    assert await ask("postgres") == ("postgres", "from connect_query")
    assert await ask("renamed") == ("other", None)  # its own line: no connect_query


def test_an_unknown_key_exits_2_naming_file_line_and_key(tmp_path) -> None:
    included = tmp_path / "extra.ini"
    included.write_text("; tuning\nmax_client_conn = 50\n\nno_such_setting = 1\n")
    top = tmp_path / "pgbouncer.ini"
    top.write_text(f"[pgbouncer]\nauth_type = trust\n%include {included}\n")
    done = run_cli("--pgbouncer-config", str(top))
    line = assert_config_error(done, f"{included}:4", "no_such_setting", "unknown key")
    assert "Traceback" not in done.stderr, line


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("[pgbouncer]\nauth_type = hba\n", [":2", "auth_type", "hba"]),
        ("[pgbouncer]\npool_mode = statement\n", [":2", "pool_mode", "statement"]),
        ("[pgbouncer]\nauth_type = trust\nauth_query = SELECT 1\n", [":3", "auth_query"]),
        ("[pgbouncer]\nauth_type = trust\nserver_lifetime = 0\n", [":3", "server_lifetime"]),
        ("[pgbouncer]\nauth_type = trust\nmax_db_connections = 10\n",
         [":3", "max_db_connections"]),
        ("[databases]\nx = host=/var/run/postgresql\n[pgbouncer]\nauth_type = trust\n",
         [":2", "[databases] x", "Unix sockets"]),
        ("[databases]\nx = host=a port=5432 nope=1\n[pgbouncer]\nauth_type = trust\n",
         [":2", "nope", "unknown connection parameter"]),
        ("[databases]\nx = pool_size=zero\n[pgbouncer]\nauth_type = trust\n",
         [":2", "pool_size=zero"]),
        ("[users]\napp = transaction_timeout=5\n[pgbouncer]\nauth_type = trust\n",
         [":2", "transaction_timeout"]),
        ("[peers]\n1 = host=other\n[pgbouncer]\nauth_type = trust\n", [":2", "peers"]),
        ("[pgbouncer]\nauth_type = trust\ndefault_pool_size = many\n",
         [":3", "default_pool_size", "--pool-size=many"]),
        ("[pgbouncer\nauth_type = trust\n", [":1", "syntax error"]),
        ("[databases]\n", ["no [pgbouncer] section"]),
    ],
)  # fmt: skip
def test_what_podkit_cannot_honour_exits_2_naming_the_line(tmp_path, text, names) -> None:
    path = tmp_path / "pgbouncer.ini"
    path.write_text(text)
    done = run_cli("--pgbouncer-config", str(path))
    assert_config_error(done, str(path), *names)


def test_include_is_relative_to_the_working_directory_first(tmp_path) -> None:
    """PgBouncer opens a relative %include name from its working directory: a file there
    wins over one beside the including file."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "cwd").mkdir()
    (tmp_path / "etc" / "part.ini").write_text("max_client_conn = 50\n")
    (tmp_path / "cwd" / "part.ini").write_text("from_the_working_directory = 1\n")
    top = tmp_path / "etc" / "pgbouncer.ini"
    top.write_text("[pgbouncer]\nauth_type = trust\n%include part.ini\n")
    argv = [*podkit_argv(), "pg-ambassador", "--admin-addr", f"{HOST}:0",
            "--pgbouncer-config", str(top)]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PGBOUNCER_", "DATABASES_"))}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env,
                          cwd=tmp_path / "cwd", check=False)  # fmt: skip
    assert_config_error(done, "part.ini:1", "from_the_working_directory")


def test_databases_connect_query_env_runs_on_each_new_server_connection(run_helper, pg) -> None:
    """The pgbouncer image's DATABASES_CONNECT_QUERY (its `*` line's connect_query)."""
    port = free_port()
    env = {"DATABASES_HOST": HOST, "DATABASES_PORT": str(pg.port),
           "DATABASES_CONNECT_QUERY": "SELECT set_config('podkit.tag', 'from env', false)"}  # fmt: skip
    run_helper("pg-ambassador", "--listen", f"{HOST}:{port}", "--client-auth", "trust", env=env)
    with psycopg.connect(f"host={HOST} port={port} dbname=postgres user=postgres") as conn:
        row = conn.execute("SELECT current_setting('podkit.tag', true)").fetchone()
    assert row == ("from env",)
