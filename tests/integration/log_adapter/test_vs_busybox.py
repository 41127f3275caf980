"""The classic busybox `tail -F | while read` adapter and ours, on the same awkward lines.

The busybox loop's output is shown to be invalid JSON (and lossy) where ours is valid and
complete. busybox is a real binary here; with CI=true its absence fails the test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.servers import require_binary

# Awkward but ordinary lines of a legacy app. The last one has no newline (yet).
AWKWARD = [
    b'2024-05-01 12:00:00 INFO user "alice" logged in',
    b"2024-05-01 12:00:01 WARN path C:\\temp\\new is full",
    b"2024-05-01 12:00:02 ERROR request failed:\tstatus=500\tretry=no",
    b"2024-05-01 12:00:03 ERROR unhandled exception",
    b"Traceback (most recent call last):",
    b'  File "app.py", line 3, in <module>',
    b"ValueError: bad value *",
    b"2024-05-01 12:00:04 INFO shutting down",
]
UNTERMINATED = b"2024-05-01 12:00:05 INFO last line, not yet terminated"


def test_busybox_loop_breaks_where_the_adapter_does_not(tmp_path: Path) -> None:
    require_binary("busybox")
    from podkit_dev.classic_loop import ClassicLoop, is_json_object

    log = tmp_path / "app.log"
    log.write_bytes(b"\n".join(AWKWARD) + b"\n" + UNTERMINATED)
    # A file named like a word of a line: the loop's unquoted $line expands `*` to it.
    (tmp_path / "GLOBBED_FILE").write_bytes(b"")

    with ClassicLoop(log, workdir=tmp_path) as loop:
        theirs = loop.wait_records(len(AWKWARD)).splitlines()
    invalid = [line for line in theirs if not is_json_object(line)]
    assert len(theirs) == len(AWKWARD)  # the unterminated last line never comes out
    assert len(invalid) >= 2, theirs  # the quotes in a message and in the traceback
    assert any(b"C:tempnew" in line for line in theirs)  # `read` ate the backslashes
    assert any(b"GLOBBED_FILE" in line for line in theirs)  # `*` became file names
    assert not any(b"\t" in line for line in theirs)  # tabs squeezed to spaces
    assert any(b'"timestamp": "Traceback (most"' in line for line in theirs)  # trace split

    ours = subprocess.run(
        [sys.executable, "-m", "podkit.cli", "log-adapter", "--check", str(log)],
        capture_output=True,
        timeout=60,
    )
    records = [json.loads(line) for line in ours.stdout.splitlines()]
    assert len(records) == len(AWKWARD) + 1  # every line, the unterminated one too
    assert records[0]["message"] == 'user "alice" logged in'
    assert records[1]["message"] == "path C:\\temp\\new is full"
    assert records[2]["message"] == "request failed:\tstatus=500\tretry=no"
    assert records[6]["message"] == "ValueError: bad value *"
    assert records[-1]["message"] == "last line, not yet terminated"
    # Without the multiline stage the traceback lines are failures, but kept and counted.
    assert [r.get("parse_error") for r in records[4:7]] == ["no_match"] * 3
    assert ours.returncode == 1
