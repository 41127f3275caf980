"""pg-ambassador's admin console (virtual database `pgbouncer`) read with psql."""

from __future__ import annotations

import asyncio

import asyncpg
import psycopg

from podkit_dev.servers import HOST, until, wait_for
from tests.integration.pg_ambassador import kit

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

        await until(
            lambda: amb.pool_state()["waiting"] == 1, what="the client to wait for a server"
        )
        assert not query.done()
        await asyncio.to_thread(psql, amb, "pgbouncer", "RESUME")
        assert await asyncio.wait_for(query, 10) == 2
    finally:
        await conn.close()


def test_what_pgbouncer_exporter_reads(ambassador, pg) -> None:
    """prometheus-community/pgbouncer_exporter's scrape: SHOW VERSION (one `version`
    column), LISTS (list, items), CONFIG (3 or 4 columns; max_client_conn a number),
    CLIENTS (database, user, state), STATS_TOTALS, DATABASES and POOLS by column name. A
    query it cannot run sets its `pgbouncer_up` to 0."""
    pg.sql("create database other")
    amb = ambassador(max_client_conn=50)
    with (
        psycopg.connect(amb.dsn(), autocommit=True) as app,
        psycopg.connect(amb.dsn(db="other")) as busy,
        psycopg.connect(amb.dsn(db="pgbouncer"), autocommit=True) as console,
    ):
        app.execute("select 1")
        busy.execute("select 1")  # and holds its server: a transaction is open

        def show(what: str) -> list[dict[str, object]]:
            cursor = console.execute(f"SHOW {what};")
            names = [column.name for column in cursor.description or ()]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

        assert [list(row) for row in show("VERSION")] == [["version"]]
        lists = {str(row["list"]): int(str(row["items"])) for row in show("LISTS")}
        # PgBouncer's free_* and dns_* lists have no counterpart here: no rows, not 0s
        assert lists == {
            "databases": 2, "users": 1, "pools": 2, "used_clients": 3, "login_clients": 0,
            "used_servers": 2,
        }  # fmt: skip
        config = {str(row["key"]): row["value"] for row in show("CONFIG")}
        assert float(str(config["max_client_conn"])) == 50
        clients = show("CLIENTS")
        assert {(r["database"], r["user"], r["state"]) for r in clients} >= {
            ("postgres", "postgres", "idle"),
            ("other", "postgres", "active"),
        }
        totals = {str(row["database"]): row for row in show("STATS_TOTALS")}
        assert set(totals) == {"postgres", "other"}
        counts = {db: [int(str(row[c])) for c in ("xact_count", "query_count")]
                  for db, row in totals.items()}  # fmt: skip
        assert counts == {"postgres": [1, 1], "other": [0, 2]}  # BEGIN, select; still open
        for row in totals.values():
            assert int(str(row["bytes_received"])) > 0 and int(str(row["bytes_sent"])) > 0
            for column in ("xact_time", "query_time", "wait_time"):
                assert int(str(row[column])) >= 0
        databases = {str(row["name"]): row for row in show("DATABASES")}
        assert int(str(databases["other"]["current_connections"])) == 1
        pools = {str(row["database"]): row for row in show("POOLS")}
        assert int(str(pools["other"]["sv_active"])) == 1
        assert int(str(pools["other"]["cl_active"])) == 1
        # only columns with podkit's own figures: none of PgBouncer's that are always 0 here
        assert set(pools["other"]) == {
            "database", "user", "cl_active", "cl_waiting", "sv_active", "sv_being_canceled",
            "sv_idle", "sv_tested", "sv_login", "maxwait", "maxwait_us", "pool_mode",
        }  # fmt: skip


def test_reconnect_replaces_each_server_connection_once_released(ambassador, pg) -> None:
    """RECONNECT closes an idle (here parked) server connection at once and a busy one
    when its transaction ends, never under it; later queries get new backends."""
    amb = ambassador(pool_size=2)

    def backends() -> set[int]:
        out = pg.sql("select pid from pg_stat_activity where backend_type = 'client backend' "
                     "and pid <> pg_backend_pid()")  # fmt: skip
        return {int(pid) for pid in out.split()}

    with (
        psycopg.connect(amb.dsn(), autocommit=True) as idle,
        psycopg.connect(amb.dsn()) as busy,
        psycopg.connect(amb.dsn(db="pgbouncer"), autocommit=True) as console,
    ):
        pid = "select pg_backend_pid()"
        held = busy.execute(pid).fetchone()[0]  # type: ignore[index]  # transaction open
        parked = idle.execute(pid).fetchone()[0]  # type: ignore[index]
        assert parked != held and backends() == {parked, held}
        console.execute("RECONNECT")
        wait_for(lambda: parked not in backends(), what="the idle server closed")
        assert busy.execute(pid).fetchone()[0] == held  # type: ignore[index]
        assert held in backends()
        busy.commit()
        wait_for(lambda: held not in backends(), what="the released server closed")
        fresh = {idle.execute(pid).fetchone()[0], busy.execute(pid).fetchone()[0]}  # type: ignore[index]
        assert not fresh & {parked, held}
        busy.commit()
        # RECONNECT of another database leaves these alone
        console.execute("RECONNECT other")
        assert idle.execute(pid).fetchone()[0] in fresh  # type: ignore[index]


def test_show_help_and_an_unsupported_command(ambassador) -> None:
    """SHOW HELP lists the commands (a NOTICE, as PgBouncer's); an unsupported one is an
    error that says what is supported, and the console stays usable after it."""
    amb = ambassador()
    args = ["-X", "-h", HOST, "-p", str(amb.port), "-U", "postgres", "-d", "pgbouncer"]
    done = kit.run_pg_tool("psql", *args, "-c", "SHOW HELP", timeout=30)
    assert done.returncode == 0, done.stderr
    assert "NOTICE:  Console usage" in done.stderr and "RECONNECT [db]" in done.stderr
    done = kit.run_pg_tool("psql", *args, "-c", "SHUTDOWN WAIT_FOR_CLIENTS", "-c", "SHOW VERSION",
                           timeout=30)  # fmt: skip
    assert "unsupported command: SHUTDOWN WAIT_FOR_CLIENTS" in done.stderr, done.stderr
    assert "closes each one at the end of its transaction" in done.stderr
    assert "(podkit pg-ambassador" in done.stdout, done.stdout  # SHOW VERSION ran after it
