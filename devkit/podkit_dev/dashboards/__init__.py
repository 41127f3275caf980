"""Grafana dashboards and Prometheus alert rules, described in Python, generated as files.

One module per helper holds its `dashboard` (model.py's objects); alerts.py the rules.
`python -m podkit_dev.dashboards` writes dashboards/*.json, dashboards/alerts.yaml and
k8s/monitoring/prometheusrule.yaml; a test fails when the committed files are stale.

Adding a helper's dashboard (pg-ambassador, git-sync): a module here with its
`dashboard`, built on the metric names its metrics module declares; its metric prefix in
model.METRIC_PREFIXES; its prefixes in tests/unit/test_dashboards.py (`own`); the helper
started in stack.py (with the real server it needs) so the Prometheus test evaluates its
panels; its alerts in alerts.py, with a case in dashboards/alerts.test.yaml and a runbook
section in dashboards/README.md.
"""

from __future__ import annotations

from podkit_dev.dashboards import (
    git_sync,
    log_adapter,
    log_shipper,
    overview,
    pg_ambassador,
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
    pg_ambassador.dashboard,
    git_sync.dashboard,
)
