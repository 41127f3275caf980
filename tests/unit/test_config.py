"""Settings: precedence, value types and the one-line errors, without a subprocess."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field

from podkit.config import (
    ByteSize,
    ConfigError,
    Duration,
    HelperSettings,
    HostPort,
    SecretFile,
    load_settings,
    parse_byte_size,
    parse_duration,
    split_host_port,
)


class OutputEntry(BaseModel):
    name: str
    url: str = ""


class Sample(HelperSettings):
    listen: HostPort = "127.0.0.1:7000"
    timeout: Duration = 5.0
    buffer: ByteSize = 1024
    mode: Literal["fast", "safe"] = "safe"
    verbose: bool = False
    path: list[str] = Field(default_factory=list)
    password_file: SecretFile = None
    outputs: list[OutputEntry] = Field(default_factory=list)
    required_name: str


def load(argv=(), env=None, **kwargs):
    return load_settings(
        Sample, list(argv), env or {}, prog="podkit sample", admin_default="0.0.0.0:9999"
    )


def test_defaults_and_required():
    settings = load(["--required-name", "x"])
    assert settings.listen == "127.0.0.1:7000"
    assert settings.admin_addr == "0.0.0.0:9999"
    assert settings.timeout == 5.0


def test_flags_beat_env_beat_file_beat_defaults(tmp_path: Path):
    config = tmp_path / "c.yaml"
    config.write_text("required_name: from-file\ntimeout: 1s\nbuffer: 2KiB\nmode: fast\n")
    env = {"PODKIT_CONFIG": str(config), "PODKIT_TIMEOUT": "250ms", "PODKIT_MODE": "safe"}
    settings = load(["--mode", "fast"], env)
    assert settings.required_name == "from-file"  # file only
    assert settings.buffer == 2048  # file over default
    assert settings.timeout == 0.25  # env over file
    assert settings.mode == "fast"  # flag over env


def test_lists_from_flags_env_and_file(tmp_path: Path):
    assert load(["--required-name=x", "--path", "a", "--path", "b"]).path == ["a", "b"]
    assert load(env={"PODKIT_PATH": "a, b", "PODKIT_REQUIRED_NAME": "x"}).path == ["a", "b"]
    config = tmp_path / "c.yaml"
    config.write_text("required-name: x\npath: [c]\noutputs:\n  - name: one\n    url: u\n")
    settings = load(["--config", str(config)])
    assert settings.path == ["c"]
    assert settings.outputs == [OutputEntry(name="one", url="u")]


def test_booleans():
    assert load(["--required-name=x", "--verbose"]).verbose is True
    assert load(["--required-name=x", "--no-verbose"], {"PODKIT_VERBOSE": "true"}).verbose is False
    assert load(env={"PODKIT_VERBOSE": "yes", "PODKIT_REQUIRED_NAME": "x"}).verbose is True


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        ([], {}, "missing required setting --required-name"),
        (["--required-name=x", "--timeout", "soon"], {}, "invalid setting --timeout=soon (from --timeout)"),
        (["--required-name=x"], {"PODKIT_BUFFER": "lots"}, "invalid setting --buffer=lots (from env PODKIT_BUFFER)"),
        (["--required-name=x", "--mode", "turbo"], {}, "invalid setting --mode=turbo"),
        (["--required-name=x", "--listen", "nowhere"], {}, "expected HOST:PORT"),
        (["--required-name=x", "--bogus"], {}, "unrecognized arguments: --bogus"),
        (["--required-name=x", "--timeout", "-1"], {}, "must be at least 0s"),
    ],
)  # fmt: skip
def test_errors_are_one_line_naming_setting_source_and_value(argv, env, expected):
    with pytest.raises(ConfigError) as info:
        load(argv, env)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


def test_unknown_key_in_file_is_named(tmp_path: Path):
    config = tmp_path / "c.yaml"
    config.write_text("required_name: x\nlisten_adress: 1.2.3.4:5\n")
    with pytest.raises(
        ConfigError, match=r"unknown setting 'listen_adress' in config file .*c\.yaml"
    ):
        load(["--config", str(config)])


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "does not exist"),
        ("a: [1,\n", "at line"),
        ("- just\n- a list\n", "expected a mapping"),
    ],
)
def test_bad_config_files(tmp_path: Path, content, expected):
    config = tmp_path / "c.yaml"
    if content is not None:
        config.write_text(content)
    with pytest.raises(ConfigError, match=expected):
        load(["--config", str(config), "--required-name", "x"])


def test_secret_file_is_read_and_never_shown(tmp_path: Path):
    secret = tmp_path / "password"
    secret.write_text("hunter2\n")
    settings = load(["--required-name=x", "--password-file", str(secret)])
    assert settings.password_file.get_secret_value() == "hunter2"
    assert "hunter2" not in repr(settings)
    with pytest.raises(ConfigError, match=r"secret file .*nope does not exist") as info:
        load(["--required-name=x", "--password-file", str(tmp_path / "nope")])
    assert "hunter2" not in str(info.value)


def test_unreadable_secret_file(tmp_path: Path):
    secret = tmp_path / "dir-not-file"
    secret.mkdir()
    with pytest.raises(ConfigError, match="cannot be read"):
        load(["--required-name=x", "--password-file", str(secret)])


@pytest.mark.parametrize(
    ("text", "seconds"), [("5", 5.0), ("250ms", 0.25), ("2m", 120.0), ("1h", 3600.0), ("0.5s", 0.5)]
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "size"), [("10", 10), ("64KiB", 65536), ("10MB", 10_000_000), ("1Gi", 1 << 30)]
)
def test_sizes(text, size):
    assert parse_byte_size(text) == size


@pytest.mark.parametrize(
    ("text", "pair"), [("127.0.0.1:80", ("127.0.0.1", 80)), (":9113", ("0.0.0.0", 9113)),
                       ("[::1]:6379", ("::1", 6379))],
)  # fmt: skip
def test_host_port(text, pair):
    assert split_host_port(text) == pair


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=40))
def test_any_flag_value_gives_settings_or_one_line_error(value):
    """Whatever a user types, the result is valid settings or a ConfigError, never a crash."""
    for flag in ("--timeout", "--buffer", "--listen", "--mode", "--path", "--required-name"):
        try:
            load(["--required-name=x", flag, value])
        except ConfigError as exc:
            assert "\n" not in str(exc)
