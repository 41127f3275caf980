"""Benchmark of `podkit redis-ambassador` against a direct connection and HAProxy.

1. Throughput and latency: `redis-benchmark -t set,get -c 50` with -P 1 and -P 16 against
   the master directly, through HAProxy (plain tcp mode) and through podkit, interleaved
   in rounds; prints the median rps and p50 of each and the ratios podkit/HAProxy and
   podkit/direct.
2. Failover: SIGKILL the master while writing through podkit and through HAProxy with the
   classic `role:master` tcp-check at `inter 1s`; prints the time from the kill to
   Sentinel's `+switch-master` and to the first successful write through each.

    .venv/bin/python bench/bench_redis_ambassador.py [--quick] [--only throughput|failover]
        [--rounds N]

On a small shared machine the unpipelined figures swing by +-30% from run to run (other
processes compete for the same cores); compare medians of several rounds.
"""

from __future__ import annotations

import argparse
import csv
import io
import signal
import socket
import statistics
import subprocess
import threading
import time

import redis

from podkit_dev.servers import (
    HOST,
    HAProxyServer,
    HelperProcess,
    SentinelCluster,
    find_binary,
    free_port,
    wait_for,
)

HAPROXY_TCP = """
listen redis
  mode tcp
  bind {host}:{port}
  timeout client 1h
  timeout server 1h
  server master {master}
"""

# The classic Redis-with-Sentinel HAProxy config: route to whichever says role:master.
HAPROXY_ROLE_CHECK = """
listen redis
  mode tcp
  bind {host}:{port}
  timeout client 1h
  timeout server 1h
  option tcp-check
  tcp-check connect
  tcp-check send PING\\r\\n
  tcp-check expect string +PONG
  tcp-check send info\\ replication\\r\\n
  tcp-check expect string role:master
  tcp-check send QUIT\\r\\n
  tcp-check expect string +OK
{servers}
"""


def ambassador(cluster: SentinelCluster, port: int) -> HelperProcess:
    return HelperProcess(
        "redis-ambassador",
        "--sentinels", ",".join(cluster.sentinel_addrs),
        "--listen", f"{HOST}:{port}",
        "--log-level", "warning",
    ).start()  # fmt: skip


# --- 1. throughput ----------------------------------------------------------------------------


def redis_benchmark(port: int, requests: int, pipeline: int) -> dict[str, tuple[float, float]]:
    """{"SET": (rps, p50 ms), "GET": (...)} from one redis-benchmark run."""
    out = subprocess.run(
        [find_binary("redis-benchmark"), "-h", HOST, "-p", str(port), "-t", "set,get",
         "-n", str(requests), "-c", "50", "-P", str(pipeline), "--csv"],
        capture_output=True, text=True, check=True, timeout=600,
    ).stdout  # fmt: skip
    rows = csv.DictReader(io.StringIO(out))
    return {row["test"]: (float(row["rps"]), float(row["p50_latency_ms"])) for row in rows}


def throughput(requests: int, rounds: int) -> None:
    cluster = SentinelCluster(replicas=0, sentinels=1).start()
    master = cluster.master_addr()
    proxy_port, haproxy_port = free_port(), free_port()
    haproxy = HAProxyServer(HAPROXY_TCP.format(host=HOST, port=haproxy_port, master=master))
    helper = None
    try:
        haproxy.start()
        helper = ambassador(cluster, proxy_port)
        targets = {
            "direct": cluster.node(master).port,
            "haproxy": haproxy_port,
            "podkit": proxy_port,
        }
        results: dict[tuple[str, int, str], list[tuple[float, float]]] = {}
        for round_no in range(rounds):
            for pipeline in (1, 16):
                for name, port in targets.items():
                    for test, value in redis_benchmark(port, requests, pipeline).items():
                        results.setdefault((name, pipeline, test), []).append(value)
            print(f"  round {round_no + 1}/{rounds} done", flush=True)
        print(f"\nredis-benchmark -t set,get -n {requests} -c 50, median of {rounds} rounds")
        header = (f"{'test':<5} {'-P':>3} {'direct rps':>11} {'haproxy rps':>12} "
                  f"{'podkit rps':>11} {'p/hap':>6} {'p/dir':>6} | {'p50 dir':>8} "
                  f"{'p50 hap':>8} {'p50 pod':>8} {'p50 p/hap':>9}")  # fmt: skip
        print(header)
        print("-" * len(header))
        for pipeline in (1, 16):
            for test in ("SET", "GET"):
                med = {
                    name: (
                        statistics.median(r for r, _ in results[(name, pipeline, test)]),
                        statistics.median(p for _, p in results[(name, pipeline, test)]),
                    )
                    for name in targets
                }
                d, h, p = med["direct"], med["haproxy"], med["podkit"]
                print(f"{test:<5} {pipeline:>3} {d[0]:>11.0f} {h[0]:>12.0f} {p[0]:>11.0f} "
                      f"{p[0] / h[0]:>6.2f} {p[0] / d[0]:>6.2f} | {d[1]:>8.3f} {h[1]:>8.3f} "
                      f"{p[1]:>8.3f} {p[1] / h[1] if h[1] else float('nan'):>9.2f}")  # fmt: skip
        print("targets: podkit/HAProxy rps >= 0.9, podkit p50 <= 1.5x HAProxy's")
    finally:
        if helper is not None:
            helper.cleanup()
        haproxy.cleanup()
        cluster.cleanup()


