"""pg-ambassador auth against a real PostgreSQL and real clients.

Towards the server: a minimal driver (pg_auth_kit.login) logs in with ServerAuth to a
PostgreSQL whose pg_hba asks for scram-sha-256, md5 or password per user, with passwords
stored as SCRAM verifiers or md5 hashes. Towards the clients: asyncpg, psycopg 3 and psql
(PGPASSWORD) log in to a tiny auth proxy that checks them with ClientAuth against a
PgBouncer userlist.txt, then logs in upstream with ServerAuth and pipes the bytes.
"""

from __future__ import annotations

import asyncio
import os
import subprocess

import asyncpg
import psycopg
import pytest

from podkit.ambassadors.postgres.auth import (
    AuthError,
    Credentials,
    md5_inner,
)
from podkit.ambassadors.postgres.scram import make_verifier
from podkit_dev.servers import HOST, PostgresServer
from tests.integration.pg_ambassador.auth_kit import AuthProxy, login
from tests.servers import serve

PASSWORD = "Sw0rdfish-'\"\\ x"
UNICODE_PASSWORD = "pa\u00dfw\u00f6rd\u00a0\u2168"  # SASLprep maps U+00A0 and NFKC's U+2168

HBA = [
    f"host all scram_user {HOST}/32 scram-sha-256",
    f"host all md5_user {HOST}/32 md5",
    f"host all md5_scram_stored {HOST}/32 md5",  # md5 line, SCRAM stored: server uses SCRAM
    f"host all clear_user {HOST}/32 password",
    f"host all trusted {HOST}/32 trust",
]


@pytest.fixture(scope="module")
def pg():
    """One server for the module (initdb takes seconds); the tests only log in and read."""

    def start(server: PostgresServer) -> None:
        server.start()
        server.add_user("scram_user", PASSWORD)
        server.add_user("md5_user", PASSWORD, encryption="md5")
        server.add_user("md5_scram_stored", PASSWORD)
        server.add_user("clear_user", PASSWORD)
        server.add_user("trusted", None)
        server.add_user("unicode_user", UNICODE_PASSWORD)
        server.add_user("postgres", PASSWORD)

    yield from serve(
        lambda: PostgresServer(auth="scram-sha-256", hba=HBA, password_encryption="scram-sha-256"),
        start,
    )


def stored_secret(pg, user: str) -> str:
    return pg.sql(f"SELECT rolpassword FROM pg_authid WHERE rolname = '{user}'")


@pytest.mark.parametrize(
    ("user", "method"),
    [
        ("scram_user", "scram-sha-256"),
        ("md5_user", "md5"),
        ("md5_scram_stored", "scram-sha-256"),
        ("clear_user", "password"),
        ("trusted", None),
        ("unicode_user", "scram-sha-256"),
    ],
)
async def test_server_auth_logs_in_to_postgres(pg, user, method):
    password = UNICODE_PASSWORD if user == "unicode_user" else PASSWORD
    conn = await login(pg.port, user, password)
    try:
        assert conn.auth.method == method
        assert await conn.query("SELECT current_user") == [[user]]
        assert "server_version" in conn.parameters
    finally:
        await conn.close()


async def test_stored_md5_hash_works_as_md5_password(pg):
    stored = stored_secret(pg, "md5_user")
    assert stored == "md5" + md5_inner(PASSWORD, "md5_user")
    conn = await login(pg.port, "md5_user", stored)
    assert await conn.query("SELECT 1") == [["1"]]
    await conn.close()


@pytest.mark.parametrize("user", ["scram_user", "md5_user", "clear_user"])
async def test_wrong_password_is_the_servers_error_without_the_password(pg, user):
    with pytest.raises(AuthError) as caught:
        await login(pg.port, user, "not-" + PASSWORD)
    assert caught.value.sqlstate == "28P01"
    assert "password authentication failed" in caught.value.client_message
    assert PASSWORD not in str(caught.value)


async def test_no_password_configured(pg):
    with pytest.raises(AuthError, match="no password is configured"):
        await login(pg.port, "scram_user", None)


