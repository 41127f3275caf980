"""`--version` through the CLI: `podkit --version`, `podkit ROLE --version` (what
`IMAGE --version` runs, the entrypoint being `podkit ROLE`), and where the revision
comes from: the file the image build bakes in, else git in a checkout, else "unknown"."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from podkit import __version__
from podkit_dev.servers import podkit_argv

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None):
    return subprocess.run(
        list(args), capture_output=True, text=True, timeout=60, cwd=cwd,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


def git_revision() -> str:
    return run("git", "-C", str(ROOT), "rev-parse", "--short", "HEAD").stdout.strip()


def test_podkit_version_names_version_revision_and_python():
    done = run(*podkit_argv(), "--version")
    assert done.returncode == 0, done.stderr
    expected = (
        f"podkit {__version__} (revision {git_revision()}, Python {platform.python_version()})"
    )
    assert done.stdout.strip() == expected


@pytest.mark.parametrize("helper", ["echo", "git-sync", "pg-ambassador"])
def test_helper_version_names_the_helper(helper: str):
    done = run(*podkit_argv(), helper, "--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        f"podkit {helper} {__version__} "
        f"(revision {git_revision()}, Python {platform.python_version()})"
    )
    assert "--version" in run(*podkit_argv(), helper, "--help").stdout


def test_version_is_set_in_one_place():
    """podkit/__init__.py's __version__; pyproject reads it (dynamic), the CLI reads it."""
    import tomllib
    from importlib.metadata import version

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in pyproject["project"]
    assert "version" in pyproject["project"]["dynamic"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "podkit.__version__"}
    assert version("podkit") == __version__


@pytest.fixture
def installed_copy(tmp_path: Path) -> Path:
    """podkit's core package outside any checkout, as a wheel installs it."""
    shutil.copytree(ROOT / "podkit", tmp_path / "podkit", ignore=shutil.ignore_patterns("REVISION"))
    return tmp_path


def test_baked_revision_wins_and_none_is_unknown(installed_copy: Path):
    argv = [sys.executable, "-m", "podkit.cli", "--version"]
    env = {"PYTHONPATH": str(installed_copy)}
    unknown = run(*argv, cwd=installed_copy, env=env)
    assert unknown.returncode == 0, unknown.stderr
    assert f"podkit {__version__} (revision unknown, " in unknown.stdout
    (installed_copy / "podkit" / "REVISION").write_text("abc1234\n")
    baked = run(*argv, cwd=installed_copy, env=env)
    assert f"podkit {__version__} (revision abc1234, " in baked.stdout
