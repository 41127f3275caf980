"""`redis`: XADD every record to a stream (field `record`: the JSON), capped by MAXLEN.

One pipeline round trip per batch. Entries that failed (OOM, LOADING, a failover's
READONLY...) are retried alone; a stream has no idempotent add, so a resend after a
crash can duplicate entries (readers can dedupe on the `id` field).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from podkit.config import SecretFile
from podkit.sidecars.log_shipper.outputs.base import Output, OutputError, OutputOptions, SendResult
from podkit.sidecars.log_shipper.records import OutBatch

# Errors a Redis server gives while it cannot write *now*; anything else is permanent.
TRANSIENT = ("OOM", "LOADING", "BUSY", "READONLY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN")


class RedisOptions(OutputOptions):
    url: str = Field("redis://127.0.0.1:6379", description="redis:// or rediss:// URL")
    stream: str = Field("podkit:logs", description="stream key")
    maxlen: int = Field(1_000_000, ge=0, description="cap the stream near this length; 0 = no cap")
    approximate: bool = Field(True, description="MAXLEN ~ (cheaper trimming)")
    password_file: SecretFile = Field(None, description="file with the Redis password")

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("expected a redis://, rediss:// or unix:// URL")
        return value


class RedisOutput(Output):
    failure_reasons = ("redis_error",)
    Options = RedisOptions
    options: RedisOptions

    def __init__(self, options: RedisOptions, **kwargs: Any) -> None:
        super().__init__(options, **kwargs)
        self.client: Any = None

    async def open(self) -> None:
        from redis.asyncio import Redis

        if self.client is not None:
            return
        opts = self.options
        password = opts.password_file.get_secret_value() if opts.password_file else None
        self.client = Redis.from_url(
            opts.url,
            password=password,
            socket_timeout=opts.request_timeout,
            socket_connect_timeout=min(opts.request_timeout, 10.0),
        )

    async def send(self, batch: OutBatch) -> SendResult | None:
        from redis import exceptions

        opts = self.options
        maxlen = opts.maxlen or None
        pipe = self.client.pipeline(transaction=False)
        for chunk, index in batch:
            pipe.xadd(
                opts.stream,
                {"record": chunk.record_bytes(index), "id": chunk.record_id(index)},
                maxlen=maxlen,
                approximate=opts.approximate,
            )
        try:
            replies = await pipe.execute(raise_on_error=False)
        except (exceptions.ConnectionError, exceptions.TimeoutError, OSError) as exc:
            await self._reset()
            raise OutputError("connect", str(exc), retryable=True) from None
        except exceptions.RedisError as exc:
            raise OutputError("redis_error", str(exc), retryable=True) from None
        result = SendResult()
        for position, reply in enumerate(replies):
            if isinstance(reply, Exception):
                text = str(reply)
                if isinstance(reply, exceptions.ConnectionError | exceptions.TimeoutError) or (
                    text.startswith(TRANSIENT)
                ):
                    result.retry.append(position)
                    result.reason = result.reason or "redis_" + text.split(" ", 1)[0].lower()
                else:
                    result.rejected.append(position)
                    result.rejected_reason = "redis_" + text.split(" ", 1)[0].lower()
                    result.detail = result.detail or text
        return result if result.retry or result.rejected else None

    async def _reset(self) -> None:
        if self.client is not None:
            await self.client.connection_pool.disconnect()

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()
            self.client = None
