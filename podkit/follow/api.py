"""The follower's data types: what a consumer receives and acknowledges.

This is the contract between the follower and its consumers (log-shipper, log-adapter);
change it only together with both.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from podkit.follow.settings import FollowSettings


@dataclass(frozen=True, slots=True)
class FileId:
    """A file's identity: device + inode, and a fingerprint of its first bytes.

    The fingerprint tells a new file that reuses an inode from the old one, and lets a
    renamed file be recognised as the same file. It is "" until the file has enough bytes.
    """

    dev: int
    inode: int
    fingerprint: str

    def key(self) -> str:
        """Stable text form, usable in record ids: `dev:inode:fingerprint`."""
        return f"{self.dev}:{self.inode}:{self.fingerprint}"


EventKind = Literal[
    "opened", "rotated", "truncated", "deleted", "line_cut", "lost", "closed", "recovered"
]
EVENT_KINDS: tuple[str, ...] = typing.get_args(EventKind)
LOSS_REASONS = ("truncated_unread", "rotated_away_unread", "deleted_unread", "line_cut")
"""Every `reason` a loss can have: metrics export each from the start, at 0, so that an
alert on `increase()` sees the first loss (a series born non-zero has no increase)."""


@dataclass(frozen=True, slots=True)
class FileEvent:
    """Something that happened to a file, in particular anything that lost bytes.

    `lost_bytes` > 0 only where data could not be read: `reason` then says why
    ("truncated_unread", "rotated_away_unread", "line_cut", "deleted_unread", ...).
    `lower_bound` says the figure counts only bytes the follower knew were there: more
    may have been written after it last looked. A "recovered" event (reason
    "copytruncate_copy") comes with the first lines read from a copytruncate copy.
    """

    kind: EventKind
    path: str
    file_id: FileId
    lost_bytes: int = 0
    reason: str = ""
    lower_bound: bool = False


@dataclass(slots=True)
class Batch:
    """Consecutive lines of one file. Acknowledge it with `Follower.ack(batch)`."""

    path: str
    """The path the lines were read from (the current name if the file was renamed)."""
    file_id: FileId
    lines: list[bytes]
    """Complete lines without their newline. A cut line ends with CUT_MARKER."""
    offsets: list[int]
    """Byte offset in the file where each line starts (same length as `lines`)."""
    end_offset: int
    """Offset just past the last line: where the checkpoint moves once this batch is acked."""
    seq: int
    """Increasing per follower; acks may come in any order, the checkpoint waits for gaps."""
    events: list[FileEvent] = field(default_factory=list)
    """Events noticed before these lines (rotations, truncations, losses), to forward."""

    def __len__(self) -> int:
        return len(self.lines)

    @property
    def byte_count(self) -> int:
        return sum(map(len, self.lines)) + len(self.lines)


CUT_MARKER = b"...[podkit: line cut]"


@dataclass(frozen=True, slots=True)
class MultilineConfig:
    """Join continuation lines into one record (stack traces)."""

    mode: Literal["python", "java", "go", "custom"] = "custom"
    start_pattern: str | None = None
    """A line matching this starts a record (custom mode)."""
    continuation_pattern: str | None = None
    """A line matching this continues the record before it (custom mode)."""
    flush_timeout: float = 1.0
    max_bytes: int = 1 << 20
    max_lines: int = 1000


@dataclass(frozen=True, slots=True)
class FollowConfig:
    include: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    state_dir: Path | None = None
    """Where checkpoints live; None keeps them in memory only (restarts read again)."""
    read_from: Literal["head", "tail"] = "head"
    """Where to start a file that has no checkpoint."""
    refresh_interval: float = 5.0
    """Rescan the globs this often, besides watchfiles events."""
    rotate_wait: float = 5.0
    """Keep reading a rotated-away file this long after its replacement appeared."""
    flush_timeout: float = 1.0
    """Emit a partial last line after this long without its newline."""
    max_line_bytes: int = 1 << 20
    buffer_bytes: int = 8 << 20
    """Bytes read but not yet acknowledged; reading pauses at this budget."""
    batch_max_lines: int = 4096
    batch_max_bytes: int = 1 << 20
    fingerprint_bytes: int = 256
    multiline: MultilineConfig | None = None
    poll_interval: float = 0.25
    """Check idle files this often even without a watchfiles event (NFS, overlayfs)."""
    checkpoint_interval: float = 1.0
    """Write acknowledged progress at least this often (and whenever half the budget is)."""
    watch: bool = True
    """Use watchfiles (inotify) events when available; polling alone otherwise."""
    state_name: str = "follow"
    """Checkpoint file name in `state_dir` (two followers may share one directory)."""

    @classmethod
    def from_settings(cls, settings: FollowSettings, **overrides: Any) -> FollowConfig:
        """The config a helper's `FollowSettings` (flags/env/YAML) describe."""
        values: dict[str, Any] = {
            "include": tuple(settings.path),
            "exclude": tuple(settings.exclude),
            "state_dir": Path(settings.state_dir) if settings.state_dir else None,
            "read_from": settings.read_from,
            "refresh_interval": float(settings.refresh_interval),
            "rotate_wait": float(settings.rotate_wait),
            "flush_timeout": float(settings.flush_timeout),
            "max_line_bytes": int(settings.max_line_bytes),
            "buffer_bytes": int(settings.buffer_bytes),
        }
        values.update(overrides)
        return cls(**values)
