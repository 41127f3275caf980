"""Issue 34: rotations faster than the scan, rotations while the shipper is stopped, and a
truncation while the output takes nothing, with the real `podkit log-shipper`.

`--path` matches only `app.log`; the app renames it out of the glob (`app.log.N`) and
opens a new one, at full speed: most generations are renamed before the shipper could
open them. Every numbered line the app wrote must reach the output file (lines again only
after a SIGKILL); the ledger counts 0 lost bytes.
"""

from __future__ import annotations

import gzip
import os
import signal
import time
from pathlib import Path

from podkit_dev.servers import wait_for
from tests.integration.log_shipper.e2e import metric, nginx_line, tally_file


class RenamingApp:
    """Writes numbered lines to app.log and renames it out of the glob every `every`
    lines, at full speed (no pause anywhere)."""

    def __init__(self, log: Path, every: int = 400) -> None:
        self.log, self.every = log, every
        self.seq = 0
        self.renames = 0

    def rotations(self, count: int, *, gzip_at: int | None = None) -> None:
        for _ in range(count):
            self.lines(self.every)
            self.renames += 1
            target = Path(f"{self.log}.{self.renames}")
            os.rename(self.log, target)
            if gzip_at == self.renames:  # logrotate's `compress` before we could read it
                target.with_name(target.name + ".gz").write_bytes(
                    gzip.compress(target.read_bytes())
                )
                target.unlink()

    def lines(self, n: int) -> None:
        with open(self.log, "ab") as fh:
            fh.write(b"".join(nginx_line(s) + b"\n" for s in range(self.seq, self.seq + n)))
        self.seq += n


def _args(log: Path, tmp_path: Path, out: Path) -> list[str]:
    return [
        "--path", str(log), "--state-dir", str(tmp_path / "state"),
        "--output", "file", "--file-path", str(out), "--batch-timeout", "50ms",
    ]  # fmt: skip


def _layout(tmp_path: Path) -> tuple[Path, Path, Path, list[str]]:
    """logs/app.log followed by a shipper that writes out.jsonl: (logs, log, out, args)."""
    logs = tmp_path / "logs"
    logs.mkdir()
    log, out = logs / "app.log", tmp_path / "out.jsonl"
    return logs, log, out, _args(log, tmp_path, out)


def _lost(shipper) -> float:  # type: ignore[no-untyped-def]
    return metric(shipper.metrics(), "podkit_follow_lost_bytes_total")


def test_150_renames_out_of_the_glob_at_full_speed_with_two_kills_lose_nothing(
    run_helper, tmp_path
):
    _, log, out, args = _layout(tmp_path)
    app = RenamingApp(log)
    shipper = run_helper("log-shipper", *args)
    app.rotations(50)
    shipper.stop(signal.SIGKILL)  # kill 1: likely mid-way through the generations
    shipper = run_helper("log-shipper", *args, wait=None)  # the app goes on as it starts
    app.rotations(50)
    shipper.wait_http("readyz", timeout=60)
    shipper.stop(signal.SIGKILL)  # kill 2: as it reads the generations written meanwhile
    shipper = run_helper("log-shipper", *args, wait=None)
    app.rotations(50)
    app.lines(10)
    total = app.seq
    assert total == 60_010
    wait_for(lambda: len(tally_file(out)) == total, timeout=120, what=f"all {total} lines")
    assert _lost(shipper) == 0, "the ledger counts nothing lost"
    assert shipper.stop(signal.SIGTERM) == 0
    tally = tally_file(out)
    assert tally.missing(range(total)) == [], "0 lines lost"
    print(f"{total} lines written, {len(tally)} delivered, {tally.duplicates} again after kills")


