"""`podkit ROLE [settings]`, `podkit ctl ...`, `podkit demo`, `podkit --version`.

Kept light on purpose: listing helpers imports no helper code, so `podkit --help` and
`podkit ctl` in a preStop hook start fast.
"""

from __future__ import annotations

import os
import re
import sys
from importlib.metadata import PackageNotFoundError, distribution, entry_points
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from podkit.helper import Helper

USAGE = """usage: podkit ROLE [settings...]           run a helper (ROLE --help: its settings)
       podkit ctl status|drain --admin URL   talk to a running helper
       podkit demo                      every helper doing its job on loopback (dev kit)
       podkit --version                 (podkit ROLE --version: the same, for a helper)
"""


def helpers() -> dict[str, Helper]:
    """Every registered helper by name (its declaration only: no helper code is imported)."""
    found = {}
    for entry_point in entry_points(group="podkit.helpers"):
        try:
            found[entry_point.name] = entry_point.load()
        except Exception as exc:  # a broken plugin must not break `podkit --help`
            print(f"podkit: helper {entry_point.name} failed to load: {exc}", file=sys.stderr)
    return found


def missing_packages() -> dict[str, list[str]]:
    """The helpers that cannot run here: those whose extra (`podkit[NAME]`, the extra named
    like the helper in the distribution that registers it) names packages that are not
    installed, with those packages. An image installs its own helper's extra only, so the
    other helpers' code is there but not theirs; no helper code is imported to find out."""
    found: dict[str, list[str]] = {}
    for entry_point in entry_points(group="podkit.helpers"):
        extra = re.compile(rf"""\bextra\s*==\s*["']{re.escape(entry_point.name)}["']""")
        missing = []
        for requirement in (entry_point.dist.requires if entry_point.dist else None) or ():
            spec, _, marker = requirement.partition(";")
            if not extra.search(marker):
                continue
            project = re.split(r"[\s\[<>=!~;(@]", spec.strip(), maxsplit=1)[0]
            try:
                distribution(project)
            except PackageNotFoundError:
                missing.append(project)
        if missing:
            found[entry_point.name] = missing
    return found


def _print_help() -> None:
    found = helpers()
    absent = missing_packages()
    lines = [USAGE, "helpers:"]
    for name, helper in sorted(found.items()):
        if name not in absent:
            lines.append(f"  {name:<18} {helper.summary} (admin :{helper.admin_port})")
    if absent:
        names = ", ".join(sorted(absent))
        lines.append(f"without their extra (podkit[NAME]) installed: {names}")
    print("\n".join(lines))


def run_helper(name: str, argv: list[str]) -> int:
    from podkit.config import ConfigError, Notice, environ_snapshot, load_settings
    from podkit.manual import render
    from podkit.version import describe

    helper = helpers().get(name)
    if helper is None:
        known = ", ".join(sorted(helpers())) or "none"
        print(f"podkit: unknown helper {name!r}; available: {known}", file=sys.stderr)
        return 2
    missing = missing_packages().get(name)
    if missing:
        print(
            f"podkit: helper {name} is not installed here: podkit[{name}] needs"
            f" {', '.join(missing)}",
            file=sys.stderr,
        )
        return 2
    prog = f"podkit {name}"
    notices: list[Notice] = []
    try:
        settings = load_settings(
            helper.load_settings_class(),
            argv,
            environ_snapshot(),
            prog=prog,
            description=helper.summary,
            admin_default=f"0.0.0.0:{helper.admin_port}",
            notices=notices,
            manual=render,
            version=describe(name),
        )
    except ConfigError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    code = helper.run_oneshot(settings)
    if code is not None:
        return code

    from podkit.init import become_init_if_pid1
    from podkit.runtime import serve

    become_init_if_pid1()
    return serve(helper, settings, notices)


def run_demo(argv: list[str]) -> int:
    """`podkit demo`, registered by the dev kit (`podkit.demo` group): the runtime never
    imports the dev kit, and no image has it."""
    found = list(entry_points(group="podkit.demo", name="demo"))
    if not found:
        print(
            "podkit: `podkit demo` needs podkit's dev kit, which is not installed here"
            " (in a checkout: ./dev setup)",
            file=sys.stderr,
        )
        return 2
    demo_main: Callable[[list[str]], int] = found[0].load()
    return demo_main(argv)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        _print_help()
        return 0 if args else 2
    if args[0] in ("-V", "--version", "version"):
        from podkit.version import describe

        print(describe())
        return 0
    if args[0] == "ctl":
        from podkit.ctl import main as ctl_main

        return ctl_main(args[1:])
    if args[0] == "demo":
        return run_demo(args[1:])
    if args[0].startswith("-"):
        print(f"podkit: unknown option {args[0]!r} (see podkit --help)", file=sys.stderr)
        return 2
    return run_helper(args[0], args[1:])


def entrypoint() -> None:
    sys.exit(main())


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    entrypoint()
