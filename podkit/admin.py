"""The admin HTTP server every helper runs: /livez /readyz /startupz /metrics, POST /drain.

Probes hit it from the kubelet, so it binds all interfaces by default; /drain changes
state and is only taken from loopback (a preStop hook runs inside the pod).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client.exposition import choose_encoder

from podkit.config import split_host_port

if TYPE_CHECKING:
    from podkit.runtime import Runtime

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


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


def _status(ok: bool, **body: object) -> web.Response:
    return web.json_response({"status": "ok" if ok else "fail", **body}, status=200 if ok else 503)


class AdminServer:
    def __init__(self, runtime: Runtime, addr: str) -> None:
        self.runtime = runtime
        self.host, self.port = split_host_port(addr)
        self._routes: dict[tuple[str, str], Handler] = {
            ("GET", "/livez"): self.livez,
            ("GET", "/healthz"): self.livez,
            ("GET", "/readyz"): self.readyz,
            ("GET", "/startupz"): self.startupz,
            ("GET", "/metrics"): self.metrics,
            ("POST", "/drain"): self.drain,
        }
        self._runner: web.AppRunner | None = None

    def add_route(self, method: str, path: str, handler: Handler) -> None:
        """Let a helper serve an extra path on the admin port, at any time."""
        self._routes[(method.upper(), path)] = handler

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        method = "GET" if request.method == "HEAD" else request.method
        handler = self._routes.get((method, request.path))
        if handler is None:
            if any(path == request.path for _, path in self._routes):
                return web.json_response({"error": "method not allowed"}, status=405)
            return web.json_response({"error": "not found"}, status=404)
        return await handler(request)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        # A scrape in flight at exit gets a moment to finish, never the 60 s default.
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=2.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        server = site._server  # the bound port, which differs from self.port when it is 0
        if server is not None and server.sockets:
            self.port = server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- endpoints ------------------------------------------------------------------------

    async def livez(self, request: web.Request) -> web.Response:
        healthy, lag = self.runtime.loop_health()
        return _status(healthy, event_loop_lag_seconds=round(lag, 6))

    async def readyz(self, request: web.Request) -> web.Response:
        ready, reason = self.runtime.readiness()
        return _status(ready, reason=reason) if reason else _status(ready)

    async def startupz(self, request: web.Request) -> web.Response:
        return _status(self.runtime.started)

    async def metrics(self, request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        body = encoder(self.runtime.registry)
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def drain(self, request: web.Request) -> web.Response:
        if not _is_loopback(request.remote):
            return web.json_response({"error": "drain is accepted from loopback only"}, status=403)
        self.runtime.request_drain(source="admin")
        return web.json_response({"status": "draining"}, status=202)
