"""Alert rules on the helpers' metrics; dashboards/alerts.yaml and the PrometheusRule.

Every rule has a summary, a description and a runbook section in dashboards/README.md
(`runbook` is its anchor there); tests/unit/test_dashboards.py holds them to it, and
dashboards/alerts.test.yaml fires each one under `promtool test rules`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Relative to the repository; point it at your own copy of dashboards/README.md.
RUNBOOK_BASE = "dashboards/README.md"


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    for_: str
    severity: str
    summary: str
    description: str
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def runbook(self) -> str:
        return self.name.lower()

    def rule(self) -> dict[str, Any]:
        rule: dict[str, Any] = {"alert": self.name, "expr": self.expr}
        if self.for_ != "0s":
            rule["for"] = self.for_
        rule["labels"] = {"severity": self.severity, **self.labels}
        rule["annotations"] = {
            "summary": self.summary,
            "description": self.description,
            "runbook_url": f"{RUNBOOK_BASE}#{self.runbook}",
        }
        return rule


ALERTS: tuple[Alert, ...] = (
    Alert(
        "PodkitLinesLost",
        "sum by (namespace, pod, reason) (increase(podkit_follow_lost_bytes_total[5m])) > 0",
        "0s",
        "critical",
        "{{ $labels.pod }} lost log bytes ({{ $labels.reason }})",
        "The file follower of {{ $labels.namespace }}/{{ $labels.pod }} could not read "
        "{{ $value | humanize }}B in the last 5 minutes (reason {{ $labels.reason }}): the "
        "file was deleted or truncated before it was read.",
    ),
    Alert(
        "LogShipperLagGrowing",
        "sum by (namespace, pod) (podkit_follow_lag_bytes) > 0"
        " and sum by (namespace, pod) (deriv(podkit_follow_lag_bytes[5m])) > 0",
        "10m",
        "warning",
        "{{ $labels.pod }} falls further behind its log files",
        "The bytes written to the files {{ $labels.namespace }}/{{ $labels.pod }} follows "
        "and not read yet ({{ $value | humanize }}B) have been growing for 10 minutes.",
        {"helper": "log-shipper"},
    ),
    Alert(
        "LogShipperOutputRetrying",
        "sum by (namespace, pod, output) (increase(log_shipper_batches_failed_total[2m])) > 0",
        "5m",
        "warning",
        "{{ $labels.pod }}: output {{ $labels.output }} keeps failing",
        "Output {{ $labels.output }} of {{ $labels.namespace }}/{{ $labels.pod }} has failed "
        "sends for 5 minutes; lines wait in the buffer and the checkpoint does not move.",
        {"helper": "log-shipper"},
    ),
    Alert(
        "RedisAmbassadorNoMaster",
        "max by (namespace, pod) (redis_ambassador_master_known) == 0",
        "30s",
        "critical",
        "{{ $labels.pod }} has no verified Redis master",
        "The redis-ambassador of {{ $labels.namespace }}/{{ $labels.pod }} has known no "
        "verified master for 30 s: client connections are refused.",
        {"helper": "redis-ambassador"},
    ),
    Alert(
        "RedisAmbassadorSentinelsDisagree",
        "min by (namespace, pod) (redis_ambassador_sentinels_agreeing)"
        " < min by (namespace, pod) (redis_ambassador_sentinels_reachable)",
        "2m",
        "warning",
        "{{ $labels.pod }}: Sentinels name different masters",
        "Of the Sentinels {{ $labels.namespace }}/{{ $labels.pod }} reaches, only "
        "{{ $value }} named the chosen master for 2 minutes.",
        {"helper": "redis-ambassador"},
    ),
    Alert(
        "StatsExporterTargetDown",
        # The source comes from the metric name (alert labels have no __name__).
        'label_replace({__name__=~"[a-z][a-z0-9_]*_up"} == 0,'
        ' "source", "$1", "__name__", "(.+)_up")'
        ' and on (namespace, pod) podkit_build_info{helper="stats-exporter"}',
        "2m",
        "warning",
        "{{ $labels.pod }}: {{ $labels.source }} target down",
        "The stats-exporter of {{ $labels.namespace }}/{{ $labels.pod }} could not fetch "
        "or parse its {{ $labels.source }} target{{ with $labels.addr }} {{ . }}{{ end }} "
        "for 2 minutes.",
        {"helper": "stats-exporter"},
    ),
    Alert(
        "GitSyncNotSyncing",
        # Since the last success, or since the start when there was none yet; while scraped.
        "time() - ("
        "max by (namespace, pod, instance) (git_sync_last_success_timestamp_seconds) > 0"
        " or max by (namespace, pod, instance) (process_start_time_seconds"
        " and on (namespace, pod, instance) git_sync_last_success_timestamp_seconds)"
        ") > 600 and on (namespace, pod, instance) up == 1",
        "1m",
        "warning",
        "{{ $labels.pod }}: git-sync has not synced for {{ $value | humanizeDuration }}",
        "The git-sync of {{ $labels.namespace }}/{{ $labels.pod }} has had no successful "
        "sync for {{ $value | humanizeDuration }} (more than 10 minutes): the files it "
        "publishes are stale.",
        {"helper": "git-sync"},
    ),
    Alert(
        "PgAmbassadorClientsWaiting",
        'sum by (namespace, pod, database, user) (pg_ambassador_clients{state="waiting"}) > 0',
        "5m",
        "warning",
        "{{ $labels.pod }}: clients wait for a {{ $labels.database }} server connection",
        "{{ $value }} client(s) of the pg-ambassador of {{ $labels.namespace }}/{{ $labels.pod }} "
        "have been waiting for a server connection to {{ $labels.database }} as "
        "{{ $labels.user }} for 5 minutes: the pool is too small, or transactions are long.",
        {"helper": "pg-ambassador"},
    ),
    Alert(
        "PodkitHelperNotReady",
        "max by (namespace, pod, instance) (podkit_ready) == 0"
        " unless on (namespace, pod, instance) podkit_draining == 1",
        "5m",
        "warning",
        "{{ $labels.pod }}: podkit helper not ready",
        "A podkit helper in {{ $labels.namespace }}/{{ $labels.pod }} ({{ $labels.instance }}) "
        "has answered /readyz 503 for 5 minutes without draining; "
        "`podkit ctl status` says why.",
    ),
    Alert(
        "PodkitEventLoopLag",
        "avg_over_time(podkit_event_loop_lag_seconds[5m]) > 0.1",
        "5m",
        "warning",
        "{{ $labels.pod }}: event loop {{ $value | humanizeDuration }} late",
        "The event loop of a podkit helper in {{ $labels.namespace }}/{{ $labels.pod }} "
        "runs its timers {{ $value | humanizeDuration }} late on average: CPU-starved "
        "(limits) or a blocking call. At 5 s /livez fails and the kubelet restarts it.",
    ),
)


def rule_groups() -> dict[str, Any]:
    return {"groups": [{"name": "podkit", "rules": [a.rule() for a in ALERTS]}]}
