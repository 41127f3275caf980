"""Disk full under --root: a clear failure, the published tree kept, recovery when space is back.

The root is a small tmpfs mounted for the test (we run as root; the mount goes away in
teardown) and filled with a file; the next commit carries a blob that cannot fit. Syncs
are asked for with POST /sync (--period=1h), so each step is one known sync.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from podkit_dev.servers import GitRepo, wait_for
from tests.integration.git_sync.kit import need_mount_namespace, published

SIZE = 16 * 1024 * 1024


@pytest.fixture
def small_volume(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs at tmp_path/vol (request it before run_helper: unmounted last)."""
    need_mount_namespace()  # root and mount(2) allowed
    volume = tmp_path / "vol"
    volume.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE},mode=0755", "tmpfs", str(volume)], check=True
    )
    try:
        yield volume
    finally:
        subprocess.run(["umount", "-l", str(volume)], check=False)


def fill(volume: Path, keep_free: int = 0) -> Path:
    """Write (append to) a file until the volume is full; then give back `keep_free` bytes."""
    filler = volume / "filler"
    chunk = b"\1" * (256 * 1024)
    with open(filler, "ab", buffering=0) as handle:
        try:
            while True:
                handle.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    if keep_free:
        size = filler.stat().st_size
        os.truncate(filler, max(size - keep_free, 0))
    return filler


def free_bytes(volume: Path) -> int:
    stat = os.statvfs(volume)
    return stat.f_bavail * stat.f_frsize


def sync(helper) -> dict:
    """POST /sync: the result of one sync that started after the request."""
    request = urllib.request.Request(f"{helper.admin}/sync", method="POST", data=b"")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read())


def errors_counted(helper) -> float:
    for line in helper.metrics().splitlines():
        if line.startswith('git_sync_count_total{status="error"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_disk_full(small_volume: Path, run_helper, git_repo: GitRepo) -> None:
    root = small_volume / "git"
    helper = run_helper(
        "git-sync", f"--repo={git_repo.url}", f"--root={root}", "--link=current",
        "--period=1h", "--max-failures=-1", "--error-file=error.json",
    )  # fmt: skip
    first = git_repo.head()
    wait_for(lambda: published(root) == first, what="first sync")
    # No room left, then a commit that cannot fit: 4 MiB of incompressible bytes.
    filler = fill(small_volume)
    big = git_repo.commit({"big.bin": os.urandom(4 * 1024 * 1024)}, "big")

    answer = sync(helper)
    assert answer["status"] == "error" and "No space left on device" in answer["error"]
    failure = helper.events("sync_failed")[0]
    assert "No space left on device" in failure["error"], failure
    assert failure["error"].startswith("git fetch"), failure  # the git command, git's words
    assert errors_counted(helper) == 1
    # Whatever git freed when it gave up may have held the error file; fill that up too:
    # then the error file cannot be rewritten, and that is logged, not hidden.
    fill(small_volume)
    assert sync(helper)["status"] == "error"
    assert helper.events("error_file_failed")[0]["error"] == "No space left on device"
    assert not list(root.glob(".error.json.tmp-*"))  # no half-written temp file left
    assert errors_counted(helper) == 2
    # The link still points at the previous complete tree.
    assert published(root) == first
    assert (root / "current" / "README").read_text() == "hello\n"
    assert not (root / "current" / "big.bin").exists()
    assert helper.process.alive()

    # Some room again, not enough for the commit: the error file is written now.
    os.truncate(filler, max(filler.stat().st_size - 512 * 1024, 0))
    assert sync(helper)["status"] == "error"
    assert (root / "error.json").exists()
    record = json.loads((root / "error.json").read_text())
    assert "No space left on device" in record["error"] and record["failures"] == 3
    assert published(root) == first

    # Space freed: the next sync publishes the commit and clears the error file.
    filler.unlink()
    assert sync(helper) == {"status": "ok", "hash": big, "changed": True}
    assert published(root) == big
    assert (root / "current" / "big.bin").stat().st_size == 4 * 1024 * 1024
    assert not (root / "error.json").exists()
    # The replaced tree is kept for recycling (the volume has room for it again).
    assert sorted(os.listdir(root / ".worktrees")) == [".recycle", big]
    assert free_bytes(small_volume) > 4 * 1024 * 1024
    assert helper.stop() == 0


def test_disk_full_during_checkout(small_volume: Path, run_helper, git_repo: GitRepo) -> None:
    """The fetch fits (one repeated byte packs to almost nothing; not zeros, which git's
    checkout writes as a sparse file) but the checkout does not: the
    half-written worktree is never published and is replaced once there is room."""
    root = small_volume / "git"
    helper = run_helper(
        "git-sync", f"--repo={git_repo.url}", f"--root={root}", "--link=current",
        "--period=1h", "--max-failures=-1", "--error-file=error.json",
    )  # fmt: skip
    first = git_repo.head()
    wait_for(lambda: published(root) == first, what="first sync")
    filler = fill(small_volume, keep_free=1024 * 1024)
    big = git_repo.commit({"xs.bin": b"x" * (8 * 1024 * 1024), "after.txt": "x\n"}, "x")

    assert sync(helper)["status"] == "error"
    failure = helper.events("sync_failed")[0]
    # git's own words ("unable to write file xs.bin"), with the likely cause added.
    assert failure["error"].startswith("git reset --hard"), failure  # the fetch got through
    assert "unable to write file xs.bin" in failure["error"], failure
    assert "the --root volume has" in failure["error"] and "MiB free" in failure["error"]
    assert failure["root_free_bytes"] < 2 * 1024 * 1024
    # The half-made tree is removed at once (its space is needed), never published; the
    # error file then fits.
    assert "unable to write file" in json.loads((root / "error.json").read_text())["error"]
    assert errors_counted(helper) >= 1
    assert published(root) == first
    assert sorted(os.listdir(root / "current")) == [".git", "README"]
    assert os.listdir(root / ".worktrees") == [first]

    filler.unlink()
    assert sync(helper) == {"status": "ok", "hash": big, "changed": True}
    assert (root / "current" / "xs.bin").stat().st_size == 8 * 1024 * 1024
    assert (root / "current" / "after.txt").read_text() == "x\n"
    assert not (root / "error.json").exists()
    assert helper.stop() == 0
