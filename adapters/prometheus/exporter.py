"""`podkit stats-exporter`: the metrics listener on :9113 and the sources behind it.

The listener is separate from the runtime's admin server (its own port, 9706): Prometheus
scrapes :9113 exactly as it scraped nginx-prometheus-exporter (same flags, same landing
page), while the kubelet's probes and `POST /drain` stay on the admin port, whose
/metrics shows the exporter's own health (podkit_*, process_*, stats_exporter_*).
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from aiohttp import web

from adapters.prometheus.api import Source, SourceContext
from adapters.prometheus.fetch import HttpClient
from adapters.prometheus.model import CONTENT_TYPE
from adapters.prometheus.scrape import Scraper
from adapters.prometheus.settings import ExporterSettings, parse_const_labels
from podkit import plugins
from podkit.config import split_host_port
from podkit.runtime import Runtime

if TYPE_CHECKING:
    pass


def build_sources(
    settings: ExporterSettings, ctx: SourceContext | None = None, *, check_only: bool = False
) -> list[Source]:
    """Load and validate every source; ValueError (one line) names the one that is wrong."""
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
                "give one a different name:"
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
    def __init__(self, settings: ExporterSettings, scraper: Scraper, sources: list[Source]):
        self.settings = settings
        self.scraper = scraper
        names = ", ".join(html.escape(f"{s.name} ({len(s.targets)})") for s in sources)
        self.landing = LANDING.format(path=html.escape(settings.web_telemetry_path), sources=names)
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def metrics(self, request: web.Request) -> web.Response:
        body = await self.scraper.scrape()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    async def index(self, request: web.Request) -> web.Response:
        return web.Response(text=self.landing, content_type="text/html")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/", self.index)
        app.router.add_get(self.settings.web_telemetry_path, self.metrics)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        host, port = split_host_port(self.settings.web_listen_address)
        site = web.TCPSite(self._runner, host, port, reuse_address=True, backlog=1024)
        await site.start()
        server = site._server
        if server is not None and server.sockets:
            self.port = server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


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
    listener = MetricsListener(settings, scraper, sources)
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
