"""`POST /webhook` of `podkit git-sync`: forge push hooks against the real helper and a real
git remote (a local bare repository the test pushes to).

The payloads are the forges' own documented examples (abridged: the nested `repository`,
`sender` and `commits` objects are shortened; every top-level field the helper reads is
kept), each with its source. The test sets `ref` and `after` to the commit it pushed and
signs the body with the test secret, as the forge would.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import os
import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from podkit_dev.servers import HOST, GitRepo, free_port, podkit_argv, wait_for
from tests.integration.git_sync.kit import published

# The test values of GitHub's "Validating webhook deliveries" page
# (https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries):
# secret "It's a Secret to Everybody", payload "Hello, World!", and the signature below.
SECRET = "It's a Secret to Everybody"
DOCUMENTED_BODY = b"Hello, World!"
DOCUMENTED_SIGNATURE = b"sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

# GitHub's push example (a tag deleted), from the docs' webhook payload examples:
# https://github.com/github/docs/blob/032251bd4fa2dd80d9ebc33390a1d0f75b5b4bb4/lib/webhooks/static/dotcom/push.payload.json
GITHUB_PUSH: dict[str, Any] = {
    "ref": "refs/tags/simple-tag",
    "before": "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
    "after": "0000000000000000000000000000000000000000",
    "created": False,
    "deleted": True,
    "forced": False,
    "base_ref": None,
    "compare": "https://github.com/Codertocat/Hello-World/compare/6113728f27ae...000000000000",
    "commits": [],
    "head_commit": None,
    "repository": {
        "id": 186853002,
        "node_id": "MDEwOlJlcG9zaXRvcnkxODY4NTMwMDI=",
        "name": "Hello-World",
        "full_name": "Codertocat/Hello-World",
        "private": False,
        "clone_url": "https://github.com/Codertocat/Hello-World.git",
        "default_branch": "master",
        "master_branch": "master",
    },
    "pusher": {"name": "Codertocat", "email": "21031067+Codertocat@users.noreply.github.com"},
    "sender": {"login": "Codertocat", "id": 21031067, "type": "User", "site_admin": False},
}
# GitHub's ping example, sent when a hook is created:
# https://github.com/github/docs/blob/3df90fc9b811728a9b7ee45f598f9ae196783b54/lib/webhooks/static/dotcom/ping.payload.json
GITHUB_PING: dict[str, Any] = {
    "zen": "Anything added dilutes everything else.",
    "hook_id": 109948940,
    "hook": {
        "type": "Repository",
        "id": 109948940,
        "name": "web",
        "active": True,
        "events": ["*"],
        "config": {"content_type": "json", "url": "https://smee.io/****************",
                   "insecure_ssl": "0"},
        "last_response": {"code": None, "status": "unused", "message": None},
    },
    "repository": {"id": 186853261, "name": "Hello-World", "full_name": "Octocoders/Hello-World"},
    "sender": {"login": "Codertocat", "id": 21031067, "type": "User", "site_admin": False},
}  # fmt: skip
# GitLab's "Push Hook" example (header `X-Gitlab-Event: Push Hook`):
# https://docs.gitlab.com/user/project/integrations/webhook_events/#push-events
GITLAB_PUSH: dict[str, Any] = {
    "object_kind": "push",
    "event_name": "push",
    "before": "95790bf891e76fee5e1747ab589903a6a1f80f22",
    "after": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
    "ref": "refs/heads/master",
    "ref_protected": True,
    "checkout_sha": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
    "user_id": 4,
    "user_name": "John Smith",
    "user_username": "jsmith",
    "user_email": "john@example.com",
    "project_id": 15,
    "project": {
        "id": 15,
        "name": "Diaspora",
        "git_http_url": "http://example.com/mike/diaspora.git",
        "path_with_namespace": "mike/diaspora",
        "default_branch": "master",
    },
    "repository": {"name": "Diaspora", "url": "git@example.com:mike/diaspora.git"},
    "commits": [
        {
            "id": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
            "message": "fixed readme",
            "title": "fixed readme",
            "timestamp": "2012-01-03T23:36:29+02:00",
            "author": {"name": "GitLab dev user", "email": "gitlabdev@dv6700.(none)"},
            "added": ["CHANGELOG"],
            "modified": ["app/controller/application.rb"],
            "removed": [],
        }
    ],
    "total_commits_count": 4,
}
# Gitea's push example (headers X-Gitea-Event, X-GitHub-Event and X-Gogs-Event: push;
# the signature in X-Gitea-Signature): https://docs.gitea.com/usage/webhooks
GITEA_PUSH: dict[str, Any] = {
    "ref": "refs/heads/develop",
    "before": "28e1879d029cb852e4844d9c718537df08844e03",
    "after": "bffeb74224043ba2feb48d137756c8a9331c449a",
    "compare_url": "http://localhost:3000/gitea/webhooks/compare/28e1879d029cb852e4844d9c718537df08844e03...bffeb74224043ba2feb48d137756c8a9331c449a",
    "commits": [
        {
            "id": "bffeb74224043ba2feb48d137756c8a9331c449a",
            "message": "Webhooks Yay!",
            "author": {"name": "Gitea", "email": "someone@gitea.io", "username": "gitea"},
            "timestamp": "2017-03-13T13:52:11-04:00",
        }
    ],
    "repository": {"id": 140, "name": "webhooks", "full_name": "gitea/webhooks",
                   "default_branch": "main"},
    "pusher": {"id": 1, "login": "gitea", "username": "gitea"},
    "sender": {"id": 1, "login": "gitea", "username": "gitea"},
}  # fmt: skip
DOCUMENTED = {"github": GITHUB_PUSH, "gitlab": GITLAB_PUSH, "gitea": GITEA_PUSH}
FORGES = list(DOCUMENTED)


def push_body(forge: str, ref: str, after: str) -> bytes:
    payload = copy.deepcopy(DOCUMENTED[forge])
    payload.update(ref=ref, after=after)
    if forge == "github":
        payload.update(deleted=False)
    if forge == "gitlab":
        payload.update(checkout_sha=after)
    return json.dumps(payload).encode()


def sign(forge: str, body: bytes, secret: str = SECRET, event: str = "") -> dict[str, str]:
    """The headers the forge sends with body."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    headers = {"Content-Type": "application/json"}
    if forge == "github":
        headers |= {"X-GitHub-Event": event or "push", "X-Hub-Signature-256": f"sha256={digest}",
                    "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958"}  # fmt: skip
    elif forge == "gitlab":
        headers |= {"X-Gitlab-Event": event or "Push Hook", "X-Gitlab-Token": secret}
    else:  # Gitea sends GitHub's and Gogs' event headers too
        headers |= {"X-Gitea-Event": event or "push", "X-GitHub-Event": event or "push",
                    "X-Gogs-Event": event or "push", "X-Gitea-Signature": digest}  # fmt: skip
    return headers


