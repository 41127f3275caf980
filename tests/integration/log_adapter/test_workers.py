"""`podkit log-adapter --workers`: batches parsed in worker processes, as the real CLI runs it.

Proven from the output file: the same records in the same order as in one process; a
worker killed in the middle of a batch is replaced and the batch redone, each line written
once; a batch that keeps killing workers is encoded by the adapter itself; a killed adapter
takes its workers with it and, restarted, re-reads from its checkpoint (duplicates only
there). A user's parser plugin (a .py file) is loaded by name in each worker.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from podkit_dev.servers import HelperProcess, podkit_argv, wait_for

FAST = ("--refresh-interval", "0.2s", "--flush-timeout", "0.3s")

# A user's parser, mounted as a file: LEVEL|N|TEXT. It notes each process it parses in,
# waits at a BLOCK line until the test releases it, and kills the worker it runs in at a
# POISON line (never the adapter itself: that is where a poisoned batch ends up).
PLUGIN = r"""
import os
import time

from podkit.parsers import ParseError

HOME = os.environ.setdefault("TEST_ADAPTER_PID", str(os.getpid()))
SEEN = set()
if os.environ.get("TEST_FAIL_IN_WORKER") and str(os.getpid()) != HOME:
    raise ImportError("this plugin cannot load in a worker")


def parser(line: str) -> dict:
    if os.getpid() not in SEEN:
        SEEN.add(os.getpid())
        with open(os.environ["TEST_PIDS_FILE"], "a") as out:
            out.write(f"{os.getpid()}\n")
    if line == "BLOCK":
        with open(os.environ["TEST_BLOCKED_FILE"], "w") as out:
            out.write(str(os.getpid()))
        deadline = time.monotonic() + 60
        while not os.path.exists(os.environ["TEST_RELEASE_FILE"]):
            if time.monotonic() > deadline:
                raise RuntimeError("never released")
            time.sleep(0.01)
    if line == "POISON" and str(os.getpid()) != HOME:
        os._exit(3)
    parts = line.split("|")
    if len(parts) != 3:
        raise ParseError("expected LEVEL|N|TEXT", kind="no_pipes")
    level, number, text = parts
    return {"level": level, "n": int(number), "message": text}
