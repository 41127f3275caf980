"""The classifier of session settings and advisory locks (pg-ambassador's session.py),
over open-ended inputs: any GUC name, any value a SET may be given, any literal."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from podkit.ambassadors.postgres.pool import quote_literal
from podkit.ambassadors.postgres.session import SessionEvent, classify

EXAMPLES = int(os.environ.get("PG_FUZZ_EXAMPLES", "300"))
TRACKED = frozenset({"application_name", "timezone", "client_encoding", "datestyle"})
# words that are SET forms of their own, not a GUC's name
SPECIAL = {"local", "session", "transaction", "constraints", "role", "authorization", "time",
           "names", "schema", "seed", "xml", "all", "characteristics", "catalog"}  # fmt: skip

part = st.from_regex(r"[a-z_][a-z0-9_]{0,15}", fullmatch=True)
names = st.builds(
    lambda a, b: f"{a}.{b}" if b else a, part, st.one_of(st.none(), part)
).filter(lambda n: n not in SPECIAL and n not in TRACKED)  # fmt: skip
text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\\"),
    max_size=40,
)
values = st.one_of(
    st.builds(quote_literal, text),  # 'it''s'
    st.builds(lambda t: '"' + t.replace('"', '""') + '"', text.filter(bool)),  # "B c"
    part,  # a bare word
    st.from_regex(r"-?[0-9]{1,6}(\.[0-9]{1,3})?\s?(ms|s|min|kB|MB)?", fullmatch=True),
)
value_lists = st.lists(values, min_size=1, max_size=4).map(", ".join)


def cased(word: str, flips: list[bool]) -> str:
    flips = (flips + [False] * len(word))[: len(word)]
    return "".join(c.upper() if f else c for c, f in zip(word, flips, strict=True))


@settings(max_examples=EXAMPLES, deadline=None)
@given(names, value_lists, st.sampled_from([" TO ", " = ", "=", " to "]),
       st.lists(st.booleans()), st.sampled_from(["", "  ", "/* c */ ", "-- c\n"]),
       st.sampled_from(["", "SESSION ", "session "]))  # fmt: skip
def test_a_session_set_of_any_value_is_a_setting_of_its_name(
    name: str, value: str, op: str, flips: list[bool], prefix: str, session: str
) -> None:
    sql = f"{prefix}{cased('set', flips)} {session}{cased(name, flips)}{op}{value}"
    assert classify(sql.encode(), TRACKED) == [SessionEvent("setting", "set", name)], sql
    local = f"SET LOCAL {name}{op}{value}"
    assert classify(local.encode(), TRACKED) == []
    # quoted, the name keeps its text and GUC names are case-blind
    quoted = f'SET "{cased(name, flips)}"{op}{value}'
    if "." not in name:
        assert classify(quoted.encode(), TRACKED) == [SessionEvent("setting", "set", name)]


@settings(max_examples=EXAMPLES, deadline=None)
@given(names, value_lists)
def test_statements_around_a_set_do_not_hide_it(name: str, value: str) -> None:
    sql = f"BEGIN; SELECT 'SET x = 1; RESET ALL'; SET {name} TO {value}; COMMIT"
    events = classify(sql.encode(), TRACKED)
    assert events == [SessionEvent("setting", "set", name)]


@settings(max_examples=EXAMPLES, deadline=None)
@given(names)
def test_reset_of_any_name(name: str) -> None:
    assert classify(f"RESET {name}".encode(), TRACKED) == [SessionEvent("setting", "reset", name)]
    assert classify(f"set {name} to default".encode(), TRACKED) == [
        SessionEvent("setting", "set", name)
    ]


@settings(max_examples=EXAMPLES, deadline=None)
@given(names, text)
def test_set_config_with_literals(name: str, value: str) -> None:
    session = f"SELECT set_config({quote_literal(name)}, {quote_literal(value)}, false)"
    assert classify(session.encode(), TRACKED) == [SessionEvent("setting", "set", name)]
    local = f"SELECT set_config({quote_literal(name)}, {quote_literal(value)}, true)"
    assert classify(local.encode(), TRACKED) == []
    # anything else than literals: not read with certainty
    computed = f"SELECT set_config({quote_literal(name)}, lower({quote_literal(value)}), false)"
    assert [e.kind for e in classify(computed.encode(), TRACKED)] == ["pin"]


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.sampled_from(sorted(TRACKED)), value_lists)
def test_a_reported_setting_is_left_to_parameter_status(name: str, value: str) -> None:
    assert classify(f"SET {name} TO {value}".encode(), TRACKED) == []
    assert classify(f"RESET {name}".encode(), TRACKED) == []


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.sampled_from(["", "try_"]), st.sampled_from(["", "_shared"]), st.integers())
def test_advisory_lock_calls_are_noted(try_: str, shared: str, key: int) -> None:
    lock = f"select pg_{try_}advisory_lock{shared}({key})"
    assert [(e.kind, e.reason) for e in classify(lock.encode())] == [("advisory", "lock")]
    unlock = f"select pg_advisory_unlock{shared}({key})"
    assert [(e.kind, e.reason) for e in classify(unlock.encode())] == [("advisory", "unlock")]
    xact = f"select pg_{try_}advisory_xact_lock{shared}({key})"
    assert classify(xact.encode()) == []
