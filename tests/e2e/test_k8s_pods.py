"""The example pods of k8s/ run under `podman kube play`, each pattern in both forms
(native sidecars turned classic for podman 4.3), with the commands their READMEs show.

nginx, redis and busybox are stand-ins built from Debian packages under the names the
manifests use (tests/e2e/base-image.sh standins). Pods run with `--network none`: every
request stays on the pod's own loopback.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.e2e.harness import Podman
from tests.e2e.pods import Pod, check_commands, played, wait_for

FORMS = ["classic", "native"]


@pytest.fixture
def need(helper_images: dict[str, str], standins: None):  # type: ignore[no-untyped-def]
    def check(*helpers: str) -> None:
        missing = [h for h in helpers if h not in helper_images]
        assert missing == [], f"no image was built for helper(s) {missing}"

    return check


@pytest.mark.parametrize("form", FORMS)
def test_shared_volume(podman: Podman, standins: None, form: str) -> None:
    with played(podman, "shared-volume", form) as pod:
        (command,) = check_commands("shared-volume", form)

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
        (logs,) = check_commands("localhost", form)
        wait_for(
            lambda: "localhost:8080 answered: hello over localhost" in pod.sh(logs).stdout,
            60,
            "the poller to reach nginx over localhost",
        )


def json_lines(text: str) -> list[dict]:
    """Every stdout line must be one JSON object; a broken line fails the test."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def stop_pod(podman: Podman, pod: Pod, helper: str) -> None:
    """`podman pod stop` sends SIGTERM: the helper drains and exits 0."""
    podman.run("pod", "stop", "--time", "30", pod.name, timeout=90)
    assert pod.exit_code(helper) == 0, pod.logs(helper)[-3000:]


@pytest.mark.parametrize("form", FORMS)
def test_log_shipper(podman: Podman, need, form: str) -> None:  # type: ignore[no-untyped-def]
    need("log-shipper")
    with played(podman, "log-shipper", form) as pod:
        load, logs = check_commands("log-shipper", form)
        wait_for(lambda: '"ready"' in pod.logs("log-shipper"), 60, "the shipper to be ready")
        pod.sh(load)  # 20 requests: /hello-0 ... /hello-19

        def shipped() -> dict[int, int]:
            counts = dict.fromkeys(range(20), 0)
            for record in json_lines(pod.sh(logs).stdout):
                text = json.dumps(record)
                for i in counts:
                    if f'GET /hello-{i} HTTP/1.1\\" 200' in text:
                        counts[i] += 1
            return counts

        counts = wait_for(lambda: (c := shipped()) and all(c.values()) and c, 60, "20 lines")
        # Every access-log line arrived once, whole (request line and status in one record).
        assert set(counts.values()) == {1}, counts
        stop_pod(podman, pod, "log-shipper")


@pytest.mark.parametrize("form", FORMS)
def test_log_adapter(podman: Podman, need, form: str) -> None:  # type: ignore[no-untyped-def]
    need("log-adapter")
    with played(podman, "log-adapter", form) as pod:
        (logs,) = check_commands("log-adapter", form)

        def records() -> list[dict]:
            return json_lines(pod.sh(logs).stdout)

        def parsed() -> list[dict]:
            found = [r for r in records() if isinstance(r.get("took_ms"), int)]
            warnings = [r for r in records() if "cache hit ratio" in str(r.get("message"))]
            return found if len(found) >= 6 and warnings else []

        found = wait_for(parsed, 60, "JSON records with the custom parser's fields")
        for record in found:
            # Parsed by legacy.py from the ConfigMap: key=value pairs, typed by `types:`.
            assert str(record["user"]).startswith("user"), record
            assert "request" in record["message"], record
            assert record.get("timestamp"), record
        stop_pod(podman, pod, "log-adapter")


def nginx_requests(metrics: str) -> float:
    for line in metrics.splitlines():
        if line.startswith("nginx_http_requests_total"):
            return float(line.split()[-1])
    raise AssertionError(f"no nginx_http_requests_total in:\n{metrics[:2000]}")


@pytest.mark.parametrize("form", FORMS)
def test_stats_exporter(podman: Podman, need, form: str) -> None:  # type: ignore[no-untyped-def]
    need("stats-exporter")
    with played(podman, "stats-exporter", form) as pod:
        load, scrape = check_commands("stats-exporter", form)

        def metrics() -> str:
            result = pod.sh(scrape, check=False)
            return result.stdout if result.returncode == 0 and "nginx_up 1" in result.stdout else ""

        before = nginx_requests(wait_for(metrics, 60, "nginx series on :9113/metrics"))
        pod.sh(load)  # 20 requests to nginx
        after = nginx_requests(metrics())
        # The series move with the traffic (+20, and +1 for each stub_status read).
        assert after >= before + 20, (before, after)
        stop_pod(podman, pod, "stats-exporter")
