"""The built-in parsers, each registered in the `podkit.parsers` entry-point group."""

from __future__ import annotations

from .access import AccessLogParser, ApacheCombined, ApacheCommon, NginxCommon
from .base import BaseParser, RegexParser
from .classic import ClassicParser
from .cri import CriParser
from .grok import GrokParser
from .json_lines import JsonParser
from .klog import KlogParser
from .logfmt import LogfmtParser
from .python_logging import PythonLoggingParser
from .syslog import Syslog3164Parser, Syslog5424Parser, SyslogParser

__all__ = [
    "AccessLogParser",
    "ApacheCombined",
    "ApacheCommon",
    "BaseParser",
    "ClassicParser",
    "CriParser",
    "GrokParser",
    "JsonParser",
    "KlogParser",
    "LogfmtParser",
    "NginxCommon",
    "PythonLoggingParser",
    "RegexParser",
    "Syslog3164Parser",
    "Syslog5424Parser",
    "SyslogParser",
]
