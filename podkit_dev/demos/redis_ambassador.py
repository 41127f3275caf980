"""`podkit demo --only redis-ambassador`: a live failover with writes going on."""

from __future__ import annotations

import signal
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from podkit_dev.demo import Narrator


def demo(narrator: Narrator) -> None:
    import redis

    from podkit_dev.servers import HOST, HelperProcess, SentinelCluster, free_port, wait_for

    narrator.step("start a Redis master, 2 replicas and 3 Sentinels (down-after 1 s)")
    cluster = SentinelCluster().start()
    try:
        port = free_port()
        old = cluster.master_addr()
        narrator.step(f"start `podkit redis-ambassador --sentinels ... --listen {HOST}:{port}`")
        process = HelperProcess(
            "redis-ambassador",
            "--sentinels", ",".join(cluster.sentinel_addrs),
            "--listen", f"{HOST}:{port}",
        )  # fmt: skip
        with narrator.helper(process) as helper:
            ok = [0]
            failed = [0]
            stop = threading.Event()

            def write() -> None:
                client = redis.Redis(host=HOST, port=port, socket_timeout=2)
                while not stop.is_set():
                    try:
                        client.incr("demo:writes")
                        ok[0] += 1
                    except redis.RedisError:
                        failed[0] += 1
                        time.sleep(0.01)

            writer = threading.Thread(target=write, daemon=True)
            writer.start()
            wait_for(lambda: ok[0] > 200, what="writes through the ambassador")
            narrator.show("before the failover", f"master {old}, {ok[0]} writes acknowledged")
            narrator.step(f"SIGKILL the master {old} while the app keeps writing")
            killed = time.monotonic()
            before = ok[0]
            cluster.node(old).stop(signal.SIGKILL)

            def switched() -> str | None:
                for line in helper.metrics().splitlines():
                    if line.startswith("redis_ambassador_master_info{") and old not in line:
                        return line.split('"')[1]
                return None

            new = wait_for(switched, timeout=30, what="the ambassador to switch")
            took = time.monotonic() - killed
            wait_for(lambda: ok[0] > before + 200, what="writes on the new master")
            stop.set()
            writer.join(5)
            # The first Sentinel asked may lag its peers by one hello period.
            wait_for(lambda: cluster.master_addr() == new, what="Sentinel to agree")
            sentinel_says = cluster.master_addr()
            events = [
                f"{e['ts']} {e['event']} old={e.get('old')} new={e.get('new')}"
                for e in helper.log_events()
                if e.get("event") in ("master_changed", "master_lost", "switch_master_announced")
            ]
            narrator.show("ambassador log", "\n".join(events))
            narrator.show(
                "after the failover",
                f"master {new} ({took:.2f}s after the kill; Sentinel says {sentinel_says})\n"
                f"{ok[0]} writes acknowledged ({ok[0] - before} since the kill), "
                f"{failed[0]} failed while no master was known (the app retried)",
            )
            wanted = ("failovers_total", "connections_closed_by_failover", "master_info")
            narrator.show(
                "metrics",
                "\n".join(
                    line
                    for line in helper.metrics().splitlines()
                    if line.startswith("redis_ambassador_") and any(w in line for w in wanted)
                ),
            )
            narrator.result(
                new == sentinel_says and ok[0] > before,
                f"writes continued on the new master {new} after the old one was killed",
            )
    finally:
        cluster.cleanup()
