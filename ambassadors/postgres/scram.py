"""SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL speaks it, without channel binding.

Sans-I/O: `ScramClient` (the ambassador logging in to PostgreSQL) and `ScramServer` (the
ambassador checking an application's login) take and return the SASL payloads only; the
wire messages around them are built in `auth.py`.

PostgreSQL's dialect of SCRAM: the user name in `n=` is ignored (the startup packet's
user counts) and sent empty; the password is SASLprep-normalised when that succeeds, and
used as raw UTF-8 bytes when it does not (pg_saslprep); verifiers are stored as
`SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (base64).

No function here puts a password, a key or a proof in an exception message.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets
import stringprep
import unicodedata
from dataclasses import dataclass

MECHANISM = "SCRAM-SHA-256"
MECHANISM_PLUS = "SCRAM-SHA-256-PLUS"
DEFAULT_ITERATIONS = 4096
NONCE_BYTES = 18
SALT_BYTES = 16
# A server (or a stored verifier) asking for more work than this is refused: PBKDF2 runs
# on the event loop, and 10 million rounds of SHA-256 already take seconds.
MAX_ITERATIONS = 10_000_000
GS2_NO_BINDING = "n,,"  # the client does not support channel binding
GS2_NOT_OFFERED = "y,,"  # the client supports it but thinks the server does not


class ScramError(Exception):
    """A SCRAM exchange failed: bad syntax, wrong proof, wrong server signature.

    `sqlstate` is what PostgreSQL would answer: 28P01 for a wrong password, 08P01 for a
    protocol violation. The message never holds a secret.
    """

    def __init__(self, message: str, sqlstate: str = "08P01") -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


# --- SASLprep (RFC 4013) the way PostgreSQL applies it -------------------------------------


def _prohibited(char: str) -> bool:
    return (
        stringprep.in_table_c12(char)
        or stringprep.in_table_c21_c22(char)
        or stringprep.in_table_c3(char)
        or stringprep.in_table_c4(char)
        or stringprep.in_table_c5(char)
        or stringprep.in_table_c6(char)
        or stringprep.in_table_c7(char)
        or stringprep.in_table_c8(char)
        or stringprep.in_table_c9(char)
        or stringprep.in_table_a1(char)
    )


def saslprep(password: str) -> bytes:
    """The bytes PostgreSQL hashes for `password`: SASLprep'd, or raw if that fails.

    Pure ASCII is used as it is (pg_saslprep does not touch it); otherwise map (B.1 to
    nothing, non-ASCII spaces to U+0020), NFKC, then the prohibited-output and bidi checks;
    any failure, or an empty result, means the raw UTF-8 bytes are used.
    """
    if password.isascii():
        return password.encode()
    raw = password.encode("utf-8", "surrogateescape")
    mapped = "".join(
        " " if stringprep.in_table_c12(c) else c for c in password if not stringprep.in_table_b1(c)
    )
    normalized = unicodedata.normalize("NFKC", mapped)
    if not normalized or any(_prohibited(c) for c in normalized):
        return raw
    rand_al = [stringprep.in_table_d1(c) for c in normalized]
    if any(rand_al):
        if any(stringprep.in_table_d2(c) for c in normalized):
            return raw
        if not (rand_al[0] and rand_al[-1]):
            return raw
    return normalized.encode()


# --- keys and verifiers ---------------------------------------------------------------------


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


@functools.lru_cache(maxsize=128)
def salted_password(password: bytes, salt: bytes, iterations: int) -> bytes:
    """Hi() of RFC 5802: PBKDF2-HMAC-SHA-256. Cached: every new server connection needs it."""
    return hashlib.pbkdf2_hmac("sha256", password, salt, iterations)


@dataclass(frozen=True)
class ScramKeys:
    """ClientKey and ServerKey: enough to log in as the user without the password."""

    client_key: bytes
    server_key: bytes
    salt: bytes
    iterations: int

    @classmethod
    def from_password(cls, password: str, salt: bytes, iterations: int) -> ScramKeys:
        salted = salted_password(saslprep(password), salt, iterations)
        return cls(_hmac(salted, b"Client Key"), _hmac(salted, b"Server Key"), salt, iterations)

    def __repr__(self) -> str:  # never show the keys
        return f"ScramKeys(iterations={self.iterations})"


@dataclass(frozen=True)
class ScramVerifier:
    """What the server stores: salt, iterations, StoredKey = H(ClientKey), ServerKey."""

    iterations: int
    salt: bytes
    stored_key: bytes
    server_key: bytes

    @classmethod
    def parse(cls, text: str) -> ScramVerifier:
        """`SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>`; ValueError if malformed."""
        try:
            mechanism, params, keys = text.split("$")
            iterations_text, salt_b64 = params.split(":")
            stored_b64, server_b64 = keys.split(":")
            if mechanism != MECHANISM:
                raise ValueError
            iterations = int(iterations_text)
            salt = base64.b64decode(salt_b64, validate=True)
            stored_key = base64.b64decode(stored_b64, validate=True)
            server_key = base64.b64decode(server_b64, validate=True)
        except ValueError:
            raise ValueError("not a valid SCRAM-SHA-256 verifier") from None
        if not 0 < iterations <= MAX_ITERATIONS or not salt:
            raise ValueError("SCRAM-SHA-256 verifier has a bad iteration count or salt")
        if len(stored_key) != 32 or len(server_key) != 32:
            raise ValueError("SCRAM-SHA-256 verifier keys are not 32 bytes")
        return cls(iterations, salt, stored_key, server_key)

    @classmethod
    def from_password(
        cls, password: str, salt: bytes | None = None, iterations: int = DEFAULT_ITERATIONS
    ) -> ScramVerifier:
        salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
        keys = ScramKeys.from_password(password, salt, iterations)
        return cls(iterations, salt, hashlib.sha256(keys.client_key).digest(), keys.server_key)

    def __str__(self) -> str:
        b64 = base64.b64encode
        return (
            f"{MECHANISM}${self.iterations}:{b64(self.salt).decode()}"
            f"${b64(self.stored_key).decode()}:{b64(self.server_key).decode()}"
        )

    def __repr__(self) -> str:
        return f"ScramVerifier(iterations={self.iterations})"


def is_verifier(text: str) -> bool:
    return text.startswith(MECHANISM + "$")


def make_verifier(password: str, iterations: int = DEFAULT_ITERATIONS) -> str:
    """A verifier for `password` with a fresh salt, as `ALTER ROLE ... PASSWORD` stores it."""
    return str(ScramVerifier.from_password(password, iterations=iterations))


def _nonce() -> str:
    return base64.b64encode(secrets.token_bytes(NONCE_BYTES)).decode()


def _attributes(message: str, what: str) -> list[tuple[str, str]]:
    """`a=x,b=y` -> [(a, x), (b, y)]; a value may hold '='."""
    out = []
    for part in message.split(","):
        if len(part) < 2 or part[1] != "=" or not part[0].isalpha():
            raise ScramError(f"malformed SCRAM {what}")
        out.append((part[0], part[2:]))
    return out


def _decode(data: bytes, what: str) -> str:
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise ScramError(f"SCRAM {what} is not valid UTF-8") from None
    if "\0" in text:
        raise ScramError(f"SCRAM {what} holds a NUL byte")
    return text


def _printable_nonce(nonce: str) -> bool:
    """RFC 5802: printable ASCII (0x21-0x7E) except ','."""
    return bool(nonce) and all("!" <= c <= "~" and c != "," for c in nonce)


def _b64decode(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        raise ScramError(f"malformed base64 in SCRAM {what}") from None


# --- client ---------------------------------------------------------------------------------


class ScramClient:
    """The client half: `first()`, then `final(server_first)`, then `verify(server_final)`.

    Built from a password, or from `ScramKeys` taken from an application's own SCRAM login
    (then the server's salt and iteration count must match the keys').
    """

    def __init__(
        self,
        password: str | None = None,
        *,
        keys: ScramKeys | None = None,
        nonce: str | None = None,
    ) -> None:
        if (password is None) == (keys is None):
            raise ValueError("ScramClient needs a password or keys, not both")
        self._password = password
        self._keys = keys
        self.nonce = nonce or _nonce()
        self.gs2_header = GS2_NO_BINDING
        self._client_first_bare = f"n=,r={self.nonce}"
        self._server_signature: bytes | None = None
        self.done = False

    def first(self) -> bytes:
        return (self.gs2_header + self._client_first_bare).encode()

    def final(self, server_first: bytes) -> bytes:
        text = _decode(server_first, "server-first-message")
        attrs = _attributes(text, "server-first-message")
        if [k for k, _ in attrs[:3]] != ["r", "s", "i"]:
            if attrs and attrs[0][0] == "m":
                raise ScramError("server requires an unsupported SCRAM extension")
            raise ScramError("malformed SCRAM server-first-message")
        nonce, salt_b64, iterations_text = (v for _, v in attrs[:3])
        if not nonce.startswith(self.nonce) or len(nonce) == len(self.nonce):
            raise ScramError("SCRAM server nonce does not extend the client nonce")
        if not _printable_nonce(nonce):
            raise ScramError("SCRAM server nonce is not printable ASCII")
        salt = _b64decode(salt_b64, "salt")
        try:
            iterations = int(iterations_text)
        except ValueError:
            raise ScramError("malformed SCRAM iteration count") from None
        if not 0 < iterations <= MAX_ITERATIONS or not salt:
            raise ScramError("SCRAM iteration count or salt out of range")
        if self._keys is not None:
            keys = self._keys
            if (keys.salt, keys.iterations) != (salt, iterations):
                raise ScramError(
                    "the server's SCRAM salt or iteration count differs from the verifier the "
                    "client logged in with; give the ambassador the password instead",
                    "28P01",
                )
        else:
            assert self._password is not None
            keys = ScramKeys.from_password(self._password, salt, iterations)
        channel = base64.b64encode(self.gs2_header.encode()).decode()
        final_without_proof = f"c={channel},r={nonce}"
        auth_message = f"{self._client_first_bare},{text},{final_without_proof}".encode()
        stored_key = hashlib.sha256(keys.client_key).digest()
        proof = _xor(keys.client_key, _hmac(stored_key, auth_message))
        self._server_signature = _hmac(keys.server_key, auth_message)
        return f"{final_without_proof},p={base64.b64encode(proof).decode()}".encode()

    def verify(self, server_final: bytes) -> None:
        if self._server_signature is None:
            raise ScramError("SCRAM server-final-message before server-first-message")
        attrs = _attributes(_decode(server_final, "server-final-message"), "server-final")
        key, value = attrs[0]
        if key == "e":
            raise ScramError(f"SCRAM authentication failed on the server: {value[:100]}", "28P01")
        if key != "v":
            raise ScramError("malformed SCRAM server-final-message")
        if not hmac.compare_digest(_b64decode(value, "server signature"), self._server_signature):
            raise ScramError(
                "the server's SCRAM signature is wrong (not the real server?)", "28000"
            )
        self.done = True


# --- server ---------------------------------------------------------------------------------


class ScramServer:
    """The server half: `first(client_first) -> server_first`, `final(client_final) -> v=...`.

    `verifier` None means an unknown user: the exchange runs on a mock verifier (stable
    per user name, as PostgreSQL does) and fails at the proof, so a client cannot tell an
    unknown user from a wrong password. After success `keys` holds the client's ClientKey
    and ServerKey, which can log in to PostgreSQL for that user (`ScramClient(keys=...)`).
    """

    def __init__(self, verifier: ScramVerifier | None, *, mock_salt: bytes = b"") -> None:
        self._mock = verifier is None
        self.verifier = verifier or ScramVerifier(
            DEFAULT_ITERATIONS, mock_salt or secrets.token_bytes(SALT_BYTES), b"\0" * 32, b"\0" * 32
        )
        self._client_first_bare = ""
        self._server_first = ""
        self._gs2_header = ""
        self._nonce = ""
        self.keys: ScramKeys | None = None

    def first(self, client_first: bytes) -> bytes:
        text = _decode(client_first, "client-first-message")
        parts = text.split(",", 2)
        if len(parts) != 3:
            raise ScramError("malformed SCRAM client-first-message")
        cbind, authzid, bare = parts
        if cbind.startswith("p="):
            raise ScramError("channel binding was not offered, but the client asked for it")
        if cbind not in ("n", "y"):
            raise ScramError("malformed SCRAM gs2 header")
        if authzid:
            raise ScramError("SCRAM authorization identities are not supported")
        attrs = _attributes(bare, "client-first-message")
        keys = [k for k, _ in attrs]
        if keys[:1] == ["m"]:
            raise ScramError("unsupported SCRAM extension")
        if keys[:2] != ["n", "r"]:
            raise ScramError("malformed SCRAM client-first-message")
        client_nonce = attrs[1][1]
        if not _printable_nonce(client_nonce):
            raise ScramError("SCRAM client nonce is empty or not printable ASCII")
        self._gs2_header = f"{cbind},,"
        self._client_first_bare = bare
        self._nonce = client_nonce + _nonce()
        salt = base64.b64encode(self.verifier.salt).decode()
        self._server_first = f"r={self._nonce},s={salt},i={self.verifier.iterations}"
        return self._server_first.encode()

    def final(self, client_final: bytes) -> bytes:
        if not self._server_first:
            raise ScramError("SCRAM client-final-message before client-first-message")
        text = _decode(client_final, "client-final-message")
        head, sep, proof_b64 = text.rpartition(",p=")
        if not sep:
            raise ScramError("SCRAM client-final-message has no proof")
        attrs = _attributes(head, "client-final-message")
        if [k for k, _ in attrs[:2]] != ["c", "r"]:
            raise ScramError("malformed SCRAM client-final-message")
        channel = _b64decode(attrs[0][1], "channel binding")
        if channel != self._gs2_header.encode():
            raise ScramError("SCRAM channel binding data does not match the gs2 header")
        if attrs[1][1] != self._nonce:
            raise ScramError("SCRAM nonce does not match")
        proof = _b64decode(proof_b64, "client proof")
        if len(proof) != 32:
            raise ScramError("malformed SCRAM client proof")
        auth_message = f"{self._client_first_bare},{self._server_first},{head}".encode()
        client_key = _xor(proof, _hmac(self.verifier.stored_key, auth_message))
        good = hmac.compare_digest(hashlib.sha256(client_key).digest(), self.verifier.stored_key)
        if self._mock or not good:
            raise ScramError("password authentication failed", "28P01")
        self.keys = ScramKeys(
            client_key, self.verifier.server_key, self.verifier.salt, self.verifier.iterations
        )
        signature = _hmac(self.verifier.server_key, auth_message)
        return f"v={base64.b64encode(signature).decode()}".encode()
