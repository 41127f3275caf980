"""Auth against real servers: `git http-backend` with basic auth, and Debian's sshd.

The http server is the real git http-backend (CGI) behind a small threaded server on
loopback (podkit_dev.servers.GitHttpServer) that checks the basic-auth header; sshd runs
on a free loopback port with its own host key, checked through known_hosts.
"""

from __future__ import annotations

import http.server
import json
import threading
from pathlib import Path

from podkit_dev.servers import HOST, GitRepo, free_port, wait_for


def published(root: Path) -> str | None:
    try:
        return (root / "current").readlink().name
    except OSError:
        return None


def events(helper, name: str) -> list[dict]:
    return [e for e in helper.log_events() if e.get("event") == name]


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
    wait_for(lambda: events(helper, "sync_failed"), what="a failure with the old token")
    assert (root / "error.json").exists()
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
    failure = events(helper, "sync_failed")[0]
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
    assert "Host key verification failed" in events(refused, "sync_failed")[0]["error"]
