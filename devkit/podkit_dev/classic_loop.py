"""The classic log adapter this helper replaces, run for comparison (tests, demo, bench).

The "log format adapter" example of many Kubernetes tutorials is a busybox container:

    tail -F /var/log/app/app.log | while read line; do
      echo "{\"timestamp\": \"...\", \"level\": \"...\", \"message\": \"$msg\"}"
    done

It emits invalid JSON for any quote or backslash in a line, strips backslashes (`read`
without -r), squeezes tabs and runs of spaces (unquoted `$line`), even expands `*` to file
names, drops an unterminated last line, turns each line of a stack trace into its own
record, and forks three `cut` processes per line. `ClassicLoop` runs exactly that with
busybox (its applets first on PATH, as in the busybox image), never at run time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
from pathlib import Path

from podkit_dev.servers import find_binary, wait_for

SCRIPT = r"""
$SOURCE "$1" | while read line; do
  ts=$(echo $line | cut -d' ' -f1,2)
  level=$(echo $line | cut -d' ' -f3)
  msg=$(echo $line | cut -d' ' -f4-)
  echo "{\"timestamp\": \"$ts\", \"level\": \"$level\", \"message\": \"$msg\"}"
done
"""
APPLETS = ("sh", "tail", "cut", "echo", "cat")


def is_json_object(line: bytes) -> bool:
    """Whether one output line is a valid JSON object (the loop's often are not)."""
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


class ClassicLoop:
    """`busybox sh -c SCRIPT LOG` with its stdout in a file; stop() ends the whole group."""

    def __init__(
        self, log_path: str | Path, workdir: str | Path | None = None, *, follow: bool = True
    ) -> None:
        self.busybox = find_binary("busybox")
        self._tmp = tempfile.TemporaryDirectory(prefix="podkit-busybox-")
        self.dir = Path(self._tmp.name)
        bin_dir = self.dir / "bin"
        bin_dir.mkdir()
        for applet in APPLETS:
            (bin_dir / applet).symlink_to(self.busybox)
        self.output_path = self.dir / "out.jsonl"
        self.log_path = str(log_path)
        self.workdir = str(workdir or self.dir)
        # follow=False reads with `cat` instead of `tail -F`, so the loop ends at the end
        # of the file (the benchmark times it); the per-line work is the same.
        source = "tail -n +1 -F" if follow else "cat"
        self.env = {"PATH": str(bin_dir), "HOME": str(self.dir), "SOURCE": source}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ClassicLoop:
        with open(self.output_path, "wb") as out:
            self.process = subprocess.Popen(
                [str(self.dir / "bin" / "sh"), "-c", SCRIPT, "sh", self.log_path],
                stdout=out,
                stderr=subprocess.DEVNULL,
                env=self.env,
                cwd=self.workdir,
                start_new_session=True,
            )
        return self

    def output(self) -> bytes:
        return self.output_path.read_bytes()

    def wait_records(self, count: int, timeout: float = 30.0) -> bytes:
        wait_for(
            lambda: self.output().count(b"\n") >= count,
            timeout=timeout,
            what=f"{count} records from the busybox loop",
        )
        return self.output()

    def wait(self) -> tuple[int, object]:
        """Wait for a `follow=False` loop to end: (status, resource usage incl. its forks)."""
        assert self.process is not None
        _, status, usage = os.wait4(self.process.pid, 0)
        self.process.returncode = os.waitstatus_to_exitcode(status)
        return self.process.returncode, usage

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def cleanup(self) -> None:
        self.stop()
        self._tmp.cleanup()

    def __enter__(self) -> ClassicLoop:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
