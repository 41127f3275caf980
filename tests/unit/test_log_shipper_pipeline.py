"""The shipper's pipeline: batching, bounded buffer, retries, fan-out acknowledgements.

The outputs here are small in-memory plugins that script failures; the real backends
are exercised in tests/integration/log_shipper/test_outputs_*.py.
"""

from __future__ import annotations

import asyncio

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from podkit.follow.api import Batch, FileId
from podkit.logs import get_logger
from podkit.sidecars.log_shipper.metrics import ShipperMetrics
from podkit.sidecars.log_shipper.outputs.base import Output, OutputError, OutputOptions, SendResult
from podkit.sidecars.log_shipper.pipeline import Pipeline
from podkit.sidecars.log_shipper.records import OutBatch, RecordEncoder, Slice, decode_lines
from podkit_dev.servers import until

LOG = get_logger("test")


def make_batch(seq: int, count: int, start: int = 0, path: str = "/var/log/app.log") -> Batch:
    lines = [f"line {start + i}".encode() for i in range(count)]
    offsets = []
    offset = 0
    for line in lines:
        offsets.append(offset)
        offset += len(line) + 1
    return Batch(path, FileId(1, 2, "fp"), lines, offsets, offset, seq)


class MemoryOutput(Output):
    """Keeps what it was sent; `script` gives, per call, an exception or a SendResult."""

    def __init__(self, options: OutputOptions, script: list | None = None) -> None:
        super().__init__(options, log=LOG)
        self.script = list(script or [])
        self.sent: list[list[str]] = []
        self.calls = 0
        self.gate: asyncio.Event | None = None

    async def send(self, batch: OutBatch) -> SendResult | None:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        action = self.script.pop(0) if self.script else None
        if isinstance(action, Exception):
            raise action
        messages = [chunk.messages[i] for chunk, i in batch]
        if isinstance(action, SendResult):
            failed = set(action.retry) | set(action.rejected)
            self.sent.append([m for p, m in enumerate(messages) if p not in failed])
        else:
            self.sent.append(messages)
        return action

    def delivered(self) -> list[str]:
        return [m for batch in self.sent for m in batch]


def options(**kwargs: object) -> OutputOptions:
    base = {"type": "memory", "batch_timeout": 0.01, "retry_initial": 0.001, "retry_max": 0.01}
    return OutputOptions(**{**base, **kwargs})


async def ship(outputs: list[Output], batches: list[Batch]) -> tuple[list[int], ShipperMetrics]:
    acked: list[int] = []
    metrics = ShipperMetrics(CollectorRegistry())
    pipeline = Pipeline(outputs, lambda b: acked.append(b.seq), metrics, LOG)
    pipeline.start()
    encoder = RecordEncoder({"pod": "web-1"})
    for batch in batches:
        await pipeline.submit(batch, encoder.encode(batch))
    await asyncio.wait_for(pipeline.close(), 30)
    return acked, metrics


