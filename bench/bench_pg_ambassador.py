"""Benchmark of `podkit pg-ambassador` against a direct connection and PgBouncer.

PgBouncer is not part of podkit: its binary comes from the env var PGBOUNCER=/path/to/pgbouncer
(a build of the release users would otherwise run); without it, Debian's /usr/sbin/pgbouncer.
The bench prints which binary it ran and its `-V` line. As root, PgBouncer runs as `postgres`.

One fixture PostgreSQL (trust on loopback, `pgbench -i -s 10`); PgBouncer and podkit in
transaction mode with the same pool size (20) and `max_prepared_statements = 200` (PgBouncer
1.21 and later track prepared statements in transaction mode, so `-M prepared` and extended
run on both; Debian's 1.18 cannot, and its prepared row says FAILED with pgbench's error).
Targets, each a process of its own:

- `direct`: PostgreSQL itself (no pooler);
- `pgbouncer`: PgBouncer;
- `podkit`: `podkit pg-ambassador`, with its compiled core when it has one;
- `podkit-pure`: the same, started with PODKIT_PURE_PYTHON=1 (the compiled core not loaded);
- `podkit-before` (only with --before PODKIT): another checkout's podkit (its venv's
  script, e.g. main's), so that a change is measured before and after in one run;
- `forwarder` (only when asked with --only): bench/python_forwarder.py, uvloop forwarding
  bytes with no framing and no pooling, the ceiling of any Python proxy on this machine.

Each podkit row prints the core it says it loaded (metric `pg_ambassador_build_info{core=}`),
or that it does not say.

Runs, interleaved: each round runs every mode against every target (the target order
rotated each round), so the machine's noise falls on all of them alike; medians of the rounds.

1. `pgbench -S -c 20 -j 2 -T 15` in `-M simple`, `-M extended` and `-M prepared`;
2. the same with `-C` (a new connection per transaction);
3. `-c 1 -j 1`, for latency (p50/p99);
4. `-c 200 -j 2` with the pool of 20 (clients queue for servers);
5. settings: `-c 50` through a pool of 10 (separate pooler processes), a script whose
   connection runs `SET search_path` once and then `-S` transactions, beside plain `-S` at
   the same `-c 50`. Rows: `podkit-replay` (the default: the setting is read back at the
   transaction's end and replayed on the client's next server), `podkit-pin` (started with
   `--session-settings pin`: the client is pinned, so the row collapses toward the pool
   size), PgBouncer (which neither pins nor replays: the setting leaks to the next client of
   that server). `--replay-args` / `--pin-args` are extra flags for those two rows.

Per run: tps; p50/p99 latency from pgbench's per-transaction logs (`--log`); the pooler's CPU
(utime+stime of its process tree, /proc) per transaction, and user space alone. Memory: RSS
idle after start, RSS with N idle clients logged in, peak RSS (VmHWM) at the end. Then a
separate pass, so strace does not slow the tps rounds: `strace -c -f -p PID` attached to
each pooler for a short pgbench run per mode, system calls per transaction (all of them, and
the main ones). strace slows the pooler, so fewer transactions share an epoll wait than
untraced: compare the poolers with each other, not with untraced figures.

    .venv/bin/python bench/bench_pg_ambassador.py [--quick] [--rounds N] [--duration S]
        [--only direct,pgbouncer,podkit,podkit-pure,forwarder] [--no-strace] [--no-settings]
        [--replay-args "--flag value"] [--pin-args "..."]

Only the settings rows: `--only direct --modes "" --no-strace --idle-clients 0`.

The machine is small and shared: read the load average printed with the figures, and
compare ratios of medians.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import pwd
import re
import shlex
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
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
    http_get,
    podkit_argv,
    port_open,
    wait_for,
)

POOL_SIZE = 20
CLIENTS = 20
THREADS = 2
MANY_CLIENTS = 200  # the queueing mode: 200 clients, the same pool of 20
SETTINGS_CLIENTS = 50
SETTINGS_POOL = 10
MAX_PREPARED = 200
SCALE = 10

MAIN_MODES = ["simple", "extended", "prepared", "connect", "c1", "c200"]
SETTINGS_MODES = ["plain50", "set50"]
MODE_LABEL = {
    "simple": "c20 simple",
    "extended": "c20 extended",
    "prepared": "c20 prepared",
    "connect": "c20 -C",
    "c1": "c1 simple",
    "c200": "c200 simple",
    "plain50": "c50 -S",
    "set50": "c50 SET+-S",
}
TPS_MODES = ["simple", "extended", "prepared", "c200"]  # target: tps >= 1.0x PgBouncer

# A client's first transaction SETs search_path; pgbench keeps a client's variables from one
# transaction to the next, so `done` marks the connection that has run it.
SETTINGS_SCRIPT = f"""\\if :done = 0
SET search_path TO public;
\\set done 1
\\endif
\\set aid random(1, {100000 * SCALE})
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
"""


# --- processes: CPU and memory of a process tree -------------------------------------------------


def _children(root: int) -> list[int]:
    """`root` and its descendants (a pooler may run worker processes)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            ppid = int(stat.read_text().rpartition(")")[2].split()[1])
            parents.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += parents.get(pid, [])
    return found


