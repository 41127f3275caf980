"""The record builder: any bytes in, exactly one line of valid JSON out, raw recoverable."""

from __future__ import annotations

import base64
import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podkit.adapters.log_json.normalize import TimeParser, normalize_level
from podkit.adapters.log_json.record import RecordBuilder
from podkit.parsers import InputType, LoadedParser, ParseError, load_parser

PARSERS = ["classic", "json", "logfmt", "nginx", "syslog", "cri", "klog", "python"]
# Bytes that look like log lines sometimes, and like garbage the rest of the time.
LINES = st.one_of(
    st.binary(max_size=300),
    st.builds(
        lambda head, tail: head + tail,
        st.sampled_from(
            [
                b"2024-05-01 12:00:00 ERROR ",
                b'{"msg":',
                b"level=info msg=",
                b"<34>Oct 11 22:14:15 h a: ",
            ]
        ),
        st.binary(max_size=200),
    ),
)


def user_parser(func: Any, input_type: InputType = "bytes") -> LoadedParser:
    """A user's parser as load_parser would wrap it."""
    return LoadedParser(func, "user", input_type)


def check_one_record(out: bytes, raw: bytes, *, keep_raw: bool) -> dict[str, Any]:
    assert out.endswith(b"\n") and out.count(b"\n") == 1, out
    # Valid UTF-8 and no raw control character anywhere: escaped, every one.
    text = out[:-1].decode("utf-8")
    assert not any(ord(c) < 0x20 for c in text)
    record = json.loads(text)
    assert isinstance(record, dict)
    if "raw_b64" in record:
        assert base64.b64decode(record["raw_b64"]) == raw
    elif "parse_error" in record and record["parse_error"] != "bad_timestamp":
        assert record["message"].encode("utf-8") == raw  # a failure: the line, as it was
    elif keep_raw:
        assert record["raw"].encode("utf-8") == raw
    return record


@pytest.mark.parametrize("name", PARSERS)
@settings(max_examples=150, deadline=None)
@given(raw=LINES)
def test_any_bytes_become_one_valid_json_line(name: str, raw: bytes) -> None:
    for keep_raw in (False, True):
        builder = RecordBuilder(load_parser(name), keep_raw=keep_raw)
        out = builder.encode([raw])
        if not out:  # CRI held a partial line: flushed by the next one
            assert name == "cri" and builder.stats.pending == 1
            continue
        check_one_record(out, raw, keep_raw=keep_raw)
        assert builder.stats.lines_in == 1 and builder.stats.records_out == 1


JSONISH = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(10**40), max_value=10**40),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF)),
        st.binary(max_size=20),
        st.sampled_from(["\udcff", "a\ud800b"]),  # lone surrogates: not UTF-8-encodable
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=5), st.integers()), children, max_size=4),
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(fields=st.dictionaries(st.text(max_size=8), JSONISH, max_size=6), raw=st.binary(max_size=50))
def test_whatever_a_user_parser_returns_is_encoded(fields: dict[str, Any], raw: bytes) -> None:
    def parser(line: bytes) -> dict[str, Any]:
        return dict(fields)

    builder = RecordBuilder(user_parser(parser))
    out = builder.encode([raw])
    check_one_record(out, raw, keep_raw=False)


def test_parser_exceptions_cost_one_line_not_the_helper() -> None:
    calls = iter([ValueError("boom"), ParseError("nope", kind="custom_kind"), None, 42])

    def parser(line: str) -> Any:
        outcome = next(calls)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    builder = RecordBuilder(user_parser(parser, "str"))
    out = builder.encode([b"a", b"b", b"c", b"d"]).splitlines()
    records = [json.loads(line) for line in out]
    assert [r.get("parse_error") for r in records] == [
        "exception",
        "custom_kind",
        "bad_result",
        "bad_result",
    ]
    assert [r["message"] for r in records] == ["a", "b", "c", "d"]
    assert dict(builder.stats.failures) == {"exception": 1, "custom_kind": 1, "bad_result": 2}


def test_types_are_applied_and_bad_values_counted() -> None:
    builder = RecordBuilder(
        load_parser("logfmt"), types={"n": "int", "f": "float", "ok": "bool", "bad": "int"}
    )
    record = json.loads(builder.encode([b"n=42 f=1.5 ok=yes bad=x12 msg=hi"]))
    assert record["n"] == 42 and record["f"] == 1.5 and record["ok"] is True
    assert record["bad"] == "x12"
    assert builder.stats.type_errors["bad"] == 1
    record = json.loads(builder.encode([b"f=nan msg=x"]))
    assert record["f"] == "nan"  # JSON has no NaN: left as text, counted


@pytest.mark.parametrize(
    ("given_level", "expected"),
    [
        ("WARN", "warning"), ("warning", "warning"), ("W", "warning"), ("[ERROR]", "error"),
        ("err", "error"), ("Fatal", "critical"), ("panic", "critical"), (3, "error"),
        ("<4>", "warning"), ("TRACE", "trace"), ("Informational", "info"), ("weird", "weird"),
    ],
)  # fmt: skip
def test_levels_are_normalised(given_level: Any, expected: str) -> None:
    assert normalize_level(given_level) == expected


