"""LISTEN/NOTIFY in transaction mode through the pool (notify.py): real PostgreSQL, asyncpg's
`add_listener` and psycopg 3's `notifies()`, unchanged.

What each test proves is seen from the clients' side: the notifications a sender had
acknowledged (NOTIFY's commit answered) against what every listener received.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import psycopg
import pytest

from podkit.ambassadors.postgres import protocol as pq
from podkit.ambassadors.postgres.client import ClientConn
from podkit.ambassadors.postgres.notify import Notifier, parse_notification
from podkit_dev.servers import HOST, PostgresServer, Process, until
from tests.integration.pg_ambassador.kit import AmbassadorThread

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

    def count(self) -> int:
        return sum(len(v) for v in self.got.values())


async def asyncpg_listener(dsn: str, channels: list[str]) -> tuple[asyncpg.Connection, Received]:
    conn = await asyncpg.connect(dsn)
    received = Received()
    for channel in channels:
        await conn.add_listener(channel, lambda _c, _pid, ch, payload: received.add(ch, payload))
    return conn, received


async def psycopg_listener(
    dsn: str, channels: list[str], autocommit: bool
) -> tuple[psycopg.AsyncConnection[Any], Received, asyncio.Task[None]]:
    """psycopg's `notifies()` generator, read by a task. Without autocommit (psycopg's
    default) the LISTENs run in a transaction: they take effect at its commit."""
    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=autocommit)
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


async def test_twenty_listeners_through_a_pool_of_two(ambassador) -> None:
    amb = ambassador(pool_size=2, pool_mode="transaction")
    dsn = amb.dsn()
    listeners: list[Received] = []
    closers: list[Callable[[], Any]] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        for _ in range(10):
            conn, received = await asyncpg_listener(dsn, CHANNELS)
            listeners.append(received)
            closers.append(conn.close)
        for i in range(10):
            pconn, received, task = await psycopg_listener(dsn, CHANNELS, autocommit=i % 2 == 0)
            listeners.append(received)
            closers.append(pconn.close)
            tasks.append(task)
        # nobody pinned, two servers for twenty listening clients
        assert sum(amb.call(lambda: dict(amb.amb.pinned)).values()) == 0
        listening = amb.call(lambda: {c: len(v) for c, v in notifier(amb).clients.items()})
        assert listening == dict.fromkeys(CHANNELS, 20)
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
    finally:
        for task in tasks:
            task.cancel()
        for close in closers:
            with contextlib.suppress(Exception):
                await close()
