"""pg-ambassador's admin console (virtual database `pgbouncer`) read with psql."""

from __future__ import annotations

import asyncio

import asyncpg

from podkit_dev.servers import HOST
from tests.integration import pg_ambassador_kit as kit

# PgBouncer's SHOW STATS columns, in its order (its avg_* rates left out)
TOTALS = ["total_xact_count", "total_query_count", "total_received", "total_sent",
          "total_xact_time", "total_query_time", "total_wait_time"]  # fmt: skip


def psql(amb: kit.AmbassadorThread, database: str, *commands: str) -> str:
    args = ["-X", "-h", HOST, "-p", str(amb.port), "-U", "postgres", "-d", database,
            "-v", "ON_ERROR_STOP=1"]  # fmt: skip
    for command in commands:
        args += ["-c", command]
    done = kit.run_pg_tool("psql", *args, "-A", "-F", "|", "-P", "footer=off", timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_show_stats_has_a_row_per_database(ambassador, pg) -> None:
    pg.sql("create database other")
    amb = ambassador()
    # postgres: 3 transactions of 1 query each
    psql(amb, "postgres", "select 1", "select 2", "select 3")
    # other: 1 transaction of 3 queries, 0.2 s long
    psql(amb, "other", "begin", "select pg_sleep(0.2)", "commit")

    header, *lines = psql(amb, "pgbouncer", "SHOW STATS").splitlines()
    columns = header.split("|")
    assert columns[0] == "database" and columns[1 : 1 + len(TOTALS)] == TOTALS
    stats = {}
    for line in lines:
        row = dict(zip(columns, line.split("|"), strict=True))
        stats[row["database"]] = {k: int(row[k]) for k in TOTALS}
    assert set(stats) == {"postgres", "other"}
    assert stats["postgres"]["total_xact_count"] == 3
    assert stats["postgres"]["total_query_count"] == 3
    assert stats["other"]["total_xact_count"] == 1
    assert stats["other"]["total_query_count"] == 3
    for db in stats.values():
        assert db["total_received"] > 0 and db["total_sent"] > 0
    # the 0.2 s transaction, in microseconds; its pg_sleep query too
    assert stats["other"]["total_xact_time"] >= 200_000
    assert stats["other"]["total_query_time"] >= 200_000
    assert stats["postgres"]["total_xact_time"] < stats["other"]["total_xact_time"]
    # the figures follow the traffic of each database only
    psql(amb, "other", "select 4")
    header, *lines = psql(amb, "pgbouncer", "SHOW STATS").splitlines()
    after = {line.split("|")[0]: line.split("|") for line in lines}
    assert int(after["other"][1]) == 2 and int(after["postgres"][1]) == 3


async def test_pause_holds_a_client_whose_server_is_parked_until_resume(ambassador) -> None:
    """PAUSE gives out no server until RESUME, a parked one included: its client waits
    instead of running on the server it last used."""
    amb = ambassador(pool_size=1)
    conn = await asyncpg.connect(amb.dsn())
    try:
        assert await conn.fetchval("select 1") == 1  # its server is parked with it now
        await asyncio.to_thread(psql, amb, "pgbouncer", "PAUSE")
        query = asyncio.create_task(conn.fetchval("select 2"))

        async def client_waits() -> bool:
            return bool(amb.pool_state()["waiting"] == 1)

        await kit.until(client_waits, "the client to wait for a server")
        assert not query.done()
        await asyncio.to_thread(psql, amb, "pgbouncer", "RESUME")
        assert await asyncio.wait_for(query, 10) == 2
    finally:
        await conn.close()