@pytest.mark.parametrize(
    ("fmt", "zone", "value", "expected"),
    [
        ("iso", "UTC", "2024-05-01 12:00:00", "2024-05-01T12:00:00+00:00"),
        ("iso", "Europe/Berlin", "2024-05-01 12:00:00", "2024-05-01T12:00:00+02:00"),
        ("iso", "UTC", "2024-05-01T12:00:00.123456789Z", "2024-05-01T12:00:00.123456+00:00"),
        ("iso", "+05:30", "2024-05-01T12:00:00", "2024-05-01T12:00:00+05:30"),
        ("clf", "UTC", "10/Oct/2000:13:55:36 -0700", "2000-10-10T13:55:36-07:00"),
        ("epoch", "UTC", "1714564800", "2024-05-01T12:00:00+00:00"),
        ("epoch_ms", "UTC", "1714564800500", "2024-05-01T12:00:00.500000+00:00"),
        ("%d.%m.%Y %H:%M", "UTC", "01.05.2024 12:00", "2024-05-01T12:00:00+00:00"),
    ],
)
def test_time_formats_and_zones(fmt: str, zone: str, value: str, expected: str) -> None:
    from podkit.adapters.log_json.normalize import resolve_zone

    assert TimeParser(fmt, resolve_zone(zone))(value) == expected


def test_floats_stay_finite_json() -> None:
    builder = RecordBuilder(user_parser(lambda line: {"x": math.inf, "y": math.nan}))
    record = json.loads(builder.encode([b"line"]))
    assert record["x"] is None and record["y"] is None


def test_cri_partials_join_per_file_and_flush_at_the_end() -> None:
    base = RecordBuilder(load_parser("cri"))
    first, second = base.fork(), base.fork()
    assert first.parser is not second.parser  # one parser state per followed file
    assert first.encode([b"2024-05-01T12:00:00Z stdout P a-"]) == b""
    assert second.encode([b"2024-05-01T12:00:00Z stdout P b-"]) == b""
    joined = json.loads(first.encode([b"2024-05-01T12:00:01Z stdout F end"]))
    assert joined["message"] == "a-end" and joined["partial_count"] == 2
    held = json.loads(second.flush())
    assert held["message"] == "b-" and held["truncated"] is True
    assert second.flush() == b""


FIELD_TEXT = st.text(alphabet=st.sampled_from(list('ab "-/ \t[]GET HTTP/1.1x')), max_size=30)


@settings(max_examples=300, deadline=None)
@given(request=FIELD_TEXT, referer=FIELD_TEXT, agent=FIELD_TEXT, tail=FIELD_TEXT)
def test_fast_access_log_pattern_agrees_with_the_full_one(
    request: str, referer: str, agent: str, tail: str
) -> None:
    """Lines without a backslash take the plain pattern: it must parse exactly the same."""
    from podkit.adapters.log_json.parsers.access import AccessLogParser

    line = (
        f'10.0.0.1 - - [01/May/2024:12:00:00 +0000] "{request}" 200 12 "{referer}" "{agent}"{tail}'
    )
    for fmt in ("combined", "common"):
        parser = AccessLogParser(fmt)
        plain, full = parser._plain(line), parser._escaped(line)
        assert (plain and plain.groups()) == (full and full.groups())
        assert (plain and plain.end()) == (full and full.end())


@settings(max_examples=200, deadline=None)
@given(
    messages=st.lists(
        st.tuples(
            st.sampled_from(["stdout", "stderr"]),
            st.lists(st.text(max_size=20), min_size=1, max_size=5),
        ),
        max_size=6,
    )
)
def test_cri_reassembles_any_split_per_stream(messages: list[tuple[str, list[str]]]) -> None:
    """Each message cut into P parts and an F end comes out whole, in order per stream."""
    builder = RecordBuilder(load_parser("cri"))
    lines = []
    for stream, parts in messages:
        for index, part in enumerate(parts):
            tag = "F" if index == len(parts) - 1 else "P"
            lines.append(f"2024-05-01T12:00:00Z {stream} {tag} {part}".encode())
    out = builder.encode(lines) + builder.flush()
    got = [json.loads(line) for line in out.splitlines()]
    assert [(r["stream"], r["message"]) for r in got] == [
        (stream, "".join(parts)) for stream, parts in messages
    ]


def test_failure_kinds_are_capped() -> None:
    from podkit.adapters.log_json.record import MAX_FAILURE_KINDS

    def parser(line: str) -> Any:
        raise ParseError("bad", kind=f"kind-{line}")

    builder = RecordBuilder(user_parser(parser, "str"))
    out = builder.encode([str(i).encode() for i in range(MAX_FAILURE_KINDS + 20)])
    assert out.count(b"\n") == MAX_FAILURE_KINDS + 20
    assert len(builder.stats.failures) == MAX_FAILURE_KINDS + 1
    assert builder.stats.failures["other"] == 20
