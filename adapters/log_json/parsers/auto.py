"""`auto`: find the parser for each file from its first lines, and keep checking.

For the first `sample_lines` lines of a file every candidate parser reads each line; a line
goes out with the best result for it. Then the candidate that parsed the most lines fully
(level and timestamp not left in the message: see `is_partial`), then the most lines, then
the most fields, is chosen, and the runner-up noted; `on_choice` is told (the adapter logs
`parser_chosen` and sets a metric label). From then on each line goes to the chosen parser;
a line it rejects or only partly parses is tried with the others in their sample order, so
a stray line of another format still comes out parsed, and a line nobody parses comes out
raw as always (nothing is lost). When more than half of a window of `recheck_lines` lines
needed that fallback, the file is sampled again: the format changed.

One instance per file (`stateful`): each file makes its own choice. Timestamps are read by
the candidate's own time format and handed on as datetimes (the adapter's `--timezone`
applies to those without a zone). `candidates` limits the list (names of parsers).
CRI is not a candidate (its partial lines are held across lines): name it.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from podkit.parsers import ParseError, Pending, load_parser

from ..normalize import TimeError, TimeParser, is_partial
from .base import BaseParser

CANDIDATES = (
    "node", "mongodb", "docker", "json", "k8s-nginx-ingress", "istio-envoy-proxy", "envoy",
    "nginx", "nginx-common", "haproxy", "kmsg-netfilter-log", "syslog", "syslog-rfc3164-local",
    "postgresql", "redis", "mariadb", "nginx_error", "apache_error", "rabbitmq", "nats",
    "mosquitto", "java", "klog", "python", "docker-daemon", "go", "classic", "logfmt",
)  # fmt: skip
"""The order breaks ties: the more specific format first (pino JSON before any JSON)."""


@dataclass
class AutoState:
    """What every file's auto parser shares: the choices made and lines by parser."""

    choices: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    lines: Counter[str] = field(default_factory=Counter)
    on_choice: Callable[[dict[str, Any]], None] | None = None


@dataclass
class _Candidate:
    name: str
    parse: Callable[[str], dict[str, Any]]
    time: TimeParser
    index: int
    derived_level: bool = False
    full: int = 0
    parsed: int = 0
    fields: int = 0
    times: dict[Any, datetime] = field(default_factory=dict)

    def key(self) -> tuple[int, int, int, int]:
        return (self.full, self.parsed, self.fields, -self.index)

    def reset(self) -> None:
        self.full = self.parsed = self.fields = 0


_SOURCES = itertools.count(1)
_LOADED: dict[str, Any] = {}


def _load(name: str) -> Any:
    """Candidates are stateless: one instance each, shared by every file's auto parser
    (finding an entry point scans the installed packages: too slow to do per file)."""
    parser = _LOADED.get(name)
    if parser is None:
        parser = _LOADED[name] = load_parser(name, None)
    return parser


