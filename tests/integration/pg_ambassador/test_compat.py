"""pg-ambassador against what client libraries' own test suites check (found by running
psycopg 3's suite through it): notification pids, and statements shared between clients
that a rolled-back transaction or a DROP made stale, and when a cancel is done."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import socket
import struct
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import psycopg
import pytest

from podkit.ambassadors.postgres import protocol as pq
from podkit_dev.servers import HOST, free_port, until
from tests.integration.pg_ambassador.kit import running, send_cancel

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
        got = {}
        if pool_mode == "transaction":
            # The pool's listener connection reads it: the backend that sent it must not
            # have gone to the listener meanwhile, or the pid is a guess (notify.py,
            # as_client_pid; the README's limits).
            got = {n.payload: n.pid for n in listener.notifies(timeout=10, stop_after=1)}
        listener.execute("NOTIFY chan, 'self'")
        got |= {n.payload: n.pid for n in listener.notifies(timeout=10, stop_after=2 - len(got))}
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
        psycopg.connect(amb.dsn()) as taker,
    ):
        create(conn)
        with conn.transaction():
            prepared_on = conn.execute("SELECT pg_backend_pid()").fetchone()
            conn.execute(INSERT, [["foo"]])
        # Each stays in a transaction. The blocker takes the server conn parked (the
        # only one), so conn's DROPs run on a second one, which the taker takes next.
        held = blocker.execute("SELECT pg_backend_pid()").fetchone()
        conn.execute("DROP TABLE preptable")
        conn.execute("DROP TYPE prepenum")  # then psycopg sends DEALLOCATE ALL
        dropped_on = taker.execute("SELECT pg_backend_pid()").fetchone()
        blocker.commit()
        create(conn)
        with conn.transaction():
            now_on = conn.execute("SELECT pg_backend_pid()").fetchone()
            conn.execute(INSERT, [["bar"]])
        # the precondition: the DROPs ran on the other server, and the INSERT is back on
        # the one that prepared it
        assert held == prepared_on == now_on != dropped_on
        assert conn.execute("SELECT bar::text FROM preptable").fetchall() == [("{bar}",)]


B_QUERY = "SELECT 'b' FROM pg_advisory_xact_lock(2)"


async def _pipe(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    cut: Callable[[bytes], bool] | None = None,
) -> None:
    """Copy until EOF, or until `cut(data)` is true (it dropped the connection)."""
    with contextlib.suppress(OSError):
        while data := await reader.read(65536):
            if cut is not None and cut(data):
                return
            writer.write(data)
            await writer.drain()
    writer.close()


class PgProxy:
    """A TCP proxy in front of PostgreSQL on a free loopback port (`start` returns it)."""

    def __init__(self, pg_port: int) -> None:
        self.pg_port = pg_port
        self.listener: asyncio.Server | None = None

    async def start(self) -> int:
        self.listener = await asyncio.start_server(self._handle, HOST, free_port())
        return int(self.listener.sockets[0].getsockname()[1])

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    def close(self) -> None:
        if self.listener is not None:
            self.listener.close()


class CancelHoldingProxy(PgProxy):
    """Holds each CancelRequest until `release`."""

    def __init__(self, pg_port: int) -> None:
        super().__init__(pg_port)
        self.held = asyncio.Event()
        self.release = asyncio.Event()
        self.forwarded = asyncio.Event()  # PostgreSQL closed a cancel connection

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readexactly(8)
        is_cancel = struct.unpack("!II", head) == (16, pq.CANCEL_REQUEST)
        if is_cancel:
            head += await reader.readexactly(8)
            self.held.set()
            await self.release.wait()
        up_reader, up_writer = await asyncio.open_connection(HOST, self.pg_port)
        up_writer.write(head)
        if is_cancel:
            await _pipe(up_reader, writer)  # until PostgreSQL closes it: backend signalled
            self.forwarded.set()
            up_writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    def close(self) -> None:
        self.release.set()
        super().close()


class SettingsKillingProxy(PgProxy):
    """Once armed, drops the server connection on which the pooler sends a Query setting
    application_name (before PostgreSQL gets it)."""

    def __init__(self, pg_port: int) -> None:
        super().__init__(pg_port)
        self.armed = False
        self.killed = asyncio.Event()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(HOST, self.pg_port)

        def cut(data: bytes) -> bool:
            if not (self.armed and data[:1] == b"Q" and b"application_name" in data):
                return False
            self.armed = False
            writer.transport.abort()
            up_writer.transport.abort()
            self.killed.set()
            return True

        await asyncio.gather(_pipe(reader, up_writer, cut), _pipe(up_reader, writer))


class LoginHoldingProxy(PgProxy):
    """Once armed, holds the next connection's login replies from ReadyForQuery on (the
    login done for PostgreSQL, not yet for the pooler) until `release`."""

    def __init__(self, pg_port: int) -> None:
        super().__init__(pg_port)
        self.armed = False
        self.logged_in = asyncio.Event()
        self.release = asyncio.Event()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(HOST, self.pg_port)
        hold, self.armed = self.armed, False

        async def replies() -> None:
            nonlocal hold
            with contextlib.suppress(OSError):
                while data := await up_reader.read(65536):
                    if hold and data.endswith(pq.READY_IDLE):
                        hold = False
                        self.logged_in.set()
                        await self.release.wait()
                    writer.write(data)
                    await writer.drain()
            writer.close()

        await asyncio.gather(_pipe(reader, up_writer), replies())

    def close(self) -> None:
        self.release.set()
        super().close()


@pytest.fixture
async def direct(pg):  # type: ignore[no-untyped-def]
    """A connection straight to PostgreSQL, past the ambassador (schema changes, checks)."""
    conn = await asyncpg.connect(pg.dsn)
    yield conn
    await conn.close()


async def table_as(direct: asyncpg.Connection, name: str, columns: str, row: str) -> None:
    """(Re)create table `name` with `columns` and one `row` (a schema change for the
    statements that read it)."""
    await direct.execute(
        f"DROP TABLE IF EXISTS {name}; CREATE TABLE {name} ({columns});"
        f"INSERT INTO {name} VALUES ({row})"
    )


@contextlib.asynccontextmanager
async def on_a_server_lacking_the_statements(amb: Any) -> AsyncIterator[None]:
    """Inside, a client's next transaction runs on a server that never ran its statements:
    in a pool of 2 whose one idle server ran them, another client holds that one in a
    transaction and a third opens the second server (left idle). Released on leaving."""
    holder = await asyncpg.connect(amb.dsn())
    other = await asyncpg.connect(amb.dsn())
    try:
        hold = holder.transaction()
        await hold.start()
        await holder.execute("SELECT 1")
        async with other.transaction():
            await other.execute("SELECT 1")

        await until(lambda: amb.pool_state()["idle"] == 1, what="the second server idle")
        yield
        await hold.rollback()
    finally:
        await holder.close()
        await other.close()


async def a_query_ended(direct: asyncpg.Connection) -> bool:
    """A's query (left behind by its client) has ended on the server."""
    return not await running(direct, "SELECT pg_advisory_xact_lock(1)")


