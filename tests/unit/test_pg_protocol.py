"""pg-ambassador framing, startup packets and session-state detection (no server needed).

The framer is fuzzed with hypothesis; `--hypothesis-seed` and a larger
`PG_FUZZ_EXAMPLES=5000` run longer.
"""

from __future__ import annotations

import os
import re
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podkit.ambassadors.postgres import protocol as pq
from podkit.ambassadors.postgres.session import (
    SessionEvent,
    _classify_one,
    classify,
    split_statements,
    suspect,
)

EXAMPLES = int(os.environ.get("PG_FUZZ_EXAMPLES", "300"))

messages = st.lists(
    st.tuples(st.sampled_from(b"QPBESDCHdcfX"), st.binary(max_size=300)), max_size=20
)


@settings(max_examples=EXAMPLES, deadline=None)
@given(messages, st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=50))
def test_framer_reassembles_any_split(msgs: list[tuple[int, bytes]], cuts: list[int]) -> None:
    stream = b"".join(pq.message(bytes([t]), body) for t, body in msgs)
    framer = pq.Framer(1 << 20)
    out: list[tuple[int, bytes]] = []
    pos = 0
    i = 0
    while pos < len(stream):
        step = cuts[i % len(cuts)]
        out += framer.feed(stream[pos : pos + step])
        pos += step
        i += 1
    assert [(t, m[5:]) for t, m in out] == [(t, body) for t, body in msgs]
    assert framer.pending == 0


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.binary(max_size=400))
def test_framer_on_garbage_either_frames_or_refuses(data: bytes) -> None:
    framer = pq.Framer(4096)
    try:
        out = framer.feed(data)
    except pq.ProtocolError as exc:
        assert exc.sqlstate in ("08P01", "54000")
        return
    assert sum(len(m) for _, m in out) + framer.pending == len(data)
    assert framer.pending < 4096 + 5


def test_framer_refuses_lying_and_huge_lengths_before_buffering() -> None:
    with pytest.raises(pq.ProtocolError, match="invalid message length"):
        pq.Framer(1024).feed(b"Q\x00\x00\x00\x02")
    framer = pq.Framer(256 * 1024**2)
    with pytest.raises(pq.ProtocolError, match="longer than the limit") as info:
        framer.feed(b"Q" + struct.pack("!I", 1 << 30) + b"x" * 10)
    assert info.value.sqlstate == "54000"


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.binary(max_size=200))
def test_startup_parser_never_crashes(data: bytes) -> None:
    packet = struct.pack("!I", len(data) + 4) + data
    try:
        length = pq.startup_length(packet)
        if length is not None and length <= len(packet):
            pq.parse_startup(packet[:length])
    except pq.ProtocolError:
        pass


def test_startup_packets() -> None:
    packet = pq.startup_message({"user": "app", "database": "db", "application_name": "x"})
    startup = pq.parse_startup(packet)
    assert startup.kind == "startup"
    assert startup.params == {"user": "app", "database": "db", "application_name": "x"}
    assert pq.parse_startup(struct.pack("!II", 8, pq.SSL_REQUEST)).kind == "ssl"
    assert pq.parse_startup(struct.pack("!II", 8, pq.GSSENC_REQUEST)).kind == "gssenc"
    cancel = pq.parse_startup(pq.cancel_request(1234, -5))
    assert (cancel.kind, cancel.process_id, cancel.secret_key) == ("cancel", 1234, -5)
    with pytest.raises(pq.ProtocolError, match="unsupported frontend protocol"):
        pq.parse_startup(struct.pack("!II", 8, 2 << 16))
    with pytest.raises(pq.ProtocolError, match="no PostgreSQL user"):
        pq.parse_startup(pq.startup_message({"database": "db"}))
    with pytest.raises(pq.ProtocolError, match="invalid length"):
        pq.startup_length(struct.pack("!I", 1 << 30))
    minor = struct.pack("!I", (3 << 16) | 2)
    body = b"user\x00u\x00_pq_.x\x00y\x00\x00"
    startup = pq.parse_startup(struct.pack("!I", 8 + len(body)) + minor + body)
    assert startup.unsupported == ["_pq_.x"] and startup.version & 0xFFFF == 2


def test_error_response_fields_round_trip() -> None:
    msg = pq.error_response("boom", "57P01", severity="FATAL", hint="h")
    fields = pq.parse_error_fields(msg)
    assert fields["S"] == "FATAL" and fields["C"] == "57P01" and fields["M"] == "boom"
    assert fields["H"] == "h"


