"""What `--version` prints: podkit's version (podkit.__version__, the one place it is set),
the helper, the Python running it and the source revision.

The revision is baked in at build time: the image build writes it to a REVISION file
beside this module (images/Containerfile.in). A checkout without one asks git; anything
else (a wheel installed from an index) says "unknown".
"""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

from podkit import __version__

REVISION_FILE = Path(__file__).with_name("REVISION")


def revision() -> str:
    try:
        baked = REVISION_FILE.read_text().strip()
    except OSError:
        baked = ""
    if baked:
        return baked
    checkout = Path(__file__).resolve().parent.parent
    # Only podkit's own checkout: an installed podkit may sit inside another project's tree.
    if not (checkout / ".git").exists() or not (checkout / "pyproject.toml").exists():
        return "unknown"
    try:
        done = subprocess.run(
            ["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else "unknown"


def describe(helper: str | None = None) -> str:
    """`podkit 0.1.0 (revision ab12cd3, Python 3.12.3)`, with the helper after `podkit`."""
    name = f"podkit {helper}" if helper else "podkit"
    return f"{name} {__version__} (revision {revision()}, Python {platform.python_version()})"