async def test_cancel_connection_closes_once_postgresql_took_the_cancel(
    ambassador, pg, direct
) -> None:
    """libpq's PQcancel (psycopg's cancel_safe) and asyncpg read the cancel connection
    until PostgreSQL closes it: then the backend has been signalled, and the next query
    cannot be the one the cancel hits. psycopg's test_stream_error_python_consumed got
    QueryCanceled on a later query when the ambassador closed the client's cancel
    connection before forwarding the request. While the proxy holds the forwarded
    CancelRequest, the client's cancel connection stays open."""
    proxy = CancelHoldingProxy(pg.port)
    amb = ambassador(pool_mode="transaction", server_port=await proxy.start())
    conn = await asyncpg.connect(amb.dsn())
    cancel: socket.socket | None = None
    try:
        query = asyncio.create_task(conn.fetchval("SELECT pg_sleep(60)"))
        await until(lambda: running(direct, "SELECT pg_sleep(60)"), what="the query to run")
        cancel = send_cancel(amb.port, conn)
        await asyncio.wait_for(proxy.held.wait(), 10)
        cancel.setblocking(False)
        with pytest.raises(BlockingIOError):  # not closed: no EOF (b"") to read
            cancel.recv(1)
        proxy.release.set()
        with pytest.raises(asyncpg.QueryCanceledError):
            await asyncio.wait_for(query, 10)
        loop = asyncio.get_running_loop()
        assert await asyncio.wait_for(loop.sock_recv(cancel, 1), 10) == b""
        assert await conn.fetchval("SELECT 1") == 1
    finally:
        if cancel is not None:
            cancel.close()
        proxy.close()
        await conn.close()


