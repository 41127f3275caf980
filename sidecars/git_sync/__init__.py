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
    # What it runs of them (the e2e test test_git_sync_image.py runs it in the image): git
    # (its other commands are builtins of the one binary); the helpers git execs by name:
    # http(s) remotes, upload-pack for file:// remotes, `git submodule` (a shell script in
    # git 2.39, with the libraries it sources and the envsubst they run for each message
    # where gettext.sh is absent); ssh for ssh remotes; nss_wrapper, for ssh
    # as a UID without a passwd entry; the templates' info/exclude, so `git init` finds its
    # template directory. Perl, the docs and git's other programs stay out.
    image_files=(
        "/usr/bin/git",
        "/usr/lib/git-core/git-remote-http",
        "/usr/lib/git-core/git-remote-https",
        "/usr/lib/git-core/git-upload-pack",
        "/usr/lib/git-core/git-submodule",
        "/usr/lib/git-core/git-sh-setup",
        "/usr/lib/git-core/git-sh-i18n",
        "/usr/lib/git-core/git-sh-i18n--envsubst",
        "/usr/share/git-core/templates/info/exclude",
        "/usr/bin/ssh",
        "/usr/lib/*/libnss_wrapper.so",
    ),
)
