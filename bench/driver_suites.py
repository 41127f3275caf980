"""Run asyncpg's and psycopg's own test suites direct and through `podkit pg-ambassador`.

The suites are not part of podkit: their checkouts come from env vars, as PgBouncer does for
bench_pg_ambassador.py, and each suite runs whole (every file, no selection):

- ASYNCPG_SRC: an asyncpg source tree (its sdist or git checkout) of the installed version;
  its test base uses the running server named by PGHOST/PGPORT/PGUSER/PGDATABASE instead of
  starting its own cluster (`asyncpg._testbase._init_default_cluster`);
- PSYCOPG_SRC: a psycopg 3 checkout; its suite connects to `--test-dsn`;
- SUITES_PYTHON (optional): the interpreter that has the drivers and their test requirements
  (pytest, anyio, pproxy, psycopg-pool, ...); default, this one.

Each suite runs twice at once: direct, against a fixture PostgreSQL, and through one
pg-ambassador in transaction mode in front of another, with a pool smaller than the
connections the suite opens (`--pool-size`, default 3) and PgBouncer's `*` database, so every
database a test creates is reached. `--shards N` splits each mode into N pytest processes
(test files by size), each with a database of its own. Printed per suite: passed, failed,
errors and skipped direct and through, and the tests that fail only through the ambassador;
those are then run again by themselves in both modes (`--no-recheck`: not), to tell the ones
that fail through each time from timing noise. `--report-only` compares the outcomes a run
(even a stopped one) left in `--out`; `--tests NODEID...` runs only those (triage).

    ASYNCPG_SRC=... PSYCOPG_SRC=... .venv/bin/python bench/driver_suites.py
        [--only asyncpg,psycopg] [--pool-size 3] [--shards 1] [--out DIR] [--no-recheck]
        [--test-timeout 300] [--tests NODEID ...] [--report-only] [-- extra pytest args]

The outcomes and logs stay in `--out` (default: a new temp directory, printed).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from podkit_dev.servers import (
    HOST,
    HelperProcess,
    PostgresServer,
    free_port,
    port_open,
    wait_for,
)

OUTCOMES = ("passed", "failed", "error", "skipped")
_RANK = {"passed": 0, "skipped": 1, "failed": 2, "error": 3}
PLUGIN_DIR = Path(__file__).resolve().parent  # suite_outcomes.py


@dataclass(frozen=True)
class Suite:
    name: str
    env_var: str

    def source(self) -> Path:
        value = os.environ.get(self.env_var)
        if not value:
            raise SystemExit(f"driver_suites: set {self.env_var} to a {self.name} source tree")
        path = Path(value).resolve()
        if not (path / "tests").is_dir():
            raise SystemExit(f"driver_suites: {self.env_var}={value} has no tests/ directory")
        return path

    def connection(self, port: int, database: str) -> tuple[dict[str, str], list[str]]:
        """The environment and pytest arguments that point the suite at HOST:port/database."""
        if self.name == "asyncpg":
            env = {"PGHOST": HOST, "PGPORT": str(port), "PGUSER": "postgres",
                   "PGDATABASE": database}  # fmt: skip
            return env, []
        dsn = f"host={HOST} port={port} user=postgres dbname={database}"
        return {"PSYCOPG_TEST_DSN": dsn}, [f"--test-dsn={dsn}"]


SUITES = {s.name: s for s in (Suite("asyncpg", "ASYNCPG_SRC"), Suite("psycopg", "PSYCOPG_SRC"))}


@dataclass(frozen=True)
class PytestRun:
    """What every pytest run of this invocation shares."""

    out: Path
    pg_bin: Path  # for asyncpg's tests that start clusters of their own (test_connect)
    timeout: int
    extra: list[str]


def read_outcomes(path: Path) -> dict[str, str]:
    """Each test's outcome: the worst of its phases."""
    found: dict[str, str] = {}
    if not path.exists():
        return found
    for line in path.read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        test, outcome = entry["test"], entry["outcome"]
        if test not in found or _RANK[outcome] > _RANK[found[test]]:
            found[test] = outcome
    return found


