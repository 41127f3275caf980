"""LISTEN/NOTIFY in transaction mode through the pool (notify.py): real PostgreSQL, asyncpg's
`add_listener` and psycopg 3's `notifies()`, unchanged.

What each test proves is seen from the clients' side: the notifications a sender had
acknowledged (NOTIFY's commit answered) against what every listener received.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podkit.ambassadors.postgres import notify
from podkit.ambassadors.postgres import protocol as pq
from podkit.ambassadors.postgres.client import ClientConn
from podkit.ambassadors.postgres.notify import Notifier, listen_ops
from podkit_dev.servers import PostgresServer, Process, until
from tests.integration.pg_ambassador.kit import AmbassadorThread, RawClient

# a plain channel, and one that needs quoting (a quote, a space, upper case, non-ASCII)
CHANNELS = ["jobs", 'Jöbs "2" ü']


def notifier(amb: AmbassadorThread) -> Notifier:
    pools = list(amb.amb.pools.values())
    assert len(pools) == 1
    return pools[0].notifier


def quote(channel: str) -> str:
    return '"' + channel.replace('"', '""') + '"'


class Received:
    """What one listener got: channel -> payloads, in arrival order."""

    def __init__(self) -> None:
        self.got: dict[str, list[str]] = {c: [] for c in CHANNELS}

    def add(self, channel: str, payload: str) -> None:
        self.got.setdefault(channel, []).append(payload)

    def callback(self, _conn: object, _pid: int, channel: str, payload: str) -> None:
        """asyncpg's listener callback."""
        self.add(channel, payload)

    def count(self) -> int:
        return sum(len(v) for v in self.got.values())


async def asyncpg_listener(dsn: str, channels: list[str]) -> tuple[asyncpg.Connection, Received]:
    conn = await asyncpg.connect(dsn)
    received = Received()
    for channel in channels:
        await conn.add_listener(channel, received.callback)
    return conn, received


async def psycopg_listener(
    dsn: str, channels: list[str], autocommit: bool, prepare: bool = False
) -> tuple[psycopg.AsyncConnection[Any], Received, asyncio.Task[None]]:
    """psycopg's `notifies()` generator, read by a task. Without autocommit (psycopg's
    default) the LISTENs run in a transaction: they take effect at its commit."""
    conn = await psycopg.AsyncConnection.connect(
        dsn, autocommit=autocommit, prepare_threshold=0 if prepare else 5
    )
    for channel in channels:
        await conn.execute(f"LISTEN {quote(channel)}")
    if not autocommit:
        await conn.commit()
    received = Received()

    async def read() -> None:
        async for note in conn.notifies():
            received.add(note.channel, note.payload)

    return conn, received, asyncio.create_task(read())


async def send(dsn: str, per_channel: int, tag: str) -> dict[str, list[str]]:
    """NOTIFY `per_channel` payloads on each channel, alternating NOTIFY in autocommit and
    pg_notify() in an explicit transaction; the acknowledged ones, in order."""
    sent: dict[str, list[str]] = {c: [] for c in CHANNELS}
    conn = await asyncpg.connect(dsn)
    try:
        for i in range(per_channel):
            for channel in CHANNELS:
                payload = f"{tag}-{i}"
                if i % 2:
                    async with conn.transaction():
                        await conn.execute("SELECT pg_notify($1, $2)", channel, payload)
                else:
                    await conn.execute(f"NOTIFY {quote(channel)}, '{payload}'")
                sent[channel].append(payload)
    finally:
        await conn.close()
    return sent


@contextlib.asynccontextmanager
async def listening(
    dsn: str, asyncpg_clients: int, psycopg_clients: list[tuple[bool, bool]]
) -> AsyncIterator[list[Received]]:
    """Clients listening on CHANNELS: `asyncpg_clients` asyncpg ones, then one psycopg one
    per (autocommit, prepare); what each received, in that order. Closed at the end."""
    listeners: list[Received] = []
    closers: list[Callable[[], Any]] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        for _ in range(asyncpg_clients):
            conn, received = await asyncpg_listener(dsn, CHANNELS)
            listeners.append(received)
            closers.append(conn.close)
        for autocommit, prepare in psycopg_clients:
            pconn, received, task = await psycopg_listener(dsn, CHANNELS, autocommit, prepare)
            listeners.append(received)
            closers.append(pconn.close)
            tasks.append(task)
        yield listeners
    finally:
        for task in tasks:
            task.cancel()
        for close in closers:
            with contextlib.suppress(Exception):
                await close()


