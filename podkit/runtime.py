"""The lifecycle every helper shares: start -> ready -> serve -> drain -> exit.

Shaped like uvicorn's `Server.serve()`: `startup()` brings up the admin server and the
helper's `run()`, `main_loop()` waits for the helper or for a drain request, and
`shutdown()` gives the helper `--shutdown-timeout` to finish before it is cancelled.
The first SIGTERM or SIGINT (or POST /drain) starts the drain; a second exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import platform
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import (
    CollectorRegistry,
    Gauge,
    gc_collector,
    platform_collector,
    process_collector,
)

from podkit import __version__, logs
from podkit.admin import AdminServer
from podkit.importing import import_attr
from podkit.naming import aliases, flag_name

if TYPE_CHECKING:
    from podkit.config import HelperSettings, Notice
    from podkit.helper import Helper

LAG_CHECK_INTERVAL = 0.25
# A loop that has not run a 0.25 s timer for this long is stuck, not merely busy.
LIVENESS_MAX_LAG = 5.0
CANCEL_GRACE = 2.0
EXIT_CODE_CRASH = 1
SIGNALS = (signal.SIGTERM, signal.SIGINT)


class RunFunction(Protocol):
    """A helper's `async def run(settings, runtime)`, named by `Helper.run`."""

    async def __call__(self, settings: Any, runtime: Runtime) -> None: ...


class StartupError(Exception):
    """The helper cannot start (cannot listen, unusable output...): one log line, exit 1.

    A bind goes inside `with listening(settings, field):`, which raises the one shape of
    "cannot listen" error every helper uses.

    `event` and `fields` become that line, as `runtime.log.error(event, **fields)` would
    write it; no traceback, since the cause is the environment, not a bug.
    """

    def __init__(self, event: str, **fields: Any) -> None:
        super().__init__(event)
        self.event = event
        self.fields = fields


def cannot_listen(settings: HelperSettings, field: str, exc: OSError) -> StartupError:
    """The error for an address setting that cannot be bound: it names the flag to change.

    One shape for every listener (a helper's, the admin server), e.g. "cannot listen on
    127.0.0.1:5432 (address already in use): set --listen to a free address".
    """
    addr = str(getattr(settings, field))
    flag = flag_name(field)
    also = [f for f in aliases(type(settings).model_fields[field]).flags if f.startswith("--")]
    named = f"{flag} (also {', '.join(also)})" if also else flag
    if isinstance(exc, socket.gaierror) or not exc.errno:
        reason = exc.strerror or str(exc)
    else:  # asyncio's strerror also names the socket address: the errno says it shorter
        reason = os.strerror(exc.errno)
    reason = reason[:1].lower() + reason[1:]
    wanted = "a free address" if exc.errno == errno.EADDRINUSE else "an address it can bind"
    return StartupError(
        "listen_failed",
        setting=flag,
        addr=addr,
        error=reason,
        message=f"cannot listen on {addr} ({reason}): set {named} to {wanted}",
    )


@contextlib.contextmanager
def listening(settings: HelperSettings, field: str) -> Iterator[None]:
    """Wrap the bind of the address in `settings.<field>`: an OSError becomes the
    StartupError of `cannot_listen` (one log line, exit 1)."""
    try:
        yield
    except OSError as exc:
        raise cannot_listen(settings, field, exc) from None


