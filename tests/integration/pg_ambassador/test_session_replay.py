"""Session settings replayed instead of pinned, and advisory locks pinned only while held.

A session `SET` / `RESET` / `set_config(..., false)` of a setting the server does not
report is read back from the server at the transaction's end and set again on whichever
server the client gets next; a session advisory lock pins the client until it holds none.
Real PostgreSQL, asyncpg (simple protocol for `execute`) and psycopg (extended: Parse).
"""

from __future__ import annotations

import asyncio
import random

import asyncpg
import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podkit.ambassadors.postgres.client import _set_config
from podkit.ambassadors.postgres.pool import quote_literal
from podkit_dev.servers import wait_for
from tests.integration.pg_ambassador import kit

DEFAULT_TIMEOUT = "0"


def pinned(amb: kit.AmbassadorThread) -> int:
    """Clients pinned: the gauge (`pg_ambassador_pinned_clients`) and the console's
    `cl_pinned` (SHOW STATS), which must agree."""
    gauge = amb.call(lambda: sum(amb.amb.pinned.values()))
    with psycopg.connect(amb.dsn(db="pgbouncer"), autocommit=True) as console:
        cursor = console.execute("SHOW STATS")
        columns = [c.name for c in cursor.description or []]
        console_pinned = sum(int(row[columns.index("cl_pinned")]) for row in cursor.fetchall())
    assert gauge == console_pinned
    return int(gauge)


def client_extra(amb: kit.AmbassadorThread) -> list[dict[str, str]]:
    """Each client's settings the pooler replays (non-reported ones)."""
    return amb.call(
        lambda: [dict(c.extra) for p in amb.amb.pools.values() for c in p.clients]
    )  # fmt: skip


@pytest.mark.timeout(120)
async def test_fifty_clients_keep_their_own_settings_through_a_pool_of_four(ambassador) -> None:
    amb = ambassador(pool_size=4, query_wait_timeout=60)
    clients = [await asyncpg.connect(amb.dsn()) for _ in range(50)]
    pids: list[set[int]] = [set() for _ in clients]

    async def run(i: int, conn: asyncpg.Connection) -> None:
        path = f'app_{i}, "Schema {i}", public'
        await conn.execute(f"SET search_path TO {path}")
        await conn.execute(f"SET statement_timeout = '{1001 + i}ms'")
        for _ in range(8):
            async with conn.transaction():
                row = await conn.fetchrow(
                    "SELECT current_setting('search_path'), "
                    "current_setting('statement_timeout'), pg_backend_pid()"
                )
                assert row[0] == f'app_{i}, "Schema {i}", public'
                assert row[1] == f"{1001 + i}ms"
                pids[i].add(row[2])
                assert await conn.fetchval("SHOW statement_timeout") == f"{1001 + i}ms"
            await asyncio.sleep(random.random() / 100)  # interleave the clients

    try:
        await asyncio.gather(*(run(i, conn) for i, conn in enumerate(clients)))
        assert pinned(amb) == 0
        assert amb.call(lambda: amb.amb.stats.pins_total) == {}
        # the clients moved between servers (4 servers for 50): replayed, not pinned
        assert sum(len(p) > 1 for p in pids) > 10
        assert len(set().union(*pids)) <= 4
    finally:
        for conn in clients:
            await conn.close()
    # and what they left on the servers is reset before anyone else gets them
    fresh = await asyncpg.connect(amb.dsn())
    try:
        for _ in range(8):
            async with fresh.transaction():
                assert await fresh.fetchval("SHOW search_path") == '"$user", public'
                assert await fresh.fetchval("SHOW statement_timeout") == DEFAULT_TIMEOUT
    finally:
        await fresh.close()


def test_a_setting_is_replayed_after_another_client_used_the_server(ambassador) -> None:
    """Pool of 1: b's transaction gets a's server with a's settings undone; a gets them
    back. Extended protocol (psycopg: the SET is a Parse) and a list value given with
    quotes, replayed as PostgreSQL keeps it (not quoted again)."""
    amb = ambassador(pool_size=1, query_wait_timeout=30)
    with (
        psycopg.connect(amb.dsn(), autocommit=True) as a,
        psycopg.connect(amb.dsn(), autocommit=True) as b,
    ):
        a.execute("""SET search_path TO "B c", a, 'd e'""")
        a.execute("SET work_mem TO '5MB'")
        a.execute("SELECT set_config('podkit.flag', 'it''s on', false)")
        for _ in range(3):
            assert b.execute("SHOW search_path").fetchone() == ('"$user", public',)
            assert b.execute("SHOW work_mem").fetchone() == ("4MB",)
            assert b.execute("SELECT current_setting('podkit.flag', true)").fetchone() in (
                (None,), ("",),
            )  # fmt: skip
            assert a.execute("SHOW search_path").fetchone() == ('"B c", a, "d e"',)
            assert a.execute("SHOW work_mem").fetchone() == ("5MB",)
            assert a.execute("SHOW podkit.flag").fetchone() == ("it's on",)
        assert pinned(amb) == 0


ANY_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
)


