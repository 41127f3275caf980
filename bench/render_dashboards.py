"""Draw the main panels of the overview and log-shipper dashboards to a PNG, from a real
Prometheus scraping real helpers (no Grafana server needed).

    .venv/bin/python bench/render_dashboards.py [--seconds 90] [--out FILE.png]

Starts podkit_dev.dashboards.stack (log-shipper, log-adapter, redis-ambassador,
stats-exporter, their real servers, Prometheus scraping every second) plus a second
log-shipper whose http backend never answers (retries, a full buffer, growing lag), writes
log lines in bursts, truncates the troubled shipper's file once (its unread lag lands on
the loss ledger) and drains the log-adapter near the end (a state change on the overview).
Then it runs each main panel's PromQL (the same text Grafana gets) as a range query and
plots it with matplotlib: the dev kit's `plots` extra (.venv/bin/pip install -e
'devkit[plots]'), never in an image.
"""

from __future__ import annotations

import argparse
import re
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from podkit_dev.dashboards import log_shipper, overview
from podkit_dev.dashboards.model import Dashboard, Panel, concrete
from podkit_dev.dashboards.stack import Stack

ROOT = Path(__file__).resolve().parent.parent
RATE_WINDOW = "5s"  # Prometheus scrapes every second here; Grafana would use $__rate_interval
GRAFANA_COLORS = ["#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c", "#5794f2", "#b877d9"]


def legend(template: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template).strip()


def human(value: float, unit: str) -> str:
    if unit == "bytes":
        for suffix in ("B", "KiB", "MiB", "GiB"):
            if abs(value) < 1024 or suffix == "GiB":
                return f"{value:.0f} {suffix}" if suffix == "B" else f"{value:.1f} {suffix}"
            value /= 1024
    if unit == "s":
        return f"{value * 1000:.1f} ms" if abs(value) < 1 else f"{value:.1f} s"
    if unit in ("cps", "reqps"):
        return f"{value:.0f}/s"
    if unit == "Bps":
        return human(value, "bytes") + "/s"
    return f"{value:g}"


def pods_of(stack: Stack, helper: str | None) -> str:
    """The `pod` variable's "All" for a dashboard: the pods that run its helper."""
    if helper is None:
        return ".*"
    assert stack.prometheus is not None
    answer = stack.prometheus.query(f'podkit_build_info{{helper="{helper}"}}')
    return "|".join(sorted({r["metric"]["pod"] for r in answer["data"]["result"]})) or ".*"


def draw(stack: Stack, panels: list[tuple[Dashboard, Panel]], start: float, end: float,
         out: Path) -> None:  # fmt: skip
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    assert stack.prometheus is not None
    plt.style.use("dark_background")
    cols = 2
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(14, 3.1 * rows), facecolor="#181b1f")
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for ax, (dashboard, panel) in zip(axes.flat, panels, strict=False):
        ax.set_facecolor("#111217")
        ax.set_title(f"{dashboard.title}  ·  {panel.title}", loc="left", fontsize=10)
        color = 0
        seen: list[float] = []
        pods = pods_of(stack, dashboard.helper)  # what Grafana's `pod` variable would list
        for query in panel.queries:
            answer = stack.prometheus.query_range(
                concrete(query.expr, rate_interval=RATE_WINDOW, pods=pods), start, end, 1
            )
            for series in answer["data"]["result"]:
                xs = [float(t) - start for t, _ in series["values"]]
                ys = [float(v) for _, v in series["values"]]
                seen += ys
                name = legend(query.legend, series["metric"]) or query.expr[:40]
                ax.plot(xs, ys, lw=1.4, label=name,
                        color=GRAFANA_COLORS[color % len(GRAFANA_COLORS)])  # fmt: skip
                color += 1
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _, u=panel.unit: human(v, u)))
        ax.set_xlim(0, end - start)
        if seen and max(seen) == min(seen) == 0:
            ax.set_ylim(-0.05, 1)  # all zero: one tick at 0, not "0 B" five times
            ax.set_yticks([0])
        elif seen and set(seen) <= {0.0, 1.0}:
            ax.set_ylim(-0.05, 1.3)  # up/down states
            ax.set_yticks([0, 1])
        ax.grid(color="#2c3235", lw=0.6)
        ax.tick_params(labelsize=8)
        ax.set_xlabel("seconds", fontsize=8)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        if color:
            ax.legend(fontsize=7, loc="upper left", framealpha=0.3, ncol=2 if color > 3 else 1)
    fig.suptitle(
        "podkit dashboards, drawn from a real Prometheus (bench/render_dashboards.py)",
        fontsize=11, x=0.01, ha="left",
    )  # fmt: skip
    fig.tight_layout()
    fig.savefig(out, dpi=90, facecolor=fig.get_facecolor())
    print(f"wrote {out}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=90.0, help="how long to collect data")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "dashboards" / "overview-and-log-shipper.png"
    )
    args = parser.parse_args()
    stack = Stack(with_rules=False, troubled_shipper=True).start()
    try:
        stack.start_traffic()
        stack.wait_scrapes(2)
        start = time.time()
        # One truncation under the shipper with bytes it has not read: a loss on the ledger.
        threading.Timer(args.seconds * 0.4, truncate_unread, (stack,)).start()
        # The log-adapter drains (preStop) near the end: ready drops, draining rises.
        adapter = stack.helpers["log-adapter"]
        threading.Timer(args.seconds * 0.8, http_get_post, (adapter.admin + "/drain",)).start()
        stack.run_for(args.seconds)
        end = time.time()
        panels = [(d, p) for d in (overview.dashboard, log_shipper.dashboard) for p in d.panels
                  if p.main]  # fmt: skip
        draw(stack, panels, start, end, args.out)
    finally:
        stack.cleanup()
    return 0


def truncate_unread(stack: Stack) -> None:
    """Copytruncate under the troubled shipper, which stopped reading: its lag is lost."""
    with open(stack.dir.path / "logs-1" / "app.log", "r+b") as handle:
        handle.truncate(0)


def http_get_post(url: str) -> None:
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(url, method="POST", data=b""), timeout=5)


if __name__ == "__main__":
    sys.exit(main())
