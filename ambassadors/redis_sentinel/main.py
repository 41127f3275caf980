"""`run(settings, runtime)`: discovery and the proxy, wired to readiness and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time

from podkit.ambassadors.redis_sentinel.discovery import Discovery
from podkit.ambassadors.redis_sentinel.metrics import (
    AmbassadorMetrics,
    NoMasterClock,
    ProxyCollector,
)
from podkit.ambassadors.redis_sentinel.proxy import Proxy
from podkit.ambassadors.redis_sentinel.settings import AmbassadorSettings
from podkit.runtime import Runtime, listening
from podkit.tls import client_context


def tls_context(settings: AmbassadorSettings) -> ssl.SSLContext:
    return client_context(
        ca_file=settings.tls_ca_file,
        cert_file=settings.tls_cert_file,
        key_file=settings.tls_key_file,
        check_hostname=settings.tls_verify_hostname,
    )


class Ambassador:
    def __init__(self, settings: AmbassadorSettings, runtime: Runtime) -> None:
        self.settings = settings
        self.runtime = runtime
        self.log = runtime.log
        self.metrics = AmbassadorMetrics(runtime.registry)
        self.clock = NoMasterClock()
        self.proxy = Proxy(
            settings.listen,
            connect_wait=settings.connect_wait,
            connect_timeout=settings.connect_timeout,
            ssl_context=tls_context(settings) if settings.redis_tls else None,
            on_upstream_error=self.upstream_error,
            max_clients=settings.max_client_conn,
            idle_timeout=settings.client_idle_timeout,
        )
        runtime.registry.register(ProxyCollector(self.proxy.stats, self.clock))
        self.discovery = Discovery(settings, self.metrics, self.apply)
        self.last_master: str | None = None
        self.failovers = 0
        self.last_failover_at = 0.0
        self.metrics.master_known.set(0)
        runtime.set_ready(False, "no verified master yet")
        if runtime.admin is not None:
            runtime.admin.add_status(self.figures)

    def figures(self) -> dict[str, object]:
        """Key figures for `podkit ctl status` (/status)."""
        return {
            "master": self.proxy.master,
            "failovers": self.failovers,
            "last_failover_at": self.last_failover_at,
            "without_master_seconds": round(self.clock.current(), 3),
            "client_connections": self.proxy.stats.active,
        }

    def apply(self, addr: str | None, reason: str) -> None:
        """The verified master changed (None: lost). Called by discovery."""
        old = self.proxy.master
        at = time.time()  # before the cut: nothing sent after this reaches the old master
        cut = self.proxy.set_master(addr)
        m = self.metrics
        m.master_changed.set(at)
        if old is not None:
            m.master_info.remove(old)
        if addr is None:
            self.clock.lost()
            m.master_known.set(0)
            self.log.warning(
                "master_lost", old=old, reason=reason, connections_closed=cut, at=round(at, 6)
            )
            self.runtime.set_ready(False, f"no verified master ({reason})")
            return
        self.clock.found()
        m.master_info.labels(addr).set(1)
        m.master_known.set(1)
        if self.last_master not in (None, addr):
            m.failovers.inc()
            self.failovers += 1
            self.last_failover_at = at
        self.last_master = addr
        self.log.info(
            "master_changed", old=old, new=addr, reason=reason, connections_closed=cut,
            at=round(at, 6),
        )  # fmt: skip
        self.runtime.set_ready(True)

    def upstream_error(self, addr: str) -> None:
        # The master refused a connection: check it now rather than at the next poll.
        if addr == self.discovery.master:
            self.discovery.wake.set()

    async def serve(self) -> None:
        with listening(self.settings, "listen"):
            bound = await self.proxy.start()
        self.log.info(
            "listening",
            addr=bound,
            sentinels=",".join(self.settings.sentinels),
            master_name=self.settings.master_name,
        )
        discovery = asyncio.create_task(self.discovery.run(), name="discovery")
        await self.discovery.first_round.wait()
        self.runtime.set_started()
        try:
            await self.runtime.wait_drain()
            await self.proxy.drain()
        finally:
            discovery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await discovery


async def run(settings: AmbassadorSettings, runtime: Runtime) -> None:
    await Ambassador(settings, runtime).serve()
