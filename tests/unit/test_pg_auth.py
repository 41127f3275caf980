"""pg-ambassador authentication without a server: RFC 7677's vector, both state machines
against each other, PgBouncer's userlist format, and secrets kept out of messages.

Longer property runs: `HYPOTHESIS_PROFILE` is not used here; raise `max_examples` in the
`@settings` lines locally to fuzz harder.
"""

from __future__ import annotations

import base64
import hashlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podkit.ambassadors.postgres import scram
from podkit.ambassadors.postgres.auth import (
    AuthError,
    ClientAuth,
    Credentials,
    CredentialsError,
    ServerAuth,
    md5_inner,
    parse_userlist,
)
from podkit.ambassadors.postgres.protocol import message
from podkit.ambassadors.postgres.scram import ScramClient, ScramServer, ScramVerifier

# RFC 7677 section 3: user "user", password "pencil".
RFC_CLIENT_NONCE = "rOprNGfwEbeRWgbNEkqO"
RFC_CLIENT_FIRST = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
RFC_SERVER_FIRST = (
    b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
)
RFC_CLIENT_FINAL = (
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
)
RFC_SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
RFC_SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
SECRET = "s3cr3t-Pa55word!"


def test_rfc7677_client():
    client = ScramClient("pencil", nonce=RFC_CLIENT_NONCE)
    # PostgreSQL's client sends an empty n= (the startup user counts); the RFC's has n=user,
    # which is part of the AuthMessage, so replay the RFC's bare message to check the proof.
    client._client_first_bare = "n=user,r=" + RFC_CLIENT_NONCE
    assert client.final(RFC_SERVER_FIRST) == RFC_CLIENT_FINAL
    client.verify(RFC_SERVER_FINAL)
    assert client.done


def test_rfc7677_server():
    verifier = ScramVerifier.from_password("pencil", salt=RFC_SALT, iterations=4096)
    server = ScramServer(verifier)
    server_first = server.first(RFC_CLIENT_FIRST)
    # Replay the RFC's server nonce: the server's own random part is not under our control.
    server._nonce = RFC_SERVER_FIRST.decode().split(",")[0][2:]
    server._server_first = RFC_SERVER_FIRST.decode()
    assert server_first.startswith(b"r=" + RFC_CLIENT_NONCE.encode())
    assert server.final(RFC_CLIENT_FINAL) == RFC_SERVER_FINAL
    assert server.keys is not None


def test_verifier_round_trip_matches_postgres_format():
    verifier = ScramVerifier.from_password("pencil", salt=RFC_SALT, iterations=4096)
    text = str(verifier)
    assert text.startswith("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$")
    assert ScramVerifier.parse(text) == verifier
    for bad in ["SCRAM-SHA-256$x:abc$d:e", "SCRAM-SHA-1$4096:YQ==$YQ==:YQ==", "SCRAM-SHA-256$"]:
        with pytest.raises(ValueError):
            ScramVerifier.parse(bad)


def test_saslprep_like_postgres():
    assert scram.saslprep("pencil") == b"pencil"
    assert scram.saslprep("I\u00adX") == b"IX"  # soft hyphen mapped to nothing
    assert scram.saslprep("\u2168") == b"IX"  # NFKC
    assert scram.saslprep("a\u00a0b") == b"a b"  # non-ASCII space to U+0020
    assert scram.saslprep("\u0007\u00e9") == "\u0007\u00e9".encode()  # prohibited: raw bytes


def drive(client_auth: ClientAuth, server_auth: ServerAuth, user: str) -> bytes:
    """Run a ServerAuth (playing the app) against a ClientAuth until one side is done."""
    outgoing = client_auth.start(user)
    while True:
        reply = None
        for kind, body in split_messages(outgoing):
            answer = server_auth.handle(kind, body)
            reply = answer if answer is not None else reply
        if server_auth.done:
            return outgoing
        assert reply is not None
        ((kind, body),) = split_messages(reply)
        outgoing = client_auth.handle(kind, body)


def split_messages(data: bytes) -> list[tuple[bytes, bytes]]:
    out = []
    while data:
        (length,) = struct.unpack_from("!i", data, 1)
        out.append((data[:1], data[5 : 1 + length]))
        data = data[1 + length :]
    return out


STORED = {
    "plain": SECRET,
    "md5": "md5" + md5_inner(SECRET, "md5user"),
    "scram": scram.make_verifier(SECRET),
}


@pytest.mark.parametrize("method", ["scram", "md5"])
@pytest.mark.parametrize("stored", ["plain", "md5", "scram"])
def test_client_auth_against_server_auth(method, stored):
    user = "md5user" if stored == "md5" else "app"
    lookup = Credentials.single(user, STORED[stored])
    client_auth = ClientAuth(method, lookup)
    if method == "scram" and stored == "md5":
        # An md5 hash cannot do SCRAM: the exchange runs and fails like a wrong password.
        with pytest.raises(AuthError) as caught:
            drive(client_auth, ServerAuth(user, SECRET), user)
        assert caught.value.sqlstate == "28P01"
        return
    drive(client_auth, ServerAuth(user, SECRET), user)
    assert client_auth.done
    expected = "scram-sha-256" if method == "scram" or stored == "scram" else "md5"
    assert client_auth.used == expected
    if expected == "scram-sha-256":
        assert client_auth.scram_keys is not None


