"""FollowConfig.from_settings: flags, env and YAML of FollowSettings become a FollowConfig."""

from __future__ import annotations

from pathlib import Path

import pytest

from podkit.config import ConfigError, load_settings
from podkit.follow import FollowConfig, FollowSettings


def test_from_settings_maps_every_follow_flag():
    settings = load_settings(
        FollowSettings,
        [
            "--path", "/var/log/app/*.log", "--path", "/var/log/x.log",
            "--exclude", "*.gz", "--state-dir", "/state", "--read-from", "tail",
            "--rotate-wait", "2s", "--flush-timeout", "250ms",
            "--max-line-bytes", "64KiB", "--buffer-bytes", "4MiB",
        ],
        {"PODKIT_REFRESH_INTERVAL": "10s"},
        prog="test",
        admin_default="127.0.0.1:9999",
    )  # fmt: skip
    config = FollowConfig.from_settings(settings, batch_max_lines=100)
    assert config.include == ("/var/log/app/*.log", "/var/log/x.log")
    assert config.exclude == ("*.gz",)
    assert config.state_dir == Path("/state")
    assert config.read_from == "tail"
    assert config.refresh_interval == 10.0
    assert config.rotate_wait == 2.0
    assert config.flush_timeout == 0.25
    assert config.max_line_bytes == 65536
    assert config.buffer_bytes == 4 << 20
    assert config.batch_max_lines == 100


def test_bad_follow_setting_is_a_config_error():
    with pytest.raises(ConfigError, match="--max-line-bytes"):
        load_settings(FollowSettings, ["--max-line-bytes", "10"], {}, prog="t", admin_default=":1")
