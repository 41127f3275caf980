"""The admin HTTP server every helper runs: /livez /readyz /startupz /metrics, POST /drain.

Probes hit it from the kubelet, so it binds all interfaces by default; /drain changes
state and is only taken from loopback (a preStop hook runs inside the pod).
"""

from __future__ import annotations

import ipaddress
import json
from typing import TYPE_CHECKING

from prometheus_client.exposition import choose_encoder

from podkit.config import split_host_port
from podkit.httpserver import Handler, HttpServer, Request, Response

if TYPE_CHECKING:
    from podkit.runtime import Runtime


def _is_loopback(remote: str | None) -> bool:
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
    def __init__(self, runtime: Runtime, addr: str) -> None:
        self.runtime = runtime
        self.host, self.port = split_host_port(addr)
        self.http = HttpServer(
            {
                "/livez": {"GET": self.livez},
                "/healthz": {"GET": self.livez},
                "/readyz": {"GET": self.readyz},
                "/startupz": {"GET": self.startupz},
                "/metrics": {"GET": self.metrics},
                "/drain": {"POST": self.drain},
            },
            on_error=lambda exc: runtime.log.exception("admin_handler_failed", exc_info=exc),
        )

    def add_route(
        self, method: str, path: str, handler: Handler, *, loopback_only: bool = False
    ) -> None:
        """Let a helper serve an extra path on the admin port, at any time.

        loopback_only: requests from other addresses get 403 (like POST /drain)."""
        if loopback_only:
            inner = handler

            async def handler(request: Request) -> Response:
                if not _is_loopback(request.peer):
                    return json_response({"error": f"{path} is accepted from loopback only"}, 403)
                return await inner(request)

        self.http.add_route(method, path, handler)

    async def start(self) -> None:
        await self.http.start(self.host, self.port)
        self.port = self.http.port  # differs from the setting when it was 0

    async def stop(self) -> None:
        # A scrape in flight at exit gets a moment to finish, never more.
        await self.http.stop(grace=2.0)

    # --- endpoints ------------------------------------------------------------------------

    async def livez(self, request: Request) -> Response:
        healthy, lag = self.runtime.loop_health()
        return _status(healthy, event_loop_lag_seconds=round(lag, 6))

    async def readyz(self, request: Request) -> Response:
        ready, reason = self.runtime.readiness()
        return _status(ready, reason=reason) if reason else _status(ready)

    async def startupz(self, request: Request) -> Response:
        return _status(self.runtime.started)

    async def metrics(self, request: Request) -> Response:
        accept = request.headers.get(b"accept", b"").decode("latin-1")
        encoder, content_type = choose_encoder(accept)
        return Response(200, encoder(self.runtime.registry), content_type.encode())

    async def drain(self, request: Request) -> Response:
        if not _is_loopback(request.peer):
            return json_response({"error": "drain is accepted from loopback only"}, 403)
        self.runtime.request_drain(source="admin")
        return json_response({"status": "draining"}, 202)