@pytest.mark.parametrize("method", ["scram", "md5"])
def test_wrong_password_and_unknown_user_look_the_same(method):
    lookup = Credentials.single("app", SECRET)
    errors = []
    for user, password in [("app", "wrong"), ("nobody", SECRET)]:
        with pytest.raises(AuthError) as caught:
            drive(ClientAuth(method, lookup), ServerAuth(user, password), user)
        errors.append(caught.value)
        assert SECRET not in str(caught.value) and "wrong" not in caught.value.client_message
    assert [e.sqlstate for e in errors] == ["28P01", "28P01"]
    assert errors[0].client_message == 'password authentication failed for user "app"'


def test_trust_needs_nothing():
    auth = ClientAuth("trust", lambda user: None)
    assert auth.start("anyone") == message(b"R", b"\0\0\0\0")
    assert auth.done


def test_scram_keys_log_in_without_the_password():
    """What the app proved to the ambassador lets it log in to a server with that verifier."""
    verifier = ScramVerifier.from_password(SECRET)
    front = ClientAuth("scram", Credentials.single("app", str(verifier)))
    drive(front, ServerAuth("app", SECRET), "app")
    assert front.scram_keys is not None
    back = ClientAuth("scram", Credentials.single("app", str(verifier)))
    drive(back, ServerAuth("app", str(verifier), scram_keys=front.scram_keys), "app")
    assert back.done
    other = ClientAuth("scram", Credentials.single("app", scram.make_verifier(SECRET)))
    with pytest.raises(AuthError, match="salt or iteration"):
        drive(other, ServerAuth("app", None, scram_keys=front.scram_keys), "app")


def sasl_request(*mechanisms: str) -> bytes:
    return struct.pack("!i", 10) + b"".join(m.encode() + b"\0" for m in mechanisms) + b"\0"


def test_server_auth_picks_plain_scram_when_plus_is_offered():
    reply = ServerAuth("app", SECRET).handle(
        b"R", sasl_request("SCRAM-SHA-256-PLUS", "SCRAM-SHA-256")
    )
    assert reply is not None and reply[:1] == b"p"
    assert reply[5:].startswith(b"SCRAM-SHA-256\0")
    assert b"n,,n=,r=" in reply
    with pytest.raises(AuthError, match="channel binding"):
        ServerAuth("app", SECRET).handle(b"R", sasl_request("SCRAM-SHA-256-PLUS"))


def test_server_auth_cleartext_and_md5_messages():
    assert ServerAuth("u", "pw").handle(b"R", struct.pack("!i", 3)) == message(b"p", b"pw\0")
    salt = b"\x01\x02\x03\x04"
    inner = hashlib.md5(b"pwu").hexdigest()
    want = b"md5" + hashlib.md5(inner.encode() + salt).hexdigest().encode() + b"\0"
    assert ServerAuth("u", "pw").handle(ord("R"), struct.pack("!i", 5) + salt) == message(
        b"p", want
    )
    # PostgreSQL's stored md5 hash works as the password for md5 (PgBouncer allows it too).
    assert ServerAuth("u", "md5" + inner).handle(b"R", struct.pack("!i", 5) + salt) == message(
        b"p", want
    )


@pytest.mark.parametrize(
    ("code", "data", "match"),
    [
        (7, b"", "GSSAPI"),
        (2, b"", "Kerberos"),
        (11, b"r=x", "without a SASL exchange"),
        (0, b"", None),
    ],
)
def test_server_auth_refuses_what_it_cannot_do(code, data, match):
    auth = ServerAuth("app", SECRET)
    body = struct.pack("!i", code) + data
    if match is None:
        assert auth.handle(b"R", body) is None and auth.done
        return
    with pytest.raises(AuthError, match=match) as caught:
        auth.handle(b"R", body)
    assert SECRET not in str(caught.value)


def test_server_auth_needs_a_password_and_never_shows_it():
    with pytest.raises(AuthError, match="no password"):
        ServerAuth("app").handle(b"R", struct.pack("!i", 3))
    auth = ServerAuth("app", SECRET)
    auth.handle(b"R", sasl_request("SCRAM-SHA-256"))
    with pytest.raises(AuthError) as caught:
        auth.handle(b"R", struct.pack("!i", 11) + b"r=forged,s=YQ==,i=4096")
    assert "nonce" in str(caught.value)
    assert SECRET not in repr(auth) and SECRET not in str(caught.value)


def test_server_auth_rejects_ok_before_scram_finished_and_forged_signature():
    auth = ServerAuth("app", SECRET)
    auth.handle(b"R", sasl_request("SCRAM-SHA-256"))
    with pytest.raises(AuthError, match="before finishing"):
        auth.handle(b"R", struct.pack("!i", 0))
    # A server that does not know the password cannot produce the final signature.
    front = ClientAuth("scram", Credentials.single("app", "another password"))
    with pytest.raises(AuthError):
        drive(front, ServerAuth("app", SECRET), "app")


