"""Where records go: the container's stdout (what `kubectl logs` shows) or a file.

Writes happen in a worker thread, a batch at a time, so a slow reader of stdout slows the
adapter down (back-pressure up to the follower's budget) without blocking its event loop.
A write that fails (disk full, a read-only volume) is retried from the first byte not
written, with backoff, until it succeeds or the drain's deadline ends the process: the
batch is not acknowledged meanwhile, so nothing is lost and nothing is written twice.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

from podkit.backoff import Backoff

RETRY_FIRST = 0.5
RETRY_MAX = 30.0


def _write_all(fd: int, view: memoryview) -> tuple[int, OSError | None]:
    """Bytes written, and the error that stopped the writing, if one did."""
    done = 0
    try:
        while done < len(view):
            done += os.write(fd, view[done:])
    except OSError as exc:
        return done, exc
    return done, None


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


class RecordWriter:
    """Where the adapter's JSON records go: stdout or an appended file (`--output`)."""

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

    async def write(
        self,
        data: bytes | bytearray,
        on_error: Callable[[OSError], None] | None = None,
        on_recovered: Callable[[], None] | None = None,
    ) -> None:
        view = memoryview(data)
        backoff = Backoff(RETRY_FIRST, RETRY_MAX)
        failed = False
        while view:
            done, error = await asyncio.to_thread(_write_all, self.fd, view)
            view = view[done:]
            if error is None:
                break
            failed = True
            if on_error is not None:
                on_error(error)
            await asyncio.sleep(backoff.next())
        if failed and on_recovered is not None:
            on_recovered()

    def close(self) -> None:
        if self._own:
            os.close(self.fd)
            self._own = False
