"""The admin HTTP server every helper runs: /livez /readyz /startupz /metrics /status,
POST /drain.

Probes hit it from the kubelet, so it binds all interfaces by default; /drain changes
state and is only taken from loopback (a preStop hook runs inside the pod). /status is
one JSON object for people and `podkit ctl status`: the runtime's state plus the key
figures a helper adds with `add_status(callback)`.
"""

from __future__ import annotations

import ipaddress
import json
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from prometheus_client.exposition import choose_encoder

from podkit import __version__
from podkit.config import split_host_port
from podkit.httpserver import Handler, HttpServer, Request, Response

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from podkit.logs import EventLogger


class Health(Protocol):
    """All the admin server needs of the runtime: its state, its metrics, a drain request."""

    @property
    def helper_name(self) -> str: ...
    @property
    def registry(self) -> CollectorRegistry: ...
    @property
    def log(self) -> EventLogger: ...
    @property
    def started(self) -> bool: ...
    @property
    def draining(self) -> bool: ...
    def readiness(self) -> tuple[bool, str]: ...
    def loop_health(self) -> tuple[bool, float]: ...
    def request_drain(self, source: str) -> None: ...


StatusCallback = Callable[[], dict[str, object]]
"""Returns a helper's key figures for /status: names to JSON values, cheap to compute."""


def is_loopback(remote: str | None) -> bool:
    """The peer is on this host (127.0.0.0/8, ::1, their v4-mapped forms)."""
    if not remote:
        return False
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_loopback


def json_response(body: dict[str, object], status: int = 200) -> Response:
    return Response(status, json.dumps(body).encode(), b"application/json")


def _status(ok: bool, **body: object) -> Response:
    return json_response({"status": "ok" if ok else "fail", **body}, 200 if ok else 503)


class AdminServer:
    def __init__(self, health: Health, addr: str) -> None:
        self.health = health
        self.host, self.port = split_host_port(addr)
        self.created = time.monotonic()
        self.status_callbacks: list[StatusCallback] = []
        self.http = HttpServer(
            {
                "/livez": {"GET": self.livez},
                "/healthz": {"GET": self.livez},
                "/readyz": {"GET": self.readyz},
                "/startupz": {"GET": self.startupz},
                "/metrics": {"GET": self.metrics},
                "/status": {"GET": self.status},
                "/drain": {"POST": self.drain},
            },
            on_error=lambda exc: health.log.exception("admin_handler_failed", exc_info=exc),
        )

    def add_route(
        self,
        method: str,
        path: str,
        handler: Handler,
        *,
        loopback_only: bool = False,
        max_body: int = 0,
    ) -> None:
        """Let a helper serve an extra path on the admin port, at any time.

        loopback_only: requests from other addresses get 403 (like POST /drain).
        max_body: request bodies up to this size are read (HttpServer.add_route)."""
        if loopback_only:
            inner = handler

            async def handler(request: Request) -> Response:
                if not is_loopback(request.peer):
                    return json_response({"error": f"{path} is accepted from loopback only"}, 403)
                return await inner(request)

        self.http.add_route(method, path, handler, max_body)

    def add_status(self, callback: StatusCallback) -> None:
        """Add a helper's key figures (lag, current master...) to /status and `ctl status`."""
        self.status_callbacks.append(callback)

    def status_report(self) -> dict[str, object]:
        health = self.health
        ready, reason = health.readiness()
        live, lag = health.loop_health()
        figures: dict[str, object] = {}
        for callback in self.status_callbacks:
            try:
                figures.update(callback())
            except Exception as exc:  # a figure must never break the status page
                figures["error"] = f"{type(exc).__name__}: {exc}"
        return {
            "helper": health.helper_name,
            "version": __version__,
            "pid": os.getpid(),
            "live": live,
            "started": health.started,
            "ready": ready,
            "reason": reason,
            "draining": health.draining,
            "uptime_seconds": round(time.monotonic() - self.created, 3),
            "event_loop_lag_seconds": round(lag, 6),
            "figures": figures,
        }

    async def start(self) -> None:
        await self.http.start(self.host, self.port)
        self.port = self.http.port  # differs from the setting when it was 0

    async def stop(self) -> None:
        # A scrape in flight at exit gets a moment to finish, never more.
        await self.http.stop(grace=2.0)

    # --- endpoints ------------------------------------------------------------------------

    async def livez(self, request: Request) -> Response:
        healthy, lag = self.health.loop_health()
        return _status(healthy, event_loop_lag_seconds=round(lag, 6))

    async def readyz(self, request: Request) -> Response:
        ready, reason = self.health.readiness()
        return _status(ready, reason=reason) if reason else _status(ready)

    async def startupz(self, request: Request) -> Response:
        return _status(self.health.started)

    async def metrics(self, request: Request) -> Response:
        # Media types are case-insensitive; prometheus_client compares lower-case ones.
        accept = request.headers.get(b"accept", b"").decode("latin-1").lower()
        encoder, content_type = choose_encoder(accept)
        return Response(200, encoder(self.health.registry), content_type.encode())

    async def status(self, request: Request) -> Response:
        return json_response(self.status_report())

    async def drain(self, request: Request) -> Response:
        if not is_loopback(request.peer):
            return json_response({"error": "drain is accepted from loopback only"}, 403)
        self.health.request_drain(source="admin")
        return json_response({"status": "draining"}, 202)
