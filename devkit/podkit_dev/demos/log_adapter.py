"""`podkit demo` for log-adapter: a legacy writer's awkward lines, our JSON beside busybox's."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from podkit_dev.demo import Narrator

LEGACY_LINES = [
    b'2024-05-01 12:00:00 INFO user "alice" logged in from 10.0.0.7',
    b"2024-05-01 12:00:01 WARN upload dir C:\\data\\tmp is 95% full",
    b"2024-05-01 12:00:02 ERROR payment failed:\tcode=402\tretry=no",
    b"2024-05-01 12:00:03 ERROR unhandled exception in worker",
    b"Traceback (most recent call last):",
    b'  File "worker.py", line 42, in run',
    b'    raise ValueError("bad \\"amount\\"")',
    b'ValueError: bad "amount"',
    b"2024-05-01 12:00:04 INFO worker restarted",
]
LAST = b"2024-05-01 12:00:05 INFO last line, the writer has not ended it yet"


def demo(narrator: Narrator) -> None:
    from podkit_dev.classic_loop import ClassicLoop, is_json_object
    from podkit_dev.servers import HelperProcess, wait_for

    with tempfile.TemporaryDirectory(prefix="podkit-demo-log-adapter-") as tmp:
        work = Path(tmp)
        app_log, out = work / "app.log", work / "adapter.jsonl"
        app_log.write_bytes(b"")
        narrator.step(
            "start `podkit log-adapter --path app.log --multiline python` and, on the same "
            'file, the classic busybox `tail -F | while read line; do echo "{...}"; done`'
        )
        process = HelperProcess(
            "log-adapter", "--path", str(app_log), "--multiline", "python", "--output", "file",
            "--output-path", str(out), "--flush-timeout", "0.5s", "--refresh-interval", "0.2s",
        )  # fmt: skip
        with narrator.helper(process) as adapter, ClassicLoop(app_log, workdir=work) as loop:
            narrator.step("the legacy app writes quotes, a backslash path, tabs, a stack trace")
            with open(app_log, "ab") as handle:
                handle.write(b"\n".join(LEGACY_LINES) + b"\n" + LAST)
            narrator.show("app.log (what the legacy app wrote)", app_log.read_text())
            theirs = loop.wait_records(len(LEGACY_LINES)).splitlines()
            wait_for(
                lambda: out.exists() and out.read_bytes().count(b"\n") >= 6,
                timeout=20,
                what="the adapter's records",
            )
            ours = out.read_bytes().splitlines()
            invalid = sum(not is_json_object(line) for line in theirs)
            narrator.show(
                f"busybox loop: {len(theirs)} records, {invalid} of them invalid JSON",
                b"\n".join(theirs).decode("utf-8", "replace"),
            )
            narrator.show(
                f"podkit log-adapter: {len(ours)} records, all valid JSON; the stack trace is "
                "one record, the unterminated last line is there",
                b"\n".join(ours).decode(),
            )
            metrics = [
                line
                for line in adapter.metrics().splitlines()
                if line.startswith("log_adapter_") and "_created" not in line
            ]
            narrator.show("GET /metrics (log_adapter_*)", "\n".join(metrics), limit=8)
        records = [json.loads(line) for line in ours] if all(map(is_json_object, ours)) else []
        ok = (
            len(records) == 6
            and "Traceback" in records[3]["message"]
            and records[-1]["message"].startswith("last line")
            and invalid > 0
        )
        narrator.result(
            ok,
            f"adapter: {len(records)} valid records (trace joined, nothing lost); busybox: "
            f"{invalid} invalid of {len(theirs)}, last line lost",
        )
