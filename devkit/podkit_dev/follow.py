"""Test helpers for code that follows files: a collecting consumer and condition waits.

Used by podkit's own tests and by the helpers built on the follower (log-shipper,
log-adapter); nothing here sleeps and hopes: every wait is on a condition, with a timeout.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from podkit.follow.api import Batch, FileEvent, FollowConfig
from podkit.follow.follower import Follower
from podkit_dev.servers import until


class BatchRecorder:
    """Iterates a follower in a task, keeps every batch, and acks (all, or when told)."""

    def __init__(self, follower: Follower, *, auto_ack: bool = True) -> None:
        self.follower = follower
        self.auto_ack = auto_ack
        self.batches: list[Batch] = []
        self.task: asyncio.Task[None] | None = None

    def start(self) -> BatchRecorder:
        self.task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        async for batch in self.follower:
            self.batches.append(batch)
            if self.auto_ack:
                self.follower.ack(batch)

    async def stop(self) -> None:
        """Drain the follower and wait for the iteration to end."""
        await self.follower.drain()
        if self.task is not None:
            await self.task

    def lines(self, path: str | None = None) -> list[bytes]:
        return [line for b in self.batches if path is None or b.path == path for line in b.lines]

    def events(self, kind: str | None = None) -> list[FileEvent]:
        return [e for b in self.batches for e in b.events if kind is None or e.kind == kind]

    def by_file(self) -> dict[str, list[bytes]]:
        """Lines per file identity (dev:inode), in delivery order."""
        out: dict[str, list[bytes]] = {}
        for b in self.batches:
            out.setdefault(f"{b.file_id.dev}:{b.file_id.inode}", []).extend(b.lines)
        return out


def numbered(prefix: str, start: int, stop: int) -> bytes:
    """`prefix N` lines for N in [start, stop), each ending in a newline."""
    return b"".join(f"{prefix} {i}\n".encode() for i in range(start, stop))


def expected(prefix: str, start: int, stop: int) -> list[bytes]:
    """The lines of `numbered(prefix, start, stop)` as a follower hands them out."""
    return [f"{prefix} {i}".encode() for i in range(start, stop)]


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as fh:
        fh.write(data)


# Test timings: quick polls and rotation; a flush timeout long enough that a line written
# in two parts is never handed out as two (a test of the flush timeout sets its own).
FAST: dict[str, float] = {
    "poll_interval": 0.05,
    "refresh_interval": 0.2,
    "rotate_wait": 1.0,
    "flush_timeout": 5.0,
}


def follow_config(directory: Path, *globs: str, **kw: Any) -> FollowConfig:
    """A config following `globs` under `directory`, with its state in `directory/state`
    and the FAST timings; `kw` overrides any of them."""
    settings: dict[str, Any] = {"state_dir": directory / "state", **FAST, **kw}
    return FollowConfig(include=tuple(str(directory / g) for g in globs), **settings)


async def run_follower(
    config: FollowConfig, count: int, *, what: str
) -> tuple[Follower, BatchRecorder]:
    """One run: follow (acking everything) until `count` lines arrived, then drain and exit."""
    async with Follower(config) as follower:
        c = BatchRecorder(follower).start()
        await until(lambda: len(c.lines()) == count, what=what)
        await c.stop()
    return follower, c


async def ack_first(
    config: FollowConfig, batches: int, acked: int
) -> tuple[Follower, BatchRecorder]:
    """One run: wait for `batches` batches, ack only the first `acked`, then drain and exit."""
    async with Follower(config) as follower:
        c = BatchRecorder(follower, auto_ack=False).start()
        await until(lambda: len(c.batches) == batches, what=f"{batches} batches")
        for batch in c.batches[:acked]:
            follower.ack(batch)
        await c.stop()
    return follower, c


# --- processes for fault tests: `python -m podkit_dev.follow write|consume ...` ---------


def consumed(out: Path) -> list[list[tuple[str, int]]]:
    """What `consume` wrote to `out`, split into runs (one per process start):
    (path, line number) of every `prefix N` line; lines cut short by a kill are skipped."""
    runs: list[list[tuple[str, int]]] = []
    if not out.exists():
        return runs
    for raw in out.read_bytes().splitlines():
        if raw == b"#start":
            runs.append([])
            continue
        path, _, line = raw.partition(b"\t")
        words = line.split()
        if runs and len(words) == 2 and words[1].isdigit():
            runs[-1].append((path.decode(), int(words[1])))
    return runs


def consumed_count(out: Path) -> int:
    """Lines `consume` has written to `out` so far (cheap: no parsing)."""
    return out.read_bytes().count(b"\n") if out.exists() else 0


def _write(path: str, prefix: str, count: int, burst: int) -> None:
    """Append `prefix N` lines; SIGHUP reopens the path (as apps do after rotation)."""
    import signal

    reopen = False
    stop = False

    def on_hup(signum: int, frame: object) -> None:
        nonlocal reopen
        reopen = True

    def on_term(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGHUP, on_hup)
    signal.signal(signal.SIGTERM, on_term)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    i = 0
    while not stop and (count <= 0 or i < count):
        if reopen:
            reopen = False
            os.close(fd)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            print(f"reopened {i}", flush=True)
        n = burst if count <= 0 else min(burst, count - i)
        os.write(fd, numbered(prefix, i, i + n))
        i += n
        time.sleep(0.001)  # a steady writer, not a disk filler
    os.close(fd)
    print(f"wrote {i}", flush=True)


async def _consume(out: str, state_dir: str, globs: list[str], buffer_bytes: int) -> None:
    """Follow `globs`; write each line as `path#dev:inode\\tline` to `out`, then ack."""
    import signal

    config = FollowConfig(
        include=tuple(globs),
        state_dir=Path(state_dir),
        buffer_bytes=buffer_bytes,
        batch_max_bytes=min(buffer_bytes // 4, 1 << 20),
        poll_interval=0.02,
        refresh_interval=0.2,
        rotate_wait=1.0,
        flush_timeout=60.0,
    )
    fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    # A kill -9 can cut our last write short: start on a fresh line.
    os.write(fd, b"\n#start\n")
    follower = Follower(config)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, lambda: asyncio.ensure_future(follower.drain()))
    async with follower:
        print("ready", flush=True)
        async for batch in follower:
            if batch.lines:
                # path#dev:inode: "in order within a file" is per file, not per name
                # (a rotated file's tail and its successor share the name).
                fid = batch.file_id
                prefix = f"{batch.path}#{fid.dev}:{fid.inode}\t".encode()
                os.write(fd, b"".join(prefix + line + b"\n" for line in batch.lines))
            follower.ack(batch)
    os.close(fd)


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m podkit_dev.follow")
    sub = parser.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write")
    w.add_argument("path")
    w.add_argument("--prefix", default="line")
    w.add_argument("--count", type=int, default=0, help="0: until SIGTERM")
    w.add_argument("--burst", type=int, default=10)
    c = sub.add_parser("consume")
    c.add_argument("--out", required=True)
    c.add_argument("--state-dir", required=True)
    c.add_argument("--buffer-bytes", type=int, default=65536)
    c.add_argument("globs", nargs="+")
    args = parser.parse_args(argv)
    if args.cmd == "write":
        _write(args.path, args.prefix, args.count, args.burst)
    else:
        asyncio.run(_consume(args.out, args.state_dir, args.globs, args.buffer_bytes))


if __name__ == "__main__":
    main()
