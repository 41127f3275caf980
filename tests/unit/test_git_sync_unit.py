"""git-sync pieces without a remote: settings, the on-disk layout, redaction, credentials."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podkit.config import ConfigError, load_settings
from podkit.sidecars.git_sync.main import _store_lines, redact
from podkit.sidecars.git_sync.settings import GitSyncSettings, parse_git_config, signal_number
from podkit.sidecars.git_sync.worktrees import Layout, write_atomic

SHA_A = "a" * 40
SHA_B = "b" * 40


def load(*argv: str, env: dict[str, str] | None = None) -> GitSyncSettings:
    return load_settings(
        GitSyncSettings, list(argv), env or {}, prog="podkit git-sync", admin_default=":9703"
    )


def test_seed_args_run_unchanged() -> None:
    s = load("--repo=https://github.example/org/site.git", "--root=/git", "--period=60s",
             "--link=current")  # fmt: skip
    assert (s.repo, s.root, s.period, s.link_name) == (
        "https://github.example/org/site.git", "/git", 60.0, "current")  # fmt: skip
    assert (s.ref, s.depth, s.submodules, s.max_failures, s.sync_timeout) == (
        "HEAD", 1, "recursive", 0, 120.0)  # fmt: skip


def test_defaults_and_derived() -> None:
    s = load("--repo=git@host.example:org/app.git", "--root=/git")
    assert s.link_name == "app"
    assert not s.is_sha
    assert load("--repo=r", "--root=/g", f"--ref={SHA_A}").is_sha
    assert load("--repo=/srv/x/", "--root=/g").link_name == "x"


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--root=/git"], "--repo"),
        (["--repo=r", "--root=/g", "--ref=-rf"], "--ref"),
        (["--repo=r", "--root=/g", "--submodules=maybe"], "--submodules"),
        (["--repo=r", "--root=/g", "--max-failures=-2"], "--max-failures"),
        (["--repo=r", "--root=/g", "--period=soon"], "--period"),
        (["--repo=r", "--root=/g", "--git-config=novalue"], "--git-config"),
        (["--repo=r", "--root=/g", "--sync-on-signal=SIGTERM"], "--sync-on-signal"),
        (["--repo=r", "--root=/g", "--credential={\"url\": \"u\", \"password\": \"p\"}"],
         "password-file"),
        (["--repo=r", "--root=/g", "--password-file=/p"], "--username"),
    ],
)  # fmt: skip
def test_bad_settings_one_line(argv: list[str], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(*argv)
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_credential_json_forms() -> None:
    one = load("--repo=r", "--root=/g", '--credential={"url": "https://h/x", "username": "u"}')
    assert one.credential == [{"url": "https://h/x", "username": "u"}]
    many = load("--repo=r", "--root=/g",
                '--credential=[{"url": "https://a"}, {"url": "https://b"}]')  # fmt: skip
    assert [c["url"] for c in many.credential] == ["https://a", "https://b"]


def test_signal_names() -> None:
    import signal

    assert signal_number("HUP") == signal_number("SIGHUP") == signal.SIGHUP
    assert signal_number(str(int(signal.SIGUSR1))) == signal.SIGUSR1
    with pytest.raises(ValueError):
        signal_number("SIGNOPE")


def test_parse_git_config() -> None:
    assert parse_git_config("") == []
    assert parse_git_config("a.b:1,c.d:two") == [("a.b", "1"), ("c.d", "two")]
    assert parse_git_config('http.extraHeader:"X: a,b",x.y:"q\\"uote"') == [
        ("http.extraHeader", "X: a,b"), ("x.y", 'q"uote')]  # fmt: skip
    with pytest.raises(ValueError):
        parse_git_config('k:"open')


keys = st.from_regex(r"[a-z]{1,8}\.[a-zA-Z]{1,8}", fullmatch=True)
values = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                 max_size=20)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(keys, values), max_size=5))
def test_parse_git_config_round_trip(entries: list[tuple[str, str]]) -> None:
    """Any values, quoted with backslash escapes, come back exactly (bounded examples;
    raise max_examples locally for a longer search)."""
    text = ",".join(
        f'{k}:"{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in entries
    )
    assert parse_git_config(text) == entries


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_parse_git_config_never_crashes(text: str) -> None:
    with contextlib.suppress(ValueError):
        parse_git_config(text)


def test_redact_and_store_lines() -> None:
    assert redact("fatal: https://u:tok@h/x.git failed tok", ["tok"]) == (
        "fatal: https://h/x.git failed ***")  # fmt: skip
    assert _store_lines("https://h.example:8443/org/x.git", "a b", "p@ss:w/d") == [
        "https://a%20b:p%40ss%3Aw%2Fd@h.example:8443/org/x.git"]  # fmt: skip
    assert _store_lines("git@h:org/x.git", "u", "p") == []


# --- the layout ----------------------------------------------------------------------------


def make_worktree(layout: Layout, sha: str) -> None:
    path = Path(layout.worktree(sha))
    path.mkdir(parents=True)
    (path / ".git").write_text(f"gitdir: {layout.git_dir}/worktrees/{sha}\n")
    (path / "data").write_text(sha)
    Path(layout.git_dir, "worktrees", sha).mkdir(parents=True)


def test_publish_is_relative_and_replaces(tmp_path: Path) -> None:
    layout = Layout(str(tmp_path / "root"), "site")
    make_worktree(layout, SHA_A)
    make_worktree(layout, SHA_B)
    assert layout.publish(SHA_A) is None
    assert os.readlink(tmp_path / "root" / "site") == f".worktrees/{SHA_A}"
    assert layout.published() == SHA_A and layout.worktree_ok(SHA_A)
    old_mtime = time.time() - 1000
    os.utime(layout.worktree(SHA_A), (old_mtime, old_mtime))
    assert layout.publish(SHA_B) == SHA_A
    # The replaced tree's stale clock starts at the publish.
    assert os.stat(layout.worktree(SHA_A)).st_mtime > old_mtime + 500
    assert layout.stale({SHA_B}, timeout=60) == []
    assert [s.name for s in layout.stale({SHA_B}, timeout=0)] == [SHA_A]
    assert [s.name for s in layout.stale({SHA_B}, 60, now=time.time() + 61)] == [SHA_A]


def test_absolute_link_elsewhere(tmp_path: Path) -> None:
    layout = Layout(str(tmp_path / "root"), str(tmp_path / "serve" / "html"))
    make_worktree(layout, SHA_A)
    layout.publish(SHA_A)
    assert os.readlink(tmp_path / "serve" / "html") == f"../root/.worktrees/{SHA_A}"
    assert (tmp_path / "serve" / "html" / "data").read_text() == SHA_A
    assert layout.published() == SHA_A


def test_link_never_missing_while_publishing(tmp_path: Path) -> None:
    layout = Layout(str(tmp_path / "root"), "current")
    for sha in (SHA_A, SHA_B):
        make_worktree(layout, sha)
    layout.publish(SHA_A)
    link = tmp_path / "root" / "current"
    stop = threading.Event()
    problems: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            try:
                value = (link / "data").read_text()
            except OSError as exc:
                problems.append(str(exc))
                continue
            if value not in (SHA_A, SHA_B):
                problems.append(value)

    thread = threading.Thread(target=reader)
    thread.start()
    for i in range(2000):
        layout.publish(SHA_B if i % 2 else SHA_A)
    stop.set()
    thread.join()
    assert problems == []
    assert not list((tmp_path / "root").glob(".current.tmp-*"))


def test_hold_keeps_readers_on_the_same_files_while_the_tree_is_made_again(tmp_path: Path):
    layout = Layout(str(tmp_path / "root"), "current")
    make_worktree(layout, SHA_A)
    Path(layout.worktree(SHA_A), "sub").mkdir()
    Path(layout.worktree(SHA_A), "sub", "f").write_text("f")
    os.symlink("data", Path(layout.worktree(SHA_A), "alias"))
    layout.publish(SHA_A)
    link = tmp_path / "root" / "current"
    before = os.stat(link / "data").st_ino
    held = layout.hold(SHA_A)
    # The link is on a hard-linked copy: the very same files, no data copied.
    assert os.readlink(link) == f".worktrees/{os.path.basename(held)}"
    assert os.stat(link / "data").st_ino == before
    assert (link / "sub" / "f").read_text() == "f" and os.readlink(link / "alias") == "data"
    assert layout.published() is None  # not a worktree: a restart syncs before it is ready
    # The worktree is made again in place, and published: the copy's stale clock starts.
    layout.remove_tree(layout.worktree(SHA_A))
    make_worktree_again = Path(layout.worktree(SHA_A))
    make_worktree_again.mkdir()
    (make_worktree_again / "data").write_text("new")
    long_ago = time.time() - 1000
    os.utime(held, (long_ago, long_ago))
    assert layout.publish(SHA_A) is None
    assert (link / "data").read_text() == "new"
    assert layout.stale({SHA_A}, timeout=60) == []
    assert [s.path for s in layout.stale({SHA_A}, timeout=0)] == [held]
    # A second hold while the first copy waits: a new name, the first one untouched.
    second = layout.hold(SHA_A)
    assert second != held and os.path.isdir(held)


def test_stale_junk_goes_at_once_and_locks(tmp_path: Path) -> None:
    layout = Layout(str(tmp_path / "root"), "current")
    make_worktree(layout, SHA_A)
    os.makedirs(layout.worktree("not-a-sha"))
    assert [s.name for s in layout.stale({SHA_A}, timeout=3600)] == ["not-a-sha"]
    for rel in ("index.lock", "HEAD.lock", "refs/heads/x.lock", f"worktrees/{SHA_A}/index.lock"):
        path = Path(layout.git_dir, rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
    Path(layout.git_dir, "config").write_text("")
    removed = layout.remove_stale_locks()
    assert len(removed) == 4
    assert not list(Path(layout.git_dir).rglob("*.lock"))
    assert layout.root_problem() == ".git/HEAD is missing"


def test_write_atomic(tmp_path: Path) -> None:
    target = tmp_path / "dir" / "error.json"
    write_atomic(str(target), b"one")
    write_atomic(str(target), b"two")
    assert target.read_bytes() == b"two"
    assert os.listdir(tmp_path / "dir") == ["error.json"]


# --- the admin route POST /sync uses ---------------------------------------------------------


async def test_admin_add_route_loopback_only() -> None:
    from types import SimpleNamespace

    from podkit.admin import AdminServer
    from podkit.httpserver import Request, Response

    async def handler(request: Request) -> Response:
        return Response(200, b"synced")

    admin = AdminServer(SimpleNamespace(log=None), "127.0.0.1:0")  # type: ignore[arg-type]
    admin.add_route("POST", "/sync", handler, loopback_only=True)
    admin.add_route("POST", "/open", handler)
    guarded = admin.http.routes["/sync"]["POST"]
    request = Request("POST", "/sync", "", {}, "10.0.0.5")
    assert (await guarded(request)).status == 403
    assert (await guarded(Request("POST", "/sync", "", {}, "::1"))).status == 200
    assert (await admin.http.routes["/open"]["POST"](request)).status == 200


# --- git-sync's own spellings -------------------------------------------------------------


def test_gitsync_env_and_v3_names() -> None:
    env = {
        "GITSYNC_REPO": "https://h.example/a.git",
        "GITSYNC_ROOT": "/git",
        "GITSYNC_PERIOD": "30s",
        "GITSYNC_ONE_TIME": "true",
        "GITSYNC_PASSWORD": "hunter2",
        "GITSYNC_USERNAME": "me",
        "GIT_SYNC_DEST": "html",
        "GIT_SYNC_MAX_SYNC_FAILURES": "3",
        "GIT_SYNC_TIMEOUT": "45",
    }
    s = load(env=env)
    assert (s.repo, s.root, s.period, s.one_time) == ("https://h.example/a.git", "/git", 30.0, True)
    assert (s.link, s.max_failures, s.sync_timeout) == ("html", 3, 45.0)
    assert s.password is not None and s.password.get_secret_value() == "hunter2"
    # Flags win over env, as everywhere in podkit.
    assert load("--period=5s", env=env).period == 5.0


def test_bad_env_value_names_the_spelling() -> None:
    with pytest.raises(ConfigError) as info:
        load(env={"GITSYNC_REPO": "r", "GITSYNC_ROOT": "/g", "GITSYNC_DEPTH": "-1"})
    assert "GITSYNC_DEPTH" in str(info.value)


def test_v3_flags_http_bind_and_verbose() -> None:
    s = load("--repo=r", "--root=/g", "--dest=html", "--wait=7", "--max-sync-failures=2",
             "--http-bind=:8080", "-v", "6", "--rev=v1")  # fmt: skip
    assert (s.link, s.period, s.max_failures, s.admin_addr, s.verbose, s.ref) == (
        "html", 7.0, 2, ":8080", 6, "v1")  # fmt: skip
    assert load("--repo=r", "--root=/g", "--one-time=true").one_time is True
    assert load("--repo=r", "--root=/g", "--one-time").one_time is True


def test_image_has_only_the_files_of_git_that_git_sync_runs() -> None:
    """git, openssh-client and libnss-wrapper are installed in a build stage of their own;
    the image, on the plain base, gets only the files git-sync runs (and what they load),
    copied in as root before USER; no package is installed in the image itself."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from images.render import render, specs
    from podkit.sidecars.git_sync import helper

    by_name = {spec.helper: spec for spec in specs()}
    text = render(by_name["git-sync"])
    packages, keep, final = text.split("\nFROM ")[2:]
    assert packages.startswith("${PACKAGES_IMAGE} AS packages\n")
    assert "RUN dpkg-query -W git openssh-client libnss-wrapper " in packages
    assert f'ARG FILES="{" ".join(helper.image_files)}"' in packages
    assert keep.startswith("${BASE_IMAGE} AS keep\n")
    assert final.startswith("${BASE_IMAGE}\n")
    assert "apt-get" not in final and "dpkg" not in final
    assert final.index("COPY --from=keep /keep/ /") < final.index("USER 65532:65532")
    assert "/usr/bin/git" in helper.image_files and "/usr/bin/ssh" in helper.image_files
    assert "@PACKAGES" not in text
    other = render(by_name["echo"])
    assert "@PACKAGES" not in other and "dpkg-query" not in other and " AS keep" not in other


