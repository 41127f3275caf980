"""The few objects a dashboard description is made of, and their Grafana JSON.

A description names panels and PromQL queries; everything Grafana-specific (grid
positions, datasource references, template variables, field config) is decided here, once.
Queries say `$sel` where the pod selector goes: it becomes
`namespace=~"$namespace", pod=~"$pod"` (plus the extra matchers given).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

SELECTOR = 'namespace=~"$namespace", pod=~"$pod"'
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
GRID_WIDTH = 24
# Every metric family a helper can export starts with one of these (runtime, follower,
# helpers, and the stats-exporter's sources); a query's metric names are found by them.
METRIC_PREFIXES = (
    "podkit_",
    "process_",
    "python_",
    "log_shipper_",
    "log_adapter_",
    "redis_ambassador_",
    "stats_exporter_",
    "nginx_",
    "git_sync_",
    "git_fetch_",
    "pg_ambassador_",
)
_METRIC = re.compile(r"\b(?:" + "|".join(METRIC_PREFIXES) + r")[a-zA-Z0-9_:]*")
_LABELS = re.compile(r"\{[^}]*\}")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    title: str
    queries: tuple[Query, ...]
    description: str = ""
    unit: str = "short"
    kind: str = "timeseries"  # timeseries | stat | table
    width: int = 12
    height: int = 8
    stack: bool = False
    main: bool = False
    """Drawn in the README picture (bench/render_dashboards.py)."""


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


@dataclass
class Dashboard:
    uid: str
    title: str
    description: str
    helper: str | None
    """The `podkit ROLE` whose pods the `pod` variable lists; None: every podkit pod."""
    rows: tuple[Row, ...]
    tags: tuple[str, ...] = ()
    file: str = field(default="")

    def __post_init__(self) -> None:
        if not self.file:
            self.file = f"{self.uid}.json"

    @property
    def panels(self) -> list[Panel]:
        return [p for row in self.rows for p in row.panels]


def q(expr: str, legend: str = "") -> Query:
    return Query(expr, legend)


def expand(expr: str, extra: str = "") -> str:
    """A query as Grafana gets it: `$sel` replaced by the template-variable selector."""
    return expr.replace("$sel", SELECTOR + (f", {extra}" if extra else ""))


def concrete(expr: str, rate_interval: str = "1m", pods: str = ".*") -> str:
    """A query as a plain Prometheus takes it: the template variables filled in."""
    return (
        expand(expr)
        .replace("$__rate_interval", rate_interval)
        .replace("$__interval", "15s")
        .replace("$__range", "1h")
        .replace('"$namespace"', '".*"')
        .replace('"$pod"', f'"{pods}"')
    )


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (label matchers and groupings skipped)."""
    bare = _GROUPING.sub(" ", _LABELS.sub(" ", expr))
    return set(_METRIC.findall(bare))


# --- Grafana JSON -----------------------------------------------------------------------------


def _variables(helper: str | None) -> list[dict[str, Any]]:
    helper_matcher = f'helper="{helper}", ' if helper else ""

    def query_var(name: str, label: str, query: str) -> dict[str, Any]:
        return {
            "name": name,
            "label": label,
            "type": "query",
            "datasource": DATASOURCE,
            "query": {"query": query, "refId": f"{name}-query"},
            "definition": query,
            "refresh": 2,
            "includeAll": True,
            "multi": True,
            "allValue": ".*",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "sort": 1,
            "regex": "",
            "hide": 0,
        }

    return [
        {
            "name": "datasource",
            "label": "Data source",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "hide": 0,
            "refresh": 1,
            "regex": "",
        },
        query_var(
            "namespace",
            "Namespace",
            f"label_values(podkit_build_info{{{helper_matcher.rstrip(', ')}}}, namespace)",
        ),
        query_var(
            "pod",
            "Pod",
            f'label_values(podkit_build_info{{{helper_matcher}namespace=~"$namespace"}}, pod)',
        ),
    ]


def _panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    targets = [
        {
            "datasource": DATASOURCE,
            "expr": expand(query.expr),
            "legendFormat": query.legend or "__auto",
            "refId": chr(ord("A") + i),
            "range": panel.kind == "timeseries",
            "instant": panel.kind != "timeseries",
            **({"format": "table"} if panel.kind == "table" else {}),
        }
        for i, query in enumerate(panel.queries)
    ]
    defaults: dict[str, Any] = {"unit": panel.unit}
    if panel.kind == "timeseries":
        defaults["custom"] = {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 10,
            "showPoints": "never",
            "stacking": {"mode": "normal" if panel.stack else "none", "group": "A"},
        }
    options: dict[str, Any] = {}
    if panel.kind == "timeseries":
        options = {
            "legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull"]},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    elif panel.kind == "stat":
        options = {"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "background"}
    elif panel.kind == "table":
        options = {"showHeader": True}
    return {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options,
        **({"transformations": [{"id": "merge", "options": {}}]} if panel.kind == "table" else {}),
    }


def to_grafana(dashboard: Dashboard) -> dict[str, Any]:
    """The dashboard as Grafana 10+ imports it (schemaVersion 39)."""
    panels: list[dict[str, Any]] = []
    panel_id = 1
    y = 0
    for row in dashboard.rows:
        panels.append(
            {
                "id": panel_id,
                "type": "row",
                "title": row.title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": GRID_WIDTH, "x": 0, "y": y},
                "panels": [],
            }
        )
        panel_id += 1
        y += 1
        x = 0
        line_height = 0
        for panel in row.panels:
            if x + panel.width > GRID_WIDTH:
                x, y = 0, y + line_height
                line_height = 0
            panels.append(_panel_json(panel, panel_id, x, y))
            panel_id += 1
            x += panel.width
            line_height = max(line_height, panel.height)
        y += line_height
    return {
        "__inputs": [],
        "__requires": [
            {"type": "grafana", "id": "grafana", "name": "Grafana", "version": "10.0.0"},
            {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
        ],
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.description,
        "tags": ["podkit", *dashboard.tags],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": _variables(dashboard.helper)},
        "annotations": {"list": []},
        "links": [
            {
                "title": "podkit dashboards",
                "type": "dashboards",
                "tags": ["podkit"],
                "asDropdown": True,
            }
        ],
        "panels": panels,
    }
