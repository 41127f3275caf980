"""redis-ambassador as an L4 proxy: every Redis feature passes, many clients, no leaks.

One cluster (master, 2 replicas, 3 Sentinels) and one ambassador serve the whole module;
nothing here changes the master.
"""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest
import redis

from podkit_dev.servers import HOST, HelperProcess, free_port, wait_for
from tests.integration.redis_ambassador.kit import current_master, sample


@pytest.fixture(scope="module")
def ambassador(steady_cluster):
    port = free_port()
    helper = HelperProcess(
        "redis-ambassador",
        "--sentinels", ",".join(steady_cluster.sentinel_addrs),
        "--listen", f"{HOST}:{port}",
    )  # fmt: skip
    helper.start()
    helper.port = port  # type: ignore[attr-defined]
    yield helper
    helper.cleanup()


@pytest.fixture
def client(ambassador):
    with redis.Redis(host=HOST, port=ambassador.port, socket_timeout=10) as conn:
        yield conn


def open_fds(helper: HelperProcess) -> float:
    return sample(helper, "process_open_fds")


def test_routes_to_the_master_and_is_ready(ambassador, steady_cluster, client):
    assert current_master(ambassador) == steady_cluster.master_addr()
    assert ambassador.get("/readyz")[0] == 200
    assert client.set("plain", "value")
    master = steady_cluster.node(steady_cluster.master_addr())
    assert master.command("GET", "plain") == b"$5\r\nvalue\r\n"
    assert sample(ambassador, "redis_ambassador_sentinels_agreeing") == 3.0
    assert sample(ambassador, 'redis_ambassador_bytes_total{direction="to_master"}') > 0
    assert sample(ambassador, 'redis_ambassador_bytes_total{direction="from_master"}') > 0


def test_multi_exec(client):
    with client.pipeline(transaction=True) as pipe:
        pipe.set("tx:a", 1).incr("tx:a").get("tx:a")
        assert pipe.execute() == [True, 2, b"2"]


def test_pipelining_many_commands_in_one_write(ambassador):
    with socket.create_connection((HOST, ambassador.port), timeout=10) as sock:
        sock.sendall(b"".join(b"INCR pipelined\r\n" for _ in range(5000)))
        data = b""
        while data.count(b"\r\n") < 5000:
            chunk = sock.recv(65536)
            assert chunk, "connection closed mid-pipeline"
            data += chunk
    assert data.endswith(b":5000\r\n")


def test_resp3_hello_and_auth_pass_through(ambassador):
    with socket.create_connection((HOST, ambassador.port), timeout=10) as sock:
        sock.sendall(b"HELLO 3\r\n")
        reply = sock.recv(4096)
        assert reply.startswith(b"%"), reply  # a RESP3 map: the server spoke RESP3 to us
        sock.sendall(b"AUTH nobody wrong\r\n")
        assert sock.recv(4096).startswith(b"-WRONGPASS"), "AUTH must reach Redis untouched"


def test_pubsub_across_the_proxy(ambassador, client):
    with redis.Redis(host=HOST, port=ambassador.port, socket_timeout=10) as sub_conn:
        pubsub = sub_conn.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe("news")
        wait_for(lambda: client.publish("news", "hello") == 1, what="subscriber")
        message = wait_for(lambda: pubsub.get_message(timeout=1), what="a message")
        assert message["data"] == b"hello"
        pubsub.close()


def test_blpop_waits_across_the_proxy(ambassador, client):
    client.delete("queue")
    result: list = []
    with redis.Redis(host=HOST, port=ambassador.port, socket_timeout=20) as blocking:
        thread = threading.Thread(target=lambda: result.append(blocking.blpop(["queue"], 15)))
        thread.start()
        wait_for(
            lambda: any(c.get("cmd") == "blpop" for c in client.client_list()),
            what="BLPOP to block at the master",
        )
        client.rpush("queue", "job")
        thread.join(20)
    assert result == [(b"queue", b"job")]


def test_monitor_across_the_proxy(ambassador, client):
    with socket.create_connection((HOST, ambassador.port), timeout=10) as sock:
        sock.sendall(b"MONITOR\r\n")
        assert sock.recv(100) == b"+OK\r\n"
        client.get("monitored-key")
        seen = b""
        while b"monitored-key" not in seen:
            chunk = sock.recv(4096)
            assert chunk
            seen += chunk


def test_large_value_both_ways(client):
    # 32 MiB each way: more than any socket buffer, so both directions pause and resume.
    value = bytes(range(256)) * (32 * 4096)
    assert client.set("big", value)
    assert client.get("big") == value


async def _one_client(port: int, n: int) -> bytes:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        key = f"many:{n}".encode()
        writer.write(b"SET %s %d\r\nGET %s\r\n" % (key, n, key))
        await writer.drain()
        expected = b"+OK\r\n$%d\r\n%d\r\n" % (len(str(n)), n)
        return await asyncio.wait_for(reader.readexactly(len(expected)), 60)
    finally:
        writer.close()
        await writer.wait_closed()


async def test_a_thousand_concurrent_clients(ambassador):
    port = ambassador.port
    opened = []
    # All 1,000 connections are open at once before any of them is used.
    for _ in range(1000):
        opened.append(await asyncio.open_connection(HOST, port))
    wait_for(
        lambda: sample(ambassador, "redis_ambassador_client_connections_active") >= 1000,
        what="1000 active connections",
    )
    for n, (_, writer) in enumerate(opened):
        writer.write(b"SET many:%d %d\r\n" % (n, n))
    replies = await asyncio.gather(*(reader.readexactly(5) for reader, _ in opened))
    assert replies == [b"+OK\r\n"] * 1000
    for _, writer in opened:
        writer.close()
    await asyncio.gather(*(writer.wait_closed() for _, writer in opened))
    results = await asyncio.gather(*(_one_client(port, n) for n in range(1000)))
    assert all(r.endswith(b"%d\r\n" % n) for n, r in enumerate(results))
    await asyncio.to_thread(
        wait_for,
        lambda: sample(ambassador, "redis_ambassador_client_connections_active") == 0,
        what="every connection to be released",
    )


def test_silent_clients_and_hangups_leak_nothing(ambassador):
    wait_for(lambda: sample(ambassador, "redis_ambassador_client_connections_active") == 0,
             what="quiet proxy")  # fmt: skip
    baseline = open_fds(ambassador)
    for n in range(200):
        sock = socket.create_connection((HOST, ambassador.port), timeout=5)
        if n % 3 == 1:
            # Hang up in the middle of a pipeline, half a command still unsent.
            sock.sendall(b"SET k 1\r\nSET k 2\r\n*3\r\n$3\r\nSET\r\n$1\r\nk")
        elif n % 3 == 2:
            sock.sendall(b"\x00\xff garbage \r\n" * 10)
        if n % 2:
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
        sock.close()
    wait_for(lambda: sample(ambassador, "redis_ambassador_client_connections_active") == 0,
             what="every connection to be released")  # fmt: skip
    wait_for(lambda: open_fds(ambassador) <= baseline, what=f"open fds back to {baseline}")
    assert ambassador.process.alive()
    with redis.Redis(host=HOST, port=ambassador.port) as conn:
        assert conn.ping()


def test_metrics_pass_promtool(ambassador):
    import subprocess

    from tests.servers import require_binary

    promtool = require_binary("promtool")
    text = ambassador.metrics()
    result = subprocess.run([promtool, "check", "metrics"], input=text.encode(),
                            capture_output=True, check=False)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
