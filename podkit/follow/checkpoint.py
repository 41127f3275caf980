"""Checkpoints on disk: where each file was acknowledged up to, written atomically.

One JSON file in the state dir. It is replaced by writing a temp file, fsyncing it,
renaming it over the old one and fsyncing the directory, so a crash at any point leaves
either the old or the new checkpoint, never a torn one.
"""

from __future__ import annotations

import contextlib
import errno
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
    before_len: int = 0
    before: str = ""
    """Hash of the `before_len` bytes just before `offset`: a file rewritten while we were
    stopped with the same first bytes is still told apart (0: not checked)."""


class CheckpointStore:
    def __init__(self, state_dir: Path | None, name: str = "follow") -> None:
        self.path = state_dir / f"{name}-checkpoints.json" if state_dir else None
        self.listed_at: float | None = None
        """The wall time saved with the entries (see AckBook.listed_at), once loaded."""
        self.seen: list[tuple[int, str]] = []
        """Fingerprints of content read before (see RenameFinder.fps), once loaded."""

    def load(self) -> tuple[list[Entry], str | None]:
        """The saved entries, and an error text if the file was unreadable (then moved aside)."""
        if self.path is None or not self.path.exists():
            return [], None
        try:
            doc = orjson.loads(self.path.read_bytes())
            entries = [Entry(**item) for item in doc["files"]]
            listed_at = doc.get("listed_at")
            self.listed_at = float(listed_at) if isinstance(listed_at, (int, float)) else None
            self.seen = [
                (int(n), str(fp))
                for n, fp in doc.get("seen", [])
                if type(n) is int and isinstance(fp, str)
            ]
            for e in entries:
                numbers = (e.dev, e.inode, e.fp_len, e.offset, e.size)
                if not all(type(n) is int and n >= 0 for n in numbers):
                    raise ValueError(f"bad numbers in the entry for {e.path!r}")
                if not isinstance(e.path, str) or not isinstance(e.fp, str):
                    raise ValueError("path and fp must be strings")
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            # Keep the bad file for inspection; starting over beats refusing to start.
            with contextlib.suppress(OSError):
                self.path.replace(self.path.with_suffix(".corrupt"))
            return [], f"{type(exc).__name__}: {exc}"
        return entries, None

    def check(self) -> None:
        """Raise OSError (its strerror says why) unless checkpoints can be written here.

        The state dir is created if missing, then takes a probe file the way `save` writes
        its temp file: a read-only mount, a file in the directory's place or a path under
        a file fail here, at start, instead of at every save.
        """
        if self.path is None:
            return
        directory = self.path.parent
        if directory.exists() and not directory.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "not a directory", str(directory))
        directory.mkdir(parents=True, exist_ok=True)
        probe = self.path.with_name(f".{self.path.name}.probe")
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, b"{}")
            os.fsync(fd)
        finally:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(probe)

    def save(
        self,
        entries: list[Entry],
        listed_at: float | None = None,
        seen: list[tuple[int, str]] | None = None,
    ) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        doc: dict[str, object] = {"version": VERSION, "files": [asdict(e) for e in entries]}
        if listed_at is not None:
            doc["listed_at"] = listed_at
        if seen:
            doc["seen"] = seen
        data = orjson.dumps(doc)
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
