# ruff: noqa: E501  (PromQL reads better on one line than cut into pieces)
"""git-sync: syncs by status, their duration, time since the last success, hooks, readiness.

Built on the metrics sidecars/git_sync/main.py declares (git-sync v4's names):
git_sync_count_total{status}, git_sync_duration_seconds{status}, git_fetch_count_total,
git_sync_last_success_timestamp_seconds, git_sync_consecutive_failures,
git_sync_hook_run_count_total{name,status}, git_sync_worktrees_removed_total,
git_sync_stale_locks_removed_total; readiness from the runtime's podkit_ready.
"""

from podkit_dev.dashboards.model import Dashboard, Panel, Row, q

RATE = "[$__rate_interval]"

dashboard = Dashboard(
    uid="podkit-git-sync",
    title="podkit / git-sync",
    description="Syncs by status, sync duration, seconds since the last success, hook runs, readiness.",
    helper="git-sync",
    file="git-sync.json",
    tags=("git-sync",),
    rows=(
        Row(
            "Syncs",
            (
                Panel(
                    "Since last successful sync",
                    (
                        q(
                            "time() - max by (pod) (git_sync_last_success_timestamp_seconds{$sel})",
                            "{{pod}}",
                        ),
                    ),
                    "Seconds since the last successful sync (changed or not). Grows past --period when syncs fail.",
                    unit="s",
                ),
                Panel(
                    "Ready",
                    (q("min(podkit_ready{$sel})", "ready"),),
                    "0 while any git-sync is not ready (no sync yet, or --unready-after-failures syncs failed in a row).",
                    kind="stat",
                    width=6,
                ),
                Panel(
                    "Failures in a row",
                    (q("max(git_sync_consecutive_failures{$sel})", "failures"),),
                    "The most syncs failed in a row, over the selected pods.",
                    kind="stat",
                    width=6,
                ),
                Panel(
                    "Syncs by status",
                    (
                        q(
                            f"sum by (pod, status) (rate(git_sync_count_total{{$sel}}{RATE}))",
                            "{{pod}} {{status}}",
                        ),
                        q(
                            f"sum by (pod) (rate(git_fetch_count_total{{$sel}}{RATE}))",
                            "{{pod}} fetches",
                        ),
                    ),
                    "success: a new commit published; noop: nothing new; error: the sync failed (see the log's sync_failed lines).",
                    unit="ops",
                ),
                Panel(
                    "Sync duration",
                    (
                        q(
                            f"histogram_quantile(0.5, sum by (le, pod) (rate(git_sync_duration_seconds_bucket{{$sel}}{RATE})))",
                            "{{pod}} p50",
                        ),
                        q(
                            f"histogram_quantile(0.99, sum by (le, pod) (rate(git_sync_duration_seconds_bucket{{$sel}}{RATE})))",
                            "{{pod}} p99",
                        ),
                    ),
                    "Time one sync took (fetch, worktree, link swap, hooks queued), all statuses.",
                    unit="s",
                ),
            ),
        ),
        Row(
            "Hooks and housekeeping",
            (
                Panel(
                    "Hook runs by status",
                    (
                        q(
                            f"sum by (pod, name, status) (rate(git_sync_hook_run_count_total{{$sel}}{RATE}))",
                            "{{pod}} {{name}} {{status}}",
                        ),
                    ),
                    "exechook and webhook runs after a new commit; errors are retried with backoff.",
                    unit="ops",
                ),
                Panel(
                    "Worktrees and stale locks removed",
                    (
                        q(
                            f"sum by (pod) (rate(git_sync_worktrees_removed_total{{$sel}}{RATE}))",
                            "{{pod}} worktrees",
                        ),
                        q(
                            f"sum by (pod) (rate(git_sync_stale_locks_removed_total{{$sel}}{RATE}))",
                            "{{pod}} stale locks",
                        ),
                    ),
                    "Old worktrees cleaned after a swap; git lock files left by a killed git.",
                    unit="ops",
                ),
            ),
        ),
    ),
)
