"""Which core runs the hot path (core.py): the compiled one wherever it was built, the
Python source with PODKIT_PURE_PYTHON=1, and the process says which (/status, the
`pg_ambassador_build_info` metric, the start-up log line)."""

from __future__ import annotations

import json

import asyncpg
import pytest

from podkit.ambassadors.postgres import core
from podkit.ambassadors.postgres import protocol as pq
from podkit_dev.servers import HOST, free_port


def _built() -> bool:
    return all(core.extension_path(name) is not None for name in core.COMPILED)


def _start(run_helper, pg, env: dict[str, str]):
    port = free_port()
    helper = run_helper(
        "pg-ambassador", "--listen", f"{HOST}:{port}", "--server-port", str(pg.port),
        "--client-auth", "trust", env=env,
    )  # fmt: skip
    helper.dsn = f"postgresql://postgres@{HOST}:{port}/postgres"
    return helper


async def _says(helper, expected: str) -> None:
    conn = await asyncpg.connect(helper.dsn)
    try:  # the hot path in use: a transaction through it
        assert await conn.fetchval("select $1::int + 1", 41) == 42
    finally:
        await conn.close()
    assert f'pg_ambassador_build_info{{core="{expected}"}} 1.0' in helper.metrics()
    status, body = helper.get("/status")
    assert status == 200
    assert json.loads(body)["figures"]["core"] == expected
    assert [e["core"] for e in helper.events("listening")] == [expected]


async def test_the_compiled_core_is_the_one_loaded_where_it_was_built(run_helper, pg) -> None:
    """./dev setup and the images build the core; a process then runs it, and no warning."""
    if not _built():
        pytest.fail("the compiled core is not built (./dev setup builds it; see its output)")
    helper = _start(run_helper, pg, {"PODKIT_PURE_PYTHON": ""})
    await _says(helper, "compiled")
    assert helper.events("core_not_compiled") == []
    if not core.pure_requested():  # this test process too
        assert core.is_compiled(pq) and core.loaded() == "compiled"


async def test_the_switch_runs_the_python_source_and_says_so(run_helper, pg) -> None:
    helper = _start(run_helper, pg, {"PODKIT_PURE_PYTHON": "1"})
    await _says(helper, "python")
    assert helper.events("core_not_compiled") == []  # asked for: no warning
