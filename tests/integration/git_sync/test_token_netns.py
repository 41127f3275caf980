"""POST /sync with a bearer token from an address that is not loopback, over real HTTP.

The admin server only asks for the token off loopback, so the test needs a client that is
not on 127.0.0.1 or ::1: a network namespace of its own whose `lo` also carries
10.200.0.1. `podkit git-sync` runs in it bound to that address and the client connects
from it too, so its peer address is 10.200.0.1 and no packet leaves the namespace.
Needs root (`ip netns add`); a developer's non-root run skips, CI=true fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from podkit_dev.servers import GitRepo, HelperProcess, free_port, wait_for
from tests.integration.git_sync.kit import published
from tests.servers import IN_CI

ADDRESS = "10.200.0.1"
TOKEN = "Sync-ToKen-4Qz"
"""Mixed case on purpose: a server that changes header values' case never matches it."""

CLIENT = """import http.client, json, sys
method, port, path, auth = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
conn = http.client.HTTPConnection(sys.argv[5], port, timeout=60)
conn.request(method, path, headers={"Authorization": auth} if auth else {})
response = conn.getresponse()
print(json.dumps({"status": response.status, "body": response.read().decode()}))
"""


def _problem() -> str | None:
    if os.geteuid() != 0:
        return "needs root for a network namespace (ip netns add)"
    if shutil.which("ip") is None:
        return "ip (iproute2) is not installed"
    return None


@pytest.fixture
def netns() -> Iterator[str]:
    """A network namespace whose `lo` is up with 127.0.0.1 and ADDRESS; deleted after."""
    problem = _problem()
    if problem is not None:
        if IN_CI:
            pytest.fail(f"CI=true: {problem}", pytrace=False)
        pytest.skip(problem)
    name = f"podkit-test-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "-n", name, "addr", "add", f"{ADDRESS}/32", "dev", "lo"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)


def request(ns: str, port: int, method: str, path: str, auth: str = "") -> tuple[int, dict]:
    """One HTTP request made from inside the namespace (peer address: ADDRESS)."""
    argv = ["ip", "netns", "exec", ns, sys.executable, "-c", CLIENT,
            method, str(port), path, auth, ADDRESS]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=90)
    answer = json.loads(done.stdout)
    body = answer["body"]
    return answer["status"], json.loads(body) if body.startswith("{") else {}


def test_sync_token_from_off_loopback(netns: str, git_repo: GitRepo, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    root = tmp_path / "git"
    port = free_port()
    helper = HelperProcess(
        "git-sync",
        f"--repo={git_repo.url}",
        f"--root={root}",
        "--link=current",
        "--period=1h",  # only POST /sync syncs again
        f"--sync-token-file={token_file}",
        f"--admin-addr={ADDRESS}:{port}",  # wins over the loopback one HelperProcess sets
        wrapper=("ip", "netns", "exec", netns),
    )
    try:
        helper.start(wait=None)
        first = git_repo.head()

        def ready() -> bool:
            if not helper.process.alive():
                raise AssertionError(f"git-sync exited early:\n{helper.log_text()}")
            return request(netns, port, "GET", "/readyz")[0] == 200

        wait_for(ready, timeout=60, what="git-sync ready in the namespace", explain=helper.log_text)
        assert published(root) == first

        second = git_repo.commit({"README": "second\n"}, "second")
        for auth in ("", f"Bearer {TOKEN.lower()}", f"Bearer {TOKEN}x", "Bearer", TOKEN):
            status, body = request(netns, port, "POST", "/sync", auth)
            assert (status, body) == (403, {"error": "bearer token required"}), auth
        assert published(root) == first  # a refused request syncs nothing

        status, body = request(netns, port, "POST", "/sync", f"Bearer {TOKEN}")
        assert status == 200, helper.log_text()
        assert body["status"] == "ok" and body["hash"] == second
        assert published(root) == second
        # The scheme is case-insensitive, the token is not.
        status, body = request(netns, port, "POST", "/sync", f"bearer {TOKEN}")
        assert status == 200 and body["hash"] == second
        assert helper.stop() == 0
    finally:
        helper.cleanup()
