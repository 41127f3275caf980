"""LISTEN/NOTIFY fan-out latency: direct to PostgreSQL against through `podkit
pg-ambassador` in transaction mode (its listener connection, notify.py).

20 asyncpg clients LISTEN on one channel (through the ambassador: a pool of 2); one
client sends 300 NOTIFYs, paced at about 200 a second, each carrying its send time; each
listener records when it got it. Printed: the median and p99 latency from the NOTIFY's
send to a listener's callback, over every (notification, listener) pair, per round;
rounds interleave the two targets, and the medians of the rounds are compared.
The listeners and the sender share one process and event loop (the same for both
targets), so figures include their own scheduling; what matters is the ratio.

    .venv/bin/python bench/bench_pg_notify.py [--rounds 3] [--listeners 20] [--count 300]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import asyncpg

from podkit_dev.servers import HOST, HelperProcess, PostgresServer, free_port, port_open, wait_for


async def one_round(dsn: str, listeners: int, count: int) -> list[float]:
    latencies: list[float] = []
    got = 0
    done = asyncio.Event()

    def callback(_conn: object, _pid: int, _channel: str, payload: str) -> None:
        nonlocal got
        latencies.append(time.perf_counter() - float(payload))
        got += 1
        if got == listeners * count:
            done.set()

    conns = [await asyncpg.connect(dsn) for _ in range(listeners)]
    for conn in conns:
        await conn.add_listener("bench", callback)
    sender = await asyncpg.connect(dsn)
    try:
        for _ in range(count):
            await sender.execute(f"NOTIFY bench, '{time.perf_counter()!r}'")
            await asyncio.sleep(0.005)
        await asyncio.wait_for(done.wait(), 60)
    finally:
        for conn in [*conns, sender]:
            await conn.close()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--listeners", type=int, default=20)
    parser.add_argument("--count", type=int, default=300)
    args = parser.parse_args()
    pg = PostgresServer().start()
    pg.wait_accepting()
    port = free_port()
    helper = HelperProcess(
        "pg-ambassador", "--listen", f"{HOST}:{port}", "--server-host", HOST,
        "--server-port", str(pg.port), "--pool-size", "2", "--pool-mode", "transaction",
        "--client-auth", "trust", "--log-level", "warning",
    ).start(timeout=30)  # fmt: skip
    try:
        wait_for(lambda: port_open(port), what="pg-ambassador listening", timeout=15)
        targets = {
            "direct": f"postgresql://postgres@{HOST}:{pg.port}/postgres",
            "podkit": f"postgresql://postgres@{HOST}:{port}/postgres",
        }
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in targets}
        for round_no in range(args.rounds):
            order = list(targets) if round_no % 2 == 0 else list(reversed(targets))
            for name in order:
                lat = asyncio.run(one_round(targets[name], args.listeners, args.count))
                lat.sort()
                p50, p99 = statistics.median(lat), lat[int(len(lat) * 0.99) - 1]
                results[name].append((p50, p99))
                print(
                    f"round {round_no + 1} {name}: p50 {p50 * 1e3:.3f} ms, p99 {p99 * 1e3:.3f} ms"
                )
        print(
            f"\n{args.listeners} listeners, {args.count} NOTIFYs, medians of {args.rounds} rounds"
        )
        medians = {}
        for name, rows in results.items():
            medians[name] = (
                statistics.median(r[0] for r in rows),
                statistics.median(r[1] for r in rows),
            )
            print(
                f"{name:7} p50 {medians[name][0] * 1e3:.3f} ms  p99 {medians[name][1] * 1e3:.3f} ms"
            )
        ratio = medians["podkit"][0] / medians["direct"][0]
        print(f"podkit/direct p50 latency: {ratio:.2f}x")
    finally:
        helper.cleanup()
        pg.cleanup()


if __name__ == "__main__":
    main()
