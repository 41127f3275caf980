"""Benchmark: `podkit stats-exporter` against prometheus-nginx-exporter, same nginx, same run.

Both exporters scrape one nginx stub_status; `wrk --latency` hammers each one's /metrics on
loopback in alternating rounds (so machine noise hits both alike). Prints the medians of
scrapes/s and p50/p99 latency over the rounds, CPU time per scrape (from /proc: less
sensitive to a loaded machine than latency), peak RSS (VmHWM), and ratios (ours / Go),
with the load average before and after.

    .venv/bin/python bench/bench_stats_exporter.py [--quick] [--connections N ...]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from podkit_dev.servers import (
    HOST,
    HelperProcess,
    NginxServer,
    Process,
    TempDir,
    find_binary,
    free_port,
    http_get,
    port_open,
    wait_for,
)

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def _seconds(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    assert match, text
    return float(match.group(1)) * _UNITS[match.group(2)]


def run_wrk(wrk: str, url: str, connections: int, duration: float) -> dict[str, float]:
    out = subprocess.run(
        [wrk, "-t1", f"-c{connections}", f"-d{duration:g}s", "--latency", url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _seconds(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _seconds(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if errors:
        raise RuntimeError(f"{url}: {errors.group(1)} non-2xx answers\n{out}")
    return {"rps": rps, "p50": p50, "p99": p99}


def nginx_requests(nginx_url: str) -> int:
    body = http_get(f"{nginx_url}/stub_status")[1].decode()
    return int(body.splitlines()[2].split()[2])


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short rounds (about 15 s in all)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.duration = 2, 2.0
    load_before = load_average()
    wrk = find_binary("wrk")
    go_binary = find_binary("prometheus-nginx-exporter")
    nginx = NginxServer().start()
    scrape_uri = f"{nginx.url}/stub_status"
    go_port, our_port = free_port(), free_port()
    go_dir = TempDir("bench-go-exporter")
    go = Process(
        [go_binary, f"-nginx.scrape-uri={scrape_uri}", f"-web.listen-address={HOST}:{go_port}"],
        go_dir.path / "go.log",
    ).start()
    ours = HelperProcess(
        "stats-exporter", "--web-listen-address", f"{HOST}:{our_port}",
        "--nginx-scrape-uri", scrape_uri, "--naming", "compat", "--log-level", "warning",
    )  # fmt: skip
    try:
        ours.start()
        wait_for(lambda: port_open(go_port), what="prometheus-nginx-exporter")
        urls = {
            "podkit": f"http://{HOST}:{our_port}/metrics",
            "go": f"http://{HOST}:{go_port}/metrics",
        }
        pids = {"podkit": ours.process.pid, "go": go.pid}
        for url in urls.values():
            assert http_get(url)[0] == 200
            run_wrk(wrk, url, 4, 1.0)  # warm-up: connections, caches, allocator
        results: dict[tuple[str, int], list[dict[str, float]]] = {}
        for _ in range(args.rounds):
            for connections in args.connections:
                for name, url in urls.items():
                    before = nginx_requests(nginx.url)
                    cpu_before = cpu_seconds(pids[name])
                    stats = run_wrk(wrk, url, connections, args.duration)
                    cpu = cpu_seconds(pids[name]) - cpu_before
                    fetches = nginx_requests(nginx.url) - before - 1  # minus our own read
                    scrapes = stats["rps"] * args.duration
                    stats["cpu_us"] = cpu / scrapes * 1e6 if scrapes else float("nan")
                    stats["fetches_per_scrape"] = fetches / scrapes if scrapes else float("nan")
                    results.setdefault((name, connections), []).append(stats)
        rss = {name: peak_rss_mib(pid) for name, pid in pids.items()}
    finally:
        ours.cleanup()
        go.stop()
        go_dir.cleanup()
        nginx.cleanup()

    def med(name: str, conns: int, key: str) -> float:
        return statistics.median(r[key] for r in results[(name, conns)])

    def row(label: str, conns: int, rps: float, p50: float, p99: float, note: str = "") -> str:
        return f"{conns:>5} {label:<8} {rps:>10.2f} {p50:>8.3f} {p99:>8.3f}{note}"

    print(
        f"\nstats-exporter vs prometheus-nginx-exporter: {args.rounds} rounds x "
        f"{args.duration:g}s per wrk run, medians (wrk -t1 --latency, loopback)\n"
    )
    header = f"{'conns':>5} {'exporter':<8} {'scrapes/s':>10} {'p50 ms':>8} {'p99 ms':>8}"
    print(header)
    print("-" * len(header))
    for conns in args.connections:
        figures = {
            name: [med(name, conns, k) * (1e3 if k != "rps" else 1) for k in ("rps", "p50", "p99")]
            for name in urls
        }
        for name, (rps, p50, p99) in figures.items():
            print(row(name, conns, rps, p50, p99))
        ratios = [a / b for a, b in zip(figures["podkit"], figures["go"], strict=True)]
        print(row("ratio", conns, *ratios, "   (podkit / go)"))
    print(
        f"\npeak RSS (VmHWM): podkit {rss['podkit']:.1f} MiB, go {rss['go']:.1f} MiB, "
        f"ratio {rss['podkit'] / rss['go']:.2f}; "
        f"target podkit < 48 MiB: {'met' if rss['podkit'] < 48 else 'NOT met'}"
    )
    print("\nnginx stub_status fetches per scrape (1.0 = no sharing; podkit lets concurrent")
    print("scrapes share one fetch, which is part of its lead at higher concurrency):")
    for conns in args.connections:
        shares = ", ".join(f"{n} {med(n, conns, 'fetches_per_scrape'):.2f}" for n in urls)
        print(f"  {conns} connections: {shares}")
    print("\nexporter CPU time per scrape (utime+stime / scrapes), medians:")
    for conns in args.connections:
        cpu = {n: med(n, conns, "cpu_us") for n in urls}
        print(
            f"  {conns} connections: podkit {cpu['podkit']:.0f} us, go {cpu['go']:.0f} us, "
            f"ratio {cpu['podkit'] / cpu['go']:.2f}"
        )
    print(f"\nload average: {load_before} before, {load_average()} after")
    p50_ok = all(med("podkit", c, "p50") <= med("go", c, "p50") for c in args.connections)
    print(f"target p50 no worse than go (every concurrency): {'met' if p50_ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
