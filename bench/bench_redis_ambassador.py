"""Benchmark of `podkit redis-ambassador` against a direct connection and HAProxy.

1. Throughput and latency: `redis-benchmark -t set,get -c 50` with -P 1 and -P 16 against
   the master directly, through HAProxy (plain tcp mode) and through podkit, interleaved
   in rounds; prints the median rps and p50 of each and the ratios podkit/HAProxy and
   podkit/direct.
2. Failover: in one cluster (master, 2 replicas, 3 Sentinels, down-after 1 s,
   failover-timeout 3 s), 4 writers each write unique keys through podkit and through
   HAProxy with the classic `role:master` tcp-check at `inter 1s`, while the master is
   failed over by `SENTINEL FAILOVER` and by SIGKILL (--rounds of each), and with
   `--failovers N` (the soak) N times each by SENTINEL FAILOVER, SIGKILL and SIGSTOP. After
   each failover it counts, per target, the acknowledged writes issued after the failover
   started that are missing from the new master (podkit's must be 0), those from before
   (Redis's asynchronous replication), the time to the first write on the new master and
   the longest stretch without a surviving acknowledged write; and podkit's hold (from its
   log) and its first write on the new master relative to Sentinel's first +switch-master
   (where the previous version switched). The old master is made a replica of the new one
   between failovers (what Sentinel does itself some 10 s later).

    .venv/bin/python bench/bench_redis_ambassador.py [--quick] [--only throughput|failover]
        [--rounds N] [--failovers N]

On a small shared machine the unpipelined figures swing by +-30% from run to run (other
processes compete for the same cores); compare medians of several rounds.
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

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


# --- 2. failover and soak -----------------------------------------------------------------------


class Writers:
    """Threads writing unique keys through one port; every acknowledged write is kept as
    (time sent, key, time acknowledged)."""

    def __init__(self, port: int, prefix: str, threads: int = 4) -> None:
        self.port = port
        self.prefix = prefix
        self.ok: list[tuple[float, str, float]] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(n,), daemon=True)
                        for n in range(threads)]  # fmt: skip
        for thread in self.threads:
            thread.start()

    def _run(self, number: int) -> None:
        client = redis.Redis(host=HOST, port=self.port, socket_timeout=5, socket_connect_timeout=2)
        seq = 0
        while not self.stop.is_set():
            seq += 1
            key = f"{self.prefix}:{number}:{seq}"
            sent = time.time()
            try:
                client.set(key, sent)
            except redis.RedisError:
                client.connection_pool.disconnect()  # READONLY from a demoted node: reconnect
                time.sleep(0.005)
                continue
            acked = time.time()
            with self.lock:
                self.ok.append((sent, key, acked))

    def since(self, when: float) -> int:
        with self.lock:
            return sum(1 for sent, _, _ in self.ok[-5000:] if sent > when)

    def snapshot(self) -> list[tuple[float, str, float]]:
        with self.lock:
            return list(self.ok)

    def forget_before(self, when: float) -> None:
        """Drop what was acknowledged before `when` (judged already): a soak stays linear."""
        with self.lock:
            self.ok = [entry for entry in self.ok if entry[2] > when]

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(10)


class SentinelEvents:
    """Every event of every Sentinel, with its arrival time."""

    def __init__(self, cluster: SentinelCluster) -> None:
        self.seen: list[tuple[float, str, str]] = []
        self.stop = threading.Event()
        for sentinel in cluster.sentinels:
            threading.Thread(target=self._listen, args=(sentinel.port,), daemon=True).start()

    def _listen(self, port: int) -> None:
        pubsub = redis.Redis(host=HOST, port=port, decode_responses=True).pubsub()
        pubsub.psubscribe("*")
        while not self.stop.is_set():
            try:
                message = pubsub.get_message(timeout=0.2)
            except redis.RedisError:
                return
            if message and message.get("type") == "pmessage":
                self.seen.append((time.time(), message["channel"], message["data"]))

    def first(self, channel: str, after: float) -> float | None:
        times = [at for at, ch, _ in list(self.seen) if ch == channel and at > after]
        return min(times) if times else None

    def failover_of(self, addr: str, after: float) -> bool:
        """Did a Sentinel say `addr` (as the master) was down or being failed over?"""
        host, port = addr.rsplit(":", 1)
        return any(
            ch in ("+odown", "+try-failover") and data.split()[2:4] == [host, port]
            for at, ch, data in list(self.seen)
            if at > after
        )


def agreed_master(cluster: SentinelCluster) -> str:
    def agreed() -> str | None:
        replies = {
            s.command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster") for s in cluster.sentinels
        }
        return cluster.master_addr() if len(replies) == 1 else None

    return str(wait_for(agreed, timeout=30, what="the Sentinels to agree"))


def present_on(port: int, keys: list[str]) -> set[str]:
    """Which of `keys` the node has (EXISTS in pipelined batches: only the keys that matter,
    so a long soak does not rescan everything written so far)."""
    found: set[str] = set()
    with redis.Redis(host=HOST, port=port, decode_responses=True, socket_timeout=60) as client:
        for i in range(0, len(keys), 1000):
            batch = keys[i : i + 1000]
            pipe = client.pipeline(transaction=False)
            for key in batch:
                pipe.exists(key)
            found.update(key for key, there in zip(batch, pipe.execute(), strict=True) if there)
    return found


def current_master(helper: HelperProcess) -> str | None:
    for line in helper.metrics().splitlines():
        if line.startswith("redis_ambassador_master_info{") and line.endswith(" 1.0"):
            return line.split('"')[1]
    return None


def hold_seconds(helper: HelperProcess, old: str, after: float) -> float | None:
    """From the ambassador's log: how long it routed nowhere (the cut to the new master)."""
    cut = None
    for event in helper.log_events():
        name, at = event.get("event"), float(event.get("at", 0))
        if name == "master_lost" and event.get("old") == old and at > after and cut is None:
            cut = at
        elif name == "master_changed" and cut is not None and at > cut:
            return at - cut
    return None


