"""Apache httpd mod_status, machine-readable form (`/server-status?auto`).

Names follow the community apache_exporter where it is promtool-clean, so dashboards
built for it need few changes: apache_accesses_total, apache_workers{state}, ...
"""

from __future__ import annotations

from collections.abc import Iterable

from podkit.adapters.prometheus.api import SourceError
from podkit.adapters.prometheus.model import Family
from podkit.adapters.prometheus.sources._text import HttpSource, decode, number

# Scoreboard characters, as documented by mod_status.
SCOREBOARD = {
    "_": "idle", "S": "startup", "R": "read", "W": "reply", "K": "keepalive", "D": "dns",
    "C": "closing", "L": "logging", "G": "graceful_stop", "I": "idle_cleanup", ".": "open_slot",
}  # fmt: skip


def parse_server_status(body: bytes) -> dict[str, str]:
    text = decode(body, "an Apache server-status?auto page")
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    if "BusyWorkers" not in fields or "IdleWorkers" not in fields:
        raise SourceError(
            "not an Apache server-status?auto page: no BusyWorkers/IdleWorkers "
            "(is the URL missing ?auto?)"
        )
    return fields


class ApacheSource(HttpSource):
    default_name = "apache"

    def collect(self, target: str, data: bytes) -> Iterable[Family]:
        fields = parse_server_status(data)
        p = self.name
        out: list[Family] = []

        def simple(key: str, name: str, kind: str, help_text: str, scale: float = 1.0) -> None:
            if key in fields:
                value = number(fields[key], key) * scale
                out.append(Family(f"{p}_{name}", kind, help_text).add(value))  # type: ignore[arg-type]

        simple("Total Accesses", "accesses_total", "counter", "Total requests served")
        simple("Total kBytes", "sent_bytes_total", "counter", "Total bytes sent", 1024.0)
        simple("Total Duration", "duration_seconds_total", "counter",
               "Total time spent serving requests", 0.001)  # fmt: skip
        simple("Uptime", "uptime_seconds_total", "counter", "Time since the server started")
        simple("CPULoad", "cpuload", "gauge", "CPU load of the server")
        simple("Processes", "processes", "gauge", "Number of server processes")
        workers = Family(f"{p}_workers", "gauge", "Worker threads by state")
        workers.add(number(fields["BusyWorkers"], "BusyWorkers"), {"state": "busy"})
        workers.add(number(fields["IdleWorkers"], "IdleWorkers"), {"state": "idle"})
        out.append(workers)
        conns = Family(f"{p}_connections", "gauge", "Connections by state (event MPM)")
        for key, state in (
            ("ConnsTotal", "total"),
            ("ConnsAsyncWriting", "writing"),
            ("ConnsAsyncKeepAlive", "keepalive"),
            ("ConnsAsyncClosing", "closing"),
        ):
            if key in fields:
                conns.add(number(fields[key], key), {"state": state})
        if conns.samples:
            out.append(conns)
        if "Scoreboard" in fields:
            counts = dict.fromkeys(SCOREBOARD.values(), 0)
            for char in fields["Scoreboard"]:
                slot = SCOREBOARD.get(char)
                if slot is None:
                    raise SourceError(f"unknown scoreboard character {char!r}")
                counts[slot] += 1
            board = Family(f"{p}_scoreboard", "gauge", "Scoreboard slots by state")
            for state, count in counts.items():
                board.add(count, {"state": state})
            out.append(board)
        return out
