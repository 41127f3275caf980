"""`podkit ROLE --help`, `--man` and bad settings, for every registered helper, through the CLI.

`--help` lists every setting (structured ones too), `--help` and `--man` show defaults in the
notation the input takes (5s, 1MiB), and a bad value is reported in podkit's words, with
lists shown the way they are typed, never as a Python repr or in pydantic's phrasing.
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from podkit.cli import helpers
from podkit.config import parse_byte_size, parse_duration
from podkit.naming import flag_name
from podkit_dev.servers import podkit_argv

HELPERS = sorted(helpers())


def podkit(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*podkit_argv(), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "100", **(env or {})},
    )


def test_every_helper_is_covered() -> None:
    assert {"log-adapter", "log-shipper", "stats-exporter", "git-sync"} <= set(HELPERS)


@pytest.mark.parametrize("role", HELPERS)
def test_help_lists_every_declared_setting(role: str) -> None:
    result = podkit(role, "--help")
    assert result.returncode == 0, result.stderr
    flags = set(re.findall(r"--[a-z0-9][a-z0-9.-]*", result.stdout))
    declared = helpers()[role].load_settings_class().model_fields
    missing = [flag_name(name) for name in declared if flag_name(name) not in flags]
    assert missing == [], f"podkit {role} --help does not show {missing}"


def _defaults(text: str, entry: str, pattern: str) -> dict[str, str]:
    """{flag: default} of the entries (split at `entry`) whose text matches `pattern`."""
    found = {}
    for block in re.split(entry, text):
        flag = re.match(r"\s*(--[a-z0-9-]+)(?=[\s,<{\[]|$)", block)
        default = re.search(pattern, " ".join(block.split()))
        if flag and default:
            found[flag.group(1)] = default.group(1)
    return found


@pytest.mark.parametrize("role", HELPERS)
def test_help_and_man_show_durations_and_sizes_in_one_human_notation(role: str) -> None:
    fields = helpers()[role].load_settings_class().model_fields
    man = podkit(role, "--man").stdout
    # --help: an entry per line starting "  --"; --man: entries apart by blank lines.
    help_text = podkit(role, "--help").stdout
    help_defaults = _defaults(help_text, r"\n(?=  -)", r"default: ([^;\]]+)[;\]]")
    man_defaults = _defaults(man, r"\n\s*\n", r'Default: "([^"]*)"')
    # --man names the kind of value: `--rotate-wait <duration>`, `--buffer-bytes <size>`.
    kinds = dict(re.findall(r"^    (--[a-z0-9-]+) <(duration|size)>", man, re.MULTILINE))
    checked = 0
    for flag, kind in kinds.items():
        if flag not in man_defaults:
            continue
        shown = help_defaults[flag]
        assert shown == man_defaults[flag], (
            f"{flag}: --help {shown!r}, --man {man_defaults[flag]!r}"
        )
        # The notation is the one a user types, and it reads back to the default.
        parse = parse_duration if kind == "duration" else parse_byte_size
        assert re.fullmatch(r"\d+(\.\d+)?(ms|s|m|h|KiB|MiB|GiB|kB|MB|GB)?", shown), shown
        name = flag.removeprefix("--").replace("-", "_")
        assert parse(shown) == fields[name].get_default(call_default_factory=True), flag
        if kind == "duration":
            assert shown[-1] in "smh", f"{flag}: {shown!r} has no unit"
        checked += 1
    assert checked, f"podkit {role} has no duration or size default to check"
    # Every other default too (switches as true/false, lists as a,b) reads the same in both.
    for flag, shown in man_defaults.items():
        assert help_defaults.get(flag) == shown, f"{flag}: --help {help_defaults.get(flag)!r}"


@pytest.mark.parametrize(
    ("role", "args", "expected"),
    [
        ("log-adapter", ["--check", "x.log", "--read-from", "middle"],
         "invalid setting --read-from=middle (from --read-from): 'middle' is not one of: head, tail"),
        ("log-adapter", ["--check", "x.log", "--refresh-interval=-3s"],
         "invalid setting --refresh-interval=-3s (from --refresh-interval): must be at least 0s"),
        ("log-adapter", ["--check", "x.log", "--types", "[1]"],
         "invalid setting --types=[1] (from --types): expected a mapping (a YAML/JSON object)"),
        ("stats-exporter", ["--naming", "loose"],
         "invalid setting --naming=loose (from --naming): 'loose' is not one of: compat, strict"),
        ("log-shipper", ["--path", "/tmp/x.log", "--log-level", "loud"],
         "'loud' is not one of: debug, info, warning, error"),
    ],
)  # fmt: skip
def test_bad_values_are_reported_in_podkit_words(role: str, args: list[str], expected: str) -> None:
    result = podkit(role, *args)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
    assert "Input should" not in lines[0]


def test_a_bad_list_is_shown_as_typed_not_as_a_python_list() -> None:
    args = ["--nginx-scrape-uri", "ftp://a", "--nginx-scrape-uri", "ftp://b"]
    result = podkit("stats-exporter", *args)
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert "invalid setting --nginx-scrape-uri=ftp://a,ftp://b (from --nginx-scrape-uri)" in line
    assert "['" not in line


def test_a_check_across_settings_shows_no_value_so_no_secret() -> None:
    # A model-level check's input is every setting: shown whole, it printed the password.
    result = podkit("git-sync", "--repo=x", "--root=/tmp/x", "--password=hunter2")
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line == "podkit git-sync: error: invalid settings: a password needs --username"
    assert "hunter2" not in result.stderr
