"""Files renamed out of the globs before the follower opened them.

A file the globs matched is normally open when it is renamed, and its handle carries on.
An app (or logrotate) that rotates faster than the scan, or while the follower is
stopped, renames generations the follower never opened to names the globs do not match
(`app.log.1`, `app.log-20261207`, ...). To find them, every scan lists the
directories that hold followed files. A file there

- under a name no include glob matches (nor an exclude glob) that starts with a matched
  name's stem (its part before the first dot, then a non-alphanumeric character:
  `app.log.1`, `app.log-20261207`, `app-20261207.log` for `app.log`), not a dot file,
  not a checkpoint file,
- whose inode is new since the directory's last listing (at start: unknown to the
  checkpoints and changed, by ctime, since the last listing they were saved with),
- in a directory where a matched name changed since then (it names another inode, or
  appeared, or went; or the watcher saw one created or removed; at start this is not
  asked: a deleted file's inode may be reused by its successor), unless its name is a
  matched (or literal `--path`) name plus a suffix (`app.log.1`): that says enough,
- that does not start with the first bytes of a file the follower knows (a copy is the
  copytruncate recovery's),

is such a generation: it is opened from its head, read to its end and closed. Compressed
ones (gzip, zstd, bzip2, xz, by magic bytes) are not read: unless their first bytes
decompress to those of a file the follower knows, their size is counted as lost.
"""

from __future__ import annotations

import bz2
import lzma
import os
import stat
import zlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from fnmatch import fnmatch
from hashlib import blake2b

from podkit.follow.api import FollowConfig
from podkit.follow.discovery import excluded

Short = tuple[int, str, Callable[[int], bool]]
"""A file we know by a short fingerprint (length, hash) and a check that a file (fd) holds
its bytes where we read to: only then is a file starting with those bytes its copy."""
Known = tuple[set[tuple[int, int]], set[tuple[int, str]], list[Short]]

CTIME_SLACK = 1.0
"""File times come from a coarse clock: a file changed just after a listing may carry a
time a little before it."""
MAX_KNOWN_FPS = 8192
MAX_MATCHED_NAMES = 1024
"""Names remembered per directory as once matched (dated names add one a day)."""
SAVED_FPS = 256
MIN_PREFIX = 64
"""A file is taken for a copy of one we know by a prefix of at least this many bytes."""
MIN_PREFIX_COMPRESSED = 1
BASELINE_FILES = 512
"""At a directory's first listing, the most recent files whose first bytes are
remembered (a compressed copy of one of them is not a loss)."""
MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
)


@dataclass(slots=True)
class Listing:
    """What a directory held at the last look."""

    inodes: set[int] | None
    """Every regular file's inode (None: never listed; the ctime rule stands in)."""
    matched: dict[str, int] = field(default_factory=dict)
    """The names the globs match, and their inodes."""


@dataclass(slots=True)
class Found:
    """A generation renamed out of the globs that the follower never opened."""

    path: str
    stream: str
    """The matched path it most likely was (for its stats), or its own path."""
    compressed: str = ""
    """The compression format (then it is not read), or ""."""
    lost: int = 0
    """For a compressed one: its uncompressed size if the format says it, else its size."""
    inode: int = 0
    fp: tuple[int, str] = (0, "")
    """For a compressed one: the fingerprint of what it decompresses to (remembered once
    it is counted, so it is not counted again)."""