async def test_a_server_lost_while_its_settings_are_set_again_is_replaced_unseen(
    ambassador, pg
) -> None:
    """The server a client gets has its settings set again first (it last served another
    application_name); it dies during that round trip. Nothing of the client's was sent
    yet, so it gets another server and its query runs; before, the client was closed with
    `the server connection was lost`."""
    proxy = SettingsKillingProxy(pg.port)
    amb = ambassador(pool_size=1, server_port=await proxy.start())
    try:
        first = await asyncpg.connect(amb.dsn(), server_settings={"application_name": "other"})
        assert await first.fetchval("SELECT 1") == 1
        await first.close()
        proxy.armed = True
        conn = await asyncpg.connect(amb.dsn())
        try:
            assert await asyncio.wait_for(conn.fetchval("SELECT 2"), 10) == 2
            assert proxy.killed.is_set()
            assert await conn.fetchval("SHOW application_name") == ""
        finally:
            conn.terminate()
    finally:
        proxy.close()


@pytest.mark.parametrize("how", ["cancel_request", "client_gone"])
async def test_late_cancel_never_hits_the_next_clients_query(
    ambassador, pg, direct, how: str
) -> None:
    """A cancel forwarded while the client's query runs (its CancelRequest, or the
    ambassador's own when the client left mid-query), which reaches PostgreSQL after that
    query ended: the server must not be serving another client by then (asyncpg's and
    psycopg's suites got QueryCanceled in unrelated tests). Locks held by a direct
    connection order the steps: A's query ends while the cancel is held, B's query
    waits for a lock."""
    proxy = CancelHoldingProxy(pg.port)
    amb = ambassador(pool_mode="transaction", pool_size=1, server_port=await proxy.start())
    a = await asyncpg.connect(amb.dsn())
    b = await asyncpg.connect(amb.dsn())
    cancel: socket.socket | None = None
    try:
        await direct.execute("SELECT pg_advisory_lock(1), pg_advisory_lock(2)")
        a_query = asyncio.create_task(a.fetchval("SELECT pg_advisory_xact_lock(1)"))
        await until(lambda: running(direct, "SELECT pg_advisory_xact_lock(1)"), what="A to wait")
        if how == "cancel_request":
            cancel = send_cancel(amb.port, a)
        else:
            a.terminate()
        await asyncio.wait_for(proxy.held.wait(), 10)
        await direct.execute("SELECT pg_advisory_unlock(1)")
        if how == "cancel_request":
            assert await asyncio.wait_for(a_query, 10) is None  # ended by itself
        else:
            with pytest.raises(asyncpg.ConnectionDoesNotExistError):
                await asyncio.wait_for(a_query, 10)
            await until(lambda: a_query_ended(direct), what="A's query to end")
        b_query = asyncio.create_task(b.fetchval(B_QUERY))

        async def b_queued_or_running() -> bool:
            queued = amb.pool_state()["waiting"] == 1
            return queued or await running(direct, B_QUERY)

        await until(b_queued_or_running, what="B to be queued or running")
        proxy.release.set()
        await asyncio.wait_for(proxy.forwarded.wait(), 10)

        async def b_running_or_done() -> bool:
            return b_query.done() or await running(direct, B_QUERY)

        await until(b_running_or_done, what="B to run")
        await direct.execute("SELECT pg_advisory_unlock(2)")
        assert await asyncio.wait_for(b_query, 10) == "b"  # not QueryCanceled
    finally:
        if cancel is not None:
            cancel.close()
        proxy.close()
        await a.close()
        await b.close()


@pytest.mark.parametrize("pool_mode", ["session", "transaction"])
async def test_a_result_type_change_is_seen_by_every_client_as_postgresql_says_it(
    ambassador, direct, pool_mode: str
) -> None:
    """asyncpg's cache invalidation (its test_cache_invalidation): after ALTER TABLE, the
    statements clients prepared fail with `cached plan must not change result type`;
    asyncpg then prepares the same text again and must get the new row shape. Servers
    share statements by text, so the ambassador must hand out a fresh one, and refuse
    the old name of every other client as PostgreSQL would (never run the new shape
    under a client's old row description)."""
    # session mode: a server per client; transaction mode: 3 clients share 2 servers
    amb = ambassador(pool_mode=pool_mode, pool_size=3 if pool_mode == "session" else 2)
    clients = [await asyncpg.connect(amb.dsn()) for _ in range(3)]
    try:
        await table_as(direct, "shapes", "a int, b int", "1, 2")
        for conn in clients:  # each caches the statement (asyncpg's default cache)
            assert [tuple(r) for r in await conn.fetch("SELECT * FROM shapes")] == [(1, 2)]
        await direct.execute("ALTER TABLE shapes ADD COLUMN c text DEFAULT 'x'")
        for _ in range(2):
            for conn in clients:
                assert [tuple(r) for r in await conn.fetch("SELECT * FROM shapes")] == [(1, 2, "x")]
        await direct.execute("ALTER TABLE shapes ALTER COLUMN b TYPE text")
        for conn in reversed(clients):
            assert [tuple(r) for r in await conn.fetch("SELECT * FROM shapes")] == [(1, "2", "x")]
    finally:
        for conn in clients:
            await conn.close()
        await direct.execute("DROP TABLE IF EXISTS shapes")


