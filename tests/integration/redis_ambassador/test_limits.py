"""redis-ambassador limits (--max-client-conn, --client-idle-timeout) and Sentinels that
announce hostnames instead of IPs (`sentinel announce-hostnames yes`)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator

import pytest
import redis

from podkit_dev.servers import HOST, SentinelCluster, wait_for
from tests.integration.redis_ambassador.kit import (
    RedisWriter,
    current_master,
    sample,
    start_ambassador,
    switched_away_at,
)
from tests.servers import serve

REFUSED_MAX = 'redis_ambassador_client_connections_refused_total{reason="max_clients"}'


@pytest.fixture(scope="module")
def steady_cluster() -> Iterator[SentinelCluster]:
    """One master and one Sentinel are enough here (redis_ambassador/conftest.py's has more)."""
    yield from serve(lambda: SentinelCluster(replicas=0, sentinels=1))


def _ping(sock: socket.socket) -> bytes:
    sock.sendall(b"PING\r\n")
    return sock.makefile("rb").readline()


def _closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_max_client_conn_refuses_with_a_redis_error(run_helper, steady_cluster):
    helper, port = start_ambassador(run_helper, steady_cluster, "--max-client-conn", "3")
    held = [socket.create_connection((HOST, port), timeout=5) for _ in range(3)]
    try:
        for sock in held:
            assert _ping(sock) == b"+PONG\r\n"
        with socket.create_connection((HOST, port), timeout=5) as extra:
            assert extra.makefile("rb").readline() == b"-ERR max number of clients reached\r\n"
            assert _closed(extra)
        # redis-py sees the same error as from a full redis-server.
        with (
            redis.Redis(host=HOST, port=port, socket_timeout=5) as client,
            pytest.raises(redis.ConnectionError, match="max number of clients"),
        ):
            client.ping()
        assert sample(helper, REFUSED_MAX) >= 2.0  # (redis-py retries a few times)
        assert sample(helper, "redis_ambassador_client_connections_active") == 3.0
        # A slot freed is a slot usable.
        held.pop().close()
        wait_for(lambda: sample(helper, "redis_ambassador_client_connections_active") == 2.0,
                 what="the closed connection to be forgotten")  # fmt: skip
        with socket.create_connection((HOST, port), timeout=5) as again:
            assert _ping(again) == b"+PONG\r\n"
    finally:
        for sock in held:
            sock.close()


def test_client_idle_timeout_closes_only_idle_connections(run_helper, steady_cluster):
    helper, port = start_ambassador(run_helper, steady_cluster, "--client-idle-timeout", "1s")
    idle = socket.create_connection((HOST, port), timeout=5)
    busy = socket.create_connection((HOST, port), timeout=5)
    assert _ping(idle) == b"+PONG\r\n"
    idle.settimeout(0.05)
    # The busy connection talks every 100 ms, ten times more often than the timeout.
    while not _closed(idle):
        assert _ping(busy) == b"+PONG\r\n"
        time.sleep(0.1)
    assert _ping(busy) == b"+PONG\r\n"
    assert sample(helper, "redis_ambassador_connections_closed_idle_total") == 1.0
    idle.close()
    busy.close()


def test_idle_connections_are_kept_by_default(run_helper, steady_cluster):
    helper, port = start_ambassador(run_helper, steady_cluster)
    with socket.create_connection((HOST, port), timeout=5) as sock:
        assert _ping(sock) == b"+PONG\r\n"
        # A blocking command is idle traffic-wise; without the setting it is never cut.
        sock.sendall(b"BLPOP never-pushed 2\r\n")
        sock.settimeout(10)
        assert sock.makefile("rb").readline() in (b"*-1\r\n", b"_\r\n")
    assert sample(helper, "redis_ambassador_connections_closed_idle_total") == 0.0


def test_sentinels_announcing_hostnames(
    run_helper: Callable[..., object],
) -> None:
    """Sentinels configured with `resolve-hostnames yes` and `announce-hostnames yes` name
    every node `localhost`: the ambassador routes to it, follows a failover by its events
    (which name hostnames too), and loses no write acknowledged after it started."""
    cluster = SentinelCluster(node_args=["--repl-diskless-sync-delay", "0"],
                              announce_hostname="localhost")  # fmt: skip
    writer: RedisWriter | None = None
    try:
        cluster.start()
        old_addr = cluster.master_addr()
        assert old_addr.startswith("localhost:"), old_addr
        helper, port = start_ambassador(run_helper, cluster)  # type: ignore[arg-type]
        assert current_master(helper) == old_addr  # type: ignore[arg-type]
        writer = RedisWriter(port, prefix="host", socket_timeout=5).start()
        wait_for(lambda: writer.count() > 50, what="writes through the ambassador")  # type: ignore[union-attr]
        started = time.time()
        assert cluster.sentinels[0].command("SENTINEL", "FAILOVER", "mymaster").startswith(b"+OK")
        new_addr = str(wait_for(
            lambda: (m := current_master(helper)) not in (None, old_addr) and m,  # type: ignore[arg-type]
            timeout=30, what="the ambassador to follow the failover",
        ))  # fmt: skip
        assert new_addr.startswith("localhost:"), new_addr
        cut = switched_away_at(helper, old_addr, after=started)  # type: ignore[arg-type]
        assert cut is not None
        events = {e.get("event") for e in helper.log_events()}  # type: ignore[attr-defined]
        assert "failover_started" in events
        wait_for(lambda: len(writer.keys_after(cut)) > 100, timeout=20,  # type: ignore[union-attr]
                 what="writes after the failover")  # fmt: skip
        writer.stop()
        after = [key for _, key, acked in writer.acked() if acked > started]
        with redis.Redis(host=HOST, port=cluster.node(new_addr).port) as new:
            assert new.exists(*after) == len(after)
    finally:
        if writer is not None:
            writer.stop()
        cluster.cleanup()
