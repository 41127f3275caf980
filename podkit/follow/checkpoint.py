"""Checkpoints on disk: where each file was acknowledged up to, written atomically.

One JSON file in the state dir. It is replaced by writing a temp file, fsyncing it,
renaming it over the old one and fsyncing the directory, so a crash at any point leaves
either the old or the new checkpoint, never a torn one.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson

VERSION = 1


@dataclass(slots=True)
class Entry:
    """Progress on one file, identified by dev+inode and the hash of its first bytes."""

    path: str
    dev: int
    inode: int
    fp_len: int
    fp: str
    offset: int
    """Acknowledged up to here: a restart resumes at this byte."""
    size: int
    """The file's size when last seen; `size - offset` was still unread then."""
    closed: bool = False
    """Finished (rotated away or deleted and read to its end); kept to detect inode reuse."""


class CheckpointStore:
    def __init__(self, state_dir: Path | None, name: str = "follow") -> None:
        self.path = state_dir / f"{name}-checkpoints.json" if state_dir else None

    def load(self) -> tuple[list[Entry], str | None]:
        """The saved entries, and an error text if the file was unreadable (then moved aside)."""
        if self.path is None or not self.path.exists():
            return [], None
        try:
            doc = orjson.loads(self.path.read_bytes())
            entries = [Entry(**item) for item in doc["files"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # Keep the bad file for inspection; starting over beats refusing to start.
            with contextlib.suppress(OSError):
                self.path.replace(self.path.with_suffix(".corrupt"))
            return [], f"{type(exc).__name__}: {exc}"
        return entries, None

    def save(self, entries: list[Entry]) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = orjson.dumps({"version": VERSION, "files": [asdict(e) for e in entries]})
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
