"""From chunks to acknowledgements: per-output batching, buffer, retries, and the fan-out.

Every output gets its own `OutputRunner` (queue, batches by size and time, retries with
exponential backoff and jitter). A follower batch is acknowledged only once every
output has settled every one of its records, delivered or given up for good (counted):
the follower's checkpoint never passes a line some output still owes.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import random
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from podkit.backoff import Backoff
from podkit.follow.api import Batch
from podkit.logs import EventLogger
from podkit.sidecars.log_shipper.metrics import ShipperMetrics
from podkit.sidecars.log_shipper.outputs.base import Output, OutputError, SendResult
from podkit.sidecars.log_shipper.records import Chunk, OutBatch, Slice

DETAIL_LIMIT = 500
PIPELINE_FAILURES = ("connect", "timeout", "error")
"""Failure reasons the pipeline itself gives any output's send (besides its own)."""
_FROZEN = False


class Delivery:
    """One follower batch on its way to every output; acked when nothing is owed."""

    __slots__ = ("batch", "lines", "on_done", "pending")

    def __init__(self, batch: Any, lines: int, outputs: int, on_done: Callable[[Any], None]):
        self.batch = batch
        self.lines = lines
        self.pending = lines * outputs
        self.on_done = on_done

    def settle(self, records: int) -> None:
        self.pending -= records
        if self.pending == 0:
            self.on_done(self)


def _fit(chunk: Chunk, start: int, stop: int, room: int) -> int:
    """The largest end in [start, stop] whose lines [start, end) take at most `room` bytes."""
    low, high = start, stop
    while low < high:
        middle = (low + high + 1) // 2
        if chunk.bytes_between(start, middle) <= room:
            low = middle
        else:
            high = middle - 1
    return low