# --- 2. failover --------------------------------------------------------------------------------


class FirstWrite:
    """Writes through one port as fast as possible; notes the first success after `since`."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.since: float | None = None
        self.first: float | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        client = redis.Redis(host=HOST, port=self.port, socket_timeout=0.5,
                             socket_connect_timeout=0.5, retry=None)  # fmt: skip
        while not self.stop.is_set():
            started = time.time()
            try:
                client.set("bench:failover", started)
            except redis.RedisError:
                client.connection_pool.disconnect()
                time.sleep(0.001)
                continue
            if self.since is not None and started > self.since and self.first is None:
                self.first = time.time()
            time.sleep(0.001)


def switch_master_listener(port: int, times: list[float]) -> threading.Thread:
    sock = socket.create_connection((HOST, port))
    sock.sendall(b"SUBSCRIBE +switch-master\r\n")

    def listen() -> None:
        buffer = b""
        # The subscribe confirmation names the channel too; wait for a real message.
        while b"$7\r\nmessage\r\n" not in buffer:
            chunk = sock.recv(4096)
            if not chunk:
                return
            buffer += chunk
        times.append(time.time())
        sock.close()

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    return thread


def one_failover() -> tuple[float, float, float]:
    cluster = SentinelCluster().start()
    proxy_port, haproxy_port = free_port(), free_port()
    servers = "\n".join(
        f"  server n{i} {node.addr} check inter 1s" for i, node in enumerate(cluster.nodes)
    )
    haproxy = HAProxyServer(HAPROXY_ROLE_CHECK.format(host=HOST, port=haproxy_port,
                                                      servers=servers))  # fmt: skip
    helper = None
    try:
        haproxy.start()
        helper = ambassador(cluster, proxy_port)
        writers = {"podkit": FirstWrite(proxy_port), "haproxy": FirstWrite(haproxy_port)}
        wait_for(lambda: redis.Redis(host=HOST, port=haproxy_port).set("x", 1), what="haproxy")
        switched: list[float] = []
        # Every Sentinel announces the switch; the earliest announcement counts.
        listeners = [switch_master_listener(s.port, switched) for s in cluster.sentinels]
        time.sleep(0.3)  # let the writers run against the old master first
        old = cluster.node(cluster.master_addr())
        killed = time.time()
        for writer in writers.values():
            writer.since = killed
        old.stop(signal.SIGKILL)
        wait_for(lambda: switched and all(w.first for w in writers.values()), timeout=60,
                 what="the failover to complete everywhere")  # fmt: skip
        for listener in listeners:
            listener.join(0.2)
        for writer in writers.values():
            writer.stop.set()
        return (
            min(switched) - killed,
            writers["podkit"].first - killed,  # type: ignore[operator]
            writers["haproxy"].first - killed,  # type: ignore[operator]
        )
    finally:
        if helper is not None:
            helper.cleanup()
        haproxy.cleanup()
        cluster.cleanup()


def failover(trials: int) -> None:
    runs = []
    for n in range(trials):
        runs.append(one_failover())
        s, p, h = runs[-1]
        print(f"  trial {n + 1}/{trials}: +switch-master {s:.3f}s, podkit {p:.3f}s, "
              f"haproxy {h:.3f}s after the kill", flush=True)  # fmt: skip
    s = statistics.median(r[0] for r in runs)
    p = statistics.median(r[1] for r in runs)
    h = statistics.median(r[2] for r in runs)
    lag = statistics.median(r[1] - r[0] for r in runs)
    hlag = statistics.median(r[2] - r[0] for r in runs)
    print(f"\nfailover after SIGKILL of the master, median of {trials} trials (seconds)")
    print(f"{'':<34} {'from kill':>10} {'after +switch-master':>21}")
    print(f"{'Sentinel +switch-master':<34} {s:>10.3f} {0:>21.3f}")
    print(f"{'podkit first write':<34} {p:>10.3f} {lag:>21.3f}")
    print(f"{'haproxy (role:master, inter 1s)':<34} {h:>10.3f} {hlag:>21.3f}")
    print("target: podkit within 0.100 s of +switch-master")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run (smaller -n, 1 round)")
    parser.add_argument("--only", choices=["throughput", "failover"])
    parser.add_argument("--rounds", type=int, help="rounds/trials (default 3, 1 with --quick)")
    args = parser.parse_args()
    rounds = args.rounds or (1 if args.quick else 3)
    if args.only in (None, "throughput"):
        throughput(requests=20000 if args.quick else 200000, rounds=rounds)
    if args.only in (None, "failover"):
        failover(trials=rounds)


if __name__ == "__main__":
    main()
