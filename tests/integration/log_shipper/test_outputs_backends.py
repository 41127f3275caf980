"""The redis and postgres outputs against real redis-server and PostgreSQL."""

from __future__ import annotations

import asyncio

import asyncpg
import orjson
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from podkit.sidecars.log_shipper.metrics import ShipperMetrics
from podkit.sidecars.log_shipper.outputs.postgres import PostgresOptions, PostgresOutput
from podkit.sidecars.log_shipper.outputs.redis import RedisOptions, RedisOutput
from podkit.sidecars.log_shipper.pipeline import Pipeline
from podkit.sidecars.log_shipper.records import RecordEncoder
from podkit_dev.servers import until
from tests.integration.log_shipper.outputs import LOG, batches, ship

FAST_RETRY = {"retry_initial": 0.02, "retry_max": 0.2, "batch_timeout": 0.01}


def seq_of(message: str) -> int:
    return int(message.removeprefix("seq=").split("\x00")[0].split("\ufffd")[0])


async def test_redis_xadd_every_record_with_maxlen(redis_server) -> None:
    opts = RedisOptions(type="redis", url=redis_server.url, stream="logs", maxlen=0, **FAST_RETRY)
    acked, _ = await ship(RedisOutput(opts, log=LOG), batches(5, 100))
    client = aioredis.from_url(redis_server.url)
    entries = await client.xrange("logs")
    assert sorted(seq_of(orjson.loads(f[b"record"])["message"]) for _, f in entries) == list(
        range(500)
    )
    assert entries[0][1][b"id"] == b"8:99:abc:0"
    assert sorted(acked) == list(range(5))
    capped = RedisOptions(type="redis", url=redis_server.url, stream="capped", maxlen=50,
                          approximate=False, **FAST_RETRY)  # fmt: skip
    await ship(RedisOutput(capped, log=LOG), batches(2, 100))
    assert await client.xlen("capped") == 50
    await client.aclose()


async def test_redis_down_then_back_loses_nothing(redis_factory) -> None:
    server = redis_factory()
    opts = RedisOptions(type="redis", url=server.url, stream="logs", **FAST_RETRY)
    output = RedisOutput(opts, log=LOG)
    await ship(output, batches(1, 10))
    server.stop()
    metrics = ShipperMetrics(CollectorRegistry())
    task = asyncio.create_task(ship(RedisOutput(opts, log=LOG), batches(3, 10), metrics))
    connect_failures = {"output": "redis", "reason": "connect"}
    await until(
        lambda: metrics.registry.get_sample_value(
            "log_shipper_batches_failed_total", connect_failures
        ),
        what="sends to fail while redis is down",
    )
    assert not task.done()
    restarted = redis_factory(port=server.port)  # same port, empty (no persistence)
    await asyncio.wait_for(task, 30)
    client = aioredis.from_url(restarted.url)
    entries = await client.xrange("logs")
    assert sorted(seq_of(orjson.loads(f[b"record"])["message"]) for _, f in entries) == list(
        range(30)
    )
    assert metrics.registry.get_sample_value("log_shipper_batches_failed_total", connect_failures)
    await client.aclose()


async def test_redis_wrong_type_is_rejected_not_retried_forever(redis_server) -> None:
    redis_server.command("SET", "notastream", "x")
    opts = RedisOptions(type="redis", url=redis_server.url, stream="notastream", **FAST_RETRY)
    acked, metrics = await ship(RedisOutput(opts, log=LOG), batches(1, 3))
    assert acked == [0]
    assert (
        metrics.registry.get_sample_value(
            "log_shipper_records_dropped_total", {"output": "redis", "reason": "redis_wrongtype"}
        )
        == 3
    )


async def test_postgres_copy_is_idempotent_and_keeps_nul_and_bad_utf8(postgres_server) -> None:
    opts = PostgresOptions(type="postgres", dsn=postgres_server.dsn, table="logs", **FAST_RETRY)
    items = batches(3, 50) + batches(1, 2, extra=b"\x00\xff tail")[0:1]
    items[-1].seq = 3
    items[-1].offsets = [10_000_000, 10_000_100]
    acked, _ = await ship(PostgresOutput(opts, log=LOG), items)
    assert sorted(acked) == [0, 1, 2, 3]
    # Shipping the same lines again (a restart before the checkpoint moved): no duplicates.
    _, metrics = await ship(PostgresOutput(opts, log=LOG), batches(3, 50))
    conn = await asyncpg.connect(postgres_server.dsn)
    rows = await conn.fetch("SELECT id, message, record FROM logs")
    await conn.close()
    assert len(rows) == 152
    assert sorted(seq_of(r["message"]) for r in rows) == sorted([*range(150), 0, 1])
    assert (
        metrics.registry.get_sample_value(
            "log_shipper_records_duplicate_total", {"output": "postgres"}
        )
        == 150
    )
    odd = next(r for r in rows if r["id"] == "8:99:abc:10000000")
    assert odd["message"] == "seq=0\ufffd\\xff tail"
    assert orjson.loads(odd["record"])["message"] == odd["message"]


async def test_postgres_connection_killed_mid_life_loses_nothing(postgres_server) -> None:
    opts = PostgresOptions(type="postgres", dsn=postgres_server.dsn, table="logs", **FAST_RETRY)
    acked: list[int] = []
    metrics = ShipperMetrics(CollectorRegistry())
    pipeline = Pipeline(
        [PostgresOutput(opts, log=LOG)], lambda b: acked.append(b.seq), metrics, LOG
    )
    pipeline.start()
    encoder = RecordEncoder({})
    items = batches(5, 5)
    await pipeline.submit(items[0], encoder.encode(items[0]))
    await until(lambda: acked, what="the first batch acked")
    conn = await asyncpg.connect(postgres_server.dsn)
    # Kill the shipper's backend connection: the next send fails, reconnects, resends.
    killed = await conn.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'"
    )
    assert killed == 1
    for batch in items[1:]:
        await pipeline.submit(batch, encoder.encode(batch))
    await asyncio.wait_for(pipeline.close(), 30)
    count = await conn.fetchval("SELECT count(*) FROM logs")
    await conn.close()
    assert count == 25 and sorted(acked) == [0, 1, 2, 3, 4]
    failures = {
        sample.labels["reason"]
        for family in metrics.registry.collect()
        for sample in family.samples
        if sample.name == "log_shipper_batches_failed_total" and sample.value > 0
    }
    # The closed socket, 08xxx (connection gone) or 57P01 (admin_shutdown): all retried.
    assert failures
    assert all(
        r == "connect" or r.removeprefix("sqlstate_")[:2] in ("08", "57") for r in failures
    ), failures
