"""Build podkit's images and run containers and pods under podman, for the e2e tests and
bench/bench_images.py.

Podman is set up the way it works on the project's machines (images/README.md): runc and
ulimits within the hard limits, through a containers.conf of our own when the machine has
none. Images are rebuilt only when what goes into them changed: the base and stand-in
images by the hash of tests/e2e/base-image.sh (rootfs tarballs cached under CACHE), the
helper images by a hash of the sources, which they carry as a label.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("PODKIT_E2E_CACHE", "/var/tmp/podkit-e2e"))
BASE_IMAGE = "localhost/podkit-base:bookworm"
# Everything that ends up in a helper image.
IMAGE_INPUTS = (
    "pyproject.toml",
    "setup.py",
    "podkit",
    "sidecars",
    "adapters",
    "ambassadors",
    "images",
)

sys.path.insert(0, str(ROOT))
from images.render import ImageSpec, image_name, specs  # noqa: E402
from podkit import __version__  # noqa: E402

VERSION = __version__
# The least a helper needs to start in an empty container (a new helper with a required
# setting adds its line). Without an upstream, some are live but not ready: READY_PATH.
SMOKE_ARGS: dict[str, tuple[str, ...]] = {
    "log-shipper": ("--path", "/tmp/*.log"),
    "log-adapter": ("--path", "/tmp/*.log"),
    "redis-ambassador": ("--sentinels", "127.0.0.1:26379"),
    # No remote in a smoke run: it keeps failing (counted, logged) and stays alive.
    "git-sync": ("--repo=file:///tmp/none.git", "--root=/tmp/git", "--max-failures=-1"),
    # No PostgreSQL in a smoke run, and no credentials to check clients against: trust.
    "pg-ambassador": ("--client-auth", "trust"),
}
READY_PATH: dict[str, str] = {
    "redis-ambassador": "/livez",
    "git-sync": "/livez",
    "pg-ambassador": "/livez",
}


class PodmanMissing(Exception):
    pass


def _conf_env() -> dict[str, str]:
    env = dict(os.environ)
    if "CONTAINERS_CONF" not in env and not Path("/etc/containers/containers.conf").exists():
        conf = CACHE / "containers.conf"
        subprocess.run(
            [str(ROOT / "tests/e2e/podman-conf.sh"), str(conf)], check=True, capture_output=True
        )
        env["CONTAINERS_CONF"] = str(conf)
    return env


class Podman:
    def __init__(self) -> None:
        self.binary = shutil.which("podman")
        if self.binary is None:
            raise PodmanMissing("podman is not installed (./dev setup)")
        CACHE.mkdir(parents=True, exist_ok=True)
        self.env = _conf_env()

    def run(
        self, *args: str, check: bool = True, timeout: float = 120, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.binary, *args],  # type: ignore[list-item]
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"podman {' '.join(args)} exited {result.returncode}: {result.stderr.strip()}"
            )
        return result

    def out(self, *args: str, timeout: float = 120) -> str:
        return self.run(*args, timeout=timeout).stdout.strip()

    def inspect_image(self, ref: str) -> dict | None:
        result = self.run("image", "inspect", ref, check=False)
        return json.loads(result.stdout)[0] if result.returncode == 0 else None

    def script(self, path: str, *args: str, timeout: float = 600, **env: str) -> None:
        subprocess.run(
            [str(ROOT / path), *args],
            env={**self.env, **env},
            check=True,
            timeout=timeout,
            cwd=ROOT,
        )

    # --- images -----------------------------------------------------------------------------

    def build_base(self) -> None:
        self.script("tests/e2e/base-image.sh", "base")

    def build_standins(self) -> None:
        self.script("tests/e2e/base-image.sh", "standins")

    def build_helpers(self) -> list[ImageSpec]:
        """Every helper image, built unless the current sources are already in it."""
        self.build_base()
        wanted = specs()
        digest = source_hash()
        stale = [
            spec.helper
            for spec in wanted
            if label(self.inspect_image(image_ref(spec.helper)), "io.podkit.source-hash") != digest
        ]
        if stale:
            self.script(
                "images/build.sh",
                *stale,
                BASE_IMAGE=BASE_IMAGE,
                SOURCE_HASH=digest,
                PYTHON=sys.executable,
                CONTEXT=str(CACHE / "context"),
            )
            self.run("image", "prune", "--force", check=False)  # the builder stages
        return wanted

    # --- containers -------------------------------------------------------------------------

    @contextmanager
    def container(self, image: str, *args: str, options: tuple[str, ...] = ()) -> Iterator[str]:
        name = f"podkit-e2e-{uuid.uuid4().hex[:10]}"
        self.run("run", "-d", "--name", name, *options, image, *args)
        try:
            yield name
        finally:
            self.run("rm", "--force", "--time", "0", name, check=False)

    def http_get(self, container: str, port: int, path: str) -> tuple[int, str]:
        """GET inside the container's own network namespace (no traffic leaves it)."""
        result = self.run(
            "exec",
            container,
            "python3",
            "-c",
            HTTP_GET,
            f"http://127.0.0.1:{port}{path}",
            check=False,
        )
        if result.returncode != 0:
            return 0, result.stderr.strip()
        code, _, body = result.stdout.partition("\n")
        return int(code), body

    def wait_ready(self, container: str, port: int, path: str = "/readyz", timeout: float = 30):
        """Seconds of CLOCK_MONOTONIC (shared with the host) at which `path` first said 200."""
        result = self.run(
            "exec",
            container,
            "python3",
            "-c",
            WAIT_200,
            f"http://127.0.0.1:{port}{path}",
            str(timeout),
            timeout=timeout + 30,
            check=False,
        )
        if result.returncode != 0:
            logs = self.run("logs", container, check=False)
            raise TimeoutError(
                f"{container}: {path} not 200 within {timeout}s: {result.stdout}{result.stderr}"
                f"\n--- logs ---\n{logs.stdout}{logs.stderr}"
            )
        return float(result.stdout.strip())

    def state(self, container: str) -> dict:
        return json.loads(self.out("inspect", container))[0]["State"]


# Run by `python3 -c` inside the images: standard library only.
HTTP_GET = """
import sys, urllib.request, urllib.error
try:
    with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
        print(r.status); print(r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code); print(e.read().decode())
"""
WAIT_200 = """
import sys, time, urllib.request
deadline = time.monotonic() + float(sys.argv[2])
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(sys.argv[1], timeout=1) as r:
            if r.status == 200:
                print(time.monotonic()); sys.exit(0)
    except OSError:
        pass
    time.sleep(0.01)
sys.exit(1)
"""


def image_ref(helper: str) -> str:
    """The name the manifests use (images/build.sh tags the local build with it)."""
    return f"{image_name(helper)}:{VERSION}"


def label(image: dict | None, key: str) -> str | None:
    if image is None:
        return None
    return ((image.get("Config") or {}).get("Labels") or {}).get(key)


def source_hash() -> str:
    digest = hashlib.sha256()
    for name in IMAGE_INPUTS:
        path = ROOT / name
        files = [path] if path.is_file() else sorted(path.rglob("*")) if path.exists() else []
        for file in files:
            if file.is_file() and "__pycache__" not in file.parts:
                digest.update(str(file.relative_to(ROOT)).encode() + b"\0")
                digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def monotonic() -> float:
    return time.monotonic()


@dataclass
class Started:
    container: str
    ready_after: float
