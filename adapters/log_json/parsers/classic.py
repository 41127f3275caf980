"""`classic`: `DATE TIME LEVEL MESSAGE`, the legacy line of the classic adapter example.

2024-05-01 12:00:00 ERROR something broke
2024-05-01T12:00:00.123+02:00 [warn] disk almost full
2024-05-01 12:00:00,123 INFO  multi-line message (stack trace joined by the follower)
2024-05-01 12:00:00 no level word: all of the rest is the message, and no `level`
"""

from __future__ import annotations

import re
from typing import Any

from podkit.parsers import ParseError

from ..normalize import LEVELS
from .base import BaseParser

_CLASSIC = re.compile(
    r"(\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(?:[.,]\d{1,9})?(?:Z|[+-]\d{2}:?\d{2})?)"
    r"[ \t]+\[?([A-Za-z]{1,12})\]?:?(?:[ \t]+|$)(.*)",
    re.DOTALL,
)


# The spellings seen in logs, so the common case is one lookup without lower().
_KNOWN = frozenset(f(word) for word in LEVELS for f in (str, str.upper, str.capitalize))


class ClassicParser(BaseParser):
    name = "classic"

    def __init__(self) -> None:
        self._match = _CLASSIC.match

    def parse(self, text: str) -> dict[str, Any]:
        match = self._match(text)
        if match is None:
            raise ParseError("expected DATE TIME LEVEL MESSAGE")
        timestamp, level, message = match.groups()
        if level not in _KNOWN and level.lower() not in LEVELS:
            # `2024-05-01 12:00:00 disk full`: no level word; all of it is the message.
            return {"timestamp": timestamp, "message": text[match.end(1) :].lstrip(" \t")}
        return {"timestamp": timestamp, "level": level, "message": message}
