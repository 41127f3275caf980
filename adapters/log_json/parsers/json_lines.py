"""`json`: lines that are already JSON objects, passed through.

Options: `mode` "merge" (the object's keys become the record's fields; the default) or
"nest" (the object goes under `key`, default "json"); `timestamp_keys`, `level_keys`,
`message_keys`: which keys are read as timestamp, level and message (first found wins).
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from podkit.parsers import ParseError

from .base import BaseParser

# A run of 19 digits (an integer orjson would turn into a float): found by mapping every
# byte to "0" (digit) or "x" and one substring search, both in C; a regex scan costs more
# than the JSON parse itself.
_DIGITS = bytes(48 if 48 <= byte <= 57 else 120 for byte in range(256))
_LONG_RUN = b"0" * 19


def _long_int(text: str) -> bool:
    return _LONG_RUN in text.encode("utf-8", "surrogatepass").translate(_DIGITS)


class JsonParser(BaseParser):
    name = "json"
    sets_level_raw = True

    def __init__(
        self,
        mode: str = "merge",
        key: str = "json",
        timestamp_keys: list[str] | None = None,
        level_keys: list[str] | None = None,
        message_keys: list[str] | None = None,
    ) -> None:
        if mode not in ("merge", "nest"):
            raise ValueError(f"mode must be merge or nest, not {mode!r}")
        self.mode = mode
        self.key = key
        self.special = (
            ("timestamp", timestamp_keys or ["timestamp", "time", "ts", "@timestamp"]),
            ("level", level_keys or ["level", "severity", "lvl", "loglevel"]),
            ("message", message_keys or ["message", "msg", "log"]),
        )

    def parse(self, text: str) -> dict[str, Any]:
        try:
            # orjson reads integers beyond 64 bits as floats, losing digits; the standard
            # library keeps them exact (they are written out as text).
            value = json.loads(text) if _long_int(text) else orjson.loads(text)
        except ValueError as exc:
            raise ParseError(f"invalid JSON: {exc}", kind="bad_json") from None
        if not isinstance(value, dict):
            raise ParseError(f"JSON {type(value).__name__}, not an object", kind="not_object")
        fields: dict[str, Any] = {}
        for target, keys in self.special:
            for key in keys:
                if key in value:
                    fields[target] = value[key] if self.mode == "nest" else value.pop(key)
                    break
        if self.mode == "nest":
            fields[self.key] = value
        else:
            fields.update(value)
        return fields
