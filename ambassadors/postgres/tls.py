"""TLS both ways: SSLContexts from settings, and what PostgreSQL's SSLRequest answers mean.

Towards PostgreSQL (`--server-tls-mode`, libpq's sslmode names):

| mode | SSLRequest sent | server answers `N` | certificate checked |
| --- | --- | --- | --- |
| disable | no | - | - |
| prefer | yes | go on in plaintext | no |
| require | yes | fail | no (the chain only if `--server-tls-ca-file` is given, as libpq does) |
| verify-ca | yes | fail | chain against the CA file (system CAs if none) |
| verify-full | yes | fail | chain and host name |

The connection code writes `SSL_REQUEST` when `tls.request` is true, reads the one-byte
answer and calls `after_ssl_answer(tls, data)`: True means start the TLS handshake now
(with `tls.context`, `server_hostname=tls.server_hostname(host)`), False means go on in
plaintext; `TlsError` means close. Bytes after the `S` before the handshake are refused
(CVE-2021-23222: they would be read as if they came over TLS).

Towards the applications (`--client-tls-cert-file`, `--client-tls-key-file`, optional
`--client-tls-ca-file` to ask for client certificates): `client_tls_context()`; answer an
SSLRequest with `ssl_answer(context)` (`S` then handshake, or `N`). A renewed certificate
in a mounted Secret is picked up for new connections by `reload_client_tls()`.
"""

from __future__ import annotations

import ssl
import struct
from dataclasses import dataclass
from pathlib import Path

SSL_REQUEST_CODE = 80877103
SSL_REQUEST = struct.pack("!ii", 8, SSL_REQUEST_CODE)
SERVER_TLS_MODES: tuple[str, ...] = ("disable", "prefer", "require", "verify-ca", "verify-full")
ALPN = ["postgresql"]  # PostgreSQL 17 checks it on direct TLS; older servers ignore it


class TlsError(Exception):
    """TLS could not be set up or was refused; the message names the file or the peer."""


class TlsConfigError(TlsError, ValueError):
    """A TLS setting is wrong (mode, unreadable or mismatched files): exit 2 with it."""


@dataclass(frozen=True)
class ServerTls:
    """How to talk TLS to PostgreSQL: the mode and its SSLContext (None for `disable`)."""

    mode: str
    context: ssl.SSLContext | None
    hostname: str | None = None  # name to verify/send as SNI instead of the host dialled

    @property
    def request(self) -> bool:
        """Send an SSLRequest before the StartupMessage."""
        return self.context is not None

    @property
    def required(self) -> bool:
        return self.mode not in ("disable", "prefer")

    def server_hostname(self, host: str) -> str:
        return self.hostname or host


def server_tls(
    mode: str = "prefer",
    ca_file: str | Path | None = None,
    cert_file: str | Path | None = None,
    key_file: str | Path | None = None,
    hostname: str | None = None,
) -> ServerTls:
    """The ServerTls for `--server-tls-mode` and its files (client certificate optional)."""
    if mode not in SERVER_TLS_MODES:
        raise TlsConfigError(
            f"server TLS mode {mode!r} is not one of {', '.join(SERVER_TLS_MODES)}"
        )
    if mode == "disable":
        return ServerTls(mode, None, hostname)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(ALPN)
    verify = mode in ("verify-ca", "verify-full") or (mode == "require" and ca_file)
    if verify:
        context.verify_mode = ssl.CERT_REQUIRED
        context.check_hostname = mode == "verify-full"
        if ca_file:
            _load(context.load_verify_locations, "server TLS CA file", ca_file)
        else:
            context.load_default_certs()
    else:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cert_file or key_file:
        if not (cert_file and key_file):
            raise TlsConfigError("the server TLS certificate and key files go together")
        _load_chain(context, "server TLS", cert_file, key_file)
    return ServerTls(mode, context, hostname)


def after_ssl_answer(tls: ServerTls, data: bytes) -> bool:
    """What to do with the server's answer to SSLRequest (`data`: every byte read so far).

    True: handshake now. False: continue without TLS. TlsError: give up on this server.
    """
    if not data:
        raise TlsError("the server closed the connection after SSLRequest")
    answer = data[:1]
    if answer == b"S":
        if len(data) > 1:
            raise TlsError(
                "the server sent data after accepting TLS, before the handshake; refused "
                "(it could be injected by a man in the middle)"
            )
        return True
    if answer == b"N":
        if tls.required:
            raise TlsError(
                f"the server does not accept TLS (ssl=off?), and --server-tls-mode is {tls.mode}"
            )
        return False
    if answer == b"E":
        raise TlsError("the server answered SSLRequest with an error (not a PostgreSQL ≥ 7.0?)")
    raise TlsError(f"the server answered SSLRequest with {answer!r}, not S or N")


# --- towards the applications ---------------------------------------------------------------


def client_tls_context(
    cert_file: str | Path, key_file: str | Path, ca_file: str | Path | None = None
) -> ssl.SSLContext:
    """The server-side context for applications; with `ca_file`, they must show a cert it signs."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(ALPN)
    _load_chain(context, "client TLS", cert_file, key_file)
    if ca_file:
        _load(context.load_verify_locations, "client TLS CA file", ca_file)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def ssl_answer(context: ssl.SSLContext | None) -> bytes:
    """The one byte that answers an application's SSLRequest (GSSENCRequest always gets N)."""
    return b"S" if context is not None else b"N"


def reload_client_tls(context: ssl.SSLContext, cert_file: str | Path, key_file: str | Path) -> None:
    """Load a renewed certificate into the live context; new handshakes use it."""
    _load_chain(context, "client TLS", cert_file, key_file)


def _load_chain(
    context: ssl.SSLContext, what: str, cert_file: str | Path, key_file: str | Path
) -> None:
    for label, path in (("certificate", cert_file), ("key", key_file)):
        if not Path(path).is_file():
            raise TlsConfigError(f"{what} {label} file {path} does not exist or is not a file")
    try:
        context.load_cert_chain(str(cert_file), str(key_file))
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc.__class__.__name__
        raise TlsConfigError(
            f"{what} certificate {cert_file} and key {key_file} cannot be loaded ({reason})"
        ) from None


def _load(loader: object, what: str, path: str | Path) -> None:
    if not Path(path).is_file():
        raise TlsConfigError(f"{what} {path} does not exist or is not a file")
    try:
        loader(cafile=str(path))  # type: ignore[operator]
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc.__class__.__name__
        raise TlsConfigError(f"{what} {path} cannot be loaded ({reason})") from None


def describe(transport: object) -> str:
    """A connection's TLS as PgBouncer's SHOW CLIENTS/SERVERS `tls` column shows it
    (`TLSv1.3/TLS_AES_256_GCM_SHA384`; PgBouncer adds the key exchange group, which
    Python's ssl module does not tell), or "" for a plaintext connection."""
    get_extra_info = getattr(transport, "get_extra_info", None)
    ssl_object = get_extra_info("ssl_object") if get_extra_info is not None else None
    if ssl_object is None:
        return ""
    cipher = ssl_object.cipher()
    parts = [ssl_object.version(), cipher[0] if cipher else None]
    return "/".join(part for part in parts if part)


def check_ca_file(what: str, path: str | Path) -> None:
    """TlsConfigError unless `path` is a CA bundle OpenSSL can load."""
    _load(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations, what, path)
