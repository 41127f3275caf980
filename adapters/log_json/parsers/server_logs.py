"""The servers that run beside apps, in the log formats Debian ships them with.

Each parser is one precompiled pattern (or a split) for its fixed format; the examples are
lines those programs wrote (tests/golden/log_adapter/NAME.in, SOURCES.md says how).

    postgresql    2024-05-01 12:00:00.123 UTC [2195] LOG:  database system is ready
    redis         2215:M 01 May 2024 12:00:00.365 * Ready to accept connections
    mariadb       2024-05-01 12:00:00 0 [Note] InnoDB: Completed initialization
    nginx_error   2024/05/01 12:00:00 [error] 7478#7478: *2 connect() failed ..., client: ...
    apache_error  [Tue May 01 12:00:00.588059 2024] [authz_core:error] [pid 7481:tid 7486] ...
    rabbitmq      2024-05-01 12:00:00.540319+00:00 [notice] <0.223.0> Logging: ...
    nats          [2952] 2024/05/01 12:00:00.323396 [INF] Starting nats-server
    mosquitto     1714564800: New connection from 127.0.0.1:42314 on port 1883.
    haproxy       <134>May  1 12:00:00 host haproxy[7949]: 127.0.0.1:44312 [01/May/2024:...
    java          13:26:09.614 [main] INFO com.example.Orders - order 42 accepted
    go            2024/05/01 12:00:00 INFO hello count=3   (log, slog's default and TextHandler)
    node          {"level":30,"time":1714564800000,"pid":1,"hostname":"h","msg":"hi"}
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, ClassVar

from podkit.parsers import ParseError

from ..normalize import TimeIn
from .base import BaseParser
from .json_lines import JsonParser
from .logfmt import LogfmtParser

# --- PostgreSQL --------------------------------------------------------------------------

_PG_LEVELS = (
    r"(DEBUG[1-5]|LOG|INFO|NOTICE|WARNING|ERROR|FATAL|PANIC"
    r"|DETAIL|HINT|QUERY|CONTEXT|STATEMENT|LOCATION):  ?"
)
# Lines that explain the line before (an ERROR's STATEMENT): informational on their own.
_PG_SECONDARY = {"DETAIL", "HINT", "QUERY", "CONTEXT", "STATEMENT", "LOCATION"}
_PG_TIME = r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}"
_PG_ESCAPES: dict[str, tuple[str, str]] = {
    # escape: (field, pattern). log_line_prefix's escapes, as PostgreSQL 15 documents them.
    "a": ("application", r".*?"),
    "u": ("user", r"\S*?"),
    "d": ("database", r"\S*?"),
    "r": ("remote", r"\S*?"),
    "h": ("remote_host", r"\S*?"),
    "b": ("backend_type", r".*?"),
    "p": ("pid", r"\d+"),
    "P": ("leader_pid", r"\d*"),
    "t": ("timestamp", _PG_TIME + r"(?: [A-Za-z+\-\d:]+)?"),
    "m": ("timestamp", _PG_TIME + r"\.\d{3}(?: [A-Za-z+\-\d:]+)?"),
    "n": ("timestamp", r"\d+\.\d{3}"),
    "i": ("command_tag", r".*?"),
    "e": ("sql_state", r"[0-9A-Z]{5}"),
    "c": ("session_id", r"[0-9a-f]+\.[0-9a-f]+"),
    "l": ("session_line", r"\d+"),
    "s": ("session_start", _PG_TIME + r"(?: [A-Za-z+\-\d:]+)?"),
    "v": ("virtual_xid", r"\S*?"),
    "x": ("xid", r"\d+"),
    "Q": ("query_id", r"-?\d+"),
}
_PG_INT_FIELDS = {"pid", "leader_pid", "session_line", "xid"}
DEFAULT_PG_PREFIX = "%m [%p] "


def compile_log_line_prefix(prefix: str) -> tuple[re.Pattern[str], list[str]]:
    """PostgreSQL's `log_line_prefix` (`%m [%p] %q%u@%d `) -> a pattern and its fields."""
    parts: list[str] = []
    fields: list[str] = []
    optional = False
    index = 0
    while index < len(prefix):
        char = prefix[index]
        if char != "%":
            parts.append(re.escape(char))
            index += 1
            continue
        index += 1
        if index >= len(prefix):
            raise ValueError("log_line_prefix ends with a lone %")
        escape = prefix[index]
        index += 1
        if escape == "%":
            parts.append("%")
        elif escape == "q":  # non-session processes stop the prefix here
            parts.append("(?:")
            optional = True
        elif escape in _PG_ESCAPES:
            field, pattern = _PG_ESCAPES[escape]
            if field in fields:
                parts.append(f"(?:{pattern})")
            else:
                fields.append(field)
                parts.append(f"({pattern})")
        else:
            raise ValueError(f"log_line_prefix: unknown escape %{escape}")
    if optional:
        parts.append(")?")
    return re.compile("".join(parts) + _PG_LEVELS + "(.*)", re.DOTALL), fields


