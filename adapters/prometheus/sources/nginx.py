"""nginx `stub_status`, compatible with nginx-prometheus-exporter.

`--naming compat` gives the Go exporter's names, types and help texts exactly (counters
without `_total`); `strict` adds `_total` to the counters so promtool has nothing to say.
The parser tolerates extra spaces, CRLF and Tengine's fourth column (request_time).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from podkit.adapters.prometheus.api import SourceError
from podkit.adapters.prometheus.model import Family
from podkit.adapters.prometheus.sources._text import HttpSource, decode

_ACTIVE = re.compile(r"Active connections:\s*(\S+)")
_SERVER = re.compile(r"server\s+accepts\s+handled\s+requests[^\n]*\n\s*([^\n]*)")
_RWW = re.compile(r"Reading:\s*(\S+)\s+Writing:\s*(\S+)\s+Waiting:\s*(\S+)")


@dataclass(frozen=True)
class StubStatus:
    active: int
    accepts: int
    handled: int
    requests: int
    reading: int
    writing: int
    waiting: int


def _int(text: str, field: str) -> int:
    if not text.isdigit():
        raise SourceError(f"stub_status field {field!r} is not a number: {text[:40]!r}")
    return int(text)


def parse_stub_status(body: bytes) -> StubStatus:
    """Parse a stub_status page; SourceError names what is missing or wrong."""
    text = decode(body, "an nginx stub_status page").replace("\r\n", "\n")
    active = _ACTIVE.search(text)
    server = _SERVER.search(text)
    rww = _RWW.search(text)
    if not (active and server and rww):
        missing = [
            name
            for name, match in (
                ("'Active connections:'", active),
                ("'server accepts handled requests' and its numbers", server),
                ("'Reading: Writing: Waiting:'", rww),
            )
            if not match
        ]
        raise SourceError(f"not an nginx stub_status page: missing {', '.join(missing)}")
    numbers = server.group(1).split()
    if len(numbers) < 3:
        raise SourceError(f"stub_status has {len(numbers)} server counters, expected 3 or more")
    return StubStatus(
        active=_int(active.group(1), "Active connections"),
        accepts=_int(numbers[0], "accepts"),
        handled=_int(numbers[1], "handled"),
        requests=_int(numbers[2], "requests"),
        reading=_int(rww.group(1), "Reading"),
        writing=_int(rww.group(2), "Writing"),
        waiting=_int(rww.group(3), "Waiting"),
    )


class NginxSource(HttpSource):
    default_name = "nginx"

    def collect(self, target: str, data: bytes) -> Iterable[Family]:
        status = parse_stub_status(data)
        p = self.name
        suffix = "" if self.ctx.naming == "compat" else "_total"
        return [
            Family(
                f"{p}_connections_accepted{suffix}", "counter", "Accepted client connections"
            ).add(status.accepts),
            Family(f"{p}_connections_active", "gauge", "Active client connections").add(
                status.active
            ),
            Family(f"{p}_connections_handled{suffix}", "counter", "Handled client connections").add(
                status.handled
            ),
            Family(
                f"{p}_connections_reading",
                "gauge",
                "Connections where NGINX is reading the request header",
            ).add(status.reading),
            Family(f"{p}_connections_waiting", "gauge", "Idle client connections").add(
                status.waiting
            ),
            Family(
                f"{p}_connections_writing",
                "gauge",
                "Connections where NGINX is writing the response back to the client",
            ).add(status.writing),
            Family(f"{p}_http_requests_total", "counter", "Total http requests").add(
                status.requests
            ),
        ]
