"""A helper that cannot bind an address exits 1 with one line naming the flag to change.

Each case occupies a port with a plain listening socket (as a PostgreSQL already running on
5432 would), starts the real `podkit ROLE` on it and reads its stderr.
"""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from podkit_dev.servers import HOST, free_port, podkit_argv


@pytest.fixture
def taken() -> Iterator[str]:
    """HOST:PORT of a port something else listens on."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        sock.listen()
        yield f"{HOST}:{sock.getsockname()[1]}"


def required_args(role: str, tmp_path: Path) -> list[str]:
    """What each helper needs to get as far as binding (nothing it reaches is started)."""
    return {
        "echo": [],
        "git-sync": [f"--repo=file://{tmp_path}/absent.git", f"--root={tmp_path}/git"],
        "log-shipper": [],
        "log-adapter": [f"--path={tmp_path}/app.log"],
        "redis-ambassador": [f"--sentinels={HOST}:{free_port()}"],
        "pg-ambassador": ["--client-auth=trust"],
        "stats-exporter": [],
    }[role]


def failure(argv: list[str]) -> dict[str, object]:
    """Run podkit to its exit; it must be 1 with one listen_failed line and no traceback."""
    done = subprocess.run(
        [*podkit_argv(), *argv], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and "traceback" not in done.stderr
    events = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    failed = [e for e in events if e["event"] == "listen_failed"]
    assert len(failed) == 1 and failed[0]["level"] == "error", done.stderr
    return failed[0]


# The flag that sets each helper's own listener, and how the error spells it.
LISTENERS = {
    "echo": ("--listen", "--listen"),
    "redis-ambassador": ("--listen", "--listen"),
    "pg-ambassador": ("--listen", "--listen"),
    "stats-exporter": ("--web.listen-address", "--web-listen-address (also --web.listen-address)"),
}


@pytest.mark.parametrize("role", list(LISTENERS))
def test_listen_address_in_use(role: str, taken: str, tmp_path: Path) -> None:
    flag, named = LISTENERS[role]
    admin = f"--admin-addr={HOST}:{free_port()}"
    line = failure([role, admin, flag, taken, *required_args(role, tmp_path)])
    canonical = named.split()[0]
    assert (line["setting"], line["addr"]) == (canonical, taken)
    assert line["message"] == (
        f"cannot listen on {taken} (address already in use): set {named} to a free address"
    )


ADMIN_FLAGS = {
    "echo": ("--admin-addr", "--admin-addr"),
    "git-sync": ("--http-bind", "--admin-addr (also --http-bind)"),
    "log-shipper": ("--admin-addr", "--admin-addr"),
    "log-adapter": ("--admin-addr", "--admin-addr"),
    "redis-ambassador": ("--admin-addr", "--admin-addr"),
    "pg-ambassador": ("--admin-addr", "--admin-addr"),
    "stats-exporter": ("--admin-addr", "--admin-addr"),
}


@pytest.mark.parametrize("role", list(ADMIN_FLAGS))
def test_admin_address_in_use(role: str, taken: str, tmp_path: Path) -> None:
    flag, named = ADMIN_FLAGS[role]
    own: list[str] = []
    if role in LISTENERS:  # its own listener on a free port: the admin one is the problem
        own = [LISTENERS[role][0], f"{HOST}:{free_port()}"]
    line = failure([role, flag, taken, *own, *required_args(role, tmp_path)])
    assert (line["setting"], line["addr"]) == ("--admin-addr", taken)
    assert line["message"] == (
        f"cannot listen on {taken} (address already in use): set {named} to a free address"
    )


def test_an_address_that_is_not_local(tmp_path: Path) -> None:
    # 192.0.2.0/24 is TEST-NET-1: never an address of this host.
    line = failure(["echo", f"--admin-addr={HOST}:{free_port()}", "--listen", "192.0.2.1:7"])
    assert line["message"] == (
        "cannot listen on 192.0.2.1:7 (cannot assign requested address): "
        "set --listen to an address it can bind"
    )
