"""`python`: Python `logging`'s default formats.

    WARNING:root:disk almost full     (basicConfig: %(levelname)s:%(name)s:%(message)s)
    2024-05-01 12:00:00,123 - app.db - ERROR - lost connection     (the cookbook's asctime form)

Fields: timestamp (asctime form only), level, logger, message; a traceback joined by the
follower's multiline stage stays in the message.
"""

from __future__ import annotations

import re
from typing import Any

from podkit.parsers import ParseError

from .base import BaseParser

_LEVEL = r"(CRITICAL|FATAL|ERROR|WARNING|WARN|INFO|DEBUG|NOTSET|Level \d+)"
_ASCTIME = re.compile(
    r"(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:,\d{3})?) - (.*?) - " + _LEVEL + r" - (.*)", re.DOTALL
)
_BASIC = re.compile(_LEVEL + r":([^:]*):(.*)", re.DOTALL)


class PythonLoggingParser(BaseParser):
    name = "python"

    def parse(self, text: str) -> dict[str, Any]:
        match = _ASCTIME.match(text)
        if match is not None:
            timestamp, logger, level, message = match.groups()
            return {"timestamp": timestamp, "level": level, "message": message, "logger": logger}
        match = _BASIC.match(text)
        if match is not None:
            level, logger, message = match.groups()
            return {"level": level, "message": message, "logger": logger}
        raise ParseError("not a Python logging line (LEVEL:logger:message)")
