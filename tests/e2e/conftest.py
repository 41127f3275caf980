"""Fixtures of the e2e tests: podman set up for this machine, images built once a session."""

from __future__ import annotations

import os

import pytest

from tests.e2e.harness import Podman, PodmanMissing

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.path).replace(os.sep, "/"):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def podman() -> Podman:
    try:
        return Podman()
    except PodmanMissing as exc:
        if IN_CI:
            pytest.fail(f"CI=true and {exc}", pytrace=False)
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def helper_images(podman: Podman) -> dict[str, str]:
    """helper name -> image reference, every one built from the current tree."""
    from tests.e2e.harness import image_ref

    return {spec.helper: image_ref(spec.helper) for spec in podman.build_helpers()}


@pytest.fixture(scope="session")
def standins(podman: Podman) -> None:
    """nginx, redis and busybox images under the names the k8s/ manifests use."""
    podman.build_standins()