class PostgresqlParser(BaseParser):
    """`postgresql`: the server log with `log_line_prefix` (default `%m [%p] `).

    Option `log_line_prefix`: the server's setting, its `%` escapes become fields (`%u`
    user, `%d` database, `%a` application, `%e` sql_state, `%c` session_id ...). With the
    default, Debian's `%m [%p] %q%u@%d ` is read too (user, database). Fields: timestamp,
    pid (int), level (LOG is info; DETAIL, HINT, STATEMENT... lines that explain the line
    before are info), message.
    """

    name = "postgresql"
    sets_level_raw = True
    time_format = "zoned"

    def __init__(self, log_line_prefix: str = DEFAULT_PG_PREFIX) -> None:
        if log_line_prefix == DEFAULT_PG_PREFIX:
            # The default, and Debian's `%m [%p] %q%u@%d ` with it.
            self._regex = re.compile(
                r"(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3}(?: [A-Za-z+\-\d:]+)?) \[(\d+)\] "
                r"(?:(\S*)@(\S*) )?" + _PG_LEVELS + "(.*)",
                re.DOTALL,
            )
            self._fields = ["timestamp", "pid", "user", "database"]
        else:
            try:
                self._regex, self._fields = compile_log_line_prefix(log_line_prefix)
            except re.error as exc:
                raise ValueError(f"log_line_prefix does not compile: {exc}") from None
        if "timestamp" in self._fields and "%n" in log_line_prefix:
            self.time_format = "epoch"
        self.log_line_prefix = log_line_prefix
        self._match = self._regex.match

    def parse(self, text: str) -> dict[str, Any]:
        match = self._match(text)
        if match is None:
            raise ParseError("not a PostgreSQL log line (log_line_prefix, then LEVEL:  message)")
        groups = match.groups()
        fields: dict[str, Any] = {}
        for name, value in zip(self._fields, groups, strict=False):
            if value is None or value == "" or value == "[unknown]":
                continue
            fields[name] = int(value) if name in _PG_INT_FIELDS else value
        level, message = groups[-2], groups[-1]
        if level in _PG_SECONDARY:
            fields["level"] = "info"
            fields["level_raw"] = level
        else:
            fields["level"] = level
        fields["message"] = message
        return fields


# --- Redis -------------------------------------------------------------------------------

_REDIS = re.compile(
    r"(\d+):([XCSM]) (\d{1,2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2}\.\d{3}) ([.\-*#]) (.*)",
    re.DOTALL,
)
_REDIS_SIGNAL = re.compile(r"(\d+):signal-handler \((\d+)\) (.*)", re.DOTALL)
_REDIS_LEVELS = {".": "debug", "-": "debug", "*": "notice", "#": "warning"}
_REDIS_ROLES = {"M": "master", "S": "replica", "C": "child", "X": "sentinel"}


