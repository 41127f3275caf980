"""`podkit log-adapter --parser nginx` beside a real Fluent Bit `Parser nginx`, in one run.

Rows (the same 1,000,000-line nginx `combined` file; each tool parses every line with a
regex and writes one JSON object per line to a file):
  nginx parse          the whole file appears at once, read from its head
  nginx parse, follow  a writer appends the file flat out (64 KiB writes)
  nginx parse, rotation  the same writer renames app.log away every 100,000 lines

Fluent Bit (tail -> `Parser nginx` from its own parsers.conf -> file Format plain) runs
only when FLUENT_BIT=/path/to/fluent-bit is set; the tools alternate, podkit, Fluent Bit,
podkit, ..., medians and ratios podkit/Fluent Bit are printed with the load average.
Method: bench/side_by_side.py. The records differ: podkit's carry typed status/bytes, an
RFC 3339 timestamp and a level; Fluent Bit's plain format writes the captures as strings
and drops the time it parsed.

    FLUENT_BIT=/path/to/fluent-bit .venv/bin/python bench/bench_log_adapter.py [--quick]
        [--lines N] [--repeat R] [--only parse|follow|rotation] [--gb] [--busybox]

--busybox adds the classic `while read` loop (adapters/log_json/classic_loop.py) on a small
sample, for the ratio the first version of the adapter was measured by.

Targets (issue 17): nginx parse >= 1.5x Fluent Bit's lines/s; peak RSS < 64 MiB on a 1 GB
file (--gb).
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
    FLUENT_BIT,
    FluentBit,
    Podkit,
    Row,
    fluent_bit_note,
    generate_nginx,
    load,
    ratios,
    run_rows,
    table,
)

ROWS = {"parse": ("nginx parse", "batch"), "follow": ("nginx parse, follow", "follow"),
        "rotation": ("nginx parse, rotation", "rotation")}  # fmt: skip


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="200,000 lines, 3 runs each")
    parser.add_argument("--lines", type=int, help="default 1,000,000 (--quick 200,000)")
    parser.add_argument("--repeat", type=int, help="runs per tool and row (default 5)")
    parser.add_argument("--only", action="append", choices=sorted(ROWS))
    parser.add_argument("--gb", action="store_true", help="also a 1 GB file, once (peak RSS)")
    parser.add_argument("--busybox", action="store_true", help="also the busybox loop")
    parser.add_argument(
        "--adapter-arg", action="append", default=[], help="extra flag for the adapter (=form)"
    )
    args = parser.parse_args()
    lines = args.lines or (200_000 if args.quick else 1_000_000)
    repeat = args.repeat or (3 if args.quick else 5)

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="podkit-bench-adapter-") as tmp:
        source = Path(tmp) / "access.log"
        generate_nginx(source, lines)
        size_mb = source.stat().st_size / 1e6
        print(f"log-adapter beside Fluent Bit: {lines:,} nginx combined lines ({size_mb:.0f} MB),"
              f" {repeat} run(s) per tool and row, alternating, medians; load at start {load()}"
              f" on {os.cpu_count()} CPUs")  # fmt: skip
        print(fluent_bit_note())
        adapter_args = ["--parser", "nginx", *args.adapter_arg]
        rows = [
            Row(label, mode, Podkit("log-adapter", adapter_args),
                FluentBit(FLUENT_BIT, parser="nginx") if FLUENT_BIT else None)
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
            gb = Row("nginx parse, 1 GB", "batch", rows[0].podkit, rows[0].fluent_bit)
            loads += run_rows([gb], big, big_lines, 1, log)
            rows.append(gb)
            big.unlink()
        classic = busybox(300 if args.quick else 2000, Path(tmp)) if args.busybox else ""
    print()
    print(table(rows))
    print(f"\nload average after each pair of runs: {'; '.join(loads)} "
          f"({time.monotonic() - started:.0f} s in all)")  # fmt: skip
    if classic:
        print(f"busybox `while read` loop (classic format sample): {classic}")
    parse = next((r for r in rows if r.mode == "batch"), None)
    if parse is not None and (found := ratios(parse)) is not None:
        speed = found[0]
        print(f"target nginx parse lines/s >= 1.5x Fluent Bit: "
              f"{'met' if speed >= 1.5 else 'NOT met'} ({speed:.2f}x)")  # fmt: skip
    for row in rows:
        if "1 GB" in row.label:
            rss = max(r.rss_mib for r in row.results["podkit"])
            print(f"target peak RSS < 64 MiB on 1 GB: {'met' if rss < 64 else 'NOT met'} "
                  f"({rss:.1f} MiB)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
