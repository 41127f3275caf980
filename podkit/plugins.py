"""Plugin registry: parsers, outputs and sources that users add without forking podkit.

A plugin is named in one of three ways:

- an entry-point name in the group (`podkit.parsers`, `podkit.outputs`, `podkit.sources`),
  which is how installed packages, podkit's own built-ins included, declare theirs;
- `package.module:attr`, for code on the Python path;
- a path to a `.py` file, optionally `path.py:attr`, as mounted from a ConfigMap.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

from podkit.importing import import_attr

GROUPS = {
    "parser": "podkit.parsers",
    "output": "podkit.outputs",
    "source": "podkit.sources",
    "helper": "podkit.helpers",
}


class PluginError(Exception):
    """A plugin could not be found or loaded; the message says which, and what exists."""


def available(kind: str) -> dict[str, EntryPoint]:
    """Entry points of one kind, by name."""
    return {ep.name: ep for ep in entry_points(group=GROUPS[kind])}


def _looks_like_path(spec: str) -> bool:
    file_part = spec.rsplit(":", 1)[0] if spec.count(":") else spec
    return file_part.endswith(".py") or "/" in file_part


def _load_file(spec: str, default_attr: str) -> Any:
    file_part, attr = spec, default_attr
    if spec.count(":") and not spec.endswith(".py"):
        file_part, attr = spec.rsplit(":", 1)
    path = Path(file_part)
    if not path.is_file():
        raise PluginError(f"plugin file {path} does not exist")
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    module_name = f"podkit_plugin_{path.stem}_{digest}"
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    if module_spec is None or module_spec.loader is None:
        raise PluginError(f"plugin file {path} is not a Python module")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        error = f"{type(exc).__name__}: {exc}"
        raise PluginError(f"plugin file {path} failed to load: {error}") from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise PluginError(f"plugin file {path} defines no {attr!r}") from None


def _load_module_attr(spec: str) -> Any:
    module_name, _, attr = spec.partition(":")
    try:
        return import_attr(spec)
    except AttributeError as exc:
        if module_name not in sys.modules:  # raised while importing the module itself
            raise PluginError(f"plugin {spec} failed to import: AttributeError: {exc}") from exc
        raise PluginError(f"plugin {spec}: module {module_name} has no {attr!r}") from None
    except Exception as exc:
        raise PluginError(f"plugin {spec} failed to import: {type(exc).__name__}: {exc}") from exc


def load(kind: str, spec: str, *, default_attr: str | None = None) -> Any:
    """Load the plugin named by `spec` (entry-point name, module:attr, or file.py[:attr])."""
    if kind not in GROUPS:
        raise ValueError(f"unknown plugin kind {kind!r}")
    spec = spec.strip()
    if not spec:
        raise PluginError(f"empty {kind} name")
    if _looks_like_path(spec):
        return _load_file(spec, default_attr or kind)
    if ":" in spec:
        return _load_module_attr(spec)
    found = available(kind)
    entry_point = found.get(spec)
    if entry_point is None:
        names = ", ".join(sorted(found)) or "none installed"
        raise PluginError(
            f"unknown {kind} {spec!r}; available: {names}; "
            "or give module:attr or a path to a .py file"
        )
    try:
        return entry_point.load()
    except Exception as exc:
        raise PluginError(
            f"{kind} {spec!r} ({entry_point.value}) failed to load: {type(exc).__name__}: {exc}"
        ) from exc
