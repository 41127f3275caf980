"""`podkit demo`: every finished helper doing its job on loopback, narrated for a newcomer.

A helper's demo is a `def demo(narrator)` registered in the `podkit.demos` entry-point
group under the helper's name (devkit/pyproject.toml for podkit's own helpers); this
module only runs them in turn and prints what happens, with a pass/fail line per helper
and a summary at the end. `podkit demo` reaches `main` through the `podkit.demo` group.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import textwrap
import time
from collections.abc import Iterator
from importlib.metadata import entry_points

from podkit.cli import helpers as registered_helpers
from podkit_dev.servers import HelperProcess, MissingBinary

BOLD, GREEN, RED, DIM, RESET = "\033[1m", "\033[32m", "\033[31m", "\033[2m", "\033[0m"


class Narrator:
    def __init__(self, color: bool) -> None:
        self.color = color
        self.failures: list[str] = []
        self.current = ""

    def _paint(self, code: str, text: str) -> str:
        return f"{code}{text}{RESET}" if self.color else text

    def section(self, title: str, summary: str) -> None:
        self.current = title
        print()
        print(self._paint(BOLD, f"== {title}: {summary}"))

    def step(self, text: str) -> None:
        print(f"  -> {text}")

    def show(self, label: str, text: str, limit: int = 12) -> None:
        lines = text.rstrip("\n").splitlines() or [""]
        more = len(lines) - limit
        print(f"     {label}:")
        for line in lines[:limit]:
            print(self._paint(DIM, textwrap.indent(line[:160], "       | ")))
        if more > 0:
            print(self._paint(DIM, f"       | ... {more} more lines"))

    def result(self, ok: bool, text: str) -> None:
        mark = self._paint(GREEN, "PASS") if ok else self._paint(RED, "FAIL")
        print(f"  {mark} {text}")
        if not ok:
            self.failures.append(f"{self.current}: {text}")

    @contextlib.contextmanager
    def helper(self, process: HelperProcess) -> Iterator[HelperProcess]:
        """Start a helper, show where its admin server is, and always clean it up."""
        try:
            process.start()
            self.step(f"podkit {process.role} is ready; admin server at {process.admin}")
            yield process
        except Exception:
            self.show(f"podkit {process.role} log (last lines)", process.log_text()[-3000:])
            raise
        finally:
            process.cleanup()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="podkit demo", description=__doc__)
    parser.add_argument("--only", action="append", help="run only this helper's demo")
    args = parser.parse_args(argv)
    narrator = Narrator(color=sys.stdout.isatty())
    helpers = registered_helpers()
    demos = {e.name: e for e in entry_points(group="podkit.demos") if e.name in helpers}
    unknown = sorted(set(args.only or ()) - set(demos))
    if unknown:
        known = ", ".join(sorted(demos)) or "none"
        parser.error(f"--only {unknown[0]}: no demo for that helper; demos: {known}")
    ran = 0
    started = time.monotonic()
    for name, entry_point in sorted(demos.items()):
        if args.only and name not in args.only:
            continue
        narrator.section(name, helpers[name].summary)
        ran += 1
        try:
            entry_point.load()(narrator)
        except MissingBinary as exc:
            narrator.result(False, f"cannot run: {exc}")
        except Exception as exc:
            narrator.result(False, f"demo failed: {type(exc).__name__}: {exc}")
    print()
    elapsed = time.monotonic() - started
    if narrator.failures:
        print(f"demo: {len(narrator.failures)} of {ran} helpers failed ({elapsed:.1f}s):")
        for failure in narrator.failures:
            print(f"  - {failure}")
        return 1
    print(f"demo: all {ran} helpers did their job ({elapsed:.1f}s)")
    return 0
