"""`grok`: Logstash-style patterns, `%{IP:client} %{WORD:method} %{URIPATHPARAM:path}`.

`%{NAME}` matches without capturing, `%{NAME:field}` captures, `%{NAME:field:int}` (or
`float`, `bool`) also converts. Dotted field names (`%{IP:client.ip}`) are kept as written.
Everything outside `%{...}` is a regular expression. Patterns may refer to each other; add
or override patterns with the `patterns` option ({NAME: regex}). The table below covers the
common cases and needs no dependency.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from podkit.parsers import ParseError

from ..normalize import CONVERTERS
from .base import BaseParser

_OCTET = r"(?:25[0-5]|2[0-4][0-9]|[01]?[0-9]{1,2})"
_IPV4 = rf"(?<![0-9])(?:{_OCTET}\.){{3}}{_OCTET}(?![0-9])"
PATTERNS: dict[str, str] = {
    "USERNAME": r"[a-zA-Z0-9._-]+",
    "USER": r"%{USERNAME}",
    "EMAILADDRESS": r"[a-zA-Z0-9!#$%&'*+/=?^_`{|}~.-]+@[a-zA-Z0-9.-]+",
    "INT": r"[+-]?[0-9]+",
    "POSINT": r"\b[1-9][0-9]*\b",
    "NONNEGINT": r"\b[0-9]+\b",
    "BASE10NUM": r"[+-]?(?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)",
    "NUMBER": r"%{BASE10NUM}",
    "BASE16NUM": r"(?:0[xX])?[0-9A-Fa-f]+",
    "WORD": r"\b\w+\b",
    "NOTSPACE": r"\S+",
    "SPACE": r"\s*",
    "DATA": r".*?",
    "GREEDYDATA": r".*",
    "QUOTEDSTRING": r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'',
    "QS": r"%{QUOTEDSTRING}",
    "UUID": r"[A-Fa-f0-9]{8}-(?:[A-Fa-f0-9]{4}-){3}[A-Fa-f0-9]{12}",
    "MAC": r"(?:[A-Fa-f0-9]{2}[:-]){5}[A-Fa-f0-9]{2}",
    "IPV4": _IPV4,
    "IPV6": r"[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:%\w+)?",
    "IP": r"(?:%{IPV6}|%{IPV4})",
    "HOSTNAME": r"\b[0-9A-Za-z][0-9A-Za-z-]{0,62}(?:\.[0-9A-Za-z][0-9A-Za-z-]{0,62})*\.?\b",
    "IPORHOST": r"(?:%{IP}|%{HOSTNAME})",
    "HOSTPORT": r"%{IPORHOST}:%{POSINT}",
    "PATH": r"(?:/[^\s?#]*)+",
    "URIPATH": r"/[^\s?#]*",
    "URIPARAM": r"\?[^\s#]*",
    "URIPATHPARAM": r"%{URIPATH}(?:%{URIPARAM})?",
    "URI": r"[A-Za-z][A-Za-z0-9+.-]*://\S+",
    "MONTH": r"\b(?i:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\b",
    "MONTHNUM": r"(?:0?[1-9]|1[0-2])",
    "MONTHDAY": r"(?:0[1-9]|[12][0-9]|3[01]|[1-9])",
    "DAY": r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)[a-z]*",
    "YEAR": r"\d{4}",
    "HOUR": r"(?:2[0123]|[01]?[0-9])",
    "MINUTE": r"[0-5][0-9]",
    "SECOND": r"(?:[0-5]?[0-9]|60)(?:[:.,][0-9]+)?",
    "TIME": r"%{HOUR}:%{MINUTE}:%{SECOND}",
    "ISO8601_TIMEZONE": r"(?:Z|[+-]%{HOUR}(?::?%{MINUTE}))",
    "TIMESTAMP_ISO8601": (
        r"%{YEAR}-%{MONTHNUM}-%{MONTHDAY}[T ]%{HOUR}:?%{MINUTE}(?::?%{SECOND})?"
        r"%{ISO8601_TIMEZONE}?"
    ),
    "HTTPDATE": r"%{MONTHDAY}/%{MONTH}/%{YEAR}:%{TIME} [+-]\d{4}",
    "SYSLOGTIMESTAMP": r"%{MONTH} +%{MONTHDAY} %{TIME}",
    "LOGLEVEL": (
        r"(?i:trace|debug|notice|info|warn(?:ing)?|err(?:or)?|crit(?:ical)?|fatal|severe"
        r"|alert|emerg(?:ency)?)"
    ),
}
_REFERENCE = re.compile(r"%\{(\w+)(?::([\w.@-]+))?(?::(int|float|bool|str))?\}")
MAX_DEPTH = 20


class GrokParser(BaseParser):
    name = "grok"
    sets_level_raw = True
    option_examples: ClassVar[dict[str, Any]] = {"pattern": "%{IP:client} %{WORD:method}"}

    def __init__(
        self, pattern: str, patterns: dict[str, str] | None = None, time_format: str = "auto"
    ) -> None:
        self.table = {**PATTERNS, **(patterns or {})}
        self.time_format = time_format
        self.fields: list[str] = []
        self.converters: dict[str, Any] = {}
        source = self._expand(pattern, depth=0, capture=True)
        try:
            self.regex = re.compile(source, re.DOTALL)
        except re.error as exc:
            raise ValueError(f"pattern does not compile: {exc}") from None
        if not self.fields:
            raise ValueError("pattern captures nothing: name a field, %{IP:client}")

    def _expand(self, pattern: str, depth: int, capture: bool) -> str:
        if depth > MAX_DEPTH:
            raise ValueError("patterns refer to each other too deeply (a loop?)")

        def replace(match: re.Match[str]) -> str:
            name, field, type_name = match.groups()
            if name not in self.table:
                raise ValueError(f"unknown grok pattern %{{{name}}}")
            inner = self._expand(self.table[name], depth + 1, capture=False)
            if not (capture and field):
                return f"(?:{inner})"
            group = f"g{len(self.fields)}"
            self.fields.append(field)
            if type_name and type_name != "str":
                self.converters[field] = CONVERTERS[type_name]
            return f"(?P<{group}>{inner})"

        return _REFERENCE.sub(replace, pattern)

    def parse(self, text: str) -> dict[str, Any]:
        match = self.regex.match(text)
        if match is None:
            raise ParseError("line does not match the grok pattern")
        fields: dict[str, Any] = {}
        for index, name in enumerate(self.fields):
            value = match.group(f"g{index}")
            if value is None:
                continue
            converter = self.converters.get(name)
            if converter is not None:
                try:
                    value = converter(value)
                except ValueError:
                    raise ParseError(
                        f"{name}: {value[:32]!r} is not of its type", kind="bad_type"
                    ) from None
            fields[name] = value
        return fields
