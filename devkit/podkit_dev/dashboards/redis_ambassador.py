# ruff: noqa: E501  (PromQL reads better on one line than cut into pieces)
"""redis-ambassador: the current master, failovers, time without master, traffic, Sentinels."""

from podkit_dev.dashboards.model import Dashboard, Panel, Row, q

RATE = "[$__rate_interval]"
ZERO = " or on (pod) (0 * sum by (pod) (redis_ambassador_master_known{$sel}))"

dashboard = Dashboard(
    uid="podkit-redis-ambassador",
    title="podkit / redis-ambassador",
    description="The verified master, failovers, seconds without a master, connections, bytes, Sentinels.",
    helper="redis-ambassador",
    file="redis-ambassador.json",
    tags=("redis-ambassador",),
    rows=(
        Row(
            "Master",
            (
                Panel(
                    "Current master",
                    (
                        q(
                            "max by (pod, address) (redis_ambassador_master_info{$sel}) == 1",
                            "{{pod}} {{address}}",
                        ),
                    ),
                    "The verified master new connections go to.",
                    kind="table",
                    width=12,
                ),
                Panel(
                    "Master known",
                    (q("min(redis_ambassador_master_known{$sel})", "known"),),
                    "0 while any ambassador has no verified master (clients are refused).",
                    kind="stat",
                    width=6,
                ),
                Panel(
                    "Failovers",
                    (
                        q(
                            "sum(increase(redis_ambassador_failovers_total{$sel}[$__range]))",
                            "failovers",
                        ),
                    ),
                    "Times the verified master changed, in the dashboard's time range.",
                    kind="stat",
                    width=6,
                ),
                Panel(
                    "Seconds without master",
                    (
                        q(
                            "max by (pod) (redis_ambassador_seconds_without_master{$sel})",
                            "{{pod}} current",
                        ),
                        q(
                            f"sum by (pod) (increase(redis_ambassador_without_master_seconds_total{{$sel}}{RATE}))",
                            "{{pod}} in interval",
                        ),
                    ),
                    "The current stretch without a verified master, and time without one per interval.",
                    unit="s",
                ),
                Panel(
                    "Last master change",
                    (
                        q(
                            "time() - max by (pod) (redis_ambassador_master_changed_timestamp_seconds{$sel})",
                            "{{pod}}",
                        ),
                    ),
                    "Seconds since the master last changed (or was lost).",
                    unit="s",
                ),
            ),
        ),
        Row(
            "Traffic",
            (
                Panel(
                    "Client connections",
                    (
                        q(
                            "sum by (pod) (redis_ambassador_client_connections_active{$sel})",
                            "{{pod}} open",
                        ),
                        q(
                            f"sum by (pod) (rate(redis_ambassador_client_connections_total{{$sel}}{RATE}))",
                            "{{pod}} new/s",
                        ),
                    ),
                ),
                Panel(
                    "Bytes forwarded",
                    (
                        q(
                            f"sum by (pod, direction) (rate(redis_ambassador_bytes_total{{$sel}}{RATE}))",
                            "{{pod}} {{direction}}",
                        ),
                    ),
                    unit="Bps",
                ),
                Panel(
                    "Refused and closed connections",
                    (
                        q(
                            f"sum by (pod, reason) (rate(redis_ambassador_client_connections_refused_total{{$sel}}{RATE}))",
                            "{{pod}} refused {{reason}}",
                        ),
                        q(
                            f"sum by (pod) (rate(redis_ambassador_connections_closed_by_failover_total{{$sel}}{RATE}))",
                            "{{pod}} closed by failover",
                        ),
                    ),
                    "Refused: no master, or the master refused the connection. Closed: bound to a demoted master.",
                ),
            ),
        ),
        Row(
            "Sentinels",
            (
                Panel(
                    "Sentinels reachable and agreeing",
                    (
                        q(
                            "min by (pod) (redis_ambassador_sentinels_reachable{$sel})",
                            "{{pod}} reachable",
                        ),
                        q(
                            "min by (pod) (redis_ambassador_sentinels_agreeing{$sel})",
                            "{{pod}} agreeing",
                        ),
                    ),
                    "Agreeing = named the chosen master in the last query.",
                ),
                Panel(
                    "Discovery errors and ROLE check failures",
                    (
                        q(
                            f"sum by (pod, reason) (rate(redis_ambassador_discovery_errors_total{{$sel}}{RATE}))"
                            + ZERO,
                            "{{pod}} sentinel {{reason}}",
                        ),
                        q(
                            f"sum by (pod, reason) (rate(redis_ambassador_role_check_failures_total{{$sel}}{RATE}))",
                            "{{pod}} ROLE {{reason}}",
                        ),
                    ),
                ),
                Panel(
                    "Master kept without Sentinels",
                    (
                        q(
                            "max by (pod) (redis_ambassador_master_kept_without_sentinels{$sel})",
                            "{{pod}}",
                        ),
                    ),
                    "1 while no Sentinel answers and the master is kept because ROLE still says master.",
                ),
            ),
        ),
    ),
)
