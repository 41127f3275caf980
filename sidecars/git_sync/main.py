"""`run(settings, runtime)`: the sync loop, its health, metrics, triggers and hooks.

One loop, one git command at a time: poll the remote with `git ls-remote` (no objects,
no fsck: an idle poll costs one short git process), and only when the hash moved fetch
it, add a detached worktree, check it out and publish it (worktrees.Layout). Triggers:
the period, `--sync-on-signal`, `POST /sync` on the admin server (loopback, or a
bearer token), and a forge's push hook on `POST /webhook` (forges.py). SIGTERM cancels
the loop: the running git gets SIGTERM (it removes its own locks), the publish step
never awaits, and the helper exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import hmac
import json
import logging
import os
import pwd
import re
import shlex
import shutil
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Gauge, Histogram

from podkit.admin import is_loopback, json_response
from podkit.config import split_host_port
from podkit.httpserver import HttpServer
from podkit.runtime import StartupError, listening
from podkit.sidecars.git_sync.forges import WebhookEndpoint
from podkit.sidecars.git_sync.git import Git, GitError
from podkit.sidecars.git_sync.hooks import ExecHook, HookRunner, WebHook
from podkit.sidecars.git_sync.settings import (
    GitSyncSettings,
    parse_git_config,
    read_secret,
    signal_number,
)
from podkit.sidecars.git_sync.worktrees import SHA_NAME, Layout, touch, write_atomic
from podkit.urls import hide_userinfo

if TYPE_CHECKING:
    from podkit.httpserver import Request, Response
    from podkit.runtime import Runtime

COOKIE_FILE = "/etc/git-secret/cookie_file"
ASKPASS_TIMEOUT = 10.0
# git's words for a failed write (ENOSPC among the causes; not always with the reason).
WRITE_FAILED = re.compile(
    r"No space left on device|Disk quota exceeded|unable to write|write error|could not write"
    r"|short write|failed to write",
    re.IGNORECASE,
)
URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")


class SyncFailed(Exception):
    """A step of a sync failed for a reason other than git's own exit status."""


