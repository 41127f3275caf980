"""`podkit stats-exporter`: the metrics listener on :9113 and the sources behind it.

The listener is separate from the runtime's admin server (its own port, 9706): Prometheus
scrapes :9113 exactly as it scraped nginx-prometheus-exporter (same flags, same landing
page), while the kubelet's probes and `POST /drain` stay on the admin port, whose
/metrics shows the exporter's own health (podkit_*, process_*, stats_exporter_*).
"""

from __future__ import annotations

import html
from typing import Any

from adapters.prometheus.api import Source, SourceContext
from adapters.prometheus.fetch import HttpClient
from adapters.prometheus.listener import Listener
from adapters.prometheus.model import CONTENT_TYPE
from adapters.prometheus.scrape import Scraper
from adapters.prometheus.settings import ExporterSettings, parse_const_labels
from podkit import plugins
from podkit.config import split_host_port
from podkit.runtime import Runtime


def build_sources(settings: ExporterSettings, ctx: SourceContext | None = None) -> list[Source]:
    """Load and validate every source; ValueError (one line) names the one that is wrong.

    Without `ctx` (settings validation) the sources get a throwaway context: building a
    source does no I/O, so this only checks the configuration.
    """
    if ctx is None:
        ctx = SourceContext(
            naming=settings.naming,
            timeout=settings.timeout,
            max_body_size=settings.max_body_size,
            http=HttpClient(settings.max_body_size),
        )
    sources: list[Source] = []
    names: set[str] = set()
    for index, spec in enumerate(settings.source_specs()):
        try:
            cls = plugins.load("source", spec.type, default_attr="Source")
        except plugins.PluginError as exc:
            raise ValueError(f"sources[{index}]: {exc}") from None
        if not (isinstance(cls, type) and issubclass(cls, Source)):
            raise ValueError(
                f"sources[{index}]: {spec.type!r} is not a subclass of "
                "adapters.prometheus.api.Source"
            )
        try:
            source = cls(spec, ctx)
        except ValueError as exc:
            raise ValueError(f"sources[{index}] ({spec.type}): {exc}") from None
        if source.name in names:
            raise ValueError(
                f"sources[{index}]: two sources are named {source.name!r}; "
                "give one another name: in the YAML sources list"
            )
        names.add(source.name)
        sources.append(source)
    return sources


LANDING = """<!DOCTYPE html>
<html><head><title>podkit stats-exporter</title></head>
<body><h1>podkit stats-exporter</h1>
<p><a href="{path}">Metrics</a></p>
<p>Sources: {sources}</p>
</body></html>
"""


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
        self.listener = Listener(
            {"/": self.index, settings.web_telemetry_path: self.metrics}, self._error
        )

    @property
    def port(self) -> int:
        return self.listener.port

    async def metrics(self) -> tuple[bytes, bytes]:
        return CONTENT_TYPE.encode(), await self.scraper.scrape()

    async def index(self) -> tuple[bytes, bytes]:
        return b"text/html; charset=utf-8", self.landing

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
    sources = build_sources(settings, ctx)
    scraper = Scraper(
        sources,
        timeout=settings.timeout,
        const_labels=parse_const_labels(settings.const_labels),
        log=runtime.log,
        registry=runtime.registry,
    )
    listener = MetricsListener(settings, scraper, sources, runtime.log)
    try:
        await listener.start()
    except OSError as exc:
        runtime.log.error(
            "listen_failed", addr=settings.web_listen_address, error=exc.strerror or str(exc)
        )
        raise SystemExit(1) from None
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
