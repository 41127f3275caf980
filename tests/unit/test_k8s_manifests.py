"""Static checks of the example pods under k8s/: schemas, then what schemas cannot see
(tests/e2e/manifests.py), then each helper's own settings validation.

The checks of one manifest (`schema_check`, `manifest_problems`, `image_argv`,
`helper_settings`) are shared with tests/unit/test_docs_yaml.py, which runs them on the
YAML examples in the documentation.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from images.render import REGISTRY
from podkit import __version__
from podkit.config import ConfigError
from tests.e2e.manifests import (
    GIT_REPO_MOUNT,
    K8S,
    ROOT,
    Findings,
    Local,
    check_helper_container,
    check_pod,
    folder_docs,
    for_podman,
    for_this_machine,
    helper_settings,
    load,
    long_running,
    manifest_files,
    native_to_classic,
    pod_specs,
    podkit_helper,
    registered_helpers,
    secret_as_configmap,
)

FILES = manifest_files()
IDS = [str(p.relative_to(K8S)) for p in FILES]
FOLDERS = sorted(p for p in K8S.iterdir() if p.is_dir())
PATTERN_FOLDERS = [f for f in FOLDERS if (f / "classic.yaml").exists()]
SCHEMA_VERSIONS = ["1.29.0", kubernetes_validate.latest_version()]
# Custom resources that have no bundled schema; checked by test_podmonitor_selects_pods.
CRDS = {
    ("monitoring.coreos.com/v1", "PodMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}
HELPERS = registered_helpers()
# An image's ENTRYPOINT as images/build.sh builds it (exec form).
ENTRYPOINT = re.compile(r"^ENTRYPOINT (\[.*\])$", re.M)


def schema_check(doc: dict[str, Any], version: str) -> None:
    """kubernetes-validate, strict (unknown fields fail); raises ValidationError."""
    if (doc["apiVersion"], doc["kind"]) in CRDS:
        return
    kubernetes_validate.validate(doc, version, strict=True)


def built_helpers() -> set[str]:
    """The helpers images/build.sh makes an image of: REGISTRY/podkit-<helper>:<version>."""
    return {
        p.name.removesuffix(".Containerfile") for p in (ROOT / "images").glob("*.Containerfile")
    }


def image_entrypoint(helper: str) -> list[str]:
    text = (ROOT / "images" / f"{helper}.Containerfile").read_text()
    match = ENTRYPOINT.search(text)
    assert match, f"images/{helper}.Containerfile has no exec-form ENTRYPOINT"
    return list(json.loads(match.group(1)))


def image_argv(container: dict[str, Any]) -> list[str]:
    """What the container runs: `command` replaces the image's ENTRYPOINT, `args` follow."""
    found = podkit_helper(container)
    assert found, container.get("image")
    command = container.get("command") or image_entrypoint(found[0])
    return [*command, *container.get("args", [])]


def manifest_problems(where: str, doc: dict[str, Any]) -> list[str]:
    """What schemas cannot see, for every pod of DOC: restricted Pod Security, resources,
    probes, pinned tags (check_pod); for a podkit container also that its image is one the
    build makes, that it runs `podkit HELPER` as the image does, with probes on the
    helper's admin port and a preStop drain (check_helper_container)."""
    findings = Findings()
    for pod, _, spec in pod_specs(doc):
        at = f"{where}:{pod}"
        check_pod(at, spec, __version__, findings)
        for container in spec.get("initContainers", []) + spec["containers"]:
            image = container.get("image", "")
            found = podkit_helper(container)
            if found is None:
                if "podkit" in image:
                    findings.add(
                        f"{at}/{container['name']}",
                        f"image {image!r} is not one images/build.sh makes"
                        f" ({REGISTRY}/podkit-HELPER:VERSION)",
                    )
                continue
            if found[0] not in built_helpers() or found[0] not in HELPERS:
                findings.add(
                    f"{at}/{container['name']}",
                    f"image {image!r}: no helper {found[0]!r} is registered and built",
                )
                continue
            argv = image_argv(container)
            if argv[:2] != ["podkit", found[0]]:
                findings.add(
                    f"{at}/{container['name']}",
                    f"runs {argv[:2]}, not the image's `podkit {found[0]}`",
                )
            if any(c is container for c in long_running(spec)):
                check_helper_container(at, container, HELPERS[found[0]], findings)
    return findings.problems


