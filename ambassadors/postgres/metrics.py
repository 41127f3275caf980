"""`pg_ambassador_*` metrics, read from the pools and the hot-path counters at scrape time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from podkit.ambassadors.postgres import core, notify
from podkit.ambassadors.postgres.context import WAIT_BUCKETS

if TYPE_CHECKING:
    from podkit.ambassadors.postgres.console import ConsoleHub as Source

P = "pg_ambassador_"


class PgCollector(Collector):
    def __init__(self, amb: Source) -> None:
        self.amb = amb

    def collect(self) -> Iterator[Metric]:
        amb = self.amb
        s = amb.stats
        labels = ["database", "user"]
        clients = GaugeMetricFamily(
            P + "clients", "client connections by state (active: holding a server)",
            labels=[*labels, "state"],
        )  # fmt: skip
        servers = GaugeMetricFamily(
            P + "servers", "server connections by state", labels=[*labels, "state"]
        )
        for pool in amb.pools.values():
            waiting = sum(1 for c in pool.waiters if not c.closed)
            active = sum(1 for c in pool.clients if c.holding)
            key = [pool.database, pool.user]
            clients.add_metric([*key, "active"], active)
            clients.add_metric([*key, "waiting"], waiting)
            clients.add_metric([*key, "idle"], max(len(pool.clients) - active - waiting, 0))
            servers.add_metric([*key, "active"], len(pool.active))
            servers.add_metric([*key, "idle"], pool.idle_count())
            servers.add_metric([*key, "login"], pool.connecting)
        yield clients
        yield servers
        yield GaugeMetricFamily(
            P + "client_connections_open", "client connections open (all states, console too)",
            value=len(amb.clients),
        )  # fmt: skip
        refused = CounterMetricFamily(
            P + "clients_refused", "client connections refused, by reason", labels=["reason"]
        )
        for reason in ("max_client_conn", "draining", "login_timeout"):
            refused.add_metric([reason], s.clients_refused.get(reason, 0))
        yield refused
        build = GaugeMetricFamily(
            P + "build_info",
            "1, labelled with the core that runs the hot path: compiled (Cython) or python "
            "(PODKIT_PURE_PYTHON=1, or no compiled module for this interpreter)",
            labels=["core"],
        )
        build.add_metric([core.loaded()], 1)
        yield build
        yield CounterMetricFamily(
            P + "client_connections_accepted", "client connections accepted", value=s.clients_total
        )
        buckets = []
        cumulative = 0
        for bound, count in zip(WAIT_BUCKETS, s.wait_buckets, strict=False):
            cumulative += count
            buckets.append((repr(bound), cumulative))
        buckets.append(("+Inf", cumulative + s.wait_buckets[-1]))
        yield HistogramMetricFamily(
            P + "wait_seconds", "time a client waited for a server connection",
            buckets=buckets, sum_value=s.wait_time_total,
        )  # fmt: skip
        # Counted once on the hot path, per pool (pools are never dropped: sums only grow).
        pools = list(amb.pools.values())
        yield CounterMetricFamily(
            P + "transactions", "transactions (server released at ReadyForQuery idle)",
            value=sum(pool.xacts for pool in pools),
        )  # fmt: skip
        yield CounterMetricFamily(
            P + "queries", "queries (Query and Execute messages)",
            value=sum(pool.queries for pool in pools),
        )  # fmt: skip
        traffic = CounterMetricFamily(P + "bytes", "bytes received, by side", labels=["direction"])
        traffic.add_metric(
            ["from_client"], s.bytes_from_client + sum(pool.bytes_received for pool in pools)
        )
        traffic.add_metric(["from_server"], sum(pool.bytes_sent for pool in pools))
        yield traffic
        yield from notify.metric_families(pools)
        prepared = CounterMetricFamily(
            P + "prepared_statements",
            "named prepared statements: hit (the server had it), miss (new Parse), "
            "reparse (Parse sent again to a server lacking it), eviction (LRU Close), "
            "retry (a shared statement whose result type changed, planned afresh), "
            "verify (parsed and described before a Bind on a server lacking it), "
            "schema_drop (a server's statement with inferred parameter types, dropped "
            "after a CREATE, ALTER or DROP)",
            labels=["result"],
        )
        prepared.add_metric(["hit"], s.prepared_hits)
        prepared.add_metric(["miss"], s.prepared_misses)
        prepared.add_metric(["reparse"], s.prepared_reparses)
        prepared.add_metric(["eviction"], s.prepared_evictions)
        prepared.add_metric(["retry"], s.prepared_retries)
        prepared.add_metric(["verify"], s.prepared_verifications)
        prepared.add_metric(["schema_drop"], s.prepared_schema_drops)
        yield prepared
        pinned = GaugeMetricFamily(
            P + "pinned_clients",
            "clients pinned to their server by session state, by reason",
            labels=["reason"],
        )
        for reason, count in sorted(amb.pinned.items()):
            pinned.add_metric([reason], count)
        yield pinned
        pins = CounterMetricFamily(
            P + "pins", "clients pinned since start, by reason", labels=["reason"]
        )
        for reason in sorted(amb.pinned):
            pins.add_metric([reason], s.pins_total.get(reason, 0))
        yield pins
        yield CounterMetricFamily(
            P + "session_state_refused",
            "statements refused by --on-session-state error",
            value=s.refused_statements,
        )
        cancels = CounterMetricFamily(
            P + "cancels", "cancel requests, by outcome", labels=["outcome"]
        )
        cancels.add_metric(["forwarded"], s.cancels_forwarded)
        cancels.add_metric(["dropped"], s.cancels_dropped)
        yield cancels
        yield CounterMetricFamily(
            P + "server_connects", "server connections opened", value=s.server_connects
        )
        yield CounterMetricFamily(
            P + "server_connect_errors",
            "server connections that failed (connect, TLS or login)",
            value=s.server_connect_errors,
        )
        yield CounterMetricFamily(
            P + "protocol_errors", "clients closed for breaking the protocol",
            value=s.protocol_errors,
        )  # fmt: skip
        yield CounterMetricFamily(
            P + "query_wait_timeouts", "clients closed by query_wait_timeout",
            value=s.query_wait_timeouts,
        )  # fmt: skip
