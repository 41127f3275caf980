"""What git-sync's tests share: `published`, and running `podkit git-sync` inside a private
mount namespace, for what the host must not see.

git-sync's `--cookie-file` reads the fixed path /etc/git-secret/cookie_file and
`--add-user` appends to /etc/passwd: the tests give the helper its own /etc (an overlay
on a tmpfs, or one file bind-mounted) in a mount namespace of its own (`unshare -m`), so
the host's /etc is never written. That needs root (CAP_SYS_ADMIN); a developer's
non-root run skips these tests, CI=true fails them.
"""

from __future__ import annotations

import functools
import os
import pwd
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.servers import IN_CI


def published(root: Path, link: str = "current") -> str | None:
    """The commit `root/link` points at now (None: nothing published yet)."""
    try:
        return os.path.basename(os.readlink(root / link))
    except OSError:
        return None


# `sh -c SCRIPT sh ARG... -- COMMAND...`: set up the mounts, then exec the command.
UNSHARE = ("unshare", "--mount", "--propagation", "private")

OVERLAY_ETC = """set -e
scratch=$1; cookie=$2; shift 3
mount -t tmpfs tmpfs "$scratch"
mkdir "$scratch/upper" "$scratch/work"
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$scratch/upper,workdir=$scratch/work" /etc
if [ -n "$cookie" ]; then mkdir -p /etc/git-secret; cp "$cookie" /etc/git-secret/cookie_file; fi
exec "$@"
"""

OWN_PASSWD_AS = """set -e
passwd=$1; uid=$2; shift 3
mount --bind "$passwd" /etc/passwd
exec setpriv --reuid="$uid" --regid="$uid" --clear-groups "$@"
"""


@functools.cache
def _namespace_problem() -> str | None:
    if os.geteuid() != 0:
        return "needs root for a private mount namespace (unshare -m)"
    for binary in ("unshare", "setpriv"):
        if shutil.which(binary) is None:
            return f"{binary} (util-linux) is not installed"
    probe = subprocess.run(
        [*UNSHARE, "sh", "-c", "mount -t tmpfs tmpfs /mnt"], capture_output=True, check=False
    )
    if probe.returncode != 0:
        return f"mounting in a private namespace is not permitted: {probe.stderr.decode().strip()}"
    return None


def need_mount_namespace() -> None:
    problem = _namespace_problem()
    if problem is None:
        return
    if IN_CI:
        pytest.fail(f"CI=true: {problem}", pytrace=False)
    pytest.skip(problem)


def with_own_etc(scratch: str, cookie_file: str = "") -> list[str]:
    """Wrapper argv: the command sees an /etc of its own (writes go to a tmpfs at scratch);
    cookie_file, if given, is copied to /etc/git-secret/cookie_file in it."""
    need_mount_namespace()
    os.makedirs(scratch, exist_ok=True)
    return [*UNSHARE, "sh", "-c", OVERLAY_ETC, "sh", scratch, cookie_file, "--"]


def with_own_passwd_as(passwd: str, uid: int) -> list[str]:
    """Wrapper argv: the command runs as uid (gid = uid, no groups) with `passwd` (a file
    the test reads afterwards) bind-mounted over /etc/passwd."""
    need_mount_namespace()
    return [*UNSHARE, "sh", "-c", OWN_PASSWD_AS, "sh", passwd, str(uid), "--"]


def uid_without_passwd_entry(start: int = 43210) -> int:
    uid = start
    while True:
        try:
            pwd.getpwuid(uid)
        except KeyError:
            return uid
        uid += 1
