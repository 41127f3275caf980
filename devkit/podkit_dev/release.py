"""The release chores, for `./dev bump-version` and .github/workflows/release.yml.

    python devkit/podkit_dev/release.py version          # podkit's version
    python devkit/podkit_dev/release.py notes X.Y.Z      # that version's CHANGELOG section
    python devkit/podkit_dev/release.py bump X.Y.Z       # = ./dev bump-version X.Y.Z

`bump` writes the version in its one place (podkit/__init__.py), moves CHANGELOG.md's
Unreleased section under `## [X.Y.Z] - today`, and writes the new tag into every podkit
image named in the manifests and docs (REGISTRY/podkit-HELPER:X.Y.Z, and :X.Y). Standard
library only: the release workflow runs it without installing anything.
"""

from __future__ import annotations

import argparse
import datetime
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
VERSION_LINE = re.compile(r'^__version__ = "([^"]+)"$', re.MULTILINE)
# Files whose podkit image names carry the version (docs and manifests), but for the
# changelog (history) and the release guide (its examples are of a release to come).
NAMED_IN = ("*.md", "*.yaml", "*.yml")
NOT_RENAMED = ("CHANGELOG.md", "docs/releasing.md")


class ReleaseError(Exception):
    pass


def registry(root: Path) -> str:
    """images/render.py's REGISTRY, read as text (render.py imports podkit's entry points)."""
    found = re.search(r'^OWNER = "([^"]+)"$', (root / "images/render.py").read_text(), re.M)
    if not found:
        raise ReleaseError("images/render.py has no OWNER")
    return f"ghcr.io/{found[1]}"


def current_version(root: Path) -> str:
    found = VERSION_LINE.search((root / "podkit/__init__.py").read_text())
    if not found:
        raise ReleaseError("podkit/__init__.py has no __version__ line")
    return found[1]


def changelog_section(text: str, heading: str) -> tuple[int, int]:
    """Where the body of `## [heading]` starts and ends in CHANGELOG.md's text."""
    start = re.search(rf"^## \[{re.escape(heading)}\][^\n]*\n", text, re.MULTILINE)
    if not start:
        raise ReleaseError(f"CHANGELOG.md has no section [{heading}]")
    end = re.compile(r"^(## |\[[^\]]+\]: )", re.MULTILINE).search(text, start.end())
    return start.end(), end.start() if end else len(text)


def notes(root: Path, version: str) -> str:
    text = (root / "CHANGELOG.md").read_text()
    begin, end = changelog_section(text, version)
    body = text[begin:end].strip()
    if not body:
        raise ReleaseError(f"CHANGELOG.md's section [{version}] is empty")
    return body + "\n"


def move_unreleased(text: str, old: str, new: str, today: str) -> str:
    begin, end = changelog_section(text, "Unreleased")
    if not text[begin:end].strip():
        raise ReleaseError("CHANGELOG.md's Unreleased section is empty: nothing to release")
    if re.search(rf"^## \[{re.escape(new)}\]", text, re.MULTILINE):
        raise ReleaseError(f"CHANGELOG.md already has a section [{new}]")
    text = text[:begin] + f"\n## [{new}] - {today}\n" + text[begin:]
    # The links at the bottom: Unreleased compares from the new tag, the new one from the old.
    link = re.search(r"^\[Unreleased\]: (\S+)/compare/\S+\.\.\.HEAD$", text, re.MULTILINE)
    if link:
        base = link[1]
        text = text.replace(
            link[0],
            f"[Unreleased]: {base}/compare/v{new}...HEAD\n[{new}]: {base}/compare/v{old}...v{new}",
        )
    return text


def rename_images(text: str, image_registry: str, new: str) -> str:
    major_minor = new.rsplit(".", 1)[0]
    prefix = re.escape(image_registry) + r"/podkit-[a-z0-9-]+:"
    text = re.sub(rf"({prefix})\d+\.\d+\.\d+(?![\w.])", rf"\g<1>{new}", text)
    return re.sub(rf"({prefix})\d+\.\d+(?![\w.])", rf"\g<1>{major_minor}", text)


def tracked(root: Path) -> list[Path]:
    done = subprocess.run(
        ["git", "-C", str(root), "ls-files", "-z", *NAMED_IN],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return [root / name for name in done.stdout.split("\0") if name and name not in NOT_RENAMED]


def bump(root: Path, new: str, today: str) -> list[Path]:
    if not SEMVER.match(new):
        raise ReleaseError(f"version {new!r}: expected X.Y.Z (semantic versioning)")
    old = current_version(root)
    if new == old:
        raise ReleaseError(f"version {new}: already the current version")
    image_registry = registry(root)
    changelog = root / "CHANGELOG.md"
    changed = [changelog]
    changelog.write_text(move_unreleased(changelog.read_text(), old, new, today))
    init = root / "podkit/__init__.py"
    init.write_text(VERSION_LINE.sub(f'__version__ = "{new}"', init.read_text()))
    changed.append(init)
    for path in tracked(root):
        text = path.read_text()
        renamed = rename_images(text, image_registry, new)
        if renamed != text:
            path.write_text(renamed)
            changed.append(path)
    return changed


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="release.py", description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("version", help="print podkit's version")
    notes_cmd = commands.add_parser("notes", help="print a version's CHANGELOG section")
    notes_cmd.add_argument("version")
    bump_cmd = commands.add_parser("bump", help="set a new version everywhere it is written")
    bump_cmd.add_argument("version")
    args = parser.parse_args(argv)
    try:
        if args.command == "version":
            print(current_version(args.root))
        elif args.command == "notes":
            sys.stdout.write(notes(args.root, args.version))
        else:
            today = datetime.datetime.now(datetime.UTC).date().isoformat()
            for path in bump(args.root, args.version, today):
                print(path.relative_to(args.root))
    except ReleaseError as error:
        print(f"release: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