def post(
    port: int,
    headers: dict[str, str] | list[tuple[bytes, bytes]],
    body: bytes = b"",
    *,
    path: str = "/webhook",
) -> tuple[int, dict[bytes, bytes], bytes]:
    """POST over a raw socket (any header bytes go through); (status, headers, body)."""
    items = headers.items() if isinstance(headers, dict) else headers
    head = b"".join(
        b"%s: %s\r\n" % (k.encode() if isinstance(k, str) else k,
                         v.encode() if isinstance(v, str) else v)
        for k, v in items
    )  # fmt: skip
    request = (b"POST %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\nContent-Length: %d\r\n"
               b"%s\r\n") % (path.encode(), HOST.encode(), len(body), head)  # fmt: skip
    with socket.create_connection((HOST, port), timeout=30) as sock:
        sock.sendall(request + body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    raw_headers, _, content = rest.partition(b"\r\n\r\n")
    fields = dict(
        (k.strip().lower(), v.strip())
        for k, _, v in (line.partition(b":") for line in raw_headers.split(b"\r\n"))
    )
    return int(status_line.split()[1]), fields, content


def metric(helper, name: str) -> float:  # type: ignore[no-untyped-def]
    for line in helper.metrics().splitlines():
        if line.rsplit(" ", 1)[0] == name:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not exported")


def hooks(helper, forge: str, result: str) -> float:  # type: ignore[no-untyped-def]
    return metric(helper, f'git_sync_webhook_requests_total{{forge="{forge}",result="{result}"}}')


def syncs(helper) -> float:  # type: ignore[no-untyped-def]
    return sum(metric(helper, f'git_sync_count_total{{status="{s}"}}')
               for s in ("success", "noop", "error"))  # fmt: skip


def figures(helper) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return json.loads(helper.get("/status")[1])["figures"]


def wait_idle(helper) -> None:  # type: ignore[no-untyped-def]
    """No sync running and none asked for: every sync the hooks caused has happened."""
    wait_for(lambda: (f := figures(helper)) and not f["syncing"] and not f["sync_pending"],
             what="sync loop idle", timeout=30)  # fmt: skip


def start(run_helper, repo: GitRepo, root: Path, secret: Path, *args: str):  # type: ignore[no-untyped-def]
    secret.write_text(SECRET + "\n")  # as a Secret volume may hold it: a newline at the end
    helper = run_helper("git-sync", f"--repo={repo.url}", f"--root={root}", "--link=current",
                        "--period=1h", f"--webhook-secret-file={secret}", *args)  # fmt: skip
    wait_for(lambda: published(root) == repo.head(), what="first sync", timeout=30)
    wait_idle(helper)
    return helper


def one_json_line(body: bytes) -> dict[str, Any]:
    assert body.count(b"\n") == 0, body
    answer: dict[str, Any] = json.loads(body)
    return answer


def test_each_forges_documented_push_publishes_the_commit(
    run_helper, git_repo: GitRepo, tmp_path: Path
) -> None:
    root = tmp_path / "git"
    helper = start(run_helper, git_repo, root, tmp_path / "secret")
    port = helper.admin_port
    # Every forge/result series is exported before the first request.
    assert hooks(helper, "gitea", "accepted") == 0 and hooks(helper, "unknown", "too_large") == 0
    # GitHub's documented test vector verifies (then it is no JSON push: 400, not 401).
    status, _, body = post(port, {"X-GitHub-Event": "push",
                                  "X-Hub-Signature-256": DOCUMENTED_SIGNATURE.decode()},
                           DOCUMENTED_BODY)  # fmt: skip
    assert (status, one_json_line(body)) == (400, {"error": "payload is not JSON"})
    ping = json.dumps(GITHUB_PING).encode()
    status, _, body = post(port, sign("github", ping, event="ping"), ping)
    assert (status, one_json_line(body)) == (200, {"status": "ok", "event": "ping"})
    for forge in FORGES:
        new = git_repo.commit({"README": f"pushed for {forge}\n"}, forge)
        payload = push_body(forge, "refs/heads/main", new)
        status, headers, body = post(port, sign(forge, payload), payload)
        assert status == 202, body
        assert headers[b"content-type"] == b"application/json"
        assert one_json_line(body) == {"status": "accepted", "ref": "refs/heads/main",
                                       "after": new}  # fmt: skip
        wait_for(lambda new=new: published(root) == new, what=f"{forge} push published",
                 timeout=30, explain=helper.log_text)  # fmt: skip
        assert hooks(helper, forge, "accepted") == 1
    assert (root / "current" / "README").read_text() == "pushed for gitea\n"
    assert hooks(helper, "github", "ping") == 1
    assert SECRET not in helper.log_text()


def test_refused_ignored_and_replayed_hooks_start_no_sync(
    run_helper, git_repo: GitRepo, tmp_path: Path
) -> None:
    root = tmp_path / "git"
    # --ref as a branch name (the other tests sync HEAD, resolved to refs/heads/main).
    helper = start(run_helper, git_repo, root, tmp_path / "secret", "--ref=main")
    port, head = helper.admin_port, git_repo.head()
    before = (syncs(helper), metric(helper, "git_fetch_count_total"))
    payload = push_body("github", "refs/heads/main", git_repo.head())

    def refused(status: int, headers: dict[str, str], body: bytes) -> str:
        got, _, answer = post(port, headers, body)
        assert got == status, answer
        error: str = one_json_line(answer)["error"]
        return error

    # Wrong signature, token or secret, for each forge: 401.
    wrong = {**sign("github", payload), "X-Hub-Signature-256": "sha256=" + "0" * 64}
    assert refused(401, wrong, payload) == "bad or missing signature"
    assert refused(401, sign("gitlab", payload, secret="not the secret"), payload) == (
        "bad or missing token"
    )
    assert refused(401, sign("gitea", payload, secret="not the secret"), payload) == (
        "bad or missing signature"
    )
    unsigned = {k: v for k, v in sign("gitea", payload).items() if k != "X-Gitea-Signature"}
    assert refused(401, unsigned, payload) == "bad or missing signature"
    # A signature over another body: the payload was changed on the way.
    assert refused(401, sign("github", payload + b" "), payload) == "bad or missing signature"
    # Unknown forge or event, malformed JSON: 400.
    assert "X-GitHub-Event" in refused(400, {"Content-Type": "application/json"}, payload)
    assert refused(400, sign("github", payload, event="issues"), payload) == "not a push event"
    broken = payload[:-1]
    assert refused(400, sign("gitlab", broken), broken) == "payload is not JSON"
    no_ref = b'{"after": "%s"}' % head.encode()
    assert refused(400, sign("gitea", no_ref), no_ref) == 'payload has no "ref" (refs/...)'
    # 2 MiB, sent whole before the answer is read (as a forge does): 413, body unread.
    big = b"x" * (2 * 1024 * 1024)
    assert refused(413, sign("github", big), big) == ("body larger than --webhook-max-body")
    # A push to another branch (a real one): 202, ignored.
    other = git_repo.commit({"README": "elsewhere\n"}, "other branch", branch="other")
    body = push_body("gitlab", "refs/heads/other", other)
    status, _, answer = post(port, sign("gitlab", body), body)
    assert (status, one_json_line(answer)) == (
        202, {"status": "ignored", "ignored": "ref", "ref": "refs/heads/other"}
    )  # fmt: skip
    # A replay of the push already published: 200 at once, no fetch.
    status, _, answer = post(port, sign("github", payload), payload)
    assert (status, one_json_line(answer)) == (200, {"status": "ok", "published": head})

    wait_idle(helper)
    assert (syncs(helper), metric(helper, "git_fetch_count_total")) == before
    assert published(root) == head
    counted = {(forge, result): hooks(helper, forge, result)
               for forge in (*FORGES, "unknown")
               for result in ("unauthorized", "bad_request", "too_large", "ignored",
                              "published", "accepted")}  # fmt: skip
    assert {k: v for k, v in counted.items() if v} == {
        ("github", "unauthorized"): 2, ("gitlab", "unauthorized"): 1,
        ("gitea", "unauthorized"): 2, ("unknown", "bad_request"): 1,
        ("github", "bad_request"): 1, ("gitlab", "bad_request"): 1,
        ("gitea", "bad_request"): 1, ("github", "too_large"): 1,
        ("gitlab", "ignored"): 1, ("github", "published"): 1,
    }  # fmt: skip
    assert SECRET not in helper.log_text()


def test_a_tag_push_hook_moves_a_tag_ref(run_helper, git_repo: GitRepo, tmp_path: Path) -> None:
    """--ref=v1: GitLab's "Tag Push Hook" for refs/tags/v1 syncs; a branch push does not."""
    root = tmp_path / "git"
    git_repo.tag("v1")
    helper = start(run_helper, git_repo, root, tmp_path / "secret", "--ref=v1")
    new = git_repo.commit({"README": "tagged\n"}, "tagged")
    body = push_body("gitlab", "refs/heads/main", new)
    status, _, answer = post(helper.admin_port, sign("gitlab", body), body)
    assert (status, one_json_line(answer)["status"]) == (202, "ignored")
    git_repo.tag("v1", commit=new)
    body = push_body("gitlab", "refs/tags/v1", new)
    status, _, answer = post(helper.admin_port, sign("gitlab", body, event="Tag Push Hook"), body)
    assert (status, one_json_line(answer)["status"]) == (202, "accepted")
    wait_for(lambda: published(root) == new, what="moved tag published", timeout=30)


def test_a_burst_of_100_hooks_causes_at_most_two_syncs(
    run_helper, git_repo: GitRepo, tmp_path: Path
) -> None:
    root = tmp_path / "git"
    # A rate limit that lets the whole burst through: coalescing alone bounds the syncs.
    helper = start(run_helper, git_repo, root, tmp_path / "secret",
                   "--webhook-rate=1000/s", "--webhook-burst=1000")  # fmt: skip
    before = syncs(helper)
    new = git_repo.commit({"README": "burst\n"}, "burst")
    payload = push_body("github", "refs/heads/main", new)
    headers = sign("github", payload)
    with ThreadPoolExecutor(max_workers=25) as pool:
        answers = list(pool.map(lambda _: post(helper.admin_port, headers, payload)[0],
                                range(100)))  # fmt: skip
    # Accepted while the push is not yet published, then "already published".
    assert set(answers) <= {200, 202}, answers
    assert answers.count(202) >= 1
    wait_for(lambda: published(root) == new, what="burst published", timeout=30)
    wait_idle(helper)
    assert 1 <= syncs(helper) - before <= 2
    assert metric(helper, "git_fetch_count_total") == 2  # the first sync's and this one's
    assert hooks(helper, "github", "accepted") + hooks(helper, "github", "published") == 100


def test_webhook_bind_secret_rotation_and_rate_limit(
    run_helper, git_repo: GitRepo, tmp_path: Path
) -> None:
    root, secret, port = tmp_path / "git", tmp_path / "secret", free_port()
    helper = start(run_helper, git_repo, root, secret, f"--webhook-bind={HOST}:{port}",
                   "--webhook-rate=1/h", "--webhook-burst=3")  # fmt: skip
    payload = push_body("gitea", "refs/heads/main", git_repo.head())
    # Its own address: not on the admin port, and nothing but /webhook on its own.
    assert post(helper.admin_port, sign("gitea", payload), payload)[0] == 404
    assert post(port, {}, b"", path="/sync")[0] == 404
    assert post(port, sign("gitea", payload), payload)[0] == 200  # already published
    # The Secret is rotated (a new file renamed over the old, as a volume update does).
    rotated = tmp_path / "secret.new"
    rotated.write_text("the second secret")
    rotated.rename(secret)
    assert post(port, sign("gitea", payload), payload)[0] == 401
    new = git_repo.commit({"README": "after rotation\n"}, "rotated")
    body = push_body("gitea", "refs/heads/main", new)
    assert post(port, sign("gitea", body, secret="the second secret"), body)[0] == 202
    wait_for(lambda: published(root) == new, what="published after rotation", timeout=30)
    # The burst of 3 is spent (1 token an hour): 429, with when to come back.
    status, headers, answer = post(port, sign("gitea", body, secret="the second secret"), body)
    assert (status, one_json_line(answer)) == (429, {"error": "too many webhook requests"})
    assert 0 < int(headers[b"retry-after"]) <= 3600
    assert hooks(helper, "gitea", "rate_limited") == 1
    log = helper.log_text()
    assert SECRET not in log and "the second secret" not in log


def test_bad_webhook_settings_exit_2_with_one_line(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text(SECRET)
    base = [*podkit_argv(), "git-sync", "--repo=file:///nowhere", f"--root={tmp_path}"]
    cases = {
        "--webhook-secret-file": [f"--webhook-secret-file={tmp_path}/missing"],
        "--webhook-bind": ["--webhook-bind=:8080"],  # without a secret
        "--webhook-rate": [f"--webhook-secret-file={secret}", "--webhook-rate=fast"],
    }
    for name, args in cases.items():
        result = subprocess.run([*base, *args], capture_output=True, text=True, timeout=60)
        assert result.returncode == 2, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert name in result.stderr
    shown = subprocess.run([*podkit_argv(), "git-sync", "--help"], capture_output=True,
                           text=True, timeout=60,
                           env={**os.environ, "GITSYNC_WEBHOOK_SECRET_FILE": str(secret)})  # fmt: skip
    assert "--webhook-secret-file" in shown.stdout and SECRET not in shown.stdout


# --- malformed headers and bodies: never a 500, never a sync ------------------------------

HEADER_NAMES = [b"X-GitHub-Event", b"X-Hub-Signature-256", b"X-Gitlab-Event", b"X-Gitlab-Token",
                b"X-Gitea-Event", b"X-Gitea-Signature", b"X-Forgejo-Event", b"Content-Type",
                b"Expect", b"Transfer-Encoding"]  # fmt: skip
EVENTS = [b"push", b"ping", b"Push Hook", b"Tag Push Hook", b"issues", b""]
header_values = st.one_of(st.sampled_from(EVENTS), st.binary(max_size=80),
                          st.text(max_size=40).map(lambda t: t.encode("utf-8", "replace")))  # fmt: skip
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=20,
)  # fmt: skip
refs = st.sampled_from(["refs/heads/other", "refs/tags/v1", "main", "refs/heads/main/x", ""])
payloads = st.one_of(
    st.binary(max_size=400),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"ref": refs | json_values, "after": st.text(max_size=64) | json_values})
    .filter(lambda v: v["ref"] != "refs/heads/main")  # the one push that syncs
    .map(lambda v: json.dumps(v).encode()),
    st.integers(1, 3000).map(lambda n: b"[" * n + b"]" * n),  # deep nesting
    st.just(b"payload=%7B%22ref%22%3A%20%22refs%2Fheads%2Fother%22%7D"),
)  # fmt: skip


