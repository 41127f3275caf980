"""`podkit log-shipper` beside a real Fluent Bit, in the same run, on the same nginx file.

Rows (raw lines, no parser; each tool writes one JSON object per line to a file):
  raw tail->file   the whole 1,000,000-line file appears at once, read from its head
                   (Fluent Bit: tail Read_From_Head -> file Format plain)
  follow           a writer appends the file flat out (64 KiB writes) while both follow it
  rotation         the same writer renames app.log away every 100,000 lines (logrotate)

Fluent Bit runs only when FLUENT_BIT=/path/to/fluent-bit is set (never built by podkit);
the tools alternate, podkit, Fluent Bit, podkit, ..., and medians and ratios
podkit/Fluent Bit are printed with the load average. Method: bench/side_by_side.py.

    FLUENT_BIT=/path/to/fluent-bit .venv/bin/python bench/bench_log_shipper.py [--quick]
        [--lines N] [--repeat R] [--only raw|follow|rotation] [--gb] [--shipper-arg=--flag=V]

Targets: raw tail->file >= 1.0x Fluent Bit's lines/s at <= 1.5x its CPU per
line; peak RSS < 64 MiB on a 1 GB file (--gb).
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
    FLUENT_BIT,
    Comparison,
    FluentBit,
    Podkit,
    fluent_bit_note,
    generate_nginx,
    load,
    ratios,
    run_rows,
    table,
)

ROWS = {"raw": ("raw tail->file", "batch"), "follow": ("follow (writer)", "follow"),
        "rotation": ("rotation every 100k lines", "rotation")}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="200,000 lines, 3 runs each")
    parser.add_argument("--lines", type=int, help="default 1,000,000 (--quick 200,000)")
    parser.add_argument("--repeat", type=int, help="runs per tool and row (default 5)")
    parser.add_argument("--only", action="append", choices=sorted(ROWS))
    parser.add_argument("--gb", action="store_true", help="also a 1 GB file, once (peak RSS)")
    parser.add_argument(
        "--shipper-arg", action="append", default=[], help="extra flag for the shipper (=form)"
    )
    args = parser.parse_args()
    lines = args.lines or (200_000 if args.quick else 1_000_000)
    repeat = args.repeat or (3 if args.quick else 5)

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="podkit-bench-shipper-") as tmp:
        source = Path(tmp) / "access.log"
        generate_nginx(source, lines)
        size_mb = source.stat().st_size / 1e6
        print(f"log-shipper beside Fluent Bit: {lines:,} nginx combined lines ({size_mb:.0f} MB),"
              f" {repeat} run(s) per tool and row, alternating, medians; load at start {load()}"
              f" on {os.cpu_count()} CPUs")  # fmt: skip
        print(fluent_bit_note())
        rows = [
            Comparison(label, mode, Podkit("log-shipper", args.shipper_arg),
                FluentBit(FLUENT_BIT) if FLUENT_BIT else None)
            for key, (label, mode) in ROWS.items() if not args.only or key in args.only
        ]  # fmt: skip
        started = time.monotonic()
        loads = run_rows(rows, source, lines, repeat, log)
        if args.gb:
            source.unlink()
            big = Path(tmp) / "big.log"
            big_lines = 1_000_000_000 // 176
            log(f"generating 1 GB ({big_lines:,} lines) ...")
            generate_nginx(big, big_lines)
            gb = Comparison("raw tail->file, 1 GB", "batch", rows[0].podkit, rows[0].fluent_bit)
            loads += run_rows([gb], big, big_lines, 1, log)
            rows.append(gb)
    print()
    print(table(rows))
    print(f"\nload average after each pair of runs: {'; '.join(loads)} "
          f"({time.monotonic() - started:.0f} s in all)")  # fmt: skip
    raw = next((r for r in rows if r.mode == "batch"), None)
    if raw is not None and (found := ratios(raw)) is not None:
        speed, cpu, _ = found
        print(f"target raw lines/s >= 1.0x Fluent Bit: {'met' if speed >= 1 else 'NOT met'} "
              f"({speed:.2f}x); CPU per line <= 1.5x: {'met' if cpu <= 1.5 else 'NOT met'} "
              f"({cpu:.2f}x)")  # fmt: skip
    for row in rows:
        if "1 GB" in row.label:
            rss = max(r.rss_mib for r in row.results["podkit"])
            print(f"target peak RSS < 64 MiB on 1 GB: {'met' if rss < 64 else 'NOT met'} "
                  f"({rss:.1f} MiB)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
