"""`podkit log-adapter` as a real process: follow, rotate, restart, multiline, metrics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from podkit_dev.servers import HelperProcess, wait_for
from tests.servers import require_binary

FAST = ("--refresh-interval", "0.2s", "--rotate-wait", "1s", "--flush-timeout", "0.3s")


def records(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def wait_records(path: Path, count: int, timeout: float = 20.0) -> list[dict]:
    wait_for(lambda: len(records(path)) >= count, timeout=timeout, what=f"{count} records")
    return records(path)


def append(path: Path, *lines: bytes) -> None:
    with open(path, "ab") as handle:
        handle.write(b"".join(line + b"\n" for line in lines))


def test_rotation_and_restart_lose_nothing(
    tmp_path: Path, run_helper: Callable[..., HelperProcess]
) -> None:
    logs, state, out = tmp_path / "logs", tmp_path / "state", tmp_path / "out.jsonl"
    logs.mkdir()
    app_log = logs / "app.log"
    append(app_log, *(f"2024-05-01 12:00:{i:02d} INFO line {i}".encode() for i in range(5)))
    args = ("--path", str(logs / "*.log"), "--state-dir", str(state), "--output", "file",
            "--output-path", str(out), *FAST)  # fmt: skip
    adapter = run_helper("log-adapter", *args)
    wait_records(out, 5)

    # Rename rotation: the old file gets its last lines, the new one is picked up.
    append(app_log, b"2024-05-01 12:01:00 INFO before rotation")
    os.rename(app_log, logs / "app.log.1")
    append(logs / "app.log.1", b"2024-05-01 12:01:01 INFO written late to the old file")
    append(app_log, b"2024-05-01 12:01:02 INFO first line of the new file")
    wait_records(out, 8)

    # Graceful stop; lines written while it is down are read on restart, none twice.
    assert adapter.stop(signal.SIGTERM) == 0
    append(app_log, b"2024-05-01 12:02:00 INFO written while the adapter was down")
    run_helper("log-adapter", *args)
    got = wait_records(out, 9)
    messages = [r["message"] for r in got]
    assert messages[:5] == [f"line {i}" for i in range(5)]
    assert set(messages[5:]) == {
        "before rotation",
        "written late to the old file",
        "first line of the new file",
        "written while the adapter was down",
    }
    assert len(messages) == len(set(messages)) == 9


def test_stack_traces_become_one_record_and_metrics_count(
    tmp_path: Path, run_helper: Callable[..., HelperProcess]
) -> None:
    app_log, out = tmp_path / "app.log", tmp_path / "out.jsonl"
    app_log.write_bytes(b"")
    adapter = run_helper(
        "log-adapter", "--path", str(app_log), "--output", "file", "--output-path", str(out),
        "--multiline", "python", *FAST,
    )  # fmt: skip
    append(
        app_log,
        b"2024-05-01 12:00:00 ERROR unhandled exception",
        b"Traceback (most recent call last):",
        b'  File "app.py", line 3, in <module>',
        b'    raise ValueError("bad \\"value\\"")',
        b'ValueError: bad "value"',
        b"2024-05-01 12:00:01 INFO recovered",
        b"garbage that is not in the format \xff",
    )
    got = wait_records(out, 3)
    assert got[0]["level"] == "error"
    assert got[0]["message"].splitlines() == [
        "unhandled exception",
        "Traceback (most recent call last):",
        '  File "app.py", line 3, in <module>',
        '    raise ValueError("bad \\"value\\"")',
        'ValueError: bad "value"',
    ]
    assert got[1]["message"] == "recovered"
    assert got[2]["parse_error"] == "no_match" and "raw_b64" in got[2]

    wait_for(
        lambda: "log_adapter_records_out_total 3.0" in adapter.metrics(), what="metrics", timeout=10
    )
    text = adapter.metrics()
    assert 'log_adapter_parse_failures_total{kind="no_match",parser="classic"} 1.0' in text
    assert "log_adapter_lines_in_total 3.0" in text
    assert "log_adapter_invalid_utf8_lines_total 1.0" in text
    assert "log_adapter_lag_bytes 0.0" in text
    promtool = require_binary("promtool")
    lint = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    problems = [line for line in (lint.stdout + lint.stderr).splitlines() if "log_adapter" in line]
    assert not problems, problems


def test_bad_settings_exit_2_with_one_line() -> None:
    for args, expected in [
        (["--path", "/tmp/x.log", "--parser", "nope"], "unknown parser 'nope'"),
        (
            ["--path", "/tmp/x.log", "--parser", "regex"],
            "--parser regex needs the option 'pattern'",
        ),
        (["--path", "/tmp/x.log", "--output", "file"], "--output file needs --output-path"),
        (["--path", "/tmp/x.log", "--timezone", "Mars/Base"], "unknown time zone"),
        ([], "give --path"),
    ]:
        done = subprocess.run(
            [sys.executable, "-m", "podkit.cli", "log-adapter", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
        assert expected in done.stderr


def test_sigkill_mid_stream_repeats_at_most_never_loses(
    tmp_path: Path, run_helper: Callable[..., HelperProcess]
) -> None:
    """At-least-once: a kill -9 may write a batch twice after the restart, never drop one."""
    logs, state, out = tmp_path / "logs", tmp_path / "state", tmp_path / "out.jsonl"
    logs.mkdir()
    total = 20_000
    args = ("--path", str(logs / "*.log"), "--state-dir", str(state), "--output", "file",
            "--output-path", str(out), *FAST)  # fmt: skip
    adapter = run_helper("log-adapter", *args)
    with open(logs / "app.log", "ab") as handle:
        for i in range(total):
            handle.write(f"2024-05-01 12:00:00 INFO line {i}\n".encode())
    wait_for(lambda: out.exists() and out.stat().st_size > 0, what="first records", timeout=20)
    adapter.stop(signal.SIGKILL)
    run_helper("log-adapter", *args)

    def complete() -> bool:
        return {r["message"] for r in records(out)} >= {f"line {i}" for i in range(total)}

    wait_for(complete, timeout=60, what=f"all {total} lines after the restart")
    assert all("parse_error" not in r for r in records(out))


def test_drain_writes_the_unterminated_last_line(
    tmp_path: Path, run_helper: Callable[..., HelperProcess]
) -> None:
    """SIGTERM: the line still waiting for its newline is written before the exit."""
    app_log, out = tmp_path / "app.log", tmp_path / "out.jsonl"
    app_log.write_bytes(b"2024-05-01 12:00:00 INFO first\n2024-05-01 12:00:01 WARN no newline yet")
    adapter = run_helper(
        "log-adapter", "--path", str(app_log), "--output", "file", "--output-path", str(out),
        "--flush-timeout", "10m", "--refresh-interval", "0.2s",
    )  # fmt: skip
    wait_records(out, 1)
    assert adapter.stop(signal.SIGTERM) == 0
    assert [r["message"] for r in records(out)] == ["first", "no newline yet"]


def test_failing_output_turns_not_ready_and_acknowledges_nothing(
    tmp_path: Path, run_helper: Callable[..., HelperProcess]
) -> None:
    """/dev/full: every write fails (ENOSPC). The adapter keeps running, not ready, and
    its checkpoint does not move past the lines it could not write."""
    app_log, state = tmp_path / "app.log", tmp_path / "state"
    app_log.write_bytes(b"2024-05-01 12:00:00 INFO can not be written\n")
    adapter = run_helper(
        "log-adapter", "--path", str(app_log), "--output", "file", "--output-path", "/dev/full",
        "--state-dir", str(state), "--shutdown-timeout", "2s", *FAST, wait="livez",
    )  # fmt: skip
    adapter.wait_http("/readyz", status=503, timeout=20)
    assert any(e.get("event") == "output_write_failed" for e in adapter.log_events())
    assert "log_adapter_records_out_total 0.0" in adapter.metrics()  # built, never written
    adapter.stop(signal.SIGTERM)

    # Restarted with a working output, the same line comes out: it was never acknowledged.
    out = tmp_path / "out.jsonl"
    run_helper("log-adapter", "--path", str(app_log), "--output", "file", "--output-path",
               str(out), "--state-dir", str(state), *FAST)  # fmt: skip
    assert [r["message"] for r in wait_records(out, 1)] == ["can not be written"]