class RedisParser(BaseParser):
    """`redis`: `pid:role dd Mon yyyy hh:mm:ss.mmm <sym> message` (also Sentinel's).

    The symbol is the level (`.` debug, `-` verbose, `*` notice, `#` warning; kept in
    level_raw); role is master, replica, child (a fork: BGSAVE) or sentinel. The signal
    handler's lines (`pid:signal-handler (epoch) ...`) carry an epoch time.
    """

    name = "redis"
    sets_level_raw = True
    time_format = "redis"

    def parse(self, text: str) -> dict[str, Any]:
        match = _REDIS.match(text)
        if match is not None:
            pid, role, timestamp, symbol, message = match.groups()
            return {
                "timestamp": timestamp,
                "level": _REDIS_LEVELS[symbol],
                "level_raw": symbol,
                "message": message,
                "pid": int(pid),
                "role": _REDIS_ROLES[role],
            }
        match = _REDIS_SIGNAL.match(text)
        if match is not None:
            pid, epoch, message = match.groups()
            return {
                "timestamp": datetime.fromtimestamp(int(epoch), UTC),
                "message": message,
                "pid": int(pid),
                "role": "signal-handler",
            }
        raise ParseError("not a redis log line (pid:role dd Mon yyyy hh:mm:ss.mmm sym msg)")


# --- MariaDB / MySQL ---------------------------------------------------------------------

_MARIADB = re.compile(
    r"(\d{4}-\d{2}-\d{2} +\d{1,2}:\d{2}:\d{2}) +(\d+) \[([A-Za-z]+)\] (.*)", re.DOTALL
)
_MYSQL8 = re.compile(
    r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})) +(\d+) "
    r"\[([A-Za-z]+)\] \[([^\]]+)\] \[([^\]]+)\] (.*)",
    re.DOTALL,
)
_MYSQL_LEVELS = {"Note": "info", "System": "info", "Warning": "warning", "ERROR": "error"}


class MariadbParser(BaseParser):
    """`mariadb` (alias `mysql`): the error log.

    MariaDB `2024-05-01 12:00:00 0 [Note] InnoDB: ...`, MySQL 8
    `2024-05-01T12:00:00.123456Z 0 [System] [MY-010116] [Server] ...`. Fields: timestamp,
    thread (int), level (Note and System are info), message; MySQL 8 adds error_code and
    subsystem. The `Version: ...` banner has no time: it is reported as not matching.
    """

    name = "mariadb"
    sets_level_raw = True

    def parse(self, text: str) -> dict[str, Any]:
        match = _MARIADB.match(text)
        if match is not None:
            timestamp, thread, level, message = match.groups()
            return {
                "timestamp": timestamp.replace("  ", " 0"),
                "level": _MYSQL_LEVELS.get(level, level),
                "level_raw": level,
                "message": message,
                "thread": int(thread),
            }
        match = _MYSQL8.match(text)
        if match is not None:
            timestamp, thread, level, code, subsystem, message = match.groups()
            return {
                "timestamp": timestamp,
                "level": _MYSQL_LEVELS.get(level, level),
                "level_raw": level,
                "message": message,
                "thread": int(thread),
                "error_code": code,
                "subsystem": subsystem,
            }
        raise ParseError("not a MariaDB/MySQL error log line")


# --- nginx error log ---------------------------------------------------------------------

_NGINX_ERROR = re.compile(
    r"(\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}) \[([a-z]+)\] (\d+)#(\d+): (?:\*(\d+) )?(.*)",
    re.DOTALL,
)
_NGINX_TAIL = re.compile(
    r', (client|server|request|upstream|host|referrer|subrequest): ("(?:[^"\\]|\\.)*"|[^,]*)'
)