def tree_cpu_seconds(root: int) -> tuple[float, float]:
    """(user, system) CPU seconds of the process tree so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    user = system = 0.0
    for pid in _children(root):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            user += int(fields[11]) / ticks
            system += int(fields[12]) / ticks
    return user, system


def tree_status_kib(root: int, key: str) -> int:
    """The sum of a /proc/PID/status field (VmRSS, VmHWM) over the process tree."""
    total = 0
    for pid in _children(root):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith(key + ":"):
                    total += int(line.split()[1])
    return total


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# --- the targets ----------------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    port: int
    pid: int | None = None  # the pooler's process (None: direct)
    stop: Callable[[], None] = lambda: None
    idle_only: bool = False  # memory: idle RSS only (no idle-clients figure)
    idle_rss_kib: int | None = None
    clients_rss_kib: int | None = None
    note: str = ""


@dataclass(frozen=True)
class PgBouncerBinary:
    path: str
    version: str  # the first line of `-V`, "PgBouncer 1.25.2"
    origin: str  # where the path came from

    @property
    def numeric(self) -> tuple[int, ...]:
        found = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", self.version)
        return tuple(int(g or 0) for g in found.groups()) if found else (0,)


def pgbouncer_binary() -> PgBouncerBinary:
    if path := os.environ.get("PGBOUNCER"):
        origin = "from PGBOUNCER"
    else:
        path = find_binary("pgbouncer", "/usr/sbin")
        origin = "PGBOUNCER not set: the machine's own (Debian's) pgbouncer"
    done = subprocess.run([path, "-V"], capture_output=True, text=True, timeout=10)
    lines = (done.stdout or done.stderr).splitlines()
    return PgBouncerBinary(path, lines[0] if lines else "?", origin)


def start_pgbouncer(
    pg: PostgresServer,
    binary: PgBouncerBinary,
    pool: int,
    name: str,
    max_clients: int,
    wrapper: Sequence[str] = (),
) -> Target:
    user = "postgres" if os.geteuid() == 0 else None  # PgBouncer refuses to run as root
    tmp = TempDir("pgbouncer", owner=user)
    port = free_port()
    (tmp.path / "userlist.txt").write_text('"postgres" ""\n')
    config = tmp.path / "pgbouncer.ini"
    prepared = f"max_prepared_statements = {MAX_PREPARED}\n" if binary.numeric >= (1, 21) else ""
    config.write_text(
        "[databases]\n"
        f"postgres = host={HOST} port={pg.port} dbname=postgres\n"
        "[pgbouncer]\n"
        f"listen_addr = {HOST}\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {tmp.path}/userlist.txt\n"
        f"pool_mode = transaction\ndefault_pool_size = {pool}\n{prepared}"
        f"max_client_conn = {max_clients}\n"
        "ignore_startup_parameters = extra_float_digits\n"
        f"logfile = {tmp.path}/pgbouncer.log\nlog_connections = 0\nlog_disconnections = 0\n"
    )
    if user:
        entry = pwd.getpwnam(user)
        for path in tmp.path.iterdir():
            os.chown(path, entry.pw_uid, entry.pw_gid)
    argv = [*wrapper, binary.path, str(config)]
    process = Process(argv, tmp.path / "pgbouncer.out", user=user).start()

    def up() -> bool:
        if not process.alive():
            log = (tmp.path / "pgbouncer.log").read_text(errors="replace")[-600:]
            raise RuntimeError(f"pgbouncer exited: {process.log_text()[-600:]}{log}")
        return port_open(port)

    wait_for(up, what="pgbouncer", timeout=120 if wrapper else 15)

    def stop() -> None:
        process.stop(signal.SIGINT)
        tmp.cleanup()

    return Target(name, port, process.pid, stop)


def podkit_registered() -> bool:
    return any(ep.name == "pg-ambassador" for ep in entry_points(group="podkit.helpers"))


def podkit_settings_fields() -> set[str]:
    (ep,) = [ep for ep in entry_points(group="podkit.helpers") if ep.name == "pg-ambassador"]
    helper = ep.load()
    return set(helper.load_settings_class().model_fields)


def start_podkit(
    pg: PostgresServer,
    name: str,
    pool: int,
    max_clients: int,
    *,
    pure: bool = False,
    extra: Iterable[str] = (),
    wrapper: Sequence[str] = (),
    command: str | None = None,
) -> Target:
    """`command`: another checkout's `podkit` script (its venv's), run instead of this one's."""
    port = free_port()
    fields = podkit_settings_fields()
    args = [
        "--listen",
        f"{HOST}:{port}",
        "--server-host",
        HOST,
        "--server-port",
        str(pg.port),
        "--pool-size",
        str(pool),
        "--max-client-conn",
        str(max_clients),
        "--pool-mode",
        "transaction",
        "--log-level",
        "warning",
    ]
    if "client_auth" in fields:
        args += ["--client-auth", "trust"]  # as PgBouncer here: the server trusts loopback
    if "max_prepared_statements" in fields:
        args += ["--max-prepared-statements", str(MAX_PREPARED)]
    args += list(extra)
    env = {"PODKIT_PURE_PYTHON": "1"} if pure else {}
    helper = HelperProcess("pg-ambassador", *args, env=env, wrapper=wrapper)
    if command:  # the same arguments (this checkout's settings), another podkit
        own = len(wrapper) + len(podkit_argv())
        helper.process.argv = [*wrapper, command, *helper.process.argv[own:]]
    helper.start(timeout=180 if wrapper else 30)
    wait_for(
        lambda: port_open(port), what="pg-ambassador listening", timeout=120 if wrapper else 15
    )
    return Target(name, port, helper.process.pid, helper.cleanup, note=podkit_core(helper))


