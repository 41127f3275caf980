"""redis-ambassador's fixtures (servers themselves live in tests/servers.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from podkit_dev.servers import SentinelCluster
from tests.servers import serve


@pytest.fixture(scope="module")
def steady_cluster() -> Iterator[SentinelCluster]:
    """A master, 2 replicas and 3 Sentinels that no test of the module fails over."""
    yield from serve(SentinelCluster)
