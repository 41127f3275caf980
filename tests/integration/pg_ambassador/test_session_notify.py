"""Where the session check (SET replay, advisory locks: client.py) and LISTEN through the
pool (notify.py) meet: both ask the client's server a question after its ReadyForQuery.
A client that leaves, a held LISTEN batch and a late cancel in that moment. Found by a
review after the two were merged; each test failed before its fix. Some patch the
pooler's questions slower (pg_sleep) to hold the moment open, never what they answer."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import psycopg
import pytest

from podkit.ambassadors.postgres import client as client_mod
from podkit.ambassadors.postgres import notify
from podkit.ambassadors.postgres import protocol as pq
from podkit_dev.servers import until
from tests.integration.pg_ambassador import kit
from tests.integration.pg_ambassador.kit import AmbassadorThread, RawClient

pytestmark = pytest.mark.timeout(90)


def notifier(amb: AmbassadorThread) -> notify.Notifier:
    return next(iter(amb.amb.pools.values())).notifier


def slow_check(monkeypatch: pytest.MonkeyPatch) -> None:
    sql = client_mod._check_sql
    monkeypatch.setattr(
        client_mod,
        "_check_sql",
        lambda names, locks: f"SELECT q.* FROM ({sql(names, locks)}) q, (SELECT pg_sleep(0.5)) s",
    )


async def test_a_client_gone_during_the_listen_probe_leaves_no_setting_or_lock(
    ambassador, monkeypatch
) -> None:
    """The probe's answer hands the server back: reset first, since the session check
    that would have followed (and found the SET and the lock) never runs."""
    amb = ambassador(pool_size=1)
    end_transaction = notify.Notifier.end_transaction

    def leave_during_probe(self, client, server, then):  # type: ignore[no-untyped-def]
        end_transaction(self, client, server, then)
        if client.listens is not None and client.listens.probing:
            client.transport.abort()  # a reset peer, the drain's close_now...

    monkeypatch.setattr(notify.Notifier, "end_transaction", leave_during_probe)
    a = await asyncpg.connect(amb.dsn())
    with contextlib.suppress(asyncpg.PostgresError, ConnectionError):  # the abort may come first
        await a.execute("SET statement_timeout = '4321ms'; SELECT pg_advisory_lock(42); LISTEN ch")
    monkeypatch.setattr(notify.Notifier, "end_transaction", end_transaction)
    b = await asyncpg.connect(amb.dsn())  # the pool's one server, once it is back
    try:
        assert await b.fetchval("SHOW statement_timeout") == "0"
        held = (
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
        )
        assert await b.fetchval(held) == 0
    finally:
        await b.close()
        if not a.is_closed():
            a.terminate()


async def test_a_late_cancel_does_not_fail_the_listen_probe(ambassador, pg, monkeypatch) -> None:
    """A cancel that arrives after the LISTEN's ReadyForQuery (PostgreSQL would ignore it)
    is not forwarded to the probe: the LISTEN committed and its notifications arrive."""
    amb = ambassador(pool_size=2)
    monkeypatch.setattr(
        notify, "PROBE_SQL",
        "SELECT pg_listening_channels() FROM (SELECT pg_sleep(0.5)) s; UNLISTEN *",
    )  # fmt: skip
    got: list[str] = []
    a = await asyncpg.connect(amb.dsn())
    try:
        await a.add_listener("ch", lambda *args: got.append(args[3]))
        sock = kit.send_cancel(amb.port, a)
        await asyncio.to_thread(kit.read_to_eof, sock)  # the ambassador handled it
        sock.close()
        await until(lambda: amb.call(lambda: "ch" in notifier(amb).clients), what="ch listened")
        with psycopg.connect(pg.dsn, autocommit=True) as direct:
            direct.execute("NOTIFY ch, 'hello'")
        await until(lambda: got == ["hello"], what="the notification", explain=lambda: got)
    finally:
        await a.close()


async def test_a_late_cancel_does_not_fail_the_session_check(ambassador, monkeypatch) -> None:
    """...nor to the session check, which would then pin the client for good."""
    amb = ambassador(pool_size=2)
    slow_check(monkeypatch)
    a = await asyncpg.connect(amb.dsn())
    try:
        await a.execute("SET work_mem = '7MB'")
        sock = kit.send_cancel(amb.port, a)
        await asyncio.to_thread(kit.read_to_eof, sock)
        sock.close()
        assert await a.fetchval("SHOW work_mem") == "7MB"  # waits for the check
        assert not any(amb.call(lambda: dict(amb.amb.pinned)).values())
    finally:
        await a.close()


# --- a LISTEN batch held while the session check runs, on the wire -------------------------


def _hold_listen_during_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """The listener's LISTEN is answered 0.3 s late and the check takes 0.5 s: the held
    batch is released while the check runs."""
    send = notify.ListenerConn.send

    def late(self, sql, answered):  # type: ignore[no-untyped-def]
        asyncio.get_running_loop().call_later(0.3, send, self, sql, answered)

    monkeypatch.setattr(notify.ListenerConn, "send", late)
    slow_check(monkeypatch)


def checking(amb: AmbassadorThread) -> bool:
    """A client's session check runs on its server."""
    return bool(amb.call(lambda: any(c.checking for c in list(amb.amb.clients))))


async def _set_then_listen(amb: AmbassadorThread) -> list[int]:
    """The message kinds answering a LISTEN sent while a SET's transaction still runs."""
    a = await RawClient.connect(amb.port)
    try:
        a.writer.write(pq.query("SELECT pg_sleep(0.2); SET statement_timeout = '1234ms'"))
        await until(lambda: amb.pool_state()["active"] == 1, what="the SET's transaction")
        a.writer.write(pq.query("LISTEN b"))  # held until the listener LISTENs b
        await a.until_ready()
        return [kind for kind, _ in await a.until_ready()]
    finally:
        a.close()


async def test_a_listen_held_during_the_session_check_is_answered(ambassador, monkeypatch) -> None:
    amb = ambassador(pool_size=2)
    _hold_listen_during_check(monkeypatch)
    assert await _set_then_listen(amb) == [pq.COMMAND_COMPLETE, pq.READY_FOR_QUERY]


async def test_a_listen_held_during_the_session_check_is_answered_to_its_client(
    ambassador, monkeypatch
) -> None:
    """With one server and another client waiting for it: each gets its own answer."""
    amb = ambassador(pool_size=1)
    _hold_listen_during_check(monkeypatch)

    async def other() -> list[tuple[int, bytes]]:
        await until(lambda: checking(amb), what="the first client's session check")
        c = await RawClient.connect(amb.port)
        try:
            return await c.query("SELECT 'i am C'")
        finally:
            c.close()

    kinds, got_c = await asyncio.gather(_set_then_listen(amb), other())
    assert kinds == [pq.COMMAND_COMPLETE, pq.READY_FOR_QUERY]
    assert [kind for kind, _ in got_c][1:] == [pq.DATA_ROW, pq.COMMAND_COMPLETE, pq.READY_FOR_QUERY]
    assert b"i am C" in got_c[1][1]
