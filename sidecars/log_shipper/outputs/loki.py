"""`loki`: the Loki push API (POST /loki/api/v1/push, JSON streams).

One stream per file (labels: the static `label`s, `filename`, and pod/namespace/node when
known). A line's timestamp is its batch's ingest time plus its index, in nanoseconds, so
lines of one file keep their order within a stream.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

import orjson
from pydantic import Field, field_validator

from podkit.sidecars.log_shipper.outputs.httpclient import HttpOptions, HttpOutput
from podkit.sidecars.log_shipper.records import OutBatch

PUSH_PATH = "/loki/api/v1/push"


class LokiOptions(HttpOptions):
    label: list[str] = Field(
        default_factory=lambda: ["job=podkit"], description="static stream label, NAME=VALUE"
    )
    tenant: str | None = Field(None, description="X-Scope-OrgID for multi-tenant Loki")
    line_format: Literal["raw", "json"] = Field(
        "raw", description="raw: the line as read; json: the whole record"
    )

    @field_validator("label")
    @classmethod
    def _check_labels(cls, value: list[str]) -> list[str]:
        for item in value:
            name, sep, _ = item.partition("=")
            if not sep or not name.replace("_", "a").isalnum() or name[0].isdigit():
                raise ValueError(f"expected a label NAME=VALUE, got {item!r}")
        return value


class LokiOutput(HttpOutput):
    Options = LokiOptions
    options: LokiOptions

    def __init__(self, options: LokiOptions, **kwargs: object) -> None:
        super().__init__(options, **kwargs)
        parts = urlsplit(options.url)
        self.url = (
            options.url if parts.path not in ("", "/") else options.url.rstrip("/") + PUSH_PATH
        )
        self.static = dict(item.partition("=")[::2] for item in options.label)
        if options.tenant:
            self.headers["X-Scope-OrgID"] = options.tenant

    def body(self, batch: OutBatch) -> bytes:
        streams: dict[tuple[tuple[str, str], ...], list[list[str]]] = {}
        raw = self.options.line_format == "raw"
        for part in batch.slices:
            chunk = part.chunk
            labels = {**self.static, "filename": chunk.path}
            for key in ("pod", "namespace", "node"):
                if key in chunk.meta:
                    labels[key] = chunk.meta[key]
            values = streams.setdefault(tuple(sorted(labels.items())), [])
            for index in range(part.start, part.stop):
                line = chunk.messages[index] if raw else chunk.record_bytes(index).decode()
                values.append([str(chunk.ingest_ns + index), line])
        return orjson.dumps(
            {"streams": [{"stream": dict(key), "values": vals} for key, vals in streams.items()]}
        )

    async def send(self, batch: OutBatch) -> None:
        status, body, headers = await self.post(self.url, self.body(batch), "application/json")
        self.check(status, body, headers)