def test_any_value_survives_the_replay_quoting(ambassador, pg) -> None:
    """The replay's set_config literal gives PostgreSQL back the very value, whatever
    standard_conforming_strings says; and a value set through the ambassador is the same
    after another client used (and reset) the server and the replay set it again."""
    amb = ambassador(pool_size=1, query_wait_timeout=30)
    with (
        psycopg.connect(pg.dsn, autocommit=True) as direct,
        psycopg.connect(amb.dsn(), autocommit=True) as a,
        psycopg.connect(amb.dsn(), autocommit=True) as b,
    ):

        @settings(max_examples=60, deadline=None)
        @given(ANY_TEXT)
        def check(value: str) -> None:
            for conforming in ("on", "off"):
                direct.execute(f"SET standard_conforming_strings = {conforming}")
                direct.execute("SELECT " + _set_config("podkit.v", value))
                assert direct.execute("SHOW podkit.v").fetchone() == (value,)
            if "\\" in value or not value:
                return  # (a backslash literal pins: not read with certainty; '' is a reset)
            a.execute(f"SELECT set_config('podkit.v', {quote_literal(value)}, false)")
            b.execute("SELECT 1")  # b gets the server; a's setting is undone there
            assert b.execute("SELECT current_setting('podkit.v', true)").fetchone() != (value,)
            assert a.execute("SHOW podkit.v").fetchone() == (value,)

        check()
        assert pinned(amb) == 0


def test_set_in_a_rolled_back_transaction_is_not_replayed(ambassador) -> None:
    """PostgreSQL undoes a SET of a transaction that rolls back (or of a savepoint rolled
    back to); the pooler reads the setting back at the transaction's end, so it keeps
    exactly what PostgreSQL kept."""
    amb = ambassador(pool_size=1, query_wait_timeout=30)
    with psycopg.connect(amb.dsn()) as a, psycopg.connect(amb.dsn(), autocommit=True) as b:
        a.execute("SET statement_timeout = '777ms'")
        a.rollback()
        a.execute("SET lock_timeout = '888ms'")
        a.execute("SAVEPOINT s")
        a.execute("SET work_mem = '6MB'")
        a.execute("ROLLBACK TO SAVEPOINT s")
        a.commit()
        # (read back just after the client saw its transaction end)
        wait_for(
            lambda: sorted(client_extra(amb), key=len) == [{}, {"lock_timeout": "888ms"}],
            what="a's settings read back",
        )
        b.execute("select 1")  # b gets the server: a's setting undone there
        assert b.execute("SHOW lock_timeout").fetchone() == ("0",)
        assert a.execute("SHOW statement_timeout").fetchone() == (DEFAULT_TIMEOUT,)
        assert a.execute("SHOW lock_timeout").fetchone() == ("888ms",)
        assert a.execute("SHOW work_mem").fetchone() == ("4MB",)
        a.commit()
        assert pinned(amb) == 0


async def test_reset_and_reset_all(ambassador) -> None:
    amb = ambassador(pool_size=1, query_wait_timeout=30)
    a = await asyncpg.connect(amb.dsn())
    b = await asyncpg.connect(amb.dsn())
    try:
        await a.execute("SET statement_timeout = '2s'; SET lock_timeout = '3s'")
        await a.execute("SET work_mem = '7MB'")
        assert await b.fetchval("SHOW work_mem") == "4MB"
        await a.execute("RESET statement_timeout")
        await a.execute("SET lock_timeout TO DEFAULT")
        assert await b.fetchval("SHOW lock_timeout") == "0"  # a's server used by b
        assert await a.fetchval("SHOW statement_timeout") == DEFAULT_TIMEOUT
        assert await a.fetchval("SHOW lock_timeout") == "0"
        assert await a.fetchval("SHOW work_mem") == "7MB"
        await a.execute("SET statement_timeout = '9s'")
        await a.execute("RESET ALL")
        assert await b.fetchval("SHOW work_mem") == "4MB"
        assert await a.fetchval("SHOW work_mem") == "4MB"
        assert await a.fetchval("SHOW statement_timeout") == DEFAULT_TIMEOUT
        assert client_extra(amb) == [{}, {}]
        assert pinned(amb) == 0
    finally:
        await a.close()
        await b.close()


@pytest.mark.parametrize(
    "statement",
    [
        "DO $$BEGIN SET statement_timeout = '4s'; END$$",
        "DO $$BEGIN PERFORM set_config('statement_timeout', '4s', false); END$$",
        "CREATE FUNCTION setter() RETURNS void LANGUAGE plpgsql AS "
        "$$BEGIN SET statement_timeout = '4s'; END$$",
        "SELECT set_config('statement_timeout', lower('4S'), false)",
        "SET ROLE postgres",
    ],
)
async def test_what_cannot_be_read_with_certainty_still_pins(ambassador, statement: str) -> None:
    amb = ambassador(pool_size=2)
    conn = await asyncpg.connect(amb.dsn())
    try:
        await conn.execute(statement)
        pid = await conn.fetchval("select pg_backend_pid()")
        assert pinned(amb) == 1
        assert amb.call(lambda: amb.amb.pinned["set"]) == 1
        other = await asyncpg.connect(amb.dsn())
        try:
            async with other.transaction():  # takes the other server, never conn's
                assert await other.fetchval("select pg_backend_pid()") != pid
                assert await conn.fetchval("select pg_backend_pid()") == pid
        finally:
            await other.close()
    finally:
        await conn.close()
    wait_for(lambda: amb.call(lambda: sum(amb.amb.pinned.values())) == 0, what="unpinned")


