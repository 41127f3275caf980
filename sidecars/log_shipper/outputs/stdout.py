"""`stdout`: one JSON record per line on standard output (kubectl logs reads it)."""

from __future__ import annotations

import asyncio
import os
import sys

from sidecars.log_shipper.outputs.base import Output, OutputError
from sidecars.log_shipper.records import OutBatch


class StdoutOutput(Output):
    async def send(self, batch: OutBatch) -> None:
        data = batch.ndjson()
        fd = sys.stdout.fileno()
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
