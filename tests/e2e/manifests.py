"""The example pods under k8s/: load them, check what schemas cannot, and turn native
sidecars into classic ones for `podman kube play`.

Used by tests/unit/test_k8s_manifests.py (static checks, always run) and by
tests/e2e/test_k8s_pods.py (the pods run under podman).
"""

from __future__ import annotations

import argparse
import base64
import copy
import re
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # run as a script too (the k8s READMEs' podman commands)
from images.render import REGISTRY  # noqa: E402

K8S = ROOT / "k8s"
# A podkit image in any registry: REGISTRY/podkit-HELPER:TAG (check_pod wants ours).
PODKIT_IMAGE = re.compile(r"^(?P<registry>.+)/podkit-(?P<helper>[a-z0-9-]+):(?P<tag>[^/:@]+)$")
# Pod Security Standards, restricted profile (Kubernetes 1.29+).
RESTRICTED_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
POD_KINDS = {"Pod"}
TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


@dataclass
class Manifest:
    path: Path
    docs: list[dict[str, Any]]

    @property
    def folder(self) -> Path:
        return self.path.parent


def manifest_files() -> list[Path]:
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


def load(path: Path) -> Manifest:
    return Manifest(path, [d for d in yaml.safe_load_all(path.read_text()) if d])


def folder_docs(folder: Path) -> list[dict[str, Any]]:
    return [
        doc
        for path in sorted(folder.glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in load(path).docs
    ]


def pod_specs(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(name, pod metadata, pod spec) of a Pod or of a workload's pod template."""
    kind = doc.get("kind")
    if kind in POD_KINDS:
        yield doc["metadata"]["name"], doc["metadata"], doc["spec"]
    elif kind in TEMPLATE_KINDS:
        template = doc["spec"]["template"]
        yield doc["metadata"]["name"], template.get("metadata", {}), template["spec"]


def is_sidecar(container: dict[str, Any]) -> bool:
    return container.get("restartPolicy") == "Always"


def long_running(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Containers that run for the pod's life: containers[] and native sidecars."""
    return [c for c in spec.get("initContainers", []) if is_sidecar(c)] + spec["containers"]


def all_containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return spec.get("initContainers", []) + spec["containers"]


# --- helpers ------------------------------------------------------------------------------


def registered_helpers() -> dict[str, Any]:
    """helper name -> Helper, from the installed entry points."""
    from podkit.cli import helpers

    return dict(helpers())


def podkit_helper(container: dict[str, Any]) -> tuple[str, str] | None:
    """(helper, tag) when the container runs a podkit image, from whatever registry."""
    match = PODKIT_IMAGE.match(container.get("image", ""))
    return (match["helper"], match["tag"]) if match else None


# --- the checker --------------------------------------------------------------------------


@dataclass
class Findings:
    problems: list[str] = field(default_factory=list)

    def add(self, where: str, problem: str) -> None:
        self.problems.append(f"{where}: {problem}")


def _port_number(container: dict[str, Any], port: int | str) -> int | None:
    if isinstance(port, int):
        return port
    for entry in container.get("ports", []):
        if entry.get("name") == port:
            return entry["containerPort"]
    return None


def _effective(container: dict[str, Any], pod: dict[str, Any], key: str) -> Any:
    own = (container.get("securityContext") or {}).get(key)
    return own if own is not None else (pod.get("securityContext") or {}).get(key)


def check_pod(where: str, spec: dict[str, Any], version: str, findings: Findings) -> None:
    """Restricted Pod Security, resources, probes, tags, secrets, restartPolicy placement."""
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(flag):
            findings.add(where, f"{flag} is not allowed (restricted)")
    if spec.get("automountServiceAccountToken") is not False:
        findings.add(where, "automountServiceAccountToken should be false (no API access needed)")
    for volume in spec.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUME_TYPES:
            findings.add(where, f"volume {volume['name']}: {kinds} not allowed (restricted)")
    for container in spec.get("initContainers", []):
        policy = container.get("restartPolicy")
        if policy not in (None, "Always"):
            findings.add(f"{where}/{container['name']}", f"restartPolicy {policy!r}")
    for container in spec["containers"]:
        if "restartPolicy" in container:
            findings.add(f"{where}/{container['name']}", "restartPolicy only on initContainers")
    sidecar_or_main = {id(c) for c in long_running(spec)}
    for container in all_containers(spec):
        at = f"{where}/{container['name']}"
        context = container.get("securityContext") or {}
        if _effective(container, spec, "runAsNonRoot") is not True:
            findings.add(at, "runAsNonRoot must be true (pod or container)")
        if _effective(container, spec, "runAsUser") == 0:
            findings.add(at, "runAsUser 0")
        seccomp = (_effective(container, spec, "seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            findings.add(at, "seccompProfile must be RuntimeDefault or Localhost")
        if context.get("allowPrivilegeEscalation") is not False:
            findings.add(at, "allowPrivilegeEscalation must be false")
        if context.get("privileged"):
            findings.add(at, "privileged")
        caps = context.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            findings.add(at, "capabilities must drop ALL")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            findings.add(at, f"capabilities.add {caps['add']} (restricted)")
        if context.get("readOnlyRootFilesystem") is not True:
            findings.add(at, "readOnlyRootFilesystem must be true")
        if any(p.get("hostPort") for p in container.get("ports", [])):
            findings.add(at, "hostPort")
        resources = container.get("resources") or {}
        for kind in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                if resource not in (resources.get(kind) or {}):
                    findings.add(at, f"resources.{kind}.{resource} missing")
        image = container.get("image", "")
        tag = image.rpartition(":")[2] if ":" in image.rpartition("/")[2] else ""
        if not tag or tag == "latest":
            findings.add(at, f"image {image!r} needs a pinned tag")
        for env in container.get("env", []):
            if "secretKeyRef" in (env.get("valueFrom") or {}):
                findings.add(at, f"env {env['name']} from a Secret: mount a Secret volume")
        if any("secretRef" in source for source in container.get("envFrom", [])):
            findings.add(at, "envFrom a Secret: mount a Secret volume")
        probes = {p for p in ("startupProbe", "livenessProbe", "readinessProbe") if p in container}
        if id(container) in sidecar_or_main:
            for probe in ("livenessProbe", "readinessProbe"):
                if probe not in probes:
                    findings.add(at, f"{probe} missing")
        elif probes:
            findings.add(at, "probes on an init container that is not a sidecar")
        helper = podkit_helper(container)
        if helper and helper[1] != version:
            findings.add(at, f"podkit image tag {helper[1]} is not the version {version}")
        if helper and not image.startswith(f"{REGISTRY}/"):
            findings.add(at, f"podkit image {image!r} is not from {REGISTRY}")


def check_helper_container(
    where: str, container: dict[str, Any], helper: Any, findings: Findings
) -> None:
    """Probes on the helper's admin port and endpoints; a preStop drain."""
    at = f"{where}/{container['name']}"
    paths = {"startupProbe": "/startupz", "livenessProbe": "/livez", "readinessProbe": "/readyz"}
    for probe, path in paths.items():
        http = (container.get(probe) or {}).get("httpGet")
        if http is None:
            findings.add(at, f"{probe} must be httpGet {path} on the admin port")
            continue
        if http.get("path") != path:
            findings.add(at, f"{probe} path {http.get('path')} (want {path})")
        port = _port_number(container, http.get("port"))
        if port != helper.admin_port:
            findings.add(at, f"{probe} port {port} is not the admin port {helper.admin_port}")
    command = ((container.get("lifecycle") or {}).get("preStop") or {}).get("exec", {})
    wanted = ["podkit", "ctl", "drain", "--admin", f"http://127.0.0.1:{helper.admin_port}"]
    if command.get("command", [])[:5] != wanted:
        findings.add(at, f"preStop must run {' '.join(wanted)}")


def _mounted_files(
    container: dict[str, Any], spec: dict[str, Any], docs: list[dict[str, Any]], root: Path
) -> dict[str, str]:
    """Write the container's ConfigMap and Secret volumes under root; mountPath -> new path."""
    by_name = {
        (d["kind"], d["metadata"]["name"]): d
        for d in docs
        if d.get("kind") in ("ConfigMap", "Secret")
    }
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    moved = {}
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if "configMap" in volume:
            source = by_name.get(("ConfigMap", volume["configMap"]["name"]))
            data = (source or {}).get("data", {})
            items = volume["configMap"].get("items")
        elif "secret" in volume:
            source = by_name.get(("Secret", volume["secret"]["secretName"]))
            data = (source or {}).get("stringData", {})
            items = volume["secret"].get("items")
        else:
            continue
        target = root / mount["mountPath"].lstrip("/")
        target.mkdir(parents=True, exist_ok=True)
        for item in items or [{"key": key, "path": key} for key in data]:
            (target / item["path"]).write_text(data.get(item["key"], ""))
        moved[mount["mountPath"]] = str(target)
    return moved


def helper_settings(
    container: dict[str, Any], spec: dict[str, Any], docs: list[dict[str, Any]], helper: Any
) -> Any:
    """Load the container's args, env and mounted config through the helper's own settings
    validation, as `podkit <helper>` would in the pod. Raises ConfigError."""
    from podkit.config import load_settings

    with tempfile.TemporaryDirectory() as tmp:
        moved = _mounted_files(container, spec, docs, Path(tmp))

        def relocate(text: str) -> str:
            for mount in sorted(moved, key=len, reverse=True):
                text = text.replace(mount + "/", moved[mount] + "/")
            return text

        for path in Path(tmp).rglob("*"):
            if path.is_file():
                path.write_text(relocate(path.read_text()))
        argv = [relocate(arg) for arg in container.get("args", [])]
        # Every env value, as the image's `podkit` reads them: drop-in names such as
        # DATABASES_HOST or GITSYNC_REPO are settings too.
        environ = {
            e["name"]: relocate(e["value"]) for e in container.get("env", []) if "value" in e
        }
        return load_settings(
            helper.load_settings_class(),
            argv,
            environ,
            prog=f"podkit {helper.name}",
            admin_default=f"0.0.0.0:{helper.admin_port}",
        )


# --- for podman kube play -----------------------------------------------------------------


def native_to_classic(doc: dict[str, Any]) -> dict[str, Any]:
    """Native sidecars (initContainers with restartPolicy Always) become classic containers,
    first in containers[] (podman 4.3 kube play does not run native sidecars)."""
    doc = copy.deepcopy(doc)
    for _, _, spec in pod_specs(doc):
        inits = spec.get("initContainers", [])
        sidecars = [c for c in inits if is_sidecar(c)]
        rest = [c for c in inits if not is_sidecar(c)]
        for container in sidecars:
            del container["restartPolicy"]
        if rest:
            spec["initContainers"] = rest
        else:
            spec.pop("initContainers", None)
        spec["containers"] = sidecars + spec["containers"]
    return doc


def _resolve_probe_ports(container: dict[str, Any]) -> None:
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        for kind in ("httpGet", "tcpSocket"):
            action = (container.get(probe) or {}).get(kind)
            if action and isinstance(action.get("port"), str):
                action["port"] = _port_number(container, action["port"])


def for_podman(doc: dict[str, Any]) -> dict[str, Any]:
    """The same pod for `podman kube play` (4.3), with these adaptations and nothing else:

    - native sidecars become classic containers (native_to_classic);
    - containerPorts are dropped (podman would publish them on the host) and probes use
      port numbers instead of their names;
    - `fieldRef: metadata.namespace` in env becomes the value "default" (podman has no
      namespaces and refuses the fieldRef);
    - each emptyDir becomes a claim of a podman volume `<pod>-<volume>` that
      `podman_volume_commands` creates as the kubelet makes an emptyDir: empty and
      world-writable (podman's own emptyDir is root's 0755, which a non-root writer
      cannot use);
    - each Secret volume becomes a configMap volume of the same name, items and mode,
      given to `kube play --configmap` as `secret_as_configmap` makes it from the Secret.
      podman 4.3 cannot mount a Kubernetes Secret: a secret volume without `optional`
      crashes `kube play` (nil pointer in VolumeFromSecret, podman issue 16636); with
      `optional: false` it looks the name up in podman's secret store, where `kube play`
      of a `kind: Secret` puts it, but then mounts no file for `stringData` keys and
      `data` values still base64-encoded; an env `secretKeyRef` to it fails ("not valid
      JSON", podman issue 16269). A configMap volume gives the same files at the same
      paths (podman ignores defaultMode there: the files are 0644, which also stands in
      for the fsGroup podman ignores).
    """
    doc = native_to_classic(doc)
    for name, _, spec in pod_specs(doc):
        for container in all_containers(spec):
            _resolve_probe_ports(container)
            container.pop("ports", None)
            for env in container.get("env", []):
                field_ref = (env.get("valueFrom") or {}).get("fieldRef") or {}
                if field_ref.get("fieldPath") == "metadata.namespace":
                    del env["valueFrom"]
                    env["value"] = "default"
        for volume in spec.get("volumes", []):
            if "emptyDir" in volume:
                del volume["emptyDir"]
                volume["persistentVolumeClaim"] = {"claimName": f"{name}-{volume['name']}"}
            if "secret" in volume:
                source = volume.pop("secret")
                source["name"] = source.pop("secretName")
                volume["configMap"] = source
    if doc.get("kind") == "Pod" and doc["spec"].get("initContainers"):
        # podman 4.3 removes "once" init containers after they ran, racing its own exit
        # handling ("cannot remove container ... as it is running"); keep them instead.
        annotations = doc["metadata"].setdefault("annotations", {})
        annotations["io.podman.annotations.init.container.type"] = "always"
    return doc


def secret_as_configmap(doc: dict[str, Any]) -> dict[str, Any]:
    """A Secret as the ConfigMap that stands in for it under podman (see for_podman): its
    stringData and its decoded data, under the same name. Other documents unchanged."""
    if doc.get("kind") != "Secret":
        return doc
    data = {key: base64.b64decode(value).decode() for key, value in doc.get("data", {}).items()}
    data.update(doc.get("stringData", {}))
    metadata = {k: v for k, v in doc["metadata"].items() if k in ("name", "labels")}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}


# Where a repository of the test's is mounted in the pod (git-sync: `--git-repo`).
GIT_REPO_MOUNT = "/srv/e2e-repo.git"


@dataclass
class Local:
    """What a pod needs from this machine that a cluster gives it, for `for_podman`:

    - git_repo: host path of a bare repository; each container with a `--repo=` arg gets it
      mounted read-only (hostPath) at GIT_REPO_MOUNT and `--repo=file://GIT_REPO_MOUNT`
      (the pod's remote repository, which no test can reach);
    - hosts: name -> IP added as the pod's `hostAliases` (what the cluster's DNS answers
      for a Service, e.g. `postgres.default.svc.cluster.local`; podman's CNI networks made
      `--internal` have no DNS);
    - registry: where to pull podkit's images from instead of REGISTRY (a registry of the
      test's on a loopback port); only that part of each image name changes.
    """

    git_repo: str | None = None
    hosts: dict[str, str] = field(default_factory=dict)
    registry: str | None = None


def for_this_machine(doc: dict[str, Any], local: Local) -> dict[str, Any]:
    """`for_podman(doc)` plus the rewrites of `local` (nothing else changes)."""
    doc = for_podman(doc)
    for _, _, spec in pod_specs(doc):
        if local.git_repo:
            _mount_git_repo(spec, local.git_repo)
        if local.hosts:
            aliases = spec.setdefault("hostAliases", [])
            for name, ip in local.hosts.items():
                aliases.append({"ip": ip, "hostnames": [name]})
        if local.registry:
            for container in all_containers(spec):
                if podkit_helper(container) and container["image"].startswith(f"{REGISTRY}/"):
                    name = container["image"].removeprefix(f"{REGISTRY}/")
                    container["image"] = f"{local.registry}/{name}"
    return doc


def _mount_git_repo(spec: dict[str, Any], host_path: str) -> None:
    users = [
        c for c in all_containers(spec) if any(a.startswith("--repo=") for a in c.get("args", []))
    ]
    if not users:
        return
    spec.setdefault("volumes", []).append(
        {"name": "e2e-repo", "hostPath": {"path": host_path, "type": "Directory"}}
    )
    for container in users:
        container["args"] = [
            f"--repo=file://{GIT_REPO_MOUNT}" if arg.startswith("--repo=") else arg
            for arg in container["args"]
        ]
        container.setdefault("volumeMounts", []).append(
            {"name": "e2e-repo", "mountPath": GIT_REPO_MOUNT, "readOnly": True}
        )


def podman_volumes(path: Path) -> list[str]:
    """The podman volumes that stand for the emptyDirs of FILE's pods."""
    return [
        f"{name}-{volume['name']}"
        for doc in load(path).docs
        for name, _, spec in pod_specs(doc)
        for volume in spec.get("volumes", [])
        if "emptyDir" in volume
    ]


def podman_volume_commands(path: Path) -> list[list[str]]:
    return [
        [
            "podman",
            "volume",
            "create",
            "--opt",
            "type=tmpfs",
            "--opt",
            "device=tmpfs",
            "--opt",
            "o=mode=0777",
            name,
        ]
        for name in podman_volumes(path)
    ]


class _NoAliases(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def podman_yaml(path: Path, local: Local | None = None) -> str:
    """FILE as `podman kube play` runs it (what `manifests.py podman FILE` prints)."""
    docs = [for_this_machine(d, local or Local()) for d in load(path).docs]
    return yaml.dump_all(docs, Dumper=_NoAliases, sort_keys=False)


def main(argv: list[str]) -> int:
    """`manifests.py podman FILE [--git-repo DIR] [--host NAME=IP]... [--registry R]`: print FILE as
    `podman kube play` runs it (see Local); `manifests.py volumes FILE`: print the
    commands that create its emptyDir volumes; `manifests.py configmap FILE`: print its
    Secrets as the ConfigMaps that stand in for them."""
    parser = argparse.ArgumentParser(prog="python tests/e2e/manifests.py")
    parser.add_argument("command", choices=["podman", "volumes", "configmap"])
    parser.add_argument("file", type=Path, help="k8s/PATTERN/FORM.yaml")
    parser.add_argument("--git-repo", metavar="DIR", help="bare repository to sync from")
    parser.add_argument(
        "--host", metavar="NAME=IP", action="append", default=[], help="a hostAliases entry"
    )
    parser.add_argument("--registry", help=f"pull podkit's images from here, not {REGISTRY}")
    args = parser.parse_args(argv)
    if args.command == "podman":
        hosts = dict(entry.split("=", 1) for entry in args.host)
        local = Local(git_repo=args.git_repo, hosts=hosts, registry=args.registry)
        print(podman_yaml(args.file, local), end="")
    elif args.command == "configmap":
        docs = [secret_as_configmap(d) for d in load(args.file).docs]
        print(yaml.dump_all(docs, Dumper=_NoAliases, sort_keys=False), end="")
    else:
        for command in podman_volume_commands(args.file):
            print(" ".join(command))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
