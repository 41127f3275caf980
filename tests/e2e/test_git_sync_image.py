"""git-sync in its image (issue 33): the image keeps only the files of Debian's git and
openssh-client that git-sync runs (Helper.image_files), so what git-sync does is run here
in the image as built, against real servers on the host's loopback (`--network host`):
http with basic auth and https (git-remote-http/https), ssh with known_hosts as a UID
without a passwd entry (ssh, nss_wrapper), file:// submodules (upload-pack, the
`git submodule` script), sparse checkout and partial clone, and the exechook and webhook
around an update. The checkout is a directory of the host bind-mounted at the same path,
owned by the image's user, and read back from the host.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import ssl
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from podkit.sidecars.git_sync import helper
from podkit_dev.servers import HOST, GitHttpServer, GitRepo, SshServer, free_port, wait_for
from tests.e2e.harness import Podman
from tests.integration.git_sync.kit import published
from tests.integration.git_sync.test_features import bare_with_commit

UID = 65532  # the images' user
# As the other image tests run the helpers, plus the host's network for its loopback servers.
OPTIONS = ("--network", "host", "--read-only", "--cap-drop", "ALL",
           "--security-opt", "no-new-privileges")  # fmt: skip


@pytest.fixture
def image(helper_images: dict[str, str]) -> str:
    return helper_images["git-sync"]


@pytest.fixture
def shared() -> Iterator[Path]:
    """A directory of the image's user, mounted into the container at the same path."""
    path = Path(tempfile.mkdtemp(prefix="podkit-e2e-git-sync-"))
    os.chmod(path, 0o755)
    os.chown(path, UID, UID)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def git_sync(
    podman: Podman, image: str, shared: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    """`IMAGE --one-time ARGS`, to its exit."""
    return podman.run(
        "run", "--rm", *OPTIONS, "-v", f"{shared}:{shared}", image,
        f"--admin-addr={HOST}:{free_port()}", "--one-time", *args,
        check=False, timeout=120,
    )  # fmt: skip


def events(stderr: str, name: str) -> list[dict[str, object]]:
    lines = (json.loads(line) for line in stderr.splitlines() if line.startswith("{"))
    return [line for line in lines if line.get("event") == name]


def test_http_basic_auth_update_and_hooks(
    podman: Podman, image: str, shared: Path, git_repo: GitRepo, git_http
) -> None:
    """A running container: the first commit and the next one published over http with
    basic auth (the password file read by the helper, handed to git's credential store),
    the exechook run in the image for each, the webhook called with each hash."""
    server = git_http(git_repo.dir.path, username="alice", password="s3cret")
    (shared / "password").write_text("s3cret\n")
    ran = shared / "ran"
    hook = shared / "hook.sh"
    hook.write_text(f'#!/bin/sh\necho "$GITSYNC_HASH $(id -u) $(pwd)" >> {ran}\n')
    hook.chmod(0o755)
    called: list[str | None] = []

    class Receiver(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            called.append(self.headers.get("Gitsync-Hash"))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    receiver = http.server.ThreadingHTTPServer((HOST, free_port()), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    root = shared / "git"
    admin = free_port()
    args = (
        f"--admin-addr={HOST}:{admin}", f"--repo={server.url(git_repo.bare.name)}",
        f"--root={root}", "--link=current", "--period=200ms", "--username=alice",
        f"--password-file={shared / 'password'}", f"--exechook-command={hook}",
        f"--webhook-url=http://{HOST}:{receiver.server_port}/hook", "--shutdown-timeout=5s",
    )  # fmt: skip
    try:
        options = (*OPTIONS, "-v", f"{shared}:{shared}")
        with podman.container(image, *args, options=options) as container:
            first = git_repo.head()
            wait_for(lambda: ran.exists() and first in ran.read_text(), what="hook for the first",
                     timeout=60)  # fmt: skip
            assert ran.read_text().split() == [first, str(UID), str(root / ".worktrees" / first)]
            second = git_repo.commit({"README": "second\n", "docs/a.md": "a\n"}, "second")
            wait_for(lambda: published(root) == second, what="second published", timeout=60)
            assert (root / "current" / "docs" / "a.md").read_text() == "a\n"
            assert (root / "current" / "README").stat().st_uid == UID
            wait_for(lambda: second in ran.read_text(), what="hook for the second", timeout=30)
            wait_for(lambda: called[-1:] == [second], what="webhook for the second", timeout=30)
            assert called[0] == first
            podman.run("stop", "--time", "20", container, timeout=60)
            logs = podman.run("logs", container).stderr
            assert podman.state(container)["ExitCode"] == 0, logs
            assert not events(logs, "sync_failed"), logs
            assert "s3cret" not in logs
    finally:
        receiver.shutdown()
        receiver.server_close()
    assert any(status == 401 for _, _, status in server.requests)


def test_https_with_the_servers_ca(
    podman: Podman, image: str, shared: Path, git_repo: GitRepo
) -> None:
    """git-remote-https and its TLS libraries: a server whose certificate only the CA file
    given by --git-config vouches for."""
    cert, key = shared / "cert.pem", shared / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", f"/CN={HOST}", "-addext", f"subjectAltName=IP:{HOST}",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    server = GitHttpServer(git_repo.dir.path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.httpd.socket = context.wrap_socket(server.httpd.socket, server_side=True)
    server.start()
    try:
        url = server.url(git_repo.bare.name).replace("http://", "https://")
        root = shared / "git"
        refused = git_sync(podman, image, shared, f"--repo={url}", f"--root={root}")
        assert refused.returncode == 1, refused.stderr
        assert "certificate" in str(events(refused.stderr, "sync_failed")[0]["error"]).lower()
        done = git_sync(podman, image, shared, f"--repo={url}", f"--root={root}",
                        "--link=current", f"--git-config=http.sslCAInfo:{cert}")  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert published(root) == git_repo.head()
    finally:
        server.cleanup()


def test_ssh_known_hosts_without_passwd_entry(
    podman: Podman, image: str, shared: Path, git_repo: GitRepo, sshd: SshServer
) -> None:
    """ssh in the image, run by a UID that the image's /etc/passwd does not know (ssh exits
    at once without an entry: nss_wrapper gives it one), checking the host key."""
    key = shared / "ssh-key"
    shutil.copy(sshd.client_key, key)
    os.chown(key, UID, UID)
    key.chmod(0o600)
    known_hosts = shared / "known_hosts"
    shutil.copy(sshd.known_hosts, known_hosts)
    root = shared / "git"
    args = (f"--repo={sshd.url(git_repo.bare)}", f"--root={root}", "--link=current",
            f"--ssh-key-file={key}")  # fmt: skip
    done = git_sync(podman, image, shared, *args, f"--ssh-known-hosts-file={known_hosts}")
    assert done.returncode == 0, done.stderr
    assert not events(done.stderr, "no_passwd_entry"), done.stderr
    assert published(root) == git_repo.head()
    assert (root / "current" / "README").read_text() == "hello\n"
    wrong = shared / "wrong_known_hosts"
    wrong.write_text(sshd.known_hosts.read_text().replace(f"]:{sshd.port} ", "]:1 "))
    git_repo.commit({"README": "new\n"}, "new")
    refused = git_sync(podman, image, shared, *args, f"--ssh-known-hosts-file={wrong}")
    assert refused.returncode == 1
    error = str(events(refused.stderr, "sync_failed")[0]["error"])
    assert "Host key verification failed" in error


def test_recursive_submodules_over_file_remotes(podman: Podman, image: str, shared: Path) -> None:
    """`git submodule update --init --recursive` (a shell script in git 2.39, sourcing
    git-sh-setup) and upload-pack for file:// remotes, by relative URLs."""
    repos = shared / "repos"
    repos.mkdir()
    bare_with_commit(repos, "leaf", {"leaf.txt": "leaf\n"})
    bare_with_commit(repos, "middle", {"middle.txt": "middle\n"}, submodules=["leaf"])
    top = bare_with_commit(repos, "top", {"top.txt": "top\n"}, submodules=["middle"])
    root = shared / "git"
    done = git_sync(podman, image, shared, f"--repo=file://{top}", f"--root={root}",
                    "--link=current", "--submodules=recursive",
                    "--git-config=protocol.file.allow:always")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (root / "current" / "middle" / "leaf" / "leaf.txt").read_text() == "leaf\n"


def test_sparse_checkout_and_partial_clone(
    podman: Podman, image: str, shared: Path, git_repo: GitRepo, git_http
) -> None:
    """Sparse checkout from a patterns file; a partial clone (--filter=blob:none) whose
    checkout fetches the blobs it needs over http afterwards."""
    git_repo.commit({"docs/a.md": "a\n", "src/b.py": "b\n", "big.bin": "x" * 100_000}, "tree")
    url = git_http(git_repo.dir.path).url(git_repo.bare.name)
    patterns = shared / "sparse"
    patterns.write_text("/docs/\n/README\n")
    root = shared / "git"
    done = git_sync(podman, image, shared, f"--repo={url}", f"--root={root}", "--link=current",
                    f"--sparse-checkout-file={patterns}")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert sorted(os.listdir(root / "current")) == [".git", "README", "docs"]
    partial = shared / "partial"
    done = git_sync(podman, image, shared, f"--repo={url}", f"--root={partial}",
                    "--link=current", "--filter=blob:none")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (partial / "current" / "big.bin").stat().st_size == 100_000


def test_only_the_files_git_sync_runs(podman: Podman, image: str) -> None:
    """Debian's git pulls perl's modules, the docs and git's other programs; of git's
    programs only those git-sync runs are here (the base's perl-base is the base's)."""
    found = podman.out(
        "run", "--rm", "--network", "none", "--entrypoint", "python3", image, "-c",
        "import os, json; print(json.dumps([sorted(os.listdir('/usr/lib/git-core')), "
        "[p for p in ('/usr/share/perl', '/usr/share/perl5/Git.pm', '/usr/share/doc/git', "
        "'/usr/share/man/man1/git.1.gz', '/usr/lib/git-core/git-daemon') if os.path.lexists(p)]]))",
    )  # fmt: skip
    git_core, present = json.loads(found)
    assert present == []
    named = {os.path.basename(f) for f in helper.image_files if f.startswith("/usr/lib/git-core/")}
    # `git` there: what git-upload-pack links to (a link to /usr/bin/git itself).
    assert set(git_core) == named | {"git"}