class OutputRunner:
    def __init__(
        self,
        output: Output,
        metrics: ShipperMetrics,
        log: EventLogger,
        input_blocked: Callable[[], bool] | None = None,
    ) -> None:
        self.output = output
        self.input_blocked = input_blocked
        self.options = output.options
        self.name = output.name
        self.log = log
        self.metrics = metrics
        self.queue: deque[Slice] = deque()
        self.queued_records = 0
        self.queued_bytes = 0
        self.inflight: OutBatch | None = None
        self.last_success: float | None = None
        self.busy_since: float | None = None
        self.opened = False
        self.ever_opened = False
        self._closing = False
        self._changed = asyncio.Event()
        self._space = asyncio.Event()
        self._rng = random.Random()
        self._m_sent = metrics.records_sent.labels(self.name)
        self._m_bytes = metrics.bytes_sent.labels(self.name)
        self._m_latency = metrics.latency.labels(self.name)
        self._m_buf_records = metrics.buffered_records.labels(self.name)
        self._m_buf_bytes = metrics.buffered_bytes.labels(self.name)
        self._m_retry = metrics.retry_queue.labels(self.name)
        metrics.oldest_age.labels(self.name).set_function(self.oldest_age)
        self._m_duplicate = metrics.records_duplicate.labels(self.name)
        self._m_last_success = metrics.last_success.labels(self.name)
        # Known reasons at 0 from the start: an alert on increase() then sees the first.
        for reason in (*PIPELINE_FAILURES, *output.failure_reasons):
            metrics.batches_failed.labels(self.name, reason)
        metrics.records_dropped.labels(self.name, "retries_exhausted")

    # --- the producer side ----------------------------------------------------------------

    async def put(self, chunk: Chunk) -> None:
        """Queue a chunk; waits while the buffer is full (which pauses the follower)."""
        while self.queue and self.queued_bytes + chunk.byte_count > self.options.buffer_max_bytes:
            self._space.clear()
            await self._space.wait()
        if self.busy_since is None:
            self.busy_since = time.monotonic()
        self.queue.append(Slice(chunk, 0, len(chunk)))
        self.queued_records += len(chunk)
        self.queued_bytes += chunk.byte_count
        self._m_buf_records.set(self.queued_records)
        self._m_buf_bytes.set(self.queued_bytes)
        self._changed.set()

    def close(self) -> None:
        """No more chunks: send what is queued without waiting for full batches, then stop."""
        self._closing = True
        self._changed.set()

    # --- state for readiness and metrics ------------------------------------------------

    def oldest_age(self) -> float:
        oldest = None
        if self.inflight is not None and self.inflight.slices:
            oldest = self.inflight.slices[0].chunk.created
        elif self.queue:
            oldest = self.queue[0].chunk.created
        return 0.0 if oldest is None else max(0.0, time.monotonic() - oldest)

    def stalled_for(self) -> float:
        """How long this output has owed records without delivering any (0 when it is fine)."""
        if self.busy_since is None:
            return 0.0
        since = max(self.busy_since, self.last_success or 0.0)
        return max(0.0, time.monotonic() - since)

    # --- the sending side ---------------------------------------------------------------

    async def prepare(self) -> None:
        """The output's start-up check (OutputError: it cannot work, do not start)."""
        self.ever_opened = True  # whatever prepare() opened is closed when the runner ends
        await asyncio.wait_for(self.output.prepare(), self.options.request_timeout)

    async def run(self) -> None:
        try:
            while (batch := await self._next_batch()) is not None:
                self.inflight = batch
                await self._deliver(batch)
                self.inflight = None
                if not self.queue:
                    self.busy_since = None
        finally:
            if self.ever_opened:
                self.opened = self.ever_opened = False
                try:
                    await self.output.close()
                except Exception as exc:
                    self.log.warning("output_close_failed", output=self.name, error=str(exc))

    async def _next_batch(self) -> OutBatch | None:
        opts = self.options
        while True:
            if self.queue:
                full = (
                    self.queued_records >= opts.batch_max_records
                    or self.queued_bytes >= opts.batch_max_bytes
                )
                age = time.monotonic() - self.queue[0].chunk.created
                # When the input waits for acknowledgements, no more lines can come to
                # fill the batch: waiting for batch_timeout would only stall the pipe.
                blocked = self.input_blocked is not None and self.input_blocked()
                if full or self._closing or age >= opts.batch_timeout or blocked:
                    return self._take()
                wait: float | None = opts.batch_timeout - age
            elif self._closing:
                return None
            else:
                wait = None
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), wait)

    def _take(self) -> OutBatch:
        """Up to batch_max_records / batch_max_bytes from the head of the queue."""
        opts = self.options
        slices: list[Slice] = []
        records = 0
        size = 0
        while self.queue and records < opts.batch_max_records and size < opts.batch_max_bytes:
            head = self.queue[0]
            chunk = head.chunk
            stop = min(head.stop, head.start + opts.batch_max_records - records)
            room = opts.batch_max_bytes - size
            whole = stop == head.stop and chunk.bytes_between(head.start, stop) <= room
            if records and not whole:
                break  # send what we have; cut a chunk only when it alone is too big
            if chunk.bytes_between(head.start, stop) > room:
                # Cut by bytes: the most lines that fit, but always one when nothing did.
                fit = _fit(chunk, head.start, stop, room)
                stop = max(fit, head.start + (1 if records == 0 else 0))
            if stop == head.start:  # the batch is full
                break
            slices.append(Slice(chunk, head.start, stop))
            records += stop - head.start
            size += chunk.bytes_between(head.start, stop)
            if stop == head.stop:
                self.queue.popleft()
            else:
                self.queue[0] = Slice(chunk, stop, head.stop)
        batch = OutBatch(slices)
        self.queued_records -= records
        self.queued_bytes -= batch.byte_count
        self._m_buf_records.set(self.queued_records)
        self._m_buf_bytes.set(self.queued_bytes)
        self._space.set()
        return batch

    async def _deliver(self, batch: OutBatch) -> None:
        opts = self.options
        backoff = Backoff(opts.retry_initial, opts.retry_max, rng=self._rng)
        pending: OutBatch | None = batch
        while pending is not None:
            try:
                if not self.opened:
                    # open() is idempotent: after a failure it reconnects what broke.
                    self.ever_opened = True
                    await asyncio.wait_for(self.output.open(), opts.request_timeout)
                    self.opened = True
                result = await asyncio.wait_for(self.output.send(pending), opts.request_timeout)
            except OutputError as exc:
                error = exc
            except TimeoutError:
                error = OutputError(
                    "timeout", f"no answer in {opts.request_timeout}s", retryable=True
                )
            except (OSError, ConnectionError) as exc:
                error = OutputError("connect", str(exc), retryable=True)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # an output's bug must not lose records: retry, and log
                self.log.exception("output_error", output=self.name)
                error = OutputError("error", f"{type(exc).__name__}: {exc}", retryable=True)
            else:
                pending = self._apply(pending, result)
                if pending is None:
                    self._m_retry.set(0)
                    return
                await asyncio.sleep(backoff.next())
                continue

            self.opened = False
            self.metrics.batches_failed.labels(self.name, error.reason).inc()
            if not error.retryable:
                self.log.error(
                    "batch_rejected",
                    output=self.name,
                    reason=error.reason,
                    records=len(pending),
                    detail=error.detail[:DETAIL_LIMIT],
                )
                self._drop(pending, error.reason)
                self._m_retry.set(0)
                return
            delay = backoff.next()
            attempt = backoff.attempt
            if opts.retry_max_attempts and attempt >= opts.retry_max_attempts:
                self.log.error(
                    "batch_given_up",
                    output=self.name,
                    reason=error.reason,
                    attempts=attempt,
                    records=len(pending),
                    detail=error.detail[:DETAIL_LIMIT],
                )
                self._drop(pending, "retries_exhausted")
                self._m_retry.set(0)
                return
            if error.retry_after is not None:
                delay = min(max(delay, error.retry_after), max(opts.retry_max, delay))
            self._m_retry.set(len(pending))
            log = self.log.warning if attempt in (1, 10) or attempt % 100 == 0 else self.log.debug
            log(
                "send_failed",
                output=self.name,
                reason=error.reason,
                attempt=attempt,
                retry_in=round(delay, 3),
                records=len(pending),
                detail=error.detail[:DETAIL_LIMIT],
            )
            await asyncio.sleep(delay)

    def _apply(self, batch: OutBatch, result: SendResult | None) -> OutBatch | None:
        """Settle what a send delivered or rejected; return what to retry, if anything."""
        if result is None:
            self._delivered(batch)
            return None
        if result.duplicates:
            self._m_duplicate.inc(result.duplicates)
        if not result.retry and not result.rejected:
            self._delivered(batch)
            return None
        failed = set(result.retry) | set(result.rejected)
        done = [p for p in range(len(batch)) if p not in failed]
        if done:
            self._delivered(batch.subset(done))
        if result.rejected:
            self.log.error(
                "records_rejected",
                output=self.name,
                reason=result.rejected_reason,
                records=len(result.rejected),
                detail=result.detail[:DETAIL_LIMIT],
            )
            self._drop(batch.subset(result.rejected), result.rejected_reason or "rejected")
        if result.retry:
            self.metrics.batches_failed.labels(self.name, result.reason or "partial").inc()
            self._m_retry.set(len(result.retry))
            return batch.subset(sorted(result.retry))
        return None

    def _delivered(self, batch: OutBatch) -> None:
        now = time.monotonic()
        self.last_success = now
        self._m_last_success.set(time.time())
        self._m_sent.inc(len(batch))
        self._m_bytes.inc(batch.byte_count)
        for part in batch.slices:
            self._m_latency.observe(now - part.chunk.created)
        self._settle(batch)

    def _drop(self, batch: OutBatch, reason: str) -> None:
        self.metrics.records_dropped.labels(self.name, reason).inc(len(batch))
        self._settle(batch)

    @staticmethod
    def _settle(batch: OutBatch) -> None:
        for part in batch.slices:
            if part.chunk.delivery is not None:
                part.chunk.delivery.settle(len(part))


