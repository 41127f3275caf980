"""Grafana dashboards and Prometheus alert rules, described in Python, generated as files.

One module per helper holds its `dashboard` (model.py's objects); alerts.py the rules.
`python -m podkit_dev.dashboards` writes dashboards/*.json, dashboards/alerts.yaml and
k8s/monitoring/prometheusrule.yaml; a test fails when the committed files are stale.
"""

from __future__ import annotations

from podkit_dev.dashboards import (
    log_adapter,
    log_shipper,
    overview,
    redis_ambassador,
    stats_exporter,
)
from podkit_dev.dashboards.model import Dashboard

DASHBOARDS: tuple[Dashboard, ...] = (
    overview.dashboard,
    log_shipper.dashboard,
    log_adapter.dashboard,
    redis_ambassador.dashboard,
    stats_exporter.dashboard,
    # pg-ambassador: pg_ambassador.dashboard, from its metrics module (lead adds it).
    # git-sync: git_sync.dashboard, from its metrics module (lead adds it).
)
