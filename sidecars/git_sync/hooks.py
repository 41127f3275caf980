"""Hooks run after a new hash is published: `--exechook-command` and `--webhook-url`.

Each hook has one runner task. `send(hash)` replaces whatever hash was waiting (the
latest hash wins: a hook that is still failing for an old hash moves on to the new one);
a failure is retried after a backoff until it succeeds. With `--one-time` each hook runs
once and its result decides the exit status, as in git-sync.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Protocol

from prometheus_client import Counter

from podkit.backoff import Backoff

if TYPE_CHECKING:
    from podkit.logs import EventLogger

BACKOFF_MAX = 60.0


class HookError(Exception):
    pass


class Hook(Protocol):
    name: str

    async def __call__(self, sha: str, worktree: str) -> None: ...


class ExecHook:
    name = "exechook"

    def __init__(self, command: str, timeout: float) -> None:
        self.argv = shlex.split(command)
        self.timeout = timeout

    async def __call__(self, sha: str, worktree: str) -> None:
        env = {**os.environ, "GITSYNC_HASH": sha, "GIT_SYNC_HASH": sha}
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.argv,
                cwd=worktree,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            raise HookError(f"cannot run {self.argv[0]}: {exc.strerror or exc}") from None
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), self.timeout)
        except (TimeoutError, asyncio.CancelledError) as exc:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
            if isinstance(exc, TimeoutError):
                raise HookError(f"timed out after {self.timeout:g}s") from None
            raise
        if proc.returncode != 0:
            tail = out.decode("utf-8", "replace").strip()[-500:]
            raise HookError(f"exit {proc.returncode}: {tail}")


class WebHook:
    name = "webhook"

    def __init__(self, url: str, method: str, success_status: int, timeout: float) -> None:
        self.url = url
        self.method = method.upper()
        self.success_status = success_status
        self.timeout = timeout
        self._background: set[asyncio.Task[object]] = set()

    def _call(self, sha: str) -> int:
        request = urllib.request.Request(
            self.url, method=self.method, headers={"Gitsync-Hash": sha}, data=b""
            if self.method in ("POST", "PUT", "PATCH") else None,
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except (OSError, ValueError) as exc:
            raise HookError(str(getattr(exc, "reason", exc))) from None

    async def __call__(self, sha: str, worktree: str) -> None:
        if self.success_status == 0:  # fire and forget
            task = asyncio.create_task(asyncio.to_thread(self._call, sha))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            return
        status = await asyncio.to_thread(self._call, sha)
        if status != self.success_status:
            raise HookError(f"status {status}, expected {self.success_status}")


class HookRunner:
    def __init__(
        self,
        hook: Hook,
        backoff: float,
        log: EventLogger,
        runs: Counter,
        *,
        one_time: bool = False,
    ) -> None:
        self.hook = hook
        self.log = log
        self.runs = runs
        self.one_time = one_time
        self.backoff = Backoff(max(backoff, 0.001), max(backoff, BACKOFF_MAX))
        self.pending: tuple[str, str] | None = None
        self.wake = asyncio.Event()
        self.first_result: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.last_success: str | None = None

    def send(self, sha: str, worktree: str) -> None:
        self.pending = (sha, worktree)
        self.wake.set()

    async def run(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            if self.pending is None:
                continue
            sha, worktree = self.pending
            try:
                await self.hook(sha, worktree)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.runs.labels(self.hook.name, "error").inc()
                delay = self.backoff.next()
                self.log.warning(
                    "hook_failed", hook=self.hook.name, hash=sha, error=str(exc),
                    retry_in=None if self.one_time else round(delay, 3),
                )  # fmt: skip
                if self.one_time:
                    self._first(False)
                    return
                # Retry after the backoff, with whatever hash is the latest by then.
                await asyncio.sleep(delay)
                self.wake.set()
                continue
            self.runs.labels(self.hook.name, "success").inc()
            self.backoff.reset()
            self.last_success = sha
            self.log.info("hook_ran", hook=self.hook.name, hash=sha)
            if self.pending == (sha, worktree):
                self.pending = None
            self._first(True)
            if self.one_time:
                return

    def _first(self, ok: bool) -> None:
        if not self.first_result.done():
            self.first_result.set_result(ok)
