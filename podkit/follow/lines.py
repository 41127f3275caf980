"""Bytes to lines: split read chunks at newlines, hold the partial last line, cut long lines.

One `LineSplitter` per open file. It works on whole chunks (`bytes.split`), so the cost per
line is one bytes object and one offset; nothing decodes, so invalid UTF-8 and NUL bytes
pass through unchanged.
"""

from __future__ import annotations

from itertools import accumulate

from podkit.follow.api import CUT_MARKER

_plus_one = (1).__add__


class LineSplitter:
    """Turns consecutive chunks of one file into complete lines and their start offsets.

    `end` is the offset just past the last line handed out (or past bytes discarded from a
    cut line): the checkpoint may move there once those lines are acknowledged.
    A line longer than `max_line` is handed out at once as its first `max_line` bytes plus
    `CUT_MARKER`; the rest, up to its newline, is discarded and counted in `cut_lost`.
    """

    __slots__ = (
        "cut_lost",
        "cuts",
        "discarding",
        "end",
        "max_line",
        "partial",
        "partial_start",
        "pos",
    )

    def __init__(self, max_line: int, start: int = 0) -> None:
        self.max_line = max_line
        self.pos = start
        """Offset of the next byte `feed` expects."""
        self.end = start
        self.partial = b""
        self.partial_start = start
        self.discarding = False
        self.cut_lost = 0
        self.cuts = 0

    def feed(self, data: bytes, lines: list[bytes], offsets: list[int]) -> None:
        """Split `data` (the bytes at `pos`), appending complete lines and offsets."""
        base = self.pos
        self.pos = base + len(data)
        if self.discarding:
            i = data.find(b"\n")
            if i < 0:
                self.cut_lost += len(data)
                return
            self.cut_lost += i
            self.discarding = False
            data = data[i + 1 :]
            base += i + 1
            self.end = base
        if not data:
            return
        if self.partial:
            i = data.find(b"\n")
            if i < 0:
                self._hold(data, lines, offsets)
                return
            self._emit(self.partial + data[:i], self.partial_start, lines, offsets)
            self.partial = b""
            data = data[i + 1 :]
            base += i + 1
            self.end = base
        chunk = data.split(b"\n")
        tail = chunk.pop()
        if chunk:
            starts = list(accumulate(map(_plus_one, map(len, chunk)), initial=base))
            self.end = starts.pop()
            if max(map(len, chunk)) > self.max_line:
                chunk = [self._cut(line) if len(line) > self.max_line else line for line in chunk]
            lines += chunk
            offsets += starts
        if tail:
            self.partial_start = self.end
            self._hold(tail, lines, offsets)

    def flush(self, lines: list[bytes], offsets: list[int]) -> None:
        """Hand out the partial last line (flush timeout, drain, truncation)."""
        if self.partial:
            lines.append(self.partial)
            offsets.append(self.partial_start)
            self.partial = b""
            self.end = self.pos

    def _hold(self, data: bytes, lines: list[bytes], offsets: list[int]) -> None:
        partial = self.partial + data if self.partial else data
        if len(partial) > self.max_line:
            # Hand the cut line out now: memory stays bounded however long the line gets.
            lines.append(self._cut(partial))
            offsets.append(self.partial_start)
            self.partial = b""
            self.discarding = True
        else:
            self.partial = partial

    def _emit(self, line: bytes, start: int, lines: list[bytes], offsets: list[int]) -> None:
        lines.append(self._cut(line) if len(line) > self.max_line else line)
        offsets.append(start)

    def _cut(self, line: bytes) -> bytes:
        self.cuts += 1
        self.cut_lost += len(line) - self.max_line
        return line[: self.max_line] + CUT_MARKER
