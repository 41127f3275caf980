"""`json`: lines that are already JSON objects, passed through.

Options: `mode` "merge" (the object's keys become the record's fields; the default) or
"nest" (the object goes under `key`, default "json"); `timestamp_keys`, `level_keys`,
`message_keys`: which keys are read as timestamp, level and message (first found wins).
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

from podkit.parsers import ParseError

from .base import BaseParser

_LONG_INT = re.compile(r"\d{19}")


class JsonParser(BaseParser):
    name = "json"

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
            value = json.loads(text) if _LONG_INT.search(text) else orjson.loads(text)
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
