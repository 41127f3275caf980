"""The plugin registry: entry points, module:attr and .py files, and its error messages."""

from __future__ import annotations

import pytest

from podkit import plugins
from podkit.plugins import PluginError


def test_entry_point_by_name():
    helper = plugins.load("helper", "echo")
    assert helper.name == "echo"


def test_unknown_name_lists_what_is_available():
    with pytest.raises(PluginError) as info:
        plugins.load("helper", "nope")
    message = str(info.value)
    assert "unknown helper 'nope'" in message
    assert "available: " in message and "echo" in message
    assert "module:attr" in message


def test_module_attr():
    assert plugins.load("parser", "os.path:join") is __import__("os").path.join


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("no_such_module_xyz:thing", "failed to import: ModuleNotFoundError"),
        ("os.path:no_such_attr", "has no 'no_such_attr'"),
    ],
)
def test_module_attr_errors(spec, expected):
    with pytest.raises(PluginError, match=expected):
        plugins.load("parser", spec)


def test_python_file_with_default_and_named_attr(tmp_path):
    plugin = tmp_path / "my_parser.py"
    plugin.write_text("def parser(line):\n    return {'n': len(line)}\n\nother = 42\n")
    assert plugins.load("parser", str(plugin))(b"abc") == {"n": 3}
    assert plugins.load("parser", f"{plugin}:other") == 42


def test_python_file_errors_are_clear(tmp_path):
    missing = tmp_path / "missing.py"
    with pytest.raises(PluginError, match="does not exist"):
        plugins.load("parser", str(missing))
    broken = tmp_path / "broken.py"
    broken.write_text("def parser(:\n")
    with pytest.raises(PluginError, match="failed to load: SyntaxError"):
        plugins.load("parser", str(broken))
    raises = tmp_path / "raises.py"
    raises.write_text("raise RuntimeError('config missing')\n")
    with pytest.raises(PluginError, match="RuntimeError: config missing"):
        plugins.load("parser", str(raises))
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    with pytest.raises(PluginError, match="defines no 'parser'"):
        plugins.load("parser", str(empty))
