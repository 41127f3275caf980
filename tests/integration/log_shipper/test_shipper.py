"""`podkit log-shipper` as a real process: files in, every line out, counted by seq."""

from __future__ import annotations

import signal
import subprocess

import orjson
import pytest

from podkit_dev.servers import podkit_argv, wait_for
from tests.integration.log_shipper.e2e import (
    Writer,
    metric,
    nginx_line,
    read_jsonl,
    tally_file,
)


def shipper_args(tmp_path, *extra: str) -> list[str]:
    return [
        "--path", str(tmp_path / "logs" / "*.log*"),
        "--state-dir", str(tmp_path / "state"),
        "--output", "file", "--file-path", str(tmp_path / "out.jsonl"),
        "--batch-timeout", "50ms", "--refresh-interval", "200ms", "--rotate-wait", "2s",
        *extra,
    ]  # fmt: skip


def run_refused(*args: str) -> subprocess.CompletedProcess[str]:
    """`podkit log-shipper` with a configuration it must refuse before starting."""
    return subprocess.run(
        [*podkit_argv(), "log-shipper", "--path", "/tmp/none/*.log", *args],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip


def test_rotating_writer_every_line_once_then_sigterm_exits_0(run_helper, tmp_path, logs):
    shipper = run_helper(
        "log-shipper", *shipper_args(tmp_path), env={"POD_NAME": "web-1", "POD_NAMESPACE": "shop"}
    )
    writer = Writer(logs / "access.log", 20_000, rotate_every=4_000, lines_per_second=20_000)
    writer.start()
    writer.finish()
    out = tmp_path / "out.jsonl"
    wait_for(lambda: len(tally_file(out)) == 20_000, timeout=60, what="all 20000 lines shipped")
    assert shipper.stop(signal.SIGTERM) == 0
    tally = tally_file(out)
    assert tally.missing(range(20_000)) == [] and tally.duplicates == 0
    record = read_jsonl(out)[0]
    assert record["pod"] == "web-1" and record["namespace"] == "shop"
    assert record["path"].startswith(str(logs)) and isinstance(record["offset"], int)
    assert writer.rotations == 5


def test_sigterm_drain_delivers_the_tail_and_a_partial_line(run_helper, tmp_path, logs):
    (logs / "app.log").write_bytes(b"".join(nginx_line(i) + b"\n" for i in range(500)))
    shipper = run_helper(
        "log-shipper", *shipper_args(tmp_path, "--flush-timeout", "60s", "--batch-timeout", "30s")
    )
    out = tmp_path / "out.jsonl"
    # Written just before the SIGTERM: the drain must read it, partial last line included.
    with open(logs / "app.log", "ab") as handle:
        handle.write(b"".join(nginx_line(i) + b"\n" for i in range(500, 1000)))
        handle.write(nginx_line(1000))  # no newline: the app died mid-line
    shipper.process.send_signal(signal.SIGTERM)
    assert shipper.wait_exit(30) == 0
    tally = tally_file(out)
    assert tally.missing(range(1001)) == [] and tally.duplicates == 0
    # The checkpoint is past everything: a restart ships nothing again.
    again = run_helper("log-shipper", *shipper_args(tmp_path))
    assert again.stop(signal.SIGTERM) == 0
    assert tally_file(out).duplicates == 0


def test_hundred_files(run_helper, tmp_path, logs):
    for n in range(100):
        lines = (nginx_line(n * 1000 + i) + b"\n" for i in range(200))
        (logs / f"app-{n:03d}.log").write_bytes(b"".join(lines))
    shipper = run_helper("log-shipper", *shipper_args(tmp_path))
    out = tmp_path / "out.jsonl"
    wait_for(lambda: len(tally_file(out)) == 20_000, timeout=60, what="lines of 100 files")
    assert shipper.stop(signal.SIGTERM) == 0
    records = read_jsonl(out)
    tally = tally_file(out)
    expected = [n * 1000 + i for n in range(100) for i in range(200)]
    assert sorted(tally.counts) == expected and tally.duplicates == 0
    # Per file, lines arrive in file order.
    by_path: dict[str, list[int]] = {}
    for record in records:
        by_path.setdefault(record["path"], []).append(record["offset"])
    assert len(by_path) == 100
    assert all(offsets == sorted(offsets) for offsets in by_path.values())


def test_ten_megabyte_line_and_invalid_utf8(run_helper, tmp_path, logs):
    big = b"seq=1 " + b"A" * (10 * 1024 * 1024)
    bad = b"seq=2 caf\xe9 \xff\xfe broken \xc3"
    lines = [nginx_line(0), big, bad, nginx_line(3)]
    (logs / "app.log").write_bytes(b"".join(line + b"\n" for line in lines))
    shipper = run_helper("log-shipper", *shipper_args(tmp_path, "--max-line-bytes", "16MiB"))
    out = tmp_path / "out.jsonl"
    wait_for(lambda: len(tally_file(out)) == 4, timeout=60, what="4 lines shipped")
    metrics = shipper.metrics()
    assert shipper.stop(signal.SIGTERM) == 0
    records = {r["offset"]: r for r in read_jsonl(out)}
    assert len(records) == 4
    messages = [records[o]["message"] for o in sorted(records)]
    assert messages[1].encode() == big  # 10 MB, intact
    assert messages[2] == "seq=2 caf\\xe9 \\xff\\xfe broken \\xc3"
    assert metric(metrics, "log_shipper_invalid_utf8_lines_total") == 1


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--output", "http"], "missing required setting --http-url"),
        (["--output", "file", "--file-path", "/x", "--http-url", "http://h"], "--http-url"),
        (["--output", "nosuch"], "unknown output 'nosuch'"),
        (["--output", "redis", "--redis-url", "http://h"], "--redis-url"),
        (["--output", "http", "--http-url", "http://h", "--http-password-file", "/no"], "/no"),
    ],
)
def test_bad_configuration_exits_2_with_one_line(args, expected):
    result = run_refused(*args)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and expected in result.stderr


