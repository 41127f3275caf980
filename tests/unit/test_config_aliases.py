"""Drop-in names: Alias spellings (GNU, pflag, Go), env aliases, deprecations, foreign files."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import pytest
from pydantic import Field

from podkit.config import (
    ConfigError,
    Duration,
    ForeignConfig,
    ForeignSettings,
    HelperSettings,
    Notice,
    build_parser,
    load_settings,
)
from podkit.naming import Alias


class Sample(HelperSettings):
    repo: Annotated[
        str,
        Alias(
            flags=("-source.repo", "--source.repo"),
            env=("GITSYNC_REPO",),
            deprecated_flags=("--old-repo",),
            deprecated_env=("GIT_SYNC_REPO",),
        ),
    ] = Field("", description="the repository")
    period: Annotated[Duration, Alias(flags=("-period",), env=("GITSYNC_PERIOD",))] = 10.0
    one_time: Annotated[bool, Alias(env=("GITSYNC_ONE_TIME",))] = False
    uris: Annotated[list[str], Alias(flags=("-uri",), env=("URIS",))] = Field(default_factory=list)
    foreign_config: Annotated[str, ForeignConfig(reader=f"{__name__}:read_ini")] = ""


def read_ini(path: str) -> ForeignSettings:
    """A tiny foreign format for the test: `key = value` lines; `ignored` keys are noticed."""
    found: dict[str, Any] = {}
    notices = []
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        key, _, value = (part.strip() for part in line.partition("="))
        if key == "ignored":
            notices.append(Notice("foreign_key_ignored", {"key": key, "line": number}))
        elif key in ("repo", "period"):
            found[key] = value
        else:
            raise ConfigError(f"{path}:{number}: unknown key {key!r}")
    return ForeignSettings(found, notices)


def load(argv: list[str], env: dict[str, str] | None = None, notices: list[Notice] | None = None):
    return load_settings(
        Sample, argv, env or {}, prog="podkit sample", admin_default=":1", notices=notices
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["--repo", "r"],
        ["--repo=r"],
        ["-source.repo=r"],
        ["-source.repo", "r"],
        ["--source.repo=r"],
    ],
)
def test_every_flag_spelling_sets_the_same_setting(argv: list[str]) -> None:
    assert load(argv).repo == "r"


def test_pflag_style_booleans() -> None:
    assert load(["--one-time"]).one_time is True
    assert load(["--one-time=true"]).one_time is True
    assert load(["--one-time=false"]).one_time is False
    assert load(["--one-time", "--no-one-time"]).one_time is False
    with pytest.raises(ConfigError, match="expected true or false"):
        load(["--one-time=maybe"])


def test_env_aliases_and_podkit_name_wins() -> None:
    assert load([], {"GITSYNC_REPO": "a"}).repo == "a"
    assert load([], {"GITSYNC_REPO": "a", "PODKIT_REPO": "b"}).repo == "b"
    assert load(["--repo", "c"], {"GITSYNC_REPO": "a"}).repo == "c"
    assert load([], {"URIS": "x,y"}).uris == ["x", "y"]
    assert load(["-uri", "x", "--uris", "y"]).uris == ["x", "y"]


def test_deprecated_names_work_and_leave_a_notice() -> None:
    notices: list[Notice] = []
    assert load([], {"GIT_SYNC_REPO": "old"}, notices).repo == "old"
    assert notices == [
        Notice("deprecated_setting", {"name": "GIT_SYNC_REPO", "use": "PODKIT_REPO"})
    ]
    notices.clear()
    assert load(["--old-repo", "x"], notices=notices).repo == "x"
    assert notices[0].fields == {"name": "--old-repo", "use": "--repo"}


def test_errors_name_the_spelling_the_user_typed() -> None:
    with pytest.raises(ConfigError) as flag_error:
        load(["-period=soon"])
    assert str(flag_error.value).startswith("invalid setting -period=soon (from -period)")
    with pytest.raises(ConfigError) as env_error:
        load([], {"GITSYNC_PERIOD": "soon"})
    assert str(env_error.value).startswith("invalid setting GITSYNC_PERIOD=soon (from env")


def test_help_lists_each_setting_once_with_its_aliases() -> None:
    text = build_parser("podkit sample", Sample).format_help()
    assert len(re.findall(r"(?<![-\w])-source\.repo", text)) == 1
    assert text.count("--source.repo") == 1
    assert "GITSYNC_REPO" in text
    assert "--old-repo" not in text and "GIT_SYNC_REPO" not in text  # deprecated: not advertised


def test_prefixes_are_not_abbreviations() -> None:
    with pytest.raises(ConfigError, match="unrecognized arguments"):
        load(["--rep", "x"])


def test_foreign_file_ranks_below_podkit_settings(tmp_path: Path) -> None:
    foreign = tmp_path / "app.conf"
    foreign.write_text("repo = from-foreign\nperiod = 3s\nignored = 1\n")
    notices: list[Notice] = []
    settings = load(["--foreign-config", str(foreign)], notices=notices)
    assert (settings.repo, settings.period) == ("from-foreign", 3.0)
    assert notices == [Notice("foreign_key_ignored", {"key": "ignored", "line": 3})]
    settings = load(["--foreign-config", str(foreign), "--period", "7s"], {"PODKIT_REPO": "env"})
    assert (settings.repo, settings.period) == ("env", 7.0)


def test_foreign_file_errors_name_the_file_and_values_say_where_they_came_from(
    tmp_path: Path,
) -> None:
    bad_key = tmp_path / "bad.conf"
    bad_key.write_text("repo = x\nnope = 1\n")
    with pytest.raises(ConfigError, match=r"bad.conf:2: unknown key 'nope'"):
        load(["--foreign-config", str(bad_key)])
    bad_value = tmp_path / "value.conf"
    bad_value.write_text("period = soon\n")
    with pytest.raises(ConfigError, match=r"from foreign-config file .*value.conf"):
        load(["--foreign-config", str(bad_value)])


def test_foreign_default_path_is_read_only_when_it_exists(tmp_path: Path) -> None:
    default = tmp_path / "default.conf"

    class WithDefault(HelperSettings):
        repo: str = ""
        foreign_config: Annotated[
            str, ForeignConfig(reader=f"{__name__}:read_ini", default_path=str(default))
        ] = ""

    def load_default(environ: dict[str, str]) -> WithDefault:
        return load_settings(WithDefault, [], environ, prog="p", admin_default=":1")

    image = {"PODKIT_IMAGE": "echo"}  # what podkit's images set
    assert load_default(image).repo == ""
    default.write_text("repo = mounted\n")
    settings = load_default(image)
    assert (settings.repo, settings.foreign_config) == ("mounted", str(default))
    # on a host the same path may be the distribution's own file: not read unasked
    assert load_default({}).repo == ""
