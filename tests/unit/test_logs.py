"""Log records: JSON lines with the contract fields, or text for people."""

from __future__ import annotations

import json
import logging

import pytest

from podkit import logs


@pytest.fixture
def capture(capsys):
    def read() -> list[str]:
        return capsys.readouterr().err.splitlines()

    yield read
    logging.getLogger().handlers.clear()


def test_json_lines_with_fields_and_traceback(capture):
    logs.configure("demo-helper", fmt="json", level="debug")
    log = logs.get_logger("part")
    log.info("thing_happened", count=3, path="/var/log/a b.log", text='quote " and \\ and \n')
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("it_failed", attempt=2)
    logging.getLogger("aiohttp.server").warning("third party %s", "message")
    first, second, third = (json.loads(line) for line in capture())
    assert first["event"] == "thing_happened" and first["helper"] == "demo-helper"
    assert first["count"] == 3 and first["text"] == 'quote " and \\ and \n'
    assert first["level"] == "info" and first["ts"].endswith("Z") and "T" in first["ts"]
    assert second["level"] == "error" and second["error"] == "ValueError: boom"
    assert "Traceback" in second["traceback"] and second["attempt"] == 2
    assert third["event"] == "third party message" and third["logger"] == "aiohttp.server"


def test_level_filter_and_text_format(capture):
    logs.configure("demo-helper", fmt="text", level="warning")
    log = logs.get_logger("part")
    log.info("hidden")
    log.warning("shown", key="value")
    (line,) = capture()
    assert line.endswith("WARNING demo-helper shown key=value")


def test_throttled_warnings_log_once_a_period_and_count_the_rest(caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.WARNING)
    throttled = logs.Throttled(logs.get_logger("throttle_test"), every=3600)
    for _ in range(5):
        throttled.warning("client_refused", reason="full")
    throttled.warning("other_event")
    assert [r.getMessage() for r in caplog.records] == ["client_refused", "other_event"]
    throttled._last["client_refused"] = (float("-inf"), 4)  # the period is over
    throttled.warning("client_refused", reason="full")
    assert caplog.records[-1].podkit_fields == {"reason": "full", "suppressed": 4}  # type: ignore[attr-defined]
