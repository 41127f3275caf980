"""User-space instructions per transaction of each pooler, counted by callgrind.

    PGBOUNCER=/path/to/pgbouncer .venv/bin/python bench/pg_instructions.py \
        [--modes simple,extended,prepared,c200] [--only pgbouncer,podkit,podkit-pure] \
        [--before /other/checkout/.venv/bin/podkit]

On a shared 2-core machine tps and CPU time move with the load by 20-50 %; the number of
instructions a pooler runs per transaction does not (repeated runs agree within about
1 %), so this is how a change to the hot path is measured. Each pooler runs under
`valgrind --tool=callgrind` with instrumentation off; after a warm-up it is switched on
(`callgrind_control -i on`) for `pgbench -S -t N` (20 clients; `c200`: 200 through the
pool of 20), dumped and switched off. Printed: instructions per transaction, and the
callgrind file, for `callgrind_annotate` (by C function: the interpreter's share, the
compiled core's, uvloop's). Kernel time is not counted: the system calls are
bench_pg_ambassador.py's strace pass. Needs valgrind (callgrind).
"""

from __future__ import annotations

import argparse
import os
import pwd
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_pg_ambassador import (
    HOST,
    MAX_PREPARED,
    POOL_SIZE,
    SCALE,
    PgBouncerBinary,
    Target,
    pgbench_argv,
    pgbouncer_binary,
    start_pgbouncer,
    start_podkit,
)

from podkit_dev.servers import PostgresServer, find_binary, wait_for

MODES = ["simple", "extended", "prepared", "c200"]


def pgbench(port: int, mode: str, per_client: int) -> int:
    """Run `pgbench -S` with `per_client` transactions per client; the transactions done."""
    argv = pgbench_argv(port, mode, 0, None, transactions=per_client)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    found = re.search(r"number of transactions actually processed: (\d+)", done.stdout)
    if done.returncode != 0 or not found:
        raise RuntimeError(f"pgbench failed: {done.stderr[-400:]}")
    return int(found.group(1))


def callgrind(pid: int, *args: str) -> None:
    # as the pooler's user: vgdb finds a valgrind by FIFOs named after the user running it
    owner = pwd.getpwuid(os.stat(f"/proc/{pid}").st_uid).pw_name
    argv = ["callgrind_control", *args, str(pid)]
    if owner != pwd.getpwuid(os.geteuid()).pw_name:
        argv = ["runuser", "-u", owner, "--", *argv]
    subprocess.run(argv, capture_output=True, timeout=60)


def instructions(out: Path) -> tuple[int, Path | None]:
    """The instructions of the newest dump of `out` (callgrind appends .1, .2, ...)."""
    dumps = sorted(out.parent.glob(out.name + ".*"), key=lambda p: p.stat().st_mtime)
    if not dumps:
        return 0, None
    for line in dumps[-1].read_text(errors="replace").splitlines():
        if line.startswith("summary:"):
            return int(line.split()[1]), dumps[-1]
    return 0, dumps[-1]


def measure(target: Target, out: Path, mode: str, per_client: int) -> tuple[float, Path | None]:
    assert target.pid is not None
    pgbench(target.port, mode, 2)  # warm-up: connections made, statements prepared
    callgrind(target.pid, "-i", "on")
    done = pgbench(target.port, mode, _per(mode, per_client))
    callgrind(target.pid, "-d")
    callgrind(target.pid, "-i", "off")

    def dumped() -> tuple[int, Path | None] | None:
        found = instructions(out)
        return found if found[0] else None

    count, path = wait_for(dumped, timeout=30, what="callgrind's dump")  # written later
    return count / done, path


def measure_at_exit(
    pg: PostgresServer, binary: PgBouncerBinary, out: Path, mode: str, per_client: int
) -> tuple[float, Path | None]:
    """PgBouncer: vgdb cannot reach it while it sleeps in epoll as another user, so count
    everything to its exit, twice: the difference between a run of 2N and one of N
    transactions per client is N's, without start-up and shutdown."""
    totals = []
    for runs in (1, 2):
        dump = out.with_suffix(f".{runs}x")
        wrapper = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={dump}"]
        target = start_pgbouncer(pg, binary, POOL_SIZE, "pgbouncer", 400, wrapper=wrapper)
        try:
            pgbench(target.port, mode, 2)
            done = sum(pgbench(target.port, mode, _per(mode, per_client)) for _ in range(runs))
        finally:
            target.stop()
        text = dump.read_text(errors="replace") if dump.exists() else ""
        found = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
        totals.append((int(found.group(1)) if found else 0, done))
    (first, n1), (second, n2) = totals
    return (second - first) / max(n2 - n1, 1), out.with_suffix(".2x")


def _per(mode: str, per_client: int) -> int:
    return per_client if mode != "c200" else max(1, per_client // 10)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--only", default="pgbouncer,podkit,podkit-pure")
    parser.add_argument("--transactions", type=int, default=50, help="per client")
    parser.add_argument(
        "--before", default=None, help="another checkout's podkit script: adds podkit-before"
    )
    options = parser.parse_args()
    wanted = options.only.split(",") + (["podkit-before"] if options.before else [])
    modes = [m for m in options.modes.split(",") if m in MODES]
    pg = PostgresServer(settings=["max_connections=400"]).start()
    outdir = Path(tempfile.mkdtemp(prefix="podkit-callgrind-"))
    os.chmod(outdir, 0o777)  # PgBouncer runs as postgres and writes its dump here
    init = [find_binary("pgbench"), "-h", HOST, "-p", str(pg.port), "-U", "postgres",
            "-i", "-s", str(SCALE), "-q", "postgres"]  # fmt: skip
    subprocess.run(init, check=True, capture_output=True)
    print(
        f"instructions per transaction (callgrind), pgbench -S, pool {POOL_SIZE}, "
        f"max_prepared_statements {MAX_PREPARED}; dumps in {outdir}",
        flush=True,
    )
    try:
        for name in wanted:
            for mode in modes:
                out = outdir / f"{name}-{mode}.out"
                wrapper = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                           f"--callgrind-out-file={out}"]  # fmt: skip
                if name == "pgbouncer":
                    binary = pgbouncer_binary()
                    per_tx, path = measure_at_exit(pg, binary, out, mode, options.transactions)
                    print(f"{name:12} {mode:9} {per_tx:9,.0f}  ({binary.version}; {path})")
                    continue
                command = options.before if name == "podkit-before" else None
                target = start_podkit(pg, name, POOL_SIZE, 400, pure=name == "podkit-pure",
                                      wrapper=wrapper, command=command)  # fmt: skip
                note = target.note
                try:
                    per_tx, path = measure(target, out, mode, options.transactions)
                finally:
                    target.stop()
                print(f"{name:12} {mode:9} {per_tx:9,.0f}  ({note}; {path})", flush=True)
    finally:
        pg.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