async def test_twenty_listeners_through_a_pool_of_two(ambassador) -> None:
    amb = ambassador(pool_size=2, pool_mode="transaction")
    dsn = amb.dsn()
    # psycopg in a transaction or not; by an unnamed or (prepare_threshold=0) named statement
    kinds = [(i % 2 == 0, i % 4 < 2) for i in range(10)]
    async with listening(dsn, 10, kinds) as listeners:
        # nobody pinned, two servers for twenty listening clients
        assert sum(amb.call(lambda: dict(amb.amb.pinned)).values()) == 0
        # (the last LISTEN's commit may still be confirmed: its client has it already)
        await until(
            lambda: (
                amb.call(lambda: {c: len(v) for c, v in notifier(amb).clients.items()})
                == dict.fromkeys(CHANNELS, 20)
            ),
            what="every client on both channels",
        )
        sent = await send(dsn, 25, "a")
        total = sum(len(v) for v in sent.values())
        await until(
            lambda: all(r.count() == total for r in listeners),
            timeout=30,
            what="every listener got every notification",
            explain=lambda: [r.count() for r in listeners],
        )
        for received in listeners:
            assert received.got == sent  # every one, in order per channel
        assert amb.pool_state()["active"] + amb.pool_state()["idle"] <= 2


def notes(messages: list[tuple[int, bytes]]) -> list[tuple[str, str]]:
    return [pq.parse_notification(m)[1:] for k, m in messages if k == pq.NOTIFICATION_RESPONSE]


def queued(amb: AmbassadorThread) -> int:
    """Notifications the ambassador holds for clients in a transaction."""

    def count() -> int:
        clients: list[ClientConn] = list(amb.amb.clients)
        return sum(len(c.listens.queue) for c in clients if c.listens is not None)

    return int(amb.call(count))


@pytest.fixture
async def sender(ambassador) -> AsyncIterator[tuple[AmbassadorThread, asyncpg.Connection]]:
    amb = ambassador(pool_size=2, pool_mode="transaction")
    conn = await asyncpg.connect(amb.dsn())
    yield amb, conn
    await conn.close()


async def test_a_client_in_a_transaction_gets_it_after_its_ready_for_query(sender) -> None:
    amb, notify = sender
    raw = await RawClient.connect(amb.port)
    try:
        assert notes(await raw.query("LISTEN jobs")) == []
        await raw.query("BEGIN")
        await raw.query("SELECT 1")
        await notify.execute("NOTIFY jobs, 'while in a transaction'")
        await until(lambda: queued(amb) == 1, what="the notification held for the client")
        assert notes(await raw.query("SELECT 2")) == []  # still in its transaction
        answer = await raw.query("COMMIT")
        assert [k for k, _ in answer] == [pq.COMMAND_COMPLETE, pq.READY_FOR_QUERY]
        assert answer[-1][1][5:6] == b"I"
        # right after the ReadyForQuery that ended the transaction
        kind, msg = await raw.message()
        assert kind == pq.NOTIFICATION_RESPONSE
        assert pq.parse_notification(msg)[1:] == ("jobs", "while in a transaction")
    finally:
        raw.close()


async def test_listen_in_a_transaction_takes_effect_at_commit(sender) -> None:
    amb, notify = sender
    raw = await RawClient.connect(amb.port)
    try:
        await raw.query("LISTEN marker")
        # rolled back: never listened
        await raw.query("BEGIN")
        assert [k for k, _ in await raw.query("LISTEN gone")][-2:] == [
            pq.COMMAND_COMPLETE, pq.READY_FOR_QUERY,
        ]  # fmt: skip
        await raw.query("ROLLBACK")
        # committed, with a NOTIFY in between: only what came after the commit
        await raw.query("BEGIN; LISTEN late")
        await notify.execute("NOTIFY late, 'before the commit'")
        await raw.query("COMMIT")
        await notify.execute("NOTIFY gone, 'rolled back'")
        await notify.execute("NOTIFY late, 'after the commit'")
        await notify.execute("NOTIFY marker, 'end'")
        got = []
        while ("marker", "end") not in got:
            kind, msg = await raw.message()
            assert kind == pq.NOTIFICATION_RESPONSE
            got.append(pq.parse_notification(msg)[1:])
        assert got == [("late", "after the commit"), ("marker", "end")]
        assert amb.call(lambda: sorted(notifier(amb).on)) == ["late", "marker"]
    finally:
        raw.close()


