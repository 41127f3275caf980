"""Session state through pg-ambassador: replayed, pinned, or refused; never leaked."""

from __future__ import annotations

import asyncio

import asyncpg
import psycopg
import pytest

from podkit_dev.servers import wait_for


async def test_reported_settings_follow_the_client_to_other_servers(ambassador) -> None:
    amb = ambassador(pool_size=2)
    a = await asyncpg.connect(amb.dsn(), server_settings={"application_name": "alpha"})
    b = await asyncpg.connect(amb.dsn())
    try:
        await a.execute("set TimeZone = 'Asia/Tokyo'")  # reported: tracked, not pinned
        for _ in range(20):
            # other clients keep taking servers; each sees only its own settings
            assert await a.fetchval("show timezone") == "Asia/Tokyo"
            assert await a.fetchval("show application_name") == "alpha"
            assert await b.fetchval("show timezone") != "Asia/Tokyo"
            assert await b.fetchval("show application_name") != "alpha"
        assert amb.amb.pinned["set"] == 0
    finally:
        await a.close()
        await b.close()


@pytest.mark.parametrize("batch", ["executemany", "pipeline"])
@pytest.mark.timeout(60)
def test_messages_sent_while_settings_are_set_again_keep_their_order(
    ambassador, batch: str
) -> None:
    """The server a client gets first has its settings set again (it last served a client
    with another application_name); the client may send more meanwhile (psycopg's
    executemany and pipelines send a Parse, then its Binds). Found by psycopg's
    test_type_error_shadow: the later messages overtook the queued ones, so a Bind
    reached the server before its Parse (`prepared statement "_pg3_0" does not exist`),
    or a pipeline hung."""
    amb = ambassador(pool_size=1)
    with psycopg.connect(amb.dsn(), application_name="other") as first:
        first.execute("select 1")
    with psycopg.connect(amb.dsn(), autocommit=True) as conn:
        if batch == "executemany":
            with conn.cursor() as cursor:
                cursor.executemany("select %s::int", [(i,) for i in range(20)], returning=True)
                results = []
                while True:
                    results.append(cursor.fetchone())
                    if not cursor.nextset():
                        break
            assert results == [(i,) for i in range(20)]
        else:
            with conn.pipeline():
                one = conn.execute("select %s::int", [1])
                two = conn.execute("select %s::int", [2], prepare=True)
            assert (one.fetchone(), two.fetchone()) == ((1,), (2,))
        assert conn.execute("show application_name").fetchone() != ("other",)


async def test_set_of_unreported_guc_is_replayed_and_undone_before_reuse(ambassador) -> None:
    """Read back at the transaction's end, undone before another client gets the server,
    set again for its client (test_session_replay.py has the rest)."""
    amb = ambassador(pool_size=1, query_wait_timeout=30)
    a = await asyncpg.connect(amb.dsn())
    try:
        await a.execute("set statement_timeout = '4321ms'")
        pid = await a.fetchval("select pg_backend_pid()")
        assert amb.amb.pinned["set"] == 0  # not pinned: b gets the only server
        pid_b, timeout_b = await asyncio.wait_for(_show_timeout(amb), 30)
        assert (pid_b, timeout_b) == (pid, "0")  # the same server, the setting undone
        assert await a.fetchval("show statement_timeout") == "4321ms"  # and set again
    finally:
        await a.close()


async def test_set_of_unreported_guc_pins_in_pin_mode_and_is_reset_before_reuse(
    ambassador, pg
) -> None:
    amb = ambassador(pool_size=1, query_wait_timeout=30, session_settings="pin")
    a = await asyncpg.connect(amb.dsn())
    await a.execute("set statement_timeout = '4321ms'")
    assert amb.amb.pinned["set"] == 1
    # pinned: a keeps its server between transactions, and its setting
    assert await a.fetchval("show statement_timeout") == "4321ms"
    pid = await a.fetchval("select pg_backend_pid()")
    b_task = asyncio.ensure_future(_show_timeout(amb))
    await asyncio.sleep(0.2)
    assert not b_task.done()  # the only server is pinned to a
    await a.close()
    pid_b, timeout_b = await asyncio.wait_for(b_task, 30)
    assert pid_b == pid  # the same server, reset: the setting did not leak
    assert timeout_b == "0"
    wait_for(lambda: amb.amb.pinned["set"] == 0, what="pin released", timeout=5)