class NginxErrorParser(BaseParser):
    """`nginx_error`: `yyyy/mm/dd hh:mm:ss [level] pid#tid: *cid message, client: ...`.

    Fields: timestamp, level, pid, tid, connection (the `*cid`, ints), message (without
    the tail), and from the tail client, server, request, upstream, host, referrer (quotes
    removed; empty values left out).
    """

    name = "nginx_error"
    time_format = "slashed"

    def parse(self, text: str) -> dict[str, Any]:
        match = _NGINX_ERROR.match(text)
        if match is None:
            raise ParseError("not an nginx error log line (yyyy/mm/dd hh:mm:ss [level] pid#tid:)")
        timestamp, level, pid, tid, connection, message = match.groups()
        fields: dict[str, Any] = {"timestamp": timestamp, "level": level}
        cut = message.find(", client: ")
        if cut >= 0:
            tail = message[cut:]
            message = message[:cut]
            for key, value in _NGINX_TAIL.findall(tail):
                if value.startswith('"'):
                    value = value[1:-1]
                if value:
                    fields[key] = value
        fields["message"] = message
        fields["pid"] = int(pid)
        fields["tid"] = int(tid)
        if connection is not None:
            fields["connection"] = int(connection)
        return fields


# --- Apache error log --------------------------------------------------------------------

_APACHE_ERROR = re.compile(
    r"\[((?:[A-Z][a-z]{2} )?[A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2}(?:\.\d{1,6})? \d{4})\] "
    r"\[(?:([^:\]]+):)?([a-z0-9]+)\] (?:\[pid (\d+)(?::tid (\d+))?\] )?"
    r"(?:\[client ([^\]]+)\] )?(?:(AH\d{5}): )?(.*)",
    re.DOTALL,
)


class ApacheErrorParser(BaseParser):
    """`apache_error`: Apache httpd 2.4's error log (2.2's form too).

    `[Tue May 01 12:00:00.588059 2024] [authz_core:error] [pid 1:tid 2] [client
    127.0.0.1:45108] AH01630: client denied ...`. Fields: timestamp, module, level, pid,
    tid (ints), client, code (the AHnnnnn message id), message.
    """

    name = "apache_error"
    time_format = "ctime"

    def parse(self, text: str) -> dict[str, Any]:
        match = _APACHE_ERROR.match(text)
        if match is None:
            raise ParseError("not an Apache error log line ([time] [module:level] ...)")
        timestamp, module, level, pid, tid, client, code, message = match.groups()
        fields: dict[str, Any] = {"timestamp": timestamp, "level": level, "message": message}
        if module is not None:
            fields["module"] = module
        if pid is not None:
            fields["pid"] = int(pid)
        if tid is not None:
            fields["tid"] = int(tid)
        if client is not None:
            fields["client"] = client
        if code is not None:
            fields["code"] = code
        return fields


# --- RabbitMQ, NATS, Mosquitto -----------------------------------------------------------

_RABBITMQ = re.compile(
    r"(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[+-]\d{2}:\d{2}|Z)?) "
    r"\[([a-z]+)\] <([\d.]+)> ?(.*)",
    re.DOTALL,
)


class RabbitmqParser(BaseParser):
    """`rabbitmq`: `2024-05-01 12:00:00.540319+00:00 [notice] <0.223.0> message` (3.9+; the
    3.8 form without zone too). Fields: timestamp, level, erlang_pid, message."""

    name = "rabbitmq"

    def parse(self, text: str) -> dict[str, Any]:
        match = _RABBITMQ.match(text)
        if match is None:
            raise ParseError("not a RabbitMQ log line (time [level] <erlang pid> message)")
        timestamp, level, erlang_pid, message = match.groups()
        return {
            "timestamp": timestamp,
            "level": level,
            "message": message,
            "erlang_pid": erlang_pid,
        }


_NATS = re.compile(
    r"(?:\[(\d+)\] )?(\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}(?:\.\d{1,9})?) \[([A-Z]{3})\] (.*)",
    re.DOTALL,
)


