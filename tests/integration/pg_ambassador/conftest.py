"""pg-ambassador's fixtures (servers themselves live in tests/servers.py)."""

from __future__ import annotations

import pytest

from tests.integration.pg_ambassador import kit


@pytest.fixture
def pg():  # type: ignore[no-untyped-def]
    """A fixture PostgreSQL for one test (test_auth and test_tls define their own)."""
    yield from kit.pg_server()


@pytest.fixture
def ambassador(pg):  # type: ignore[no-untyped-def]
    """`ambassador(**settings)` starts a pg-ambassador in front of `pg`."""
    yield from kit.ambassadors(pg)
