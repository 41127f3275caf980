"""podkit beside a real Fluent Bit, in one run: what bench_log_shipper/bench_log_adapter share.

Fluent Bit is not part of podkit: the benches take an already built binary from the env
var FLUENT_BIT=/path/to/fluent-bit and run its rows only when it is set.

Method (the same for both tools, every run a fresh process):
- the tool follows `inbox/*.log*` (the rotated names too: at a rotation every 100,000
  lines written flat out, a file can be renamed away before a `*.log` glob ever sees it);
  it is started on an empty input directory (or one holding an empty app.log for
  the follow and rotation rows) and waited for until ready (podkit: /readyz; Fluent Bit:
  its HTTP server answers);
- then the input is handed over: the 1,000,000-line file is hard-linked in at once (batch),
  or a writer thread appends it flat out in 64 KiB writes (follow), or appends it renaming
  app.log away every 100,000 lines, as logrotate does (rotation);
- the clock and the CPU count (utime+stime of the process, /proc) start at the hand-over
  and stop when the output file holds every line (its newlines counted incrementally);
  peak RSS is VmHWM at that moment. Start-up (spawn to ready) is printed on its own.
- the tools alternate, A B A B ..., and medians are printed with the ratio podkit/FB.

Both discover new files on a 100 ms refresh; Fluent Bit flushes every 100 ms (`Flush 0.1`,
its default 1 s would add up to a second to every run) and reads new files from the head.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from podkit_dev.servers import HelperProcess, free_port, port_open, wait_for

FLUENT_BIT = os.environ.get("FLUENT_BIT", "")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
ROTATE_EVERY = 100_000
STUCK_AFTER = 60.0
"""Seconds without a new output line before a run is called stuck (lines were lost)."""
WRITE_BLOCK = 65536

AGENTS = [
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0",
    "curl/8.5.0",
    "kube-probe/1.29",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15",
]

# Fluent Bit's own `nginx` parser, as its conf/parsers.conf (v4.2.8) defines it.
FB_PARSERS = r"""
[PARSER]
    Name   nginx
    Format regex
    Regex ^(?<remote>[^ ]*) (?<host>[^ ]*) (?<user>[^ ]*) \[(?<time>[^\]]*)\] "(?<method>\S+)(?: +(?<path>[^\"]*?)(?: +\S*)?)?" (?<code>[^ ]*) (?<size>[^ ]*)(?: "(?<referer>[^\"]*)" "(?<agent>[^\"]*)")
    Time_Key time
    Time_Format %d/%b/%Y:%H:%M:%S %z
"""  # noqa: E501 - the regex line as Fluent Bit reads it


def generate_nginx(path: Path, lines: int, seed: int = 42) -> None:
    """nginx `combined` lines (~176 bytes), ~200 per second of log time, deterministic."""
    rng = random.Random(seed)
    with open(path, "w") as out:
        chunk: list[str] = []
        for i in range(lines):
            second = i // 200
            hh, mm, ss = (second // 3600) % 24, (second // 60) % 60, second % 60
            status = rng.choice([200] * 8 + [301, 404, 500])
            chunk.append(
                f"10.{i % 256}.{rng.randrange(256)}.{rng.randrange(256)} - - "
                f"[01/May/2024:{hh:02d}:{mm:02d}:{ss:02d} +0000] "
                f'"GET /api/v1/items/{rng.randrange(10000)}?page={rng.randrange(9)} HTTP/1.1" '
                f"{status} {rng.randrange(50000)} "
                f'"https://example.com/page/{rng.randrange(50)}" "{rng.choice(AGENTS)}"\n'
            )
            if len(chunk) == 10000:
                out.write("".join(chunk))
                chunk = []
        out.write("".join(chunk))


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def tree(pid: int) -> list[int]:
    """`pid` and its descendants (podkit log-adapter's worker processes)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parents.setdefault(int(_stat(int(entry))[1]), []).append(int(entry))
            except (OSError, IndexError):
                continue
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(parents.get(current, []))
    return found


def cpu_seconds(pid: int) -> float:
    """utime+stime of the process tree: the live processes and the children reaped."""
    total = 0.0
    for member in tree(pid):
        try:
            fields = _stat(member)
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
        if member == pid:
            total += int(fields[13]) + int(fields[14])
    return total / CLOCK_TICKS


def peak_rss_mib(pid: int) -> float:
    """VmHWM summed over the tree: pages a forked worker shares with its parent count
    twice, so this overstates a tree's memory (PssSampler measures it)."""
    total = 0.0
    for member in tree(pid):
        try:
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            continue
    return total


class PssSampler:
    """Peak of the tree's summed PSS (shared pages split between their users: the memory
    the tree really holds, as a container's limit sees it), sampled every 50 ms."""

    def __init__(self, pid: int) -> None:
        self.pids = tree(pid)
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def sample(self) -> float:
        total = 0
        for member in self.pids:
            try:
                for line in Path(f"/proc/{member}/smaps_rollup").read_text().splitlines():
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
            except OSError:
                continue
        return total / 1024

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self.sample())

    def stop(self) -> float:
        self.peak = max(self.peak, self.sample())
        self._stop.set()
        self._thread.join()
        return self.peak