@dataclass
class Outcome:
    """One target through one failover."""

    first_on_new: float | None = None  # seconds from the start to the first write on the new
    # master (the first surviving write sent after Sentinel sent SLAVEOF NO ONE)
    gap: float = 0.0  # longest stretch without a surviving acknowledged write (no master)
    lost_after: int = 0  # acknowledged after the start, missing from the new master
    lost_before: int = 0  # acknowledged before the start, missing (async replication)
    acked_after: int = 0


def judge(acked: list[tuple[float, str, float]], present: set[str], started: float,
          after_by_sent: bool, promoted: float, until: float, since: float) -> Outcome:  # fmt: skip
    """`promoted`: when Sentinel sent SLAVEOF NO ONE (a write that survives and was sent
    after it went to the new master); `until`: the end of the observation window; `since`: the
    end of the previous failover's (writes lost before it are that failover's)."""
    out = Outcome()
    last_before = max((at for _, _, at in acked if at <= started), default=started)
    times = [last_before]
    for sent, key, at in acked:
        after = sent > started if after_by_sent else at > started
        if after:
            out.acked_after += 1
            if key in present:
                times.append(at)
                if sent > promoted and (
                    out.first_on_new is None or at - started < out.first_on_new
                ):
                    out.first_on_new = at - started
            else:
                out.lost_after += 1
        elif key not in present and at > since:
            out.lost_before += 1
    times.append(until)
    times.sort()
    out.gap = max((b - a for a, b in itertools.pairwise(times)), default=0.0)
    return out


KINDS = {"command": "SENTINEL FAILOVER", "sigkill": "SIGKILL", "sigstop": "SIGSTOP"}


