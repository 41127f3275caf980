"""`file`: JSON lines appended to a local file (a volume, or a test's sink)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

from pydantic import Field

from podkit.sidecars.log_shipper.outputs.base import Output, OutputError, OutputOptions
from podkit.sidecars.log_shipper.records import OutBatch


async def write_all(fd: int, data: bytes) -> None:
    """Write all of `data` to `fd`, waiting out a full non-blocking pipe.

    A whole batch in a few write(2)s, in the event loop: for stdout, a pipe that may be
    non-blocking. The `file` output writes from a worker thread instead.
    """
    view = memoryview(data)
    try:
        while view:
            try:
                written = os.write(fd, view)
            except BlockingIOError:  # a non-blocking pipe that is full: yield, then retry
                await asyncio.sleep(0.01)
                continue
            view = view[written:]
    except OSError as exc:
        raise OutputError("write", exc.strerror or str(exc), retryable=True) from None


def _write_blocking(fd: int, data: bytes) -> None:
    """All of `data` to a blocking fd (a regular file): run in a worker thread."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class FileOptions(OutputOptions):
    path: str = Field(description="file to append JSON lines to (created with its directory)")
    fsync: bool = Field(False, description="fsync after every batch before acknowledging it")


class FileOutput(Output):
    Options = FileOptions
    failure_reasons = ("open", "write")
    options: FileOptions

    def __init__(self, options: FileOptions, **kwargs: object) -> None:
        super().__init__(options, **kwargs)  # type: ignore[arg-type]
        self.fd: int | None = None
        self._writing: asyncio.Future[None] | None = None
        """The last write's thread: a send cancelled by its timeout leaves it running, and
        the next write (or the close) must not start before it ends."""

    async def _settle(self) -> None:
        if self._writing is not None and not self._writing.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(self._writing)

    async def prepare(self) -> None:
        # A path that cannot be opened at start is a mistake in the pod spec (read-only
        # mount, a file where the directory should be): refuse to start. Later failures
        # (disk full, volume gone) are retried by the pipeline.
        await self.open()

    async def open(self) -> None:
        if self.fd is not None:
            return
        path = Path(self.options.path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except FileExistsError:  # mkdir's words for "a file is in the directory's place"
            raise OutputError("open", f"{path.parent}: not a directory", retryable=True) from None
        except OSError as exc:
            raise OutputError("open", f"{path}: {exc.strerror}", retryable=True) from None
        try:
            self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OutputError("open", f"{path}: {exc.strerror}", retryable=True) from None

    async def send(self, batch: OutBatch) -> None:
        assert self.fd is not None
        # A partial write may leave part of the batch behind: the retry resends it all
        # (at-least-once; lines are whole JSON objects, so readers can dedupe).
        # In a worker thread (write(2) releases the GIL): the follower reads and encodes
        # the next chunks meanwhile, so input and output use two cores, as Fluent Bit's
        # input and output threads do. The batch is settled only once this returns.
        data = batch.ndjson()
        await self._settle()
        loop = asyncio.get_running_loop()
        self._writing = loop.run_in_executor(None, _write_blocking, self.fd, data)
        try:
            # Shielded: a timeout cancels this send, never the record of the running write.
            await asyncio.shield(self._writing)
        except OSError as exc:
            raise OutputError("write", exc.strerror or str(exc), retryable=True) from None
        if self.options.fsync:
            try:
                await asyncio.to_thread(os.fsync, self.fd)
            except OSError as exc:
                raise OutputError("write", exc.strerror or str(exc), retryable=True) from None

    async def close(self) -> None:
        await self._settle()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