# --- real clients through ClientAuth -------------------------------------------------------------


def userlist(pg) -> str:
    """PgBouncer userlist: a SCRAM verifier copied from the server, an md5 hash, plain text."""
    return (
        f'"scram_user" "{stored_secret(pg, "scram_user")}"\n'
        f'"md5_user" "{stored_secret(pg, "md5_user")}"\n'
        f'"postgres" "{PASSWORD.replace(chr(34), chr(34) * 2)}"\n'
        f'"clear_user" "{make_verifier(PASSWORD)}"\n'
    )


@pytest.fixture
def credentials(pg, tmp_path):
    path = tmp_path / "userlist.txt"
    path.write_text(userlist(pg))
    return Credentials.from_auth_file(path)


CLIENT_CASES = [
    # (client method, user, expected mechanism)
    ("scram", "postgres", "scram-sha-256"),  # plain password stored
    ("scram", "scram_user", "scram-sha-256"),  # SCRAM verifier stored: upstream via its keys
    ("md5", "md5_user", "md5"),  # md5 hash stored
    ("md5", "postgres", "md5"),  # plain password stored
    ("md5", "clear_user", "scram-sha-256"),  # verifier stored: md5 turns into SCRAM
    ("trust", "postgres", "trust"),
]


def upstream_password(user: str) -> str | None:
    """What the ambassador holds for the upstream login: nothing for scram_user (its SCRAM
    keys from the client's own login do it), the password for the others."""
    return None if user == "scram_user" else PASSWORD


async def run_asyncpg(port: int, user: str, password: str) -> str:
    conn = await asyncpg.connect(
        host=HOST, port=port, user=user, password=password, database="postgres", ssl=False
    )
    try:
        return await conn.fetchval("SELECT current_user")
    finally:
        await conn.close()


async def run_psycopg(port: int, user: str, password: str) -> str:
    async with await psycopg.AsyncConnection.connect(
        host=HOST, port=port, user=user, password=password, dbname="postgres", sslmode="disable"
    ) as conn:
        cursor = await conn.execute("SELECT current_user")
        row = await cursor.fetchone()
        assert row is not None
        return row[0]


async def run_psql(port: int, user: str, password: str) -> str:
    env = {**os.environ, "PGPASSWORD": password, "PGSSLMODE": "prefer", "PGCONNECT_TIMEOUT": "10"}
    proc = await asyncio.create_subprocess_exec(
        "psql", "-h", HOST, "-p", str(port), "-U", user, "-d", "postgres", "-XAtw",
        "-c", "SELECT current_user",
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    if proc.returncode != 0:
        raise RuntimeError(err.decode())
    return out.decode().strip()


CLIENTS = {"asyncpg": run_asyncpg, "psycopg": run_psycopg, "psql": run_psql}


@pytest.mark.parametrize("client", list(CLIENTS))
@pytest.mark.parametrize(("method", "user", "mechanism"), CLIENT_CASES)
async def test_real_clients_log_in_through_client_auth(
    pg, credentials, client, method, user, mechanism
):
    async with AuthProxy(method, credentials, pg.port, upstream_password(user)) as proxy:
        assert await CLIENTS[client](proxy.port, user, PASSWORD) == user
    assert proxy.logins == [user] and not proxy.failures


@pytest.mark.parametrize("client", list(CLIENTS))
@pytest.mark.parametrize("method", ["scram", "md5"])
async def test_real_clients_wrong_password_and_unknown_user(pg, credentials, client, method):
    async with AuthProxy(method, credentials, pg.port, PASSWORD) as proxy:
        for user, password in [("postgres", "wrong"), ("nobody", PASSWORD)]:
            with pytest.raises(Exception, match="password authentication failed") as caught:
                await CLIENTS[client](proxy.port, user, password)
            assert PASSWORD not in str(caught.value)
    assert [f.sqlstate for f in proxy.failures] == ["28P01", "28P01"]
    assert not proxy.logins