async def _show_timeout(amb) -> tuple[int, str]:
    b = await asyncpg.connect(amb.dsn())
    try:
        return await b.fetchval("select pg_backend_pid()"), await b.fetchval(
            "show statement_timeout"
        )
    finally:
        await b.close()


async def test_listen_notify_pins_nobody(ambassador) -> None:
    """LISTEN is served through the pool (test_listen.py has the rest)."""
    amb = ambassador(pool_size=2)
    listener = await asyncpg.connect(amb.dsn())
    sender = await asyncpg.connect(amb.dsn())
    got: asyncio.Queue[str] = asyncio.Queue()
    try:
        await listener.add_listener("chan", lambda *args: got.put_nowait(args[3]))
        assert amb.amb.pinned["listen"] == 0
        for i in range(3):
            await sender.execute(f"notify chan, 'hello {i}'")
        assert [await asyncio.wait_for(got.get(), 10) for _ in range(3)] == [
            "hello 0", "hello 1", "hello 2",
        ]  # fmt: skip
    finally:
        await listener.close()
        await sender.close()


@pytest.mark.parametrize(
    ("statement", "reason"),
    [
        ("select pg_advisory_lock(7)", "advisory_lock"),
        ("create temp table tmp_x (a int)", "temp_table"),
        ("prepare sqlprep as select 1", "prepare"),
    ],
)
async def test_other_session_state_pins(ambassador, statement: str, reason: str) -> None:
    amb = ambassador(pool_size=2)
    conn = await asyncpg.connect(amb.dsn())
    try:
        await conn.execute(statement)
        # (an advisory lock pins once the pooler asked the server, at the transaction's end:
        # before the client's next statement runs)
        assert await conn.fetchval("select 1") == 1
        assert amb.amb.pinned[reason] == 1
    finally:
        await conn.close()
    wait_for(lambda: amb.amb.pinned[reason] == 0, what="unpinned", timeout=5)
    other = await asyncpg.connect(amb.dsn())
    try:
        assert (
            await other.fetchval("select count(*) from pg_prepared_statements where from_sql") == 0
        )
        assert (
            await other.fetchval("select count(*) from pg_locks where locktype = 'advisory'") == 0
        )
        assert await other.fetchval("select count(*) from pg_class where relpersistence = 't'") == 0
    finally:
        await other.close()


async def test_cursor_with_hold_pins(ambassador) -> None:
    amb = ambassador(pool_size=2)
    conn = await asyncpg.connect(amb.dsn(), statement_cache_size=0)
    try:
        await conn.execute("declare c cursor with hold for select generate_series(1, 3)")
        assert amb.amb.pinned["cursor_with_hold"] == 1
        assert await conn.fetchval("fetch 1 from c") == 1
        assert await conn.fetchval("fetch 1 from c") == 2
    finally:
        await conn.close()


async def test_on_session_state_error_refuses_and_connection_stays_usable(ambassador) -> None:
    amb = ambassador(pool_size=1, on_session_state="error")
    conn = await asyncpg.connect(amb.dsn())
    try:
        # a SET it reads with certainty is replayed, not refused; one it cannot read is
        await conn.execute("set lock_timeout = 5")
        with pytest.raises(asyncpg.FeatureNotSupportedError, match="statement_timeout"):
            await conn.execute("DO $$BEGIN SET statement_timeout = 5; END$$")
        await conn.execute("listen x")  # not session state any more: served by the pool
        with pytest.raises(asyncpg.FeatureNotSupportedError, match="advisory"):
            await conn.fetchval("select pg_advisory_lock($1::bigint)", 1)
        assert await conn.fetchval("select 1") == 1
        assert await conn.fetchval("show statement_timeout") == "0"
        assert await conn.fetchval("show lock_timeout") == "5ms"
        assert amb.amb.stats.refused_statements == 2
        assert sum(amb.amb.pinned.values()) == 0
    finally:
        await conn.close()


