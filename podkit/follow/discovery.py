"""Which files to follow: include globs minus exclude globs, and the directories to watch."""

from __future__ import annotations

import glob
import os
from fnmatch import fnmatch

_GLOB_CHARS = set("*?[")


def excluded(path: str, exclude: tuple[str, ...]) -> bool:
    """A pattern with a slash matches the whole path, one without matches the file name."""
    name = os.path.basename(path)
    return any(fnmatch(path, pat) if "/" in pat else fnmatch(name, pat) for pat in exclude)


def discover(include: tuple[str, ...], exclude: tuple[str, ...]) -> list[str]:
    """Regular-file candidates matching the globs, in a stable order, without duplicates."""
    seen: set[str] = set()
    found: list[str] = []
    for pattern in include:
        for path in sorted(glob.iglob(pattern, recursive=True)):
            if path not in seen and not excluded(path, exclude):
                seen.add(path)
                found.append(path)
    return found


def watch_dirs(include: tuple[str, ...]) -> tuple[list[str], bool]:
    """The existing directories that hold every match, and whether to watch recursively."""
    dirs: set[str] = set()
    recursive = False
    for pattern in include:
        parts = pattern.split(os.sep)
        fixed: list[str] = []
        for part in parts:
            if _GLOB_CHARS & set(part):
                break
            fixed.append(part)
        if len(fixed) == len(parts):  # a plain path: watch its directory
            fixed = fixed[:-1]
        else:
            # A glob in a directory part (not only the last) means matches in subdirectories.
            recursive = recursive or len(fixed) < len(parts) - 1
        base = os.sep.join(fixed) or (os.sep if pattern.startswith(os.sep) else ".")
        while base and not os.path.isdir(base):
            parent = os.path.dirname(base)
            if parent == base:
                break
            base = parent
        if base and os.path.isdir(base):
            dirs.add(base)
    # A directory inside another watched recursively is covered already.
    return sorted(dirs), recursive
