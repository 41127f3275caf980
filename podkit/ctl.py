"""`podkit ctl status|drain --admin URL`: talk to running helpers' admin servers.

Standard library only, so a preStop hook pays no import cost and needs no curl.

`--admin` takes a URL, `host:port` or a port (loopback). Without it, ctl talks to the
helper of its own container: PODKIT_ADMIN_ADDR, the helper's admin address setting, as
the container's environment gives it (0.0.0.0 and :: become loopback). There is no other
default: every helper has its own port, and guessing one would talk to the wrong helper.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

ADMIN_ENV = "PODKIT_ADMIN_ADDR"
EXIT_NOT_READY = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3


def admin_url(value: str) -> str:
    """`http://h:p`, `h:p`, `:p` or `p` -> a URL; wildcard hosts become loopback."""
    value = value.strip().rstrip("/")
    if "://" in value:
        return value
    if value.isdigit():
        return f"http://127.0.0.1:{value}"
    host, _, port = value.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "::", "*"):
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def _request(url: str, method: str = "GET", timeout: float = 5.0) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"{}")
        except ValueError:
            return exc.code, {}


# --- status -----------------------------------------------------------------------------------


def fetch_status(admin: str, timeout: float) -> dict[str, Any]:
    """One helper's /status (or, from a helper without it, /livez /readyz /startupz)."""
    try:
        code, body = _request(f"{admin}/status", timeout=timeout)
        if code == 200 and "ready" in body:
            return {"admin": admin, "reachable": True, **body}
        report: dict[str, Any] = {"admin": admin, "reachable": True, "figures": {}}
        for name, key in (("livez", "live"), ("readyz", "ready"), ("startupz", "started")):
            code, body = _request(f"{admin}/{name}", timeout=timeout)
            report[key] = code == 200
            if name == "readyz":
                report["reason"] = body.get("reason", "")
            if name == "livez":
                report["event_loop_lag_seconds"] = body.get("event_loop_lag_seconds")
        return report
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return {"admin": admin, "reachable": False, "ready": False, "error": str(reason)}


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds == 0:
        return "0s"
    if seconds < 1:
        return f"{seconds * 1000:.1f}ms"
    if seconds < 120:
        return f"{seconds:.0f}s"
    minutes = int(seconds // 60)
    if minutes < 120:
        return f"{minutes}m{int(seconds % 60):02d}s"
    hours = minutes // 60
    return f"{hours}h{minutes % 60:02d}m" if hours < 48 else f"{hours // 24}d{hours % 24}h"


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n}"


def format_figure(name: str, value: object, now: float) -> str:
    """`lag_bytes 1.2MiB`, `last_failover_at 3m10s ago`: units from the name's suffix."""
    if isinstance(value, bool) or value is None:
        shown = "-" if value is None else ("yes" if value else "no")
    elif isinstance(value, int | float) and name.endswith("_bytes"):
        shown = _bytes(value)
        name = name.removesuffix("_bytes")
    elif isinstance(value, int | float) and name.endswith("_at"):
        shown = f"{_duration(max(now - value, 0))} ago" if value > 0 else "never"
        name = name.removesuffix("_at")
    elif isinstance(value, int | float) and name.endswith("_seconds"):
        shown = _duration(value)
        name = name.removesuffix("_seconds")
    elif isinstance(value, float):
        shown = f"{value:g}"
    else:
        shown = str(value)
    return f"{name.replace('_', ' ')} {shown}"


def table(reports: list[dict[str, Any]], now: float | None = None) -> str:
    now = time.time() if now is None else now
    header = ["ADMIN", "HELPER", "VERSION", "READY", "DRAINING", "UPTIME", "LOOP LAG", "FIGURES"]
    rows = [header]
    for r in reports:
        if not r.get("reachable"):
            rows.append([r["admin"], "-", "-", f"unreachable: {r.get('error', '')}",
                         "-", "-", "-", ""])  # fmt: skip
            continue
        ready = "yes" if r.get("ready") else f"no: {r.get('reason') or 'not ready'}"
        if r.get("live") is False:
            ready += " (not live)"
        figures = r.get("figures") or {}
        rows.append(
            [
                r["admin"],
                str(r.get("helper", "?")),
                str(r.get("version", "?")),
                ready,
                "yes" if r.get("draining") else "no",
                _duration(r.get("uptime_seconds")),
                _duration(r.get("event_loop_lag_seconds")),
                ", ".join(format_figure(k, v, now) for k, v in figures.items()),
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


def status(admins: list[str], timeout: float, as_json: bool) -> int:
    """Exit 0 when every helper is ready, 1 when one is not, 3 when one is unreachable."""
    with ThreadPoolExecutor(max_workers=min(len(admins), 16)) as pool:
        reports = list(pool.map(lambda a: fetch_status(a, timeout), admins))
    all_ready = all(r.get("ready") for r in reports)
    if as_json:
        print(json.dumps({"all_ready": all_ready, "helpers": reports}))
    else:
        print(table(reports))
    if any(not r["reachable"] for r in reports):
        return EXIT_UNREACHABLE
    return 0 if all_ready else EXIT_NOT_READY


# --- drain ------------------------------------------------------------------------------------


def drain(admin: str, timeout: float, wait: bool) -> int:
    """Ask the helper to drain, then (by default) wait until it has exited."""
    try:
        code, body = _request(f"{admin}/drain", method="POST", timeout=5.0)
    except (urllib.error.URLError, OSError) as exc:
        print(f"podkit ctl drain: {admin} unreachable: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    if code != 202:
        print(f"podkit ctl drain: {admin} answered {code}: {body}", file=sys.stderr)
        return 1
    if not wait:
        return 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _request(f"{admin}/livez", timeout=1.0)
        except (urllib.error.URLError, OSError):
            return 0  # the admin server is gone: the helper has exited
        time.sleep(0.1)
    print(f"podkit ctl drain: still running after {timeout}s", file=sys.stderr)
    return 1


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="podkit ctl", description="Talk to running helpers' admin servers."
    )
    parser.add_argument("command", choices=["status", "drain"])
    parser.add_argument(
        "--admin",
        action="append",
        metavar="URL",
        help="admin server: URL, host:port or port; status takes it more than once "
        f"(default: ${ADMIN_ENV}, the admin address of this container's helper)",
    )
    parser.add_argument("--json", action="store_true", help="status: one JSON object")
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait (drain: until exit)"
    )
    parser.add_argument(
        "--no-wait", action="store_true", help="drain: return once the drain has started"
    )
    args = parser.parse_args(argv)
    raw = args.admin or ([os.environ[ADMIN_ENV]] if os.environ.get(ADMIN_ENV) else [])
    if not raw:
        print(
            f"podkit ctl: --admin is required (no {ADMIN_ENV} in the environment); "
            "e.g. --admin http://127.0.0.1:9701",
            file=sys.stderr,
        )
        return EXIT_USAGE
    admins = [admin_url(a) for a in raw]
    if args.command == "status":
        return status(admins, min(args.timeout, 5.0), args.json)
    if len(admins) > 1:
        print("podkit ctl drain: one --admin at a time", file=sys.stderr)
        return EXIT_USAGE
    return drain(admins[0], args.timeout, wait=not args.no_wait)
