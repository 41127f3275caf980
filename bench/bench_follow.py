"""Benchmark of podkit's file follower.

    .venv/bin/python bench/bench_follow.py [--quick] [--runs N] [--lines N]

Generates an nginx access log (~180-byte lines) and measures, each in a fresh subprocess so
CPU time and peak RSS are the follower's own:

- batch mode: read the whole file from its head to a consumer that only acks (drain);
  lines/s, MB/s, CPU seconds, peak RSS (VmHWM), and the same process's RSS before the
  follower starts (interpreter + imports) for comparison;
- follow mode: the follower already running while a writer process appends the same lines
  as fast as it can (64 KiB writes); lines/s from the first line read to the last;
- beside them, on the same file and in the same run: `cat FILE > /dev/null` (the physical
  limit) and a plain Python `for line in file` loop (the naive approach).

Prints medians of several runs and ratios. Targets: >= 1,000,000 lines/s batch mode on one
core, peak RSS < 40 MiB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()


def generate(path: Path, lines: int) -> None:
    rng = random.Random(42)
    paths = ["/", "/index.html", "/api/v1/orders", "/static/app.js", "/img/logo.png"]
    agents = [
        "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
        "curl/8.5.0",
        "kube-probe/1.29",
    ]
    with open(path, "wb") as fh:
        chunk: list[str] = []
        for i in range(lines):
            chunk.append(
                f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)} - - "
                f"[25/Nov/2026:04:{i // 60 % 60:02d}:{i % 60:02d} +0000] "
                f'"GET {rng.choice(paths)}?id={i} HTTP/1.1" {rng.choice((200, 200, 304, 404))} '
                f'{rng.randrange(200, 90000)} "https://shop.example.com/catalog?page={i % 97}" '
                f'"{rng.choice(agents)}"\n'
            )
            if len(chunk) == 10000:
                fh.write("".join(chunk).encode())
                chunk = []
        fh.write("".join(chunk).encode())


def proc_status_kib(field: str) -> int | None:
    """A `field: N kB` value of /proc/self/status, None where there is none."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def vm_hwm_kib() -> int:
    """Peak resident set size of this process (KiB), from /proc (ru_maxrss as fallback)."""
    hwm = proc_status_kib("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def vm_rss_kib() -> int:
    return proc_status_kib("VmRSS") or 0


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# --- children (one process per measurement) ----------------------------------------------


def child_batch(path: str, state_dir: str | None = None) -> dict[str, float]:
    from podkit.follow import FollowConfig, Follower

    rss_before = vm_rss_kib()
    state = Path(state_dir) if state_dir else None
    config = FollowConfig(include=(path,), watch=False, state_dir=state)

    async def main() -> tuple[int, int]:
        lines = nbytes = 0
        follower = Follower(config)
        async with follower:
            drain = asyncio.ensure_future(follower.drain())  # read to EOF, then end
            async for batch in follower:  # a consumer that only counts and acks
                lines += len(batch.lines)
                nbytes = batch.end_offset
                follower.ack(batch)
            await drain
        return lines, nbytes

    cpu0, t0 = cpu_seconds(), time.perf_counter()
    lines, nbytes = asyncio.run(main())
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
    return {
        "lines": lines,
        "bytes": nbytes,
        "wall": wall,
        "cpu": cpu,
        "rss_before_kib": rss_before,
        "peak_rss_kib": vm_hwm_kib(),
    }


def child_follow(directory: str, expect: int) -> dict[str, float]:
    from podkit.follow import FollowConfig, Follower

    config = FollowConfig(
        include=(os.path.join(directory, "*.log"),), poll_interval=0.05, read_from="head"
    )

    async def main() -> tuple[int, float, float]:
        lines = 0
        first = 0.0
        follower = Follower(config)
        async with follower:
            print("ready", flush=True)
            async for batch in follower:
                if not first and batch.lines:
                    first = time.perf_counter()
                lines += len(batch.lines)
                follower.ack(batch)
                if lines >= expect:
                    break
        return lines, first, time.perf_counter()

    cpu0 = cpu_seconds()
    lines, first, last = asyncio.run(main())
    return {"lines": lines, "wall": last - first, "cpu": cpu_seconds() - cpu0}


def child_python_loop(path: str) -> dict[str, float]:
    t0 = time.perf_counter()
    n = 0
    with open(path, "rb") as fh:
        for _ in fh:
            n += 1
    return {"lines": n, "wall": time.perf_counter() - t0}


# --- parent ------------------------------------------------------------------------------


def run_child(*args: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, str(HERE), "--child", *args], check=True, capture_output=True
    )
    return json.loads(out.stdout.decode().strip().splitlines()[-1])


