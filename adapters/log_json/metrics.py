"""The adapter's metrics, read from the builder's plain counters at scrape time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .record import BuildCounts


class AdapterCollector(Collector):
    def __init__(
        self, stats: BuildCounts, parser: str, lag: dict[str, int], auto: Any | None = None
    ) -> None:
        self.stats = stats
        self.parser = parser
        self.lag = lag
        self.auto = auto
        """`--parser auto`'s shared state (AutoState): choices per file, lines by parser."""
        self.pool: Any | None = None
        """The worker processes (WorkerPool), when batches are encoded in workers."""

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
        partial = CounterMetricFamily(
            "log_adapter_partial_records",
            "records parsed with the level or timestamp left in the message (not in parsed)",
            labels=["parser"],
        )
        partial.add_metric([self.parser], stats.partial)
        yield partial
        if self.auto is not None:
            chosen = GaugeMetricFamily(
                "log_adapter_auto_parser",
                "1 for the parser --parser auto chose for a file (runner_up: the next best)",
                labels=["path", "parser", "runner_up"],
            )
            for path, (name, runner_up) in sorted(self.auto.choices.items()):
                chosen.add_metric([path, name, runner_up or ""], 1)
            yield chosen
            by_parser = CounterMetricFamily(
                "log_adapter_auto_lines",
                "lines --parser auto handed to each parser (the chosen one, or a fallback)",
                labels=["parser"],
            )
            for name, count in sorted(self.auto.lines.items()):
                by_parser.add_metric([name], count)
            yield by_parser
        yield CounterMetricFamily(
            "log_adapter_invalid_utf8_lines",
            "lines with invalid UTF-8 (replaced; raw_b64 keeps the bytes)",
            value=stats.invalid_utf8,
        )
        yield CounterMetricFamily(
            "log_adapter_ingest_time_records",
            "records stamped with the time they were read (no usable time in the line, "
            "or a line the parser rejected)",
            value=stats.ingest_time,
        )
        pool = self.pool
        yield GaugeMetricFamily(
            "log_adapter_workers",
            "worker processes parsing and encoding batches (0: in the adapter's own process)",
            value=len(pool.workers) if pool is not None else 0,
        )
        yield CounterMetricFamily(
            "log_adapter_worker_restarts",
            "workers that died and were replaced (their unfinished batches were redone)",
            value=pool.restarts if pool is not None else 0,
        )
        yield GaugeMetricFamily(
            "log_adapter_worker_batches_in_flight",
            "batches sent to a worker and not answered yet",
            value=pool.in_flight() if pool is not None else 0,
        )
        yield GaugeMetricFamily(
            "log_adapter_lag_bytes",
            "bytes written to the followed files and not yet turned into records",
            value=sum(self.lag.values()),
        )
