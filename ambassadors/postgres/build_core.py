"""Compile the hot path (core.COMPILED) with Cython, in place, next to its sources.

    python ambassadors/postgres/build_core.py            # the source tree (./dev setup)
    python -m podkit.ambassadors.postgres.build_core     # an installed podkit (images)

Cython compiles the very `.py` files (its pure-Python mode: they stay the one source, and
the Python classes stay Python classes, so nothing else changes); the extension modules
land next to them with `core.sums` (what they were built from), the generated C in a
temporary directory. Needs Cython and a C
compiler with the Python headers: the images' builder stage has them, the final image
does not. `--if-stale` compiles only when a source changed since (or nothing was built).
`--check` builds nothing: it exits 1, saying why, unless every compiled module loads as its
extension in this interpreter (the images run it on their base, which has no compiler).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent


def _core() -> ModuleType:
    """core.py, loaded by path: this script may run before podkit is importable."""
    spec = importlib.util.spec_from_file_location("_podkit_pg_core", HERE / "core.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stale(directory: Path = HERE) -> list[str]:
    core = _core()
    return [name for name in core.COMPILED if not core.fresh(name, directory)]


def build(directory: Path = HERE, jobs: int = 2) -> None:
    from Cython.Build import cythonize
    from setuptools import Distribution, Extension

    core = _core()
    package = "podkit.ambassadors.postgres"
    sums_before = {name: core.source_sum(name, directory) for name in core.COMPILED}
    with tempfile.TemporaryDirectory(prefix="podkit-core-") as tmp:
        extensions = [
            Extension(
                f"{package}.{name}",
                [str(directory / f"{name}.py")],
                # no debug info: a quarter of the size, nothing lost at run time
                extra_compile_args=["-O2", "-g0"],
            )
            for name in core.COMPILED
        ]
        modules = cythonize(  # type: ignore[no-untyped-call]
            extensions,
            build_dir=f"{tmp}/c",
            quiet=True,
            nthreads=jobs,
            compiler_directives={
                "language_level": 3,
                # The annotations are mypy's: typing the C code by them would reject
                # values mypy accepts (a bytearray where `bytes` is written, say).
                "annotation_typing": False,
                "binding": True,
            },
        )
        dist = Distribution({"name": "podkit-core", "ext_modules": modules})
        cmd = dist.get_command_obj("build_ext")
        cmd.build_temp = f"{tmp}/o"
        cmd.build_lib = f"{tmp}/lib"
        cmd.parallel = jobs
        cmd.ensure_finalized()
        cmd.run()
        for ext in modules:
            built = Path(cmd.get_ext_fullpath(ext.name))
            target = directory / built.name
            # a new file renamed into place: a running process keeps the one it mapped
            # (written over in place, it crashed mid-run)
            fresh = target.with_name(f".{target.name}.new")
            fresh.write_bytes(built.read_bytes())
            fresh.chmod(0o755)
            os.replace(fresh, target)
            print(f"build_core: {target}", file=sys.stderr)
        # no stray extension of a module no longer compiled (core.py would skip it anyway)
        for stray in directory.glob("*.so"):
            if stray.name.split(".")[0] not in core.COMPILED:
                stray.unlink()
        # what each extension was built from: core.py loads none built from another source
        sums = "".join(f"{name} {sums_before[name]}\n" for name in core.COMPILED)
        (directory / core.SUMS).write_text(sums)


def check() -> int:
    """0 when the installed package's finder loads every COMPILED module as its extension."""
    import importlib

    from podkit.ambassadors.postgres import core

    for name in core.COMPILED:
        importlib.import_module(f"{core.PACKAGE}.{name}")
    if core.loaded() != "compiled":
        reason = core.problem() or f"{core.ENV} is set"
        print(f"build_core: the compiled core does not load here: {reason}", file=sys.stderr)
        return 1
    print(f"build_core: compiled core loaded ({', '.join(core.COMPILED)})", file=sys.stderr)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--if-stale", action="store_true", help="only if a source changed")
    parser.add_argument("--check", action="store_true", help="build nothing: does it load?")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    if args.check:
        return check()
    if args.if_stale and not stale():
        return 0
    build(jobs=args.jobs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
