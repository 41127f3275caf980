"""Authentication both ways, as sans-I/O state machines the connection Protocols drive.

Towards PostgreSQL, `ServerAuth(user, password)` answers the server's Authentication
requests (SCRAM-SHA-256, md5, cleartext):

    auth = ServerAuth("app", password)
    reply = auth.handle(b"R", body)      # bytes to write to the server, or None
    auth.done                            # True after AuthenticationOk

Towards the applications, `ClientAuth(method, lookup)` asks for and checks their
credentials (`scram`, `md5` or `trust`) against `Credentials` loaded from a PgBouncer
`userlist.txt` (`--auth-file`) or from the server user's own password file:

    auth = ClientAuth("scram", credentials)
    transport.write(auth.start(user))    # AuthenticationSASL (or Ok for trust)
    reply = auth.handle(b"p", body)      # SASLContinue / SASLFinal+Ok / Ok
    auth.done, auth.scram_keys

Both raise `AuthError` on failure; `AuthError.sqlstate` and `.client_message` are what to
put in the ErrorResponse (`protocol.error_response`, severity FATAL). A password, md5 hash, SCRAM
key or proof never appears in a message, a repr or a log line.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from .protocol import (
    AUTH_CLEARTEXT,
    AUTH_GSS,
    AUTH_GSS_CONTINUE,
    AUTH_KERBEROS_V5,
    AUTH_MD5,
    AUTH_OK_CODE,
    AUTH_SASL,
    AUTH_SASL_CONTINUE,
    AUTH_SASL_FINAL,
    AUTH_SSPI,
    auth_request,
    cstring,
    message,
    parse_error_fields,
    password_message,
    read_i32,
)
from .scram import (
    MECHANISM,
    MECHANISM_PLUS,
    ScramClient,
    ScramError,
    ScramKeys,
    ScramServer,
    ScramVerifier,
    is_verifier,
)

ClientMethod = Literal["scram", "md5", "trust"]
CLIENT_METHODS: tuple[str, ...] = ("scram", "md5", "trust")


class AuthError(Exception):
    """Authentication failed or broke the protocol.

    `str(exc)` is for the ambassador's own log; `client_message` is what an application
    may be told (PostgreSQL's wording); `sqlstate` goes with it. Neither holds a secret.
    """

    def __init__(self, message: str, *, sqlstate: str = "28P01", client_message: str = "") -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.client_message = client_message or message


def md5_inner(password: str, user: str) -> str:
    """md5(password || user) in hex: what PostgreSQL stores after `md5`."""
    return hashlib.md5(password.encode() + user.encode(), usedforsecurity=False).hexdigest()


def md5_response(inner_hex: str, salt: bytes) -> str:
    return "md5" + hashlib.md5(inner_hex.encode() + salt, usedforsecurity=False).hexdigest()


def is_md5_hash(secret: str) -> bool:
    return len(secret) == 35 and secret.startswith("md5") and _is_hex(secret[3:])


def _is_hex(text: str) -> bool:
    try:
        int(text, 16)
    except ValueError:
        return False
    return True


def _kind(msg_type: bytes | int) -> bytes:
    return bytes((msg_type,)) if isinstance(msg_type, int) else msg_type


# --- towards PostgreSQL -------------------------------------------------------------------------


class ServerAuth:
    """Logs in to PostgreSQL as `user`: feed it every message until `done`.

    `password` may be the plain password, or (md5 only) PostgreSQL's stored `md5...` hash.
    `scram_keys` (from `ClientAuth.scram_keys`) lets a SCRAM login succeed without the
    password, when the server's verifier is the one the application logged in against.
    """

    def __init__(
        self, user: str, password: str | None = None, *, scram_keys: ScramKeys | None = None
    ) -> None:
        self.user = user
        self._password = password
        self._scram_keys = scram_keys
        self._scram: ScramClient | None = None
        self.method: str | None = None
        self.done = False

    def __repr__(self) -> str:
        return f"ServerAuth(user={self.user!r}, method={self.method!r}, done={self.done})"

    def handle(self, msg_type: bytes | int, body: bytes) -> bytes | None:
        """Take one message from the server; return the message to send back, or None."""
        kind = _kind(msg_type)
        if kind == b"E":
            fields = parse_error_fields(message(b"E", body))
            raise AuthError(
                f"server refused login for user {self.user!r}: {fields.get('M', '')}",
                sqlstate=fields.get("C", "28000"),
                client_message=fields.get("M", "authentication failed"),
            )
        if kind != b"R":
            raise self._protocol(f"unexpected message {kind!r} during authentication")
        if len(body) < 4:
            raise self._protocol("truncated Authentication message")
        code = read_i32(body)
        data = body[4:]
        if code == AUTH_OK_CODE:
            if self._scram is not None and not self._scram.done:
                raise self._protocol("server sent AuthenticationOk before finishing SCRAM")
            self.done = True
            return None
        if self.done:
            raise self._protocol("Authentication request after AuthenticationOk")
        if code == AUTH_CLEARTEXT:
            self.method = "password"
            return password_message(cstring(self._plain("cleartext password")))
        if code == AUTH_MD5:
            if len(data) != 4:
                raise self._protocol("malformed AuthenticationMD5Password")
            self.method = "md5"
            secret = self._plain("md5")
            inner = secret[3:] if is_md5_hash(secret) else md5_inner(secret, self.user)
            return password_message(cstring(md5_response(inner, data)))
        if code == AUTH_SASL:
            return self._sasl_start(data)
        if code == AUTH_SASL_CONTINUE:
            if self._scram is None:
                raise self._protocol("SASLContinue without a SASL exchange")
            try:
                return password_message(self._scram.final(data))
            except ScramError as exc:
                raise self._scram_failed(exc) from None
        if code == AUTH_SASL_FINAL:
            if self._scram is None:
                raise self._protocol("SASLFinal without a SASL exchange")
            try:
                self._scram.verify(data)
            except ScramError as exc:
                raise self._scram_failed(exc) from None
            return None
        names = {AUTH_KERBEROS_V5: "Kerberos V5", AUTH_GSS: "GSSAPI", AUTH_SSPI: "SSPI",
                 AUTH_GSS_CONTINUE: "GSSAPI"}  # fmt: skip
        raise AuthError(
            f"server asks for {names.get(code, f'authentication method {code}')} for user "
            f"{self.user!r}, which the ambassador does not support; use scram-sha-256, md5 "
            "or password in pg_hba.conf",
            sqlstate="28000",
        )

    def _sasl_start(self, data: bytes) -> bytes:
        mechanisms = [m.decode("utf-8", "replace") for m in data.split(b"\0") if m]
        if MECHANISM not in mechanisms:
            offered = ", ".join(mechanisms) or "none"
            plus = " (channel binding is not supported)" if MECHANISM_PLUS in mechanisms else ""
            raise AuthError(
                f"server offers SASL mechanisms {offered} for user {self.user!r}, "
                f"none of which the ambassador supports{plus}",
                sqlstate="28000",
            )
        self.method = "scram-sha-256"
        if self._password is not None and not is_verifier(self._password):
            self._scram = ScramClient(self._password)
        elif self._scram_keys is not None:
            self._scram = ScramClient(keys=self._scram_keys)
        elif self._password is not None:
            raise AuthError(
                f"server asks for SCRAM for user {self.user!r}, but the ambassador holds only a "
                "SCRAM verifier for it, not the password (and the client did not log in with "
                "SCRAM against the same verifier)"
            )
        else:
            raise self._no_password("SCRAM-SHA-256")
        first = self._scram.first()
        body = cstring(MECHANISM) + struct.pack("!i", len(first)) + first
        return password_message(body)

    def _plain(self, method: str) -> str:
        if self._password is None:
            raise self._no_password(method)
        if is_verifier(self._password) or (is_md5_hash(self._password) and method != "md5"):
            raise AuthError(
                f"server asks for {method} authentication for user {self.user!r}, but the "
                "ambassador holds only a hash of the password, not the password"
            )
        return self._password

    def _no_password(self, method: str) -> AuthError:
        return AuthError(
            f"server asks for {method} authentication for user {self.user!r} and no password "
            "is configured for it",
            sqlstate="28P01",
        )

    def _protocol(self, what: str) -> AuthError:
        return AuthError(
            f"protocol violation logging in as {self.user!r}: {what}", sqlstate="08P01"
        )

    def _scram_failed(self, exc: ScramError) -> AuthError:
        return AuthError(f"SCRAM login as {self.user!r} failed: {exc}", sqlstate=exc.sqlstate)


# --- credentials ------------------------------------------------------------------------------


class CredentialsError(ValueError):
    """A credentials file cannot be read; the message names FILE:LINE, never the content."""


def parse_userlist(text: str, source: str = "userlist") -> dict[str, str]:
    """PgBouncer's auth_file: `"user" "password"` per line, `""` for a quote inside.

    Blank lines and lines starting with `;` or `#` are skipped; fields after the second
    are ignored (PgBouncer does the same).
    """
    users: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped[0] in ";#":
            continue
        fields: list[str] = []
        pos = 0
        while len(fields) < 2:
            while pos < len(stripped) and stripped[pos] in " \t":
                pos += 1
            if pos >= len(stripped) or stripped[pos] != '"':
                raise CredentialsError(
                    f'{source}:{number}: expected two double-quoted fields: "user" "password"'
                )
            pos += 1
            value = []
            while True:
                end = stripped.find('"', pos)
                if end < 0:
                    raise CredentialsError(f"{source}:{number}: unterminated double quote")
                value.append(stripped[pos:end])
                if stripped.startswith('"', end + 1):  # "" inside a field
                    value.append('"')
                    pos = end + 2
                    continue
                pos = end + 1
                break
            fields.append("".join(value))
        user, secret = fields
        if not user:
            raise CredentialsError(f"{source}:{number}: empty user name")
        if is_verifier(secret):
            try:
                ScramVerifier.parse(secret)
            except ValueError as exc:
                raise CredentialsError(f"{source}:{number}: user {user!r}: {exc}") from None
        users[user] = secret
    return users


class Credentials:
    """user -> stored secret (plain password, `md5...` hash or SCRAM verifier).

    Callable as `lookup(user) -> secret | None` for `ClientAuth`. `reload()` re-reads the
    file it came from (a mounted Secret changes in place); on a bad file the old entries stay.
    """

    def __init__(
        self, users: dict[str, str], path: Path | None = None, single_user: str = ""
    ) -> None:
        self._users = dict(users)
        self.path = path
        self._single_user = single_user

    def __repr__(self) -> str:
        return f"Credentials({len(self._users)} users, path={self.path})"

    def __call__(self, user: str) -> str | None:
        return self._users.get(user)

    def __contains__(self, user: str) -> bool:
        return user in self._users

    def __len__(self) -> int:
        return len(self._users)

    @classmethod
    def from_auth_file(cls, path: str | Path) -> Credentials:
        path = Path(path)
        return cls(parse_userlist(_read(path), str(path)), path)

    @classmethod
    def from_password_file(cls, user: str, path: str | Path) -> Credentials:
        """One user (the server user) whose password is the file's content."""
        path = Path(path)
        return cls({user: _read_password(path)}, path, single_user=user)

    @classmethod
    def single(cls, user: str, password: str) -> Credentials:
        return cls({user: password}, single_user=user)

    def reload(self) -> bool:
        """Re-read the file; True if the entries changed. CredentialsError if unreadable."""
        if self.path is None:
            return False
        if self._single_user:
            users = {self._single_user: _read_password(self.path)}
        else:
            users = parse_userlist(_read(self.path), str(self.path))
        changed = users != self._users
        self._users = users
        return changed


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8"
        raise CredentialsError(f"{path}: cannot read: {reason}") from None


def _read_password(path: Path) -> str:
    text = _read(path)
    password = text[:-1] if text.endswith("\n") else text
    password = password[:-1] if password.endswith("\r") else password
    if not password:
        raise CredentialsError(f"{path}: the password file is empty")
    return password


# --- towards the applications --------------------------------------------------------------


# One random salt per stored plain password for the life of the process, so a client that
# caches its SaltedPassword keeps hitting it, and a mock salt per unknown user name.
_MOCK_KEY = secrets.token_bytes(32)
_PLAIN_VERIFIERS: dict[str, ScramVerifier] = {}
_PLAIN_VERIFIERS_MAX = 1024


def _verifier_for_plain(password: str) -> ScramVerifier:
    verifier = _PLAIN_VERIFIERS.get(password)
    if verifier is None:
        if len(_PLAIN_VERIFIERS) >= _PLAIN_VERIFIERS_MAX:
            _PLAIN_VERIFIERS.clear()
        verifier = _PLAIN_VERIFIERS[password] = ScramVerifier.from_password(password)
    return verifier


def _mock_salt(user: str) -> bytes:
    return hmac.new(_MOCK_KEY, user.encode(), hashlib.sha256).digest()[:16]


class ClientAuth:
    """Authenticates one application connection.

    `lookup(user)` returns the stored secret or None (unknown user). `method`:
    `scram` (SCRAM-SHA-256; a stored md5 hash cannot be used and fails), `md5` (a stored
    SCRAM verifier switches to SCRAM, as PostgreSQL does), `trust` (no password).
    """

    def __init__(self, method: str, lookup: Callable[[str], str | None]) -> None:
        if method not in CLIENT_METHODS:
            raise ValueError(f"client auth method must be one of {', '.join(CLIENT_METHODS)}")
        self.method = method
        self._lookup = lookup
        self.user = ""
        self._state = "new"
        self._secret: str | None = None
        self._salt = b""
        self._scram: ScramServer | None = None
        self._reason = "wrong SCRAM proof"
        self.scram_keys: ScramKeys | None = None
        self.used: str | None = None  # the mechanism actually used
        self.done = False

    def __repr__(self) -> str:
        return f"ClientAuth(method={self.method!r}, user={self.user!r}, state={self._state!r})"

    def start(self, user: str) -> bytes:
        """The first message(s) for a client that sent StartupMessage with `user`."""
        if self._state != "new":
            raise RuntimeError("ClientAuth.start called twice")
        self.user = user
        if self.method == "trust":
            return self._ok("trust")
        # An empty stored password means none, as in PostgreSQL: nobody logs in with it.
        self._secret = self._lookup(user) or None
        if self.method == "md5" and not (self._secret is not None and is_verifier(self._secret)):
            self._state = "md5"
            self._salt = secrets.token_bytes(4)
            return auth_request(AUTH_MD5, self._salt)
        self._state = "sasl-initial"
        return auth_request(AUTH_SASL, cstring(MECHANISM) + b"\0")

    def handle(self, msg_type: bytes | int, body: bytes) -> bytes:
        """Take the client's 'p' message; return what to send (ending in AuthenticationOk)."""
        kind = _kind(msg_type)
        if kind != b"p":
            raise self._protocol(f"expected a password message, got {kind!r}")
        if self._state == "md5":
            return self._md5(body)
        if self._state == "sasl-initial":
            return self._sasl_initial(body)
        if self._state == "sasl-final":
            return self._sasl_final(body)
        raise self._protocol("password message out of turn")

    def _md5(self, body: bytes) -> bytes:
        answer = body[:-1] if body.endswith(b"\0") else body
        secret = self._secret
        if secret is None or (not answer):
            raise self._failed(
                "unknown user or no password stored" if secret is None else "empty password"
            )
        inner = secret[3:] if is_md5_hash(secret) else md5_inner(secret, self.user)
        if not hmac.compare_digest(answer, md5_response(inner, self._salt).encode()):
            raise self._failed("wrong md5 password")
        return self._ok("md5")

    def _sasl_initial(self, body: bytes) -> bytes:
        end = body.find(b"\0")
        if end < 0 or len(body) < end + 5:
            raise self._protocol("malformed SASLInitialResponse")
        mechanism = body[:end].decode("utf-8", "replace")
        length = read_i32(body, end + 1)
        data = body[end + 5 :]
        if mechanism != MECHANISM:
            raise self._protocol(f"client selected an invalid SASL mechanism {mechanism[:40]!r}")
        if length != len(data):
            raise self._protocol("SASLInitialResponse length does not match its data")
        secret = self._secret
        verifier: ScramVerifier | None = None
        if secret is not None and is_verifier(secret):
            verifier = ScramVerifier.parse(secret)  # checked when the file was loaded
        elif secret is not None and not is_md5_hash(secret):
            verifier = _verifier_for_plain(secret)
        # An unknown user, or a stored md5 hash (cannot do SCRAM): a mock exchange that fails.
        if verifier is None:
            self._reason = (
                "unknown user or no password stored" if secret is None
                else "only an md5 hash is stored"
            )  # fmt: skip
        self._scram = ScramServer(verifier, mock_salt=_mock_salt(self.user))
        try:
            server_first = self._scram.first(data)
        except ScramError as exc:
            raise self._scram_error(exc) from None
        self._state = "sasl-final"
        return auth_request(AUTH_SASL_CONTINUE, server_first)

    def _sasl_final(self, body: bytes) -> bytes:
        assert self._scram is not None
        try:
            server_final = self._scram.final(body)
        except ScramError as exc:
            if exc.sqlstate == "28P01":
                raise self._failed(self._reason) from None
            raise self._scram_error(exc) from None
        self.scram_keys = self._scram.keys
        return auth_request(AUTH_SASL_FINAL, server_final) + self._ok("scram-sha-256")

    def _ok(self, used: str) -> bytes:
        self._state = "done"
        self.used = used
        self.done = True
        return auth_request(AUTH_OK_CODE)

    def _failed(self, reason: str) -> AuthError:
        self._state = "failed"
        return AuthError(
            f"client login as {self.user!r} failed: {reason}",
            sqlstate="28P01",
            client_message=f'password authentication failed for user "{self.user}"',
        )

    def _protocol(self, what: str) -> AuthError:
        self._state = "failed"
        return AuthError(
            f"client login as {self.user!r}: protocol violation: {what}",
            sqlstate="08P01",
            client_message=what,
        )

    def _scram_error(self, exc: ScramError) -> AuthError:
        self._state = "failed"
        return AuthError(
            f"client login as {self.user!r}: {exc}", sqlstate=exc.sqlstate, client_message=str(exc)
        )
