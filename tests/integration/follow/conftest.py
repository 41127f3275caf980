"""Fixtures for the follower's tests."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest


@pytest.fixture
async def spawn() -> AsyncIterator[Callable[..., Awaitable[asyncio.subprocess.Process]]]:
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
