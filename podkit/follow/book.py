"""The ack book: batches handed out and not acknowledged, the read budget, the checkpoints.

Acknowledgements move a file's checkpoint only past contiguous acknowledged batches.
Checkpoints are saved atomically at least every `checkpoint_interval` and whenever half
the budget has been acknowledged since the last save, so after a kill -9 at most one
budget (`buffer_bytes`) of lines is read again.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

from podkit.follow.api import Batch, FollowConfig
from podkit.follow.checkpoint import CheckpointStore, Entry
from podkit.follow.files import FileTable
from podkit.follow.tailer import InFlight, Tailer

MAX_CLOSED_ENTRIES = 4096
"""Finished files remembered (to recognise inode reuse); older ones are forgotten."""
MIN_READ = 4096
_SEQUENCE = itertools.count()
"""Batch numbers, unique in the process: an ack for another follower's batch is ignored."""


class AckBook:
    def __init__(self, config: FollowConfig, files: FileTable, log: Any) -> None:
        self.config = config
        self.files = files
        self.log = log
        self.store = CheckpointStore(config.state_dir, config.state_name)
        self.persistent = self.store.path is not None
        self.entries: dict[tuple[int, int], Entry] = {}
        """Saved progress of files that are not open (from disk, or finished)."""
        self.entry_paths: set[str] = set()
        """Paths the loaded checkpoint knew (they never start at their tail)."""
        self.seen: Callable[[], list[tuple[int, str]]] = list
        """Fingerprints of content read before, saved with the checkpoints (the scanner's)."""
        self.listed_at: float | None = None
        """Wall time of the last listing of the followed directories (loaded, then the
        scanner's): files changed since then that no checkpoint knows are new."""
        self.pending: dict[int, tuple[Tailer, InFlight]] = {}
        self.unacked = 0
        self.outstanding = 0
        """Bytes handed out past the saved checkpoints (all of them, without a state dir:
        past the acknowledged ones). Reading pauses when this reaches `buffer_bytes`, which
        bounds both memory and what a kill -9 can make us hand out again."""
        self.acked_unsaved = 0
        self.dirty = False
        self.last_save = time.monotonic()
        self.save_failing = False
        self.on_save_trouble: Callable[[str | None], None] | None = None
        """Told why saving fails (once per failure spell), and None once it works again."""
        self.closed = False
        """The follower exited: later acks and saves would only lose what was just saved."""

    def load(self) -> None:
        entries, error = self.store.load()
        self.listed_at = self.store.listed_at
        if error:
            self.log.warning("checkpoint_unreadable", path=str(self.store.path), error=error)
        self.entries = {(e.dev, e.inode): e for e in entries}
        self.entry_paths = {e.path for e in entries if not e.closed}

    # --- the budget ------------------------------------------------------------------

    def budget_left(self) -> int:
        return self.config.buffer_bytes - self.outstanding

    def budget_spent(self, left: int | None = None) -> bool:
        """Too little budget `left` for a useful read: wait for acknowledgements."""
        if left is None:
            left = self.budget_left()
        return left < min(MIN_READ, self.config.buffer_bytes)

    # --- batches out, acks in --------------------------------------------------------

    def hand_out(self, t: Tailer, lines: list[bytes], offsets: list[int], end: int) -> Batch:
        seq = next(_SEQUENCE)
        p, events = t.hand_out(seq, end)
        self.pending[seq] = (t, p)
        self.unacked += p.span
        self.outstanding += p.span
        return Batch(t.path, t.file_id, lines, offsets, end, seq, events)

    def moved(self, t: Tailer) -> None:
        """`t` took over another file's unacknowledged batches (a copytruncate copy)."""
        for p in t.pending:
            self.pending[p.seq] = (t, p)

    def ack(self, batch: Batch) -> Tailer | None:
        """Record the ack; the file whose checkpoint may have moved (None: not ours)."""
        item = self.pending.pop(batch.seq, None)
        if item is None or self.closed:
            return None
        t, p = item
        p.acked = True
        self.unacked -= p.span
        if self.persistent:
            self.acked_unsaved += p.span
        else:
            self.outstanding -= p.span
        self.dirty = True
        t.advance()
        return t

    def save_due(self) -> bool:
        """After an ack: half the budget acknowledged or the interval passed."""
        return self.persistent and (
            self.acked_unsaved >= self.config.buffer_bytes // 2
            or time.monotonic() - self.last_save >= self.config.checkpoint_interval
        )

    # --- checkpoints -----------------------------------------------------------------

    def save(self) -> None:
        """Save acknowledged progress now (atomically)."""
        if not self.persistent or self.closed:
            return
        tailers = self.files.all()
        entries = [t.entry() for t in tailers]
        entries += self.entries.values()
        try:
            self.store.save(entries, self.listed_at, self.seen())
        except OSError as exc:
            if not self.save_failing:  # once per failure spell, not every second
                self.save_failing = True
                self.log.error("checkpoint_save_failed", path=str(self.store.path), error=str(exc))
                if self.on_save_trouble is not None:
                    self.on_save_trouble(
                        f"checkpoints cannot be written to --state-dir {self.config.state_dir}: "
                        f"{exc.strerror or exc}"
                    )
            # Reading goes on (a broken state dir must not stop the logs); only the bound
            # on what a kill -9 would repeat grows while saving fails.
            self._recount(tailers, saved=False)
            return
        if self.save_failing:
            self.save_failing = False
            self.log.info("checkpoint_save_recovered", path=str(self.store.path))
            if self.on_save_trouble is not None:
                self.on_save_trouble(None)
        self._recount(tailers, saved=True)
        self.dirty = False

    def _recount(self, tailers: list[Tailer], *, saved: bool) -> None:
        """After a save: only bytes past the new checkpoints count against the budget."""
        total = 0
        for t in tailers:
            if saved:
                t.saved()
            total += max(t.last_end - (t.saved_offset if saved else t.acked_offset), 0)
        self.outstanding = total
        self.acked_unsaved = 0
        self.last_save = time.monotonic()

    def maybe_save(self, now: float) -> None:
        if self.dirty and now - self.last_save >= self.config.checkpoint_interval:
            self.save()

    def save_deadline(self) -> float | None:
        if self.dirty and self.persistent:
            return self.last_save + self.config.checkpoint_interval
        return None

    def retire(self, t: Tailer) -> None:
        """A closed file with everything acknowledged: remember where it ended."""
        if t.deleted:
            # Its inode is free now: a file that gets it next is new whatever it contains.
            self.entries.pop(t.key, None)
        else:
            self.entries[t.key] = t.entry()
        self.dirty = True
        closed = [k for k, e in self.entries.items() if e.closed]
        for key in closed[: max(len(closed) - MAX_CLOSED_ENTRIES, 0)]:
            del self.entries[key]

    def take(self, key: tuple[int, int]) -> Entry | None:
        """The saved progress of a file being opened (it is the tailer's from now on)."""
        return self.entries.pop(key, None)
