"""`podkit log-adapter`: follow the legacy log files, write one JSON record per line.

Each batch the follower yields is parsed, written, and only then acknowledged, so the
checkpoint never passes a line that was not written: a restart re-reads what was in flight
rather than losing it (at-least-once, like the classic pod but without its losses).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import TYPE_CHECKING

from .build import make_builder
from .check import run_check
from .metrics import AdapterCollector
from .output import Output
from .record import RecordBuilder
from .settings import LogAdapterSettings

if TYPE_CHECKING:
    from podkit.follow import MultilineConfig
    from podkit.runtime import Runtime


def multiline_config(settings: LogAdapterSettings) -> MultilineConfig | None:
    if settings.multiline == "off":
        return None
    from podkit.follow import MultilineConfig

    return MultilineConfig(mode=settings.multiline, start_pattern=settings.multiline_start)


async def run(settings: LogAdapterSettings, runtime: Runtime) -> None:
    if settings.check:
        raise SystemExit(run_check(settings))
    from podkit.follow import FollowConfig, Follower

    builder = make_builder(settings)
    lag: dict[str, int] = {}
    runtime.registry.register(AdapterCollector(builder.stats, builder.name, lag))
    # Stateful parsers (CRI partial lines) keep one builder per file.
    builders: dict[str, RecordBuilder] = {}
    stateful = bool(getattr(builder.parser, "stateful", False))
    config = FollowConfig.from_settings(settings, multiline=multiline_config(settings))
    try:
        output = Output(settings.output, settings.output_path)
    except OSError as exc:
        runtime.log.error("output_unwritable", path=settings.output_path, error=exc.strerror)
        raise SystemExit(2) from None
    runtime.log.info(
        "following",
        path=list(settings.path),
        parser=builder.name,
        output=settings.output_path if settings.output == "file" else "stdout",
        multiline=settings.multiline,
    )
    follower = Follower(config, registry=runtime.registry, log=runtime.log)

    async def drain_on_request() -> None:
        # SIGTERM: the follower reads every file to its end, then the iteration below ends.
        await runtime.wait_drain()
        await follower.drain()

    drainer: asyncio.Task[None] | None = None
    try:
        async with follower:
            runtime.set_ready(True)
            drainer = asyncio.create_task(drain_on_request(), name="log-adapter-drain")
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
                await output.write(file_builder.encode(batch.lines))
                follower.ack(batch)
                with contextlib.suppress(OSError):
                    lag[batch.path] = max(0, os.stat(batch.path).st_size - batch.end_offset)
            if drainer.done() and drainer.exception() is not None:
                raise drainer.exception()  # type: ignore[misc]
        # The files are read to their end: what a stateful parser still holds goes out too.
        for held in {id(b): b for b in [builder, *builders.values()]}.values():
            await output.write(held.flush())
    finally:
        if drainer is not None and not drainer.done():
            drainer.cancel()
        output.close()
