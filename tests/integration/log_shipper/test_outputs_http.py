"""The HTTP outputs (http, loki, elasticsearch) against a stand-in receiver.

The receiver in log_shipper_standins.py is a STAND-IN implementing the documented Loki
push and Elasticsearch bulk responses (no real Loki or Elasticsearch runs here); the
plain `http` output needs nothing more than such a receiver anyway.
"""

from __future__ import annotations

import asyncio
import base64

import pytest
from prometheus_client import CollectorRegistry

from podkit.sidecars.log_shipper.metrics import ShipperMetrics
from podkit.sidecars.log_shipper.outputs.base import OutputError
from podkit.sidecars.log_shipper.outputs.elasticsearch import (
    ElasticsearchOptions,
    ElasticsearchOutput,
)
from podkit.sidecars.log_shipper.outputs.http import PlainHttpOutput
from podkit.sidecars.log_shipper.outputs.httpclient import HttpOptions
from podkit.sidecars.log_shipper.outputs.loki import LokiOptions, LokiOutput
from podkit_dev.servers import until
from tests.integration.log_shipper.outputs import LOG, batches, ship

FAST_RETRY = {"retry_initial": 0.01, "retry_max": 0.05, "batch_timeout": 0.01}


def failed(metrics: ShipperMetrics, output: str, reason: str) -> float:
    return sample(metrics, "log_shipper_batches_failed_total", output=output, reason=reason)


def dropped(metrics: ShipperMetrics, output: str, reason: str) -> float:
    return sample(metrics, "log_shipper_records_dropped_total", output=output, reason=reason)


def seqs(messages: list[str]) -> list[int]:
    return sorted(int(m.removeprefix("seq=")) for m in messages)


