"""Batches of lines in, JSON records out: the one encoding step, in process or in a worker.

`Encoders` keeps the builder of each file for parsers with per-file state (`auto`'s choice,
CRI's partial lines) and hands out what was counted since the last call, so a worker can
send its counts to the process that reports them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .record import BuildCounts, RecordBuilder


@dataclass
class AutoDelta:
    """What `--parser auto` decided or counted since the last batch (see AutoState)."""

    choices: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)
    reports: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Encoded:
    """One batch's records, and what was counted while building them."""

    records: bytes | bytearray
    count: int
    counts: dict[str, Any] | None = None
    """A worker's BuildCounts delta (None: counted in the adapter's own builder)."""
    auto: AutoDelta | None = None


def holds_lines(builder: RecordBuilder) -> bool:
    """Whether the parser keeps lines between batches (CRI partial lines): such state
    would die with a worker, so those parsers run in the adapter's own process."""
    parser = builder.parser
    return bool(getattr(parser, "stateful", False)) and getattr(parser, "holds_lines", True)


class Encoders:
    """The builder for each file, and the encoding of a batch with it."""

    def __init__(self, builder: RecordBuilder) -> None:
        self.builder = builder
        self.stateful = bool(getattr(builder.parser, "stateful", False))
        self.by_file: dict[str, RecordBuilder] = {}
        self.auto = getattr(builder.parser, "state", None)

    def for_file(self, key: str, path: str) -> RecordBuilder:
        if not self.stateful:
            return self.builder
        found = self.by_file.get(key)
        if found is None:
            found = self.by_file[key] = self.builder.fork()
            if hasattr(found.parser, "source"):
                found.parser.source = path
        return found

    def encode(self, key: str, path: str, lines: list[bytes]) -> tuple[bytearray, int]:
        """Records for `lines`, and how many (a stateful parser may hold some lines)."""
        stats = self.builder.stats  # every per-file fork shares it
        before = stats.records_out
        records = self.for_file(key, path).encode(lines)
        return records, stats.records_out - before

    def flush(self) -> tuple[bytearray, int]:
        """What the parsers still hold, at the end of input."""
        out = bytearray()
        stats = self.builder.stats
        before = stats.records_out
        for held in {id(b): b for b in [self.builder, *self.by_file.values()]}.values():
            out += held.flush()
        return out, stats.records_out - before


def collect_auto(state: Any) -> Callable[[], AutoDelta | None]:
    """In a worker: gather `auto`'s choices and counts to send back with each batch."""
    if state is None:
        return lambda: None
    reports: list[dict[str, Any]] = []
    state.on_choice = reports.append
    sent: dict[str, tuple[str, str | None]] = {}

    def take() -> AutoDelta | None:
        changed = {k: v for k, v in state.choices.items() if sent.get(k) != v}
        sent.update(changed)
        delta = AutoDelta(changed, dict(state.lines), list(reports))
        state.lines.clear()
        reports.clear()
        return delta

    return take


def apply_delta(stats: BuildCounts, encoded: Encoded, auto: Any) -> None:
    """In the adapter: add a worker's counts to the builder the metrics read."""
    if encoded.counts is not None:
        stats.add(encoded.counts)
    delta = encoded.auto
    if delta is not None and auto is not None:
        auto.choices.update(delta.choices)
        auto.lines.update(delta.lines)
        if auto.on_choice is not None:
            for report in delta.reports:
                auto.on_choice(report)
