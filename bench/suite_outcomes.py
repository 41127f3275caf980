"""A pytest plugin for bench/driver_suites.py: the outcome of each phase of each test.

Loaded into a driver's own test run (`-p suite_outcomes`, this directory on PYTHONPATH); appends
one JSON line per phase (setup, call, teardown) to the file named by SUITE_OUTCOMES. Outcomes:
passed, failed (the call), error (setup or teardown), skipped (xfail included: pytest does not
count it failed; an xpass is passed).
"""

from __future__ import annotations

import json
import os
from typing import Any


def _phase_outcome(report: Any) -> str:
    if getattr(report, "wasxfail", None) is not None:
        return "passed" if report.passed else "skipped"  # xpass / xfail
    if report.skipped:
        return "skipped"
    if report.failed:
        return "failed" if report.when == "call" else "error"
    return "passed"


def pytest_runtest_logreport(report: Any) -> None:
    # Appended per phase as it ends, so a run that dies midway still says what it ran.
    path = os.environ.get("SUITE_OUTCOMES")
    if path:
        line = {"test": report.nodeid, "when": report.when, "outcome": _phase_outcome(report)}
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps(line) + "\n")
