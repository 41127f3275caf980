"""stats-exporter's fixtures (servers themselves live in tests/servers.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from podkit_dev.servers import HOST, HelperProcess
from tests.integration.stats_exporter.standin import StandInServer


@pytest.fixture
def exporter(
    run_helper: Callable[..., HelperProcess], free_port: Callable[[], int]
) -> Callable[..., tuple[HelperProcess, int]]:
    """`exporter(*flags)` -> (helper process, metrics port)."""

    def start(*flags: str) -> tuple[HelperProcess, int]:
        port = free_port()
        helper = run_helper("stats-exporter", "--web-listen-address", f"{HOST}:{port}", *flags)
        return helper, port

    return start


@pytest.fixture
def standin() -> Iterator[StandInServer]:
    """The stand-in status pages (standin.py), stopped after the test."""
    server = StandInServer().start()
    yield server
    server.stop()