def test_malformed_headers_and_bodies_never_500_never_a_sync(
    run_helper, git_repo: GitRepo, tmp_path: Path
) -> None:
    root = tmp_path / "git"
    helper = start(run_helper, git_repo, root, tmp_path / "secret",
                   "--webhook-rate=100000/s", "--webhook-burst=100000", "--webhook-max-body=4000")  # fmt: skip
    before = syncs(helper)
    seen: set[int] = set()

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        headers=st.lists(st.tuples(st.sampled_from(HEADER_NAMES), header_values), max_size=5),
        body=payloads,
        signed_as=st.sampled_from([None, "github", "gitlab", "gitea"]),
    )
    def check(headers: list[tuple[bytes, bytes]], body: bytes, signed_as: str | None) -> None:
        # Signed or not: a valid signature only takes a body further, to the payload checks.
        items = list(headers)
        if signed_as:
            items += [(k.encode(), v.encode()) for k, v in sign(signed_as, body).items()]
        status, _, answer = post(helper.admin_port, items, body)
        seen.add(status)
        assert status != 500 and status in (200, 202, 400, 401, 413, 431), (status, answer)
        if status in (400, 401, 413) and answer.startswith(b"{"):
            one_json_line(answer)

    check()
    wait_idle(helper)
    assert syncs(helper) == before
    assert (
        hooks(helper, "github", "accepted")
        + hooks(helper, "gitlab", "accepted")
        + hooks(helper, "gitea", "accepted")
        == 0
    )
    assert "handler_failed" not in helper.log_text()
    assert {400, 401} <= seen
