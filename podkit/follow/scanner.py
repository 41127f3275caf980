"""The scanner: which files to follow, where to resume each, and what became of the rest.

It matches the globs, opens new files at their resume point (from the checkpoint, or the
head/tail rule), notices renames and rotations, finds files renamed while the follower
was stopped, and finds the copy a copytruncate left (`find_copy`), so the lines only the
copy holds are read from it instead of being lost.
"""

from __future__ import annotations

import os
import stat
import time
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any

from podkit.follow.api import Batch, FileEvent, FileId, FollowConfig
from podkit.follow.book import AckBook
from podkit.follow.checkpoint import Entry
from podkit.follow.discovery import discover
from podkit.follow.files import FileTable
from podkit.follow.identity import before_hash, prefix_hash, prefix_matches
from podkit.follow.ledger import FileStats, Ledger
from podkit.follow.multiline import MultilineJoiner
from podkit.follow.renames import Found, Known, RenameFinder, Short
from podkit.follow.tailer import ACTIVE, Tailer


class Scanner:
    def __init__(
        self,
        config: FollowConfig,
        files: FileTable,
        book: AckBook,
        ledger: Ledger,
        log: Any,
        ready: deque[Batch],
    ) -> None:
        self.config = config
        self.files = files
        self.book = book
        self.ledger = ledger
        self.log = log
        self.ready = ready
        self.first = True
        self.due = True
        """Rescan at the next turn (a rotation or a watch event asked for it)."""
        self.next_scan = 0.0
        self.failed_paths: set[str] = set()
        self.renames = RenameFinder(config)
        book.seen = self.renames.recent

    def scan(self, now: float) -> bool:
        """Match the globs; open what is new, and the generations renamed out of the
        globs before we opened them. True if a file was opened (or first scan)."""
        self.due = False
        self.next_scan = now + self.config.refresh_interval
        files = self.files
        opened = False
        first = self.first
        since = self.book.listed_at if first else self.renames.listed_at
        if first:
            self._seed_renames()
        wall = time.time()
        matched: dict[str, os.stat_result] = {}
        for path in discover(self.config.include, self.config.exclude):
            try:
                st = os.stat(path)
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            matched[path] = st
            t = files.open.get((st.st_dev, st.st_ino))
            if t is not None:
                if t.path != path and not t.is_copy:
                    self.renamed(t, path, now)
                continue
            cur = files.by_path.get(path)
            if cur is not None:
                self.check_rotation(cur, now)
                if files.by_path.get(path) is cur:
                    continue
            if not self.first and self.copy_of_open(path, st):
                continue  # a copy (copytruncate's): read from it only if the file is truncated
            opened = self.open(path, now) is not None or opened
        if self.first:
            self.first = False
            self.recover_orphans(now)
            opened = True
        return self.find_renamed(matched, now, wall, since) or opened

    # --- generations renamed out of the globs before we opened them ------------------

    def _seed_renames(self) -> None:
        """At start the checkpoints stand in for the last listing of the matched names."""
        if self.book.listed_at is not None:
            self.renames.seed_fixed()
        for n, fp in self.book.store.seen:
            self.renames.remember(n, fp)
        for entry in self.book.entries.values():
            # Content we knew: a copy of it (plain or compressed) is not a new generation.
            self.renames.remember(entry.fp_len, entry.fp)
            if not entry.closed and self.renames.matches(entry.path):
                directory = os.path.dirname(entry.path) or "."
                self.renames.seed(directory, {os.path.basename(entry.path): entry.inode})

    def find_renamed(
        self, matched: dict[str, os.stat_result], now: float, wall: float, since: float | None
    ) -> bool:
        cache: list[Known] = []

        def known() -> Known:
            if not cache:  # built only when a listing has a candidate
                tailers = self.files.all()
                entries = self.book.entries.values()
                keys = {t.key for t in tailers} | {(e.dev, e.inode) for e in entries}
                fps = {(t.fp_len, t.fp) for t in tailers} | {(e.fp_len, e.fp) for e in entries}
                n = self.config.fingerprint_bytes
                short: list[Short] = [
                    (t.fp_len, t.fp, _holds(t.read_pos - len(t.tail), t.tail))
                    for t in tailers
                    if 0 < t.fp_len < n and t.tail
                ]
                short += [
                    (e.fp_len, e.fp, partial(_before_matches_fd, e))
                    for e in entries
                    if 0 < e.fp_len < n and e.before_len
                ]
                cache.append((keys, fps, short))
            return cache[0]

        opened = False
        for found in self.renames.look(matched, wall, since, known):
            if found.compressed:
                self.compressed_unread(found)
                continue
            if self.open(found.path, now, rotated=True, head=True, stream=found.stream):
                self.log.info("file_found_renamed", path=found.path, stream=found.stream)
                opened = True
            elif os.path.exists(found.path):
                self.renames.failed(found.path, found.inode)  # out of handles: next scan
        self.book.listed_at = self.renames.listed_at
        return opened

    def compressed_unread(self, found: Found) -> None:
        """A generation we never read, compressed before we could: counted as lost."""
        try:
            st = os.stat(found.path)
        except OSError:
            return
        self.renames.remember(*found.fp)  # counted once, also across restarts
        self.book.dirty = True
        file_id = FileId(st.st_dev, st.st_ino, "")
        ev = FileEvent("lost", found.path, file_id, found.lost, "rotated_away_unread", True)
        self.ledger.lose(self.ledger.file(found.path), ev)  # under its own name
        self.log.warning(
            "file_compressed_unread",
            path=found.path,
            format=found.compressed,
            lost_bytes=found.lost,
            lower_bound=True,
        )
        self.ready.append(Batch(found.path, file_id, [], [], 0, -1, [ev]))

    def copy_of_open(self, path: str, st: os.stat_result) -> bool:
        """Whether a newly matched file starts with the first bytes (a full fingerprint)
        of a file we have open: a copy, as Vector would know it by its fingerprint. The
        copytruncate recovery reads the copy from where the original was read to, once
        the original is found truncated; read from its head it would repeat every line."""
        n = self.config.fingerprint_bytes
        if st.st_size < n:
            return False
        fps = {t.fp for t in self.files.open.values() if t.fp_len == n and not t.is_copy}
        if not fps:
            return False
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            _, fp = prefix_hash(fd, n)
        except OSError:
            return False
        finally:
            os.close(fd)
        return fp in fps

    # --- rotation and renames --------------------------------------------------------

    def check_rotation(self, t: Tailer, now: float) -> None:
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
        self.files.unname(t)
        t.rotate(now, self.config.rotate_wait, deleted=deleted)
        self.log.info("file_deleted" if deleted else "file_rotated", path=t.path)
        self.due = True  # pick up the replacement at once

    def renamed(self, t: Tailer, path: str, now: float) -> None:
        """An open file found under another followed name: same file, new name."""
        files = self.files
        other = files.by_path.get(path)
        if other is not None and other is not t:
            self.check_rotation(other, now)
            if files.by_path.get(path) is other:
                return
        # Not noticed as a rotation yet if its old name still points at it.
        rotation = t.state == ACTIVE and files.by_path.get(t.path) is t
        if rotation:
            files.unname(t)
            self.due = True
        self.log.info("file_renamed", path=t.path, new_path=path)
        t.rename(path, rotation=rotation)
        files.name(t, path)

    # --- opening ---------------------------------------------------------------------

    def new_joiner(self) -> MultilineJoiner | None:
        if self.config.multiline is None:
            return None
        return MultilineJoiner(self.config.multiline, self.config.max_line_bytes)

    def _tailer(
        self, path: str, fd: int, st: os.stat_result, start: int, stats: FileStats
    ) -> Tailer:
        t = Tailer(
            path,
            fd,
            st,
            start,
            stats,
            max_line=self.config.max_line_bytes,
            fingerprint_bytes=self.config.fingerprint_bytes,
        )
        t.multiline = self.new_joiner()
        return t

    def open(
        self,
        path: str,
        now: float,
        *,
        rotated: bool = False,
        head: bool = False,
        stream: str | None = None,
    ) -> Tailer | None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            if path not in self.failed_paths:
                self.failed_paths.add(path)
                self.log.warning("file_open_failed", path=path, error=str(exc))
            return None
        self.failed_paths.discard(path)
        try:
            st = os.fstat(fd)
            key = (st.st_dev, st.st_ino)
            if not stat.S_ISREG(st.st_mode) or key in self.files.open:
                os.close(fd)
                return None
            start, events, copy = self.resume_point(path, fd, st, now, head=head)
        except OSError as exc:
            os.close(fd)
            self.log.warning("file_open_failed", path=path, error=str(exc))
            return None
        stats = self.ledger.file(stream or path)
        t = self._tailer(path, fd, st, start, stats)
        t.last_data = now
        t.last_end = start
        t.events.append(FileEvent("opened", path, t.file_id))
        for ev in events:
            t.events.append(ev)
            self.ledger.lose(self.ledger.file(ev.path), ev)
            if ev.kind == "truncated" and ev.path == path:
                stats.truncations += 1
        t.waits_for = copy
        self.files.add(t, active=not rotated)
        if rotated:
            t.found_rotated(now, self.config.rotate_wait)
        self.log.info("file_opened", path=path, offset=start, rotated=rotated)
        return t

    def resume_point(
        self, path: str, fd: int, st: os.stat_result, now: float, *, head: bool = False
    ) -> tuple[int, list[FileEvent], Tailer | None]:
        """Where to start reading a newly opened file, what was lost while we were away,
        and the copytruncate copy opened to be read first (if it was truncated)."""
        entry = self.book.take((st.st_dev, st.st_ino))
        if entry is not None:
            old_id = FileId(entry.dev, entry.inode, entry.fp)
            unread = max(entry.size - entry.offset, 0)
            same_start = prefix_matches(fd, entry.fp_len, entry.fp)
            if same_start and st.st_size >= entry.offset and _before_matches(fd, entry):
                return entry.offset, [], None
            # Truncated (or replaced) while we were not looking, or stopped: a copy that
            # holds the checkpointed bytes is read first (a finished file has none).
            copy = None if entry.closed else self.copy_for_entry(entry, path, now)
            if copy is not None:
                return 0, [FileEvent("truncated", path, old_id)], copy
            if same_start:
                ev = FileEvent("truncated", path, old_id, unread, "truncated_unread", True)
                return 0, [ev], None
            # The inode holds other content now.
            if entry.path == path:
                kind, reason = "truncated", "truncated_unread"
            else:
                kind, reason = "deleted", "deleted_unread"
            if unread or not entry.closed:
                ev = FileEvent(kind, entry.path, old_id, unread, reason, True)  # type: ignore[arg-type]
                return 0, [ev], None
            return 0, [], None
        if (
            self.first
            and not head
            and self.config.read_from == "tail"
            and path not in self.book.entry_paths
        ):
            return st.st_size, [], None
        # A file that appeared while running (or replaced one we knew) is new: all of it.
        return 0, [], None

    def recover_orphans(self, now: float) -> None:
        """Checkpointed files no glob matches any more: renamed while stopped, or gone."""
        for key, entry in list(self.book.entries.items()):
            if entry.closed:
                continue
            found = _find_inode(os.path.dirname(entry.path) or ".", entry.dev, entry.inode)
            if found is not None and self.open(found, now, rotated=True) is not None:
                continue
            self.book.entries.pop(key, None)
            if self.copy_for_entry(entry, entry.path, now) is not None:
                continue  # gone, but a copy of it holds the rest
            unread = max(entry.size - entry.offset, 0)
            old_id = FileId(entry.dev, entry.inode, entry.fp)
            reason = "rotated_away_unread" if unread else ""
            ev = FileEvent("rotated", entry.path, old_id, unread, reason, bool(unread))
            stats = self.ledger.file(entry.path)
            self.ledger.lose(stats, ev)
            self.log.info("file_gone", path=entry.path, lost_bytes=unread, lower_bound=True)
            self.ready.append(Batch(entry.path, old_id, [], [], entry.offset, -1, [ev]))
        self.book.dirty = True

    # --- copytruncate copies ---------------------------------------------------------

    def copy_for_live(self, t: Tailer, now: float) -> Tailer | None:
        """`t` was just found truncated: open the copy a copytruncate made of it, if any,
        and hand `t`'s old generation over to it (`t` restarts at 0 after the copy)."""
        if t.fp_len == 0:
            return None  # nothing read yet: nothing to know the copy by

        def matches(fd: int, size: int) -> bool:
            return (
                size >= t.read_pos
                and prefix_matches(fd, t.fp_len, t.fp)
                and _bytes_at(fd, t.read_pos - len(t.tail), len(t.tail)) == t.tail
            )

        found = self.find_copy(_dirs(t.path), t.key, t.read_pos, matches)
        if found is None:
            return None
        copy_path, fd, st = found
        copy = self._tailer(copy_path, fd, st, t.read_pos, t.stats)
        t.hand_over(copy, self.new_joiner())
        self.book.moved(copy)
        self.files.add(copy, active=False)
        copy.recovered(st.st_size - copy.read_pos)
        return copy

    def copy_for_entry(self, entry: Entry, path: str, now: float) -> Tailer | None:
        """A checkpointed file was truncated (or is gone) while we were stopped: open the
        copy that holds its bytes from the checkpoint on, to be read first."""
        if entry.fp_len == 0:
            return None

        def matches(fd: int, size: int) -> bool:
            return (
                size >= entry.offset
                and prefix_matches(fd, entry.fp_len, entry.fp)
                and _before_matches(fd, entry)
            )

        dirs = _dirs(path) + [d for d in _dirs(entry.path) if d not in _dirs(path)]
        found = self.find_copy(dirs, (entry.dev, entry.inode), entry.offset, matches)
        if found is None:
            return None
        copy_path, fd, st = found
        copy = self._tailer(copy_path, fd, st, entry.offset, self.ledger.file(entry.path))
        copy.id_of = (entry.dev, entry.inode)
        copy.file_id = FileId(entry.dev, entry.inode, copy.file_id.fingerprint)
        copy.become_copy()
        copy.last_data = now
        self.files.add(copy, active=False)
        copy.events.append(FileEvent("opened", copy_path, copy.file_id))
        copy.recovered(st.st_size - entry.offset)
        self.log.info(
            "file_copy_found", path=entry.path, copy=copy_path, offset=entry.offset, size=st.st_size
        )
        return copy

    def find_copy(
        self, dirs: list[str], original: tuple[int, int], min_size: int, matches: Any
    ) -> tuple[str, int, os.stat_result] | None:
        """The newest regular file in `dirs` of at least `min_size` bytes (not `original`,
        not followed, not known from the checkpoint) for which `matches(fd, size)`: opened,
        with its stat. Only a truncation calls this: never on the reading path."""
        best: tuple[float, str, int, os.stat_result] | None = None
        for directory in dirs:
            try:
                items = list(os.scandir(directory))
            except OSError:
                continue
            for item in items:
                try:
                    if not item.is_file(follow_symlinks=False):
                        continue
                    st = item.stat(follow_symlinks=False)
                except OSError:
                    continue
                key = (st.st_dev, st.st_ino)
                if (
                    st.st_size < min_size
                    or key == original
                    or key in self.files.open
                    or key in self.book.entries
                ):
                    continue
                if best is not None and st.st_mtime <= best[0]:
                    continue
                try:
                    fd = os.open(item.path, os.O_RDONLY | os.O_CLOEXEC)
                except OSError:
                    continue
                try:
                    ok = matches(fd, os.fstat(fd).st_size)
                except OSError:
                    ok = False
                if not ok:
                    os.close(fd)
                    continue
                if best is not None:
                    os.close(best[2])
                best = (st.st_mtime, item.path, fd, os.fstat(fd))
        if best is None:
            return None
        return best[1], best[2], best[3]


def _dirs(path: str) -> list[str]:
    """Where a copy of `path` would be: its directory, and its target's for a symlink."""
    dirs = [os.path.dirname(path) or "."]
    real = os.path.dirname(os.path.realpath(path))
    if real not in dirs:
        dirs.append(real)
    return dirs


def _holds(offset: int, data: bytes) -> Callable[[int], bool]:
    """A check that a file (fd) holds `data` at `offset`."""
    return lambda fd: _bytes_at(fd, offset, len(data)) == data


def _before_matches_fd(entry: Entry, fd: int) -> bool:
    return entry.before_len > 0 and _before_matches(fd, entry)


def _bytes_at(fd: int, offset: int, length: int) -> bytes:
    return os.pread(fd, length, offset) if length > 0 else b""


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
