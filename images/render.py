"""Render images/<helper>.Containerfile from images/Containerfile.in for every helper.

A helper is every entry point in pyproject's `podkit.helpers` group; its image installs
the pyproject extra of the same name when there is one. So a new helper gets its image
from its registration alone: `images/build.sh render` (or `make images`) writes the file.

`python images/render.py` renders; `--check` exits 1 when a rendered file is stale;
`--list` prints `helper extras admin_port` lines for images/build.sh.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "images" / "Containerfile.in"
HEADER = "# GENERATED from images/Containerfile.in by `images/build.sh render`; do not edit.\n"


@dataclass(frozen=True)
class ImageSpec:
    helper: str
    extras: str
    admin_port: int
    description: str

    @property
    def containerfile(self) -> Path:
        return ROOT / "images" / f"{self.helper}.Containerfile"


def specs() -> list[ImageSpec]:
    from podkit.cli import helpers

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"].get(
        "optional-dependencies", {}
    )
    return [
        ImageSpec(
            helper=name,
            extras=name if name in extras else "",
            admin_port=helper.admin_port,
            description=f"podkit {name}: {helper.summary}".replace('"', "'"),
        )
        for name, helper in sorted(helpers().items())
    ]


def render(spec: ImageSpec) -> str:
    text = TEMPLATE.read_text()
    for key, value in {
        "@HELPER@": spec.helper,
        "@EXTRAS@": spec.extras,
        "@ADMIN_PORT@": str(spec.admin_port),
        "@DESCRIPTION@": spec.description,
    }.items():
        text = text.replace(key, value)
    # The template's header comment explains the placeholders; skip it.
    return HEADER + text[text.index("ARG BASE_IMAGE") :]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a file is stale")
    parser.add_argument("--list", action="store_true", help="print helper extras admin_port")
    args = parser.parse_args(argv)
    stale = []
    for spec in specs():
        if args.list:
            print(spec.helper, spec.extras or "-", spec.admin_port)
            continue
        wanted = render(spec)
        current = spec.containerfile.read_text() if spec.containerfile.exists() else ""
        if current != wanted:
            stale.append(spec.containerfile.name)
            if not args.check:
                spec.containerfile.write_text(wanted)
    if args.check and stale:
        print(f"stale: {', '.join(stale)} (run images/build.sh render)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main(sys.argv[1:]))
