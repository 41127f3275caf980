"""Shared pieces of the log-shipper end-to-end tests: an nginx-like writer and counting.

Every line a writer produces carries `seq=N`; the tests read what arrived at the sink
and count each N, so a lost line or a duplicate is found by number, not by a total.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import orjson

SEQ = re.compile(r"seq=(\d+)")


def nginx_line(seq: int) -> bytes:
    return (
        f"10.0.{seq % 250}.{seq % 200} - - [25/Nov/2026:04:00:{seq % 60:02d} +0000] "
        f'"GET /item/{seq} HTTP/1.1" 200 {600 + seq % 400} "-" "podkit-test/1.0" seq={seq}'
    ).encode()


class Writer(threading.Thread):
    """Appends nginx-like lines to `path`, renaming it to path.1, path.2... every
    `rotate_every` lines (the old generations stay, as logrotate's `rotate N` keeps them)."""

    def __init__(
        self,
        path: Path,
        total: int,
        *,
        start: int = 0,
        rotate_every: int = 0,
        lines_per_second: float = 0.0,
        chunk: int = 100,
    ) -> None:
        super().__init__(daemon=True, name=f"writer-{path.name}")
        self.path = path
        self.total = total
        self.start_seq = start
        self.rotate_every = rotate_every
        self.rate = lines_per_second
        self.chunk = chunk
        self.written = 0
        self.rotations = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._write()
        except BaseException as exc:  # surfaced by finish()
            self.error = exc

    def _write(self) -> None:
        started = time.monotonic()
        handle = open(self.path, "ab")  # noqa: SIM115 - reopened on every rotation
        since_rotation = 0
        while self.written < self.total:
            count = min(self.chunk, self.total - self.written)
            if self.rotate_every:
                count = min(count, self.rotate_every - since_rotation)
            seqs = range(self.start_seq + self.written, self.start_seq + self.written + count)
            handle.write(b"".join(nginx_line(s) + b"\n" for s in seqs))
            handle.flush()
            self.written += count
            since_rotation += count
            if self.rotate_every and since_rotation >= self.rotate_every:
                handle.close()
                self.rotations += 1
                os.rename(self.path, f"{self.path}.{self.rotations}")
                handle = open(self.path, "ab")  # noqa: SIM115
                since_rotation = 0
            if self.rate:
                ahead = self.written / self.rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)  # pacing the writer, not waiting for a result
        handle.close()

    def finish(self, timeout: float = 60) -> None:
        self.join(timeout)
        assert not self.is_alive(), "writer did not finish"
        if self.error is not None:
            raise self.error


@dataclass
class Tally:
    counts: Counter[int]

    def missing(self, expected: range) -> list[int]:
        return [s for s in expected if s not in self.counts]

    @property
    def duplicates(self) -> int:
        return sum(n - 1 for n in self.counts.values() if n > 1)

    def __len__(self) -> int:
        return len(self.counts)


def tally_messages(messages: list[str]) -> Tally:
    counts: Counter[int] = Counter()
    for message in messages:
        match = SEQ.search(message)
        if match:
            counts[int(match.group(1))] += 1
    return Tally(counts)


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    records = []
    for line in path.read_bytes().splitlines():
        if line.strip():
            records.append(orjson.loads(line))
    return records


def tally_file(path: Path) -> Tally:
    return tally_messages([r["message"] for r in read_jsonl(path)])


def metric(text: str, name: str, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def peak_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0
