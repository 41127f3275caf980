"""Run an example pod of k8s/ under `podman kube play`, with the commands its README shows.

`commands(folder, form)` are the exact shell lines of the README's "Run it with podman"
section; the e2e tests run them (with this interpreter for `.venv/bin/python`) and a unit
test checks that every README still shows them.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from podkit_dev import servers as devservers
from tests.e2e.harness import ROOT, Podman
from tests.e2e.manifests import K8S, load, podman_volumes

PYTHON = ".venv/bin/python"
# Python one-liners run inside the podkit containers (they have python3, and share the
# pod's loopback with the app).
_GET = "import sys, urllib.request as u; print(u.urlopen(sys.argv[1], timeout=5).read().decode())"
_LOAD = (
    "import sys, urllib.request as u; "
    "[u.urlopen(f'http://127.0.0.1:8080/{sys.argv[1]}-{i}', timeout=5).read() for i in range(20)]"
)
_SYNC = (
    "import urllib.request as u; "
    "print(u.urlopen(u.Request('http://127.0.0.1:9703/sync', method='POST')).read())"
)
# What each README tells to look at, and the e2e test runs ({pod}: the pod's name).
CHECKS = {
    "shared-volume": ["podman exec {pod}-producer wget -qO- http://127.0.0.1:8080/index.html"],
    "localhost": ["podman logs {pod}-poller"],
    "log-shipper": [
        f'podman exec {{pod}}-log-shipper python3 -c "{_LOAD}" hello',
        "podman logs {pod}-log-shipper",
    ],
    "log-adapter": ["podman logs {pod}-log-adapter"],
    "git-sync": [
        f'podman exec {{pod}}-git-sync python3 -c "{_GET}" http://127.0.0.1:8080/README.md',
        "podman exec {pod}-nginx readlink /git/current",
        f'podman exec {{pod}}-git-sync python3 -c "{_SYNC}"',
        f'podman exec {{pod}}-git-sync python3 -c "{_GET}" http://127.0.0.1:9703/readyz',
        f'podman exec {{pod}}-git-sync python3 -c "{_GET}" http://127.0.0.1:9703/metrics',
    ],
    "pg-ambassador": [
        "podman logs {pod}-app",
        f'podman exec {{pod}}-pg-ambassador python3 -c "{_GET}" http://127.0.0.1:9705/metrics',
    ],
    "stats-exporter": [
        f'podman exec {{pod}}-stats-exporter python3 -c "{_LOAD}" hello',
        f'podman exec {{pod}}-stats-exporter python3 -c "{_GET}" http://127.0.0.1:9113/metrics',
    ],
}


def check_commands(folder: str, form: str) -> list[str]:
    return [c.replace("{pod}", f"{folder}-{form}") for c in CHECKS.get(folder, [])]


def setup_commands(
    folder: str, form: str, local: tuple[str, ...] = (), network: str = "none"
) -> list[str]:
    """local: `manifests.py podman` options (what the pod needs from this machine);
    network: the podman network of the pod (`none`: its own loopback only)."""
    converted = f"/tmp/{folder}-{form}.yaml"
    play = f"podman kube play --network {network}"
    if "--registry" in local:
        play += " --tls-verify=false"  # the test's registry on a loopback port: plain HTTP
    if (K8S / folder / "configmap.yaml").exists():
        play += f" --configmap k8s/{folder}/configmap.yaml"
    rewrite = " ".join(("podman", f"k8s/{folder}/{form}.yaml", *map(shlex.quote, local)))
    commands = [
        f"{PYTHON} tests/e2e/manifests.py volumes k8s/{folder}/{form}.yaml | sh",
        f"{PYTHON} tests/e2e/manifests.py {rewrite} > {converted}",
    ]
    if (K8S / folder / "secret.yaml").exists():
        # Secret volumes are configMap volumes under podman 4.3 (manifests.for_podman).
        secret = f"/tmp/{folder}-secret.yaml"
        commands.append(
            f"{PYTHON} tests/e2e/manifests.py configmap k8s/{folder}/secret.yaml > {secret}"
        )
        play += f" --configmap {secret}"
    return [*commands, f"{play} {converted}"]


def teardown_commands(folder: str, form: str) -> list[str]:
    converted = f"/tmp/{folder}-{form}.yaml"
    volumes = " ".join(podman_volumes(K8S / folder / f"{form}.yaml"))
    return [f"podman kube down {converted}", f"podman volume rm {volumes}"]


@dataclass
class Pod:
    podman: Podman
    name: str

    def container(self, name: str) -> str:
        return f"{self.name}-{name}"

    def sh(self, command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return shell(self.podman, command, check=check)

    def logs(self, container: str) -> str:
        result = self.podman.run("logs", self.container(container), check=False)
        return result.stdout + result.stderr

    def state(self) -> str:
        """Each container's state and its log's tail: what a failed wait shows."""
        ps = self.podman.run(
            "ps", "-a", "--filter", f"pod={self.name}", "--format", "{{.Names}} {{.Status}}",
            check=False,
        )  # fmt: skip
        report = [ps.stdout.strip()]
        for line in ps.stdout.split("\n"):
            name = line.partition(" ")[0]
            if name.startswith(self.name + "-"):
                tail = self.logs(name.removeprefix(self.name + "-"))[-1500:]
                report.append(f"--- {name}:\n{tail}")
        return "\n".join(report)

    def stdout(self, container: str) -> str:
        return self.podman.run("logs", self.container(container), check=False).stdout

    def exit_code(self, container: str) -> int:
        return self.podman.state(self.container(container))["ExitCode"]

    def running(self, container: str) -> bool:
        return self.podman.state(self.container(container))["Status"] == "running"


def shell(podman: Podman, command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    command = command.replace(PYTHON, sys.executable)
    result = subprocess.run(
        command, shell=True, cwd=ROOT, env=podman.env, capture_output=True, text=True, timeout=120
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"{command!r} exited {result.returncode}: {result.stderr[-2000:]}")
    return result


@contextmanager
def played(
    podman: Podman, folder: str, form: str, local: tuple[str, ...] = (), network: str = "none"
) -> Iterator[Pod]:
    (doc,) = [d for d in load(K8S / folder / f"{form}.yaml").docs if d["kind"] == "Pod"]
    pod = Pod(podman, doc["metadata"]["name"])
    # A pod left over by an interrupted run would make `kube play` fail.
    for command in teardown_commands(folder, form):
        shell(podman, command, check=False)
    try:
        for command in setup_commands(folder, form, local, network):
            shell(podman, command)
        yield pod
    finally:
        for command in teardown_commands(folder, form):
            shell(podman, command, check=False)
        # kube play makes a volume of each ConfigMap (named after it, and so of each Secret
        # made a ConfigMap); the next run recreates it.
        for name in ("configmap.yaml", "secret.yaml"):
            if (K8S / folder / name).exists():
                for cm in load(K8S / folder / name).docs:
                    podman.run("volume", "rm", "--force", cm["metadata"]["name"], check=False)


def wait_for(condition, timeout: float, what: str, explain=None):  # type: ignore[no-untyped-def]
    """devservers.wait_for with a coarse interval: podman calls are slow."""
    return devservers.wait_for(condition, timeout=timeout, interval=0.2, what=what, explain=explain)
