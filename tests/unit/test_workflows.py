"""The GitHub workflows (.github/workflows): actionlint passes on both, as `./dev lint`
runs it, and the release does what docs/releasing.md says it does."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"


def actionlint(*files: Path) -> subprocess.CompletedProcess[str]:
    found = Path(sys.executable).parent / "actionlint"
    program = str(found) if found.exists() else shutil.which("actionlint")
    assert program, "actionlint is not installed (the dev extra: ./dev setup)"
    return subprocess.run(
        [program, "-no-color", *map(str, files)], capture_output=True, text=True, timeout=120
    )


def workflow(name: str) -> dict:  # type: ignore[type-arg]
    loaded = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the key `on` as True.
    loaded["on"] = loaded.pop(True)
    return loaded  # type: ignore[no-any-return]


def test_actionlint_passes_on_both_workflows() -> None:
    done = actionlint(WORKFLOWS / "ci.yml", WORKFLOWS / "release.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_actionlint_finds_a_broken_workflow(tmp_path: Path) -> None:
    """The check can fail: a step output that no step sets, an unknown runner."""
    broken = (WORKFLOWS / "release.yml").read_text()
    broken = broken.replace("steps.push.outputs.digest", "steps.pushed.outputs.digest", 1)
    broken = broken.replace("runs-on: ubuntu-24.04", "runs-on: ubuntu-9.04", 1)
    path = tmp_path / ".github" / "workflows" / "release.yml"
    path.parent.mkdir(parents=True)
    path.write_text(broken)
    done = actionlint(path)
    assert done.returncode == 1
    assert "pushed" in done.stdout and "ubuntu-9.04" in done.stdout, done.stdout


def test_dev_lint_runs_actionlint_on_both_workflows() -> None:
    lint = next(
        line for line in (ROOT / "dev").read_text().splitlines() if "/bin/actionlint" in line
    )
    assert ".github/workflows/ci.yml" in lint and ".github/workflows/release.yml" in lint


def test_ci_runs_ci_run_and_builds_the_images() -> None:
    ci = workflow("ci.yml")
    assert set(ci["on"]) == {"push", "pull_request"}
    runs = [step.get("run", "") for job in ci["jobs"].values() for step in job["steps"]]
    assert any(".ci/run" in run for run in runs)
    assert any("./dev images" in run for run in runs)


@pytest.mark.parametrize("needed", ["linux/amd64,linux/arm64", "images/build.sh"])
def test_release_builds_every_image_for_both_architectures(needed: str) -> None:
    assert needed in (WORKFLOWS / "release.yml").read_text()


def test_release_publishes_signs_and_attaches() -> None:
    release = workflow("release.yml")
    assert release["on"] == {"push": {"tags": ["v*"]}}
    jobs = release["jobs"]
    uses = {step.get("uses", "").split("@")[0] for job in jobs.values() for step in job["steps"]}
    assert {
        "pypa/gh-action-pypi-publish",
        "actions/attest-sbom",
        "actions/attest-build-provenance",
        "sigstore/cosign-installer",
    } <= uses
    # Trusted publishing: an OIDC token, and no password or token handed to the publisher.
    publish = jobs["publish-python"]
    assert publish["permissions"] == {"id-token": "write"}
    assert all(
        "with" not in step for step in publish["steps"] if "pypi-publish" in step.get("uses", "")
    )
    images = jobs["images"]
    assert images["permissions"]["id-token"] == "write"
    assert images["permissions"]["packages"] == "write"
    text = (WORKFLOWS / "release.yml").read_text()
    assert "cosign sign --yes" in text
    assert "cyclonedx" in text
    assert "release.py notes" in text
