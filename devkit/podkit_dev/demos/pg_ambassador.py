"""`podkit demo --only pg-ambassador`: asyncpg's default statement cache through a small
pool, and a session `SET` that follows its client from server to server (replayed) instead
of leaking to the next client."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from podkit_dev.demo import Narrator


def demo(narrator: Narrator) -> None:
    from podkit_dev.servers import HOST, HelperProcess, PostgresServer, free_port

    narrator.step("start a throwaway PostgreSQL (initdb on a free port)")
    pg = PostgresServer().start().wait_accepting()
    try:
        port = free_port()
        narrator.step(
            f"start `podkit pg-ambassador --listen {HOST}:{port} --pool-size 2` "
            "(transaction pooling, PgBouncer's job)"
        )
        process = HelperProcess(
            "pg-ambassador", "--listen", f"{HOST}:{port}", "--server-port", str(pg.port),
            "--pool-size", "2", "--client-auth", "trust",
        )  # fmt: skip
        with narrator.helper(process) as helper:
            dsn = f"postgresql://postgres@{HOST}:{port}/postgres"
            ok, leaked, pinned_line = asyncio.run(_run(narrator, dsn))
            wanted = ("prepared_statements_total", "pinned_clients{", "transactions_total")
            narrator.show(
                "metrics",
                "\n".join(
                    line
                    for line in helper.metrics().splitlines()
                    if line.startswith("pg_ambassador_") and any(w in line for w in wanted)
                ),
            )
            pins = [
                f"{e['event']} reason={e.get('reason')} statement={e.get('statement')!r}"
                for e in helper.log_events()
                if e.get("event") == "client_pinned"
            ]
            narrator.show("ambassador log", "\n".join(pins) or "(none)")
            narrator.result(
                ok and not leaked,
                "8 asyncpg clients with the default statement cache shared 2 server connections "
                "without one prepared-statement error; the SET followed its client and no "
                "other client saw it "
                f"({pinned_line})",
            )
    finally:
        pg.cleanup()


async def _run(narrator: Narrator, dsn: str) -> tuple[bool, bool, str]:
    import asyncpg

    narrator.step("8 asyncpg clients (default statement cache), 50 queries each, 2 servers")
    conns = [await asyncpg.connect(dsn) for _ in range(8)]
    errors: list[BaseException] = []

    async def work(conn: asyncpg.Connection, i: int) -> None:
        for j in range(50):
            try:
                assert await conn.fetchval("select $1::int * $2::int", i, j) == i * j
                async with conn.transaction():
                    await conn.fetchval("select count(*) from pg_class where oid > $1", j)
            except Exception as exc:  # shown below; the demo then fails
                errors.append(exc)

    await asyncio.gather(*(work(c, i) for i, c in enumerate(conns)))
    narrator.show(
        "asyncpg through the pool",
        f"{8 * 50 * 2} statements, {len(errors)} errors"
        + (f" (first: {errors[0]!r})" if errors else ""),
    )
    narrator.step("client A runs `SET statement_timeout = '7s'`; client B asks for its value")
    a, b = conns[0], conns[1]
    await a.execute("set statement_timeout = '7s'")
    seen_by_a = await a.fetchval("show statement_timeout")
    seen_by_b = [await b.fetchval("show statement_timeout") for _ in range(5)]
    narrator.show(
        "session state",
        f"client A sees {seen_by_a} (replayed on each server it gets)\n"
        f"client B sees {', '.join(seen_by_b)}",
    )
    for conn in conns:
        await conn.close()
    leaked = any(v == "7s" for v in seen_by_b)
    return not errors and seen_by_a == "7s", leaked, f"A: {seen_by_a}, B: {seen_by_b[0]}"
