"""`podkit ctl`: admin URL rules and the status table (the live helpers: test_ctl_status)."""

from __future__ import annotations

import pytest

from podkit.ctl import admin_url, format_figure, main, table


@pytest.mark.parametrize(
    ("given", "url"),
    [
        ("http://10.0.0.1:9701", "http://10.0.0.1:9701"),
        ("http://127.0.0.1:9701/", "http://127.0.0.1:9701"),
        ("9704", "http://127.0.0.1:9704"),
        (":9704", "http://127.0.0.1:9704"),
        ("0.0.0.0:9701", "http://127.0.0.1:9701"),
        ("[::]:9701", "http://127.0.0.1:9701"),
        ("[::1]:9701", "http://[::1]:9701"),
        ("localhost:9706", "http://localhost:9706"),
    ],
)
def test_admin_url(given: str, url: str) -> None:
    assert admin_url(given) == url


def test_no_admin_and_no_env_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("PODKIT_ADMIN_ADDR", raising=False)
    assert main(["status"]) == 2
    assert "--admin is required" in capsys.readouterr().err


def test_figures_are_formatted_by_their_unit() -> None:
    now = 1_000_000.0
    assert format_figure("lag_bytes", 3 * 1024 * 1024, now) == "lag 3.0MiB"
    assert format_figure("lost_bytes", 0, now) == "lost 0B"
    assert format_figure("last_failover_at", now - 190, now) == "last failover 3m10s ago"
    assert format_figure("last_failover_at", 0.0, now) == "last failover never"
    assert format_figure("master", None, now) == "master -"
    assert format_figure("targets_up", 2, now) == "targets up 2"


def test_table_says_why_not_ready_and_unreachable() -> None:
    reports = [
        {
            "admin": "http://127.0.0.1:9704", "reachable": True, "helper": "redis-ambassador",
            "version": "0.1.0", "ready": False, "reason": "no verified master (lost)",
            "live": True, "draining": False, "uptime_seconds": 75.0,
            "event_loop_lag_seconds": 0.0004, "figures": {"master": None, "failovers": 1},
        },
        {"admin": "http://127.0.0.1:9701", "reachable": False, "ready": False,
         "error": "Connection refused"},
    ]  # fmt: skip
    lines = table(reports).splitlines()
    assert lines[0].split()[:3] == ["ADMIN", "HELPER", "VERSION"]
    assert "no: no verified master (lost)" in lines[1]
    assert "75s" in lines[1] and "0.4ms" in lines[1] and "master -, failovers 1" in lines[1]
    assert "unreachable: Connection refused" in lines[2]
