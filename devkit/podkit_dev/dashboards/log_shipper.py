# ruff: noqa: E501  (PromQL reads better on one line than cut into pieces)
"""log-shipper: lines in and acknowledged, lag, buffers, retries, the loss ledger."""

from podkit_dev.dashboards.model import Dashboard, Panel, Row, q

RATE = "[$__rate_interval]"
# Event counters have no series until the event happens; show 0 per pod meanwhile.
ZERO = " or on (pod) (0 * sum by (pod) (log_shipper_lines_read_total{$sel}))"

dashboard = Dashboard(
    uid="podkit-log-shipper",
    title="podkit / log-shipper",
    description="Lines read and acknowledged per output, lag, buffers, retries and every byte lost.",
    helper="log-shipper",
    file="log-shipper.json",
    tags=("log-shipper",),
    rows=(
        Row(
            "Flow",
            (
                Panel(
                    "Lines read and acknowledged",
                    (
                        q(
                            f"sum by (pod) (rate(log_shipper_lines_read_total{{$sel}}{RATE}))",
                            "{{pod}} read",
                        ),
                        q(
                            f"sum by (pod) (rate(log_shipper_lines_acked_total{{$sel}}{RATE}))",
                            "{{pod}} acked",
                        ),
                    ),
                    "Acknowledged = every output settled the line; the checkpoint may pass it.",
                    unit="cps",
                    main=True,
                ),
                Panel(
                    "Records sent per output",
                    (
                        q(
                            f"sum by (pod, output) (rate(log_shipper_records_sent_total{{$sel}}{RATE}))",
                            "{{pod}} {{output}}",
                        ),
                    ),
                    "Records each output delivered.",
                    unit="cps",
                    main=True,
                ),
                Panel(
                    "Bytes sent per output",
                    (
                        q(
                            f"sum by (pod, output) (rate(log_shipper_bytes_sent_total{{$sel}}{RATE}))",
                            "{{pod}} {{output}}",
                        ),
                    ),
                    unit="Bps",
                ),
                Panel(
                    "Delivery latency p99",
                    (
                        q(
                            "histogram_quantile(0.99, sum by (pod, output, le) "
                            f"(rate(log_shipper_delivery_latency_seconds_bucket{{$sel}}{RATE})))",
                            "{{pod}} {{output}}",
                        ),
                    ),
                    "From reading a line to its delivery.",
                    unit="s",
                ),
            ),
        ),
        Row(
            "Backlog",
            (
                Panel(
                    "Lag behind the files",
                    (q("sum by (pod) (podkit_follow_lag_bytes{$sel})", "{{pod}}"),),
                    "Bytes written to the followed files and not read yet. Growing = falling behind.",
                    unit="bytes",
                    main=True,
                ),
                Panel(
                    "Unacknowledged buffer",
                    (
                        q("sum by (pod) (podkit_follow_unacked_bytes{$sel})", "{{pod}} unacked"),
                        q("sum by (pod) (podkit_follow_budget_bytes{$sel})", "{{pod}} budget"),
                    ),
                    "Bytes handed to the outputs and not acknowledged, against --buffer-bytes.",
                    unit="bytes",
                    main=True,
                ),
                Panel(
                    "Buffered per output",
                    (
                        q(
                            "sum by (pod, output) (log_shipper_buffered_records{$sel})",
                            "{{pod}} {{output}}",
                        ),
                    ),
                    "Records queued for each output.",
                ),
                Panel(
                    "Oldest undelivered record",
                    (
                        q(
                            "max by (pod, output) (log_shipper_oldest_undelivered_age_seconds{$sel})",
                            "{{pod}} {{output}}",
                        ),
                    ),
                    "Age of the oldest record an output has not delivered yet.",
                    unit="s",
                ),
            ),
        ),
        Row(
            "Trouble",
            (
                Panel(
                    "Lost bytes by reason",
                    (
                        q(
                            f"sum by (pod, reason) (increase(podkit_follow_lost_bytes_total{{$sel}}{RATE}))"
                            + ZERO,
                            "{{pod}} {{reason}}",
                        ),
                    ),
                    "The follower's loss ledger: bytes written and never read (the file was "
                    "deleted or truncated before the shipper got to them). Above 0 fires "
                    "PodkitLinesLost.",
                    unit="bytes",
                    main=True,
                ),
                Panel(
                    "Records dropped by reason",
                    (
                        q(
                            f"sum by (pod, output, reason) (increase(log_shipper_records_dropped_total{{$sel}}{RATE}))"
                            + ZERO,
                            "{{pod}} {{output}} {{reason}}",
                        ),
                    ),
                    "Records given up for good: a permanent rejection or retries exhausted.",
                ),
                Panel(
                    "Failed sends (retries)",
                    (
                        q(
                            f"sum by (pod, output, reason) (rate(log_shipper_batches_failed_total{{$sel}}{RATE}))"
                            + ZERO,
                            "{{pod}} {{output}} {{reason}}",
                        ),
                        q(
                            "sum by (pod, output) (log_shipper_retry_queue_records{$sel})",
                            "{{pod}} {{output}} waiting",
                        ),
                    ),
                    "Send attempts that failed, and records waiting for their next attempt.",
                ),
                Panel(
                    "Duplicates after restart",
                    (
                        q(
                            f"sum by (pod, output) (increase(log_shipper_records_duplicate_total{{$sel}}{RATE}))"
                            + ZERO,
                            "{{pod}} {{output}}",
                        ),
                    ),
                    "Resent records the backend already had (deduplicated by record id).",
                ),
                Panel(
                    "Invalid UTF-8 and parse errors",
                    (
                        q(
                            f"sum by (pod) (rate(log_shipper_invalid_utf8_lines_total{{$sel}}{RATE}))",
                            "{{pod}} invalid utf-8",
                        ),
                        q(
                            f"sum by (pod) (rate(log_shipper_parse_errors_total{{$sel}}{RATE}))",
                            "{{pod}} parse errors",
                        ),
                    ),
                    unit="cps",
                ),
                Panel(
                    "File events",
                    (
                        q(
                            f"sum by (pod, kind) (increase(log_shipper_file_events_total{{$sel}}{RATE}))"
                            + ZERO,
                            "{{pod}} {{kind}}",
                        ),
                    ),
                    "Rotations, truncations and the like, as the follower saw them.",
                ),
            ),
        ),
    ),
)
