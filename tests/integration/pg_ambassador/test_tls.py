"""pg-ambassador TLS against a real PostgreSQL (ssl=on, a throwaway CA made with openssl)
and real clients (psql, asyncpg) talking TLS to the tiny auth proxy of pg_auth_kit; at the
end, the ambassador itself with its pool talking TLS to PostgreSQL (require, verify-full).

The server's pg_hba lets `tls_only` in over `hostssl` only, so a login as that user proves
the connection really was encrypted; `pg_stat_ssl` says so for the others.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import os
import ssl
import subprocess
import time

import asyncpg
import pytest

from podkit.ambassadors.postgres.auth import AuthError, Credentials
from podkit.ambassadors.postgres.tls import (
    ServerTls,
    TlsConfigError,
    TlsError,
    after_ssl_answer,
    client_tls_context,
    reload_client_tls,
    server_tls,
    ssl_answer,
)
from podkit_dev.servers import HOST, PostgresServer, until
from tests.integration.pg_ambassador import kit
from tests.integration.pg_ambassador.auth_kit import AuthProxy, login
from tests.servers import serve

PASSWORD = "tls-password"
HBA = [
    f"hostssl all tls_only {HOST}/32 scram-sha-256",
    f"hostnossl all tls_only {HOST}/32 reject",
]


@pytest.fixture(scope="module")
def pg(pki):
    good = pki["good"]

    def start(server: PostgresServer) -> None:
        server.start()
        server.add_user("app", PASSWORD)
        server.add_user("tls_only", PASSWORD)

    yield from serve(
        lambda: PostgresServer(
            auth="scram-sha-256",
            hba=HBA,
            password_encryption="scram-sha-256",
            ssl_cert=(good["cert"], good["key"]),
        ),
        start,
    )


async def encrypted(conn) -> bool:
    rows = await conn.query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    return rows == [["t"]]


@pytest.mark.parametrize("mode", ["disable", "prefer", "require", "verify-ca", "verify-full"])
async def test_modes_against_a_tls_server(pg, pki, mode):
    tls = server_tls(mode, ca_file=pki["good"]["ca"] if mode.startswith("verify") else None)
    conn = await login(pg.port, "app", PASSWORD, tls=tls)
    try:
        assert conn.tls == (mode != "disable")
        assert await encrypted(conn) == (mode != "disable")
    finally:
        await conn.close()
    if mode == "disable":
        with pytest.raises(AuthError) as caught:
            await login(pg.port, "tls_only", PASSWORD, tls=tls)
        assert caught.value.sqlstate == "28000"  # no pg_hba.conf entry ... no encryption
    else:
        conn = await login(pg.port, "tls_only", PASSWORD, tls=tls)
        assert await conn.query("SELECT current_user") == [["tls_only"]]
        await conn.close()


async def test_verify_full_checks_the_host_name(pg, pki):
    tls = server_tls("verify-full", ca_file=pki["good"]["ca"], hostname="db.example")
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        await login(pg.port, "app", PASSWORD, tls=tls)
    # localhost is in the certificate's SAN, and verify-ca does not look at names at all.
    conn = await login(pg.port, "app", PASSWORD, tls=server_tls("verify-full", pki["good"]["ca"]),
                       host="localhost")  # fmt: skip
    await conn.close()
    tls = server_tls("verify-ca", ca_file=pki["good"]["ca"], hostname="db.example")
    await (await login(pg.port, "app", PASSWORD, tls=tls)).close()


@pytest.mark.parametrize("mode", ["verify-ca", "verify-full", "require"])
async def test_a_certificate_from_another_ca_is_refused(pg, pki, mode):
    tls = server_tls(mode, ca_file=pki["other"]["ca"])
    with pytest.raises(ssl.SSLCertVerificationError):
        await login(pg.port, "app", PASSWORD, tls=tls)


async def test_a_server_without_tls(pg, pki):
    """The auth proxy with no client TLS answers N, as PostgreSQL with ssl=off does."""
    creds = Credentials.single("app", PASSWORD)
    async with AuthProxy("scram", creds, pg.port, PASSWORD) as proxy:
        conn = await login(proxy.port, "app", PASSWORD, tls=server_tls("prefer"))
        assert not conn.tls
        await conn.close()
        for mode in ("require", "verify-full"):
            with pytest.raises(TlsError, match="does not accept TLS"):
                await login(proxy.port, "app", PASSWORD, tls=server_tls(mode, pki["good"]["ca"]))


# --- TLS towards the applications ----------------------------------------------------------------


async def run_psql(port: int, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    proc = await asyncio.create_subprocess_exec(
        "psql", "-h", "localhost", "-p", str(port), "-U", "app", "-d", "postgres", "-XAtw",
        "-c", "SELECT current_user", env={**os.environ, "PGPASSWORD": PASSWORD, **env},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    return subprocess.CompletedProcess([], proc.returncode or 0, out.decode(), err.decode())


async def test_clients_talk_tls_to_the_ambassador(pg, pki):
    good = pki["good"]
    context = client_tls_context(good["cert"], good["key"])
    creds = Credentials.single("app", PASSWORD)
    async with AuthProxy("scram", creds, pg.port, PASSWORD, client_tls=context) as proxy:
        done = await run_psql(
            proxy.port, {"PGSSLMODE": "verify-full", "PGSSLROOTCERT": str(good["ca"])}
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "app"
        refused = await run_psql(
            proxy.port, {"PGSSLMODE": "verify-full", "PGSSLROOTCERT": str(pki["other"]["ca"])}
        )
        assert refused.returncode != 0 and "certificate verify failed" in refused.stderr
        client_ctx = ssl.create_default_context(cafile=str(good["ca"]))
        conn = await asyncpg.connect(
            host="localhost", port=proxy.port, user="app", password=PASSWORD,
            database="postgres", ssl=client_ctx,
        )  # fmt: skip
        assert await conn.fetchval("SELECT current_user") == "app"
        await conn.close()
        mine = await login(proxy.port, "app", PASSWORD, tls=server_tls("verify-full", good["ca"]))
        assert mine.tls
        await mine.close()


async def test_client_certificates_when_a_ca_is_given(pg, pki):
    good = pki["good"]
    context = client_tls_context(good["cert"], good["key"], ca_file=good["ca"])
    creds = Credentials.single("app", PASSWORD)
    async with AuthProxy("scram", creds, pg.port, PASSWORD, client_tls=context) as proxy:
        base = {"PGSSLMODE": "verify-full", "PGSSLROOTCERT": str(good["ca"])}
        with_cert = await run_psql(
            proxy.port, {**base, "PGSSLCERT": str(good["cert"]), "PGSSLKEY": str(good["key"])}
        )
        assert with_cert.returncode == 0, with_cert.stderr
        without = await run_psql(proxy.port, {**base, "PGSSLCERT": "/nonexistent"})
        assert without.returncode != 0


def test_ssl_answers():
    tls = server_tls("prefer")
    assert after_ssl_answer(tls, b"S") is True
    assert after_ssl_answer(tls, b"N") is False
    with pytest.raises(TlsError, match="data after accepting TLS"):
        after_ssl_answer(tls, b"SE\0\0\0\x04")  # CVE-2021-23222: bytes before the handshake
    for data, match in [(b"", "closed"), (b"E", "error"), (b"X", "not S or N")]:
        with pytest.raises(TlsError, match=match):
            after_ssl_answer(tls, data)
    assert not server_tls("disable").request and server_tls("disable").context is None
    assert ServerTls("require", None).required
    assert ssl_answer(None) == b"N"


def test_bad_tls_settings_are_config_errors(pki, tmp_path):
    good, other = pki["good"], pki["other"]
    with pytest.raises(TlsConfigError, match="not one of"):
        server_tls("verify-everything")
    with pytest.raises(TlsConfigError, match="does not exist"):
        server_tls("verify-full", ca_file=tmp_path / "missing.crt")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(TlsConfigError, match="cannot be loaded"):
        server_tls("verify-ca", ca_file=garbage)
    with pytest.raises(TlsConfigError, match="cannot be loaded"):
        client_tls_context(good["cert"], other["key"])  # key of another certificate
    with pytest.raises(TlsConfigError, match="go together"):
        server_tls("require", cert_file=good["cert"])


async def test_a_renewed_certificate_is_used_for_new_connections(pg, pki):
    """A Secret with a new certificate (another CA here): reload_client_tls swaps it live."""
    good, other = pki["good"], pki["other"]
    context = client_tls_context(good["cert"], good["key"])
    creds = Credentials.single("app", PASSWORD)
    async with AuthProxy("scram", creds, pg.port, PASSWORD, client_tls=context) as proxy:
        before = server_tls("verify-full", other["ca"])
        with pytest.raises(ssl.SSLCertVerificationError):
            await login(proxy.port, "app", PASSWORD, tls=before)
        reload_client_tls(context, other["cert"], other["key"])
        conn = await login(proxy.port, "app", PASSWORD, tls=before)
        assert conn.tls
        await conn.close()


# --- the ambassador's pool talking TLS to PostgreSQL, end to end ---------------------------------


@pytest.fixture
def ambassador(pg):  # type: ignore[no-untyped-def]
    yield from kit.ambassadors(pg)


@pytest.mark.parametrize("mode", ["require", "verify-full"])
async def test_results_through_a_pool_talking_tls_to_postgres(ambassador, pg, pki, tmp_path, mode):
    """`tls_only` may log in over hostssl only: the pool's server connections are TLS."""
    password = tmp_path / "password"
    password.write_text(PASSWORD)
    amb = ambassador(
        server_host="localhost" if mode == "verify-full" else HOST,
        server_tls_mode=mode,
        server_tls_ca_file=str(pki["good"]["ca"]) if mode == "verify-full" else None,
        server_user="tls_only", password_file=str(password), pool_size=2,
    )  # fmt: skip
    conns = [await asyncpg.connect(amb.dsn()) for _ in range(3)]
    try:
        for conn in conns:
            row = await conn.fetchrow(
                "select current_user, ssl from pg_stat_ssl where pid = pg_backend_pid()"
            )
            assert tuple(row) == ("tls_only", True)
        # results big enough to span many TLS records, both protocols, checked here
        text = "".join(chr(0x20 + i % 0x5E) for i in range(300_000)) + "é✓"
        echoed = await asyncio.gather(*(c.fetchval("select $1::text", text) for c in conns))
        assert echoed == [text] * 3
        big = await conns[0].fetch("select i, md5(i::text) from generate_series(1, 50000) i")
        assert [(r[0], r[1]) for r in big] == [
            (i, hashlib.md5(str(i).encode()).hexdigest()) for i in range(1, 50001)
        ]
        await conns[1].execute("create temp table t as select repeat('x', 1000000) as v")
        assert await conns[1].fetchval("select length(v) from t") == 1_000_000
        pool = next(iter(amb.amb.pools.values()))
        idle = amb.call(pool.idle_servers)
        assert idle and all(server.tls for server in idle)
    finally:
        for conn in conns:
            await conn.close()


