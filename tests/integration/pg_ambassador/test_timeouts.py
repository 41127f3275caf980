"""pg-ambassador's timeouts and pool limits (PgBouncer's names), against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import socket
import time

import asyncpg
import pytest

from podkit.ambassadors.postgres import protocol as pq
from podkit_dev.servers import until, wait_for
from tests.integration.pg_ambassador import kit


async def test_query_timeout_cancels_the_query_and_the_connection_lives(ambassador) -> None:
    amb = ambassador(query_timeout=0.5)
    conn = await asyncpg.connect(amb.dsn())
    try:
        with pytest.raises(asyncpg.QueryCanceledError):
            await asyncio.wait_for(conn.fetchval("select pg_sleep(30)"), 20)
        assert await conn.fetchval("select 1") == 1
        assert amb.amb.stats.cancels_forwarded >= 1
    finally:
        await conn.close()


async def test_idle_transaction_timeout_closes_the_client_and_frees_the_server(
    ambassador,
) -> None:
    amb = ambassador(pool_size=1, idle_transaction_timeout=0.5)
    idle = await asyncpg.connect(amb.dsn())
    tx = idle.transaction()
    await tx.start()
    await idle.execute("select 1")
    other = await asyncpg.connect(amb.dsn())
    try:
        # the only server is freed once the idle transaction is closed
        assert await asyncio.wait_for(other.fetchval("select 7"), 20) == 7
        with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, ConnectionError)):
            await idle.fetchval("select 1")
    finally:
        idle.terminate()
        await other.close()


async def test_cancel_of_a_client_holding_no_server_is_dropped(ambassador) -> None:
    amb = ambassador()
    conn = await asyncpg.connect(amb.dsn())
    try:
        await conn.fetchval("select 1")
        (client,) = amb.call(lambda: [c for c in amb.amb.clients if c.process_id])
        with socket.create_connection(("127.0.0.1", amb.port)) as sock:
            sock.sendall(pq.cancel_request(client.process_id, client.secret_key))
            assert sock.recv(100) == b""  # closed, nothing said (as PostgreSQL does)
        wait_for(lambda: amb.amb.stats.cancels_dropped == 1, what="cancel dropped")
        assert amb.amb.stats.cancels_forwarded == 0
        assert await conn.fetchval("select 2") == 2
    finally:
        await conn.close()


async def test_server_idle_timeout_and_min_pool_size(ambassador, pg) -> None:
    amb = ambassador(pool_size=3, min_pool_size=1, server_idle_timeout=0.3)
    conns = [await asyncpg.connect(amb.dsn()) for _ in range(3)]

    async def hold(conn: asyncpg.Connection) -> None:
        async with conn.transaction():
            await conn.execute("select pg_sleep(0.3)")

    await asyncio.gather(*(hold(c) for c in conns))
    wait_for(lambda: kit.server_backends(pg) == 1, what="idle servers closed down to 1")
    # each client's server was parked with it when closed: the next query gets another
    for conn in conns:
        assert await conn.fetchval("select 1") == 1
        await conn.close()


def backend_pids(pg) -> set[int]:  # type: ignore[no-untyped-def]
    out = pg.sql(
        "select pid from pg_stat_activity where backend_type = 'client backend' "
        "and pid <> pg_backend_pid()"
    )
    return {int(pid) for pid in out.split()}


@pytest.mark.parametrize("stats_period", [0.1, 60.0], ids=["checks-running", "release-only"])
async def test_server_lifetime_closes_an_old_server_when_released_not_mid_transaction(
    ambassador, pg, stats_period: float
) -> None:
    # release-only: the periodic check (which closes old *idle* servers) never runs, so
    # only the release can retire the server
    lifetime = 1.0
    amb = ambassador(pool_size=1, server_lifetime=lifetime, stats_period=stats_period)
    conn = await asyncpg.connect(amb.dsn())
    try:
        tx = conn.transaction()
        await tx.start()
        first = await conn.fetchval("select pg_backend_pid()")
        born = amb.call(lambda: next(iter(amb.amb.pools.values())).active.copy().pop().created)
        # the server grows older than --server-lifetime inside the transaction
        await asyncio.to_thread(
            wait_for, lambda: amb.call(time.monotonic) - born > lifetime + 0.3,
            what="server older than its lifetime", timeout=10,
        )  # fmt: skip
        assert await conn.fetchval("select pg_backend_pid()") == first  # not cut mid-transaction
        await tx.commit()
        # released: too old, so closed (its backend leaves PostgreSQL)
        await asyncio.to_thread(
            wait_for, lambda: first not in backend_pids(pg),
            what="the old backend closed", timeout=10,
        )  # fmt: skip
        second = await conn.fetchval("select pg_backend_pid()")
        assert second != first
    finally:
        await conn.close()


async def test_a_young_server_is_reused(ambassador) -> None:
    amb = ambassador(pool_size=1, server_lifetime=3600)
    conn = await asyncpg.connect(amb.dsn())
    try:
        pids = {await conn.fetchval("select pg_backend_pid()") for _ in range(5)}
        assert len(pids) == 1
    finally:
        await conn.close()


def raw_login(port: int) -> socket.socket:
    """A bare protocol client, logged in (trust) and idle: reads what the ambassador says."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(pq.startup_message({"user": "postgres", "database": "postgres"}))
    buf = b""
    while pq.READY_IDLE not in buf:
        chunk = sock.recv(65536)
        assert chunk, buf
        buf += chunk
    return sock


