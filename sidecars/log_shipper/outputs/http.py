"""`http`: each batch as one NDJSON POST (optionally gzip), with headers and auth."""

from __future__ import annotations

from podkit.sidecars.log_shipper.outputs.httpclient import HttpOptions, HttpOutput
from podkit.sidecars.log_shipper.records import OutBatch


class PlainHttpOutput(HttpOutput):
    Options = HttpOptions

    async def send(self, batch: OutBatch) -> None:
        status, body, headers = await self.post(
            self.options.url, batch.ndjson(), "application/x-ndjson"
        )
        self.check(status, body, headers)
