# ruff: noqa: E501  (PromQL reads better on one line than cut into pieces)
"""Every podkit pod at a glance: which helper, ready, draining, event-loop lag, memory."""

from podkit_dev.dashboards.model import Dashboard, Panel, Row, q

# The helper and version of each series, joined from podkit_build_info.
HELPER = "on (namespace, pod, instance) group_left (helper, version) podkit_build_info{$sel}"

dashboard = Dashboard(
    uid="podkit-overview",
    title="podkit / overview",
    description="Every podkit helper: ready, draining, event-loop lag, restarts and memory.",
    helper=None,
    file="overview.json",
    tags=("overview",),
    rows=(
        Row(
            "State",
            (
                Panel(
                    "Helpers",
                    (
                        q(
                            f"max by (namespace, pod, helper, version) (podkit_ready{{$sel}} * {HELPER})",
                            "ready",
                        ),
                        q(
                            f"max by (namespace, pod, helper, version) (podkit_draining{{$sel}} * {HELPER})",
                            "draining",
                        ),
                        q(
                            f"max by (namespace, pod, helper, version) (podkit_event_loop_lag_seconds{{$sel}} * {HELPER})",
                            "loop lag",
                        ),
                        q(
                            f"max by (namespace, pod, helper, version) ((time() - process_start_time_seconds{{$sel}}) * {HELPER})",
                            "uptime",
                        ),
                    ),
                    "One line per helper process: ready (1/0), draining (1/0), event-loop lag, uptime.",
                    kind="table",
                    width=24,
                ),
                Panel(
                    "Ready",
                    (
                        q("sum(podkit_ready{$sel})", "ready"),
                        q("count(podkit_ready{$sel})", "helpers"),
                    ),
                    "Helpers whose /readyz answers 200, out of all helpers.",
                    kind="stat",
                    width=6,
                    height=4,
                ),
                Panel(
                    "Draining",
                    (q("sum(podkit_draining{$sel})", "draining"),),
                    "Helpers that were asked to drain (SIGTERM or POST /drain) and have not exited.",
                    kind="stat",
                    width=6,
                    height=4,
                ),
                Panel(
                    "Worst event-loop lag",
                    (q("max(podkit_event_loop_lag_seconds{$sel})", "lag"),),
                    "Above 0.1 s the helper is overloaded; at 5 s /livez fails.",
                    kind="stat",
                    unit="s",
                    width=6,
                    height=4,
                ),
                Panel(
                    "Not started",
                    (q("count(podkit_started{$sel} == 0) or vector(0)", "not started"),),
                    "Helpers whose first sync or discovery has not finished (/startupz).",
                    kind="stat",
                    width=6,
                    height=4,
                ),
            ),
        ),
        Row(
            "Over time",
            (
                Panel(
                    "Ready by helper",
                    (q(f"podkit_ready{{$sel}} * {HELPER}", "{{pod}} {{helper}}"),),
                    "1 while the helper can do its job.",
                    main=True,
                ),
                Panel(
                    "Event-loop lag",
                    (q(f"podkit_event_loop_lag_seconds{{$sel}} * {HELPER}", "{{pod}} {{helper}}"),),
                    "How late the runtime's 0.25 s timer fired: CPU starvation or a blocking call.",
                    unit="s",
                    main=True,
                ),
                Panel(
                    "Draining",
                    (q(f"podkit_draining{{$sel}} * {HELPER}", "{{pod}} {{helper}}"),),
                    "1 from the drain request until the process exits.",
                ),
                Panel(
                    "Resident memory",
                    (q(f"process_resident_memory_bytes{{$sel}} * {HELPER}", "{{pod}} {{helper}}"),),
                    "RSS of each helper process.",
                    unit="bytes",
                    main=True,
                ),
                Panel(
                    "CPU",
                    (
                        q(
                            f"rate(process_cpu_seconds_total{{$sel}}[$__rate_interval]) * {HELPER}",
                            "{{pod}} {{helper}}",
                        ),
                    ),
                    "CPU seconds per second.",
                    unit="percentunit",
                ),
                Panel(
                    "Uptime",
                    (
                        q(
                            f"(time() - process_start_time_seconds{{$sel}}) * {HELPER}",
                            "{{pod}} {{helper}}",
                        ),
                    ),
                    "Seconds since the process started; a drop is a restart.",
                    unit="s",
                ),
            ),
        ),
    ),
)
