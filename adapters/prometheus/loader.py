"""Turning source specs (flags or YAML) into `Source` objects, with one-line errors."""

from __future__ import annotations

import inspect
from collections.abc import Sequence

from podkit import plugins
from podkit.adapters.prometheus.api import Source, SourceContext, SourceSpec
from podkit.adapters.prometheus.fetch import HttpClient


def check_context() -> SourceContext:
    """A throwaway context for validating specs: building a source does no I/O."""
    return SourceContext(naming="strict", timeout=1.0, max_body_size=1024, http=HttpClient(1024))


def build_source(spec: SourceSpec, ctx: SourceContext, where: str = "") -> Source:
    """Load the plugin named by spec.type and build it; ValueError names what is wrong."""
    try:
        cls = plugins.load("source", spec.type, default_attr="Source")
    except plugins.PluginError as exc:
        raise ValueError(f"{where}{exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, Source)):
        raise ValueError(
            f"{where}{spec.type!r} is not a subclass of podkit.adapters.prometheus.api.Source"
        )
    if inspect.isabstract(cls):
        missing = ", ".join(sorted(getattr(cls, "__abstractmethods__", ())))
        raise ValueError(f"{where}source {spec.type!r} does not implement: {missing}")
    try:
        return cls(spec, ctx)
    except ValueError as exc:
        raise ValueError(f"{where}{exc}") from None


def build_sources(specs: Sequence[SourceSpec], ctx: SourceContext) -> list[Source]:
    sources: list[Source] = []
    names: set[str] = set()
    for spec in specs:
        source = build_source(spec, ctx, f"{spec.type} source: ")
        if source.name in names:
            raise ValueError(
                f"two sources are named {source.name!r}; give one another name: "
                "in the YAML sources list"
            )
        names.add(source.name)
        sources.append(source)
    return sources
