"""PID 1 duties: when podkit is the first process of a container, it acts as a tiny init.

A process that is PID 1 gets no default signal actions and inherits every orphan in the
PID namespace. Reaping orphans in the same process as asyncio would steal exit statuses
from asyncio's own child watcher, so, like tini, podkit forks: the parent forwards
signals to the helper and reaps every child; the helper runs in the child as usual.
"""

from __future__ import annotations

import contextlib
import os
import signal

FORWARDED_SIGNALS = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGWINCH,
)


def exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def become_init_if_pid1() -> None:
    """Returns in the helper process; never returns in the init process."""
    if os.getpid() != 1 or os.environ.get("PODKIT_NO_INIT"):
        return
    child = os.fork()
    if child == 0:
        return

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signum)

    for sig in FORWARDED_SIGNALS:
        signal.signal(sig, forward)
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            os._exit(0)
        if pid == child:
            os._exit(exit_code(status))
