"""Fluent Bit's built-in parsers (its conf/parsers.conf) that podkit had no parser for.

The others are podkit parsers under Fluent Bit's name (pyproject registers the alias):
`apache` and `apache2` (access log, combined), `apache_error`, `nginx`, `json`, `logfmt`,
`cri`, `syslog-rfc5424`, `syslog-rfc3164`. Fields shared with podkit's access-log parser
keep podkit's names (client, status, bytes, user_agent); the fields only Fluent Bit's
regex has keep Fluent Bit's names (real_ip, request_length, upstream_addr, ...).

    k8s-nginx-ingress   the ingress-nginx controller's upstream log format
    docker              Docker's json-file lines: {"log":"...\\n","stream":"stdout","time":...}
    docker-daemon       dockerd's logrus lines: time="..." level=info msg="..."
    syslog-rfc3164-local  <pri>Mon dd hh:mm:ss ident[pid]: message (no host: /dev/log)
    mongodb             4.4+ JSON ({"t":{"$date":...},"s":"I","c":"NETWORK",...}) and the
                        older text (2019-05-01T12:00:00.123+0000 I NETWORK [conn1] msg)
    envoy               Envoy's default access log format
    istio-envoy-proxy   Istio's sidecar access log format
    kube-custom         a /var/log/containers file name: pod_namespace_container-id.log
    kmsg-netfilter-log  iptables LOG lines from the kernel, in RFC 5424
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from podkit.parsers import ParseError

from .access import AccessLogParser
from .base import BaseParser
from .logfmt import LogfmtParser
from .syslog import FACILITIES, SEVERITIES

_INGRESS_TAIL = re.compile(
    r"(\d+|-) (\S+) \[([^\]]*)\](?: \[([^\]]*)\])? (\S+) (\S+) (\S+) (\S+)(?: (\S+))?(?: (.*))?$"
)
_INGRESS_PREFIX = re.compile(r"(\S+) - \[([^\]]*)\] - ")


def _num(value: str) -> Any:
    """ingress-nginx and Envoy write `-` for a missing number and `a, b` for retries."""
    if value == "-" or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        try:
            return float(value)
        except ValueError:
            return value


class K8sNginxIngress(AccessLogParser):
    """`k8s-nginx-ingress`: ingress-nginx's `upstreaminfo` log format.

    `$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent
    "$http_referer" "$http_user_agent" $request_length $request_time
    [$proxy_upstream_name] [$proxy_alternative_upstream_name] $upstream_addr
    $upstream_response_length $upstream_response_time $upstream_status $req_id`,
    and Fluent Bit's older form with `- [real_ip] -` after the client. Fields: nginx's,
    plus request_length, request_time, proxy_upstream_name,
    proxy_alternative_upstream_name, upstream_addr, upstream_response_length,
    upstream_response_time, upstream_status, req_id (numbers typed; several upstreams
    tried stay as written, `10.0.0.1:80, 10.0.0.2:80`).
    """

    name = "k8s-nginx-ingress"

    def __init__(self) -> None:
        super().__init__("combined")

    def parse(self, text: str) -> dict[str, Any]:
        real_ip = None
        prefix = _INGRESS_PREFIX.match(text)
        if prefix is not None:  # Fluent Bit's form: host - [real_ip] - user [time] ...
            real_ip = prefix.group(2)
            text = prefix.group(1) + " - " + text[prefix.end() :]
        fields = super().parse(text)
        extra = fields.pop("extra", None)
        if real_ip is not None:
            fields["real_ip"] = real_ip
        if extra is None:
            raise ParseError("no ingress-nginx fields after the user agent")
        match = _INGRESS_TAIL.match(extra)
        if match is None:
            raise ParseError("ingress-nginx fields after the user agent do not match")
        (length, request_time, upstream_name, alternative, addr, response_length,
         response_time, upstream_status, req_id, rest) = match.groups()  # fmt: skip
        fields["request_length"] = _num(length)
        fields["request_time"] = _num(request_time)
        fields["proxy_upstream_name"] = upstream_name
        if alternative:
            fields["proxy_alternative_upstream_name"] = alternative
        fields["upstream_addr"] = None if addr == "-" else addr
        fields["upstream_response_length"] = _num(response_length)
        fields["upstream_response_time"] = _num(response_time)
        fields["upstream_status"] = _num(upstream_status)
        if req_id is not None:
            fields["req_id"] = req_id
        if rest:
            fields["extra"] = rest
        return fields


class DockerParser(BaseParser):
    """`docker`: the json-file driver's lines. Fields: timestamp, stream, message (the
    `log` without its newline); `partial: true` when Docker split a long line (no newline:
    the next record continues it)."""

    name = "docker"
    sets_level_raw = True

    def parse(self, text: str) -> dict[str, Any]:
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise ParseError(f"invalid JSON: {exc}", kind="bad_json") from None
        if not isinstance(value, dict) or "log" not in value:
            raise ParseError("not a json-file line (no `log` key)", kind="not_docker")
        log = value.pop("log")
        fields: dict[str, Any] = {}
        if "time" in value:
            fields["timestamp"] = value.pop("time")
        if isinstance(log, str) and log.endswith("\n"):
            fields["message"] = log[:-1]
        else:
            fields["message"] = log
            fields["partial"] = True
        fields.update(value)
        return fields


class DockerDaemonParser(LogfmtParser):
    """`docker-daemon`: dockerd's (logrus) `time="2024-05-01T12:00:00.123Z" level=info
    msg="..."`, logfmt with the same fields: timestamp, level, message, and the rest."""

    name = "docker-daemon"

    def parse(self, text: str) -> dict[str, Any]:
        fields = super().parse(text)
        if "timestamp" not in fields or "message" not in fields:
            raise ParseError("not a dockerd line (time=... level=... msg=...)")
        return fields


_RFC3164_LOCAL = re.compile(
    r"<(\d{1,3})>([A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2}) "
    r"([\w/.\-]*)(?:\[(\d+)\])?(?:[^:]*:)? *(.*)",
    re.DOTALL,
)


class Syslog3164Local(BaseParser):
    """`syslog-rfc3164-local`: what programs send to /dev/log, without a host:
    `<13>May  1 12:00:00 app[42]: message`. Fields: timestamp, level, facility, app,
    pid, message."""

    name = "syslog-rfc3164-local"
    time_format = "syslog"

    def parse(self, text: str) -> dict[str, Any]:
        match = _RFC3164_LOCAL.match(text)
        if match is None:
            raise ParseError("not a local syslog line (<pri>Mmm dd hh:mm:ss ident[pid]: msg)")
        pri, timestamp, app, pid, message = match.groups()
        value = int(pri)
        if value > 191:
            raise ParseError(f"PRI {value} out of range", kind="bad_pri")
        fields: dict[str, Any] = {
            "timestamp": timestamp,
            "level": SEVERITIES[value & 7],
            "facility": FACILITIES[value >> 3],
            "message": message,
            "app": app,
        }
        if pid is not None:
            fields["pid"] = int(pid)
        return fields


_MONGO_TEXT = re.compile(
    r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?)\s+"
    r"([FEWI]|D\d?)\s+(\S+)\s+\[([^\]]+)\]\s+(.*?)(?: (\d+)ms)?$",
    re.DOTALL,
)
_MONGO_LEVELS = {"F": "fatal", "E": "error", "W": "warning", "I": "info"}


class MongodbParser(BaseParser):
    """`mongodb`: mongod's log, the JSON of 4.4+ and the text before it.

    4.4+: `{"t":{"$date":"..."},"s":"I","c":"NETWORK","id":22943,"ctx":"listener",
    "msg":"Connection accepted","attr":{...}}`; older: `2019-05-01T12:00:00.123+0000 I
    NETWORK  [conn1] end connection 12ms`. Fields: timestamp, level (from the severity
    letter, D1-D5 are debug), component, context, id, message, attr, duration_ms (text
    lines ending in `Nms`, as Fluent Bit's `ms`)."""

    name = "mongodb"
    sets_level_raw = True

    def parse(self, text: str) -> dict[str, Any]:
        if text[:1] == "{":
            return self._json(text)
        match = _MONGO_TEXT.match(text)
        if match is None:
            raise ParseError("not a mongod log line (JSON, or time S COMPONENT [context] msg)")
        timestamp, severity, component, context, message, ms = match.groups()
        if timestamp[-5] in "+-" and timestamp[-3] != ":":
            timestamp = timestamp[:-2] + ":" + timestamp[-2:]
        fields: dict[str, Any] = {
            "timestamp": timestamp,
            "level": _MONGO_LEVELS.get(severity, "debug"),
            "level_raw": severity,
            "message": message,
            "component": component,
            "context": context,
        }
        if ms is not None:
            fields["duration_ms"] = int(ms)
        return fields

    def _json(self, text: str) -> dict[str, Any]:
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise ParseError(f"invalid JSON: {exc}", kind="bad_json") from None
        if not isinstance(value, dict) or "s" not in value or "t" not in value:
            raise ParseError("not a mongod JSON line (no t and s)", kind="not_mongodb")
        moment = value.pop("t")
        severity = value.pop("s")
        fields: dict[str, Any] = {
            "timestamp": moment.get("$date") if isinstance(moment, dict) else moment,
            "level": _MONGO_LEVELS.get(severity, "debug") if isinstance(severity, str) else None,
            "level_raw": severity,
            "message": value.pop("msg", ""),
        }
        if "c" in value:
            fields["component"] = value.pop("c")
        if "ctx" in value:
            fields["context"] = value.pop("ctx")
        fields.update(value)
        return fields


_ENVOY_HEAD = r'\[([^\]]+)\] "(?:(\S+) (\S*) (\S+)|([^"]*))" (\d{1,3}|-) (\S+) '
_ENVOY = re.compile(
    _ENVOY_HEAD + r'(\d+|-) (\d+|-) (\d+|-) (\S+) "([^"]*)" "([^"]*)" "([^"]*)" "([^"]*)" "([^"]*)"'
    r"(?: (.*))?$"
)
_ISTIO = re.compile(
    _ENVOY_HEAD + r"(\S+) (\S+|\"[^\"]*\") (\S+) "
    r'(\d+|-) (\d+|-) (\d+|-) (\S+) "([^"]*)" "([^"]*)" "([^"]*)" "([^"]*)" "([^"]*)" '
    r"(\S+) (\S+) (\S+) (\S+) (\S+) (\S+)(?: (.*))?$"
)


def _envoy_head(groups: tuple[str | None, ...]) -> dict[str, Any]:
    start, method, path, protocol, request, code, flags = groups[:7]
    fields: dict[str, Any] = {"timestamp": start}
    if method is not None:
        fields["message"] = f"{method} {path} {protocol}"
        fields["method"], fields["path"], fields["protocol"] = method, path, protocol
    else:
        fields["message"] = request
    fields["status"] = _num(code or "-")
    if flags != "-":
        fields["response_flags"] = flags
    return fields


def _put_numbers(fields: dict[str, Any], names: tuple[str, ...], values: Any) -> None:
    for name, value in zip(names, values, strict=True):
        number = _num(value)
        if number is not None:
            fields[name] = number


_ENVOY_NUMBERS = ("bytes_received", "bytes_sent", "duration", "x_envoy_upstream_service_time")


class EnvoyParser(BaseParser):
    """`envoy`: Envoy's default access log format.

    `[2024-05-01T12:00:00.123Z] "GET /api HTTP/1.1" 200 - 0 15 3 2 "10.0.0.1" "curl/8"
    "req-id" "example.com" "10.0.0.9:8080"`. Fields (Fluent Bit's names, typed): timestamp
    (start_time), method, path, protocol, status (code), response_flags, bytes_received,
    bytes_sent, duration, x_envoy_upstream_service_time, x_forwarded_for, user_agent,
    request_id, authority, upstream_host, message (the request line)."""

    name = "envoy"
    derived_level = True

    def parse(self, text: str) -> dict[str, Any]:
        match = _ENVOY.match(text)
        if match is None:
            raise ParseError("not an Envoy access log line (default format)")
        g = match.groups()
        fields = _envoy_head(g)
        _put_numbers(fields, _ENVOY_NUMBERS, g[7:11])
        for name, value in zip(
            ("x_forwarded_for", "user_agent", "request_id", "authority", "upstream_host"),
            g[11:16],
            strict=True,
        ):
            if value != "-":
                fields[name] = value
        if g[16]:
            fields["extra"] = g[16]
        _status_level(fields)
        return fields


def _status_level(fields: dict[str, Any]) -> None:
    status = fields.get("status")
    if isinstance(status, int):
        fields["level"] = (
            "error" if status >= 500 or status == 0 else ("warning" if status >= 400 else "info")
        )


class IstioEnvoyProxy(BaseParser):
    """`istio-envoy-proxy`: the Istio sidecar's access log (its default TEXT format).

    Envoy's fields, plus response_code_details, connection_termination_details,
    upstream_transport_failure_reason, upstream_cluster, upstream_local_address,
    downstream_local_address, downstream_remote_address, requested_server_name,
    route_name (Fluent Bit's names; `-` left out)."""

    name = "istio-envoy-proxy"
    derived_level = True

    def parse(self, text: str) -> dict[str, Any]:
        match = _ISTIO.match(text)
        if match is None:
            raise ParseError("not an Istio proxy access log line")
        g = match.groups()
        fields = _envoy_head(g)
        names = (
            "response_code_details", "connection_termination_details",
            "upstream_transport_failure_reason",
        )  # fmt: skip
        for name, value in zip(names, g[7:10], strict=True):
            value = value.strip('"')
            if value != "-":
                fields[name] = value
        _put_numbers(fields, _ENVOY_NUMBERS, g[10:14])
        names = (  # type: ignore[assignment]
            "x_forwarded_for", "user_agent", "request_id", "authority", "upstream_host",
            "upstream_cluster", "upstream_local_address", "downstream_local_address",
            "downstream_remote_address", "requested_server_name", "route_name",
        )  # fmt: skip
        for name, value in zip(names, g[14:25], strict=True):
            if value != "-":
                fields[name] = value
        if g[25]:
            fields["extra"] = g[25]
        _status_level(fields)
        return fields


_KUBE_CUSTOM = re.compile(
    r"(?:.*/)?(?:([^./]+)\.)?([a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*)"
    r"_([^_]+)_(.+)-([a-z0-9]{64})\.log$"
)


class KubeCustom(BaseParser):
    """`kube-custom`: the name of a kubelet log file (or a tag made from it),
    `[tag.]pod_namespace_container-<64 hex>.log`. Fields (Fluent Bit's names): tag,
    pod_name, namespace_name, container_name, docker_id. Fluent Bit applies it to the
    tag; here it reads lines that are such names (a file list, a tag field)."""

    name = "kube-custom"

    def parse(self, text: str) -> dict[str, Any]:
        match = _KUBE_CUSTOM.match(text.strip())
        if match is None:
            raise ParseError("not a pod_namespace_container-id.log name")
        tag, pod, namespace, container, docker_id = match.groups()
        fields: dict[str, Any] = {}
        if tag is not None:
            fields["tag"] = tag
        fields["pod_name"] = pod
        fields["namespace_name"] = namespace
        fields["container_name"] = container
        fields["docker_id"] = docker_id
        return fields


_KMSG = re.compile(
    r"<(\d{1,3})>1 (\S+) (\S+) kernel - - - \[ *([\d.]+)\] (?:(\S*) ?)?(IN=.*)$", re.DOTALL
)
_NETFILTER_KEYS = {
    "IN": "in", "OUT": "out", "SRC": "saddr", "DST": "daddr", "TOS": "tos", "PREC": "prec",
    "TTL": "ttl", "ID": "id", "PROTO": "proto", "SPT": "sport", "DPT": "dport",
    "WINDOW": "window", "RES": "res", "URGP": "urgp", "TYPE": "type", "CODE": "code",
    "SEQ": "seq", "MARK": "mark", "PHYSIN": "physin", "PHYSOUT": "physout",
}  # fmt: skip
_NETFILTER_INTS = {"ttl", "id", "sport", "dport", "window", "urgp", "len", "protolen", "type",
                   "code", "seq"}  # fmt: skip


class KmsgNetfilterLog(BaseParser):
    """`kmsg-netfilter-log`: iptables `LOG` target lines from the kernel, as RFC 5424.

    `<4>1 2024-05-01T12:00:00.000+00:00 host kernel - - - [12.345] DROP IN=eth0 OUT=
    MAC=aa:..:bb:..:08:00 SRC=10.0.0.1 DST=10.0.0.2 LEN=60 ... PROTO=TCP SPT=1 DPT=22 ...
    SYN URGP=0`. Fields (Fluent Bit's names): timestamp, level, host, uptime, logprefix,
    in, out, macsrc, macdst, ethtype, saddr, daddr, len, tos, prec, ttl, id, proto,
    sport, dport, protolen, window, res, flag (the bare words: DF SYN ACK ...), urgp;
    numbers typed. Split on spaces, not one regex per field. The kernel writes the
    destination MAC first: macdst is that one (Fluent Bit's regex calls it macsrc)."""

    name = "kmsg-netfilter-log"

    def parse(self, text: str) -> dict[str, Any]:
        match = _KMSG.match(text)
        if match is None:
            raise ParseError("not a kernel netfilter LOG line (<pri>1 time host kernel ...)")
        pri, timestamp, host, uptime, prefix, rest = match.groups()
        value = int(pri)
        if value > 191:
            raise ParseError(f"PRI {value} out of range", kind="bad_pri")
        fields: dict[str, Any] = {
            "timestamp": timestamp,
            "level": SEVERITIES[value & 7],
            "message": text[match.start(5) if prefix is not None else match.start(6) :],
            "host": host,
            "uptime": float(uptime),
        }
        if prefix:
            fields["logprefix"] = prefix
        flags: list[str] = []
        seen_proto = False
        for word in rest.split():
            key, equals, val = word.partition("=")
            if not equals:
                flags.append(word)
                continue
            if key == "MAC":
                parts = val.split(":")
                if len(parts) >= 14:
                    fields["macsrc"] = ":".join(parts[6:12])
                    fields["macdst"] = ":".join(parts[0:6])
                    fields["ethtype"] = ":".join(parts[12:14])
                else:
                    fields["mac"] = val
                continue
            if key == "LEN":
                name = "protolen" if seen_proto else "len"
            else:
                name = _NETFILTER_KEYS.get(key, key.lower())
                seen_proto = seen_proto or key == "PROTO"
            fields[name] = int(val) if name in _NETFILTER_INTS and val.isdigit() else val
        if flags:
            fields["flag"] = " ".join(flags)
        return fields


__all__ = [
    "DockerDaemonParser",
    "DockerParser",
    "EnvoyParser",
    "IstioEnvoyProxy",
    "K8sNginxIngress",
    "KmsgNetfilterLog",
    "KubeCustom",
    "MongodbParser",
    "Syslog3164Local",
]