def read_to_eof_timed(sock: socket.socket) -> tuple[bytes, float]:
    """Everything the ambassador says until it closes, and when it closed."""
    return kit.read_to_eof(sock), time.monotonic()


async def test_client_idle_timeout_closes_an_idle_client_not_an_active_one(ambassador) -> None:
    timeout = 1.0
    amb = ambassador(pool_size=4, client_idle_timeout=timeout)
    logged_in = time.monotonic()  # (just before: the ambassador's clock starts after)
    idle = raw_login(amb.port)
    watch = asyncio.ensure_future(asyncio.to_thread(read_to_eof_timed, idle))
    # idle after one query: its server stays parked with it (a server for each client)
    used = await asyncpg.connect(amb.dsn())
    assert await used.fetchval("select 0") == 0
    busy = await asyncpg.connect(amb.dsn())
    chatty = await asyncpg.connect(amb.dsn())
    in_tx = await asyncpg.connect(amb.dsn())
    tx = in_tx.transaction()
    await tx.start()
    await in_tx.execute("select 1")

    async def chat() -> int:
        n = 0
        while time.monotonic() - logged_in < 3 * timeout:
            n += await chatty.fetchval("select 1")
            await asyncio.sleep(timeout / 10)
        return n

    try:
        # busy: one query longer than the timeout (it holds a server all along), ending
        # after the chat; chatty: short queries for three times the timeout
        slept, chatted = await asyncio.gather(
            busy.fetchval("select pg_sleep($1)::text || 'slept'", 3.5 * timeout), chat()
        )
        assert slept == "slept" and chatted >= 10
        # idle for a third of the timeout (the checks run every 0.1 s meanwhile): idle
        # counts from the end of the long query, not from when it was sent, so both are open
        await asyncio.sleep(timeout / 3)
        assert await busy.fetchval("select 2") == 2
        assert await chatty.fetchval("select 3") == 3
        # idle inside a transaction is idle_transaction_timeout's business, not this one's
        assert await in_tx.fetchval("select 4") == 4
        await tx.commit()
        # the idle client was closed meanwhile, after the timeout, with a FATAL saying why
        said, closed_at = await asyncio.wait_for(watch, 10)
        assert closed_at - logged_in >= timeout  # never before the timeout (the wait bounds it)
        errors = [pq.parse_error_fields(m) for k, m in pq.iter_messages(said) if k == ord("E")]
        assert [(e.get("S"), e.get("C")) for e in errors] == [("FATAL", "57P05")], said
        assert "client_idle_timeout" in errors[0]["M"]

        await until(used.is_closed, what="the client idle since its query to be closed")
    finally:
        idle.close()
        used.terminate()
        for conn in (busy, chatty, in_tx):
            await conn.close()


async def pid_in_transaction(conn: asyncpg.Connection) -> int:
    """Start a transaction (so the server stays held) and say which backend runs it."""
    await conn.execute("begin")
    return await conn.fetchval("select pg_backend_pid()")


@pytest.mark.parametrize("reserve", [1, 0])
async def test_reserve_pool_opens_an_extra_server_for_a_client_that_waited(
    ambassador, pg, reserve: int
) -> None:
    wait = 0.5
    amb = ambassador(pool_size=1, reserve_pool_size=reserve, reserve_pool_timeout=wait,
                     query_wait_timeout=4 * wait + 2)  # fmt: skip
    holder, waiter, third = [await asyncpg.connect(amb.dsn()) for _ in range(3)]
    try:
        held = await pid_in_transaction(holder)  # the pool's only server, kept
        assert kit.server_backends(pg) == 1
        started = time.monotonic()
        waiting = [asyncio.ensure_future(pid_in_transaction(c)) for c in (waiter, third)]
        if not reserve:
            # nobody gets a server while the holder keeps it; both are told at timeout
            results = await asyncio.gather(*waiting, return_exceptions=True)
            assert all(isinstance(r, asyncpg.PostgresError) for r in results), results
            assert "query_wait_timeout" in str(results[0])
            assert kit.server_backends(pg) == 1
            return
        # they waited longer than --reserve-pool-timeout: one reserve server is opened
        done, pending = await asyncio.wait(waiting, timeout=4 * wait + 1,
                                           return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
        served_after = time.monotonic() - started
        assert len(done) == 1 and len(pending) == 1
        extra = done.pop().result()
        assert extra != held and served_after >= wait
        # pool plus reserve: 2 backends, not 3, while both keep their transactions
        assert kit.server_backends(pg) == 2
        (still,) = pending
        assert not still.done()
        assert await holder.fetchval("select pg_backend_pid()") == held
        await holder.execute("commit")
        # the holder's server goes to the last one
        assert await asyncio.wait_for(still, 10) == held
        assert kit.server_backends(pg) == 2
    finally:
        for conn in (holder, waiter, third):
            conn.terminate()
