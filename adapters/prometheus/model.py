"""Metric families and their Prometheus text exposition, independent of client_python.

client_python appends `_total` to every counter when it renders text, so it cannot
reproduce nginx-prometheus-exporter's counter names (`nginx_connections_accepted`,
no suffix). The exporter therefore renders its scrape-time families itself; the
format is the plain text format 0.0.4, without timestamps (exporter guidelines).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

MetricType = Literal["gauge", "counter", "untyped"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"


@dataclass
class Family:
    """One metric family: name, type, help and its samples (labels, value)."""

    name: str
    type: MetricType
    help: str
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)

    def add(self, value: float, labels: Mapping[str, str] | None = None) -> Family:
        self.samples.append((dict(labels or {}), float(value)))
        return self


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _format_value(value: float) -> str:
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def _labels_text(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{key}="{_escape_label(value)}"' for key, value in sorted(labels.items()))
    return "{" + inner + "}"


def merge(families: Iterable[Family]) -> list[Family]:
    """Join families of the same name (one per target) into one, sorted by name."""
    merged: dict[str, Family] = {}
    for family in families:
        existing = merged.get(family.name)
        if existing is None:
            merged[family.name] = Family(
                family.name, family.type, family.help, list(family.samples)
            )
        else:
            existing.samples.extend(family.samples)
    return [merged[name] for name in sorted(merged)]


def render(families: Iterable[Family]) -> bytes:
    """Text exposition of families (already merged: each name once)."""
    out: list[str] = []
    for family in families:
        out.append(f"# HELP {family.name} {_escape_help(family.help)}\n")
        out.append(f"# TYPE {family.name} {family.type}\n")
        for labels, value in family.samples:
            out.append(f"{family.name}{_labels_text(labels)} {_format_value(value)}\n")
    return "".join(out).encode()


def render_openmetrics(families: Iterable[Family]) -> bytes:
    """OpenMetrics 1.0 exposition of the same families, for a scraper that asks for it.

    A counter named `X_total` is family `X` with sample `X_total`, as OpenMetrics wants. A
    counter without the suffix (`--naming compat`: nginx-prometheus-exporter's names) is
    exposed as `unknown`, so its series keep exactly the same name in either format.
    """
    out: list[str] = []
    for family in families:
        name, kind = family.name, "unknown"
        if family.type == "gauge":
            kind = "gauge"
        elif family.type == "counter" and name.endswith("_total"):
            name, kind = name.removesuffix("_total"), "counter"
        help_text = _escape_help(family.help).replace('"', '\\"')
        out.append(f"# TYPE {name} {kind}\n# HELP {name} {help_text}\n")
        for labels, value in family.samples:
            out.append(f"{family.name}{_labels_text(labels)} {_format_value(value)}\n")
    out.append("# EOF\n")
    return "".join(out).encode()