class Pipeline:
    """The fan-out: every chunk to every output; `ack(batch)` once all settled it."""

    def __init__(
        self,
        outputs: list[Output],
        ack: Callable[[Batch], None],
        metrics: ShipperMetrics,
        log: EventLogger,
        input_blocked: Callable[[], bool] | None = None,
    ) -> None:
        self.runners = [OutputRunner(output, metrics, log, input_blocked) for output in outputs]
        self._ack = ack
        self.metrics = metrics
        self.log = log
        self.tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        global _FROZEN
        if not _FROZEN:
            # Start-up's objects (settings, plugins, metrics) live as long as the process:
            # frozen out of the cyclic collector, whose full passes would walk them again
            # and again while lines stream through. Once per process.
            _FROZEN = True
            gc.collect()
            gc.freeze()
        self.tasks = [
            asyncio.create_task(runner.run(), name=f"output-{runner.name}")
            for runner in self.runners
        ]

    def _done(self, delivery: Delivery) -> None:
        self.metrics.lines_acked.inc(delivery.lines)
        self._ack(delivery.batch)

    def check(self) -> None:
        """Raise if an output task died: a crashed sender must not look like a slow one."""
        for task in self.tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    async def submit(self, batch: Batch, chunk: Chunk) -> None:
        self.check()
        if not len(chunk):
            self._ack(batch)
            return
        # Keep only what the ack needs (the follower acks by seq): the lines themselves
        # live on in the chunk, encoded, and need not be held twice.
        light = Batch(batch.path, batch.file_id, [], [], batch.end_offset, batch.seq)
        chunk.delivery = Delivery(light, len(chunk), len(self.runners), self._done)
        for runner in self.runners:
            await runner.put(chunk)

    async def close(self) -> None:
        """Deliver everything queued (retrying as configured), then stop the outputs."""
        for runner in self.runners:
            runner.close()
        if self.tasks:
            await asyncio.gather(*self.tasks)

    def stalled(self, timeout: float) -> str | None:
        """The name of an output owing records for longer than `timeout`, if any."""
        for runner in self.runners:
            if runner.stalled_for() > timeout:
                return str(runner.name)
        return None
