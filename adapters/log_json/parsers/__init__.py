"""The built-in parsers, each registered in the `podkit.parsers` entry-point group."""

from __future__ import annotations

from .access import AccessLogParser, ApacheCombined, ApacheCommon, NginxCommon
from .auto import AutoParser
from .base import BaseParser, RegexParser
from .classic import ClassicParser
from .cri import CriParser
from .fluentbit_builtin import (
    DockerDaemonParser,
    DockerParser,
    EnvoyParser,
    IstioEnvoyProxy,
    K8sNginxIngress,
    KmsgNetfilterLog,
    KubeCustom,
    MongodbParser,
    Syslog3164Local,
)
from .grok import GrokParser
from .json_lines import JsonParser
from .klog import KlogParser
from .logfmt import LogfmtParser
from .python_logging import PythonLoggingParser
from .server_logs import (
    ApacheErrorParser,
    GoParser,
    HaproxyParser,
    JavaParser,
    MariadbParser,
    MosquittoParser,
    NatsParser,
    NginxErrorParser,
    NodeParser,
    PostgresqlParser,
    RabbitmqParser,
    RedisParser,
)
from .syslog import Syslog3164Parser, Syslog5424Parser, SyslogParser

__all__ = [
    "AccessLogParser",
    "ApacheCombined",
    "ApacheCommon",
    "ApacheErrorParser",
    "AutoParser",
    "BaseParser",
    "ClassicParser",
    "CriParser",
    "DockerDaemonParser",
    "DockerParser",
    "EnvoyParser",
    "GoParser",
    "GrokParser",
    "HaproxyParser",
    "IstioEnvoyProxy",
    "JavaParser",
    "JsonParser",
    "K8sNginxIngress",
    "KlogParser",
    "KmsgNetfilterLog",
    "KubeCustom",
    "LogfmtParser",
    "MariadbParser",
    "MongodbParser",
    "MosquittoParser",
    "NatsParser",
    "NginxCommon",
    "NginxErrorParser",
    "NodeParser",
    "PostgresqlParser",
    "PythonLoggingParser",
    "RabbitmqParser",
    "RedisParser",
    "RegexParser",
    "Syslog3164Local",
    "Syslog3164Parser",
    "Syslog5424Parser",
    "SyslogParser",
]
