"""Benchmark of `podkit pg-ambassador` against a direct connection and PgBouncer (Debian's).

One fixture PostgreSQL (trust on loopback, `pgbench -i -s 10`), PgBouncer and podkit in
transaction mode with the same pool size (20), pgbench run against each in turn,
interleaved in rounds:

1. `pgbench -S -c 20 -j 2 -T 20` in `-M simple`, `-M extended` and `-M prepared` (PgBouncer
   1.18 has no prepared-statement tracking: its row says FAILED with pgbench's error);
2. the same with `-C` (a new connection per transaction);
3. c1 latency: `pgbench -S -c 1 -j 1`.

A fourth target, `forwarder` (bench/python_forwarder.py), forwards bytes with uvloop and
asyncio Protocols and nothing else: one server connection per client, no framing, no
pooling. Its tps is the most any Python proxy gets on the machine the bench runs on (with
`-C` it pays a server connection per transaction, as direct does).

Per run: tps, p50/p99 latency from pgbench's per-transaction logs (`--log`), the pooler's
CPU seconds (utime+stime from /proc, and utime alone) during the run and per transaction
(the number of transactions from the same logs); medians over the rounds. Memory of each
pooler: RSS idle after start, RSS with 1,000 idle clients logged in, peak RSS
(VmHWM) at the end. Ratios podkit/PgBouncer and podkit/direct (PgBouncer/direct too).

    .venv/bin/python bench/bench_pg_ambassador.py [--quick] [--rounds N] [--duration S]
        [--only direct,pgbouncer,podkit,forwarder]

`podkit` rows need the `pg-ambassador` helper registered (entry point `podkit.helpers`);
without it they are skipped with a message. The machine is small and shared: read the
load average printed with the figures, and compare medians of several rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path

from podkit_dev.servers import (
    HOST,
    HelperProcess,
    PostgresServer,
    Process,
    TempDir,
    find_binary,
    free_port,
    port_open,
    wait_for,
)

POOL_SIZE = 20
CLIENTS = 20
THREADS = 2
IDLE_CLIENTS = 1000
SCALE = 10
MODES = ["simple", "extended", "prepared", "connect", "c1"]
MODE_LABEL = {
    "simple": "-M simple",
    "extended": "-M extended",
    "prepared": "-M prepared",
    "connect": "-C (simple)",
    "c1": "c1 (simple)",
}


# --- the targets ------------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    port: int
    pid: int | None = None  # the pooler's process (None: direct)
    stop: Callable[[], None] = lambda: None
    idle_only: bool = False  # memory: idle RSS only (no 1,000-clients figure)
    idle_rss_kib: int | None = None
    rss_1000_kib: int | None = None
    note: str = ""


def proc_cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of the process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / ticks, int(fields[12]) / ticks  # utime, stime


def proc_status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def start_pgbouncer(pg: PostgresServer) -> Target:
    binary = find_binary("pgbouncer", "/usr/sbin")
    user = "postgres" if os.geteuid() == 0 else None  # PgBouncer refuses to run as root
    tmp = TempDir("pgbouncer", owner=user)
    port = free_port()
    (tmp.path / "userlist.txt").write_text('"postgres" ""\n')
    config = tmp.path / "pgbouncer.ini"
    config.write_text(
        "[databases]\n"
        f"postgres = host={HOST} port={pg.port} dbname=postgres\n"
        "[pgbouncer]\n"
        f"listen_addr = {HOST}\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {tmp.path}/userlist.txt\n"
        f"pool_mode = transaction\ndefault_pool_size = {POOL_SIZE}\n"
        f"max_client_conn = {IDLE_CLIENTS + 200}\n"
        "ignore_startup_parameters = extra_float_digits\n"
        f"logfile = {tmp.path}/pgbouncer.log\nlog_connections = 0\nlog_disconnections = 0\n"
    )
    if user:
        import pwd

        entry = pwd.getpwnam(user)
        for path in tmp.path.iterdir():
            os.chown(path, entry.pw_uid, entry.pw_gid)
    process = Process([binary, str(config)], tmp.path / "pgbouncer.out", user=user).start()
    wait_for(lambda: port_open(port), what="pgbouncer", timeout=15)

    def stop() -> None:
        process.stop(signal.SIGINT)
        tmp.cleanup()

    return Target("pgbouncer", port, process.pid, stop)


def podkit_registered() -> bool:
    return any(ep.name == "pg-ambassador" for ep in entry_points(group="podkit.helpers"))


def podkit_settings_fields() -> set[str]:
    (ep,) = [ep for ep in entry_points(group="podkit.helpers") if ep.name == "pg-ambassador"]
    helper = ep.load()
    return set(helper.load_settings_class().model_fields)


def start_podkit(pg: PostgresServer) -> Target:
    port = free_port()
    fields = podkit_settings_fields()
    args = [
        "--listen", f"{HOST}:{port}", "--server-host", HOST, "--server-port", str(pg.port),
        "--pool-size", str(POOL_SIZE), "--max-client-conn", str(IDLE_CLIENTS + 200),
        "--pool-mode", "transaction", "--log-level", "warning",
    ]  # fmt: skip
    if "client_auth" in fields:
        args += ["--client-auth", "trust"]  # as PgBouncer here: the server trusts loopback
    helper = HelperProcess("pg-ambassador", *args).start(timeout=30)
    wait_for(lambda: port_open(port), what="pg-ambassador listening", timeout=15)
    return Target("podkit", port, helper.process.pid, helper.cleanup)


def start_forwarder(pg: PostgresServer) -> Target:
    port = free_port()
    script = Path(__file__).with_name("python_forwarder.py")
    tmp = TempDir("forwarder")
    process = Process([sys.executable, str(script), str(port), str(pg.port)],
                      tmp.path / "forwarder.out").start()  # fmt: skip
    wait_for(lambda: port_open(port), what="the Python forwarder", timeout=15)

    def stop() -> None:
        process.stop(signal.SIGTERM)
        tmp.cleanup()

    # No idle-clients figure: it opens a server connection per client.
    return Target("forwarder", port, process.pid, stop, idle_only=True)


# --- pgbench ------------------------------------------------------------------------------------


@dataclass
class Run:
    tps: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    cpu_s: float | None = None
    cpu_us_tx: float | None = None  # pooler CPU microseconds per transaction
    user_us_tx: float | None = None  # of which in user space (the rest is the kernel's)
    error: str = ""


@dataclass
class Results:
    runs: dict[tuple[str, str], list[Run]] = field(default_factory=dict)

    def add(self, target: str, mode: str, run: Run) -> None:
        self.runs.setdefault((target, mode), []).append(run)

    def median(self, target: str, mode: str, attr: str) -> float | None:
        values = [getattr(r, attr) for r in self.runs.get((target, mode), []) if not r.error]
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None

    def error(self, target: str, mode: str) -> str:
        return next((r.error for r in self.runs.get((target, mode), []) if r.error), "")


def pgbench(target: Target, mode: str, duration: int) -> Run:
    clients, threads = (1, 1) if mode == "c1" else (CLIENTS, THREADS)
    protocol = mode if mode in ("simple", "extended", "prepared") else "simple"
    with tempfile.TemporaryDirectory(prefix="podkit-pgbench-") as tmp:
        argv = [
            find_binary("pgbench"), "-h", HOST, "-p", str(target.port), "-U", "postgres",
            "-n", "-S", "-c", str(clients), "-j", str(threads), "-T", str(duration),
            "-M", protocol, "-l", f"--log-prefix={tmp}/tx", "postgres",
        ]  # fmt: skip
        if mode == "connect":
            argv.insert(-1, "-C")
        cpu_before = proc_cpu_seconds(target.pid) if target.pid else None
        done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 120)
        cpu = user = None
        if target.pid and cpu_before is not None:
            cpu_after = proc_cpu_seconds(target.pid)
            user = cpu_after[0] - cpu_before[0]
            cpu = user + cpu_after[1] - cpu_before[1]
        match = re.search(
            r"^tps = ([\d.]+) \((?:without initial|including reconnection)", done.stdout, re.M
        )
        failed = re.search(r"number of failed transactions: (\d+)", done.stdout)
        if done.returncode != 0 or not match or (failed and int(failed.group(1)) > 0):
            errors = [
                line
                for line in done.stderr.splitlines()
                if "error" in line.lower() or "abort" in line.lower()
            ]
            first = (errors or done.stderr.splitlines() or [f"exit {done.returncode}"])[0]
            return Run(error=first[:160])
        latencies = []
        for log in Path(tmp).glob("tx*"):
            for line in log.read_text().splitlines():
                parts = line.split()
                if len(parts) >= 3 and parts[2].isdigit():
                    latencies.append(int(parts[2]))
        latencies.sort()
        p50 = latencies[len(latencies) // 2] / 1000 if latencies else None
        p99 = (
            latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] / 1000
            if latencies
            else None
        )
        per_tx = cpu * 1e6 / len(latencies) if cpu is not None and latencies else None
        user_tx = user * 1e6 / len(latencies) if user is not None and latencies else None
        return Run(float(match.group(1)), p50, p99, cpu, per_tx, user_tx)


# --- idle clients ---------------------------------------------------------------------------------


def startup_packet(user: str, database: str) -> bytes:
    body = (
        struct.pack("!i", 196608)
        + b"".join(
            k + b"\0" + v.encode() + b"\0" for k, v in ((b"user", user), (b"database", database))
        )
        + b"\0"
    )
    return struct.pack("!i", len(body) + 4) + body


async def _idle_client(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(startup_packet("postgres", "postgres"))
    while True:
        head = await reader.readexactly(5)
        body = await reader.readexactly(struct.unpack_from("!i", head, 1)[0] - 4)
        if head[:1] == b"E":
            raise RuntimeError(body.decode(errors="replace"))
        if head[:1] == b"Z":
            return reader, writer


async def idle_clients_rss(target: Target, count: int) -> int:
    """Log in `count` clients, leave them idle, and read the pooler's RSS (KiB)."""
    assert target.pid is not None
    clients = []
    try:
        for start in range(0, count, 100):
            clients += await asyncio.gather(
                *(_idle_client(target.port) for _ in range(start, min(count, start + 100)))
            )
        await asyncio.sleep(1.0)  # let the pooler settle (not a correctness wait)
        return proc_status_kib(target.pid, "VmRSS")
    finally:
        for _, writer in clients:
            with contextlib.suppress(Exception):
                writer.write(b"X\0\0\0\4")
                writer.close()


