"""`logfmt`: `level=info msg="user logged in" user=alice took=12ms`.

Keys become fields; a bare key is `true`; quoted values are unescaped (\\" \\\\ \\n \\t).
`msg`, `time`/`ts` and `lvl` are read as message, timestamp and level.
"""

from __future__ import annotations

import re
from typing import Any

from podkit.parsers import ParseError

from .base import BaseParser

_PAIR = re.compile(r'\s*([^\s="]+)(?:=(?:"((?:[^"\\]|\\.)*)"|([^\s"]*)))?(?=\s|$)', re.DOTALL)
# Without backslashes: the same pairs, whole-line check and split.
_PLAIN = r'[^\s="]+(?:=(?:"[^"]*"|[^\s"]*))?'
_WHOLE = re.compile(r"\s*(?:" + _PLAIN + r"(?=\s|$)\s*)*")
_PLAIN_PAIR = re.compile(r'([^\s="]+)(?:(=)(?:"([^"]*)"|([^\s"]*)))?')
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r"}
ALIASES = {
    "msg": "message",
    "time": "timestamp",
    "ts": "timestamp",
    "lvl": "level",
    "severity": "level",
}


def _unescape(value: str) -> str:
    if "\\" not in value:
        return value
    return _ESCAPE.sub(lambda m: _ESCAPES.get(m.group(1), m.group(1)), value)


class LogfmtParser(BaseParser):
    name = "logfmt"
    sets_level_raw = True

    def parse(self, text: str) -> dict[str, Any]:
        if "\\" not in text and _WHOLE.fullmatch(text):
            # The common line (no escapes): checked whole by one match, split by one
            # findall, instead of a match per pair.
            fields = {}
            for key, equals, quoted, plain in _PLAIN_PAIR.findall(text):
                fields[ALIASES.get(key, key)] = (quoted or plain) if equals else True
            if fields:
                return fields
            raise ParseError("empty line", kind="empty")
        return self.parse_pairs(text)

    def parse_pairs(self, text: str) -> dict[str, Any]:
        """Pair by pair (escapes, and the reference the fast path is tested against)."""
        fields: dict[str, Any] = {}
        position, end = 0, len(text.rstrip())
        while position < end:
            match = _PAIR.match(text, position)
            if match is None or match.end() == position:
                raise ParseError(f"not key=value at column {position}", kind="bad_pair")
            key, quoted, plain = match.groups()
            key = ALIASES.get(key, key)
            if quoted is not None:
                fields[key] = _unescape(quoted)
            elif plain is not None:
                fields[key] = plain
            else:
                fields[key] = True
            position = match.end()
        if not fields:
            raise ParseError("empty line", kind="empty")
        return fields
