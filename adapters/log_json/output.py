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


def _drop_torn_record(fd: int) -> int:
    """Cut a record the last run was killed in the middle of writing; returns bytes cut.

    Its batch was never acknowledged, so the follower delivers it again: cutting it keeps
    the file one valid JSON object per line, and loses nothing.
    """
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return 0
    end = size
    while end > 0:
        start = max(0, end - 65536)
        chunk = os.pread(fd, end - start, start)
        newline = chunk.rfind(b"\n")
        if newline >= 0:
            keep = start + newline + 1
            break
        end = start
    else:
        keep = 0
    os.ftruncate(fd, keep)
    return size - keep


class Output:
    def __init__(self, kind: str, path: str | None = None) -> None:
        self.kind = kind
        self.path = path
        self._own = False
        if kind == "file":
            assert path is not None
            self.fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            self._own = True
            self.repaired_bytes = _drop_torn_record(self.fd)
        else:
            self.fd = 1
            self.repaired_bytes = 0

    async def write(self, data: bytes) -> None:
        if data:
            await asyncio.to_thread(_write_all, self.fd, data)

    def close(self) -> None:
        if self._own:
            os.close(self.fd)
            self._own = False