"""


def mixed_lines(count: int) -> list[bytes]:
    """Numbered lines, with invalid UTF-8, control characters, rejected and huge lines."""
    lines = []
    for n in range(count):
        if n % 997 == 5:
            lines.append(b"x" * 300_000 + f" huge {n}".encode())  # cut at --max-line-bytes
        elif n % 101 == 7:
            lines.append(f"no pipes in line {n}".encode())
        elif n % 89 == 3:
            lines.append(f"WARN|{n}|caf".encode() + b"\xe9 \xff\xfe bad bytes")
        elif n % 83 == 1:
            lines.append(f'ERROR|{n}|tab\tquote" nul\x00 ansi \x1b[31mred\x1b[0m \\'.encode())
        else:
            lines.append(f"INFO|{n}|request {n} took {n % 900}ms".encode())
    return lines


def write_lines(path: Path, lines: list[bytes]) -> None:
    with open(path, "ab") as handle:
        handle.write(b"".join(line + b"\n" for line in lines))


def records(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def comparable(record: dict) -> dict:
    """A record without the read time (stamped on lines that carry no time of their own)."""
    if record.get("timestamp_source") == "ingest":
        return {k: v for k, v in record.items() if k != "timestamp"}
    return record


def numbers(path: Path) -> list[int]:
    return [r["n"] for r in records(path) if "n" in r]


def status(adapter: HelperProcess) -> dict:
    code, body = adapter.get("/status")
    assert code == 200
    return json.loads(body)["figures"]


class Setup:
    def __init__(self, tmp_path: Path) -> None:
        self.logs = tmp_path / "logs"
        self.logs.mkdir()
        self.plugin = tmp_path / "pipes_parser.py"
        self.plugin.write_text(PLUGIN)
        self.pids = tmp_path / "pids"
        self.blocked = tmp_path / "blocked"
        self.release = tmp_path / "release"
        self.env = {
            "TEST_PIDS_FILE": str(self.pids),
            "TEST_BLOCKED_FILE": str(self.blocked),
            "TEST_RELEASE_FILE": str(self.release),
        }

    def args(self, out: Path, *extra: str) -> tuple[str, ...]:
        return ("--path", str(self.logs / "*.log"), "--parser", str(self.plugin),
                "--output", "file", "--output-path", str(out), "--max-line-bytes", "64KiB",
                *FAST, *extra)  # fmt: skip

    def parsing_pids(self) -> set[int]:
        return {int(p) for p in self.pids.read_text().split()} if self.pids.exists() else set()


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    return Setup(tmp_path)


def test_workers_write_what_one_process_writes_in_the_same_order(
    tmp_path: Path, setup: Setup, run_helper: Callable[..., HelperProcess]
) -> None:
    write_lines(setup.logs / "app.log", mixed_lines(30_000))
    outputs = {}
    for workers in ("0", "2"):
        setup.pids.unlink(missing_ok=True)
        out = tmp_path / f"out-{workers}.jsonl"
        adapter = run_helper("log-adapter", *setup.args(out, "--workers", workers),
                             env=setup.env)  # fmt: skip
        # SIGTERM drains: every file is read to its end and written before the exit.
        assert adapter.stop(signal.SIGTERM) == 0, adapter.log_text()
        outputs[workers] = records(out)
        started = adapter.events("workers_started")
        if workers == "0":
            assert not started
            assert setup.parsing_pids() == {adapter.process.pid}
        else:
            # The plugin parsed in the workers (and in the adapter's process, which encodes
            # a batch itself when both workers are busy).
            (event,) = started
            assert len(event["pids"]) == 2
            assert setup.parsing_pids() & set(event["pids"])
            assert setup.parsing_pids() <= {*event["pids"], adapter.process.pid}
    one, two = outputs["0"], outputs["2"]
    assert len(one) == 30_000
    assert [comparable(r) for r in two] == [comparable(r) for r in one]
    kinds = {r.get("parse_error") for r in one}
    assert {"no_pipes", None} <= kinds
    assert any("raw_b64" in r for r in one)
    assert any("line cut" in r["message"] for r in one)


def test_a_worker_killed_mid_batch_is_replaced_and_each_line_written_once(
    tmp_path: Path, setup: Setup, run_helper: Callable[..., HelperProcess]
) -> None:
    out = tmp_path / "out.jsonl"
    # In the first batch (4,096 lines at most): sent to a worker, none being busy yet.
    before = [f"INFO|{n}|line {n}".encode() for n in range(1_000)]
    after = [f"INFO|{n}|line {n}".encode() for n in range(1_000, 20_000)]
    write_lines(setup.logs / "app.log", [*before, b"BLOCK", *after])
    adapter = run_helper("log-adapter", *setup.args(out, "--workers", "2"), env=setup.env)
    wait_for(setup.blocked.exists, timeout=30, what="a worker parsing the BLOCK line")
    victim = int(setup.blocked.read_text())
    assert victim != adapter.process.pid
    # Later batches are parsed by the other worker, but none is written before the held one.
    assert records(out) == []
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: adapter.events("worker_restarted"), timeout=20, what="a new worker")
    setup.release.touch()
    wait_for(lambda: len(records(out)) >= 20_001, timeout=60, what="every record")
    assert adapter.stop(signal.SIGTERM) == 0
    assert numbers(out) == list(range(20_000))  # each once, in order
    assert len(records(out)) == 20_001  # and the BLOCK line, rejected by the parser
    (died,) = adapter.events("worker_died")
    assert died["pid"] == victim and died["signal"] == "SIGKILL"
    assert died["batches_redone"] >= 1


def test_status_and_metrics_show_the_workers(
    tmp_path: Path, setup: Setup, run_helper: Callable[..., HelperProcess]
) -> None:
    out = tmp_path / "out.jsonl"
    write_lines(setup.logs / "app.log", [b"INFO|0|hello"])
    adapter = run_helper("log-adapter", *setup.args(out, "--workers", "3"), env=setup.env)
    wait_for(lambda: status(adapter)["records_written"] == 1, timeout=20, what="1 record")
    shown = status(adapter)
    assert shown["workers"] == 3 and shown["worker_restarts"] == 0
    (started,) = adapter.events("workers_started")
    os.kill(started["pids"][0], signal.SIGKILL)
    wait_for(lambda: status(adapter)["worker_restarts"] == 1, timeout=20, what="a restart")
    metrics = adapter.metrics()
    assert "log_adapter_workers 3.0" in metrics
    assert "log_adapter_worker_restarts_total 1.0" in metrics
    assert "log_adapter_worker_batches_in_flight 0.0" in metrics
    in_process = run_helper("log-adapter", *setup.args(tmp_path / "o2", "--workers", "0"))
    assert status(in_process)["workers"] == 0
    assert "log_adapter_workers 0.0" in in_process.metrics()


def test_a_batch_that_kills_every_worker_is_encoded_by_the_adapter(
    tmp_path: Path, setup: Setup, run_helper: Callable[..., HelperProcess]
) -> None:
    out = tmp_path / "out.jsonl"
    lines = [f"INFO|{n}|line {n}".encode() for n in range(3_000)]  # one batch: to the worker
    write_lines(setup.logs / "app.log", [*lines[:1_000], b"POISON", *lines[1_000:]])
    adapter = run_helper("log-adapter", *setup.args(out, "--workers", "1"), env=setup.env)
    wait_for(lambda: len(records(out)) >= 3_001, timeout=60, what="every record")
    assert adapter.stop(signal.SIGTERM) == 0
    assert numbers(out) == list(range(3_000))
    assert [r["message"] for r in records(out)][1_000] == "POISON"
    assert len(adapter.events("worker_died")) == 3
    (fallback,) = adapter.events("batch_encoded_in_process")
    assert fallback["workers_lost"] == 3


def test_a_worker_that_cannot_load_the_parser_is_retried_with_pauses(
    tmp_path: Path, setup: Setup, run_helper: Callable[..., HelperProcess]
) -> None:
    out = tmp_path / "out.jsonl"
    write_lines(setup.logs / "app.log", [f"INFO|{n}|line {n}".encode() for n in range(100)])
    env = {**setup.env, "TEST_FAIL_IN_WORKER": "1"}
    adapter = run_helper("log-adapter", *setup.args(out, "--workers", "1"), env=env)
    # After three workers died on it, the batch is encoded by the adapter itself.
    wait_for(lambda: len(records(out)) == 100, timeout=60, what="every record")
    assert numbers(out) == list(range(100))
    assert adapter.events("batch_encoded_in_process")
    died = adapter.events("worker_died")
    # Replaced after growing pauses, not forked again in a loop.
    assert 3 <= len(died) <= 6
    assert all(d["exit_code"] == 1 and d["restart_in"] > 0 for d in died)
    assert died[2]["restart_in"] > died[0]["restart_in"]
    assert "cannot load in a worker" in adapter.log_text()


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_a_killed_adapter_takes_its_workers_and_restarts_from_its_checkpoint(
    tmp_path: Path, setup: Setup, run_helper: Callable[..., HelperProcess]
) -> None:
    out, state = tmp_path / "out.jsonl", tmp_path / "state"
    total = 200_000
    write_lines(setup.logs / "app.log", [f"INFO|{n}|line {n}".encode() for n in range(total)])
    args = setup.args(out, "--workers", "2", "--state-dir", str(state))
    adapter = run_helper("log-adapter", *args, env=setup.env)
    wait_for(lambda: records(out), timeout=30, what="a first record")
    adapter.stop(signal.SIGKILL)
    (started,) = adapter.events("workers_started")
    for pid in started["pids"]:  # each sees its pipe close and exits
        wait_for(lambda pid=pid: not alive(pid), timeout=20, what=f"worker {pid} gone")
    restarted = run_helper("log-adapter", *args, env=setup.env)
    assert restarted.stop(signal.SIGTERM) == 0
    # Nothing lost; what was written twice is one stretch re-read from the checkpoint:
    # 0..k-1 written before the kill, then j..total-1 after the restart, with j <= k.
    got = numbers(out)
    k = next((i for i, n in enumerate(got) if n != i), len(got))
    rest = got[k:]
    assert rest == list(range(rest[0], total)) if rest else k == total
    assert not rest or rest[0] <= k


@pytest.mark.parametrize("value", ["-1", "abc", "1.5", "65", "", "two"])
def test_bad_workers_values_exit_2_naming_the_setting(tmp_path: Path, value: str) -> None:
    for how in ("flag", "env"):
        argv = [*podkit_argv(), "log-adapter", "--path", str(tmp_path / "*.log")]
        env = dict(os.environ)
        if how == "flag":
            argv.append(f"--workers={value}")
        else:
            env["PODKIT_WORKERS"] = value
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)
        assert done.returncode == 2, (how, value, done.stderr)
        (line,) = done.stderr.strip().splitlines()
        assert "--workers" in line and "expected auto or a whole number" in line
        assert "Traceback" not in done.stderr