def sample(metrics: ShipperMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def test_http_ndjson_gzip_headers_and_bearer(receiver, tmp_path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    opts = HttpOptions(
        type="http", url=f"{receiver.url}/ingest", gzip=True, header=["X-Team: logs"],
        bearer_token_file=str(token), batch_max_records=7, **FAST_RETRY,
    )  # fmt: skip
    acked, _ = await ship(PlainHttpOutput(opts, log=LOG), batches(5, 10))
    got = receiver.snapshot()
    assert seqs([r["message"] for r in got.ndjson]) == list(range(50))
    assert sorted(acked) == list(range(5))
    headers = got.requests[0]["headers"]
    assert headers["Authorization"] == "Bearer s3cret"
    assert headers["X-Team"] == "logs" and headers["Content-Encoding"] == "gzip"
    assert headers["Content-Type"] == "application/x-ndjson"
    assert got.ndjson[0]["pod"] == "web-1" and got.ndjson[0]["path"] == "/logs/app.log"


async def test_http_basic_auth_from_password_file(receiver, tmp_path) -> None:
    secret = tmp_path / "password"
    secret.write_text("hunter2")
    opts = HttpOptions(
        type="http", url=f"{receiver.url}/ingest", username="shipper",
        password_file=str(secret), **FAST_RETRY,
    )  # fmt: skip
    await ship(PlainHttpOutput(opts, log=LOG), batches(1, 3))
    auth = receiver.snapshot().requests[0]["headers"]["Authorization"]
    assert auth == "Basic " + base64.b64encode(b"shipper:hunter2").decode()


async def test_http_retries_429_and_5xx_and_timeouts(receiver) -> None:
    receiver.fail(429, 2, retry_after="0")
    receiver.fail(503, 2)
    opts = HttpOptions(type="http", url=f"{receiver.url}/ingest", **FAST_RETRY)
    acked, metrics = await ship(PlainHttpOutput(opts, log=LOG), batches(3, 10))
    got = receiver.snapshot()
    assert seqs([r["message"] for r in got.ndjson]) == list(range(30))
    assert sorted(acked) == [0, 1, 2]
    assert failed(metrics, "http", "http_429") == 2
    assert failed(metrics, "http", "http_503") == 2


async def test_http_slow_answer_times_out_and_is_retried(receiver) -> None:
    receiver.delay = 0.5
    opts = HttpOptions(
        type="http", url=f"{receiver.url}/ingest", request_timeout=0.1, retry_max_attempts=2,
        **FAST_RETRY,
    )  # fmt: skip
    _, metrics = await ship(PlainHttpOutput(opts, log=LOG), batches(1, 2))
    assert failed(metrics, "http", "timeout") == 2
    receiver.delay = 0
    acked, _ = await ship(PlainHttpOutput(opts, log=LOG), batches(1, 2))
    assert acked == [0]


async def test_http_4xx_is_permanent_and_logged_with_body(receiver, caplog) -> None:
    receiver.fail(400, 1, body="field 'x' is not allowed")
    opts = HttpOptions(type="http", url=f"{receiver.url}/ingest", **FAST_RETRY)
    acked, metrics = await ship(PlainHttpOutput(opts, log=LOG), batches(1, 4))
    assert acked == [0]
    assert dropped(metrics, "http", "http_400") == 4
    assert receiver.snapshot().ndjson == []
    rejected = [r for r in caplog.records if r.getMessage() == "batch_rejected"]
    assert "not allowed" in rejected[0].podkit_fields["detail"]  # type: ignore[attr-defined]


async def test_http_output_down_then_up_loses_nothing(receiver) -> None:
    receiver.down()
    opts = HttpOptions(type="http", url=f"{receiver.url}/ingest", **FAST_RETRY)
    metrics = ShipperMetrics(CollectorRegistry())
    task = asyncio.create_task(ship(PlainHttpOutput(opts, log=LOG), batches(4, 25), metrics))
    await until(lambda: failed(metrics, "http", "connect"), what="sends to fail while down")
    assert not task.done()
    receiver.up()
    await asyncio.wait_for(task, 30)
    assert seqs([r["message"] for r in receiver.snapshot().ndjson]) == list(range(100))
    assert failed(metrics, "http", "connect") > 0


async def test_loki_push_streams_and_retries(receiver) -> None:
    receiver.fail(500, 1)
    receiver.fail(429, 1)
    opts = LokiOptions(type="loki", url=receiver.url, label=["job=web"], tenant="t1", **FAST_RETRY)
    items = batches(2, 10) + batches(1, 5, path="/logs/error.log")
    acked, _ = await ship(LokiOutput(opts, log=LOG), items)
    got = receiver.snapshot()
    assert len(got.loki) == 25 and len(acked) == 3
    streams = {labels["filename"]: labels for labels, _, _ in got.loki}
    assert streams["/logs/app.log"] == {
        "job": "web", "filename": "/logs/app.log", "pod": "web-1", "namespace": "shop",
    }  # fmt: skip
    app = [
        (int(ts), line) for labels, ts, line in got.loki if labels["filename"] == "/logs/app.log"
    ]
    assert [line for _, line in app] == [f"seq={i}" for i in range(20)]
    assert got.requests[-1]["headers"]["X-Scope-OrgID"] == "t1"


async def test_loki_rejection_400_is_permanent(receiver) -> None:
    receiver.fail(400, 1, body="entry too far behind")
    opts = LokiOptions(type="loki", url=receiver.url, **FAST_RETRY)
    acked, metrics = await ship(LokiOutput(opts, log=LOG), batches(1, 3))
    assert acked == [0]
    assert dropped(metrics, "loki", "http_400") == 3


async def test_elasticsearch_partial_bulk_failure_retries_only_failed_items(receiver) -> None:
    receiver.fail_items(429, 3)  # the first 3 items of the next bulk request fail
    receiver.fail(503, 1)
    opts = ElasticsearchOptions(
        type="elasticsearch", url=receiver.url, index="logs", batch_max_records=10, **FAST_RETRY
    )
    acked, metrics = await ship(ElasticsearchOutput(opts, log=LOG), batches(2, 10))
    got = receiver.snapshot()
    assert seqs([d["message"] for d in got.es_docs.values()]) == list(range(20))
    assert sorted(acked) == [0, 1]
    retried = sorted(doc_id for doc_id, n in got.es_attempts.items() if n > 1)
    assert len(retried) == 3  # only the failed items were sent again
    assert all(doc_id.startswith("8:99:abc:") for doc_id in got.es_docs)
    assert sample(metrics, "log_shipper_records_sent_total", output="elasticsearch") == 20


async def test_elasticsearch_resend_creates_no_duplicates(receiver) -> None:
    opts = ElasticsearchOptions(type="elasticsearch", url=receiver.url, **FAST_RETRY)
    await ship(ElasticsearchOutput(opts, log=LOG), batches(1, 10))
    # A restart that re-reads the same lines: same ids, the backend answers 409.
    acked, metrics = await ship(ElasticsearchOutput(opts, log=LOG), batches(1, 10))
    assert acked == [0] and len(receiver.snapshot().es_docs) == 10
    dupes = sample(metrics, "log_shipper_records_duplicate_total", output="elasticsearch")
    assert dupes == 10


async def test_elasticsearch_rejected_items_are_dropped_and_counted(receiver) -> None:
    receiver.reject_ids["8:99:abc:200"] = 400
    opts = ElasticsearchOptions(type="elasticsearch", url=receiver.url, **FAST_RETRY)
    acked, metrics = await ship(ElasticsearchOutput(opts, log=LOG), batches(1, 5))
    assert acked == [0] and len(receiver.snapshot().es_docs) == 4
    dropped = sample(
        metrics, "log_shipper_records_dropped_total", output="elasticsearch", reason="item_400"
    )
    assert dropped == 1


def test_elasticsearch_garbage_answer_is_retryable() -> None:
    with pytest.raises(OutputError) as caught:
        ElasticsearchOutput.read_bulk(b"<html>proxy error</html>", 3)
    assert caught.value.retryable
    with pytest.raises(OutputError):
        ElasticsearchOutput.read_bulk(b'{"errors": false, "items": []}', 3)
