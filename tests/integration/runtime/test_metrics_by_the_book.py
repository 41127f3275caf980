"""What Prometheus expects of an exporter (issue 16): OpenMetrics when asked, gzip when
accepted, and X-Prometheus-Scrape-Timeout-Seconds bounding the exporter's fetch.

Against a real nginx and a real `podkit stats-exporter`; the admin server of every helper
gets the same negotiation. A real Prometheus scraping both (it asks for OpenMetrics and
gzip, and sends its timeout) is tests/integration/runtime/test_dashboards_prometheus.py.
"""

from __future__ import annotations

import gzip
import socket
import urllib.request
from collections.abc import Callable, Iterator

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse
from prometheus_client.parser import text_string_to_metric_families as text_parse

from podkit_dev.servers import HOST, HelperProcess, NginxServer, wait_for

PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


def get(url: str, **headers: str) -> tuple[dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        return {k.lower(): v for k, v in response.headers.items()}, response.read()


def sample_names(families) -> set[str]:  # type: ignore[no-untyped-def]
    return {s.name for f in families for s in f.samples}


def raw_names(body: bytes) -> set[str]:
    """Sample names exactly as written (client_python's parsers add _total to counters)."""
    lines = body.decode().splitlines()
    return {line.split("{")[0].split(" ")[0] for line in lines if line and line[0] != "#"}


@pytest.fixture
def exporter(
    run_helper: Callable[..., HelperProcess], free_port: Callable[[], int]
) -> Iterator[Callable[..., str]]:
    def start(*flags: str) -> str:
        port = free_port()
        run_helper("stats-exporter", "--web-listen-address", f"{HOST}:{port}", *flags)
        return f"http://{HOST}:{port}/metrics"

    yield start


@pytest.mark.parametrize("naming", ["strict", "compat"])
def test_openmetrics_when_asked_with_the_same_series(
    exporter: Callable[..., str], nginx_server: NginxServer, naming: str
) -> None:
    url = exporter("--nginx-scrape-uri", f"{nginx_server.url}/stub_status", "--naming", naming)
    headers, text = get(url)
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    headers, om = get(url, Accept=PROMETHEUS_ACCEPT)
    assert headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
    assert om.endswith(b"# EOF\n")
    families = list(om_parse(om.decode()))  # the reference parser is strict: it must pass
    # The series are named the same in both formats (compat counters stay without _total).
    assert raw_names(om) == raw_names(text)
    assert "nginx_up" in sample_names(families)
    assert ("nginx_connections_accepted_total" in raw_names(om)) == (naming == "strict")


def test_gzip_when_accepted(exporter: Callable[..., str], nginx_server: NginxServer) -> None:
    url = exporter("--nginx-scrape-uri", f"{nginx_server.url}/stub_status")
    headers, body = get(url, **{"Accept-Encoding": "gzip"})
    assert headers["content-encoding"] == "gzip"
    assert int(headers["content-length"]) == len(body)
    assert "nginx_up" in sample_names(text_parse(gzip.decompress(body).decode()))
    headers, _ = get(url, **{"Accept-Encoding": "gzip;q=0, identity"})
    assert "content-encoding" not in headers


def test_admin_metrics_negotiate_too(run_helper: Callable[..., HelperProcess]) -> None:
    helper = run_helper("echo", "--listen", f"{HOST}:0")
    headers, body = get(helper.admin + "/metrics", Accept=PROMETHEUS_ACCEPT)
    assert headers["content-type"].startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")
    assert "podkit_ready" in sample_names(om_parse(body.decode()))
    headers, body = get(helper.admin + "/metrics", **{"Accept-Encoding": "gzip"})
    assert headers["content-encoding"] == "gzip"
    assert b"podkit_ready" in gzip.decompress(body)


def test_media_types_and_codings_match_in_any_case(
    exporter: Callable[..., str],
    nginx_server: NginxServer,
    run_helper: Callable[..., HelperProcess],
) -> None:
    # Header values reach the handlers as sent; the keywords in them are case-insensitive.
    url = exporter("--nginx-scrape-uri", f"{nginx_server.url}/stub_status")
    admin = run_helper("echo", "--listen", f"{HOST}:0").admin + "/metrics"
    for target in (url, admin):
        headers, body = get(target, Accept="Application/OpenMetrics-Text; Version=1.0.0")
        assert headers["content-type"].startswith("application/openmetrics-text"), target
        assert body.endswith(b"# EOF\n")
        headers, _ = get(target, **{"Accept-Encoding": "GZIP"})
        assert headers["content-encoding"] == "gzip", target


def test_scrape_timeout_header_bounds_the_fetch(
    run_helper: Callable[..., HelperProcess], free_port: Callable[[], int]
) -> None:
    # A target that accepts connections (the kernel's backlog) and never answers.
    with socket.socket() as silent:
        silent.bind((HOST, 0))
        silent.listen(8)
        port = free_port()
        target = f"http://{HOST}:{silent.getsockname()[1]}/stub_status"
        helper = run_helper(
            "stats-exporter", "--web-listen-address", f"{HOST}:{port}",
            "--nginx-scrape-uri", target, "--timeout", "60s",
        )  # fmt: skip
        url = f"http://{HOST}:{port}/metrics"
        _, body = get(url, **{"X-Prometheus-Scrape-Timeout-Seconds": "2"})
        # Answered with nginx_up 0 instead of waiting for --timeout (60 s); the log names
        # the bound that applied: Prometheus's 2 s minus the 0.5 s kept for the answer.
        values = {s.name: s.value for f in text_parse(body.decode()) for s in f.samples}
        assert values["nginx_up"] == 0
        down = wait_for(
            lambda: [e for e in helper.log_events() if e.get("event") == "target_down"],
            what="target_down logged",
        )
        assert "scraper's timeout (1.5s)" in down[0]["error"]  # type: ignore[index]
