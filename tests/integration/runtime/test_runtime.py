"""The runtime contract, exercised through real `podkit` subprocesses (the echo helper)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from podkit_dev.servers import HOST, HelperProcess, podkit_argv, wait_for
from tests.servers import require_binary


def podkit(*args: str, env: dict[str, str] | None = None, timeout: float = 30):
    return subprocess.run(
        [*podkit_argv(), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def echo_line(port: int, line: bytes = b"hello\n") -> bytes:
    with socket.create_connection((HOST, port), timeout=10) as conn:
        conn.sendall(line)
        return conn.makefile("rb").readline()


# --- CLI ---------------------------------------------------------------------------------------


def test_version_and_help_list_helpers():
    from podkit import __version__

    version = podkit("--version")
    assert version.returncode == 0
    assert version.stdout.strip().startswith(f"podkit {__version__} (revision ")
    listing = podkit("--help")
    assert listing.returncode == 0
    assert "echo" in listing.stdout and "admin :9700" in listing.stdout


def test_role_help_documents_every_setting_with_env_and_default():
    from podkit.echo.settings import EchoSettings

    result = podkit("echo", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for name in EchoSettings.model_fields:
        assert "--" + name.replace("_", "-") in text
        assert "PODKIT_" + name.upper() in text
    assert "default: 0.0.0.0:9700" in text


def test_unknown_helper_exits_2():
    result = podkit("no-such-helper")
    assert result.returncode == 2
    assert "unknown helper 'no-such-helper'" in result.stderr and "echo" in result.stderr


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--listen", "not-an-address"], {}, "invalid setting --listen=not-an-address (from --listen)"),
        ([], {"PODKIT_DELAY": "forever"}, "invalid setting --delay=forever (from env PODKIT_DELAY)"),
        (["--log-level", "loud"], {}, "invalid setting --log-level=loud"),
        (["--no-such-flag"], {}, "unrecognized arguments: --no-such-flag"),
        (["--config", "/nonexistent/podkit.yaml"], {}, "--config=/nonexistent/podkit.yaml: file does not exist"),
        (["--max-line-bytes", "8"], {}, "must be at least 16"),
    ],
)  # fmt: skip
def test_bad_configuration_exits_2_with_one_line(args, env, expected):
    result = podkit("echo", *args, env=env)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
    assert "Traceback" not in result.stderr


def test_unknown_key_in_config_file(tmp_path):
    config = tmp_path / "echo.yaml"
    config.write_text("listen: 127.0.0.1:1\nlisten_port: 5\n")
    result = podkit("echo", "--config", str(config))
    assert result.returncode == 2
    assert f"unknown setting 'listen_port' in config file {config}" in result.stderr


def test_precedence_flag_over_env_over_file(tmp_path, run_helper, free_port):
    file_port, env_port, flag_port = free_port(), free_port(), free_port()
    config = tmp_path / "echo.yaml"
    config.write_text(f"listen: {HOST}:{file_port}\ndelay: 0s\n")
    env = {"PODKIT_CONFIG": str(config), "PODKIT_LISTEN": f"{HOST}:{env_port}"}
    run_helper("echo", "--listen", f"{HOST}:{flag_port}", env=env)
    assert echo_line(flag_port) == b"hello\n"
    run_helper("echo", env=env)
    assert echo_line(env_port) == b"hello\n"
    run_helper("echo", "--config", str(config))
    assert echo_line(file_port) == b"hello\n"


# --- admin endpoints ---------------------------------------------------------------------------


def test_admin_endpoints_and_metrics(run_helper, free_port):
    port = free_port()
    helper = run_helper("echo", "--listen", f"{HOST}:{port}")
    assert helper.get("/startupz")[0] == 200
    status, body = helper.get("/livez")
    assert status == 200
    assert json.loads(body)["event_loop_lag_seconds"] >= 0
    assert helper.get("/healthz")[0] == 200
    assert helper.get("/nope")[0] == 404
    assert helper.get("/drain")[0] == 405  # GET is not a drain
    echo_line(port)
    metrics = helper.metrics()
    for needle in (
        'podkit_build_info{helper="echo"',
        "podkit_ready 1.0",
        "podkit_started 1.0",
        "podkit_event_loop_lag_seconds",
        "process_resident_memory_bytes",
        "echo_lines_total 1.0",
    ):
        assert needle in metrics


def test_metrics_pass_promtool(run_helper, free_port, tmp_path):
    promtool = require_binary("promtool")
    helper = run_helper("echo", "--listen", f"{HOST}:{free_port()}")
    result = subprocess.run(
        [promtool, "check", "metrics"], input=helper.metrics(), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == ""


def test_logs_are_json_lines_with_the_contract_fields(run_helper, free_port):
    helper = run_helper("echo", "--listen", f"{HOST}:{free_port()}")
    assert helper.stop() == 0
    lines = helper.log_text().splitlines()
    assert lines
    events = [json.loads(line) for line in lines]
    for event in events:
        assert {"ts", "level", "helper", "event"} <= event.keys()
        assert event["helper"] == "echo" and event["ts"].endswith("Z")
    names = [e["event"] for e in events]
    assert names.index("starting") < names.index("ready") < names.index("drain_requested")
    assert names[-1] == "stopped"


def test_text_log_format(run_helper, free_port):
    helper = run_helper("echo", "--listen", f"{HOST}:{free_port()}", "--log-format", "text")
    helper.stop()
    first = helper.log_text().splitlines()[0]
    assert " echo starting " in first and not first.startswith("{")


def test_cannot_listen_exits_1_with_one_line_and_no_traceback(free_port):
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        helper = HelperProcess("echo", "--listen", f"{HOST}:{port}")
        try:
            helper.start(wait=None)
            assert helper.wait_exit(timeout=20) == 1
            failed = [e for e in helper.log_events() if e["event"] == "listen_failed"]
            assert len(failed) == 1 and "address already in use" in failed[0]["error"].lower()
            assert "traceback" not in failed[0]
            assert "Traceback" not in helper.log_text()
        finally:
            helper.cleanup()


def test_admin_port_in_use_exits_1():
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        helper = HelperProcess("echo", admin_port=taken.getsockname()[1])
        try:
            helper.start(wait=None)
            assert helper.wait_exit(timeout=20) == 1
            assert any(
                e["event"] == "listen_failed" and e["setting"] == "--admin-addr"
                for e in helper.log_events()
            )
        finally:
            helper.cleanup()


# --- drain and signals -------------------------------------------------------------------------


def test_sigterm_drain_finishes_in_flight_work_and_refuses_new(run_helper, free_port):
    port = free_port()
    helper = run_helper("echo", "--listen", f"{HOST}:{port}", "--delay", "1.5s")
    with socket.create_connection((HOST, port), timeout=10) as conn:
        conn.sendall(b"in flight\n")
        wait_for(lambda: "echo_lines_in_flight 1.0" in helper.metrics(), what="line in flight")
        helper.process.send_signal(signal.SIGTERM)
        wait_for(lambda: helper.get("/readyz")[0] == 503, what="/readyz to turn 503", timeout=5)
        assert json.loads(helper.get("/readyz")[1])["reason"] == "draining"
        with pytest.raises(OSError):
            echo_line(port)
        assert conn.makefile("rb").readline() == b"in flight\n"
    assert helper.wait_exit() == 0
    assert any(e["event"] == "stopped" and e["reason"] == "drained" for e in helper.log_events())


def test_drain_closes_idle_connections_at_once(run_helper, free_port):
    port = free_port()
    helper = run_helper(
        "echo", "--listen", f"{HOST}:{port}", "--delay", "120s", "--shutdown-timeout", "120s"
    )
    with (
        socket.create_connection((HOST, port), timeout=10) as busy,
        socket.create_connection((HOST, port), timeout=10) as idle,
    ):
        busy.sendall(b"slow\n")
        wait_for(lambda: "echo_lines_in_flight 1.0" in helper.metrics(), what="line in flight")
        wait_for(lambda: "echo_connections_active 2.0" in helper.metrics(), what="2 clients")
        helper.process.send_signal(signal.SIGTERM)
        # Waiting for a line, it has nothing to finish: closed now, not after the timeout.
        assert idle.recv(100) == b""
        assert "echo_lines_in_flight 1.0" in helper.metrics()  # the other one goes on
        helper.process.send_signal(signal.SIGTERM)
        assert helper.wait_exit(timeout=20) == 128 + signal.SIGTERM


def test_second_signal_exits_at_once(run_helper, free_port):
    port = free_port()
    helper = run_helper("echo", "--listen", f"{HOST}:{port}", "--delay", "120s")
    with socket.create_connection((HOST, port), timeout=10) as conn:
        conn.sendall(b"slow\n")
        wait_for(lambda: "echo_lines_in_flight 1.0" in helper.metrics(), what="line in flight")
        helper.process.send_signal(signal.SIGTERM)
        wait_for(lambda: helper.get("/readyz")[0] == 503, what="drain to start", timeout=5)
        helper.process.send_signal(signal.SIGINT)
        # The in-flight line needs 120 s: only a forced exit can end the process now.
        assert helper.wait_exit(timeout=20) == 128 + signal.SIGINT
    assert any(e["event"] == "forced_exit" for e in helper.log_events())


def test_drain_is_bounded_by_shutdown_timeout(run_helper, free_port):
    port = free_port()
    helper = run_helper(
        "echo", "--listen", f"{HOST}:{port}", "--delay", "120s", "--shutdown-timeout", "500ms"
    )
    with socket.create_connection((HOST, port), timeout=10) as conn:
        conn.sendall(b"slow\n")
        wait_for(lambda: "echo_lines_in_flight 1.0" in helper.metrics(), what="line in flight")
        helper.process.send_signal(signal.SIGTERM)
        assert helper.wait_exit(timeout=20) == 0
    assert any(e["event"] == "drain_timed_out" for e in helper.log_events())


def test_ctl_status_and_drain(run_helper, free_port):
    helper = run_helper("echo", "--listen", f"{HOST}:{free_port()}")
    status = podkit("ctl", "status", "--admin", helper.admin, "--json")
    assert status.returncode == 0
    (report,) = json.loads(status.stdout)["helpers"]
    assert report["ready"] and report["live"] and report["started"]
    assert report["helper"] == "echo"
    drained = podkit("ctl", "drain", "--admin", helper.admin, "--timeout", "20")
    assert drained.returncode == 0, drained.stderr
    assert helper.wait_exit(timeout=5) == 0  # ctl drain returned only once the helper was gone
    gone = podkit("ctl", "status", "--admin", helper.admin)
    assert gone.returncode == 3 and "unreachable" in gone.stdout


def test_ctl_takes_the_admin_address_from_the_helpers_env(run_helper, free_port):
    helper = run_helper("echo", "--listen", f"{HOST}:{free_port()}")
    env = {"PODKIT_ADMIN_ADDR": f"0.0.0.0:{helper.admin_port}"}
    status = podkit("ctl", "status", "--json", env=env)
    assert status.returncode == 0, status.stdout + status.stderr
    assert json.loads(status.stdout)["helpers"][0]["helper"] == "echo"


def test_post_drain_from_loopback(run_helper, free_port):
    import urllib.request

    helper = run_helper("echo", "--listen", f"{HOST}:{free_port()}")
    request = urllib.request.Request(f"{helper.admin}/drain", method="POST", data=b"")
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 202
    assert helper.wait_exit() == 0
    assert any(
        e["event"] == "drain_requested" and e["source"] == "admin" for e in helper.log_events()
    )


# --- PID 1 ---------------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    path = f"/proc/{pid}/task/{pid}/children"
    with open(path) as handle:
        return [int(p) for p in handle.read().split()]


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as handle:
        return handle.read().rsplit(")", 1)[1].split()[0]


@pytest.mark.skipif(sys.platform != "linux", reason="PID namespaces are Linux-only")
def test_pid1_forwards_signals_and_reaps_orphans(free_port):
    unshare = require_binary("unshare")
    nsenter = require_binary("nsenter")
    port = free_port()
    helper = HelperProcess(
        "echo", "--listen", f"{HOST}:{port}", wrapper=[unshare, "--pid", "--fork", "--kill-child"]
    )
    try:
        helper.start()
        (init_pid,) = wait_for(lambda: _children(helper.process.pid), what="podkit as PID 1")
        with open(f"/proc/{init_pid}/status") as handle:
            ns_pid = next(line for line in handle if line.startswith("NSpid:")).split()[-1]
        assert ns_pid == "1"
        assert echo_line(port) == b"hello\n"
        # An orphan in the namespace is re-parented to PID 1, which must reap it.
        subprocess.run(
            [nsenter, "-t", str(init_pid), "-p", "--", "sh", "-c", "sleep 1 & exit 0"],
            check=True,
            timeout=10,
        )

        def orphan_reaped() -> bool:
            kids = _children(init_pid)
            return len(kids) == 1 and _state(kids[0]) != "Z"

        wait_for(lambda: len(_children(init_pid)) == 2, what="the orphan to reach PID 1", timeout=5)
        wait_for(orphan_reaped, what="the orphan to be reaped", timeout=10)
        os.kill(init_pid, signal.SIGTERM)  # forwarded to the helper, which drains
        assert helper.wait_exit(timeout=20) == 0
        assert any(e["event"] == "stopped" for e in helper.log_events())
    finally:
        helper.cleanup()
