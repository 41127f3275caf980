"""`podkit log-adapter --parser nginx` beside a real Fluent Bit `Parser nginx`, in one run.

Rows (1,000,000 nginx `combined` lines; each tool parses every line with a regex and writes
one JSON object per line to a file):
  nginx parse        the whole file appears at once, read from its head; podkit on its
                     defaults (--workers auto) and in one process (podkit-w0, --workers 0)
  rotation storm     1,000 renames a second for 10 s: a writer appends 100 numbered lines,
                     then renames app.log out of the glob; delivered/written for each tool
  1 GB (--big)       nginx parse of a 1 GB file, once: peak memory of the process tree
  follow, rotation (--only): a writer appending flat out; renaming every 100,000 lines

Fluent Bit (tail -> `Parser nginx` from its own parsers.conf -> file Format plain) runs
only when FLUENT_BIT=/path/to/fluent-bit is set, on its default tail buffers (fb-32k,
Flush 0.1) and on 1M/4M buffers (fb-1M/4M, Flush 0.05); the tools alternate, medians and
ratios (from the hand-over and from spawn) are printed with the load average; targets hold
against the faster setting. CPU: utime+stime of the process tree (the workers included);
RSS: VmHWM summed over the tree (a forked worker's shared pages counted twice); PSS: the
tree's summed PSS, sampled every 50 ms (what the tree really holds). Method:
bench/side_by_side.py. The records differ: podkit's carry typed status/bytes, an RFC 3339
timestamp and a level; Fluent Bit's plain format writes the captures as strings and drops
the time it parsed.

    FLUENT_BIT=/path/to/fluent-bit .venv/bin/python bench/bench_log_adapter.py [--quick]
        [--lines N] [--repeat R] [--only parse|storm|follow|rotation] [--big] [--busybox]
        [--adapter-arg=--workers=2]

--busybox adds the classic `while read` loop (devkit/podkit_dev/classic_loop.py) on a small
sample, for the ratio the first version of the adapter was measured by.

`--parsers [a,b,...]` prints instead the in-process CPU per line of each server and runtime parser
(postgresql, redis, ..., auto; nginx for reference) on its golden input repeated
(tests/golden/log_adapter/, real logs of the programs): parse + normalise + encode, no
start-up, the least of --repeat runs, which a shared machine distorts least:

    .venv/bin/python bench/bench_log_adapter.py --parsers [--lines 50000] [--repeat 5]

Targets: nginx parse >= 1.5x Fluent Bit's lines/s; peak memory < 64 MiB on a 1 GB
file (--big); the storm 100% delivered.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from side_by_side import (
    Comparison,
    Podkit,
    fluent_bit_note,
    fluent_bits,
    generate_nginx,
    load,
    print_targets,
    run_rows,
    run_storms,
    storm_table,
    table,
)

ROWS = {"parse": ("nginx parse", "batch"), "follow": ("nginx parse, follow", "follow"),
        "rotation": ("nginx parse, rotation", "rotation")}  # fmt: skip
DEFAULT = ("parse", "storm")


def busybox(lines: int, work: Path) -> str:
    """The classic loop on a `classic`-format sample: lines/s and CPU-s per million."""
    from podkit_dev.classic_loop import ClassicLoop

    sample = work / "busybox.log"
    with open(sample, "w") as out:
        for i in range(lines):
            out.write(f"2024-05-01 00:00:{i % 60:02d} INFO request {i} took {i % 900}ms\n")
    loop = ClassicLoop(sample, workdir=work, follow=False)
    try:
        start = time.perf_counter()
        loop.start()
        _, usage = loop.wait()
        seconds = time.perf_counter() - start
    finally:
        loop.cleanup()
    cpu = usage.ru_utime + usage.ru_stime  # type: ignore[attr-defined]
    return f"{lines / seconds:,.0f} lines/s, {cpu / lines * 1e6:,.0f} CPU-s/M"


# The server and runtime parsers, each on its golden input; `auto` reads the PostgreSQL log.
PARSER_ROWS = (
    "postgresql", "redis", "mariadb", "nginx_error", "apache_error", "rabbitmq", "nats",
    "mosquitto", "haproxy", "java", "go", "node", "k8s-nginx-ingress", "docker",
    "docker-daemon", "syslog-rfc3164-local", "mongodb", "envoy", "istio-envoy-proxy",
    "kmsg-netfilter-log", "auto",
)  # fmt: skip
GOLDEN = Path(__file__).resolve().parent.parent / "tests" / "golden" / "log_adapter"


def golden_lines(name: str, lines: int) -> list[bytes]:
    """The golden lines the parser parses (no stack trace continuations), repeated."""
    from podkit.parsers import load_parser

    source = "postgresql" if name == "auto" else name
    parser = load_parser(source)
    good = []
    for line in (GOLDEN / f"{source}.in").read_bytes().split(b"\n"):
        try:
            parser(line)
        except Exception:
            continue
        good.append(line)
    return [good[i % len(good)] for i in range(lines)]


def cpu_per_line(names: list[str], lines: int, runs: int) -> None:
    from datetime import UTC

    from podkit.adapters.log_json.normalize import TimeParser
    from podkit.adapters.log_json.record import RecordBuilder
    from podkit.parsers import load_parser

    print(f"CPU per line of RecordBuilder.encode, in process, least of {runs}; load {load()}")
    with tempfile.TemporaryDirectory(prefix="podkit-bench-parsers-") as tmp:
        nginx = Path(tmp) / "access.log"
        generate_nginx(nginx, lines)
        for name in names:
            data = nginx.read_bytes().splitlines() if name == "nginx" else golden_lines(name, lines)
            chunks = [data[i : i + 4096] for i in range(0, len(data), 4096)]
            best = float("inf")
            for _ in range(runs):
                parser = load_parser(name)
                time_parser = TimeParser(getattr(parser, "time_format", "iso"), UTC)
                builder = RecordBuilder(parser, time_parser=time_parser)
                start = time.process_time()
                for chunk in chunks:
                    builder.encode(chunk)
                builder.flush()
                best = min(best, time.process_time() - start)
            per_line = best / len(data)
            print(f"  {name:<22}{per_line * 1e6:>7.2f} us/line {1 / per_line:>12,.0f} lines/s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="200,000 lines, 3 runs, 3 s storm")
    parser.add_argument("--lines", type=int, help="default 1,000,000 (--quick 200,000)")
    parser.add_argument("--repeat", type=int, help="runs per tool and row (default 5)")
    parser.add_argument("--only", action="append", choices=[*sorted(ROWS), "storm"])
    parser.add_argument("--big", "--gb", action="store_true", help="also a 1 GB file, once")
    parser.add_argument("--busybox", action="store_true", help="also the busybox loop")
    parser.add_argument(
        "--adapter-arg", action="append", default=[], help="extra flag for the adapter (=form)"
    )
    parser.add_argument(
        "--parsers",
        nargs="?",
        const="all",
        help="CPU per line of the server and runtime parsers (a,b,...)",
    )
    args = parser.parse_args()
    if args.parsers:
        names = PARSER_ROWS if args.parsers == "all" else args.parsers.split(",")
        cpu_per_line(["nginx", *names], args.lines or 50_000, args.repeat or 5)
        return 0
    lines = args.lines or (200_000 if args.quick else 1_000_000)
    repeat = args.repeat or (3 if args.quick else 5)
    chosen = args.only or DEFAULT

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    adapter_args = ["--parser", "nginx", *args.adapter_arg]
    podkit = Podkit("log-adapter", adapter_args)
    in_process = Podkit("log-adapter", [*adapter_args, "--workers", "0"], name="podkit-w0")
    storms = None
    with tempfile.TemporaryDirectory(prefix="podkit-bench-adapter-") as tmp:
        source = Path(tmp) / "access.log"
        generate_nginx(source, lines)
        size_mb = source.stat().st_size / 1e6
        print(f"log-adapter beside Fluent Bit: {lines:,} nginx combined lines ({size_mb:.0f} MB),"
              f" {repeat} run(s) per tool and row, alternating, medians; load at start {load()}"
              f" on {os.cpu_count()} CPUs")  # fmt: skip
        print(fluent_bit_note())
        rows = []
        for key, (label, mode) in ROWS.items():
            if key in chosen:
                fluent_bit = fluent_bits("nginx")
                extra = [in_process] if key == "parse" else []
                rows.append(Comparison(label, mode, podkit, [*extra, *fluent_bit]))
        started = time.monotonic()
        loads = run_rows(rows, source, lines, repeat, log)
        if "storm" in chosen:
            tools = [podkit, *fluent_bits("nginx")]
            storms = run_storms(tools, repeat, log, 3.0 if args.quick else 10.0)
            loads.append(load())
        if args.big:
            source.unlink()
            big = Path(tmp) / "big.log"
            big_lines = 1_000_000_000 // 176
            log(f"generating 1 GB ({big_lines:,} lines) ...")
            generate_nginx(big, big_lines)
            gb = Comparison("nginx parse, 1 GB", "batch", podkit, fluent_bits("nginx"))
            loads += run_rows([gb], big, big_lines, 1, log)
            rows.append(gb)
            big.unlink()
        classic = busybox(300 if args.quick else 2000, Path(tmp)) if args.busybox else ""
    print()
    print(table(rows))
    if storms is not None:
        print()
        print(storm_table(storms, "rotation storm (1,000 renames/s)"))
    print(f"\nload average after each round of runs: {'; '.join(loads)} "
          f"({time.monotonic() - started:.0f} s in all; the machine is shared)")  # fmt: skip
    if classic:
        print(f"busybox `while read` loop (classic format sample): {classic}")
    print_targets(rows, 1.5, None)
    if storms is not None and "podkit" in storms:
        worst = min(r.share for r in storms["podkit"])
        print(f"target rotation storm: podkit delivers 100%: "
              f"{'met' if worst == 1 else 'NOT met'} (worst run {worst:.2%})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
