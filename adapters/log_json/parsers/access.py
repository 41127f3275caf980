"""nginx and Apache access logs: the `common` and `combined` formats.

    127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /a.gif HTTP/1.0" 200 2326
    ... "GET /a.gif HTTP/1.0" 200 2326 "http://example.com/" "Mozilla/5.0 (X11)"

Fields: client, user, timestamp, method, path, protocol (null when the request line is
not METHOD PATH PROTOCOL, as for a TLS handshake sent to a plain port), status (int),
bytes (int; "-" is 0), and for combined referer, user_agent and `extra` (whatever a
custom log_format appends). `message` is the request
line; `level` follows the status (5xx error, 4xx warning, else info). Quoted fields keep
the server's escaping (nginx writes `\\x22`, Apache `\\"`).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from podkit.parsers import ParseError

from .base import BaseParser

_QUOTED = r'"([^"\\]*(?:\\.[^"\\]*)*)"'
# The request line, split when it is METHOD PATH PROTOCOL (the common case, one pass),
# kept whole otherwise (a TLS handshake on a plain port, garbage from a scanner).
_REQUEST = r'"(([A-Z]{1,20}) ([^\s"]*) (HTTP/[\d.]{1,5})|[^"\\]*(?:\\.[^"\\]*)*)"'
_COMMON = r"(\S+) \S+ (\S+) \[([^\]]+)\] " + _REQUEST + r" (\d{3}) (\d+|-)"
_COMBINED = _COMMON + " " + _QUOTED + " " + _QUOTED
# The same patterns for a line without any backslash, where no quote can be escaped: a
# quoted field is then simply [^"]*, which the regex engine scans about twice as fast.
_PLAIN_QUOTED = r'"([^"]*)"'
_PLAIN_REQUEST = r'"(([A-Z]{1,20}) ([^\s"]*) (HTTP/[\d.]{1,5})|[^"]*)"'
_PLAIN_COMMON = r"(\S+) \S+ (\S+) \[([^\]]+)\] " + _PLAIN_REQUEST + r" (\d{3}) (\d+|-)"
_PLAIN_COMBINED = _PLAIN_COMMON + " " + _PLAIN_QUOTED + " " + _PLAIN_QUOTED
_LEVEL_BY_CLASS = {"1": "info", "2": "info", "3": "info", "4": "warning", "5": "error"}


class AccessLogParser(BaseParser):
    name = "nginx"
    time_format = "clf"
    derived_level = True
    formats: ClassVar[dict[str, tuple[re.Pattern[str], re.Pattern[str]]]] = {
        "common": (re.compile(_PLAIN_COMMON + r"\s*$"), re.compile(_COMMON + r"\s*$")),
        # Lenient at the end: nginx setups often append fields after the user agent.
        "combined": (re.compile(_PLAIN_COMBINED), re.compile(_COMBINED)),
    }

    def __init__(self, format: str = "combined") -> None:
        if format not in self.formats:
            raise ValueError(f"format must be one of {', '.join(self.formats)}, not {format!r}")
        self.format = format
        plain, escaped = self.formats[format]
        self._plain, self._escaped = plain.match, escaped.match
        self._combined = format == "combined"

    def parse(self, text: str) -> dict[str, Any]:
        match = (self._escaped if "\\" in text else self._plain)(text)
        if match is None:
            raise ParseError(f"not a {self.format} access log line")
        if self._combined:
            (
                client,
                user,
                timestamp,
                request,
                method,
                path,
                protocol,
                status,
                size,
                referer,
                agent,
            ) = match.groups()
        else:
            client, user, timestamp, request, method, path, protocol, status, size = match.groups()
        fields: dict[str, Any] = {
            "timestamp": timestamp,
            "level": _LEVEL_BY_CLASS.get(status[0], "info"),
            "message": request,
            "client": client,
            "user": None if user == "-" else user,
            "method": method,
            "path": path,
            "protocol": protocol,
            "status": int(status),
            "bytes": 0 if size == "-" else int(size),
        }
        if self._combined:
            fields["referer"] = None if referer == "-" else referer
            fields["user_agent"] = agent
            if match.end() < len(text):
                # Fields some setups append after the user agent: kept, never dropped.
                fields["extra"] = text[match.end() :].lstrip()
        return fields


class NginxCommon(AccessLogParser):
    name = "nginx-common"

    def __init__(self) -> None:
        super().__init__("common")


class ApacheCombined(AccessLogParser):
    name = "apache"


class ApacheCommon(NginxCommon):
    name = "apache-common"
