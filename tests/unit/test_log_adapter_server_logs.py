"""Issue 20's parsers beyond their golden files: any bytes, the other forms they read,
and the time formats they need.

Hypothesis runs `max_examples` per parser (kept small for CI); for a longer run:
`PODKIT_HYPOTHESIS_EXAMPLES=5000 .venv/bin/python -m pytest tests/unit/test_log_adapter_server_logs.py`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podkit.adapters.log_json.normalize import TimeParser, resolve_zone
from podkit.adapters.log_json.record import RecordBuilder
from podkit.parsers import ParserLoadError, load_parser

from .test_log_adapter_record import check_one_record

GOLDEN = Path(__file__).parent.parent / "golden" / "log_adapter"
NEW_PARSERS = [
    "postgresql", "redis", "mariadb", "nginx_error", "apache_error", "rabbitmq", "nats",
    "mosquitto", "haproxy", "java", "go", "node", "k8s-nginx-ingress", "docker",
    "docker-daemon", "syslog-rfc3164-local", "mongodb", "envoy", "istio-envoy-proxy",
    "kube-custom", "kmsg-netfilter-log", "auto",
]  # fmt: skip
EXAMPLES = int(os.environ.get("PODKIT_HYPOTHESIS_EXAMPLES", "40"))


def _heads() -> list[bytes]:
    """The first 40 bytes of every golden line: real prefixes, random tails."""
    heads = set()
    for name in NEW_PARSERS:
        path = GOLDEN / f"{name}.in"
        if path.exists():
            for line in path.read_bytes().split(b"\n")[:6]:
                heads.add(line[:40])
    return sorted(heads)


LINES = st.one_of(
    st.binary(max_size=300),
    st.builds(lambda head, tail: head + tail, st.sampled_from(_heads()), st.binary(max_size=200)),
    st.builds(
        lambda head, tail: head + tail.encode("utf-8", "surrogatepass"),
        st.sampled_from(_heads()),
        st.text(max_size=200),
    ),
)


@pytest.mark.parametrize("name", NEW_PARSERS)
@settings(max_examples=EXAMPLES, deadline=None)
@given(raw=LINES)
def test_any_bytes_become_one_valid_json_line(name: str, raw: bytes) -> None:
    builder = RecordBuilder(load_parser(name))
    out = builder.encode([raw])
    record = check_one_record(out, raw, keep_raw=False)
    assert record.get("parse_error") != "exception", record  # no parser bug on any input
    assert builder.stats.lines_in == 1 and builder.stats.records_out == 1


def parse(name: str, line: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
    record: dict[str, Any] = json.loads(
        RecordBuilder(load_parser(name, options)).encode([line.encode()])
    )
    assert "parse_error" not in record, record
    return record


@pytest.mark.parametrize(
    ("name", "line", "expected"),
    [
        ("redis", "1:X 01 May 2024 12:00:00.123 # +switch-master mymaster 10.0.0.1 6379 10.0.0.2 6379",
         {"role": "sentinel", "level": "warning", "level_raw": "#", "pid": 1}),
        ("mariadb", "2024-05-01T12:00:00.123456Z 0 [System] [MY-010116] [Server] /usr/sbin/mysqld starting",
         {"level": "info", "level_raw": "System", "error_code": "MY-010116", "subsystem": "Server",
          "timestamp": "2024-05-01T12:00:00.123456+00:00"}),
        ("mariadb", "2024-05-01  9:00:00 0 [ERROR] Aborting",
         {"level": "error", "timestamp": "2024-05-01T09:00:00+00:00"}),
        ("nginx_error", '2024/05/01 12:00:00 [warn] 7#7: *9 an upstream response is buffered, '
         'client: 10.0.0.1, server: a.example, request: "POST /x, y HTTP/1.1", '
         'upstream: "http://10.0.0.2:80/x", host: "a.example", referrer: "https://b.example/"',
         {"request": "POST /x, y HTTP/1.1", "referrer": "https://b.example/", "connection": 9,
          "message": "an upstream response is buffered", "level": "warning"}),
        ("nginx_error", "2024/05/01 12:00:00 [emerg] 1#1: bind() to 0.0.0.0:80 failed (98: Address in use)",
         {"level": "fatal", "level_raw": "emerg", "pid": 1}),
        ("apache_error", "[Wed Oct 11 14:32:52 2000] [error] [client 127.0.0.1] client denied",
         {"level": "error", "client": "127.0.0.1", "timestamp": "2000-10-11T14:32:52+00:00"}),
        ("mosquitto", "2024-05-01T12:00:00: Opening ipv4 listen socket on port 1883.",
         {"timestamp": "2024-05-01T12:00:00+00:00"}),
        ("java", "2024-05-01T12:00:00.123Z  INFO 1 --- [shop] [           main] o.s.b.w.e.tomcat.TomcatWebServer         : Tomcat started on port 8080",
         {"level": "info", "pid": 1, "application": "shop", "thread": "main",
          "logger": "o.s.b.w.e.tomcat.TomcatWebServer", "message": "Tomcat started on port 8080"}),
        ("haproxy", '10.0.0.1:5000 [01/May/2024:12:00:00.123] fe be/s1 1/0/2/30/33 200 512 - - ---- '
         '3/3/1/1/0 0/0 {a.example|curl} {text/html} "GET /x HTTP/1.1"',
         {"status": 200, "request_headers": "a.example|curl", "response_headers": "text/html",
          "time_total": 33, "path": "/x"}),
        ("postgresql", "2024-05-01 12:00:00.123 UTC [42] app@shop ERROR:  deadlock detected",
         {"user": "app", "database": "shop", "level": "error"}),
        ("postgresql", "2024-05-01 12:00:00.123 UTC [42] DETAIL:  Process 42 waits for ShareLock",
         {"level": "info", "level_raw": "DETAIL"}),
    ],
)  # fmt: skip
def test_other_forms_of_the_server_logs(name: str, line: str, expected: dict[str, Any]) -> None:
    record = parse(name, line)
    assert {key: record.get(key) for key in expected} == expected


@pytest.mark.parametrize(
    ("fmt", "value", "expected"),
    [
        ("slashed", "2024/05/01 12:00:00.123456", "2024-05-01T12:00:00.123456+00:00"),
        ("redis", "01 May 2024 12:00:00.123", "2024-05-01T12:00:00.123000+00:00"),
        ("ctime", "Wed May 01 12:00:00.588059 2024", "2024-05-01T12:00:00.588059+00:00"),
        ("ctime", "Wed May  1 12:00:00 2024", "2024-05-01T12:00:00+00:00"),
        ("zoned", "2024-05-01 12:00:00.123 UTC", "2024-05-01T12:00:00.123000+00:00"),
        ("zoned", "2024-05-01 12:00:00.123 +03", "2024-05-01T12:00:00.123000+03:00"),
        ("zoned", "2024-05-01 12:00:00 -0530", "2024-05-01T12:00:00-05:30"),
        ("clf", "01/May/2024:12:00:00.123", "2024-05-01T12:00:00.123000+00:00"),
    ],
)
def test_new_time_formats(fmt: str, value: str, expected: str) -> None:
    assert TimeParser(fmt, resolve_zone("UTC"))(value) == expected


def test_an_unknown_zone_word_uses_the_configured_zone() -> None:
    # CET, EST... are ambiguous abbreviations: --timezone says which zone they are.
    parser = TimeParser("zoned", resolve_zone("Europe/Berlin"))
    assert parser("2024-05-01 12:00:00.123 CEST") == "2024-05-01T12:00:00.123000+02:00"


def test_bad_log_line_prefix_is_refused_at_load() -> None:
    with pytest.raises(ParserLoadError, match="unknown escape %z"):
        load_parser("postgresql", {"log_line_prefix": "%z "})


@settings(max_examples=EXAMPLES * 10, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.text(st.sampled_from('ab=" \tc\nx'), min_size=1, max_size=6),
            st.sampled_from(["", "=", '="', "=v", '="q q"']),
        ),
        max_size=6,
    ).map(lambda pairs: " ".join(k + v for k, v in pairs))
)
def test_logfmt_fast_path_agrees_with_the_pair_by_pair_one(text: str) -> None:
    from podkit.adapters.log_json.parsers.logfmt import LogfmtParser
    from podkit.parsers import ParseError

    parser = LogfmtParser()
    results = []
    for parse in (parser.parse, parser.parse_pairs):
        try:
            results.append(parse(text))
        except ParseError as exc:
            results.append(("error", exc.kind))
    assert results[0] == results[1], text


def test_a_time_of_day_gets_the_adapters_date_and_zone() -> None:
    """logback's default line has a time of day only: its date is the adapter's (its
    clock in --timezone), not the wall clock's in UTC; syslog times get the adapter's
    guessed year. The clock moves on: nothing is cached across it."""
    from datetime import UTC, datetime

    now = [datetime(2026, 1, 15, 20, 0, tzinfo=UTC)]  # already 16 January in Tokyo
    builder = RecordBuilder(
        load_parser("java"),
        time_parser=TimeParser("iso", resolve_zone("Asia/Tokyo"), now=lambda: now[0]),
    )
    line = b"23:30:00.250 [main] INFO com.example.App - started"
    assert json.loads(builder.encode([line]))["timestamp"] == "2026-01-16T23:30:00.250000+09:00"
    now[0] = datetime(2026, 1, 16, 20, 0, tzinfo=UTC)
    assert json.loads(builder.encode([line]))["timestamp"] == "2026-01-17T23:30:00.250000+09:00"
    haproxy = RecordBuilder(
        load_parser("haproxy"),
        time_parser=TimeParser("clf", resolve_zone("UTC"), now=lambda: now[0]),
    )
    stopped = b"<132>Dec  1 13:25:51 localhost haproxy[7949]: Proxy web stopped."
    assert json.loads(haproxy.encode([stopped]))["timestamp"] == "2025-12-01T13:25:51+00:00"