REPORTED = {"application_name", "timezone", "client_encoding", "datestyle"}


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("select 1", []),
        ("update t set x = 1", []),
        # a session SET of a GUC the server does not report: noted, read back, replayed
        ("SET statement_timeout = 5", [("setting", "set")]),
        ("set session search_path to a", [("setting", "set")]),
        ("reset statement_timeout", [("setting", "reset")]),
        ("set statement_timeout to default", [("setting", "set")]),
        ("RESET ALL", [("reset_all", "")]),
        ("set statement_timeout from current", [("pin", "set")]),
        ("set session characteristics as transaction read only", [("pin", "set")]),
        ("set session authorization nobody", [("pin", "set")]),
        ("SET LOCAL statement_timeout = 5", []),
        ("set application_name = 'x'", []),
        ("SET TIME ZONE 'UTC'", []),
        ("set transaction isolation level serializable", []),
        ("set role nobody", [("pin", "set")]),
        ("LISTEN chan", []),  # served through the pool (notify.py)
        # advisory locks: the locks held are asked of the server at the transaction's end
        ("select pg_advisory_lock(1)", [("advisory", "lock")]),
        ("select pg_advisory_unlock(1)", [("advisory", "unlock")]),
        ("select pg_advisory_unlock_all()", [("advisory", "unlock")]),
        ("select pg_advisory_lock_shared(1), pg_advisory_unlock(2)", [("advisory", "lock")]),
        ("select pg_advisory_xact_lock(1)", []),
        ("select pg_try_advisory_lock(1)", [("advisory", "lock")]),
        ("create temp table x (a int)", [("pin", "temp_table")]),
        ("CREATE TEMPORARY TABLE x (a int) ON COMMIT DROP", []),
        ("create table temps (a int)", [("schema", "")]),
        # schema changes: statements whose parameter types were inferred are parsed again
        ("DROP TABLE t", [("schema", "")]),
        ("alter table t alter column v type text", [("schema", "")]),
        ("Create\tType mood AS ENUM ('a')", [("schema", "")]),
        ("ALTER SYSTEM SET work_mem = '1MB'", []),
        ("select created_at, dropped from t", []),
        ("select 'drop table t'", []),
        ("declare c cursor with hold for select 1", [("pin", "cursor_with_hold")]),
        ("declare c cursor for select 1", []),
        ("prepare p as select 1", [("pin", "prepare")]),
        ("prepare transaction 'x'", []),
        ("deallocate all", [("deallocate_all", "")]),
        ("DEALLOCATE PREPARE s1", [("deallocate", "")]),
        ("discard all", [("discard_all", "")]),
        ("select set_config('a.b', 'c', false)", [("setting", "set")]),
        ("SELECT pg_catalog.set_config('a.b', NULL, false) AS x", [("setting", "set")]),
        ("select set_config('a.b', 'c', true)", []),
        # not read with certainty: pinned
        ("select set_config('a.b', $1, false)", [("pin", "set")]),
        ("select set_config(name, 'c', false) from t", [("pin", "set")]),
        ("select set_config('a.b', 'c', true), set_config('d.e', 'f', false)", [("pin", "set")]),
        ("select set_config('a.b', 'c\\', false)", [("pin", "set")]),
        ("DO $$BEGIN SET search_path TO x; END$$", [("pin", "set")]),
        ("do $$begin perform set_config('a.b', 'c', false); end$$", [("pin", "set")]),
        ("DO $$BEGIN UPDATE t SET a = 1; END$$", []),
        ("DO $$BEGIN SET LOCAL search_path TO x; END$$", []),
        (
            "create function f() returns void language sql as $$ set work_mem = '1MB' $$",
            [("pin", "set")],
        ),
        (
            "create function f() returns int language sql as 'update t set a = 1 returning a'",
            [("schema", "")],
        ),
        ("select 'set x = 1; listen y'", []),
        ("/* c */ -- x\n listen y; select 1", []),
        ("begin; set statement_timeout = 1; commit", [("setting", "set")]),
        ("select $$;listen x$$", []),
    ],
)
def test_session_state_classification(sql: str, expected: list[tuple[str, str]]) -> None:
    got = [(e.kind, e.reason) for e in classify(sql.encode(), REPORTED)]
    assert got == expected


@pytest.mark.parametrize(
    ("sql", "database"),
    [
        ("DROP DATABASE shop", "shop"),
        ('drop database if exists "Shop" with (force)', "Shop"),
        ("Drop Database Shop", "shop"),
        ("ALTER DATABASE shop RENAME TO store", "shop"),
        ("alter database shop set work_mem = '1MB'", None),
        ("CREATE DATABASE copy TEMPLATE shop", "shop"),
        ("create database copy with owner = a template = shop encoding 'UTF8'", "shop"),
        ("create database fresh", None),
        ("select 'drop database shop'", None),
    ],
)
def test_statements_that_need_a_database_to_themselves(sql: str, database: str | None) -> None:
    """Named so that the pool can close its connections to that database first."""
    got = [e.statement for e in classify(sql.encode(), REPORTED) if e.kind == "database"]
    assert got == ([database] if database else [])


