"""One output driven through the real Pipeline, for tests/integration/log_shipper/test_outputs_*.py."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry

from podkit.follow.api import Batch, FileId
from podkit.logs import get_logger
from podkit.sidecars.log_shipper.metrics import ShipperMetrics
from podkit.sidecars.log_shipper.outputs.base import Output
from podkit.sidecars.log_shipper.pipeline import Pipeline
from podkit.sidecars.log_shipper.records import RecordEncoder

LOG = get_logger("test")


def batches(
    count: int, per_batch: int, *, path: str = "/logs/app.log", extra: bytes = b""
) -> list[Batch]:
    """Follower batches of `seq=N<extra>` lines, N counting up across them."""
    out = []
    for seq in range(count):
        lines = [b"seq=%d%b" % (seq * per_batch + i, extra) for i in range(per_batch)]
        offsets = [(seq * per_batch + i) * 100 for i in range(per_batch)]
        out.append(Batch(path, FileId(8, 99, "abc"), lines, offsets, offsets[-1] + 100, seq))
    return out


async def ship(
    output: Output, items: list[Batch], metrics: ShipperMetrics | None = None
) -> tuple[list[int], ShipperMetrics]:
    """Submit every batch, close the pipeline; the seqs acked, and the metrics."""
    acked: list[int] = []
    metrics = metrics or ShipperMetrics(CollectorRegistry())
    pipeline = Pipeline([output], lambda b: acked.append(b.seq), metrics, LOG)
    pipeline.start()
    encoder = RecordEncoder({"pod": "web-1", "namespace": "shop"})
    for batch in items:
        await pipeline.submit(batch, encoder.encode(batch))
    await asyncio.wait_for(pipeline.close(), 60)
    return acked, metrics