class RenameFinder:
    def __init__(self, config: FollowConfig) -> None:
        self.config = config
        self.listings: dict[str, Listing] = {}
        self.flagged: set[str] = set()
        """Directories where the watcher saw a matched name created or removed."""
        self.fps: OrderedDict[tuple[int, str], None] = OrderedDict()
        """First bytes (length, hash) of files the follower read or saw: not new data."""
        self.listed_at: float | None = None
        """Wall time the last listing started (saved with the checkpoints)."""
        self.retry: set[tuple[str, int]] = set()
        """(directory, inode) of generations found but not opened (out of handles...):
        looked at again at the next listing."""
        self._include = [os.path.abspath(p) for p in config.include]
        self._fixed = {
            os.path.dirname(p)
            for p in config.include
            if not set("*?[") & set(os.path.dirname(p)) and os.path.dirname(p)
        }
        """The directories the globs name without a wildcard: listed even while they
        hold no matched file (the app may create and rename one between two scans)."""
        self._literal: dict[str, set[str]] = {}
        """Per directory, the file names the globs name without a wildcard (`app.log`):
        known even while no such file exists."""
        self._matched_before: dict[str, set[str]] = {}
        """Per directory, the names the globs matched at some listing: a writer that
        renames app.log away a thousand times a second leaves it absent at most listings,
        and the generations of those moments must still be recognised by its stem."""
        for p in config.include:
            name = os.path.basename(p)
            if not set("*?[") & set(p):
                self._literal.setdefault(os.path.dirname(p) or ".", set()).add(name)
        self._state_dir = (
            os.path.abspath(config.state_dir) if config.state_dir is not None else None
        )

    def remember(self, fp_len: int, fp: str) -> None:
        if fp_len:
            self.fps[(fp_len, fp)] = None
            self.fps.move_to_end((fp_len, fp))
            while len(self.fps) > MAX_KNOWN_FPS:
                self.fps.popitem(last=False)

    def recent(self, count: int = SAVED_FPS) -> list[tuple[int, str]]:
        """The latest fingerprints remembered (saved with the checkpoints, so a copy of
        content a previous run read is not taken for a new generation, nor counted
        lost twice)."""
        return list(self.fps)[-count:]

    def failed(self, path: str, inode: int) -> None:
        """A generation found could not be opened: look at it again next time."""
        self.retry.add((os.path.dirname(path) or ".", inode))

    def flag(self, path: str) -> None:
        """The watcher saw `path` (a matched name) created or removed."""
        self.flagged.add(os.path.dirname(path) or ".")

    def seed(self, directory: str, matched: dict[str, int]) -> None:
        """At start: what the checkpoints say the directory's matched names were."""
        self.listings.setdefault(directory, Listing(None)).matched.update(matched)

    def seed_fixed(self) -> None:
        """At start with a saved listing time: the globs' own directories were listed."""
        for directory in self._fixed:
            self.listings.setdefault(directory, Listing(None))

    def look(
        self,
        matched: dict[str, os.stat_result],
        wall: float,
        since: float | None,
        known: Callable[[], Known],
    ) -> list[Found]:
        """List the directories of the matched paths (and of the last listing's);
        return the generations found. `known()`: dev+inode of the files open or
        checkpointed, and their fingerprints (asked only when a file is a candidate);
        `since`: the previous listing's wall time (None: nothing to compare with)."""
        by_dir: dict[str, dict[str, int]] = {}
        for path, st in matched.items():
            by_dir.setdefault(os.path.dirname(path) or ".", {})[os.path.basename(path)] = st.st_ino
        found: list[Found] = []
        for directory in set(by_dir) | set(self.listings) | self._fixed:
            names = by_dir.get(directory, {})
            prev = self.listings.get(directory)
            if not names and directory not in self._fixed and (prev is None or not prev.matched):
                self.listings.pop(directory, None)
                continue
            found += self._look_at(directory, names, prev, since, known)
        self.flagged.clear()
        self.listed_at = wall
        return found

    def _look_at(
        self,
        directory: str,
        seen: dict[str, int],
        prev: Listing | None,
        since: float | None,
        known: Callable[[], Known],
    ) -> list[Found]:
        try:
            with os.scandir(directory) as it:
                items = [i for i in it if i.is_file(follow_symlinks=False)]
        except OSError:
            return []
        # The matched names as this listing sees them (the scan's glob ran a moment
        # earlier: a file may have been renamed in between), and as the scan saw them.
        names = {i.name: i.inode() for i in items if self._wanted(i.path)}
        inodes = {i.inode() for i in items}
        self.listings[directory] = Listing(inodes, names)
        if prev is None or prev.inodes is None:
            # Files older than the last listing (all, without one) are not new data.
            self._baseline(items, names, None if prev is None else since)
        if prev is None or (prev.inodes is None and since is None):
            return []
        changed = (
            prev.inodes is None  # at start: the checkpoints' inodes may have been reused
            or directory in self.flagged
            or prev.matched != names
            or any(names.get(name) != ino for name, ino in seen.items())
        )
        was_matched = set(prev.matched.values())
        before = self._matched_before.setdefault(directory, set())
        if len(before) < MAX_MATCHED_NAMES:
            before.update(names, prev.matched)
        rotated_of = {*names, *prev.matched, *before, *self._literal.get(directory, ())}
        stems = {_stem(n) for n in rotated_of}
        stream = next(iter(names), None) if len(names) == 1 else None
        if stream is None and len(prev.matched) == 1:
            stream = next(iter(prev.matched))
        found = []
        for item in items:
            ino = item.inode()
            if (directory, ino) in self.retry:
                self.retry.discard((directory, ino))
            elif prev.inodes is not None and ino in prev.inodes and ino not in was_matched:
                continue  # there before, under a name the globs do not match
            elif not self._candidate(item, names, stems) or not (
                changed or ino in was_matched or _rotated_name(item.name, rotated_of)
            ):
                continue  # a name that says "rotated app.log" needs no other evidence
            try:
                st = item.stat(follow_symlinks=False)
            except OSError:
                continue
            keys, known_fps, short = known()
            if (st.st_dev, st.st_ino) in keys or not stat.S_ISREG(st.st_mode):
                continue
            if prev.inodes is None and (
                since is None or max(st.st_ctime, st.st_mtime) < since - CTIME_SLACK
            ):
                continue  # at start: there before the last listing, and not ours
            logical = os.path.join(directory, stream) if stream else item.path
            got = self._inspect(item.path, st, known_fps, short)
            if got is not None:
                got.stream = logical
                found.append(got)
        return found

    def _wanted(self, path: str) -> bool:
        return self.matches(path) and not excluded(os.path.abspath(path), self.config.exclude)

    def matches(self, path: str) -> bool:
        """Whether an include glob matches `path` (excluded or not)."""
        path = os.path.abspath(path)
        return any(fnmatch(path, pat) for pat in self._include)

    def _candidate(self, item: os.DirEntry[str], names: dict[str, int], stems: set[str]) -> bool:
        name = item.name
        if name in names or name.startswith(".") or not _same_stem(name, stems):
            return False
        path = os.path.abspath(item.path)
        if self._state_dir is not None and os.path.dirname(path) == self._state_dir:
            return False
        if self.matches(path):
            return False  # matched (then excluded, or not yet scanned): not ours to take
        return not excluded(path, self.config.exclude)

    def _inspect(
        self, path: str, st: os.stat_result, known_fps: set[tuple[int, str]], short: list[Short]
    ) -> Found | None:
        """A plain file to read (None if it is a copy of one we know), or a compressed
        one to count as lost (None if it decompresses to one we know)."""
        n = self.config.fingerprint_bytes
        try:
            with open(path, "rb") as fh:
                head = fh.read(n)
                fmt = compression(head)
                if fmt:
                    fh.seek(0)
                    raw = fh.read(1 << 16)
                    tail = b""
                    if fmt == "gzip" and st.st_size >= 18:
                        fh.seek(-4, os.SEEK_END)
                        tail = fh.read(4)
        except OSError:
            self.failed(path, st.st_ino)
            return None
        if not fmt:
            if self._known(head, known_fps) or _copy_of_short(path, head, short):
                return None  # a copy of a file we know: the copytruncate recovery's
            return Found(path, path, inode=st.st_ino)
        # Not counted as lost when it may be a copy of one we read (even by a short
        # prefix): a loss figure must never claim more than was lost.
        plain = decompress_head(fmt, raw, n)
        if self._known(plain, known_fps, MIN_PREFIX_COMPRESSED):
            return None
        # gzip ends with the uncompressed size (mod 4 GiB); for the others, the file's size
        # (less than what it held: the figure is a lower bound).
        lost = int.from_bytes(tail, "little") if tail else st.st_size
        return Found(path, path, fmt, lost, st.st_ino, (len(plain), _hash(plain)))

    def _known(
        self, head: bytes, known_fps: set[tuple[int, str]], min_prefix: int = MIN_PREFIX
    ) -> bool:
        """Whether `head` starts with the first bytes of a file we know (fingerprinted
        when it was shorter, perhaps: each length known is tried)."""
        if not head:
            return False
        if (len(head), _hash(head)) in known_fps or (len(head), _hash(head)) in self.fps:
            return True
        for length in {n for n, _ in known_fps} | {n for n, _ in self.fps}:
            # A shorter prefix than ours counts only when long enough to tell files
            # apart: 10 bytes of `line seq=3` would make every later file a "copy".
            if min_prefix <= length < len(head):
                fp = (length, _hash(head[:length]))
                if fp in known_fps or fp in self.fps:
                    return True
        return False

    def _baseline(
        self, items: list[os.DirEntry[str]], names: dict[str, int], before: float | None
    ) -> None:
        """A directory's first listing: remember its recent files' first bytes, so a
        compressed copy of one made later is not taken for lost data."""
        stats = []
        for item in items:
            if item.name in names:
                continue
            try:
                st = item.stat(follow_symlinks=False)
            except OSError:
                continue
            if before is None or max(st.st_ctime, st.st_mtime) < before - CTIME_SLACK:
                stats.append((st.st_mtime, item.path))
        stats.sort(reverse=True)
        n = self.config.fingerprint_bytes
        for _, path in stats[:BASELINE_FILES]:
            try:
                with open(path, "rb") as fh:
                    head = fh.read(n)
            except OSError:
                continue
            if compression(head):
                continue
            self.remember(len(head), _hash(head))