async def test_verify_full_refuses_a_server_whose_name_does_not_match(ambassador, pg, pki):
    async def db_example(host: str, port: int) -> list[tuple[str, int]]:
        return [(HOST, port)]  # db.example is 127.0.0.1, not in the certificate

    amb = ambassador(server_host="db.example", server_tls_mode="verify-full",
                     server_tls_ca_file=str(pki["good"]["ca"]), server_user="app",
                     password_file=None)  # fmt: skip
    amb.call(lambda: setattr(amb.amb, "resolve", db_example))
    with pytest.raises(asyncpg.PostgresError) as refused:
        await asyncpg.connect(amb.dsn(user="app"))
    assert "certificate verify failed" in str(refused.value), refused.value
    assert "db.example" in str(refused.value) and "mismatch" in str(refused.value)


async def show(port: int, command: str, env: dict[str, str]) -> list[dict[str, str]]:
    """A console command through psql, its rows by column name."""
    done = await asyncio.to_thread(
        subprocess.run,
        [kit.pg_binary("psql"), "-X", "--csv", "-h", HOST, "-p", str(port), "-U", "console",
         "-d", "pgbouncer", "-c", command],
        capture_output=True, text=True, timeout=30, env={**os.environ, **env},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return list(csv.DictReader(io.StringIO(done.stdout)))


async def test_show_clients_and_servers_tell_tls_and_request_time(ambassador, pg, pki):
    """SHOW CLIENTS/SERVERS' `tls` is the connection's protocol/cipher (empty when plain),
    `request_time` when its latest request came, as in PgBouncer."""
    good = pki["good"]
    amb = ambassador(
        server_tls_mode="require", server_user="app", password=PASSWORD, pool_size=2,
        client_tls_cert_file=str(good["cert"]), client_tls_key_file=str(good["key"]),
    )  # fmt: skip
    context = ssl.create_default_context(cafile=str(good["ca"]))
    secure = await asyncpg.connect(host=HOST, port=amb.port, user="secure",
                                   database="postgres", ssl=context)  # fmt: skip
    plain = await asyncpg.connect(host=HOST, port=amb.port, user="plain",
                                  database="postgres", ssl=False)  # fmt: skip
    try:
        assert await plain.fetchval("select 1") == 1
        # times are shown to the second: the secure client's query comes a second later
        started = time.time()
        await until(lambda: time.time() >= int(started) + 1.05, timeout=5, what="the next second")
        assert await secure.fetchval("select current_user") == "app"
        tls_console = {"PGSSLMODE": "require"}
        clients = {row["user"]: row for row in await show(amb.port, "SHOW CLIENTS", tls_console)}
        assert clients["secure"]["tls"].startswith("TLSv1."), clients["secure"]
        assert "/" in clients["secure"]["tls"]
        assert clients["plain"]["tls"] == ""
        assert clients["console"]["tls"].startswith("TLSv1.")  # psql itself, over TLS
        assert clients["secure"]["request_time"] > clients["secure"]["connect_time"]
        assert clients["plain"]["request_time"] < clients["secure"]["request_time"]
        plain_console = await show(amb.port, "SHOW CLIENTS", {"PGSSLMODE": "disable"})
        assert [row["tls"] for row in plain_console if row["user"] == "console"] == [""]
        servers = await show(amb.port, "SHOW SERVERS", {"PGSSLMODE": "disable"})
        assert servers and all(row["tls"].startswith("TLSv1.") for row in servers), servers
        assert all(row["request_time"] >= row["connect_time"] for row in servers), servers
    finally:
        await secure.close()
        await plain.close()