def load() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


class LineCounter:
    """Newlines in a growing file, reading only what was added since the last call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = -1
        self.pos = 0
        self.lines = 0

    def count(self) -> int:
        if self.fd < 0:
            try:
                self.fd = os.open(self.path, os.O_RDONLY)
            except FileNotFoundError:
                return 0
        while block := os.pread(self.fd, 1 << 22, self.pos):
            self.pos += len(block)
            self.lines += block.count(b"\n")
        return self.lines

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


# --- the tools ------------------------------------------------------------------------------


class Tool:
    """A log tool reading `inbox/*.log` and writing one line per record to `out`."""

    name = "tool"

    def start(self, inbox: Path, out: Path, glob: str = "*.log*") -> int:
        """Spawn, wait until ready, return the pid."""
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


class Podkit(Tool):
    def __init__(self, role: str, args: Sequence[str], name: str = "podkit") -> None:
        self.role = role
        self.args = list(args)
        self.name = name
        self.helper: HelperProcess | None = None

    def start(self, inbox: Path, out: Path, glob: str = "*.log*") -> int:
        if self.role == "log-shipper":
            io = ["--output", "file", "--file-path", str(out), "--batch-timeout", "100ms"]
        else:
            io = ["--output", "file", "--output-path", str(out)]
        self.helper = HelperProcess(
            self.role,
            "--path", f"{inbox}/{glob}", "--refresh-interval", "100ms", "--log-level", "warning",
            *io, *self.args,
        )  # fmt: skip
        self.helper.start(wait="readyz", timeout=60)
        return self.helper.process.pid

    def stop(self) -> None:
        if self.helper is not None:
            self.helper.cleanup()
            self.helper = None


class FluentBit(Tool):
    """Fluent Bit's tail -> file. `tuned`: 1M/4M tail buffers and Flush 0.05 (its
    throughput settings); else its default 32k buffers and Flush 0.1."""

    def __init__(self, binary: str, parser: str | None = None, tuned: bool = False) -> None:
        self.binary = binary
        self.parser = parser
        self.tuned = tuned
        self.name = "fb-1M/4M" if tuned else "fb-32k"
        self.process: subprocess.Popen[bytes] | None = None
        self.dir: Path | None = None

    def start(self, inbox: Path, out: Path, glob: str = "*.log*") -> int:
        self.dir = Path(tempfile.mkdtemp(prefix="podkit-bench-fb-"))
        port = free_port()
        parser = f"    Parser            {self.parser}\n" if self.parser else ""
        buffers = "    Buffer_Chunk_Size 1M\n    Buffer_Max_Size   4M\n" if self.tuned else ""
        (self.dir / "parsers.conf").write_text(FB_PARSERS)
        (self.dir / "fluent-bit.conf").write_text(
            "[SERVICE]\n"
            f"    Flush         {0.05 if self.tuned else 0.1}\n"
            "    Log_Level     warn\n"
            f"    Parsers_File  {self.dir / 'parsers.conf'}\n"
            "    HTTP_Server   On\n"
            "    HTTP_Listen   127.0.0.1\n"
            f"    HTTP_Port     {port}\n"
            "[INPUT]\n"
            "    Name              tail\n"
            f"    Path              {inbox}/{glob}\n"
            "    Read_From_Head    On\n"
            "    Refresh_Interval  0.1\n"
            f"{buffers}{parser}"
            "[OUTPUT]\n"
            "    Name    file\n"
            "    Match   *\n"
            f"    Path    {out.parent}\n"
            f"    File    {out.name}\n"
            "    Format  plain\n"
        )
        log = open(self.dir / "fluent-bit.log", "wb")  # noqa: SIM115 - the child's
        self.process = subprocess.Popen(
            [self.binary, "-c", str(self.dir / "fluent-bit.conf")],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        process = self.process

        def up() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"fluent-bit exited: {self.log_text()}")
            return port_open(port)

        wait_for(up, timeout=60, what="fluent-bit HTTP server")
        return process.pid

    def log_text(self) -> str:
        assert self.dir is not None
        return (self.dir / "fluent-bit.log").read_text(errors="replace")[-2000:]

    def stop(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
            self.process = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


# --- the input ------------------------------------------------------------------------------


def _append(source: Path, target: Path, cuts: list[int]) -> None:
    """Append `source` to `target` in 64 KiB writes; at each offset in `cuts`, rename the
    target away (target.1, target.2, ...) and go on in a new file, as logrotate does."""
    size = source.stat().st_size
    bounds = [*cuts, size]
    rotations = 0
    with open(source, "rb") as src:
        dst = open(target, "ab")  # noqa: SIM115 - reopened after each rotation
        position = 0
        for bound in bounds:
            while position < bound:
                block = src.read(min(WRITE_BLOCK, bound - position))
                dst.write(block)
                dst.flush()
                position += len(block)
            if bound < size:
                dst.close()
                rotations += 1
                os.rename(target, f"{target}.{rotations}")
                dst = open(target, "ab")  # noqa: SIM115
        dst.close()


_CUTS: dict[tuple[Path, int], list[int]] = {}


def rotation_cuts(source: Path, every: int) -> list[int]:
    """Byte offsets just after every `every`-th line (but the file's end)."""
    if (source, every) not in _CUTS:
        cuts: list[int] = []
        with open(source, "rb") as handle:
            for number, _line in enumerate(handle, start=1):
                if number % every == 0:
                    cuts.append(handle.tell())
        size = source.stat().st_size
        _CUTS[source, every] = [cut for cut in cuts if cut < size]
    return _CUTS[source, every]


@dataclass
class Measurement:
    seconds: float
    cpu: float
    rss_mib: float
    start_s: float
    start_cpu: float
    lines: int
    pss_mib: float = float("nan")

    @property
    def lines_per_s(self) -> float:
        return self.lines / self.seconds

    @property
    def cpu_per_million(self) -> float:
        return self.cpu / self.lines * 1e6


def run_once(tool: Tool, mode: str, source: Path, lines: int, work: Path) -> Measurement:
    """One run of `tool` on `source` (mode batch, follow or rotation)."""
    inbox = work / "inbox"
    shutil.rmtree(inbox, ignore_errors=True)
    inbox.mkdir(parents=True)
    out = work / "out" / "out.jsonl"
    shutil.rmtree(out.parent, ignore_errors=True)
    out.parent.mkdir(parents=True)
    target = inbox / "app.log"
    if mode != "batch":
        target.touch()  # followed from its (empty) start
    cuts = rotation_cuts(source, ROTATE_EVERY) if mode == "rotation" else []
    counter = LineCounter(out)
    spawned = time.perf_counter()
    try:
        pid = tool.start(inbox, out)
        start_s = time.perf_counter() - spawned
        cpu0 = cpu_seconds(pid)
        pss = PssSampler(pid)
        writer = None
        started = time.perf_counter()
        if mode == "batch":
            os.link(source, target)  # appears at once, whole
        else:
            writer = threading.Thread(target=_append, args=(source, target, cuts))
            writer.start()
        seen, progress = 0, started
        while (count := counter.count()) < lines:
            now = time.perf_counter()
            if count != seen:
                seen, progress = count, now
            elif now - progress > STUCK_AFTER:
                raise RuntimeError(f"{tool.name} {mode}: stuck at {count:,} of {lines:,} lines")
            time.sleep(0.01)
        seconds = time.perf_counter() - started
        cpu = cpu_seconds(pid) - cpu0
        rss = peak_rss_mib(pid)
        pss_peak = pss.stop()
        if writer is not None:
            writer.join()
    finally:
        counter.close()
        tool.stop()
    return Measurement(seconds, cpu, rss, start_s, cpu0, lines, pss_peak)


# --- a rotation storm -----------------------------------------------------------------------


@dataclass
class Storm:
    written: int
    delivered: int
    """Distinct numbered lines found in the output."""
    duplicates: int
    rotations_per_s: float

    @property
    def share(self) -> float:
        return self.delivered / self.written


def _storm_writer(target: Path, seconds: float, rate: int, every: int, done: list[float]) -> None:
    """Append numbered nginx lines; every `every` lines rename the file out of the glob
    (app.log -> app.log.N), `rate` times a second, paced, for `seconds`."""
    rotations = int(seconds * rate)
    chunks = [
        "".join(
            f"10.0.{number % 256}.1 - - [01/May/2024:00:00:{number % 60:02d} +0000] "
            f'"GET /r/{number} HTTP/1.1" 200 {number % 5000} "-" "curl/8.5.0"\n'
            for number in range(rotation * every, (rotation + 1) * every)
        ).encode()
        for rotation in range(rotations)
    ]  # made before the clock starts: the loop below is four system calls a rotation
    started = time.perf_counter()
    for rotation, chunk in enumerate(chunks):
        fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(fd, chunk)
        os.close(fd)
        os.rename(target, f"{target}.{rotation}")
        ahead = started + (rotation + 1) / rate - time.perf_counter()
        if ahead > 0:
            time.sleep(ahead)
    done.append(time.perf_counter() - started)


NUMBERED = re.compile(rb"/r/(\d+)")


def rotation_storm(
    tool: Tool, work: Path, seconds: float = 10.0, rate: int = 1000, every: int = 100
) -> Storm:
    """`rate` renames a second out of the tool's glob for `seconds`: what reached the output."""
    inbox = work / "inbox"
    shutil.rmtree(inbox, ignore_errors=True)
    inbox.mkdir(parents=True)
    out = work / "out" / "out.jsonl"
    shutil.rmtree(out.parent, ignore_errors=True)
    out.parent.mkdir(parents=True)
    target = inbox / "app.log"
    target.touch()
    written = int(seconds * rate) * every
    counter = LineCounter(out)
    try:
        tool.start(inbox, out, glob="*.log")
        took: list[float] = []
        writer = threading.Thread(target=_storm_writer, args=(target, seconds, rate, every, took))
        writer.start()
        writer.join()
        # Then until every line is out, or nothing more came for STORM_QUIET seconds.
        seen, quiet_since = -1, time.perf_counter()
        while (count := counter.count()) < written:
            if count != seen:
                seen, quiet_since = count, time.perf_counter()
            elif time.perf_counter() - quiet_since > STORM_QUIET:
                break
            time.sleep(0.05)
    finally:
        counter.close()
        tool.stop()
    found = []  # the line number of each record (its first /r/N: a parsed record has two)
    for record in out.read_bytes().splitlines() if out.exists() else []:
        if (match := NUMBERED.search(record)) is not None:
            found.append(int(match.group(1)))
    distinct = {n for n in found if n < written}
    return Storm(written, len(distinct), len(found) - len(distinct), int(seconds * rate) / took[0])


STORM_QUIET = 8.0
"""Seconds without a new output line after the storm before counting (Fluent Bit's
Rotate_Wait is 5 s)."""


def run_storms(
    tools: list[Tool], repeat: int, log: Callable[[str], None], seconds: float = 10.0
) -> dict[str, list[Storm]]:
    results: dict[str, list[Storm]] = {}
    work = Path(tempfile.mkdtemp(prefix="podkit-bench-storm-"))
    try:
        for index in range(repeat):
            for tool in tools:
                result = rotation_storm(tool, work, seconds)
                results.setdefault(tool.name, []).append(result)
                log(
                    f"  rotation storm {tool.name} #{index + 1}: {result.delivered:,} of "
                    f"{result.written:,} lines ({result.share:.1%}), {result.duplicates:,} "
                    f"duplicates, {result.rotations_per_s:,.0f} renames/s (load {load()})"
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return results


def storm_table(results: dict[str, list[Storm]], label: str) -> str:
    head = (
        f"{label:<34}{'tool':<11}{'delivered/written':>18}{'worst run':>10}{'duplicates':>11}"
        f"{'renames/s':>10}"
    )
    out = [head, "-" * len(head)]
    for name, runs in results.items():
        out.append(
            f"{'':<34}{name:<11}{statistics.median(r.share for r in runs):>18.2%}"
            f"{min(r.share for r in runs):>10.2%}"
            f"{statistics.median(r.duplicates for r in runs):>11,.0f}"
            f"{statistics.median(r.rotations_per_s for r in runs):>10,.0f}"
        )
    return "\n".join(out)


# --- rows and the table ---------------------------------------------------------------------


@dataclass
class Comparison:
    label: str
    mode: str
    podkit: Tool
    fluent_bits: list[Tool]
    results: dict[str, list[Measurement]] = field(default_factory=dict)


def run_rows(
    rows: list[Comparison],
    source: Path,
    lines: int,
    repeat: int,
    log: Callable[[str], None],
) -> list[str]:
    """Run every row `repeat` times, tools alternating; the load averages seen."""
    loads: list[str] = []
    work = Path(tempfile.mkdtemp(prefix="podkit-bench-side-"))
    try:
        for row in rows:
            tools = [row.podkit, *row.fluent_bits]
            for index in range(repeat):
                for tool in tools:
                    result = run_once(tool, row.mode, source, lines, work)
                    row.results.setdefault(tool.name, []).append(result)
                    log(
                        f"  {row.label} {tool.name} #{index + 1}: {result.lines_per_s:,.0f} "
                        f"lines/s, {result.cpu_per_million:.2f} CPU-s/M, "
                        f"{result.rss_mib:.1f} MiB (load {load()})"
                    )
                loads.append(load())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return loads


def _median(results: list[Measurement], key: str) -> float:
    return statistics.median(getattr(r, key) for r in results)


def _with_start(results: list[Measurement]) -> tuple[float, float]:
    """Median lines/s and CPU-s per million counted from spawn instead of hand-over."""
    return (
        statistics.median(r.lines / (r.seconds + r.start_s) for r in results),
        statistics.median((r.cpu + r.start_cpu) / r.lines * 1e6 for r in results),
    )


def table(rows: list[Comparison]) -> str:
    head = (
        f"{'row':<30}{'tool':<11}{'lines/s':>11}{'CPU-s/M':>9}{'RSS MiB':>9}{'PSS MiB':>9}"
        f"{'start s':>9}{'start CPU':>10}"
    )
    out = [head, "-" * len(head)]
    for row in rows:
        for name, results in row.results.items():
            out.append(
                f"{row.label:<30}{name:<11}{_median(results, 'lines_per_s'):>11,.0f}"
                f"{_median(results, 'cpu_per_million'):>9.2f}"
                f"{max(r.rss_mib for r in results):>9.1f}{max(r.pss_mib for r in results):>9.1f}"
                f"{_median(results, 'start_s'):>9.2f}{_median(results, 'start_cpu'):>10.2f}"
            )
        for name in row.results:
            found = ratios(row, name)
            if found is None:
                continue
            speed, cpu, rss, pss = found
            out.append(f"{'':<30}{'podkit/' + name:<20}{speed:>5.2f}x lines/s "
                       f"{cpu:>5.2f}x CPU/line {rss:>5.2f}x RSS {pss:>5.2f}x PSS")  # fmt: skip
            # The same runs timed from spawn (start-up included), for a short-lived run.
            (ps, pc) = _with_start(row.results["podkit"])
            (fs, fc) = _with_start(row.results[name])
            out.append(f"{'':<30}{'  from spawn':<20}{ps / fs:>5.2f}x lines/s "
                       f"{pc / fc:>5.2f}x CPU/line")  # fmt: skip
    return "\n".join(out)


def fastest_fluent_bit(row: Comparison) -> str | None:
    """The Fluent Bit setting with the most lines/s in this row (targets hold against it)."""
    names = [name for name in row.results if name.startswith("fb-")]
    return max(names, key=lambda n: _median(row.results[n], "lines_per_s"), default=None)


def ratios(row: Comparison, name: str | None = None) -> tuple[float, float, float, float] | None:
    """podkit/Fluent Bit (`name`, else the fastest setting) medians of lines/s, CPU-s per
    million; peak RSS and PSS."""
    name = name or fastest_fluent_bit(row)
    if name is None or name == "podkit" or name not in row.results or "podkit" not in row.results:
        return None
    p, f = row.results["podkit"], row.results[name]
    return (
        _median(p, "lines_per_s") / _median(f, "lines_per_s"),
        _median(p, "cpu_per_million") / _median(f, "cpu_per_million"),
        max(r.rss_mib for r in p) / max(r.rss_mib for r in f),
        max(r.pss_mib for r in p) / max(r.pss_mib for r in f),
    )


def fluent_bit_note() -> str:
    if FLUENT_BIT:
        version = subprocess.run(
            [FLUENT_BIT, "--version"], capture_output=True, text=True, check=False
        ).stdout.splitlines()
        return f"Fluent Bit rows: {FLUENT_BIT} ({version[0] if version else '?'})"
    return (
        "Fluent Bit rows skipped: set FLUENT_BIT=/path/to/fluent-bit (a binary built outside "
        "podkit) to run them beside podkit"
    )


def fluent_bits(parser: str | None = None) -> list[Tool]:
    """Fluent Bit on its default tail buffers and on 1M/4M buffers (none without FLUENT_BIT)."""
    if not FLUENT_BIT:
        return []
    return [FluentBit(FLUENT_BIT, parser), FluentBit(FLUENT_BIT, parser, tuned=True)]


def print_targets(rows: list[Comparison], speed_target: float, cpu_target: float | None) -> None:
    """The issue's targets, against the faster Fluent Bit setting of each row."""
    for row in rows:
        if row.mode != "batch":
            continue
        against = fastest_fluent_bit(row)
        found = ratios(row)
        if found is not None and "1 GB" not in row.label:
            speed, cpu, _, _ = found
            verdict = "met" if speed >= speed_target else "NOT met"
            text = f"target {row.label} lines/s >= {speed_target}x Fluent Bit ({against}): "
            text += f"{verdict} ({speed:.2f}x)"
            if cpu_target is not None:
                text += f"; CPU per line <= {cpu_target}x: "
                text += f"{'met' if cpu <= cpu_target else 'NOT met'} ({cpu:.2f}x)"
            print(text)
        if "1 GB" in row.label and "podkit" in row.results:
            runs = row.results["podkit"]
            rss = max(r.rss_mib for r in runs)
            pss = max(r.pss_mib for r in runs)
            print(f"target peak memory < 64 MiB on 1 GB: {'met' if pss < 64 else 'NOT met'} "
                  f"(PSS summed over the process tree, sampled: {pss:.1f} MiB; VmHWM summed, "
                  f"shared pages counted in each process: {rss:.1f} MiB)")  # fmt: skip
