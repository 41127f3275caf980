"""`podkit demo --only redis-ambassador`: live failovers with writes going on."""

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
    cluster = SentinelCluster(node_args=["--repl-diskless-sync-delay", "0"]).start()
    try:
        port = free_port()
        narrator.step(f"start `podkit redis-ambassador --sentinels ... --listen {HOST}:{port}`")
        process = HelperProcess(
            "redis-ambassador",
            "--sentinels", ",".join(cluster.sentinel_addrs),
            "--listen", f"{HOST}:{port}",
        )  # fmt: skip
        with narrator.helper(process) as helper:
            acked: list[tuple[float, str]] = []  # (time acknowledged, key)
            failed = [0]
            stop = threading.Event()

            def write(number: int) -> None:
                client = redis.Redis(host=HOST, port=port, socket_timeout=5)
                seq = 0
                while not stop.is_set():
                    seq += 1
                    key = f"demo:{number}:{seq}"
                    try:
                        client.set(key, 1)
                        acked.append((time.time(), key))
                    except redis.RedisError:
                        failed[0] += 1
                        time.sleep(0.01)

            writers = [threading.Thread(target=write, args=(n,), daemon=True) for n in range(4)]
            for writer in writers:
                writer.start()

            def master() -> str | None:
                for line in helper.metrics().splitlines():
                    if line.startswith("redis_ambassador_master_info{"):
                        return line.split('"')[1]
                return None

            def written_since(when: float) -> int:
                return sum(1 for at, _ in acked[-500:] if at > when)

            results = []
            for how in ("SENTINEL FAILOVER", "SIGKILL"):
                old = cluster.wait_settled()
                wait_for(lambda: master() == old, what="the ambassador on the master")  # noqa: B023
                mark = time.time()
                wait_for(lambda: written_since(mark) > 200,  # noqa: B023
                         what="writes through the ambassador")  # fmt: skip
                narrator.step(f"{how} of the master {old} while 4 clients keep writing")
                started = time.time()
                if how == "SIGKILL":
                    cluster.node(old).stop(signal.SIGKILL)
                else:
                    cluster.failover_command()
                new = wait_for(lambda: (m := master()) not in (None, old) and m,  # noqa: B023
                               timeout=30, what="the ambassador to switch")  # fmt: skip
                took = time.time() - started
                since = started + took
                wait_for(lambda: written_since(since) > 200,  # noqa: B023
                         what="writes on the new master")  # fmt: skip
                after = [key for at, key in list(acked) if at > started]
                with redis.Redis(host=HOST, port=cluster.node(str(new)).port) as client:
                    present = sum(
                        client.exists(*after[i : i + 500]) for i in range(0, len(after), 500)
                    )
                narrator.show(
                    f"after {how}",
                    f"master {new}, {took:.2f}s after the {how}\n{len(after)} writes "
                    f"acknowledged since, {present} of them on the new master",
                )
                results.append(present == len(after))
                cluster.make_replica(cluster.node(old), cluster.node(str(new)))
            stop.set()
            for writer in writers:
                writer.join(5)
            events = [
                f"{e['ts'][11:23]} {e['event']} "
                + " ".join(
                    f"{k}={e[k]}"
                    for k in ("old", "new", "reason", "channel", "outcome")
                    if e.get(k)
                )
                for e in helper.log_events()
                if e.get("event")
                in (
                    "master_changed",
                    "master_lost",
                    "failover_started",
                    "failover_ended",
                )
            ]
            narrator.show("ambassador log", "\n".join(events), limit=20)
            wanted = ("failovers_total", "failover_holds", "connections_closed_by_failover")
            narrator.show(
                "metrics",
                "\n".join(
                    line
                    for line in helper.metrics().splitlines()
                    if line.startswith("redis_ambassador_")
                    and "_created" not in line
                    and any(w in line for w in wanted)
                ),
            )
            narrator.result(
                all(results),
                "every write acknowledged after each failover started is on the new master "
                f"({failed[0]} failed while the ambassador held them; the clients retried)",
            )
    finally:
        cluster.cleanup()