def measure_cat(path: Path) -> float:
    t0 = time.perf_counter()
    with open(os.devnull, "wb") as null:
        subprocess.run(["cat", str(path)], stdout=null, check=True)
    return time.perf_counter() - t0


def measure_follow(source: Path, lines: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-follow-") as tmp:
        target = Path(tmp) / "app.log"
        target.touch()
        child = subprocess.Popen(
            [sys.executable, str(HERE), "--child", "follow", tmp, str(lines)],
            stdout=subprocess.PIPE,
        )
        assert child.stdout is not None
        assert child.stdout.readline() == b"ready\n"
        t0 = time.perf_counter()
        with open(source, "rb") as src, open(target, "ab", buffering=0) as dst:
            while block := src.read(65536):
                dst.write(block)
        writer_wall = time.perf_counter() - t0
        result = json.loads(child.stdout.read().decode().strip().splitlines()[-1])
        child.wait()
        result["writer_wall"] = writer_wall
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200k lines, 3 runs")
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--lines", type=int, default=None)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "batch":
            result = child_batch(*rest)
        elif kind == "follow":
            result = child_follow(rest[0], int(rest[1]))
        else:
            result = child_python_loop(rest[0])
        print(json.dumps(result))
        return

    lines = args.lines or (200_000 if args.quick else 1_000_000)
    runs = args.runs or (3 if args.quick else 5)
    with tempfile.TemporaryDirectory(prefix="bench-follow-") as tmp:
        path = Path(tmp) / "access.log"
        generate(path, lines)
        size = path.stat().st_size
        mb = size / 1e6
        print(f"file: {lines:,} lines, {mb:.1f} MB ({size / lines:.0f} B/line), {runs} runs")
        measure_cat(path)  # warm the page cache: every contender reads from memory
        cat, batch, saved, loop, follow = [], [], [], [], []
        for i in range(runs):
            cat.append(measure_cat(path))
            batch.append(run_child("batch", str(path)))
            saved.append(run_child("batch", str(path), os.path.join(tmp, f"state{i}")))
            loop.append(run_child("loop", str(path)))
            follow.append(measure_follow(path, lines))
        for r in batch:
            assert r["lines"] == lines, f"batch mode delivered {r['lines']} of {lines} lines"

    med = statistics.median
    cat_s = med(cat)
    b_wall = med(r["wall"] for r in batch)
    b_cpu = med(r["cpu"] for r in batch)
    b_rss = med(r["peak_rss_kib"] for r in batch) / 1024
    b_base = med(r["rss_before_kib"] for r in batch) / 1024
    s_wall = med(r["wall"] for r in saved)
    s_cpu = med(r["cpu"] for r in saved)
    s_rss = med(r["peak_rss_kib"] for r in saved) / 1024
    l_wall = med(r["wall"] for r in loop)
    f_wall = med(r["wall"] for r in follow)
    f_cpu = med(r["cpu"] for r in follow)
    w_wall = med(r["writer_wall"] for r in follow)

    rows = [
        ("cat FILE > /dev/null", lines / cat_s, mb / cat_s, None, None),
        ("python `for line in f`", lines / l_wall, mb / l_wall, None, None),
        ("follower, batch mode", lines / b_wall, mb / b_wall, b_cpu, b_rss),
        ("  with checkpoints (--state-dir)", lines / s_wall, mb / s_wall, s_cpu, s_rss),
        ("follower, follow mode", lines / f_wall, mb / f_wall, f_cpu, None),
        ("  (its writer, 64 KiB writes)", lines / w_wall, mb / w_wall, None, None),
    ]
    print(
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; "
        f"batch mode per CPU second: {lines / b_cpu:,.0f} lines/s"
    )
    print(f"{'':32} {'lines/s':>12} {'MB/s':>9} {'CPU s':>7} {'peak RSS':>10} {'vs cat':>7}")
    for name, lps, mbs, cpu, rss in rows:
        cpu_text = f"{cpu:7.2f}" if cpu is not None else f"{'':7}"
        rss_text = f"{rss:6.1f} MiB" if rss is not None else f"{'':10}"
        print(f"{name:32} {lps:12,.0f} {mbs:9.1f} {cpu_text} {rss_text} {mbs / (mb / cat_s):6.2f}x")
    print(
        f"peak RSS of the batch-mode process: {b_rss:.1f} MiB, of which {b_base:.1f} MiB "
        f"before the follower started (interpreter, asyncio, podkit.follow imports)"
    )
    target_lps = lines / b_cpu >= 1_000_000  # one core's worth: CPU time, not a shared wall
    print(
        "targets: >= 1,000,000 lines/s per core in batch mode: "
        f"{'met' if target_lps else 'MISSED'}; "
        f"peak RSS < 40 MiB: {'met' if b_rss < 40 else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