class AutoParser(BaseParser):
    name = "auto"
    sets_level_raw = True
    stateful = True
    holds_lines = False
    """Its state is a choice, made again from the next lines if a worker restarts."""

    def __init__(
        self,
        candidates: list[str] | None = None,
        sample_lines: int = 50,
        recheck_lines: int = 1000,
        state: AutoState | None = None,
    ) -> None:
        names = list(candidates or CANDIDATES)
        if "auto" in names:
            raise ValueError("auto cannot be its own candidate")
        if int(sample_lines) < 1 or int(recheck_lines) < 1:
            raise ValueError("sample_lines and recheck_lines must be at least 1")
        self.names = names
        self.sample_lines = int(sample_lines)
        self.recheck_lines = int(recheck_lines)
        self.state = state or AutoState()
        self.source = f"file-{next(_SOURCES)}"
        """What the choice is reported for: the adapter sets the file's path."""
        self._candidates: list[_Candidate] = []
        for index, name in enumerate(names):
            parser = _load(name)
            if getattr(parser, "stateful", False):
                raise ValueError(f"{name} keeps lines between calls: it cannot be a candidate")
            parse = parser.parse if getattr(parser, "input_type", "str") == "str" else parser
            time = TimeParser(getattr(parser, "time_format", "iso"))
            derived = bool(getattr(parser, "derived_level", False))
            self._candidates.append(_Candidate(name, parse, time, index, derived))
        self._ranked = list(self._candidates)
        self.chosen: _Candidate | None = None
        self.runner_up: _Candidate | None = None
        self._sampled = 0
        self._window = 0
        self._misses = 0

    def fork(self) -> AutoParser:
        return AutoParser(self.names, self.sample_lines, self.recheck_lines, self.state)

    # --- one candidate on one line ---------------------------------------------------------

    def _try(self, candidate: _Candidate, text: str) -> tuple[dict[str, Any] | None, bool]:
        """(fields or None, full): fields with the timestamp read; full when not partial."""
        try:
            fields = candidate.parse(text)
        except (ParseError, Pending):
            return None, False
        except Exception:
            return None, False
        if type(fields) is not dict:
            return None, False
        if candidate.name == "logfmt" and sum(v is not True for v in fields.values()) < 2:
            return None, False  # every text is logfmt of bare words
        full = not is_partial(fields)
        if candidate.derived_level and "level" in fields:
            fields["level_raw"] = None  # no token to keep: the adapter leaves level_raw out
        timestamp = fields.get("timestamp")
        if type(timestamp) is str:
            times = candidate.times
            moment = times.get(timestamp)
            if moment is None:
                try:
                    moment = candidate.time.moment(timestamp)
                except TimeError:
                    return fields, False  # left as text: the adapter flags bad_timestamp
                if len(times) >= 4096:
                    times.clear()
                times[timestamp] = moment
            fields["timestamp"] = moment
        return fields, full

    # --- the adapter's side ----------------------------------------------------------------

    def parse(self, text: str) -> dict[str, Any]:
        chosen = self.chosen
        if chosen is None:
            return self._sample(text)
        self._window += 1
        fields, full = self._try(chosen, text)
        if not full:
            self._misses += 1
            fields = self._fallback(text, chosen, fields)
        else:
            self.state.lines[chosen.name] += 1
        if self._window >= self.recheck_lines:
            if self._misses * 2 > self._window:
                self._resample()
            self._window = self._misses = 0
        return fields  # type: ignore[return-value]  # full implies fields

    def _fallback(
        self, text: str, chosen: _Candidate, partial: dict[str, Any] | None
    ) -> dict[str, Any]:
        best, best_name = partial, chosen.name
        for candidate in self._ranked:
            if candidate is chosen:
                continue
            fields, full = self._try(candidate, text)
            if full:
                self.state.lines[candidate.name] += 1
                return fields  # type: ignore[return-value]
            if fields is not None and best is None:
                best, best_name = fields, candidate.name
        if best is None:
            raise ParseError(f"no parser reads this line (auto chose {chosen.name})")
        self.state.lines[best_name] += 1
        return best

    def _sample(self, text: str) -> dict[str, Any]:
        best: dict[str, Any] | None = None
        best_key: tuple[int, int] = (-1, -1)
        best_name = ""
        results: dict[str, dict[str, Any]] = {}
        for candidate in self._candidates:
            fields, full = self._try(candidate, text)
            if fields is None:
                continue
            count = sum(value is not None for value in fields.values())
            candidate.parsed += 1
            candidate.fields += count
            if full:
                candidate.full += 1
                results[candidate.name] = fields
            key = (int(full), count)
            if key > best_key:
                best, best_key, best_name = fields, key, candidate.name
        # The line goes to the parser leading so far when it reads it fully, so the sampled
        # lines of one file come out alike; else to whichever read this line best.
        leader = max(self._candidates, key=_Candidate.key)
        if leader.name in results:
            best, best_name = results[leader.name], leader.name
        self._sampled += 1
        if self._sampled >= self.sample_lines:
            self.decide()
        if best is None:
            raise ParseError("no parser reads this line (auto still sampling)")
        self.state.lines[best_name] += 1
        return best

    def decide(self) -> None:
        """Choose from what was sampled (also when the input ends before `sample_lines`)."""
        if self.chosen is not None or self._sampled == 0:
            return
        self._ranked = sorted(self._candidates, key=_Candidate.key, reverse=True)
        chosen, runner_up = self._ranked[0], self._ranked[1] if len(self._ranked) > 1 else None
        if chosen.parsed == 0:
            # Nothing parsed any sampled line: keep sampling the following lines.
            for candidate in self._candidates:
                candidate.reset()
            self._sampled = 0
            return
        self.chosen = chosen
        self.runner_up = runner_up if runner_up is not None and runner_up.parsed else None
        self.state.choices[self.source] = (
            chosen.name,
            self.runner_up.name if self.runner_up else None,
        )
        if self.state.on_choice is not None:
            self.state.on_choice(self.report())

    def report(self) -> dict[str, Any]:
        """The choice as a log line says it: parser, runner-up, and how each did."""

        def score(candidate: _Candidate | None) -> dict[str, int] | None:
            if candidate is None:
                return None
            return {"full": candidate.full, "parsed": candidate.parsed, "fields": candidate.fields}

        return {
            "path": self.source,
            "parser": self.chosen.name if self.chosen else None,
            "runner_up": self.runner_up.name if self.runner_up else None,
            "sampled_lines": self._sampled,
            "score": score(self.chosen),
            "runner_up_score": score(self.runner_up),
        }

    def _resample(self) -> None:
        self.chosen = self.runner_up = None
        self._sampled = 0
        for candidate in self._candidates:
            candidate.reset()

    def flush(self) -> list[dict[str, Any]]:
        """End of input: a file shorter than the sample still gets its choice."""
        self.decide()
        return []
