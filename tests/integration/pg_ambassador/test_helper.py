"""`podkit pg-ambassador` as a process: drain, metrics, console, the pgbouncer image's env
(DATABASES_PASSWORD included)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from collections.abc import Awaitable

import asyncpg
import psycopg
import pytest

from podkit_dev.servers import HOST, free_port, http_get, podkit_argv, until, wait_for
from tests.integration.pg_ambassador import kit
from tests.servers import require_binary


def start(run_helper, pg, *args: str, env: dict[str, str] | None = None):
    port = free_port()
    helper = run_helper(
        "pg-ambassador", "--listen", f"{HOST}:{port}", "--server-port", str(pg.port),
        "--client-auth", "trust", *args, env=env,
    )  # fmt: skip
    helper.port = port
    helper.dsn = f"postgresql://postgres@{HOST}:{port}/postgres"
    return helper


async def test_drain_closes_each_client_at_its_transaction_boundary(run_helper, pg) -> None:
    pg.sql("create table acked (client int, n int)")
    helper = start(run_helper, pg, "--pool-size", "3", "--shutdown-timeout", "20")
    conns = [await asyncpg.connect(helper.dsn) for _ in range(6)]
    idle = await asyncpg.connect(helper.dsn)
    assert await idle.fetchval("select 1") == 1  # its server is parked with it, or taken
    # a transaction open across the SIGTERM: the drain cannot end (nor the process exit)
    # before /readyz has been seen to say 503
    holder = await asyncpg.connect(helper.dsn)
    held = holder.transaction()
    await held.start()
    await holder.execute("select 1")
    acked: list[tuple[int, int]] = []
    errors: list[tuple[str, BaseException]] = []
    stop = asyncio.Event()

    async def worker(i: int, conn: asyncpg.Connection) -> None:
        n = 0
        while not stop.is_set():
            try:
                tx = conn.transaction()
                await tx.start()
            except Exception as exc:
                # closed at the boundary (FATAL 57P01 after the last ReadyForQuery): expected;
                # asyncpg reports it as AdminShutdown, ConnectionDoesNotExist or an internal
                # state error, depending on when it reads the FATAL
                errors.append(("begin", exc))
                return
            try:
                await conn.execute("insert into acked values ($1, $2)", i, n)
                await asyncio.sleep(0.01)
                await conn.execute("select pg_sleep(0.02)")
                await tx.commit()
            except BaseException as exc:
                errors.append(("in-transaction", exc))
                return
            acked.append((i, n))
            n += 1

    tasks = [asyncio.ensure_future(worker(i, c)) for i, c in enumerate(conns)]
    await asyncio.sleep(1.0)
    helper.process.send_signal(signal.SIGTERM)
    status, _ = await asyncio.to_thread(
        lambda: wait_for(lambda: http_get(f"{helper.admin}/readyz")[0] == 503 or None,
                         what="readyz 503", timeout=5) and (503, b"")
    )  # fmt: skip
    assert status == 503
    await held.commit()  # its transaction ends well; then it is closed at that boundary
    await asyncio.wait_for(asyncio.gather(*tasks), 30)
    assert await asyncio.to_thread(helper.wait_exit, 30) == 0
    # no transaction was cut in the middle; every acknowledged commit is there
    assert [e for e in errors if e[0] == "in-transaction"] == []
    rows = {tuple(map(int, line.split("|"))) for line in pg.sql("select * from acked").split()}
    assert rows == set(acked)
    assert len(acked) > 6
    # the idle client was closed at once (asyncpg read the FATAL 57P01 and closed)
    assert idle.is_closed()
    for conn in [*conns, idle, holder]:
        conn.terminate()
    events = [e.get("event") for e in helper.log_events()]
    assert "draining" in events and "drained" in events


def test_pgbouncer_image_env_console_and_metrics(run_helper, pg) -> None:
    port = free_port()
    env = {
        "DATABASES_HOST": HOST, "DATABASES_PORT": str(pg.port), "DATABASES_USER": "postgres",
        "DATABASES_DBNAME": "postgres", "PGBOUNCER_POOL_MODE": "transaction",
        "PGBOUNCER_MAX_CLIENT_CONN": "50", "PGBOUNCER_DEFAULT_POOL_SIZE": "3",
    }  # fmt: skip
    helper = run_helper(
        "pg-ambassador", "--listen", f"{HOST}:{port}", "--client-auth", "trust", env=env
    )
    psql = kit.pg_binary("psql")
    base = [psql, "-X", "-A", "-t", "-h", HOST, "-p", str(port), "-U", "postgres"]
    penv = {**os.environ, "PGSSLMODE": "disable"}
    # any client database name goes to DATABASES_DBNAME
    out = subprocess.run([*base, "-d", "appdb", "-c", "select current_database()"],
                         capture_output=True, text=True, env=penv, timeout=30)  # fmt: skip
    assert out.stdout.strip() == "postgres", out.stderr
    out = subprocess.run([*base, "-d", "pgbouncer", "-c", "SHOW POOLS"],
                         capture_output=True, text=True, env=penv, timeout=30)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "appdb|postgres|" in out.stdout and "|transaction" in out.stdout
    for command in ("SHOW STATS", "SHOW CLIENTS", "SHOW SERVERS", "SHOW VERSION", "SHOW CONFIG"):
        out = subprocess.run([*base, "-d", "pgbouncer", "-c", command],
                             capture_output=True, text=True, env=penv, timeout=30)  # fmt: skip
        assert out.returncode == 0, (command, out.stderr)
    out = subprocess.run([*base, "-d", "pgbouncer", "-c", "PAUSE", "-c", "RESUME"],
                         capture_output=True, text=True, env=penv, timeout=30)  # fmt: skip
    assert out.returncode == 0, out.stderr
    metrics = helper.metrics()
    for name in (
        "pg_ambassador_clients{",
        "pg_ambassador_servers{",
        "pg_ambassador_wait_seconds_bucket",
        "pg_ambassador_transactions_total",
        "pg_ambassador_prepared_statements_total{",
        'pg_ambassador_pinned_clients{reason="listen"}',
        "pg_ambassador_cancels_total{",
        "pg_ambassador_server_connect_errors_total",
        "pg_ambassador_bytes_total{",
    ):
        assert name in metrics, name
    promtool = require_binary("promtool")
    checked = subprocess.run([promtool, "check", "metrics"], input=metrics,
                             capture_output=True, text=True)  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_server_unreachable_at_start_gives_a_clear_error_then_heals(run_helper, pg) -> None:
    helper = start(run_helper, pg)
    pg.process.stop(signal.SIGINT)
    psql = kit.pg_binary("psql")
    penv = {**os.environ, "PGSSLMODE": "disable", "PGCONNECT_TIMEOUT": "10"}
    out = subprocess.run([psql, "-X", helper.dsn, "-c", "select 1"], capture_output=True,
                         text=True, env=penv, timeout=30)  # fmt: skip
    assert out.returncode != 0
    assert "pg-ambassador" in out.stderr and "connect" in out.stderr, out.stderr
    assert helper.process.alive()
    pg.restart()

    def works() -> bool:
        done = subprocess.run([psql, "-X", "-At", helper.dsn, "-c", "select 41 + 1"],
                              capture_output=True, text=True, env=penv, timeout=30)  # fmt: skip
        return done.stdout.strip() == "42"

    wait_for(works, what="ambassador works again after PostgreSQL came back", timeout=30)


SECRET = "Env-Secret-7f3a9c"


def scram_server(postgres_factory):  # type: ignore[no-untyped-def]
    server = postgres_factory(auth="scram-sha-256", password_encryption="scram-sha-256")
    server.wait_accepting()
    server.add_user("app", SECRET)
    return server


def test_databases_password_env_is_the_fallback_and_is_never_logged(
    run_helper, postgres_factory, tmp_path
) -> None:
    pg = scram_server(postgres_factory)
    port = free_port()
    env = {"DATABASES_HOST": HOST, "DATABASES_PORT": str(pg.port), "DATABASES_USER": "app",
           "DATABASES_PASSWORD": SECRET}  # fmt: skip
    # no --password-file: the env var logs the pool in to PostgreSQL (SCRAM) and checks
    # the applications (--client-auth scram, the default)
    helper = run_helper("pg-ambassador", "--listen", f"{HOST}:{port}", "--log-level", "debug",
                        env=env)  # fmt: skip
    dsn = f"host={HOST} port={port} dbname=postgres user=app sslmode=disable"
    with psycopg.connect(f"{dsn} password={SECRET}") as conn:
        assert conn.execute("select current_user").fetchone() == ("app",)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(f"{dsn} password=wrong").close()
    with psycopg.connect(f"{dsn} password={SECRET} dbname=pgbouncer", autocommit=True) as conn:
        config = conn.execute("SHOW CONFIG").fetchall()
    assert SECRET not in repr(config)
    # never logged, nor shown anywhere
    helper.stop()
    assert SECRET not in helper.log_text()
    assert "server_connect_failed" not in helper.log_text()

    # a --password-file wins over the env var
    (tmp_path / "password").write_text(SECRET + "\n")
    port = free_port()
    helper = run_helper(
        "pg-ambassador", "--listen", f"{HOST}:{port}", "--password-file",
        str(tmp_path / "password"), env={**env, "DATABASES_PASSWORD": "not-the-password"},
    )  # fmt: skip
    dsn = f"host={HOST} port={port} dbname=postgres user=app sslmode=disable"
    with psycopg.connect(f"{dsn} password={SECRET}") as conn:
        assert conn.execute("select 1").fetchone() == (1,)
    for path in ("/metrics", "/status"):
        assert SECRET not in helper.get(path)[1].decode()
    helper.stop()
    assert SECRET not in helper.log_text()


async def test_ctl_status_shows_the_pools_key_figures(run_helper, pg) -> None:
    """`podkit ctl status` (the admin's /status) sums the pools: clients and servers by
    state, pools, transactions and queries so far, the longest wait now."""
    pg.sql("create database other")
    helper = start(run_helper, pg, "--pool-size", "1")
    busy = await asyncpg.connect(helper.dsn)
    elsewhere = await asyncpg.connect(f"postgresql://postgres@{HOST}:{helper.port}/other")
    waiting = await asyncpg.connect(helper.dsn)
    held = busy.transaction()
    await held.start()
    assert await busy.fetchval("select 1") == 1  # holds the pool's only server
    assert await elsewhere.fetchval("select 2") == 2  # another pool, its server idle now
    queued = asyncio.ensure_future(waiting.fetchval("select 3"))

    async def ctl_status(*args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(
            subprocess.run, [*podkit_argv(), "ctl", "status", "--admin", helper.admin, *args],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip

    async def figures() -> dict[str, object]:
        done = await ctl_status("--json")
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout)["helpers"][0]["figures"])

    seen = await until(lambda: _when_waiting(figures()), timeout=15, what="a waiting client")
    assert seen["pools"] == 2
    assert (seen["clients_active"], seen["clients_waiting"], seen["clients_idle"]) == (1, 1, 1)
    assert (seen["servers_active"], seen["servers_idle"], seen["servers_login"]) == (1, 1, 0)
    assert seen["transactions"] == 1  # elsewhere's; busy's is still open
    assert seen["queries"] == 3  # BEGIN and select 1, select 2
    assert isinstance(seen["max_wait_seconds"], float) and seen["max_wait_seconds"] >= 0
    table = (await ctl_status()).stdout
    assert "clients active 1" in table and "clients waiting 1" in table, table
    await held.commit()
    assert await asyncio.wait_for(queued, 30) == 3
    after = await figures()
    assert after["clients_waiting"] == 0 and after["transactions"] == 3
    for conn in (busy, elsewhere, waiting):
        await conn.close()


async def _when_waiting(figures: Awaitable[dict[str, object]]) -> dict[str, object] | None:
    seen = await figures
    return seen if seen.get("clients_waiting") == 1 else None
