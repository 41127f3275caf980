"""`podkit ctl status|drain --admin URL`: talk to a running helper's admin server.

Standard library only, so a preStop hook pays no import cost and needs no curl.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request

DEFAULT_ADMIN = "http://127.0.0.1:9700"


def _request(url: str, method: str = "GET", timeout: float = 5.0) -> tuple[int, dict]:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"{}")
        except ValueError:
            return exc.code, {}


def status(admin: str, timeout: float) -> int:
    """Print live/ready/started as JSON; exit 0 when ready, 1 otherwise, 3 unreachable."""
    report: dict[str, object] = {"admin": admin}
    try:
        for name in ("livez", "readyz", "startupz"):
            code, body = _request(f"{admin}/{name}", timeout=timeout)
            report[name] = {"ok": code == 200, **body}
    except (urllib.error.URLError, OSError) as exc:
        print(json.dumps({**report, "error": f"unreachable: {exc}"}))
        return 3
    print(json.dumps(report))
    return 0 if report["readyz"]["ok"] else 1  # type: ignore[index]


def drain(admin: str, timeout: float, wait: bool) -> int:
    """Ask the helper to drain, then (by default) wait until it has exited."""
    try:
        code, body = _request(f"{admin}/drain", method="POST", timeout=5.0)
    except (urllib.error.URLError, OSError) as exc:
        print(f"podkit ctl drain: {admin} unreachable: {exc}", file=sys.stderr)
        return 3
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
        prog="podkit ctl", description="Talk to a running helper's admin server."
    )
    parser.add_argument("command", choices=["status", "drain"])
    parser.add_argument(
        "--admin", default=DEFAULT_ADMIN, help=f"admin server URL (default {DEFAULT_ADMIN})"
    )
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait (drain: until exit)"
    )
    parser.add_argument(
        "--no-wait", action="store_true", help="drain: return once the drain has started"
    )
    args = parser.parse_args(argv)
    admin = args.admin.rstrip("/")
    if "://" not in admin:
        admin = f"http://{admin}"
    if args.command == "status":
        return status(admin, min(args.timeout, 5.0))
    return drain(admin, args.timeout, wait=not args.no_wait)
