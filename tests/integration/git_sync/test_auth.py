"""Auth against real servers: `git http-backend` with basic auth, and Debian's sshd.

The http server is the real git http-backend (CGI) behind a small threaded server on
loopback (podkit_dev.servers.GitHttpServer) that checks the basic-auth header; sshd runs
on a free loopback port with its own host key, checked through known_hosts.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import tempfile
import threading
from pathlib import Path

from podkit_dev.servers import HOST, GitRepo, free_port, wait_for
from tests.integration.git_sync.kit import (
    published,
    uid_without_passwd_entry,
    with_own_etc,
    with_own_passwd_as,
)


def test_basic_auth_password_file_reread(run_helper, git_repo: GitRepo, git_http, tmp_path):
    server = git_http(git_repo.dir.path, username="alice", password="token-one")
    secret = tmp_path / "password"
    secret.write_text("token-one\n")
    root = tmp_path / "git"
    helper = run_helper(
        "git-sync", f"--repo={server.url(git_repo.bare.name)}", f"--root={root}",
        "--link=current", "--period=100ms", "--username=alice", f"--password-file={secret}",
        "--max-failures=-1", "--error-file=error.json",
    )  # fmt: skip
    wait_for(lambda: published(root) == git_repo.head(), what="first sync with basic auth")
    # The token is rotated on the server: syncs fail until the mounted file follows.
    server.password = "token-two"
    new = git_repo.commit({"README": "rotated\n"}, "rotated")
    wait_for(lambda: helper.events("sync_failed"), what="a failure with the old token")
    # (the error file is written just after the log line)
    wait_for(lambda: (root / "error.json").exists(), what="error file written")
    assert published(root) != new
    secret.write_text("token-two\n")
    wait_for(lambda: published(root) == new, what="sync with the re-read password file")
    wait_for(lambda: not (root / "error.json").exists(), what="error file removed")
    assert any(status == 401 for _, _, status in server.requests)
    log = helper.log_text()
    assert "token-one" not in log and "token-two" not in log
    assert "token-one" not in helper.metrics()


def test_credential_json_and_askpass_url(run_helper, git_repo: GitRepo, git_http, tmp_path):
    server = git_http(git_repo.dir.path, username="bob", password="s3cret")
    secret = tmp_path / "bob"
    secret.write_text("s3cret")
    url = server.url(git_repo.bare.name)
    root = tmp_path / "git"
    credential = json.dumps({"url": url, "username": "bob", "password-file": str(secret)})
    one = run_helper("git-sync", f"--repo={url}", f"--root={root}", "--link=current",
                     "--one-time", f"--credential={credential}", wait=None)  # fmt: skip
    assert one.wait_exit(30) == 0, one.log_text()

    asked: list[str] = []

    class Askpass(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            asked.append(self.path)
            body = b"username=bob\npassword=s3cret\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    askpass = http.server.ThreadingHTTPServer((HOST, free_port()), Askpass)
    thread = threading.Thread(target=askpass.serve_forever, daemon=True)
    thread.start()
    try:
        new = git_repo.commit({"README": "askpass\n"}, "askpass")
        two = run_helper("git-sync", f"--repo={url}", f"--root={root}", "--link=current",
                         "--one-time", f"--askpass-url=http://{HOST}:{askpass.server_port}/creds",
                         wait=None)  # fmt: skip
        assert two.wait_exit(30) == 0, two.log_text()
        assert published(root) == new
        assert asked
    finally:
        askpass.shutdown()
        askpass.server_close()


def test_wrong_password_fails_clearly(run_helper, git_repo: GitRepo, git_http, tmp_path):
    server = git_http(git_repo.dir.path, username="alice", password="right")
    secret = tmp_path / "password"
    secret.write_text("wrong-one")
    root = tmp_path / "git"
    helper = run_helper(
        "git-sync", f"--repo={server.url(git_repo.bare.name)}", f"--root={root}",
        "--link=current", "--one-time", "--username=alice", f"--password-file={secret}",
        "--error-file=error.json", wait=None,
    )  # fmt: skip
    assert helper.wait_exit(30) == 1
    failure = helper.events("sync_failed")[0]
    assert "Authentication failed" in failure["error"] or "401" in failure["error"]
    assert "wrong-one" not in helper.log_text()
    assert "wrong-one" not in (root / "error.json").read_text()
    assert published(root) is None


def test_ssh_with_known_hosts(run_helper, git_repo: GitRepo, sshd, tmp_path):
    root = tmp_path / "git"
    url = sshd.url(git_repo.bare)
    helper = run_helper(
        "git-sync", f"--repo={url}", f"--root={root}", "--link=current", "--one-time",
        f"--ssh-key-file={sshd.client_key}", f"--ssh-known-hosts-file={sshd.known_hosts}",
        wait=None,
    )  # fmt: skip
    assert helper.wait_exit(30) == 0, helper.log_text()
    assert published(root) == git_repo.head()
    assert (root / "current" / "README").read_text() == "hello\n"
    # A host key that does not match known_hosts is refused.
    wrong = tmp_path / "known_hosts"
    wrong.write_text(sshd.known_hosts.read_text().replace(f"]:{sshd.port} ", "]:1 "))
    git_repo.commit({"README": "new\n"}, "new")
    refused = run_helper(
        "git-sync", f"--repo={url}", f"--root={root}", "--link=current", "--one-time",
        f"--ssh-key-file={sshd.client_key}", f"--ssh-known-hosts-file={wrong}", wait=None,
    )  # fmt: skip
    assert refused.wait_exit(30) == 1
    assert "Host key verification failed" in refused.events("sync_failed")[0]["error"]


def test_cookie_file(run_helper, git_repo: GitRepo, git_http, tmp_path):
    """--cookie-file: git sends the cookies of /etc/git-secret/cookie_file (git-sync v4's fixed
    path, given to the helper in a mount namespace of its own) to a server that needs one."""
    server = git_http(git_repo.dir.path, cookie="session=c00kie")
    url = server.url(git_repo.bare.name)
    root = tmp_path / "git"
    args = ("git-sync", f"--repo={url}", f"--root={root}", "--link=current", "--one-time")
    # Without the cookie the server refuses: the cookie is what lets the sync through.
    refused = run_helper(*args, wait=None)
    assert refused.wait_exit(30) == 1
    assert "403" in refused.events("sync_failed")[0]["error"]
    # --cookie-file with no cookie file mounted: a clear error naming the path.
    missing = run_helper(*args, "--cookie-file", wait=None,
                         wrapper=with_own_etc(str(tmp_path / "etc-a")))  # fmt: skip
    assert missing.wait_exit(30) == 1
    error = missing.events("sync_failed")[0]["error"]
    assert (
        error == "cannot read --cookie-file /etc/git-secret/cookie_file: No such file or directory"
    )

    cookies = tmp_path / "cookie_file"  # Netscape format, as curl (git's http) reads it
    cookies.write_text(
        f"# Netscape HTTP Cookie File\n{HOST}\tFALSE\t/\tFALSE\t2147483647\tsession\tc00kie\n"
    )
    server.cookies_seen.clear()
    helper = run_helper(*args, "--cookie-file", wait=None,
                        wrapper=with_own_etc(str(tmp_path / "etc-b"), str(cookies)))  # fmt: skip
    assert helper.wait_exit(30) == 0, helper.log_text()
    assert published(root) == git_repo.head()
    assert "session=c00kie" in server.cookies_seen


def test_add_user_lets_ssh_run_for_a_uid_without_passwd_entry(
    run_helper, git_repo: GitRepo, sshd, tmp_path
):
    """--add-user: the helper, run as a UID that /etc/passwd does not know (as an image run
    with an arbitrary UID), appends git-sync's entry to a writable /etc/passwd, and ssh
    (which exits at once for an unknown UID) then fetches over ssh."""
    uid = uid_without_passwd_entry()
    own = Path(tempfile.mkdtemp(prefix="podkit-add-user-"))  # tmp_path is root-only (0700)
    try:
        os.chmod(own, 0o755)
        passwd = own / "passwd"
        shutil.copy("/etc/passwd", passwd)
        key = own / "ssh-key"
        shutil.copy(sshd.client_key, key)
        root = own / "git"
        root.mkdir()
        for path in (passwd, key, root):
            os.chown(path, uid, uid)
        key.chmod(0o600)
        args = ("git-sync", f"--repo={sshd.url(git_repo.bare)}", f"--root={root}",
                "--link=current", "--one-time", f"--ssh-key-file={key}",
                f"--ssh-known-hosts-file={sshd.known_hosts}", "--add-user")  # fmt: skip
        helper = run_helper(*args, wait=None, wrapper=with_own_passwd_as(str(passwd), uid))
        assert helper.wait_exit(30) == 0, helper.log_text()
        assert published(root) == git_repo.head()
        assert (root / "current" / "README").read_text() == "hello\n"
        assert root.joinpath("current").resolve().stat().st_uid == uid
        added = [line for line in passwd.read_text().splitlines() if f":x:{uid}:" in line]
        assert len(added) == 1 and added[0].startswith(f"git-sync:x:{uid}:{uid}:")
        assert helper.events("user_added")
        # Known now: a restart adds nothing.
        git_repo.commit({"README": "again\n"}, "again")
        again = run_helper(*args, wait=None, wrapper=with_own_passwd_as(str(passwd), uid))
        assert again.wait_exit(30) == 0, again.log_text()
        assert published(root) == git_repo.head()
        assert [line for line in passwd.read_text().splitlines() if f":x:{uid}:" in line] == added
        assert not again.events("user_added")
    finally:
        shutil.rmtree(own, ignore_errors=True)
