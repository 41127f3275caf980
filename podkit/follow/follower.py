"""The Follower: the consumer-facing loop that ties the follower's collaborators together.

The consumer's iteration drives the reading (`__anext__` reads when nothing is ready), so
there is no producer task to outrun it, and a budget of unacknowledged bytes pauses
reading for a slow consumer. The work itself is done by small collaborators:

- `Scanner` (scanner.py): globs, resume points, renames, rotations, copytruncate copies;
- `Reader` (reader.py): chunks to lines to batches, truncation, closing a file;
- `AckBook` (book.py): acknowledgements, the read budget, checkpoints;
- `Watcher` (watcher.py): watchfiles events that wake the loop;
- `Tailer` (tailer.py): one file's state, changed only through its methods.

A keeper task only watches (scans, file sizes) while the consumer is away: it reads
nothing, so the budget still bounds what is handed out.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import deque
from types import TracebackType
from typing import TYPE_CHECKING, Any

from podkit.follow.api import Batch, FollowConfig
from podkit.follow.book import AckBook
from podkit.follow.files import FileTable
from podkit.follow.ledger import FileStats, FollowCollector, Ledger
from podkit.follow.reader import Reader
from podkit.follow.scanner import Scanner
from podkit.follow.tailer import Tailer
from podkit.follow.watcher import Watcher
from podkit.logs import get_logger

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from podkit.runtime import Runtime

MAX_IDLE_STATS = 1000
"""Stats (metric series) kept for paths with no open file; older ones are dropped."""


class Follower:
    def __init__(
        self,
        config: FollowConfig,
        *,
        registry: CollectorRegistry | None = None,
        log: Any = None,
        runtime: Runtime | None = None,
    ) -> None:
        """`runtime` (a helper's): its registry and log by default, and its readiness,
        held unready while checkpoints cannot be saved. Either way an unusable
        --state-dir at start is a StartupError (exit 1)."""
        self.config = config
        self.runtime = runtime
        if runtime is not None:
            registry = registry if registry is not None else runtime.registry
            log = log if log is not None else runtime.log
        self.log = log if log is not None else get_logger("follow")
        self.ledger = Ledger()
        self._files = FileTable()
        self._ready: deque[Batch] = deque()
        self._book = AckBook(config, self._files, self.log)
        if runtime is not None:
            self._book.on_save_trouble = lambda reason: runtime.hold_ready("checkpoints", reason)
        self._scanner = Scanner(config, self._files, self._book, self.ledger, self.log, self._ready)
        self._reader = Reader(
            config,
            self._files,
            self._book,
            self._scanner,
            self.ledger,
            self.log,
            self._ready,
            self._retire,
        )
        self._watcher = Watcher(
            config,
            self.log,
            known=self._files.by_path.__contains__,
            on_change=self._changed,
            on_moved=self._scanner.renames.flag,
        )
        self._draining = False
        self._done = False
        self._wake = asyncio.Event()
        self._keep_wake = asyncio.Event()
        self._keeper: asyncio.Task[None] | None = None
        self._finished = asyncio.Event()
        if registry is not None:
            registry.register(FollowCollector(self.ledger, self._gauges))

    # --- public API ------------------------------------------------------------------

    @property
    def stats(self) -> dict[str, FileStats]:
        """Counters per followed path (bytes read, lines, rotations, truncations, lost, lag)."""
        self._refresh_lag()
        return self.ledger.files

    @property
    def files_open(self) -> int:
        """Files being read now (a rotated-away file still being finished counts too)."""
        return len(self._files.open)

    @property
    def unacked_bytes(self) -> int:
        return self._book.unacked

    @property
    def waiting_for_acks(self) -> bool:
        """Reading is paused until the consumer acknowledges: deliver what it holds now."""
        return self._book.budget_spent()

    @property
    def _tailers(self) -> dict[tuple[int, int], Tailer]:
        """Open files by dev+inode (tests look at it)."""
        return self._files.open

    @property
    def _stop_watch(self) -> asyncio.Event:
        return self._watcher.stop_event

    async def __aenter__(self) -> Follower:
        self.check_state_dir()
        self._book.load()
        self._scan(time.monotonic())
        self._restart_watch()
        self._keeper = asyncio.create_task(self._keep(), name="follow-keeper")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._watcher.stop()
        self._done = True
        self._finished.set()
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
        self.persist()
        self._book.closed = True
        for t in list(self._files.open.values()):
            t.close()
        self._book.pending.clear()

    def __aiter__(self) -> Follower:
        return self

    async def __anext__(self) -> Batch:
        book = self._book
        scanner = self._scanner
        while True:
            if self._ready:
                return self._ready.popleft()
            if self._done:
                raise StopAsyncIteration
            now = time.monotonic()
            if not self._draining and (scanner.due or now >= scanner.next_scan):
                self._scan(now)
            if book.budget_spent():
                # A slow consumer: wait for acknowledgements instead of reading more (the
                # keeper task goes on looking at the files meanwhile).
                book.maybe_save(now)
                self._look_at_sizes(now)
                await self._sleep(self.config.poll_interval)
                continue
            if self._reader.poll(now):
                continue
            if self._ready:
                continue
            if self._draining:
                self._done = True
                self._finished.set()
                continue
            book.maybe_save(now)
            await self._sleep(self._next_deadline(now) - now)

    def ack(self, batch: Batch) -> None:
        """The consumer delivered `batch`: its lines need not be read again after a restart."""
        t = self._book.ack(batch)
        if t is None:
            return
        if self._files.finished(t):
            self._retire(t)
        self._wake.set()
        if self._book.save_due():
            self.persist()

    async def drain(self) -> None:
        """Read every file to its current end, flush partial lines, then end the iteration."""
        if not self._draining:
            self._scan(time.monotonic())  # files created just before the drain count too
            self._draining = True
            self._reader.draining = True
            for t in self._files.open.values():
                with contextlib.suppress(OSError):
                    t.drain_target = os.fstat(t.fd).st_size
            self._wake.set()
        await self._finished.wait()

    def persist(self) -> None:
        """Save acknowledged progress now (atomically)."""
        self._book.save()

    def check_state_dir(self) -> None:
        """Refuse to start when checkpoints could never be saved (read-only, not a directory).

        A helper that read on without checkpoints would look healthy and repeat everything
        after each restart; a state dir that fails later holds readiness instead (see
        `runtime`), since lines are still being delivered meanwhile.
        """
        try:
            self._book.store.check()
        except OSError as exc:
            from podkit.runtime import StartupError  # only on this path: keeps imports light

            raise StartupError(
                "state_dir_unusable",
                setting="--state-dir",
                state_dir=str(self.config.state_dir),
                error=exc.strerror or str(exc),
            ) from None

    # --- the loop's helpers ----------------------------------------------------------

    def _scan(self, now: float) -> None:
        first = self._scanner.first
        opened = self._scanner.scan(now)
        if not first:
            self._restart_watch()
        if opened:
            # Save new files at once: after a crash a file started at its tail must not be
            # started at a later tail, and one renamed away must still be looked for.
            self.persist()

    def _restart_watch(self) -> None:
        if not self._draining and not self._done:
            self._watcher.restart()

    def _changed(self, rescan: bool) -> None:
        if rescan:
            self._scanner.due = True  # a file to pick up (or one created before we watched)
            self._keep_wake.set()
        self._wake.set()

    async def _keep(self) -> None:
        """Watch the files while the consumer is away (an output that takes nothing holds
        it in its delivery, not in `__anext__`): the budget stops reading, not watching.
        New and renamed files are opened at once, and a truncation is counted when it
        happens, up to the size last seen, instead of when reading resumes."""
        while not self._done:
            self._keep_wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.poll_interval):
                    await self._keep_wake.wait()
            if self._done:
                break
            try:
                now = time.monotonic()
                scanner = self._scanner
                if not self._draining and (scanner.due or now >= scanner.next_scan):
                    self._scan(now)
                self._look_at_sizes(now)
            except Exception:  # watching is a safety net: never let it end the follower
                self.log.exception("follow_keeper_failed")
            if self._ready:
                self._wake.set()

    async def _sleep(self, seconds: float) -> None:
        """Until an ack, a watch event or a drain wakes us, or `seconds` pass."""
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(seconds, 0.001)):
                await self._wake.wait()

    def _next_deadline(self, now: float) -> float:
        deadline = min(self._scanner.next_scan, now + self.config.poll_interval)
        for t in self._files.open.values():
            if t.splitter.partial:
                deadline = min(deadline, t.last_data + self.config.flush_timeout)
            if t.multiline is not None and t.multiline.lines:
                deadline = min(deadline, t.last_data + t.multiline.flush_timeout)
        save = self._book.save_deadline()
        if save is not None:
            deadline = min(deadline, save)
        return deadline

    def _retire(self, t: Tailer) -> None:
        """A closed file with nothing unacknowledged: into the checkpoint's memory."""
        self._files.finished(t)
        self._book.retire(t)
        self._scanner.renames.remember(t.fp_len, t.fp)
        live = {id(x.stats) for x in self._files.all()}
        self.ledger.prune(live, MAX_IDLE_STATS)

    def _gauges(self) -> dict[str, tuple[str, float]]:
        self._refresh_lag()
        return {
            "files_open": ("files open for reading", float(len(self._files.open))),
            "unacked_bytes": ("bytes handed out and not acknowledged", float(self._book.unacked)),
            "budget_bytes": (
                "--buffer-bytes: unacknowledged bytes allowed",
                float(self.config.buffer_bytes),
            ),
        }

    def _refresh_lag(self) -> None:
        self._look_at_sizes(time.monotonic())

    def _look_at_sizes(self, now: float) -> None:
        """Look at each open file's size: the lag gauge, the ledger's "size seen", and a
        file that shrank (truncated: counted now, even while reading waits for acks)."""
        for t in list(self._files.open.values()):
            if t.fd < 0:
                continue
            try:
                size = os.fstat(t.fd).st_size
            except OSError:
                continue
            if size >= t.size_seen:
                t.saw_size(size)
            elif self._done or self._book.closed or t.is_copy:
                t.stats.lag_bytes = max(size - t.read_pos, 0)
            else:
                self._reader.truncated(t, now)
                self._wake.set()
