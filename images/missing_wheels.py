"""Print the requirements that the wheels in a directory leave unmet for a target Python.

`pip download --python-version X.Y.Z` picks wheels for that Python but evaluates
environment markers against the Python that runs pip: on a host with 3.11.7, redis's
`async-timeout; python_full_version < "3.11.3"` is skipped although Debian bookworm's
Python is 3.11.2. images/build.sh therefore closes the set: it downloads what this prints
until it prints nothing.

    python images/missing_wheels.py DIR PYTHON_VERSION MACHINE 'podkit[extra,...]'
"""

from __future__ import annotations

import sys
import zipfile
from email.parser import Parser
from pathlib import Path

try:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    from packaging.version import Version
except ImportError:  # pip vendors it
    from pip._vendor.packaging.requirements import Requirement  # type: ignore[no-redef]
    from pip._vendor.packaging.utils import canonicalize_name  # type: ignore[no-redef]
    from pip._vendor.packaging.version import Version  # type: ignore[no-redef]


def wheel_metadata(directory: Path) -> dict[str, tuple[Version, list[str]]]:
    found = {}
    for wheel in directory.glob("*.whl"):
        with zipfile.ZipFile(wheel) as archive:
            name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
            meta = Parser().parsestr(archive.read(name).decode())
        found[canonicalize_name(meta["Name"])] = (
            Version(meta["Version"]),
            meta.get_all("Requires-Dist") or [],
        )
    return found


def missing(directory: Path, python: str, machine: str, root: str) -> list[str]:
    major, minor = python.split(".")[:2]
    environment = {
        "python_version": f"{major}.{minor}",
        "python_full_version": python,
        "platform_machine": machine,
        "platform_system": "Linux",
        "sys_platform": "linux",
        "os_name": "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
    }
    wheels = wheel_metadata(directory)
    unmet: list[str] = []
    todo, seen = [Requirement(root)], set()
    while todo:
        requirement = todo.pop()
        key = (canonicalize_name(requirement.name), frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        have = wheels.get(key[0])
        if have is None or not requirement.specifier.contains(have[0], prereleases=True):
            unmet.append(str(requirement.name) + str(requirement.specifier))
            continue
        for text in have[1]:
            dependency = Requirement(text)
            marker = dependency.marker
            if marker is None or any(
                marker.evaluate({**environment, "extra": extra})
                for extra in (requirement.extras or {""})
            ):
                dependency.marker = None
                todo.append(dependency)
    return unmet


if __name__ == "__main__":
    directory, python, machine, root = sys.argv[1:5]
    for requirement in missing(Path(directory), python, machine, root):
        print(requirement)
