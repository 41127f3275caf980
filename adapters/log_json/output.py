"""Where records go: the container's stdout (what `kubectl logs` shows) or a file.

Writes happen in a worker thread, a batch at a time, so a slow reader of stdout slows the
adapter down (back-pressure up to the follower's budget) without blocking its event loop.
"""

from __future__ import annotations

import asyncio
import os


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class Output:
    def __init__(self, kind: str, path: str | None = None) -> None:
        self.kind = kind
        self.path = path
        self._own = False
        if kind == "file":
            assert path is not None
            self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self._own = True
        else:
            self.fd = 1

    async def write(self, data: bytes) -> None:
        if data:
            await asyncio.to_thread(_write_all, self.fd, data)

    def close(self) -> None:
        if self._own:
            os.close(self.fd)
            self._own = False