@contextlib.asynccontextmanager
async def sharing_one_server(
    ambassador: Any, direct: asyncpg.Connection, table: str
) -> AsyncIterator[tuple[Any, asyncpg.Connection, asyncpg.Connection]]:
    """An ambassador with one server (every client shares its statements), two asyncpg
    clients of it, and `table` dropped at the end."""
    amb = ambassador(pool_size=1)
    first = await asyncpg.connect(amb.dsn())
    second = await asyncpg.connect(amb.dsn())
    try:
        yield amb, first, second
    finally:
        for conn in (first, second):
            await conn.close()
        await direct.execute(f"DROP TABLE IF EXISTS {table}")


async def psycopg_rows(amb: Any, table: str, *, autocommit: bool) -> list[tuple[Any, ...]]:
    """`SELECT * FROM table` by a new psycopg client that prepares at once (Parse, Bind,
    Describe, Execute, Sync); without autocommit, after psycopg's BEGIN."""
    async with await psycopg.AsyncConnection.connect(
        amb.dsn(), autocommit=autocommit, prepare_threshold=0
    ) as conn:
        cursor = await conn.execute(f"SELECT * FROM {table}")
        rows = await cursor.fetchall()
        await conn.commit()
        return rows


async def test_a_client_preparing_a_text_whose_shared_statement_went_stale_gets_a_fresh_one(
    ambassador, direct
) -> None:
    """asyncpg prepares with Parse, Describe, Sync. When a server already holds the text
    (another client's), the Parse is answered from it; if a DROP and CREATE changed the
    result type since, the Describe fails with `cached plan must not change result type`,
    an error the client's own server (which parses afresh) would never give, and which
    asyncpg does not retry at prepare. The ambassador plans it afresh, unseen."""
    async with sharing_one_server(ambassador, direct, "renewed") as (amb, first, second):
        await table_as(direct, "renewed", "a int", "1")
        assert [tuple(r) for r in await first.fetch("SELECT * FROM renewed")] == [(1,)]
        await table_as(direct, "renewed", "a int, b text", "1, 'new'")
        # its first prepare of the text: the shared statement is stale
        assert [tuple(r) for r in await second.fetch("SELECT * FROM renewed")] == [(1, "new")]
        assert amb.call(lambda: amb.amb.stats.prepared_retries) == 1
        # the client that prepared it before the change: PostgreSQL's error, asyncpg
        # prepares again (as on its own server), and gets the new shape too
        assert [tuple(r) for r in await first.fetch("SELECT * FROM renewed")] == [(1, "new")]
        # and the statement keeps working for both
        for conn in (first, second, first):
            assert await conn.fetchval("SELECT b FROM renewed WHERE a = $1", 1) == "new"
        # psycopg prepares with Parse, Bind, Describe, Execute, Sync: the Bind fails
        await table_as(direct, "renewed", "a int, b text, c int", "1, 'newer', 3")
        assert await psycopg_rows(amb, "renewed", autocommit=True) == [(1, "newer", 3)]
        assert amb.call(lambda: amb.amb.stats.prepared_retries) == 2


