"""`--parser auto`, the `partial` quality and the server parsers' options.

auto is run on the golden inputs, which are real logs of the programs (SOURCES.md): it must
pick the parser named after the program, and lose no line. PostgreSQL's `log_line_prefix`
is checked against a real server started with a custom prefix.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podkit.adapters.log_json.check import read_lines, run_check
from podkit.adapters.log_json.parsers.auto import AutoParser
from podkit.adapters.log_json.record import RecordBuilder
from podkit.adapters.log_json.settings import LogAdapterSettings
from podkit.config import load_settings
from podkit.parsers import ParseError, load_parser
from podkit_dev.servers import HelperProcess, PostgresServer, wait_for

GOLDEN = Path(__file__).parent.parent / "golden" / "log_adapter"
# Inputs and the parser auto must choose for them; `apache` is the `nginx` parser's class.
EXPECTED = {
    "postgresql": "postgresql", "redis": "redis", "mariadb": "mariadb",
    "nginx_error": "nginx_error", "apache_error": "apache_error", "rabbitmq": "rabbitmq",
    "nats": "nats", "mosquitto": "mosquitto", "haproxy": "haproxy", "java": "java",
    "node": "node", "go": "go", "docker": "docker", "docker-daemon": "docker-daemon",
    "mongodb": "mongodb", "envoy": "envoy", "istio-envoy-proxy": "istio-envoy-proxy",
    "kmsg-netfilter-log": "kmsg-netfilter-log", "syslog-rfc3164-local": "syslog-rfc3164-local",
    "k8s-nginx-ingress": "k8s-nginx-ingress", "nginx": "nginx", "nginx-common": "nginx-common",
    "classic": "classic", "klog": "klog", "python": "python", "logfmt": "logfmt",
    "json": "json", "syslog": "syslog",
}  # fmt: skip


def encode_file(builder: RecordBuilder, path: Path) -> list[dict]:
    out = bytearray()
    with open(path, "rb") as handle:
        for chunk in read_lines(handle):
            out += builder.encode(chunk)
    out += builder.flush()
    return [json.loads(line) for line in out.decode().splitlines()]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_auto_chooses_the_program_parser_and_loses_nothing(name: str) -> None:
    parser = load_parser("auto")
    builder = RecordBuilder(parser)
    path = GOLDEN / f"{name}.in"
    records = encode_file(builder, path)
    assert parser.chosen is not None and parser.chosen.name == EXPECTED[name]
    assert len(records) == path.read_bytes().count(b"\n") + 1  # one record per line
    # Whatever the chosen parser reads, auto reads the same (same fields, same values).
    direct = encode_file(RecordBuilder(load_parser(EXPECTED[name])), path)
    for got, want in zip(records, direct, strict=True):
        if name == "logfmt" and "parse_error" in got:
            # auto takes logfmt only with two key=value pairs: bare words are any text.
            assert "parse_error" in want or want["message"] == got["message"]
        elif "parse_error" not in want:
            assert {k: v for k, v in got.items() if k != "timestamp"} == {
                k: v for k, v in want.items() if k != "timestamp"
            }


def test_a_stray_line_of_another_format_falls_back_per_line() -> None:
    parser = AutoParser(sample_lines=5)
    builder = RecordBuilder(parser)
    pg = (GOLDEN / "postgresql.in").read_bytes().split(b"\n")[:10]
    nginx = (GOLDEN / "nginx_error.in").read_bytes().split(b"\n")[6]
    records = [json.loads(r) for r in builder.encode([*pg, nginx, b"\x00 garbage"]).splitlines()]
    assert parser.chosen is not None and parser.chosen.name == "postgresql"
    assert len(records) == 12
    assert records[10]["client"] == "127.0.0.1" and records[10]["connection"] == 2
    assert records[11]["parse_error"] == "no_match" and records[11]["parser"] == "auto"
    assert parser.state.lines["nginx_error"] == 1


def test_a_format_change_is_noticed_and_the_file_sampled_again() -> None:
    reports: list[dict] = []
    parser = AutoParser(sample_lines=3, recheck_lines=10)
    parser.state.on_choice = reports.append
    builder = RecordBuilder(parser)
    redis_lines = (GOLDEN / "redis.in").read_bytes().split(b"\n")
    nats_lines = (GOLDEN / "nats.in").read_bytes().split(b"\n")
    builder.encode(redis_lines[:5])
    assert parser.chosen is not None and parser.chosen.name == "redis"
    builder.encode(nats_lines[:20])  # every line a fallback: re-sampled within a window
    assert [r["parser"] for r in reports] == ["redis", "nats"]
    assert reports[1]["sampled_lines"] == 3 and reports[1]["score"]["full"] == 3


def test_check_prints_the_choice_and_the_runner_up(tmp_path: Path) -> None:
    settings_ = load_settings(
        LogAdapterSettings,
        ["--parser", "auto", "--check", str(GOLDEN / "postgresql.in")],
        {},
        prog="t",
        admin_default=":9702",
    )
    out, err = io.BytesIO(), io.StringIO()
    assert run_check(settings_, out, err) == 0
    summary = err.getvalue()
    assert "check:   auto chose: postgresql (of the sampled lines: 28 parsed fully" in summary
    assert "check:   auto runner-up: classic" in summary
    assert "partial=0" in summary


def test_partial_is_counted_apart_from_parsed() -> None:
    # The example: PostgreSQL's log through `classic` left "UTC [2196] LOG:" in it.
    builder = RecordBuilder(load_parser("classic"))
    builder.encode(
        [
            b"2026-12-01 13:17:06.109 UTC [2195] LOG:  starting PostgreSQL 15.20",
            b"2024-05-01 12:00:00 ERROR something broke",
            b"2024-05-01 12:00:00 plain words, no level",
        ]
    )
    assert builder.stats.partial == 1 and builder.stats.parsed == 2


@settings(max_examples=150, deadline=None)  # PODKIT_HYPOTHESIS_PROFILE / more examples: longer
@given(st.lists(st.text(max_size=200), min_size=1, max_size=30))
def test_auto_never_crashes_and_emits_one_record_per_line(lines: list[str]) -> None:
    parser = AutoParser(sample_lines=4, recheck_lines=8)
    raw = [line.replace("\n", " ").encode("utf-8", "surrogatepass") for line in lines]
    out = RecordBuilder(parser).encode(raw)
    records = [json.loads(line) for line in out.splitlines()]
    assert len(records) == len(raw)
    assert all(r.get("parse_error") != "exception" for r in records)
    for line in lines[:5]:
        with contextlib.suppress(ParseError):
            AutoParser(sample_lines=1).parse(line)


@pytest.mark.parametrize(
    ("prefix", "line", "expected"),
    [
        (
            "%t [%p]: [%l-1] user=%u,db=%d,app=%a,client=%h ",
            "2024-05-01 12:00:00 UTC [42]: [3-1] user=app,db=shop,app=psql,client=10.0.0.5 "
            "ERROR:  division by zero",
            {"pid": 42, "session_line": 3, "user": "app", "database": "shop",
             "application": "psql", "remote_host": "10.0.0.5", "level": "error"},
        ),
        (
            "%m %e %c ",
            "2024-05-01 12:00:00.123 CET 22012 6631f0a0.2a ERROR:  division by zero",
            {"sql_state": "22012", "session_id": "6631f0a0.2a", "level": "error"},
        ),
        (
            "%m [%p] %q%u@%d ",
            "2024-05-01 12:00:00.123 UTC [7] LOG:  checkpoint starting: time",
            {"pid": 7, "level": "info", "level_raw": "LOG"},
        ),
    ],
)  # fmt: skip
def test_postgresql_log_line_prefix_escapes(prefix: str, line: str, expected: dict) -> None:
    builder = RecordBuilder(load_parser("postgresql", {"log_line_prefix": prefix}))
    record = json.loads(builder.encode([line.encode()]))
    assert {k: record.get(k) for k in expected} == expected
    assert record["message"] == line.split(":  ", 1)[1]


def test_postgresql_prefix_of_a_real_server(postgres_server: PostgresServer) -> None:
    """A real server with a custom log_line_prefix; the parser given the same setting."""
    import asyncpg

    prefix = "%m [%p] user=%u,db=%d,app=%a,client=%h "

    async def connect(**kwargs: Any) -> Any:
        # The port opens before the server takes sessions ("starting up"): wait for that.
        for _ in range(600):
            try:
                return await asyncpg.connect(postgres_server.dsn, **kwargs)
            except asyncpg.CannotConnectNowError:
                await asyncio.sleep(0.05)
        raise AssertionError("PostgreSQL did not finish starting up")

    async def work() -> None:
        conn = await connect()
        await conn.execute(f"ALTER SYSTEM SET log_line_prefix = '{prefix}'")
        await conn.execute("SELECT pg_reload_conf()")
        await conn.close()
        # The reload is asynchronous: wait for a session that has the new prefix.
        for _ in range(200):
            conn = await connect(server_settings={"application_name": "shop-api"})
            if await conn.fetchval("SHOW log_line_prefix") == prefix:
                break
            await conn.close()
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("log_line_prefix was not reloaded")
        with pytest.raises(asyncpg.PostgresError):
            await conn.execute("SELECT 1/0")
        await conn.close()

    log = postgres_server.dir.path / "postgres.log"
    asyncio.run(work())
    wait_for(lambda: b"app=shop-api" in log.read_bytes(), what="the error logged", timeout=15)
    line = next(x for x in log.read_bytes().splitlines() if b"app=shop-api" in x and b"ERROR" in x)
    builder = RecordBuilder(load_parser("postgresql", {"log_line_prefix": prefix}))
    record = json.loads(builder.encode([line]))
    assert record["application"] == "shop-api" and record["user"] == "postgres"
    assert record["database"] == "postgres" and record["remote_host"] == "127.0.0.1"
    assert record["level"] == "error" and record["message"] == "division by zero"
    assert builder.stats.parsed == 1


def test_follow_mode_logs_the_choice_per_file_and_labels_the_metric(
    tmp_path: Path, run_helper: Callable[..., HelperProcess]
) -> None:
    """A real `podkit log-adapter --parser auto` following a PostgreSQL and a Redis log."""
    logs = tmp_path / "logs"
    logs.mkdir()
    out = tmp_path / "out.jsonl"
    adapter = run_helper(
        "log-adapter", "--path", str(logs / "*.log"), "--parser", "auto", "--output", "file",
        "--output-path", str(out), "--refresh-interval", "0.1s",
        "--parser-options", '{"sample_lines": 10}',
    )  # fmt: skip
    pg = (GOLDEN / "postgresql.in").read_bytes() + b"\n"
    redis = (GOLDEN / "redis.in").read_bytes() + b"\n"
    (logs / "postgresql.log").write_bytes(pg)
    (logs / "redis.log").write_bytes(redis)
    total = pg.count(b"\n") + redis.count(b"\n")

    def written() -> bool:
        return out.exists() and out.read_bytes().count(b"\n") >= total

    wait_for(written, what=f"{total} records", timeout=30)
    chosen = {
        Path(event["path"]).name: event
        for event in adapter.log_events()
        if event.get("event") == "parser_chosen"
    }
    assert chosen["postgresql.log"]["parser"] == "postgresql"
    assert chosen["redis.log"]["parser"] == "redis"
    assert chosen["redis.log"]["runner_up"] is not None
    metrics = adapter.metrics()
    for name, parser in (("postgresql.log", "postgresql"), ("redis.log", "redis")):
        assert [
            line
            for line in metrics.splitlines()
            if line.startswith("log_adapter_auto_parser{")
            and f'parser="{parser}"' in line
            and f'{name}"' in line
            and line.endswith(" 1.0")
        ], metrics
    records = [json.loads(line) for line in out.read_bytes().splitlines()]
    assert len(records) == total and not [r for r in records if "parse_error" in r]
