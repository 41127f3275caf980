"""`podkit log-adapter`: follow the legacy log files, write one JSON record per line.

Each batch the follower yields is parsed, written, and only then acknowledged, so the
checkpoint never passes a line that was not written: a restart re-reads what was in flight
rather than losing it (at-least-once, like the classic pod but without its losses).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
from typing import TYPE_CHECKING

from podkit.runtime import Runtime, StartupError

from .build import make_builder, multiline_config
from .metrics import AdapterCollector
from .record import RecordBuilder
from .settings import LogAdapterSettings
from .writer import RecordWriter

if TYPE_CHECKING:
    from podkit.follow import Batch


async def run(settings: LogAdapterSettings, runtime: Runtime) -> None:
    from podkit.follow import FollowConfig, Follower

    builder = make_builder(settings)
    lag: dict[str, int] = {}
    failure_kinds: set[str] = set()
    auto = getattr(builder.parser, "state", None)  # `--parser auto`: what it chose, per file
    if auto is not None:
        auto.on_choice = lambda report: runtime.log.info("parser_chosen", **report)
    runtime.registry.register(AdapterCollector(builder.stats, builder.name, lag, auto))
    # Stateful parsers (CRI partial lines) keep one builder per file.
    builders: dict[str, RecordBuilder] = {}
    stateful = bool(getattr(builder.parser, "stateful", False))
    config = FollowConfig.from_settings(settings, multiline=multiline_config(settings))
    try:
        writer = RecordWriter(settings.output, settings.output_path)
    except OSError as exc:
        raise StartupError(
            "output_unwritable", path=settings.output_path, error=exc.strerror or str(exc)
        ) from None
    if writer.repaired_bytes:
        runtime.log.warning(
            "torn_record_removed", path=settings.output_path, bytes=writer.repaired_bytes
        )
    runtime.log.info(
        "following",
        path=list(settings.path),
        parser=builder.name,
        output=settings.output_path if settings.output == "file" else "stdout",
        multiline=settings.multiline,
    )
    follower = Follower(config, runtime=runtime)  # its readiness shows checkpoint trouble

    def write_failed(error: OSError) -> None:
        # Not ready: the output cannot take records; the batch waits, unacknowledged.
        runtime.log.warning("output_write_failed", output=settings.output, error=str(error))
        runtime.set_ready(False, f"output write failed: {error.strerror or error}")

    def write_recovered() -> None:
        runtime.log.info("output_write_recovered", output=settings.output)
        runtime.set_ready(True)

    if runtime.admin is not None:  # key figures for `podkit ctl status` (/status)
        stats = builder.stats  # shared by every per-file fork
        runtime.admin.add_status(
            lambda: {
                "lines_read": stats.lines_in,
                "records_written": stats.written,
                "parse_failures": stats.failed,
                "read_bytes": stats.bytes_in,
                "files_followed": follower.files_open,
                "lost_bytes": follower.ledger.lost_total(),
            }
        )

    # The batch being written (in a worker thread) while the next one is read and parsed:
    # writes stay in order, one at a time, and a batch is acknowledged as soon as written.
    in_flight: asyncio.Task[None] | None = None

    async def write(records: bytes | bytearray, count: int, batch: Batch) -> None:
        await writer.write(records, write_failed, write_recovered)
        builder.stats.written += count
        follower.ack(batch)

    async def settle() -> None:
        nonlocal in_flight
        if in_flight is not None:
            await in_flight
            in_flight = None

    # Start-up's objects live as long as the process: out of the collector's way, so its
    # full passes do not walk them again every few batches (about a fifth of the CPU).
    gc.collect()
    gc.freeze()
    try:
        # SIGTERM: the follower reads every file to its end, then the iteration below ends.
        async with follower, runtime.on_drain(follower.drain):
            runtime.set_ready(True)
            async for batch in follower:
                for event in batch.events:
                    if event.lost_bytes:
                        runtime.log.warning(
                            "lines_lost", path=event.path, lost_bytes=event.lost_bytes,
                            reason=event.reason,
                        )  # fmt: skip
                if stateful:
                    key = batch.file_id.key()
                    file_builder = builders.get(key)
                    if file_builder is None:
                        file_builder = builders[key] = builder.fork()
                        if hasattr(file_builder.parser, "source"):
                            file_builder.parser.source = batch.path
                else:
                    file_builder = builder
                built = builder.stats.records_out  # the stats every fork shares
                records = file_builder.encode(batch.lines)
                count = builder.stats.records_out - built
                await settle()  # the previous batch is written and acknowledged first
                in_flight = asyncio.create_task(write(records, count, batch))
                if len(builder.stats.failures) > len(failure_kinds):
                    new_kinds = set(builder.stats.failures) - failure_kinds
                    failure_kinds.update(new_kinds)
                    # Once per kind, so a format change is noticed without a log per line.
                    runtime.log.warning(
                        "parse_failures", parser=builder.name, kinds=sorted(new_kinds),
                        path=batch.path, metric="log_adapter_parse_failures_total",
                    )  # fmt: skip
                behind = 0
                with contextlib.suppress(OSError):
                    behind = os.stat(batch.path).st_size - batch.end_offset
                if behind > 0:
                    lag[batch.path] = behind
                else:  # caught up (or rotated away): no entry, so the dict stays small
                    lag.pop(batch.path, None)
            await settle()  # acknowledged before the follower saves its last checkpoint
        # The files are read to their end: what a stateful parser still holds goes out too.
        for held in {id(b): b for b in [builder, *builders.values()]}.values():
            records = held.flush()
            await writer.write(records, write_failed, write_recovered)
            builder.stats.written += records.count(b"\n")
    finally:
        if in_flight is not None and not in_flight.done():
            # Stopped mid-write (cancelled): stop its retries too, unacknowledged, as an
            # inline write would have been.
            in_flight.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.wait({in_flight})
        writer.close()