# --- the run ------------------------------------------------------------------------------------


def fmt(value: float | None, spec: str = ".0f") -> str:
    return "-" if value is None else format(value, spec)


def mib(kib: int | None) -> str:
    return "-" if kib is None else f"{kib / 1024:.1f}"


def ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or not b else f"{a / b:.2f}"


def report(results: Results, targets: list[str], rounds: int, duration: int) -> None:
    print(f"\npgbench -S -c {CLIENTS} -j {THREADS} -T {duration} (c1: -c 1 -j 1), pool size "
          f"{POOL_SIZE}, transaction mode, medians of {rounds} round(s)")  # fmt: skip
    cols = "".join(f"{t + ' tps':>15}" for t in targets)
    header = f"{'mode':<13}{cols} {'pk/pgb':>7} {'pk/dir':>7} {'pgb/dir':>8} {'fwd/pgb':>8}"
    print(header)
    print("-" * len(header))
    for mode in MODES:
        tps = {t: results.median(t, mode, "tps") for t in targets}
        cells = "".join(
            f"{('FAILED' if results.error(t, mode) and tps[t] is None else fmt(tps[t])):>15}"
            for t in targets
        )
        print(f"{MODE_LABEL[mode]:<13}{cells} {ratio(tps.get('podkit'), tps.get('pgbouncer')):>7} "
              f"{ratio(tps.get('podkit'), tps.get('direct')):>7} "
              f"{ratio(tps.get('pgbouncer'), tps.get('direct')):>8} "
              f"{ratio(tps.get('forwarder'), tps.get('pgbouncer')):>8}")  # fmt: skip
    print("\nlatency ms p50 / p99 (from pgbench --log); pooler CPU seconds per run and CPU "
          "microseconds per transaction (of which user space: the rest is the kernel's "
          "socket work, about equal for both poolers)")  # fmt: skip
    header = (
        f"{'mode':<13}"
        + "".join(f"{t + ' p50/p99':>22}" for t in targets)
        + "".join(f"{t + ' CPU s, us/tx (user)':>31}" for t in targets if t != "direct")
        + f" {'p50 pk/pgb':>11}"
    )
    print(header)
    print("-" * len(header))
    for mode in MODES:
        cells = "".join(
            f"{fmt(results.median(t, mode, 'p50_ms'), '.3f')} / "
            f"{fmt(results.median(t, mode, 'p99_ms'), '.3f')}".rjust(22)
            for t in targets
        )
        cpu = "".join(
            f"{fmt(results.median(t, mode, 'cpu_s'), '.1f')}, "
            f"{fmt(results.median(t, mode, 'cpu_us_tx'), '.0f')} "
            f"({fmt(results.median(t, mode, 'user_us_tx'), '.1f')})".rjust(31)
            for t in targets
            if t != "direct"
        )
        p50 = ratio(
            results.median("podkit", mode, "p50_ms"), results.median("pgbouncer", mode, "p50_ms")
        )
        print(f"{MODE_LABEL[mode]:<13}{cells}{cpu} {p50:>11}")
    for t in targets:
        for mode in MODES:
            if error := results.error(t, mode):
                print(f"  {t} {MODE_LABEL[mode]}: FAILED: {error}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 s runs, 1 round, 200 idle clients")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=20, help="seconds per pgbench run")
    parser.add_argument("--only", default="direct,pgbouncer,podkit,forwarder")
    options = parser.parse_args()
    global IDLE_CLIENTS
    rounds, duration = options.rounds, options.duration
    if options.quick:
        rounds, duration, IDLE_CLIENTS = 1, 5, 200
    wanted = options.only.split(",")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
          f"({os.cpu_count()} CPUs)", flush=True)  # fmt: skip
    pg = PostgresServer(settings=["max_connections=300", "shared_buffers=128MB"]).start()
    started: list[Target] = []
    try:
        subprocess.run(
            [find_binary("pgbench"), "-h", HOST, "-p", str(pg.port), "-U", "postgres", "-i",
             "-s", str(SCALE), "-q", "postgres"],
            check=True, capture_output=True,
        )  # fmt: skip
        version = subprocess.run([find_binary("pgbouncer", "/usr/sbin"), "--version"],
                                 capture_output=True, text=True).stdout.splitlines()[0]  # fmt: skip
        print(f"PostgreSQL on {pg.port}; {version}", flush=True)
        if "direct" in wanted:
            started.append(Target("direct", pg.port))
        if "pgbouncer" in wanted:
            started.append(start_pgbouncer(pg))
        if "podkit" in wanted:
            if podkit_registered():
                started.append(start_podkit(pg))
            else:
                print("podkit: SKIPPED: the pg-ambassador helper is not registered in this "
                      "install (podkit.helpers entry point); its rows are left out",
                      flush=True)  # fmt: skip
        if "forwarder" in wanted:
            started.append(start_forwarder(pg))
        for target in started:
            if target.pid:
                time.sleep(1.0)
                target.idle_rss_kib = proc_status_kib(target.pid, "VmRSS")
        names = [t.name for t in started]
        results = Results()
        for round_no in range(rounds):
            for mode in MODES:
                for target in started:
                    run = pgbench(target, mode, duration if mode != "c1" else max(5, duration // 2))
                    results.add(target.name, mode, run)
            print(f"  round {round_no + 1}/{rounds} done; load average "
                  f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)  # fmt: skip
        for target in started:
            if target.pid and not target.idle_only:
                try:
                    target.rss_1000_kib = asyncio.run(idle_clients_rss(target, IDLE_CLIENTS))
                except Exception as exc:  # report, do not abort the whole benchmark
                    target.note = f"{IDLE_CLIENTS} idle clients failed: {exc}"[:160]
        report(results, names, rounds, duration)
        print(f"\npooler memory (MiB): idle RSS, RSS with {IDLE_CLIENTS} idle clients logged in, "
              "peak RSS (VmHWM) over the whole run")  # fmt: skip
        for target in started:
            if target.pid:
                hwm = proc_status_kib(target.pid, "VmHWM")
                idle = mib(target.idle_rss_kib)
                loaded = mib(target.rss_1000_kib)
                print(f"  {target.name:<10} idle {idle:>6}  {IDLE_CLIENTS} clients {loaded:>6}"
                      f"  peak {mib(hwm):>6}  {target.note}")  # fmt: skip
        print("targets: podkit tps >= 1.0x PgBouncer in every mode PgBouncer "
              "survives, c1 p50 <= 1.3x PgBouncer's, idle RSS < 48 MiB, < 128 MiB with "
              "1,000 clients; forwarder: the ceiling of a Python proxy here (fwd/pgb)")  # fmt: skip
        print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        for target in started:
            target.stop()
        pg.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
