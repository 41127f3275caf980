"""Golden files: every built-in parser on ordinary and nasty lines, byte for byte.

`tests/golden/log_adapter/NAME.in` is the input (raw bytes, an unterminated last line,
invalid UTF-8, NUL, ANSI escapes, tabs, quotes, backslashes); `NAME.out` is the expected
JSON, one record per line. The clock is fixed, so ingest times and guessed years are too.
Regenerate after a deliberate change with PODKIT_UPDATE_GOLDEN=1, then read the diff.
"""

from __future__ import annotations

import base64
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from podkit.adapters.log_json.build import TIME_FORMAT_HINT
from podkit.adapters.log_json.check import read_lines
from podkit.adapters.log_json.normalize import TimeParser
from podkit.adapters.log_json.record import RecordBuilder
from podkit.parsers import load_parser

GOLDEN = Path(__file__).parent.parent / "golden" / "log_adapter"
FIXED_NOW = datetime(2026, 1, 15, 10, 0, 0, tzinfo=UTC)
# Parsers that read another parser's input file.
SHARED_INPUT = {
    "syslog-rfc3164": "syslog",
    "syslog-rfc5424": "syslog",
    "apache-common": "nginx-common",
}
PARSERS = sorted(
    [p.stem for p in GOLDEN.glob("*.in")] + list(SHARED_INPUT),
)


def builder_for(name: str) -> RecordBuilder:
    options_file = GOLDEN / f"{SHARED_INPUT.get(name, name)}.options.json"
    config = json.loads(options_file.read_text()) if options_file.exists() else {}
    parser = load_parser(name, config.get("options"))
    time_parser = TimeParser(
        getattr(parser, "time_format", "iso"), UTC, now=lambda: FIXED_NOW, hint=TIME_FORMAT_HINT
    )
    return RecordBuilder(parser, time_parser=time_parser, types=config.get("types"))


def run_golden(name: str) -> bytes:
    builder = builder_for(name)
    with open(GOLDEN / f"{SHARED_INPUT.get(name, name)}.in", "rb") as handle:
        return b"".join(builder.encode(chunk) for chunk in read_lines(handle))


@pytest.mark.parametrize("name", PARSERS)
def test_golden(name: str) -> None:
    produced = run_golden(name)
    expected_path = GOLDEN / f"{name}.out"
    if os.environ.get("PODKIT_UPDATE_GOLDEN"):
        expected_path.write_bytes(produced)
    assert produced.decode("utf-8") == expected_path.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", PARSERS)
def test_every_line_is_one_valid_json_object(name: str) -> None:
    source = (GOLDEN / f"{SHARED_INPUT.get(name, name)}.in").read_bytes()
    produced = run_golden(name)
    assert produced.endswith(b"\n")
    records = [json.loads(line) for line in produced.decode("utf-8").split("\n")[:-1]]
    assert all(isinstance(record, dict) for record in records)
    # Only CRI joins lines; everything else is one record per input line, none dropped.
    if name != "cri":
        assert len(records) == source.count(b"\n") + 1
    for record in records:
        assert datetime.fromisoformat(record["timestamp"]).tzinfo is not None
        if "raw_b64" in record:
            raw = base64.b64decode(record["raw_b64"])
            assert raw in source
        if "parse_error" in record:
            assert record["parser"] == name


@pytest.mark.parametrize("name", PARSERS)
def test_one_megabyte_line(name: str) -> None:
    """A 1 MiB line (the follower's default limit) is one record, nothing cut or lost."""
    source = (GOLDEN / f"{SHARED_INPUT.get(name, name)}.in").read_bytes()
    first = source.split(b"\n")[0]
    big = first + b" " + (b'x"\\\t' * (1 << 18))
    produced = builder_for(name).encode([big])
    assert produced.count(b"\n") == 1
    record = json.loads(produced)
    assert isinstance(record, dict)
    # Every byte of the padding is in some field: nothing was cut or silently dropped.
    assert sum(text.count('x"\\\t') for text in _strings(record)) >= 1 << 18


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []
