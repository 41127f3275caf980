"""One open file: its identity, read position, line splitter and acknowledgement queue."""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass

from podkit.follow.api import FileEvent, FileId
from podkit.follow.checkpoint import Entry
from podkit.follow.identity import before_hash, prefix_hash, prefix_matches
from podkit.follow.ledger import FileStats
from podkit.follow.lines import LineSplitter
from podkit.follow.multiline import MultilineJoiner

BEFORE_BYTES = 64
"""Bytes before the checkpoint whose hash is saved with it."""

ACTIVE = "active"
"""The file is what its path names now."""
ROTATED = "rotated"
"""Renamed away or deleted: read to its end until rotate-wait passes, then close."""
CLOSED = "closed"
"""The handle is closed; kept only until its batches are acknowledged."""


@dataclass(slots=True)
class Pending:
    """A batch handed out and not acknowledged yet."""

    seq: int
    gen: int
    end: int
    span: int
    acked: bool = False


class Tailer:
    def __init__(
        self,
        path: str,
        fd: int,
        st: os.stat_result,
        start: int,
        stats: FileStats,
        *,
        max_line: int,
        fingerprint_bytes: int,
    ) -> None:
        self.path = path
        self.fd = fd
        self.dev = st.st_dev
        self.inode = st.st_ino
        self.stats = stats
        self.max_line = max_line
        self.fingerprint_bytes = fingerprint_bytes
        self.fp_len, self.fp = prefix_hash(fd, fingerprint_bytes)
        self.file_id = self._make_id()
        self.gen = 0
        self.read_pos = start
        self.size_seen = max(st.st_size, start)
        self.splitter = LineSplitter(max_line, start)
        self.acked_offset = start
        self.saved_offset = start
        """`acked_offset` at the last checkpoint save."""
        self.pending: deque[Pending] = deque()
        self.events: list[FileEvent] = []
        self.state = ACTIVE
        self.deadline = 0.0
        """When a ROTATED file is closed (monotonic)."""
        self.last_data = 0.0
        """When bytes were last read (monotonic): the partial line's flush clock."""
        self.next_check = 0.0
        self.drain_target: int | None = None
        self.deleted = False
        """Unlinked when it was closed (its inode may be reused by a new file)."""
        self.multiline: MultilineJoiner | None = None
        self.last_end = start
        """End offset of the last batch handed out (its size counts against the budget)."""

    @property
    def key(self) -> tuple[int, int]:
        return (self.dev, self.inode)

    def _make_id(self) -> FileId:
        fp = self.fp if self.fp_len >= self.fingerprint_bytes else ""
        return FileId(self.dev, self.inode, fp)

    def event(self, kind: str, lost: int = 0, reason: str = "") -> FileEvent:
        ev = FileEvent(kind, self.path, self.file_id, max(lost, 0), reason)  # type: ignore[arg-type]
        self.events.append(ev)
        return ev

    def grow_fingerprint(self) -> None:
        """Extend a short fingerprint as the file grows (a file shorter than it has "")."""
        if self.fp_len < self.fingerprint_bytes and self.read_pos > self.fp_len:
            self.fp_len, self.fp = prefix_hash(self.fd, self.fingerprint_bytes)
            self.file_id = self._make_id()

    def same_content(self) -> bool:
        """The file still starts with the bytes it started with (not truncated and rewritten)."""
        return self.fp_len == 0 or prefix_matches(self.fd, self.fp_len, self.fp)

    def restart_at_zero(self) -> None:
        """Copytruncate or rewrite: a new generation of content in the same inode."""
        self.gen += 1
        self.read_pos = 0
        self.size_seen = 0
        self.splitter = LineSplitter(self.max_line, 0)
        self.acked_offset = 0
        self.saved_offset = 0
        self.last_end = 0
        self.fp_len, self.fp = prefix_hash(self.fd, self.fingerprint_bytes)
        self.file_id = self._make_id()

    def advance(self) -> None:
        """Move the checkpoint past acknowledged batches at the head of the queue."""
        pending = self.pending
        while pending and pending[0].acked:
            p = pending.popleft()
            if p.gen == self.gen:
                self.acked_offset = p.end

    def entry(self) -> Entry:
        before_len, before = 0, ""
        if self.fd >= 0 and self.acked_offset > 0:
            try:
                before_len, before = before_hash(self.fd, self.acked_offset, BEFORE_BYTES)
            except OSError:
                before_len = 0
        return Entry(
            self.path,
            self.dev,
            self.inode,
            self.fp_len,
            self.fp,
            self.acked_offset,
            self.size_seen,
            # Closed with batches still unacknowledged is not finished: a restart must
            # look for it and read them again.
            self.state == CLOSED and not self.pending,
            before_len,
            before,
        )

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self.state = CLOSED
