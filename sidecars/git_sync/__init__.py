"""`podkit git-sync`: keeps a git checkout on a shared volume current, swapped atomically.

A drop-in for git-sync v4 (its flags, `GITSYNC_*` env and on-disk layout), driving the
real `git` binary: each synced commit is a detached worktree under ROOT/.worktrees and
the link is moved to it by rename(2), so readers never see a half-updated tree.
"""

from podkit.helper import Helper

helper = Helper(
    name="git-sync",
    summary="keeps a git checkout on a shared volume current, swapped atomically (git-sync v4)",
    settings="podkit.sidecars.git_sync.settings:GitSyncSettings",
    run="podkit.sidecars.git_sync.main:run",
    admin_port=9703,
    image_packages=("git", "openssh-client", "libnss-wrapper"),
)