async def test_post_sync_needs_the_bearer_token_off_loopback(tmp_path: Path) -> None:
    import asyncio
    import json

    from podkit.httpserver import Request
    from podkit.runtime import Runtime
    from podkit.sidecars.git_sync import helper
    from podkit.sidecars.git_sync.main import GitSync

    token = tmp_path / "token"
    token.write_text("t0ken\n")
    settings = load("--repo=r", f"--root={tmp_path}/g", f"--sync-token-file={token}")
    sync = GitSync(settings, Runtime(helper, settings))

    def request(peer: str, auth: bytes = b"") -> Request:
        return Request("POST", "/sync", "", {b"authorization": auth} if auth else {}, peer)

    assert (await sync.handle_sync(request("10.0.0.5"))).status == 403
    assert (await sync.handle_sync(request("10.0.0.5", b"Bearer wrong"))).status == 403
    for peer, auth in (("10.0.0.5", b"Bearer t0ken"), ("127.0.0.1", b"")):
        answer = asyncio.create_task(sync.handle_sync(request(peer, auth)))
        await asyncio.sleep(0)
        assert sync.wake.is_set() and len(sync.waiters) == 1
        sync.waiters.pop().set_result({"status": "ok", "hash": SHA_A, "changed": False})
        response = await answer
        assert response.status == 200 and json.loads(response.body)["hash"] == SHA_A
    import shutil

    shutil.rmtree(sync.home)


