"""One open file: its identity, read position, line splitter and acknowledgement queue.

Every change of one file's state is a method here (read, rotated, renamed, truncated,
handed over to a copytruncate copy, closed), so the collaborators that drive the files
(reader, scanner, ack book) never write a Tailer's fields themselves.
"""

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
"""Bytes before the checkpoint whose hash is saved with it (and kept as `tail` while reading)."""

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
        self.id_of = (st.st_dev, st.st_ino)
        """Whose identity batches carry: this file's, or (for a copytruncate copy) the
        file it was copied from, so record ids stay the same whichever one a line came from."""
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
        self.tail = b""
        """The last bytes read (up to BEFORE_BYTES): a copytruncate copy must hold them
        just before `read_pos`."""
        self.is_copy = False
        """A copytruncate copy: read to its end, then closed (nothing writes to it)."""
        self.waits_for: Tailer | None = None
        """A copy whose lines come before this file's new contents; reading waits for it."""

    @property
    def key(self) -> tuple[int, int]:
        return (self.dev, self.inode)

    def _make_id(self) -> FileId:
        fp = self.fp if self.fp_len >= self.fingerprint_bytes else ""
        return FileId(self.id_of[0], self.id_of[1], fp)

    def event(self, kind: str, lost: int = 0, reason: str = "", **extra: bool) -> FileEvent:
        ev = FileEvent(kind, self.path, self.file_id, max(lost, 0), reason, **extra)  # type: ignore[arg-type]
        self.events.append(ev)
        return ev

    # --- reading ---------------------------------------------------------------------

    def consume(self, data: bytes, now: float, lines: list[bytes], offsets: list[int]) -> None:
        """`data` was read at `read_pos`: split it into `lines`/`offsets`."""
        self.read_pos += len(data)
        self.last_data = now
        self.stats.bytes_read += len(data)
        self.splitter.feed(data, lines, offsets)
        if self.fp_len < self.fingerprint_bytes:
            self.grow_fingerprint()
        if len(data) >= BEFORE_BYTES:
            self.tail = data[-BEFORE_BYTES:]
        else:
            self.tail = (self.tail + data)[-BEFORE_BYTES:]

    def saw_size(self, size: int) -> None:
        """The file's size when last looked at (what is known to be there)."""
        self.size_seen = max(size, self.read_pos)
        self.stats.lag_bytes = self.size_seen - self.read_pos

    def grow_fingerprint(self) -> None:
        """Extend a short fingerprint as the file grows (a file shorter than it has "")."""
        if self.fp_len < self.fingerprint_bytes and self.read_pos > self.fp_len:
            self.fp_len, self.fp = prefix_hash(self.fd, self.fingerprint_bytes)
            self.file_id = self._make_id()

    def same_content(self) -> bool:
        """The file still starts with the bytes it started with (not truncated and rewritten)."""
        return self.fp_len == 0 or prefix_matches(self.fd, self.fp_len, self.fp)

    def take_cuts(self) -> tuple[int, int]:
        """Lines cut and bytes discarded by the splitter since the last call."""
        splitter = self.splitter
        cuts, lost = splitter.cuts, splitter.cut_lost
        if lost:
            self.stats.lines_cut += cuts
            splitter.cut_lost = 0
            splitter.cuts = 0
        return cuts, lost

    # --- batches and acknowledgements ------------------------------------------------

    def hand_out(self, seq: int, end: int) -> tuple[Pending, list[FileEvent]]:
        """A batch ending at `end` goes to the consumer: its pending entry and its events."""
        span = max(end - self.last_end, 0)
        self.last_end = max(end, self.last_end)
        events = self.events
        self.events = []  # never share the list: later events must not show up in this batch
        p = Pending(seq, self.gen, end, span)
        self.pending.append(p)
        return p, events

    def advance(self) -> None:
        """Move the checkpoint past acknowledged batches at the head of the queue."""
        pending = self.pending
        while pending and pending[0].acked:
            p = pending.popleft()
            if p.gen == self.gen:
                self.acked_offset = p.end

    def saved(self) -> None:
        """The checkpoint was written: what is acknowledged is saved."""
        self.saved_offset = self.acked_offset

    # --- what happens to the file ----------------------------------------------------

    def rotate(self, now: float, wait: float, *, deleted: bool) -> None:
        """Renamed away or deleted: read on through the handle for `wait` seconds."""
        self.state = ROTATED
        self.deadline = now + wait
        self.stats.rotations += 1
        self.event("deleted" if deleted else "rotated")

    def found_rotated(self, now: float, wait: float) -> None:
        """Opened under a name the globs do not match (renamed while we were stopped)."""
        self.state = ROTATED
        self.deadline = now + wait

    def rename(self, path: str, *, rotation: bool) -> None:
        """The same file under another followed name (a rotation if not noticed yet)."""
        if rotation:
            self.stats.rotations += 1
            self.event("rotated")
        self.path = path
        self.state = ACTIVE

    def restart_at_zero(self) -> None:
        """Copytruncate or rewrite: a new generation of content in the same inode."""
        self.gen += 1
        self.read_pos = 0
        self.size_seen = 0
        self.splitter = LineSplitter(self.max_line, 0)
        self.acked_offset = 0
        self.saved_offset = 0
        self.last_end = 0
        self.tail = b""
        self.fp_len, self.fp = prefix_hash(self.fd, self.fingerprint_bytes)
        self.file_id = self._make_id()

    def hand_over(self, copy: Tailer, multiline: MultilineJoiner | None) -> None:
        """Copytruncate with the copy found: `copy` carries on where this file's old
        generation was (position, partial line, multiline record, unacknowledged batches),
        under this file's identity and stats; this file restarts at 0 once the copy is read."""
        copy.id_of = self.id_of
        copy.file_id = self.file_id
        copy.stats = self.stats
        copy.gen = self.gen
        copy.read_pos = self.read_pos
        copy.splitter = self.splitter
        copy.multiline = self.multiline
        copy.acked_offset = self.acked_offset
        copy.saved_offset = self.saved_offset
        copy.last_end = self.last_end
        copy.pending = self.pending
        copy.tail = self.tail
        copy.last_data = self.last_data
        copy.become_copy()
        self.pending = deque()
        self.multiline = multiline
        self.restart_at_zero()
        self.waits_for = copy

    def become_copy(self) -> None:
        self.is_copy = True
        self.state = ROTATED

    def recovered(self, nbytes: int) -> None:
        """Record that `nbytes` of this stream come from its copytruncate copy."""
        self.stats.recovered_bytes += nbytes
        self.event("recovered", 0, "copytruncate_copy")

    def entry(self) -> Entry:
        before_len, before = 0, ""
        size = self.size_seen
        if self.fd >= 0:
            try:
                size = max(size, os.fstat(self.fd).st_size)
                if self.acked_offset > 0:
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
            size,
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
