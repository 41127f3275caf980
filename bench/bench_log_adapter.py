"""Benchmark: `podkit log-adapter` against the classic busybox `while read` loop.

    .venv/bin/python bench/bench_log_adapter.py            # 1,000,000 lines, 3 runs each
    .venv/bin/python bench/bench_log_adapter.py --quick    # 100,000 lines, 1 run
    .venv/bin/python bench/bench_log_adapter.py --quick --parsers redis,auto  # some rows

Then one `--check` row per parser of issue 20 (postgresql, redis, ..., auto) on its golden
input repeated to --parser-lines lines (default a fifth of --lines). `--cpu-per-line` prints
only the in-process CPU per line of every parser (no start-up, least of --runs): the figure
to compare parsers and commits by on a shared machine.

For the classic `DATE TIME LEVEL MESSAGE` format and nginx `combined`, each run is a
fresh subprocess:

- follow: `podkit log-adapter` following a directory with --output file; the input file
  is hard-linked into it once the adapter is ready, and the clock runs until
  /metrics says every record is written. CPU seconds and peak RSS come from /proc.
- check:  `podkit log-adapter --check FILE > out` (parser and encoder, no follower);
  CPU and peak RSS from wait4().

The busybox loop (adapters/log_json/classic_loop.py, reading with cat so it ends) runs on
a small sample, extrapolated per line. Medians are printed with the ratio to busybox; the
machine is shared, so compare ratios, not absolute numbers, between runs.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from podkit_dev.classic_loop import ClassicLoop  # noqa: E402
from podkit_dev.servers import HelperProcess, http_get, podkit_argv, wait_for  # noqa: E402

TARGET_NGINX_LINES_PER_S = 230_000
TARGET_RATIO = 100
TARGET_RSS_MIB = 48
LEVELS = ["INFO"] * 6 + ["DEBUG", "WARN", "ERROR"]
AGENTS = [
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0",
    "curl/8.5.0",
    "kube-probe/1.29",
    'Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) "quoted" AppleWebKit/605.1.15',
]  # fmt: skip


def generate(kind: str, lines: int, path: Path) -> None:
    rng = random.Random(42)
    with open(path, "w") as out:
        for i in range(lines):
            second = i // 200  # ~200 lines per second, as a busy app writes
            hh, mm, ss = (second // 3600) % 24, (second // 60) % 60, second % 60
            if kind == "classic":
                out.write(
                    f"2024-05-01 {hh:02d}:{mm:02d}:{ss:02d} {rng.choice(LEVELS)} request {i} "
                    f'for user "u{rng.randrange(1000)}" took {rng.randrange(1, 900)}ms\n'
                )
            else:
                status = rng.choice([200] * 8 + [301, 404, 500])
                out.write(
                    f"10.{i % 256}.{rng.randrange(256)}.{rng.randrange(256)} - - "
                    f"[01/May/2024:{hh:02d}:{mm:02d}:{ss:02d} +0000] "
                    f'"GET /api/v1/items/{rng.randrange(10000)}?page={rng.randrange(9)} HTTP/1.1" '
                    f"{status} {rng.randrange(50000)} "
                    f'"https://example.com/page/{rng.randrange(50)}" "{rng.choice(AGENTS)}"\n'
                )


@dataclass
class Result:
    seconds: float
    cpu: float
    rss_mib: float
    idle_mib: float = float("nan")
    """Peak RSS once ready, before the first line: the runtime's share (imports)."""

    def lines_per_s(self, lines: int) -> float:
        return lines / self.seconds


def _proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _proc_hwm_mib(pid: int) -> float:
    match = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(match.group(1)) / 1024 if match else float("nan")


def run_follow(parser: str, source: Path, lines: int, work: Path) -> Result:
    watch = work / "watch"
    watch.mkdir(exist_ok=True)
    out = work / "follow-out.jsonl"
    helper = HelperProcess(
        "log-adapter", "--path", str(watch / "*.log"), "--parser", parser, "--output", "file",
        "--output-path", str(out), "--refresh-interval", "0.1s", "--log-level", "warning",
    )  # fmt: skip
    try:
        helper.start(wait="readyz", timeout=30)
        pid = helper.process.popen.pid  # type: ignore[union-attr]
        idle = _proc_hwm_mib(pid)
        cpu0, start = _proc_cpu(pid), time.perf_counter()
        os.link(source, watch / "in.log")

        def written() -> bool:
            text = http_get(f"{helper.admin}/metrics", timeout=5)[1].decode()
            match = re.search(r"^log_adapter_records_out_total (\S+)$", text, re.M)
            return bool(match) and float(match.group(1)) >= lines

        wait_for(written, timeout=3600, interval=0.1, what=f"{lines} records")
        seconds = time.perf_counter() - start
        result = Result(seconds, _proc_cpu(pid) - cpu0, _proc_hwm_mib(pid), idle)
    finally:
        helper.cleanup()
        (watch / "in.log").unlink(missing_ok=True)
        out.unlink(missing_ok=True)
    return result


