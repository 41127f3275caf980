"""Fixtures shared by integration test files (servers themselves live in tests/servers.py)."""

from __future__ import annotations

import asyncio
import sys

import pytest

from tests.integration import pg_ambassador_kit as kit


@pytest.fixture
def pg():  # type: ignore[no-untyped-def]
    """A fixture PostgreSQL for one test (test_pg_auth and test_pg_tls define their own)."""
    yield from kit.pg_server()


@pytest.fixture
def ambassador(pg):  # type: ignore[no-untyped-def]
    """`ambassador(**settings)` starts a pg-ambassador in front of `pg`."""
    yield from kit.ambassadors(pg)


@pytest.fixture
async def spawn():  # type: ignore[no-untyped-def]
    """Start `python -m podkit_dev.follow ARGS`; whatever still runs is killed after."""
    procs: list[asyncio.subprocess.Process] = []

    async def start(*args: str) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "podkit_dev.follow", *args, stdout=asyncio.subprocess.PIPE
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
