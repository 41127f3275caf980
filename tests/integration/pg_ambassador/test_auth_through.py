"""Logins through pg-ambassador end to end: SCRAM both ways, md5, TLS to the application.

(auth.py/tls.py are tested on their own in test_pg_auth.py and test_pg_tls.py; here the
ambassador's client and server connections use them.)
"""

from __future__ import annotations

import ssl

import asyncpg
import psycopg
import pytest

from podkit.ambassadors.postgres.scram import make_verifier
from tests.integration.pg_ambassador import kit
from tests.integration.pg_ambassador.auth_kit import make_pki
from tests.servers import require_binary


@pytest.fixture
def scram_pg(postgres_factory):
    server = postgres_factory(
        auth="scram-sha-256",
        password_encryption="scram-sha-256",
        hba=["host all legacy 127.0.0.1/32 md5"],  # its password is stored as md5
    )
    server.wait_accepting()
    server.add_user("app", "app-secret")
    server.add_user("legacy", "old-secret", encryption="md5")
    return server


@pytest.fixture
def ambassador(scram_pg):
    yield from kit.ambassadors(scram_pg)


async def test_scram_from_the_app_and_to_postgres_with_an_auth_file(
    ambassador, scram_pg, tmp_path
) -> None:
    userlist = tmp_path / "userlist.txt"
    userlist.write_text(f'"app" "{make_verifier("app-secret")}"\n"legacy" "old-secret"\n')
    password = tmp_path / "password"
    password.write_text("app-secret\n")
    amb = ambassador(
        client_auth="scram", auth_file=str(userlist), password_file=str(password),
        server_user="app", pool_size=2,
    )  # fmt: skip
    dsn = f"postgresql://app:app-secret@127.0.0.1:{amb.port}/postgres"
    conns = [await asyncpg.connect(dsn) for _ in range(4)]
    for i, conn in enumerate(conns):
        assert await conn.fetchval("select current_user || $1::text", str(i)) == f"app{i}"
    for conn in conns:
        await conn.close()
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(f"postgresql://app:wrong@127.0.0.1:{amb.port}/postgres")
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(f"postgresql://nobody:x@127.0.0.1:{amb.port}/postgres")
    # psycopg (libpq) too
    with psycopg.connect(dsn, sslmode="disable") as conn:
        assert conn.execute("select 1").fetchone() == (1,)


async def test_scram_keys_of_the_app_log_the_pool_in_without_a_server_password(
    ambassador, scram_pg, tmp_path
) -> None:
    # The app's verifier in the userlist is the one PostgreSQL stores: the ambassador needs
    # no password of its own (SCRAM passthrough).
    stored = scram_pg.sql("select rolpassword from pg_authid where rolname = 'app'")
    userlist = tmp_path / "userlist.txt"
    userlist.write_text(f'"app" "{stored}"\n')
    amb = ambassador(client_auth="scram", auth_file=str(userlist), pool_size=1)
    conn = await asyncpg.connect(f"postgresql://app:app-secret@127.0.0.1:{amb.port}/postgres")
    assert await conn.fetchval("select current_user") == "app"
    await conn.close()


async def test_md5_to_the_app_and_tls_to_the_app(ambassador, scram_pg, tmp_path) -> None:
    pki = make_pki(tmp_path, require_binary("openssl"))
    userlist = tmp_path / "userlist.txt"
    userlist.write_text('"legacy" "old-secret"\n')
    password = tmp_path / "password"
    password.write_text("old-secret")  # the pool logs in as legacy (stored as md5)
    amb = ambassador(
        client_auth="md5", auth_file=str(userlist), password_file=str(password),
        client_tls_cert_file=str(pki["cert"]), client_tls_key_file=str(pki["key"]),
    )  # fmt: skip
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    conn = await asyncpg.connect(
        f"postgresql://legacy:old-secret@127.0.0.1:{amb.port}/postgres", ssl=context
    )
    assert await conn.fetchval("select current_user") == "legacy"
    assert conn.get_server_pid() != 0
    await conn.close()
    with psycopg.connect(
        f"postgresql://legacy:old-secret@127.0.0.1:{amb.port}/postgres",
        sslmode="verify-full", sslrootcert=str(pki["ca"]),
    ) as pconn:  # fmt: skip
        assert pconn.execute("select 2").fetchone() == (2,)
        assert pconn.info.pgconn.ssl_in_use
