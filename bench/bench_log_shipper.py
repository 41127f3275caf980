"""Benchmark of `podkit log-shipper`: lines/s, CPU seconds per million lines, peak RSS.

Scenarios (each run REPEAT times, medians printed):
  file     a ready-made nginx access log (LINES lines of 187 bytes) shipped to `file`
  http     the same file shipped to `http` (NDJSON POSTs to a counting receiver process)
  follow   a writer appends LINES lines while the shipper follows, to `file`
  cat      `cat FILE > /dev/null`: how fast this machine reads the file at all

Fluent Bit cannot be built here; its figures from the issue (Fluent Bit 4.2.8, the same
1,000,000 x 187-byte file raw to its file output) are printed as the reference:
890,000 lines/s, 1.6 CPU s per million lines, 38 MiB peak RSS.

    .venv/bin/python bench/bench_log_shipper.py [--quick] [--lines N] [--repeat R] [--gb]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

from podkit_dev.demos.log_shipper import nginx_line
from podkit_dev.servers import HelperProcess, free_port, port_open, wait_for

LINE_BYTES = 187
FLUENT_BIT = {"lines_per_s": 890_000, "cpu_per_million": 1.6, "rss_mib": 38}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def make_log(path: Path, lines: int) -> None:
    with open(path, "wb") as handle:
        for start in range(0, lines, 10_000):
            chunk = []
            for seq in range(start, min(start + 10_000, lines)):
                line = nginx_line(seq)[: LINE_BYTES - 1]
                chunk.append(line + b" " * (LINE_BYTES - 1 - len(line)) + b"\n")
            handle.write(b"".join(chunk))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def acked(shipper: HelperProcess) -> float:
    for line in shipper.metrics().splitlines():
        if line.startswith("log_shipper_lines_acked_total "):
            return float(line.split()[1])
    return 0.0


RECEIVER = textwrap.dedent(
    """
    import sys
    from aiohttp import web
    count = 0
    async def ingest(request):
        global count
        count += (await request.read()).count(b"\\n")
        return web.Response(status=200)
    async def lines(request):
        return web.Response(text=str(count))
    app = web.Application(client_max_size=1 << 30)
    app.router.add_post("/ingest", ingest)
    app.router.add_get("/count", lines)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
    """
)


EXTRA_ARGS: list[str] = []


def run_once(kind: str, source: Path, lines: int, work: Path) -> dict[str, float]:
    """Start the shipper on an empty dir, then hand it the log; time until all acked."""
    logs = work / "logs"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    out = work / "out.jsonl"
    out.unlink(missing_ok=True)
    receiver = None
    # The last partial batch waits --batch-timeout (0.5 s by default) before it goes:
    # 100ms keeps that one-time wait from weighing on a 2-second measurement.
    args = ["--path", f"{logs}/*.log", "--refresh-interval", "100ms", "--batch-timeout", "100ms"]
    if kind == "http":
        port = free_port()
        receiver = subprocess.Popen([sys.executable, "-c", RECEIVER, str(port)])
        wait_for(lambda: port_open(port), what="receiver", timeout=15)
        args += ["--output", "http", "--http-url", f"http://127.0.0.1:{port}/ingest"]
    else:
        args += ["--output", "file", "--file-path", str(out)]
    args += EXTRA_ARGS
    shipper = HelperProcess("log-shipper", *args, env={"PODKIT_LOG_LEVEL": "warning"})
    try:
        shipper.start()
        pid = shipper.process.pid
        cpu_before = cpu_seconds(pid)
        writer = None
        started = time.perf_counter()
        if kind == "follow":
            writer = threading.Thread(target=_append, args=(source, logs / "app.log"))
            writer.start()
        else:
            os.link(source, logs / "app.log")  # appears at once, whole
        wait_for(lambda: acked(shipper) >= lines, timeout=600, interval=0.05, what="all acked")
        elapsed = time.perf_counter() - started
        if writer is not None:
            writer.join()
        cpu = cpu_seconds(pid) - cpu_before
        rss = peak_rss_mib(pid)
        shipper.stop(signal.SIGTERM)
    finally:
        shipper.cleanup()
        if receiver is not None:
            receiver.terminate()
            receiver.wait(10)
    return {
        "lines_per_s": lines / elapsed,
        "cpu_per_million": cpu / lines * 1e6,
        "rss_mib": rss,
    }


def _append(source: Path, target: Path) -> None:
    """A writer that appends the file in 64 KiB writes, as fast as it can."""
    with open(source, "rb") as src, open(target, "ab") as dst:
        while block := src.read(65536):
            dst.write(block)
            dst.flush()


def cat_mb_per_s(source: Path) -> float:
    started = time.perf_counter()
    subprocess.run(["cat", str(source)], stdout=subprocess.DEVNULL, check=True)
    return source.stat().st_size / (time.perf_counter() - started) / 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100,000 lines, one run each")
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--gb", action="store_true", help="also ship a 1 GB file (peak RSS)")
    parser.add_argument("--only", action="append", choices=["file", "http", "follow", "none"])
    parser.add_argument(
        "--shipper-arg", action="append", default=[], help="extra flag for the shipper (=form)"
    )
    args = parser.parse_args()
    EXTRA_ARGS.extend(args.shipper_arg)
    lines = 100_000 if args.quick else args.lines
    repeat = 1 if args.quick else args.repeat
    work = Path(tempfile.mkdtemp(prefix="podkit-bench-shipper-"))
    try:
        source = work / "access.log"
        make_log(source, lines)
        size_mb = source.stat().st_size / 1e6
        print(f"log-shipper benchmark: {lines:,} nginx lines of {LINE_BYTES} bytes "
              f"({size_mb:.0f} MB), {repeat} run(s) each, medians; shipper defaults but "
              "--batch-timeout 100ms")  # fmt: skip
        cat = statistics.median(cat_mb_per_s(source) for _ in range(3))
        rows = []
        for kind in [k for k in args.only or ["file", "http", "follow"] if k != "none"]:
            runs = [run_once(kind, source, lines, work) for _ in range(repeat)]
            rows.append((kind, {k: statistics.median(r[k] for r in runs) for k in runs[0]}))
        if args.gb:
            big = work / "big.log"
            big_lines = 1_000_000_000 // LINE_BYTES
            make_log(big, big_lines)
            source.unlink()
            rows.append(("file 1GB", run_once("file", big, big_lines, work)))
        print()
        print(f"{'scenario':<12}{'lines/s':>12}{'x FluentBit':>13}{'CPU s/M':>10}"
              f"{'x FluentBit':>13}{'peak RSS MiB':>14}{'x FluentBit':>13}")  # fmt: skip
        fb = FLUENT_BIT
        print(
            f"{'fluent-bit*':<12}{fb['lines_per_s']:>12,.0f}{'1.00':>13}"
            f"{fb['cpu_per_million']:>10.2f}{'1.00':>13}{fb['rss_mib']:>14.0f}{'1.00':>13}"
        )
        for kind, r in rows:
            speed, cpu, rss = r["lines_per_s"], r["cpu_per_million"], r["rss_mib"]
            print(
                f"{kind:<12}{speed:>12,.0f}{speed / fb['lines_per_s']:>13.2f}"
                f"{cpu:>10.2f}{cpu / fb['cpu_per_million']:>13.2f}"
                f"{rss:>14.1f}{rss / fb['rss_mib']:>13.2f}"
            )
        print(f"\ncat {source.name}: {cat:,.0f} MB/s ({cat * 1e6 / LINE_BYTES:,.0f} lines/s)")
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"load average at the end: {load} on {os.cpu_count()} CPUs (shared machine: "
              "lines/s swing with it; CPU s per million is the steadier figure)")  # fmt: skip
        print("* Fluent Bit 4.2.8 figures from the issue (not run here: it cannot be built on")
        print("  this machine); x columns are podkit / Fluent Bit. Targets: >= 1.0x lines/s to")
        print("  file, <= 1.5x CPU s per million, peak RSS < 64 MiB on a 1 GB file (--gb).")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
