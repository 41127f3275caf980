"""`podkit log-adapter`: follow the legacy log files, write one JSON record per line.

Each batch the follower yields is parsed, written, and only then acknowledged, so the
checkpoint never passes a line that was not written: a restart re-reads what was in flight
rather than losing it (at-least-once, like the classic pod but without its losses).
"""

from __future__ import annotations

import contextlib
import os

from podkit.runtime import Runtime, StartupError

from .build import make_builder, multiline_config
from .metrics import AdapterCollector
from .output import RecordWriter
from .record import RecordBuilder
from .settings import LogAdapterSettings


async def run(settings: LogAdapterSettings, runtime: Runtime) -> None:
    from podkit.follow import FollowConfig, Follower

    builder = make_builder(settings)
    lag: dict[str, int] = {}
    failure_kinds: set[str] = set()
    runtime.registry.register(AdapterCollector(builder.stats, builder.name, lag))
    # Stateful parsers (CRI partial lines) keep one builder per file.
    builders: dict[str, RecordBuilder] = {}
    stateful = bool(getattr(builder.parser, "stateful", False))
    config = FollowConfig.from_settings(settings, multiline=multiline_config(settings))
    try:
        output = RecordWriter(settings.output, settings.output_path)
    except OSError as exc:
        raise StartupError(
            "output_unwritable", path=settings.output_path, error=exc.strerror or str(exc)
        ) from None
    if output.repaired_bytes:
        runtime.log.warning(
            "torn_record_removed", path=settings.output_path, bytes=output.repaired_bytes
        )
    runtime.log.info(
        "following",
        path=list(settings.path),
        parser=builder.name,
        output=settings.output_path if settings.output == "file" else "stdout",
        multiline=settings.multiline,
    )
    follower = Follower(config, registry=runtime.registry, log=runtime.log)

    def write_failed(error: OSError) -> None:
        # Not ready: the output cannot take records; the batch waits, unacknowledged.
        runtime.log.warning("output_write_failed", output=settings.output, error=str(error))
        runtime.set_ready(False, f"output write failed: {error.strerror or error}")

    def write_recovered() -> None:
        runtime.log.info("output_write_recovered", output=settings.output)
        runtime.set_ready(True)

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
                    file_builder = builders.get(key) or builders.setdefault(key, builder.fork())
                else:
                    file_builder = builder
                records = file_builder.encode(batch.lines)
                await output.write(records, write_failed, write_recovered)
                builder.stats.written += records.count(b"\n")
                follower.ack(batch)
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
        # The files are read to their end: what a stateful parser still holds goes out too.
        for held in {id(b): b for b in [builder, *builders.values()]}.values():
            records = held.flush()
            await output.write(records, write_failed, write_recovered)
            builder.stats.written += records.count(b"\n")
    finally:
        output.close()