def test_set_local_and_set_config_local_stay_free(ambassador) -> None:
    amb = ambassador(pool_size=1)
    with psycopg.connect(amb.dsn()) as conn:
        conn.execute("SET LOCAL statement_timeout = '5s'")
        conn.execute("SELECT set_config('lock_timeout', '6s', true)")
        assert conn.execute("SHOW statement_timeout").fetchone() == ("5s",)
        conn.commit()
        assert conn.execute("SHOW statement_timeout").fetchone() == (DEFAULT_TIMEOUT,)
        assert conn.execute("SHOW lock_timeout").fetchone() == ("0",)
        conn.commit()
    assert pinned(amb) == 0
    assert amb.call(lambda: amb.amb.stats.pins_total) == {}


def test_pin_mode_keeps_the_old_behaviour(ambassador) -> None:
    """--session-settings pin: as pinning poolers (the bench compares both)."""
    amb = ambassador(pool_size=2, session_settings="pin")
    with psycopg.connect(amb.dsn(), autocommit=True) as conn:
        conn.execute("SET statement_timeout = '4s'")
        assert pinned(amb) == 1
        assert conn.execute("SHOW statement_timeout").fetchone() == ("4s",)


async def test_an_advisory_lock_pins_only_while_held(ambassador) -> None:
    amb = ambassador(pool_size=2, query_wait_timeout=30)
    a = await asyncpg.connect(amb.dsn())
    b = await asyncpg.connect(amb.dsn())
    try:
        assert await a.fetchval("select pg_advisory_lock($1::bigint)", 42) is None  # Parse
        a_pid = await a.fetchval("select pg_backend_pid()")
        assert pinned(amb) == 1
        assert amb.call(lambda: amb.amb.pinned["advisory_lock"]) == 1
        # a keeps its server; b is served by the other one, in and out of transactions
        for _ in range(5):
            assert await b.fetchval("select pg_backend_pid()") != a_pid
            assert await a.fetchval("select pg_backend_pid()") == a_pid
        async with b.transaction():
            assert await b.fetchval("select pg_try_advisory_lock(42)") is False
            assert await a.fetchval("select pg_backend_pid()") == a_pid
        assert pinned(amb) == 1  # b's failed try_ took nothing: b not pinned
        # a second hold of the same key: one unlock leaves one held
        await a.execute("select pg_advisory_lock(42)")
        await a.execute("select pg_advisory_unlock(42)")
        assert await a.fetchval("select pg_backend_pid()") == a_pid
        assert pinned(amb) == 1
        assert await a.fetchval("select pg_advisory_unlock(42)") is True
        assert await a.fetchval("select 1") == 1  # (behind the pooler's check)
        assert pinned(amb) == 0
        # back in the pool: while b holds a transaction, a runs on the other server
        for holder, runner in ((b, a), (a, b)):
            async with holder.transaction():
                held = await holder.fetchval("select pg_backend_pid()")
                assert await runner.fetchval("select pg_backend_pid()") != held
        assert await b.fetchval("select count(*) from pg_locks where locktype = 'advisory'") == 0
        # unlock_all, a transaction-level lock (ends with its transaction), shared locks
        await a.execute("select pg_advisory_lock_shared(1), pg_advisory_lock(2)")
        await a.execute("select 1")
        assert pinned(amb) == 1
        await a.execute("select pg_advisory_unlock_all()")
        await a.execute("select 1")
        assert pinned(amb) == 0
        async with a.transaction():
            await a.execute("select pg_advisory_xact_lock(3)")
        await a.execute("select 1")
        assert pinned(amb) == 0
        assert amb.call(lambda: amb.amb.stats.pins_total) == {"advisory_lock": 2}
    finally:
        await a.close()
        await b.close()


def test_an_advisory_lock_through_psycopg_and_a_client_that_leaves_holding_it(
    ambassador, pg
) -> None:
    amb = ambassador(pool_size=1, query_wait_timeout=30)
    conn = psycopg.connect(amb.dsn(), autocommit=True)
    conn.execute("select pg_try_advisory_lock(%s)", [7])  # Parse, Bind, Execute
    conn.execute("select 1")
    assert pinned(amb) == 1
    conn.close()
    wait_for(lambda: amb.call(lambda: sum(amb.amb.pinned.values())) == 0, what="unpinned")
    with psycopg.connect(amb.dsn(), autocommit=True) as other:
        # the server was reset (DISCARD ALL) before reuse: the lock went with it
        assert other.execute(
            "select count(*) from pg_locks where locktype = 'advisory'"
        ).fetchone() == (0,)