async def test_a_first_prepare_inside_a_transaction_of_a_text_gone_stale_gets_a_fresh_one(
    ambassador, direct
) -> None:
    """As above, but the client prepares inside a transaction (asyncpg's
    `async with conn.transaction()`, psycopg without autocommit): the error of a stale
    shared statement would abort the transaction, so it could not be rerun unseen. The
    client's own server would parse the text afresh, and so does the ambassador there."""
    async with sharing_one_server(ambassador, direct, "intx") as (amb, first, second):
        await table_as(direct, "intx", "a int", "1")
        assert [tuple(r) for r in await first.fetch("SELECT * FROM intx")] == [(1,)]
        await table_as(direct, "intx", "a int, b text", "1, 'new'")
        async with second.transaction():
            assert [tuple(r) for r in await second.fetch("SELECT * FROM intx")] == [(1, "new")]
            assert await second.fetchval("SELECT count(*) FROM intx") == 1
        # the client that prepared it before the change: PostgreSQL's error, then the new shape
        assert [tuple(r) for r in await first.fetch("SELECT * FROM intx")] == [(1, "new")]
        await table_as(direct, "intx", "a int, b text, c int", "1, 'newer', 3")
        assert await psycopg_rows(amb, "intx", autocommit=False) == [(1, "newer", 3)]
        assert amb.call(lambda: amb.amb.stats.prepared_retries) == 0


async def test_a_text_prepared_again_in_a_transaction_keeps_the_open_cursor_reading(
    ambassador, direct
) -> None:
    """Preparing a text again inside a transaction gives the server a fresh statement
    and retires the one it had: both client statements, and the cursor opened on the
    first, go on working. (The retired statement is Closed only after the transaction:
    PostgreSQL's protocol documentation says a Close closes the statement's portals,
    though PostgreSQL 15 here keeps them open, so this cannot tell the two apart.)"""
    amb = ambassador(pool_size=1)
    conn = await asyncpg.connect(amb.dsn())
    other = await asyncpg.connect(amb.dsn())
    query = "SELECT g FROM generate_series(1, 10) AS g"
    try:
        assert len(await other.fetch(query)) == 10  # the server holds the text now
        async with conn.transaction():
            first = await conn.prepare(query)  # asyncpg's prepare(): never from its cache
            cursor = await first.cursor()
            assert [r[0] for r in await cursor.fetch(3)] == [1, 2, 3]
            again = await conn.prepare(query)
            assert len(await again.fetch()) == 10
            assert [r[0] for r in await cursor.fetch(3)] == [4, 5, 6]
        assert len(await other.fetch(query)) == 10
        assert len(await conn.fetch(query)) == 10
    finally:
        await conn.close()
        await other.close()


def shape(version: int) -> tuple[str, str, tuple[Any, ...]]:
    """Table `churn` at `version`: columns, values, the row. Each version has another
    result type (one more column, int and text in turn)."""
    columns, values, row = ["a int"], ["1"], [1]
    for i in range(version):
        if i % 2:
            columns.append(f"c{i} text")
            values.append(f"'v{i}'")
            row.append(f"v{i}")
        else:
            columns.append(f"c{i} int")
            values.append(str(i))
            row.append(i)
    return ", ".join(columns), ", ".join(values), tuple(row)


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_schema_changes_in_random_order_reach_clients_as_on_their_own_servers(
    ambassador, direct, seed: int
) -> None:
    """A table dropped and created again with another result type at random points, while
    clients old and new read it through two shared servers: each sees what it would see
    on its own connection. asyncpg (statement cache) re-prepares after PostgreSQL's
    `cached plan must not change result type` and gets the new rows; a client's first
    prepare of the text gets the new rows at once; psycopg (prepare_threshold=0) keeps
    getting that error for a statement it prepared before the change, as it does on a
    direct connection. Never rows of another shape."""
    import random

    rng = random.Random(seed)
    amb = ambassador(pool_size=2)
    asyncpg_clients = [await asyncpg.connect(amb.dsn()) for _ in range(3)]
    psycopg_clients = [
        await psycopg.AsyncConnection.connect(amb.dsn(), autocommit=True, prepare_threshold=0)
        for _ in range(2)
    ]
    prepared_at: dict[int, int] = {}  # psycopg client -> table version it prepared at
    version = 0

    async def recreate() -> None:
        columns, values, _ = shape(version)
        await table_as(direct, "churn", columns, values)

    async def read(kind: str, index: int) -> Any:
        if kind == "asyncpg":
            return [tuple(r) for r in await asyncpg_clients[index].fetch("SELECT * FROM churn")]
        if kind == "psycopg":
            try:
                cursor = await psycopg_clients[index].execute("SELECT * FROM churn")
            except psycopg.errors.FeatureNotSupported as exc:
                return str(exc)
            return await cursor.fetchall()
        fresh = await asyncpg.connect(amb.dsn())  # a new client: its first prepare
        try:
            return [tuple(r) for r in await fresh.fetch("SELECT * FROM churn")]
        finally:
            await fresh.close()

    try:
        await recreate()
        for step in range(40):
            if rng.random() < 0.3:
                version += 1
                await recreate()
            kind = rng.choice(["asyncpg", "psycopg", "new"])
            index = rng.randrange(3 if kind == "asyncpg" else 2)
            expected: Any = [shape(version)[2]]
            # (psycopg prepares at its first execution of the text)
            if kind == "psycopg" and prepared_at.setdefault(index, version) != version:
                expected = "cached plan must not change result type"
            got = await read(kind, index)
            assert got == expected, f"seed {seed} step {step}: {kind} #{index}"
    finally:
        for conn in asyncpg_clients:
            await conn.close()
        for pconn in psycopg_clients:
            await pconn.close()
        await direct.execute("DROP TABLE IF EXISTS churn")