def podkit_settings(
    container: dict[str, Any], spec: dict[str, Any], docs: list[dict[str, Any]]
) -> Any:
    """The container's settings as `podkit HELPER` in its image loads them (the image's
    argument parser, so an unknown argument fails as it would in the pod). Raises
    ConfigError."""
    helper = HELPERS[podkit_helper(container)[0]]  # type: ignore[index]
    argv = image_argv(container)
    return helper_settings({**container, "args": argv[2:]}, spec, docs, helper)


def helper_containers() -> list[tuple[Path, str, dict, dict]]:
    found = []
    for path in FILES:
        for doc in load(path).docs:
            for name, _, spec in pod_specs(doc):
                for container in long_running(spec):
                    if podkit_helper(container):
                        found.append((path, name, spec, container))
    return found


HELPER_CONTAINERS = helper_containers()


def test_every_pattern_is_there() -> None:
    names = {f.name for f in FOLDERS}
    wanted = {
        "log-shipper",
        "log-adapter",
        "stats-exporter",
        "redis-ambassador",
        "redis-sentinel",
        "shared-volume",
        "localhost",
    }
    assert wanted <= names


@pytest.mark.parametrize("version", SCHEMA_VERSIONS)
@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_schema_strict(path: Path, version: str) -> None:
    for doc in load(path).docs:
        schema_check(doc, version)


def test_strict_schema_rejects_an_unknown_field() -> None:
    doc = copy.deepcopy(load(K8S / "localhost/classic.yaml").docs[0])
    doc["spec"]["containers"][0]["imagePullPolice"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError, match="imagePullPolice"):
        kubernetes_validate.validate(doc, SCHEMA_VERSIONS[0], strict=True)


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_restricted_security_resources_probes_tags(path: Path) -> None:
    problems = []
    for doc in load(path).docs:
        problems += manifest_problems(str(path.relative_to(K8S)), doc)
    assert problems == []


@pytest.mark.parametrize(
    ("path", "pod", "spec", "container"),
    HELPER_CONTAINERS,
    ids=[f"{p.relative_to(K8S)}:{c['name']}" for p, _, _, c in HELPER_CONTAINERS],
)
def test_helper_probes_and_settings(path: Path, pod: str, spec: dict, container: dict) -> None:
    name, _ = podkit_helper(container)  # type: ignore[misc]
    helper = HELPERS.get(name)
    assert helper is not None, f"the manifests use helper {name}, which is not registered"
    findings = Findings()
    check_helper_container(f"{path.relative_to(K8S)}:{pod}", container, helper, findings)
    assert findings.problems == []
    # The ConfigMap keys, args and env the pod gives the helper pass its own validation.
    # ConfigMaps and Secrets of every folder: redis-ambassador/ uses redis-sentinel/'s Secret.
    everything = [doc for file in FILES for doc in load(file).docs]
    podkit_settings(container, spec, everything)


@pytest.mark.parametrize("folder", PATTERN_FOLDERS, ids=[f.name for f in PATTERN_FOLDERS])
def test_native_form_is_the_classic_form_with_native_sidecars(folder: Path) -> None:
    (classic,) = load(folder / "classic.yaml").docs
    (native,) = load(folder / "native.yaml").docs
    sidecars = [c for c in native["spec"].get("initContainers", []) if c.get("restartPolicy")]
    assert sidecars, "native.yaml has no native sidecar"
    converted = native_to_classic(native)["spec"]["containers"]
    assert sorted((c["name"], c["image"]) for c in converted) == sorted(
        (c["name"], c["image"]) for c in classic["spec"]["containers"]
    )
    # Same containers, same settings: only the place of the sidecars differs.
    strip = {c["name"]: c for c in converted}
    for container in classic["spec"]["containers"]:
        assert strip[container["name"]] == container, container["name"]


@pytest.mark.parametrize("folder", FOLDERS, ids=[f.name for f in FOLDERS])
def test_kustomization_lists_every_file_and_a_readme_exists(folder: Path) -> None:
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    present = {p.name for p in folder.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present
    assert (folder / "README.md").exists()


def test_top_kustomization_lists_every_folder() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert set(kustomization["resources"]) == {f.name for f in FOLDERS}


def test_podmonitor_selects_pods_with_a_metrics_port() -> None:
    (monitor,) = load(K8S / "stats-exporter/podmonitor.yaml").docs
    selector = monitor["spec"]["selector"]["matchLabels"]
    ports = {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]}
    selected = 0
    for doc in folder_docs(K8S / "stats-exporter"):
        for _, meta, spec in pod_specs(doc):
            if selector.items() <= meta.get("labels", {}).items():
                selected += 1
                names = {p.get("name") for c in long_running(spec) for p in c.get("ports", [])}
                assert ports <= names
                annotations = meta.get("annotations", {})
                numbers = {
                    p["containerPort"]
                    for c in long_running(spec)
                    for p in c.get("ports", [])
                    if p.get("name") in ports
                }
                assert int(annotations["prometheus.io/port"]) in numbers
    assert selected == 2


