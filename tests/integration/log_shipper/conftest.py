"""log-shipper's fixtures (servers themselves live in tests/servers.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.log_shipper.standins import StandInReceiver


@pytest.fixture
def receiver() -> Iterator[StandInReceiver]:
    """The Loki/Elasticsearch/HTTP stand-in (standins.py), stopped after the test."""
    server = StandInReceiver().start()
    yield server
    server.stop()


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    """An empty directory for the log files a test writes and ships."""
    path = tmp_path / "logs"
    path.mkdir()
    return path
