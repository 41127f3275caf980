"""`podkit demo` for stats-exporter: nginx serves a few requests, the metrics move."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from podkit_dev.demo import Narrator


def _nginx_lines(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if line.startswith("nginx_"))


def _value(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise ValueError(f"{name} not in the metrics")


def demo(narrator: Narrator) -> None:
    from podkit_dev.servers import HOST, HelperProcess, NginxServer, free_port, http_get

    nginx = NginxServer().start()
    try:
        port = free_port()
        uri = f"{nginx.url}/stub_status"
        narrator.step(f"nginx serves a page and stub_status on {nginx.url}")
        narrator.step(
            f"start `podkit stats-exporter --nginx-scrape-uri {uri} "
            f"--web-listen-address {HOST}:{port}`"
        )
        process = HelperProcess(
            "stats-exporter", "--nginx-scrape-uri", uri, "--web-listen-address", f"{HOST}:{port}"
        )
        with narrator.helper(process):
            metrics_url = f"http://{HOST}:{port}/metrics"
            before = http_get(metrics_url)[1].decode()
            narrator.show(f"GET {metrics_url} (before)", _nginx_lines(before))
            narrator.step("10 requests to nginx's page")
            for _ in range(10):
                http_get(f"{nginx.url}/")
            after = http_get(metrics_url)[1].decode()
            narrator.show(f"GET {metrics_url} (after)", _nginx_lines(after))
            grown = _value(after, "nginx_http_requests_total") - _value(
                before, "nginx_http_requests_total"
            )
            narrator.result(
                grown == 11 and _value(after, "nginx_up") == 1,
                f"nginx_http_requests_total grew by {grown:g} "
                "(10 page requests + the scrape's own stub_status request)",
            )
    finally:
        nginx.cleanup()
