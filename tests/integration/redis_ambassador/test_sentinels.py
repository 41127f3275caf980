"""redis-ambassador when the Sentinels fail, disagree, talk garbage or want a password,
and when it is asked to drain.

Tests that leave the cluster as they found it share one (`steady_cluster`); the others
get their own (`sentinel_cluster`).
"""

from __future__ import annotations

import contextlib
import signal
import socket
import socketserver
import threading
from collections.abc import Iterator

import pytest
import redis

from podkit_dev.servers import HOST, SentinelCluster, free_port, wait_for
from tests.integration.redis_ambassador.kit import current_master, sample, start_ambassador

GARBAGE = [
    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
    b"*2\r\n$9\r\n127.0.0.1\r\n$5\r\nnotaport\r\n",
    b"*3\r\n:1\r\n:2\r\n:3\r\n",
    b"$-5\r\n\x00\xff\xfe",
    b"+OK\r\n",
]


@contextlib.contextmanager
def garbage_server(payload: bytes) -> Iterator[str]:
    """A TCP server that answers anything with `payload` (a broken or foreign 'Sentinel')."""

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            with contextlib.suppress(OSError):
                while self.request.recv(4096):
                    self.request.sendall(payload)

    server = socketserver.ThreadingTCPServer((HOST, 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{HOST}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def errors_for(helper, sentinel: str) -> float:
    total = 0.0
    for line in helper.metrics().splitlines():
        if line.startswith("redis_ambassador_discovery_errors_total{") and sentinel in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_all_sentinels_down_keeps_a_verified_master(run_helper, sentinel_cluster):
    helper, port = start_ambassador(run_helper, sentinel_cluster, "--poll-interval", "200ms",
                                    "--connect-wait", "500ms")  # fmt: skip
    master = sentinel_cluster.master_addr()
    for sentinel in sentinel_cluster.sentinels:
        sentinel.stop(signal.SIGKILL)
    wait_for(lambda: sample(helper, "redis_ambassador_master_kept_without_sentinels") == 1.0,
             what="the ambassador to say it keeps the master without Sentinels")  # fmt: skip
    assert sample(helper, "redis_ambassador_sentinels_reachable") == 0.0
    assert current_master(helper) == master
    assert helper.get("/readyz")[0] == 200
    with redis.Redis(host=HOST, port=port, socket_timeout=5) as client:
        assert client.set("still", "works")
    # The master refuses connections from now on: lost, not ready, clients refused.
    sentinel_cluster.node(master).stop(signal.SIGKILL)
    wait_for(lambda: helper.get("/readyz")[0] == 503, what="/readyz to turn 503")
    assert sample(helper, "redis_ambassador_master_known") == 0.0
    assert sample(helper, "redis_ambassador_master_kept_without_sentinels") == 0.0
    with socket.create_connection((HOST, port), timeout=10) as sock:
        sock.sendall(b"PING\r\n")
        reply = sock.makefile("rb").readline()
    assert reply.startswith(b"-ERR podkit redis-ambassador: no Redis master"), reply
    assert sample(helper, 'redis_ambassador_client_connections_refused_total{reason="no_master"}')
    assert sample(helper, 'redis_ambassador_role_check_failures_total{reason="connect"}') >= 1
    # Clients that give up while waiting for a master leave nothing behind.
    for _ in range(20):
        socket.create_connection((HOST, port), timeout=5).close()
    wait_for(lambda: sample(helper, "redis_ambassador_client_connections_active") == 0,
             what="waiting connections to be released")  # fmt: skip
    assert helper.process.alive()


def test_unreachable_and_garbage_sentinels_are_counted_not_fatal(run_helper, steady_cluster):
    dead = f"{HOST}:{free_port()}"
    with contextlib.ExitStack() as stack:
        broken = [stack.enter_context(garbage_server(payload)) for payload in GARBAGE]
        port = free_port()
        helper = run_helper(
            "redis-ambassador",
            "--sentinels", ",".join([*steady_cluster.sentinel_addrs, dead, *broken]),
            "--listen", f"{HOST}:{port}", "--poll-interval", "200ms",
        )  # fmt: skip
        # 3 of 3 reachable Sentinels agree; the dead one and the garbage ones do not count.
        assert current_master(helper) == steady_cluster.master_addr()
        wait_for(lambda: errors_for(helper, dead) >= 2, what="errors for the dead Sentinel")
        for addr in broken:
            wait_for(lambda addr=addr: errors_for(helper, addr) >= 2, what=f"errors for {addr}")
        with redis.Redis(host=HOST, port=port, socket_timeout=5) as client:
            assert client.ping()
        events = {e.get("event") for e in helper.log_events()}
        assert "sentinel_query_failed" in events
        assert helper.process.alive()


def test_disagreeing_sentinels_route_nowhere(run_helper, steady_cluster):
    # A second, unrelated master watched by a Sentinel under the same name.
    other = SentinelCluster(replicas=0, sentinels=1)
    try:
        other.start()
        first = steady_cluster.sentinel_addrs[0]
        port = free_port()
        helper = run_helper(
            "redis-ambassador",
            "--sentinels", f"{first},{other.sentinel_addrs[0]}",
            "--listen", f"{HOST}:{port}", "--connect-wait", "200ms",
            wait="startupz",
        )  # fmt: skip
        wait_for(
            lambda: any(e.get("event") == "sentinels_disagree" for e in helper.log_events()),
            what="the disagreement to be logged",
        )
        assert helper.get("/readyz")[0] == 503
        assert sample(helper, "redis_ambassador_master_known") == 0.0
        with socket.create_connection((HOST, port), timeout=10) as sock:
            assert sock.makefile("rb").readline().startswith(b"-ERR podkit")
        # Three Sentinels, two of one mind: the majority's master is used.
        mixed = [*steady_cluster.sentinel_addrs[:2], other.sentinel_addrs[0]]
        helper2 = run_helper(
            "redis-ambassador",
            "--sentinels", ",".join(mixed),
            "--listen", f"{HOST}:{free_port()}",
        )  # fmt: skip
        assert current_master(helper2) == steady_cluster.master_addr()
        assert sample(helper2, "redis_ambassador_sentinels_agreeing") == 2.0
    finally:
        other.cleanup()


def test_quorum_override(run_helper, sentinel_cluster):
    helper, _ = start_ambassador(run_helper, sentinel_cluster, "--quorum", "3",
                                 "--poll-interval", "200ms")  # fmt: skip
    assert sample(helper, "redis_ambassador_sentinels_agreeing") == 3.0
    sentinel_cluster.sentinels[2].stop(signal.SIGKILL)
    # Two Sentinels are a majority of the reachable ones, but not the quorum of 3 asked for.
    wait_for(lambda: helper.get("/readyz")[0] == 503, what="not ready without the quorum")


def test_sentinel_password_from_a_file(run_helper, sentinel_cluster, tmp_path):
    secret = "s3cret-sentinel-pass"
    master = sentinel_cluster.master_addr()
    for sentinel in sentinel_cluster.sentinels:
        assert sentinel.command("ACL", "SETUSER", "podkit", "on", f">{secret}", "+@all",
                                "~*", "&*").startswith(b"+OK")  # fmt: skip
        assert sentinel.command("ACL", "SETUSER", "default", "off").startswith(b"+OK")
    password_file = tmp_path / "pass"
    password_file.write_text(secret + "\n")
    helper, _ = start_ambassador(run_helper, sentinel_cluster, "--sentinel-username", "podkit",
                                    "--sentinel-password-file", str(password_file))  # fmt: skip
    assert current_master(helper) == master
    # Without the password: counted as auth errors, never ready.
    refused, _ = start_ambassador(run_helper, sentinel_cluster, wait="startupz")
    wait_for(lambda: errors_for(refused, sentinel_cluster.sentinel_addrs[0]) >= 1,
             what="auth errors to be counted")  # fmt: skip
    assert refused.get("/readyz")[0] == 503
    assert 'reason="auth"' in refused.metrics()
    for process in (helper, refused):
        assert secret not in process.log_text()
        assert secret not in process.metrics()


def test_drain_lets_open_connections_finish(run_helper, steady_cluster):
    helper, port = start_ambassador(run_helper, steady_cluster)
    with redis.Redis(host=HOST, port=port, socket_timeout=5) as client:
        assert client.set("before", "drain")
        helper.process.send_signal(signal.SIGTERM)
        wait_for(lambda: helper.get("/readyz")[0] == 503, what="/readyz 503 while draining")
        # New connections are refused; the open one still works.
        with pytest.raises(OSError):
            socket.create_connection((HOST, port), timeout=2).close()
        assert client.get("before") == b"drain"
        assert helper.process.alive()
    assert helper.wait_exit(timeout=20) == 0


def test_connection_waits_for_a_master_then_gets_through(run_helper, steady_cluster):
    helper, port = start_ambassador(run_helper, steady_cluster, "--master-name", "later",
                                    "--connect-wait", "30s", wait="startupz")  # fmt: skip
    assert helper.get("/readyz")[0] == 503
    with socket.create_connection((HOST, port), timeout=30) as sock:
        sock.sendall(b"PING\r\n")
        wait_for(lambda: sample(helper, "redis_ambassador_client_connections_active") == 1,
                 what="the client to be waiting")  # fmt: skip
        host, master_port = steady_cluster.master_addr().split(":")
        try:
            # Only now do the Sentinels learn of a master called "later".
            for sentinel in steady_cluster.sentinels:
                sentinel.command("SENTINEL", "MONITOR", "later", host, master_port, "2")
            assert sock.makefile("rb").readline() == b"+PONG\r\n"
        finally:
            for sentinel in steady_cluster.sentinels:
                sentinel.command("SENTINEL", "REMOVE", "later")
    assert (
        sample(helper, 'redis_ambassador_client_connections_refused_total{reason="no_master"}') == 0
    )
