"""Package layout: the helper folders install under podkit's namespace.

`sidecars/`, `ambassadors/` and `adapters/` stay at the top of the tree (DESIGN.md), but
install as `podkit.sidecars`, `podkit.ambassadors` and `podkit.adapters`, so nothing with a
generic name lands in site-packages. pyproject.toml holds everything else. The dev kit
(`devkit/podkit_dev`) is a distribution of its own and never in this one.
`devkit/podkit_dev/typecheck.py` reads `packages` and `package_dir` from here, so mypy
checks the installed layout without a second copy of it.
"""

from setuptools import find_packages, setup

HELPER_ROOTS = ("sidecars", "ambassadors", "adapters")

packages = find_packages(include=["podkit", "podkit.*"])
package_dir = {}
for root in HELPER_ROOTS:
    package_dir[f"podkit.{root}"] = root
    packages += [f"podkit.{name}" for name in find_packages(include=[root, f"{root}.*"])]

if __name__ == "__main__":  # setuptools runs this file as __main__; typecheck imports it
    setup(packages=packages, package_dir=package_dir)