def test_unreadable_password_file_is_a_sync_failure(tmp_path: Path) -> None:
    import asyncio

    from podkit.runtime import Runtime
    from podkit.sidecars.git_sync import helper
    from podkit.sidecars.git_sync.main import GitSync, SyncFailed

    secret = tmp_path / "password"
    secret.write_bytes(b"\xff\xfe not text")
    settings = load("--repo=https://h/r", f"--root={tmp_path}/g", "--username=u",
                    f"--password-file={secret}")  # fmt: skip

    async def attempt() -> None:
        sync = GitSync(settings, Runtime(helper, settings))
        try:
            with pytest.raises(SyncFailed, match="not UTF-8"):
                await sync.refresh_credentials()
            secret.unlink()
            with pytest.raises(SyncFailed, match="No such file"):
                await sync.refresh_credentials()
        finally:
            import shutil

            shutil.rmtree(sync.home)

    asyncio.run(attempt())


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run ssh as another UID")
def test_nss_wrapper_gives_ssh_a_user_for_a_uid_without_passwd_entry() -> None:
    """The image runs as a UID without a passwd entry: ssh alone refuses to start."""
    import subprocess

    from podkit.sidecars.git_sync.main import nss_wrapper_env
    from podkit_dev.servers import find_binary

    ssh = find_binary("ssh")
    uid = next(u for u in range(64000, 65000) if not _has_passwd(u))
    import shutil
    import tempfile

    home = Path(tempfile.mkdtemp(prefix="podkit-nss-"))  # readable by that UID
    os.chmod(home, 0o755)
    env = nss_wrapper_env(str(home), f"git-sync:x:{uid}:{uid}::{home}:/bin/false\n",
                          f"git-sync:x:{uid}:\n")  # fmt: skip
    assert env is not None, "libnss-wrapper is not installed (./dev setup)"
    argv = [ssh, "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "ConnectTimeout=2", "-p", "1",
            "127.0.0.1", "true"]  # fmt: skip

    def run(extra: dict[str, str]) -> str:
        result = subprocess.run(argv, user=uid, group=uid, env={"PATH": "/usr/bin:/bin", **extra},
                                capture_output=True, text=True, check=False)  # fmt: skip
        return result.stderr

    assert "No user exists" in run({})
    answer = run(env)
    shutil.rmtree(home)
    assert "No user exists" not in answer and "refused" in answer


