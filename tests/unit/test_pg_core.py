"""The compiled framer (core.py) against its own source: the same messages and the same
refusals for any stream cut anywhere (hypothesis), and the switch that picks the source."""

from __future__ import annotations

import importlib.util
import itertools
import os
import subprocess
import sys
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podkit.ambassadors.postgres import core
from podkit.ambassadors.postgres import protocol as loaded


def _source() -> ModuleType:
    """protocol.py as Python, under another name (whatever `loaded` is)."""
    spec = importlib.util.spec_from_file_location("_pg_protocol_source", core.HERE / "protocol.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


SOURCE = _source()


def _run(module: ModuleType, chunks: list[bytes], limit: int) -> list[object]:
    framer = module.Framer(limit)
    out: list[object] = []
    for chunk in chunks:
        try:
            out.extend((kind, bytes(msg)) for kind, msg in framer.feed(chunk))
        except module.ProtocolError as exc:
            out.append(("error", str(exc), exc.sqlstate))
            break
    out.append(("pending", framer.pending))
    return out


message = st.builds(
    lambda kind, body: bytes([kind]) + (len(body) + 4).to_bytes(4, "big") + body,
    st.integers(0x20, 0x7E),
    st.binary(max_size=40),
)
garbage = st.binary(min_size=1, max_size=12)  # lengths that lie, too long, truncated


@settings(max_examples=400, deadline=None)
@given(
    parts=st.lists(st.one_of(message, message, message, garbage), max_size=12),
    cuts=st.lists(st.integers(0, 400), max_size=8),
    limit=st.sampled_from([8, 64, 1 << 20]),
)
def test_the_loaded_framer_frames_as_its_source_does(parts, cuts, limit) -> None:
    stream = b"".join(parts)
    bounds = sorted({0, len(stream), *(c for c in cuts if c < len(stream))})
    chunks = [stream[a:b] for a, b in itertools.pairwise(bounds)]
    assert _run(loaded, chunks, limit) == _run(SOURCE, chunks, limit)


def test_the_switch_imports_the_source_even_where_the_core_was_built() -> None:
    probe = (
        "from podkit.ambassadors.postgres import core, client, protocol;"
        "print(core.loaded(), core.is_compiled(protocol), protocol.__file__.endswith('.py'))"
    )
    env = {**os.environ, "PODKIT_PURE_PYTHON": "1"}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    assert out.stdout.split() == ["python", "False", "True"], out.stderr


def test_without_the_switch_the_extension_is_imported_where_it_was_built() -> None:
    if not all(core.extension_path(name) for name in core.COMPILED):
        pytest.fail("the compiled core is not built (./dev setup builds it; see its output)")
    probe = (
        "from podkit.ambassadors.postgres import core, client, protocol;"
        "print(core.loaded(), core.is_compiled(protocol), repr(core.problem()))"
    )
    env = {**os.environ, "PODKIT_PURE_PYTHON": "0"}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    assert out.stdout.split() == ["compiled", "True", "''"], out.stderr


def test_the_pg_ambassador_modules_import_each_other_in_floors() -> None:
    """No module of the helper imports one that imports it back (TYPE_CHECKING imports
    included, as for podkit/ in test_import_cycles.py): the parts see a Context, a Hub
    or a Protocol of what they use, never main.Ambassador."""
    from tests.unit import test_import_cycles as floors

    modules = {f"{core.PACKAGE}.{path.stem}": path for path in core.HERE.glob("*.py")}
    modules[core.PACKAGE] = modules.pop(f"{core.PACKAGE}.__init__")
    graph = {name: floors._imports(name, path, modules) for name, path in modules.items()}
    assert floors._cycles(graph) == []