def podkit_core(helper: HelperProcess) -> str:
    """The core the helper says it loaded, from its build_info metric."""
    try:
        status, body = http_get(f"{helper.admin}/metrics")
    except OSError as exc:
        return f"core: /metrics unreadable ({exc})"
    found = re.search(rb'pg_ambassador_build_info\{[^}]*core="([^"]+)"', body)
    if status == 200 and found:
        return f"core: {found.group(1).decode()}"
    return "core: not reported (no pg_ambassador_build_info{core=...})"


def start_forwarder(pg: PostgresServer) -> Target:
    port = free_port()
    script = Path(__file__).with_name("python_forwarder.py")
    tmp = TempDir("forwarder")
    process = Process(
        [sys.executable, str(script), str(port), str(pg.port)], tmp.path / "forwarder.out"
    ).start()
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
    cpu_us_tx: float | None = None  # pooler CPU microseconds per transaction (user+system)
    user_us_tx: float | None = None  # of which in user space (the rest is the kernel's)
    transactions: int = 0
    max_ms: float | None = None
    served: int | None = None  # clients that ran at least a tenth of the mean per client
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


def pgbench_argv(
    port: int,
    mode: str,
    duration: int,
    log_prefix: str | None,
    script: Path | None = None,
    transactions: int | None = None,
) -> list[str]:
    """pgbench for `mode`, for `duration` seconds, or `transactions` per client if given."""
    clients, threads = {
        "c1": (1, 1),
        "c200": (MANY_CLIENTS, THREADS),
        "plain50": (SETTINGS_CLIENTS, THREADS),
        "set50": (SETTINGS_CLIENTS, THREADS),
    }.get(mode, (CLIENTS, THREADS))
    protocol = mode if mode in ("simple", "extended", "prepared") else "simple"
    argv = [
        find_binary("pgbench"),
        "-h",
        HOST,
        "-p",
        str(port),
        "-U",
        "postgres",
        "-n",
        "-c",
        str(clients),
        "-j",
        str(threads),
        *(["-t", str(transactions)] if transactions else ["-T", str(duration)]),
        "-M",
        protocol,
    ]
    if mode == "set50":
        assert script is not None
        argv += ["-f", str(script), "-D", "done=0"]
    else:
        argv.append("-S")
    if mode == "connect":
        argv.append("-C")
    if log_prefix:
        argv += ["-l", f"--log-prefix={log_prefix}"]
    return [*argv, "postgres"]