async def test_a_name_prepared_before_a_table_changed_and_changed_back_works_again(
    ambassador, pg, direct
) -> None:
    """A table changes shape and back. PostgreSQL plans a statement prepared under the
    first shape afresh and, its result type being the same again, runs it; so must the
    pool, although the shared statement's result type changed twice in between (inside a
    transaction, where asyncpg cannot prepare again and retry, the error would abort it).
    The same steps on a direct connection show what PostgreSQL does."""
    amb = ambassador(pool_size=1)
    query = "SELECT * FROM back_and_forth"
    shapes = [
        ("a int, b int", "1, 2"),
        ("a int, b text, c int", "1, 'x', 3"),
        ("a int, b int", "1, 2"),
    ]

    async def steps(dsn: str) -> Any:
        old, busy = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
        try:
            await table_as(direct, "back_and_forth", *shapes[0])
            await old.fetch(query)  # prepared under the first shape, then unused
            for shape in shapes:
                await table_as(direct, "back_and_forth", *shape)
                await busy.fetch(query)  # sees each change (and prepares again)
            async with old.transaction():
                return [tuple(r) for r in await old.fetch(query)]
        finally:
            await old.close()
            await busy.close()

    try:
        assert await steps(pg.dsn) == [(1, 2)]  # PostgreSQL itself
        assert await steps(amb.dsn()) == [(1, 2)]
    finally:
        await direct.execute("DROP TABLE IF EXISTS back_and_forth")


@pytest.mark.parametrize(
    "change",
    ["ALTER TABLE moved ADD COLUMN c text DEFAULT 'x'", "ALTER TABLE moved ALTER b TYPE text"],
)
async def test_a_statement_parsed_again_on_another_server_after_a_schema_change(
    ambassador, direct, change: str
) -> None:
    """asyncpg caches a statement's row description from its prepare and Binds without
    describing again. A schema change, then its next transaction on a server that never
    had the statement: parsed there afresh, it would return rows of the new shape under
    the old description (asyncpg: 'the number of columns in the result row (3) is
    different from what was described (2)', for ever). The ambassador describes it there
    first and, the row type being another, answers the Bind as PostgreSQL would on the
    client's own server (cached plan must not change result type): asyncpg prepares
    again and reads the new rows."""
    amb = ambassador(pool_size=2)
    app = await asyncpg.connect(amb.dsn())
    try:
        await table_as(direct, "moved", "a int, b int", "1, 2")
        assert [tuple(r) for r in await app.fetch("SELECT * FROM moved")] == [(1, 2)]
        new_row = (1, 2, "x") if "ADD" in change else (1, "2")
        async with on_a_server_lacking_the_statements(amb):
            await direct.execute(change)
            for _ in range(2):
                assert [tuple(r) for r in await app.fetch("SELECT * FROM moved")] == [new_row]
        for _ in range(3):  # and wherever it runs next
            assert [tuple(r) for r in await app.fetch("SELECT * FROM moved")] == [new_row]
        assert amb.call(lambda: amb.amb.stats.prepared_verifications) >= 1
    finally:
        await app.close()
        await direct.execute("DROP TABLE IF EXISTS moved")


TYPED = [
    ("int", 7),
    ("text", "x"),
    ("date", datetime.date(2000, 1, 4)),
    ("time", datetime.time(0, 1)),
    ("interval", datetime.timedelta(days=3)),
]


