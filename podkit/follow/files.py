"""The follower's table of files: open ones by dev+inode and by path, closed ones awaiting acks."""

from __future__ import annotations

from podkit.follow.tailer import CLOSED, Tailer


class FileTable:
    __slots__ = ("by_path", "closing", "open")

    def __init__(self) -> None:
        self.open: dict[tuple[int, int], Tailer] = {}
        """Open files (ACTIVE or ROTATED), by dev+inode."""
        self.by_path: dict[str, Tailer] = {}
        """The ACTIVE tailer each followed path names."""
        self.closing: list[Tailer] = []
        """Closed files with batches still unacknowledged."""

    def add(self, t: Tailer, *, active: bool) -> None:
        self.open[t.key] = t
        if active:
            self.by_path[t.path] = t

    def unname(self, t: Tailer) -> None:
        """`t`'s path no longer names it (rotated away, deleted, renamed)."""
        if self.by_path.get(t.path) is t:
            del self.by_path[t.path]

    def name(self, t: Tailer, path: str) -> None:
        self.by_path[path] = t

    def closed(self, t: Tailer) -> None:
        """`t` was closed: it stays (in `closing`) while batches of it are unacknowledged."""
        if self.open.get(t.key) is t:
            del self.open[t.key]
        self.unname(t)
        if t.pending:
            self.closing.append(t)

    def finished(self, t: Tailer) -> bool:
        """Whether a closed `t` has nothing unacknowledged left (then it is dropped)."""
        if t.state != CLOSED or t.pending:
            return False
        if t in self.closing:
            self.closing.remove(t)
        return True

    def all(self) -> list[Tailer]:
        return [*self.open.values(), *self.closing]
