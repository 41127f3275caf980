"""Issue 14's torture with the real `podkit log-shipper` (`--path .../app.log --output
file`): while an app appends 100,000 numbered lines, app.log is renamed twice and
copytruncated once, and the shipper is SIGKILLed twice (the copytruncate happens while
it is down: the case that lost 25,000 lines before). Every line must reach the file.

The app pauses around the copytruncate (it appends under a lock the rotation holds):
lines written between the copy and the truncation are in neither file, which no shipper
can help. `FOLLOW_TORTURE_LINES` changes the count.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from pathlib import Path

from podkit_dev.servers import wait_for
from tests.integration.log_shipper.e2e import nginx_line, tally_file


class App(threading.Thread):
    """Appends numbered lines, opening the path for every chunk (as an app that reopens
    its log); `lock` pauses it. It writes no further than `allowed`, which the test moves
    on as the shipper makes progress: on a loaded machine the rotations and kills still
    happen while it writes, whatever the speeds."""

    def __init__(self, path: Path, total: int, rate: float) -> None:
        super().__init__(daemon=True, name="app")
        self.path, self.total, self.rate = path, total, rate
        self.lock = threading.Lock()
        self.written = 0
        self.allowed = 0

    def run(self) -> None:
        started = time.monotonic()
        while self.written < self.total:
            if self.written >= self.allowed:
                time.sleep(0.005)  # held back by the test (a gate, not a wait for a result)
                continue
            n = min(50, self.total - self.written, self.allowed - self.written)
            with self.lock, open(self.path, "ab") as fh:
                fh.write(
                    b"".join(nginx_line(s) + b"\n" for s in range(self.written, self.written + n))
                )
                self.written += n
            ahead = self.written / self.rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)  # pacing the writer, not waiting for a result


def test_rename_twice_copytruncate_and_two_kills_lose_no_line(run_helper, tmp_path):
    total = int(os.environ.get("FOLLOW_TORTURE_LINES", "100000"))
    logs = tmp_path / "logs"
    logs.mkdir()
    log, out = logs / "app.log", tmp_path / "out.jsonl"
    args = [
        "--path", str(log), "--state-dir", str(tmp_path / "state"),
        "--output", "file", "--file-path", str(out),
        "--batch-timeout", "50ms", "--refresh-interval", "200ms", "--rotate-wait", "1s",
        "--buffer-bytes", "1MiB",
    ]  # fmt: skip
    app = App(log, total, rate=total / 12)
    ahead = total // 4
    app.allowed = ahead
    app.start()

    def shipped() -> int:
        count = len(tally_file(out))
        app.allowed = max(app.allowed, count + ahead)
        return count

    def progress(n: int) -> None:
        target = shipped() + n
        wait_for(lambda: shipped() >= target, timeout=60, what=f"{n} more lines shipped")

    def rename(name: str) -> None:
        with app.lock:
            os.rename(log, logs / name)  # not matched by --path: read through the old handle

    shipper = run_helper("log-shipper", *args)
    progress(total // 10)
    rename("app.log.1")
    progress(total // 10)
    shipper.stop(signal.SIGKILL)  # kill 1: no drain, no last checkpoint
    written = app.written
    app.allowed = max(app.allowed, written + total // 5 + 1000)
    wait_for(lambda: app.written > written + total // 5, timeout=60, what="the app writes on")
    with app.lock:  # copytruncate while the shipper is down
        shutil.copy(log, logs / "app.log.ct")
        os.truncate(log, 0)
    shipper = run_helper("log-shipper", *args)
    progress(total // 10)
    rename("app.log.2")
    progress(total // 20)
    shipper.stop(signal.SIGKILL)  # kill 2
    shipper = run_helper("log-shipper", *args)
    app.allowed = total
    app.join(60)
    assert app.written == total
    wait_for(lambda: shipped() == total, timeout=120, what=f"all {total} lines shipped")
    assert shipper.stop(signal.SIGTERM) == 0
    tally = tally_file(out)
    assert tally.missing(range(total)) == [], "0 lines lost"
    copied = [r for r in _records(out) if r["path"].endswith("app.log.ct")]
    assert copied, "lines came from the copytruncate copy"
    print(
        f"{total} lines, 0 lost, {tally.duplicates} again after the kills, {len(copied)} from the copy"
    )


def _records(out: Path) -> list[dict]:
    from tests.integration.log_shipper.e2e import read_jsonl

    return read_jsonl(out)
