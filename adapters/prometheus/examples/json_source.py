"""Example plugin: the numeric top-level fields of a JSON document as gauges.

Use it from the exporter's YAML config, without installing anything:

    sources:
      - type: /etc/podkit/json_source.py:JsonSource   # or a module:Class on the path
        name: myapp
        targets: ["http://127.0.0.1:8080/stats.json"]
        fields: [sessions, queue_depth]                  # optional: only these

A package would instead declare it in its pyproject, and then `type: json` works:

    [project.entry-points."podkit.sources"]
    json = "mypackage.json_source:JsonSource"
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from podkit.adapters.prometheus.api import Source, SourceContext, SourceError, SourceSpec
from podkit.adapters.prometheus.model import Family


class JsonSource(Source):
    default_name = "json"
    allowed_options = frozenset({"fields"})

    def __init__(self, spec: SourceSpec, ctx: SourceContext) -> None:
        super().__init__(spec, ctx)  # checks name, targets, labels and unknown options
        fields = spec.options.get("fields")
        if fields is not None and not isinstance(fields, list):
            raise ValueError("fields: expected a list of JSON keys")
        self.fields = set(fields) if fields else None

    async def fetch(self, target: str) -> bytes:
        # The shared client: keep-alive, unix sockets, --max-body-size and clear errors.
        return await self.ctx.http.get(target)

    def collect(self, target: str, data: bytes) -> Iterable[Family]:
        try:
            document: Any = json.loads(data)
        except ValueError as exc:
            raise SourceError(f"not JSON: {exc}") from None
        if not isinstance(document, dict):
            raise SourceError("expected a JSON object at the top level")
        families = []
        for key, value in sorted(document.items()):
            if self.fields is not None and key not in self.fields:
                continue
            if isinstance(value, int | float) and not isinstance(value, bool):
                name = re.sub(r"[^a-zA-Z0-9_]", "_", key)
                families.append(
                    Family(f"{self.name}_{name}", "gauge", f"JSON field {key}").add(value)
                )
        return families
