"""Bounded HTTP GETs for the sources: http, https, and HTTP over a unix socket.

Targets are dialled with keep-alive, like Go's http.Client, so a scrape costs one request
and no handshake: http:// and unix: targets through the lean client of `http1.py` (a pool
per host and port or per socket path), https:// (and http:// with credentials in the URL)
through one pooled aiohttp session. Every failure becomes a `SourceError` whose message
says what went wrong in words a user can act on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from podkit.adapters.prometheus.api import SourceError
from podkit.adapters.prometheus.http1 import Http1Pool, HttpError
from podkit.tls import client_context

if TYPE_CHECKING:
    import aiohttp


def split_unix_uri(uri: str) -> tuple[str, str]:
    """`unix:/run/nginx.sock:/stub_status` -> ("/run/nginx.sock", "/stub_status")."""
    rest = uri.removeprefix("unix:")
    path, sep, request_path = rest.rpartition(":")
    if not sep or not path or not request_path.startswith("/"):
        # No request path given: the whole rest is the socket, ask for "/".
        return rest, "/"
    return path, request_path


def check_uri(uri: str) -> str:
    """Validate a scrape URI at config time; returns it unchanged."""
    if uri.startswith("unix:"):
        path, _ = split_unix_uri(uri)
        if not path.startswith("/"):
            raise ValueError(f"{uri!r}: the unix socket path must be absolute")
        return uri
    if not uri.startswith(("http://", "https://")):
        raise ValueError(f"{uri!r}: expected http://, https:// or unix:/path.sock:/path")
    return uri


class HttpClient:
    def __init__(self, max_body_size: int, *, verify: bool = True, ca_file: str = "") -> None:
        self.max_body_size = max_body_size
        self._ssl = client_context(verify=verify, ca_file=ca_file)
        self._tcp: aiohttp.ClientSession | None = None
        self._plain = Http1Pool(max_body_size)

    async def _get_plain(self, uri: str) -> bytes | None:
        """http:// and unix: targets through the lean client; None if it cannot take them."""
        if uri.startswith("unix:"):
            socket_path, request_path = split_unix_uri(uri)
            key: tuple[str, int] | str = socket_path
            host, path = "localhost", request_path
        else:
            parts = urlsplit(uri)
            if parts.scheme != "http" or parts.username or parts.password or not parts.hostname:
                return None
            try:
                port = parts.port or 80
            except ValueError:
                raise SourceError(f"bad port in {uri!r}") from None
            key, host = (parts.hostname, port), parts.netloc
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            status, body = await self._plain.get(key, host, path)
        except HttpError as exc:
            raise SourceError(str(exc)) from None
        if status != 200:
            raise SourceError(f"HTTP status {status} (expected 200)")
        return body

    def _session(self) -> aiohttp.ClientSession:
        import aiohttp

        if self._tcp is None:
            timeout = aiohttp.ClientTimeout(total=None)  # the scrape's own timeout bounds it
            connector = aiohttp.TCPConnector(ssl=self._ssl, limit=0, keepalive_timeout=60)
            self._tcp = aiohttp.ClientSession(
                connector=connector, timeout=timeout, auto_decompress=False
            )
        return self._tcp

    async def get(self, uri: str) -> bytes:
        """The body of a 200 answer, at most max_body_size bytes, or SourceError."""
        body = await self._get_plain(uri)
        if body is not None:
            return body
        # https (and what the lean client cannot take) goes through aiohttp, imported only
        # then: it costs about 11 MiB of RSS that a plain-http exporter never needs.
        import aiohttp

        session = self._session()
        try:
            async with session.get(uri, allow_redirects=False) as response:
                if response.status != 200:
                    raise SourceError(f"HTTP status {response.status} (expected 200)")
                length = response.content_length
                if length is not None and length > self.max_body_size:
                    raise SourceError(
                        f"body of {length} bytes is over --max-body-size {self.max_body_size}"
                    )
                return await self._read_capped(response)
        except SourceError:
            raise
        except aiohttp.ClientPayloadError as exc:
            raise SourceError(f"truncated or malformed body: {exc}") from None
        except aiohttp.ClientConnectorError as exc:
            raise SourceError(f"cannot connect: {exc.os_error.strerror or exc}") from None
        except aiohttp.ClientError as exc:
            raise SourceError(f"{type(exc).__name__}: {exc}") from None
        except (OSError, ValueError) as exc:  # bad URL parts, resets outside aiohttp's wrapping
            raise SourceError(f"{type(exc).__name__}: {exc}") from None

    async def _read_capped(self, response: aiohttp.ClientResponse) -> bytes:
        return await read_capped(response.content.readany, self.max_body_size, "body")

    async def close(self) -> None:
        self._plain.close()
        session, self._tcp = self._tcp, None
        if session is not None:
            await session.close()


async def read_capped(
    read_chunk: Callable[[], Awaitable[bytes]], max_size: int, what: str
) -> bytes:
    """Chunks until EOF, refused (SourceError) once they pass `max_size` bytes in all."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await read_chunk():
        size += len(chunk)
        if size > max_size:
            raise SourceError(f"{what} is over --max-body-size {max_size} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def unix_command(path: str, command: bytes, max_size: int) -> bytes:
    """Send one command to a unix stream socket (HAProxy's stats socket) and read to EOF."""
    try:
        reader, writer = await asyncio.open_unix_connection(path)
    except FileNotFoundError:
        raise SourceError(f"unix socket {path} does not exist") from None
    except OSError as exc:
        raise SourceError(f"cannot connect to {path}: {exc.strerror or exc}") from None
    try:
        writer.write(command)
        await writer.drain()
        return await read_capped(lambda: reader.read(65536), max_size, "answer")
    except OSError as exc:
        raise SourceError(f"reading {path}: {exc.strerror or exc}") from None
    finally:
        writer.close()
