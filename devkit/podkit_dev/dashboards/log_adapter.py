# ruff: noqa: E501  (PromQL reads better on one line than cut into pieces)
"""log-adapter: records in and out, parse failures by kind, invalid UTF-8, lag."""

from podkit_dev.dashboards.model import Dashboard, Panel, Row, q

RATE = "[$__rate_interval]"
ZERO = " or on (pod) (0 * sum by (pod) (log_adapter_lines_in_total{$sel}))"

dashboard = Dashboard(
    uid="podkit-log-adapter",
    title="podkit / log-adapter",
    description="Lines in, JSON records out, what the parser rejected, and how far behind it is.",
    helper="log-adapter",
    file="log-adapter.json",
    tags=("log-adapter",),
    rows=(
        Row(
            "Records",
            (
                Panel(
                    "Lines in, records out",
                    (
                        q(
                            f"sum by (pod) (rate(log_adapter_lines_in_total{{$sel}}{RATE}))",
                            "{{pod}} lines in",
                        ),
                        q(
                            f"sum by (pod) (rate(log_adapter_records_out_total{{$sel}}{RATE}))",
                            "{{pod}} records out",
                        ),
                    ),
                    "Multiline joins make records out fewer than lines in.",
                    unit="cps",
                ),
                Panel(
                    "Bytes in",
                    (
                        q(
                            f"sum by (pod) (rate(log_adapter_bytes_in_total{{$sel}}{RATE}))",
                            "{{pod}}",
                        ),
                    ),
                    unit="Bps",
                ),
                Panel(
                    "Lag",
                    (q("sum by (pod) (log_adapter_lag_bytes{$sel})", "{{pod}}"),),
                    "Bytes written to the followed files and not yet turned into records.",
                    unit="bytes",
                ),
                Panel(
                    "Lost bytes by reason",
                    (
                        q(
                            f"sum by (pod, reason) (increase(podkit_follow_lost_bytes_total{{$sel}}{RATE}))"
                            + ZERO,
                            "{{pod}} {{reason}}",
                        ),
                    ),
                    "The follower's loss ledger (deleted or truncated before read).",
                    unit="bytes",
                ),
            ),
        ),
        Row(
            "Rejections",
            (
                Panel(
                    "Parse failures by kind",
                    (
                        q(
                            f"sum by (pod, parser, kind) (rate(log_adapter_parse_failures_total{{$sel}}{RATE}))"
                            + ZERO,
                            "{{pod}} {{parser}} {{kind}}",
                        ),
                    ),
                    "Lines the parser rejected; they are emitted raw with parse_error.",
                    unit="cps",
                ),
                Panel(
                    "Invalid UTF-8 lines",
                    (
                        q(
                            f"sum by (pod) (rate(log_adapter_invalid_utf8_lines_total{{$sel}}{RATE}))",
                            "{{pod}}",
                        ),
                    ),
                    "Replaced in the message; raw_b64 keeps the bytes.",
                    unit="cps",
                ),
                Panel(
                    "Field type errors",
                    (
                        q(
                            f"sum by (pod, field) (rate(log_adapter_type_errors_total{{$sel}}{RATE}))"
                            + ZERO,
                            "{{pod}} {{field}}",
                        ),
                    ),
                    "Field values left as text: not of their configured type.",
                    unit="cps",
                ),
                Panel(
                    "Records stamped with the read time",
                    (
                        q(
                            f"sum by (pod) (rate(log_adapter_ingest_time_records_total{{$sel}}{RATE}))",
                            "{{pod}}",
                        ),
                    ),
                    "No usable time in the line.",
                    unit="cps",
                ),
            ),
        ),
    ),
)
