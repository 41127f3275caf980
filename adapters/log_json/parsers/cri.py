"""`cri`: container runtime log lines, as kubelet keeps them under /var/log/pods.

    2024-05-01T12:00:00.123456789Z stdout F a whole line
    2024-05-01T12:00:00.123456789Z stdout P the first part of a long line, ...
    2024-05-01T12:00:00.223456789Z stdout F ... and its end

A `P` (partial) line is held and joined with the following lines of the same stream up to
the `F` that ends it; the record carries the first part's timestamp. Fields: timestamp,
stream, message (the joined text), partial_count when it was joined. Options:
`max_bytes` (default 1 MiB): a longer joined line is emitted as is, with `truncated: true`.
Parts still held when the input ends (`--check`) or the adapter drains are emitted the
same way, never dropped.
"""

from __future__ import annotations

import re
from typing import Any

from podkit.parsers import ParseError, Pending

from .base import BaseParser

_CRI = re.compile(r"(\S+) (stdout|stderr) ([PF])(?:\S*) ?(.*)", re.DOTALL)


class CriParser(BaseParser):
    name = "cri"
    stateful = True

    def __init__(self, max_bytes: int = 1 << 20) -> None:
        self.max_bytes = int(max_bytes)
        # stream -> (timestamp of the first part, parts, total length)
        self._partial: dict[str, tuple[str, list[str], int]] = {}

    def fork(self) -> CriParser:
        return CriParser(self.max_bytes)

    def flush(self) -> list[dict[str, Any]]:
        """Records for partial lines still held (the file ended, or the adapter drains)."""
        held, self._partial = self._partial, {}
        return [
            {
                "timestamp": timestamp,
                "stream": stream,
                "message": "".join(parts),
                "partial_count": len(parts),
                "truncated": True,
            }
            for stream, (timestamp, parts, _) in held.items()
        ]

    def parse(self, text: str) -> dict[str, Any]:
        match = _CRI.match(text)
        if match is None:
            raise ParseError("expected TIMESTAMP STREAM P|F MESSAGE")
        timestamp, stream, tag, message = match.groups()
        held = self._partial.pop(stream, None)
        if held is not None:
            first_timestamp, parts, size = held
            parts.append(message)
            size += len(message)
            if tag == "P" and size < self.max_bytes:
                self._partial[stream] = (first_timestamp, parts, size)
                raise Pending
            fields: dict[str, Any] = {
                "timestamp": first_timestamp,
                "stream": stream,
                "message": "".join(parts),
                "partial_count": len(parts),
            }
            if tag == "P":
                fields["truncated"] = True
            return fields
        if tag == "P":
            self._partial[stream] = (timestamp, [message], len(message))
            raise Pending
        return {"timestamp": timestamp, "stream": stream, "message": message}