async def test_listen_answers_once_the_listener_listens(sender) -> None:
    """The first LISTEN of a pool opens its listener connection: the client's LISTEN is
    answered only once that connection LISTENs too, so a NOTIFY right after reaches it."""
    amb, notify = sender
    listener, received = await asyncpg_listener(amb.dsn(), [CHANNELS[1]])
    try:
        assert amb.call(lambda: notifier(amb).on) == {CHANNELS[1]: True}
        await notify.execute(f"NOTIFY {quote(CHANNELS[1])}, 'at once'")
        await until(lambda: received.count() == 1, what="the notification")
        assert received.got[CHANNELS[1]] == ["at once"]
    finally:
        await listener.close()


async def test_listen_in_any_case_and_at_the_end_of_a_big_query(sender) -> None:
    """A LISTEN is found in any letter case, also at the end of a Query longer than one
    read (the pooler looks at whole Query and Parse texts, not at each chunk read)."""
    amb, notify = sender
    raw = await RawClient.connect(amb.port)
    try:
        await raw.query("lIsTeN mixed")
        await raw.query("SELECT '" + "x" * 600_000 + '\'; LiStEn "Split"')
        await notify.execute("NOTIFY mixed, 'one'")
        await notify.execute("""NOTIFY "Split", 'two'""")
        got = []
        for _ in range(2):
            kind, msg = await raw.message()
            assert kind == pq.NOTIFICATION_RESPONSE
            got.append(pq.parse_notification(msg)[1:])
        assert got == [("mixed", "one"), ("Split", "two")]
    finally:
        raw.close()


async def test_unlisten_stops_delivery(sender) -> None:
    amb, notify = sender
    listener, received = await asyncpg_listener(amb.dsn(), CHANNELS)
    raw = await RawClient.connect(amb.port)
    try:
        await raw.query("LISTEN a; LISTEN b; LISTEN c")
        await raw.query("UNLISTEN a")
        await listener.remove_listener(CHANNELS[0], received.callback)
        for channel in ("a", "b", CHANNELS[0], CHANNELS[1]):
            await notify.execute(f"NOTIFY {quote(channel)}, 'x'")
        _, msg = await raw.message()
        assert pq.parse_notification(msg)[1:] == ("b", "x")  # nothing for a before it
        await until(lambda: received.count() == 1, what="the listener's remaining channel")
        assert received.got == {CHANNELS[0]: [], CHANNELS[1]: ["x"]}
        await raw.query("UNLISTEN *")
        await notify.execute("NOTIFY b, 'y'")
        await notify.execute("NOTIFY c, 'y'")
        assert notes(await raw.query("SELECT 1")) == []
        await until(
            lambda: amb.call(lambda: sorted(notifier(amb).on)) == [CHANNELS[1]],
            what="the listener left a, b and c",
        )
    finally:
        raw.close()
        await listener.close()


async def test_a_client_that_leaves_leaves_its_channels(sender, pg) -> None:
    amb, notify = sender
    stays, received = await asyncpg_listener(amb.dsn(), ["shared"])
    leaves, _ = await asyncpg_listener(amb.dsn(), ["shared", "solo"])
    try:
        assert amb.call(lambda: sorted(notifier(amb).on)) == ["shared", "solo"]
        await leaves.close()
        await until(
            lambda: amb.call(lambda: sorted(notifier(amb).on)) == ["shared"],
            what="the last client of solo gone, the listener UNLISTENs it",
        )
        # PostgreSQL saw the listener's UNLISTEN
        sql = "SELECT count(*) FROM pg_stat_activity WHERE query = 'UNLISTEN \"solo\"'"
        await until(lambda: pg.sql(sql).strip() == "1", what="UNLISTEN solo on the listener")
        await notify.execute("NOTIFY shared, 'still here'")
        await until(lambda: received.count() == 1, what="the one left still gets it")
    finally:
        await stays.close()


async def test_a_client_that_lets_notifications_pile_up_is_closed_alone(
    sender, monkeypatch
) -> None:
    """Past MAX_QUEUED notifications held for one transaction the client is closed with
    an error (53400); the others get every notification."""
    monkeypatch.setattr(notify, "MAX_QUEUED", 5)
    amb, notify_conn = sender
    other, received = await asyncpg_listener(amb.dsn(), ["jobs"])
    raw = await RawClient.connect(amb.port)
    try:
        await raw.query("LISTEN jobs")
        await raw.query("BEGIN")
        await notify_conn.execute("SELECT pg_notify('jobs', g::text) FROM generate_series(1, 6) g")
        kind, msg = await raw.message()
        assert kind == pq.ERROR_RESPONSE
        assert pq.parse_error_fields(msg)["C"] == "53400"
        assert await raw.reader.read() == b""  # closed
        await until(lambda: received.count() == 6, what="the other listener's six")
        assert received.got["jobs"] == [str(i) for i in range(1, 7)]
        assert amb.call(lambda: notifier(amb).slow_closed) == 1
    finally:
        raw.close()
        await other.close()