def run_pytest(
    suite: Suite, src: Path, port: int, database: str, label: str, tests: list[str], run: PytestRun
) -> dict[str, str]:
    """The suite's pytest on `tests` against HOST:port/database; outcomes by node id."""
    outcomes = run.out / f"{label}.jsonl"
    outcomes.unlink(missing_ok=True)
    conn_env, conn_args = suite.connection(port, database)
    python = os.environ.get("SUITES_PYTHON", sys.executable)
    env = {
        **os.environ,
        **conn_env,
        "SUITE_OUTCOMES": str(outcomes),
        "PYTHONPATH": str(PLUGIN_DIR),
        "PGINSTALLATION": str(run.pg_bin),
        "PGSSLMODE": "disable",
    }
    # -P: the source tree's own package (asyncpg's uncompiled one) must not shadow the
    # installed driver; pytest still puts the tree's root on the path for `tests.*`.
    argv = [python, "-P", "-m", "pytest", "-p", "suite_outcomes", "-q", "-p", "no:randomly",
            "-o", f"cache_dir={run.out / ('cache-' + label)}", *conn_args,
            *([f"--timeout={run.timeout}"] if run.timeout else []), *run.extra, *tests]  # fmt: skip
    log = run.out / f"{label}.log"
    with open(log, "w", encoding="utf-8") as sink:
        done = subprocess.run(argv, cwd=src, env=env, stdout=sink, stderr=subprocess.STDOUT)
    found = read_outcomes(outcomes)
    if not found and done.returncode != 5:  # 5: pytest collected nothing (-k in `extra`)
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-30:])
        raise SystemExit(f"driver_suites: {label} ran no test; {log} ends:\n{tail}")
    return found


def shards(src: Path, count: int) -> list[list[str]]:
    """pytest arguments for `count` runs that together collect the whole suite once: each the
    tests directory with every test file of the other runs ignored, so the suite's own
    collection rules hold (psycopg's conftest skips files this Python cannot compile)."""
    files = sorted(src.glob("tests/**/test_*.py"), key=lambda f: -f.stat().st_size)
    groups: list[list[Path]] = [[] for _ in range(count)]
    sizes = [0] * count
    for file in files:  # largest first, each to the smallest group so far
        k = sizes.index(min(sizes))
        groups[k].append(file)
        sizes[k] += file.stat().st_size
    return [
        ["tests", *(f"--ignore={f.relative_to(src)}" for f in files if f not in group)]
        for group in groups
        if group
    ]


@contextmanager
def ambassador(pg: PostgresServer, pool_size: int, out: Path) -> Iterator[int]:
    """pg-ambassador in transaction mode in front of `pg`, every database name by `*`."""
    port = free_port()
    config = out / "pg-ambassador.yaml"
    config.write_text(json.dumps({"databases": {"*": {"host": HOST, "port": pg.port}}}))
    helper = HelperProcess(
        "pg-ambassador", "--config", str(config), "--listen", f"{HOST}:{port}",
        "--pool-mode", "transaction", "--pool-size", str(pool_size), "--client-auth", "trust",
        "--max-client-conn", "1000", "--query-wait-timeout", "60", "--log-level", "warning",
    )  # fmt: skip
    helper.start(timeout=30)
    wait_for(lambda: port_open(port), what="pg-ambassador listening", timeout=15)
    try:
        yield port
    finally:
        (out / "pg-ambassador.log").write_text(helper.log_text())
        helper.cleanup()


def failing(outcome: str | None) -> bool:
    return outcome in ("failed", "error")


def through_only(direct: dict[str, str], through: dict[str, str]) -> list[str]:
    """Tests that fail through the ambassador and did not fail direct (or did not run)."""
    return sorted(t for t, o in through.items() if failing(o) and not failing(direct.get(t)))


def report_counts(name: str, direct: dict[str, str], through: dict[str, str]) -> None:
    d, t = Counter(direct.values()), Counter(through.values())
    print(f"\n## {name}: {len(direct)} tests direct, {len(through)} through")
    print("| outcome | direct | through |\n| --- | --- | --- |")
    for outcome in OUTCOMES:
        print(f"| {outcome} | {d[outcome]} | {t[outcome]} |")


def outcomes_in(out: Path, suite: Suite, mode: str) -> dict[str, str]:
    """A mode's outcomes from the files its shards wrote (a run stopped midway included)."""
    found: dict[str, str] = {}
    for path in sorted(out.glob(f"{suite.name}-{mode}-[0-9]*.jsonl")):
        found.update(read_outcomes(path))
    return found