# --- the checker itself finds what it should ----------------------------------------------

GOOD = load(K8S / "log-shipper/native.yaml").docs[0]


def problems(mutate) -> list[str]:  # type: ignore[no-untyped-def]
    doc = copy.deepcopy(GOOD)
    mutate(doc["spec"])
    findings = Findings()
    check_pod("pod", doc["spec"], __version__, findings)
    return findings.problems


@pytest.mark.parametrize(
    ("mutation", "expected"),
    [
        (lambda s: s["containers"][0].update(restartPolicy="Always"), "only on initContainers"),
        (lambda s: s["containers"][0]["securityContext"].update(runAsUser=0), "runAsUser 0"),
        (lambda s: s["securityContext"].pop("runAsNonRoot"), "runAsNonRoot"),
        (lambda s: s["securityContext"].pop("seccompProfile"), "seccompProfile"),
        (lambda s: s["containers"][0]["securityContext"].pop("capabilities"), "drop ALL"),
        (
            lambda s: s["containers"][0]["securityContext"].update(readOnlyRootFilesystem=False),
            "readOnlyRootFilesystem",
        ),
        (lambda s: s["containers"][0].pop("readinessProbe"), "readinessProbe missing"),
        (lambda s: s["containers"][0]["resources"].pop("limits"), "limits.cpu missing"),
        (lambda s: s["containers"][0].update(image="nginx:latest"), "pinned tag"),
        (lambda s: s["containers"][0].update(image="nginx"), "pinned tag"),
        (
            lambda s: s["initContainers"][0].update(image=f"{REGISTRY}/podkit-log-shipper:0.0.1"),
            "podkit image tag 0.0.1 is not the version",
        ),
        (
            lambda s: s["initContainers"][0].update(
                image=f"registry.example/someone/podkit-log-shipper:{__version__}"
            ),
            f"is not from {REGISTRY}",
        ),
        (
            lambda s: s["containers"][0].update(
                env=[{"name": "P", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]
            ),
            "Secret volume",
        ),
        (lambda s: s["volumes"].append({"name": "h", "hostPath": {"path": "/"}}), "hostPath"),
    ],
)
def test_checker_finds_mistakes(mutation, expected: str) -> None:  # type: ignore[no-untyped-def]
    assert any(expected in p for p in problems(mutation)), problems(mutation)


@pytest.mark.parametrize(
    "image",
    [f"podkit/log-shipper:{__version__}", f"{REGISTRY}/log-shipper:{__version__}"],
)
def test_checker_refuses_a_podkit_image_named_otherwise(image: str) -> None:
    doc = copy.deepcopy(GOOD)
    doc["spec"]["initContainers"][0]["image"] = image
    assert any(
        "is not one images/build.sh makes" in p for p in manifest_problems("pod.yaml", doc)
    ), manifest_problems("pod.yaml", doc)


def test_every_podkit_image_is_published_under_the_release_name() -> None:
    """Every image that mentions podkit, in every manifest, is REGISTRY/podkit-HELPER:VERSION
    (./dev bump-version writes the version)."""
    pattern = re.compile(rf"^{re.escape(REGISTRY)}/podkit-[a-z0-9-]+:{re.escape(__version__)}$")
    seen = []
    for path in FILES:
        for doc in load(path).docs:
            for _, _, spec in pod_specs(doc):
                for container in spec.get("initContainers", []) + spec["containers"]:
                    if "podkit" in container["image"]:
                        seen.append(container["image"])
                        assert pattern.match(container["image"]), (path, container["image"])
    assert len(seen) >= 10


def test_checker_finds_a_wrong_probe_port() -> None:
    class FakeHelper:  # stands for a registered Helper; only the admin port matters here
        admin_port = 9999
        name = "log-shipper"

    findings = Findings()
    check_helper_container("pod", GOOD["spec"]["initContainers"][0], FakeHelper(), findings)
    assert any("not the admin port 9999" in p for p in findings.problems)
    assert any("preStop" in p for p in findings.problems)


def test_bad_configmap_keys_fail_the_helpers_validation() -> None:
    helper = HELPERS["echo"]
    container = {
        "name": "echo",
        "args": ["--config", "/etc/podkit/config/echo.yaml"],
        "volumeMounts": [{"name": "config", "mountPath": "/etc/podkit/config"}],
    }
    spec = {"volumes": [{"name": "config", "configMap": {"name": "c"}}]}
    good = [
        {
            "kind": "ConfigMap",
            "metadata": {"name": "c"},
            "data": {"echo.yaml": "listen: 127.0.0.1:7007\ndelay: 5ms\n"},
        }
    ]
    assert helper_settings(container, spec, good, helper).delay == 0.005
    bad = copy.deepcopy(good)
    bad[0]["data"]["echo.yaml"] = "listen: 127.0.0.1:7007\nno_such_key: 1\n"
    with pytest.raises(ConfigError, match="no_such_key"):
        helper_settings(container, spec, bad, helper)


def test_every_helper_the_manifests_use_is_registered() -> None:
    """A pod that names an unknown helper would otherwise escape its settings validation."""
    used = {podkit_helper(c)[0] for _, _, _, c in HELPER_CONTAINERS}  # type: ignore[index]
    assert used - set(HELPERS) == set()


# --- what the e2e harness rewrites for podman (tests/e2e/test_k8s_pods.py) ------------------


@pytest.mark.parametrize("form", ["classic", "native"])
def test_local_rewrites_change_only_what_they_name(form: str) -> None:
    """git-sync: only --repo, one read-only hostPath mount; pg-ambassador: only hostAliases."""
    (doc,) = load(K8S / f"git-sync/{form}.yaml").docs
    local = Local(git_repo="/var/tmp/repo.git", hosts={"postgres.example": "10.0.0.2"})
    plain, rewritten = for_podman(doc), for_this_machine(doc, local)
    spec = rewritten["spec"]
    assert spec.pop("hostAliases") == [{"ip": "10.0.0.2", "hostnames": ["postgres.example"]}]
    assert spec["volumes"].pop() == {
        "name": "e2e-repo",
        "hostPath": {"path": "/var/tmp/repo.git", "type": "Directory"},
    }
    (sync,) = [c for c in spec["containers"] if c["name"] == "git-sync"]
    assert sync["volumeMounts"].pop() == {
        "name": "e2e-repo",
        "mountPath": GIT_REPO_MOUNT,
        "readOnly": True,
    }
    assert f"--repo=file://{GIT_REPO_MOUNT}" in sync["args"]
    (original,) = [c for c in plain["spec"]["containers"] if c["name"] == "git-sync"]
    others = [[a for a in c["args"] if not a.startswith("--repo=")] for c in (sync, original)]
    assert others[0] == others[1]
    sync["args"] = original["args"]
    assert rewritten == plain


@pytest.mark.parametrize("form", ["classic", "native"])
def test_secret_volumes_become_configmaps_of_the_same_files(form: str) -> None:
    (doc,) = load(K8S / f"pg-ambassador/{form}.yaml").docs
    volumes = {v["name"]: v for v in for_podman(doc)["spec"]["volumes"]}
    assert not [v for v in volumes.values() if "secret" in v]
    assert volumes["auth"]["configMap"] == {"name": "pg-auth", "defaultMode": 0o440}
    (secret,) = load(K8S / "pg-ambassador/secret.yaml").docs
    configmap = secret_as_configmap(secret)
    assert configmap["kind"] == "ConfigMap"
    assert configmap["metadata"]["name"] == "pg-auth"
    assert configmap["data"] == secret["stringData"]
    # `data` is base64 in a Secret, plain in a ConfigMap.
    encoded = {**secret, "stringData": {}, "data": {"password": "c2VjcmV0IQ=="}}
    assert secret_as_configmap(encoded)["data"] == {"password": "secret!"}


def test_drop_in_env_names_are_validated_as_the_image_reads_them() -> None:
    """The pod's DATABASES_*/PGBOUNCER_* env are settings of the image's `podkit`, so a bad
    value must fail the static check as it would fail the container's start."""
    (doc,) = copy.deepcopy(load(K8S / "pg-ambassador/classic.yaml").docs)
    spec = doc["spec"]
    (container,) = [c for c in spec["containers"] if podkit_helper(c)]
    everything = [doc for file in FILES for doc in load(file).docs]
    podkit_settings(container, spec, everything)
    (port,) = [e for e in container["env"] if e["name"] == "DATABASES_PORT"]
    port["value"] = "not-a-port"
    with pytest.raises(ConfigError, match="DATABASES_PORT"):
        podkit_settings(container, spec, everything)
