"""`klog`: Kubernetes components' glog/klog header.

    I0501 12:00:00.123456    1234 server.go:42] Started "server" addr=":8080"

Fields: level (I/W/E/F), timestamp (month and day; the year is guessed), thread (int),
source (file:line), message. Structured klog key="value" pairs stay in the message.
"""

from __future__ import annotations

import re
from typing import Any

from podkit.parsers import ParseError

from .base import BaseParser

_KLOG = re.compile(
    r"([IWEF])(\d{4} \d{2}:\d{2}:\d{2}(?:\.\d{1,9})?) +(\d+) ([^\]\s]+)\] ?(.*)", re.DOTALL
)


class KlogParser(BaseParser):
    name = "klog"
    time_format = "klog"

    def parse(self, text: str) -> dict[str, Any]:
        match = _KLOG.match(text)
        if match is None:
            raise ParseError("not a klog line (Lmmdd hh:mm:ss.uuuuuu threadid file:line] msg)")
        level, timestamp, thread, source, message = match.groups()
        return {
            "timestamp": timestamp,
            "level": level,
            "message": message,
            "thread": int(thread),
            "source": source,
        }
