"""Test helpers for code that follows files: a collecting consumer and condition waits.

Used by podkit's own tests and by the helpers built on the follower (log-shipper,
log-adapter); nothing here sleeps and hopes: every wait is on a condition, with a timeout.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from podkit.follow.api import Batch, FileEvent
from podkit.follow.follower import Follower


async def until(condition: Callable[[], object], *, within: float = 10.0, what: str) -> Any:
    """Wait until `condition()` is truthy (checked every 10 ms); TimeoutError names `what`."""
    deadline = time.monotonic() + within
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.01)


class Collector:
    """Iterates a follower in a task, keeps every batch, and acks (all, or when told)."""

    def __init__(self, follower: Follower, *, auto_ack: bool = True) -> None:
        self.follower = follower
        self.auto_ack = auto_ack
        self.batches: list[Batch] = []
        self.task: asyncio.Task[None] | None = None

    def start(self) -> Collector:
        self.task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        async for batch in self.follower:
            self.batches.append(batch)
            if self.auto_ack:
                self.follower.ack(batch)

    async def stop(self) -> None:
        """Drain the follower and wait for the iteration to end."""
        await self.follower.drain()
        if self.task is not None:
            await self.task

    def lines(self, path: str | None = None) -> list[bytes]:
        return [line for b in self.batches if path is None or b.path == path for line in b.lines]

    def events(self, kind: str | None = None) -> list[FileEvent]:
        return [e for b in self.batches for e in b.events if kind is None or e.kind == kind]

    def by_file(self) -> dict[str, list[bytes]]:
        """Lines per file identity (dev:inode), in delivery order."""
        out: dict[str, list[bytes]] = {}
        for b in self.batches:
            out.setdefault(f"{b.file_id.dev}:{b.file_id.inode}", []).extend(b.lines)
        return out
