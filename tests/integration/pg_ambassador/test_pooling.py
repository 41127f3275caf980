"""pg-ambassador with real clients: asyncpg, psycopg 3, psql, pgbench, SQLAlchemy."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading

import asyncpg
import psycopg
import pytest

from podkit_dev.servers import until, wait_for
from tests.integration.pg_ambassador.kit import (
    pg_binary,
    run_pg_tool,
    running,
    send_cancel,
    server_backends,
)


async def test_asyncpg_default_statement_cache_through_a_small_pool(ambassador) -> None:
    amb = ambassador(pool_size=2)
    conns = [await asyncpg.connect(amb.dsn()) for _ in range(8)]
    try:

        async def work(conn: asyncpg.Connection, i: int) -> None:
            for j in range(40):
                assert await conn.fetchval("select $1::int + $2::int", i, j) == i + j
                rows = await conn.fetch("select generate_series(1, $1::int) as x", j % 4 + 1)
                assert [r["x"] for r in rows] == list(range(1, j % 4 + 2))
                # a statement per client and iteration: cache evictions and Close messages
                assert await conn.fetchval(f"select {i * 1000 + j % 7}::int") == i * 1000 + j % 7
                async with conn.transaction():
                    await conn.execute("select pg_sleep(0)")
                    assert await conn.fetchval("select $1::text", "in-tx") == "in-tx"
                stmt = await conn.prepare("select $1::int * 2")
                assert await stmt.fetchval(j) == j * 2

        await asyncio.gather(*(work(c, i) for i, c in enumerate(conns)))
    finally:
        for conn in conns:
            await conn.close()
    state = amb.pool_state()
    assert state["idle"] + state["active"] <= 2
    stats = amb.amb.stats
    assert stats.prepared_reparses > 0 or stats.prepared_hits > 0


async def test_asyncpg_without_statement_cache_uses_unnamed_statements_across_syncs(
    ambassador,
) -> None:
    amb = ambassador(pool_size=1)
    conns = [await asyncpg.connect(amb.dsn(), statement_cache_size=0) for _ in range(4)]
    try:

        async def work(conn: asyncpg.Connection, i: int) -> None:
            for j in range(30):
                assert await conn.fetchval("select $1::int + 1", i * 100 + j) == i * 100 + j + 1

        await asyncio.gather(*(work(c, i) for i, c in enumerate(conns)))
    finally:
        for conn in conns:
            await conn.close()


def test_psycopg_prepare_threshold_zero_many_connections(ambassador) -> None:
    amb = ambassador(pool_size=2)
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            with psycopg.connect(amb.dsn(), prepare_threshold=0, autocommit=True) as conn:
                for j in range(40):
                    row = conn.execute("select %s::int * 3, %s::text", (j, f"c{i}")).fetchone()
                    assert row == (j * 3, f"c{i}")
                    with conn.transaction():
                        conn.execute("select 1")
                        assert conn.execute("select %s::int", (i,)).fetchone() == (i,)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors


def test_psycopg_statement_misuse_gets_postgres_errors_and_stays_usable(ambassador) -> None:
    amb = ambassador(pool_size=1)
    with psycopg.connect(amb.dsn(), autocommit=True) as conn:
        pgconn = conn.pgconn
        res = pgconn.prepare(b"s1", b"select $1::int + 1")
        assert res.status == psycopg.pq.ExecStatus.COMMAND_OK
        res = pgconn.prepare(b"s1", b"select 2")
        assert res.status == psycopg.pq.ExecStatus.FATAL_ERROR
        assert res.error_field(psycopg.pq.DiagnosticField.SQLSTATE) == b"42P05"
        res = pgconn.exec_prepared(b"nope", [])
        assert res.status == psycopg.pq.ExecStatus.FATAL_ERROR
        assert res.error_field(psycopg.pq.DiagnosticField.SQLSTATE) == b"26000"
        res = pgconn.exec_prepared(b"s1", [b"41"])
        assert res.get_value(0, 0) == b"42"
        # Close, then the name is free again
        conn.execute("deallocate s1")
        res = pgconn.prepare(b"s1", b"select 7")
        assert res.status == psycopg.pq.ExecStatus.COMMAND_OK
        assert pgconn.exec_prepared(b"s1", []).get_value(0, 0) == b"7"
        assert conn.execute("select 1").fetchone() == (1,)


@pytest.mark.parametrize("mode", ["simple", "extended", "prepared"])
def test_pgbench_protocol_modes(ambassador, pg, mode: str) -> None:
    done = run_pg_tool("pgbench", "-i", "-s", "1", "-q", "-h", "127.0.0.1", "-p", str(pg.port),
                       "-U", "postgres", "postgres")  # fmt: skip
    assert done.returncode == 0, done.stderr
    amb = ambassador(pool_size=2)
    done = run_pg_tool(
        "pgbench", "-M", mode, "-c", "6", "-j", "2", "-t", "60", "-h", "127.0.0.1",
        "-p", str(amb.port), "-U", "postgres", "postgres",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "number of transactions actually processed: 360/360" in done.stdout, done.stdout
    assert server_backends(pg) <= 2


def test_copy_in_and_out_with_psql_and_psycopg(ambassador, pg, tmp_path) -> None:
    amb = ambassador(pool_size=1)
    pg.sql("create table items (id int, name text)")
    source = tmp_path / "in.csv"
    source.write_text("".join(f"{i},name {i}\n" for i in range(5000)))
    done = run_pg_tool("psql", "-X", "-v", "ON_ERROR_STOP=1", amb.dsn(),
                       "-c", f"\\copy items from '{source}' csv")  # fmt: skip
    assert done.returncode == 0, done.stderr
    with psycopg.connect(amb.dsn(), autocommit=True) as conn:
        with conn.cursor().copy("copy items from stdin") as copy:
            for i in range(5000, 6000):
                copy.write_row((i, f"name {i}"))
        lines = []
        with conn.cursor().copy("copy (select * from items order by id) to stdout") as copy:
            for row in copy.rows():
                lines.append(row)
        assert len(lines) == 6000
        assert conn.execute("select count(*) from items").fetchone() == (6000,)
        # a COPY that fails half-way leaves the connection usable
        with (
            pytest.raises(psycopg.errors.QueryCanceled),
            conn.cursor().copy("copy items from stdin") as copy,
        ):
            copy.write_row((1, "x"))
            raise psycopg.errors.QueryCanceled("client gives up")
        assert conn.execute("select count(*) from items").fetchone() == (6000,)
    target = tmp_path / "out.csv"
    done = run_pg_tool("psql", "-X", amb.dsn(), "-c", f"\\copy items to '{target}' csv")
    assert done.returncode == 0, done.stderr
    assert len(target.read_text().splitlines()) == 6000


async def test_client_gone_mid_transaction_server_rolled_back_and_reused(ambassador, pg) -> None:
    amb = ambassador(pool_size=1)
    pg.sql("create table t (v int)")
    first = await asyncpg.connect(amb.dsn())
    tx = first.transaction()
    await tx.start()
    await first.execute("insert into t values (1)")
    pid = await first.fetchval("select pg_backend_pid()")
    first.terminate()
    second = await asyncpg.connect(amb.dsn())
    try:
        assert await second.fetchval("select pg_backend_pid()") == pid  # reused, not closed
        assert await second.fetchval("select count(*) from t") == 0  # rolled back
        assert await second.fetchval("select txid_current_if_assigned()") is None
    finally:
        await second.close()


async def test_more_clients_than_slots_queue_then_query_wait_timeout(ambassador) -> None:
    amb = ambassador(pool_size=1, query_wait_timeout=1)
    holder = await asyncpg.connect(amb.dsn())
    waiter = await asyncpg.connect(amb.dsn())
    try:
        # queueing: the waiter gets the server once the holder's transaction ends
        tx = holder.transaction()
        await tx.start()
        await holder.execute("select 1")
        task = asyncio.ensure_future(waiter.fetchval("select 42"))
        await asyncio.sleep(0.3)
        assert not task.done()
        await tx.commit()
        assert await task == 42
        # timeout: the holder keeps its transaction open past query_wait_timeout
        tx = holder.transaction()
        await tx.start()
        await holder.execute("select 1")
        with pytest.raises(asyncpg.PostgresError, match="query_wait_timeout"):
            await asyncio.wait_for(waiter.fetchval("select 1"), 30)
        await tx.rollback()
    finally:
        await holder.close()
        waiter.terminate()


async def test_a_parked_server_goes_back_to_its_client_or_to_whoever_needs_it(
    ambassador,
) -> None:
    """A transaction's end parks its server with its client while nobody waits: the
    client's next transaction runs there without a trip through the pool. Another client
    needing a server takes a parked one at once (no wait, no new connection), and the
    settings each client logged in with are set again when a server changes hands."""
    amb = ambassador(pool_size=1)
    a = await asyncpg.connect(amb.dsn(), server_settings={"application_name": "app-a"})
    b = await asyncpg.connect(amb.dsn(), server_settings={"application_name": "app-b"})
    name_and_pid = "select current_setting('application_name'), pg_backend_pid()"

    def parked_with() -> list[int]:  # the (virtual) pids of the clients parked servers are with
        return [s.parked_by.process_id for p in amb.amb.pools.values() for s in p.parked]

    try:
        first = await a.fetchrow(name_and_pid)
        assert amb.pool_state() == {"idle": 1, "active": 0, "waiting": 0, "connecting": 0}
        assert amb.call(parked_with) == [a.get_server_pid()]
        for conn, name in ((a, "app-a"), (a, "app-a"), (b, "app-b"), (a, "app-a"), (b, "app-b")):
            assert tuple(await conn.fetchrow(name_and_pid)) == (name, first[1])
            assert amb.call(parked_with) == [conn.get_server_pid()]
        assert amb.amb.stats.server_connects == 1
    finally:
        await a.close()
        await b.close()


async def test_a_cancel_for_a_client_whose_server_is_parked_is_dropped(ambassador, pg) -> None:
    """A parked server is not its client's any more: when another client took it, a
    cancel from the first must not reach the query now running there."""
    amb = ambassador(pool_size=1)
    a = await asyncpg.connect(amb.dsn())
    b = await asyncpg.connect(amb.dsn())
    direct = await asyncpg.connect(pg.dsn)
    query = "select pg_advisory_xact_lock(3)"
    try:
        await a.fetchval("select 1")  # a's server is parked with it
        await direct.execute("select pg_advisory_lock(3)")
        b_query = asyncio.create_task(b.fetchval(query))  # takes it, and waits there
        await until(lambda: running(direct, query), what="b's query to wait for the lock")
        with send_cancel(amb.port, a) as cancel:
            cancel.settimeout(10)
            assert cancel.recv(1) == b""  # closed: handled
        assert amb.amb.stats.cancels_dropped == 1
        await direct.execute("select pg_advisory_unlock(3)")
        assert await asyncio.wait_for(b_query, 10) is None  # not QueryCanceled
        assert await a.fetchval("select 2") == 2
    finally:
        await a.close()
        await b.close()
        await direct.close()


async def test_max_client_conn_refuses_with_53300(ambassador) -> None:
    amb = ambassador(max_client_conn=2)
    conns = [await asyncpg.connect(amb.dsn()) for _ in range(2)]
    try:
        with pytest.raises(asyncpg.TooManyConnectionsError):
            await asyncpg.connect(amb.dsn())
        assert await conns[0].fetchval("select 1") == 1
    finally:
        for conn in conns:
            await conn.close()


async def test_own_backend_key_and_cancel_reaches_the_right_server(ambassador) -> None:
    amb = ambassador(pool_size=2)
    conn = await asyncpg.connect(amb.dsn())
    other = await asyncpg.connect(amb.dsn())
    try:
        with pytest.raises(asyncio.TimeoutError):
            await conn.fetchval("select pg_sleep(20)", timeout=0.5)
        assert await conn.fetchval("select 5") == 5
        assert await other.fetchval("select 6") == 6
        assert amb.amb.stats.cancels_forwarded >= 1
    finally:
        await conn.close()
        await other.close()


def test_psql_ctrl_c_cancels_through_the_ambassador(ambassador, pg) -> None:
    # (psycopg's conn.cancel() holds the GIL while it connects, so it cannot reach an
    # ambassador running in this same process: psql in its own process is the real case.)
    amb = ambassador(pool_size=1)
    proc = subprocess.Popen(
        [pg_binary("psql"), "-X", amb.dsn(), "-c", "select pg_sleep(30)"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PGSSLMODE": "disable"},
    )  # fmt: skip
    try:
        wait_for(
            lambda: "pg_sleep" in pg.sql("select query from pg_stat_activity"),
            what="the query running on the server",
            timeout=15,
        )
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=15)
    finally:
        proc.kill()
    assert "canceling statement due to user request" in err
    assert amb.amb.stats.cancels_forwarded == 1


def test_sqlalchemy_psycopg_and_asyncpg_dialects(ambassador) -> None:
    import sqlalchemy
    from sqlalchemy.ext.asyncio import create_async_engine

    amb = ambassador(pool_size=2)
    url = f"postgresql+psycopg://postgres@127.0.0.1:{amb.port}/postgres"
    engine = sqlalchemy.create_engine(url, pool_size=4)
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text("create table sa (id int primary key, v text)"))
    for i in range(20):
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text("insert into sa values (:i, :v)"), {"i": i, "v": str(i)})
    with engine.connect() as conn:
        assert conn.execute(sqlalchemy.text("select count(*) from sa")).scalar() == 20
    engine.dispose()

    async def with_asyncpg() -> None:
        aengine = create_async_engine(
            f"postgresql+asyncpg://postgres@127.0.0.1:{amb.port}/postgres", pool_size=4
        )

        async def work(k: int) -> None:
            for _ in range(10):
                async with aengine.begin() as conn:
                    result = await conn.execute(
                        sqlalchemy.text("select v from sa where id = :i"), {"i": k}
                    )
                    assert result.scalar() == str(k)

        await asyncio.gather(*(work(k) for k in range(6)))
        await aengine.dispose()

    asyncio.run(with_asyncpg())


async def test_prepared_statement_lru_eviction_with_many_statements(ambassador) -> None:
    amb = ambassador(pool_size=2, max_prepared_statements=3)
    conns = [await asyncpg.connect(amb.dsn()) for _ in range(4)]
    try:

        async def work(conn: asyncpg.Connection, i: int) -> None:
            for j in range(60):
                k = (i + j) % 9  # 9 statements, 3 per server at most
                assert await conn.fetchval(f"select {k}::int + $1::int", j) == k + j
                async with conn.transaction():
                    cursor = await conn.cursor(f"select {k}::int + g from generate_series(1, 3) g")
                    assert [r[0] for r in await cursor.fetch(3)] == [k + 1, k + 2, k + 3]

        await asyncio.gather(*(work(c, i) for i, c in enumerate(conns)))
    finally:
        for conn in conns:
            await conn.close()
    stats = amb.amb.stats
    assert stats.prepared_evictions > 0 and stats.prepared_reparses > 0
    assert all(len(s.prepared) <= 3 for p in amb.amb.pools.values() for s in p.idle_servers())
