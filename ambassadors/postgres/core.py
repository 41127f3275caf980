"""Which core runs the per-message hot path: the compiled one or the Python source.

The modules in `COMPILED` (today the framer, protocol.py: see the measurements at
`COMPILED` for why the relay loop, the pool and the statement renaming are not) are
compiled with Cython from these very files
(`build_core.py`: `./dev setup` and the images' builder stage run it); there is no second
copy of any function. Their extension modules sit next to the sources, and a finder put
first on `sys.meta_path` (`install()`, run by the package's `__init__`) picks, for each,
the extension or the source:

- `PODKIT_PURE_PYTHON=1` in the environment: the source, always;
- otherwise the extension, when it exists for this interpreter and was built from the
  source as it is now (`SUMS`, written by the build, holds each source's SHA-256: a stale
  extension would run code that is no longer in the file); else the source, and
  `problem()` says why (the helper logs it once, as a warning, at start).

`loaded()` says what was actually imported: `/status`, the `pg_ambassador_build_info`
metric and the start-up log line report it.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

PACKAGE = __name__.rpartition(".")[0]
HERE = Path(__file__).resolve().parent
# What is compiled: the modules of the hot path that run faster so. Measured (thread CPU
# time per call, CPython 3.11, Cython 3.2 on these unchanged sources): the framer 0.77 us
# compiled against 1.16 us for a five-message batch; but the relay loop (server.py) 1.25
# us against 1.10 us, and session.suspect 0.67 against 0.64: code made of attribute and
# method lookups on Python objects runs faster in CPython's specializing interpreter than
# as Cython's generic calls, so server, pool, client and statements stay Python until
# their state is typed for the compiler.
COMPILED = ("protocol",)
ENV = "PODKIT_PURE_PYTHON"
SUMS = "core.sums"  # "name sha256-of-its-source" per line, next to the extensions
_TRUE = ("1", "true", "yes", "on")

_problems: list[str] = []


def pure_requested() -> bool:
    return os.environ.get(ENV, "").strip().lower() in _TRUE


def extension_path(name: str, directory: Path = HERE) -> Path | None:
    """The extension module built for this interpreter next to `name`.py, if any."""
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = directory / f"{name}{suffix}"
        if path.exists():
            return path
    return None


def source_sum(name: str, directory: Path = HERE) -> str:
    return hashlib.sha256((directory / f"{name}.py").read_bytes()).hexdigest()


def built_sums(directory: Path = HERE) -> dict[str, str]:
    """The sources' sums the extensions were built from (empty: never built)."""
    try:
        text = (directory / SUMS).read_text()
    except OSError:
        return {}
    return dict(line.split() for line in text.splitlines() if len(line.split()) == 2)


def fresh(name: str, directory: Path = HERE) -> bool:
    """`name` has an extension built from its source as it is now."""
    if extension_path(name, directory) is None:
        return False
    return built_sums(directory).get(name) == source_sum(name, directory)


class _CoreFinder(MetaPathFinder):
    """Finds the COMPILED modules: the extension, or the source (see the module doc)."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        package, _, name = fullname.rpartition(".")
        if package != PACKAGE:
            return None
        source = HERE / f"{name}.py"
        if name not in COMPILED:
            # the source, even beside a stray extension (one compiled before, say)
            return (
                importlib.util.spec_from_file_location(fullname, source)
                if source.exists()
                else None
            )
        if not pure_requested():
            extension = extension_path(name)
            if extension is None:
                _note(f"{name}: no compiled module for this interpreter")
            elif not fresh(name):
                _note(f"{name}: the compiled module was built from another version of it")
            else:
                loader = _ExtensionLoader(fullname, str(extension))
                return importlib.util.spec_from_file_location(fullname, extension, loader=loader)
        return importlib.util.spec_from_file_location(fullname, source)


class _ExtensionLoader(importlib.machinery.ExtensionFileLoader):
    """An extension that cannot be loaded (a missing symbol, a broken build) falls back to
    its source instead of failing the import."""

    def create_module(self, spec: ModuleSpec) -> ModuleType:
        try:
            return super().create_module(spec)
        except ImportError as exc:
            _note(f"{spec.name.rpartition('.')[2]}: {exc}")
            source = HERE / f"{spec.name.rpartition('.')[2]}.py"
            fallback = importlib.util.spec_from_file_location(spec.name, source)
            assert fallback is not None and fallback.loader is not None
            module = importlib.util.module_from_spec(fallback)
            self._fallback = fallback
            return module

    def exec_module(self, module: ModuleType) -> None:
        fallback = getattr(self, "_fallback", None)
        if fallback is not None:
            module.__spec__ = fallback
            module.__loader__ = fallback.loader
            module.__file__ = fallback.origin
            fallback.loader.exec_module(module)
            return
        super().exec_module(module)


def _note(problem: str) -> None:
    if problem not in _problems:
        _problems.append(problem)


def install() -> None:
    """Put the finder first (once); called before any COMPILED module is imported."""
    if not any(isinstance(finder, _CoreFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _CoreFinder())


def is_compiled(module: ModuleType) -> bool:
    return isinstance(getattr(module, "__loader__", None), importlib.machinery.ExtensionFileLoader)


def loaded() -> str:
    """`compiled` if every COMPILED module imported so far is the extension, else `python`."""
    modules = [sys.modules.get(f"{PACKAGE}.{name}") for name in COMPILED]
    found = [module for module in modules if module is not None]
    return "compiled" if found and all(is_compiled(m) for m in found) else "python"


def problem() -> str:
    """Why the compiled core is not (all) loaded, unless PODKIT_PURE_PYTHON asked for it
    ('' when nothing went wrong)."""
    if pure_requested():
        return ""
    return "; ".join(_problems)