def failovers(kinds: list[str], count: int) -> None:
    """`count` failovers of each kind in one cluster, podkit and HAProxy (role:master check)
    written through at once; the old master is made a replica again between failovers."""
    cluster = SentinelCluster(node_args=["--repl-diskless-sync-delay", "0"],
                              failover_timeout_ms=3000).start()  # fmt: skip
    proxy_port, haproxy_port = free_port(), free_port()
    servers = "\n".join(
        f"  server n{i} {node.addr} check inter 1s on-marked-down shutdown-sessions"
        for i, node in enumerate(cluster.nodes)
    )
    haproxy = HAProxyServer(HAPROXY_ROLE_CHECK.format(host=HOST, port=haproxy_port,
                                                      servers=servers))  # fmt: skip
    helper = None
    results: dict[tuple[str, str], list[Outcome]] = {}
    holds: dict[str, list[float]] = {}
    switch_lag: dict[str, list[float]] = {}
    disturbed: dict[str, int] = {}
    try:
        haproxy.start()
        helper = HelperProcess(
            "redis-ambassador", "--sentinels", ",".join(cluster.sentinel_addrs),
            "--listen", f"{HOST}:{proxy_port}", "--log-level", "info",
        ).start()  # fmt: skip
        events = SentinelEvents(cluster)
        writers = {"podkit": Writers(proxy_port, "pod"), "haproxy": Writers(haproxy_port, "hap")}
        done = 0
        previous_until = 0.0
        pending = dict.fromkeys(kinds, count)
        while any(pending.values()):
            for kind in kinds:
                if not pending[kind]:
                    continue

                def settled_and_routed() -> str | None:
                    addr = cluster.settled()
                    return addr if addr and current_master(helper) == addr else None  # type: ignore[arg-type]

                old_addr = str(
                    wait_for(settled_and_routed, timeout=60, what="settled, podkit following")
                )
                old = cluster.node(old_addr)
                mark = time.time()
                wait_for(lambda m=mark: all(w.since(m) > 20 for w in writers.values()),
                         timeout=30, what="writes through podkit and haproxy")  # fmt: skip
                started = time.time()
                if kind == "command":
                    cluster.failover_command()
                elif kind == "sigkill":
                    old.stop(signal.SIGKILL)
                    started = time.time()
                else:
                    old.process.send_signal(signal.SIGSTOP)  # type: ignore[union-attr]
                    wait_for(lambda o=old: cluster.stopped(o), what="the master to stop")
                    started = time.time()
                try:
                    new_addr = str(wait_for(
                        lambda a=old_addr: (m := current_master(helper)) not in (None, a) and m,
                        timeout=60, what="podkit to follow the failover",
                    ))  # fmt: skip
                    recovered = time.time()
                    wait_for(lambda r=recovered: writers["podkit"].since(r) > 50, timeout=30,
                             what="writes on the new master")  # fmt: skip
                    time.sleep(1.0)  # the observation window: HAProxy's routing a second on
                    snapshots = {name: w.snapshot() for name, w in writers.items()}
                    until = time.time()
                finally:
                    if kind == "sigstop":
                        old.process.send_signal(signal.SIGCONT)  # type: ignore[union-attr]
                if events.failover_of(new_addr, started):
                    # Sentinel failed the new master over too (a loaded machine): the counts
                    # would mix two failovers. Put the old node back and run this one again.
                    disturbed[kind] = disturbed.get(kind, 0) + 1
                    print(f"       {KINDS[kind]}: Sentinel failed the new master over too; "
                          "run again", flush=True)  # fmt: skip
                    cluster.make_replica(old, cluster.node(agreed_master(cluster)))
                    continue
                pending[kind] -= 1
                new = cluster.node(new_addr)
                promoted = events.first("+failover-state-send-slaveof-noone", started) or started
                for name in writers:
                    relevant = [key for _, key, at in snapshots[name] if at > previous_until]
                    present = present_on(new.port, relevant)
                    outcome = judge(
                        snapshots[name],
                        present,
                        started,
                        kind != "command",
                        promoted,
                        until,
                        previous_until,
                    )
                    results.setdefault((kind, name), []).append(outcome)
                hold = hold_seconds(helper, old_addr, started - 1)
                if hold is not None:
                    holds.setdefault(kind, []).append(hold)
                switch = events.first("+switch-master", started)
                first = results[(kind, "podkit")][-1].first_on_new
                if switch is not None and first is not None:
                    switch_lag.setdefault(kind, []).append(started + first - switch)
                cluster.make_replica(old, cluster.node(agreed_master(cluster)))
                previous_until = until
                for w in writers.values():
                    w.forget_before(until - 1)
                done += 1
                pod = results[(kind, "podkit")][-1]
                hap = results[(kind, "haproxy")][-1]
                print(f"  {done:>4} {KINDS[kind]:<17} podkit: first write on the new master "
                      f"{seconds(pod.first_on_new)}, lost after start {pod.lost_after}"
                      f" | haproxy: {seconds(hap.first_on_new)}, lost after start "
                      f"{hap.lost_after}", flush=True)  # fmt: skip
        for w in writers.values():
            w.close()
        events.stop.set()
    finally:
        if helper is not None:
            helper.cleanup()
        haproxy.cleanup()
        cluster.cleanup()
    report(kinds, count, results, holds, switch_lag)
    if disturbed:
        print("failovers run again because Sentinel failed the new master over too: "
              + ", ".join(f"{KINDS[k]} {n}" for k, n in disturbed.items()))  # fmt: skip


