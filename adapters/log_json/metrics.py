"""The adapter's metrics, read from the builder's plain counters at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .record import Stats


class AdapterCollector(Collector):
    def __init__(self, stats: Stats, parser: str, lag: dict[str, int]) -> None:
        self.stats = stats
        self.parser = parser
        self.lag = lag

    def collect(self) -> Iterator[Metric]:
        stats = self.stats
        yield CounterMetricFamily(
            "log_adapter_lines_in", "lines read from the followed files", value=stats.lines_in
        )
        yield CounterMetricFamily(
            "log_adapter_bytes_in", "bytes of lines read (newlines excluded)", value=stats.bytes_in
        )
        yield CounterMetricFamily(
            "log_adapter_records_out", "JSON records written to the output", value=stats.written
        )
        failures = CounterMetricFamily(
            "log_adapter_parse_failures",
            "lines the parser rejected (emitted raw, with parse_error), by kind",
            labels=["parser", "kind"],
        )
        for kind, count in sorted(stats.failures.items()):
            failures.add_metric([self.parser, kind], count)
        yield failures
        type_errors = CounterMetricFamily(
            "log_adapter_type_errors",
            "field values left as text because they are not of their configured type",
            labels=["field"],
        )
        for name, count in sorted(stats.type_errors.items()):
            type_errors.add_metric([name], count)
        yield type_errors
        yield CounterMetricFamily(
            "log_adapter_invalid_utf8_lines",
            "lines with invalid UTF-8 (replaced; raw_b64 keeps the bytes)",
            value=stats.invalid_utf8,
        )
        yield CounterMetricFamily(
            "log_adapter_ingest_time_records",
            "records stamped with the time they were read (no usable time in the line)",
            value=stats.ingest_time,
        )
        yield GaugeMetricFamily(
            "log_adapter_lag_bytes",
            "bytes written to the followed files and not yet turned into records",
            value=sum(self.lag.values()),
        )
