"""`podkit log-shipper` (and log-adapter, which shares the follower) through the CLI:
repeated --output, an unusable --state-dir or file output, and counters exported at 0.

Tests run as root, so permission bits would not stop the helper: read-only is a tmpfs
mounted `ro` in a private mount namespace (`unshare -m`), and "not a directory" is a
regular file in the directory's place or above it.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from podkit_dev.servers import HelperProcess, free_port, podkit_argv, wait_for
from tests.integration.log_shipper.e2e import nginx_line, tally_file, tally_messages
from tests.servers import require_binary

LOSS_REASONS = ("truncated_unread", "rotated_away_unread", "deleted_unread", "line_cut")
EVENT_KINDS = ("opened", "rotated", "truncated", "deleted", "line_cut", "lost", "closed",
               "recovered")  # fmt: skip
FAST = ("--batch-timeout", "50ms", "--refresh-interval", "200ms")


def write_lines(path: Path, seqs: range) -> None:
    with open(path, "ab") as handle:
        handle.write(b"".join(nginx_line(i) + b"\n" for i in seqs))


def stdout_records(helper: HelperProcess) -> list[str]:
    """Messages the stdout output wrote (the helper's stdout and stderr share one file)."""
    messages = []
    for line in helper.log_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "offset" in record and "event" not in record:
            messages.append(record["message"])
    return messages


def in_tmpfs(mountpoint: Path, *options: str) -> list[str]:
    """A wrapper: run the command in its own mount namespace with a tmpfs at `mountpoint`."""
    require_binary("unshare")
    mount = "mount -t tmpfs " + (f"-o {','.join(options)} " if options else "") + 'tmpfs "$0"'
    return ["unshare", "-m", "--propagation", "private",
            "sh", "-c", f'{mount} && exec "$@"', str(mountpoint)]  # fmt: skip


def run_exits(
    role: str, *args: str, wrapper: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    """A helper that must refuse to start: it exits by itself (a hang fails on the timeout)."""
    return subprocess.run(
        [*(wrapper or []), *podkit_argv(), role, "--admin-addr", f"127.0.0.1:{free_port()}",
         *args],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def error_lines(stderr: str) -> list[dict]:
    events = []
    for line in stderr.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("level") == "error":
            events.append(event)
    return events


# --- several outputs from flags -----------------------------------------------------------


def test_repeated_output_ships_every_line_to_each(
    run_helper: Callable[..., HelperProcess], tmp_path: Path, logs: Path
) -> None:
    write_lines(logs / "app.log", range(300))
    out = tmp_path / "out.jsonl"
    shipper = run_helper(
        "log-shipper", "--path", str(logs / "*.log"), "--state-dir", str(tmp_path / "state"),
        "--output", "stdout", "--output", "file", "--file-path", str(out), *FAST,
    )  # fmt: skip
    write_lines(logs / "app.log", range(300, 500))
    wait_for(lambda: len(tally_file(out)) == 500, timeout=60, what="500 lines in the file")
    wait_for(
        lambda: len(tally_messages(stdout_records(shipper))) == 500,
        timeout=60,
        what="500 lines on stdout",
    )
    assert shipper.stop(signal.SIGTERM) == 0
    for tally in (tally_file(out), tally_messages(stdout_records(shipper))):
        assert tally.missing(range(500)) == [] and tally.duplicates == 0


def test_two_outputs_of_one_type_from_flags_exit_2_pointing_at_outputs(tmp_path: Path) -> None:
    done = run_exits(
        "log-shipper", "--path", str(tmp_path / "*.log"),
        "--output", "file", "--output", "file", "--file-path", str(tmp_path / "out.jsonl"),
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "--output=file,file" in line and "`outputs:`" in line and "Traceback" not in line


# --- an unusable --state-dir --------------------------------------------------------------


def unusable_state_dir(kind: str, tmp_path: Path) -> tuple[Path, list[str] | None, str]:
    """(state dir, wrapper, what the error says) for each way a state dir can be unusable."""
    if kind == "a file":
        (tmp_path / "state").write_text("not a directory")
        return tmp_path / "state", None, "not a directory"
    if kind == "under a file":
        (tmp_path / "volume").write_text("a file")
        return tmp_path / "volume" / "state", None, "Not a directory"
    mount = tmp_path / "ro"
    mount.mkdir()
    return mount, in_tmpfs(mount, "ro"), "Read-only file system"


@pytest.mark.parametrize("role", ["log-shipper", "log-adapter"])
@pytest.mark.parametrize("kind", ["a file", "under a file", "read-only"])
def test_unusable_state_dir_refuses_to_start(
    tmp_path: Path, logs: Path, role: str, kind: str
) -> None:
    write_lines(logs / "app.log", range(10))
    state, wrapper, why = unusable_state_dir(kind, tmp_path)
    done = run_exits(role, "--path", str(logs / "*.log"), "--state-dir", str(state),
                     wrapper=wrapper)  # fmt: skip
    assert done.returncode == 1, done.stderr
    (error,) = error_lines(done.stderr)
    assert error["event"] == "state_dir_unusable" and error["setting"] == "--state-dir"
    assert error["state_dir"] == str(state) and why in error["error"]
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("role", ["log-shipper", "log-adapter"])
def test_state_dir_turning_read_only_holds_readiness_until_writable(
    run_helper: Callable[..., HelperProcess], tmp_path: Path, logs: Path, role: str
) -> None:
    require_binary("nsenter")
    state, out = tmp_path / "state", tmp_path / "out.jsonl"
    state.mkdir()
    write_lines(logs / "app.log", range(100))
    output = (
        ["--output", "file", "--file-path", str(out), *FAST]
        if role == "log-shipper"
        else ["--output", "file", "--output-path", str(out), "--refresh-interval", "200ms"]
    )
    helper = run_helper(
        role, "--path", str(logs / "*.log"), "--state-dir", str(state), *output,
        wrapper=in_tmpfs(state),
    )  # fmt: skip
    wait_for(lambda: len(tally_file(out)) == 100, timeout=60, what="100 lines shipped")

    def remount(mode: str) -> None:
        argv = ["nsenter", "-t", str(helper.process.pid), "-m",
                "mount", "-o", f"remount,{mode}", str(state)]  # fmt: skip
        subprocess.run(argv, check=True, capture_output=True, timeout=30)

    remount("ro")
    write_lines(logs / "app.log", range(100, 200))  # acknowledged, then saving fails
    helper.wait_http("readyz", status=503, timeout=30)
    status, body = helper.get("readyz")
    assert status == 503 and b"--state-dir" in body and b"Read-only file system" in body
    assert any(e.get("event") == "checkpoint_save_failed" for e in helper.log_events())
    # Lines still flow meanwhile.
    wait_for(lambda: len(tally_file(out)) == 200, timeout=60, what="200 lines shipped")
    remount("rw")
    helper.wait_http("readyz", status=200, timeout=30)
    assert helper.stop(signal.SIGTERM) == 0


# --- the file output ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["under a file", "read-only"])
def test_file_output_that_cannot_be_opened_refuses_to_start(
    tmp_path: Path, logs: Path, kind: str
) -> None:
    if kind == "under a file":
        (tmp_path / "volume").write_text("a file where the output's directory should be")
        path, wrapper, why = tmp_path / "volume" / "out.jsonl", None, "not a directory"
    else:
        (tmp_path / "volume").mkdir()
        path, wrapper = tmp_path / "volume" / "out.jsonl", in_tmpfs(tmp_path / "volume", "ro")
        why = "Read-only file system"
    done = run_exits(
        "log-shipper", "--path", str(logs / "*.log"), "--output", "file", "--file-path", str(path),
        wrapper=wrapper,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    (error,) = error_lines(done.stderr)
    assert error["event"] == "output_unusable" and error["output"] == "file"
    assert error["error"].endswith(why) and str(tmp_path / "volume") in error["error"]
    assert "Traceback" not in done.stderr


def test_file_output_failing_later_retries_unready_then_delivers(
    run_helper: Callable[..., HelperProcess], tmp_path: Path, logs: Path
) -> None:
    require_binary("nsenter")
    sink = tmp_path / "sink"
    sink.mkdir()
    out = sink / "out.jsonl"
    write_lines(logs / "app.log", range(100))
    shipper = run_helper(
        "log-shipper", "--path", str(logs / "*.log"), "--state-dir", str(tmp_path / "state"),
        "--output", "file", "--file-path", str(out), "--ready-timeout", "1s",
        "--retry-initial", "50ms", "--retry-max", "200ms", *FAST,
        wrapper=in_tmpfs(sink, "size=256k"),
    )  # fmt: skip

    def inside(*argv: str) -> subprocess.CompletedProcess[bytes]:
        """A command in the shipper's mount namespace, where its tmpfs is."""
        pid = str(shipper.process.pid)
        return subprocess.run(["nsenter", "-t", pid, "-m", *argv], capture_output=True, timeout=30)

    def shipped() -> set[int]:
        # Whole records only: a write cut short by the full disk leaves a torn line.
        return {int(n) for n in re.findall(rb'seq=(\d+)",', inside("cat", str(out)).stdout)}

    wait_for(
        lambda: shipped() == set(range(100)),
        timeout=60,
        what="100 lines shipped",
        explain=shipper.log_text,
    )
    inside("sh", "-c", f"cat /dev/zero > {sink / 'filler'}")  # ENOSPC ends it: the disk is full
    write_lines(logs / "app.log", range(100, 200))
    shipper.wait_http("readyz", status=503, timeout=30)
    assert b"output file" in shipper.get("readyz")[1]
    wait_for(
        lambda: metric_value(shipper.metrics(), "log_shipper_batches_failed_total",
                             output="file", reason="write") >= 2,
        timeout=30, what="failed writes counted",
    )  # fmt: skip
    inside("rm", str(sink / "filler"))
    wait_for(lambda: shipped() == set(range(200)), timeout=60, what="every line after the outage")
    shipper.wait_http("readyz", status=200, timeout=30)
    assert shipper.stop(signal.SIGTERM) == 0


# --- counters with a zero -----------------------------------------------------------------


def metric_value(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    raise AssertionError(f"no sample {name}{labels}")


def promtool_check(text: str) -> None:
    promtool = shutil.which("promtool") or require_binary("promtool")
    check = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_shipper_exports_every_loss_reason_at_zero_before_any_loss(
    run_helper: Callable[..., HelperProcess], tmp_path: Path, logs: Path
) -> None:
    write_lines(logs / "app.log", range(50))
    out = tmp_path / "out.jsonl"
    shipper = run_helper(
        "log-shipper", "--path", str(logs / "*.log"), "--state-dir", str(tmp_path / "state"),
        "--output", "file", "--file-path", str(out), *FAST,
    )  # fmt: skip
    wait_for(lambda: len(tally_file(out)) == 50, timeout=60, what="50 lines shipped")
    text = shipper.metrics()
    path = str(logs / "app.log")
    for reason in LOSS_REASONS:
        assert metric_value(text, "podkit_follow_lost_bytes_total", path=path, reason=reason) == 0
        assert metric_value(text, "log_shipper_lost_bytes_total", reason=reason) == 0
    for kind in ("rotated", "truncated", "deleted", "line_cut", "lost"):
        assert metric_value(text, "log_shipper_file_events_total", kind=kind) == 0
    assert {k for k in EVENT_KINDS if k != "opened"} <= {
        s.labels["kind"]
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "log_shipper_file_events_total"
    }
    for reason in ("connect", "timeout", "open", "write"):
        assert (
            metric_value(text, "log_shipper_batches_failed_total", output="file", reason=reason)
            == 0
        )
    assert (
        metric_value(
            text, "log_shipper_records_dropped_total", output="file", reason="retries_exhausted"
        )
        == 0
    )
    promtool_check(text)
    assert shipper.stop(signal.SIGTERM) == 0


def test_adapter_exports_every_loss_reason_at_zero_before_any_loss(
    run_helper: Callable[..., HelperProcess], tmp_path: Path, logs: Path
) -> None:
    (logs / "app.log").write_bytes(b"2024-05-01 12:00:00 INFO one\n")
    out = tmp_path / "out.jsonl"
    adapter = run_helper(
        "log-adapter", "--path", str(logs / "app.log"), "--state-dir", str(tmp_path / "state"),
        "--output", "file", "--output-path", str(out), "--refresh-interval", "0.2s",
    )  # fmt: skip
    wait_for(lambda: out.exists() and out.read_bytes().count(b"\n") == 1, timeout=30,
             what="the record written")  # fmt: skip
    text = adapter.metrics()
    for reason in LOSS_REASONS:
        value = metric_value(
            text, "podkit_follow_lost_bytes_total", path=str(logs / "app.log"), reason=reason
        )
        assert value == 0
    promtool_check(text)
    assert adapter.stop(signal.SIGTERM) == 0
