"""Test scaffolding for pg-ambassador auth: a minimal asyncio PostgreSQL driver that logs in
with `ServerAuth`, and a tiny auth proxy that checks real clients with `ClientAuth`, logs in
upstream with `ServerAuth` and then pipes bytes. Neither is the ambassador's core: they
exercise auth.py and tls.py against real servers and real clients.

Logins, startup packets and framing are production's own (auth.py, protocol.py,
server.read_message): what is checked against PostgreSQL is the code the ambassador runs.
What stands on the other side, independently of that code, is PostgreSQL itself and the
real clients (asyncpg, psycopg, psql) the tests send through `AuthProxy`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import struct
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from podkit.ambassadors.postgres import protocol as pq
from podkit.ambassadors.postgres.auth import AuthError, ClientAuth, ServerAuth
from podkit.ambassadors.postgres.scram import ScramKeys
from podkit.ambassadors.postgres.server import read_message
from podkit.ambassadors.postgres.tls import SSL_REQUEST, ServerTls, after_ssl_answer
from podkit_dev.servers import HOST


class QueryError(Exception):
    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__(fields.get("M", "error"))
        self.fields = fields


def _auth_error_response(exc: AuthError) -> bytes:
    """The ErrorResponse a refused client gets, as pg-ambassador sends it."""
    return pq.error_response(exc.client_message, exc.sqlstate, severity="FATAL")


@dataclass
class Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    auth: ServerAuth
    parameters: dict[str, str] = field(default_factory=dict)
    tls: bool = False

    async def query(self, sql: str) -> list[list[str | None]]:
        """Simple-protocol query; the rows of the last result, as text."""
        self.writer.write(pq.query(sql))
        rows: list[list[str | None]] = []
        error: dict[str, str] | None = None
        while True:
            kind, body = await read_message(self.reader)
            if kind == b"T":
                rows = []
            elif kind == b"D":
                rows.append(_data_row(body))
            elif kind == b"E":
                error = pq.parse_error_fields(pq.message(kind, body))
            elif kind == b"Z":
                if error is not None:
                    raise QueryError(error)
                return rows

    async def close(self) -> None:
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            self.writer.write(pq.TERMINATE)
            self.writer.close()
            await self.writer.wait_closed()


def _data_row(body: bytes) -> list[str | None]:
    # The ambassador passes DataRows through unread: production has no parser to call.
    (count,) = struct.unpack_from("!h", body)
    pos, out = 2, []
    for _ in range(count):
        (length,) = struct.unpack_from("!i", body, pos)
        pos += 4
        if length < 0:
            out.append(None)
        else:
            out.append(body[pos : pos + length].decode())
            pos += length
    return out


async def login(
    port: int,
    user: str,
    password: str | None = None,
    *,
    database: str = "postgres",
    scram_keys: ScramKeys | None = None,
    tls: ServerTls | None = None,
    host: str = HOST,
) -> Connection:
    """Connect, negotiate TLS per `tls` (tls.py), log in with ServerAuth, wait for ReadyForQuery."""
    reader, writer = await asyncio.open_connection(host, port)
    encrypted = False
    try:
        if tls is not None and tls.context is not None:
            writer.write(SSL_REQUEST)
            await writer.drain()
            answer = await reader.readexactly(1)
            if after_ssl_answer(tls, answer):
                await writer.start_tls(tls.context, server_hostname=tls.server_hostname(host))
                encrypted = True
        writer.write(
            pq.startup_message(
                {"user": user, "database": database, "application_name": "podkit-auth-test"}
            )
        )
        auth = ServerAuth(user, password, scram_keys=scram_keys)
        conn = Connection(reader, writer, auth, tls=encrypted)
        while True:
            kind, body = await read_message(reader)
            if kind in (b"R", b"E"):
                reply = auth.handle(kind, body)
                if reply is not None:
                    writer.write(reply)
            elif kind == b"S":
                name, value = pq.parse_parameter_status(pq.message(kind, body))
                conn.parameters[name] = value
            elif kind == b"Z":
                assert auth.done
                return conn
    except BaseException:
        writer.close()
        raise


# --- a tiny auth proxy for real clients -------------------------------------------------------


@dataclass
class AuthProxy:
    """Checks each client with ClientAuth(method, lookup), logs in upstream with ServerAuth
    (the configured password, or the client's SCRAM keys), then pipes bytes both ways."""

    method: str
    lookup: object
    upstream_port: int
    upstream_password: str | None = None
    client_tls: ssl.SSLContext | None = None
    port: int = 0
    failures: list[AuthError] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)
    _server: asyncio.Server | None = None

    async def __aenter__(self) -> AuthProxy:
        self._server = await asyncio.start_server(self._serve, HOST, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            try:
                await self._session(reader, writer)
            finally:
                writer.close()

    async def _read_startup(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> dict[str, str]:
        while True:
            head = await reader.readexactly(4)
            length = pq.startup_length(head)
            assert length is not None
            startup = pq.parse_startup(head + await reader.readexactly(length - 4))
            if startup.kind == "ssl" and self.client_tls is not None:
                writer.write(b"S")
                await writer.drain()
                await writer.start_tls(self.client_tls)
            elif startup.kind in ("ssl", "gssenc"):
                writer.write(b"N")
            else:
                return startup.params

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        params = await self._read_startup(reader, writer)
        user = params["user"]
        client_auth = ClientAuth(self.method, self.lookup)  # type: ignore[arg-type]
        writer.write(client_auth.start(user))
        try:
            while not client_auth.done:
                kind, body = await read_message(reader)
                writer.write(client_auth.handle(kind, body))
        except AuthError as exc:
            self.failures.append(exc)
            writer.write(_auth_error_response(exc))
            await writer.drain()
            return
        up_reader, up_writer = await asyncio.open_connection(HOST, self.upstream_port)
        server_auth = ServerAuth(user, self.upstream_password, scram_keys=client_auth.scram_keys)
        extra = {k: v for k, v in params.items() if k not in ("user", "database")}
        up_writer.write(
            pq.startup_message({"user": user, "database": params.get("database", user), **extra})
        )
        try:
            while not server_auth.done:
                kind, body = await read_message(up_reader)
                reply = server_auth.handle(kind, body)
                if reply is not None:
                    up_writer.write(reply)
        except AuthError as exc:
            self.failures.append(exc)
            writer.write(_auth_error_response(exc))
            await writer.drain()
            up_writer.close()
            return
        self.logins.append(user)
        await asyncio.gather(_pipe(up_reader, writer), _pipe(reader, up_writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


# --- a throwaway PKI --------------------------------------------------------------------------


def make_pki(directory: Path, openssl: str, name: str = "ca") -> dict[str, Path]:
    """A CA and one certificate it signs for 127.0.0.1 and localhost (server and client use)."""
    ca_key, ca_cert = directory / f"{name}.key", directory / f"{name}.crt"
    key, csr, cert = (directory / f"{name}-node.{ext}" for ext in ("key", "csr", "crt"))
    ext_file = directory / f"{name}-san.ext"
    ext_file.write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n"
    )

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-days", "2", "-subj", f"/CN=podkit-{name}",
        "-keyout", str(ca_key), "-out", str(ca_cert))  # fmt: skip
    run("req", *ec, "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(csr))
    run("x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "2", "-extfile", str(ext_file), "-out", str(cert))  # fmt: skip
    return {"ca": ca_cert, "cert": cert, "key": key}