def seconds(value: float | None) -> str:
    return "  none " if value is None else f"{value:6.3f}s"


def report(kinds: list[str], count: int, results: dict[tuple[str, str], list[Outcome]],
           holds: dict[str, list[float]], switch_lag: dict[str, list[float]]) -> None:  # fmt: skip
    def med(values: list[float]) -> float:
        return statistics.median(values) if values else float("nan")

    print(f"\n{count} failovers of each kind, 4 writers per target (seconds are medians)")
    header = (f"{'kind':<17} {'target':<8} {'first write on new':>18} {'longest gap':>11} "
              f"{'lost after start':>16} {'acked after start':>17} "
              f"{'lost before start':>17} {'no write on new':>15}")  # fmt: skip
    print(header)
    print("-" * len(header))
    for kind in kinds:
        for name in ("podkit", "haproxy"):
            runs = results.get((kind, name), [])
            print(f"{KINDS[kind]:<17} {name:<8} "
                  f"{med([r.first_on_new for r in runs if r.first_on_new is not None]):>18.3f} "
                  f"{med([r.gap for r in runs]):>11.3f} {sum(r.lost_after for r in runs):>16} "
                  f"{sum(r.acked_after for r in runs):>17} "
                  f"{sum(r.lost_before for r in runs):>17} "
                  f"{sum(1 for r in runs if r.first_on_new is None):>15}")  # fmt: skip
    print()
    for kind in kinds:
        print(f"{KINDS[kind]:<17} podkit hold (cut to new master, from its log): "
              f"median {med(holds.get(kind, [])):.3f}s, max {max(holds.get(kind, [0])):.3f}s; "
              f"first write on the new master minus first +switch-master: "
              f"median {med(switch_lag.get(kind, [])):+.3f}s")  # fmt: skip
    print("before this change podkit wrote to the old master until +switch-master and switched "
          "~0.01 s after it; 'lost after start' must be 0 for podkit; 'no write on new': "
          "failovers after which the target had not written to the new master 1 s after "
          "podkit had (the longest gap then runs to the end of that window)")  # fmt: skip


def main() -> None:
    # SIGTERM ends the run like Ctrl-C: the servers it started are stopped (finally blocks).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run (smaller -n, 1 round)")
    parser.add_argument("--only", choices=["throughput", "failover"])
    parser.add_argument("--rounds", type=int, help="rounds/trials (default 3, 1 with --quick)")
    parser.add_argument("--failovers", type=int, metavar="N",
                        help="soak: N failovers of each kind (SENTINEL FAILOVER, SIGKILL, "
                        "SIGSTOP) instead of --rounds of the first two")  # fmt: skip
    args = parser.parse_args()
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    rounds = args.rounds or (1 if args.quick else 3)
    if args.only in (None, "throughput") and not args.failovers:
        throughput(requests=20000 if args.quick else 200000, rounds=rounds)
    if args.only in (None, "failover") or args.failovers:
        if args.failovers:
            failovers(["command", "sigkill", "sigstop"], args.failovers)
        else:
            failovers(["command", "sigkill"], rounds)
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
