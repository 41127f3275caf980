"""The Follower: discovers files, reads them in chunks, hands out batches, keeps checkpoints.

The consumer's iteration drives the reading (`__anext__` reads when nothing is ready), so
there is no producer task to outrun it, and a budget of unacknowledged bytes pauses
reading for a slow consumer. Acknowledgements move a per-file checkpoint only past
contiguous acknowledged batches; checkpoints are saved atomically at least every
`checkpoint_interval` and whenever half the budget has been acknowledged since the last
save, so after a kill -9 at most one budget (`buffer_bytes`) of lines is read again.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import stat
import time
from collections import deque
from fnmatch import fnmatch
from types import TracebackType
from typing import TYPE_CHECKING, Any

from podkit.follow.api import Batch, FileEvent, FileId, FollowConfig
from podkit.follow.checkpoint import CheckpointStore, Entry
from podkit.follow.discovery import discover, excluded, watch_dirs
from podkit.follow.identity import before_hash, prefix_matches
from podkit.follow.ledger import FileStats, FollowCollector, Ledger
from podkit.follow.multiline import MultilineJoiner
from podkit.follow.tailer import ACTIVE, CLOSED, ROTATED, Pending, Tailer
from podkit.logs import get_logger

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

MAX_CLOSED_ENTRIES = 4096
"""Finished files remembered (to recognise inode reuse); older ones are forgotten."""
MAX_IDLE_STATS = 1000
"""Stats (metric series) kept for paths with no open file; older ones are dropped."""
MIN_READ = 4096
_SEQUENCE = itertools.count()
"""Batch numbers, unique in the process: an ack for another follower's batch is ignored."""


