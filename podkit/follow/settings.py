"""Settings shared by every helper that follows files (flags, env and config keys)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from podkit.config import ByteSize, Duration, HelperSettings


class FollowSettings(HelperSettings):
    path: list[str] = Field(
        default_factory=list,
        description="file or glob to follow",
        json_schema_extra={"metavar": "GLOB"},
    )
    exclude: list[str] = Field(
        default_factory=list,
        description="glob of files not to follow",
        json_schema_extra={"metavar": "GLOB"},
    )
    state_dir: str | None = Field(
        None,
        description="directory for checkpoints (a volume that outlives the container)",
        json_schema_extra={"metavar": "DIR"},
    )
    read_from: Literal["head", "tail"] = Field(
        "head", description="where to start a file that has no checkpoint"
    )
    refresh_interval: Duration = Field(5.0, description="rescan the globs this often")
    rotate_wait: Duration = Field(
        5.0, description="keep reading a rotated-away file this long after it was replaced"
    )
    flush_timeout: Duration = Field(
        1.0, description="emit a last line without newline after this long"
    )
    max_line_bytes: ByteSize = Field(
        1 << 20, ge=64, description="longer lines are cut, with a marker, and counted"
    )
    buffer_bytes: ByteSize = Field(
        8 << 20, ge=4096, description="unacknowledged bytes in memory before reading pauses"
    )
