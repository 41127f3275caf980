"""Every dashboard panel and alert expression, evaluated by a real Prometheus (issue 16).

The stack (devkit/podkit_dev/dashboards/stack.py) runs log-shipper on files, log-adapter on
files, redis-ambassador with a real Redis master, replicas and Sentinels, stats-exporter
with a real nginx; Debian's `prometheus` scrapes each of them every second with the
`namespace`/`pod` labels Kubernetes would give. After two scrapes of every target, each
query goes through the HTTP API: it must parse, and each panel must return a series.
`podkit ctl status` is checked against the same running helpers.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from podkit_dev.dashboards import DASHBOARDS
from podkit_dev.dashboards.alerts import ALERTS
from podkit_dev.dashboards.model import concrete, metric_names
from podkit_dev.dashboards.stack import Stack
from podkit_dev.servers import HOST, http_get, podkit_argv
from tests.servers import serve

SUFFIXES = ("_total", "_created", "_bucket", "_count", "_sum", "_info")


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    def start(running: Stack) -> None:
        running.start()
        running.start_traffic()
        running.wait_scrapes(2)

    yield from serve(Stack, start)


def exported(stack: Stack, role: str) -> set[str]:
    """Every metric name (with its sample suffixes) a helper's endpoints declare."""
    urls = [stack.helpers[role].admin + "/metrics"]
    if role in stack.metrics_ports:
        urls.append(f"http://{HOST}:{stack.metrics_ports[role]}/metrics")
    names: set[str] = set()
    for url in urls:
        status, body = http_get(url)
        assert status == 200
        for family in text_string_to_metric_families(body.decode()):
            names.add(family.name)
            names.update(family.name + s for s in SUFFIXES)
            names.update(sample.name for sample in family.samples)
    return names


@pytest.mark.parametrize("dashboard", DASHBOARDS, ids=[d.uid for d in DASHBOARDS])
def test_panels_name_only_metrics_their_helper_exports(stack: Stack, dashboard) -> None:  # type: ignore[no-untyped-def]
    roles = [dashboard.helper] if dashboard.helper else list(stack.helpers)
    available = set().union(*(exported(stack, role) for role in roles))
    for panel in dashboard.panels:
        for query in panel.queries:
            missing = metric_names(query.expr) - available
            assert not missing, f"{dashboard.uid} / {panel.title}: {sorted(missing)} not exported"


@pytest.mark.parametrize("dashboard", DASHBOARDS, ids=[d.uid for d in DASHBOARDS])
def test_every_panel_query_parses_and_returns_series(stack: Stack, dashboard) -> None:  # type: ignore[no-untyped-def]
    assert stack.prometheus is not None
    empty = []
    for panel in dashboard.panels:
        series = 0
        for query in panel.queries:
            answer = stack.prometheus.query(concrete(query.expr, rate_interval="1m"))
            assert answer["status"] == "success", (panel.title, query.expr, answer.get("error"))
            series += len(answer["data"]["result"])
        if series == 0:
            empty.append(panel.title)
    assert not empty, f"{dashboard.uid}: panels without a series: {empty}"


def test_every_alert_expression_evaluates(stack: Stack) -> None:
    assert stack.prometheus is not None
    available = set().union(*(exported(stack, role) for role in stack.helpers))
    for alert in ALERTS:
        answer = stack.prometheus.query(alert.expr)
        assert answer["status"] == "success", (alert.name, answer.get("error"))
        missing = metric_names(alert.expr) - available
        assert not missing, f"{alert.name}: {sorted(missing)} exported by no helper"
    # Prometheus loaded the same file and evaluates it; a healthy stack fires nothing.
    rules = stack.prometheus.api("rules")["data"]["groups"]
    loaded = {r["name"]: r for group in rules for r in group["rules"]}
    assert set(loaded) == {a.name for a in ALERTS}
    assert all(r["health"] != "err" for r in loaded.values()), loaded
    firing = [r["name"] for r in loaded.values() if r["state"] == "firing"]
    assert not firing


def ctl_status(stack: Stack, *extra: str) -> subprocess.CompletedProcess[str]:
    admins = [a for h in stack.helpers.values() for a in ("--admin", h.admin)]
    return subprocess.run(
        [*podkit_argv(), "ctl", "status", *admins, *extra],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip


def test_ctl_status_against_every_helper(stack: Stack) -> None:
    result = ctl_status(stack, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["all_ready"]
    by_helper = {r["helper"]: r for r in report["helpers"]}
    assert set(by_helper) == set(stack.helpers)
    for r in by_helper.values():
        assert r["ready"] and r["live"] and not r["draining"] and r["uptime_seconds"] > 0
        assert r["event_loop_lag_seconds"] >= 0
    shipper = by_helper["log-shipper"]["figures"]
    assert shipper["lost_bytes"] == 0 and shipper["lag_bytes"] >= 0
    ambassador = by_helper["redis-ambassador"]["figures"]
    assert stack.cluster is not None
    assert ambassador["master"] == stack.cluster.master_addr()
    assert ambassador["failovers"] == 0 and ambassador["last_failover_at"] == 0
    exporter = by_helper["stats-exporter"]["figures"]
    assert exporter["targets_up"] == exporter["targets"] == 1  # Prometheus has scraped it

    human = ctl_status(stack)
    assert human.returncode == 0
    lines = human.stdout.splitlines()
    assert lines[0].startswith("ADMIN") and len(lines) == 1 + len(stack.helpers)
    assert any("master 127.0.0.1:" in line for line in lines)
    assert any("targets up 1" in line for line in lines)


def test_ctl_status_exits_1_when_one_is_not_ready_and_3_when_one_is_gone(stack: Stack) -> None:
    # A helper whose master is gone for good: not ready, and ctl says why.
    from podkit_dev.servers import HelperProcess, free_port

    lonely = HelperProcess(
        "redis-ambassador", "--sentinels", f"{HOST}:{free_port()}", "--listen",
        f"{HOST}:{free_port()}",
    )  # fmt: skip
    try:
        lonely.start(wait="livez")
        result = subprocess.run(
            [*podkit_argv(), "ctl", "status", "--admin", stack.helpers["log-shipper"].admin,
             "--admin", lonely.admin],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert result.returncode == 1, result.stdout + result.stderr
        assert "no: no verified master" in result.stdout
    finally:
        lonely.cleanup()
    gone = subprocess.run(
        [*podkit_argv(), "ctl", "status", "--admin", lonely.admin],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert gone.returncode == 3 and "unreachable" in gone.stdout