def test_quoted_names_keep_their_case_and_gucs_do_not() -> None:
    assert [e.statement for e in classify(b'DEALLOCATE "MyStmt"')] == ["MyStmt"]
    assert classify(b"SET \"TimeZone\" = 'UTC'", REPORTED) == []


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.text(max_size=300))
def test_classify_never_crashes(sql: str) -> None:
    classify(sql.encode(errors="surrogatepass"), REPORTED)
    split_statements(sql)


KEYWORDS = ["set", "listen", "advisory", "temp", "hold", "prepare", "deallocate", "discard",
            "database"]  # fmt: skip
# a schema change's verb followed by a blank (`created_at` is no hit)
DDL = re.compile(rb"(?:create|alter|drop)[ \t\n\r\f\v]")
# texts built of keywords, their pieces, digits and other SQL, in any case
sql_pieces = st.lists(
    st.sampled_from([*KEYWORDS, "SeT", "LISTEN", "se", "t", "lis", "ten", "1", "42", "0",
                     " ", ";", "select", "from x where id = ", "'", "Q\x00\x00\x00\x39",
                     "DROP", "create", "alter", "d", "\t", "_"]),
    max_size=12,
)  # fmt: skip


@settings(max_examples=EXAMPLES, deadline=None)
@given(sql_pieces)
def test_suspect_misses_no_keyword(pieces: list[str]) -> None:
    """suspect() answers by the text's shape (its digits stripped) and remembers it: it
    never clears a text that holds a keyword, however often the same shape comes back."""
    text = "".join(pieces).encode()
    holds = any(word.encode() in text.lower() for word in KEYWORDS) or bool(
        DDL.search(text.lower())
    )
    for _ in range(2):  # the second answer comes from the remembered shape
        assert suspect(text) or not holds
    if not holds and not any(c.isdigit() for c in text.decode()):
        assert not suspect(text)


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    st.lists(st.integers(1, 12), max_size=5),
    st.lists(st.sampled_from([0, 23, 25, 1082]), max_size=6),
    st.sampled_from(["", "'$x$' || ", "$tag$ a $tag$ || ", "col$1 + "]),
)
def test_a_parse_body_says_whether_postgresql_infers_a_parameter_type(
    params: list[int], oids: list[int], noise: str
) -> None:
    """Inferred: an OID 0, or a $n beyond the types given (the statements a schema
    change may type otherwise); `col$1` is an identifier, not a parameter."""
    text = noise + " + ".join(f"${n}" for n in params) or "1"
    body = ("SELECT " + text).encode() + b"\x00" + struct.pack(f"!H{len(oids)}I", len(oids), *oids)
    expected = 0 in oids or any(n > len(oids) for n in params)
    if noise == "col$1 + ":
        expected = expected or len(oids) < 1  # read as $1: cautious, never wrong the other way
    assert pq.infers_param_types(body) == expected


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.binary(max_size=80))
def test_any_parse_body_is_read_without_error(body: bytes) -> None:
    assert isinstance(pq.infers_param_types(body), bool)


statement_pieces = st.lists(
    st.sampled_from(["select", "insert into t values ", "set x = 1", "create table t (a int)",
                     "pg_advisory_lock(1)", "set_config('a.b', 'c', false)", "into temp t",
                     "'", '"', ";", "; ", " ", "--", "\n", "/*", "*/", "$$", "$q$", "x",
                     "listen y", "drop ", "(1, 'a;b')", "0", "\t;\t"]),
    max_size=14,
)  # fmt: skip


@settings(max_examples=EXAMPLES, deadline=None)
@given(statement_pieces, st.integers(0, 40))
def test_one_statement_read_without_splitting_as_split_one(pieces: list[str], pad: int) -> None:
    """classify reads a text with no `;` but a last one without splitting it (a bulk
    INSERT of a megabyte cost 260 ms split, 7 ms so): what it finds is what the
    statements split one by one give, whatever the quotes and comments. (The statement
    an event quotes for the log may lack a last `;` that sits in an open quote or a
    comment.)"""
    text = "".join(pieces) + "a" * pad
    split = [e for s in split_statements(text) if (e := _classify_one(s, REPORTED)) is not None]

    def seen(events: list[SessionEvent]) -> list[tuple[str, str, str]]:
        return [(e.kind, e.reason, " ".join(e.statement.replace(";", " ").split())) for e in events]

    assert seen(classify(text.encode(), REPORTED)) == seen(split), text
