"""Syslog lines: RFC 3164 (BSD) and RFC 5424, as written to files or received raw.

    <34>Oct 11 22:14:15 mymachine su[230]: 'su root' failed for lonvick
    Oct 11 22:14:15 mymachine su: 'su root' failed          (files: no PRI)
    <165>1 2003-10-11T22:14:15.003Z host app 1234 ID47 [id@32473 a="3"] message

Fields: timestamp, level (from the PRI's severity), message, host, app, pid, facility;
5424 adds msgid and structured_data ({"id@32473": {"a": "3"}}). "-" values are left out.
"""

from __future__ import annotations

import re
from typing import Any

from podkit.parsers import ParseError

from .base import BaseParser

FACILITIES = (
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
    "authpriv", "ftp", "ntp", "security", "console", "solaris-cron",
    "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
)  # fmt: skip
SEVERITIES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
"""Syslog severity keywords by number: the `level_raw`; `level` is their normalised name."""

_RFC3164 = re.compile(
    r"(?:<(\d{1,3})>)?([A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2}(?:\.\d{1,6})?) "
    r"(\S+) ([^\s:\[]+)(?:\[(\d+)\])?: ?(.*)",
    re.DOTALL,
)
_RFC5424 = re.compile(
    r"<(\d{1,3})>1 (\S+) (\S+) (\S+) (\S+) (\S+) (-|(?:\[(?:[^\]\\]|\\.)*\])+)(?: (.*))?",
    re.DOTALL,
)
_IS_5424 = re.compile(r"<\d{1,3}>1 ")
_SD_ELEMENT = re.compile(r"\[([^\s\]=]+)((?:\s+[^\s=\]]+=\"(?:[^\"\\]|\\.)*\")*)\s*\]")
_SD_PARAM = re.compile(r'([^\s=\]]+)="((?:[^"\\]|\\.)*)"')
_SD_UNESCAPE = re.compile(r"\\([\"\\\]])")


def _priority(fields: dict[str, Any], pri: str | None) -> None:
    if pri is None:
        return
    value = int(pri)
    if value > 191:
        raise ParseError(f"PRI {value} out of range", kind="bad_pri")
    fields["level"] = SEVERITIES[value & 7]
    fields["facility"] = FACILITIES[value >> 3]


class Syslog3164Parser(BaseParser):
    name = "syslog-rfc3164"
    time_format = "syslog"

    def parse(self, text: str) -> dict[str, Any]:
        match = _RFC3164.match(text)
        if match is None:
            raise ParseError("not an RFC 3164 syslog line")
        pri, timestamp, host, app, pid, message = match.groups()
        if pri is None:
            fields: dict[str, Any] = {"timestamp": timestamp}
        else:
            value = int(pri)
            if value > 191:
                raise ParseError(f"PRI {value} out of range", kind="bad_pri")
            fields = {
                "timestamp": timestamp,
                "level": SEVERITIES[value & 7],
                "facility": FACILITIES[value >> 3],
            }
        fields["message"] = message
        fields["host"] = host
        fields["app"] = app
        if pid is not None:
            fields["pid"] = int(pid)
        return fields


def structured_data(text: str) -> dict[str, dict[str, str]]:
    result: dict[str, dict[str, str]] = {}
    for element in _SD_ELEMENT.finditer(text):
        params = {
            name: _SD_UNESCAPE.sub(r"\1", value)
            for name, value in _SD_PARAM.findall(element.group(2))
        }
        result[element.group(1)] = params
    return result


class Syslog5424Parser(BaseParser):
    name = "syslog-rfc5424"

    def parse(self, text: str) -> dict[str, Any]:
        match = _RFC5424.match(text)
        if match is None:
            raise ParseError("not an RFC 5424 syslog line")
        pri, timestamp, host, app, procid, msgid, sd, message = match.groups()
        fields: dict[str, Any] = {}
        if timestamp != "-":
            fields["timestamp"] = timestamp
        _priority(fields, pri)
        # RFC 5424 allows a UTF-8 BOM before the message.
        fields["message"] = (message or "").removeprefix("\ufeff")
        for key, value in (("host", host), ("app", app), ("pid", procid), ("msgid", msgid)):
            if value != "-":
                fields[key] = int(value) if key == "pid" and value.isdigit() else value
        if sd != "-":
            fields["structured_data"] = structured_data(sd)
        return fields


class SyslogParser(BaseParser):
    """`syslog`: RFC 5424 when the line says version 1 after the PRI, else RFC 3164."""

    name = "syslog"

    def __init__(self) -> None:
        self._5424 = Syslog5424Parser()
        self._3164 = Syslog3164Parser()
        self.time_format = "auto"  # ISO times from 5424, "Oct 11 22:14:15" from 3164

    def parse(self, text: str) -> dict[str, Any]:
        if _IS_5424.match(text):
            return self._5424.parse(text)
        return self._3164.parse(text)
