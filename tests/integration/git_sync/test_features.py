"""Hooks (exechook, webhook), submodules, sparse checkout and partial clone, with real git."""

from __future__ import annotations

import http.server
import os
import stat
import threading
from pathlib import Path

import pytest

from podkit_dev.servers import HOST, GitRepo, free_port, git, wait_for
from tests.integration.git_sync.kit import published

ALLOW_FILE = "--git-config=protocol.file.allow:always"


def hook_runs(helper, name: str, status: str) -> float:
    key = f'git_sync_hook_run_count_total{{name="{name}",status="{status}"}}'
    for line in helper.metrics().splitlines():
        if line.rsplit(" ", 1)[0] == key:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def test_exechook_retries_latest_hash_and_runs_after_restart(
    run_helper, git_repo: GitRepo, tmp_path: Path
) -> None:
    ran = tmp_path / "ran"
    broken = tmp_path / "broken"
    hook = script(
        tmp_path / "hook.sh",
        f'[ -e {broken} ] && exit 3\necho "$GITSYNC_HASH $(pwd)" >> {ran}\n',
    )
    root = tmp_path / "git"
    args = ("git-sync", f"--repo={git_repo.url}", f"--root={root}", "--link=current",
            "--period=100ms", f"--exechook-command={hook}", "--exechook-backoff=100ms")  # fmt: skip
    helper = run_helper(*args)
    first = git_repo.head()
    wait_for(lambda: ran.exists() and first in ran.read_text(), what="exechook ran")
    line = ran.read_text().split()
    assert line == [first, str(root / ".worktrees" / first)]

    broken.write_text("")
    second = git_repo.commit({"README": "2\n"}, "2")
    wait_for(lambda: hook_runs(helper, "exechook", "error") >= 2, what="exechook failing")
    third = git_repo.commit({"README": "3\n"}, "3")
    wait_for(lambda: published(root) == third, what="third published")
    wait_for(lambda: hook_runs(helper, "exechook", "error") >= 4, what="still failing")
    broken.unlink()
    wait_for(lambda: third in ran.read_text(), what="exechook ran for the latest hash")
    # Latest hash wins: the hash that was replaced while failing is not run afterwards.
    assert second not in ran.read_text()
    assert helper.stop() == 0
    # After a restart the hook runs again on the first loop, for the same hash.
    runs = ran.read_text().count(f"{third} ")
    helper = run_helper(*args)
    wait_for(lambda: ran.read_text().count(f"{third} ") == runs + 1, what="hook on first loop")


def test_one_time_hook_failure_exits_1(run_helper, git_repo: GitRepo, tmp_path: Path) -> None:
    hook = script(tmp_path / "fail.sh", "exit 1\n")
    helper = run_helper(
        "git-sync", f"--repo={git_repo.url}", f"--root={tmp_path / 'git'}", "--one-time",
        f"--exechook-command={hook}", wait=None,
    )  # fmt: skip
    assert helper.wait_exit(30) == 1
    ok = script(tmp_path / "ok.sh", "exit 0\n")
    helper = run_helper(
        "git-sync", f"--repo={git_repo.url}", f"--root={tmp_path / 'git'}", "--one-time",
        f"--exechook-command={ok}", wait=None,
    )  # fmt: skip
    assert helper.wait_exit(30) == 0


