"""`podkit log-adapter --check FILE`: the summary's counts add up and match the records.

lines = parsed + partial + failed + pending, records is the number of JSON records on
stdout, and ingest_time the number of those stamped with the read time.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from podkit_dev.servers import podkit_argv

CLASSIC = (
    b"2024-05-01 12:00:00 INFO ok\n"
    b"not a classic line\n"
    b"2024-13-01 12:00:00 INFO a month that does not exist\n"  # parsed, time unreadable
    b"hello world\n"
)
CRI = (
    b"2024-05-01T12:00:00.000000000Z stdout F whole line\n"
    b"2024-05-01T12:00:01.000000000Z stdout P first half, \n"
    b"2024-05-01T12:00:01.100000000Z stdout F second half\n"
    b"garbage\n"
    b"2024-05-01T12:00:02.000000000Z stderr P held at the end of the file, \n"
    b"2024-05-01T12:00:02.100000000Z stderr P still held"  # no newline, no F: flushed
)
JSON = b'{"level": "info", "msg": "no time here"}\n{"time": "yesterday", "msg": "x"}\n[1, 2]\n'


def run_check(tmp_path: Path, parser: str, content: bytes) -> tuple[int, list[dict], dict]:
    log = tmp_path / "app.log"
    log.write_bytes(content)
    done = subprocess.run(
        [*podkit_argv(), "log-adapter", "--parser", parser, "--check", str(log)],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
    )
    assert done.returncode in (0, 1), done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    first = done.stderr.splitlines()[0]
    counts = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", first)}
    return done.returncode, records, counts


@pytest.mark.parametrize(
    ("parser", "content", "lines"),
    [("classic", CLASSIC, 4), ("cri", CRI, 6), ("json", JSON, 3)],
)
def test_counts_add_up_and_match_the_records(
    tmp_path: Path, parser: str, content: bytes, lines: int
) -> None:
    code, records, counts = run_check(tmp_path, parser, content)
    assert counts["lines"] == lines
    parts = counts["parsed"] + counts["partial"] + counts["failed"] + counts["pending"]
    assert parts == counts["lines"], counts
    assert counts["records"] == len(records)
    failed = sum(1 for r in records if "parse_error" in r)
    assert counts["failed"] == failed, counts
    ingest = sum(1 for r in records if r.get("timestamp_source") == "ingest")
    assert counts["ingest_time"] == ingest, counts
    assert code == (1 if failed else 0)


def test_the_classic_example_in_numbers(tmp_path: Path) -> None:
    _, records, counts = run_check(tmp_path, "classic", CLASSIC)
    # One good line; two that are not classic and one with an impossible date: failed.
    assert (counts["parsed"], counts["failed"], counts["partial"], counts["pending"]) == (
        1,
        3,
        0,
        0,
    )
    assert counts["ingest_time"] == 3
    assert [r.get("parse_error") for r in records] == [
        None,
        "no_match",
        "bad_timestamp",
        "no_match",
    ]


def test_cri_partial_lines_are_pending_until_their_record(tmp_path: Path) -> None:
    _, records, counts = run_check(tmp_path, "cri", CRI)
    messages = [r["message"] for r in records]
    assert "first half, second half" in messages
    assert "held at the end of the file, still held" in messages
    # 2 joined pairs: one line of each is pending; whole line + 2 records parsed; garbage.
    assert (counts["parsed"], counts["pending"], counts["failed"]) == (3, 2, 1), counts
