"""The watcher: file-system events (watchfiles/inotify) wake the follower's loop early.

It is an optimisation: polling (`poll_interval`) and rescans (`refresh_interval`) find
everything without it. An event about a file the globs could match asks for a rescan.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from fnmatch import fnmatch
from typing import Any

from podkit.follow.api import FollowConfig
from podkit.follow.discovery import excluded, watch_dirs


class Watcher:
    def __init__(
        self,
        config: FollowConfig,
        log: Any,
        *,
        known: Callable[[str], bool],
        on_change: Callable[[bool], None],
        on_moved: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self.log = log
        self.known = known
        """Whether a path is a file we follow already (its modifications need no rescan)."""
        self.on_change = on_change
        """Called with True when a rescan is needed, False when only reading is."""
        self.on_moved = on_moved
        """Called with each path the globs match that was created, renamed or removed:
        a generation may have been renamed out of the globs there before we opened it."""
        self.stop_event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._watching: tuple[list[str], bool] | None = None
        self._abs_include = [os.path.abspath(pat) for pat in config.include]
        """The include globs as absolute paths (the watcher reports absolute paths)."""

    def restart(self) -> None:
        """(Re)start watching when the directories to watch changed (one was created)."""
        if not self.config.watch:
            return
        dirs = watch_dirs(self.config.include)
        if dirs == self._watching:
            return
        self._watching = dirs
        if self._task is not None:
            self.stop_event.set()
            self._task.cancel()
        self.stop_event = asyncio.Event()
        self._task = asyncio.create_task(
            self._watch(*dirs, stop=self.stop_event), name="follow-watch"
        )

    async def stop(self) -> None:
        self.stop_event.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _watch(self, dirs: list[str], recursive: bool, *, stop: asyncio.Event) -> None:
        try:
            from watchfiles import Change, awatch
        except ImportError:
            return
        if not dirs:
            return
        try:
            async for changes in awatch(
                *dirs,
                watch_filter=None,
                recursive=recursive,
                debounce=50,
                step=10,
                stop_event=stop,
                rust_timeout=1000,
                yield_on_timeout=False,
            ):
                known = self.known
                if self.on_moved is not None:
                    for c, p in changes:
                        if c != Change.modified and self.wanted(p):
                            self.on_moved(p)
                self.on_change(
                    any(
                        c != Change.modified or (not known(p) and self.wanted(p))
                        for c, p in changes
                    )
                )
        except Exception as exc:  # the watcher is an optimisation; polling carries on
            self.log.warning("watch_failed", error=str(exc))

    def wanted(self, path: str) -> bool:
        """Whether a path the watcher reported could match the globs (fnmatch: cheap)."""
        return any(fnmatch(path, pat) for pat in self._abs_include) and not excluded(
            path, self.config.exclude
        )
