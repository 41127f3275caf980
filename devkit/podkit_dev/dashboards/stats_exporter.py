# ruff: noqa: E501  (PromQL reads better on one line than cut into pieces)
"""stats-exporter: each target up or down, scrape duration, errors, shared scrapes.

`<source>_up` is served on the metrics port (9113) with the target's own series; the
exporter's own health (stats_exporter_*) on the admin port. Both are scraped from the
same pod, so the `pod` variable selects both.
"""

from podkit_dev.dashboards.model import Dashboard, Panel, Row, q

RATE = "[$__rate_interval]"
# Every source's up gauge: nginx_up, apache_up, haproxy_up, redis_up, a plugin's NAME_up.
UP = '{__name__=~"[a-z][a-z0-9_]*_up", $sel}'

dashboard = Dashboard(
    uid="podkit-stats-exporter",
    title="podkit / stats-exporter",
    description="Each target up or down, how long a scrape takes, and why targets failed.",
    helper="stats-exporter",
    file="stats-exporter.json",
    tags=("stats-exporter",),
    rows=(
        Row(
            "Targets",
            (
                Panel(
                    "Targets up",
                    (q(f"sum({UP})", "up"), q(f"count({UP})", "targets")),
                    "Targets whose last fetch worked, out of all targets.",
                    kind="stat",
                    width=6,
                ),
                Panel(
                    "Up per target",
                    (q(f"max by (pod, __name__, addr) ({UP})", "{{pod}} {{__name__}} {{addr}}"),),
                    "1 when the target's stats page was fetched and parsed at the last scrape.",
                    width=18,
                ),
                Panel(
                    "Target errors by source",
                    (
                        q(
                            f"sum by (pod, source) (rate(stats_exporter_target_errors_total{{$sel}}{RATE}))"
                            " or on (pod) (0 * sum by (pod) (stats_exporter_scrape_duration_seconds_count{$sel}))",
                            "{{pod}} {{source}}",
                        ),
                    ),
                    "Fetches that gave up 0: failed, timed out or answered nonsense.",
                ),
            ),
        ),
        Row(
            "Scrapes",
            (
                Panel(
                    "Scrape duration",
                    (
                        q(
                            "histogram_quantile(0.5, sum by (pod, le) "
                            f"(rate(stats_exporter_scrape_duration_seconds_bucket{{$sel}}{RATE})))",
                            "{{pod}} p50",
                        ),
                        q(
                            "histogram_quantile(0.99, sum by (pod, le) "
                            f"(rate(stats_exporter_scrape_duration_seconds_bucket{{$sel}}{RATE})))",
                            "{{pod}} p99",
                        ),
                    ),
                    "Time to fetch and render every target for one scrape.",
                    unit="s",
                ),
                Panel(
                    "Scrapes and shared scrapes",
                    (
                        q(
                            f"sum by (pod) (rate(stats_exporter_scrape_duration_seconds_count{{$sel}}{RATE}))",
                            "{{pod}} scrapes",
                        ),
                        q(
                            f"sum by (pod) (rate(stats_exporter_shared_scrapes_total{{$sel}}{RATE}))",
                            "{{pod}} shared",
                        ),
                    ),
                    "Shared: answered with the result of a scrape already in flight.",
                    unit="reqps",
                ),
                Panel(
                    "nginx connections",
                    (
                        q("sum by (pod) (nginx_connections_active{$sel})", "{{pod}} active"),
                        q(
                            f"sum by (pod) (rate(nginx_http_requests_total{{$sel}}{RATE}))",
                            "{{pod}} requests/s",
                        ),
                    ),
                    "From the nginx source, when the exporter reads one (stub_status).",
                ),
            ),
        ),
    ),
)