async def test_session_mode_keeps_the_server_and_resets_it(ambassador) -> None:
    amb = ambassador(pool_mode="session", pool_size=1, query_wait_timeout=30)
    a = await asyncpg.connect(amb.dsn())
    await a.execute("set statement_timeout = '1234ms'")
    pid = await a.fetchval("select pg_backend_pid()")
    assert sum(amb.amb.pinned.values()) == 0  # session mode: nothing to pin
    b_task = asyncio.ensure_future(_show_timeout(amb))
    await asyncio.sleep(0.2)
    assert not b_task.done()  # session mode: the only server stays with a
    await a.close()
    pid_b, timeout_b = await asyncio.wait_for(b_task, 30)
    assert (pid_b, timeout_b) == (pid, "0")


async def test_session_mode_leaves_statement_names_as_the_client_gave_them(ambassador) -> None:
    """In session mode the server is the client's alone: a statement prepared through the
    protocol keeps its name (SQL `EXECUTE` finds it, `pg_prepared_statements` lists it,
    asyncpg's test_prepare_explicitly_named), and the next client gets none of them."""
    amb = ambassador(pool_mode="session", pool_size=1, query_wait_timeout=30)
    names = "select array_agg(name order by name) from pg_prepared_statements"
    conn = await asyncpg.connect(amb.dsn(), statement_cache_size=0)
    try:
        foobar = await conn.prepare("select 41 + 1", name="foobar")  # (closed once collected)
        assert await conn.fetchval("EXECUTE foobar") == 42
        assert await conn.fetchval(names) == ["foobar"]
        await conn.execute("DEALLOCATE foobar")
        del foobar
        assert await conn.fetchval(names) is None
        left_behind = await conn.prepare("select 2", name="left_behind")
        assert await left_behind.fetchval() == 2
    finally:
        await conn.close()
    conn = await asyncpg.connect(amb.dsn(), statement_cache_size=0)
    try:
        assert await conn.fetchval(names) is None  # reset (DISCARD ALL) before reuse
    finally:
        await conn.close()


async def test_a_login_setting_seen_once_needs_no_server_again(ambassador, monkeypatch) -> None:
    """The first client asking for application_name='worker' has it tried on a server;
    later clients asking for the same value log in without taking a server for that
    (learned, even though the server kept the value as given), and still get it."""
    from podkit.ambassadors.postgres.client import ClientConn

    login_replays: list[str] = []
    need_server = ClientConn.need_server

    def recording(self):  # type: ignore[no-untyped-def]
        if self.login_replay:
            login_replays.append(self.wanted.get("application_name", ""))
        return need_server(self)

    monkeypatch.setattr(ClientConn, "need_server", recording)
    amb = ambassador(pool_size=2)
    for _ in range(5):
        conn = await asyncpg.connect(amb.dsn(), server_settings={"application_name": "worker"})
        try:
            assert await conn.fetchval("show application_name") == "worker"
        finally:
            await conn.close()
    assert login_replays == ["worker"]


async def test_a_client_that_only_logs_in_and_out_takes_no_server(ambassador) -> None:
    """Terminate with no server held closes the client at once: no server is taken (and
    none waited for) just to be told goodbye."""
    amb = ambassador(pool_size=1)
    conn = await asyncpg.connect(amb.dsn())  # the first login may try settings on a server
    await conn.close()
    holder = await asyncpg.connect(amb.dsn())
    transaction = holder.transaction()
    await transaction.start()  # the only server is held from here on
    try:
        attaches = amb.call(lambda: amb.amb.stats.waits)
        for _ in range(5):
            conn = await asyncpg.connect(amb.dsn())
            await asyncio.wait_for(conn.close(), 5)
        assert amb.call(lambda: amb.amb.stats.waits) == attaches
    finally:
        await transaction.rollback()
        await holder.close()