def run_check(parser: str, source: Path, work: Path) -> Result:
    out = work / "check-out.jsonl"
    with open(out, "wb") as handle:
        start = time.perf_counter()
        process = subprocess.Popen(
            [*podkit_argv(), "log-adapter", "--parser", parser, "--check", str(source)],
            stdout=handle,
            stderr=subprocess.DEVNULL,
        )
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
    out.unlink(missing_ok=True)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"--check {parser} exited {os.waitstatus_to_exitcode(status)}")
    return Result(seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)


def run_busybox(source: Path, lines: int, work: Path) -> Result:
    loop = ClassicLoop(source, workdir=work, follow=False)
    try:
        start = time.perf_counter()
        loop.start()
        _, usage = loop.wait()
        seconds = time.perf_counter() - start
        produced = loop.output().count(b"\n")
    finally:
        loop.cleanup()
    if produced != lines:
        raise RuntimeError(f"busybox loop wrote {produced} records for {lines} lines")
    return Result(seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)  # type: ignore[attr-defined]


# Issue 20's parsers: `--check` over their golden inputs (real logs of the programs, see
# tests/golden/log_adapter/SOURCES.md), repeated; `auto` reads the PostgreSQL log.
PARSER_ROWS = (
    "postgresql", "redis", "mariadb", "nginx_error", "apache_error", "rabbitmq", "nats",
    "mosquitto", "haproxy", "java", "go", "node", "k8s-nginx-ingress", "docker",
    "docker-daemon", "syslog-rfc3164-local", "mongodb", "envoy", "istio-envoy-proxy",
    "kmsg-netfilter-log", "auto",
)  # fmt: skip


def golden_input(parser_name: str, lines: int, path: Path) -> None:
    """The parser's golden lines it parses (no stack trace continuation), repeated."""
    from podkit.parsers import load_parser

    name = "postgresql" if parser_name == "auto" else parser_name
    source = ROOT / "tests" / "golden" / "log_adapter" / f"{name}.in"
    parser = load_parser(name)
    good = []
    for line in source.read_bytes().split(b"\n"):
        try:
            parser(line)
        except Exception:
            continue
        good.append(line)
    with open(path, "wb") as out:
        for i in range(lines):
            out.write(good[i % len(good)] + b"\n")


def cpu_per_line(names: list[str], lines: int, runs: int) -> None:
    """In-process CPU per line of RecordBuilder.encode (parse + normalise + encode), the
    least of `runs` runs: start-up excluded, and the least is what a busy machine
    distorts least. Inputs: golden lines (issue 20 rows) or the generated ones."""
    from datetime import UTC

    from podkit.adapters.log_json.normalize import TimeParser
    from podkit.adapters.log_json.record import RecordBuilder
    from podkit.parsers import load_parser

    print(f"CPU per line, in process ({runs} runs, least; load {os.getloadavg()[0]:.2f})")
    with tempfile.TemporaryDirectory(prefix="podkit-bench-cpu-") as tmp:
        for name in names:
            path = Path(tmp) / "in.log"
            if name in ("classic", "nginx"):
                generate(name, lines, path)
            else:
                golden_input(name, lines, path)
            data = path.read_bytes().split(b"\n")[:-1]
            chunks = [data[i : i + 4096] for i in range(0, len(data), 4096)]
            best = float("inf")
            for _ in range(runs):
                parser = load_parser(name)
                time_format = getattr(parser, "time_format", "iso")
                builder = RecordBuilder(parser, time_parser=TimeParser(time_format, UTC))
                start = time.process_time()
                for chunk in chunks:
                    builder.encode(chunk)
                builder.flush()
                best = min(best, time.process_time() - start)
            per_line = best / len(data)
            print(f"  {name:<22}{per_line * 1e6:>7.2f} us/line {1 / per_line:>12,.0f} lines/s")


