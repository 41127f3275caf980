"""The key promise, from a reader's side: through the link, never a missing or mixed tree.

Readers run in threads while the test pushes one commit after another and waits for
each to be published. Every commit writes the same generation number into all its
files. A reader that resolves the link once (as nginx does per request) must find every
file, all of one generation; one that opens a file through the link must always find it.
CI runs 30 syncs and 10 root re-inits; for a longer run: `GIT_SYNC_READER_SYNCS=200
GIT_SYNC_REINITS=50 .venv/bin/python -m pytest
tests/integration/git_sync/test_reader.py -q`.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from podkit_dev.servers import GitRepo, wait_for

SYNCS = int(os.environ.get("GIT_SYNC_READER_SYNCS", "30"))
FILES = 20


def tree(generation: int) -> dict[str, str | bytes | None]:
    files: dict[str, str | bytes | None] = {
        f"d{i % 4}/f{i}.txt": f"{generation}\n" for i in range(FILES)
    }
    files["gen.txt"] = f"{generation}\n"
    return files


def test_readers_never_see_missing_or_mixed_tree(run_helper, git_repo: GitRepo, tmp_path: Path):
    git_repo.commit(tree(0), "generation 0")
    root = tmp_path / "git"
    link = root / "current"
    helper = run_helper(
        "git-sync", f"--repo={git_repo.url}", f"--root={root}", "--link=current",
        "--period=50ms", "--stale-worktree-timeout=60s", "--git-gc=off",
    )  # fmt: skip
    wait_for(lambda: (link / "gen.txt").exists(), what="first publish")

    stop = threading.Event()
    problems: list[str] = []
    reads = [0, 0]
    seen: set[int] = set()

    def consistent_reader() -> None:
        while not stop.is_set():
            resolved = os.path.realpath(link)
            try:
                values = {(Path(resolved) / f"d{i % 4}/f{i}.txt").read_text() for i in range(FILES)}
                values.add((Path(resolved) / "gen.txt").read_text())
            except OSError as exc:
                problems.append(f"missing in {resolved}: {exc}")
                continue
            if len(values) != 1:
                problems.append(f"mixed tree in {resolved}: {sorted(values)}")
            seen.add(int(values.pop()))
            reads[0] += 1

    def path_reader() -> None:
        while not stop.is_set():
            try:
                (link / "gen.txt").read_text()
                os.listdir(link)
            except OSError as exc:
                problems.append(f"through the link: {exc}")
            reads[1] += 1

    threads = [threading.Thread(target=consistent_reader), threading.Thread(target=path_reader)]
    for thread in threads:
        thread.start()
    try:
        for generation in range(1, SYNCS + 1):
            sha = git_repo.commit(tree(generation), f"generation {generation}")
            wait_for(
                lambda sha=sha: os.readlink(link).endswith(sha),
                what=f"generation {generation} published",
                timeout=30,
            )
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    assert not problems, problems[:5]
    assert reads[0] > SYNCS and reads[1] > SYNCS
    assert len(seen) > 1
    assert (link / "gen.txt").read_text() == f"{SYNCS}\n"
    assert helper.stop() == 0


REINITS = int(os.environ.get("GIT_SYNC_REINITS", "10"))


def test_readers_keep_the_tree_while_the_root_is_reinitialised(
    run_helper, git_repo: GitRepo, tmp_path: Path
):
    """A broken root repo is re-initialised and the published commit's worktree is made
    again; readers of the link never see it missing meanwhile (the link stays on a
    hard-linked copy of the old tree until the new one is published)."""
    git_repo.commit(tree(7), "generation 7")
    sha = git_repo.head()
    root = tmp_path / "git"
    link = root / "current"
    helper = run_helper(
        "git-sync", f"--repo={git_repo.url}", f"--root={root}", "--link=current",
        "--period=50ms", "--max-failures=-1", "--stale-worktree-timeout=60s", "--git-gc=off",
    )  # fmt: skip
    wait_for(lambda: os.readlink(link) == f".worktrees/{sha}", what="first publish")

    stop = threading.Event()
    problems: list[str] = []
    reads = [0]

    def reader() -> None:
        while not stop.is_set():
            try:
                values = {(link / f"d{i % 4}/f{i}.txt").read_text() for i in range(FILES)}
                values.add((link / "gen.txt").read_text())
            except OSError as exc:
                problems.append(f"through the link: {exc}")
                continue
            if values != {"7\n"}:
                problems.append(f"wrong content: {sorted(values)}")
            reads[0] += 1

    def count(event: str) -> int:
        return sum(1 for e in helper.log_events() if e.get("event") == event)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for n in range(REINITS):
            reinits, publishes = count("root_reinit"), count("published")
            (root / ".git" / "HEAD").unlink()  # a broken root: re-initialised
            wait_for(
                lambda r=reinits, p=publishes: count("root_reinit") > r and count("published") > p,
                what=f"re-init {n + 1} and the same commit published again",
                timeout=30,
            )
            assert os.readlink(link) == f".worktrees/{sha}"
            assert (root / ".git" / "worktrees" / sha).is_dir()
    finally:
        stop.set()
        thread.join(10)
    assert not problems, problems[:5]
    assert reads[0] > REINITS
    assert count("worktree_held") >= REINITS  # the path taken: link on a hard-linked copy
    assert helper.stop() == 0
