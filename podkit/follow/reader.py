"""The reader: one chunk at a time from each open file, split into lines, wrapped into batches.

Per line the only Python objects are the line's bytes and its offset. A file found
truncated is handed to the scanner's copy finder first; only when no copytruncate copy
holds its old bytes is anything counted as lost.
"""

from __future__ import annotations

import contextlib
import os
from collections import deque
from collections.abc import Callable
from typing import Any

from podkit.follow.api import Batch, FollowConfig
from podkit.follow.book import AckBook
from podkit.follow.files import FileTable
from podkit.follow.ledger import Ledger
from podkit.follow.scanner import Scanner
from podkit.follow.tailer import ACTIVE, CLOSED, ROTATED, Tailer

CROWDED = 256
"""Open files beyond which a rotated-away file read to its end is closed without waiting
out --rotate-wait (an app rotating 1,000 times a second must not run out of handles)."""


class Reader:
    def __init__(
        self,
        config: FollowConfig,
        files: FileTable,
        book: AckBook,
        scanner: Scanner,
        ledger: Ledger,
        log: Any,
        ready: deque[Batch],
        retire: Callable[[Tailer], None],
    ) -> None:
        self.config = config
        self.files = files
        self.book = book
        self.scanner = scanner
        self.ledger = ledger
        self.log = log
        self.ready = ready
        self.retire = retire
        self.draining = False
        self._rr = 0

    def poll(self, now: float) -> bool:
        """One chunk from every open file; True if anything was read or handed out."""
        tailers = list(self.files.open.values())
        if not tailers:
            return False
        produced = False
        start = self._rr % len(tailers)
        self._rr += 1
        book = self.book
        for t in tailers[start:] + tailers[:start]:
            left = book.budget_left()
            if book.budget_spent(left):
                return True  # budget spent: the caller waits for acks
            if t.waits_for is not None:
                if t.waits_for.state != CLOSED:
                    continue  # its copytruncate copy's lines come first
                t.waits_for = None
            if t.state != CLOSED and self.read(t, now, left):
                produced = True
        return produced

    def read(self, t: Tailer, now: float, budget: int) -> bool:
        cfg = self.config
        at_target = t.drain_target is not None and t.read_pos >= t.drain_target
        data = b""
        if not at_target:
            try:
                data = os.pread(t.fd, min(cfg.batch_max_bytes, budget), t.read_pos)
            except OSError as exc:
                self.log.warning("file_read_failed", path=t.path, error=str(exc))
                return self.close(t, now, reason="read_error")
        if data:
            if t.fp_len and not t.same_content():
                # Rewritten in place (copytruncate, then more than we had read was written):
                # one 256-byte pread per chunk keeps us from reading mid-line garbage.
                return self.truncated(t, now)
            lines: list[bytes] = []
            offsets: list[int] = []
            t.consume(data, now, lines, offsets)
            self.emit(t, lines, offsets)
            return True  # progress even without a complete line: read on before sleeping
        # At the end of the file (or of what a drain reads).
        if t.is_copy:
            return self.close(t, now, reason="copy_read")  # nothing writes to a copy
        produced = False
        if now >= t.next_check or self.draining:
            t.next_check = now + cfg.poll_interval
            try:
                size = os.fstat(t.fd).st_size
            except OSError:
                size = t.read_pos
            if size < t.read_pos:
                return self.truncated(t, now)
            t.saw_size(size)
            if t.state == ACTIVE and not self.draining:
                self.scanner.check_rotation(t, now)
        idle = now - t.last_data
        flush_partial = t.splitter.partial and (self.draining or idle >= cfg.flush_timeout)
        ml = t.multiline
        flush_record = (
            ml is not None
            and bool(ml.lines or t.splitter.partial)
            and (self.draining or idle >= ml.flush_timeout)
        )
        if flush_partial or flush_record:
            lines, offsets = [], []
            if flush_partial:
                t.splitter.flush(lines, offsets)
            produced = self.emit(t, lines, offsets, flush=flush_record)
        crowded = len(self.files.open) > CROWDED and idle >= 2 * cfg.poll_interval
        if t.state == ROTATED and (self.draining or now >= t.deadline or crowded):
            return (
                self.close(t, now, reason="drained" if self.draining else "rotate_wait") or produced
            )
        if t.events and any(e.kind != "opened" for e in t.events):
            produced = self.emit(t, [], []) or produced
        return produced

    def emit(
        self, t: Tailer, lines: list[bytes], offsets: list[int], *, flush: bool = False
    ) -> bool:
        """Wrap lines into batches (at most `batch_max_lines` each) and queue them."""
        if t.splitter.cut_lost:
            _, lost = t.take_cuts()
            self.ledger.lose(t.stats, t.event("line_cut", lost, "line_cut"))
        end = t.splitter.end
        if t.multiline is not None:
            lines, offsets, end = t.multiline.feed(lines, offsets, end, flush=flush)
        if not lines and not any(e.kind != "opened" for e in t.events):
            return False  # "opened" alone waits for the file's first lines
        t.stats.lines += len(lines)
        step = self.config.batch_max_lines
        n = len(lines)
        hand_out = self.book.hand_out
        if n <= step:
            self.ready.append(hand_out(t, lines, offsets, end))
            return True
        for i in range(0, n, step):
            j = i + step
            self.ready.append(hand_out(t, lines[i:j], offsets[i:j], offsets[j] if j < n else end))
        return True

    def truncated(self, t: Tailer, now: float) -> bool:
        """Copytruncate: read the copy if there is one; else hand out what was read, record
        what was lost, restart at 0."""
        t.stats.truncations += 1
        self.scanner.renames.remember(t.fp_len, t.fp)  # its copy is not a new generation
        copy = self.scanner.copy_for_live(t, now)
        if copy is not None:
            self.log.info(
                "file_truncated", path=t.path, offset=copy.read_pos, lost_bytes=0, copy=copy.path
            )
            t.event("truncated")
            t.last_data = now
            self.emit(t, [], [])
            return True
        lines: list[bytes] = []
        offsets: list[int] = []
        t.splitter.flush(lines, offsets)
        self.emit(t, lines, offsets, flush=True)
        lost = max(t.size_seen - t.read_pos, 0)
        self.log.info(
            "file_truncated", path=t.path, offset=t.read_pos, lost_bytes=lost, lower_bound=True
        )
        t.restart_at_zero()
        ev = t.event("truncated", lost, "truncated_unread" if lost else "", lower_bound=bool(lost))
        self.ledger.lose(t.stats, ev)
        t.last_data = now
        self.emit(t, [], [])
        return True

    def close(self, t: Tailer, now: float, reason: str) -> bool:
        lines: list[bytes] = []
        offsets: list[int] = []
        t.splitter.flush(lines, offsets)
        t.event("closed", 0, reason)  # the file is done: a consumer may drop its state
        produced = self.emit(t, lines, offsets, flush=True)
        with contextlib.suppress(OSError):
            t.deleted = os.fstat(t.fd).st_nlink == 0
        t.close()
        self.files.closed(t)
        t.stats.lag_bytes = 0
        if not t.pending:
            self.retire(t)
        return produced