class Metrics:
    def __init__(self, registry: Any) -> None:
        self.duration = Histogram(
            "git_sync_duration_seconds",
            "time one sync took, by status",
            ["status"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=registry,
        )
        self.count = Counter(
            "git_sync_count",
            "syncs, by status (success, noop, error)",
            ["status"],
            registry=registry,
        )
        self.fetches = Counter("git_fetch_count", "git fetch runs", registry=registry)
        self.hooks = Counter(
            "git_sync_hook_run_count",
            "hook runs, by hook and status",
            ["name", "status"],
            registry=registry,
        )
        self.last_success = Gauge(
            "git_sync_last_success_timestamp_seconds",
            "Unix time of the last successful sync (changed or not)",
            registry=registry,
        )
        self.failures = Gauge(
            "git_sync_consecutive_failures", "syncs failed in a row", registry=registry
        )
        self.stale_removed = Counter(
            "git_sync_worktrees_removed",
            "old worktrees taken out of the readers' way (deleted or kept for recycling)",
            registry=registry,
        )
        self.recycled = Counter(
            "git_sync_worktrees_recycled",
            "new worktrees made from a recycled one (only the changed files written)",
            registry=registry,
        )
        self.locks_removed = Counter(
            "git_sync_stale_locks_removed", "stale git lock files removed", registry=registry
        )
        for status in ("success", "noop", "error"):
            self.count.labels(status)


def redact(text: str, secrets: list[str]) -> str:
    """Free text (git's messages) without URL credentials, as podkit.urls.hide_userinfo
    shows one URL, and without any of the secrets in use."""
    text = URL_USERINFO.sub(r"\g<scheme>", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _under(root: str, path: str) -> str:
    return path if os.path.isabs(path) else os.path.join(root, path)


class GitSync:
    def __init__(self, settings: GitSyncSettings, runtime: Runtime) -> None:
        self.s = settings
        self.runtime = runtime
        self.log = runtime.log
        self.metrics = Metrics(runtime.registry)
        self.layout = Layout(settings.root, settings.link_name)
        self.home = tempfile.mkdtemp(prefix="podkit-git-sync-")
        os.chmod(self.home, 0o700)
        self.credentials_path = os.path.join(self.home, "credentials")
        self.git = Git(settings.git, self.home)
        self.git.set_config(self._git_config())
        self._configure_ssh()
        self._credentials = ""
        self.secrets: list[str] = []
        self.current: str | None = None
        self.head_ref: str | None = None
        """What the remote's HEAD points at (refs/heads/...), when --ref is HEAD."""
        self.syncing = False
        self.failures = 0
        self.succeeded = False
        self.check_root = True  # a full root check at start and after each failure
        self.wake = asyncio.Event()
        self.waiters: list[asyncio.Future[dict[str, Any]]] = []
        self.hooks: list[HookRunner] = []
        if settings.exechook_command:
            hook = ExecHook(settings.exechook_command, settings.exechook_timeout)
            self.hooks.append(
                HookRunner(
                    hook,
                    settings.exechook_backoff,
                    self.log,
                    self.metrics.hooks,
                    one_time=settings.one_time,
                )
            )
        if settings.webhook_url:
            web = WebHook(
                settings.webhook_url,
                settings.webhook_method,
                settings.webhook_success_status,
                settings.webhook_timeout,
            )
            self.hooks.append(
                HookRunner(
                    web,
                    settings.webhook_backoff,
                    self.log,
                    self.metrics.hooks,
                    one_time=settings.one_time,
                )
            )

    # --- set-up ---------------------------------------------------------------------------

    def _git_config(self) -> list[tuple[str, str]]:
        config = [
            # (safe.directory = * is in the global file: see git.GLOBAL_CONFIG)
            ("gc.autoDetach", "false"),
            ("gc.pruneExpire", "now"),
            ("credential.helper", f"store --file={shlex.quote(self.credentials_path)}"),
        ]
        if self.s.cookie_file:
            config.append(("http.cookieFile", COOKIE_FILE))
        if self.s.group_write:
            config.append(("core.sharedRepository", "group"))
        return config + parse_git_config(self.s.git_config)

    def _configure_ssh(self) -> None:
        parts = ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes"]
        if self.s.ssh_known_hosts:
            parts += ["-o", "StrictHostKeyChecking=yes",
                      "-o", f"UserKnownHostsFile={self.s.ssh_known_hosts_file}"]  # fmt: skip
        else:
            parts += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
        keys = [key for key in self.s.ssh_key_file if os.path.exists(key)]
        if keys:
            parts += ["-o", "IdentitiesOnly=yes"]
            for key in keys:
                parts += ["-i", key]
        self.git.set_env("GIT_SSH_COMMAND", shlex.join(parts))

    def _ensure_user(self) -> None:
        """ssh exits at once ("No user exists for uid") when our UID has no passwd entry,
        as in an image run with an arbitrary UID. --add-user appends one to /etc/passwd
        (git-sync's way, needs it writable); otherwise nss_wrapper (libnss-wrapper in
        the image) gives git and ssh a private passwd file in the private home."""
        uid, gid = os.getuid(), os.getgid()
        try:
            pwd.getpwuid(uid)
            return
        except KeyError:
            pass
        entry = f"git-sync:x:{uid}:{gid}:git-sync:{self.home}:/usr/sbin/nologin\n"
        if self.s.add_user:
            try:
                with open("/etc/passwd", "a", encoding="utf-8") as handle:
                    handle.write(entry)
                self.log.info("user_added", uid=uid, gid=gid, file="/etc/passwd")
                return
            except OSError as exc:
                self.log.warning("add_user_failed", uid=uid, error=exc.strerror)
        env = nss_wrapper_env(self.home, entry, f"git-sync:x:{gid}:\n")
        if env is None:
            self.log.warning("no_passwd_entry", uid=uid, consequence="ssh cannot run")
            return
        for name, value in env.items():
            self.git.set_env(name, value)

    # --- auth -----------------------------------------------------------------------------

    async def refresh_credentials(self) -> None:
        """Before every sync: password file re-read, askpass asked, store file rewritten."""
        lines: list[str] = []
        secrets: list[str] = []
        if self.s.cookie_file:
            # git-sync v4 refuses to start without it; a Secret mounted late only fails syncs.
            try:
                os.stat(COOKIE_FILE)
            except OSError as exc:
                raise SyncFailed(
                    f"cannot read --cookie-file {COOKIE_FILE}: {exc.strerror}"
                ) from None
        if self.s.username:
            if self.s.password_file:
                try:
                    password = read_secret(self.s.password_file)
                except OSError as exc:
                    raise SyncFailed(
                        f"cannot read --password-file {self.s.password_file}: {exc.strerror}"
                    ) from None
            else:
                password = self.s.password.get_secret_value() if self.s.password else ""
            secrets.append(password)
            lines += _store_lines(self.s.repo, self.s.username, password)
        for cred in self.s.credential:
            password = ""
            if cred.get("password-file"):
                try:
                    password = read_secret(cred["password-file"])
                except OSError as exc:
                    raise SyncFailed(
                        f"cannot read password-file of credential {cred['url']}: {exc.strerror}"
                    ) from None
            secrets.append(password)
            lines += _store_lines(str(cred["url"]), str(cred.get("username", "")), password)
        if self.s.askpass_url:
            username, password = await asyncio.to_thread(self._askpass)
            secrets.append(password)
            lines += _store_lines(self.s.repo, username, password)
        self.secrets = secrets
        text = "".join(line + "\n" for line in lines)
        if text != self._credentials:
            write_atomic(self.credentials_path, text.encode(), mode=0o600)
            self._credentials = text

    def _askpass(self) -> tuple[str, str]:
        try:
            with urllib.request.urlopen(self.s.askpass_url, timeout=ASKPASS_TIMEOUT) as response:
                body = response.read().decode("utf-8", "replace")
        except (OSError, ValueError) as exc:
            raise SyncFailed(f"askpass URL failed: {getattr(exc, 'reason', exc)}") from None
        values = dict(line.split("=", 1) for line in body.splitlines() if "=" in line)
        if "username" not in values or "password" not in values:
            raise SyncFailed("askpass URL answered without username= and password= lines")
        return values["username"].strip(), values["password"].strip()

    # --- the root repo --------------------------------------------------------------------

    async def ensure_root(self, budget: float) -> None:
        root = self.layout.root
        os.makedirs(root, exist_ok=True)
        problem = self.layout.root_problem()
        if problem is None and self.check_root:
            removed = self.layout.remove_stale_locks()
            if removed:
                self.metrics.locks_removed.inc(len(removed))
                self.log.warning("stale_locks_removed", files=removed)
            try:
                top = await self.git.run("rev-parse", "--show-toplevel", cwd=root, timeout=budget)
                if not _same_path(top.stdout.strip(), root):
                    problem = f"root is inside another repository ({top.stdout.strip()})"
            except GitError as exc:
                problem = str(exc)
        if problem is not None:
            self.log.warning("root_reinit", root=root, reason=problem)
            await asyncio.to_thread(self.layout.remove_tree, self.layout.git_dir)
            await self.git.run("init", "-q", "-b", "git-sync", root, cwd=root, timeout=budget)
        if self.check_root or problem is not None:
            # Relative submodule URLs resolve against origin; a changed --repo replaces it.
            await self.git.run("config", "remote.origin.url", self.s.repo, cwd=root, timeout=budget)
            if self.s.filter:
                # A partial clone: checkouts fetch the missing blobs from origin on demand.
                partial = (
                    ("extensions.partialClone", "origin"),
                    ("remote.origin.promisor", "true"),
                    ("remote.origin.partialCloneFilter", self.s.filter),
                )
                for key, value in partial:
                    await self.git.run("config", key, value, cwd=root, timeout=budget)
            self.check_root = False

    # --- one sync -------------------------------------------------------------------------

    async def remote_hash(self, budget: float) -> str:
        ref = self.s.ref
        # For HEAD, --symref also says which branch it is (for the webhook's ref filter).
        symref = ["--symref"] if ref == "HEAD" else []
        result = await self.git.run(
            "ls-remote", "-q", *symref, self.s.repo, ref, f"{ref}^{{}}", cwd=self.layout.root,
            timeout=budget,
        )  # fmt: skip
        refs: dict[str, str] = {}
        for line in result.stdout.splitlines():
            sha, _, name = line.partition("\t")
            if sha.startswith("ref: "):
                if name == "HEAD":
                    self.head_ref = sha.removeprefix("ref: ").strip()
                continue
            refs.setdefault(name, sha)
        for name in (f"{ref}^{{}}", ref, f"refs/heads/{ref}", f"refs/tags/{ref}^{{}}",
                     f"refs/tags/{ref}"):  # fmt: skip
            if name in refs:
                return refs[name]
        if refs:
            return next(iter(refs.values()))
        raise SyncFailed(f"ref {ref!r} not found in the repository")

    async def sync_once(self) -> bool:
        """One sync: True when a new hash was published. Raises on failure."""
        budget = self.s.sync_timeout
        root = self.layout.root
        await self.ensure_root(budget)
        await self.refresh_credentials()
        if self.current and not self.layout.worktree_ok(self.current):
            self.log.warning("worktree_missing", hash=self.current)
            self.current = None
        if self.s.is_sha:
            if self.current == self.s.ref:
                return False
        else:
            remote = await self.remote_hash(budget)
            if remote == self.current:
                return False
        args = ["fetch", self.s.repo, self.s.ref, "--prune", "--no-auto-gc", "--no-progress"]
        if self.s.depth:
            args.append(f"--depth={self.s.depth}")
        elif self.layout.is_shallow():
            args.append("--unshallow")
        if self.s.filter:
            args.append(f"--filter={self.s.filter}")
        self.metrics.fetches.inc()
        await self.git.run(*args, cwd=root, timeout=budget)
        parsed = await self.git.run("rev-parse", "FETCH_HEAD^{commit}", cwd=root, timeout=budget)
        sha = parsed.stdout.strip()
        if sha == self.current:
            return False
        try:
            await self.make_worktree(sha, budget)
        except (GitError, SyncFailed, OSError):
            await self.discard_worktree(sha, budget)
            raise
        old = self.layout.publish(sha)
        self.current = sha
        self.log.info("published", hash=sha, replaced=old, link=self.layout.link)
        if self.s.publish_file:
            record = {"hash": sha, "worktree": self.layout.worktree(sha), "link": self.layout.link}
            write_atomic(_under(root, self.s.publish_file), json.dumps(record).encode() + b"\n")
        return True

    def recyclable(self, path: str) -> bool:
        """A worktree that can become the next one by reset + clean: no sparse checkout
        (its patterns would need re-applying) and no submodules to carry along."""
        if self.s.sparse_checkout_file or not self.layout.tree_ok(path):
            return False
        return self.s.submodules == "off" or not self.layout.exists(
            os.path.join(path, ".gitmodules")
        )

    async def reuse_recycled(self, sha: str, path: str, budget: float) -> bool:
        """Turn the recycled worktree into sha's: True when done, False to build afresh."""
        recycle = self.layout.recycle
        if not self.layout.exists(recycle):
            return False
        try:
            if not self.recyclable(recycle):
                raise SyncFailed("the recycled worktree is not usable")
            await self.git.run("worktree", "move", recycle, path, cwd=self.layout.root,
                               timeout=budget)  # fmt: skip
            await self.git.run("reset", "--hard", "-q", sha, cwd=path, timeout=budget)
            # Whatever a hook or a reader left in it goes: the tree is sha's and nothing else.
            await self.git.run("clean", "-ffdxq", cwd=path, timeout=budget)
        except (GitError, SyncFailed) as exc:
            self.log.warning("worktree_recycle_failed", error=str(exc))
            for leftover in (recycle, path):
                await asyncio.to_thread(self.layout.remove_tree, leftover)
            await self.git.run("worktree", "prune", cwd=self.layout.root, timeout=budget)
            return False
        self.metrics.recycled.inc()
        return True

    async def make_worktree(self, sha: str, budget: float) -> None:
        path = self.layout.worktree(sha)
        if self.layout.exists(path):
            # Left by a crash between add and publish, or broken: never trusted.
            if self.layout.published() == sha:
                # Readers are in it (the root was re-initialised, or git lost track of
                # it): they keep a hard-linked copy of it until the new one is published.
                try:
                    held = await asyncio.to_thread(self.layout.hold, sha)
                    self.log.info("worktree_held", hash=sha, held=held)
                except OSError as exc:
                    self.log.warning("worktree_hold_failed", hash=sha, error=str(exc))
            await asyncio.to_thread(self.layout.remove_tree, path)
            await self.git.run("worktree", "prune", cwd=self.layout.root, timeout=budget)
        if await self.reuse_recycled(sha, path, budget):
            return
        await self.git.run(
            "worktree",
            "add",
            "--force",
            "--detach",
            "--no-checkout",
            path,
            sha,
            cwd=self.layout.root,
            timeout=budget,
        )
        if self.s.sparse_checkout_file:
            try:
                patterns = _read_bytes(self.s.sparse_checkout_file)
            except OSError as exc:
                raise SyncFailed(f"cannot read --sparse-checkout-file: {exc.strerror}") from None
            await self.git.run(
                "sparse-checkout",
                "set",
                "--no-cone",
                "--stdin",
                cwd=path,
                timeout=budget,
                input=patterns,
            )
        await self.git.run("reset", "--hard", "-q", sha, cwd=path, timeout=budget)
        if self.s.submodules != "off" and self.layout.exists(os.path.join(path, ".gitmodules")):
            args = ["submodule", "update", "--init"]
            if self.s.submodules == "recursive":
                args.append("--recursive")
            if self.s.depth:
                args.append(f"--depth={self.s.depth}")
            await self.git.run(*args, cwd=path, timeout=budget)

    async def discard_worktree(self, sha: str, budget: float) -> None:
        """A worktree that failed half-way is never published: remove it now, so that a
        full disk gets its space back (for the error file, for the next try)."""
        if sha == self.layout.published():
            return
        path = self.layout.worktree(sha)
        with contextlib.suppress(OSError):
            await asyncio.to_thread(self.layout.remove_tree, path)
        with contextlib.suppress(GitError):
            await self.git.run("worktree", "prune", cwd=self.layout.root, timeout=budget)

    async def clean_stale(self, budget: float) -> None:
        keep = {self.current} if self.current else set()
        published = self.layout.published()
        if published:
            keep.add(published)
        stale = self.layout.stale(keep, self.s.stale_worktree_timeout)
        if not stale:
            return
        for item in stale:
            if await self.recycle(item.path, budget):
                self.log.info("worktree_recycled", worktree=item.name, age=round(item.age, 3))
            else:
                await asyncio.to_thread(self.layout.remove_tree, item.path)
                self.log.info("worktree_removed", worktree=item.name, age=round(item.age, 3))
            self.metrics.stale_removed.inc()
        await self.git.run("worktree", "prune", cwd=self.layout.root, timeout=budget)
        if self.s.git_gc != "off":
            gc = {"auto": ["gc", "--auto"], "always": ["gc", "--quiet"],
                  "aggressive": ["gc", "--quiet", "--aggressive"]}[self.s.git_gc]  # fmt: skip
            await self.git.run(*gc, cwd=self.layout.root, timeout=budget)

    async def recycle(self, path: str, budget: float) -> bool:
        """Keep a stale worktree for the next sync instead of deleting it (one at most)."""
        if (
            self.layout.exists(self.layout.recycle)
            or not SHA_NAME.match(os.path.basename(path))  # a held copy is no worktree
            or not self.recyclable(path)
        ):
            return False
        try:
            await self.git.run("worktree", "move", path, self.layout.recycle,
                               cwd=self.layout.root, timeout=budget)  # fmt: skip
        except GitError as exc:
            self.log.warning("worktree_recycle_failed", error=str(exc))
            return False
        # Its index was written in the second its files were: "racily clean" entries that
        # the next reset would re-read whole. Refreshed now, off the publish path, the
        # next reset only stats them (0.1 s -> 0.02 s for 10,000 files).
        with contextlib.suppress(GitError):
            await self.git.run("update-index", "-q", "--refresh", cwd=self.layout.recycle,
                               timeout=budget)  # fmt: skip
        return True

    # --- the loop -------------------------------------------------------------------------

    def restore(self) -> None:
        """At start: a valid worktree already published (a restart) makes us ready now."""
        for leftover in self.layout.temp_links():
            with contextlib.suppress(OSError):
                os.unlink(leftover)
        published = self.layout.published()
        if published and os.path.isdir(self.layout.git_dir) and self.layout.worktree_ok(published):
            self.current = published
            self.log.info("found_published", hash=published, link=self.layout.link)
            self.runtime.set_ready(True)
        else:
            self.runtime.set_ready(False, "no sync yet")

    async def attempt(self) -> bool:
        """One sync with its bookkeeping; True on success (changed or not)."""
        self.syncing = True
        try:
            return await self._attempt()
        finally:
            self.syncing = False

    async def _attempt(self) -> bool:
        waiters, self.waiters = self.waiters, []
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.s.sync_timeout):
                changed = await self.sync_once()
                await self.clean_stale(self.s.sync_timeout)
        except (GitError, SyncFailed, OSError, TimeoutError) as exc:
            error = (
                str(exc)
                if not isinstance(exc, TimeoutError)
                else (f"sync timed out after {self.s.sync_timeout:g}s")
            )
            self.fail(redact(error, self.secrets), time.monotonic() - started)
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result({"status": "error", "error": redact(error, self.secrets)})
            return False
        first = not self.succeeded
        self.succeed(changed, time.monotonic() - started)
        if (changed or first) and self.current:
            for runner in self.hooks:
                runner.send(self.current, self.layout.worktree(self.current))
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result({"status": "ok", "hash": self.current, "changed": changed})
        return True

    def succeed(self, changed: bool, seconds: float) -> None:
        status = "success" if changed else "noop"
        self.metrics.duration.labels(status).observe(seconds)
        self.metrics.count.labels(status).inc()
        self.metrics.last_success.set(time.time())
        self.metrics.failures.set(0)
        if self.failures:
            self.log.info("sync_recovered", after_failures=self.failures)
        self.failures = 0
        self.succeeded = True
        if self.s.touch_file:
            with contextlib.suppress(OSError):
                touch(_under(self.layout.root, self.s.touch_file))
        if self.s.error_file:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(_under(self.layout.root, self.s.error_file))
        self.runtime.set_ready(True)
        if changed:
            self.log.info("synced", hash=self.current, seconds=round(seconds, 3))

    def fail(self, error: str, seconds: float) -> None:
        self.failures += 1
        self.check_root = True
        self.metrics.duration.labels("error").observe(seconds)
        self.metrics.count.labels("error").inc()
        self.metrics.failures.set(self.failures)
        write_failed = WRITE_FAILED.search(error) is not None
        if write_failed and self.layout.exists(self.layout.recycle):
            # The tree kept for recycling is the one thing we may free to make room.
            self.layout.remove_tree(self.layout.recycle)
            self.log.warning("worktree_recycle_dropped", reason="no space left on the volume")
        free = _free_bytes(self.layout.root)
        if free is not None and write_failed:
            # git says "unable to write file X" without the reason: give the likely one.
            error += f" (the --root volume has {_mib(free)} free)"
        self.log.error(
            "sync_failed",
            error=error,
            failures=self.failures,
            repo=hide_userinfo(self.s.repo),
            ref=self.s.ref,
            root_free_bytes=free,
        )
        # No git of ours runs now: a lock left by an aborted command is stale.
        with contextlib.suppress(OSError):
            removed = self.layout.remove_stale_locks()
            if removed:
                self.metrics.locks_removed.inc(len(removed))
                self.log.warning("stale_locks_removed", files=removed)
        if self.s.error_file:
            record = {"time": datetime.now(UTC).isoformat(), "error": error,
                      "failures": self.failures, "ref": self.s.ref}  # fmt: skip
            path = _under(self.layout.root, self.s.error_file)
            try:
                write_atomic(path, json.dumps(record).encode() + b"\n")
            except OSError as exc:
                # A full disk is one way here; the log line above still has git's error.
                self.log.error("error_file_failed", file=path, error=exc.strerror or str(exc))
        limit = self.s.unready_after_failures
        if limit and self.failures >= limit:
            self.runtime.set_ready(False, f"{self.failures} syncs failed in a row: {error}")

    def too_many_failures(self) -> bool:
        limit = self.s.max_failures
        if not self.succeeded and self.s.init_max_failures is not None:
            limit = self.s.init_max_failures
        return limit >= 0 and self.failures > limit

    async def loop(self) -> None:
        stopped = False
        while True:
            ok = await self.attempt()
            if not ok and self.too_many_failures():
                raise StartupError("too_many_failures", failures=self.failures)
            if ok and self.s.one_time:
                return
            period: float | None = self.s.period
            if not self.succeeded and self.s.init_period is not None:
                period = self.s.init_period
            if ok and self.s.is_sha:
                # A commit never changes: no more polls. A trigger (POST /sync, signal)
                # still checks that the worktree is there, without any git command.
                if not stopped:
                    self.log.info("polling_stopped", reason="--ref is a SHA", hash=self.current)
                stopped, period = True, None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), period)
            self.wake.clear()

    # --- triggers -------------------------------------------------------------------------

    def trigger(self, source: str) -> None:
        self.log.info("sync_requested", source=source)
        self.wake.set()

    def wanted_refs(self) -> set[str] | None:
        """The refs whose pushes change what is synced; None while HEAD is not resolved."""
        ref = self.s.ref
        if self.s.is_sha:
            return set()  # a commit never moves
        if ref == "HEAD":
            return {self.head_ref} if self.head_ref else None
        if ref.startswith("refs/"):
            return {ref}
        return {f"refs/heads/{ref}", f"refs/tags/{ref}"}

    def status(self) -> dict[str, object]:
        """/status figures: what is published, and whether a sync runs or is asked for."""
        return {"hash": self.current, "syncing": self.syncing,
                "sync_pending": self.wake.is_set(), "failures": self.failures}  # fmt: skip

    async def handle_sync(self, request: Request) -> Response:
        """POST /sync: sync now; answers when a sync started after the request has ended."""
        if self.s.sync_token_file and not is_loopback(request.peer):
            try:
                token = read_secret(self.s.sync_token_file).strip()
            except OSError:
                return json_response({"error": "sync token file unreadable"}, 503)
            # The scheme is case-insensitive (RFC 9110), the token is not; bytes, so that
            # compare_digest (constant time) takes any header a client sends.
            scheme, _, given = request.headers.get(b"authorization", b"").partition(b" ")
            if (
                not token
                or scheme.lower() != b"bearer"
                or not hmac.compare_digest(given.strip(), token.encode())
            ):
                return json_response({"error": "bearer token required"}, 403)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.waiters.append(future)
        self.trigger("admin")
        try:
            result = await asyncio.wait_for(future, self.s.sync_timeout + self.s.period + 5)
        except TimeoutError:
            return json_response({"status": "error", "error": "no sync finished in time"}, 503)
        return json_response(result, 200 if result["status"] == "ok" else 503)