def stop(pg: PostgresServer) -> None:
    assert pg.process is not None
    pg.process.stop(signal.SIGINT)  # fast shutdown: every connection is closed


def start(pg: PostgresServer) -> None:
    assert pg.process is not None
    pg.process = Process(pg.process.argv, pg.dir.path / "postgres.log", user=pg.user).start()
    pg.wait_accepting()


async def test_the_listener_comes_back_after_a_postgresql_restart(ambassador, pg) -> None:
    amb = ambassador(pool_size=2, pool_mode="transaction")
    dsn = amb.dsn()
    async with listening(dsn, 3, [(True, False), (False, False)]) as listeners:
        before = await send(dsn, 5, "before")
        await until(
            lambda: all(r.got == before for r in listeners), timeout=30, what="before the stop"
        )
        await asyncio.to_thread(stop, pg)
        await until(lambda: amb.call(lambda: notifier(amb).conn is None), what="listener lost")
        # nothing is acknowledged while PostgreSQL is down
        with pytest.raises((OSError, asyncpg.PostgresError, asyncpg.InterfaceError)):
            await send(dsn, 1, "down")
        await asyncio.to_thread(start, pg)
        await until(
            lambda: amb.call(lambda: notifier(amb).reconnects) == 1,
            timeout=30,
            what="the listener reconnected and LISTENs again",
        )
        after = await send(dsn, 5, "after")
        expected = {c: before[c] + after[c] for c in CHANNELS}
        await until(
            lambda: all(r.got == expected for r in listeners),
            timeout=30,
            what="every acknowledged notification, before and after",
            explain=lambda: [r.got for r in listeners],
        )
        stats = amb.call(lambda: (notifier(amb).reconnects, notifier(amb).down_seconds))
        assert stats[0] == 1
        assert stats[1] > 0


def test_session_mode_keeps_its_own_server_listening(ambassador) -> None:
    amb = ambassador(pool_size=2, pool_mode="session")
    with (
        psycopg.connect(amb.dsn(), autocommit=True) as listener,
        psycopg.connect(amb.dsn(), autocommit=True) as other,
    ):
        listener.execute("LISTEN jobs")
        assert listener.execute("SELECT pg_listening_channels()").fetchall() == [("jobs",)]
        other.execute("NOTIFY jobs, 'direct'")
        got = [n.payload for n in listener.notifies(timeout=10, stop_after=1)]
        assert got == ["direct"]
        assert amb.call(lambda: notifier(amb).on) == {}


NAME_CHARS = st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",))


def test_channel_names_as_postgresql_reads_them(pg) -> None:
    """What listen_ops reads as the channel is what PostgreSQL listens to: quoted names
    with quotes, spaces and any character, unquoted ones folded, both truncated."""
    with psycopg.connect(pg.dsn, autocommit=True) as conn:

        @settings(max_examples=150, deadline=None)
        @given(
            name=st.text(NAME_CHARS, min_size=1, max_size=70)
            | st.from_regex(r"[A-Za-zÀ-ÿ_][A-Za-z0-9_$À-ÿ]{0,70}", fullmatch=True),
            quoted=st.booleans(),
            case=st.sampled_from(["LISTEN", "listen", "Listen"]),
        )
        def check(name: str, quoted: bool, case: str) -> None:
            sql = f"{case} {quote(name) if quoted else name}"
            ops = listen_ops(sql)
            try:
                conn.execute(sql)
            except psycopg.Error:
                # PostgreSQL refused it. listen_ops may still read a channel where the
                # text is not one clean statement: an unquoted `;` (PostgreSQL refuses
                # the whole text for an error in any statement), or a vertical tab, which
                # PostgreSQL 16 reads as a space and 15 does not. Reading too much is
                # harmless: the end-of-transaction probe (pg_listening_channels) finds
                # nothing committed. Never more than the one LISTEN written.
                assert ops == [] or (not quoted and ops == [("listen", ops[0][1])])
                return
            try:
                listening = [row[0] for row in conn.execute("SELECT pg_listening_channels()")]
                assert ops == [("listen", listening[0])]
                assert len(listening) == 1
            finally:
                conn.execute("UNLISTEN *")

        check()
