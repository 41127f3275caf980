"""`podkit stats-exporter`: native stats pages (nginx, Apache, HAProxy, Redis...) as metrics."""

from podkit.helper import Helper

helper = Helper(
    name="stats-exporter",
    summary="serves nginx/Apache/HAProxy/Redis stats as Prometheus metrics on :9113",
    settings="podkit.adapters.prometheus.settings:ExporterSettings",
    run="podkit.adapters.prometheus.main:run",
    admin_port=9706,
)
