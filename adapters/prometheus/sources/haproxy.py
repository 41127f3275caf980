"""HAProxy CSV statistics, over HTTP (`/stats;csv`) or the stats unix socket (`show stat`).

One row per frontend, backend and server; the columns below become metrics labelled
`proxy` (and `server` for servers). Columns an HAProxy version does not have are skipped.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

from podkit.adapters.prometheus.api import Source, SourceError, SourceSpec
from podkit.adapters.prometheus.fetch import check_uri, unix_command
from podkit.adapters.prometheus.model import Family
from podkit.adapters.prometheus.sources._text import decode, number

FRONTEND, BACKEND, SERVER = "0", "1", "2"
ROW_KINDS = {FRONTEND: "frontend", BACKEND: "backend", SERVER: "server"}

# (csv column, metric suffix, type, help, row kinds it applies to)
COLUMNS: list[tuple[str, str, str, str, str]] = [
    ("qcur", "current_queue", "gauge", "Requests waiting in the queue", "12"),
    ("scur", "current_sessions", "gauge", "Current sessions", "012"),
    ("smax", "max_sessions", "gauge", "Most sessions at once", "012"),
    ("slim", "limit_sessions", "gauge", "Configured session limit", "012"),
    ("stot", "sessions_total", "counter", "Sessions handled", "012"),
    ("bin", "bytes_in_total", "counter", "Bytes received", "012"),
    ("bout", "bytes_out_total", "counter", "Bytes sent", "012"),
    ("dreq", "requests_denied_total", "counter", "Requests denied by ACLs", "01"),
    ("ereq", "request_errors_total", "counter", "Request errors", "0"),
    ("econ", "connection_errors_total", "counter", "Errors connecting to a server", "12"),
    ("eresp", "response_errors_total", "counter", "Errors reading a response", "12"),
    ("wretr", "retry_warnings_total", "counter", "Connection retries", "12"),
    ("wredis", "redispatch_warnings_total", "counter", "Redispatches to another server", "12"),
    ("weight", "weight", "gauge", "Server weight (sum of weights for a backend)", "12"),
    ("act", "active_servers", "gauge", "Active servers", "1"),
    ("chkfail", "check_failures_total", "counter", "Failed health checks", "2"),
    ("downtime", "downtime_seconds_total", "counter", "Time spent down", "12"),
    ("req_tot", "http_requests_total", "counter", "HTTP requests", "0"),
]
HTTP_CODES = ("1xx", "2xx", "3xx", "4xx", "5xx", "other")


def parse_csv(body: bytes) -> list[dict[str, str]]:
    text = decode(body, "HAProxy CSV stats")
    if not text.startswith("# "):
        raise SourceError("not HAProxy CSV stats: the first line is not '# pxname,svname,...'")
    rows = list(csv.DictReader(io.StringIO(text[2:])))
    if not rows or "svname" not in rows[0] or "type" not in rows[0]:
        raise SourceError("HAProxy CSV stats without rows or without the svname/type columns")
    return rows


class HAProxySource(Source):
    default_name = "haproxy"

    def __init__(self, spec: SourceSpec, ctx) -> None:  # type: ignore[no-untyped-def]
        super().__init__(spec, ctx)
        for target in self.targets:
            if target.startswith("unix:") and ":" not in target.removeprefix("unix:"):
                if not target.removeprefix("unix:").startswith("/"):
                    raise ValueError(f"{target!r}: the stats socket path must be absolute")
            else:
                check_uri(target)

    async def fetch(self, target: str) -> bytes:
        rest = target.removeprefix("unix:")
        if target.startswith("unix:") and ":" not in rest:
            return await unix_command(rest, b"show stat\n", self.ctx.max_body_size)
        return await self.ctx.http.get(target)

    def collect(self, target: str, data: bytes) -> Iterable[Family]:
        families: dict[str, Family] = {}

        def family(name: str, kind: str, help_text: str) -> Family:
            if name not in families:
                families[name] = Family(name, kind, help_text)  # type: ignore[arg-type]
            return families[name]

        for row in parse_csv(data):
            kind = ROW_KINDS.get(row.get("type") or "")
            if kind is None:
                continue  # listeners (type 3) repeat their frontend
            row_type = row["type"]
            prefix = f"{self.name}_{kind}"
            labels = {"proxy": row.get("pxname") or ""}
            if row_type == SERVER:
                labels["server"] = row.get("svname") or ""
            for column, suffix, mtype, help_text, kinds in COLUMNS:
                value = (row.get(column) or "").strip()
                if row_type in kinds and value:
                    family(f"{prefix}_{suffix}", mtype, help_text).add(
                        number(value, column), labels
                    )
            if row_type in (BACKEND, SERVER) and row.get("status"):
                status = row["status"].split()[0]
                up = 1 if status in ("UP", "OPEN", "no") or status.startswith("UP") else 0
                family(f"{prefix}_status_up", "gauge", "1 if the status is UP").add(up, labels)
            for code in HTTP_CODES:
                value = (row.get(f"hrsp_{code}") or "").strip()
                if value:
                    family(
                        f"{prefix}_http_responses_total", "counter", "HTTP responses by code class"
                    ).add(number(value, f"hrsp_{code}"), {**labels, "code": code})
        return list(families.values())
