"""`stdout`: one JSON record per line on standard output (kubectl logs reads it)."""

from __future__ import annotations

import sys

from podkit.sidecars.log_shipper.outputs.base import Output
from podkit.sidecars.log_shipper.outputs.file import write_all
from podkit.sidecars.log_shipper.records import OutBatch


class StdoutOutput(Output):
    failure_reasons = ("write",)

    async def send(self, batch: OutBatch) -> None:
        await write_all(sys.stdout.fileno(), batch.ndjson())