def test_20_rotations_while_stopped_lose_nothing_and_repeat_nothing(run_helper, tmp_path):
    _, log, out, args = _layout(tmp_path)
    app = RenamingApp(log)
    shipper = run_helper("log-shipper", *args)
    app.lines(300)
    wait_for(lambda: len(tally_file(out)) == 300, timeout=30, what="the first lines")
    assert shipper.stop(signal.SIGTERM) == 0
    app.lines(100)  # unread when stopped: read from the checkpoint after the rename
    app.rotations(20)
    app.lines(10)
    shipper = run_helper("log-shipper", *args)
    total = app.seq
    wait_for(lambda: len(tally_file(out)) == total, timeout=60, what=f"all {total} lines")
    assert _lost(shipper) == 0
    assert shipper.stop(signal.SIGTERM) == 0
    tally = tally_file(out)
    assert tally.missing(range(total)) == []
    assert tally.duplicates == 0, "a clean stop repeats nothing"


def test_a_generation_compressed_while_stopped_is_ledgered_with_its_name(run_helper, tmp_path):
    logs, log, out, args = _layout(tmp_path)
    app = RenamingApp(log)
    shipper = run_helper("log-shipper", *args)
    app.lines(50)
    wait_for(lambda: len(tally_file(out)) == 50, timeout=30, what="the first lines")
    assert shipper.stop(signal.SIGTERM) == 0
    app.rotations(3, gzip_at=2)  # app.log.2 is gzipped before anyone read it
    app.lines(10)
    gz = logs / "app.log.2.gz"
    size = len(gzip.decompress(gz.read_bytes()))
    shipper = run_helper("log-shipper", *args)
    wait_for(lambda: len(tally_file(out)) == app.seq - 400, timeout=60, what="all but app.log.2")
    lost = metric(
        shipper.metrics(),
        "podkit_follow_lost_bytes_total",
        path=str(gz),
        reason="rotated_away_unread",
    )
    assert lost == size
    assert "file_compressed_unread" in shipper.log_text()
    assert shipper.stop(signal.SIGTERM) == 0
    tally = tally_file(out)
    assert tally.missing(range(app.seq)) == list(range(450, 850))


def test_a_truncation_while_the_output_is_stalled_shows_in_one_scrape(
    run_helper, tmp_path, receiver
):
    logs = tmp_path / "logs"
    logs.mkdir()
    log = logs / "app.log"
    shipper = run_helper(
        "log-shipper",
        "--path", str(log), "--state-dir", str(tmp_path / "state"),
        "--output", "http", "--http-url", f"{receiver.url}/ingest",
        "--batch-timeout", "50ms", "--retry-initial", "50ms", "--retry-max", "200ms",
        "--buffer-bytes", "64KiB", "--buffer-max-bytes", "32KiB",
    )  # fmt: skip
    receiver.down()
    app = RenamingApp(log)
    app.lines(5000)  # ~1 MB: far more than the shipper may hold unacknowledged
    size = log.stat().st_size

    def lag() -> float:
        return metric(shipper.metrics(), "podkit_follow_lag_bytes", path=str(log))

    # A scrape looks at the size: the unread bytes are known from here on.
    wait_for(lambda: lag() > size // 2, timeout=30, what="the output stalled, the file unread")
    unread = lag()
    assert _lost(shipper) == 0
    os.truncate(log, 0)
    lost = metric(shipper.metrics(), "podkit_follow_lost_bytes_total", reason="truncated_unread")
    assert lost >= unread, "counted at the first scrape, while the output still takes nothing"
    receiver.up()


def test_a_glob_whose_file_is_absent_at_most_scans_loses_no_generation(run_helper, tmp_path):
    """`--path logs/*.log` (no literal name) and an app that renames app.log away and
    pauses before it writes again, as a paced writer does: at most listings app.log does
    not exist, and the generations renamed meanwhile must still be known by its stem."""
    logs = tmp_path / "logs"
    logs.mkdir()
    log, out = logs / "app.log", tmp_path / "out.jsonl"
    log.touch()
    args = _args(log, tmp_path, out)
    args[1] = str(logs / "*.log")
    shipper = run_helper("log-shipper", *args, "--refresh-interval", "100ms")
    app = RenamingApp(log, every=50)
    for _ in range(400):
        app.rotations(1)
        time.sleep(0.003)  # absent between the rename and the next write
    total = app.seq
    wait_for(lambda: len(tally_file(out)) == total, timeout=120, what=f"all {total} lines")
    assert _lost(shipper) == 0
