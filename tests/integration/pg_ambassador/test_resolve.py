"""pg-ambassador follows the server host's address (the endpoint swap PgBouncer misses).

PostgreSQL listens on 127.0.0.1 and 127.0.0.2; the ambassador's resolver hook answers for
the name `db.test` with whichever the test says, as DNS would after an endpoint swap.
Each new server connection looks the name up again; a server connection to an address
the name lost is closed when its client releases it, never in the middle of a
transaction; an idle one is closed when the loss is seen.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import asyncpg
import pytest

from podkit.ambassadors.postgres import main
from podkit_dev.servers import PostgresServer, wait_for
from tests.integration.pg_ambassador import kit
from tests.servers import serve

OLD, NEW = "127.0.0.1", "127.0.0.2"


@pytest.fixture
def pg() -> Iterator[PostgresServer]:
    yield from serve(
        lambda: PostgresServer(
            hba=[f"host all all {NEW}/32 trust"], settings=[f"listen_addresses={OLD},{NEW}"]
        ),
        kit.start_accepting,
    )


class Dns:
    """The resolver hook: `db.test` -> `self.address`."""

    def __init__(self, address: str) -> None:
        self.address = address

    async def resolve(self, host: str, port: int) -> list[tuple[str, int]]:
        assert host == "db.test"
        return [(self.address, port)]


async def where(conn: asyncpg.Connection) -> tuple[str, int]:
    row = await conn.fetchrow("select host(inet_server_addr()), pg_backend_pid()")
    return row[0], row[1]


def backend_alive(pg: PostgresServer, pid: int) -> bool:
    return pg.sql(f"select count(*) from pg_stat_activity where pid = {pid}").strip() == "1"


async def connect_three(ambassador, dns: Dns) -> list[asyncpg.Connection]:  # type: ignore[no-untyped-def]
    amb = ambassador(server_host="db.test", pool_size=4, stats_period=0.1)
    amb.call(lambda: setattr(amb.amb, "resolve", dns.resolve))
    return [await asyncpg.connect(amb.dsn()) for _ in range(3)]


async def test_new_server_connections_follow_the_name_and_old_ones_retire_at_release(
    ambassador, pg, monkeypatch: pytest.MonkeyPatch
) -> None:
    # only the look-ups of new server connections (no periodic one)
    monkeypatch.setattr(main, "ADDRESS_CHECK_EVERY", 3600.0)
    dns = Dns(OLD)
    a, b, c = await connect_three(ambassador, dns)
    try:
        await a.execute("begin")
        old_host, old_pid = await where(a)
        assert old_host == OLD

        # the endpoint moves: the next server connection goes to the new address
        dns.address = NEW
        await b.execute("begin")
        assert (await where(b))[0] == NEW

        # the old server keeps its transaction to the end
        assert await where(a) == (old_host, old_pid)
        await a.execute("commit")
        # ... and is then closed (not given to anyone)
        await asyncio.to_thread(
            wait_for, lambda: not backend_alive(pg, old_pid),
            what="the server on the old address closed", timeout=10,
        )  # fmt: skip
        await b.execute("commit")
        assert {(await where(x))[0] for x in (a, b, c)} == {NEW}
    finally:
        for conn in (a, b, c):
            conn.terminate()


async def test_idle_servers_on_a_lost_address_are_closed_by_the_periodic_lookup(
    ambassador, pg, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(main, "ADDRESS_CHECK_EVERY", 0.5)
    dns = Dns(NEW)
    a, b, c = await connect_three(ambassador, dns)
    try:
        # two servers on the new address, then idle
        await a.execute("begin")
        await b.execute("begin")
        idle_pids = {(await where(a))[1], (await where(b))[1]}
        await a.execute("commit")
        await b.execute("commit")
        # the name moves back while they sit idle: no new connection is needed, the
        # periodic look-up sees it and closes them; the next client gets the new address
        dns.address = OLD
        await asyncio.to_thread(
            wait_for, lambda: all(not backend_alive(pg, p) for p in idle_pids),
            what="idle servers on the retired address closed", timeout=10,
        )  # fmt: skip
        assert {(await where(x))[0] for x in (a, b, c)} == {OLD}
    finally:
        for conn in (a, b, c):
            conn.terminate()
