"""k8s/git-sync/webhook.yaml: the webhook is what the Service exposes, the admin port is
not, and the shared secret comes from the Secret volume (the generic checks of every
manifest are tests/unit/test_k8s_manifests.py's)."""

from __future__ import annotations

from podkit.config import split_host_port
from tests.e2e.manifests import K8S, load, podkit_helper
from tests.unit.test_k8s_manifests import FILES, HELPERS, podkit_settings

ADMIN_PORT = HELPERS["git-sync"].admin_port


def test_the_service_exposes_the_webhook_and_not_the_admin_port() -> None:
    docs = {d["kind"]: d for d in load(K8S / "git-sync/webhook.yaml").docs}
    pod, service, secret = docs["Pod"], docs["Service"], docs["Secret"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    (sync,) = [c for c in pod["spec"]["containers"] if podkit_helper(c)]
    ports = {p["name"]: p["containerPort"] for p in sync.get("ports", [])}
    assert ADMIN_PORT not in ports.values()  # only the kubelet's probes reach it
    (exposed,) = service["spec"]["ports"]
    assert ports[exposed["targetPort"]] != ADMIN_PORT
    everything = [doc for file in FILES for doc in load(file).docs]
    settings = podkit_settings(sync, pod["spec"], everything)
    assert split_host_port(settings.webhook_bind)[1] == ports[exposed["targetPort"]]
    # The secret file is the Secret's key, mounted read-only from a Secret volume.
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    (mount,) = [m for m in sync["volumeMounts"] if "secret" in volumes[m["name"]]]
    assert mount.get("readOnly") is True
    assert volumes[mount["name"]]["secret"]["secretName"] == secret["metadata"]["name"]
    (path,) = [a.split("=", 1)[1] for a in sync["args"] if a.startswith("--webhook-secret-file=")]
    folder, _, key = path.rpartition("/")
    assert folder == mount["mountPath"] and key in secret["stringData"]
    assert settings.webhook_secret_file  # (read from the mounted copy by the settings check)
