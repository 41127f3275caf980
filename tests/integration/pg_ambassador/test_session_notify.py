"""Where the session check (SET replay, advisory locks: client.py) and LISTEN through the
pool (notify.py) meet: both ask the client's server a question after its ReadyForQuery.
A client that leaves, a held LISTEN batch and a late cancel in that moment. Found by a
review after the two were merged; each test failed before its fix. Some patch the
pooler's questions slower (pg_sleep) to hold the moment open, never what they answer."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time

import asyncpg
import psycopg
import pytest

from podkit.ambassadors.postgres import client as client_mod
from podkit.ambassadors.postgres import notify
from podkit_dev.servers import HOST, until
from tests.integration.pg_ambassador import kit
from tests.integration.pg_ambassador.kit import AmbassadorThread

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


def _startup(port: int) -> socket.socket:
    sock = socket.create_connection((HOST, port))
    body = struct.pack("!I", 196608) + b"user\x00postgres\x00database\x00postgres\x00\x00"
    sock.sendall(struct.pack("!I", len(body) + 4) + body)
    _until_ready(sock, 10)
    return sock


def _query(sql: str) -> bytes:
    body = sql.encode() + b"\x00"
    return b"Q" + struct.pack("!I", len(body) + 4) + body


def _until_ready(sock: socket.socket, timeout: float) -> list[tuple[str, bytes]]:
    """Messages up to a ReadyForQuery; ("TIMEOUT"|"EOF", b"") last when none came."""
    sock.settimeout(timeout)
    buf = b""
    out: list[tuple[str, bytes]] = []
    deadline = time.monotonic() + timeout
    while True:
        while len(buf) >= 5:
            n = struct.unpack("!I", buf[1:5])[0]
            if len(buf) < 1 + n:
                break
            out.append((chr(buf[0]), buf[5 : 1 + n]))
            buf = buf[1 + n :]
            if out[-1][0] == "Z":
                return out
        if time.monotonic() > deadline:
            return [*out, ("TIMEOUT", b"")]
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return [*out, ("TIMEOUT", b"")]
        if not chunk:
            return [*out, ("EOF", b"")]
        buf += chunk


def _hold_listen_during_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """The listener's LISTEN is answered 0.3 s late and the check takes 0.5 s: the held
    batch is released while the check runs."""
    send = notify.ListenerConn.send

    def late(self, sql, answered):  # type: ignore[no-untyped-def]
        asyncio.get_running_loop().call_later(0.3, send, self, sql, answered)

    monkeypatch.setattr(notify.ListenerConn, "send", late)
    slow_check(monkeypatch)


def _set_then_listen(port: int) -> list[tuple[str, bytes]]:
    a = _startup(port)
    try:
        a.sendall(_query("SELECT pg_sleep(0.2); SET statement_timeout = '1234ms'"))
        time.sleep(0.05)  # a second message while the first runs (not a wait for a result)
        a.sendall(_query("LISTEN b"))  # held until the listener LISTENs b
        first = _until_ready(a, 10)
        assert first[-1][0] == "Z", first
        return _until_ready(a, 10)
    finally:
        a.close()


async def test_a_listen_held_during_the_session_check_is_answered(ambassador, monkeypatch) -> None:
    amb = ambassador(pool_size=2)
    _hold_listen_during_check(monkeypatch)
    second = await asyncio.to_thread(_set_then_listen, amb.port)
    assert [kind for kind, _ in second] == ["C", "Z"], second


async def test_a_listen_held_during_the_session_check_is_answered_to_its_client(
    ambassador, monkeypatch
) -> None:
    """With one server and another client waiting for it: each gets its own answer."""
    amb = ambassador(pool_size=1)
    _hold_listen_during_check(monkeypatch)

    def other() -> list[tuple[str, bytes]]:
        time.sleep(0.3)  # to queue while the first client's check runs
        c = _startup(amb.port)
        try:
            c.sendall(_query("SELECT 'i am C'"))
            return _until_ready(c, 10)
        finally:
            c.close()

    second, got_c = await asyncio.gather(
        asyncio.to_thread(_set_then_listen, amb.port), asyncio.to_thread(other)
    )
    assert [kind for kind, _ in second] == ["C", "Z"], second
    assert [kind for kind, _ in got_c] == ["T", "D", "C", "Z"], got_c
    assert b"i am C" in got_c[1][1]
