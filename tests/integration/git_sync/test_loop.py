"""`podkit git-sync` against real git: the v4 layout, the loop, refs, files, failures, restarts.

Modelled on git-sync's own end-to-end cases. The remote is a local bare repository
(file://) pushed to by the test; the helper runs as a real `podkit git-sync` process.
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from pathlib import Path

import pytest

from podkit_dev.servers import GitRepo, git, http_get, wait_for
from tests.integration.git_sync.kit import published
from tests.servers import IN_CI

FAST = "--period=100ms"


def start(run_helper, repo: GitRepo | str, root: Path, *args: str, wait: str | None = "readyz"):
    url = repo.url if isinstance(repo, GitRepo) else repo
    return run_helper(
        "git-sync", f"--repo={url}", f"--root={root}", "--link=current", *args, wait=wait
    )


def wait_published(root: Path, sha: str, helper=None, timeout: float = 20) -> None:
    wait_for(lambda: published(root) == sha, what=f"{sha[:10]} published", timeout=timeout,
             explain=helper.log_text if helper is not None else None)  # fmt: skip


def metric(helper, name: str) -> float:
    """A sample's value by its full name with labels, e.g. git_sync_count_total{status="noop"}."""
    for line in helper.metrics().splitlines():
        if line.rsplit(" ", 1)[0] == name:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def syncs(helper, status: str) -> float:
    return metric(helper, f'git_sync_count_total{{status="{status}"}}')


def test_v4_layout_and_update(run_helper, git_repo: GitRepo, tmp_path: Path) -> None:
    root = tmp_path / "git"
    first = git_repo.head()
    helper = start(run_helper, git_repo, root, FAST)
    wait_published(root, first, helper)
    link = root / "current"
    # A relative link to a detached worktree named by the full sha; root never checked out.
    assert os.readlink(link) == f".worktrees/{first}"
    assert (root / ".git").is_dir() and not (root / "README").exists()
    assert (link / "README").read_text() == "hello\n"
    assert git("rev-parse", "HEAD", cwd=link).strip() == first
    assert git("rev-parse", "--show-toplevel", cwd=root).strip() == str(root)

    second = git_repo.commit({"README": "two\n", "dir/new.txt": "new\n"}, "second")
    wait_published(root, second, helper)
    assert (link / "README").read_text() == "two\n"
    assert (link / "dir" / "new.txt").read_text() == "new\n"
    # --stale-worktree-timeout 0: the replaced worktree leaves the readers' way right after
    # the publish, kept as .worktrees/.recycle for the next sync.
    wait_for(
        lambda: (
            sorted(os.listdir(root / ".worktrees")) == [".recycle", second]
            and f"{root}/.worktrees/{first}" not in git("worktree", "list", cwd=root)
        ),
        what="old worktree moved out of the way",
    )
    wait_for(lambda: syncs(helper, "success") == 2.0, what="two successful syncs counted")
    assert metric(helper, "git_sync_last_success_timestamp_seconds") > 0
    assert metric(helper, "git_fetch_count_total") == 2.0
    # Idle polls cost no fetch: only ls-remote runs while nothing changes.
    noops = syncs(helper, "noop")
    wait_for(lambda: syncs(helper, "noop") >= noops + 3, what="three idle polls")
    assert metric(helper, "git_fetch_count_total") == 2.0
    assert helper.stop() == 0


