"""`podkit log-adapter`: follow the legacy log files, write one JSON record per line.

Each batch the follower yields is parsed (here, or in worker processes: workers.py),
written in the order read, and only then acknowledged, so the checkpoint never passes a
line that was not written: a restart re-reads what was in flight rather than losing it
(at-least-once, like the classic pod but without its losses).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
from typing import TYPE_CHECKING

from podkit.runtime import Runtime, StartupError

from .build import make_builder, multiline_config
from .encoders import Encoded, Encoders, apply_delta, holds_lines
from .metrics import AdapterCollector
from .settings import LogAdapterSettings
from .workers import WorkerPool, worker_count
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
    collector = AdapterCollector(builder.stats, builder.name, lag, auto)
    runtime.registry.register(collector)
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

    count = worker_count(settings.workers)
    encoders = Encoders(builder)
    if count and holds_lines(builder):
        runtime.log.info(
            "workers_off", parser=builder.name, workers=settings.workers,
            reason="the parser holds lines between batches: a worker's end would lose them",
        )  # fmt: skip
        count = 0
    pool = WorkerPool(settings, count, encoders, runtime.log, encoders.stateful) if count else None
    collector.pool = pool

    if runtime.admin is not None:  # key figures for `podkit ctl status` (/status)
        stats = builder.stats  # shared by every per-file fork

        def figures() -> dict[str, object]:
            shown: dict[str, object] = {
                "lines_read": stats.lines_in,
                "records_written": stats.written,
                "parse_failures": stats.failed,
                "read_bytes": stats.bytes_in,
                "files_followed": follower.files_open,
                "lost_bytes": follower.ledger.lost_total(),
                "workers": len(pool.workers) if pool is not None else 0,
            }
            if pool is not None:
                shown["worker_restarts"] = pool.restarts
            return shown

        runtime.admin.add_status(figures)

    # Batches are encoded (here, or in the workers) while earlier ones are written, in the
    # order read; each is acknowledged once written. `room` bounds the batches in flight:
    # with workers, two each (one being encoded, one waiting in its pipe), one encoded
    # here while they are busy (the follower and the writes leave this process most of a
    # core) and one being written.
    room = asyncio.Semaphore(2 * count + 2 if pool is not None else 1)
    ordered: asyncio.Queue[tuple[Batch, asyncio.Future[Encoded]] | None] = asyncio.Queue()

    def note_failures(path: str) -> None:
        if len(builder.stats.failures) > len(failure_kinds):
            new_kinds = set(builder.stats.failures) - failure_kinds
            failure_kinds.update(new_kinds)
            # Once per kind, so a format change is noticed without a log per line.
            runtime.log.warning(
                "parse_failures", parser=builder.name, kinds=sorted(new_kinds),
                path=path, metric="log_adapter_parse_failures_total",
            )  # fmt: skip

    async def write(encoded: Encoded) -> None:
        apply_delta(builder.stats, encoded, auto)
        await writer.write(encoded.records, write_failed, write_recovered)
        builder.stats.written += encoded.count

    async def write_in_order() -> None:
        while (item := await ordered.get()) is not None:
            batch, job = item
            encoded = await job
            # Encoded: the lines are not needed any more (the ack needs only the batch's
            # sequence number), and a 1 GB file keeps the peak lower without them.
            batch.lines, batch.offsets = [], []
            await write(encoded)
            del encoded
            follower.ack(batch)
            note_failures(batch.path)
            room.release()

    async def make_room(writing: asyncio.Task[None]) -> None:
        if room.locked():  # wait for a write, or for the writing to fail
            acquire = asyncio.ensure_future(room.acquire())
            await asyncio.wait({acquire, writing}, return_when=asyncio.FIRST_COMPLETED)
            if not acquire.done():
                acquire.cancel()
                writing.result()  # raises what stopped it
        else:
            await room.acquire()

    loop = asyncio.get_running_loop()
    # Start-up's objects live as long as the process: out of the collector's way, so its
    # full passes do not walk them again every few batches (about a fifth of the CPU).
    gc.collect()
    gc.freeze()
    writing: asyncio.Task[None] | None = None
    try:
        # SIGTERM: the follower reads every file to its end, then the iteration below ends.
        async with follower, runtime.on_drain(follower.drain):
            if pool is not None:
                pool.start()  # forked now: after the freeze, with everything loaded
                runtime.log.info("workers_started", workers=count, pids=pool.pids())
            writing = asyncio.create_task(write_in_order(), name="write-in-order")
            runtime.set_ready(True)
            async for batch in follower:
                for event in batch.events:
                    if event.lost_bytes:
                        runtime.log.warning(
                            "lines_lost", path=event.path, lost_bytes=event.lost_bytes,
                            reason=event.reason,
                        )  # fmt: skip
                if pool is not None and not pool.busy():
                    await make_room(writing)
                    job = pool.submit(batch)
                else:
                    records, built = encoders.encode(batch.file_id.key(), batch.path, batch.lines)
                    batch.lines, batch.offsets = [], []  # see write_in_order
                    job = loop.create_future()
                    job.set_result(Encoded(records, built))
                    await make_room(writing)  # the previous batch is written first
                ordered.put_nowait((batch, job))
                behind = 0
                with contextlib.suppress(OSError):
                    behind = os.stat(batch.path).st_size - batch.end_offset
                if behind > 0:
                    lag[batch.path] = behind
                else:  # caught up (or rotated away): no entry, so the dict stays small
                    lag.pop(batch.path, None)
            ordered.put_nowait(None)
            await writing  # acknowledged before the follower saves its last checkpoint
        # The files are read to their end: what a stateful parser still holds goes out too.
        if pool is not None:
            for held in pool.flush():
                await write(await held)
            await pool.close()
        else:
            records, built = encoders.flush()
            await write(Encoded(records, built))
    finally:
        if writing is not None and not writing.done():
            # Stopped mid-write (cancelled): stop its retries too, unacknowledged, as an
            # inline write would have been.
            writing.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.wait({writing})
        if pool is not None and not pool.closing:
            pool.kill_now()
        writer.close()