def median_result(results: list[Result]) -> Result:
    return Result(
        statistics.median(r.seconds for r in results),
        statistics.median(r.cpu for r in results),
        max(r.rss_mib for r in results),
        max(r.idle_mib for r in results),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100,000 lines, one run")
    parser.add_argument("--lines", type=int, help="lines per format (default 1,000,000)")
    parser.add_argument("--runs", type=int, help="runs per measurement (default 3)")
    parser.add_argument("--busybox-lines", type=int, help="sample for the busybox loop")
    parser.add_argument(
        "--parser-lines", type=int, help="lines per issue-20 parser row (default lines/5)"
    )
    parser.add_argument("--parsers", help="only these issue-20 parser rows (comma list; none)")
    parser.add_argument(
        "--cpu-per-line",
        action="store_true",
        help="only the in-process CPU per line of each parser (classic, nginx, issue 20's)",
    )
    args = parser.parse_args()
    if args.cpu_per_line:
        cpu_per_line(["classic", "nginx", *PARSER_ROWS], args.lines or 100_000, args.runs or 5)
        return 0
    lines = args.lines or (100_000 if args.quick else 1_000_000)
    runs = args.runs or (1 if args.quick else 3)
    busybox_lines = args.busybox_lines or (300 if args.quick else 2000)

    rows: list[tuple[str, str, int, Result]] = []
    with tempfile.TemporaryDirectory(prefix="podkit-bench-log-adapter-") as tmp:
        work = Path(tmp)
        sample = work / "busybox-sample.log"
        generate("classic", busybox_lines, sample)
        print(f"busybox loop: {busybox_lines} classic lines ...", file=sys.stderr)
        busybox = median_result([run_busybox(sample, busybox_lines, work) for _ in range(runs)])
        rows.append(("classic", "busybox loop", busybox_lines, busybox))
        for kind, parser_name in (("classic", "classic"), ("nginx combined", "nginx")):
            source = work / f"{parser_name}.log"
            generate("classic" if parser_name == "classic" else "nginx", lines, source)
            for mode in ("follow", "check"):
                print(f"{kind} {mode}: {lines} lines x {runs} ...", file=sys.stderr)
                results = [
                    run_follow(parser_name, source, lines, work)
                    if mode == "follow"
                    else run_check(parser_name, source, work)
                    for _ in range(runs)
                ]
                rows.append((kind, f"podkit {mode}", lines, median_result(results)))
            source.unlink()
        parser_lines = args.parser_lines or lines // 5
        wanted = PARSER_ROWS if args.parsers is None else [p for p in args.parsers.split(",") if p]
        for parser_name in wanted:
            source = work / f"{parser_name}.log"
            golden_input(parser_name, parser_lines, source)
            print(f"{parser_name} check: {parser_lines} lines x {runs} ...", file=sys.stderr)
            results = [run_check(parser_name, source, work) for _ in range(runs)]
            rows.append((parser_name, "podkit check", parser_lines, median_result(results)))
            source.unlink()

    busybox_rate = busybox.lines_per_s(busybox_lines)
    # Less CPU per line, times: a ratio a busy machine distorts much less than lines/s.
    busybox_cpu_per_line = busybox.cpu / busybox_lines
    print()
    print(f"log-adapter benchmark ({runs} run(s) each, medians; peak RSS is the max)")
    print("load average: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    header = f"{'format':<22}{'tool':<16}{'lines':>10}{'lines/s':>12}{'CPU s/1M':>10}"
    print(header + f"{'peak MiB':>10}{'x busybox':>11}{'CPU x bb':>10}")
    for kind, tool, count, result in rows:
        rate = result.lines_per_s(count)
        cpu_per_million = result.cpu / count * 1_000_000
        print(
            f"{kind:<22}{tool:<16}{count:>10,}{rate:>12,.0f}{cpu_per_million:>10.1f}"
            f"{result.rss_mib:>10.1f}{rate / busybox_rate:>10.0f}x"
            f"{busybox_cpu_per_line / (result.cpu / count):>9.0f}x"
        )
    nginx_follow = next(r for k, t, _, r in rows if k.startswith("nginx") and t.endswith("follow"))
    nginx_rate = nginx_follow.lines_per_s(lines)
    classic_rate = next(
        r.lines_per_s(lines) for k, t, _, r in rows if k == "classic" and t.endswith("follow")
    )
    peak = max(r.rss_mib for _, t, _, r in rows if t.startswith("podkit"))
    idle = max(r.idle_mib for _, t, _, r in rows if t.endswith("follow"))
    print()
    ratio = classic_rate / busybox_rate
    checks = [
        (f"nginx combined >= {TARGET_NGINX_LINES_PER_S:,} lines/s",
         nginx_rate >= TARGET_NGINX_LINES_PER_S, f"{nginx_rate:,.0f}"),
        (f">= {TARGET_RATIO}x the busybox loop (classic)", ratio >= TARGET_RATIO, f"{ratio:,.0f}x"),
        (f"peak RSS < {TARGET_RSS_MIB} MiB", peak < TARGET_RSS_MIB,
         f"{peak:.1f} MiB; idle after startup {idle:.1f} MiB"),
    ]  # fmt: skip
    for text, ok, value in checks:
        print(f"target {text:<40} {'met' if ok else 'NOT met':<8} ({value})")
    print(f"(this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