def test_server_error_becomes_auth_error():
    body = b'SFATAL\0C28P01\0Mpassword authentication failed for user "app"\0\0'
    with pytest.raises(AuthError) as caught:
        ServerAuth("app", SECRET).handle(b"E", body)
    assert caught.value.sqlstate == "28P01"
    assert caught.value.client_message == 'password authentication failed for user "app"'


def test_userlist_format():
    text = (
        '; PgBouncer userlist\n\n"app" "plain pass"\n'
        '"we""ird" "md5' + "0" * 32 + '"  "ignored"\n'
        f'"scrammer" "{scram.make_verifier("x")}"\n'
        "# a comment\n"
    )
    users = parse_userlist(text)
    assert users["app"] == "plain pass"
    assert users['we"ird'] == "md5" + "0" * 32
    assert users["scrammer"].startswith("SCRAM-SHA-256$4096:")


@pytest.mark.parametrize(
    "line", ['app "pw"', '"app" pw', '"app" "unterminated', '"" "pw"', '"a" "SCRAM-SHA-256$x"']
)
def test_userlist_errors_name_the_line_not_the_secret(line):
    with pytest.raises(CredentialsError) as caught:
        parse_userlist("\n" + line + "\n", "users.txt")
    assert str(caught.value).startswith("users.txt:2:")
    assert "pw" not in str(caught.value) and "SCRAM-SHA-256$x" not in str(caught.value)


def test_credentials_files(tmp_path):
    auth_file = tmp_path / "userlist.txt"
    auth_file.write_text('"app" "one"\n')
    creds = Credentials.from_auth_file(auth_file)
    assert creds("app") == "one" and creds("other") is None
    auth_file.write_text('"app" "two"\n"other" "three"\n')
    assert creds.reload() and creds("other") == "three"
    password_file = tmp_path / "password"
    password_file.write_text(SECRET + "\n")
    single = Credentials.from_password_file("postgres", password_file)
    assert single("postgres") == SECRET
    assert SECRET not in repr(single)
    password_file.write_text("")
    with pytest.raises(CredentialsError, match="empty"):
        single.reload()


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=200), st.sampled_from(["scram", "md5"]))
def test_client_auth_survives_garbage(data, method):
    auth = ClientAuth(method, Credentials.single("app", SECRET))
    auth.start("app")
    for _ in range(2):
        try:
            reply = auth.handle(b"p", data)
        except AuthError as exc:
            assert SECRET not in str(exc)
            return
        assert reply.startswith(b"R")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([b"R", b"E", b"S"]), st.binary(max_size=80)), max_size=4))
def test_server_auth_survives_garbage(messages):
    auth = ServerAuth("app", SECRET)
    for kind, body in messages:
        try:
            auth.handle(kind, body)
        except AuthError as exc:
            assert SECRET not in str(exc)
            return


def userlist_field(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


@settings(max_examples=80, deadline=None)
@given(
    st.dictionaries(
        st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1),
        st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"))),
        max_size=5,
    )
)
def test_userlist_round_trip(users):
    users = {u: p for u, p in users.items() if not p.startswith("SCRAM-SHA-256$")}
    text = "".join(f"{userlist_field(u)} {userlist_field(p)}\n" for u, p in users.items())
    assert parse_userlist(text) == users


def test_server_auth_with_only_a_hash_says_so():
    verifier = scram.make_verifier(SECRET)
    with pytest.raises(AuthError, match="only a SCRAM verifier") as caught:
        ServerAuth("app", verifier).handle(b"R", sasl_request("SCRAM-SHA-256"))
    assert verifier not in str(caught.value)
    md5_hash = "md5" + md5_inner(SECRET, "app")
    with pytest.raises(AuthError, match="only a hash") as caught:
        ServerAuth("app", md5_hash).handle(b"R", struct.pack("!i", 3))
    assert md5_hash not in str(caught.value)


def test_scram_server_ignores_the_user_name_but_checks_the_nonce():
    verifier = ScramVerifier.from_password(SECRET)
    assert ScramServer(verifier).first("n,,n=tab\there \u00e9,r=abc".encode()).startswith(b"r=abc")
    for bad in [
        b"n,,n=,r=",
        b"n,,n=,r=a\x01b",
        b"p=tls-server-end-point,,n=,r=abc",
        b"n,a=x,n=,r=a",
    ]:
        with pytest.raises(scram.ScramError):
            ScramServer(verifier).first(bad)


@pytest.mark.parametrize("method", ["scram", "md5"])
def test_an_empty_stored_password_lets_nobody_in(method):
    """PostgreSQL treats an empty password as none; so does ClientAuth."""
    with pytest.raises(AuthError) as caught:
        drive(ClientAuth(method, Credentials.single("app", "")), ServerAuth("app", "x"), "app")
    assert caught.value.sqlstate == "28P01"
    auth = ClientAuth(method, Credentials.single("app", ""))
    auth.start("app")
    with pytest.raises(AuthError):
        auth.handle(b"p", b"\0")
