"""notify.py's pure parts: NotificationResponse framing, LISTEN/UNLISTEN in SQL text (as
PostgreSQL folds, quotes and truncates channel names), and a client's channels after
its transaction. tests/integration/pg_ambassador/test_listen.py checks the channel names
against a real PostgreSQL."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podkit.ambassadors.postgres import protocol as pq
from podkit.ambassadors.postgres.notify import (
    LISTEN,
    UNLISTEN,
    apply_ops,
    listen_ops,
    ops_in,
    quote_channel,
    truncate_name,
)

EXAMPLES = int(os.environ.get("PG_FUZZ_EXAMPLES", "300"))
# what a channel name can hold: any character but NUL (none in a protocol string)
NAMES = st.text(
    st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
    min_size=1,
    max_size=80,
)


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    pid=st.integers(0, 2**32 - 1),
    channel=NAMES,
    payload=st.text(
        st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=200
    ),
)
def test_notification_response_round_trip(pid: int, channel: str, payload: str) -> None:
    msg = pq.notification_response(pid, channel, payload)
    assert list(pq.iter_messages(msg)) == [(pq.NOTIFICATION_RESPONSE, msg)]
    assert pq.parse_notification(msg) == (pid, channel, payload)
    assert pq.notification_channel(msg) == channel.encode()


def test_notification_response_bytes() -> None:
    assert pq.notification_response(7, "c", "p") == b"A\x00\x00\x00\x0c\x00\x00\x00\x07c\x00p\x00"


@settings(max_examples=EXAMPLES, deadline=None)
@given(channel=NAMES)
def test_a_quoted_channel_is_read_back_as_postgresql_names_it(channel: str) -> None:
    assert listen_ops(f"LISTEN {quote_channel(channel)}") == [(LISTEN, truncate_name(channel))]
    assert listen_ops(f"unlisten {quote_channel(channel)} ;") == [
        (UNLISTEN, truncate_name(channel))
    ]


@pytest.mark.parametrize(
    ("sql", "ops"),
    [
        ("LISTEN jobs", [(LISTEN, "jobs")]),
        ("listen Jobs", [(LISTEN, "jobs")]),  # unquoted: folded
        ('LISTEN "Jobs"', [(LISTEN, "Jobs")]),  # quoted: kept
        ('LISTEN "a""b"', [(LISTEN, 'a"b')]),
        ("LISTEN Übel", [(LISTEN, "Übel")]),  # only ASCII letters are folded
        ("LISTEN a$1_b", [(LISTEN, "a$1_b")]),
        ("  /* c */ listen -- x\n  /* y */ chan  ", [(LISTEN, "chan")]),
        ("UNLISTEN *", [(UNLISTEN, None)]),
        ("unlisten chan", [(UNLISTEN, "chan")]),
        ("select 1; LISTEN a; UNLISTEN b", [(LISTEN, "a"), (UNLISTEN, "b")]),
        ("BEGIN; LISTEN a; COMMIT", [(LISTEN, "a")]),
        ('U&"d\\0061t\\+000061"', []),
        ('LISTEN U&"d\\0061t\\+000061"', [(LISTEN, "data")]),
        ("LISTEN U&\"d!0061t!+000061\" UESCAPE '!'", [(LISTEN, "data")]),
        ("LISTEN " + "x" * 70, [(LISTEN, "x" * 63)]),  # NAMEDATALEN - 1 bytes
        ('LISTEN "' + "é" * 40 + '"', [(LISTEN, "é" * 31)]),  # never inside a character
        # what PostgreSQL refuses (a syntax error: nothing to track) or is no LISTEN
        ("LISTEN", []),
        ("LISTEN a b", []),
        ("LISTEN *", []),
        ("listener", []),
        ("select 'listen x'", []),
        ("select $$;listen x$$", []),
        ("DO $$BEGIN EXECUTE 'LISTEN x'; END$$", []),  # not seen (the README's limits)
        ('LISTEN ""', []),
    ],
)
def test_listen_ops(sql: str, ops: list[tuple[str, str | None]]) -> None:
    assert listen_ops(sql) == ops


def test_ops_in_a_batch_follow_prepared_statements() -> None:
    statements: dict[bytes, list[tuple[str, str | None]]] = {}
    parse = pq.parse_message(b"s1", b"LISTEN a\x00\x00\x00")
    bind = pq.message(b"B", b"\x00s1\x00\x00\x00\x00\x00\x00\x00")
    assert ops_in([(pq.PARSE, parse), (pq.SYNC_MSG, pq.SYNC)], statements) == [(LISTEN, "a")]
    # run again later by Bind alone
    assert ops_in([(pq.BIND, bind), (pq.SYNC_MSG, pq.SYNC)], statements) == [(LISTEN, "a")]
    # the name parsed again as something else: no longer a LISTEN
    other = pq.parse_message(b"s1", b"select 1\x00\x00\x00")
    assert ops_in([(pq.PARSE, other), (pq.BIND, bind)], statements) == []
    assert ops_in([(pq.QUERY, pq.query("UNLISTEN *"))]) == [(UNLISTEN, None)]


@pytest.mark.parametrize(
    ("before", "ops", "committed", "after"),
    [
        (set(), [(LISTEN, "a")], {"a"}, {"a"}),
        (set(), [(LISTEN, "a")], set(), set()),  # rolled back
        ({"a"}, [(UNLISTEN, None), (LISTEN, "b")], {"b"}, {"b"}),
        ({"a"}, [(LISTEN, "b"), (UNLISTEN, None)], set(), set()),
        ({"a"}, [(LISTEN, "a"), (UNLISTEN, "a")], set(), set()),
        ({"a"}, [(UNLISTEN, "a"), (LISTEN, "a")], {"a"}, {"a"}),
        ({"a", "b"}, [(UNLISTEN, "b")], set(), {"a"}),
    ],
)
def test_apply_ops(
    before: set[str], ops: list[tuple[str, str | None]], committed: set[str], after: set[str]
) -> None:
    assert apply_ops(before, ops, committed) == after


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.text(max_size=300))
def test_listen_ops_never_raise(sql: str) -> None:
    for verb, channel in listen_ops(sql):
        assert verb in (LISTEN, UNLISTEN)
        assert channel is None or 0 < len(channel.encode()) <= 63
