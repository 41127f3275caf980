# ruff: noqa: E501  (PromQL reads better on one line than cut into pieces)
"""pg-ambassador: clients and servers by state, wait time, traffic, prepared statements, pins.

Built on the metrics ambassadors/postgres/metrics.py declares: pg_ambassador_clients and
pg_ambassador_servers {database, user, state}, pg_ambassador_wait_seconds (histogram),
pg_ambassador_transactions_total, pg_ambassador_queries_total,
pg_ambassador_prepared_statements_total{result}, pg_ambassador_pinned_clients{reason},
pg_ambassador_pins_total{reason}, pg_ambassador_server_connect_errors_total and the
refusal and timeout counters.
"""

from podkit_dev.dashboards.model import Dashboard, Panel, Row, q

RATE = "[$__rate_interval]"

dashboard = Dashboard(
    uid="podkit-pg-ambassador",
    title="podkit / pg-ambassador",
    description="Clients waiting for a server, pool use, wait time, transactions and queries, prepared statements, pinned clients, server errors.",
    helper="pg-ambassador",
    file="pg-ambassador.json",
    tags=("pg-ambassador",),
    rows=(
        Row(
            "Pools",
            (
                Panel(
                    "Clients by state",
                    (
                        q(
                            "sum by (pod, database, user, state) (pg_ambassador_clients{$sel})",
                            "{{pod}} {{database}}/{{user}} {{state}}",
                        ),
                    ),
                    "active: holding a server connection; waiting: in the queue for one; idle: between transactions.",
                ),
                Panel(
                    "Server connections by state",
                    (
                        q(
                            "sum by (pod, database, user, state) (pg_ambassador_servers{$sel})",
                            "{{pod}} {{database}}/{{user}} {{state}}",
                        ),
                    ),
                    "active: lent to a client; idle: in the pool; login: being opened.",
                ),
                Panel(
                    "Wait for a server connection",
                    (
                        q(
                            f"histogram_quantile(0.5, sum by (le, pod) (rate(pg_ambassador_wait_seconds_bucket{{$sel}}{RATE})))",
                            "{{pod}} p50",
                        ),
                        q(
                            f"histogram_quantile(0.99, sum by (le, pod) (rate(pg_ambassador_wait_seconds_bucket{{$sel}}{RATE})))",
                            "{{pod}} p99",
                        ),
                    ),
                    "Time a client waited in the queue before it got a server connection.",
                    unit="s",
                ),
                Panel(
                    "Clients refused and timed out",
                    (
                        q(
                            f"sum by (pod, reason) (rate(pg_ambassador_clients_refused_total{{$sel}}{RATE}))",
                            "{{pod}} refused {{reason}}",
                        ),
                        q(
                            f"sum by (pod) (rate(pg_ambassador_query_wait_timeouts_total{{$sel}}{RATE}))",
                            "{{pod}} query_wait_timeout",
                        ),
                    ),
                    "max_client_conn reached, draining, login timeout; clients closed after waiting query_wait_timeout.",
                ),
            ),
        ),
        Row(
            "Traffic",
            (
                Panel(
                    "Transactions and queries",
                    (
                        q(
                            f"sum by (pod) (rate(pg_ambassador_transactions_total{{$sel}}{RATE}))",
                            "{{pod}} transactions",
                        ),
                        q(
                            f"sum by (pod) (rate(pg_ambassador_queries_total{{$sel}}{RATE}))",
                            "{{pod}} queries",
                        ),
                    ),
                    unit="ops",
                ),
                Panel(
                    "Prepared statements",
                    (
                        q(
                            f"sum by (pod, result) (rate(pg_ambassador_prepared_statements_total{{$sel}}{RATE}))",
                            "{{pod}} {{result}}",
                        ),
                    ),
                    "hit: the server had it; miss: a new Parse; reparse: Parse sent again to a server lacking it; eviction: LRU Close.",
                    unit="ops",
                ),
                Panel(
                    "Pinned clients by reason",
                    (
                        q(
                            "sum by (pod, reason) (pg_ambassador_pinned_clients{$sel})",
                            "{{pod}} {{reason}}",
                        ),
                        q(
                            f"sum by (pod, reason) (rate(pg_ambassador_pins_total{{$sel}}{RATE}))",
                            "{{pod}} {{reason}} new/s",
                        ),
                    ),
                    "Clients holding their server for the session because of session state (SET, LISTEN, advisory lock, temp table, WITH HOLD cursor, SQL PREPARE).",
                ),
                Panel(
                    "Server connects and errors",
                    (
                        q(
                            f"sum by (pod) (rate(pg_ambassador_server_connects_total{{$sel}}{RATE}))",
                            "{{pod}} opened",
                        ),
                        q(
                            f"sum by (pod) (rate(pg_ambassador_server_connect_errors_total{{$sel}}{RATE}))",
                            "{{pod}} failed",
                        ),
                    ),
                    "Failed: connect, TLS or login to PostgreSQL failed (the log's server_connect_failed lines say why).",
                    unit="ops",
                ),
            ),
        ),
    ),
)