def tree_files(top: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under top (but .git) with its contents and permission bits."""
    out = {}
    for path in sorted(top.rglob("*")):
        rel = path.relative_to(top).as_posix()
        if rel == ".git" or rel.startswith(".git/") or path.is_dir():
            continue
        out[rel] = (path.read_bytes() if not path.is_symlink() else os.readlink(path).encode(),
                    path.lstat().st_mode)  # fmt: skip
    return out


def test_recycled_worktree_is_exactly_the_new_commit(
    run_helper, git_repo: GitRepo, tmp_path: Path
) -> None:
    """A stale worktree made into the next one holds what a fresh checkout would: changed,
    added, deleted, renamed and mode-changed files, and nothing a hook or reader left."""
    git_repo.commit({"keep.txt": "same\n", "gone.txt": "bye\n", "a/old.txt": "old\n",
                     "run.sh": "#!/bin/sh\n"}, "base")  # fmt: skip
    root = tmp_path / "git"
    helper = start(run_helper, git_repo, root, "--period=1h")
    wait_published(root, git_repo.head(), helper)
    (root / "current" / "untracked.txt").write_text("left by a hook\n")
    (root / "current" / "keep.txt.orig").write_text("left by a reader\n")
    changes: dict[str, str | bytes | None] = {"gone.txt": None, "a/old.txt": None,
                                              "b/new.txt": "moved\n", "README": "changed\n"}  # fmt: skip
    for sha_round in range(3):
        changes[f"round{sha_round}.txt"] = f"{sha_round}\n"
        wanted = git_repo.commit(changes, f"round {sha_round}")
        if sha_round == 1:
            git("update-index", "--chmod=+x", "run.sh", cwd=git_repo.work)
            git("commit", "-q", "-m", "mode", cwd=git_repo.work)
            git("push", "-q", "origin", "HEAD:refs/heads/main", cwd=git_repo.work)
            wanted = git_repo.head()
        post = urllib.request.Request(f"{helper.admin}/sync", method="POST", data=b"")
        with urllib.request.urlopen(post, timeout=30) as response:
            assert json.loads(response.read())["hash"] == wanted
        fresh = tmp_path / f"fresh{sha_round}"
        git("clone", "-q", git_repo.url, str(fresh))
        assert tree_files(root / "current") == tree_files(fresh)
        changes = {}
    assert metric(helper, "git_sync_worktrees_recycled_total") >= 2.0
    assert helper.stop() == 0


@pytest.mark.parametrize("kind", ["branch", "tag", "annotated-tag", "sha"])
def test_refs(run_helper, git_repo: GitRepo, tmp_path: Path, kind: str) -> None:
    base = git_repo.head()
    git_repo.checkout("feature")
    wanted = git_repo.commit({"f.txt": "feature\n"}, "on feature", branch="feature")
    git_repo.checkout("main")
    git_repo.commit({"main.txt": "main\n"}, "on main")
    ref = {"branch": "feature", "tag": "v1", "annotated-tag": "v1", "sha": wanted}[kind]
    if kind != "branch" and kind != "sha":
        tag_object = git_repo.tag("v1", annotated=kind == "annotated-tag", commit=wanted)
        assert (tag_object != wanted) == (kind == "annotated-tag")
    root = tmp_path / "git"
    helper = start(run_helper, git_repo, root, FAST, f"--ref={ref}")
    wait_published(root, wanted, helper)
    assert (root / "current" / "f.txt").read_text() == "feature\n"
    assert base != wanted
    if kind == "sha":
        wait_for(lambda: helper.events("polling_stopped"), what="polling stopped for a SHA")
        assert metric(helper, "git_fetch_count_total") == 1.0
        # POST /sync still answers (no fetch: the commit cannot change).
        import urllib.request

        request = urllib.request.Request(f"{helper.admin}/sync", method="POST", data=b"")
        with urllib.request.urlopen(request, timeout=30) as response:
            assert json.loads(response.read())["hash"] == wanted
        assert metric(helper, "git_fetch_count_total") == 1.0
    if kind == "branch":
        newer = git_repo.commit({"f.txt": "feature 2\n"}, "more", branch="feature")
        wait_published(root, newer, helper)
    if kind == "annotated-tag":
        # Moving the tag (force-pushed) is followed too, peeled to its commit.
        git_repo.tag("v1", annotated=True, commit=base)
        wait_published(root, base, helper)


def test_force_push_and_depth(run_helper, git_repo: GitRepo, tmp_path: Path) -> None:
    for n in range(3):
        git_repo.commit({"n.txt": f"{n}\n"}, f"commit {n}")
    root = tmp_path / "git"
    helper = start(run_helper, git_repo, root, FAST, "--depth=1")
    wait_published(root, git_repo.head(), helper)
    assert git("rev-list", "--count", "HEAD", cwd=root / "current").strip() == "1"
    # Rewrite history: the branch now points at an unrelated commit.
    git("reset", "-q", "--hard", "HEAD~2", cwd=git_repo.work)
    rewritten = git_repo.commit({"n.txt": "rewritten\n"}, "rewritten")
    wait_published(root, rewritten, helper)
    assert (root / "current" / "n.txt").read_text() == "rewritten\n"
    assert git("rev-list", "--count", "HEAD", cwd=root / "current").strip() == "1"


def test_one_time_exit_codes_and_files(run_helper, git_repo: GitRepo, tmp_path: Path) -> None:
    root = tmp_path / "git"
    ok = start(run_helper, git_repo, root, "--one-time", "--touch-file=touched",
               "--error-file=error.json", "--publish-file=/" + str(tmp_path / "pub.json"),
               wait=None)  # fmt: skip
    assert ok.wait_exit(30) == 0, ok.log_text()
    assert (root / "touched").exists()
    assert not (root / "error.json").exists()
    record = json.loads((tmp_path / "pub.json").read_text())
    assert record["hash"] == git_repo.head() and record["worktree"].endswith(record["hash"])

    bad = start(run_helper, git_repo, root, "--one-time", "--ref=no-such-branch",
                "--error-file=error.json", wait=None)  # fmt: skip
    assert bad.wait_exit(30) == 1, bad.log_text()
    error = json.loads((root / "error.json").read_text())
    assert "no-such-branch" in error["error"]
    assert bad.events("sync_failed")
    # The published link was not touched by the failure.
    assert published(root) == git_repo.head()

    again = start(run_helper, git_repo, root, "--one-time", "--error-file=error.json", wait=None)
    assert again.wait_exit(30) == 0
    assert not (root / "error.json").exists()


def test_max_failures_then_exit(run_helper, tmp_path: Path) -> None:
    missing = f"file://{tmp_path}/does-not-exist.git"
    helper = start(run_helper, missing, tmp_path / "git", FAST, "--max-failures=2", wait=None)
    assert helper.wait_exit(30) == 1
    assert len(helper.events("sync_failed")) == 3
    # Before the first success --init-max-failures counts instead (and --init-period).
    init = start(run_helper, missing, tmp_path / "git1", "--period=1h", "--init-period=100ms",
                 "--max-failures=-1", "--init-max-failures=1", wait=None)  # fmt: skip
    assert init.wait_exit(30) == 1
    assert len(init.events("sync_failed")) == 2
    # Never: the helper keeps trying, /livez stays up, /readyz never turns 200.
    forever = start(run_helper, missing, tmp_path / "git2", FAST, "--max-failures=-1", wait=None)
    forever.wait_http("livez")
    wait_for(lambda: len(forever.events("sync_failed")) >= 3, what="three failures")
    assert forever.get("/readyz")[0] == 503
    assert forever.process.alive()


def test_restart_ready_from_disk_and_unready_after_failures(
    run_helper, git_repo: GitRepo, tmp_path: Path
) -> None:
    root = tmp_path / "git"
    first = start(run_helper, git_repo, root, "--one-time", wait=None)
    assert first.wait_exit(30) == 0
    # The remote is gone now; the published tree on disk is still valid: ready at once.
    gone = f"file://{tmp_path}/gone.git"
    helper = start(run_helper, gone, root, FAST, "--max-failures=-1",
                   "--unready-after-failures=3", wait="readyz")  # fmt: skip
    assert any(e.get("hash") == git_repo.head() for e in helper.events("found_published"))
    helper.wait_http("readyz", status=503, timeout=20)
    assert len(helper.events("sync_failed")) >= 3
    assert helper.get("/livez")[0] == 200
    assert published(root) == git_repo.head()


def test_stale_worktree_timeout_survives_restart(
    run_helper, git_repo: GitRepo, tmp_path: Path
) -> None:
    root = tmp_path / "git"
    old = git_repo.head()
    helper = start(run_helper, git_repo, root, FAST, "--stale-worktree-timeout=1h")
    wait_published(root, old, helper)
    new = git_repo.commit({"README": "new\n"}, "new")
    wait_published(root, new, helper)
    # A reader still inside the old tree keeps it: an hour has not passed.
    assert (root / ".worktrees" / old / "README").read_text() == "hello\n"
    assert helper.stop() == 0
    helper = start(run_helper, git_repo, root, FAST, "--stale-worktree-timeout=1h")
    wait_for(lambda: syncs(helper, "noop") >= 2, what="polls after the restart")
    assert (root / ".worktrees" / old).is_dir()
    assert helper.stop() == 0
    # The hour has passed (the replaced worktree's mtime says when it was replaced).
    long_ago = time.time() - 7200
    os.utime(root / ".worktrees" / old, (long_ago, long_ago))
    helper = start(run_helper, git_repo, root, FAST, "--stale-worktree-timeout=1h")
    wait_for(
        lambda: (
            not (root / ".worktrees" / old).exists()
            and old not in git("worktree", "list", cwd=root)
        ),
        what="stale worktree removed and pruned",
    )
    assert (root / "current" / "README").read_text() == "new\n"


def test_recovers_worktree_removed_crash_leftovers_and_locks(
    run_helper, git_repo: GitRepo, tmp_path: Path
) -> None:
    root = tmp_path / "git"
    helper = start(run_helper, git_repo, root, FAST)
    sha = git_repo.head()
    wait_published(root, sha, helper)
    assert helper.stop(signal.SIGKILL) is not None
    # A crash between `worktree add` and the publish: a half-made worktree of the next
    # commit; plus junk, and the locks a killed git leaves behind.
    nxt = git_repo.commit({"README": "next\n"}, "next")
    half = root / ".worktrees" / nxt
    half.mkdir()
    (half / "partial").write_text("half")
    (root / ".worktrees" / "junk").mkdir()
    (root / ".current.tmp-99999").symlink_to(f".worktrees/{nxt}")  # a publish killed mid-way
    for lock in ("index.lock", "HEAD.lock", "shallow.lock", "config.lock"):
        (root / ".git" / lock).write_text("")
    helper = start(run_helper, git_repo, root, FAST)
    wait_published(root, nxt, helper)
    assert (root / "current" / "README").read_text() == "next\n"
    assert not (root / "current" / "partial").exists()
    assert not list((root / ".git").glob("*.lock"))
    # The first tree goes out of the way too, kept for recycling.
    wait_for(
        lambda: sorted(os.listdir(root / ".worktrees")) == sorted([nxt, ".recycle"]),
        what="leftovers removed",
    )
    assert helper.events("stale_locks_removed")
    assert not (root / ".current.tmp-99999").is_symlink()
    # The published worktree deleted underneath: re-created at the next poll.
    import shutil

    shutil.rmtree(root / ".worktrees" / nxt)
    wait_for(lambda: (root / "current" / "README").exists(), what="worktree re-created")
    assert helper.events("worktree_missing")


def test_root_reinit_repo_switch_and_foreign_owner(
    run_helper, git_repo: GitRepo, tmp_path: Path
) -> None:
    root = tmp_path / "git"
    root.mkdir()
    (root / "lost+found").mkdir()  # a volume's mount point
    helper = start(run_helper, git_repo, root, "--one-time", wait=None)
    assert helper.wait_exit(30) == 0
    # Another repository, same root (the --repo changed on restart).
    other = GitRepo(name="other")
    try:
        other_sha = other.commit({"OTHER": "other\n"}, "other")
        if os.geteuid() == 0:
            # Root owned by another UID: git's "dubious ownership" must not stop the sync.
            for dirpath, _, files in os.walk(root):
                os.chown(dirpath, 65534, 65534)
                for name in files:
                    os.chown(os.path.join(dirpath, name), 65534, 65534)
        helper = start(run_helper, other, root, "--one-time", wait=None)
        assert helper.wait_exit(30) == 0, helper.log_text()
        assert published(root) == other_sha
        assert (root / "current" / "OTHER").exists()
        assert (root / "lost+found").is_dir()
        # A broken root repo is re-initialised; the published tree is kept until replaced.
        (root / ".git" / "HEAD").unlink()
        newer = other.commit({"OTHER": "newer\n"}, "newer")
        helper = start(run_helper, other, root, "--one-time", wait=None)
        assert helper.wait_exit(30) == 0, helper.log_text()
        assert helper.events("root_reinit")
        assert published(root) == newer
    finally:
        other.cleanup()


def test_file_remote_owned_by_another_uid(run_helper, git_repo: GitRepo, tmp_path: Path) -> None:
    """A file:// remote owned by another UID (a volume): git's upload-pack, which sees no
    GIT_CONFIG_* entries, must still trust it (safe.directory in the global file)."""
    if os.geteuid() != 0:  # chown to another UID needs root; CI runs as root
        (pytest.fail if IN_CI else pytest.skip)("needs root to chown the remote")
    for dirpath, _, files in os.walk(git_repo.bare):
        os.chown(dirpath, 65532, 65532)
        for name in files:
            os.chown(os.path.join(dirpath, name), 65532, 65532)
    root = tmp_path / "git"
    helper = start(run_helper, git_repo, root, "--one-time", wait=None)
    assert helper.wait_exit(30) == 0, helper.log_text()
    assert published(root) == git_repo.head()


def test_post_sync_and_sync_on_signal(run_helper, git_repo: GitRepo, tmp_path: Path) -> None:
    root = tmp_path / "git"
    helper = start(run_helper, git_repo, root, "--period=1h", "--sync-on-signal=SIGHUP")
    wait_published(root, git_repo.head(), helper)
    new = git_repo.commit({"README": "on demand\n"}, "on demand")
    import urllib.request

    request = urllib.request.Request(f"{helper.admin}/sync", method="POST", data=b"")
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.loads(response.read())
    assert answer == {"status": "ok", "hash": new, "changed": True}
    assert published(root) == new
    assert http_get(f"{helper.admin}/sync")[0] == 405  # GET is not a trigger
    newer = git_repo.commit({"README": "by signal\n"}, "by signal")
    helper.process.send_signal(signal.SIGHUP)
    wait_published(root, newer, helper)
    assert helper.process.alive()


def test_sigterm_mid_fetch_leaves_no_lock(run_helper, git_repo: GitRepo, git_http, tmp_path):
    server = git_http(git_repo.dir.path)
    url = server.url(git_repo.bare.name)
    root = tmp_path / "git"
    helper = start(run_helper, url, root, FAST)
    first = git_repo.head()
    wait_published(root, first, helper)
    server.stall_fetch.set()
    git_repo.commit({"README": "never published\n"}, "stalled")
    wait_for(lambda: any(r[0] == "POST" for r in server.requests[-3:]) and
             metric(helper, "git_fetch_count_total") == 2.0, what="fetch in flight")  # fmt: skip
    assert helper.stop(signal.SIGTERM) == 0
    assert published(root) == first
    assert (root / "current" / "README").read_text() == "hello\n"
    assert not [p for p in (root / ".git").rglob("*.lock")]
    assert not list(root.glob(".current.tmp-*"))
    assert helper.events("sync_stopping")
