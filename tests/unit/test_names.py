"""One meaning per name: no two modules of the tree define the same class or type alias.

A reader who meets `Stats` or `Event` should not have to look at the import to know which
one it is. Tests are left out (their local helpers are private to each file).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TREES = ("podkit", "sidecars", "ambassadors", "adapters", "devkit", "bench", "examples")

# Names every helper of a kind defines for itself, always reached through its helper.
PER_HELPER = {"Ambassador"}


def type_names(path: Path) -> list[str]:
    """Top-level classes and CapWords aliases (`Parser = Callable[...]`) of a module."""
    names: list[str] = []
    for node in ast.parse(path.read_text(), str(path)).body:
        if isinstance(node, ast.ClassDef):
            names.append(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names += [
                t.id
                for t in targets
                if isinstance(t, ast.Name) and t.id[:1].isupper() and not t.id.isupper()
            ]
    return names


def test_no_class_name_has_two_meanings():
    where: dict[str, list[str]] = defaultdict(list)
    for tree in TREES:
        for path in sorted((ROOT / tree).rglob("*.py")):
            if "tests" in path.relative_to(ROOT).parts:
                continue
            for name in type_names(path):
                where[name].append(str(path.relative_to(ROOT)))
    twice = {
        name: places
        for name, places in where.items()
        if len(set(places)) > 1 and name not in PER_HELPER
    }
    assert twice == {}