def _has_passwd(uid: int) -> bool:
    import pwd

    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


def test_local_base_images_carry_every_helpers_image_packages() -> None:
    """tests/e2e/base-image.sh builds a base per helper with Debian packages; in step with
    Helper.image_packages, so an image build on a machine without a registry needs no
    network."""
    import re

    from podkit.cli import helpers

    script = (Path(__file__).resolve().parents[2] / "tests/e2e/base-image.sh").read_text()
    block = script.split("HELPER_PACKAGES=(", 1)[1].split(")", 1)[0]
    declared = dict(re.findall(r'"([\w-]+)=([\w,.+-]+)"', block))
    wanted = {
        name: ",".join(helper.image_packages)
        for name, helper in helpers().items()
        if helper.image_packages
    }
    assert declared == wanted


def test_http_flags_of_git_sync_v4() -> None:
    env = {"GITSYNC_REPO": "r", "GITSYNC_ROOT": "/g", "GITSYNC_HTTP_BIND": ":8080",
           "GITSYNC_HTTP_METRICS": "true", "GITSYNC_HTTP_PPROF": "1"}  # fmt: skip
    s = load(env=env)
    assert (s.admin_addr, s.http_metrics, s.http_pprof) == (":8080", True, True)
    s = load("--repo=r", "--root=/g", "--http-metrics", "--http-pprof=false")
    assert (s.admin_addr, s.http_metrics, s.http_pprof) == (":9703", True, False)
