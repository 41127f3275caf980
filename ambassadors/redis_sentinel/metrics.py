"""The ambassador's metrics (prefix `redis_ambassador_`).

Rare events (failovers, discovery errors) use ordinary prometheus_client metrics. The
proxy's per-chunk counters are plain integers (`ProxyStats`) read at scrape time by a
collector, so moving a chunk never takes a metric lock.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

if TYPE_CHECKING:
    from podkit.ambassadors.redis_sentinel.proxy import ProxyStats

P = "redis_ambassador_"


class AmbassadorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
            return Gauge(P + name, doc, labels, registry=registry)

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(P + name, doc, labels, registry=registry)

        self.master_info = gauge(
            "master_info", "the verified master new connections go to (1)", ("address",)
        )
        self.master_known = gauge("master_known", "1 while a verified master is known")
        self.master_changed = gauge(
            "master_changed_timestamp_seconds",
            "unix time of the last change of the master (or of losing it)",
        )
        self.failovers = counter(
            "failovers", "times the verified master changed to another address"
        )
        self.discovery_errors = counter(
            "discovery_errors",
            "failed Sentinel queries and subscriptions, by Sentinel and reason",
            ("sentinel", "reason"),
        )
        self.role_check_failures = counter(
            "role_check_failures",
            "ROLE checks of a candidate master that failed or did not say master, by reason",
            ("reason",),
        )
        self.sentinels_reachable = gauge(
            "sentinels_reachable", "Sentinels that answered the last query"
        )
        self.sentinels_agreeing = gauge(
            "sentinels_agreeing", "Sentinels that named the chosen master in the last query"
        )
        self.without_sentinels = gauge(
            "master_kept_without_sentinels",
            "1 while no Sentinel answers and the master is kept because it still says ROLE master",
        )
        self.sentinel_events = counter(
            "sentinel_events",
            "failover events received for our master, by event (channel)",
            ("event",),
        )
        self.failover_holds = counter(
            "failover_holds",
            "failovers of the master that held traffic, by what noticed it first (event, poll)",
            ("trigger",),
        )
        self.failover_holds_ended = counter(
            "failover_holds_ended",
            "failover holds that ended, by outcome (promoted, switched, majority, aborted, "
            "expired)",
            ("outcome",),
        )
        self.failover_in_progress = gauge(
            "failover_in_progress", "1 while a failover holds traffic"
        )
        self.switch_announcements = counter(
            "switch_master_announcements",
            "+switch-master messages received for our master, by Sentinel",
            ("sentinel",),
        )


class NoMasterClock:
    """Seconds without a verified master: the current stretch and the total."""

    def __init__(self) -> None:
        self.since: float | None = time.monotonic()
        self.total = 0.0

    def lost(self) -> None:
        if self.since is None:
            self.since = time.monotonic()

    def found(self) -> None:
        if self.since is not None:
            self.total += time.monotonic() - self.since
            self.since = None

    def current(self) -> float:
        return 0.0 if self.since is None else time.monotonic() - self.since


class ProxyCollector(Collector):
    def __init__(self, stats: ProxyStats, clock: NoMasterClock) -> None:
        self.stats = stats
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        s = self.stats
        yield GaugeMetricFamily(P + "client_connections_active", "open client connections",
                                value=s.active)  # fmt: skip
        yield CounterMetricFamily(P + "client_connections", "client connections accepted",
                                  value=s.total)  # fmt: skip
        moved = CounterMetricFamily(
            P + "bytes", "bytes forwarded, by direction", labels=["direction"]
        )
        moved.add_metric(["to_master"], s.bytes_to_master)
        moved.add_metric(["from_master"], s.bytes_from_master)
        yield moved
        yield CounterMetricFamily(
            P + "connections_closed_by_failover",
            "client connections closed because their master was replaced or lost",
            value=s.closed_by_failover,
        )
        refused = CounterMetricFamily(
            P + "client_connections_refused", "client connections refused, by reason",
            labels=["reason"],
        )  # fmt: skip
        refused.add_metric(["no_master"], s.refused_no_master)
        refused.add_metric(["max_clients"], s.refused_max_clients)
        refused.add_metric(["master_connect_failed"], s.upstream_errors)
        yield refused
        yield CounterMetricFamily(
            P + "connections_closed_idle",
            "client connections closed after --client-idle-timeout without traffic",
            value=s.closed_idle,
        )
        yield GaugeMetricFamily(
            P + "seconds_without_master",
            "seconds since the verified master was lost (0 while one is known)",
            value=self.clock.current(),
        )
        yield CounterMetricFamily(
            P + "without_master_seconds",
            "total seconds spent without a verified master",
            value=self.clock.total + self.clock.current(),
        )
