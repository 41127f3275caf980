"""What every helper pays: `podkit --help` start-up, exec-to-ready time, idle RSS.

    .venv/bin/python bench/bench_runtime.py [--runs 15]

Prints medians over several runs, beside `python3 -c pass` (the interpreter's own floor).
Targets: helper ready within 1 s of exec, idle RSS under 40 MiB.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from podkit_dev.servers import HOST, HelperProcess, free_port, http_get, wait_for


def time_command(argv: list[str], runs: int) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def rss_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as handle:
        line = next(line for line in handle if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


def helper_ready_and_rss(runs: int) -> tuple[float, float, float]:
    ready_times, rss_values, hwm_values = [], [], []
    for _ in range(runs):
        helper = HelperProcess("echo", "--listen", f"{HOST}:{free_port()}")
        started = time.perf_counter()
        helper.process.start()
        wait_for(
            lambda h=helper: http_get(f"{h.admin}/readyz", timeout=1)[0] == 200,
            what="ready",
            interval=0.002,
        )
        ready_times.append(time.perf_counter() - started)
        time.sleep(1.0)  # let start-up garbage settle before reading the idle RSS
        rss_values.append(rss_of(helper.process.pid))
        with open(f"/proc/{helper.process.pid}/status") as handle:
            hwm = next(line for line in handle if line.startswith("VmHWM:"))
        hwm_values.append(int(hwm.split()[1]) * 1024)
        helper.cleanup()
    return statistics.median(ready_times), statistics.median(rss_values), max(hwm_values)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="5 runs")
    args = parser.parse_args()
    runs = 5 if args.quick else args.runs
    load_before = load_average()
    podkit = str(Path(sys.executable).parent / "podkit")
    floor = time_command([sys.executable, "-c", "pass"], runs)
    help_time = time_command([podkit, "--help"], runs)
    role_help = time_command([podkit, "echo", "--help"], runs)
    ready, rss, hwm = helper_ready_and_rss(max(3, runs // 3))
    mib = 1024 * 1024
    print(f"{'measure (median)':<40}{'value':>12}{'target':>12}")
    print(f"{'python3 -c pass (floor)':<40}{floor * 1000:>10.0f}ms")
    print(f"{'podkit --help':<40}{help_time * 1000:>10.0f}ms")
    print(f"{'podkit echo --help (settings loaded)':<40}{role_help * 1000:>10.0f}ms")
    print(f"{'exec -> /readyz 200 (echo)':<40}{ready * 1000:>10.0f}ms{'< 1000ms':>12}")
    print(f"{'idle RSS (echo, 1 s after ready)':<40}{rss / mib:>8.1f}MiB{'< 40MiB':>12}")
    print(f"{'peak RSS (VmHWM, max of runs)':<40}{hwm / mib:>8.1f}MiB")
    print(f"load average: {load_before} before, {load_average()} after ({os.cpu_count()} CPUs)")


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


if __name__ == "__main__":
    main()
