"""The dev kit is a distribution of its own, and the runtime runs without it.

`podkit demo` and each helper's demo reach the runtime only through entry points that the
dev kit (devkit/pyproject.toml) registers; the podkit wheel carries no `podkit_dev`, and a
helper whose extra is not installed is not offered by `podkit --help` (an image installs
its own helper's extra only).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from podkit_dev.servers import podkit_argv

ROOT = Path(__file__).resolve().parents[3]

# What `./dev setup` installs for the dev kit: its metadata and its editable-install hook.
DEV_KIT = ("podkit_dev-", "__editable__.podkit_dev-", "__editable___podkit_dev_")
# The redis client: the extra of log-shipper, redis-ambassador and stats-exporter needs it.
REDIS = ("redis", "redis-")


Run = Callable[..., subprocess.CompletedProcess[str]]


def _hidden_site(tmp: Path, hidden: tuple[str, ...]) -> Path:
    """This venv's site-packages, as links, less the entries named by `hidden` (a name
    ending in - or _ is a prefix): podkit as installed without them (nothing is
    uninstalled from the shared venv)."""
    site = Path(tempfile.mkdtemp(dir=tmp))
    prefixes = tuple(h for h in hidden if h.endswith(("-", "_")))
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if entry.name not in hidden and not entry.name.startswith(prefixes):
            (site / entry.name).symlink_to(entry)
    return site


@pytest.fixture
def podkit_without(tmp_path: Path) -> Run:
    """Run the `podkit` command (its console-script function) against a site-packages that
    lacks the given installed entries; isolated (-I -S), so the checkout is not on the path."""

    def run(hidden: tuple[str, ...], *args: str) -> subprocess.CompletedProcess[str]:
        site = _hidden_site(tmp_path, hidden)
        script = (
            "import site, sys; site.addsitedir(sys.argv.pop(1)); sys.argv[0] = 'podkit'; "
            "from podkit.cli import entrypoint; entrypoint()"
        )
        return subprocess.run(
            [sys.executable, "-I", "-S", "-c", script, str(site), *args],
            capture_output=True, text=True, timeout=60, cwd=tmp_path,
        )  # fmt: skip

    return run


def test_runtime_wheel_carries_no_dev_kit(tmp_path: Path) -> None:
    """The wheel images/build.sh builds (`pip wheel --no-deps .`): runtime and helpers only.
    Built from a copy of the sources, dev kit included, so no build/ of the checkout's
    (which setuptools would pack as it is) decides the answer, and none is left behind."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for name in ("podkit", "sidecars", "ambassadors", "adapters", "devkit"):
        shutil.copytree(
            ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
        )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir",
         str(tmp_path), str(source)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("podkit-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points_txt = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        entry_points = archive.read(entry_points_txt).decode()
    assert "podkit/cli.py" in names and "podkit/sidecars/log_shipper/__init__.py" in names
    assert [n for n in names if n.startswith("podkit_dev")] == []
    assert "podkit_dev" not in entry_points and "[podkit.demo" not in entry_points


def test_demo_runs_through_the_dev_kit_entry_points() -> None:
    result = subprocess.run(
        [*podkit_argv(), "demo", "--only", "echo"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "== echo: line-echo TCP server" in result.stdout
    assert "PASS drained and exited 0" in result.stdout
    assert "demo: all 1 helpers did their job" in result.stdout


def test_demo_names_an_unknown_helper() -> None:
    result = subprocess.run(
        [*podkit_argv(), "demo", "--only", "no-such-helper"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "--only no-such-helper: no demo for that helper; demos: echo," in result.stderr


def test_without_the_dev_kit_demo_says_how_to_get_it(podkit_without: Run) -> None:
    result = podkit_without(DEV_KIT, "demo", "--only", "echo")
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""
    assert result.stderr == (
        "podkit: `podkit demo` needs podkit's dev kit, which is not installed here"
        " (in a checkout: ./dev setup)\n"
    )
    # The runtime itself is whole without it.
    assert podkit_without(DEV_KIT, "--version").stdout.startswith("podkit ")


def test_help_offers_only_helpers_whose_extra_is_installed(podkit_without: Run) -> None:
    result = podkit_without((*DEV_KIT, *REDIS), "--help")
    assert result.returncode == 0, result.stderr
    listed = [
        line.split()[0]
        for line in result.stdout.split("helpers:\n", 1)[1].splitlines()
        if line.startswith("  ")
    ]
    # Their extras need nothing but podkit, or watchfiles: still here.
    assert listed == ["echo", "git-sync", "log-adapter", "pg-ambassador"]
    assert (
        "without their extra (podkit[NAME]) installed: log-shipper, redis-ambassador,"
        " stats-exporter"
    ) in result.stdout

    refused = podkit_without((*DEV_KIT, *REDIS), "redis-ambassador")
    assert refused.returncode == 2
    assert refused.stderr == (
        "podkit: helper redis-ambassador is not installed here: podkit[redis-ambassador]"
        " needs redis\n"
    )
