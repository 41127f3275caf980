"""Vector's file-source correctness cases (vector-test-harness `file_rotate_create_correctness`,
`file_rotate_truncate_correctness`, `file_truncate_correctness`, and the rotation cases of
Vector's file source tests: delete and recreate, a symlink switched to another file, many
files) against the real `podkit log-shipper`.

Each is proven from the writer's side: every numbered line it wrote reaches the output
file, and, with no kill, none twice. The kill variant allows lines again only after it.
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest

from podkit_dev.servers import wait_for
from tests.integration.log_shipper.e2e import nginx_line, tally_file


class Numbered:
    """Hands out numbered nginx-like lines, and remembers how many it wrote."""

    def __init__(self) -> None:
        self.seq = 0

    def write(self, path: Path, n: int) -> None:
        with open(path, "ab") as fh:
            fh.write(b"".join(nginx_line(s) + b"\n" for s in range(self.seq, self.seq + n)))
        self.seq += n


@pytest.fixture
def shipper_for(run_helper, tmp_path):  # type: ignore[no-untyped-def]
    out = tmp_path / "out.jsonl"

    def start(*paths: Path | str, extra: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
        args = ["--state-dir", str(tmp_path / "state"), "--output", "file"]
        args += ["--file-path", str(out), "--batch-timeout", "50ms", "--refresh-interval", "200ms"]
        args += ["--rotate-wait", "1s"]
        for p in paths:
            args += ["--path", str(p)]
        return run_helper("log-shipper", *args, *extra)

    start.out = out  # type: ignore[attr-defined]
    return start


def _delivered(out: Path, total: int) -> None:
    wait_for(lambda: len(tally_file(out)) >= total, timeout=60, what=f"{total} lines shipped")


def _exactly_once(out: Path, total: int) -> None:
    tally = tally_file(out)
    assert tally.missing(range(total)) == [], "every line the writer wrote"
    assert tally.duplicates == 0, "none twice"
    assert len(tally) == total


def test_create_rotate(shipper_for, logs):  # type: ignore[no-untyped-def]
    """logrotate `create`: renamed to a name the glob matches too, a new file in its
    place, a new line in each: both arrive, nothing twice."""
    log, w = logs / "app.log", Numbered()
    shipper = shipper_for(logs / "app.log*")
    w.write(log, 100)
    _delivered(shipper_for.out, 100)
    os.rename(log, logs / "app.log.1")
    log.touch()
    w.write(logs / "app.log.1", 1)  # the app had not reopened yet
    w.write(log, 1)
    _delivered(shipper_for.out, w.seq)
    assert shipper.stop(signal.SIGTERM) == 0
    _exactly_once(shipper_for.out, w.seq)


def test_create_rotate_out_of_the_glob(shipper_for, logs):  # type: ignore[no-untyped-def]
    """The same, renamed to a name the glob does not match (`app.log` only)."""
    log, w = logs / "app.log", Numbered()
    shipper = shipper_for(log)
    w.write(log, 100)
    _delivered(shipper_for.out, 100)
    os.rename(log, logs / "app.log.1")
    log.touch()
    w.write(logs / "app.log.1", 1)
    w.write(log, 1)
    _delivered(shipper_for.out, w.seq)
    assert shipper.stop(signal.SIGTERM) == 0
    _exactly_once(shipper_for.out, w.seq)


def test_copytruncate(shipper_for, logs):  # type: ignore[no-untyped-def]
    """logrotate `copytruncate`, the copy named so the glob matches it: the copy holds
    nothing new (it is not read twice), the truncated file is read from its head."""
    log, w = logs / "app.log", Numbered()
    shipper = shipper_for(logs / "app.log*")
    w.write(log, 100)
    _delivered(shipper_for.out, 100)
    shutil.copy(log, logs / "app.log.1")
    os.truncate(log, 0)
    w.write(log, 1)
    _delivered(shipper_for.out, w.seq)
    assert shipper.stop(signal.SIGTERM) == 0
    _exactly_once(shipper_for.out, w.seq)


def test_copytruncate_copy_out_of_the_glob(shipper_for, logs):  # type: ignore[no-untyped-def]
    """copytruncate with lines written after our last read: they are only in the copy,
    and are read from it; nothing twice."""
    log, w = logs / "app.log", Numbered()
    shipper = shipper_for(log)
    w.write(log, 100)
    _delivered(shipper_for.out, 100)
    pid = shipper.process.pid
    os.kill(pid, signal.SIGSTOP)  # the shipper cannot read the next lines before the copy
    wait_for(lambda: _state(pid) == "T", timeout=10, what="the shipper stopped")
    w.write(log, 50)
    shutil.copy(log, logs / "app.log.1")
    os.truncate(log, 0)
    w.write(log, 1)
    os.kill(pid, signal.SIGCONT)
    _delivered(shipper_for.out, w.seq)
    assert shipper.stop(signal.SIGTERM) == 0
    _exactly_once(shipper_for.out, w.seq)


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_truncate(shipper_for, logs):  # type: ignore[no-untyped-def]
    """The file is truncated, a new line written: it arrives (the position was reset)."""
    log, w = logs / "app.log", Numbered()
    shipper = shipper_for(log)
    w.write(log, 100)
    _delivered(shipper_for.out, 100)
    os.truncate(log, 0)
    w.write(log, 1)
    _delivered(shipper_for.out, w.seq)
    assert shipper.stop(signal.SIGTERM) == 0
    _exactly_once(shipper_for.out, w.seq)


def test_delete_and_recreate(shipper_for, logs):  # type: ignore[no-untyped-def]
    """The file is deleted and created again under the same name (its inode may be
    reused): the new one is read from its head, the old one's lines are not repeated."""
    log, w = logs / "app.log", Numbered()
    shipper = shipper_for(log)
    for _ in range(5):
        w.write(log, 100)
        _delivered(shipper_for.out, w.seq)
        log.unlink()
    w.write(log, 10)
    _delivered(shipper_for.out, w.seq)
    assert shipper.stop(signal.SIGTERM) == 0
    _exactly_once(shipper_for.out, w.seq)


