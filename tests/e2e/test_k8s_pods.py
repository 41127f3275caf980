"""The example pods of k8s/ run under `podman kube play`, each pattern in both forms
(native sidecars turned classic for podman 4.3), with the commands their READMEs show.

nginx, redis and busybox are stand-ins built from Debian packages under the names the
manifests use (tests/e2e/base-image.sh standins). Pods run with `--network none`: every
request stays on the pod's own loopback.
"""

from __future__ import annotations

import re

import pytest

from tests.e2e.harness import Podman
from tests.e2e.pods import played, wait_for

FORMS = ["classic", "native"]


@pytest.fixture
def need(helper_images: dict[str, str], standins: None):  # type: ignore[no-untyped-def]
    def check(*helpers: str) -> None:
        missing = [h for h in helpers if h not in helper_images]
        if missing:
            pytest.skip(f"helper image(s) {missing} not in this tree (branch not merged)")

    return check


@pytest.mark.parametrize("form", FORMS)
def test_shared_volume(podman: Podman, standins: None, form: str) -> None:
    with played(podman, "shared-volume", form) as pod:
        command = f"podman exec {pod.name}-producer wget -qO- http://127.0.0.1:8080/index.html"

        def page() -> int:
            answer = pod.sh(command, check=False).stdout
            match = re.match(r"page (\d+) written at \S+ by the producer", answer)
            return int(match.group(1)) if match else 0

        first = wait_for(page, 60, "nginx to serve the producer's page")
        # The producer keeps rewriting it, and nginx serves each new page.
        wait_for(lambda: page() > first, 30, "a newer page")


@pytest.mark.parametrize("form", FORMS)
def test_localhost(podman: Podman, standins: None, form: str) -> None:
    with played(podman, "localhost", form) as pod:
        wait_for(
            lambda: "localhost:8080 answered: hello over localhost" in pod.logs("poller"),
            60,
            "the poller to reach nginx over localhost",
        )
