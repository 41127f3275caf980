"""pg-ambassador framing, startup packets and session-state detection (no server needed).

The framer is fuzzed with hypothesis; `--hypothesis-seed` and a larger
`PG_FUZZ_EXAMPLES=5000` run longer.
"""

from __future__ import annotations

import os
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podkit.ambassadors.postgres import protocol as pq
from podkit.ambassadors.postgres.session import classify, split_statements

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
        ("SET statement_timeout = 5", [("pin", "set")]),
        ("set session search_path to a", [("pin", "set")]),
        ("SET LOCAL statement_timeout = 5", []),
        ("set application_name = 'x'", []),
        ("SET TIME ZONE 'UTC'", []),
        ("set transaction isolation level serializable", []),
        ("set role nobody", [("pin", "set")]),
        ("LISTEN chan", []),  # served through the pool (notify.py)
        ("select pg_advisory_lock(1)", [("pin", "advisory_lock")]),
        ("select pg_advisory_xact_lock(1)", []),
        ("select pg_try_advisory_lock(1)", [("pin", "advisory_lock")]),
        ("create temp table x (a int)", [("pin", "temp_table")]),
        ("CREATE TEMPORARY TABLE x (a int) ON COMMIT DROP", []),
        ("create table temps (a int)", []),
        ("declare c cursor with hold for select 1", [("pin", "cursor_with_hold")]),
        ("declare c cursor for select 1", []),
        ("prepare p as select 1", [("pin", "prepare")]),
        ("prepare transaction 'x'", []),
        ("deallocate all", [("deallocate_all", "")]),
        ("DEALLOCATE PREPARE s1", [("deallocate", "")]),
        ("discard all", [("discard_all", "")]),
        ("select set_config('a.b', 'c', false)", [("pin", "set")]),
        ("select set_config('a.b', 'c', true)", []),
        ("select 'set x = 1; listen y'", []),
        ("/* c */ -- x\n listen y; select 1", []),
        ("begin; set statement_timeout = 1; commit", [("pin", "set")]),
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