def test_webhook_retry_and_header(run_helper, git_repo: GitRepo, tmp_path: Path) -> None:
    calls: list[tuple[str, str | None, int]] = []
    answers = [500, 500]

    class Receiver(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _answer(self) -> None:
            status = answers.pop(0) if answers else 200
            calls.append((self.command, self.headers.get("Gitsync-Hash"), status))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_POST = _answer
        do_PUT = _answer

    server = http.server.ThreadingHTTPServer((HOST, free_port()), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        helper = run_helper(
            "git-sync", f"--repo={git_repo.url}", f"--root={tmp_path / 'git'}",
            "--period=100ms", f"--webhook-url=http://{HOST}:{server.server_port}/hook",
            "--webhook-method=PUT", "--webhook-backoff=100ms",
        )  # fmt: skip
        head = git_repo.head()
        wait_for(lambda: any(c[2] == 200 for c in calls), what="webhook succeeded")
        assert [c[2] for c in calls] == [500, 500, 200]
        assert all(c[0] == "PUT" and c[1] == head for c in calls)
        wait_for(lambda: hook_runs(helper, "webhook", "success") == 1.0, what="counted")
        assert hook_runs(helper, "webhook", "error") == 2.0
    finally:
        server.shutdown()
        server.server_close()


def test_webhook_fire_and_forget(run_helper, git_repo: GitRepo, tmp_path: Path) -> None:
    """--webhook-success-status=0: one call per new hash, never retried, never waited for,
    even when the receiver is slow (holds the request past --webhook-timeout) and answers 500."""
    calls: list[str | None] = []
    held = threading.Event()  # the receiver holds each request until this is set
    lock = threading.Lock()

    class Receiver(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            with lock:
                calls.append(self.headers.get("Gitsync-Hash"))
            held.wait(30)
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = http.server.ThreadingHTTPServer((HOST, free_port()), Receiver)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    root = tmp_path / "git"
    try:
        helper = run_helper(
            "git-sync", f"--repo={git_repo.url}", f"--root={root}", "--link=current",
            "--period=100ms", f"--webhook-url=http://{HOST}:{server.server_port}/hook",
            "--webhook-success-status=0", "--webhook-timeout=1s", "--webhook-backoff=100ms",
        )  # fmt: skip
        first = git_repo.head()
        wait_for(lambda: calls == [first], what="webhook called for the first hash")
        # The receiver still holds that call: syncs and the next hash's call go on anyway.
        second = git_repo.commit({"README": "2\n"}, "2")
        wait_for(lambda: published(root) == second, what="second published")
        wait_for(lambda: calls == [first, second], what="webhook called for the second hash")
        held.set()  # now every held call gets its 500
        # A retry would come after --webhook-backoff (100ms); let many periods pass.
        noops = idle_polls(helper)
        wait_for(lambda: idle_polls(helper) >= noops + 10, what="ten idle polls")
        assert calls == [first, second]
        assert hook_runs(helper, "webhook", "success") == 2.0
        assert hook_runs(helper, "webhook", "error") == 0.0
        assert not helper.events("hook_failed")
    finally:
        held.set()
        server.shutdown()
        server.server_close()


def idle_polls(helper) -> float:
    for line in helper.metrics().splitlines():
        if line.startswith('git_sync_count_total{status="noop"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def bare_with_commit(base: Path, name: str, files: dict[str, str], submodules=()) -> Path:
    """A bare repo `base/name.git` with one commit (and submodules by relative URL)."""
    bare = base / f"{name}.git"
    work = base / f"{name}-work"
    git("init", "-q", "--bare", "-b", "main", str(bare))
    git("init", "-q", "-b", "main", str(work))
    git("remote", "add", "origin", str(bare), cwd=work)
    for rel, text in files.items():
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_text(text)
    for sub in submodules:
        git("-c", "protocol.file.allow=always", "submodule", "add", "-q", f"../{sub}.git", sub,
            cwd=work)  # fmt: skip
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", name, cwd=work)
    git("push", "-q", "origin", "HEAD:main", cwd=work)
    return bare


@pytest.mark.parametrize("mode", ["recursive", "shallow", "off"])
def test_submodules_relative_urls(run_helper, tmp_path: Path, mode: str) -> None:
    repos = tmp_path / "repos"
    repos.mkdir()
    bare_with_commit(repos, "leaf", {"leaf.txt": "leaf\n"})
    bare_with_commit(repos, "middle", {"middle.txt": "middle\n"}, submodules=["leaf"])
    top = bare_with_commit(repos, "top", {"top.txt": "top\n"}, submodules=["middle"])
    root = tmp_path / "git"
    helper = run_helper(
        "git-sync", f"--repo=file://{top}", f"--root={root}", "--link=current",
        f"--submodules={mode}", ALLOW_FILE, "--one-time", wait=None,
    )  # fmt: skip
    assert helper.wait_exit(60) == 0, helper.log_text()
    current = root / "current"
    assert (current / "top.txt").exists()
    assert (current / "middle" / "middle.txt").exists() == (mode != "off")
    assert (current / "middle" / "leaf" / "leaf.txt").exists() == (mode == "recursive")


def test_sparse_checkout_and_partial_clone(run_helper, git_repo: GitRepo, tmp_path: Path):
    git_repo.commit({"docs/a.md": "a\n", "src/b.py": "b\n", "big.bin": "x" * 100_000}, "tree")
    patterns = tmp_path / "sparse"
    patterns.write_text("/docs/\n/README\n")
    root = tmp_path / "git"
    helper = run_helper(
        "git-sync", f"--repo={git_repo.url}", f"--root={root}", "--link=current", "--one-time",
        f"--sparse-checkout-file={patterns}", wait=None,
    )  # fmt: skip
    assert helper.wait_exit(30) == 0, helper.log_text()
    current = root / "current"
    assert sorted(os.listdir(current)) == [".git", "README", "docs"]

    root2 = tmp_path / "git2"
    helper = run_helper(
        "git-sync", f"--repo={git_repo.url}", f"--root={root2}", "--link=current", "--one-time",
        "--filter=blob:none", wait=None,
    )  # fmt: skip
    assert helper.wait_exit(30) == 0, helper.log_text()
    assert (root2 / "current" / "big.bin").stat().st_size == 100_000
    assert git("config", "extensions.partialClone", cwd=root2).strip() == "origin"


def test_group_write_and_no_known_hosts_check(run_helper, git_repo: GitRepo, sshd, tmp_path):
    root = tmp_path / "git"
    helper = run_helper(
        "git-sync", f"--repo={sshd.url(git_repo.bare)}", f"--root={root}", "--link=current",
        "--one-time", "--group-write", f"--ssh-key-file={sshd.client_key}",
        "--ssh-known-hosts=false", wait=None,
    )  # fmt: skip
    assert helper.wait_exit(30) == 0, helper.log_text()
    readme = root / "current" / "README"
    assert readme.read_text() == "hello\n"
    assert readme.stat().st_mode & stat.S_IWGRP
