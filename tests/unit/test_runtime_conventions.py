"""The runtime's conventions, in-process: StartupError, crashes, on_drain, shutdown, one-shot."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from collections.abc import Iterator

import pytest

from podkit import logs
from podkit.config import HelperSettings
from podkit.helper import Helper
from podkit.runtime import Runtime, Server, StartupError

ME = __name__


class Settings(HelperSettings):
    pass


async def cannot_start(settings: Settings, runtime: Runtime) -> None:
    raise StartupError("listen_failed", addr="127.0.0.1:1", error="Address already in use")


async def crashes(settings: Settings, runtime: Runtime) -> None:
    raise RuntimeError("a bug")


DRAINED: list[str] = []


async def drains(settings: Settings, runtime: Runtime) -> None:
    stop = asyncio.Event()

    async def on_drain() -> None:
        # the callback's first step (closing a listener) runs before /readyz says draining
        DRAINED.append(f"callback ready={runtime.readiness()}")
        await asyncio.sleep(0)
        DRAINED.append(f"then ready={runtime.readiness()}")
        stop.set()

    runtime.set_ready(True)
    async with runtime.on_drain(on_drain):
        runtime.request_drain("test")
        await stop.wait()
    DRAINED.append("after")


async def finishes_before_any_drain(settings: Settings, runtime: Runtime) -> None:
    async def never() -> None:
        raise AssertionError("the callback must not run without a drain")

    async with runtime.on_drain(never):
        await asyncio.sleep(0)


async def failing_drain_callback(settings: Settings, runtime: Runtime) -> None:
    async def broken() -> None:
        raise ValueError("drain broke")

    async with runtime.on_drain(broken):
        runtime.request_drain("test")
        await runtime.wait_drain()
        await asyncio.sleep(0.01)


def helper(run: str) -> Helper:
    return Helper(
        name="conventions", summary="test", settings=f"{ME}:Settings", run=f"{ME}:{run}",
        admin_port=0,
    )  # fmt: skip


@pytest.fixture
def log_lines(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.INFO)
    yield caplog


def serve(run: str) -> tuple[int, Server]:
    server = Server(helper(run), Settings(admin_addr="127.0.0.1:0"))
    with asyncio.Runner() as runner:
        code = runner.run(server.serve())
        loop = runner.get_loop()
        # Signal handlers were given back: the loop no longer owns SIGTERM.
        assert not loop.remove_signal_handler(signal.SIGTERM)
    return code, server


def events(caplog: pytest.LogCaptureFixture) -> list[dict]:
    """Each record as the JSON line podkit would write."""
    formatter = logs.JsonFormatter()
    return [json.loads(formatter.format(record)) for record in caplog.records]


def test_startup_error_is_one_line_and_exit_1(log_lines, capsys) -> None:  # type: ignore[no-untyped-def]
    code, _ = serve("cannot_start")
    assert code == 1
    found = [e for e in events(log_lines) if e["event"] == "listen_failed"]
    assert len(found) == 1 and found[0]["error"] == "Address already in use"
    assert "traceback" not in found[0]


def test_a_crash_is_exit_1_with_the_traceback_in_one_line(log_lines, capsys) -> None:  # type: ignore[no-untyped-def]
    code, _ = serve("crashes")
    assert code == 1
    crash = next(e for e in events(log_lines) if e["event"] == "helper_crashed")
    assert "Traceback" in crash["traceback"] and "a bug" in crash["error"]


def test_on_drain_calls_back_once_and_the_helper_finishes(log_lines, capsys) -> None:  # type: ignore[no-untyped-def]
    DRAINED.clear()
    code, _ = serve("drains")
    assert code == 0 and DRAINED == [
        "callback ready=(True, '')",
        "then ready=(False, 'draining')",
        "after",
    ]


def test_on_drain_without_a_drain_never_calls_back(log_lines, capsys) -> None:  # type: ignore[no-untyped-def]
    assert serve("finishes_before_any_drain")[0] == 0


def test_on_drain_callback_failure_surfaces_as_a_crash(log_lines, capsys) -> None:  # type: ignore[no-untyped-def]
    code, _ = serve("failing_drain_callback")
    assert code == 1
    crash = next(e for e in events(log_lines) if e["event"] == "helper_crashed")
    assert "drain broke" in crash["error"]


def test_log_adapter_check_is_a_one_shot_that_never_starts_the_runtime(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    from podkit.cli import main

    log = tmp_path / "app.log"
    log.write_text("2024-05-01 12:00:00 ERROR something broke\n")
    # An admin address that cannot be bound: a started runtime would fail on it.
    code = main(["log-adapter", "--check", str(log), "--admin-addr", "256.0.0.1:1"])
    out = capsys.readouterr()
    assert code == 0, out.err
    record = json.loads(out.out.splitlines()[0])
    assert record["level"] == "error" and record["message"] == "something broke"