def test_yaml_outputs_fan_out_to_two_files(run_helper, tmp_path, logs):
    config = tmp_path / "shipper.yaml"
    config.write_text(
        orjson.dumps(
            {
                "path": [str(logs / "*.log")],
                "outputs": [
                    {"type": "file", "name": "a", "path": str(tmp_path / "a.jsonl"),
                     "batch_max_records": 100},
                    {"type": "file", "name": "b", "path": str(tmp_path / "b.jsonl"),
                     "batch_timeout": "10ms"},
                ],
            }
        ).decode()  # JSON is YAML
    )  # fmt: skip
    (logs / "app.log").write_bytes(b"".join(nginx_line(i) + b"\n" for i in range(3000)))
    shipper = run_helper("log-shipper", "--config", str(config))
    for name in ("a", "b"):
        wait_for(
            lambda n=name: len(tally_file(tmp_path / f"{n}.jsonl")) == 3000, what=f"{name} full"
        )
    metrics = shipper.metrics()
    assert metric(metrics, "log_shipper_records_sent_total", output="a") == 3000
    assert metric(metrics, "log_shipper_records_sent_total", output="b") == 3000
    assert shipper.stop(signal.SIGTERM) == 0


def test_parser_ships_fields(run_helper, tmp_path, logs):
    (logs / "app.log").write_bytes(
        b"".join(nginx_line(i) + b"\n" for i in range(100)) + b"garbage seq=100\n"
    )
    shipper = run_helper("log-shipper", *shipper_args(tmp_path, "--parser", "nginx"))
    out = tmp_path / "out.jsonl"
    wait_for(lambda: len(tally_file(out)) == 101, what="101 lines shipped")
    metrics = shipper.metrics()
    assert shipper.stop(signal.SIGTERM) == 0
    records = read_jsonl(out)
    assert all(r["fields"]["method"] == "GET" for r in records[:100])
    assert "fields" not in records[100]
    assert metric(metrics, "log_shipper_parse_errors_total") == 1


@pytest.mark.parametrize(
    ("parser", "expected"), [("nosuch", "unknown parser 'nosuch'"), ("cri", "stateful")]
)
def test_bad_parser_exits_2(parser, expected):
    result = run_refused("--parser", parser)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and expected in result.stderr