class Follower:
    def __init__(
        self,
        config: FollowConfig,
        *,
        registry: CollectorRegistry | None = None,
        log: Any = None,
    ) -> None:
        self.config = config
        self.log = log if log is not None else get_logger("follow")
        self.ledger = Ledger()
        self._store = CheckpointStore(config.state_dir, config.state_name)
        self._persistent = self._store.path is not None
        self._tailers: dict[tuple[int, int], Tailer] = {}
        """Open files (ACTIVE or ROTATED), by dev+inode."""
        self._by_path: dict[str, Tailer] = {}
        """The ACTIVE tailer each followed path names."""
        self._closing: list[Tailer] = []
        """Closed files with batches still unacknowledged."""
        self._entries: dict[tuple[int, int], Entry] = {}
        """Saved progress of files that are not open (from disk, or finished)."""
        self._entry_paths: set[str] = set()
        self._ready: deque[Batch] = deque()
        self._pending: dict[int, tuple[Tailer, Pending]] = {}
        self._unacked = 0
        self._outstanding = 0
        """Bytes handed out past the saved checkpoints (all of them, without a state dir:
        past the acknowledged ones). Reading pauses when this reaches `buffer_bytes`, which
        bounds both memory and what a kill -9 can make us hand out again."""
        self._acked_unsaved = 0
        self._dirty = False
        self._last_persist = time.monotonic()
        self._first_scan = True
        self._scan_due = True
        self._next_scan = 0.0
        self._rr = 0
        self._failed_paths: set[str] = set()
        self._abs_include = [os.path.abspath(pat) for pat in config.include]
        """The include globs as absolute paths (the watcher reports absolute paths)."""
        self._draining = False
        self._done = False
        self._wake = asyncio.Event()
        self._finished = asyncio.Event()
        self._stop_watch = asyncio.Event()
        self._watch_task: asyncio.Task[None] | None = None
        self._watching: tuple[list[str], bool] | None = None
        self._save_failing = False
        self._exited = False
        if registry is not None:
            registry.register(FollowCollector(self.ledger, self._gauges))

    # --- public API ------------------------------------------------------------------

    @property
    def stats(self) -> dict[str, FileStats]:
        """Counters per followed path (bytes read, lines, rotations, truncations, lost, lag)."""
        self._refresh_lag()
        return self.ledger.files

    @property
    def unacked_bytes(self) -> int:
        return self._unacked

    @property
    def waiting_for_acks(self) -> bool:
        """Reading is paused until the consumer acknowledges: deliver what it holds now."""
        return self._budget_spent(self._budget_left())

    async def __aenter__(self) -> Follower:
        entries, error = self._store.load()
        if error:
            self.log.warning("checkpoint_unreadable", path=str(self._store.path), error=error)
        self._entries = {(e.dev, e.inode): e for e in entries}
        self._entry_paths = {e.path for e in entries if not e.closed}
        self._scan(time.monotonic())
        self._restart_watch()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop_watch.set()
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._watch_task
        self._done = True
        self._finished.set()
        self.persist()
        self._exited = True  # later acks and saves would only lose what was just saved
        for t in list(self._tailers.values()):
            t.close()
        self._pending.clear()

    def __aiter__(self) -> Follower:
        return self

    async def __anext__(self) -> Batch:
        while True:
            if self._ready:
                return self._ready.popleft()
            if self._done:
                raise StopAsyncIteration
            now = time.monotonic()
            if not self._draining and (self._scan_due or now >= self._next_scan):
                self._scan(now)
            if self._budget_spent(self._budget_left()):
                # A slow consumer: wait for acknowledgements instead of reading more.
                self._maybe_persist(now)
                await self._sleep(self.config.poll_interval)
                continue
            if self._poll(now):
                continue
            if self._ready:
                continue
            if self._draining:
                self._done = True
                self._finished.set()
                continue
            self._maybe_persist(now)
            await self._sleep(self._next_deadline(now) - now)

    def ack(self, batch: Batch) -> None:
        """The consumer delivered `batch`: its lines need not be read again after a restart."""
        item = self._pending.pop(batch.seq, None)
        if item is None or self._exited:
            return
        t, p = item
        p.acked = True
        self._unacked -= p.span
        if self._persistent:
            self._acked_unsaved += p.span
        else:
            self._outstanding -= p.span
        self._dirty = True
        t.advance()
        if t.state == CLOSED and not t.pending:
            self._retire(t)
        self._wake.set()
        if self._persistent and (
            self._acked_unsaved >= self.config.buffer_bytes // 2
            or time.monotonic() - self._last_persist >= self.config.checkpoint_interval
        ):
            self.persist()

    async def drain(self) -> None:
        """Read every file to its current end, flush partial lines, then end the iteration."""
        if not self._draining:
            self._scan(time.monotonic())  # files created just before the drain count too
            self._draining = True
            for t in self._tailers.values():
                with contextlib.suppress(OSError):
                    t.drain_target = os.fstat(t.fd).st_size
            self._wake.set()
        await self._finished.wait()

    def persist(self) -> None:
        """Save acknowledged progress now (atomically)."""
        if not self._persistent or self._exited:
            return
        entries = [t.entry() for t in self._tailers.values()]
        entries += [t.entry() for t in self._closing]
        entries += self._entries.values()
        try:
            self._store.save(entries)
        except OSError as exc:
            if not self._save_failing:  # once per failure spell, not every second
                self._save_failing = True
                self.log.error("checkpoint_save_failed", path=str(self._store.path), error=str(exc))
            # Reading goes on (a broken state dir must not stop the logs); only the bound
            # on what a kill -9 would repeat grows while saving fails.
            self._recount(saved=False)
            return
        if self._save_failing:
            self._save_failing = False
            self.log.info("checkpoint_save_recovered", path=str(self._store.path))
        self._recount(saved=True)
        self._dirty = False

    def _recount(self, *, saved: bool) -> None:
        """After a save: only bytes past the new checkpoints count against the budget."""
        total = 0
        for t in [*self._tailers.values(), *self._closing]:
            if saved:
                t.saved_offset = t.acked_offset
            total += max(t.last_end - (t.saved_offset if saved else t.acked_offset), 0)
        self._outstanding = total
        self._acked_unsaved = 0
        self._last_persist = time.monotonic()

    # --- the reading loop ------------------------------------------------------------

    def _budget_left(self) -> int:
        return self.config.buffer_bytes - self._outstanding

    def _budget_spent(self, left: int) -> bool:
        """Too little budget `left` for a useful read: wait for acknowledgements."""
        return left < min(MIN_READ, self.config.buffer_bytes)

    async def _sleep(self, seconds: float) -> None:
        """Until an ack, a watch event or a drain wakes us, or `seconds` pass."""
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(seconds, 0.001)):
                await self._wake.wait()

    def _next_deadline(self, now: float) -> float:
        deadline = min(self._next_scan, now + self.config.poll_interval)
        for t in self._tailers.values():
            if t.splitter.partial:
                deadline = min(deadline, t.last_data + self.config.flush_timeout)
            if t.multiline is not None and t.multiline.lines:
                deadline = min(deadline, t.last_data + t.multiline.flush_timeout)
        if self._dirty and self._persistent:
            deadline = min(deadline, self._last_persist + self.config.checkpoint_interval)
        return deadline

    def _maybe_persist(self, now: float) -> None:
        if self._dirty and now - self._last_persist >= self.config.checkpoint_interval:
            self.persist()

    def _poll(self, now: float) -> bool:
        """One chunk from every open file; True if anything was read or handed out."""
        tailers = list(self._tailers.values())
        if not tailers:
            return False
        produced = False
        start = self._rr % len(tailers)
        self._rr += 1
        for t in tailers[start:] + tailers[:start]:
            left = self._budget_left()
            if self._budget_spent(left):
                return True  # budget spent: the caller waits for acks
            if t.state != CLOSED and self._read(t, now, left):
                produced = True
        return produced

    def _read(self, t: Tailer, now: float, budget: int) -> bool:
        cfg = self.config
        at_target = t.drain_target is not None and t.read_pos >= t.drain_target
        data = b""
        if not at_target:
            try:
                data = os.pread(t.fd, min(cfg.batch_max_bytes, budget), t.read_pos)
            except OSError as exc:
                self.log.warning("file_read_failed", path=t.path, error=str(exc))
                return self._close(t, now, reason="read_error")
        if data:
            if t.fp_len and not t.same_content():
                # Rewritten in place (copytruncate, then more than we had read was written):
                # one 256-byte pread per chunk keeps us from reading mid-line garbage.
                return self._truncated(t, now)
            t.read_pos += len(data)
            t.last_data = now
            t.stats.bytes_read += len(data)
            lines: list[bytes] = []
            offsets: list[int] = []
            t.splitter.feed(data, lines, offsets)
            if t.fp_len < t.fingerprint_bytes:
                t.grow_fingerprint()
            self._emit(t, lines, offsets)
            return True  # progress even without a complete line: read on before sleeping
        # At the end of the file (or of what a drain reads).
        produced = False
        if now >= t.next_check or self._draining:
            t.next_check = now + cfg.poll_interval
            try:
                size = os.fstat(t.fd).st_size
            except OSError:
                size = t.read_pos
            if size < t.read_pos:
                return self._truncated(t, now)
            t.size_seen = max(size, t.read_pos)
            t.stats.lag_bytes = t.size_seen - t.read_pos
            if t.state == ACTIVE and not self._draining:
                self._check_rotation(t, now)
        idle = now - t.last_data
        flush_partial = t.splitter.partial and (self._draining or idle >= cfg.flush_timeout)
        ml = t.multiline
        flush_record = (
            ml is not None
            and bool(ml.lines or t.splitter.partial)
            and (self._draining or idle >= ml.flush_timeout)
        )
        if flush_partial or flush_record:
            lines, offsets = [], []
            if flush_partial:
                t.splitter.flush(lines, offsets)
            produced = self._emit(t, lines, offsets, flush=flush_record)
        if t.state == ROTATED and (self._draining or now >= t.deadline):
            return (
                self._close(t, now, reason="drained" if self._draining else "rotate_wait")
                or produced
            )
        if t.events and any(e.kind != "opened" for e in t.events):
            produced = self._emit(t, [], []) or produced
        return produced

    def _emit(
        self, t: Tailer, lines: list[bytes], offsets: list[int], *, flush: bool = False
    ) -> bool:
        """Wrap lines into batches (at most `batch_max_lines` each) and queue them."""
        splitter = t.splitter
        if splitter.cut_lost:
            t.stats.lines_cut += splitter.cuts
            self.ledger.lose(t.stats, t.event("line_cut", splitter.cut_lost, "line_cut"))
            splitter.cut_lost = 0
            splitter.cuts = 0
        end = splitter.end
        if t.multiline is not None:
            lines, offsets, end = t.multiline.feed(lines, offsets, end, flush=flush)
        if not lines and not any(e.kind != "opened" for e in t.events):
            return False  # "opened" alone waits for the file's first lines
        t.stats.lines += len(lines)
        step = self.config.batch_max_lines
        n = len(lines)
        if n <= step:
            self._queue(t, lines, offsets, end)
            return True
        for i in range(0, n, step):
            j = i + step
            self._queue(t, lines[i:j], offsets[i:j], offsets[j] if j < n else end)
        return True

    def _queue(self, t: Tailer, lines: list[bytes], offsets: list[int], end: int) -> None:
        seq = next(_SEQUENCE)
        span = max(end - t.last_end, 0)
        t.last_end = max(end, t.last_end)
        events = t.events
        t.events = []  # never share the list: later events must not show up in this batch
        p = Pending(seq, t.gen, end, span)
        t.pending.append(p)
        self._pending[seq] = (t, p)
        self._unacked += span
        self._outstanding += span
        self._ready.append(Batch(t.path, t.file_id, lines, offsets, end, seq, events))

    # --- rotation, truncation, close -------------------------------------------------

    def _check_rotation(self, t: Tailer, now: float) -> None:
        """Whether t's path still names t's file; if not, it was rotated away or deleted."""
        try:
            st = os.stat(t.path)
        except FileNotFoundError:
            st = None
        except OSError:
            return
        if st is not None and (st.st_dev, st.st_ino) == t.key:
            return
        try:
            deleted = os.fstat(t.fd).st_nlink == 0
        except OSError:
            deleted = True
        t.state = ROTATED
        t.deadline = now + self.config.rotate_wait
        if self._by_path.get(t.path) is t:
            del self._by_path[t.path]
        t.stats.rotations += 1
        t.event("deleted" if deleted else "rotated")
        self.log.info("file_deleted" if deleted else "file_rotated", path=t.path)
        self._scan_due = True  # pick up the replacement at once

    def _truncated(self, t: Tailer, now: float) -> bool:
        """Copytruncate: hand out what was read, record what was lost, restart at 0."""
        lines: list[bytes] = []
        offsets: list[int] = []
        t.splitter.flush(lines, offsets)
        self._emit(t, lines, offsets, flush=True)
        lost = max(t.size_seen - t.read_pos, 0)
        t.stats.truncations += 1
        self.log.info("file_truncated", path=t.path, offset=t.read_pos, lost_bytes=lost)
        t.restart_at_zero()
        ev = t.event("truncated", lost, "truncated_unread" if lost else "")
        self.ledger.lose(t.stats, ev)
        t.last_data = now
        self._emit(t, [], [])
        return True

    def _close(self, t: Tailer, now: float, reason: str) -> bool:
        lines: list[bytes] = []
        offsets: list[int] = []
        t.splitter.flush(lines, offsets)
        t.event("closed", 0, reason)  # the file is done: a consumer may drop its state
        produced = self._emit(t, lines, offsets, flush=True)
        with contextlib.suppress(OSError):
            t.deleted = os.fstat(t.fd).st_nlink == 0
        t.close()
        if self._tailers.get(t.key) is t:
            del self._tailers[t.key]
        if self._by_path.get(t.path) is t:
            del self._by_path[t.path]
        t.stats.lag_bytes = 0
        if t.pending:
            self._closing.append(t)
        else:
            self._retire(t)
        return produced

    def _retire(self, t: Tailer) -> None:
        with contextlib.suppress(ValueError):
            self._closing.remove(t)
        if t.deleted:
            # Its inode is free now: a file that gets it next is new whatever it contains.
            self._entries.pop(t.key, None)
        else:
            self._entries[t.key] = t.entry()
        self._dirty = True
        closed = [k for k, e in self._entries.items() if e.closed]
        for key in closed[: max(len(closed) - MAX_CLOSED_ENTRIES, 0)]:
            del self._entries[key]
        self._prune_stats()

    def _prune_stats(self) -> None:
        """Bound the metric series: forget the oldest paths nothing is open for any more."""
        files = self.ledger.files
        if len(files) <= MAX_IDLE_STATS:
            return
        live = {id(t.stats) for t in [*self._tailers.values(), *self._closing]}
        idle = [path for path, s in files.items() if id(s) not in live]
        for path in idle[: max(len(idle) - MAX_IDLE_STATS, 0)]:
            del files[path]

    # --- discovery -------------------------------------------------------------------

    def _scan(self, now: float) -> None:
        self._scan_due = False
        self._next_scan = now + self.config.refresh_interval
        opened = False
        for path in discover(self.config.include, self.config.exclude):
            try:
                st = os.stat(path)
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            t = self._tailers.get((st.st_dev, st.st_ino))
            if t is not None:
                if t.path != path:
                    self._renamed(t, path, now)
                continue
            cur = self._by_path.get(path)
            if cur is not None:
                self._check_rotation(cur, now)
                if self._by_path.get(path) is cur:
                    continue
            opened = self._open(path, now) is not None or opened
        if self._first_scan:
            self._first_scan = False
            self._recover_orphans(now)
            opened = True
        else:
            self._restart_watch()
        if opened:
            # Save new files at once: after a crash a file started at its tail must not be
            # started at a later tail, and one renamed away must still be looked for.
            self.persist()

    def _renamed(self, t: Tailer, path: str, now: float) -> None:
        """An open file found under another followed name: same file, new name."""
        other = self._by_path.get(path)
        if other is not None and other is not t:
            self._check_rotation(other, now)
            if self._by_path.get(path) is other:
                return
        if t.state == ACTIVE and self._by_path.get(t.path) is t:
            # Noticed the rename before noticing the rotation.
            del self._by_path[t.path]
            t.stats.rotations += 1
            t.event("rotated")
            self._scan_due = True
        self.log.info("file_renamed", path=t.path, new_path=path)
        t.path = path
        t.state = ACTIVE
        self._by_path[path] = t

    def _open(self, path: str, now: float, *, rotated: bool = False) -> Tailer | None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            if path not in self._failed_paths:
                self._failed_paths.add(path)
                self.log.warning("file_open_failed", path=path, error=str(exc))
            return None
        self._failed_paths.discard(path)
        try:
            st = os.fstat(fd)
            key = (st.st_dev, st.st_ino)
            if not stat.S_ISREG(st.st_mode) or key in self._tailers:
                os.close(fd)
                return None
            start, events = self._resume_point(path, fd, st)
        except OSError as exc:
            os.close(fd)
            self.log.warning("file_open_failed", path=path, error=str(exc))
            return None
        stats = self.ledger.file(path)
        t = Tailer(
            path,
            fd,
            st,
            start,
            stats,
            max_line=self.config.max_line_bytes,
            fingerprint_bytes=self.config.fingerprint_bytes,
        )
        if self.config.multiline is not None:
            t.multiline = MultilineJoiner(self.config.multiline, self.config.max_line_bytes)
        t.last_data = now
        t.last_end = start
        t.events.append(FileEvent("opened", path, t.file_id))
        for ev in events:
            t.events.append(ev)
            self.ledger.lose(self.ledger.file(ev.path), ev)
            if ev.kind == "truncated" and ev.path == path:
                stats.truncations += 1
        self._tailers[key] = t
        if rotated:
            t.state = ROTATED
            t.deadline = now + self.config.rotate_wait
        else:
            self._by_path[path] = t
        self.log.info("file_opened", path=path, offset=start, rotated=rotated)
        return t

    def _resume_point(self, path: str, fd: int, st: os.stat_result) -> tuple[int, list[FileEvent]]:
        """Where to start reading a newly opened file, and what was lost while we were away."""
        entry = self._entries.pop((st.st_dev, st.st_ino), None)
        if entry is not None:
            old_id = FileId(entry.dev, entry.inode, entry.fp)
            unread = max(entry.size - entry.offset, 0)
            if prefix_matches(fd, entry.fp_len, entry.fp):
                if st.st_size >= entry.offset and _before_matches(fd, entry):
                    return entry.offset, []
                # Truncated while we were not looking (or stopped).
                ev = FileEvent("truncated", path, old_id, unread, "truncated_unread")
                return 0, [ev]
            # The inode holds other content now.
            if entry.path == path:
                kind, reason = "truncated", "truncated_unread"
            else:
                kind, reason = "deleted", "deleted_unread"
            if unread or not entry.closed:
                return 0, [FileEvent(kind, entry.path, old_id, unread, reason)]  # type: ignore[arg-type]
            return 0, []
        if self._first_scan and self.config.read_from == "tail" and path not in self._entry_paths:
            return st.st_size, []
        # A file that appeared while running (or replaced one we knew) is new: all of it.
        return 0, []

    def _recover_orphans(self, now: float) -> None:
        """Checkpointed files no glob matches any more: renamed while stopped, or gone."""
        for key, entry in list(self._entries.items()):
            if entry.closed:
                continue
            found = _find_inode(os.path.dirname(entry.path) or ".", entry.dev, entry.inode)
            if found is not None and self._open(found, now, rotated=True) is not None:
                continue
            self._entries.pop(key, None)
            unread = max(entry.size - entry.offset, 0)
            old_id = FileId(entry.dev, entry.inode, entry.fp)
            ev = FileEvent(
                "rotated", entry.path, old_id, unread, "rotated_away_unread" if unread else ""
            )
            stats = self.ledger.file(entry.path)
            self.ledger.lose(stats, ev)
            self.log.info("file_gone", path=entry.path, lost_bytes=unread)
            self._ready.append(Batch(entry.path, old_id, [], [], entry.offset, -1, [ev]))
        self._dirty = True

    # --- watching --------------------------------------------------------------------

    def _restart_watch(self) -> None:
        """(Re)start the watcher when the directories to watch changed (one was created)."""
        if not self.config.watch or self._draining or self._done:
            return
        dirs = watch_dirs(self.config.include)
        if dirs == self._watching:
            return
        self._watching = dirs
        if self._watch_task is not None:
            self._stop_watch.set()
            self._watch_task.cancel()
        self._stop_watch = asyncio.Event()
        self._watch_task = asyncio.create_task(
            self._watch(*dirs, stop=self._stop_watch), name="follow-watch"
        )

    async def _watch(self, dirs: list[str], recursive: bool, *, stop: asyncio.Event) -> None:
        """Wake the loop on file-system events; polling still runs as the fallback."""
        try:
            from watchfiles import Change, awatch
        except ImportError:
            return
        if not dirs:
            return
        try:
            async for changes in awatch(
                *dirs,
                watch_filter=None,
                recursive=recursive,
                debounce=50,
                step=10,
                stop_event=stop,
                rust_timeout=1000,
                yield_on_timeout=False,
            ):
                known = self._by_path
                if any(
                    c != Change.modified or (p not in known and self._wanted(p)) for c, p in changes
                ):
                    self._scan_due = True  # a file to pick up (or one created before we watched)
                self._wake.set()
        except Exception as exc:  # the watcher is an optimisation; polling carries on
            self.log.warning("watch_failed", error=str(exc))

    def _wanted(self, path: str) -> bool:
        """Whether a path the watcher reported could match the globs (fnmatch: cheap)."""
        return any(fnmatch(path, pat) for pat in self._abs_include) and not excluded(
            path, self.config.exclude
        )

    def _gauges(self) -> dict[str, tuple[str, float]]:
        self._refresh_lag()
        return {
            "files_open": ("files open for reading", float(len(self._tailers))),
            "unacked_bytes": ("bytes handed out and not acknowledged", float(self._unacked)),
            "budget_bytes": (
                "--buffer-bytes: unacknowledged bytes allowed",
                float(self.config.buffer_bytes),
            ),
        }

    def _refresh_lag(self) -> None:
        for t in list(self._tailers.values()):
            with contextlib.suppress(OSError):
                t.stats.lag_bytes = max(os.fstat(t.fd).st_size - t.read_pos, 0)


def _before_matches(fd: int, entry: Entry) -> bool:
    if entry.before_len == 0:
        return True
    return before_hash(fd, entry.offset, entry.before_len) == (entry.before_len, entry.before)


def _find_inode(directory: str, dev: int, inode: int) -> str | None:
    try:
        with os.scandir(directory) as it:
            for item in it:
                if (
                    item.inode() == inode
                    and item.is_file(follow_symlinks=False)
                    and item.stat(follow_symlinks=False).st_dev == dev
                ):
                    return item.path
    except OSError:
        return None
    return None
