"""A file's fingerprint: a hash of its first bytes, to tell files apart beyond dev+inode."""

from __future__ import annotations

import os
from hashlib import blake2b


def prefix_hash(fd: int, length: int) -> tuple[int, str]:
    """Hash of the first `length` bytes (fewer if the file is shorter): (bytes hashed, hex)."""
    data = os.pread(fd, length, 0) if length > 0 else b""
    return len(data), blake2b(data, digest_size=8).hexdigest()


def prefix_matches(fd: int, length: int, expected: str) -> bool:
    """Whether the file still starts with the bytes that hashed to `expected`."""
    got_len, got = prefix_hash(fd, length)
    return got_len == length and got == expected
