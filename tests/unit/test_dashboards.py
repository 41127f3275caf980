"""The generated dashboards and alert rules (dashboards/, devkit/podkit_dev/dashboards/).

What a real Prometheus says about them, with real helpers scraped, is in
tests/integration/runtime/test_dashboards_prometheus.py; here: the committed files are current,
every query parses (promtool), the rules pass `promtool check rules` and fire under
`promtool test rules`, and every rule has its runbook.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from podkit_dev.dashboards import DASHBOARDS
from podkit_dev.dashboards.__main__ import ROOT, rendered
from podkit_dev.dashboards.alerts import ALERTS
from podkit_dev.dashboards.model import concrete, metric_names, to_grafana
from podkit_dev.servers import find_binary

DASHBOARD_DIR = ROOT / "dashboards"
PANEL_IDS = [f"{d.uid}:{p.title}" for d in DASHBOARDS for p in d.panels]
PANELS = [(d, p) for d in DASHBOARDS for p in d.panels]


@pytest.fixture(scope="module")
def promtool() -> str:
    return find_binary("promtool")


def test_committed_files_are_current() -> None:
    stale = [
        str(path)
        for path, text in rendered().items()
        if not (ROOT / path).exists() or (ROOT / path).read_text() != text
    ]
    assert not stale, f"stale: {stale}; run .venv/bin/python -m podkit_dev.dashboards"


def test_no_stray_dashboard_files() -> None:
    generated = {d.file for d in DASHBOARDS}
    assert {p.name for p in DASHBOARD_DIR.glob("*.json")} == generated


@pytest.mark.parametrize(("dashboard", "panel"), PANELS, ids=PANEL_IDS)
def test_every_panel_reads_a_metric_of_its_helper(dashboard, panel) -> None:  # type: ignore[no-untyped-def]
    own = {
        None: ("podkit_", "process_"),
        "log-shipper": ("log_shipper_", "podkit_follow_"),
        "log-adapter": ("log_adapter_", "podkit_follow_"),
        "redis-ambassador": ("redis_ambassador_",),
        "stats-exporter": ("stats_exporter_", "nginx_"),
        "git-sync": ("git_sync_", "git_fetch_", "podkit_ready"),
        "pg-ambassador": ("pg_ambassador_",),
    }[dashboard.helper]
    for query in panel.queries:
        names = metric_names(query.expr)
        assert names or "__name__=~" in query.expr, query.expr
        assert all(n.startswith(own) for n in names), (names, own)
        assert "$sel" in query.expr, f"{query.expr}: not restricted to $namespace/$pod"


def test_grafana_json_shape() -> None:
    for dashboard in DASHBOARDS:
        data = to_grafana(dashboard)
        names = [v["name"] for v in data["templating"]["list"]]
        assert names == ["datasource", "namespace", "pod"]
        assert data["schemaVersion"] >= 36  # Grafana 9.0+; 39 is Grafana 10
        ids = [p["id"] for p in data["panels"]]
        assert len(ids) == len(set(ids))
        for panel in data["panels"]:
            assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
            for target in panel.get("targets", []):
                assert "$namespace" in target["expr"] and "$pod" in target["expr"]
                assert target["datasource"]["uid"] == "${datasource}"


def test_every_query_parses(promtool: str, tmp_path: Path) -> None:
    """promtool parses each query as a recording rule: a PromQL syntax error fails here."""
    rules = [
        {"record": f"podkit:check:{i}", "expr": concrete(query.expr)}
        for i, query in enumerate(q for _, p in PANELS for q in p.queries)
    ]
    path = tmp_path / "queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "queries", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_check_and_fire(promtool: str) -> None:
    check = subprocess.run(
        [promtool, "check", "rules", "alerts.yaml"],
        cwd=DASHBOARD_DIR, capture_output=True, text=True,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in check.stdout
    test = subprocess.run(
        [promtool, "test", "rules", "alerts.test.yaml"],
        cwd=DASHBOARD_DIR, capture_output=True, text=True,
    )  # fmt: skip
    assert test.returncode == 0, test.stdout + test.stderr


def test_every_alert_fires_in_the_promtool_tests() -> None:
    cases = yaml.safe_load((DASHBOARD_DIR / "alerts.test.yaml").read_text())["tests"]
    fired = {
        case["alertname"]
        for test in cases
        for case in test["alert_rule_test"]
        if case.get("exp_alerts")
    }
    assert fired == {a.name for a in ALERTS}


def test_every_alert_has_summary_description_and_runbook() -> None:
    readme = (DASHBOARD_DIR / "README.md").read_text()
    sections = set(re.findall(r"^### (\w+)$", readme, re.MULTILINE))
    for alert in ALERTS:
        assert alert.summary and alert.description
        assert alert.name in sections, f"dashboards/README.md has no '### {alert.name}'"
        assert alert.runbook == alert.name.lower()  # GitHub's anchor of that heading
        assert metric_names(alert.expr) or "__name__=~" in alert.expr


def test_metric_names_skips_labels_and_groupings() -> None:
    expr = (
        'sum by (pod, log_shipper_x) (rate(log_shipper_lines_read_total{pod=~"podkit_y"}[1m]))'
        " * on (namespace, pod) group_left (helper) podkit_build_info"
    )
    assert metric_names(expr) == {"log_shipper_lines_read_total", "podkit_build_info"}
