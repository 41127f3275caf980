"""kill -9 at random points: a real follower process that writes what it acks, killed and
restarted while a writer appends and rotates. Nothing may be lost; lines may come again
after a kill, at most one budget (`--buffer-bytes`) per kill."""

from __future__ import annotations

import asyncio
import os
import random
import signal
from collections import Counter, defaultdict
from pathlib import Path

from podkit_dev.servers import until

BUFFER = 32768


def parse(out: Path) -> list[list[tuple[str, int]]]:
    """The output split into runs (one per process start): (path, line number)."""
    runs: list[list[tuple[str, int]]] = []
    for raw in out.read_bytes().splitlines():
        if raw == b"#start":
            runs.append([])
            continue
        path, _, line = raw.partition(b"\t")
        words = line.split()
        if len(words) == 2 and words[1].isdigit():
            runs[-1].append((path.decode(), int(words[1])))
        # else: a line cut short by the kill (not acked: the next run delivers it again)
    return runs


def delivered(out: Path) -> int:
    return out.read_bytes().count(b"\tline ") if out.exists() else 0


async def test_sigkill_at_random_points_loses_nothing(tmp_path, spawn):
    rng = random.Random(int(os.environ.get("FOLLOW_KILL_SEED", "20261125")))
    log, out, state = tmp_path / "app.log", tmp_path / "out.txt", tmp_path / "state"
    writer = await spawn("write", str(log), "--burst", "20")
    await until(log.exists, what="the writer's file")
    consume = ("consume", "--out", str(out), "--state-dir", str(state))
    consume += ("--buffer-bytes", str(BUFFER), str(log))
    kills = 0
    for round_ in range(6):
        follower = await spawn(*consume)
        assert await asyncio.wait_for(follower.stdout.readline(), 20) == b"ready\n"
        target = delivered(out) + rng.randrange(50, 3000)
        await until(lambda t=target: delivered(out) >= t, timeout=30, what="progress")
        if round_ in (2, 4):
            os.rename(log, tmp_path / f"app.log.{round_}")  # rotation around a kill
            writer.send_signal(signal.SIGHUP)
            assert (await writer.stdout.readline()).startswith(b"reopened")
        follower.kill()  # SIGKILL: no drain, no checkpoint save
        await follower.wait()
        kills += 1
    writer.send_signal(signal.SIGTERM)
    total = int((await writer.stdout.read()).split()[-1])
    await writer.wait()
    follower = await spawn(*consume)
    assert await asyncio.wait_for(follower.stdout.readline(), 20) == b"ready\n"

    def all_there() -> bool:
        return {n for run in parse(out) for _, n in run} >= set(range(total))

    await until(all_there, timeout=60, what="every written line delivered")
    follower.send_signal(signal.SIGTERM)  # drain, save, exit 0
    assert await asyncio.wait_for(follower.wait(), 20) == 0

    runs = parse(out)
    seen = Counter(n for run in runs for _, n in run)
    assert set(seen) == set(range(total)), "every line delivered, nothing invented"
    for run in runs:
        per_file: dict[str, list[int]] = defaultdict(list)
        for path, n in run:
            per_file[path].append(n)
        for numbers in per_file.values():
            assert numbers == sorted(numbers), "in order within a file during a run"
    # Again only after a kill, and at most one budget of bytes per kill.
    again_bytes = sum((len(f"line {n}\n")) * (k - 1) for n, k in seen.items())
    assert again_bytes <= kills * BUFFER
    for run in runs:
        assert len({n for _, n in run}) == len(run), "within one run no line comes twice"
    print(f"{total} lines, {kills} kills, {again_bytes} bytes delivered again")
