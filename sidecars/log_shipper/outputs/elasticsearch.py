"""`elasticsearch`: the bulk API (Elasticsearch and OpenSearch).

Each record is a `create` with `_id` = file identity + offset, so a batch resent after a
crash or a timeout creates no duplicate: the backend answers 409 for records it already
has, which count as delivered (and as duplicates). A partial bulk failure retries only
the items that failed with 429 or 5xx; items rejected otherwise (mapping errors, 400)
are dropped, counted and logged with the backend's reason.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import Field

from podkit.config import SecretFile
from podkit.sidecars.log_shipper.outputs.base import OutputError, SendResult
from podkit.sidecars.log_shipper.outputs.httpclient import HttpOptions, HttpOutput
from podkit.sidecars.log_shipper.records import OutBatch


class ElasticsearchOptions(HttpOptions):
    index: str = Field("podkit-logs", description="index (or data stream) to write to")
    api_key_file: SecretFile = Field(None, description="file with an API key (ApiKey auth)")
    pipeline: str | None = Field(None, description="ingest pipeline to run")


class ElasticsearchOutput(HttpOutput):
    failure_reasons = (*HttpOutput.failure_reasons, "bad_response", "item_429")
    Options = ElasticsearchOptions
    options: ElasticsearchOptions
    idempotent = True

    def __init__(self, options: ElasticsearchOptions, **kwargs: object) -> None:
        super().__init__(options, **kwargs)
        self.url = options.url.rstrip("/") + "/_bulk"
        if options.pipeline:
            self.url += f"?pipeline={options.pipeline}"
        if options.api_key_file is not None:
            self.headers["Authorization"] = f"ApiKey {options.api_key_file.get_secret_value()}"

    def body(self, batch: OutBatch) -> bytes:
        # {"create":{"_index":INDEX,"_id":ID}}: only the id changes from record to record.
        head = b'{"create":{"_index":' + orjson.dumps(self.options.index) + b',"_id":'
        parts: list[bytes] = []
        for chunk, i in batch:
            parts.append(head + orjson.dumps(chunk.record_id(i)) + b"}}")
            parts.append(chunk.record_bytes(i))
        parts.append(b"")
        return b"\n".join(parts)

    async def send(self, batch: OutBatch) -> SendResult | None:
        status, body, headers = await self.post(self.url, self.body(batch), "application/x-ndjson")
        self.check(status, body, headers)
        return self.read_bulk(body, len(batch))

    @staticmethod
    def read_bulk(body: bytes, expected: int) -> SendResult | None:
        try:
            answer: Any = orjson.loads(body)
            items = answer["items"]
            errors = bool(answer.get("errors"))
        except (orjson.JSONDecodeError, KeyError, TypeError):
            detail = body[:500].decode("utf-8", "replace")
            raise OutputError("bad_response", detail, retryable=True) from None
        if not isinstance(items, list) or len(items) != expected:
            count = len(items) if isinstance(items, list) else "no"
            raise OutputError("bad_response", f"{count} items for {expected}", retryable=True)
        if not errors:
            return None
        result = SendResult()
        retry_status: set[int] = set()
        for position, item in enumerate(items):
            (outcome,) = item.values() if isinstance(item, dict) and len(item) == 1 else ({},)
            status = outcome.get("status", 0) if isinstance(outcome, dict) else 0
            if 200 <= status < 300:
                continue
            if status == 409:  # `create` of an _id that exists: delivered before
                result.duplicates += 1
            elif status == 429 or status >= 500 or status == 0:
                result.retry.append(position)
                retry_status.add(status)
            else:
                result.rejected.append(position)
                if not result.detail:
                    result.detail = orjson.dumps(outcome.get("error", outcome)).decode()
                result.rejected_reason = f"item_{status}"
        if result.retry:
            result.reason = f"item_{max(retry_status)}"
        return result
