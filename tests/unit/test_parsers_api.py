"""podkit.parsers, the public API: a parser from each of the three sources, str or bytes."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from podkit.parsers import LoadedParser, ParseError, ParserLoadError, load_parser

PLUGIN_SOURCE = textwrap.dedent(
    """
    from podkit.parsers import ParseError

    def parser(line: str) -> dict:
        if "=" not in line:
            raise ParseError("no key=value", kind="no_equals")
        key, _, value = line.partition("=")
        return {"message": line, key.strip(): value.strip()}

    def upper(line: bytes) -> dict:
        return {"message": line.upper()}

    class Prefixed:
        def __init__(self, prefix: str = ">") -> None:
            self.prefix = prefix

        def __call__(self, line):
            if not line.startswith(self.prefix):
                raise ParseError("missing prefix", kind="no_prefix")
            return {"message": line[len(self.prefix):]}
    """
)


@pytest.fixture
def plugin_file(tmp_path: Path) -> Path:
    path = tmp_path / "my_parser.py"
    path.write_text(PLUGIN_SOURCE)
    return path


def test_from_a_py_file_as_mounted_from_a_configmap(plugin_file: Path) -> None:
    parser = load_parser(str(plugin_file))
    assert parser.input_type == "str"
    assert parser(b"user = alice") == {"message": "user = alice", "user": "alice"}
    with pytest.raises(ParseError) as caught:
        parser(b"no pair")
    assert caught.value.kind == "no_equals"
    # A named attribute of the file, taking bytes because its annotation says so.
    upper = load_parser(f"{plugin_file}:upper")
    assert upper.input_type == "bytes"
    assert upper(b"abc\xff") == {"message": b"ABC\xff"}


def test_from_module_attr(plugin_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(plugin_file.parent))
    monkeypatch.delitem(sys.modules, "my_parser", raising=False)
    parser = load_parser("my_parser:Prefixed", {"prefix": "#"})
    assert parser.input_type == "str"  # no annotation: the friendlier str
    assert parser(b"#hello") == {"message": "hello"}
    with pytest.raises(ParserLoadError, match="bad options"):
        load_parser("my_parser:Prefixed", {"nope": 1})
    with pytest.raises(ParserLoadError, match="takes no options"):
        load_parser("my_parser:parser", {"prefix": "#"})


def test_from_an_entry_point_of_an_installed_distribution(
    plugin_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A distribution on sys.path whose metadata declares a `podkit.parsers` entry point,
    which is exactly what `pip install` leaves behind (examples/parser-plugin does it for
    real, in its own tests)."""
    dist_info = tmp_path / "my_parser_dist-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: my-parser-dist\nVersion: 1.0\n"
    )
    (dist_info / "entry_points.txt").write_text("[podkit.parsers]\nkv-test = my_parser:parser\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_parser", raising=False)
    parser = load_parser("kv-test")
    assert parser(b"a=b") == {"message": "a=b", "a": "b"}


def test_built_ins_are_entry_points_and_used_as_they_are() -> None:
    parser = load_parser("classic")
    assert not isinstance(parser, LoadedParser)  # no wrapper on the hot path
    assert parser(b"2024-05-01 12:00:00 ERROR x")["level"] == "ERROR"
    assert parser("2024-05-01 12:00:00 ERROR x")["message"] == "x"


def test_unknown_names_list_what_exists() -> None:
    with pytest.raises(ParserLoadError) as caught:
        load_parser("no-such-parser")
    assert "classic" in str(caught.value) and "nginx" in str(caught.value)
    with pytest.raises(ParserLoadError, match="does not exist"):
        load_parser("/nonexistent/parser.py")


def test_wrapper_turns_surprises_into_parse_errors() -> None:
    def broken(line: str) -> Any:
        return ["not", "a", "dict"]

    parser = LoadedParser(broken, "broken", "str")
    with pytest.raises(ParseError) as caught:
        parser(b"x")
    assert caught.value.kind == "bad_result"

    def crashes(line: str) -> Any:
        raise KeyError("oops")

    with pytest.raises(ParseError) as caught:
        LoadedParser(crashes, "crashes", "str")(b"x")
    assert caught.value.kind == "exception"


def test_a_str_line_is_accepted_by_a_bytes_parser() -> None:
    parser = LoadedParser(lambda line: {"message": line}, "b", "bytes")
    assert parser("é") == {"message": "é".encode()}