def _copy_of_short(path: str, head: bytes, short: list[Short]) -> bool:
    """Whether the file starts with the bytes of a file we know only by a short
    fingerprint and holds that file's bytes where we read it to (its copy)."""
    matching = [c for n, fp, c in short if 0 < n < len(head) and _hash(head[:n]) == fp]
    if not matching:
        return False
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return any(check(fd) for check in matching)
    except OSError:
        return False
    finally:
        os.close(fd)


def _rotated_name(name: str, of: set[str]) -> bool:
    """Whether `name` is one of these names plus a suffix (`app.log.1`, `app.log-2026`)."""
    return any(
        name.startswith(base) and len(name) > len(base) and not name[len(base)].isalnum()
        for base in of
    )


def _stem(name: str) -> str:
    """A log file's name up to its first dot: `app` for app.log."""
    return name.split(".", 1)[0]


def _same_stem(name: str, stems: set[str]) -> bool:
    """Whether `name` could be a rotated name of a file with one of these stems
    (app.log.1, app.log-20261207, app-20261207.log, app.1.log.gz for `app`)."""
    for stem in stems:
        if (
            stem
            and name.startswith(stem)
            and (len(name) == len(stem) or not name[len(stem)].isalnum())
        ):
            return True
    return False


def compression(head: bytes) -> str:
    for magic, name in MAGIC:
        if head.startswith(magic):
            return name
    return ""


def decompress_head(fmt: str, raw: bytes, n: int) -> bytes:
    """The first `n` bytes `raw` (a compressed file's start) decompresses to ("" if unknown)."""
    try:
        if fmt == "gzip":
            return zlib.decompressobj(wbits=47).decompress(raw, n)
        if fmt == "bzip2":
            return bz2.BZ2Decompressor().decompress(raw, n)
        if fmt == "xz":
            return lzma.LZMADecompressor().decompress(raw, n)
    except (zlib.error, OSError, lzma.LZMAError, EOFError):
        return b""
    return b""  # zstd: no decompressor in the standard library


def _hash(data: bytes) -> str:
    return blake2b(data, digest_size=8).hexdigest()