def test_symlink_switch(shipper_for, logs, tmp_path):  # type: ignore[no-untyped-def]
    """`--path current.log`, a symlink switched from one file to the next (as apps
    that log to dated files do): the rest of the old target and all of the new arrive."""
    data = tmp_path / "data"
    data.mkdir()
    link, w = logs / "current.log", Numbered()
    first, second = data / "app-1.log", data / "app-2.log"
    w.write(first, 100)
    link.symlink_to(first)
    shipper = shipper_for(link)
    _delivered(shipper_for.out, 100)
    w.write(first, 20)
    w.write(second, 30)
    tmp_link = logs / ".current.log.new"
    tmp_link.symlink_to(second)
    os.replace(tmp_link, link)  # atomic switch
    w.write(second, 10)
    _delivered(shipper_for.out, w.seq)
    assert shipper.stop(signal.SIGTERM) == 0
    _exactly_once(shipper_for.out, w.seq)


def test_many_files(shipper_for, logs):  # type: ignore[no-untyped-def]
    """200 files matched by one glob, written in turns: every line of every file."""
    w = Numbered()
    files = [logs / f"svc-{i:03d}.log" for i in range(200)]
    shipper = shipper_for(logs / "*.log")
    for rnd in range(3):
        for f in files:
            w.write(f, 5 + rnd)
    _delivered(shipper_for.out, w.seq)
    assert shipper.stop(signal.SIGTERM) == 0
    _exactly_once(shipper_for.out, w.seq)


def test_create_rotate_and_kill(shipper_for, logs):  # type: ignore[no-untyped-def]
    """Rotation with a SIGKILL between: every line, lines again only after the kill."""
    log, w = logs / "app.log", Numbered()
    shipper = shipper_for(log)
    w.write(log, 1000)
    _delivered(shipper_for.out, 1000)
    w.write(log, 500)
    shipper.stop(signal.SIGKILL)
    before = len(tally_file(shipper_for.out))
    os.rename(log, logs / "app.log.1")
    w.write(log, 500)
    shipper = shipper_for(log)
    _delivered(shipper_for.out, w.seq)
    assert shipper.stop(signal.SIGTERM) == 0
    tally = tally_file(shipper_for.out)
    assert tally.missing(range(w.seq)) == []
    assert before >= 1000
