"""redis-ambassador with TLS to Redis and to Sentinel, client certificates required.

A throwaway CA (openssl) signs one certificate for 127.0.0.1, used by the servers and as
the ambassador's client certificate. Redis and Sentinel keep a plain port for the
fixture's own checks; the ambassador only gets the TLS ports.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import redis

from podkit_dev.servers import HOST, RedisServer, SentinelServer, free_port
from tests.integration.redis_ambassador.kit import current_master
from tests.servers import require_binary


def make_pki(directory: Path) -> dict[str, str]:
    openssl = require_binary("openssl")
    ca_key, ca_cert = directory / "ca.key", directory / "ca.crt"
    key, csr, cert = directory / "node.key", directory / "node.csr", directory / "node.crt"
    ext = directory / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=podkit-ca",
        "-keyout", str(ca_key), "-out", str(ca_cert))  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", str(key), "-out", str(csr))  # fmt: skip
    run("x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert))  # fmt: skip
    return {"ca": str(ca_cert), "cert": str(cert), "key": str(key)}


def tls_args(pki: dict[str, str], tls_port: int) -> list[str]:
    return [
        "--tls-port", str(tls_port), "--tls-cert-file", pki["cert"], "--tls-key-file", pki["key"],
        "--tls-ca-cert-file", pki["ca"], "--tls-auth-clients", "yes",
    ]  # fmt: skip


@pytest.fixture
def tls_setup(tmp_path):
    pki = make_pki(tmp_path)
    master_tls = free_port()
    master = RedisServer(args=tls_args(pki, master_tls))
    sentinel_tls = free_port()
    sentinel = SentinelServer("tlsmaster", SimpleNamespace(port=master_tls), quorum=1)  # type: ignore[arg-type]
    with sentinel.config.open("a") as config:
        config.write(
            f"tls-port {sentinel_tls}\ntls-cert-file {pki['cert']}\ntls-key-file {pki['key']}\n"
            f"tls-ca-cert-file {pki['ca']}\ntls-auth-clients yes\ntls-replication yes\n"
        )
    started = []
    try:
        for server in (master, sentinel):
            server.start()
            started.append(server)
        yield SimpleNamespace(
            pki=pki, master=master, master_tls=master_tls, sentinel_tls=sentinel_tls
        )
    finally:
        for server in (master, sentinel):
            server.cleanup()


def test_tls_to_sentinel_and_redis_with_client_certificate(run_helper, tls_setup):
    pki = tls_setup.pki
    port = free_port()
    helper = run_helper(
        "redis-ambassador",
        "--sentinels", f"{HOST}:{tls_setup.sentinel_tls}", "--master-name", "tlsmaster",
        "--listen", f"{HOST}:{port}",
        "--sentinel-tls", "--redis-tls",
        "--tls-ca-file", pki["ca"], "--tls-cert-file", pki["cert"], "--tls-key-file", pki["key"],
    )  # fmt: skip
    assert current_master(helper) == f"{HOST}:{tls_setup.master_tls}"
    # The application speaks plain RESP to localhost; the ambassador wraps it in TLS.
    with redis.Redis(host=HOST, port=port, socket_timeout=5) as client:
        assert client.set("over", "tls")
        assert client.get("over") == b"tls"
    assert tls_setup.master.command("GET", "over") == b"$3\r\ntls\r\n"


def test_tls_without_client_certificate_is_not_ready(run_helper, tls_setup):
    helper = run_helper(
        "redis-ambassador",
        "--sentinels", f"{HOST}:{tls_setup.sentinel_tls}", "--master-name", "tlsmaster",
        "--listen", f"{HOST}:{free_port()}",
        "--sentinel-tls", "--redis-tls", "--tls-ca-file", tls_setup.pki["ca"],
        wait="startupz",
    )  # fmt: skip
    assert helper.get("/readyz")[0] == 503
    assert "redis_ambassador_discovery_errors_total{" in helper.metrics()
    assert helper.process.alive()
