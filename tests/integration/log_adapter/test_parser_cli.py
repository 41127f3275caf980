"""Loading parsers through `podkit log-adapter --parser ... --check FILE`, as a user does.

A plugin's own `time_format` is honoured (a .py file loaded by path), a text timestamp in
no given format names the setting that fixes it, and a built-in parser missing a required
option says which, with an example that works as it is.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from podkit_dev.servers import podkit_argv

LOG = "07/May/2024 12:00|hello\n"


def check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*podkit_argv(), "log-adapter", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
    )


def records(done: subprocess.CompletedProcess[str]) -> list[dict]:
    return [json.loads(line) for line in done.stdout.splitlines()]


CLASS_PLUGIN = """
class Parser:
    time_format = "%d/%b/%Y %H:%M"

    def __call__(self, line: str) -> dict:
        when, _, message = line.partition("|")
        return {"timestamp": when, "message": message}


parser = Parser
"""

FUNCTION_PLUGIN = """
def parser(line: str) -> dict:
    when, _, message = line.partition("|")
    return {"timestamp": when, "message": message}
"""


@pytest.mark.parametrize(
    "source",
    [CLASS_PLUGIN, FUNCTION_PLUGIN + '\nparser.time_format = "%d/%b/%Y %H:%M"\n'],
    ids=["class-attribute", "function-attribute"],
)
def test_a_plugin_file_s_own_time_format_is_honoured(tmp_path: Path, source: str) -> None:
    plugin = tmp_path / "dated.py"
    plugin.write_text(source)
    log = tmp_path / "app.log"
    log.write_text(LOG)
    done = check("--parser", str(plugin), "--check", str(log))
    assert done.returncode == 0, done.stderr
    (record,) = records(done)
    assert record["timestamp"] == "2024-05-07T12:00:00+00:00"
    assert "timestamp_source" not in record and "parse_error" not in record


def test_the_user_s_time_format_wins_over_the_plugin_s(tmp_path: Path) -> None:
    plugin = tmp_path / "dated.py"
    plugin.write_text(CLASS_PLUGIN)
    log = tmp_path / "app.log"
    log.write_text("2024-05-07 12:00:01|hello\n")
    done = check("--parser", str(plugin), "--time-format", "iso", "--check", str(log))
    assert done.returncode == 0, done.stderr
    assert records(done)[0]["timestamp"] == "2024-05-07T12:00:01+00:00"


def test_a_text_timestamp_in_no_given_format_names_the_setting(tmp_path: Path) -> None:
    plugin = tmp_path / "undated.py"
    plugin.write_text(FUNCTION_PLUGIN)
    log = tmp_path / "app.log"
    log.write_text(LOG)
    done = check("--parser", str(plugin), "--check", str(log))
    assert done.returncode == 1
    (record,) = records(done)
    assert record["parse_error"] == "bad_timestamp"
    assert record["parse_error_detail"] == (
        "timestamp '07/May/2024 12:00' is not ISO 8601: "
        "set --time-format (or the parser's time_format attribute)"
    )
    fixed = check("--parser", str(plugin), "--time-format", "%d/%b/%Y %H:%M", "--check", str(log))
    assert fixed.returncode == 0, fixed.stderr
    assert records(fixed)[0]["timestamp"] == "2024-05-07T12:00:00+00:00"


def test_a_plugin_s_unknown_time_format_is_a_start_up_error(tmp_path: Path) -> None:
    plugin = tmp_path / "bad.py"
    plugin.write_text(CLASS_PLUGIN.replace("%d/%b/%Y %H:%M", "daymonthyear"))
    log = tmp_path / "app.log"
    log.write_text(LOG)
    done = check("--parser", str(plugin), "--check", str(log))
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert f"--parser={plugin}" in line and "time_format" in line and "'daymonthyear'" in line


def _builtins_with_required_options() -> list[tuple[str, list[str]]]:
    found = []
    for entry_point in entry_points(group="podkit.parsers"):
        if not entry_point.value.startswith("podkit."):
            continue  # a plugin installed beside podkit (the example package)
        obj = entry_point.load()
        if not inspect.isclass(obj):
            continue
        params = inspect.signature(obj).parameters.values()
        required = [p.name for p in params if p.default is p.empty and p.kind != p.VAR_KEYWORD]
        if required:
            found.append((entry_point.name, required))
    return sorted(found)


REQUIRED = _builtins_with_required_options()


def test_the_builtins_with_required_options_are_found() -> None:
    assert {"grok", "regex"} <= {name for name, _ in REQUIRED}


@pytest.mark.parametrize(("name", "required"), REQUIRED, ids=[n for n, _ in REQUIRED])
def test_a_missing_required_option_is_named_with_a_working_example(
    tmp_path: Path, name: str, required: list[str]
) -> None:
    log = tmp_path / "app.log"
    log.write_text("10.0.0.1 GET /\n")
    done = check("--parser", name, "--check", str(log))
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert "Traceback" not in done.stderr and "__init__" not in line
    what = "option" if len(required) == 1 else "options"
    names = ", ".join(repr(option) for option in required)
    assert f"--parser {name} needs the {what} {names}: --parser-options '" in line
    example = re.search(r"--parser-options '(.*)'$", line)
    assert example is not None, line
    # The example is the real option syntax: given back as it is, the parser loads.
    fixed = check("--parser", name, "--parser-options", example.group(1), "--check", str(log))
    assert fixed.returncode in (0, 1), fixed.stderr
    assert len(records(fixed)) == 1


def test_a_plugin_file_s_own_field_types_are_applied(tmp_path: Path) -> None:
    plugin = tmp_path / "typed.py"
    plugin.write_text(
        "def parser(line: str) -> dict:\n"
        "    status, _, message = line.partition(' ')\n"
        "    return {'status': status, 'message': message}\n\n\n"
        "parser.types = {'status': 'int'}\n"
    )
    log = tmp_path / "app.log"
    log.write_text("404 not found\n")
    done = check("--parser", str(plugin), "--check", str(log))
    assert done.returncode == 0, done.stderr
    assert records(done)[0]["status"] == 404
