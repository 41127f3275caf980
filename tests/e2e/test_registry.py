"""The registry round trip: images/build.sh pushes to a registry on a loopback port
(Debian's docker-registry, the CNCF distribution registry), and what comes back from it by
tag and by digest is the image the release names: skopeo shows its labels, version and
architecture, `IMAGE --version` answers, and a k8s/ pod whose image names are rewritten
only in their registry part pulls from there and works. Nothing here leaves the machine."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from collections.abc import Iterator

import pytest

from images.render import OWNER, image_name
from podkit_dev.servers import RegistryServer
from tests.e2e.harness import BASE_IMAGE, CACHE, ROOT, VERSION, Podman
from tests.e2e.pods import played, wait_for

HELPER = "echo"
# Pushed too: a pod of k8s/ runs it from the registry.
POD_HELPER = "log-adapter"
MINOR = VERSION.rsplit(".", 1)[0]
INSECURE = "--tls-verify=false"  # the loopback registry speaks plain HTTP
ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64"}


@pytest.fixture(scope="module")
def registry() -> Iterator[RegistryServer]:
    server = RegistryServer().start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="module")
def pushed_all(
    podman: Podman, registry: RegistryServer, helper_images: dict[str, str]
) -> dict[str, str]:
    """helper -> REGISTRY/podkit-HELPER@DIGEST, pushed by images/build.sh (both tags), with
    the local tags of those names removed again so that what runs comes from the registry."""
    prefix = f"{registry.address}/{OWNER}"
    done = subprocess.run(
        [str(ROOT / "images/build.sh"), HELPER, POD_HELPER],
        env={
            **podman.env, "REGISTRY": prefix, "PUSH": "1", "PUSH_OPTS": INSECURE,
            "BASE_IMAGE": BASE_IMAGE, "PYTHON": sys.executable,
            "CONTEXT": str(CACHE / "context-registry"),
        },
        cwd=ROOT, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    refs = {}
    for ref in done.stdout.split():
        name, _, digest = ref.partition("@")
        helper = name.rsplit("/podkit-", 1)[1]
        assert name == image_name(helper, prefix)
        assert digest.startswith("sha256:"), ref
        podman.run("rmi", f"{name}:{VERSION}", f"{name}:{MINOR}", check=False)
        refs[helper] = ref
    assert sorted(refs) == sorted([HELPER, POD_HELPER])
    return refs


@pytest.fixture(scope="module")
def pushed(pushed_all: dict[str, str]) -> str:
    return pushed_all[HELPER]


def revision() -> str:
    done = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return done.stdout.strip()


def skopeo(*args: str) -> dict:  # type: ignore[type-arg]
    done = subprocess.run(
        ["skopeo", *args], capture_output=True, text=True, timeout=120
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_skopeo_shows_labels_version_and_architecture(pushed: str) -> None:
    name, _, digest = pushed.partition("@")
    by_tag = skopeo("inspect", INSECURE, f"docker://{name}:{VERSION}")
    assert by_tag["Digest"] == digest
    assert by_tag["Os"] == "linux"
    assert by_tag["Architecture"] == ARCHITECTURES[platform.machine()]
    labels = by_tag["Labels"]
    assert labels["org.opencontainers.image.version"] == VERSION
    assert labels["org.opencontainers.image.revision"] == revision()
    assert labels["org.opencontainers.image.title"] == f"podkit-{HELPER}"
    assert labels["io.podkit.helper"] == HELPER
    assert skopeo("inspect", INSECURE, f"docker://{pushed}")["Digest"] == digest
    assert skopeo("inspect", INSECURE, f"docker://{name}:{MINOR}")["Digest"] == digest
    tags = skopeo("list-tags", INSECURE, f"docker://{name}")["Tags"]
    assert sorted(tags) == sorted([VERSION, MINOR])


@pytest.mark.parametrize("by", ["tag", "digest"])
def test_pulled_image_answers_version(podman: Podman, pushed: str, by: str) -> None:
    name, _, digest = pushed.partition("@")
    ref = f"{name}:{VERSION}" if by == "tag" else pushed
    podman.run("pull", "--quiet", INSECURE, ref, timeout=300)
    assert digest in podman.out("image", "inspect", "--format", "{{.Digest}}", ref)
    python = podman.out(
        "run", "--rm", "--network", "none", "--entrypoint", "python3", ref,
        "-c", "import platform; print(platform.python_version())",
    )  # fmt: skip
    version = podman.out("run", "--rm", "--read-only", "--network", "none", ref, "--version")
    assert version == f"podkit {HELPER} {VERSION} (revision {revision()}, Python {python})"


def test_a_pod_pulls_from_the_registry(
    podman: Podman, registry: RegistryServer, pushed_all: dict[str, str], standins: None
) -> None:
    """k8s/log-adapter's pod, its podkit image names rewritten in their registry part only
    (manifests.py --registry): kube play pulls the pushed image and the adapter works."""
    name = pushed_all[POD_HELPER].partition("@")[0]
    with played(
        podman, POD_HELPER, "classic", local=("--registry", f"{registry.address}/{OWNER}")
    ) as pod:
        container = pod.container(POD_HELPER)
        assert podman.out("inspect", "--format", "{{.ImageName}}", container) == (
            f"{name}:{VERSION}"
        )

        def records() -> list[dict]:  # type: ignore[type-arg]
            lines = pod.stdout(POD_HELPER).splitlines()
            return [r for r in map(json.loads, filter(str.strip, lines)) if "took_ms" in r]

        assert wait_for(records, 60, "JSON records from the pulled log-adapter")
        podman.run("pod", "stop", "--time", "30", pod.name, timeout=90)
        assert pod.exit_code(POD_HELPER) == 0, pod.logs(POD_HELPER)[-3000:]