class NatsParser(BaseParser):
    """`nats`: `[pid] 2024/05/01 12:00:00.323396 [INF] message` (INF, WRN, ERR, DBG, TRC,
    FTL). Fields: timestamp, pid, level, message."""

    name = "nats"
    time_format = "slashed"

    def parse(self, text: str) -> dict[str, Any]:
        match = _NATS.match(text)
        if match is None:
            raise ParseError("not a NATS log line ([pid] yyyy/mm/dd hh:mm:ss [LVL] message)")
        pid, timestamp, level, message = match.groups()
        fields: dict[str, Any] = {"timestamp": timestamp, "level": level, "message": message}
        if pid is not None:
            fields["pid"] = int(pid)
        return fields


class MosquittoParser(BaseParser):
    """`mosquitto`: `1714564800: message`, the epoch-seconds prefix of its default
    log_timestamp; a log_timestamp_format time (`2024-05-01T12:00:00: message`) too.
    Fields: timestamp, message (Mosquitto writes no level)."""

    name = "mosquitto"

    def parse(self, text: str) -> dict[str, Any]:
        # The time ends at the first ": " (an ISO time has only ":" without a space).
        cut = text.find(": ")
        if cut <= 0:
            raise ParseError("not a Mosquitto log line (time: message)")
        stamp = text[:cut]
        if stamp.isdigit():
            return {"timestamp": int(stamp), "message": text[cut + 2 :]}
        if stamp[:4].isdigit() and stamp[4:5] == "-":
            return {"timestamp": stamp, "message": text[cut + 2 :]}
        raise ParseError("not a Mosquitto log line (time: message)")


# --- HAProxy -----------------------------------------------------------------------------

_SYSLOG_HEADER = (
    r"(?:<(\d{1,3})>)?(?:([A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2}) )?(?:(\S+) )??"
    r"([\w.\-/]+)\[(\d+)\]: "
)
_HAPROXY_HTTP = re.compile(
    "(?:"
    + _SYSLOG_HEADER
    + ")?"  # none with `log stdout format raw`
    + r"(\S+):(\d+) \[(\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2}\.\d{3})\] (\S+) ([^/\s]+)/(\S+) "
    r"(-?\d+)/(-?\d+)/(-?\d+)/(-?\d+)/\+?(-?\d+) (-?\d{1,3}) \+?(\d+) (\S+) (\S+) (\S{4}) "
    r"(\d+)/(\d+)/(\d+)/(\d+)/\+?(\d+) (\d+)/(\d+) "
    r'(?:\{([^}]*)\} )?(?:\{([^}]*)\} )?"(.*)"\s*$',
    re.DOTALL,
)
_HAPROXY_OTHER = re.compile(_SYSLOG_HEADER + r"(.*)", re.DOTALL)
_HAPROXY_INTS = (
    "time_request", "time_queue", "time_connect", "time_response", "time_total", "status",
    "bytes",
)  # fmt: skip
_HAPROXY_CONN = ("actconn", "feconn", "beconn", "srvconn", "retries", "srv_queue", "backend_queue")
_REQUEST_LINE = re.compile(r"([A-Z]{1,20}) (\S*) (HTTP/[\d.]{1,5})$")
_SEVERITY_NAMES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")


