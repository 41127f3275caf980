"""`podkit log-shipper` beside a real Fluent Bit, in the same run, on the same nginx file.

Rows (raw lines, no parser; each tool writes one JSON object per line to a file):
  raw tail->file   the whole 1,000,000-line file appears at once, read from its head
                   (Fluent Bit: tail Read_From_Head -> file Format plain)
  rotation storm   1,000 renames a second for 10 s: a writer appends 100 numbered lines,
                   then renames app.log out of the glob (app.log.N; the tools follow
                   *.log); delivered/written for each tool (podkit's must be 100%)
  1 GB (--big)     raw tail->file on a 1 GB file, once: peak memory
  follow, rotation (--only): a writer appending flat out; renaming every 100,000 lines

Fluent Bit runs only when FLUENT_BIT=/path/to/fluent-bit is set (never built by podkit),
twice per row: on its default tail buffers (fb-32k, Flush 0.1) and on 1M/4M buffers
(fb-1M/4M: Buffer_Chunk_Size 1M, Buffer_Max_Size 4M, Flush 0.05). The tools alternate,
podkit, fb-32k, fb-1M/4M, podkit, ...; medians, ratios podkit/each (timed from the
hand-over, and from spawn) and the load average are printed; the targets hold against
the faster setting. CPU is utime+stime of the process tree; RSS is VmHWM summed over the
tree; PSS is the tree's summed PSS, sampled every 50 ms. Method: bench/side_by_side.py.

    FLUENT_BIT=/path/to/fluent-bit .venv/bin/python bench/bench_log_shipper.py [--quick]
        [--lines N] [--repeat R] [--only raw|storm|follow|rotation] [--big]
        [--shipper-arg=--flag=V]

Targets: raw tail->file >= 1.0x Fluent Bit's lines/s at <= 1.5x its CPU per line; peak
memory < 64 MiB on a 1 GB file (--big); the storm 100% delivered.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

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

ROWS = {"raw": ("raw tail->file", "batch"), "follow": ("follow (writer)", "follow"),
        "rotation": ("rotation every 100k lines", "rotation")}  # fmt: skip
DEFAULT = ("raw", "storm")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="200,000 lines, 3 runs, 3 s storm")
    parser.add_argument("--lines", type=int, help="default 1,000,000 (--quick 200,000)")
    parser.add_argument("--repeat", type=int, help="runs per tool and row (default 5)")
    parser.add_argument("--only", action="append", choices=[*sorted(ROWS), "storm"])
    parser.add_argument("--big", "--gb", action="store_true", help="also a 1 GB file, once")
    parser.add_argument(
        "--shipper-arg", action="append", default=[], help="extra flag for the shipper (=form)"
    )
    args = parser.parse_args()
    lines = args.lines or (200_000 if args.quick else 1_000_000)
    repeat = args.repeat or (3 if args.quick else 5)
    chosen = args.only or DEFAULT

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    podkit = Podkit("log-shipper", args.shipper_arg)
    storms = None
    with tempfile.TemporaryDirectory(prefix="podkit-bench-shipper-") as tmp:
        source = Path(tmp) / "access.log"
        generate_nginx(source, lines)
        size_mb = source.stat().st_size / 1e6
        print(f"log-shipper beside Fluent Bit: {lines:,} nginx combined lines ({size_mb:.0f} MB),"
              f" {repeat} run(s) per tool and row, alternating, medians; load at start {load()}"
              f" on {os.cpu_count()} CPUs")  # fmt: skip
        print(fluent_bit_note())
        rows = [
            Comparison(label, mode, podkit, fluent_bits())
            for key, (label, mode) in ROWS.items() if key in chosen
        ]  # fmt: skip
        started = time.monotonic()
        loads = run_rows(rows, source, lines, repeat, log)
        if "storm" in chosen:
            storms = run_storms([podkit, *fluent_bits()], repeat, log, 3.0 if args.quick else 10.0)
            loads.append(load())
        if args.big:
            source.unlink()
            big = Path(tmp) / "big.log"
            big_lines = 1_000_000_000 // 176
            log(f"generating 1 GB ({big_lines:,} lines) ...")
            generate_nginx(big, big_lines)
            gb = Comparison("raw tail->file, 1 GB", "batch", podkit, fluent_bits())
            loads += run_rows([gb], big, big_lines, 1, log)
            rows.append(gb)
    print()
    print(table(rows))
    if storms is not None:
        print()
        print(storm_table(storms, "rotation storm (1,000 renames/s)"))
    print(f"\nload average after each round of runs: {'; '.join(loads)} "
          f"({time.monotonic() - started:.0f} s in all; the machine is shared)")  # fmt: skip
    print_targets(rows, 1.0, 1.5)
    if storms is not None and "podkit" in storms:
        worst = min(r.share for r in storms["podkit"])
        print(f"target rotation storm: podkit delivers 100%: "
              f"{'met' if worst == 1 else 'NOT met'} (worst run {worst:.2%})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
