"""The git driver: runs the real `git` binary as a subprocess (never through a shell).

Every command runs in its own process group with a deadline. When the deadline passes or
the caller is cancelled (SIGTERM drain), the group gets SIGTERM first: git's own signal
handlers then remove the lock files it holds (index.lock, shallow.lock, ...). Only a git
that ignores that for `ABORT_GRACE` seconds is killed, and the caller's lock recovery
(`worktrees.remove_stale_locks`) cleans up after it.

The environment is private: `GIT_CONFIG_GLOBAL` points at a file of our own (never the
user's ~/.gitconfig), the system config is skipped, prompts are off, and the settings
git-sync needs (safe.directory, credential store, --git-config entries) are passed as
`GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_n`/`GIT_CONFIG_VALUE_n`, which need no quoting.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

ABORT_GRACE = 3.0
# What git may still see of our own environment (proxies, CA bundles, locale).
KEEP_ENV = ("PATH", "LANG", "TZ", "SSL_CERT_FILE", "SSL_CERT_DIR", "USER", "http_proxy",
            "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")  # fmt: skip
# Output kept in an error message: git's last lines say what went wrong.
ERROR_TAIL = 2000


# The root and a file:// remote may belong to another UID (volumes): trusted, as by v4.
GLOBAL_CONFIG = "[safe]\n\tdirectory = *\n"


class GitError(Exception):
    """A git command failed, timed out or could not start; str() is one readable line."""

    def __init__(self, args: Sequence[str], message: str, returncode: int | None = None) -> None:
        self.command = " ".join(args[:3])
        self.returncode = returncode
        super().__init__(f"git {self.command}: {message}")


class GitTimeout(GitError):
    pass


@dataclass(frozen=True)
class Result:
    stdout: str
    stderr: str
    seconds: float


def _tail(text: str) -> str:
    text = " | ".join(line.strip() for line in text.strip().splitlines() if line.strip())
    return text if len(text) <= ERROR_TAIL else "..." + text[-ERROR_TAIL:]


class Git:
    def __init__(
        self,
        binary: str,
        home: str,
        config: Sequence[tuple[str, str]] = (),
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.binary = binary
        self.home = home
        self.global_config = os.path.join(home, "gitconfig")
        # git passes no GIT_CONFIG_* entries to the upload-pack it starts for a file://
        # repository, so what that process must see too goes in the global file.
        with open(self.global_config, "w", encoding="utf-8") as file:
            file.write(GLOBAL_CONFIG)
        self.config = list(config)
        self.extra_env = dict(extra_env or {})
        self.running = 0
        self._env = self._build_env()

    def set_config(self, config: Sequence[tuple[str, str]]) -> None:
        self.config = list(config)
        self._env = self._build_env()

    def set_env(self, name: str, value: str | None) -> None:
        if value is None:
            self.extra_env.pop(name, None)
        else:
            self.extra_env[name] = value
        self._env = self._build_env()

    def _build_env(self) -> dict[str, str]:
        env = {key: os.environ[key] for key in KEEP_ENV if key in os.environ}
        env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        env.update(
            HOME=self.home,
            GIT_CONFIG_GLOBAL=self.global_config,
            GIT_CONFIG_NOSYSTEM="1",
            GIT_TERMINAL_PROMPT="0",
            GIT_OPTIONAL_LOCKS="0",
            LC_ALL="C",
        )
        env["GIT_CONFIG_COUNT"] = str(len(self.config))
        for index, (key, value) in enumerate(self.config):
            env[f"GIT_CONFIG_KEY_{index}"] = key
            env[f"GIT_CONFIG_VALUE_{index}"] = value
        env.update(self.extra_env)
        return env

    async def run(
        self,
        *args: str,
        cwd: str,
        timeout: float,  # noqa: ASYNC109 - per command, enforced by killing its group
        env: Mapping[str, str] | None = None,
        input: bytes | None = None,
    ) -> Result:
        """`git ARGS` in cwd; raises GitError on a non-zero exit, GitTimeout past timeout."""
        argv = [self.binary, *args]
        started = time.monotonic()
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                cwd=cwd,
                env={**self._env, **env} if env else self._env,
                stdin=asyncio.subprocess.DEVNULL if input is None else asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            raise GitError(args, f"cannot run {self.binary}: {exc.strerror or exc}") from None
        self.running += 1
        try:
            try:
                out, err = await asyncio.wait_for(proc.communicate(input), max(timeout, 0.001))
            except TimeoutError:
                await _finish_abort(proc)
                raise GitTimeout(args, f"timed out after {timeout:g}s") from None
            except asyncio.CancelledError:
                await _finish_abort(proc)
                raise
        finally:
            self.running -= 1
        stdout = out.decode("utf-8", "replace")
        stderr = err.decode("utf-8", "replace")
        if proc.returncode != 0:
            detail = _tail(stderr) or _tail(stdout) or "no output"
            raise GitError(args, f"exit {proc.returncode}: {detail}", proc.returncode)
        return Result(stdout, stderr, time.monotonic() - started)


async def _abort(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM the command's process group (git removes its locks), SIGKILL if it lingers."""
    for sig, wait in ((signal.SIGTERM, ABORT_GRACE), (signal.SIGKILL, ABORT_GRACE)):
        if proc.returncode is not None:
            break
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), wait)
    # Children of git (ssh, remote helpers) share the group; make sure none outlives it.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


async def _finish_abort(proc: asyncio.subprocess.Process) -> None:
    """Run `_abort` to its end even if the caller is cancelled again meanwhile."""
    task = asyncio.ensure_future(_abort(proc))
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