def report_only(suite: Suite, out: Path) -> None:
    """The comparison of the outcomes already in `out`, over the tests both modes ran."""
    direct, through = outcomes_in(out, suite, "direct"), outcomes_in(out, suite, "through")
    both = direct.keys() & through.keys()
    print(f"{suite.name}: {len(both)} tests ran in both modes; only direct "
          f"{len(direct.keys() - both)}, only through {len(through.keys() - both)}")  # fmt: skip
    direct = {t: o for t, o in direct.items() if t in both}
    through = {t: o for t, o in through.items() if t in both}
    report_counts(suite.name, direct, through)
    for test in through_only(direct, through):
        print(f"- {test}: {through[test]}")


def compare(
    suite: Suite,
    src: Path,
    servers: dict[str, tuple[PostgresServer, int]],
    args: Any,
    run: PytestRun,
) -> None:
    """Run the suite direct and through at once, each shard in a database of its own on its
    own server; print the counts and what fails only through, rechecked alone."""
    groups = [args.tests] if args.tests else shards(src, args.shards)
    jobs = []
    with ThreadPoolExecutor(max_workers=2 * len(groups)) as pool:
        for mode, (pg, port) in servers.items():
            for k, selection in enumerate(groups):
                database = f"{suite.name}_{k}"
                pg.sql(f"DROP DATABASE IF EXISTS {database}")
                pg.sql(f"CREATE DATABASE {database}")
                label = f"{suite.name}-{mode}-{k}"
                jobs.append((mode, pool.submit(run_pytest, suite, src, port, database, label,
                                               selection, run)))  # fmt: skip
        results: dict[str, dict[str, str]] = {"direct": {}, "through": {}}
        for mode, job in jobs:
            results[mode].update(job.result())
    direct, through = results["direct"], results["through"]
    report_counts(suite.name, direct, through)
    only = through_only(direct, through)
    print(f"fail only through the ambassador: {len(only)}")
    again: dict[str, str] = {}
    if only and args.recheck:
        rechecked = {}
        with ThreadPoolExecutor(max_workers=2) as pool:
            futures = {
                mode: pool.submit(
                    run_pytest,
                    suite,
                    src,
                    port,
                    f"{suite.name}_0",
                    f"{suite.name}-recheck-{mode}",
                    only,
                    run,
                )
                for mode, (_, port) in servers.items()
            }
            rechecked = {mode: f.result() for mode, f in futures.items()}
        again = {
            t: f"  (again: direct {rechecked['direct'].get(t, '-')}, "
            f"through {rechecked['through'].get(t, '-')})"
            for t in only
        }
    for test in only:
        print(f"- {test}: {through[test]}{again.get(test, '')}")
    sys.stdout.flush()


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--only", default="asyncpg,psycopg")
    parser.add_argument("--pool-size", type=int, default=3)
    parser.add_argument("--shards", type=int, default=1, help="pytest processes per mode")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--no-recheck", dest="recheck", action="store_false")
    parser.add_argument(
        "--tests", nargs="+", default=None, help="these node ids only (triage), one --only suite"
    )
    parser.add_argument(
        "--report-only", action="store_true", help="compare the outcomes in --out, run nothing"
    )
    parser.add_argument("--test-timeout", type=int, default=300, help="per test, 0: none")
    parser.add_argument("extra", nargs="*", help="after --: more pytest arguments")
    args = parser.parse_args()
    suites = [SUITES[name] for name in args.only.split(",")]
    if args.report_only:
        if args.out is None:
            parser.error("--report-only needs --out")
        for suite in suites:
            report_only(suite, args.out)
        return 0
    sources = {s.name: s.source() for s in suites}
    out = args.out or Path(tempfile.mkdtemp(prefix="driver-suites-"))
    out.mkdir(parents=True, exist_ok=True)
    print(f"outcomes and logs in {out}; pool size {args.pool_size}, transaction mode", flush=True)
    # A SIGTERM unwinds through the finally blocks: the servers are in sessions of their own.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    with ExitStack() as stack:
        servers: dict[str, tuple[PostgresServer, int]] = {}
        for mode in ("direct", "through"):
            pg = PostgresServer(settings=["max_connections=400"]).start()
            stack.callback(pg.cleanup)
            pg.wait_accepting()
            servers[mode] = (pg, pg.port)
        pg = servers["through"][0]
        servers["through"] = (pg, stack.enter_context(ambassador(pg, args.pool_size, out)))
        run = PytestRun(out, Path(pg.postgres).parent, args.test_timeout, args.extra)
        for suite in suites:
            compare(suite, sources[suite.name], servers, args, run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
