"""The output plugin interface: a batch of records in, an outcome out.

An output only talks to its backend. Batching, the bounded buffer, retries with backoff
and acknowledgements are the pipeline's (`podkit.sidecars.log_shipper.pipeline`), the same for
every output. `send()` either returns (all records delivered, or a `SendResult` for a
partial outcome) or raises `OutputError` saying whether the whole batch may be retried.

A third-party output is a class like the built-ins, registered in `podkit.outputs`:

    class MyOutput(Output):
        Options = MyOptions            # a subclass of OutputOptions: its settings
        async def send(self, batch: OutBatch) -> SendResult | None: ...
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from podkit.config import ByteSize, Duration
from podkit.logs import EventLogger
from podkit.sidecars.log_shipper.records import OutBatch


class OutputError(Exception):
    """A send failed. `retryable` False means retrying the same records cannot help."""

    def __init__(
        self,
        reason: str,
        detail: str = "",
        *,
        retryable: bool,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        """Short label for metrics: "connect", "timeout", "http_503", "http_400", ..."""
        self.detail = detail
        self.retryable = retryable
        self.retry_after = retry_after


@dataclass
class SendResult:
    """A partial outcome: some records must be retried, some were rejected for good."""

    retry: list[int] = field(default_factory=list)
    """Positions (0-based over the batch) to send again."""
    rejected: list[int] = field(default_factory=list)
    """Positions the backend refused permanently; counted and dropped."""
    reason: str = ""
    """Label for the part to retry (e.g. "item_429")."""
    rejected_reason: str = ""
    """Label for the rejected part (e.g. "item_400")."""
    detail: str = ""
    duplicates: int = 0
    """Records the backend already had (idempotent retry after a crash)."""


class OutputOptions(BaseModel):
    """Settings every output has: batching, buffer and retry. Subclasses add their own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str = Field(description="output plugin name (stdout, file, http, loki, ...)")
    name: str = Field("", description="label in metrics and logs; defaults to the type")
    batch_max_records: int = Field(
        5000, ge=1, description="send once this many records wait"
    )  # above the follower's 4096-line batches, so they go whole
    batch_max_bytes: ByteSize = Field(
        1 << 20, ge=1, description="send once this many bytes of lines wait"
    )
    batch_timeout: Duration = Field(
        0.5, description="send what waits after this long, even if the batch is not full"
    )
    buffer_max_bytes: ByteSize = Field(
        8 << 20, ge=1, description="bytes queued for this output before the input pauses"
    )
    retry_initial: Duration = Field(0.25, gt=0, description="first retry delay (then doubles)")
    retry_max: Duration = Field(30.0, description="longest retry delay")
    retry_max_attempts: int = Field(
        0, ge=0, description="give a batch up after this many failed attempts; 0 = never"
    )
    request_timeout: Duration = Field(30.0, gt=0, description="timeout of one send")

    @field_validator("retry_max")
    @classmethod
    def _retry_max_not_below_initial(cls, value: float, info: ValidationInfo) -> float:
        # Checked here, not at the first failed send, where it would stop the output.
        initial = info.data.get("retry_initial")
        if initial is not None and value < initial:
            raise ValueError(f"is below retry_initial ({initial:g}s)")
        return value


class Output(abc.ABC):
    Options: ClassVar[type[OutputOptions]] = OutputOptions
    idempotent: ClassVar[bool] = False
    """True when a resend after a crash creates no duplicate (deterministic record ids)."""
    failure_reasons: ClassVar[tuple[str, ...]] = ()
    """`OutputError` reasons this output raises besides the pipeline's own (connect,
    timeout, error): exported at 0 from the start, so an alert on increase() sees the first."""

    def __init__(self, options: Any, *, log: EventLogger) -> None:
        self.options = options
        self.name = options.name or options.type
        self.log = log

    async def prepare(self) -> None:  # noqa: B027 - optional hook
        """At start, before any line: check what waiting cannot fix (a local path that
        cannot be opened). An OutputError here stops the shipper (exit 1); a backend that
        is merely down belongs in `open`, whose errors are retried."""

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Connect, create what is missing. Errors here are retried like sends."""

    @abc.abstractmethod
    async def send(self, batch: OutBatch) -> SendResult | None:
        """Deliver every record of the batch, or raise OutputError."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; called once, after the last send."""