async def test_parameter_types_follow_a_schema_change_made_through_the_pool(ambassador, pg) -> None:
    """PostgreSQL keeps the parameter types it inferred for a prepared statement for the
    statement's life: after a table is created again with another column type,
    `INSERT ... VALUES ($1)` prepared before still takes the old type. A client's own
    Parse after the change gets the new one; so must a client of the pool, whose Parse
    the only server answers from a statement it prepared under the old table (asyncpg's
    test_custom_codec_override_tuple found it: 'tuple' object has no attribute
    'toordinal', a time encoded as a date). The same steps direct show what PostgreSQL
    does."""

    async def steps(dsn: str) -> list[Any]:
        ddl = await asyncpg.connect(dsn)
        got = []
        try:
            for type_, value in TYPED:
                await ddl.execute(f"DROP TABLE IF EXISTS typed; CREATE TABLE typed (v {type_})")
                app = await asyncpg.connect(dsn)  # its first Parse of the text
                try:
                    await app.execute("INSERT INTO typed VALUES ($1)", value)
                finally:
                    await app.close()
                got.append(await ddl.fetchval("SELECT v FROM typed"))
        finally:
            await ddl.execute("DROP TABLE IF EXISTS typed")
            await ddl.close()
        return got

    amb = ambassador(pool_size=1)
    assert await steps(pg.dsn) == [value for _, value in TYPED]
    assert await steps(amb.dsn()) == [value for _, value in TYPED]
    assert amb.call(lambda: amb.amb.stats.prepared_schema_drops) >= len(TYPED) - 1


async def test_a_schema_change_types_the_statements_after_it_in_its_own_transaction(
    ambassador, pg
) -> None:
    """Inside the transaction that changed a table, its own next statements see the new
    column type before the commit (a Parse inside a transaction is never answered from a
    shared statement); so do statements on temporary tables created again with another
    type in each transaction (ON COMMIT DROP, no schema change for the pool)."""

    async def steps(dsn: str) -> list[Any]:
        prime, app = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
        got = []
        try:
            await prime.execute("DROP TABLE IF EXISTS retyped; CREATE TABLE retyped (v int)")
            await prime.execute("INSERT INTO retyped VALUES ($1)", 1)  # typed int
            async with app.transaction():
                await app.execute("DROP TABLE retyped; CREATE TABLE retyped (v text)")
                await app.execute("INSERT INTO retyped VALUES ($1)", "x")
                got.append(await app.fetchval("SELECT v FROM retyped"))
            for type_, value in TYPED:
                fresh = await asyncpg.connect(dsn)
                try:
                    async with fresh.transaction():
                        await fresh.execute(f"CREATE TEMP TABLE scratch (v {type_}) ON COMMIT DROP")
                        await fresh.execute("INSERT INTO scratch VALUES ($1)", value)
                        got.append(await fresh.fetchval("SELECT v FROM scratch"))
                finally:
                    await fresh.close()
        finally:
            await prime.execute("DROP TABLE IF EXISTS retyped")
            await prime.close()
            await app.close()
        return got

    amb = ambassador(pool_size=1)
    expected = ["x", *(value for _, value in TYPED)]
    assert await steps(pg.dsn) == expected
    assert await steps(amb.dsn()) == expected


@pytest.mark.parametrize("pool_mode", ["session", "transaction"])
async def test_drop_database_succeeds_while_the_pool_holds_connections_to_it(
    ambassador, direct, pool_mode: str
) -> None:
    """PostgreSQL refuses DROP DATABASE while other sessions use it (waiting 5 s for them
    to go); a pool keeps server connections open after its clients left (asyncpg's
    test_type_cache_invalidation_in_pool; PgBouncer alike). A client's DROP DATABASE
    closes the pool's idle connections to it first, and busy ones at their release."""
    amb = ambassador(pool_size=4, pool_mode=pool_mode)
    await direct.execute("CREATE DATABASE dropme")
    admin = await asyncpg.connect(amb.dsn())
    busy = await asyncpg.connect(amb.dsn(db="dropme"))
    try:
        for _ in range(2):  # clients come and go: the pool keeps an idle connection
            left = await asyncpg.connect(amb.dsn(db="dropme"))
            assert await left.fetchval("SELECT current_database()") == "dropme"
            await left.close()
        transaction = busy.transaction()
        await transaction.start()
        await busy.execute("SELECT 1")
        dropping = asyncio.create_task(admin.execute("DROP DATABASE dropme"))

        async def dropping_waits_for_busy() -> bool:
            return bool(
                await direct.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE query = 'DROP DATABASE dropme'"
                )
            )

        await until(dropping_waits_for_busy, what="the DROP to wait for the busy client")
        # its server goes back to the pool, and is closed then: in transaction mode at the
        # end of the transaction, in session mode when the client leaves (as a direct
        # session would have to)
        if pool_mode == "transaction":
            await transaction.commit()
        else:
            await busy.close()
        await asyncio.wait_for(dropping, 10)
        assert not await direct.fetchval(
            "SELECT count(*) FROM pg_database WHERE datname = 'dropme'"
        )
    finally:
        for conn in (admin, busy):
            await conn.close()
        await direct.execute("DROP DATABASE IF EXISTS dropme WITH (FORCE)")


