"""`podkit demo` for log-shipper: an nginx-like writer with rotations, shipped to a file."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

if TYPE_CHECKING:
    from podkit_dev.demo import Narrator

SEQ = re.compile(r"seq=(\d+)$")


def nginx_line(seq: int) -> bytes:
    """An nginx combined-format access line carrying its sequence number."""
    return (
        f"10.1.{seq % 250}.{seq % 199} - - [25/Nov/2026:10:{seq // 60 % 60:02d}:{seq % 60:02d}"
        f' +0000] "GET /shop/item/{seq % 5000}?ref=home HTTP/1.1" {200 if seq % 17 else 404}'
        f' {512 + seq % 900} "https://shop.example/" "Mozilla/5.0 (X11; Linux x86_64)"'
        f" seq={seq}"
    ).encode()


def write_with_rotations(
    path: Path, total: int, rotate_every: int, rate: float, progress: list[int]
) -> int:
    """Append `total` lines at `rate`/s, renaming the file away every `rotate_every`."""
    rotations = 0
    started = time.monotonic()
    handle = open(path, "ab")  # noqa: SIM115 - reopened after each rotation
    for start in range(0, total, 100):
        seqs = range(start, min(start + 100, total))
        handle.write(b"".join(nginx_line(s) + b"\n" for s in seqs))
        handle.flush()
        progress[0] = seqs[-1] + 1
        if progress[0] % rotate_every == 0 and progress[0] < total:
            handle.close()
            rotations += 1
            os.rename(path, f"{path}.{rotations}")  # what logrotate does
            handle = open(path, "ab")  # noqa: SIM115
        ahead = progress[0] / rate - (time.monotonic() - started)
        if ahead > 0:
            time.sleep(ahead)
    handle.close()
    return rotations


def count_delivered(out: Path) -> tuple[int, int]:
    """(distinct seq numbers, duplicates) in the file output."""
    if not out.exists():
        return 0, 0
    seen: set[int] = set()
    dupes = 0
    for line in out.read_bytes().splitlines():
        match = SEQ.search(orjson.loads(line)["message"])
        if match:
            seq = int(match.group(1))
            dupes += seq in seen
            seen.add(seq)
    return len(seen), dupes


def demo(narrator: Narrator) -> None:
    from podkit_dev.servers import HelperProcess, TempDir, wait_for

    tmp = TempDir("shipper-demo")
    try:
        logs = tmp.path / "nginx"
        logs.mkdir()
        out = tmp.path / "shipped.jsonl"
        total, rotate_every = 30_000, 7_500
        narrator.step(
            f"start `podkit log-shipper --path {logs}/access.log* --output file "
            f"--file-path {out.name}` (nginx's emptyDir, shipped to a file)"
        )
        process = HelperProcess(
            "log-shipper",
            "--path", f"{logs}/access.log*", "--state-dir", str(tmp.path / "state"),
            "--output", "file", "--file-path", str(out), "--batch-timeout", "100ms",
            "--refresh-interval", "250ms",
            env={"POD_NAME": "web-7d9f", "POD_NAMESPACE": "shop", "NODE_NAME": "node-1"},
        )  # fmt: skip
        with narrator.helper(process) as shipper:
            progress = [0]
            result: list[int] = []
            narrator.step(
                f"an nginx-like writer appends {total} lines at 10,000/s, "
                f"rotating access.log every {rotate_every} lines"
            )
            writer = threading.Thread(
                target=lambda: result.append(
                    write_with_rotations(logs / "access.log", total, rotate_every, 10_000, progress)
                ),
                daemon=True,
            )
            writer.start()
            writer.join(60)
            narrator.step(f"writer done: {progress[0]} lines written, {result[0]} rotations")
            wait_for(lambda: count_delivered(out)[0] >= total, timeout=60, what="delivery")
            first = out.read_bytes().split(b"\n", 1)[0]
            narrator.show(
                "first shipped record",
                orjson.dumps(orjson.loads(first), option=orjson.OPT_INDENT_2).decode(),
            )
            metrics = shipper.metrics()
            shown = [
                line for line in metrics.splitlines()
                if line.startswith(("log_shipper_records_sent_total",
                                    "log_shipper_lines_acked_total",
                                    "podkit_follow_rotations", "podkit_follow_lost_bytes"))
            ]  # fmt: skip
            narrator.show("metrics", "\n".join(shown))
            narrator.step("SIGTERM: the shipper drains and checkpoints")
            shipper.process.send_signal(signal.SIGTERM)
            code = shipper.wait_exit(30)
            delivered, dupes = count_delivered(out)
            narrator.result(
                code == 0 and delivered == total and dupes == 0,
                f"written {total}, delivered {delivered} (duplicates {dupes}), exit {code}",
            )
    finally:
        tmp.cleanup()