class HaproxyParser(BaseParser):
    """`haproxy`: `option httplog` lines, with or without their syslog header.

    `<134>May  1 12:00:00 host haproxy[7949]: 127.0.0.1:44312 [01/May/2024:12:00:00.575]
    web app/nginx1 0/0/0/0/0 200 216 - - ---- 1/1/0/0/0 0/0 "GET / HTTP/1.1"`. Fields:
    timestamp (the accept date), level (the syslog severity), client_ip, client_port,
    frontend, backend, server, time_request/queue/connect/response/total (ms, -1 when the
    step was not reached), status, bytes, request_cookie, response_cookie,
    termination_state, actconn, feconn, beconn, srvconn, retries, srv_queue, backend_queue,
    request_headers, response_headers, method, path, protocol, message (the request line),
    host and pid of the syslog header. HAProxy's other lines (`Proxy web stopped`) keep the
    header's fields and their text as message.
    """

    name = "haproxy"
    time_format = "clf"

    def parse(self, text: str) -> dict[str, Any]:
        match = _HAPROXY_HTTP.match(text)
        if match is None:
            return self._other(text)
        g = match.groups()
        fields: dict[str, Any] = {"timestamp": g[7]}
        if g[0] is not None:
            fields["level"] = _SEVERITY_NAMES[int(g[0]) & 7]
        request = g[30]
        fields["message"] = request
        fields["client_ip"] = g[5]
        fields["client_port"] = int(g[6])
        fields["frontend"] = g[8]
        fields["backend"] = g[9]
        fields["server"] = g[10]
        for name, value in zip(_HAPROXY_INTS, g[11:18], strict=True):
            fields[name] = int(value)
        if g[18] != "-":
            fields["request_cookie"] = g[18]
        if g[19] != "-":
            fields["response_cookie"] = g[19]
        fields["termination_state"] = g[20]
        for name, value in zip(_HAPROXY_CONN, g[21:28], strict=True):
            fields[name] = int(value)
        if g[28] is not None:
            fields["request_headers"] = g[28]
        if g[29] is not None:
            fields["response_headers"] = g[29]
        line = _REQUEST_LINE.match(request)
        if line is not None:
            fields["method"], fields["path"], fields["protocol"] = line.groups()
        if g[2] is not None:
            fields["host"] = g[2]
        if g[4] is not None:
            fields["pid"] = int(g[4])
        return fields

    def _other(self, text: str) -> dict[str, Any]:
        match = _HAPROXY_OTHER.match(text)
        if match is None or (match.group(1) is None and match.group(2) is None):
            raise ParseError("not a HAProxy log line (httplog, or a syslog line of haproxy)")
        pri, timestamp, host, _app, pid, message = match.groups()
        fields: dict[str, Any] = {}
        if timestamp is not None:
            fields["timestamp"] = TimeIn("syslog", timestamp)  # the adapter guesses the year
        if pri is not None:
            fields["level"] = _SEVERITY_NAMES[int(pri) & 7]
        fields["message"] = message
        if host is not None:
            fields["host"] = host
        fields["pid"] = int(pid)
        return fields


# --- Java, Go, Node ----------------------------------------------------------------------

_JAVA_LEVEL = r"(TRACE|DEBUG|INFO|WARN|WARNING|ERROR|FATAL|SEVERE)"
# logback's and log4j2's default and common patterns:
#   %d{HH:mm:ss.SSS} [%thread] %-5level %logger{36} - %msg%n
#   %d{yyyy-MM-dd HH:mm:ss.SSS} [%t] %-5level %logger{36} - %msg%n
_JAVA = re.compile(
    r"(?:(\d{4}-\d{2}-\d{2})[ T])?(\d{2}:\d{2}:\d{2}[.,]\d{3})(Z|[+-]\d{2}:?\d{2})? "
    r"\[([^\]]*)\] +" + _JAVA_LEVEL + r" +(\S+) +- ?(.*)",
    re.DOTALL,
)
# Spring Boot's default: 2024-05-01T12:00:00.123+02:00  INFO 1234 --- [app] [main] o.s.Class : msg
_SPRING = re.compile(
    r"(\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}[.,]\d{3}(?:Z|[+-]\d{2}:?\d{2})?) +"
    + _JAVA_LEVEL
    + r" +(\d+) --- (?:\[([^\]]*)\] )?\[ *([^\]]*)\] +(\S+) +: (.*)",
    re.DOTALL,
)


