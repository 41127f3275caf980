"""pg-ambassador facing bad input and failing servers: clear errors, no crash, the pool heals."""

from __future__ import annotations

import asyncio
import socket
import struct

import asyncpg
import pytest

from podkit.ambassadors.postgres import protocol as pq
from podkit_dev.servers import HOST
from tests.integration.pg_ambassador import kit


def exchange(port: int, payload: bytes, timeout: float = 10.0) -> bytes:
    """Send raw bytes; return all the ambassador answered until it closed."""
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(payload)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def login_bytes() -> bytes:
    return pq.startup_message({"user": "postgres", "database": "postgres"})


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"invalid length of startup packet"),
        (struct.pack("!I", 1 << 30) + b"xxxx", b"invalid length of startup packet"),
        (struct.pack("!II", 8, 0x00020000), b"unsupported frontend protocol"),
        (struct.pack("!I", 12) + struct.pack("!I", pq.PROTOCOL_V3) + b"usr\x00",
         b"invalid startup packet layout"),
        (struct.pack("!I", 9) + struct.pack("!I", pq.PROTOCOL_V3) + b"\x00", b"no PostgreSQL user"),
    ],
)  # fmt: skip
def test_bad_startup_packets_get_an_error(ambassador, payload: bytes, expected: bytes) -> None:
    amb = ambassador()
    answer = exchange(amb.port, payload)
    assert answer.startswith(b"E") and expected in answer, answer


def test_lying_and_huge_lengths_after_login(ambassador) -> None:
    amb = ambassador(max_packet_size=1024 * 1024)
    answer = exchange(amb.port, login_bytes() + b"Q\x00\x00\x00\x02")
    assert b"invalid message length" in answer
    answer = exchange(amb.port, login_bytes() + b"Q" + struct.pack("!I", 1 << 30) + b"select")
    assert b"54000" in answer and b"longer than the limit" in answer
    assert amb.amb.stats.protocol_errors == 2


async def test_half_message_stalled_then_client_gone_leaves_pool_usable(ambassador) -> None:
    amb = ambassador(pool_size=1, client_login_timeout=1)
    # A half startup packet: closed by client_login_timeout
    answer = await asyncio.to_thread(exchange, amb.port, struct.pack("!I", 40) + b"\x00\x03")
    assert b"client_login_timeout" in answer
    # A half query after login: nothing is sent to a server, the others are not blocked
    reader, writer = await asyncio.open_connection(HOST, amb.port)
    writer.write(login_bytes() + b"Q\x00\x00\x01\x00select")
    await reader.readuntil(pq.READY_IDLE)
    conn = await asyncpg.connect(amb.dsn())
    assert await conn.fetchval("select 3") == 3
    writer.close()
    assert await conn.fetchval("select 4") == 4
    await conn.close()


async def test_unknown_message_type_and_garbage_after_login(ambassador) -> None:
    amb = ambassador()
    answer = await asyncio.to_thread(exchange, amb.port, login_bytes() + pq.message(b"!", b"xyz"))
    assert b"invalid frontend message type" in answer
    conn = await asyncpg.connect(amb.dsn())
    assert await conn.fetchval("select 1") == 1
    await conn.close()


async def test_backend_killed_mid_result_then_pool_heals(ambassador, pg) -> None:
    amb = ambassador(pool_size=2)
    victim = await asyncpg.connect(amb.dsn())
    pid = await victim.fetchval("select pg_backend_pid()")
    query = asyncio.ensure_future(
        victim.fetch("select pg_sleep(0.001), g from generate_series(1, 5000000) g")
    )
    await asyncio.sleep(0.3)
    await asyncio.to_thread(pg.sql, f"select pg_terminate_backend({pid})")
    with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, ConnectionError)):
        await asyncio.wait_for(query, 30)
    # the ambassador is fine and so is the pool
    others = [await asyncpg.connect(amb.dsn()) for _ in range(4)]
    for i, conn in enumerate(others):
        assert await conn.fetchval("select $1::int", i) == i
        await conn.close()
    victim.terminate()


async def test_postgres_restart_with_clients_connected(ambassador, pg) -> None:
    amb = ambassador(pool_size=3)
    conns = [await asyncpg.connect(amb.dsn()) for _ in range(5)]
    for conn in conns:
        assert await conn.fetchval("select 1") == 1
    await asyncio.to_thread(pg.restart)
    # each client either still works (its pooled server was replaced) or was told clearly
    # that its connection is gone; reconnecting always works
    for conn in conns:
        try:
            assert await conn.fetchval("select 2") == 2
        except (asyncpg.PostgresError, asyncpg.InterfaceError, ConnectionError):
            conn.terminate()
            fresh = await asyncpg.connect(amb.dsn())
            assert await fresh.fetchval("select 2") == 2
            await fresh.close()
    for conn in conns:
        conn.terminate()


async def test_a_thousand_idle_clients(ambassador, pg) -> None:
    amb = ambassador(pool_size=2, max_client_conn=1100)
    writers = []
    for _ in range(1000):
        reader, writer = await asyncio.open_connection(HOST, amb.port)
        writer.write(login_bytes())
        writers.append((reader, writer))
    for reader, _ in writers:
        await asyncio.wait_for(reader.readuntil(pq.READY_IDLE), 30)
    assert kit.server_backends(pg) <= 2
    conn = await asyncpg.connect(amb.dsn())
    assert await conn.fetchval("select 1") == 1
    await conn.close()
    for _, writer in writers:
        writer.close()
