"""podkit/'s modules import each other in floors: no module imports one that imports it back.

Every import counts, also those inside functions and under `TYPE_CHECKING`: a cycle
there still ties two modules together (a reader has to hold both in mind, and moving
an import to the top turns it into an ImportError).
"""

from __future__ import annotations

import ast
from pathlib import Path

import podkit

CORE = Path(podkit.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(CORE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    found = {}
    for path in CORE.rglob("*.py"):
        # Helper packages install under podkit's namespace but are not the core.
        if not any(part in {"sidecars", "ambassadors", "adapters"} for part in path.parts):
            found[_module_name(path)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path], source: str = "") -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(source or path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets.add(base)
            # `from podkit import logs` imports the module podkit.logs.
            targets |= {f"{base}.{alias.name}" for alias in node.names}
    return {target for target in targets if target in modules and target != name}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_walk_sees_imports_inside_functions_and_type_checking() -> None:
    modules = _modules()
    assert "podkit.config" in modules and "podkit.runtime" in modules
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from podkit import logs\n"
    source += "def f():\n    from podkit.config import load_settings\n"
    seen = _imports("podkit.probe", CORE / "probe.py", modules, source)
    assert seen == {"podkit", "podkit.logs", "podkit.config"}


def test_no_module_of_podkit_imports_one_that_imports_it_back() -> None:
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    cycles = _cycles(graph)
    assert not cycles, "import cycles in podkit/: " + "; ".join(" <-> ".join(c) for c in cycles)
