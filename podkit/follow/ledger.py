"""Per-file counters and the loss ledger, and their Prometheus collector.

Everything the follower could not deliver is counted here with a reason, so a user can
see what was lost and why instead of guessing (the reference tools lose lines silently).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from podkit.follow.api import LOSS_REASONS, FileEvent

if TYPE_CHECKING:
    from prometheus_client.core import Metric


@dataclass(slots=True)
class FileStats:
    """Counters of one followed path (a rotated file counts under the path it was found at)."""

    path: str
    bytes_read: int = 0
    lines: int = 0
    rotations: int = 0
    truncations: int = 0
    lines_cut: int = 0
    lost: dict[str, int] = field(default_factory=dict)
    """Bytes that could not be delivered, by reason."""
    lag_bytes: int = 0
    """Bytes between the read position and the file's end, when last looked at."""
    recovered_bytes: int = 0
    """Bytes read from copytruncate copies instead of being lost."""

    @property
    def lost_bytes(self) -> int:
        return sum(self.lost.values())


class Ledger:
    """Per-path stats plus the recent loss events (the totals never drop anything)."""

    def __init__(self, keep_events: int = 1000) -> None:
        self.files: dict[str, FileStats] = {}
        self.events: deque[FileEvent] = deque(maxlen=keep_events)

    def file(self, path: str) -> FileStats:
        stats = self.files.get(path)
        if stats is None:
            stats = self.files[path] = FileStats(path)
        return stats

    def lose(self, stats: FileStats, event: FileEvent) -> None:
        if event.lost_bytes > 0:
            stats.lost[event.reason] = stats.lost.get(event.reason, 0) + event.lost_bytes
            self.events.append(event)

    def prune(self, live: set[int], keep: int) -> None:
        """Forget the oldest paths beyond `keep` whose stats (by id) are not `live`."""
        files = self.files
        if len(files) <= keep:
            return
        idle = [path for path, s in files.items() if id(s) not in live]
        for path in idle[: max(len(idle) - keep, 0)]:
            del files[path]

    def lost_total(self, reason: str | None = None) -> int:
        return sum(n for s in self.files.values() for r, n in s.lost.items() if reason in (None, r))


class FollowCollector:
    """Turns the ledger into metric families at scrape time (nothing is kept twice)."""

    def __init__(self, ledger: Ledger, gauges: Callable[[], dict[str, tuple[str, float]]]) -> None:
        self.ledger = ledger
        self.gauges = gauges

    def collect(self) -> Iterator[Metric]:
        # Imported here: a follower without a registry never loads prometheus_client.
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        # The gauges first: looking at the files' sizes may find a truncation to count.
        gauges = self.gauges()
        files = list(self.ledger.files.values())
        counters: list[tuple[str, str, Callable[[FileStats], int]]] = [
            ("bytes_read", "bytes read from followed files", lambda s: s.bytes_read),
            ("lines", "lines handed to the consumer", lambda s: s.lines),
            ("rotations", "rotations seen (rename, delete, replace)", lambda s: s.rotations),
            ("truncations", "truncations seen (copytruncate, rewrite)", lambda s: s.truncations),
            ("lines_cut", "lines longer than --max-line-bytes, cut", lambda s: s.lines_cut),
            (
                "recovered_bytes",
                "bytes read from copytruncate copies (instead of lost)",
                lambda s: s.recovered_bytes,
            ),
        ]
        for name, doc, get in counters:
            family = CounterMetricFamily(f"podkit_follow_{name}", doc, labels=["path"])
            for s in files:
                family.add_metric([s.path], get(s))
            yield family
        lost = CounterMetricFamily(
            "podkit_follow_lost_bytes",
            "bytes that could not be delivered, by reason",
            labels=["path", "reason"],
        )
        for s in files:
            # Every known reason from the path's first scrape, at 0 until a loss.
            for reason in (*LOSS_REASONS, *(r for r in s.lost if r not in LOSS_REASONS)):
                lost.add_metric([s.path, reason], s.lost.get(reason, 0))
        yield lost
        lag = GaugeMetricFamily(
            "podkit_follow_lag_bytes", "bytes not read yet behind each file's end", labels=["path"]
        )
        for s in files:
            lag.add_metric([s.path], s.lag_bytes)
        yield lag
        for name, (doc, value) in gauges.items():
            yield GaugeMetricFamily(f"podkit_follow_{name}", doc, value=value)