def value(metrics: ShipperMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def test_batches_by_count_and_everything_is_acked() -> None:
    out = MemoryOutput(options(batch_max_records=250, batch_timeout=10))
    batches = [make_batch(seq, 100, seq * 100) for seq in range(10)]
    acked, metrics = await ship([out], batches)
    assert out.delivered() == [f"line {i}" for i in range(1000)]
    assert all(len(sent) <= 250 for sent in out.sent)
    assert sorted(acked) == list(range(10))
    assert value(metrics, "log_shipper_records_sent_total", output="memory") == 1000


async def test_batches_by_bytes() -> None:
    out = MemoryOutput(options(batch_max_bytes=64, batch_timeout=10))
    acked, _ = await ship([out], [make_batch(0, 50)])
    assert out.delivered() == [f"line {i}" for i in range(50)]
    assert max(len(b) for b in out.sent) <= 64 // len(b"line 0\n") + 1
    assert acked == [0]


async def test_partial_batch_goes_after_batch_timeout() -> None:
    out = MemoryOutput(options(batch_max_records=1000, batch_timeout=0.05))
    acked: list[int] = []
    metrics = ShipperMetrics(CollectorRegistry())
    pipeline = Pipeline([out], lambda b: acked.append(b.seq), metrics, LOG)
    pipeline.start()
    batch = make_batch(0, 3)
    await pipeline.submit(batch, RecordEncoder({}).encode(batch))
    await until(lambda: acked, what="the timeout to send the partial batch")  # not closed
    assert acked == [0] and out.delivered() == ["line 0", "line 1", "line 2"]
    await pipeline.close()


async def test_retries_until_success_and_counts_failures() -> None:
    errors = [OutputError("http_503", retryable=True) for _ in range(5)]
    out = MemoryOutput(options(), script=errors)
    acked, metrics = await ship([out], [make_batch(0, 10)])
    assert out.delivered() == [f"line {i}" for i in range(10)]
    assert acked == [0]
    assert (
        value(metrics, "log_shipper_batches_failed_total", output="memory", reason="http_503") == 5
    )


async def test_permanent_error_drops_counts_and_acks() -> None:
    out = MemoryOutput(options(), script=[OutputError("http_400", "bad", retryable=False)])
    acked, metrics = await ship([out], [make_batch(0, 10)])
    assert out.delivered() == []
    assert acked == [0]
    assert (
        value(metrics, "log_shipper_records_dropped_total", output="memory", reason="http_400")
        == 10
    )


async def test_retry_max_attempts_gives_up() -> None:
    errors = [OutputError("timeout", retryable=True) for _ in range(10)]
    out = MemoryOutput(options(retry_max_attempts=3), script=errors)
    acked, metrics = await ship([out], [make_batch(0, 4)])
    assert out.calls == 3 and acked == [0]
    dropped = value(
        metrics, "log_shipper_records_dropped_total", output="memory", reason="retries_exhausted"
    )
    assert dropped == 4


async def test_partial_result_retries_only_the_failed_records() -> None:
    out = MemoryOutput(
        options(batch_max_records=10),
        script=[
            SendResult(retry=[1, 3], rejected=[5], reason="item_429", rejected_reason="item_400")
        ],
    )
    acked, metrics = await ship([out], [make_batch(0, 10)])
    assert out.sent[1] == ["line 1", "line 3"]
    assert sorted(out.delivered()) == sorted(f"line {i}" for i in range(10) if i != 5)
    assert acked == [0]
    assert (
        value(metrics, "log_shipper_records_dropped_total", output="memory", reason="item_400") == 1
    )


async def test_ack_waits_for_every_output() -> None:
    fast = MemoryOutput(options(name="fast"))
    slow = MemoryOutput(options(name="slow"))
    slow.gate = asyncio.Event()
    acked: list[int] = []
    metrics = ShipperMetrics(CollectorRegistry())
    pipeline = Pipeline([fast, slow], lambda b: acked.append(b.seq), metrics, LOG)
    pipeline.start()
    batch = make_batch(0, 5)
    await pipeline.submit(batch, RecordEncoder({}).encode(batch))
    await until(fast.delivered, what="the fast output to deliver")
    assert len(fast.delivered()) == 5
    assert acked == []  # the slow output still owes these lines
    slow.gate.set()
    await asyncio.wait_for(pipeline.close(), 10)
    assert acked == [0]


async def test_buffer_is_bounded_and_pauses_the_producer() -> None:
    out = MemoryOutput(options(buffer_max_bytes=200, batch_max_records=5))
    out.gate = asyncio.Event()
    metrics = ShipperMetrics(CollectorRegistry())
    pipeline = Pipeline([out], lambda b: None, metrics, LOG)
    pipeline.start()
    encoder = RecordEncoder({})
    submitted = 0

    async def produce() -> None:
        nonlocal submitted
        for seq in range(20):
            batch = make_batch(seq, 5, seq * 5)
            await pipeline.submit(batch, encoder.encode(batch))
            submitted += 1

    producer = asyncio.create_task(produce())
    runner = pipeline.runners[0]
    # A chunk is 5 lines of 8 bytes: past 160 queued bytes the next put has to wait.
    await until(lambda: runner.queued_bytes > 200 - 40, what="the buffer to fill")
    assert submitted < 20 and not producer.done()
    assert runner.queued_bytes <= 200
    out.gate.set()
    await asyncio.wait_for(producer, 10)
    await asyncio.wait_for(pipeline.close(), 10)
    assert len(out.delivered()) == 100


async def test_stalled_output_is_reported_for_readiness() -> None:
    out = MemoryOutput(options(), script=[OutputError("connect", retryable=True)] * 1000)
    metrics = ShipperMetrics(CollectorRegistry())
    pipeline = Pipeline([out], lambda b: None, metrics, LOG)
    pipeline.start()
    batch = make_batch(0, 1)
    await pipeline.submit(batch, RecordEncoder({}).encode(batch))
    assert pipeline.stalled(10.0) is None
    await until(lambda: pipeline.stalled(0.05), what="the output to count as stalled")
    assert pipeline.stalled(0.05) == "memory"
    for task in pipeline.tasks:
        task.cancel()


@settings(max_examples=200)
@given(st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=30))
def test_any_bytes_become_valid_json_records(lines: list[bytes]) -> None:
    texts, invalid = decode_lines(lines)
    assert len(texts) == len(lines)
    for raw, text in zip(lines, texts, strict=True):
        try:
            assert text == raw.decode("utf-8")
        except UnicodeDecodeError:
            assert "\\x" in text
    batch = Batch("/p", FileId(1, 1, ""), lines, list(range(len(lines))), len(lines), 0)
    chunk = RecordEncoder({}).encode(batch)
    decoded = [orjson.loads(line) for line in chunk.json_lines]
    assert [d["message"] for d in decoded] == texts
    assert chunk.invalid_utf8 == invalid


