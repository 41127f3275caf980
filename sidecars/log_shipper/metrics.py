"""The shipper's own metrics (prefix `log_shipper_`); the follower registers its ledger."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from podkit.follow.api import EVENT_KINDS, LOSS_REASONS

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class ShipperMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(name, doc, labels, registry=registry)

        def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
            return Gauge(name, doc, labels, registry=registry)

        self.lines_read = counter("log_shipper_lines_read_total", "lines taken from the follower")
        self.lines_acked = counter(
            "log_shipper_lines_acked_total", "lines every output settled; checkpoint may pass them"
        )
        self.invalid_utf8 = counter(
            "log_shipper_invalid_utf8_lines_total",
            "lines not valid UTF-8 (shipped with \\x escapes)",
        )
        self.parse_errors = counter(
            "log_shipper_parse_errors_total", "lines the --parser rejected (shipped raw)"
        )
        self.file_events = counter(
            "log_shipper_file_events_total", "file events seen by the follower", ("kind",)
        )
        self.lost_bytes = counter(
            "log_shipper_lost_bytes_total",
            "bytes the follower reported lost before they were read",
            ("reason",),
        )
        # Every known label value exported at 0 from the start: alerts use increase().
        for kind in EVENT_KINDS:
            self.file_events.labels(kind)
        for reason in LOSS_REASONS:
            self.lost_bytes.labels(reason)
        self.records_sent = counter(
            "log_shipper_records_sent_total", "records an output delivered", ("output",)
        )
        self.bytes_sent = counter(
            "log_shipper_bytes_sent_total", "bytes of lines an output delivered", ("output",)
        )
        self.batches_failed = counter(
            "log_shipper_batches_failed_total",
            "send attempts that failed, by reason",
            ("output", "reason"),
        )
        self.records_dropped = counter(
            "log_shipper_records_dropped_total",
            "records given up for good (permanent rejection or retries exhausted)",
            ("output", "reason"),
        )
        self.records_duplicate = counter(
            "log_shipper_records_duplicate_total",
            "records the backend already had (a resend it deduplicated)",
            ("output",),
        )
        self.buffered_records = gauge(
            "log_shipper_buffered_records", "records queued for an output", ("output",)
        )
        self.buffered_bytes = gauge(
            "log_shipper_buffered_bytes", "bytes queued for an output", ("output",)
        )
        self.retry_queue = gauge(
            "log_shipper_retry_queue_records",
            "records of a batch that failed and waits for its next attempt",
            ("output",),
        )
        self.oldest_age = gauge(
            "log_shipper_oldest_undelivered_age_seconds",
            "age of the oldest record an output has not delivered yet (0 when none)",
            ("output",),
        )
        self.last_success = gauge(
            "log_shipper_last_success_timestamp_seconds",
            "when an output last delivered a batch",
            ("output",),
        )
        self.latency = Histogram(
            "log_shipper_delivery_latency_seconds",
            "from reading a line to its delivery by an output",
            ("output",),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
