"""`podkit stats-exporter`: the metrics listener on :9113 and the sources behind it.

The listener is separate from the runtime's admin server (its own port, 9706): Prometheus
scrapes :9113 exactly as it scraped nginx-prometheus-exporter (same flags, same landing
page), while the kubelet's probes and `POST /drain` stay on the admin port, whose
/metrics shows the exporter's own health (podkit_*, process_*, stats_exporter_*).
"""

from __future__ import annotations

import html
import math
from typing import Any

from podkit.adapters.prometheus.api import Source, SourceContext
from podkit.adapters.prometheus.fetch import HttpClient
from podkit.adapters.prometheus.loader import build_sources
from podkit.adapters.prometheus.model import (
    CONTENT_TYPE,
    OPENMETRICS_CONTENT_TYPE,
    render,
    render_openmetrics,
)
from podkit.adapters.prometheus.scrape import Scraper
from podkit.adapters.prometheus.settings import ExporterSettings, parse_const_labels
from podkit.config import split_host_port
from podkit.httpserver import HttpServer, Request, Response
from podkit.runtime import Runtime, listening

LANDING = """<!DOCTYPE html>
<html><head><title>podkit stats-exporter</title></head>
<body><h1>podkit stats-exporter</h1>
<p><a href="{path}">Metrics</a></p>
<p>Sources: {sources}</p>
</body></html>
"""


# Time kept back from Prometheus's scrape timeout to render and send the answer
# (blackbox_exporter keeps 0.5 s the same way), but never more than half of it.
SCRAPE_TIMEOUT_OFFSET = 0.5


def scrape_timeout(request: Request) -> float | None:
    """The fetch bound Prometheus asks for (X-Prometheus-Scrape-Timeout-Seconds), if any."""
    raw = request.headers.get(b"x-prometheus-scrape-timeout-seconds")
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        return None
    if not math.isfinite(seconds) or seconds <= 0:
        return None
    return max(seconds - SCRAPE_TIMEOUT_OFFSET, seconds / 2)


def wants_openmetrics(accept: bytes) -> bool:
    """Accept names OpenMetrics 1.0.0 (or no version) with a q above 0 (any case)."""
    for item in accept.lower().split(b","):
        media, *params = (p.strip() for p in item.split(b";"))
        if media != b"application/openmetrics-text":
            continue
        options = dict(p.partition(b"=")[::2] for p in params)
        if options.get(b"version", b"1.0.0") == b"1.0.0" and options.get(b"q", b"1") not in (
            b"0", b"0.0", b"0.00", b"0.000"
        ):  # fmt: skip
            return True
    return False


class MetricsListener:
    """`/` (landing page) and the telemetry path (a scrape) on --web-listen-address."""

    def __init__(
        self, settings: ExporterSettings, scraper: Scraper, sources: list[Source], log: Any
    ) -> None:
        self.settings = settings
        self.scraper = scraper
        self.log = log
        names = ", ".join(html.escape(f"{s.name} ({len(s.targets)})") for s in sources)
        self.landing = LANDING.format(
            path=html.escape(settings.web_telemetry_path), sources=names
        ).encode()
        self.listener = HttpServer(
            {"/": {"GET": self.index}, settings.web_telemetry_path: {"GET": self.metrics}},
            on_error=self._error,
        )

    @property
    def port(self) -> int:
        return self.listener.port

    async def metrics(self, request: Request) -> Response:
        families = await self.scraper.scrape_families(scrape_timeout(request))
        if wants_openmetrics(request.headers.get(b"accept", b"")):
            return Response(200, render_openmetrics(families), OPENMETRICS_CONTENT_TYPE.encode())
        return Response(200, render(families), CONTENT_TYPE.encode())

    async def index(self, request: Request) -> Response:
        return Response(200, self.landing, b"text/html; charset=utf-8")

    def _error(self, exc: Exception) -> None:
        self.log.error("scrape_failed", exc_info=(type(exc), exc, exc.__traceback__))

    async def start(self) -> None:
        host, port = split_host_port(self.settings.web_listen_address)
        await self.listener.start(host, port)

    async def stop(self) -> None:
        await self.listener.stop()


async def run(settings: ExporterSettings, runtime: Runtime) -> None:
    http = HttpClient(
        settings.max_body_size, verify=settings.ssl_verify, ca_file=settings.ssl_ca_cert
    )
    ctx = SourceContext(
        naming=settings.naming,
        timeout=settings.timeout,
        max_body_size=settings.max_body_size,
        http=http,
    )
    sources = build_sources(settings.source_specs(), ctx)
    scraper = Scraper(
        sources,
        timeout=settings.timeout,
        const_labels=parse_const_labels(settings.const_labels),
        log=runtime.log,
        registry=runtime.registry,
    )
    listener = MetricsListener(settings, scraper, sources, runtime.log)
    if runtime.admin is not None:  # key figures for `podkit ctl status` (/status)
        runtime.admin.add_status(scraper.figures)
    with listening(settings, "web_listen_address"):
        await listener.start()
    runtime.log.info(
        "listening",
        addr=settings.web_listen_address,
        port=listener.port,
        path=settings.web_telemetry_path,
        sources=[f"{s.name}:{len(s.targets)}" for s in sources],
        naming=settings.naming,
    )
    runtime.set_ready(True)
    try:
        await runtime.wait_drain()
    finally:
        await listener.stop()
        for source in sources:
            await source.close()
        await http.close()