@given(st.lists(st.integers(1, 8), min_size=1, max_size=5), st.data())
def test_subset_picks_exactly_the_positions(sizes: list[int], data: st.DataObject) -> None:
    encoder = RecordEncoder({})
    slices = []
    start = 0
    for seq, size in enumerate(sizes):
        chunk = encoder.encode(make_batch(seq, size, start))
        start += size
        slices.append(Slice(chunk, 0, size))
    batch = OutBatch(slices)
    total = len(batch)
    positions = data.draw(st.lists(st.integers(0, total - 1), unique=True))
    every = [chunk.messages[i] for chunk, i in batch]
    picked = [chunk.messages[i] for chunk, i in batch.subset(positions)]
    assert picked == [every[p] for p in sorted(positions)]


def test_records_carry_metadata_and_ids() -> None:
    batch = make_batch(0, 2)
    chunk = RecordEncoder({"pod": "web-1", "namespace": "shop"}).encode(batch)
    record = orjson.loads(chunk.json_lines[1])
    assert record["message"] == "line 1" and record["offset"] == batch.offsets[1]
    assert record["path"] == "/var/log/app.log" and record["pod"] == "web-1"
    assert record["namespace"] == "shop" and record["ingest_time"].endswith("Z")
    assert chunk.record_id(1) == f"1:2:fp:{batch.offsets[1]}"


@pytest.mark.parametrize("env", [{"POD_NAME": "p", "NODE_NAME": "n"}, {}])
def test_k8s_metadata_from_downward_api_env(env: dict[str, str]) -> None:
    from podkit.sidecars.log_shipper.records import k8s_metadata

    found = k8s_metadata({"namespace": "ns"}, env)
    assert found == {"namespace": "ns", **({"pod": "p", "node": "n"} if env else {})}


def test_parser_fields_ride_along_and_failures_are_counted() -> None:
    from podkit.parsers import load_parser

    line = b'10.0.0.1 - - [25/Nov/2026:10:00:00 +0000] "GET /a HTTP/1.1" 200 5 "-" "curl/8" seq=1'
    batch = Batch("/p", FileId(1, 1, "f"), [line, b"not an access line"], [0, 100], 120, 0)
    chunk = RecordEncoder({}, load_parser("nginx")).encode(batch)
    good, bad = (orjson.loads(record) for record in chunk.json_lines)
    assert good["fields"]["status"] == 200 and good["fields"]["method"] == "GET"
    assert good["message"] == line.decode()
    assert "fields" not in bad and bad["message"] == "not an access line"
    assert chunk.parse_errors == 1


def test_parser_returning_odd_values_still_ships_the_line() -> None:
    def odd(line: bytes) -> dict:
        return {"huge": 1 << 80, 3: "int key"}

    batch = Batch("/p", FileId(1, 1, "f"), [b"x"], [0], 2, 0)
    record = orjson.loads(RecordEncoder({}, odd).encode(batch).json_lines[0])
    assert record["message"] == "x" and "fields_error" in record


async def test_blocked_input_flushes_without_waiting_for_the_timeout() -> None:
    out = MemoryOutput(options(batch_max_records=1000, batch_timeout=3600))
    acked: list[int] = []
    metrics = ShipperMetrics(CollectorRegistry())
    pipeline = Pipeline([out], lambda b: acked.append(b.seq), metrics, LOG, lambda: True)
    pipeline.start()
    batch = make_batch(0, 3)
    await pipeline.submit(batch, RecordEncoder({}).encode(batch))
    await until(lambda: acked, what="the blocked input to flush the batch")
    assert acked == [0]
    await pipeline.close()


@settings(max_examples=300)
@given(
    st.lists(st.text(max_size=30).map(lambda t: t.replace("\n", "")), min_size=1, max_size=20),
    st.text(max_size=10),
    st.data(),
)
def test_bulk_encoding_equals_encoding_each_record(
    texts: list[str], path_tail: str, data: st.DataObject
) -> None:
    lines = [t.encode("utf-8", "surrogatepass") for t in texts]
    offsets = sorted(data.draw(st.lists(st.integers(0, 2**40), min_size=len(lines),
                                        max_size=len(lines))))  # fmt: skip
    batch = Batch(f"/var/log/%s{path_tail}", FileId(1, 1, "f"), lines, offsets, 0, 0)
    chunk = RecordEncoder({"pod": "p%d"}).encode(batch)
    expected = [
        {"message": line.decode("utf-8", "backslashreplace"), "offset": offset,
         **chunk.meta}
        for line, offset in zip(lines, offsets, strict=True)
    ]  # fmt: skip
    body = chunk.ndjson(0, len(chunk))
    assert [orjson.loads(line) for line in body.splitlines()] == expected
    start = data.draw(st.integers(0, len(chunk)))
    stop = data.draw(st.integers(start, len(chunk)))
    assert chunk.ndjson(start, stop) == b"".join(
        chunk.record_bytes(i) + b"\n" for i in range(start, stop)
    )
