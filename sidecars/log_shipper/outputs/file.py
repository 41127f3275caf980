"""`file`: JSON lines appended to a local file (a volume, or a test's sink)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from pydantic import Field

from podkit.sidecars.log_shipper.outputs.base import Output, OutputError, OutputOptions
from podkit.sidecars.log_shipper.records import OutBatch


async def write_all(fd: int, data: bytes) -> None:
    """Write all of `data` to `fd`, waiting out a full non-blocking pipe.

    A whole batch in a few write(2)s (one, to a file opened O_APPEND); local disks answer
    fast enough that a thread hop would cost more than it saves.
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


class FileOptions(OutputOptions):
    path: str = Field(description="file to append JSON lines to (created with its directory)")
    fsync: bool = Field(False, description="fsync after every batch before acknowledging it")


class FileOutput(Output):
    Options = FileOptions
    options: FileOptions

    def __init__(self, options: FileOptions, **kwargs: object) -> None:
        super().__init__(options, **kwargs)  # type: ignore[arg-type]
        self.fd: int | None = None

    async def open(self) -> None:
        if self.fd is not None:
            return
        path = Path(self.options.path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OutputError("open", f"{path}: {exc.strerror}", retryable=True) from None

    async def send(self, batch: OutBatch) -> None:
        assert self.fd is not None
        # A partial write may leave part of the batch behind: the retry resends it all
        # (at-least-once; lines are whole JSON objects, so readers can dedupe).
        await write_all(self.fd, batch.ndjson())
        if self.options.fsync:
            try:
                await asyncio.to_thread(os.fsync, self.fd)
            except OSError as exc:
                raise OutputError("write", exc.strerror or str(exc), retryable=True) from None

    async def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