class Runtime:
    """What a helper's `run(settings, runtime)` gets: state, metrics, logging, drain signal."""

    def __init__(self, helper: Helper, settings: HelperSettings) -> None:
        self.helper = helper
        self.settings = settings
        self.log = logs.get_logger(helper.name.replace("-", "_"))
        self.registry = CollectorRegistry(auto_describe=True)
        process_collector.ProcessCollector(registry=self.registry)
        platform_collector.PlatformCollector(registry=self.registry)
        gc_collector.GCCollector(registry=self.registry)
        Gauge(
            "podkit_build_info",
            "podkit version and the helper this process runs (always 1)",
            ["version", "helper", "python_version"],
            registry=self.registry,
        ).labels(__version__, helper.name, platform.python_version()).set(1)
        self._ready_gauge = Gauge(
            "podkit_ready", "1 while the helper can do its job (/readyz)", registry=self.registry
        )
        self._started_gauge = Gauge(
            "podkit_started", "1 once startup finished (/startupz)", registry=self.registry
        )
        self._draining_gauge = Gauge(
            "podkit_draining", "1 once a drain was requested", registry=self.registry
        )
        self._lag_gauge = Gauge(
            "podkit_event_loop_lag_seconds",
            "how late the last event-loop timer fired",
            registry=self.registry,
        )
        self._ready = False
        self._ready_reason = "starting"
        self._holds: dict[str, str] = {}
        """Conditions apart from the helper's own set_ready (unwritable checkpoints...)."""
        self._started = False
        self._drain = asyncio.Event()
        self._drain_shown = False  # /readyz says "draining" (see request_drain)
        self.admin: AdminServer | None = None
        self.loop_lag = 0.0
        self._last_tick = time.monotonic()

    @property
    def helper_name(self) -> str:
        return self.helper.name

    # --- state the helper sets ------------------------------------------------------------

    def set_started(self) -> None:
        """First sync or discovery done: /startupz turns 200."""
        if not self._started:
            self._started = True
            self._started_gauge.set(1)
            self.log.info("started")

    def set_ready(self, ready: bool, reason: str = "") -> None:
        """The helper can (or can no longer) do its job; reason says why not."""
        if ready:
            self.set_started()
        before = self.readiness()[0]
        self._ready = ready
        self._ready_reason = "" if ready else (reason or "not ready")
        self._show_readiness(before)

    def hold_ready(self, key: str, reason: str | None) -> None:
        """While `reason` is set under `key`, /readyz fails with it, whatever set_ready says.

        For a shared part (the follower's checkpoints) whose trouble must show without the
        helper's own readiness overwriting it; `None` lifts the hold.
        """
        before = self.readiness()[0]
        if reason:
            self._holds[key] = reason
        else:
            self._holds.pop(key, None)
        self._show_readiness(before)

    def _show_readiness(self, before: bool) -> None:
        ready, reason = self.readiness()
        self._ready_gauge.set(1 if ready else 0)
        if ready != before:
            if ready:
                self.log.info("ready")
            else:
                self.log.warning("not_ready", reason=reason)

    @property
    def started(self) -> bool:
        return self._started

    @property
    def ready(self) -> bool:
        return self.readiness()[0]

    def readiness(self) -> tuple[bool, str]:
        if self._drain_shown:
            return False, "draining"
        if self._holds:
            return False, next(iter(self._holds.values()))
        return self._ready, self._ready_reason

    # --- draining -------------------------------------------------------------------------

    @property
    def draining(self) -> bool:
        return self._drain.is_set()

    async def wait_drain(self) -> None:
        """Returns once a drain was requested: stop taking new work, finish, return."""
        await self._drain.wait()

    @contextlib.asynccontextmanager
    async def on_drain(self, callback: Callable[[], Awaitable[None]]) -> AsyncIterator[None]:
        """While inside, a drain request runs `await callback()` once (stop taking work).

        What the callback raises is raised again when the block ends normally; when the
        block ends first, the callback is not run.
        """

        async def call_on_drain() -> None:
            await self._drain.wait()
            await callback()

        task = asyncio.create_task(call_on_drain(), name="on-drain")
        try:
            yield
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]

    def request_drain(self, source: str) -> None:
        if not self._drain.is_set():
            self.log.info("drain_requested", source=source)
            self._drain.set()
            self._draining_gauge.set(1)
            # Setting the event queued each waiter's next step (where a helper closes its
            # listener); /readyz turns 503 right after those, so that a 503 means new work
            # is already refused.
            asyncio.get_running_loop().call_soon(self._show_drain)

    def _show_drain(self) -> None:
        self._drain_shown = True

    # --- liveness -------------------------------------------------------------------------

    def loop_health(self) -> tuple[bool, float]:
        since_tick = time.monotonic() - self._last_tick
        lag = max(self.loop_lag, since_tick - LAG_CHECK_INTERVAL, 0.0)
        return lag < LIVENESS_MAX_LAG, lag

    async def _watch_loop_lag(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(LAG_CHECK_INTERVAL)
            now = time.monotonic()
            self.loop_lag = max(0.0, now - before - LAG_CHECK_INTERVAL)
            self._last_tick = now
            self._lag_gauge.set(self.loop_lag)


class Server:
    """uvicorn's shape: startup(), main_loop(), shutdown(); signals drain, then force."""

    def __init__(
        self, helper: Helper, settings: HelperSettings, notices: list[Notice] | None = None
    ) -> None:
        self.helper = helper
        self.settings = settings
        self.notices = notices or []
        self.runtime = Runtime(helper, settings)
        self.log = self.runtime.log
        self.signals_seen = 0
        self._tasks: list[asyncio.Task[None]] = []
        self.helper_task: asyncio.Task[None] | None = None

    async def serve(self) -> int:
        if not await self.startup():
            self.restore_signal_handlers()
            return EXIT_CODE_CRASH
        await self.main_loop()
        return await self.shutdown()

    async def startup(self) -> bool:
        loop = asyncio.get_running_loop()
        for sig in SIGNALS:
            loop.add_signal_handler(sig, self.handle_exit, sig)
        self.runtime.admin = AdminServer(self.runtime, self.settings.admin_addr)
        try:
            with listening(self.settings, "admin_addr"):
                await self.runtime.admin.start()
        except StartupError as exc:
            self.log.error(exc.event, **exc.fields)
            return False
        self.log.info(
            "starting",
            version=__version__,
            pid=os.getpid(),
            admin_addr=f"{self.runtime.admin.host}:{self.runtime.admin.port}",
            event_loop=type(loop).__module__.split(".")[0],
        )
        for notice in self.notices:
            self.log.warning(notice.event, **notice.fields)
        run: RunFunction = import_attr(self.helper.run)
        self._tasks.append(asyncio.create_task(self.runtime._watch_loop_lag(), name="loop-lag"))
        self.helper_task = asyncio.create_task(run(self.settings, self.runtime), name="helper")
        return True

    async def main_loop(self) -> None:
        """Until the helper ends by itself or a drain is requested."""
        assert self.helper_task is not None
        drain = asyncio.ensure_future(self.runtime.wait_drain())
        try:
            await asyncio.wait({self.helper_task, drain}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            drain.cancel()

    async def shutdown(self) -> int:
        """Give a draining helper --shutdown-timeout to finish, cancel it after; clean up."""
        assert self.helper_task is not None
        code: int | None = None
        if not self.helper_task.done():
            timeout = self.settings.shutdown_timeout
            done, _ = await asyncio.wait({self.helper_task}, timeout=timeout)
            if not done:
                self.log.warning("drain_timed_out", shutdown_timeout=timeout)
                self.helper_task.cancel()
                await asyncio.wait({self.helper_task}, timeout=CANCEL_GRACE)
                code = 0
        for task in self._tasks:
            task.cancel()
        if self.runtime.admin is not None:
            await self.runtime.admin.stop()
        self.restore_signal_handlers()
        return self._helper_result() if code is None else code

    def _helper_result(self) -> int:
        task = self.helper_task
        assert task is not None
        if not task.done() or task.cancelled():
            return 0
        exc = task.exception()
        if exc is None:
            self.log.info("stopped", reason="drained" if self.runtime.draining else "finished")
            return 0
        if isinstance(exc, StartupError):
            self.log.error(exc.event, **exc.fields)
            return EXIT_CODE_CRASH
        self.log.error("helper_crashed", exc_info=(type(exc), exc, exc.__traceback__))
        return EXIT_CODE_CRASH

    def restore_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in SIGNALS:
            loop.remove_signal_handler(sig)

    def handle_exit(self, sig: int) -> None:
        self.signals_seen += 1
        if self.signals_seen == 1:
            self.runtime.request_drain(source=signal.Signals(sig).name)
            return
        # The second signal means "now": no drain, no cleanup.
        self.log.warning("forced_exit", signal=signal.Signals(sig).name)
        logging.shutdown()
        sys.stderr.flush()
        os._exit(128 + sig)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def serve(helper: Helper, settings: HelperSettings, notices: list[Notice] | None = None) -> int:
    """Run a helper until it finishes or drains; returns the process exit code."""
    logs.configure(helper.name, fmt=settings.log_format, level=settings.log_level)
    server = Server(helper, settings, notices)
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        try:
            return runner.run(server.serve())
        except Exception:
            server.log.exception("runtime_crashed")
            return EXIT_CODE_CRASH
        finally:
            with contextlib.suppress(Exception):
                logging.shutdown()
