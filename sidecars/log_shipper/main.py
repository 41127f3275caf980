"""`podkit log-shipper`: follow files, ship every line to every output, ack, checkpoint."""

from __future__ import annotations

import asyncio
import contextlib

from podkit.follow import Batch, FollowConfig, Follower
from podkit.runtime import Runtime, StartupError
from podkit.sidecars.log_shipper.metrics import ShipperMetrics
from podkit.sidecars.log_shipper.outputs.base import Output, OutputError
from podkit.sidecars.log_shipper.pipeline import Pipeline
from podkit.sidecars.log_shipper.records import RecordEncoder, k8s_metadata
from podkit.sidecars.log_shipper.settings import LogShipperSettings

READY_CHECK_INTERVAL = 1.0


def build_outputs(settings: LogShipperSettings, runtime: Runtime) -> list[Output]:
    return [cls(options, log=runtime.log) for cls, options in settings.output_specs]


def count_events(batch: Batch, metrics: ShipperMetrics, runtime: Runtime) -> None:
    for event in batch.events:
        metrics.file_events.labels(event.kind).inc()
        if event.lost_bytes:
            metrics.lost_bytes.labels(event.reason or event.kind).inc(event.lost_bytes)
            runtime.log.warning(
                "bytes_lost",
                path=event.path,
                lost_bytes=event.lost_bytes,
                reason=event.reason,
                lower_bound=event.lower_bound,
            )


async def watch_readiness(
    pipeline: Pipeline, settings: LogShipperSettings, runtime: Runtime
) -> None:
    """/readyz fails while some output has owed records for --ready-timeout, no success."""
    while True:
        stalled = pipeline.stalled(settings.ready_timeout)
        dead = next((t.get_name() for t in pipeline.tasks if t.done()), None)
        if dead and not runtime.draining:
            runtime.set_ready(False, f"{dead} stopped")
        elif stalled:
            runtime.set_ready(
                False, f"output {stalled} has not delivered for {settings.ready_timeout:g}s"
            )
        else:
            runtime.set_ready(True)
        await asyncio.sleep(min(READY_CHECK_INTERVAL, max(settings.ready_timeout / 4, 0.05)))


async def run(settings: LogShipperSettings, runtime: Runtime) -> None:
    metrics = ShipperMetrics(runtime.registry)
    parser = settings.loaded_parser
    encoder = RecordEncoder(
        k8s_metadata(
            {
                "pod": settings.pod_name,
                "namespace": settings.pod_namespace,
                "node": settings.node_name,
            }
        ),
        parser,
    )
    follower = Follower(
        FollowConfig.from_settings(settings, multiline=settings.multiline_config()),
        runtime=runtime,
    )
    pipeline = Pipeline(
        build_outputs(settings, runtime),
        follower.ack,
        metrics,
        runtime.log,
        input_blocked=lambda: follower.waiting_for_acks,
    )
    for runner in pipeline.runners:
        try:
            await runner.prepare()
        except OutputError as exc:
            raise StartupError("output_unusable", output=runner.name, error=exc.detail) from None
        except TimeoutError:
            raise StartupError(
                "output_unusable", output=runner.name, error="start-up check timed out"
            ) from None
    pipeline.start()
    if runtime.admin is not None:  # key figures for `podkit ctl status` (/status)
        runtime.admin.add_status(
            lambda: {
                "lag_bytes": sum(s.lag_bytes for s in follower.stats.values()),
                "lost_bytes": follower.ledger.lost_total(),
                "unacked_bytes": follower.unacked_bytes,
                "queued_records": sum(r.queued_records for r in pipeline.runners),
            }
        )
    runtime.log.info(
        "outputs", outputs=[runner.name for runner in pipeline.runners], paths=settings.path
    )

    async def drain() -> None:
        runtime.log.info("draining", queued=sum(r.queued_records for r in pipeline.runners))
        await follower.drain()

    tasks: list[asyncio.Task[None]] = []
    try:
        async with follower, runtime.on_drain(drain):
            tasks.append(asyncio.create_task(watch_readiness(pipeline, settings, runtime)))
            async for batch in follower:
                if batch.events:
                    count_events(batch, metrics, runtime)
                chunk = encoder.encode(batch)
                metrics.lines_read.inc(len(chunk))
                if chunk.invalid_utf8:
                    metrics.invalid_utf8.inc(chunk.invalid_utf8)
                if chunk.parse_errors:
                    metrics.parse_errors.inc(chunk.parse_errors)
                await pipeline.submit(batch, chunk)
            # The follower read everything (drain): deliver it all, so every ack lands
            # before the follower writes its last checkpoint on the way out.
            await pipeline.close()
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for task in pipeline.tasks:
            task.cancel()
