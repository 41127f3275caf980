"""mypy over the installed layout, without a tree of links: `./dev lint` runs this.

`sidecars/`, `ambassadors/` and `adapters/` install as `podkit.sidecars`... (setup.py's
`package_dir`), which mypy cannot see: it names a module after the folders it sits in.
mypy's build API takes (path, module) pairs instead, so each file is checked under the
name it has once installed, and errors still point at the file in the checkout.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from mypy import build
from mypy.errors import CompileError
from mypy.main import process_options
from mypy.modulefinder import BuildSource

ROOT = Path(__file__).resolve().parents[2]  # the checkout: this is devkit/podkit_dev/
DEV_KIT = ROOT / "devkit"  # the dev kit's own distribution, podkit_dev/ at its top


def installed_modules() -> list[tuple[str, Path]]:
    """(module name, file) for every module of podkit as installed, and of the dev kit."""
    spec = importlib.util.spec_from_file_location("podkit_setup", ROOT / "setup.py")
    assert spec is not None and spec.loader is not None
    setup = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(setup)  # not as __main__: it only computes the layout
    package_dir: dict[str, str] = {"": ".", **setup.package_dir}
    found: list[tuple[str, Path]] = []
    for package in setup.packages:
        # The folder of `package`: the longest mapped prefix, then the rest as folders.
        prefix = max((p for p in package_dir if _within(package, p)), key=len)
        rest = package.removeprefix(prefix).strip(".").split(".") if package != prefix else []
        folder = ROOT / package_dir[prefix] / Path(*rest)
        found.append((package, folder / "__init__.py"))
        found += [(f"{package}.{path.stem}", path) for path in sorted(folder.glob("*.py"))
                  if path.name != "__init__.py"]  # fmt: skip
    return found


def _within(package: str, prefix: str) -> bool:
    return prefix == "" or package == prefix or package.startswith(prefix + ".")


def dev_kit_modules() -> list[tuple[str, Path]]:
    """The dev kit's modules: devkit/ holds them as they install."""
    found = []
    for path in sorted((DEV_KIT / "podkit_dev").rglob("*.py")):
        name = ".".join(path.relative_to(DEV_KIT).with_suffix("").parts)
        found.append((name.removesuffix(".__init__"), path))
    return found


def main(argv: list[str]) -> int:
    modules = dict(dev_kit_modules())
    modules.update(installed_modules())
    sources = [BuildSource(str(path), name) for name, path in sorted(modules.items())]
    _, options = process_options(
        ["--config-file", str(ROOT / "pyproject.toml"), *argv, "-c", ""],
        require_targets=False,
    )
    try:
        result = build.build(sources, options)
    except CompileError as exc:
        print("\n".join(exc.messages), file=sys.stderr)
        return 2
    for line in result.errors:
        print(line)
    if result.errors:
        print(f"typecheck: {len(result.errors)} lines of errors in {len(sources)} modules")
        return 1
    print(f"typecheck: no issues in {len(sources)} modules")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
