"""The example plugin's own tests: the parser alone, then through podkit, then the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from podkit_parser_example import PipeParser

from podkit.parsers import ParseError, load_parser

SAMPLE = Path(__file__).parent / "sample.log"


def test_parses_columns_and_extras() -> None:
    fields = PipeParser()("2024-05-01T12:00:00Z|ERROR|payments|card declined|order=123")
    assert fields == {
        "timestamp": "2024-05-01T12:00:00Z",
        "level": "ERROR",
        "service": "payments",
        "message": "card declined",
        "order": "123",
    }


def test_rejects_short_lines_with_a_kind() -> None:
    with pytest.raises(ParseError) as caught:
        PipeParser()("just text")
    assert caught.value.kind == "too_few_columns"


def test_options_are_checked_when_loaded() -> None:
    parser = load_parser("pipes", {"separator": ";", "columns": ["level", "message"]})
    assert parser(b"WARN;low disk") == {"level": "WARN", "message": "low disk"}
    with pytest.raises(Exception, match="separator must not be empty"):
        load_parser("pipes", {"separator": ""})


def test_found_by_entry_point_name() -> None:
    parser = load_parser("pipes")
    assert parser.name == "pipes"
    assert parser(b"2024-05-01T12:00:00Z|INFO|api|ok")["service"] == "api"


def test_check_mode_runs_it_like_the_pod_will() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "podkit.cli", "log-adapter", "--parser", "pipes", "--check",
         str(SAMPLE)],
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert records[0]["level"] == "error"
    assert records[0]["timestamp"] == "2024-05-01T12:00:00+00:00"
    assert records[0]["order"] == "123"
    assert records[-1]["parse_error"] == "too_few_columns"
    assert done.returncode == 1, done.stderr  # one line of the sample is broken on purpose
    assert b"failed too_few_columns: 1" in done.stderr


def test_its_time_format_option_reads_non_iso_timestamps() -> None:
    """The parser's `time_format` attribute tells podkit how to read its timestamps."""
    options = json.dumps({"time_format": "%d/%m/%Y %H:%M:%S"})
    line = b"01/05/2024 12:00:00|WARN|api|slow\n"

    def run(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, "-m", "podkit.cli", "log-adapter", "--parser", "pipes", *args,
             "--check", "/dev/stdin"],
            input=line,
            capture_output=True,
            timeout=60,
        )  # fmt: skip

    done = run("--parser-options", options)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["timestamp"] == "2024-05-01T12:00:00+00:00"
    # Without it the text is read as ISO 8601, and the record says what to set.
    plain = run()
    assert plain.returncode == 1
    assert (
        "set --time-format (or the parser's time_format attribute)"
        in json.loads(plain.stdout)["parse_error_detail"]
    )
