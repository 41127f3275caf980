"""pg-ambassador against what client libraries' own test suites check (found by running
psycopg 3's suite through it): notification pids, and statements shared between clients
that a rolled-back transaction or a DROP made stale, and when a cancel is done."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

import asyncpg
import psycopg
import pytest

from podkit_dev.servers import HOST, free_port

INSERT = "INSERT INTO preptable (bar) VALUES (%s::prepenum[])"


def create(conn: psycopg.Connection) -> None:
    conn.execute("CREATE TYPE prepenum AS ENUM ('foo', 'bar', 'baz')")
    conn.execute("CREATE TABLE preptable(id integer, bar prepenum[])")


@pytest.mark.parametrize("pool_mode", ["session", "transaction"])
def test_notification_pid_is_the_backend_pid_the_notifier_was_given(
    ambassador, pool_mode: str
) -> None:
    """`notify.pid == conn.info.backend_pid` tells a client its own notifications apart."""
    amb = ambassador(pool_mode=pool_mode, pool_size=4)
    with (
        psycopg.connect(amb.dsn(), autocommit=True) as listener,
        psycopg.connect(amb.dsn(), autocommit=True) as notifier,
    ):
        listener.execute("LISTEN chan")
        notifier.execute("NOTIFY chan, 'other'")
        listener.execute("NOTIFY chan, 'self'")
        got = {n.payload: n.pid for n in listener.notifies(timeout=10, stop_after=2)}
        assert got == {
            "other": notifier.info.backend_pid,
            "self": listener.info.backend_pid,
        }
        assert notifier.info.backend_pid != listener.info.backend_pid


def test_statement_prepared_in_a_rolled_back_transaction_is_not_given_to_the_next(
    ambassador,
) -> None:
    """A client leaves mid-transaction after preparing a statement that names a type it
    created there: the next client, on the same server, creates the type again and runs
    the same text. Handed the server's old statement it would get `cache lookup failed
    for type`; on a fresh connection to PostgreSQL it works."""
    amb = ambassador(pool_mode="transaction", pool_size=1)
    first = psycopg.connect(amb.dsn(), prepare_threshold=0)
    create(first)
    first.execute(INSERT, [["foo"]])
    first.close()  # in a transaction: rolled back by the ambassador

    with psycopg.connect(amb.dsn(), prepare_threshold=0) as second:
        create(second)
        second.execute(INSERT, [["bar"]])
        assert second.execute("SELECT bar::text FROM preptable").fetchall() == [("{bar}",)]


def test_deallocate_all_after_drop_reaches_the_other_servers_of_the_pool(ambassador) -> None:
    """psycopg says DEALLOCATE ALL after a DROP (the object may be created again); it runs
    on whichever server the client holds then. The server that prepared the statement
    must not hand out its copy, which names the dropped type, either."""
    amb = ambassador(pool_mode="transaction", pool_size=2)
    with (
        psycopg.connect(amb.dsn(), prepare_threshold=0, autocommit=True) as conn,
        psycopg.connect(amb.dsn()) as blocker,
    ):
        create(conn)
        with conn.transaction():
            prepared_on = conn.execute("SELECT pg_backend_pid()").fetchone()
            conn.execute(INSERT, [["foo"]])
        held = blocker.execute("SELECT pg_backend_pid()").fetchone()  # stays in a transaction
        conn.execute("DROP TABLE preptable")
        conn.execute("DROP TYPE prepenum")  # then psycopg sends DEALLOCATE ALL
        blocker.commit()
        create(conn)
        with conn.transaction():
            now_on = conn.execute("SELECT pg_backend_pid()").fetchone()
            conn.execute(INSERT, [["bar"]])
        # the precondition (idle servers are reused last in, first out): the DROPs ran on
        # the other server, and the INSERT is back on the one that prepared it
        assert held == prepared_on == now_on
        assert conn.execute("SELECT bar::text FROM preptable").fetchall() == [("{bar}",)]


CANCEL_CODE = 80877102


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


async def test_cancel_connection_closes_once_postgresql_took_the_cancel(ambassador, pg) -> None:
    """libpq's PQcancel (psycopg's cancel_safe) reads the cancel connection until
    PostgreSQL closes it: then the backend has been signalled, and the next query cannot
    be the one the cancel hits. psycopg's test_stream_error_python_consumed got
    QueryCanceled on a later query when the ambassador closed the client's cancel
    connection before forwarding the request. A proxy in front of PostgreSQL holds the
    forwarded CancelRequest: until it lets go, the client's cancel connection stays open."""
    held = asyncio.Event()
    release = asyncio.Event()

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readexactly(8)
        if struct.unpack("!II", head) == (16, CANCEL_CODE):
            head += await reader.readexactly(8)
            held.set()
            await release.wait()
        up_reader, up_writer = await asyncio.open_connection(HOST, pg.port)
        up_writer.write(head)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    listener = await asyncio.start_server(proxy, HOST, free_port())
    proxy_port = listener.sockets[0].getsockname()[1]
    amb = ambassador(pool_mode="transaction", server_port=proxy_port)
    conn = await asyncpg.connect(amb.dsn())
    direct = await asyncpg.connect(pg.dsn)
    cancel = socket.create_connection((HOST, amb.port))
    try:
        query = asyncio.create_task(conn.fetchval("SELECT pg_sleep(60)"))

        async def sleeping() -> bool:
            sql = "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)'"
            return await direct.fetchval(sql) == 1

        for _ in range(200):  # the query runs on a server: the ambassador forwards cancels
            if await sleeping():
                break
            await asyncio.wait({query}, timeout=0.05)
        assert await sleeping()
        protocol = conn._protocol  # type: ignore[attr-defined]
        cancel.sendall(
            struct.pack("!IIii", 16, CANCEL_CODE, protocol.backend_pid, protocol.backend_secret)
        )
        await asyncio.wait_for(held.wait(), 10)
        cancel.setblocking(False)
        with pytest.raises(BlockingIOError):  # not closed: no EOF (b"") to read
            cancel.recv(1)
        release.set()
        with pytest.raises(asyncpg.QueryCanceledError):
            await asyncio.wait_for(query, 10)
        loop = asyncio.get_running_loop()
        assert await asyncio.wait_for(loop.sock_recv(cancel, 1), 10) == b""
        assert await conn.fetchval("SELECT 1") == 1
    finally:
        cancel.close()
        release.set()
        await conn.close()
        await direct.close()
        listener.close()
