"""Every dashboard's helper running for real, scraped by a real Prometheus.

Used by tests/integration/runtime/test_dashboards_prometheus.py (every panel query and alert
expression evaluated) and bench/render_dashboards.py (the README picture). Each helper
is a `podkit ROLE` subprocess with the real server it needs: files for log-shipper and
log-adapter, a Redis master with replicas and three Sentinels for redis-ambassador, nginx
for stats-exporter, a local bare repository (file://) for git-sync (with an exechook),
PostgreSQL for pg-ambassador.
Prometheus scrapes each admin port (and the exporter's metrics port) with the `namespace`
and `pod` labels the Kubernetes service discovery would give.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import threading
import time
from pathlib import Path

from podkit_dev.dashboards.__main__ import ROOT
from podkit_dev.servers import (
    HOST,
    GitRepo,
    HelperProcess,
    NginxServer,
    PostgresServer,
    PrometheusServer,
    ScrapeJob,
    SentinelCluster,
    TempDir,
    free_port,
    http_get,
    wait_for,
)

NAMESPACE = "podkit-demo"


class Stack:
    def __init__(
        self, *, interval: str = "1s", with_rules: bool = True, troubled_shipper: bool = False
    ) -> None:
        self.interval = interval
        self.with_rules = with_rules
        self.troubled_shipper = troubled_shipper
        self.dir = TempDir("dashboards")
        self.helpers: dict[str, HelperProcess] = {}
        """One of each helper, by role (pod `ROLE-0`)."""
        self.troubled: HelperProcess | None = None
        """With troubled_shipper: pod `log-shipper-1`, whose http output never answers."""
        self.metrics_ports: dict[str, int] = {}
        self.nginx: NginxServer | None = None
        self.cluster: SentinelCluster | None = None
        self.prometheus: PrometheusServer | None = None
        self.redis_port = 0
        self.git: GitRepo | None = None
        self.pg: PostgresServer | None = None
        self.pg_port = 0
        self._stop = threading.Event()
        self._traffic: threading.Thread | None = None

    @property
    def logs(self) -> Path:
        return self.dir.path / "logs"

    def start(self) -> Stack:
        try:
            self._start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def _helper(self, role: str, *args: str) -> HelperProcess:
        helper = HelperProcess(role, *args)
        self.helpers[role] = helper
        helper.start()
        return helper

    def _start(self) -> None:
        d = self.dir.path
        for sub in ("logs", "adapter-logs", "shipper-state", "adapter-state"):
            (d / sub).mkdir()
        (d / "logs" / "app.log").write_bytes(b"first line\n")
        (d / "adapter-logs" / "app.log").write_bytes(b"2024-05-01 12:00:00 INFO first\n")
        self.nginx = NginxServer().start()
        self.cluster = SentinelCluster().start()
        fast = ("--refresh-interval", "200ms", "--rotate-wait", "1s")
        self._helper(
            "log-shipper",
            "--path", str(d / "logs" / "*.log"), "--state-dir", str(d / "shipper-state"),
            "--output", "file", "--file-path", str(d / "shipped.jsonl"),
            "--batch-timeout", "50ms", *fast,
        )  # fmt: skip
        self._helper(
            "log-adapter",
            "--path", str(d / "adapter-logs" / "*.log"), "--state-dir", str(d / "adapter-state"),
            "--output", "file", "--output-path", str(d / "adapted.jsonl"),
            "--flush-timeout", "0.3s", *fast,
        )  # fmt: skip
        self.redis_port = free_port()
        self._helper(
            "redis-ambassador",
            "--sentinels", ",".join(self.cluster.sentinel_addrs),
            "--listen", f"{HOST}:{self.redis_port}",
        )  # fmt: skip
        exporter_port = free_port()
        self.metrics_ports["stats-exporter"] = exporter_port
        self._helper(
            "stats-exporter",
            "--web-listen-address", f"{HOST}:{exporter_port}",
            "--nginx-scrape-uri", f"{self.nginx.url}/stub_status",
        )  # fmt: skip
        self.git = GitRepo("site")
        self.git.commit({"index.html": "first\n"}, "first")
        self._helper(
            "git-sync",
            "--repo", self.git.url, "--root", str(d / "git-root"), "--link", "current",
            "--period", "1s", "--exechook-command", shutil.which("true") or "/bin/true",
        )  # fmt: skip
        self.pg = PostgresServer().start()
        self.pg_port = free_port()
        self._helper(
            "pg-ambassador",
            "--listen", f"{HOST}:{self.pg_port}", "--server-port", str(self.pg.port),
            "--client-auth", "trust", "--pool-size", "2",
        )  # fmt: skip
        jobs = []
        for role, helper in self.helpers.items():
            targets = [f"{HOST}:{helper.admin_port}"]
            if role in self.metrics_ports:
                targets.append(f"{HOST}:{self.metrics_ports[role]}")
            labels = {"namespace": NAMESPACE, "pod": f"{role}-0", "container": role}
            jobs.append(ScrapeJob(role, targets, labels))
        if self.troubled_shipper:
            self.troubled = self._start_troubled_shipper()
            labels = {"namespace": NAMESPACE, "pod": "log-shipper-1", "container": "log-shipper"}
            jobs.append(ScrapeJob("log-shipper-1", [f"{HOST}:{self.troubled.admin_port}"], labels))
        rules = [str(ROOT / "dashboards" / "alerts.yaml")] if self.with_rules else []
        self.prometheus = PrometheusServer(jobs, interval=self.interval, rule_files=rules).start()

    def _start_troubled_shipper(self) -> HelperProcess:
        """A shipper whose backend accepts connections and never answers: it retries, its
        buffer fills, it stops reading, its lag grows, and a truncation loses bytes."""
        d = self.dir.path
        (d / "logs-1").mkdir()
        (d / "logs-1" / "app.log").write_bytes(b"first line\n")
        self._black_hole = socket.socket()
        self._black_hole.bind((HOST, 0))
        self._black_hole.listen(64)
        url = f"http://{HOST}:{self._black_hole.getsockname()[1]}/ingest"
        helper = HelperProcess(
            "log-shipper",
            "--path", str(d / "logs-1" / "*.log"), "--state-dir", str(d / "shipper-1-state"),
            "--output", "http", "--http-url", url, "--buffer-bytes", "64KiB",
            "--batch-timeout", "50ms", "--refresh-interval", "200ms", "--rotate-wait", "1s",
        )  # fmt: skip
        return helper.start(wait="livez")

    # --- traffic, so rates are not all zero ------------------------------------------------

    def start_traffic(self) -> None:
        self._traffic = threading.Thread(target=self._generate, daemon=True)
        self._traffic.start()

    def _generate(self) -> None:
        n = 0
        shipper_log = self.logs / "app.log"
        adapter_log = self.dir.path / "adapter-logs" / "app.log"
        while not self._stop.is_set():
            n += 1
            burst = 20 + (n % 30) * 5
            lines = b"".join(b"GET /item/%d 200\n" % (n * 1000 + i) for i in range(burst))
            with open(shipper_log, "ab") as handle:
                handle.write(lines)
            if self.troubled is not None:
                with open(self.dir.path / "logs-1" / "app.log", "ab") as handle:
                    handle.write(lines)
            with open(adapter_log, "ab") as handle:
                level = b"ERROR" if n % 7 == 0 else b"INFO"
                handle.write(b"2024-05-01 12:00:00 %s request %d\n" % (level, n))
                if n % 5 == 0:
                    handle.write(b"not a classic line %d\n" % n)  # a parse failure
            with contextlib.suppress(OSError):
                self._redis_ping()
            if self.git is not None and n % 10 == 0:
                with contextlib.suppress(Exception):
                    self.git.commit({"index.html": f"version {n}\n"}, f"version {n}")
            if self.pg is not None and n % 3 == 0:
                with contextlib.suppress(Exception):
                    asyncio.run(self._pg_work(n))
            assert self.nginx is not None
            with contextlib.suppress(OSError):
                http_get(self.nginx.url + "/")
            self._stop.wait(0.2)

    def _redis_ping(self) -> None:
        with socket.create_connection((HOST, self.redis_port), timeout=2) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n" * 3)
            sock.recv(100)

    async def _pg_work(self, n: int) -> None:
        """Through pg-ambassador: prepared statements, a transaction, now and then a LISTEN
        (which pins the client to its server for the session)."""
        import asyncpg  # the demo/test extras; only the stack needs it

        conn = await asyncpg.connect(
            f"postgresql://postgres@{HOST}:{self.pg_port}/postgres", timeout=5
        )
        try:
            for i in range(3):
                await conn.fetchval("select $1::int + 1", n + i)
            async with conn.transaction():
                await conn.execute("select 1")
            if n % 15 == 0:
                await conn.execute("LISTEN dashboards")
        finally:
            await conn.close(timeout=5)

    def wait_scrapes(self, count: int = 2, timeout: float = 60.0) -> None:
        assert self.prometheus is not None
        prometheus = self.prometheus
        wait_for(lambda: prometheus.scrapes_done(count), what=f"{count} scrapes", timeout=timeout)

    def run_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self._stop.is_set():
            self._stop.wait(min(1.0, deadline - time.monotonic()))

    def cleanup(self) -> None:
        self._stop.set()
        if self._traffic is not None:
            self._traffic.join(5)
        for helper in [*self.helpers.values(), self.troubled]:
            if helper is not None:
                helper.cleanup()
        if self.troubled_shipper and hasattr(self, "_black_hole"):
            self._black_hole.close()
        for server in (self.prometheus, self.nginx, self.cluster, self.git, self.pg):
            if server is not None:
                server.cleanup()
        self.dir.cleanup()