def nss_wrapper_env(home: str, passwd: str, group: str) -> dict[str, str] | None:
    """Environment that makes git and ssh see `passwd`/`group` entries (nss_wrapper)."""
    libraries = sorted(glob.glob("/usr/lib/*/libnss_wrapper.so")) + sorted(
        glob.glob("/usr/lib/libnss_wrapper.so")
    )
    if not libraries:
        return None
    files = {"NSS_WRAPPER_PASSWD": ("passwd", passwd), "NSS_WRAPPER_GROUP": ("group", group)}
    env = {"LD_PRELOAD": libraries[0]}
    for variable, (name, text) in files.items():
        path = os.path.join(home, name)
        write_atomic(path, text.encode())
        env[variable] = path
    return env


def _free_bytes(path: str) -> int | None:
    """Bytes an unprivileged writer may still use on path's filesystem (None: unknown)."""
    try:
        stat = os.statvfs(path)
    except OSError:
        return None
    return stat.f_bavail * stat.f_frsize


def _mib(size: int) -> str:
    return f"{size / 1048576:.1f} MiB"


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def _same_path(a: str, b: str) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def _store_lines(url: str, username: str, password: str) -> list[str]:
    """Lines of git's credential store for url (scheme://user:pass@host/path)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return []
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    user = urllib.parse.quote(username, safe="")
    secret = urllib.parse.quote(password, safe="")
    return [f"{parts.scheme}://{user}:{secret}@{host}{parts.path}"]


async def run(settings: GitSyncSettings, runtime: Runtime) -> None:
    if settings.group_write:
        os.umask(0o002)
    if settings.verbose >= 5:
        logging.getLogger().setLevel(logging.DEBUG)
    sync = GitSync(settings, runtime)
    sync._ensure_user()
    sync.restore()
    loop = asyncio.get_running_loop()
    if settings.sync_on_signal:
        number = signal_number(settings.sync_on_signal)
        loop.add_signal_handler(number, sync.trigger, f"signal {number}")
    webhook: WebhookEndpoint | None = None
    webhook_server: HttpServer | None = None
    if settings.webhook_secret_file:
        webhook = WebhookEndpoint(
            settings.webhook_secret_file,
            settings.webhook_rate,
            settings.webhook_burst,
            wanted_refs=sync.wanted_refs,
            published=lambda: sync.current,
            wake=sync.wake.set,
            log=runtime.log,
            registry=runtime.registry,
        )
    if runtime.admin is not None:
        runtime.admin.add_route(
            "POST", "/sync", sync.handle_sync, loopback_only=not settings.sync_token_file
        )
        # git-sync's --http-bind endpoint: / is 503 until the first sync, then 200.
        runtime.admin.add_route("GET", "/", runtime.admin.readyz)
        runtime.admin.add_status(sync.status)
        if webhook is not None and not settings.webhook_bind:
            runtime.admin.add_route("POST", "/webhook", webhook.handle,
                                    max_body=settings.webhook_max_body)  # fmt: skip
    if webhook is not None and settings.webhook_bind:
        webhook_server = HttpServer(
            on_error=lambda exc: runtime.log.exception("webhook_handler_failed", exc_info=exc)
        )
        webhook_server.add_route("POST", "/webhook", webhook.handle, settings.webhook_max_body)
        host, port = split_host_port(settings.webhook_bind)
        with listening(settings, "webhook_bind"):
            await webhook_server.start(host, port)
        runtime.log.info("webhook_listening", addr=f"{host}:{webhook_server.port}")
    if settings.http_pprof:
        runtime.log.warning(
            "http_pprof_ignored",
            reason="--http-pprof serves Go's pprof, which has no meaning in this Python helper",
            instead="/metrics (process_*, podkit_event_loop_lag_seconds), /status, -v 5 logs",
        )
    hook_tasks = [asyncio.create_task(h.run(), name=f"hook-{h.hook.name}") for h in sync.hooks]
    main = asyncio.create_task(sync.loop(), name="git-sync-loop")

    async def stop() -> None:
        # Cancelling the loop aborts the running git (SIGTERM, it removes its own locks);
        # a publish never awaits, so it is either done or not started.
        runtime.log.info("sync_stopping", git_running=sync.git.running)
        main.cancel()

    try:
        async with runtime.on_drain(stop):
            await asyncio.wait({main})
        if not main.cancelled():
            main.result()  # too many failures: raises StartupError
            if settings.one_time and sync.hooks:
                results = await asyncio.gather(*(h.first_result for h in sync.hooks))
                if not all(results):
                    raise StartupError("hook_failed", one_time=True)
    finally:
        if webhook_server is not None:
            await webhook_server.stop(grace=1.0)
        for task in (main, *hook_tasks):
            task.cancel()
        await asyncio.gather(main, *hook_tasks, return_exceptions=True)
        # The aborted git removed its own locks; anything left is ours to clear.
        with contextlib.suppress(OSError):
            removed = sync.layout.remove_stale_locks()
            if removed:
                runtime.log.warning("stale_locks_removed", files=removed)
        shutil.rmtree(sync.home, ignore_errors=True)