def pgbench_failure(done: subprocess.CompletedProcess[str]) -> str | None:
    """pgbench's first error line, or None when the run succeeded."""
    match = re.search(
        r"^tps = [\d.]+ \((?:without initial|including reconnection)", done.stdout, re.M
    )
    failed = re.search(r"number of failed transactions: (\d+)", done.stdout)
    if done.returncode == 0 and match and not (failed and int(failed.group(1)) > 0):
        return None
    errors = [
        line
        for line in done.stderr.splitlines()
        if "error" in line.lower() or "abort" in line.lower()
    ]
    first = (errors or done.stderr.splitlines() or [f"exit {done.returncode}"])[0]
    return first[:160]


def pgbench(target: Target, mode: str, duration: int, script: Path | None = None) -> Run:
    with tempfile.TemporaryDirectory(prefix="podkit-pgbench-") as tmp:
        argv = pgbench_argv(target.port, mode, duration, f"{tmp}/tx", script)
        cpu_before = tree_cpu_seconds(target.pid) if target.pid else None
        done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 180)
        cpu = user = None
        if target.pid and cpu_before is not None:
            cpu_after = tree_cpu_seconds(target.pid)
            user = cpu_after[0] - cpu_before[0]
            cpu = user + cpu_after[1] - cpu_before[1]
        if (error := pgbench_failure(done)) is not None:
            return Run(error=error)
        tps = float(re.findall(r"^tps = ([\d.]+)", done.stdout, re.M)[0])
        latencies: list[int] = []
        per_client: dict[str, int] = {}
        for log in Path(tmp).glob("tx*"):
            with log.open() as lines:
                for line in lines:  # client_id transaction_no time_us script_no ...
                    parts = line.split(None, 3)
                    if len(parts) >= 3 and parts[2].isdigit():
                        latencies.append(int(parts[2]))
                        per_client[parts[0]] = per_client.get(parts[0], 0) + 1
        latencies.sort()
        count = len(latencies)
        if not count:
            return Run(tps, error="no transaction in pgbench's log")
        p50 = latencies[count // 2] / 1000
        p99 = latencies[min(count - 1, int(count * 0.99))] / 1000
        per_tx = cpu * 1e6 / count if cpu is not None else None
        user_tx = user * 1e6 / count if user is not None else None
        # A client left waiting for a server all run long (pinning) ran one or no transaction.
        served = sum(n >= 0.1 * count / len(per_client) for n in per_client.values())
        return Run(tps, p50, p99, per_tx, user_tx, count, latencies[-1] / 1000, served)


# --- system calls per transaction (strace, a separate pass) --------------------------------------


MAIN_CALLS = [
    "read",
    "recvfrom",
    "write",
    "sendto",
    "writev",
    "sendmsg",
    "epoll_wait",
    "epoll_pwait",
    "epoll_ctl",
    "accept4",
    "close",
]


@dataclass
class Syscalls:
    per_tx: dict[str, float] = field(default_factory=dict)  # syscall -> calls per transaction
    transactions: int = 0
    error: str = ""

    @property
    def total(self) -> float:
        return sum(self.per_tx.values())


def parse_strace_summary(text: str) -> dict[str, int]:
    """`strace -c` summary -> {syscall: calls} (the `total` line left out)."""
    calls: dict[str, int] = {}
    for line in text.splitlines():
        tokens = line.split()
        if len(tokens) < 5 or not re.fullmatch(r"[\d.]+", tokens[0]):
            continue
        name = tokens[-1]
        if name == "total":
            continue
        # % time, seconds, usecs/call, calls, [errors], syscall
        calls[name] = calls.get(name, 0) + int(tokens[3])
    return calls


def strace_pass(target: Target, mode: str, duration: int, script: Path | None) -> Syscalls:
    assert target.pid is not None
    strace = find_binary("strace")
    with tempfile.TemporaryDirectory(prefix="podkit-strace-") as tmp:
        out = Path(tmp) / "summary"
        tracer = subprocess.Popen(
            [strace, "-c", "-f", "-o", str(out), "-p", str(target.pid)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert tracer.stderr is not None
        attached = ""
        while "attached" not in attached:  # strace says so once it traces the process
            line = tracer.stderr.readline()
            if not line:
                tracer.wait(5)
                return Syscalls(error=f"strace: {attached.strip()[:160] or 'exited'}")
            attached += line
        try:
            done = subprocess.run(
                pgbench_argv(target.port, mode, duration, None, script),
                capture_output=True,
                text=True,
                timeout=duration + 180,
            )
        finally:
            tracer.send_signal(signal.SIGINT)  # detach; strace then writes its summary
            tracer.communicate(timeout=30)
        if (error := pgbench_failure(done)) is not None:
            return Syscalls(error=error)
        found = re.search(r"number of transactions actually processed: (\d+)", done.stdout)
        count = int(found.group(1)) if found else 0
        if not count:
            return Syscalls(error="no transactions")
        calls = parse_strace_summary(out.read_text())
        return Syscalls({k: v / count for k, v in calls.items()}, count)


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
        return tree_status_kib(target.pid, "VmRSS")
    finally:
        for _, writer in clients:
            with contextlib.suppress(Exception):
                writer.write(b"X\0\0\0\4")
                writer.close()


# --- the report -----------------------------------------------------------------------------------


def fmt(value: float | None, spec: str = ".0f") -> str:
    return "-" if value is None else format(value, spec)


def mib(kib: int | None) -> str:
    return "-" if kib is None else f"{kib / 1024:.1f}"


def ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or not b else f"{a / b:.2f}"


def table(title: str, header: list[str], rows: list[list[str]], first: int = 13) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    widths[0] = max(widths[0], first)
    print(f"\n{title}")
    line = "  ".join(
        h.ljust(widths[0]) if i == 0 else h.rjust(widths[i]) for i, h in enumerate(header)
    )
    print(line)
    print("-" * len(line))
    for row in rows:
        print(
            "  ".join(
                c.ljust(widths[0]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(row)
            )
        )


def podkits(names: list[str]) -> list[str]:
    return [n for n in names if n.startswith("podkit") or n == "forwarder"]


def report_main(results: Results, names: list[str], modes: list[str]) -> None:
    poolers = [n for n in names if n != "direct"]
    against = podkits(names) if "pgbouncer" in names else []

    def tps_cell(t: str, m: str) -> str:
        if results.error(t, m) and results.median(t, m, "tps") is None:
            return "FAILED"
        return fmt(results.median(t, m, "tps"))

    table(
        "tps (ratios: / pgbouncer)",
        ["mode", *names, *(f"{n}/pgb" for n in against)],
        [
            [
                MODE_LABEL[m],
                *(tps_cell(t, m) for t in names),
                *(
                    ratio(results.median(n, m, "tps"), results.median("pgbouncer", m, "tps"))
                    for n in against
                ),
            ]
            for m in modes
        ],
    )
    table(
        "latency ms, p50 / p99 (pgbench --log), p50 ratio / pgbouncer",
        ["mode", *names, *(f"{n}/pgb p50" for n in against)],
        [
            [
                MODE_LABEL[m],
                *(
                    f"{fmt(results.median(t, m, 'p50_ms'), '.3f')} / "
                    f"{fmt(results.median(t, m, 'p99_ms'), '.3f')}"
                    for t in names
                ),
                *(
                    ratio(results.median(n, m, "p50_ms"), results.median("pgbouncer", m, "p50_ms"))
                    for n in against
                ),
            ]
            for m in modes
        ],
    )
    table(
        "pooler CPU per transaction, us user+system (user alone), of its process tree",
        ["mode", *poolers, *(f"{n}/pgb" for n in against)],
        [
            [
                MODE_LABEL[m],
                *(
                    f"{fmt(results.median(t, m, 'cpu_us_tx'), '.1f')} "
                    f"({fmt(results.median(t, m, 'user_us_tx'), '.1f')})"
                    for t in poolers
                ),
                *(
                    ratio(
                        results.median(n, m, "cpu_us_tx"),
                        results.median("pgbouncer", m, "cpu_us_tx"),
                    )
                    for n in against
                ),
            ]
            for m in modes
        ],
    )
    for t in names:
        for m in modes:
            if error := results.error(t, m):
                print(f"  {t} {MODE_LABEL[m]}: FAILED (in at least one round): {error}")


def report_syscalls(
    calls: dict[tuple[str, str], Syscalls], poolers: list[str], modes: list[str]
) -> None:
    names = [c for c in MAIN_CALLS if any(run.per_tx.get(c) for run in calls.values())]
    rows, others = [], []
    for m in modes:
        base = calls.get(("pgbouncer", m))
        for t in poolers:
            s = calls.get((t, m))
            if s is None:
                continue
            if s.error:
                rows.append([MODE_LABEL[m], t, "FAILED", *[""] * len(names), "", "-"])
                others.append(f"  {MODE_LABEL[m]}, {t}: FAILED: {s.error}")
                continue
            rest = {c: n for c, n in s.per_tx.items() if c not in names}
            rows.append(
                [
                    MODE_LABEL[m],
                    t,
                    f"{s.total:.2f}",
                    *(fmt(s.per_tx.get(c), ".2f") for c in names),
                    f"{sum(rest.values()):.2f}",
                    ratio(s.total, base.total) if base and not base.error else "-",
                ]
            )
            # The other calls made at least once per 20 transactions, named.
            if named := [f"{c} {n:.2f}" for c, n in sorted(rest.items()) if n >= 0.05]:
                others.append(f"  {MODE_LABEL[m]}, {t}: {', '.join(named)}")
    table(
        "system calls per transaction (strace -c -f -p, a separate short pass; total, the main "
        "ones, the rest; total / pgbouncer)",
        ["mode", "pooler", "total", *names, "other", "/pgb"],
        rows,
    )
    if others:
        print("other calls, at least 0.05 per transaction (and failures):")
        print("\n".join(others))


def report_targets(results: Results, names: list[str], idle: dict[str, int | None]) -> None:
    """Each podkit row against the targets set for it relative to PgBouncer."""
    if "pgbouncer" not in names:
        return
    print("\ntargets vs PgBouncer (met / missed by how much):")

    def check(
        label: str, value: float | None, base: float | None, limit: float, higher: bool
    ) -> str:
        if value is None or not base:
            return f"{label} -"
        r = value / base
        ok = r >= limit if higher else r <= limit
        miss = "" if ok else f" (missed by {abs(r - limit) / limit:.0%})"
        return f"{label} {r:.2f}x {'met' if ok else 'MISSED'}{miss}"

    for n in [n for n in podkits(names) if n != "forwarder"]:
        med = results.median
        parts = [
            check(
                MODE_LABEL[m] + " tps>=1.0", med(n, m, "tps"), med("pgbouncer", m, "tps"), 1.0, True
            )
            for m in TPS_MODES
        ]
        parts.append(
            check(
                "-C tps>=0.9",
                med(n, "connect", "tps"),
                med("pgbouncer", "connect", "tps"),
                0.9,
                True,
            )
        )
        parts.append(
            check(
                "c1 p50<=1.1", med(n, "c1", "p50_ms"), med("pgbouncer", "c1", "p50_ms"), 1.1, False
            )
        )
        parts.append(
            check(
                "c20 simple CPU/tx<=1.1",
                med(n, "simple", "cpu_us_tx"),
                med("pgbouncer", "simple", "cpu_us_tx"),
                1.1,
                False,
            )
        )
        rss = idle.get(n)
        verdict = "-" if rss is None else "met" if rss < 48 * 1024 else "MISSED"
        parts.append(f"idle RSS {mib(rss)} MiB < 48: {verdict}")
        print(f"  {n}:")
        for part in parts:
            print(f"    {part}")


def report_settings(results: Results, names: list[str]) -> None:
    rows = []
    for t in names:
        plain, sets = results.median(t, "plain50", "tps"), results.median(t, "set50", "tps")
        err = results.error(t, "set50") or results.error(t, "plain50")
        rows.append(
            [
                t,
                fmt(plain),
                fmt(sets),
                ratio(sets, plain),
                ratio(sets, results.median("pgbouncer", "set50", "tps")),
                *(f"{fmt(results.median(t, m, 'p99_ms'), '.1f')} / "
                  f"{fmt(results.median(t, m, 'max_ms'), '.0f')}" for m in SETTINGS_MODES),
                *(fmt(results.median(t, m, "served")) for m in SETTINGS_MODES),
                # pooler CPU per transaction: what replaying costs, less blurred by the
                # machine's load than tps
                *(fmt(results.median(t, m, "cpu_us_tx"), ".1f") for m in SETTINGS_MODES),
                err[:70],
            ]
        )  # fmt: skip
    table(
        f"settings: -c {SETTINGS_CLIENTS} -j {THREADS} through a pool of {SETTINGS_POOL}; each "
        "connection runs SET search_path once, then -S (simple); beside plain -S. Latency ms "
        "p99 / max; clients served: those that ran at least a tenth of the mean per client",
        [
            "target",
            "plain tps",
            "SET tps",
            "SET/plain",
            "SET/pgb",
            "plain p99/max",
            "SET p99/max",
            "plain served",
            "SET served",
            "plain CPU us/tx",
            "SET CPU us/tx",
            "error",
        ],
        rows,
        first=10,
    )
    replay = results.median("podkit-replay", "set50", "tps")
    plain = results.median("podkit-replay", "plain50", "tps")
    direct = results.median("direct", "plain50", "tps")
    print(
        f"  podkit-replay: SET+-S / its plain -S = {ratio(replay, plain)}; "
        f"/ direct plain -S = {ratio(replay, direct)}; / podkit-pin SET+-S = "
        f"{ratio(replay, results.median('podkit-pin', 'set50', 'tps'))}; / PgBouncer SET+-S = "
        f"{ratio(replay, results.median('pgbouncer', 'set50', 'tps'))}"
    )
    print(
        "  (target: a replay row within 10% of its plain tps; a pinning row collapses toward "
        f"{SETTINGS_POOL} of {SETTINGS_CLIENTS} clients served; PgBouncer does not pin but "
        "leaks the setting to the server's next client)"
    )


# --- the run --------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke test: 3 s runs, 1 round, 200 idle clients, 2 s strace",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=15, help="seconds per pgbench run")
    parser.add_argument("--strace-duration", type=int, default=5)
    parser.add_argument("--idle-clients", type=int, default=1000)
    parser.add_argument(
        "--only",
        default="direct,pgbouncer,podkit,podkit-pure",
        help="targets, among direct,pgbouncer,podkit,podkit-pure,forwarder",
    )
    parser.add_argument("--modes", default=",".join(MAIN_MODES))
    parser.add_argument(
        "--before",
        default=None,
        help="another checkout's podkit script (e.g. main's .venv/bin/podkit): adds a "
        "podkit-before target, for a before/after in one interleaved run",
    )
    parser.add_argument("--no-strace", action="store_true")
    parser.add_argument("--no-settings", action="store_true")
    parser.add_argument(
        "--pin-args",
        default="",
        help="extra pg-ambassador flags for the settings row's pinning podkit",
    )
    parser.add_argument(
        "--replay-args",
        default="",
        help="extra pg-ambassador flags for the settings row's replaying podkit",
    )
    options = parser.parse_args()
    rounds, duration, strace_s, idle_n = (
        options.rounds,
        options.duration,
        options.strace_duration,
        options.idle_clients,
    )
    if options.quick:
        rounds, duration, strace_s, idle_n = 1, 3, 2, 200
    wanted = options.only.split(",")
    modes = [m for m in options.modes.split(",") if m in MAIN_MODES]
    print(f"load average at start: {load()} ({os.cpu_count()} CPUs)", flush=True)
    binary = pgbouncer_binary() if "pgbouncer" in wanted or not options.no_settings else None
    if binary:
        print(f"PgBouncer: {binary.path} ({binary.origin}): {binary.version}", flush=True)
    has_podkit = podkit_registered()
    if not has_podkit:
        print(
            "podkit: SKIPPED: the pg-ambassador helper is not registered in this install "
            "(podkit.helpers entry point); its rows are left out",
            flush=True,
        )
    pg = PostgresServer(settings=["max_connections=400", "shared_buffers=128MB"]).start()
    started: list[Target] = []
    settings_targets: list[Target] = []
    max_clients = idle_n + MANY_CLIENTS
    script = Path(tempfile.mkdtemp(prefix="podkit-pgbench-script-")) / "settings.sql"
    script.write_text(SETTINGS_SCRIPT)
    try:
        subprocess.run(
            [
                find_binary("pgbench"),
                "-h",
                HOST,
                "-p",
                str(pg.port),
                "-U",
                "postgres",
                "-i",
                "-s",
                str(SCALE),
                "-q",
                "postgres",
            ],
            check=True,
            capture_output=True,
        )
        print(f"PostgreSQL {pg.sql('show server_version').strip()} on {pg.port}", flush=True)
        if "direct" in wanted:
            started.append(Target("direct", pg.port))
        if "pgbouncer" in wanted and binary:
            started.append(start_pgbouncer(pg, binary, POOL_SIZE, "pgbouncer", max_clients))
        if "podkit" in wanted and has_podkit:
            started.append(start_podkit(pg, "podkit", POOL_SIZE, max_clients))
        if "podkit-pure" in wanted and has_podkit:
            started.append(start_podkit(pg, "podkit-pure", POOL_SIZE, max_clients, pure=True))
        if options.before and has_podkit:
            started.append(
                start_podkit(pg, "podkit-before", POOL_SIZE, max_clients, command=options.before)
            )
        if "forwarder" in wanted:
            started.append(start_forwarder(pg))
        if not options.no_settings:
            settings_targets.append(Target("direct", pg.port))
            if binary:
                settings_targets.append(
                    start_pgbouncer(pg, binary, SETTINGS_POOL, "pgbouncer", max_clients)
                )
            if has_podkit:
                settings_targets.append(
                    start_podkit(
                        pg,
                        "podkit-replay",
                        SETTINGS_POOL,
                        max_clients,
                        extra=shlex.split(options.replay_args),
                    )
                )
                settings_targets.append(
                    start_podkit(
                        pg,
                        "podkit-pin",
                        SETTINGS_POOL,
                        max_clients,
                        extra=["--session-settings", "pin", *shlex.split(options.pin_args)],
                    )
                )
        time.sleep(1.0)  # let the poolers settle before the idle figure (not a correctness wait)
        for target in started + settings_targets:
            if target.pid and target.idle_rss_kib is None:
                target.idle_rss_kib = tree_status_kib(target.pid, "VmRSS")
            if target.note:
                print(f"{target.name}: {target.note}", flush=True)
        names = [t.name for t in started]
        results, settings = Results(), Results()
        print(
            f"{rounds} round(s) of {duration} s runs: modes {', '.join(modes)}"
            f"{'' if options.no_settings else ' and settings'}",
            flush=True,
        )
        for round_no in range(rounds):
            order = started[round_no % len(started) :] + started[: round_no % len(started)]
            for mode in modes:
                for target in order:
                    results.add(target.name, mode, pgbench(target, mode, duration))
            # plain and SET alternate, target by target (the order rotated each round), so
            # the machine's noise falls on both modes of a target alike
            shift = round_no % max(1, len(settings_targets))
            for target in settings_targets[shift:] + settings_targets[:shift]:
                pair = SETTINGS_MODES if round_no % 2 == 0 else SETTINGS_MODES[::-1]
                for mode in [] if options.no_settings else pair:
                    settings.add(target.name, mode, pgbench(target, mode, duration, script))
            print(f"  round {round_no + 1}/{rounds} done; load average {load()}", flush=True)
        calls: dict[tuple[str, str], Syscalls] = {}
        poolers = [t for t in started if t.pid and t.name != "forwarder"]
        if not options.no_strace:
            for mode in modes:
                for target in poolers:
                    calls[(target.name, mode)] = strace_pass(target, mode, strace_s, script)
            print(f"  strace pass done ({strace_s} s per run); load average {load()}", flush=True)
        for target in started:
            if target.pid and not target.idle_only:
                try:
                    target.clients_rss_kib = asyncio.run(idle_clients_rss(target, idle_n))
                except Exception as exc:  # report, do not abort the whole benchmark
                    target.note += f"; {idle_n} idle clients failed: {exc}"[:160]

        tracking = "" if binary is None or binary.numeric >= (1, 21) else " (not this PgBouncer's)"
        print(
            f"\n=== pgbench -S -j {THREADS} -T {duration}, pool size {POOL_SIZE}, transaction "
            f"mode, max_prepared_statements {MAX_PREPARED}{tracking}, medians of {rounds} "
            f"round(s); PgBouncer: {binary.version if binary else '-'}; load average now {load()}"
        )
        report_main(results, names, modes)
        if calls:
            report_syscalls(calls, [t.name for t in poolers], modes)
        if not options.no_settings:
            report_settings(settings, [t.name for t in settings_targets])
        print(
            f"\npooler memory (MiB): idle RSS after start, RSS with {idle_n} idle clients "
            "logged in, peak RSS (VmHWM) over the whole run"
        )
        for target in started + settings_targets:
            if target.pid:
                hwm = tree_status_kib(target.pid, "VmHWM")
                label = target.name + (
                    f" (pool {SETTINGS_POOL})" if target in settings_targets else ""
                )
                print(
                    f"  {label:<24} idle {mib(target.idle_rss_kib):>6}  "
                    f"{idle_n} clients {mib(target.clients_rss_kib):>6}  peak {mib(hwm):>6}  "
                    f"{target.note}"
                )
        report_targets(results, names, {t.name: t.idle_rss_kib for t in started})
        print(f"load average at end: {load()}")
    finally:
        for target in started + settings_targets:
            target.stop()
        pg.cleanup()
        with contextlib.suppress(OSError):
            script.unlink()
            script.parent.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
