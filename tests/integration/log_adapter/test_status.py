"""`podkit ctl status` against a running `podkit log-adapter`: its key figures are shown."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from podkit_dev.servers import HelperProcess, podkit_argv, wait_for

FAST = ("--refresh-interval", "0.2s", "--flush-timeout", "0.3s")
GOOD = b"2024-05-01 12:00:00 INFO hello"
BAD = b"not a classic line"


def ctl_status(admin: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*podkit_argv(), "ctl", "status", "--admin", admin, *extra],
        capture_output=True,
        text=True,
        timeout=30,
        env=dict(os.environ),
    )


def figures(admin: str) -> dict:
    done = ctl_status(admin, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    (report,) = json.loads(done.stdout)["helpers"]
    assert report["helper"] == "log-adapter"
    return report["figures"]


def test_ctl_status_shows_the_adapter_s_figures(
    tmp_path: Path, run_helper: Callable[..., HelperProcess]
) -> None:
    logs, out = tmp_path / "logs", tmp_path / "out.jsonl"
    logs.mkdir()
    (logs / "a.log").write_bytes(GOOD + b"\n" + BAD + b"\n" + GOOD + b"\n")
    (logs / "b.log").write_bytes(GOOD + b"\n")
    adapter = run_helper(
        "log-adapter", "--path", str(logs / "*.log"), "--output", "file", "--output-path",
        str(out), "--workers", "1", *FAST,
    )  # fmt: skip
    wait_for(
        lambda: figures(adapter.admin).get("records_written") == 4,
        timeout=20,
        what="4 records written, as /status says",
    )
    shown = figures(adapter.admin)
    assert shown == {
        "lines_read": 4,
        "records_written": 4,
        "parse_failures": 1,
        "read_bytes": 3 * len(GOOD) + len(BAD),
        "files_followed": 2,
        "lost_bytes": 0,
        "workers": 1,
        "worker_restarts": 0,
    }
    assert len(out.read_bytes().splitlines()) == 4
    table = ctl_status(adapter.admin)
    assert table.returncode == 0
    row = table.stdout.splitlines()[1]
    assert "lines read 4" in row and "records written 4" in row and "parse failures 1" in row
    assert "files followed 2" in row and "lost 0B" in row
