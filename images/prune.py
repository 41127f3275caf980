"""Leave only one helper in an installed podkit: run in an image's builder stage.

`python prune.py HELPER` (with the image's venv Python) removes the dev kit (`podkit_dev`)
and every helper package that HELPER neither is nor declares in `Helper.uses`, and drops
their entry points, so `podkit --help` in the image lists what the image can run and no
plugin points at code that is not there. The runtime (`podkit/`) always stays.
"""

from __future__ import annotations

import shutil
import sys
from importlib.metadata import distribution
from pathlib import Path

HELPER_ROOTS = ("sidecars", "ambassadors", "adapters")


def main(helper_name: str) -> None:
    import podkit
    from podkit.cli import helpers

    helper = helpers()[helper_name]
    keep = {helper.run.partition(":")[0].rpartition(".")[0], *helper.uses}
    site = Path(podkit.__file__).resolve().parent.parent
    removed: list[str] = ["podkit_dev"]
    shutil.rmtree(site / "podkit_dev", ignore_errors=True)
    for root in HELPER_ROOTS:
        for package in sorted((site / "podkit" / root).iterdir()):
            name = f"podkit.{root}.{package.name}"
            if package.is_dir() and package.name != "__pycache__" and name not in keep:
                shutil.rmtree(package)
                removed.append(name)
    if helper_name != "echo":  # the template helper lives in the runtime package
        shutil.rmtree(site / "podkit" / "echo")
        removed.append("podkit.echo")
    _drop_entry_points(removed, helper_name)
    print(f"prune: {helper_name} keeps {sorted(keep)}; removed {removed}")


def _drop_entry_points(removed: list[str], helper_name: str) -> None:
    """Entry points into removed code go; of the helpers, only this image's stays."""
    dist = distribution("podkit")
    path = Path(str(dist.locate_file(f"{dist._path.name}/entry_points.txt")))  # type: ignore[attr-defined]
    kept = []
    group = ""
    for line in path.read_text().splitlines():
        if line.startswith("["):
            group = line.strip("[] ")
        name, _, target = (part.strip() for part in line.partition("="))
        module = target.partition(":")[0]
        if module and any(module == gone or module.startswith(gone + ".") for gone in removed):
            continue
        if group == "podkit.helpers" and module and name != helper_name:
            continue
        kept.append(line)
    path.write_text("\n".join(kept) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