async def test_drop_database_closes_a_server_that_logged_in_to_it_meanwhile(
    ambassador, pg, direct
) -> None:
    """A server connection to the database still logging in when a client's DROP
    DATABASE closed the pool's connections is closed when its login completes. Kept in
    the pool, or given to a session-mode client, it is a session on that database, and
    the DROP fails after PostgreSQL's 5 s."""
    proxy = LoginHoldingProxy(pg.port)
    amb = ambassador(pool_size=2, pool_mode="session", server_port=await proxy.start())
    await direct.execute("CREATE DATABASE dropme")
    admin = await asyncpg.connect(amb.dsn())
    try:
        proxy.armed = True
        # psycopg sends no setting at login, so its login needs no server (asyncpg's
        # client_encoding would take one to learn how the server spells it)
        late = asyncio.create_task(psycopg.AsyncConnection.connect(amb.dsn(db="dropme")))
        await asyncio.wait_for(proxy.logged_in.wait(), 10)
        dropping = asyncio.create_task(admin.execute("DROP DATABASE dropme"))

        async def dropping_waits() -> bool:
            sql = "SELECT count(*) FROM pg_stat_activity WHERE query = 'DROP DATABASE dropme'"
            return bool(await direct.fetchval(sql))

        await until(dropping_waits, what="the DROP to wait for the server logging in")
        proxy.release.set()
        await asyncio.wait_for(dropping, 10)
        conn = await asyncio.wait_for(late, 10)
        try:  # its query needs a server: the pool's next login finds the database gone
            with pytest.raises(psycopg.errors.InvalidCatalogName):
                await asyncio.wait_for(conn.execute("SELECT 1"), 10)
        finally:
            await conn.close()
    finally:
        await admin.close()
        proxy.close()
        await direct.execute("DROP DATABASE IF EXISTS dropme WITH (FORCE)")


async def test_a_statement_whose_table_is_gone_fails_on_another_server_and_the_client_goes_on(
    ambassador, direct
) -> None:
    """The row-type check on a server that lacks the statement fails when its table is
    gone: the client gets PostgreSQL's error (as on its own server), and its connection
    goes on (the held batch is sent as it is, skipped by the server up to its Sync)."""
    amb = ambassador(pool_size=2)
    app = await asyncpg.connect(amb.dsn())
    try:
        await table_as(direct, "gone", "a int", "1")
        assert await app.fetchval("SELECT a FROM gone") == 1
        async with on_a_server_lacking_the_statements(amb):
            await direct.execute("DROP TABLE gone")
            with pytest.raises(asyncpg.UndefinedTableError):
                await asyncio.wait_for(app.fetchval("SELECT a FROM gone"), 10)
            assert await asyncio.wait_for(app.fetchval("SELECT 2"), 10) == 2
    finally:
        await app.close()


async def test_a_backend_terminated_mid_query_reaches_its_client_as_postgresql_said_it(
    ambassador, direct
) -> None:
    """asyncpg's test_execute_script_interrupted_by_server: PostgreSQL answers a backend
    terminated mid-query with `FATAL 57P01 terminating connection due to administrator
    command`, then closes. The client must get that error, as on its own server; before,
    the ambassador's own `the server connection was lost` followed it and was what the
    driver reported."""
    amb = ambassador(pool_size=2)
    conn = await asyncpg.connect(amb.dsn())
    try:
        sleeping = asyncio.ensure_future(conn.execute("SELECT pg_sleep(30)"))
        await until(lambda: running(direct, "SELECT pg_sleep(30)"), what="the query running")
        await direct.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'"
        )
        with pytest.raises(asyncpg.ConnectionDoesNotExistError, match="terminating connection"):
            await asyncio.wait_for(sleeping, 10)
        assert isinstance(sleeping.exception().__cause__, asyncpg.AdminShutdownError)
    finally:
        conn.terminate()
    # and the pool goes on with a new server
    async with asyncpg.create_pool(amb.dsn(), min_size=1, max_size=1) as pool:
        assert await pool.fetchval("SELECT 1") == 1
