"""`podkit echo`: the line-echo server itself (settings, run, demo).

It exists to prove the runtime end to end (settings, readiness, metrics, drain, PID 1)
and as the template a new helper starts from. `--delay` stands for work in flight: a
drain lets every line that was already received get its answer before the exit.
"""

from __future__ import annotations

import asyncio
import signal
from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge

from podkit.config import split_host_port
from podkit.echo.settings import EchoSettings
from podkit.runtime import Runtime

if TYPE_CHECKING:
    from podkit.demo import Narrator


class EchoServer:
    def __init__(self, settings: EchoSettings, runtime: Runtime) -> None:
        self.settings = settings
        self.log = runtime.log
        self.runtime = runtime
        self.handlers: set[asyncio.Task[None]] = set()
        self.idle: set[asyncio.StreamWriter] = set()
        self.lines = Counter("echo_lines_total", "lines echoed", registry=runtime.registry)
        self.rejected = Counter(
            "echo_rejected_lines_total", "lines over --max-line-bytes", registry=runtime.registry
        )
        self.active = Gauge(
            "echo_connections_active", "open client connections", registry=runtime.registry
        )

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        self.active.inc()
        try:
            while not self.runtime.draining:
                self.idle.add(writer)
                try:
                    line = await reader.readuntil(b"\n")
                except asyncio.IncompleteReadError:
                    return
                except asyncio.LimitOverrunError:
                    self.rejected.inc()
                    self.log.warning("line_too_long", limit=self.settings.max_line_bytes)
                    writer.write(b"ERR line too long\n")
                    return
                finally:
                    self.idle.discard(writer)
                if self.settings.delay:
                    await asyncio.sleep(self.settings.delay)
                writer.write(line)
                await writer.drain()
                self.lines.inc()
        except ConnectionError:
            pass
        finally:
            self.active.dec()
            writer.close()
            self.handlers.discard(task)

    async def serve(self) -> None:
        host, port = split_host_port(self.settings.listen)
        server = await asyncio.start_server(
            self.handle, host, port, limit=self.settings.max_line_bytes
        )
        bound = server.sockets[0].getsockname()
        self.log.info("listening", addr=f"{bound[0]}:{bound[1]}")
        self.runtime.set_ready(True)
        await self.runtime.wait_drain()
        # Drain: stop accepting, close connections waiting for a line, finish the rest.
        server.close()
        for writer in list(self.idle):
            writer.close()
        if self.handlers:
            self.log.info("finishing_in_flight", connections=len(self.handlers))
            await asyncio.wait(set(self.handlers))
        await server.wait_closed()


async def run(settings: EchoSettings, runtime: Runtime) -> None:
    await EchoServer(settings, runtime).serve()


def demo(narrator: Narrator) -> None:
    """`podkit demo`: echo a line, show readiness, then drain with a line still in flight."""
    import socket

    from podkit.devservers import HOST, HelperProcess, free_port

    port = free_port()
    narrator.step(f"start `podkit echo --listen {HOST}:{port} --delay 1s` (a line-echo server)")
    process = HelperProcess("echo", "--listen", f"{HOST}:{port}", "--delay", "1s")
    with narrator.helper(process) as echo:
        narrator.show("GET /readyz", echo.get("/readyz")[1].decode())
        with socket.create_connection((HOST, port), timeout=10) as conn:
            conn.sendall(b"hello podkit\n")
            narrator.step("sent 'hello podkit' and, while the answer is still in flight, SIGTERM")
            echo.process.send_signal(signal.SIGTERM)
            answer = conn.makefile("rb").readline().decode().rstrip()
        narrator.show("answer received during the drain", answer)
        code = echo.wait_exit(timeout=30)
        narrator.result(code == 0 and answer == "hello podkit", f"drained and exited {code}")
