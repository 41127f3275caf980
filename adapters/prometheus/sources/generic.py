"""A source for custom text formats, configured in YAML: regular expressions or key/value.

    sources:
      - type: generic
        name: myapp                    # metrics are myapp_<name>, plus myapp_up
        targets: ["http://127.0.0.1:8080/status"]
        format: keyvalue               # or: regex
        separator: ":"                 # keyvalue only (default ":")
        metrics:
          - {key: "Active", name: active_sessions, type: gauge, help: "Open sessions"}
          - {regex: 'served (?P<value>\\d+) requests for (?P<vhost>\\S+)',
             name: requests_total, type: counter}

With `regex`, every match gives a sample: the group `value` is the number, every other
named group a label. A target whose answer matches none of the metrics is `up 0`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from podkit.adapters.prometheus.api import SourceError, SourceSpec, check_metric_name
from podkit.adapters.prometheus.model import Family
from podkit.adapters.prometheus.sources._text import HttpSource, decode, number


class MetricRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    type: Literal["gauge", "counter"] = "gauge"
    help: str = ""
    key: str | None = None
    regex: str | None = None
    scale: float = 1.0
    labels: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> MetricRule:
        check_metric_name(self.name)
        if self.type == "counter" and not self.name.endswith("_total"):
            raise ValueError(f"counter {self.name!r} must end in _total (promtool)")
        if self.regex is not None:
            try:
                pattern = re.compile(self.regex, re.MULTILINE)
            except re.error as exc:
                raise ValueError(f"metric {self.name!r}: bad regex: {exc}") from None
            if "value" not in pattern.groupindex:
                raise ValueError(f"metric {self.name!r}: the regex needs a (?P<value>...) group")
        return self


class GenericOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["regex", "keyvalue"]
    separator: str = ":"
    metrics: list[MetricRule] = Field(min_length=1)


class GenericSource(HttpSource):
    allowed_options = frozenset(GenericOptions.model_fields)

    def __init__(self, spec: SourceSpec, ctx: Any) -> None:
        if not spec.name:
            raise ValueError("a generic source needs a name: (the metric prefix)")
        super().__init__(spec, ctx)
        try:
            self.options = GenericOptions.model_validate(spec.options)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ValueError(f"{where}: {first['msg'].removeprefix('Value error, ')}") from None
        for rule in self.options.metrics:
            needed = "regex" if self.options.format == "regex" else "key"
            if getattr(rule, needed) is None:
                raise ValueError(f"metric {rule.name!r} needs {needed}: (format is {needed})")
        self.patterns = {
            rule.name: re.compile(rule.regex, re.MULTILINE)
            for rule in self.options.metrics
            if rule.regex
        }

    def collect(self, target: str, data: bytes) -> Iterable[Family]:
        text = decode(data, f"{self.name} stats")
        families = self._regex(text) if self.options.format == "regex" else self._keyvalue(text)
        if not any(f.samples for f in families):
            raise SourceError("none of the configured metrics was found in the answer")
        return families

    def _family(self, rule: MetricRule) -> Family:
        return Family(f"{self.name}_{rule.name}", rule.type, rule.help or rule.name)

    def _regex(self, text: str) -> list[Family]:
        out = []
        for rule in self.options.metrics:
            family = self._family(rule)
            for match in self.patterns[rule.name].finditer(text):
                groups = {k: v for k, v in match.groupdict().items() if k != "value"}
                value = number(match.group("value"), rule.name) * rule.scale
                family.add(value, {**rule.labels, **{k: v or "" for k, v in groups.items()}})
            out.append(family)
        return out

    def _keyvalue(self, text: str) -> list[Family]:
        values: dict[str, str] = {}
        for line in text.splitlines():
            key, sep, value = line.partition(self.options.separator)
            if sep:
                values[key.strip()] = value.strip()
        out = []
        for rule in self.options.metrics:
            family = self._family(rule)
            if rule.key in values:
                family.add(number(values[rule.key], rule.key or "") * rule.scale, rule.labels)
            out.append(family)
        return out
