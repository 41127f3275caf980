"""`--check FILE`: records on stdout, a summary on stderr, exit 1 when a line failed."""

from __future__ import annotations

import io
import json
from pathlib import Path

from podkit.adapters.log_json.check import run_check
from podkit.adapters.log_json.settings import LogAdapterSettings
from podkit.config import load_settings

TRACE = (
    b"2024-05-01 12:00:00 ERROR boom\n"
    b"Traceback (most recent call last):\n"
    b'  File "a.py", line 1, in <module>\n'
    b"ValueError: y\n"
    b"2024-05-01 12:00:01 INFO ok"  # no newline at the end
)


def check(path: Path, *args: str) -> tuple[int, list[dict], str]:
    settings = load_settings(
        LogAdapterSettings, ["--check", str(path), *args], {}, prog="t", admin_default=":9702"
    )
    out, err = io.BytesIO(), io.StringIO()
    code = run_check(settings, out, err)
    return code, [json.loads(line) for line in out.getvalue().splitlines()], err.getvalue()


def test_failures_are_summarised_and_exit_1(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(TRACE)
    code, records, summary = check(log)
    assert code == 1
    assert len(records) == 5
    assert "lines=5" in summary and "parsed=2" in summary and "failed=3" in summary
    assert "failed no_match: 3" in summary


def test_multiline_joins_like_the_follower_and_exits_0(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(TRACE)
    code, records, summary = check(log, "--multiline", "python")
    assert code == 0, summary
    assert [r["level"] for r in records] == ["error", "info"]
    assert records[0]["message"].endswith("ValueError: y")
    assert records[1]["message"] == "ok"


def test_unreadable_file_is_one_line_and_status_2(tmp_path: Path) -> None:
    code, records, summary = check(tmp_path / "missing.log")
    assert code == 2 and records == []
    assert summary.strip().count("\n") == 0 and "cannot read" in summary


def test_output_file_drops_a_record_torn_by_a_kill(tmp_path: Path) -> None:
    from podkit.adapters.log_json.writer import RecordWriter

    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"a":1}\n{"b":2}\n{"c":')
    output = RecordWriter("file", str(path))
    assert output.repaired_bytes == 5
    output.close()
    assert path.read_bytes() == b'{"a":1}\n{"b":2}\n'
    path.write_bytes(b'{"torn')
    output = RecordWriter("file", str(path))
    output.close()
    assert path.read_bytes() == b""
