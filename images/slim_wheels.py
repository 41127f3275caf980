"""Make the wheels in a directory smaller before they go into an image.

Binary wheels ship their extension modules with symbols (uvloop's alone is 13 MB, 1.6 MB
stripped) and some ship their C/Cython sources. Each wheel is rewritten with its `.so`
files stripped (`strip --strip-unneeded`, or STRIP=<cross strip> for another
architecture) and its sources dropped, and its RECORD recomputed, so it stays a valid
wheel that pip installs as usual.

    python images/slim_wheels.py DIR [--strip STRIP]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

DROPPED_SUFFIXES = (".c", ".cpp", ".h", ".pyx", ".pxd", ".pxi")


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def slim(wheel: Path, strip: str | None) -> tuple[int, int]:
    before = wheel.stat().st_size
    with zipfile.ZipFile(wheel) as source:
        names = source.namelist()
        if not any(n.endswith(".so") or n.endswith(DROPPED_SUFFIXES) for n in names):
            return before, before
        entries: list[tuple[zipfile.ZipInfo, bytes]] = []
        record_name = next(n for n in names if n.endswith(".dist-info/RECORD"))
        with tempfile.TemporaryDirectory() as tmp:
            for info in source.infolist():
                name = info.filename
                if name == record_name or name.endswith(DROPPED_SUFFIXES):
                    continue
                data = source.read(info)
                if strip and name.endswith(".so"):
                    path = Path(tmp, "lib.so")
                    path.write_bytes(data)
                    subprocess.run([strip, "--strip-unneeded", str(path)], check=True)
                    data = path.read_bytes()
                entries.append((info, data))
    record = [_record_line(info.filename, data) for info, data in entries]
    record.append(f"{record_name},,")
    out = wheel.with_suffix(".tmp")
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info, data in entries:
            target.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
        target.writestr(record_name, "\n".join(record) + "\n")
    os.replace(out, wheel)
    return before, wheel.stat().st_size


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument(
        "--strip",
        default=os.environ.get("STRIP", "strip"),
        help="strip program for the wheels' architecture ('' to keep symbols)",
    )
    args = parser.parse_args(argv)
    strip = shutil.which(args.strip) if args.strip else None
    if args.strip and strip is None:
        print(f"slim_wheels: {args.strip} not found; symbols are kept", file=sys.stderr)
    total_before = total_after = 0
    for wheel in sorted(args.directory.glob("*.whl")):
        before, after = slim(wheel, strip)
        total_before += before
        total_after += after
    print(
        f"slim_wheels: {args.directory}: {total_before / 1e6:.1f} MB -> {total_after / 1e6:.1f} MB",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
