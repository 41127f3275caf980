"""git-sync v4's layout on the shared volume, and the only code that changes what readers see.

    ROOT/.git                 the root repo: fetched objects, never checked out
    ROOT/.worktrees/<sha>     one detached worktree per synced commit
    ROOT/.worktrees/.recycle  a stale worktree kept to become the next one (see below)
    LINK -> .worktrees/<sha>  a relative symlink, replaced atomically (temp link + rename(2))

A reader who opens files through LINK sees the old tree or the new one, never a mix: the
new worktree is complete before the link moves, and the old one stays until
`--stale-worktree-timeout` has passed since it was replaced (its mtime is set at that
moment, so the wait survives a restart). Nothing here awaits, so a cancellation (SIGTERM)
can never stop a publish half-way. When the published commit's worktree must be made
again in place (after a root re-init), `hold()` first moves the link to a hard-linked
copy of it (`<sha>.held-<ns>`), so readers never see it vanish.

Recycling: instead of deleting the first stale worktree, git-sync moves it (`git worktree
move`) to `.recycle`, out of every reader's path at the moment a delete would have removed
it. The next sync moves it to the new commit's name and lets `git reset --hard` and
`git clean` rewrite only what differs, so a commit that changes one file of 10,000
writes one file instead of creating 10,000 (and deleting 10,000 more). Files are replaced
by unlink + create, so a reader holding an old file open keeps its old contents, as after
a delete.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from dataclasses import dataclass

SHA_NAME = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
# A hard-linked copy of the published worktree, held while that commit's worktree is made
# again in place (after a root re-init): `<sha>.held-<ns>`, unique, so an older copy a
# reader may still be in waits for its own stale timeout.
HELD_NAME = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})\.held-[0-9]+$")
WORKTREES = ".worktrees"
RECYCLE = ".recycle"


@dataclass(frozen=True)
class Stale:
    name: str
    path: str
    age: float


class Layout:
    def __init__(self, root: str, link: str) -> None:
        self.root = os.path.abspath(root)
        self.git_dir = os.path.join(self.root, ".git")
        self.worktrees = os.path.join(self.root, WORKTREES)
        self.recycle = os.path.join(self.worktrees, RECYCLE)
        self.link = os.path.normpath(link if os.path.isabs(link) else os.path.join(self.root, link))

    def worktree(self, sha: str) -> str:
        return os.path.join(self.worktrees, sha)

    # --- what is published ----------------------------------------------------------------

    def published(self) -> str | None:
        """The sha the link points at, if it points into our worktrees."""
        try:
            target = os.readlink(self.link)
        except OSError:
            return None
        path = os.path.normpath(os.path.join(os.path.dirname(self.link), target))
        name = os.path.basename(path)
        if os.path.dirname(path) != self.worktrees or not SHA_NAME.match(name):
            return None
        return name

    def worktree_ok(self, sha: str) -> bool:
        """Cheap check that a worktree exists and git still knows it: its `.git` file names
        an admin directory of the root repo that exists (a moved worktree keeps the admin
        directory's first name, so the name is read, not guessed)."""
        return self.tree_ok(self.worktree(sha))

    def tree_ok(self, path: str) -> bool:
        try:
            with open(os.path.join(path, ".git"), encoding="utf-8") as dotgit:
                pointer = dotgit.read(4096).strip()
        except (OSError, UnicodeDecodeError):
            return False
        if not pointer.startswith("gitdir: "):
            return False
        admin = os.path.normpath(os.path.join(path, pointer[len("gitdir: ") :]))
        return os.path.dirname(admin) == os.path.join(self.git_dir, "worktrees") and os.path.isdir(
            admin
        )

    def _target(self) -> str | None:
        """The absolute, normalised path the link points at (None: no link)."""
        try:
            target = os.readlink(self.link)
        except OSError:
            return None
        return os.path.normpath(os.path.join(os.path.dirname(self.link), target))

    def _point_link(self, path: str) -> None:
        """Replace the link by one to path, atomically (temp link + rename(2))."""
        link_dir = os.path.dirname(self.link)
        os.makedirs(link_dir, exist_ok=True)
        target = os.path.relpath(path, link_dir)
        temp = os.path.join(link_dir, f".{os.path.basename(self.link)}.tmp-{os.getpid()}")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        os.symlink(target, temp)
        os.replace(temp, self.link)
        # The link's directory entry must reach the disk before the old tree may go.
        _fsync_dir(link_dir)

    def publish(self, sha: str) -> str | None:
        """Point the link at the worktree of sha, atomically; returns the sha it replaced."""
        old = self.published()
        old_path = self._target()
        self._point_link(self.worktree(sha))
        if old_path and old_path != self.worktree(sha) and _inside(old_path, self.worktrees):
            # The replaced tree's stale timer starts now, and survives a restart.
            with contextlib.suppress(OSError):
                os.utime(old_path)
        return old

    def hold(self, sha: str) -> str:
        """Before the published worktree of sha is made again in place: copy it with hard
        links (no data is copied) to `<sha>.held-<ns>` and point the link there, so readers keep
        the same files until publish() moves the link back. Returns the copy's path;
        OSError (the link unchanged) if it cannot be made."""
        source = self.worktree(sha)
        held = f"{source}.held-{time.time_ns()}"
        try:
            shutil.copytree(source, held, symlinks=True, copy_function=os.link)
        except (OSError, shutil.Error) as exc:
            self.remove_tree(held)
            raise OSError(f"cannot hard-link {source} to {held}: {exc}") from None
        self._point_link(held)
        return held

    # --- cleaning up ----------------------------------------------------------------------

    def temp_links(self) -> list[str]:
        """Temporary links a killed publish may have left (never the link itself)."""
        link_dir = os.path.dirname(self.link)
        prefix = f".{os.path.basename(self.link)}.tmp-"
        try:
            names = os.listdir(link_dir)
        except OSError:
            return []
        return [
            os.path.join(link_dir, n)
            for n in names
            if n.startswith(prefix) and os.path.islink(os.path.join(link_dir, n))
        ]

    def stale(self, keep: set[str], timeout: float, now: float | None = None) -> list[Stale]:
        """Entries of .worktrees not in keep, with their age (seconds since mtime)."""
        now = time.time() if now is None else now
        out = []
        try:
            names = os.listdir(self.worktrees)
        except FileNotFoundError:
            return []
        for name in names:
            if name in keep or name == RECYCLE:
                continue
            path = os.path.join(self.worktrees, name)
            try:
                age = now - os.lstat(path).st_mtime
            except FileNotFoundError:
                continue
            # Leftovers that are not worktrees (a crash mid-add) go at once; a held copy
            # waits like a replaced worktree (its mtime is set when the link leaves it).
            if not (SHA_NAME.match(name) or HELD_NAME.match(name)) or age >= timeout:
                out.append(Stale(name, path, age))
        return out

    def pending_stale(self, keep: set[str]) -> bool:
        try:
            names = os.listdir(self.worktrees)
        except FileNotFoundError:
            return False
        return any(name not in keep and name != RECYCLE for name in names)

    def is_shallow(self) -> bool:
        return os.path.exists(os.path.join(self.git_dir, "shallow"))

    @staticmethod
    def exists(path: str) -> bool:
        return os.path.lexists(path)

    def remove_tree(self, path: str) -> None:
        if not os.path.lexists(path):
            return
        if os.path.islink(path) or os.path.isfile(path):
            os.unlink(path)
        else:
            shutil.rmtree(path, ignore_errors=True)

    def remove_stale_locks(self) -> list[str]:
        """Remove every *.lock under the root repo. Only call while no git of ours runs:
        git-sync is the only writer, so a lock then is one a killed git left behind."""
        removed = []
        for directory, dirs, files in os.walk(self.git_dir):
            if directory == os.path.join(self.git_dir, "objects"):
                dirs[:] = [d for d in dirs if d in ("info", "pack")]
            for name in files:
                if name.endswith(".lock"):
                    path = os.path.join(directory, name)
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
                        removed.append(os.path.relpath(path, self.root))
        return removed

    def root_problem(self) -> str | None:
        """Why the root repo cannot be used as it is (None: fine). Cheap: stats only."""
        if not os.path.isdir(self.git_dir):
            return "no .git directory"
        for name in ("HEAD", "config"):
            if not os.path.isfile(os.path.join(self.git_dir, name)):
                return f".git/{name} is missing"
        if not os.path.isdir(os.path.join(self.git_dir, "objects")):
            return ".git/objects is missing"
        return None


def _inside(path: str, directory: str) -> bool:
    return os.path.dirname(path) == directory


def _fsync_dir(path: str) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_atomic(path: str, data: bytes, mode: int = 0o644) -> None:
    """Write a whole file by temp file + rename: readers see the old content or the new."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    temp = os.path.join(directory, f".{os.path.basename(path)}.tmp-{os.getpid()}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
    except BaseException:
        # A full disk (ENOSPC) must not leave a half-written temp file taking space.
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def touch(path: str) -> None:
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    with open(path, "a"):
        pass
    os.utime(path)
