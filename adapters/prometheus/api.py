"""What a stats source is: the contract built-in sources and users' plugins implement.

Modelled on client_python's custom collectors: a source *fetches* one target when the
exporter is scraped (`fetch`, I/O only) and *collects* the result into metric families
(`collect`, pure). The exporter does the rest for every source alike: concurrency across
targets, the --timeout, `<name>_up`, the `addr` and constant labels, logging a target's
state changes, and turning any failure into `up 0` instead of an error page.

A plugin is a subclass of `Source`, named in the YAML `sources:` list by its
`podkit.sources` entry-point name, `module:Class`, or `/path/to/file.py:Class`.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from podkit.adapters.prometheus.model import Family
from podkit.urls import hide_userinfo

if TYPE_CHECKING:
    from podkit.adapters.prometheus.fetch import HttpClient

Naming = Literal["compat", "strict"]

_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class SourceError(Exception):
    """A target could not be read or its answer made no sense: `up 0`, and this is logged."""


class SourceSpec(BaseModel):
    """One entry of the YAML `sources:` list. Keys other than these are the source's options."""

    model_config = ConfigDict(extra="allow", frozen=True)

    type: str = Field(description="entry-point name, module:Class, or file.py:Class")
    name: str | None = Field(None, description="metric prefix; `<name>_up` per target")
    targets: list[str] = Field(default_factory=list, description="what to fetch (URLs, ...)")
    labels: dict[str, str] = Field(default_factory=dict, description="labels on every series")

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


@dataclass
class SourceContext:
    """Shared by all sources of one exporter."""

    naming: Naming
    timeout: float
    max_body_size: int
    http: HttpClient


def check_metric_name(name: str) -> str:
    if not _METRIC_NAME.match(name):
        raise ValueError(f"{name!r} is not a valid metric name")
    return name


def check_label_name(name: str) -> str:
    if not _LABEL_NAME.match(name) or name.startswith("__"):
        raise ValueError(f"{name!r} is not a valid label name")
    return name


class Source(abc.ABC):
    """Base class of every source. Subclasses set `default_name` and implement fetch/collect.

    An ABC, as the log-shipper's `Output` is: a plugin class that misses a method fails when
    it is loaded (a configuration error), not at its first scrape.
    """

    default_name: ClassVar[str] = ""
    up_help: ClassVar[str] = "Status of the last metric scrape"
    allowed_options: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, spec: SourceSpec, ctx: SourceContext) -> None:
        """Validate the spec; raise ValueError with a one-line reason. No I/O here."""
        self.spec = spec
        self.ctx = ctx
        self.name = check_metric_name(spec.name or self.default_name)
        if not spec.targets:
            raise ValueError(f"source {self.name!r} has no targets")
        self.targets = list(spec.targets)
        self.labels = {check_label_name(k): str(v) for k, v in spec.labels.items()}
        unknown = set(spec.options) - self.allowed_options
        if unknown:
            allowed = ", ".join(sorted(self.allowed_options)) or "none"
            raise ValueError(
                f"source {self.name!r}: unknown option(s) {', '.join(sorted(unknown))}; "
                f"allowed: {allowed}"
            )

    def display(self, target: str) -> str:
        """The `addr` label and log field of a target."""
        return hide_userinfo(target)

    @abc.abstractmethod
    async def fetch(self, target: str) -> Any:
        """Read one target. Raise SourceError for anything that is not a good answer."""

    @abc.abstractmethod
    def collect(self, target: str, data: Any) -> Iterable[Family]:
        """Turn what `fetch` returned into families. Raise SourceError on nonsense input."""

    async def close(self) -> None:  # noqa: B027 - optional hook, as in Output
        """Release connections at shutdown."""
