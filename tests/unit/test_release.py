"""`./dev bump-version X.Y.Z` in a copy of the tree: the version in its one place, the
CHANGELOG's Unreleased section under the new version, and every podkit image named in
the manifests and docs on the new tag; `release.py notes` prints that section."""

from __future__ import annotations

import datetime
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from images.render import REGISTRY
from podkit import __version__

ROOT = Path(__file__).resolve().parents[2]
IMAGE = re.compile(rf"{re.escape(REGISTRY)}/podkit-[a-z0-9-]+:([\w.]+)")


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=60)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """The files bump-version reads and writes, in a git repository of their own."""
    listed = run("git", "ls-files", "*.md", "*.yaml", "*.yml", cwd=ROOT).stdout.split()
    wanted = [
        *listed,
        "dev",
        "podkit/__init__.py",
        "images/render.py",
        "devkit/podkit_dev/release.py",
    ]
    copy = tmp_path / "podkit"
    for name in wanted:
        if (ROOT / name).exists():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, copy / name)
    run("git", "init", "--quiet", cwd=copy)
    run("git", "add", ".", cwd=copy)
    return copy


def images_in(copy: Path) -> list[str]:
    found = []
    for path in [*copy.rglob("*.md"), *copy.rglob("*.yaml")]:
        if path.name != "CHANGELOG.md" and path.relative_to(copy).as_posix() != "docs/releasing.md":
            found += IMAGE.findall(path.read_text())
    return found


def test_bump_version_writes_the_version_everywhere(tree: Path) -> None:
    before = (tree / "CHANGELOG.md").read_text()
    unreleased = before.split("## [Unreleased]\n", 1)[1].split("\n## [", 1)[0].strip()
    assert unreleased
    assert set(images_in(tree)) >= {__version__}

    done = run("bash", "dev", "bump-version", "0.2.0", cwd=tree)
    assert done.returncode == 0, done.stderr
    assert "docs/releasing.md" not in done.stdout.split()

    assert '__version__ = "0.2.0"' in (tree / "podkit/__init__.py").read_text()
    tags = images_in(tree)
    assert len(tags) >= 15 and set(tags) <= {"0.2.0", "0.2"}, sorted(set(tags))
    for manifest in (tree / "k8s").rglob("*.yaml"):
        for doc in yaml.safe_load_all(manifest.read_text()):
            assert __version__ not in str(doc), manifest
    changelog = (tree / "CHANGELOG.md").read_text()
    today = datetime.datetime.now(datetime.UTC).date().isoformat()
    assert f"## [Unreleased]\n\n## [0.2.0] - {today}\n" in changelog
    assert f"## [{__version__}]" in changelog
    notes = run("python3", "devkit/podkit_dev/release.py", "notes", "0.2.0", cwd=tree)
    assert notes.returncode == 0 and notes.stdout.strip() == unreleased
    assert (
        f"[0.2.0]: https://github.com/podkit-project/podkit/compare/v{__version__}...v0.2.0"
        in changelog
    )
    assert (
        "[Unreleased]: https://github.com/podkit-project/podkit/compare/v0.2.0...HEAD" in changelog
    )

    # Nothing left to release: a second bump is refused, and changes nothing.
    again = run("bash", "dev", "bump-version", "0.3.0", cwd=tree)
    assert again.returncode == 2
    assert (
        again.stderr == "release: CHANGELOG.md's Unreleased section is empty: nothing to release\n"
    )
    assert '__version__ = "0.2.0"' in (tree / "podkit/__init__.py").read_text()


@pytest.mark.parametrize(
    ("version", "error"),
    [
        ("1.2", "release: version '1.2': expected X.Y.Z (semantic versioning)\n"),
        ("v1.2.3", "release: version 'v1.2.3': expected X.Y.Z (semantic versioning)\n"),
        (__version__, f"release: version {__version__}: already the current version\n"),
    ],
)
def test_bump_version_refuses_a_bad_version(tree: Path, version: str, error: str) -> None:
    done = run("bash", "dev", "bump-version", version, cwd=tree)
    assert (done.returncode, done.stderr) == (2, error)
    assert run("git", "diff", "--name-only", cwd=tree).stdout == ""


def test_notes_of_the_current_version() -> None:
    done = run("python3", "devkit/podkit_dev/release.py", "notes", __version__, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("### ") and "## " not in done.stdout.replace("### ", "")