class JavaParser(BaseParser):
    """`java`: logback's and log4j2's default pattern layouts, and Spring Boot's.

    `13:26:09.614 [main] INFO com.example.Orders - order 42 accepted` (a time of day only:
    today's date), `2024-05-01 12:00:00.123 [main] ERROR ...`, Spring Boot
    `2024-05-01T12:00:00.123Z  INFO 1 --- [main] o.s.b.App : Started`. Fields: timestamp,
    thread, level, logger, message (and pid, application for Spring Boot). A stack trace
    is joined to its line by `--multiline java`.
    """

    name = "java"

    def parse(self, text: str) -> dict[str, Any]:
        match = _JAVA.match(text)
        if match is not None:
            day, clock, zone, thread, level, logger, message = match.groups()
            if day is None:
                # A time of day: the record's date is the adapter's (its clock and
                # --timezone), not the parser's.
                timestamp: Any = TimeIn("clock", clock)
            else:
                timestamp = f"{day}T{clock.replace(',', '.')}{zone or ''}"
            return {
                "timestamp": timestamp,
                "level": level,
                "message": message,
                "thread": thread,
                "logger": logger,
            }
        match = _SPRING.match(text)
        if match is not None:
            timestamp, level, pid, application, thread, logger, message = match.groups()
            fields: dict[str, Any] = {
                "timestamp": timestamp.replace(",", "."),
                "level": level,
                "message": message,
                "thread": thread,
                "logger": logger,
                "pid": int(pid),
            }
            if application:
                fields["application"] = application
            return fields
        raise ParseError("not a logback/log4j/Spring Boot line (time [thread] LEVEL logger - msg)")


_GO_LOG = re.compile(
    r"(\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}(?:\.\d{1,6})?) "
    r"(?:([\w./\-]+\.go:\d+): )?(?:(DEBUG|INFO|WARN|ERROR)(?:[+-]\d+)? )?(.*)",
    re.DOTALL,
)


class GoParser(BaseParser):
    """`go`: Go's `log` (`2024/05/01 12:00:00 message`, with Lmicroseconds and
    Lshortfile too), `log/slog`'s default handler (`... INFO message k=v`) and its
    TextHandler (`time=... level=INFO msg=... k=v`, read as logfmt). Fields: timestamp,
    level (slog), source (file.go:line), message, and the TextHandler's keys."""

    name = "go"
    sets_level_raw = True
    time_format = "slashed"

    def __init__(self) -> None:
        self._logfmt = LogfmtParser()

    def parse(self, text: str) -> dict[str, Any]:
        if text.startswith("time="):
            return self._logfmt.parse(text)
        match = _GO_LOG.match(text)
        if match is None:
            raise ParseError("not a Go log line (yyyy/mm/dd hh:mm:ss message, or time=...)")
        timestamp, source, level, message = match.groups()
        fields: dict[str, Any] = {"timestamp": timestamp}
        if level is not None:
            fields["level"] = level
        fields["message"] = message
        if source is not None:
            fields["source"] = source
        return fields


class NodeParser(JsonParser):
    """`node`: pino's and bunyan's JSON lines, numeric levels (10 trace ... 60 fatal).

    pino's `time` is epoch milliseconds, bunyan's an ISO string; `msg` is the message,
    the other keys (pid, hostname, name, err with its stack ...) are kept as they are.
    """

    name = "node"
    types: ClassVar[dict[str, str]] = {}

    def __init__(self) -> None:
        super().__init__(timestamp_keys=["time"], level_keys=["level"], message_keys=["msg"])

    def parse(self, text: str) -> dict[str, Any]:
        if text[:1] != "{":
            raise ParseError("not a JSON object", kind="bad_json")
        fields = super().parse(text)
        if type(fields.get("level")) is not int:
            raise ParseError("no numeric level: not pino or bunyan", kind="not_node")
        timestamp = fields.get("timestamp")
        if type(timestamp) is int:
            fields["timestamp"] = datetime.fromtimestamp(timestamp / 1000, UTC)
        return fields


__all__ = [
    "ApacheErrorParser",
    "GoParser",
    "HaproxyParser",
    "JavaParser",
    "MariadbParser",
    "MosquittoParser",
    "NatsParser",
    "NginxErrorParser",
    "NodeParser",
    "PostgresqlParser",
    "RabbitmqParser",
    "RedisParser",
    "compile_log_line_prefix",
]
