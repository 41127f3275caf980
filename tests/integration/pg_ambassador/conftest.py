"""pg-ambassador's fixtures (servers themselves live in tests/servers.py)."""

from __future__ import annotations

import pytest

from tests.integration.pg_ambassador import kit
from tests.integration.pg_ambassador.auth_kit import make_pki
from tests.servers import require_binary


@pytest.fixture
def pg():  # type: ignore[no-untyped-def]
    """A fixture PostgreSQL for one test (test_auth and test_tls define their own)."""
    yield from kit.pg_server()


@pytest.fixture
def ambassador(pg):  # type: ignore[no-untyped-def]
    """`ambassador(**settings)` starts a pg-ambassador in front of `pg`."""
    yield from kit.ambassadors(pg)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):  # type: ignore[no-untyped-def]
    """Two CAs, each with one certificate for 127.0.0.1: `pki["good"]`, `pki["other"]`."""
    directory = tmp_path_factory.mktemp("pki")
    openssl = require_binary("openssl")
    return {
        "good": make_pki(directory, openssl, "ca"),
        "other": make_pki(directory, openssl, "other"),
    }
